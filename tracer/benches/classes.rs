//! How the dependency checks scale with the number of lock classes (the "safe as a root
//! tool" issue: replaying 40,000 user-space locks taken in overlapping pairs took 22 s, 93% of
//! it in the irq check's backward search; the target is under 2 s).
//!
//! Each scenario takes N distinct locks in overlapping pairs on one task: lock i, then lock
//! i+1 under it, then both released, so every pair brings one new class and one new
//! dependency and the graph grows into a chain of N classes:
//!
//! - `user ascending`: pthread mutexes, pairs in address order (the case);
//! - `user descending`: the same pairs from the end, so each new dependency leads into the
//!   chain already built and the cycle check walks all of it (lockdep's search would too);
//! - `kernel ascending`: named kernel spinlocks taken in task context with IRQs on
//!   (HARDIRQ-unsafe usage), the innermost one also in a hardirq and otherwise with IRQs off
//!   (HARDIRQ-safe, and in the right order: no alert), so the irq check has both kinds of
//!   usage to look for and walks every class before the new dependency, as lockdep's does.
//!
//! The events go through the kernel side's model first (`tracer::model`, what the eBPF
//! programs do), and only the facts it finds new reach the engine; both are timed, the engine
//! on its own column. `LOCKTRACE_BENCH_CLASSES` sets the sizes (comma
//! separated; default 10000,20000,40000).

use std::time::{Duration, Instant};

use tracer::engine::Engine;
use tracer::model::KernelModel;
use tracer::symbols::{KernelSymbol, KernelSymbols, Symbols};
use tracer_common::{Event, EventKind, ExecContext, IrqState, LockKind, flags};

const USER_BASE: u64 = 0x5555_0000_0000;
const KERNEL_BASE: u64 = 0xffff_ffff_8300_0000;
const CALLER: u64 = 0xffff_ffff_8100_0010;
/// The replay of this many classes must take less than this (the target).
const TARGET: (usize, Duration) = (40_000, Duration::from_secs(2));

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    UserAscending,
    UserDescending,
    KernelAscending,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::UserAscending => "user ascending",
            Scenario::UserDescending => "user descending",
            Scenario::KernelAscending => "kernel ascending",
        }
    }

    fn kind(self) -> LockKind {
        match self {
            Scenario::KernelAscending => LockKind::Spin,
            _ => LockKind::PthreadMutex,
        }
    }

    fn addr(self, i: usize) -> u64 {
        match self {
            Scenario::KernelAscending => KERNEL_BASE + i as u64 * 0x40,
            _ => USER_BASE + i as u64 * 0x40,
        }
    }
}

fn event(clock: &mut u64, kind: EventKind, lock: LockKind, addr: u64) -> Event {
    *clock += 100;
    let mut ev = Event::zeroed();
    ev.timestamp_ns = *clock;
    ev.kind = kind as u32;
    ev.lock_kind = lock as u32;
    ev.lock_addr = addr;
    ev.caller = CALLER;
    ev.pid = 100;
    ev.tid = 100;
    ev.context = ExecContext::Task as u32;
    ev.irqs = IrqState::Enabled as u32;
    ev.flags = flags::PREEMPT_COUNT_VALID;
    ev.kernel_stack_id = -1;
    ev.user_stack_id = -1;
    ev.comm[..5].copy_from_slice(b"bench");
    ev
}

/// The scenario's events for `n` locks.
fn events(scenario: Scenario, n: usize) -> Vec<Event> {
    let mut clock = 0;
    let lock = scenario.kind();
    let mut out = Vec::with_capacity(4 * n + 4);
    let innermost = scenario.addr(n - 1);
    if scenario == Scenario::KernelAscending {
        // The innermost lock is also taken in a hardirq: HARDIRQ-safe.
        let mut ev = event(&mut clock, EventKind::LockAcquire, lock, innermost);
        ev.context = ExecContext::Hardirq as u32;
        ev.irqs = IrqState::Disabled as u32;
        let mut release = ev;
        release.kind = EventKind::LockRelease as u32;
        out.extend([ev, release]);
    }
    let pairs: Box<dyn Iterator<Item = usize>> = match scenario {
        Scenario::UserDescending => Box::new((0..n - 1).rev()),
        _ => Box::new(0..n - 1),
    };
    for i in pairs {
        let (outer, inner) = (scenario.addr(i), scenario.addr(i + 1));
        out.push(event(&mut clock, EventKind::LockAcquire, lock, outer));
        let mut acquire = event(&mut clock, EventKind::LockAcquire, lock, inner);
        if inner == innermost && scenario == Scenario::KernelAscending {
            // spin_lock_irqsave(): an irq-safe lock is never taken with IRQs on.
            acquire.irqs = IrqState::Disabled as u32;
        }
        out.push(acquire);
        out.push(event(&mut clock, EventKind::LockRelease, lock, inner));
        out.push(event(&mut clock, EventKind::LockRelease, lock, outer));
    }
    out
}

/// Kernel locks are named, so each address is a class of its own.
fn symbols(n: usize) -> Symbols {
    let mut syms: Vec<KernelSymbol> = (0..n)
        .map(|i| KernelSymbol {
            addr: Scenario::KernelAscending.addr(i),
            kind: 'd',
            name: format!("lock_{i}"),
            module: None,
        })
        .collect();
    syms.push(KernelSymbol {
        addr: CALLER & !0xff,
        kind: 't',
        name: "take_pair".into(),
        module: None,
    });
    Symbols {
        kernel: KernelSymbols::from_symbols(syms),
        ..Symbols::default()
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let sizes: Vec<usize> = std::env::var("LOCKTRACE_BENCH_CLASSES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 20_000, 40_000]);
    println!("dependency checks by number of classes (overlapping pairs, one task)");
    println!(
        "  {:<18} {:>7} {:>10} {:>10} {:>12} {:>9} {:>7}",
        "scenario", "classes", "seconds", "engine s", "events/s", "deps", "alerts"
    );
    let mut target_met = None;
    for scenario in [
        Scenario::UserAscending,
        Scenario::UserDescending,
        Scenario::KernelAscending,
    ] {
        for &n in &sizes {
            let n = n.max(2);
            let symbols = symbols(if scenario == Scenario::KernelAscending {
                n
            } else {
                0
            });
            let events = events(scenario, n);
            let mut model = KernelModel::default();
            let mut engine = Engine::default();
            let mut facts = Vec::new();
            let mut alerts = 0;
            let mut in_engine = Duration::ZERO;
            let started = Instant::now();
            for ev in &events {
                model.process(ev, &mut facts);
                let engine_started = Instant::now();
                for fact in facts.drain(..) {
                    alerts += engine.process(&fact, &symbols).len();
                }
                in_engine += engine_started.elapsed();
            }
            let took = started.elapsed();
            let stats = engine.stats();
            println!(
                "  {:<18} {:>7} {:>10.3} {:>10.3} {:>12.0} {:>9} {:>7}",
                scenario.name(),
                stats.classes,
                took.as_secs_f64(),
                in_engine.as_secs_f64(),
                events.len() as f64 / took.as_secs_f64(),
                stats.dependencies,
                alerts
            );
            if scenario == Scenario::UserAscending && n == TARGET.0 {
                target_met = Some(took < TARGET.1);
            }
        }
    }
    match target_met {
        Some(met) => println!(
            "  target: {} user classes in under {:?}: {}",
            TARGET.0,
            TARGET.1,
            if met { "met" } else { "NOT met" }
        ),
        None => println!("  target: not measured (needs {} classes)", TARGET.0),
    }
}
