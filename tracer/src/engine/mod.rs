//! lockdep's model on a stream of facts: lock classes, usage bits, the dependency graph and
//! the checks, fed one [`FactRecord`] at a time.
//!
//! Held locks, the class policy, the chain cache and the usage bits of every acquisition run
//! where the locks are taken (the BPF programs, or `crate::model` for recordings of events):
//! the engine only hears of what is new there — a chain of held classes, usage bits, a
//! recursive acquisition, a call that may sleep — with the held locks of its context.
//!
//! **Architecture invariant:** the engine knows nothing of BPF, tokio, files or the clock.
//! Time is the facts' timestamps; names come from the [`Symbols`] passed in. The same facts
//! give the same alerts, live or replayed.
//!
//! Code map, in the order a fact flows through [`Engine::process`]: [`class`] maps each held
//! lock to its class and [`held`] gives the checks their view of them;
//! [`checks::recursive`] reports a recursive acquisition; [`usage`] records new usage bits and
//! [`checks::irq`] checks them; a new chain goes through [`checks::atomic`] for sleeping locks,
//! then [`chain`] skips chains already validated (several of the programs' chains can be one
//! of the engine's), otherwise [`graph`] gains the new dependencies and [`checks::circular`]
//! and [`checks::irq`] search it. Calls go to [`checks::atomic`]. Each problem found is a
//! [`finding::Finding`], reported as an [`alert::Alert`].

pub mod alert;
pub mod chain;
pub mod checks;
pub mod class;
pub mod finding;
pub mod graph;
pub mod held;
pub mod trace;
pub mod usage;

use petgraph::graph::EdgeIndex;
use serde::Serialize;
use tracer_common::{ClassDesc, EventKind, FactKind, LockKind, fact::news, flags};

pub use alert::Alert;
pub use class::{ClassId, ClassKey, ClassSource, LockClass, MatchStats};
pub use finding::{AlertKind, AtomicContext, AtomicProblem, Finding};
pub use graph::Dependency;
pub use trace::{TaskRef, Trace};
pub use usage::{IrqKind, UsageBit, UsageMask};

use alert::{AlertLog, Trigger};
use chain::{ChainCache, ChainKey};
use checks::CheckCtx;
use class::ClassTable;
use graph::{Added, DepGraph, DepKinds};
use held::HeldLock;

use crate::{
    fact::FactRecord,
    symbols::{PinnedNames, StackKey, StackSpace, Symbols},
};

/// What the engine has seen and built.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Facts processed.
    pub facts: u64,
    /// Acquisition facts (new chains, usage bits, recursive acquisitions).
    pub acquire_facts: u64,
    /// Call facts (`pcpu_alloc`, `free_percpu`, `vfree`).
    pub call_facts: u64,
    /// Facts of a kind (or lock kind) this build does not know.
    pub unknown_facts: u64,
    /// Lock classes.
    pub classes: u64,
    /// Dependencies (graph edges).
    pub dependencies: u64,
    /// Lock chains validated.
    pub chains: u64,
    /// Alerts produced.
    pub alerts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    facts: u64,
    acquisitions: u64,
    calls: u64,
    unknown_facts: u64,
}

/// The lock-dependency engine.
///
/// It reads one recording (or a live session), or several one after the other when built
/// with [`Engine::merging`]: then classes with the same stable name in different recordings
/// are one class, so dependencies seen in different recordings meet in one graph.
#[derive(Debug, Default)]
pub struct Engine {
    recording: u16,
    classes: ClassTable,
    graph: DepGraph,
    chains: ChainCache,
    log: AlertLog,
    counters: Counters,
    held: Vec<HeldLock>,
    scratch: Vec<EdgeIndex>,
}

impl Engine {
    /// An engine for several recordings, fed one after the other (see
    /// [`Engine::start_recording`]), that matches their classes by stable name
    /// (`class::stable_name`); classes with none stay apart per recording.
    pub fn merging() -> Engine {
        Engine {
            classes: ClassTable::merging(),
            ..Engine::default()
        }
    }

    /// The facts fed from now on are those of recording `recording` (numbered from 0, in the
    /// order given): their addresses, pids and stacks are that recording's.
    pub fn start_recording(&mut self, recording: u16) {
        self.recording = recording;
        self.classes.start_recording(recording);
    }

    /// The recording whose facts are being fed (0 unless several are).
    pub fn recording(&self) -> u16 {
        self.recording
    }

    /// How a merging engine matched classes across recordings.
    pub fn match_stats(&self) -> MatchStats {
        self.classes.match_stats()
    }

    /// The class `recording`'s class `key` became, if seen.
    pub fn class_by_key(&self, recording: u16, key: ClassKey) -> Option<ClassId> {
        self.classes.by_key(recording, key)
    }

    /// Feeds one fact; returns the alerts it produced (usually none).
    pub fn process(&mut self, fact: &FactRecord, symbols: &Symbols) -> &[Alert] {
        self.log.current.clear();
        self.counters.facts += 1;
        match fact.kind {
            FactKind::Acquire => self.acquire(fact, symbols),
            FactKind::Call => self.call(fact, symbols),
        }
        &self.log.current
    }

    /// Resolves the held locks of `fact` into `self.held`. An entry past its staleness bound
    /// is a missed release the programs have not dropped yet (they do when its task switches
    /// out): it is not held.
    fn resolve_held(&mut self, fact: &FactRecord, symbols: &Symbols) {
        self.held.clear();
        for lock in fact.held.iter().filter(|l| !l.is_stale(fact.timestamp_ns)) {
            let (class, created) = self.classes.resolve(lock, symbols);
            if created {
                self.graph.ensure_class(class);
            }
            self.held.push(HeldLock {
                addr: lock.addr,
                caller: lock.site,
                class,
                kind: lock.lock_kind(),
                trylock: lock.is_trylock(),
            });
        }
    }

    fn acquire(&mut self, fact: &FactRecord, symbols: &Symbols) {
        let kind = fact.lock_kind();
        if kind == LockKind::None {
            self.counters.unknown_facts += 1;
            return;
        }
        self.counters.acquisitions += 1;
        let (class, created) = self.classes.resolve(&fact.lock, symbols);
        if created {
            self.graph.ensure_class(class);
        }
        self.resolve_held(fact, symbols);
        let trigger = Trigger::of(fact, self.recording, Some(class));
        let lock = HeldLock {
            addr: fact.lock.addr,
            caller: fact.lock.site,
            class,
            kind,
            trylock: fact.lock.is_trylock(),
        };
        if fact.brings(news::RECURSIVE) {
            self.recursive(&lock, &trigger);
        }
        if fact.brings(news::NEW_USAGE) {
            self.new_usage(class, UsageMask(fact.arg as u8), &trigger);
        }
        if fact.brings(news::NEW_CHAIN) {
            self.new_chain(&lock, &trigger);
        }
    }

    /// Reports `lock` acquired again while held; the earlier acquisition of the instance then
    /// leaves the held locks the chain is built from.
    fn recursive(&mut self, lock: &HeldLock, trigger: &Trigger) {
        let Some(i) = self.held.iter().rposition(|h| h.addr == lock.addr) else {
            return;
        };
        let old = self.held[i];
        let mut ctx = CheckCtx {
            classes: &self.classes,
            graph: &self.graph,
            log: &mut self.log,
        };
        checks::recursive::report(&mut ctx, &old, lock.class, trigger, &self.held);
        self.held.remove(i);
    }

    /// Records the bits of `usage` that `class` did not have, and checks them.
    fn new_usage(&mut self, class: ClassId, usage: UsageMask, trigger: &Trigger) {
        let class_usage = &mut self.classes.get_mut(class).usage;
        if usage.without(class_usage.mask).is_empty() {
            return;
        }
        let new = class_usage.mark(usage, trigger.trace());
        let mut ctx = CheckCtx {
            classes: &self.classes,
            graph: &self.graph,
            log: &mut self.log,
        };
        checks::irq::usage_changed(&mut ctx, class, new, trigger, &self.held);
    }

    /// A chain the programs had not reported: checks a sleeping `lock` against the held
    /// locks, then adds its dependencies unless the engine's own chain cache has this chain of
    /// its classes already.
    fn new_chain(&mut self, lock: &HeldLock, trigger: &Trigger) {
        if lock.kind.is_sleeping() {
            let mut ctx = CheckCtx {
                classes: &self.classes,
                graph: &self.graph,
                log: &mut self.log,
            };
            checks::atomic::sleeping_lock(&mut ctx, trigger, lock.class, &self.held);
        }
        // Trylocks add no dependency: they cannot wait, so their order cannot deadlock.
        if lock.trylock || self.held.is_empty() {
            return;
        }
        let key = self
            .held
            .iter()
            .chain([lock])
            .fold(ChainKey::EMPTY, |key, l| key.extend(l.hlock_id()));
        if let Some(edges) = self.chains.get(key) {
            for &edge in edges {
                self.graph.bump(edge);
            }
            return;
        }
        self.add_dependencies(lock, trigger);
        self.chains.insert(key, &self.scratch);
    }

    /// Adds the dependencies of acquiring `lock` under the held locks (lockdep's
    /// `check_prevs_add`), and keeps their edges in `scratch`: from the top held lock, and
    /// through it from each trylock below until the first non-trylock, whose own earlier
    /// dependencies already connect the rest. Same-class nesting adds no edge: without
    /// lockdep's nesting annotations two instances of one class are not ordered.
    fn add_dependencies(&mut self, lock: &HeldLock, trigger: &Trigger) {
        self.scratch.clear();
        let recursive_read = lock.kind.is_recursive_read();
        let first = trigger.trace();
        for prev in self.held.iter().rev() {
            if prev.class != lock.class {
                let kinds = DepKinds::of(prev.kind.is_read(), recursive_read);
                let write = !lock.kind.is_read();
                let (edge, added) = self.graph.add(prev.class, lock.class, kinds, write, first);
                self.scratch.push(edge);
                if added != Added::Known {
                    let mut ctx = CheckCtx {
                        classes: &self.classes,
                        graph: &self.graph,
                        log: &mut self.log,
                    };
                    let held = &self.held;
                    checks::circular::new_dependency(
                        &mut ctx,
                        prev,
                        edge,
                        recursive_read,
                        trigger,
                        held,
                    );
                    checks::irq::new_dependency(
                        &mut ctx,
                        prev,
                        edge,
                        recursive_read,
                        trigger,
                        held,
                    );
                }
            }
            if !prev.trylock {
                break;
            }
        }
    }

    fn call(&mut self, fact: &FactRecord, symbols: &Symbols) {
        self.counters.calls += 1;
        let call = match fact.call() {
            Some(EventKind::Vfree) => AtomicContext::Vfree,
            Some(EventKind::PcpuAlloc) if !fact.has(flags::ATOMIC) => AtomicContext::PcpuAlloc,
            Some(_) => return,
            None => {
                self.counters.unknown_facts += 1;
                return;
            }
        };
        self.resolve_held(fact, symbols);
        let trigger = Trigger::of(fact, self.recording, None);
        let mut ctx = CheckCtx {
            classes: &self.classes,
            graph: &self.graph,
            log: &mut self.log,
        };
        checks::atomic::sleeping_call(&mut ctx, call, &trigger, &self.held, symbols);
    }

    /// Counts and sizes.
    pub fn stats(&self) -> EngineStats {
        let c = &self.counters;
        EngineStats {
            facts: c.facts,
            acquire_facts: c.acquisitions,
            call_facts: c.calls,
            unknown_facts: c.unknown_facts,
            classes: self.classes.len() as u64,
            dependencies: self.graph.len() as u64,
            chains: self.chains.len() as u64,
            alerts: self.log.total,
        }
    }

    /// Adds to `pinned` the user-space names of the processes `pids` that the engine still
    /// refers to, for alerts to come: its classes' first instances and sites, and the stacks
    /// and sites of the first traces of dependencies and usage bits. The rest of those
    /// processes' names can go when they are gone.
    pub fn pin_names(&self, pids: &std::collections::HashSet<u32>, pinned: &mut PinnedNames) {
        let mut trace = |stack: Option<StackKey>, pid: u32, caller: u64| {
            if !pids.contains(&pid) {
                return;
            }
            pinned.addresses.insert((pid, caller));
            if let Some(stack) = stack.filter(|key| key.space == StackSpace::User) {
                pinned.stacks.insert(stack);
            }
        };
        for class in self.classes.all() {
            trace(None, class.first_pid, class.first_caller);
            trace(None, class.first_pid, class.first_addr);
            for usage in class.usage.traces() {
                trace(usage.stack, usage.task.pid, usage.caller);
            }
        }
        for (_, _, dependency, _) in self.graph.edges() {
            let first = &dependency.first;
            trace(first.stack, first.task.pid, first.caller);
        }
    }

    /// A class by id.
    pub fn class(&self, id: ClassId) -> &LockClass {
        self.classes.get(id)
    }

    /// Every class, by id.
    pub fn classes(&self) -> &[LockClass] {
        self.classes.all()
    }

    /// The class the programs' `desc` of `recording` stands for, if seen (contention figures
    /// are keyed so).
    pub fn find_class(
        &self,
        desc: &ClassDesc,
        symbols: &Symbols,
        recording: u16,
    ) -> Option<ClassId> {
        self.classes.find(desc, symbols, recording)
    }

    /// The dependency `from → to` and how many times a new chain exercised it, if seen.
    pub fn dependency(&self, from: ClassId, to: ClassId) -> Option<(&Dependency, u64)> {
        self.graph.find(from, to)
    }

    /// Every dependency as (from, to, data, count), in order of first sight.
    pub fn dependencies(&self) -> impl Iterator<Item = (ClassId, ClassId, &Dependency, u64)> {
        self.graph.edges()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use tracer_common::{EventKind, LockKind};

    use crate::report::testing;
    use crate::symbols::{PinnedNames, StackKey, Symbols, UserObject};

    /// Of a gone process, the engine pins what it refers to: the first instance and site of
    /// the classes the process showed first, the stack and site of the dependency it showed
    /// first. A second run of the same binary, which brings nothing new, pins nothing.
    #[test]
    fn only_first_sightings_pin_a_process_names() {
        let mut symbols = Symbols::default();
        let mut events = Vec::new();
        for pid in [1, 2] {
            for (addr, name) in [(0x10, "lock_a"), (0x20, "lock_b")] {
                symbols.user_locks.insert((pid, addr), name.into());
                symbols.user_lock_objects.insert(
                    (pid, addr),
                    UserObject {
                        path: "/usr/bin/app".into(),
                        build_id: None,
                    },
                );
            }
            for (kind, addr) in [
                (EventKind::LockAcquire, 0x10),
                (EventKind::LockAcquire, 0x20),
                (EventKind::LockRelease, 0x20),
                (EventKind::LockRelease, 0x10),
            ] {
                let mut event = testing::event(kind, pid, addr, 0);
                event.lock_kind = LockKind::PthreadMutex as u32;
                event.caller = 0x400 + addr;
                events.push(event);
            }
        }
        let (engine, _) = testing::alerts(&events, &symbols, |fact| {
            fact.stack = Some(StackKey::user(fact.pid, 7));
        });
        assert_eq!(
            (engine.stats().classes, engine.stats().dependencies),
            (2, 1)
        );
        let pinned = |pid| {
            let mut pinned = PinnedNames::default();
            engine.pin_names(&HashSet::from([pid]), &mut pinned);
            pinned
        };
        let first = pinned(1);
        assert_eq!(first.stacks, HashSet::from([StackKey::user(1, 7)]));
        assert_eq!(
            first.addresses,
            HashSet::from([(1, 0x10), (1, 0x410), (1, 0x20), (1, 0x420)])
        );
        let second = pinned(2);
        assert!(
            second.stacks.is_empty() && second.addresses.is_empty(),
            "{second:?}"
        );
    }
}
