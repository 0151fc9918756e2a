//! The maps shared by every program. Each size is chosen on purpose; the comment says why.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf, StackTrace},
};
use tracer_common::{DROP_REASONS, ProbeConfig, SLAB_NAME_LEN};

/// Events to user space. 8 MiB holds about 75,000 events: a few tens of milliseconds of a
/// lock-heavy kernel, enough to ride out a slow reader wake-up without drops.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Kernel and user stacks, deduplicated by the kernel. 16,384 distinct stacks cover the
/// acquisition sites of a busy kernel; a stack whose hash bucket is taken by another is not
/// recorded (counted as `stack_failed`: the event keeps its caller), and user space symbolizes
/// each id when it first sees it.
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(16 * 1024, 0);

/// Per-CPU counters of lost events, indexed by `tracer_common::DropReason`.
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_REASONS, 0);

/// Run-time configuration written by user space before attaching (one entry).
#[map]
pub static CONFIG: Array<ProbeConfig> = Array::with_max_entries(1, 0);

/// A user-space lock call in flight, remembered at function entry until it returns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingLock {
    /// The lock's address.
    pub addr: u64,
    /// `tracer_common::LockKind`.
    pub lock_kind: u32,
    /// `tracer_common::flags` bits.
    pub flags: u32,
}

/// In-flight user lock calls by thread (`pid_tgid`). A thread has at most one lock call in
/// flight, so this needs one slot per thread that is blocked in or entering a lock call:
/// 16,384 threads is far above what the traced programs run at once.
#[map]
pub static PENDING: HashMap<u64, PendingLock> = HashMap::with_max_entries(16 * 1024, 0);

/// Slab cache names by `struct kmem_cache *`, filled the first time a lock in a cache is
/// seen, so user space can name dynamic locks. A kernel has a few hundred caches: 4,096 slots
/// never fill up in practice; a full map only leaves a cache unnamed.
#[map]
pub static SLAB_NAMES: HashMap<u64, [u8; SLAB_NAME_LEN]> = HashMap::with_max_entries(4096, 0);

/// Slab cache geometry by `struct kmem_cache *`, filled with `SLAB_NAMES`: the object size in
/// the low 32 bits, the slab's page order above. As many as caches (4,096).
#[map]
pub static SLAB_GEOMETRY: HashMap<u64, u64> = HashMap::with_max_entries(4096, 0);

/// One per-CPU flag: events were lost on this CPU since the last one written. The next event
/// written there carries `flags::AFTER_LOSS`, so user space knows where its view has a hole.
#[map]
pub static LOSS_PENDING: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Slots per context level in [`RUNNING`]: the task running one of our programs, plus up to
/// three more tasks preempted inside one on the same CPU (each preemption needs a task
/// switch in the middle of a program a few hundred instructions long: more is not seen).
pub const RUNNING_SLOTS: u32 = 4;

/// Per CPU, per context level (task, softirq, hardirq, NMI) and per slot: the task running one
/// of our programs there (see `emit::Running`).
#[map]
pub static RUNNING: PerCpuArray<u64> = PerCpuArray::with_max_entries(4 * RUNNING_SLOTS, 0);

/// Per CPU and per context level: the lock address whose release the first copy of a release
/// program reported, and how many copies of that call are still to run (see
/// `kernel_locks::on_release`).
#[map]
pub static RELEASE_CLAIM: PerCpuArray<u64> = PerCpuArray::with_max_entries(2 * 4, 0);
