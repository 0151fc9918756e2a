//! The maps shared by every program. Each size is chosen on purpose; the comment says why.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{COUNTERS, ContentionStat, HeldStack, ProbeConfig, SLAB_NAME_LEN};

/// `BPF_F_NO_PREALLOC`: entries are allocated when inserted, so memory follows the tasks that
/// exist rather than the map's maximum.
const NO_PREALLOC: u32 = 1;

/// Facts to user space. A fact is 3.2 KiB (32 held locks and 64 frames); 16 MiB hold about
/// 5,000 of them, the burst of new chains a busy kernel shows in its first seconds. In steady
/// state a few facts a second cross it.
#[map]
pub static FACTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU counters, indexed by `tracer_common::Counter`.
#[map]
pub static COUNTERS_MAP: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS, 0);

/// Run-time configuration written by user space before attaching (one entry).
#[map]
pub static CONFIG: Array<ProbeConfig> = Array::with_max_entries(1, 0);

/// The monotonic clock (`CLOCK_MONOTONIC`, `bpf_ktime_get_ns`'s) in nanoseconds, as user space
/// writes it every 10 ms while a session runs: the tick-resolution clock held entries are
/// stamped with (see `context::coarse_ns`).
#[map]
pub static CLOCK: Array<u64> = Array::with_max_entries(1, 0);

/// Held locks of each task's task context (and, under another key, of its user-space locks),
/// by `tracer_common::held::task_key`. A hash keyed by thread id rather than task storage:
/// aya-ebpf 0.3 has no task-storage map, and a hash works on every kernel (bcc's deadlock tool
/// keeps its held locks the same way). Entries are created by a task's first acquisition and
/// deleted when the task is freed (`sched_process_free`: after its final switch, so that no
/// lock the exiting task still takes makes a new one), so 65,536 is room for every live thread
/// of a large machine; a full map leaves a task untraced, counted as `task_map_full`.
#[map]
pub static TASK_HELD: HashMap<u64, HeldStack> = HashMap::with_max_entries(65536, NO_PREALLOC);

/// An empty held stack, the value a new task's entry is created from (a 2.6 KiB value cannot
/// be built on the 512-byte BPF stack). Never written.
#[map]
pub static EMPTY_HELD: Array<HeldStack> = Array::with_max_entries(1, 0);

/// The held stacks of one CPU's interrupt contexts, by `tracer_common::held::irq_level`:
/// softirq, hardirq, NMI. One value, so one lookup serves a program's checks of all three.
#[repr(C)]
pub struct IrqStacks {
    /// Softirq, hardirq and NMI stacks.
    pub stacks: [HeldStack; 3],
}

/// Held locks of each CPU's interrupt contexts (one entry per CPU).
#[map]
pub static IRQ_HELD: PerCpuArray<IrqStacks> = PerCpuArray::with_max_entries(1, 0);

/// lockdep's chain cache: the lookup keys (`tracer_common::chain::lookup_key`) of every chain
/// reported. A busy kernel has some tens of thousands of chains (lockdep's own limit is 64 K;
/// classes by acquisition site make more); 131,072 keep them all, and LRU eviction only means a
/// chain is reported once more, which user space recognises.
#[map]
pub static CHAINS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(131_072, 0);

/// Usage bits of every class seen, by class key. A kernel has a few thousand lock classes;
/// 32,768 leave room for classes by site. Eviction only reports a bit again.
#[map]
pub static USAGE: LruHashMap<u64, u8> = LruHashMap::with_max_entries(32_768, 0);

/// How often and how long each class was contended, by class key, read by user space once a
/// second. As many as usage entries.
#[map]
pub static CONTENTION: LruHashMap<u64, ContentionStat> = LruHashMap::with_max_entries(32_768, 0);

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

/// Kernel acquire calls in flight that may fail (the kprobe path), by thread and context
/// level (see `kernel_locks::call_key`): the lock, the caller and the flags their kprobe saw,
/// for the kretprobe that sees the result. One slot per thread blocked in such a call
/// (`mutex_lock_interruptible`, `down_read_killable` ...) or between a trylock's entry and
/// return; LRU, so a return the kernel missed (kretprobe instances run out) leaves no slot
/// behind for good.
#[map]
pub static CALLS: LruHashMap<u64, [u64; 3]> = LruHashMap::with_max_entries(16 * 1024, 0);

/// Slab cache names by `struct kmem_cache *`, filled the first time a lock in a cache is
/// seen, so user space can name dynamic locks. A kernel has a few hundred caches: 4,096 slots
/// never fill up in practice; a full map only leaves a cache unnamed.
#[map]
pub static SLAB_NAMES: HashMap<u64, [u8; SLAB_NAME_LEN]> = HashMap::with_max_entries(4096, 0);

/// Slab cache geometry by `struct kmem_cache *`, filled with `SLAB_NAMES`: the object size in
/// the low 32 bits, the slab's page order above it, and [`SLAB_GENERIC`] for `kmalloc-*`.
/// As many as caches (4,096).
#[map]
pub static SLAB_GEOMETRY: HashMap<u64, u64> = HashMap::with_max_entries(4096, 0);

/// In a [`SLAB_GEOMETRY`] value: the cache is a generic one (`kmalloc-*`).
pub const SLAB_GENERIC: u64 = 1 << 40;

/// Slots per context level in [`CpuState::running`]: the task running one of our programs,
/// plus up to three more tasks preempted inside one on the same CPU (each preemption needs a
/// task switch in the middle of a program a few hundred instructions long: more is not seen).
pub const RUNNING_SLOTS: u32 = 4;

/// What the programs keep per CPU, in one value so that one lookup finds all of it.
#[repr(C)]
pub struct CpuState {
    /// Per context level (task, softirq, hardirq, NMI) and slot: the task running one of our
    /// programs there (see `emit::Running`).
    pub running: [u64; 4 * RUNNING_SLOTS as usize],
    /// Per running slot: one word through which a typed pointer becomes a plain number (see
    /// `context::Here::number`), private to the slot's program run.
    pub scratch: [u64; 4 * RUNNING_SLOTS as usize],
    /// Per context level: the lock address whose release the first copy of a release program
    /// handled, and how many copies of that call are still to run (see
    /// `kernel_locks::on_release`).
    pub release_claims: [[u64; 2]; 4],
    /// This CPU's per-CPU base, as a plain number (see `context::enter`). Every program that
    /// writes it writes the same value.
    pub percpu_base: u64,
}

/// One [`CpuState`] per CPU.
#[map]
pub static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's [`CpuState`], for the program run.
#[inline(always)]
pub fn cpu_state() -> Option<&'static mut CpuState> {
    let state = CPU_STATE.get_ptr_mut(0)?;
    // SAFETY: this CPU's value, valid for the program run; programs of other CPUs do not see
    // it, and what a nested or preempting program of this CPU writes is said where written.
    Some(unsafe { &mut *state })
}

/// Slots of [`RecentCaches::chains`]: a power of two. A busy kernel's steady state revisits a
/// few thousand chains per CPU; 2,048 keep most of them in 16 KiB (a per-CPU value is at most
/// 32 KiB: the per-CPU allocator's smallest unit).
pub const RECENT_CHAINS: usize = 2048;

/// Slots of [`RecentCaches::slabs`]: a power of two, a few times the caches a CPU's locks sit
/// in at once.
pub const RECENT_SLABS: usize = 64;

/// Per-CPU, direct-mapped caches in front of the shared hash maps: an array element is found
/// with a few instructions, a hash map entry with a hash and a bucket walk, and the lock
/// programs look one up on every acquisition. A miss (a slot taken by another key, or written
/// by an interrupting program) only falls through to the hash map.
#[repr(C)]
pub struct RecentCaches {
    /// Chain-cache lookup keys known to be in [`CHAINS`], each at `key % RECENT_CHAINS`.
    pub chains: [u64; RECENT_CHAINS],
    /// `[cache, geometry, cache ^ geometry]` from [`SLAB_GEOMETRY`], at a hash of the cache
    /// (see `context::cache_geometry`); the third word rejects an entry half written when another
    /// program on this CPU wrote the same slot.
    pub slabs: [[u64; 3]; RECENT_SLABS],
}

/// One [`RecentCaches`] per CPU.
#[map]
pub static RECENT: PerCpuArray<RecentCaches> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU: hardirq and softirq bracket depths (`irq:*_entry`/`*_exit`), which place events
/// only where `preempt_count` cannot be read.
#[map]
pub static BRACKETS: PerCpuArray<u32> = PerCpuArray::with_max_entries(2, 0);
