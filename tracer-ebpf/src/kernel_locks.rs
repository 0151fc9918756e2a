//! Kernel lock primitives through BPF trampolines: fexit on the acquire functions (the lock is
//! held when they return; trylocks report only success) and fentry on the release functions.
//! Needs a kernel that allows trampolines (Linux 5.5+, not locked down against them).

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_probe_read_kernel,
    programs::{FEntryContext, FExitContext},
};
use tracer_common::{Event, EventKind, LockKind, flags};

use crate::{context, emit, maps::RELEASE_CLAIM};

/// How an acquire function says it succeeded.
#[derive(Clone, Copy)]
pub enum Success {
    /// It cannot fail (`spin_lock`, `mutex_lock`, `down_read` ...).
    Always,
    /// It returns non-zero on success (`*_trylock`).
    NonZero,
    /// It returns zero on success (`*_interruptible`, `*_killable`).
    Zero,
}

/// Reports an acquisition when the acquire function returned holding the lock.
#[inline(always)]
pub fn on_acquire(ctx: &FExitContext, lock_kind: LockKind, variant: u32, success: Success) {
    let Some((cfg, _running, here)) = context::begin() else {
        return;
    };
    // Every hooked acquire function takes exactly one argument: the lock. The return value
    // follows the arguments in the trampoline's context.
    let lock: u64 = ctx.arg(0);
    // The same address as a plain scalar (copied out of the context), for the kfunc.
    // SAFETY: the context's first slot is the argument.
    let lock_scalar: u64 =
        unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const u64) }.unwrap_or(0);
    let held = match success {
        Success::Always => true,
        Success::NonZero => ctx.arg::<i32>(1) != 0,
        Success::Zero => ctx.arg::<i32>(1) == 0,
    };
    if !held {
        return;
    }
    let mut ev = Event::zeroed();
    ev.kind = EventKind::LockAcquire as u32;
    ev.lock_kind = lock_kind as u32;
    ev.lock_addr = lock;
    ev.flags = variant | flags::FROM_TRAMPOLINE;
    (ev.slab_cache, ev.slab_offset) = context::slab_cache(lock_scalar, cfg);
    context::fill(&mut ev, cfg, &here);
    context::raw_callers(ctx, &mut ev);
    ev.kernel_stack_id = emit::kernel_stack(ctx);
    emit::send(&mut ev);
}

/// Identical programs on each release function (see `main.rs`): a task interrupted by a
/// softirq interrupted by a hardirq still finds one free.
pub const RELEASE_COPIES: u64 = 3;

/// Reports a release before the release function drops the lock. [`RELEASE_COPIES`] programs
/// run this for every call; the first of them to run reports it.
#[inline(always)]
pub fn on_release(ctx: &FEntryContext, lock_kind: LockKind) {
    let Some((cfg, _running, here)) = context::begin() else {
        return;
    };
    let addr: u64 = ctx.arg(0);
    if !first_copy(here.level, addr) {
        return;
    }
    let mut ev = Event::zeroed();
    ev.kind = EventKind::LockRelease as u32;
    ev.lock_kind = lock_kind as u32;
    ev.lock_addr = addr;
    ev.flags = flags::FROM_TRAMPOLINE;
    context::fill(&mut ev, cfg, &here);
    context::raw_callers(ctx, &mut ev);
    emit::send(&mut ev);
}

/// True for the first of the [`RELEASE_COPIES`] programs of one release call to run on this CPU at
/// context `level`: it reports the release, and the others that follow in the same call only
/// count down. When the kernel skipped the first (it was running already, interrupted), the
/// next finds no claim for `addr` and reports instead.
#[inline(always)]
fn first_copy(level: u32, addr: u64) -> bool {
    let (Some(claimed), Some(left)) = (
        RELEASE_CLAIM.get_ptr_mut(level * 2),
        RELEASE_CLAIM.get_ptr_mut(level * 2 + 1),
    ) else {
        return true;
    };
    // SAFETY: per-CPU slots of one context level. A task preempted between two copies (a
    // sleeping lock's release) may find its claim overwritten by another task's release and
    // report its own again: a duplicate release, which the engine counts as unmatched.
    unsafe {
        if *claimed == addr && *left > 0 {
            *left -= 1;
            if *left == 0 {
                *claimed = 0;
            }
            return false;
        }
        *claimed = addr;
        *left = RELEASE_COPIES - 1;
    }
    true
}
