//! Data-driven tests of the lock-dependency engine and its reports: each fixture in
//! `tests/fixtures/engine/` declares symbols and a lock event stream and lists the exact alerts
//! and graph facts expected; one [`check`] helper runs it. The events go through
//! `tracer::model` — the held stacks, classes and chain cache the BPF programs run — and the
//! facts it makes go to the engine. The format is described in
//! `tests/fixtures/engine/README.md`. Every fixture in the directory runs: a new one cannot be
//! forgotten.

use std::collections::HashMap;
use std::fmt::Write;

use tracer::engine::Engine;
use tracer::model::KernelModel;
use tracer::report;
use tracer::symbols::{Frame, KernelSymbol, KernelSymbols, StackKey, Symbols};
use tracer_common::{
    Counter, Event, EventKind, ExecContext, IrqState, Limits, LockKind, flags, preempt,
};

/// One parsed fixture.
struct Fixture {
    symbols: Symbols,
    limits: Limits,
    events: Vec<Step>,
    expects: Vec<Expect>,
}

/// One event, and whether the programs' ring buffer is full when it comes.
struct Step {
    event: Event,
    ring_full: bool,
}

enum Expect {
    /// `expect alert kind[/qualifier] A -> B`
    Alert(String),
    /// `expect dependency A -> B` / `expect no dependency A -> B`
    Dependency {
        from: String,
        to: String,
        present: bool,
    },
    /// `expect stat field op value`
    Stat {
        field: String,
        op: String,
        value: u64,
    },
    /// `expect text <substring>`
    Text(String),
}

/// Parsing state.
#[derive(Default)]
struct Parser {
    kernel: Vec<KernelSymbol>,
    symbols: Symbols,
    limits: Option<Limits>,
    stacks: HashMap<String, StackKey>,
    tasks: HashMap<u32, (String, u32)>,
    user_locks: HashMap<(u32, String), u64>,
    clock: u64,
    events: Vec<Step>,
    expects: Vec<Expect>,
}

fn parse_duration(s: &str) -> u64 {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000_000)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix("ns") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000_000)
    } else {
        (s, 1)
    };
    num.parse::<u64>()
        .unwrap_or_else(|_| panic!("bad duration {s}"))
        * mult
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("bad hex {s}"))
}

impl Parser {
    /// `name+0xoff`, `name` or `0xaddr` to an address, through the declared kernel symbols.
    fn address(&self, s: &str) -> u64 {
        if s.starts_with("0x") {
            return hex(s);
        }
        let (name, off) = match s.split_once('+') {
            Some((n, o)) => (n, hex(o)),
            None => (s, 0),
        };
        let sym = self
            .kernel
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("undeclared symbol {name}"));
        sym.addr + off
    }

    fn frame(&self, s: &str) -> Frame {
        if s.starts_with("0x") {
            return Frame::unresolved(hex(s));
        }
        let (name, off) = match s.split_once('+') {
            Some((n, o)) => (n, hex(o)),
            None => (s, 0),
        };
        let base = self
            .kernel
            .iter()
            .find(|k| k.name == name)
            .map_or(0, |k| k.addr);
        Frame {
            addr: base + off,
            function: Some(name.to_string()),
            offset: off,
            ..Frame::default()
        }
    }

    fn line(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "symbol" => self.kernel.push(KernelSymbol {
                addr: hex(words[1]),
                kind: words[2].chars().next().unwrap(),
                name: words[3].to_string(),
                module: None,
            }),
            "slab" => {
                self.symbols
                    .slab_caches
                    .insert(hex(words[1]), words[2].to_string());
            }
            "stack" => {
                let id = self.stacks.len() as i32;
                let (key, frames) = match words[2] {
                    "kernel" => (StackKey::kernel(id), &words[3..]),
                    "user" => (StackKey::user(words[3].parse().unwrap(), id), &words[4..]),
                    other => panic!("stack space {other}"),
                };
                let frames = frames.iter().map(|f| self.frame(f)).collect();
                self.symbols.stacks.insert(key, frames);
                self.stacks.insert(words[1].to_string(), key);
            }
            "userlock" => {
                let pid = words[1].parse().unwrap();
                let addr = hex(words[2]);
                self.symbols
                    .user_locks
                    .insert((pid, addr), words[3].to_string());
                self.user_locks.insert((pid, words[3].to_string()), addr);
            }
            "userfn" => {
                let pid = words[1].parse().unwrap();
                let addr = hex(words[2]);
                let mut frame = self.frame(words[3]);
                frame.addr = addr;
                self.symbols.user_functions.insert((pid, addr), frame);
            }
            "task" => {
                let tid = words[1].parse().unwrap();
                let pid = words
                    .iter()
                    .find_map(|w| w.strip_prefix("pid="))
                    .map_or(tid, |p| p.parse().unwrap());
                self.tasks.insert(tid, (words[2].to_string(), pid));
            }
            "config" => {
                let (field, value) = words[1].split_once('=').unwrap();
                let value: u64 = value.parse().unwrap();
                let c = self.limits.get_or_insert(Limits::DEFAULT);
                match field {
                    "max_lock_depth" => c.max_depth = value as u32,
                    "stale_spin_ns" => c.stale_spin_ns = value,
                    "stale_sleep_ns" => c.stale_sleep_ns = value,
                    other => panic!("config field {other}"),
                }
            }
            "sleep" => self.clock += parse_duration(words[1]),
            "expect" => self.expect(line.trim_start_matches("expect ")),
            tid if tid.parse::<u32>().is_ok() => self.event(&words),
            other => panic!("unknown directive {other}"),
        }
    }

    fn expect(&mut self, rest: &str) {
        let split_classes = |s: &str| -> (String, String) {
            let (a, b) = s.split_once(" -> ").expect("A -> B");
            (a.trim().to_string(), b.trim().to_string())
        };
        let e = if let Some(alert) = rest.strip_prefix("alert ") {
            Expect::Alert(alert.trim().to_string())
        } else if let Some(dep) = rest.strip_prefix("dependency ") {
            let (from, to) = split_classes(dep);
            Expect::Dependency {
                from,
                to,
                present: true,
            }
        } else if let Some(dep) = rest.strip_prefix("no dependency ") {
            let (from, to) = split_classes(dep);
            Expect::Dependency {
                from,
                to,
                present: false,
            }
        } else if let Some(stat) = rest.strip_prefix("stat ") {
            let w: Vec<&str> = stat.split_whitespace().collect();
            Expect::Stat {
                field: w[0].to_string(),
                op: w[1].to_string(),
                value: w[2].parse().unwrap(),
            }
        } else if let Some(text) = rest.strip_prefix("text ") {
            Expect::Text(text.to_string())
        } else {
            panic!("unknown expectation {rest}");
        };
        self.expects.push(e);
    }

    fn event(&mut self, words: &[&str]) {
        let mut ev = Event::zeroed();
        ev.tid = words[0].parse().unwrap();
        let (comm, pid) = self
            .tasks
            .get(&ev.tid)
            .cloned()
            .unwrap_or_else(|| (format!("task{}", ev.tid), ev.tid));
        ev.pid = pid;
        ev.comm[..comm.len().min(15)].copy_from_slice(&comm.as_bytes()[..comm.len().min(15)]);
        ev.timestamp_ns = self.clock;
        self.clock += 1000;
        let (opts, pos): (Vec<&str>, Vec<&str>) = words[1..].iter().partition(|w| w.contains('='));
        ev.cpu = pos[0].strip_prefix("cpu").expect("cpuN").parse().unwrap();
        let context = match pos[1] {
            "task" => ExecContext::Task,
            "softirq" => ExecContext::Softirq,
            "hardirq" => ExecContext::Hardirq,
            "nmi" => ExecContext::Nmi,
            "unknown" => ExecContext::Unknown,
            other => panic!("context {other}"),
        };
        ev.context = context as u32;
        ev.irqs = IrqState::Unknown as u32;
        let mut ring_full = false;
        for opt in opts {
            let (k, v) = opt.split_once('=').unwrap();
            match (k, v) {
                ("irqs", "on") => ev.irqs = IrqState::Enabled as u32,
                ("irqs", "off") => ev.irqs = IrqState::Disabled as u32,
                ("irqs", "unknown") => ev.irqs = IrqState::Unknown as u32,
                ("softirqs", on_off) => {
                    ev.flags |= flags::PREEMPT_COUNT_VALID;
                    ev.preempt_count = match context {
                        ExecContext::Hardirq => 0x1_0000,
                        ExecContext::Softirq => preempt::SOFTIRQ_OFFSET,
                        _ => 0,
                    };
                    if on_off == "off" {
                        ev.flags |= flags::SOFTIRQS_DISABLED;
                        ev.preempt_count |= 0x200;
                    }
                }
                ("at", site) => ev.caller = self.address(site),
                ("stack", name) => {
                    let key = self.stacks[name];
                    match key.space {
                        tracer::symbols::StackSpace::Kernel => ev.kernel_stack_id = key.id,
                        tracer::symbols::StackSpace::User => ev.user_stack_id = key.id,
                    }
                }
                ("slab", cache) => {
                    ev.slab_cache = match self.symbols.slab_caches.iter().find(|(_, n)| *n == cache)
                    {
                        Some((&ptr, _)) => ptr,
                        None => hex(cache),
                    };
                    // The programs tell generic caches by name, as here.
                    ev.slab_generic = cache.starts_with("kmalloc").into();
                }
                ("field", offset) => ev.slab_offset = hex(offset) as u32 + 1,
                ("percpu", offset) => ev.percpu_offset = hex(offset) as u32 + 1,
                ("variant", "irq") => ev.flags |= flags::IRQ_VARIANT,
                ("variant", "bh") => ev.flags |= flags::BH_VARIANT,
                ("ring", "full") => ring_full = true,
                ("arg", a) => ev.arg = a.parse().unwrap(),
                _ => panic!("unknown option {opt}"),
            }
        }
        let op = pos[2];
        let lock_op = |kind: EventKind, ev: &mut Event, parser: &Parser| {
            ev.kind = kind as u32;
            let lk = LockKind::ALL
                .into_iter()
                .find(|k| k.name() == pos[3])
                .unwrap_or_else(|| panic!("lock kind {}", pos[3]));
            ev.lock_kind = lk as u32;
            ev.lock_addr = match parser.user_locks.get(&(ev.pid, pos[4].to_string())) {
                Some(&addr) => addr,
                None => parser.address(pos[4]),
            };
        };
        match op {
            "acquire" => lock_op(EventKind::LockAcquire, &mut ev, self),
            "trylock" => {
                lock_op(EventKind::LockAcquire, &mut ev, self);
                ev.flags |= flags::TRYLOCK;
            }
            "release" => lock_op(EventKind::LockRelease, &mut ev, self),
            "contention" => {
                ev.kind = EventKind::ContentionBegin as u32;
                ev.lock_addr = self.address(pos[3]);
            }
            "contention_end" => {
                ev.kind = EventKind::ContentionEnd as u32;
                ev.lock_addr = self.address(pos[3]);
            }
            "switch" => {
                ev.kind = EventKind::SchedSwitch as u32;
                ev.arg = pos[3]
                    .parse()
                    .expect("switch <next tid> [<run-queue lock>]");
                if let Some(rq_lock) = pos.get(4) {
                    ev.lock_addr = self.address(rq_lock);
                }
            }
            "exit" => ev.kind = EventKind::TaskExit as u32,
            "vfree" => ev.kind = EventKind::Vfree as u32,
            "pcpu_alloc" => {
                ev.kind = EventKind::PcpuAlloc as u32;
                if pos.get(3) == Some(&"atomic") {
                    ev.flags |= flags::ATOMIC;
                }
            }
            "free_percpu" => ev.kind = EventKind::PcpuFree as u32,
            "hardirq_entry" => ev.kind = EventKind::HardirqEntry as u32,
            "hardirq_exit" => ev.kind = EventKind::HardirqExit as u32,
            "softirq_entry" => ev.kind = EventKind::SoftirqEntry as u32,
            "softirq_exit" => ev.kind = EventKind::SoftirqExit as u32,
            other => panic!("unknown op {other}"),
        }
        self.events.push(Step {
            event: ev,
            ring_full,
        });
    }
}

/// Parses fixture text: `repeat N` … `end` blocks are expanded, `#` starts a comment.
fn parse(text: &str) -> Fixture {
    fn expand<'a>(
        lines: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
        out: &mut Vec<&'a str>,
    ) {
        while let Some(line) = lines.next() {
            let line = line.split(" #").next().unwrap().trim_end();
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let trimmed = line.trim_start();
            if let Some(n) = trimmed.strip_prefix("repeat ") {
                let mut body = Vec::new();
                expand(lines, &mut body);
                for _ in 0..n.trim().parse::<usize>().unwrap() {
                    out.extend_from_slice(&body);
                }
            } else if trimmed == "end" {
                return;
            } else {
                out.push(trimmed);
            }
        }
    }
    let mut lines = Vec::new();
    expand(&mut text.lines().peekable(), &mut lines);
    let mut p = Parser::default();
    for line in lines {
        p.line(line);
    }
    p.symbols.kernel = KernelSymbols::from_symbols(p.kernel);
    Fixture {
        symbols: p.symbols,
        limits: p.limits.unwrap_or(Limits::DEFAULT),
        events: p.events,
        expects: p.expects,
    }
}

/// Replays the events through the model of the kernel side and the engine; returns the
/// figures (the engine's stats and the model's counters, by name), the engine, each alert as
/// `kind[/qualifier] A -> B`, and each alert's text report.
fn replay(f: &Fixture) -> (serde_json::Value, Engine, Vec<String>, Vec<String>) {
    let mut model = KernelModel::new(f.limits);
    let mut engine = Engine::default();
    let mut alerts = Vec::new();
    let mut facts = Vec::new();
    for step in &f.events {
        model.set_ring_full(step.ring_full);
        facts.clear();
        model.process(&step.event, &mut facts);
        for fact in &facts {
            alerts.extend(engine.process(fact, &f.symbols).iter().cloned());
        }
    }
    let mut stats = serde_json::to_value(engine.stats()).unwrap();
    for counter in Counter::ALL {
        stats[counter.name()] = model.counter(counter).into();
    }
    let mut described = Vec::new();
    let mut texts = Vec::new();
    for alert in &alerts {
        let finding = alert.finding();
        let names: Vec<String> = alert
            .classes()
            .iter()
            .map(|&c| report::class_name(&engine, &f.symbols, c))
            .collect();
        let qualifier = finding
            .irq()
            .map(|i| i.name())
            .or(finding.atomic_problem().map(|p| p.name()))
            .map_or(String::new(), |q| format!("/{q}"));
        let mut d = format!("{}{qualifier}", alert.kind().name());
        if !names.is_empty() {
            write!(d, " {}", names.join(" -> ")).unwrap();
        }
        // The JSON report carries the same facts.
        let json = report::json::render(alert, &engine, &f.symbols, &Default::default());
        assert_eq!(json["kind"], alert.kind().name());
        assert_eq!(json["classes"], serde_json::json!(names));
        assert_eq!(
            json["chain"].as_array().unwrap().len(),
            finding.chain().len()
        );
        for (link, j) in finding
            .chain()
            .iter()
            .zip(json["chain"].as_array().unwrap())
        {
            assert_eq!(
                j["from"],
                report::class_name(&engine, &f.symbols, link.from)
            );
            assert!(j["stack"].is_array() && j["task"]["tid"].is_u64(), "{j}");
        }
        assert!(!json["tasks"].as_array().unwrap().is_empty());
        for info in json["class_info"].as_array().unwrap() {
            assert!(info["identified_by"].is_string() && info["usage"].is_array());
        }
        // An irq inversion or inconsistent state says where each bit in question was
        // registered, as the text report does: both bits, among the alert's classes.
        if let Some((a, b)) = finding.usage() {
            let registered: Vec<&str> = json["class_info"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|info| info["registered"].as_object().unwrap().keys())
                .map(String::as_str)
                .collect();
            for bit in [a, b] {
                assert!(registered.contains(&bit.name()), "{bit:?} in {json}");
            }
            for info in json["class_info"].as_array().unwrap() {
                for trace in info["registered"].as_object().unwrap().values() {
                    assert!(trace["stack"].is_array() && trace["task"]["tid"].is_u64());
                }
            }
        }
        described.push(d);
        texts.push(report::text::render(
            alert,
            &engine,
            &f.symbols,
            &Default::default(),
        ));
    }
    (stats, engine, described, texts)
}

/// Runs the fixture `name` and checks every expectation in it.
fn check(name: &str) {
    let path = format!(
        "{}/../tests/fixtures/engine/{name}.fixture",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fixture = parse(&text);
    let (stats, engine, mut got, texts) = replay(&fixture);
    got.sort();
    let all_text = texts.join("\n");
    let context = || format!("fixture {name}\nalerts: {got:#?}\nreports:\n{all_text}");

    let mut want: Vec<String> = fixture
        .expects
        .iter()
        .filter_map(|e| match e {
            Expect::Alert(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    want.sort();
    assert_eq!(got, want, "{}", context());

    let graph = report::graph::to_json(&engine, &fixture.symbols, &Default::default());
    let ids: Vec<u64> = graph["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        (0..ids.len() as u64).collect::<Vec<_>>(),
        "class ids are dense"
    );
    let deps = graph["dependencies"].as_array().unwrap();
    for d in deps {
        assert!(
            d["read"].is_boolean() && d["count"].as_u64().unwrap() >= 1,
            "{d}"
        );
    }
    let dot = report::graph::to_dot(&engine, &fixture.symbols, &Default::default());
    assert!(dot.starts_with("digraph lockdep {") && dot.matches(" -> c").count() == deps.len());

    let classes: Vec<&str> = graph["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for e in &fixture.expects {
        match e {
            Expect::Alert(_) => {}
            Expect::Dependency { from, to, present } => {
                // Both classes must exist: an expectation about a class never seen would hold
                // whatever the engine does.
                for class in [from, to] {
                    assert!(
                        classes.contains(&class.as_str()),
                        "no class {class} (classes: {classes:?})\n{}",
                        context()
                    );
                }
                let found = deps.iter().any(|d| d["from"] == *from && d["to"] == *to);
                assert_eq!(
                    found,
                    *present,
                    "dependency {from} -> {to}\ngraph: {graph:#}\n{}",
                    context()
                );
            }
            Expect::Stat { field, op, value } => {
                let got = stats[field.as_str()]
                    .as_u64()
                    .unwrap_or_else(|| panic!("stat {field}"));
                let ok = match op.as_str() {
                    "=" => got == *value,
                    ">=" => got >= *value,
                    "<=" => got <= *value,
                    ">" => got > *value,
                    other => panic!("op {other}"),
                };
                assert!(ok, "stat {field} = {got}, want {op} {value}\n{stats:#}");
            }
            Expect::Text(needle) => {
                assert!(
                    all_text.contains(needle.as_str()),
                    "no report contains {needle:?}\n{}",
                    context()
                );
            }
        }
    }

    // Same events in, same alerts out.
    if std::env::var_os("SHOW_REPORTS").is_some() {
        println!("{all_text}");
    }
    let (_, _, again, _) = replay(&fixture);
    let mut again = again;
    again.sort();
    assert_eq!(again, got, "replay differs");
}

/// Every fixture in the directory, each checked on its own; the failures are listed together.
#[test]
fn every_fixture_gives_exactly_its_expectations() {
    let dir = format!("{}/../tests/fixtures/engine", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".fixture").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 20, "fixtures found: {names:?}");
    let failed: Vec<String> = names
        .iter()
        .filter(|name| std::panic::catch_unwind(|| check(name)).is_err())
        .cloned()
        .collect();
    assert!(failed.is_empty(), "fixtures that failed: {failed:?}");
}

#[test]
fn irq_checks_do_not_pass_through_user_locks() {
    check("irq-through-user-lock");
}
