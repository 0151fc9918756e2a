//! Kernel lock primitives through BPF trampolines: fexit on the acquire functions (the lock is
//! held when they return; trylocks report only success) and fentry on the release functions,
//! plus the scheduler's hand-over of the run-queue lock and task exit. Needs a kernel that
//! allows trampolines (Linux 5.5+, not locked down against them).

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_probe_read_kernel,
    programs::{BtfTracePointContext, FEntryContext, FExitContext},
};
use tracer_common::{HeldLock, IrqState, LockKind, class::classify, flags};

use crate::{
    context, held,
    maps::RELEASE_CLAIM,
    validate::{self, Maps},
};

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

/// Follows an acquisition when the acquire function returned holding the lock.
#[inline(always)]
pub fn on_acquire(ctx: &FExitContext, lock_kind: LockKind, variant: u32, success: Success) {
    let held = match success {
        Success::Always => true,
        Success::NonZero => ctx.arg::<i32>(1) != 0,
        Success::Zero => ctx.arg::<i32>(1) == 0,
    };
    if !held {
        return;
    }
    let Some((cfg, _running, here)) = context::begin() else {
        return;
    };
    // Every hooked acquire function takes exactly one argument: the lock. Laundered, the
    // typed pointer becomes the plain number the kfunc wants.
    let addr: u64 = here.launder(ctx.arg(0));
    let site = context::trampoline_caller(ctx, cfg, Some(context::FEXIT_ONE_ARG_RETURN_SLOT));
    let class = classify(&context::instance(
        addr,
        site,
        lock_kind.family(),
        cfg,
        &here,
    ));
    let lock = here.launder_lock(HeldLock {
        addr,
        site,
        class,
        class_key: class.key(),
        acquired_ns: context::coarse_ns(),
        cpu: here.cpu,
        kind: lock_kind as u32,
        variant,
        ..HeldLock::default()
    });
    let Some(stack) = held::kernel_stack(&here, true) else {
        return;
    };
    let mut maps = Maps {
        ctx,
        here: &here,
        irqs: context::irq_state(cfg, &here),
        flags: flags::FROM_TRAMPOLINE,
        user: false,
    };
    validate::acquire(&mut maps, cfg, stack, lock);
}

/// Identical programs on each release function (see `main.rs`): a task interrupted by a
/// softirq interrupted by a hardirq still finds one free.
pub const RELEASE_COPIES: u64 = 3;

/// Follows a release before the release function drops the lock. [`RELEASE_COPIES`] programs
/// run this for every call; the first of them to run handles it.
#[inline(always)]
pub fn on_release(ctx: &FEntryContext) {
    let Some(located) = context::locate() else {
        return;
    };
    let addr: u64 = ctx.arg(0);
    if !first_copy(located.level, addr) {
        return;
    }
    let Some((_cfg, _running, here)) = context::enter(located) else {
        return;
    };
    let mut maps = Maps {
        ctx,
        here: &here,
        irqs: IrqState::Unknown,
        flags: 0,
        user: false,
    };
    tracer_common::validate::release(&mut maps, held::kernel_stack(&here, false), addr);
}

/// True for the first of the [`RELEASE_COPIES`] programs of one release call to run on this CPU at
/// context `level`: it handles the release, and the others that follow in the same call only
/// count down. When the kernel skipped the first (it was running already, interrupted), the
/// next finds no claim for `addr` and handles it instead.
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
    // handle its own again: the second finds nothing to release, counted as unmatched.
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

/// tp_btf `sched_switch(preempt, prev, next, prev_state)`.
#[inline(always)]
pub fn on_switch(ctx: &BtfTracePointContext) {
    let Some((cfg, running, here)) = context::begin() else {
        return;
    };
    // The arguments as plain scalars (the typed task pointers allow no run-time offsets).
    let arg = |i: usize| {
        // SAFETY: reading the context's argument slots.
        unsafe { bpf_probe_read_kernel((ctx.as_ptr() as *const u64).wrapping_add(i)) }.unwrap_or(0)
    };
    held::switch(cfg, &here, &running, arg(1), arg(2));
}

/// tp_btf `sched_process_free(p)`: the last reference to task `p` goes, after its final
/// switch. Not at `sched_process_exit`: an exiting task takes locks after it, down to its
/// last `schedule()`, and those would make a new stack that nobody deletes.
#[inline(always)]
pub fn on_free(ctx: &BtfTracePointContext) {
    let Some((cfg, _running, _here)) = context::begin() else {
        return;
    };
    // SAFETY: the context's first slot is the task, copied as a plain scalar.
    let task: u64 = unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const u64) }.unwrap_or(0);
    held::free(cfg, task);
}

/// tp_btf `contention_begin(lock, flags)` (`begin`) and `contention_end(lock, ret)`.
#[inline(always)]
pub fn on_contention(ctx: &BtfTracePointContext, begin: bool) {
    let Some((cfg, _running, here)) = context::begin() else {
        return;
    };
    // SAFETY: the context's first slot is the lock address, copied as a plain scalar.
    let addr: u64 = unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const u64) }.unwrap_or(0);
    let Some(stack) = held::kernel_stack(&here, true) else {
        return;
    };
    let begin = begin.then(|| ctx.arg::<u64>(1) & 0xffff_ffff);
    validate::contention(ctx, cfg, &here, stack, addr, begin);
}
