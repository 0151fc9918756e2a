//! The event ABI shared by locktrace's eBPF programs (`tracer-ebpf`) and its user space
//! (`tracer`).
//!
//! Every type here is `#[repr(C)]`, fixed-size and free of implicit padding, so the bytes a BPF
//! program writes into the ring buffer are exactly the bytes the decoder and the trace file read.
//! Enumerations travel as `u32` with explicit discriminants; a retired value is never reused.
//! With the `user` feature the types implement `aya::Pod`.
#![no_std]
#![deny(missing_docs)]

/// What happened. Every [`Event`] carries one of these in [`Event::kind`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A lock was acquired (the lock function returned holding it). For trylocks only
    /// successful attempts are reported, with [`flags::TRYLOCK`] set.
    LockAcquire = 1,
    /// A lock was released.
    LockRelease = 2,
    /// The per-CPU allocator (`pcpu_alloc`) handed out an area. [`Event::arg`] is the size,
    /// [`Event::arg2`] the gfp flags; [`flags::ATOMIC`] mirrors the allocator's `is_atomic`.
    PcpuAlloc = 3,
    /// `free_percpu()` ran. [`Event::arg`] is the freed pointer.
    PcpuFree = 4,
    /// `vfree()` ran (or its `free_vmap_area_noflush` tracepoint fired). [`Event::arg`] is the
    /// address being freed when known.
    Vfree = 5,
    /// A contended lock started waiting (tracepoint `lock:contention_begin`).
    /// [`Event::arg`] holds the tracepoint's `flags` (1 SPIN, 2 READ, 4 WRITE, 8 RT,
    /// 16 PERCPU, 32 MUTEX).
    ContentionBegin = 6,
    /// A contended lock stopped waiting (tracepoint `lock:contention_end`); [`Event::arg`] is the
    /// return value.
    ContentionEnd = 7,
    /// A hardware interrupt handler starts; [`Event::arg`] is the irq number.
    HardirqEntry = 8,
    /// A hardware interrupt handler ends; [`Event::arg`] is the irq number.
    HardirqExit = 9,
    /// A softirq handler starts; [`Event::arg`] is the softirq vector.
    SoftirqEntry = 10,
    /// A softirq handler ends; [`Event::arg`] is the softirq vector.
    SoftirqExit = 11,
}

impl EventKind {
    /// Every kind, in discriminant order.
    pub const ALL: [EventKind; 11] = [
        EventKind::LockAcquire,
        EventKind::LockRelease,
        EventKind::PcpuAlloc,
        EventKind::PcpuFree,
        EventKind::Vfree,
        EventKind::ContentionBegin,
        EventKind::ContentionEnd,
        EventKind::HardirqEntry,
        EventKind::HardirqExit,
        EventKind::SoftirqEntry,
        EventKind::SoftirqExit,
    ];

    /// Decodes a raw discriminant; `None` for values this build does not know.
    pub const fn from_u32(raw: u32) -> Option<EventKind> {
        if raw >= 1 && raw <= Self::ALL.len() as u32 {
            Some(Self::ALL[raw as usize - 1])
        } else {
            None
        }
    }

    /// A short stable name, used in status lines and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::LockAcquire => "acquire",
            EventKind::LockRelease => "release",
            EventKind::PcpuAlloc => "pcpu_alloc",
            EventKind::PcpuFree => "free_percpu",
            EventKind::Vfree => "vfree",
            EventKind::ContentionBegin => "contention_begin",
            EventKind::ContentionEnd => "contention_end",
            EventKind::HardirqEntry => "hardirq_entry",
            EventKind::HardirqExit => "hardirq_exit",
            EventKind::SoftirqEntry => "softirq_entry",
            EventKind::SoftirqExit => "softirq_exit",
        }
    }
}

/// Which primitive a lock event is about. Read and write sides are separate kinds because
/// lockdep's rules treat them differently.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockKind {
    /// Not a lock event.
    None = 0,
    /// `spinlock_t` / `raw_spinlock_t`.
    Spin = 1,
    /// `rwlock_t`, read side (recursive: readers never block readers).
    RwlockRead = 2,
    /// `rwlock_t`, write side.
    RwlockWrite = 3,
    /// `struct mutex` (sleeping).
    Mutex = 4,
    /// `struct rw_semaphore`, read side (sleeping, non-recursive for lockdep).
    RwsemRead = 5,
    /// `struct rw_semaphore`, write side (sleeping).
    RwsemWrite = 6,
    /// `pthread_mutex_t` in user space.
    PthreadMutex = 7,
    /// `pthread_rwlock_t` in user space, read side.
    PthreadRwlockRead = 8,
    /// `pthread_rwlock_t` in user space, write side.
    PthreadRwlockWrite = 9,
}

impl LockKind {
    /// Every kind, in discriminant order.
    pub const ALL: [LockKind; 10] = [
        LockKind::None,
        LockKind::Spin,
        LockKind::RwlockRead,
        LockKind::RwlockWrite,
        LockKind::Mutex,
        LockKind::RwsemRead,
        LockKind::RwsemWrite,
        LockKind::PthreadMutex,
        LockKind::PthreadRwlockRead,
        LockKind::PthreadRwlockWrite,
    ];

    /// Decodes a raw discriminant; `None` for values this build does not know.
    pub const fn from_u32(raw: u32) -> Option<LockKind> {
        if (raw as usize) < Self::ALL.len() {
            Some(Self::ALL[raw as usize])
        } else {
            None
        }
    }

    /// True for the read side of a reader/writer lock.
    pub const fn is_read(self) -> bool {
        matches!(
            self,
            LockKind::RwlockRead | LockKind::RwsemRead | LockKind::PthreadRwlockRead
        )
    }

    /// True when readers may nest on the same lock without deadlock (lockdep's "recursive
    /// read"): `rwlock_t` readers and pthread rwlock readers. Rwsem readers are not recursive
    /// because a waiting writer blocks new readers.
    pub const fn is_recursive_read(self) -> bool {
        matches!(self, LockKind::RwlockRead | LockKind::PthreadRwlockRead)
    }

    /// True for locks whose acquisition may sleep (must not be taken in atomic context).
    pub const fn is_sleeping(self) -> bool {
        matches!(
            self,
            LockKind::Mutex | LockKind::RwsemRead | LockKind::RwsemWrite
        )
    }

    /// True for kernel spinning locks (taking them makes the context atomic).
    pub const fn is_spinning(self) -> bool {
        matches!(
            self,
            LockKind::Spin | LockKind::RwlockRead | LockKind::RwlockWrite
        )
    }

    /// True for user-space locks.
    pub const fn is_user(self) -> bool {
        matches!(
            self,
            LockKind::PthreadMutex | LockKind::PthreadRwlockRead | LockKind::PthreadRwlockWrite
        )
    }

    /// A short stable name, used in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            LockKind::None => "none",
            LockKind::Spin => "spinlock",
            LockKind::RwlockRead => "rwlock_read",
            LockKind::RwlockWrite => "rwlock_write",
            LockKind::Mutex => "mutex",
            LockKind::RwsemRead => "rwsem_read",
            LockKind::RwsemWrite => "rwsem_write",
            LockKind::PthreadMutex => "pthread_mutex",
            LockKind::PthreadRwlockRead => "pthread_rwlock_read",
            LockKind::PthreadRwlockWrite => "pthread_rwlock_write",
        }
    }
}

/// Hardware-interrupt state at the probe point.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IrqState {
    /// The kernel gave no way to read it (no `bpf_local_irq_save` kfunc before Linux 6.14).
    /// Consumers must not guess.
    Unknown = 0,
    /// Hardware interrupts were enabled.
    Enabled = 1,
    /// Hardware interrupts were disabled.
    Disabled = 2,
}

impl IrqState {
    /// Decodes a raw value; anything unknown reads as [`IrqState::Unknown`].
    pub const fn from_u32(raw: u32) -> IrqState {
        match raw {
            1 => IrqState::Enabled,
            2 => IrqState::Disabled,
            _ => IrqState::Unknown,
        }
    }

    /// Decodes the x86 flags register as saved by `local_irq_save`: bit 9 (IF) set means
    /// interrupts are enabled.
    pub const fn from_x86_flags(flags: u64) -> IrqState {
        if flags & X86_EFLAGS_IF != 0 {
            IrqState::Enabled
        } else {
            IrqState::Disabled
        }
    }
}

/// The interrupt-enable bit of the x86 flags register.
pub const X86_EFLAGS_IF: u64 = 1 << 9;

/// Execution context, decoded from the kernel's `preempt_count`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExecContext {
    /// The kernel gave no way to read `preempt_count` (offsets missing from BTF).
    Unknown = 0,
    /// Process (task) context.
    Task = 1,
    /// Serving a softirq.
    Softirq = 2,
    /// In a hardware interrupt handler.
    Hardirq = 3,
    /// In a non-maskable interrupt.
    Nmi = 4,
}

/// `preempt_count` layout (include/linux/preempt.h): 8 bits preempt and 8 softirq everywhere;
/// where the hardirq and NMI counts sit depends on the kernel (see [`PreemptLayout`]).
pub mod preempt {
    /// Softirq count mask.
    pub const SOFTIRQ_MASK: u32 = 0x0000_ff00;
    /// Set while a softirq is being served (the low bit of the softirq count).
    pub const SOFTIRQ_OFFSET: u32 = 0x0000_0100;
}

/// Where `preempt_count` keeps the hardirq and NMI counts. Linux 7.0 put an 8-bit
/// hardirq-disable count (`HARDIRQ_DISABLE_MASK`) between the softirq and hardirq counts;
/// reading a 7.x count with the old masks takes a hardirq for task context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreemptLayout {
    /// `HARDIRQ_MASK`.
    pub hardirq_mask: u32,
    /// `NMI_MASK`.
    pub nmi_mask: u32,
}

impl PreemptLayout {
    /// Up to Linux 6.x: hardirq `0x000f0000`, NMI `0x00f00000`.
    pub const CLASSIC: PreemptLayout = PreemptLayout {
        hardirq_mask: 0x000f_0000,
        nmi_mask: 0x00f0_0000,
    };
    /// Linux 7.x with the need-resched bit in its own word (x86-64: `__preempt_count` is an
    /// `unsigned long`): hardirq `0x0f000000`, NMI `0xf0000000`.
    pub const HARDIRQ_DISABLE: PreemptLayout = PreemptLayout {
        hardirq_mask: 0x0f00_0000,
        nmi_mask: 0xf000_0000,
    };
    /// Linux 7.x with the need-resched bit folded into bit 31: NMI is bit 28 alone.
    pub const HARDIRQ_DISABLE_FOLDED_RESCHED: PreemptLayout = PreemptLayout {
        hardirq_mask: 0x0f00_0000,
        nmi_mask: 0x1000_0000,
    };
}

impl ExecContext {
    /// Decodes a raw value; anything unknown reads as [`ExecContext::Unknown`].
    pub const fn from_u32(raw: u32) -> ExecContext {
        match raw {
            1 => ExecContext::Task,
            2 => ExecContext::Softirq,
            3 => ExecContext::Hardirq,
            4 => ExecContext::Nmi,
            _ => ExecContext::Unknown,
        }
    }

    /// Decodes `preempt_count` laid out as `layout` the way `in_nmi()`, `in_hardirq()` and
    /// `in_serving_softirq()` do.
    pub const fn from_preempt_count(count: u32, layout: PreemptLayout) -> ExecContext {
        if count & layout.nmi_mask != 0 {
            ExecContext::Nmi
        } else if count & layout.hardirq_mask != 0 {
            ExecContext::Hardirq
        } else if count & preempt::SOFTIRQ_OFFSET != 0 {
            ExecContext::Softirq
        } else {
            ExecContext::Task
        }
    }

    /// A short stable name, used in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            ExecContext::Unknown => "unknown",
            ExecContext::Task => "task",
            ExecContext::Softirq => "softirq",
            ExecContext::Hardirq => "hardirq",
            ExecContext::Nmi => "nmi",
        }
    }
}

/// Bits of [`Event::flags`].
pub mod flags {
    /// The acquisition was a successful trylock (lockdep adds no dependency for it).
    pub const TRYLOCK: u32 = 1 << 0;
    /// The lock variant disables hardware interrupts (`_irq`, `_irqsave`).
    pub const IRQ_VARIANT: u32 = 1 << 1;
    /// The lock variant disables softirqs (`_bh`).
    pub const BH_VARIANT: u32 = 1 << 2;
    /// For [`super::EventKind::PcpuAlloc`]: the allocation was atomic (`is_atomic`).
    pub const ATOMIC: u32 = 1 << 3;
    /// [`super::Event::preempt_count`] holds a value read from the kernel.
    pub const PREEMPT_COUNT_VALID: u32 = 1 << 4;
    /// The event came from a trampoline (fentry/fexit) rather than a tracepoint.
    pub const FROM_TRAMPOLINE: u32 = 1 << 5;
    /// Softirqs were disabled (softirq count non-zero) at the probe point.
    pub const SOFTIRQS_DISABLED: u32 = 1 << 6;
    /// Events were lost on this CPU (ring full, or a pthread call whose entry was not seen)
    /// since its previous event: held-lock state built before this point cannot be trusted.
    pub const AFTER_LOSS: u32 = 1 << 7;
    /// Set by the programs, cleared by the decoder: [`super::Event::caller`],
    /// [`super::Event::arg`] and [`super::Event::arg2`] hold the three kernel stack frames
    /// below the program's own, and the caller is the first that is neither locktrace's
    /// trampoline nor inside the probed function (some kernels show the trampoline's return
    /// address into it).
    /// (A stack-map id can be reused by another stack before user space reads it; these
    /// frames travel with the event.)
    pub const RAW_CALLERS: u32 = 1 << 8;
}

/// One fixed-size record in the ring buffer and in the trace file.
///
/// Field order puts the 64-bit fields first so the struct has no implicit padding; the
/// layout is checked by a test and by `assert!` below.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// The lock's address (kernel or user virtual address), 0 when not a lock event.
    pub lock_addr: u64,
    /// The caller's instruction address: the return address for trampolines and uprobes,
    /// `call_site` for the per-CPU allocator tracepoint.
    pub caller: u64,
    /// Kind-specific argument (see [`EventKind`]).
    pub arg: u64,
    /// Second kind-specific argument (see [`EventKind`]).
    pub arg2: u64,
    /// Class hint for dynamic kernel locks: the `struct kmem_cache *` of the slab the lock
    /// lives in (kfunc `bpf_get_kmem_cache`, Linux 6.13+), or 0.
    pub slab_cache: u64,
    /// [`EventKind`] discriminant.
    pub kind: u32,
    /// [`LockKind`] discriminant.
    pub lock_kind: u32,
    /// Bits from [`flags`].
    pub flags: u32,
    /// CPU the event happened on.
    pub cpu: u32,
    /// Thread-group id (the process id user space sees).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// [`IrqState`] discriminant.
    pub irqs: u32,
    /// [`ExecContext`] discriminant.
    pub context: u32,
    /// Raw `preempt_count` when [`flags::PREEMPT_COUNT_VALID`] is set.
    pub preempt_count: u32,
    /// Kernel stack id in the stack-trace map, or negative when none was taken.
    pub kernel_stack_id: i32,
    /// User stack id in the stack-trace map, or negative when none was taken.
    pub user_stack_id: i32,
    /// With [`Event::slab_cache`]: the lock's offset inside its slab object plus one (the lock
    /// field: lockdep's class for a lock in a dedicated cache), or 0 when unknown.
    pub slab_offset: u32,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; 16],
}

/// Size of one [`Event`] in bytes; part of the ABI and of the trace-file format.
pub const EVENT_SIZE: usize = 112;
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_SIZE);
const _: () = assert!(core::mem::align_of::<Event>() == 8);

impl Event {
    /// An all-zero event with no stacks, a starting point for probes and tests.
    pub const fn zeroed() -> Event {
        Event {
            timestamp_ns: 0,
            lock_addr: 0,
            caller: 0,
            arg: 0,
            arg2: 0,
            slab_cache: 0,
            kind: 0,
            lock_kind: 0,
            flags: 0,
            cpu: 0,
            pid: 0,
            tid: 0,
            irqs: 0,
            context: 0,
            preempt_count: 0,
            kernel_stack_id: -1,
            user_stack_id: -1,
            slab_offset: 0,
            comm: [0; 16],
        }
    }

    /// The decoded kind, `None` when this build does not know it.
    pub const fn event_kind(&self) -> Option<EventKind> {
        EventKind::from_u32(self.kind)
    }

    /// The decoded lock kind ([`LockKind::None`] when unknown).
    pub const fn lock_kind(&self) -> LockKind {
        match LockKind::from_u32(self.lock_kind) {
            Some(kind) => kind,
            None => LockKind::None,
        }
    }

    /// The decoded hardware-interrupt state.
    pub const fn irq_state(&self) -> IrqState {
        IrqState::from_u32(self.irqs)
    }

    /// The decoded execution context.
    pub const fn exec_context(&self) -> ExecContext {
        ExecContext::from_u32(self.context)
    }

    /// True when every bit of `mask` (from [`flags`]) is set.
    pub const fn has(&self, mask: u32) -> bool {
        self.flags & mask == mask
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

/// Indices of the per-CPU drop counters (map `DROPS`), each counting events lost for one
/// reason. User space sums them over CPUs and records them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The ring buffer was full; the event was not written.
    RingFull = 0,
    /// A uretprobe found no pending entry for its thread (the entry map was full or the
    /// entry probe was missed).
    PendingMissing = 1,
    /// The pending-call map was full, so a uprobe entry could not be remembered.
    PendingFull = 2,
    /// `bpf_get_stackid` failed (map full or collision without reuse).
    StackFailed = 3,
    /// A probe fired inside another of our programs run by the same task in the same
    /// context: a lock taken by our own helpers (ring buffer, maps), or by the kernel's work
    /// on an interrupt's way out (still task context) while the task was inside one of our
    /// programs. Skipped: tracing it could re-enter the ring buffer under its own lock.
    Nested = 4,
    /// Every running-program slot of this CPU and context was held by tasks preempted inside
    /// one of our programs, so the event could not be recorded.
    Preempted = 5,
}

/// Number of [`DropReason`] slots in the `DROPS` map.
pub const DROP_REASONS: u32 = 6;

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; DROP_REASONS as usize] = [
        DropReason::RingFull,
        DropReason::PendingMissing,
        DropReason::PendingFull,
        DropReason::StackFailed,
        DropReason::Nested,
        DropReason::Preempted,
    ];

    /// A short stable name, used in status lines, trace files and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::RingFull => "ring_full",
            DropReason::PendingMissing => "pending_missing",
            DropReason::PendingFull => "pending_full",
            DropReason::StackFailed => "stack_failed",
            DropReason::Nested => "nested",
            DropReason::Preempted => "preempted",
        }
    }
}

/// Run-time configuration user space writes into the `CONFIG` array: the kernel-specific
/// facts the programs cannot compute themselves, and the switch that starts and stops a session.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// For [`PreemptCountSource::ThisCpuPtr`]: the count's offset inside the per-CPU variable
    /// (0 for `__preempt_count`, the member's offset for `pcpu_hot`). For
    /// [`PreemptCountSource::Runqueue`]: the `.data..percpu` offset of the count.
    pub preempt_count_offset: u64,
    /// Offset of `se.cfs_rq` in `struct task_struct` (BTF), for the run-queue source.
    pub task_cfs_rq_offset: u64,
    /// Offset of `rq` in `struct cfs_rq` (BTF), for the run-queue source.
    pub cfs_rq_rq_offset: u64,
    /// Offset of `cpu` in `struct rq` (BTF), for the run-queue source.
    pub rq_cpu_offset: u64,
    /// `.data..percpu` offset of `runqueues`, for the run-queue source.
    pub runqueues_percpu_offset: u64,
    /// Offset of `name` in `struct kmem_cache` (BTF), used with `kmem_cache_kfunc_valid`.
    pub kmem_cache_name_offset: u64,
    /// Offset of `size` (object size with metadata) in `struct kmem_cache`, or 0 when BTF
    /// lacks it: then slab offsets are not computed.
    pub kmem_cache_size_offset: u64,
    /// Offset of `oo` (order and objects per slab) in `struct kmem_cache`.
    pub kmem_cache_oo_offset: u64,
    /// How this kernel's `preempt_count` reads as a context.
    pub preempt_layout: PreemptLayout,
    /// [`PreemptCountSource`] discriminant.
    pub preempt_count_source: u32,
    /// Non-zero when the kfunc call sites were patched (irq state is readable).
    pub irq_kfunc_valid: u32,
    /// Non-zero when `bpf_get_kmem_cache` was patched in.
    pub kmem_cache_kfunc_valid: u32,
    /// locktrace's own thread group: its events are not traced (reading the ring buffer
    /// takes locks, and tracing that would feed back into the ring).
    pub self_pid: u32,
    /// Non-zero while the session records. User space sets it once every probe is attached
    /// and clears it before detaching, so a session never sees acquisitions from a moment when
    /// the matching release probes were not attached yet.
    pub tracing: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 96);

/// How the programs find this CPU's `preempt_count`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreemptCountSource {
    /// Not readable: contexts are reported unknown.
    #[default]
    None = 0,
    /// `bpf_this_cpu_ptr()` on the per-CPU variable holding it (a typed ksym, which needs
    /// the variable in kallsyms: `CONFIG_KALLSYMS_ALL`). Exact on every CPU and task.
    ThisCpuPtr = 1,
    /// The current task's run queue (`current->se.cfs_rq->rq`) minus the per-CPU offset of
    /// `runqueues` gives the per-CPU base. Only true while the task's `se.cfs_rq` points at this
    /// CPU, so the programs check `rq->cpu` and report unknown otherwise.
    Runqueue = 2,
}

/// Markers in the `imm` field of the `ld_imm64` that loads the per-CPU variable holding the
/// preempt count (`r1 = &var`, `BPF_PSEUDO_BTF_ID`); user space replaces it with the
/// variable's BTF id, or the load and the `bpf_this_cpu_ptr` call after it with `r0 = 0`.
pub const PREEMPT_COUNT_VAR_MARKER: u32 = 0x7a11_0004;

/// Length of a slab cache name in the `SLAB_NAMES` map (names are NUL-padded, cut to fit).
pub const SLAB_NAME_LEN: usize = 32;

/// Markers placed in the `imm` field of the raw kfunc call instructions; user space replaces
/// each with the kfunc's BTF id before loading (see `tracer::probes::kfunc`).
pub mod kfunc_marker {
    /// `bpf_local_irq_save(unsigned long *flags)`.
    pub const LOCAL_IRQ_SAVE: u32 = 0x7a11_0001;
    /// `bpf_local_irq_restore(unsigned long *flags)`.
    pub const LOCAL_IRQ_RESTORE: u32 = 0x7a11_0002;
    /// `bpf_get_kmem_cache(u64 addr)`.
    pub const GET_KMEM_CACHE: u32 = 0x7a11_0003;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are repr(C), Copy, have no padding and every bit pattern is valid.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProbeConfig {}
}

#[cfg(test)]
mod tests {
    use super::{ExecContext, PreemptLayout};

    /// Counts seen on real kernels: 6.18's `irq_handler_entry` (0x80010002) and
    /// `softirq_entry` (0x80000101), 7.3's `hrtimer_interrupt` (0x1000001).
    #[test]
    fn each_layout_reads_its_kernels_counts() {
        use ExecContext::*;
        let cases = [
            (0x8001_0002, PreemptLayout::CLASSIC, Hardirq),
            (0x8000_0101, PreemptLayout::CLASSIC, Softirq),
            (0x0000_0201, PreemptLayout::CLASSIC, Task),
            (0x0010_0000, PreemptLayout::CLASSIC, Nmi),
            (0x0100_0001, PreemptLayout::HARDIRQ_DISABLE, Hardirq),
            // The hardirq-disable count of 7.x is not an interrupt.
            (0x0001_0002, PreemptLayout::HARDIRQ_DISABLE, Task),
            (0x0000_0102, PreemptLayout::HARDIRQ_DISABLE, Softirq),
            (0x1000_0000, PreemptLayout::HARDIRQ_DISABLE, Nmi),
            (
                0x1000_0000,
                PreemptLayout::HARDIRQ_DISABLE_FOLDED_RESCHED,
                Nmi,
            ),
            // Folded need-resched (bit 31) is not an NMI there.
            (
                0x8000_0000,
                PreemptLayout::HARDIRQ_DISABLE_FOLDED_RESCHED,
                Task,
            ),
            // Read with the old masks, a 7.x hardirq looked like task context.
            (0x0100_0001, PreemptLayout::CLASSIC, Task),
        ];
        for (count, layout, want) in cases {
            assert_eq!(
                ExecContext::from_preempt_count(count, layout),
                want,
                "{count:#x} with {layout:?}"
            );
        }
    }
}
