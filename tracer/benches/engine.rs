//! Throughput and memory of the kernel side run in user space (`tracer::model`: held stacks,
//! classes, the chain cache, what the BPF programs do per lock operation) and of the
//! lock-dependency engine behind it, which only sees the facts the model finds new.
//!
//! A synthetic stream shaped like a busy kernel is generated on the fly in small batches (never
//! stored whole): hundreds of static and slab lock classes, many tasks over several CPUs,
//! nested critical sections of depth 1 to 4 drawn from a skewed set of code paths (so most
//! lock chains repeat), interrupts and softirqs nesting on top of task sections. The model
//! and the engine are timed apart; generation time is reported apart too.
//!
//! `LOCKTRACE_BENCH_EVENTS` sets the number of events (default 50 million).

use std::time::{Duration, Instant};

use tracer::engine::Engine;
use tracer::model::KernelModel;
use tracer::symbols::{KernelSymbol, KernelSymbols, Symbols};
use tracer_common::{Counter, Event, EventKind, ExecContext, IrqState, LockKind, flags};

const CPUS: u32 = 8;
const TASKS: u32 = 2000;
const STATIC_LOCKS: u64 = 400;
/// Static locks shared with interrupt handlers (the first ones).
const IRQ_LOCKS: u64 = 40;
const FUNCTIONS: u64 = 300;
const SLAB_CACHES: u64 = 12;
const SLAB_SITES: u64 = 20;
const SLAB_INSTANCES: u64 = 64;
const PATHS: usize = 3000;
/// Paths that take their locks out of order (each may close a few cycles).
const BUGGY_PATHS: usize = 3;
const BATCH: usize = 4096;

const STATIC_BASE: u64 = 0xffff_ffff_8300_0000;
const TEXT_BASE: u64 = 0xffff_ffff_8100_0000;
const SLAB_CACHE_BASE: u64 = 0xffff_8880_0100_0000;
const SLAB_OBJ_BASE: u64 = 0xffff_8881_0000_0000;

/// xorshift64*: fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
}

/// Where a lock of a path comes from.
#[derive(Clone, Copy)]
enum LockRef {
    Static(u64),
    /// Slab cache, site function; the instance is drawn per use.
    Slab(u64, u64),
}

/// One code path: the locks it nests, in order, and how.
struct Path {
    locks: Vec<(LockRef, LockKind, u64)>,
    context: ExecContext,
    irqs_off: bool,
}

/// The global lock order. Locks shared with interrupt handlers come innermost, so nothing
/// irq-unsafe is ever taken under them.
fn rank(r: LockRef) -> u64 {
    match r {
        LockRef::Static(i) if i < IRQ_LOCKS => 1000 + i,
        LockRef::Static(i) => i * 7 % 1000,
        LockRef::Slab(c, s) => (c * SLAB_SITES + s) * 3 % 1000,
    }
}

fn make_paths(rng: &mut Rng) -> Vec<Path> {
    let mut paths = ordered_paths(rng);
    // A few hot task paths break the order, as a buggy driver would: the engine must find
    // them once and stay fast while they repeat.
    for path in paths
        .iter_mut()
        .filter(|p| p.context == ExecContext::Task && p.locks.len() > 1)
        .take(BUGGY_PATHS)
    {
        path.locks.reverse();
    }
    paths
}

fn ordered_paths(rng: &mut Rng) -> Vec<Path> {
    (0..PATHS)
        .map(|_| {
            let roll = rng.below(100);
            let context = match roll {
                0..=84 => ExecContext::Task,
                85..=94 => ExecContext::Softirq,
                _ => ExecContext::Hardirq,
            };
            let depth = 1 + rng.below(4) as usize;
            let mut locks: Vec<(LockRef, LockKind, u64)> = (0..depth)
                .map(|_| {
                    let r = if context != ExecContext::Task || rng.below(10) == 0 {
                        // Locks shared with interrupt handlers.
                        LockRef::Static(rng.below(IRQ_LOCKS))
                    } else if rng.below(3) == 0 {
                        LockRef::Slab(rng.below(SLAB_CACHES), rng.below(SLAB_SITES))
                    } else {
                        LockRef::Static(IRQ_LOCKS + rng.below(STATIC_LOCKS - IRQ_LOCKS))
                    };
                    let kind = if rng.below(8) == 0 {
                        LockKind::RwlockRead
                    } else {
                        LockKind::Spin
                    };
                    (r, kind, TEXT_BASE + rng.below(FUNCTIONS) * 0x400 + 0x10)
                })
                .collect();
            // A global order keeps the synthetic kernel (mostly) deadlock-free, as a real one is.
            locks.sort_by_key(|l| rank(l.0));
            locks.dedup_by_key(|l| rank(l.0));
            // Some task paths start with a mutex, taken with irqs on; a path touching a lock
            // shared with interrupt handlers runs with irqs off (spin_lock_irqsave), as
            // correct kernel code does.
            let irq_lock = locks
                .iter()
                .any(|l| matches!(l.0, LockRef::Static(i) if i < IRQ_LOCKS));
            let mut irqs_off = irq_lock || rng.below(2) == 0;
            if context == ExecContext::Task && !irq_lock && rng.below(5) == 0 {
                locks[0].1 = LockKind::Mutex;
                irqs_off = false;
            }
            for l in &mut locks {
                if let LockRef::Slab(_, site) = l.0 {
                    // The acquisition site decides the slab class.
                    l.2 = TEXT_BASE + site * 0x400 + 0x20;
                }
            }
            Path {
                locks,
                context,
                irqs_off: irqs_off || context == ExecContext::Hardirq,
            }
        })
        .collect()
}

fn symbols() -> Symbols {
    let mut syms: Vec<KernelSymbol> = (0..STATIC_LOCKS)
        .map(|i| KernelSymbol {
            addr: STATIC_BASE + i * 0x100,
            kind: 'd',
            name: format!("static_lock_{i}"),
            module: None,
        })
        .collect();
    syms.extend((0..FUNCTIONS).map(|i| KernelSymbol {
        addr: TEXT_BASE + i * 0x400,
        kind: 't',
        name: format!("func_{i}"),
        module: None,
    }));
    let mut symbols = Symbols {
        kernel: KernelSymbols::from_symbols(syms),
        ..Symbols::default()
    };
    for c in 0..SLAB_CACHES {
        symbols
            .slab_caches
            .insert(SLAB_CACHE_BASE + c * 0x100, format!("kmalloc-{}", 8 << c));
    }
    symbols
}

/// A critical section being played out on a CPU.
struct Section {
    path: usize,
    tid: u32,
    /// Lock addresses chosen for this run.
    addrs: [u64; 4],
    step: usize,
}

/// Generates the stream: per CPU a stack of sections (a task section, and interrupts on top).
struct Generator {
    rng: Rng,
    paths: Vec<Path>,
    task_paths: Vec<usize>,
    irq_paths: Vec<usize>,
    cpus: Vec<Vec<Section>>,
    clock: u64,
    /// Addresses some section on some CPU will take or holds: a real kernel never lets two
    /// places hold one exclusive lock (and the engine takes such a holder as a missed release).
    reserved: std::collections::HashSet<u64>,
}

impl Generator {
    fn new(seed: u64) -> Generator {
        let mut rng = Rng(seed);
        let paths = make_paths(&mut rng);
        let task_paths = (0..PATHS)
            .filter(|&p| paths[p].context == ExecContext::Task)
            .collect();
        let irq_paths = (0..PATHS)
            .filter(|&p| paths[p].context != ExecContext::Task)
            .collect();
        Generator {
            rng,
            paths,
            task_paths,
            irq_paths,
            cpus: (0..CPUS).map(|_| Vec::new()).collect(),
            clock: 0,
            reserved: std::collections::HashSet::new(),
        }
    }

    /// A skewed pick: most of the time among the first tenth, as hot paths dominate.
    fn pick(&mut self, from: usize) -> usize {
        if self.rng.below(10) < 8 {
            self.rng.below(from as u64 / 10) as usize
        } else {
            self.rng.below(from as u64) as usize
        }
    }

    /// A new section whose locks nobody else holds or will take, or `None` after a few
    /// tries (the CPU then waits its turn).
    fn start(&mut self, cpu: usize, irq: bool) -> Option<Section> {
        for _ in 0..8 {
            let section = self.try_start(cpu, irq);
            let n = self.paths[section.path].locks.len();
            let addrs = &section.addrs[..n];
            if addrs.iter().all(|a| !self.reserved.contains(a)) {
                self.reserved.extend(addrs.iter().copied());
                return Some(section);
            }
        }
        None
    }

    fn try_start(&mut self, cpu: usize, irq: bool) -> Section {
        let path = if irq {
            let i = self.pick(self.irq_paths.len());
            self.irq_paths[i]
        } else {
            let i = self.pick(self.task_paths.len());
            self.task_paths[i]
        };
        let mut addrs = [0; 4];
        for (i, (r, _, _)) in self.paths[path].locks.iter().enumerate() {
            addrs[i] = match *r {
                LockRef::Static(s) => STATIC_BASE + s * 0x100,
                LockRef::Slab(c, s) => {
                    let obj =
                        (c * SLAB_SITES + s) * SLAB_INSTANCES + self.rng.below(SLAB_INSTANCES);
                    SLAB_OBJ_BASE + obj * 0x40
                }
            };
        }
        // Tasks stay on their CPU: the engine takes a spinlock holder on another CPU as stale.
        let tid = if irq {
            0
        } else {
            1000 + cpu as u32 + CPUS * self.rng.below(u64::from(TASKS / CPUS)) as u32
        };
        Section {
            path,
            tid,
            addrs,
            step: 0,
        }
    }

    fn fill(&mut self, out: &mut Vec<Event>) {
        out.clear();
        while out.len() < BATCH {
            let cpu = self.rng.below(u64::from(CPUS)) as usize;
            if self.cpus[cpu].is_empty() {
                let Some(s) = self.start(cpu, false) else {
                    continue;
                };
                self.cpus[cpu].push(s);
            } else if self.cpus[cpu].len() == 1 && self.rng.below(40) == 0 {
                let Some(s) = self.start(cpu, true) else {
                    continue;
                };
                let mut ev = base(
                    &mut self.clock,
                    cpu as u32,
                    s.tid,
                    self.paths[s.path].context,
                );
                ev.kind = match self.paths[s.path].context {
                    ExecContext::Hardirq => EventKind::HardirqEntry,
                    _ => EventKind::SoftirqEntry,
                } as u32;
                out.push(ev);
                self.cpus[cpu].push(s);
                continue;
            }
            let depth = self.cpus[cpu].len();
            let s = self.cpus[cpu].last_mut().expect("a section");
            let (path_idx, tid, step, addrs) = (s.path, s.tid, s.step, s.addrs);
            s.step += 1;
            let path = &self.paths[path_idx];
            let n = path.locks.len();
            let (context, irqs_off) = (path.context, path.irqs_off);
            let mut ev = base(&mut self.clock, cpu as u32, tid, context);
            if step < 2 * n {
                let (i, kind) = if step < n {
                    (step, EventKind::LockAcquire)
                } else {
                    (2 * n - 1 - step, EventKind::LockRelease)
                };
                let (r, lock_kind, caller) = path.locks[i];
                ev.kind = kind as u32;
                ev.lock_kind = lock_kind as u32;
                ev.lock_addr = addrs[i];
                ev.caller = caller;
                if let LockRef::Slab(c, _) = r {
                    ev.slab_cache = SLAB_CACHE_BASE + c * 0x100;
                }
                ev.kernel_stack_id = path_idx as i32;
            } else {
                let done = self.cpus[cpu].pop().expect("a section");
                for addr in &done.addrs[..n] {
                    self.reserved.remove(addr);
                }
                if depth == 1 {
                    continue;
                }
                ev.kind = match context {
                    ExecContext::Hardirq => EventKind::HardirqExit,
                    _ => EventKind::SoftirqExit,
                } as u32;
            }
            if context != ExecContext::Hardirq {
                ev.irqs = if irqs_off {
                    IrqState::Disabled
                } else {
                    IrqState::Enabled
                } as u32;
            }
            out.push(ev);
        }
    }
}

/// An event with the fields every generated event shares.
fn base(clock: &mut u64, cpu: u32, tid: u32, context: ExecContext) -> Event {
    *clock += 50;
    let mut ev = Event::zeroed();
    ev.timestamp_ns = *clock;
    ev.cpu = cpu;
    ev.tid = tid;
    ev.pid = tid;
    ev.context = context as u32;
    ev.irqs = IrqState::Disabled as u32;
    ev.flags = flags::PREEMPT_COUNT_VALID;
    if context == ExecContext::Softirq {
        ev.flags |= flags::SOFTIRQS_DISABLED;
    }
    ev.comm[..5].copy_from_slice(b"bench");
    ev
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let total: u64 = std::env::var("LOCKTRACE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000_000);
    let symbols = symbols();
    let mut generator = Generator::new(0x5eed_1234_abcd_ef01);
    let mut model = KernelModel::default();
    let mut engine = Engine::default();
    let rss_before = peak_rss_kib();
    let mut batch = Vec::with_capacity(BATCH);
    let mut facts = Vec::new();
    let (mut processed, mut alerts, mut fact_count) = (0u64, 0u64, 0u64);
    let mut by_kind = std::collections::BTreeMap::new();
    let (mut model_time, mut engine_time, mut gen_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let wall = Instant::now();
    while processed < total {
        let t = Instant::now();
        generator.fill(&mut batch);
        let take = batch.len().min((total - processed) as usize);
        gen_time += t.elapsed();
        let t = Instant::now();
        facts.clear();
        for ev in &batch[..take] {
            model.process(ev, &mut facts);
        }
        model_time += t.elapsed();
        let t = Instant::now();
        for fact in &facts {
            for alert in engine.process(fact, &symbols) {
                alerts += 1;
                *by_kind.entry(alert.kind().name()).or_insert(0u64) += 1;
            }
        }
        engine_time += t.elapsed();
        fact_count += facts.len() as u64;
        processed += take as u64;
    }
    let wall = wall.elapsed();
    let stats = engine.stats();
    let rate = processed as f64 / (model_time + engine_time).as_secs_f64();
    println!("model + engine benchmark");
    println!(
        "  events:            {processed}, facts: {fact_count} ({:.4}% of events)",
        fact_count as f64 * 100.0 / processed as f64
    );
    println!(
        "  model time:        {:.3} s  -> {:.1} M events/s (the programs' work, one core)",
        model_time.as_secs_f64(),
        processed as f64 / model_time.as_secs_f64() / 1e6
    );
    println!(
        "  engine time:       {:.3} s  -> {:.0} k facts/s",
        engine_time.as_secs_f64(),
        fact_count as f64 / engine_time.as_secs_f64() / 1e3
    );
    println!("  together:          {:.1} M events/s", rate / 1e6);
    println!(
        "  generator time:    {:.3} s; wall {:.3} s -> {:.1} M events/s end to end",
        gen_time.as_secs_f64(),
        wall.as_secs_f64(),
        processed as f64 / wall.as_secs_f64() / 1e6
    );
    println!(
        "  peak memory:       {} KiB VmHWM ({} KiB before replay)",
        peak_rss_kib(),
        rss_before
    );
    println!(
        "  classes: {}  dependencies: {}  chains: {}  alerts: {alerts} {by_kind:?}",
        stats.classes, stats.dependencies, stats.chains
    );
    println!(
        "  acquisitions: {}  releases: {}  stale: {}  overflow: {}  unmatched: {}",
        model.counter(Counter::Acquisitions),
        model.counter(Counter::Releases),
        model.counter(Counter::StaleHeld),
        model.counter(Counter::HeldOverflow),
        model.counter(Counter::UnmatchedRelease)
    );
}
