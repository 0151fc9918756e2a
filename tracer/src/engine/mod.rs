//! lockdep's model on an event stream: lock classes, held-lock stacks, usage bits, the
//! dependency graph and the checks, fed one [`tracer_common::Event`] at a time.
//!
//! **Architecture invariant:** the engine knows nothing of BPF, tokio, files or the clock.
//! Time is the events' timestamps; names come from the [`Symbols`] passed in. The same events
//! give the same alerts, live or replayed.
//!
//! Code map, in the order an acquisition flows through [`Engine::process`]:
//! [`held`] places the event (task, softirq, hardirq, NMI) and expires stale entries;
//! [`class`] maps the lock to its class; [`checks::recursive`] and [`checks::atomic`] look at
//! the acquisition itself; [`usage`] records irq usage and [`checks::irq`] checks it;
//! [`chain`] skips chains already validated, otherwise [`graph`] gains the new dependencies
//! and [`checks::circular`] and [`checks::irq`] search it. Findings are [`alert::Alert`]s.

pub mod alert;
pub mod chain;
pub mod checks;
pub mod class;
pub mod graph;
pub mod held;
pub mod usage;

use petgraph::graph::EdgeIndex;
use serde::Serialize;
use tracer_common::{Event, EventKind, ExecContext, LockKind, flags};

pub use alert::{Alert, AlertKind, AtomicProblem, IrqKind};
pub use class::{ClassId, ClassSource, LockClass};
pub use graph::Dependency;
pub use usage::{UsageBit, UsageMask};

use alert::{AlertLog, TaskRef, Trigger, event_stack};
use chain::ChainCache;
use checks::CheckCtx;
use checks::recursive::Reacquire;
use class::ClassTable;
use graph::{Added, DepGraph, DepKinds, DepTrace};
use held::{HeldLock, HeldLocks, Place};
use usage::UsageTrace;

use crate::symbols::Symbols;

/// Tunables of the engine. The defaults suit a live kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineConfig {
    /// Most locks one stack holds (lockdep's `MAX_LOCK_DEPTH`); past it the bottom entry is
    /// dropped and counted in [`EngineStats::held_overflow`].
    pub max_lock_depth: usize,
    /// A spinning lock held longer than this (event time) is a missed release.
    pub stale_spin_ns: u64,
    /// A sleeping or user-space lock held longer than this is a missed release.
    pub stale_sleep_ns: u64,
    /// A spinning lock under which the same stack made this many acquisitions is a missed
    /// release.
    pub stale_spin_acquisitions: u64,
    /// Most lock addresses remembered for the address → class cache before it is emptied.
    pub addr_cache_limit: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            max_lock_depth: 48,
            stale_spin_ns: 1_000_000_000,
            stale_sleep_ns: 600_000_000_000,
            stale_spin_acquisitions: 100_000,
            addr_cache_limit: 1 << 20,
        }
    }
}

/// What the engine has seen and built.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Events processed.
    pub events: u64,
    /// Lock acquisitions.
    pub acquisitions: u64,
    /// Lock releases.
    pub releases: u64,
    /// Events of a kind (or lock kind) this build does not know.
    pub unknown_events: u64,
    /// Lock classes.
    pub classes: u64,
    /// Dependencies (graph edges).
    pub dependencies: u64,
    /// Lock chains validated.
    pub chains: u64,
    /// Alerts produced.
    pub alerts: u64,
    /// Held entries dropped as stale: expired, left behind by an irq handler, or re-acquired
    /// after a missed release.
    pub stale_held: u64,
    /// Held entries dropped because a stack reached its maximum depth.
    pub held_overflow: u64,
    /// Releases of locks not held where the release ran.
    pub unmatched_release: u64,
    /// Kernel locks released by another task than the one that acquired them (the
    /// scheduler's runqueue lock at every context switch), moved out of the holder's stack.
    pub handoff_release: u64,
    /// Times the held-lock state was dropped because events had been lost before an event.
    pub loss_resets: u64,
    /// Times the address → class cache was emptied at its limit.
    pub addr_cache_flushes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    events: u64,
    acquisitions: u64,
    releases: u64,
    unknown_events: u64,
    stale_held: u64,
    held_overflow: u64,
    unmatched_release: u64,
    handoff_release: u64,
    loss_resets: u64,
}

/// The lock-dependency engine.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    classes: ClassTable,
    graph: DepGraph,
    chains: ChainCache,
    held: HeldLocks,
    log: AlertLog,
    counters: Counters,
    scratch: Vec<EdgeIndex>,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new(EngineConfig::default())
    }
}

impl Engine {
    /// An engine that has seen nothing.
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            classes: ClassTable::new(config.addr_cache_limit),
            config,
            graph: DepGraph::default(),
            chains: ChainCache::default(),
            held: HeldLocks::default(),
            log: AlertLog::default(),
            counters: Counters::default(),
            scratch: Vec::new(),
        }
    }

    /// Feeds one event; returns the alerts it produced (usually none). Allocation-free unless
    /// the event brings a new class, chain, task or problem.
    pub fn process(&mut self, ev: &Event, symbols: &Symbols) -> &[Alert] {
        self.log.current.clear();
        self.counters.events += 1;
        let Some(kind) = ev.event_kind() else {
            self.counters.unknown_events += 1;
            return &self.log.current;
        };
        if ev.has(flags::AFTER_LOSS) {
            // Events were lost just before this one (the ring was full): a lost release would
            // leave a lock held forever and fake recursion and dependencies. Trust nothing held
            // from before the hole; this loses real dependencies, never invents one.
            self.counters.stale_held += self.held.clear_all();
            self.counters.loss_resets += 1;
        }
        let (context, dropped) = self.held.enter(ev, kind);
        self.counters.stale_held += dropped;
        match kind {
            EventKind::LockAcquire => self.acquire(ev, context, symbols),
            EventKind::LockRelease => self.release(ev, context),
            EventKind::ContentionBegin => self.contention(ev, context),
            EventKind::Vfree => self.sleeping_call(AtomicProblem::Vfree, ev, context, symbols),
            EventKind::PcpuAlloc if !ev.has(flags::ATOMIC) => {
                self.sleeping_call(AtomicProblem::PcpuAlloc, ev, context, symbols)
            }
            EventKind::PcpuAlloc
            | EventKind::PcpuFree
            | EventKind::ContentionEnd
            | EventKind::HardirqEntry
            | EventKind::HardirqExit
            | EventKind::SoftirqEntry
            | EventKind::SoftirqExit => {}
        }
        &self.log.current
    }

    fn acquire(&mut self, ev: &Event, context: ExecContext, symbols: &Symbols) {
        let kind = ev.lock_kind();
        if kind == LockKind::None {
            self.counters.unknown_events += 1;
            return;
        }
        self.counters.acquisitions += 1;
        let Engine {
            config,
            classes,
            graph,
            chains,
            held,
            log,
            counters,
            scratch,
        } = self;
        let (class, created) = classes.resolve(ev, kind, symbols);
        if created {
            graph.ensure_class(class);
        }
        let place = Place::of(ev, context);
        if !kind.is_user() && held.acquired_elsewhere(ev.lock_addr, place, !kind.is_read()) {
            counters.stale_held += 1;
        }
        let stack = held.stack_mut(place);
        let task = matches!(place, Place::Task(_));
        counters.stale_held += stack.expire(ev.timestamp_ns, ev.cpu, task, config);
        let trylock = ev.has(flags::TRYLOCK);
        // Built only off the fast path: when something is checked in depth.
        let trigger = || Trigger::of(ev, context, Some(class));

        if let Some(i) = stack.position(ev.lock_addr) {
            let old = stack.locks()[i];
            match checks::recursive::classify(&old, kind, trylock) {
                Reacquire::Nested => {}
                Reacquire::Stale => {
                    stack.remove(i);
                    counters.stale_held += 1;
                }
                Reacquire::Recursive => {
                    let mut ctx = CheckCtx {
                        classes,
                        graph,
                        log,
                    };
                    checks::recursive::report(&mut ctx, &old, &trigger(), stack.locks());
                    stack.remove(i);
                }
            }
        }
        if kind.is_sleeping() {
            let mut ctx = CheckCtx {
                classes,
                graph,
                log,
            };
            checks::atomic::sleeping_lock(&mut ctx, ev, context, class, stack.locks());
        }

        let usage = usage::acquisition_usage(ev, kind, context);
        if !usage.without(classes.get(class).usage.mask).is_empty() {
            let trigger = trigger();
            let trace = UsageTrace {
                stack: trigger.stack,
                task: trigger.task,
                caller: ev.caller,
            };
            let new = classes.get_mut(class).usage.mark(usage, trace);
            let mut ctx = CheckCtx {
                classes,
                graph,
                log,
            };
            checks::irq::usage_changed(&mut ctx, class, new, &trigger, stack.locks());
        }

        let mut lock = HeldLock {
            addr: ev.lock_addr,
            caller: ev.caller,
            acquired_ns: ev.timestamp_ns,
            acquired_at: stack.acquisitions,
            chain_key: chain::ChainKey::EMPTY,
            class,
            cpu: ev.cpu,
            kind,
            trylock,
        };
        lock.chain_key = stack.chain_key().extend(lock.hlock_id());
        // Trylocks add no dependency: they cannot wait, so their order cannot deadlock.
        if !trylock && !stack.is_empty() {
            if let Some(edges) = chains.get(lock.chain_key) {
                for &edge in edges {
                    graph.bump(edge);
                }
            } else {
                scratch.clear();
                add_dependencies(
                    classes,
                    graph,
                    log,
                    scratch,
                    ev,
                    &lock,
                    &trigger(),
                    stack.locks(),
                );
                chains.insert(lock.chain_key, scratch);
            }
        }
        if stack.push(lock, config.max_lock_depth) {
            counters.held_overflow += 1;
        }
    }

    fn release(&mut self, ev: &Event, context: ExecContext) {
        self.counters.releases += 1;
        if !ev.lock_kind().is_user() {
            self.held.released(ev.lock_addr);
        }
        let place = Place::of(ev, context);
        let released = self
            .held
            .stack_existing(place)
            .is_some_and(|stack| stack.release(ev.lock_addr));
        if released {
            return;
        }
        // Released by another task than the one that took it: the scheduler hands the
        // runqueue lock from the task switching out to the task switching in (lockdep moves
        // it explicitly at the switch), and semaphores may be released by non-owners. Left
        // in the first task's stack it would poison every later acquisition there.
        if !ev.lock_kind().is_user() && self.held.release_in_any_task(ev.lock_addr) {
            self.counters.handoff_release += 1;
        } else {
            self.counters.unmatched_release += 1;
        }
    }

    /// A wait on a lock the waiter already holds (and that is not a reader waiting on a
    /// read-held lock) is a recursive acquisition caught in the act.
    fn contention(&mut self, ev: &Event, context: ExecContext) {
        /// `lock:contention_begin` flag for a reader.
        const LCB_F_READ: u64 = 2;
        let place = Place::of(ev, context);
        let Some(stack) = self.held.stack_existing(place) else {
            return;
        };
        let task = matches!(place, Place::Task(_));
        self.counters.stale_held += stack.expire(ev.timestamp_ns, ev.cpu, task, &self.config);
        let Some(i) = stack.position(ev.lock_addr) else {
            return;
        };
        let old = stack.locks()[i];
        if old.kind.is_read() && ev.arg & LCB_F_READ != 0 {
            return;
        }
        let trigger = Trigger::of(ev, context, Some(old.class));
        let mut ctx = CheckCtx {
            classes: &self.classes,
            graph: &self.graph,
            log: &mut self.log,
        };
        checks::recursive::report(&mut ctx, &old, &trigger, stack.locks());
    }

    fn sleeping_call(
        &mut self,
        problem: AtomicProblem,
        ev: &Event,
        context: ExecContext,
        symbols: &Symbols,
    ) {
        let place = Place::of(ev, context);
        let task = matches!(place, Place::Task(_));
        let locks = match self.held.stack_existing(place) {
            Some(stack) => {
                // A stale spinlock must not make a legal call look atomic.
                self.counters.stale_held +=
                    stack.expire(ev.timestamp_ns, ev.cpu, task, &self.config);
                stack.locks()
            }
            None => &[],
        };
        let mut ctx = CheckCtx {
            classes: &self.classes,
            graph: &self.graph,
            log: &mut self.log,
        };
        checks::atomic::sleeping_call(&mut ctx, problem, ev, context, locks, symbols);
    }

    /// Counts and sizes.
    pub fn stats(&self) -> EngineStats {
        let c = &self.counters;
        EngineStats {
            events: c.events,
            acquisitions: c.acquisitions,
            releases: c.releases,
            unknown_events: c.unknown_events,
            classes: self.classes.len() as u64,
            dependencies: self.graph.len() as u64,
            chains: self.chains.len() as u64,
            alerts: self.log.total,
            stale_held: c.stale_held,
            held_overflow: c.held_overflow,
            unmatched_release: c.unmatched_release,
            handoff_release: c.handoff_release,
            loss_resets: c.loss_resets,
            addr_cache_flushes: self.classes.addr_cache_flushes,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A class by id.
    pub fn class(&self, id: ClassId) -> &LockClass {
        self.classes.get(id)
    }

    /// Every class, by id.
    pub fn classes(&self) -> &[LockClass] {
        self.classes.all()
    }

    /// The dependency `from → to` and the number of acquisitions that exercised it, if seen.
    pub fn dependency(&self, from: ClassId, to: ClassId) -> Option<(&Dependency, u64)> {
        self.graph.find(from, to)
    }

    /// Every dependency as (from, to, data, count), in order of first sight.
    pub fn dependencies(&self) -> impl Iterator<Item = (ClassId, ClassId, &Dependency, u64)> {
        self.graph.edges()
    }
}

/// Adds the dependencies of acquiring `lock` under `held` (lockdep's `check_prevs_add`): from
/// the top held lock, and through it from each trylock below until the first non-trylock,
/// whose own earlier dependencies already connect the rest. Same-class nesting adds no edge:
/// without lockdep's nesting annotations two instances of one class are not ordered.
#[allow(clippy::too_many_arguments)]
fn add_dependencies(
    classes: &ClassTable,
    graph: &mut DepGraph,
    log: &mut AlertLog,
    edges: &mut Vec<EdgeIndex>,
    ev: &Event,
    lock: &HeldLock,
    trigger: &Trigger,
    held: &[HeldLock],
) {
    let recursive_read = lock.kind.is_recursive_read();
    for prev in held.iter().rev() {
        if prev.class != lock.class {
            let kinds = DepKinds::of(prev.kind.is_read(), recursive_read);
            let first = DepTrace {
                stack: event_stack(ev, lock.kind.is_user()),
                task: TaskRef::of(ev),
                caller: ev.caller,
            };
            let (edge, added) =
                graph.add(prev.class, lock.class, kinds, !lock.kind.is_read(), first);
            edges.push(edge);
            if added != Added::Known {
                let mut ctx = CheckCtx {
                    classes,
                    graph,
                    log,
                };
                checks::circular::new_dependency(
                    &mut ctx,
                    prev,
                    edge,
                    recursive_read,
                    trigger,
                    held,
                );
                checks::irq::new_dependency(&mut ctx, prev, edge, recursive_read, trigger, held);
            }
        }
        if !prev.trylock {
            break;
        }
    }
}
