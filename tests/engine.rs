//! Data-driven tests of the lock-dependency engine and its reports: each fixture in
//! `tests/fixtures/engine/` declares symbols and an event stream and lists the exact alerts and
//! graph facts expected; one [`check`] helper runs it. The format is described in
//! `tests/fixtures/engine/README.md`.

use std::collections::HashMap;
use std::fmt::Write;

use tracer::engine::{Engine, EngineConfig};
use tracer::report;
use tracer::symbols::{Frame, KernelSymbol, KernelSymbols, StackKey, Symbols};
use tracer_common::{Event, EventKind, ExecContext, IrqState, LockKind, flags, preempt};

/// One parsed fixture.
struct Fixture {
    symbols: Symbols,
    config: EngineConfig,
    events: Vec<Event>,
    expects: Vec<Expect>,
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
    config: EngineConfig,
    stacks: HashMap<String, StackKey>,
    tasks: HashMap<u32, (String, u32)>,
    user_locks: HashMap<(u32, String), u64>,
    clock: u64,
    events: Vec<Event>,
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
                let c = &mut self.config;
                match field {
                    "max_lock_depth" => c.max_lock_depth = value as usize,
                    "stale_spin_ns" => c.stale_spin_ns = value,
                    "stale_sleep_ns" => c.stale_sleep_ns = value,
                    "stale_spin_acquisitions" => c.stale_spin_acquisitions = value,
                    "addr_cache_limit" => c.addr_cache_limit = value as usize,
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
                    }
                }
                ("field", offset) => ev.slab_offset = hex(offset) as u32 + 1,
                ("variant", "irq") => ev.flags |= flags::IRQ_VARIANT,
                ("variant", "bh") => ev.flags |= flags::BH_VARIANT,
                ("lost", "before") => ev.flags |= flags::AFTER_LOSS,
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
        self.events.push(ev);
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
        config: p.config,
        events: p.events,
        expects: p.expects,
    }
}

/// Replays the events; returns the engine, each alert as `kind[/qualifier] A -> B`, and each
/// alert's text report.
fn replay(f: &Fixture) -> (Engine, Vec<String>, Vec<String>) {
    let mut engine = Engine::new(f.config.clone());
    let mut alerts = Vec::new();
    for ev in &f.events {
        alerts.extend(engine.process(ev, &f.symbols).iter().cloned());
    }
    let mut described = Vec::new();
    let mut texts = Vec::new();
    for alert in &alerts {
        let names: Vec<String> = alert
            .classes
            .iter()
            .map(|&c| report::class_name(&engine, &f.symbols, c))
            .collect();
        let qualifier = alert
            .irq
            .map(|i| i.name())
            .or(alert.problem.map(|p| p.name()))
            .map_or(String::new(), |q| format!("/{q}"));
        let mut d = format!("{}{qualifier}", alert.kind.name());
        if !names.is_empty() {
            write!(d, " {}", names.join(" -> ")).unwrap();
        }
        // The JSON report carries the same facts.
        let json = report::json::render(alert, &engine, &f.symbols);
        assert_eq!(json["kind"], alert.kind.name());
        assert_eq!(json["classes"], serde_json::json!(names));
        assert_eq!(json["chain"].as_array().unwrap().len(), alert.chain.len());
        for (link, j) in alert.chain.iter().zip(json["chain"].as_array().unwrap()) {
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
        described.push(d);
        texts.push(report::text::render(alert, &engine, &f.symbols));
    }
    (engine, described, texts)
}

/// Runs the fixture `name` and checks every expectation in it.
fn check(name: &str) {
    let path = format!(
        "{}/../tests/fixtures/engine/{name}.fixture",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fixture = parse(&text);
    let (engine, mut got, texts) = replay(&fixture);
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

    let graph = report::graph::to_json(&engine, &fixture.symbols);
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
    let dot = report::graph::to_dot(&engine, &fixture.symbols);
    assert!(dot.starts_with("digraph lockdep {") && dot.matches(" -> c").count() == deps.len());

    let stats = serde_json::to_value(engine.stats()).unwrap();
    for e in &fixture.expects {
        match e {
            Expect::Alert(_) => {}
            Expect::Dependency { from, to, present } => {
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
    let (_, again, _) = replay(&fixture);
    let mut again = again;
    again.sort();
    assert_eq!(again, got, "replay differs");
}

#[test]
fn seed_irq_inversion_usage_first() {
    check("seed-usage-first");
}

#[test]
fn seed_irq_inversion_usage_after_dependency() {
    check("seed-usage-after");
}

#[test]
fn seed_irq_inversion_unsafe_learned_last() {
    check("seed-unsafe-last");
}

#[test]
fn ab_ba_across_two_tasks() {
    check("ab-ba");
}

#[test]
fn three_lock_cycle() {
    check("three-lock-cycle");
}

#[test]
fn cycle_closed_by_trylock_is_not_a_deadlock() {
    check("trylock-cycle");
}

#[test]
fn recursive_readers_in_opposite_order() {
    check("rwlock-readers");
}

#[test]
fn writer_in_a_reader_cycle() {
    check("rwlock-writer");
}

#[test]
fn hardirq_handler_does_not_depend_on_interrupted_task() {
    check("hardirq-context");
}

#[test]
fn vfree_with_irqs_disabled() {
    check("vfree-irqs-off");
}

#[test]
fn non_atomic_pcpu_alloc_from_softirq() {
    check("pcpu-alloc-softirq");
}

#[test]
fn mutex_under_spinlock() {
    check("mutex-under-spinlock");
}

#[test]
fn inconsistent_lock_state() {
    check("inconsistent");
}

#[test]
fn recursive_locking_of_one_instance() {
    check("recursive");
}

#[test]
fn missed_releases_do_not_make_false_cycles() {
    check("missed-release");
}

#[test]
fn every_problem_repeated_is_reported_once() {
    check("long-stream");
}

#[test]
fn slab_and_user_classes() {
    check("classes");
}

#[test]
fn softirq_inversion() {
    check("softirq-inversion");
}

#[test]
fn lock_handoff() {
    check("lock-handoff");
}

#[test]
fn idle_tasks_are_one_per_cpu() {
    check("idle-tasks");
}

#[test]
fn events_lost_before_an_event() {
    check("lost-events");
}

#[test]
fn irq_checks_do_not_pass_through_user_locks() {
    check("irq-through-user-lock");
}
