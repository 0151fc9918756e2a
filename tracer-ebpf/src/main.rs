//! locktrace's eBPF programs: lockdep's hot path, where the locks are taken. Held locks,
//! classes, the chain cache and usage bits live here (the logic is `tracer_common`'s, shared
//! with user space); only what is new crosses the ring buffer, as a `Fact`. Each entry point
//! is a thin wrapper generated below; the logic lives in one module per concern:
//! - `kernel_locks`: spin/rw locks, mutexes and rwsems by fexit (acquire) and fentry (release),
//!   or by kprobes (the kprobe path: where they see more than a trampoline, where trampolines
//!   are refused, under `--attach kprobe`); the scheduler's run-queue lock hand-over, task exit
//!   and the contention tracepoints;
//! - `allocator`: `pcpu_alloc`, `free_percpu`, `vfree` by fentry, kprobe or tracepoint, and
//!   the interrupt brackets;
//! - `user_locks`: pthread mutexes and rwlocks by uprobes;
//! - `validate`: an acquisition against the held stack, the chain cache and the usage bits;
//! - `held`: where the held stacks live;
//! - `context`, `emit`, `maps`: where a program runs, counters and facts, the maps.
//!
//! User space (`tracer::probes`) names every program listed here; keep the two in step.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod allocator;
mod context;
mod emit;
mod held;
mod kernel_locks;
mod maps;
mod user_locks;
mod validate;

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, uprobe, uretprobe},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use kernel_locks::Success;
use tracer_common::{EventKind, LockKind, flags};

/// fexit programs on kernel acquire functions: (program, function, lock kind, variant flags,
/// how success is reported).
macro_rules! acquire {
    ($($prog:ident => $func:literal, $kind:ident, $variant:expr, $success:ident;)+) => {$(
        #[fexit(function = $func)]
        pub fn $prog(ctx: FExitContext) -> i32 {
            kernel_locks::on_acquire(&ctx, LockKind::$kind, $variant, Success::$success);
            0
        }
    )+};
}

/// kprobe programs at the entry of kernel acquire functions that cannot fail: (program,
/// function, lock kind, variant flags). They replace the fexit programs of the same functions
/// where kprobes see more (see `tracer::probes::kernel::Preference`), where trampolines are
/// refused, and under `--attach kprobe`.
macro_rules! acquire_at_entry {
    ($($prog:ident => $func:literal, $kind:ident, $variant:expr;)+) => {$(
        #[kprobe(function = $func)]
        pub fn $prog(ctx: ProbeContext) -> u32 {
            kernel_locks::on_acquire_entry(&ctx, LockKind::$kind, $variant);
            0
        }
    )+};
}

/// fentry programs on kernel release functions: the identical copies of each function's
/// program, named on one line, with whether the release runs preemptible (a sleeping lock's).
/// Each copy knows how many there are (see `kernel_locks::on_release`).
macro_rules! release {
    ($(($($prog:ident),+) => $func:literal, $preemptible:literal;)+) => {$(
        release!(@copies [$($prog),+] [$($prog),+] $func, $preemptible);
    )+};
    (@copies [$($prog:ident),+] $all:tt $func:literal, $preemptible:literal) => {$(
        #[fentry(function = $func)]
        pub fn $prog(ctx: FEntryContext) -> i32 {
            kernel_locks::on_release(&ctx, $preemptible, release!(@count $all));
            0
        }
    )+};
    (@count [$($prog:ident),+]) => {
        [$(stringify!($prog)),+].len() as u64
    };
}

const NONE: u32 = 0;
const IRQ: u32 = flags::IRQ_VARIANT;
const BH: u32 = flags::BH_VARIANT;
const TRY: u32 = flags::TRYLOCK;

acquire! {
    acq_spin => "_raw_spin_lock", Spin, NONE, Always;
    acq_spin_irqsave => "_raw_spin_lock_irqsave", Spin, IRQ, Always;
    acq_spin_irq => "_raw_spin_lock_irq", Spin, IRQ, Always;
    acq_spin_bh => "_raw_spin_lock_bh", Spin, BH, Always;
    acq_spin_try => "_raw_spin_trylock", Spin, TRY, NonZero;
    acq_spin_try_bh => "_raw_spin_trylock_bh", Spin, TRY | BH, NonZero;
    acq_read => "_raw_read_lock", RwlockRead, NONE, Always;
    acq_read_irqsave => "_raw_read_lock_irqsave", RwlockRead, IRQ, Always;
    acq_read_irq => "_raw_read_lock_irq", RwlockRead, IRQ, Always;
    acq_read_bh => "_raw_read_lock_bh", RwlockRead, BH, Always;
    acq_read_try => "_raw_read_trylock", RwlockRead, TRY, NonZero;
    acq_write => "_raw_write_lock", RwlockWrite, NONE, Always;
    acq_write_irqsave => "_raw_write_lock_irqsave", RwlockWrite, IRQ, Always;
    acq_write_irq => "_raw_write_lock_irq", RwlockWrite, IRQ, Always;
    acq_write_bh => "_raw_write_lock_bh", RwlockWrite, BH, Always;
    acq_write_try => "_raw_write_trylock", RwlockWrite, TRY, NonZero;
    acq_mutex => "mutex_lock", Mutex, NONE, Always;
    acq_mutex_intr => "mutex_lock_interruptible", Mutex, NONE, Zero;
    acq_mutex_kill => "mutex_lock_killable", Mutex, NONE, Zero;
    acq_mutex_io => "mutex_lock_io", Mutex, NONE, Always;
    acq_mutex_try => "mutex_trylock", Mutex, TRY, NonZero;
    acq_down_read => "down_read", RwsemRead, NONE, Always;
    acq_down_read_intr => "down_read_interruptible", RwsemRead, NONE, Zero;
    acq_down_read_kill => "down_read_killable", RwsemRead, NONE, Zero;
    acq_down_read_try => "down_read_trylock", RwsemRead, TRY, NonZero;
    acq_down_write => "down_write", RwsemWrite, NONE, Always;
    acq_down_write_kill => "down_write_killable", RwsemWrite, NONE, Zero;
    acq_down_write_try => "down_write_trylock", RwsemWrite, TRY, NonZero;
}

// The first six leave the interrupt state as it was: where the kfunc that reads it is
// missing, the flags a kprobe saves say it. The rest follow the other functions that cannot
// fail where trampolines are refused or see less, and under `--attach kprobe`.
acquire_at_entry! {
    kp_acq_spin => "_raw_spin_lock", Spin, NONE;
    kp_acq_spin_bh => "_raw_spin_lock_bh", Spin, BH;
    kp_acq_read => "_raw_read_lock", RwlockRead, NONE;
    kp_acq_read_bh => "_raw_read_lock_bh", RwlockRead, BH;
    kp_acq_write => "_raw_write_lock", RwlockWrite, NONE;
    kp_acq_write_bh => "_raw_write_lock_bh", RwlockWrite, BH;
    kp_acq_spin_irqsave => "_raw_spin_lock_irqsave", Spin, IRQ;
    kp_acq_spin_irq => "_raw_spin_lock_irq", Spin, IRQ;
    kp_acq_read_irqsave => "_raw_read_lock_irqsave", RwlockRead, IRQ;
    kp_acq_read_irq => "_raw_read_lock_irq", RwlockRead, IRQ;
    kp_acq_write_irqsave => "_raw_write_lock_irqsave", RwlockWrite, IRQ;
    kp_acq_write_irq => "_raw_write_lock_irq", RwlockWrite, IRQ;
    kp_acq_mutex => "mutex_lock", Mutex, NONE;
    kp_acq_mutex_io => "mutex_lock_io", Mutex, NONE;
    kp_acq_down_read => "down_read", RwsemRead, NONE;
    kp_acq_down_write => "down_write", RwsemWrite, NONE;
}

/// kretprobe programs on kernel acquire functions that may fail (the kprobe path):
/// (program, function, lock kind, variant flags, how success is reported). Their entry half
/// is one program, [`kp_acq_call`], attached to each of the functions.
macro_rules! acquire_on_return {
    ($($prog:ident => $func:literal, $kind:ident, $variant:expr, $success:ident;)+) => {$(
        #[kretprobe(function = $func)]
        pub fn $prog(ctx: RetProbeContext) -> u32 {
            kernel_locks::on_acquire_return(&ctx, LockKind::$kind, $variant, Success::$success);
            0
        }
    )+};
}

/// kprobe at the entry of every kernel acquire function that may fail (the kprobe path):
/// remembers the call for its kretprobe.
#[kprobe(function = "_raw_spin_trylock")]
pub fn kp_acq_call(ctx: ProbeContext) -> u32 {
    kernel_locks::on_acquire_call(&ctx);
    0
}

acquire_on_return! {
    kr_acq_spin_try => "_raw_spin_trylock", Spin, TRY, NonZero;
    kr_acq_spin_try_bh => "_raw_spin_trylock_bh", Spin, TRY | BH, NonZero;
    kr_acq_read_try => "_raw_read_trylock", RwlockRead, TRY, NonZero;
    kr_acq_write_try => "_raw_write_trylock", RwlockWrite, TRY, NonZero;
    kr_acq_mutex_intr => "mutex_lock_interruptible", Mutex, NONE, Zero;
    kr_acq_mutex_kill => "mutex_lock_killable", Mutex, NONE, Zero;
    kr_acq_mutex_try => "mutex_trylock", Mutex, TRY, NonZero;
    kr_acq_down_read_intr => "down_read_interruptible", RwsemRead, NONE, Zero;
    kr_acq_down_read_kill => "down_read_killable", RwsemRead, NONE, Zero;
    kr_acq_down_read_try => "down_read_trylock", RwsemRead, TRY, NonZero;
    kr_acq_down_write_kill => "down_write_killable", RwsemWrite, NONE, Zero;
    kr_acq_down_write_try => "down_write_trylock", RwsemWrite, TRY, NonZero;
}

/// kprobe on every spinning lock's release function (the kprobe path).
#[kprobe(function = "_raw_spin_unlock")]
pub fn kp_rel_spinning(ctx: ProbeContext) -> u32 {
    kernel_locks::on_release_kprobe(&ctx, false);
    0
}

/// kprobe on every sleeping lock's release function (the kprobe path).
#[kprobe(function = "mutex_unlock")]
pub fn kp_rel_sleeping(ctx: ProbeContext) -> u32 {
    kernel_locks::on_release_kprobe(&ctx, true);
    0
}

// Every release comes from three identical programs per function. The kernel runs a
// tracing program at most once per CPU at a time: a nested run is skipped (a "recursion
// miss"). All programs on a function run for every call, so an interrupt that arrives while
// a task runs one of them, or a task that runs while another is preempted inside one, finds
// that one busy; the next copy reports the unlock instead, and the copies of one call report
// it once (see `kernel_locks::on_release`). Three cover a task interrupted by a softirq
// interrupted by a hardirq, and an interrupt's exit work that runs in task context, nested
// in the task's own programs (7.3 rearms hrtimers there, under the hrtimer base lock). With
// two copies, 7.3's ordinary workload once showed a false hrtimer_bases / UDP-socket-lock
// inversion: a release of the hrtimer base lock on that path was lost.
release! {
    (rel_spin, rel_spin_2, rel_spin_3) => "_raw_spin_unlock", false;
    (rel_spin_irqrestore, rel_spin_irqrestore_2, rel_spin_irqrestore_3) => "_raw_spin_unlock_irqrestore", false;
    (rel_spin_irq, rel_spin_irq_2, rel_spin_irq_3) => "_raw_spin_unlock_irq", false;
    (rel_spin_bh, rel_spin_bh_2, rel_spin_bh_3) => "_raw_spin_unlock_bh", false;
    (rel_read, rel_read_2, rel_read_3) => "_raw_read_unlock", false;
    (rel_read_irqrestore, rel_read_irqrestore_2, rel_read_irqrestore_3) => "_raw_read_unlock_irqrestore", false;
    (rel_read_irq, rel_read_irq_2, rel_read_irq_3) => "_raw_read_unlock_irq", false;
    (rel_read_bh, rel_read_bh_2, rel_read_bh_3) => "_raw_read_unlock_bh", false;
    (rel_write, rel_write_2, rel_write_3) => "_raw_write_unlock", false;
    (rel_write_irqrestore, rel_write_irqrestore_2, rel_write_irqrestore_3) => "_raw_write_unlock_irqrestore", false;
    (rel_write_irq, rel_write_irq_2, rel_write_irq_3) => "_raw_write_unlock_irq", false;
    (rel_write_bh, rel_write_bh_2, rel_write_bh_3) => "_raw_write_unlock_bh", false;
    // Sleeping locks are released with preemption on: a task preempted inside a copy makes
    // the next task on that CPU find it busy.
    (rel_mutex, rel_mutex_2, rel_mutex_3) => "mutex_unlock", true;
    (rel_up_read, rel_up_read_2, rel_up_read_3) => "up_read", true;
    (rel_up_write, rel_up_write_2, rel_up_write_3) => "up_write", true;
}

/// fentry on the per-CPU allocator; user space loads it against `pcpu_alloc_noprof` or
/// `pcpu_alloc`, whichever the kernel's BTF has.
#[fentry(function = "pcpu_alloc_noprof")]
pub fn fn_pcpu_alloc(ctx: FEntryContext) -> i32 {
    allocator::pcpu_alloc_entry(&ctx);
    0
}

/// fentry on `free_percpu`.
#[fentry(function = "free_percpu")]
pub fn fn_free_percpu(ctx: FEntryContext) -> i32 {
    allocator::free_percpu_entry(&ctx);
    0
}

/// fentry on `vfree`.
#[fentry(function = "vfree")]
pub fn fn_vfree(ctx: FEntryContext) -> i32 {
    allocator::vfree_entry(&ctx);
    0
}

/// kprobe on the per-CPU allocator (`pcpu_alloc_noprof` or `pcpu_alloc`), where the kernel
/// lacks the IRQ-state kfunc or `bpf_get_func_ip`, or refuses trampolines.
#[kprobe(function = "pcpu_alloc_noprof")]
pub fn kp_pcpu_alloc(ctx: ProbeContext) -> u32 {
    allocator::kprobe_entry(&ctx, EventKind::PcpuAlloc);
    0
}

/// kprobe on `free_percpu` (see [`kp_pcpu_alloc`]).
#[kprobe(function = "free_percpu")]
pub fn kp_free_percpu(ctx: ProbeContext) -> u32 {
    allocator::kprobe_entry(&ctx, EventKind::PcpuFree);
    0
}

/// kprobe on `vfree` (see [`kp_pcpu_alloc`]).
#[kprobe(function = "vfree")]
pub fn kp_vfree(ctx: ProbeContext) -> u32 {
    allocator::kprobe_entry(&ctx, EventKind::Vfree);
    0
}

/// tp_btf `percpu:percpu_alloc_percpu`.
#[btf_tracepoint(function = "percpu_alloc_percpu")]
pub fn tp_percpu_alloc(ctx: BtfTracePointContext) -> i32 {
    allocator::percpu_alloc_tp(&ctx);
    0
}

/// tp_btf `percpu:percpu_free_percpu`.
#[btf_tracepoint(function = "percpu_free_percpu")]
pub fn tp_percpu_free(ctx: BtfTracePointContext) -> i32 {
    allocator::percpu_free_tp(&ctx);
    0
}

/// tp_btf `vmalloc:free_vmap_area_noflush`.
#[btf_tracepoint(function = "free_vmap_area_noflush")]
pub fn tp_free_vmap_area(ctx: BtfTracePointContext) -> i32 {
    allocator::free_vmap_area_tp(&ctx);
    0
}

/// tp_btf `lock:contention_begin`.
#[btf_tracepoint(function = "contention_begin")]
pub fn tp_contention_begin(ctx: BtfTracePointContext) -> i32 {
    kernel_locks::on_contention(&ctx, true);
    0
}

/// tp_btf `lock:contention_end`.
#[btf_tracepoint(function = "contention_end")]
pub fn tp_contention_end(ctx: BtfTracePointContext) -> i32 {
    kernel_locks::on_contention(&ctx, false);
    0
}

/// tp_btf `sched:sched_switch`: the run-queue lock changes hands.
#[btf_tracepoint(function = "sched_switch")]
pub fn tp_sched_switch(ctx: BtfTracePointContext) -> i32 {
    kernel_locks::on_switch(&ctx);
    0
}

/// tp_btf `sched:sched_process_free`: a task's held stacks go.
#[btf_tracepoint(function = "sched_process_free")]
pub fn tp_process_free(ctx: BtfTracePointContext) -> i32 {
    kernel_locks::on_free(&ctx);
    0
}

/// tp_btf `irq:irq_handler_entry`.
#[btf_tracepoint(function = "irq_handler_entry")]
pub fn tp_hardirq_entry(_ctx: BtfTracePointContext) -> i32 {
    allocator::irq_bracket(true, true);
    0
}

/// tp_btf `irq:irq_handler_exit`.
#[btf_tracepoint(function = "irq_handler_exit")]
pub fn tp_hardirq_exit(_ctx: BtfTracePointContext) -> i32 {
    allocator::irq_bracket(true, false);
    0
}

/// tp_btf `irq:softirq_entry`.
#[btf_tracepoint(function = "softirq_entry")]
pub fn tp_softirq_entry(_ctx: BtfTracePointContext) -> i32 {
    allocator::irq_bracket(false, true);
    0
}

/// tp_btf `irq:softirq_exit`.
#[btf_tracepoint(function = "softirq_exit")]
pub fn tp_softirq_exit(_ctx: BtfTracePointContext) -> i32 {
    allocator::irq_bracket(false, false);
    0
}

/// uprobe on `pthread_mutex_lock` and `pthread_mutex_timedlock`.
#[uprobe]
pub fn up_mutex_lock(ctx: ProbeContext) -> i32 {
    user_locks::on_lock_entry(&ctx, LockKind::PthreadMutex, NONE);
    0
}

/// uprobe on `pthread_mutex_trylock`.
#[uprobe]
pub fn up_mutex_trylock(ctx: ProbeContext) -> i32 {
    user_locks::on_lock_entry(&ctx, LockKind::PthreadMutex, TRY);
    0
}

/// uprobe on `pthread_rwlock_rdlock`.
#[uprobe]
pub fn up_rwlock_rdlock(ctx: ProbeContext) -> i32 {
    user_locks::on_lock_entry(&ctx, LockKind::PthreadRwlockRead, NONE);
    0
}

/// uprobe on `pthread_rwlock_tryrdlock`.
#[uprobe]
pub fn up_rwlock_tryrdlock(ctx: ProbeContext) -> i32 {
    user_locks::on_lock_entry(&ctx, LockKind::PthreadRwlockRead, TRY);
    0
}

/// uprobe on `pthread_rwlock_wrlock`.
#[uprobe]
pub fn up_rwlock_wrlock(ctx: ProbeContext) -> i32 {
    user_locks::on_lock_entry(&ctx, LockKind::PthreadRwlockWrite, NONE);
    0
}

/// uprobe on `pthread_rwlock_trywrlock`.
#[uprobe]
pub fn up_rwlock_trywrlock(ctx: ProbeContext) -> i32 {
    user_locks::on_lock_entry(&ctx, LockKind::PthreadRwlockWrite, TRY);
    0
}

/// uretprobe on every pthread lock function above.
#[uretprobe]
pub fn up_lock_return(ctx: RetProbeContext) -> i32 {
    user_locks::on_lock_return(&ctx);
    0
}

/// uprobe on `pthread_mutex_unlock`.
#[uprobe]
pub fn up_mutex_unlock(ctx: ProbeContext) -> i32 {
    user_locks::on_unlock(&ctx);
    0
}

/// uprobe on `pthread_rwlock_unlock` (readers and writers alike: the held entry knows which
/// side was taken).
#[uprobe]
pub fn up_rwlock_unlock(ctx: ProbeContext) -> i32 {
    user_locks::on_unlock(&ctx);
    0
}

/// Empty uprobe and uretprobe: the bare-uprobe baseline of the overhead benchmark.
#[uprobe]
pub fn up_empty(_ctx: ProbeContext) -> i32 {
    0
}

/// See [`up_empty`].
#[uretprobe]
pub fn up_empty_ret(_ctx: RetProbeContext) -> i32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
