//! What an alert found, one type per lockdep report ([`CircularDependency`],
//! [`IrqLockInversion`], [`InconsistentLockState`], [`RecursiveLocking`], and
//! [`AtomicContext`] misuse), each holding everything its report prints, so that none can be
//! built with a part missing.

use serde::Serialize;

use super::class::ClassId;
use super::trace::Trace;
use super::usage::{IrqKind, UsageBit};

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

/// The classes along a chain: the first `from`, then every `to`, without repeating the start
/// when the chain is a cycle.
pub fn chain_classes(chain: &[ChainLink]) -> Vec<ClassId> {
    let mut classes: Vec<ClassId> = chain.first().map(|l| l.from).into_iter().collect();
    for link in chain {
        if !classes.contains(&link.to) {
            classes.push(link.to);
        }
    }
    classes
}

/// A new dependency closes a cycle that can deadlock (lockdep's `check_noncircular`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircularDependency {
    /// The cycle, edge by edge: first the new dependency (the held lock, then the lock being
    /// acquired), then the existing path from the lock being acquired back to the held one.
    pub chain: Vec<ChainLink>,
}

/// How an irq lock inversion came to light.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InversionCause {
    /// A new dependency connected the two classes: it is `chain[edge]`.
    NewDependency {
        /// Index of the new edge in [`IrqLockInversion::chain`].
        edge: usize,
    },
    /// A class already connected to the other one gained the usage bit `bit`.
    NewUsage {
        /// The class whose state changed: the irq-safe class or the irq-unsafe one.
        class: ClassId,
        /// The bit it gained.
        bit: UsageBit,
    },
}

/// An irq-safe class depends, directly or through other classes, on an irq-unsafe one
/// (lockdep's `check_irq_usage` and `mark_lock_irq`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqLockInversion {
    /// The class used in irq context.
    pub safe: ClassId,
    /// The usage bit that makes it irq-safe.
    pub safe_bit: UsageBit,
    /// The class taken with that irq enabled.
    pub unsafe_class: ClassId,
    /// The usage bit that makes it irq-unsafe.
    pub unsafe_bit: UsageBit,
    /// The dependencies from `safe` to `unsafe_class`, edge by edge.
    pub chain: Vec<ChainLink>,
    /// How it came to light.
    pub cause: InversionCause,
}

impl IrqLockInversion {
    /// The interrupt the two usage bits are about.
    pub fn irq(&self) -> IrqKind {
        self.safe_bit.irq()
    }
}

/// One class used in irq context and also taken with that irq enabled (lockdep's
/// "inconsistent lock state").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InconsistentLockState {
    /// The class.
    pub class: ClassId,
    /// The usage bit it already had.
    pub old: UsageBit,
    /// The bit it just gained, which conflicts with `old`.
    pub new: UsageBit,
}

/// A lock instance acquired (or waited for) again while held (lockdep's `check_deadlock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecursiveLocking {
    /// The class of the held instance.
    pub held: ClassId,
    /// The class of the acquisition that found it held.
    pub acquiring: ClassId,
}

/// The atomic-context misuse an [`AlertKind::AtomicContext`] alert is about, as JSON, the
/// fixtures and the dedup log name it.
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

/// Something that may sleep done where sleeping is forbidden: in irq context, with irqs
/// disabled, or under a spinning lock (the kernel's `might_sleep()` splat).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomicContext {
    /// A `vfree()` call.
    Vfree,
    /// A non-atomic `pcpu_alloc()` call.
    PcpuAlloc,
    /// A sleeping lock acquired.
    SleepingLock {
        /// Its class.
        lock: ClassId,
        /// The innermost spinning lock held, if one was.
        spinning: Option<ClassId>,
    },
}

impl AtomicContext {
    /// The misuse, as JSON and the fixtures name it.
    pub const fn problem(self) -> AtomicProblem {
        match self {
            AtomicContext::Vfree => AtomicProblem::Vfree,
            AtomicContext::PcpuAlloc => AtomicProblem::PcpuAlloc,
            AtomicContext::SleepingLock { .. } => AtomicProblem::SleepingLock,
        }
    }
}

/// Why an alert fired, whatever its kind, for reports that word it the way lockdep does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A new dependency: `chain[edge]` is the edge being added.
    Dependency {
        /// Index of the new edge in [`Finding::chain`].
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

/// What an alert found: one variant per [`AlertKind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// See [`CircularDependency`].
    CircularDependency(CircularDependency),
    /// See [`IrqLockInversion`].
    IrqLockInversion(IrqLockInversion),
    /// See [`InconsistentLockState`].
    InconsistentLockState(InconsistentLockState),
    /// See [`RecursiveLocking`].
    RecursiveLocking(RecursiveLocking),
    /// See [`AtomicContext`].
    AtomicContext(AtomicContext),
}

impl Finding {
    /// Its kind.
    pub const fn kind(&self) -> AlertKind {
        match self {
            Finding::CircularDependency(_) => AlertKind::CircularDependency,
            Finding::IrqLockInversion(_) => AlertKind::IrqLockInversion,
            Finding::InconsistentLockState(_) => AlertKind::InconsistentLockState,
            Finding::RecursiveLocking(_) => AlertKind::RecursiveLocking,
            Finding::AtomicContext(_) => AlertKind::AtomicContext,
        }
    }

    /// The interrupt, for irq inversions and inconsistent states.
    pub fn irq(&self) -> Option<IrqKind> {
        match self {
            Finding::IrqLockInversion(inversion) => Some(inversion.irq()),
            Finding::InconsistentLockState(state) => Some(state.new.irq()),
            _ => None,
        }
    }

    /// The misuse, for atomic-context alerts.
    pub fn atomic_problem(&self) -> Option<AtomicProblem> {
        match self {
            Finding::AtomicContext(misuse) => Some(misuse.problem()),
            _ => None,
        }
    }

    /// The usage pair: (irq-safe bit, irq-unsafe bit) for inversions, (bit already set, new
    /// bit) for inconsistent states.
    pub fn usage(&self) -> Option<(UsageBit, UsageBit)> {
        match self {
            Finding::IrqLockInversion(inversion) => {
                Some((inversion.safe_bit, inversion.unsafe_bit))
            }
            Finding::InconsistentLockState(state) => Some((state.old, state.new)),
            _ => None,
        }
    }

    /// The dependency chain that proves it, edge by edge (empty for the kinds that need none).
    pub fn chain(&self) -> &[ChainLink] {
        match self {
            Finding::CircularDependency(cycle) => &cycle.chain,
            Finding::IrqLockInversion(inversion) => &inversion.chain,
            _ => &[],
        }
    }

    /// Why it fired.
    pub fn cause(&self) -> Cause {
        match self {
            Finding::CircularDependency(_) => Cause::Dependency { edge: 0 },
            Finding::IrqLockInversion(inversion) => match inversion.cause {
                InversionCause::NewDependency { edge } => Cause::Dependency { edge },
                InversionCause::NewUsage { class, bit } => Cause::Usage { class, bit },
            },
            Finding::InconsistentLockState(state) => Cause::Usage {
                class: state.class,
                bit: state.new,
            },
            Finding::RecursiveLocking(_) | Finding::AtomicContext(_) => Cause::Event,
        }
    }
}
