//! What the engine reports: one [`Alert`] per distinct problem, with what was found (a
//! [`Finding`]) and the event and held locks it was found in, and the dedup log that keeps
//! each problem to one alert.

use rustc_hash::FxHashSet;
use tracer_common::{ExecContext, IrqState, LockKind};

use super::class::ClassId;
use super::finding::{AlertKind, AtomicContext, AtomicProblem, Finding, chain_classes};
use super::trace::{TaskRef, Trace};
use super::usage::IrqKind;
use crate::fact::FactRecord;
use crate::symbols::StackKey;

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

/// One problem found by the engine: what was found, and the task and locks it was found in.
/// Built whole by the checks; read through its accessors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    finding: Finding,
    trigger: Trigger,
    held: Vec<HeldSummary>,
    classes: Vec<ClassId>,
    tasks: Vec<TaskRef>,
}

impl Alert {
    /// The alert of `finding`, fired by `trigger` while its task held `held`.
    pub(crate) fn new(finding: Finding, trigger: Trigger, held: Vec<HeldSummary>) -> Alert {
        let classes = match &finding {
            Finding::CircularDependency(_) | Finding::IrqLockInversion(_) => {
                chain_classes(finding.chain())
            }
            Finding::InconsistentLockState(state) => vec![state.class],
            Finding::RecursiveLocking(recursive) => vec![recursive.held],
            Finding::AtomicContext(AtomicContext::SleepingLock { lock, spinning }) => {
                spinning.iter().copied().chain([*lock]).collect()
            }
            Finding::AtomicContext(AtomicContext::Vfree | AtomicContext::PcpuAlloc) => {
                held.iter().map(|h| h.class).collect()
            }
        };
        let mut tasks = vec![trigger.task];
        for link in finding.chain() {
            if !tasks.contains(&link.first.task) {
                tasks.push(link.first.task);
            }
        }
        Alert {
            finding,
            trigger,
            held,
            classes,
            tasks,
        }
    }

    /// What was found.
    pub fn finding(&self) -> &Finding {
        &self.finding
    }

    /// The kind of problem.
    pub fn kind(&self) -> AlertKind {
        self.finding.kind()
    }

    /// The event that made it fire.
    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// The locks the triggering task held in that context, bottom first.
    pub fn held(&self) -> &[HeldSummary] {
        &self.held
    }

    /// The classes involved, in chain order: for an irq inversion, the safe class first and
    /// the unsafe one last; for a cycle, the held lock, then the one being acquired, then the
    /// path back; for a call in atomic context, the locks held.
    pub fn classes(&self) -> &[ClassId] {
        &self.classes
    }

    /// Every task involved: the trigger's first, then the chain's, without repeats.
    pub fn tasks(&self) -> &[TaskRef] {
        &self.tasks
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
        self.current.push(alert);
    }
}
