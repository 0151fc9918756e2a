//! What locktrace's eBPF programs (`tracer-ebpf`) and its user space (`tracer`) share: the
//! record ABI, and the part of lockdep that runs where the locks are taken.
//!
//! - [`class`], [`held`], [`chain`], [`usage`]: lock classes, held-lock stacks, chain keys and
//!   usage bits. The BPF programs keep held locks per task and per CPU, a chain cache and a
//!   usage mask per class, and run this code on every acquisition; user space runs the same
//!   code in its model of the kernel side (`tracer::model`), so the engine's fixtures exercise
//!   what the kernel runs.
//! - [`fact`]: the one record that crosses the ring buffer, sent only when an acquisition
//!   brings something new (a chain, a usage bit, a recursive acquisition) and for the calls
//!   the atomic-context checks need.
//! - [`Event`]: one lock event as a probe sees it, the model's input.
//!
//! Every ABI type is `#[repr(C)]`, fixed-size and free of implicit padding, so the bytes a BPF
//! program writes into the ring buffer are exactly the bytes the decoder reads. Enumerations
//! travel as integers with explicit discriminants, declared with [`wire_enum!`] (values,
//! decoding and names in one place); a retired value is never reused. Everything
//! here is `no_std` and written for the BPF verifier: bounded loops, checked indexing, no
//! panics. With the `user` feature the ABI types implement `aya::Pod`.
#![no_std]
#![deny(missing_docs)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(test)]
extern crate std;

pub mod chain;
pub mod class;
pub mod fact;
mod hash;
pub mod held;
pub mod usage;
pub mod validate;
mod wire;

pub use class::{ClassDesc, ClassTag};
pub use fact::{ContentionStat, FACT_SIZE, Fact, FactKind, MAX_FRAMES};
pub use held::{HeldLock, HeldStack, Limits, MAX_HELD};
pub use usage::AcquireState;

wire_enum! {
    /// What happened. Every [`Event`] carries one of these in [`Event::kind`]; call facts carry
    /// theirs in [`Fact::news`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum EventKind: u32 {
        /// A lock was acquired (the lock function returned holding it). For trylocks only
        /// successful attempts are reported, with [`flags::TRYLOCK`] set.
        LockAcquire = 1 => "acquire",
        /// A lock was released.
        LockRelease = 2 => "release",
        /// The per-CPU allocator (`pcpu_alloc`) handed out an area. [`Event::arg`] is the
        /// size, [`Event::arg2`] the gfp flags; [`flags::ATOMIC`] mirrors the allocator's
        /// `is_atomic`.
        PcpuAlloc = 3 => "pcpu_alloc",
        /// `free_percpu()` ran. [`Event::arg`] is the freed pointer.
        PcpuFree = 4 => "free_percpu",
        /// `vfree()` ran (or its `free_vmap_area_noflush` tracepoint fired). [`Event::arg`] is
        /// the address being freed when known.
        Vfree = 5 => "vfree",
        /// A contended lock started waiting (tracepoint `lock:contention_begin`).
        /// [`Event::arg`] holds the tracepoint's `flags` (1 SPIN, 2 READ, 4 WRITE, 8 RT,
        /// 16 PERCPU, 32 MUTEX).
        ContentionBegin = 6 => "contention_begin",
        /// A contended lock stopped waiting (tracepoint `lock:contention_end`); [`Event::arg`]
        /// is the return value.
        ContentionEnd = 7 => "contention_end",
        /// A hardware interrupt handler starts; [`Event::arg`] is the irq number.
        HardirqEntry = 8 => "hardirq_entry",
        /// A hardware interrupt handler ends; [`Event::arg`] is the irq number.
        HardirqExit = 9 => "hardirq_exit",
        /// A softirq handler starts; [`Event::arg`] is the softirq vector.
        SoftirqEntry = 10 => "softirq_entry",
        /// A softirq handler ends; [`Event::arg`] is the softirq vector.
        SoftirqExit = 11 => "softirq_exit",
        /// The task switches out (`sched:sched_switch`); [`Event::arg`] is the next task's
        /// thread id and [`Event::lock_addr`] the run-queue lock that changes hands (0 when
        /// unknown).
        SchedSwitch = 12 => "sched_switch",
        /// The task is freed (`sched:sched_process_free`, after its final switch): its held
        /// stacks go.
        TaskExit = 13 => "task_exit",
    }
}

wire_enum! {
    /// Which primitive a lock event is about. Read and write sides are separate kinds because
    /// lockdep's rules treat them differently.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum LockKind: u32 {
        /// Not a lock event.
        None = 0 => "none",
        /// `spinlock_t` / `raw_spinlock_t`.
        Spin = 1 => "spinlock",
        /// `rwlock_t`, read side (recursive: readers never block readers).
        RwlockRead = 2 => "rwlock_read",
        /// `rwlock_t`, write side.
        RwlockWrite = 3 => "rwlock_write",
        /// `struct mutex` (sleeping).
        Mutex = 4 => "mutex",
        /// `struct rw_semaphore`, read side (sleeping, non-recursive for lockdep).
        RwsemRead = 5 => "rwsem_read",
        /// `struct rw_semaphore`, write side (sleeping).
        RwsemWrite = 6 => "rwsem_write",
        /// `pthread_mutex_t` in user space.
        PthreadMutex = 7 => "pthread_mutex",
        /// `pthread_rwlock_t` in user space, read side.
        PthreadRwlockRead = 8 => "pthread_rwlock_read",
        /// `pthread_rwlock_t` in user space, write side.
        PthreadRwlockWrite = 9 => "pthread_rwlock_write",
    }
}

impl LockKind {
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

    /// The lock type, whichever side of it this is (`rwlock` for both of an `rwlock_t`'s
    /// sides): locks of two types are never one lock, nor of one class.
    pub const fn family(self) -> LockFamily {
        match self {
            LockKind::None => LockFamily::None,
            LockKind::Spin => LockFamily::Spinlock,
            LockKind::RwlockRead | LockKind::RwlockWrite => LockFamily::Rwlock,
            LockKind::Mutex => LockFamily::Mutex,
            LockKind::RwsemRead | LockKind::RwsemWrite => LockFamily::Rwsem,
            LockKind::PthreadMutex => LockFamily::PthreadMutex,
            LockKind::PthreadRwlockRead | LockKind::PthreadRwlockWrite => LockFamily::PthreadRwlock,
        }
    }
}

wire_enum! {
    /// A lock type: [`LockKind`] without the side of a reader/writer lock.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum LockFamily: u16 else None {
        /// Not a lock.
        #[default]
        None = 0 => "lock",
        /// `spinlock_t` / `raw_spinlock_t`.
        Spinlock = 1 => "spinlock",
        /// `rwlock_t`.
        Rwlock = 2 => "rwlock",
        /// `struct mutex`.
        Mutex = 3 => "mutex",
        /// `struct rw_semaphore`.
        Rwsem = 4 => "rwsem",
        /// `pthread_mutex_t`.
        PthreadMutex = 5 => "pthread_mutex",
        /// `pthread_rwlock_t`.
        PthreadRwlock = 6 => "pthread_rwlock",
    }
}

wire_enum! {
    /// Hardware-interrupt state at the probe point.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum IrqState: u32 else Unknown {
        /// The kernel gave no way to read it (no `bpf_local_irq_save` kfunc before Linux
        /// 6.14). Consumers must not guess.
        Unknown = 0,
        /// Hardware interrupts were enabled.
        Enabled = 1,
        /// Hardware interrupts were disabled.
        Disabled = 2,
    }
}

impl IrqState {
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

wire_enum! {
    /// Execution context, decoded from the kernel's `preempt_count`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum ExecContext: u32 else Unknown {
        /// The kernel gave no way to read `preempt_count` (offsets missing from BTF).
        Unknown = 0 => "unknown",
        /// Process (task) context.
        Task = 1 => "task",
        /// Serving a softirq.
        Softirq = 2 => "softirq",
        /// In a hardware interrupt handler.
        Hardirq = 3 => "hardirq",
        /// In a non-maskable interrupt.
        Nmi = 4 => "nmi",
    }
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
}

/// Bits of [`Event::flags`], [`Fact::flags`] and [`HeldLock::variant`].
pub mod flags {
    /// The acquisition was a successful trylock (lockdep adds no dependency for it).
    pub const TRYLOCK: u32 = 1 << 0;
    /// The lock variant disables hardware interrupts (`_irq`, `_irqsave`).
    pub const IRQ_VARIANT: u32 = 1 << 1;
    /// The lock variant disables softirqs (`_bh`).
    pub const BH_VARIANT: u32 = 1 << 2;
    /// For [`super::EventKind::PcpuAlloc`]: the allocation was atomic (`is_atomic`).
    pub const ATOMIC: u32 = 1 << 3;
    /// `preempt_count` holds a value read from the kernel.
    pub const PREEMPT_COUNT_VALID: u32 = 1 << 4;
    /// The record came from a trampoline (fentry/fexit) rather than a tracepoint.
    pub const FROM_TRAMPOLINE: u32 = 1 << 5;
    /// Softirqs were disabled (softirq count non-zero) at the probe point.
    pub const SOFTIRQS_DISABLED: u32 = 1 << 6;
    /// [`super::Fact::frames`] is a user stack.
    pub const USER_STACK: u32 = 1 << 7;
    /// The lock variant bits a held lock keeps.
    pub const VARIANT_MASK: u32 = TRYLOCK | IRQ_VARIANT | BH_VARIANT;
}

/// One lock event as a probe sees it: the input of user space's model of the kernel side
/// (`tracer::model`), which runs the same held-stack, class and chain code as the programs and
/// turns a stream of these into [`Fact`]s. Fixtures, benchmarks and tests speak in events; the
/// programs build the same fields from their context and never send them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// The lock's address (kernel or user virtual address), 0 when not a lock event.
    pub lock_addr: u64,
    /// The caller's instruction address.
    pub caller: u64,
    /// Kind-specific argument (see [`EventKind`]).
    pub arg: u64,
    /// Second kind-specific argument (see [`EventKind`]).
    pub arg2: u64,
    /// The `struct kmem_cache *` of the slab the lock lives in, or 0.
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
    /// Kernel stack id (an index into the model's stack table), or negative when none.
    pub kernel_stack_id: i32,
    /// User stack id (an index into the model's stack table), or negative when none.
    pub user_stack_id: i32,
    /// With [`Event::slab_cache`]: the lock's offset inside its slab object plus one, or 0.
    pub slab_offset: u32,
    /// The lock's offset in the static per-CPU area plus one, or 0 when it is not there.
    pub percpu_offset: u32,
    /// Non-zero when [`Event::slab_cache`] is a generic (`kmalloc-*`) cache.
    pub slab_generic: u32,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; 16],
}

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
            percpu_offset: 0,
            slab_generic: 0,
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

    /// Where and how the event ran, as the usage bits and chain keys see it.
    pub const fn acquire_state(&self) -> AcquireState {
        AcquireState {
            context: self.exec_context(),
            irqs: self.irq_state(),
            softirqs_disabled: if self.has(flags::PREEMPT_COUNT_VALID) {
                Some(self.has(flags::SOFTIRQS_DISABLED))
            } else {
                None
            },
        }
    }

    /// Where the lock sits, as [`class::classify`] takes it.
    pub const fn instance(&self) -> class::Instance {
        class::Instance {
            addr: self.lock_addr,
            site: self.caller,
            user_pid: if self.lock_kind().is_user() {
                Some(self.pid)
            } else {
                None
            },
            percpu_offset: if self.percpu_offset != 0 {
                Some(self.percpu_offset - 1)
            } else {
                None
            },
            slab_cache: self.slab_cache,
            slab_offset: self.slab_offset,
            slab_generic: self.slab_generic != 0,
            family: self.lock_kind().family(),
        }
    }
}

wire_enum! {
    /// Per-CPU counters the programs keep (map `COUNTERS`), indexed by this enum. User space
    /// sums them over CPUs, shows them and records them. Losses ([`Counter::is_loss`]) are
    /// events of the traced kernel or programs that could not be followed; the held-state
    /// counters say how often the held stacks had to correct themselves.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Counter: u32 {
        /// The ring buffer was full: a fact was not written. Nothing was remembered for it, so
        /// the next acquisition with the same news sends it again.
        RingFull = 0 => "ring_full",
        /// A uretprobe found no pending entry for its thread (the entry map was full or the
        /// entry probe was missed): a user-space acquisition was lost.
        PendingMissing = 1 => "pending_missing",
        /// The pending-call map was full, so a uprobe entry could not be remembered.
        PendingFull = 2 => "pending_full",
        /// A fact's stack could not be taken.
        StackFailed = 3 => "stack_failed",
        /// A probe fired inside another of our programs run by the same task in the same
        /// context: a lock taken by our own helpers (ring buffer, maps), or by the kernel's
        /// work on an interrupt's way out (still task context) while the task was inside one
        /// of our programs. Skipped: following it could re-enter our helpers under their own
        /// locks.
        Nested = 4 => "nested",
        /// Every running-program slot of this CPU and context was held by tasks preempted
        /// inside one of our programs, so the event could not be followed.
        Preempted = 5 => "preempted",
        /// Held entries dropped as stale: expired, left behind by an interrupt handler,
        /// spinning locks of a task that switched out, or re-acquired after a missed release.
        StaleHeld = 6 => "stale_held",
        /// Held entries dropped because a stack was full.
        HeldOverflow = 7 => "held_overflow",
        /// Releases of locks not held where the release ran.
        UnmatchedRelease = 8 => "unmatched_release",
        /// Run-queue locks handed from the task switching out to the next one.
        Handoff = 9 => "handoff",
        /// The task map was full: a task's locks could not be followed.
        TaskMapFull = 10 => "task_map_full",
        /// Lock acquisitions followed.
        Acquisitions = 11 => "acquisitions",
        /// Lock releases followed.
        Releases = 12 => "releases",
        /// Calls of the seed's functions not sent because an identical one was (see
        /// `validate::call`).
        RepeatedCalls = 13 => "repeated_calls",
    }
}

/// Number of [`Counter`] slots in the `COUNTERS` map.
pub const COUNTERS: u32 = Counter::ALL.len() as u32;

impl Counter {
    /// True for events of the traced world that could not be followed (or, for
    /// [`Counter::RingFull`], a fact that had to wait for its next occurrence).
    pub const fn is_loss(self) -> bool {
        matches!(
            self,
            Counter::RingFull
                | Counter::PendingMissing
                | Counter::PendingFull
                | Counter::StackFailed
                | Counter::Preempted
                | Counter::TaskMapFull
        )
    }
}

/// Run-time configuration user space writes into the `CONFIG` array: the kernel-specific
/// facts the programs cannot compute themselves, and the switch that starts and stops a session.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// For [`PreemptCountSource::ThisCpuPtr`]: the `.data..percpu` offset of the variable, so
    /// that its address on this CPU minus this is the CPU's per-CPU base.
    pub this_cpu_var_percpu_offset: u64,
    /// Size of the static per-CPU area (`.data..percpu`), or 0 when unknown: then no lock is
    /// classed as a per-CPU variable.
    pub percpu_size: u64,
    /// Offset of `name` in `struct kmem_cache` (BTF), used where `bpf_get_kmem_cache` exists.
    pub kmem_cache_name_offset: u64,
    /// Offset of `size` (object size with metadata) in `struct kmem_cache`, or 0 when BTF
    /// lacks it: then slab offsets are not computed.
    pub kmem_cache_size_offset: u64,
    /// Offset of `oo` (order and objects per slab) in `struct kmem_cache`.
    pub kmem_cache_oo_offset: u64,
    /// Offset of `pid` in `struct task_struct`, for `sched_switch`.
    pub task_pid_offset: u64,
    /// Offset of this CPU's run-queue lock (`runqueues.__lock`) in the per-CPU area, or 0
    /// when unknown: the lock `sched_switch` hands to the next task.
    pub rq_lock_percpu_offset: u64,
    /// When held entries are stale.
    pub limits: Limits,
    /// How this kernel's `preempt_count` reads as a context.
    pub preempt_layout: PreemptLayout,
    /// Non-zero when the acquire programs are attached: contention is then accounted when
    /// the lock is acquired, under its full class; otherwise when the wait ends.
    pub acquisitions_traced: u32,
    /// locktrace's own thread group: its events are not traced (reading the ring buffer
    /// takes locks, and tracing that would feed back into the ring).
    pub self_pid: u32,
    /// Non-zero while the session records. User space sets it once every probe is attached
    /// and clears it before detaching, so a session never sees acquisitions from a moment when
    /// the matching release probes were not attached yet.
    pub tracing: u32,
    /// Offset of `tgid` in `struct task_struct`, for `sched_switch`: the run-queue lock is not
    /// handed to locktrace's own threads, whose releases are not followed. 0 when unknown.
    pub task_tgid_offset: u32,
}

const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 144);

impl Default for ProbeConfig {
    fn default() -> ProbeConfig {
        ProbeConfig {
            preempt_count_offset: 0,
            task_cfs_rq_offset: 0,
            cfs_rq_rq_offset: 0,
            rq_cpu_offset: 0,
            runqueues_percpu_offset: 0,
            this_cpu_var_percpu_offset: 0,
            percpu_size: 0,
            kmem_cache_name_offset: 0,
            kmem_cache_size_offset: 0,
            kmem_cache_oo_offset: 0,
            task_pid_offset: 0,
            rq_lock_percpu_offset: 0,
            limits: Limits::DEFAULT,
            preempt_layout: PreemptLayout::CLASSIC,
            acquisitions_traced: 0,
            self_pid: 0,
            tracing: 0,
            task_tgid_offset: 0,
        }
    }
}

/// How the programs find this CPU's `preempt_count`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
/// The programs' read-only global `PREEMPT_COUNT_SOURCE` holds its discriminant.
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
    /// `bpf_rdonly_cast(void *obj, u32 btf_id)`. (0x7a11_0004 is
    /// [`super::PREEMPT_COUNT_VAR_MARKER`].)
    pub const RDONLY_CAST: u32 = 0x7a11_0005;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all are repr(C), Copy, have no padding and every bit pattern is valid.
    unsafe impl aya::Pod for super::Fact {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProbeConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HeldStack {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ContentionStat {}
}

#[cfg(test)]
mod tests {
    use super::{
        ClassTag, Counter, EventKind, ExecContext, FactKind, IrqState, LockFamily, LockKind,
        PreemptLayout,
    };

    /// Each wire value decodes to its variant, and an unknown one to nothing or to the
    /// declared fallback.
    #[test]
    fn wire_values_decode_to_their_variants() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_u32(kind as u32), Some(kind));
        }
        for kind in LockKind::ALL {
            assert_eq!(LockKind::from_u32(kind as u32), Some(kind));
        }
        for kind in FactKind::ALL {
            assert_eq!(FactKind::from_u32(kind as u32), Some(kind));
        }
        for tag in ClassTag::ALL {
            assert_eq!(ClassTag::from_u32(tag as u32), Some(tag));
        }
        for counter in Counter::ALL {
            assert_eq!(Counter::from_u32(counter as u32), Some(counter));
        }
        for family in LockFamily::ALL {
            assert_eq!(LockFamily::from_u32(family as u32), family);
        }
        for state in IrqState::ALL {
            assert_eq!(IrqState::from_u32(state as u32), state);
        }
        for context in ExecContext::ALL {
            assert_eq!(ExecContext::from_u32(context as u32), context);
        }
        assert_eq!(EventKind::from_u32(0), None);
        assert_eq!(LockKind::from_u32(10), None);
        assert_eq!(LockFamily::from_u32(7), LockFamily::None);
        assert_eq!(IrqState::from_u32(3), IrqState::Unknown);
        assert_eq!(ExecContext::from_u32(5), ExecContext::Unknown);
    }

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
