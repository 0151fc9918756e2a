//! A fact as user space keeps it: the ring buffer's [`tracer_common::Fact`] with its stack
//! named (a [`StackKey`] into [`crate::symbols::Symbols`]) and its held locks in a vector.
//! The engine consumes these, the trace file stores them, and the model of the kernel side
//! (`crate::model`) makes them from raw events.

use tracer_common::{
    EventKind, ExecContext, Fact, FactKind, HeldLock, IrqState, LockKind, fact::news, flags,
};

use crate::symbols::StackKey;

/// One fact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FactRecord {
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// What it is about.
    pub kind: FactKind,
    /// Acquire: [`news`] bits. Call: the call's [`EventKind`] discriminant.
    pub news: u32,
    /// Acquire: the usage bits the acquisition sets. Call: its first argument.
    pub arg: u64,
    /// Call: its second argument.
    pub arg2: u64,
    /// CPU.
    pub cpu: u32,
    /// Thread-group id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Execution context.
    pub context: ExecContext,
    /// Hardware-interrupt state.
    pub irqs: IrqState,
    /// Raw `preempt_count` when [`flags::PREEMPT_COUNT_VALID`] is set.
    pub preempt_count: u32,
    /// Bits from [`flags`].
    pub flags: u32,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; 16],
    /// Acquire: the lock acquired. Call: `site` is the caller.
    pub lock: HeldLock,
    /// The locks held in the same context before, bottom first (without the tombstones of
    /// locks released below the top).
    pub held: Vec<HeldLock>,
    /// The stack, once named.
    pub stack: Option<StackKey>,
}

impl FactRecord {
    /// The record of a ring-buffer fact whose stack was named `stack`; `None` when its kind is
    /// unknown to this build.
    pub fn from_fact(fact: &Fact, stack: Option<StackKey>) -> Option<FactRecord> {
        Some(FactRecord {
            timestamp_ns: fact.timestamp_ns,
            kind: fact.fact_kind()?,
            news: fact.news,
            arg: fact.arg,
            arg2: fact.arg2,
            cpu: fact.cpu,
            pid: fact.pid,
            tid: fact.tid,
            context: fact.exec_context(),
            irqs: fact.irq_state(),
            preempt_count: fact.preempt_count,
            flags: fact.flags,
            comm: fact.comm,
            lock: fact.lock,
            held: fact
                .held()
                .iter()
                .filter(|lock| !lock.is_tombstone())
                .copied()
                .collect(),
            stack,
        })
    }

    /// True when every bit of `mask` (from [`flags`]) is set.
    pub const fn has(&self, mask: u32) -> bool {
        self.flags & mask == mask
    }

    /// True when the fact brings every bit of `mask` (from [`news`]).
    pub const fn brings(&self, mask: u32) -> bool {
        matches!(self.kind, FactKind::Acquire) && self.news & mask == mask
    }

    /// For a call: which one.
    pub const fn call(&self) -> Option<EventKind> {
        match self.kind {
            FactKind::Call => EventKind::from_u32(self.news),
            FactKind::Acquire => None,
        }
    }

    /// The acquired lock's kind.
    pub const fn lock_kind(&self) -> LockKind {
        self.lock.lock_kind()
    }

    /// Whether softirqs were disabled, when `preempt_count` was readable.
    pub const fn softirqs_disabled(&self) -> Option<bool> {
        if self.has(flags::PREEMPT_COUNT_VALID) {
            Some(self.has(flags::SOFTIRQS_DISABLED))
        } else {
            None
        }
    }

    /// A short name of what the fact is, for status lines and `locktrace script`:
    /// `chain`, `usage`, `recursive`, or the call's name.
    pub fn label(&self) -> &'static str {
        match self.kind {
            FactKind::Call => self.call().map_or("call", EventKind::name),
            FactKind::Acquire if self.news & news::RECURSIVE != 0 => "recursive",
            FactKind::Acquire if self.news & news::NEW_CHAIN != 0 => "chain",
            FactKind::Acquire => "usage",
        }
    }
}
