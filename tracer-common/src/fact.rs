//! The one record that crosses the ring buffer: a [`Fact`], something lockdep would have to
//! learn. An acquisition whose chain, usage and instance are all known sends nothing; one that
//! brings something new sends the held locks of its context, the new lock and one stack. The
//! calls the atomic-context checks need (`pcpu_alloc`, `free_percpu`, `vfree`) send one each.

use crate::{
    ClassDesc, EventKind, ExecContext, IrqState,
    held::{HeldLock, MAX_HELD},
};

/// Most stack frames a fact carries. lockdep's reports rarely need more; deeper frames are
/// dropped (the outermost ones).
pub const MAX_FRAMES: usize = 64;

crate::wire_enum! {
    /// What a fact is about.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum FactKind: u32 {
        /// A lock acquisition that brought something new: see [`news`].
        Acquire = 1,
        /// A call the atomic-context checks look at: [`Fact::news`] holds its [`EventKind`]
        /// (`PcpuAlloc`, `PcpuFree`, `Vfree`); [`Fact::lock`]`.site` is its caller.
        Call = 2,
    }
}

/// What an [`FactKind::Acquire`] fact brings, in [`Fact::news`].
pub mod news {
    /// The chain (held classes, the new one, context and interrupt state) was never reported.
    pub const NEW_CHAIN: u32 = 1 << 0;
    /// The acquisition set usage bits its class did not have ([`super::Fact::arg`]).
    pub const NEW_USAGE: u32 = 1 << 1;
    /// The instance was already held (or waited for while held) in a way that can deadlock:
    /// the held entry with the same address is the earlier acquisition.
    pub const RECURSIVE: u32 = 1 << 2;
}

/// One record in the ring buffer (3.4 KiB): fixed-size, `#[repr(C)]`, no implicit padding. Only the first
/// [`Fact::nr_held`] entries of `held` and [`Fact::nr_frames`] of `frames` mean anything.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fact {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Acquire: the usage bits the acquisition sets. Call: its first argument (`pcpu_alloc`'s
    /// size, `free_percpu`'s pointer, `vfree`'s address when known).
    pub arg: u64,
    /// Call: its second argument (`pcpu_alloc`'s gfp flags).
    pub arg2: u64,
    /// [`FactKind`] discriminant.
    pub kind: u32,
    /// Acquire: [`news`] bits. Call: the call's [`EventKind`] discriminant.
    pub news: u32,
    /// CPU.
    pub cpu: u32,
    /// Thread-group id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// [`ExecContext`] discriminant.
    pub context: u32,
    /// [`IrqState`] discriminant.
    pub irqs: u32,
    /// Raw `preempt_count` when [`crate::flags::PREEMPT_COUNT_VALID`] is set.
    pub preempt_count: u32,
    /// Bits from [`crate::flags`].
    pub flags: u32,
    /// Entries of `held` in use.
    pub nr_held: u32,
    /// Entries of `frames` in use.
    pub nr_frames: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; 16],
    /// Acquire: the lock acquired. Call: only `site`, the caller.
    pub lock: HeldLock,
    /// The locks held in the same context before this one, bottom first.
    pub held: [HeldLock; MAX_HELD],
    /// The kernel stack, or the user stack when [`crate::flags::USER_STACK`] is set,
    /// innermost first.
    pub frames: [u64; MAX_FRAMES],
}

/// Size of one [`Fact`] in bytes; part of the ABI.
pub const FACT_SIZE: usize = 88 + 88 + MAX_HELD * 88 + MAX_FRAMES * 8;
const _: () = assert!(core::mem::size_of::<Fact>() == FACT_SIZE);
const _: () = assert!(core::mem::align_of::<Fact>() == 8);

impl Fact {
    /// The decoded kind.
    pub const fn fact_kind(&self) -> Option<FactKind> {
        FactKind::from_u32(self.kind)
    }

    /// For a call: which one.
    pub const fn call(&self) -> Option<EventKind> {
        match self.fact_kind() {
            Some(FactKind::Call) => EventKind::from_u32(self.news),
            _ => None,
        }
    }

    /// The decoded execution context.
    pub const fn exec_context(&self) -> ExecContext {
        ExecContext::from_u32(self.context)
    }

    /// The decoded hardware-interrupt state.
    pub const fn irq_state(&self) -> IrqState {
        IrqState::from_u32(self.irqs)
    }

    /// True when every bit of `mask` (from [`crate::flags`]) is set.
    pub const fn has(&self, mask: u32) -> bool {
        self.flags & mask == mask
    }

    /// The held locks in use.
    pub fn held(&self) -> &[HeldLock] {
        let n = (self.nr_held as usize).min(MAX_HELD);
        &self.held[..n]
    }

    /// The stack frames in use.
    pub fn frames(&self) -> &[u64] {
        let n = (self.nr_frames as usize).min(MAX_FRAMES);
        &self.frames[..n]
    }

    /// The task name up to its first NUL byte (raw bytes; may not be UTF-8).
    pub fn comm_bytes(&self) -> &[u8] {
        let len = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        &self.comm[..len]
    }
}

/// How often and how long one class was waited for (`lock:contention_begin` to `_end`), kept
/// per class in the programs' `CONTENTION` map and read by user space; not a ring record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentionStat {
    /// The class.
    pub class: ClassDesc,
    /// Waits that ended.
    pub count: u64,
    /// Their total length, in nanoseconds.
    pub wait_ns: u64,
    /// The longest, in nanoseconds.
    pub max_ns: u64,
}
