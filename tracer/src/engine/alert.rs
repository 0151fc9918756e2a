//! What the engine reports: one [`Alert`] per distinct problem, with the classes and the
//! dependency chain that prove it, and the dedup log that keeps each problem to one alert.

use rustc_hash::FxHashSet;
use serde::Serialize;
use tracer_common::{ExecContext, IrqState, LockKind};

use super::class::ClassId;
use super::trace::{TaskRef, Trace};
use super::usage::{IrqKind, UsageBit};
use crate::fact::FactRecord;
use crate::symbols::StackKey;

/// The kind of problem (lockdep's report families, plus atomic-context misuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A cycle in the lock-dependency graph ("possible circular locking dependency").
    CircularDependency,
    /// An irq-safe class depends on an irq-unsafe class.
    IrqLockInversion,
    /// One class is used in irq context and also taken with that irq enabled.
    InconsistentLockState,
    /// The same lock instance acquired again while held.
    RecursiveLocking,
    /// Something that may sleep done in atomic context.
    AtomicContext,
}

impl AlertKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [AlertKind; 5] = [
        AlertKind::CircularDependency,
        AlertKind::IrqLockInversion,
        AlertKind::InconsistentLockState,
        AlertKind::RecursiveLocking,
        AlertKind::AtomicContext,
    ];

    /// The kind whose [`AlertKind::name`] is `name` (suppression files name kinds this way).
    pub fn from_name(name: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The stable name used in JSON and fixtures, e.g. `circular_dependency`.
    pub const fn name(self) -> &'static str {
        match self {
            AlertKind::CircularDependency => "circular_dependency",
            AlertKind::IrqLockInversion => "irq_lock_inversion",
            AlertKind::InconsistentLockState => "inconsistent_lock_state",
            AlertKind::RecursiveLocking => "recursive_locking",
            AlertKind::AtomicContext => "atomic_context",
        }
    }
}

/// The atomic-context misuse an [`AlertKind::AtomicContext`] alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AtomicProblem {
    /// `vfree()` with irqs disabled, in irq context, or under a spinning lock.
    Vfree,
    /// A non-atomic per-CPU allocation (it takes `pcpu_alloc_mutex`) from irq context, with
    /// irqs disabled, or under a spinning lock.
    PcpuAlloc,
    /// A sleeping lock taken under a spinning lock, with irqs disabled or in irq context.
    SleepingLock,
}

impl AtomicProblem {
    /// The stable name used in JSON and fixtures.
    pub const fn name(self) -> &'static str {
        match self {
            AtomicProblem::Vfree => "vfree",
            AtomicProblem::PcpuAlloc => "pcpu_alloc",
            AtomicProblem::SleepingLock => "sleeping_lock",
        }
    }

    /// What may sleep, for the report's headline.
    pub const fn what(self) -> &'static str {
        match self {
            AtomicProblem::Vfree => "vfree() may sleep",
            AtomicProblem::PcpuAlloc => "non-atomic pcpu_alloc() takes pcpu_alloc_mutex",
            AtomicProblem::SleepingLock => "sleeping lock acquired",
        }
    }
}

/// One edge of an alert's chain: `from` was held when `to` was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainLink {
    /// The class held.
    pub from: ClassId,
    /// The class acquired under it.
    pub to: ClassId,
    /// True when `to` was only ever acquired for read under `from`.
    pub read: bool,
    /// The acquisition of `to` that first showed the dependency.
    pub first: Trace,
}

/// A lock the task held when the alert fired (lockdep's "N locks held by" list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldSummary {
    /// Its class.
    pub class: ClassId,
    /// Where it was acquired.
    pub caller: u64,
    /// Its lock kind.
    pub kind: LockKind,
}

/// The event that made the alert fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// The task.
    pub task: TaskRef,
    /// The CPU.
    pub cpu: u32,
    /// The context the engine placed the event in.
    pub context: ExecContext,
    /// Hardware-interrupt state.
    pub irqs: IrqState,
    /// Softirqs disabled, when the event carried a valid `preempt_count`.
    pub softirqs_disabled: Option<bool>,
    /// The call site (lock function's caller, `vfree` caller...).
    pub caller: u64,
    /// The event's stack.
    pub stack: Option<StackKey>,
    /// The class acquired, for lock events.
    pub class: Option<ClassId>,
    /// The lock kind, for lock events.
    pub lock_kind: LockKind,
    /// The event's timestamp.
    pub timestamp_ns: u64,
}

impl Trigger {
    /// The trigger of `fact` of `recording`, acquiring `class` (none for calls).
    pub fn of(fact: &FactRecord, recording: u16, class: Option<ClassId>) -> Trigger {
        Trigger {
            task: TaskRef::of(fact, recording),
            cpu: fact.cpu,
            context: fact.context,
            irqs: fact.irqs,
            softirqs_disabled: fact.softirqs_disabled(),
            caller: fact.lock.site,
            stack: fact.stack,
            class,
            lock_kind: fact.lock_kind(),
            timestamp_ns: fact.timestamp_ns,
        }
    }

    /// The trigger's acquisition as a [`Trace`], for the usage bits and dependencies it is
    /// the first of.
    pub fn trace(&self) -> Trace {
        Trace {
            task: self.task,
            caller: self.caller,
            stack: self.stack,
        }
    }
}

/// Why an alert fired, for reports that word it the way lockdep does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A new dependency: `chain[edge]` is the edge being added.
    Dependency {
        /// Index of the new edge in [`Alert::chain`].
        edge: usize,
    },
    /// A class gained a usage bit.
    Usage {
        /// The class whose state changed.
        class: ClassId,
        /// The bit it gained.
        bit: UsageBit,
    },
    /// An acquisition or a call checked on its own (recursive locking, atomic context).
    Event,
}

/// One problem found by the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// The kind of problem.
    pub kind: AlertKind,
    /// The interrupt, for irq inversion and inconsistent state.
    pub irq: Option<IrqKind>,
    /// The misuse, for atomic-context alerts.
    pub problem: Option<AtomicProblem>,
    /// The classes involved, in chain order (for irq inversion: safe first, unsafe last; for
    /// a cycle: the held lock, then the one being acquired, then the path back).
    pub classes: Vec<ClassId>,
    /// The dependency chain proving the problem, edge by edge.
    pub chain: Vec<ChainLink>,
    /// The usage pair: (irq-safe bit, irq-unsafe bit) for inversions, (bit already set, new
    /// bit) for inconsistent state.
    pub usage: Option<(UsageBit, UsageBit)>,
    /// Why it fired.
    pub cause: Cause,
    /// The event that made it fire.
    pub trigger: Trigger,
    /// The locks the triggering task held in that context, bottom first.
    pub held: Vec<HeldSummary>,
    /// Every task involved: the trigger's first, then the chain's, without repeats.
    pub tasks: Vec<TaskRef>,
}

impl Alert {
    /// Fills [`Alert::tasks`] from the trigger and the chain.
    pub(crate) fn collect_tasks(mut self) -> Alert {
        let mut tasks = vec![self.trigger.task];
        for link in &self.chain {
            if !tasks.contains(&link.first.task) {
                tasks.push(link.first.task);
            }
        }
        self.tasks = tasks;
        self
    }
}

/// What makes two alerts the same problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    kind: AlertKind,
    qualifier: u8,
    a: u64,
    b: u64,
}

impl DedupKey {
    /// A cycle: the same set of classes, whichever edge closed it.
    pub fn cycle(classes: &[ClassId]) -> DedupKey {
        let mut ids: Vec<u32> = classes.iter().map(|c| c.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let hash = ids.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, id| {
            (h ^ u64::from(*id)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        DedupKey {
            kind: AlertKind::CircularDependency,
            qualifier: 0,
            a: hash,
            b: ids.len() as u64,
        }
    }

    /// An irq inversion between a safe and an unsafe class.
    pub fn inversion(irq: IrqKind, safe: ClassId, unsafe_class: ClassId) -> DedupKey {
        DedupKey {
            kind: AlertKind::IrqLockInversion,
            qualifier: irq as u8,
            a: u64::from(safe.0),
            b: u64::from(unsafe_class.0),
        }
    }

    /// An inconsistent state of one class.
    pub fn inconsistent(irq: IrqKind, class: ClassId) -> DedupKey {
        DedupKey {
            kind: AlertKind::InconsistentLockState,
            qualifier: irq as u8,
            a: u64::from(class.0),
            b: 0,
        }
    }

    /// Recursive locking of a class.
    pub fn recursive(class: ClassId) -> DedupKey {
        DedupKey {
            kind: AlertKind::RecursiveLocking,
            qualifier: 0,
            a: u64::from(class.0),
            b: 0,
        }
    }

    /// An atomic-context misuse at a site (function address or class) under a held class.
    pub fn atomic(problem: AtomicProblem, site: u64, under: u64) -> DedupKey {
        DedupKey {
            kind: AlertKind::AtomicContext,
            qualifier: problem as u8,
            a: site,
            b: under,
        }
    }
}

/// The alerts of the current event, and every problem reported so far.
#[derive(Debug, Default)]
pub struct AlertLog {
    seen: FxHashSet<DedupKey>,
    /// Alerts produced by the event being processed.
    pub(crate) current: Vec<Alert>,
    /// Alerts produced since the engine started.
    pub(crate) total: u64,
}

impl AlertLog {
    /// True (and remembered) the first time `key` is offered.
    pub fn first(&mut self, key: DedupKey) -> bool {
        self.seen.insert(key)
    }

    /// Records a new alert for the current event.
    pub fn push(&mut self, alert: Alert) {
        self.total += 1;
        self.current.push(alert.collect_tasks());
    }
}
