//! Kernel lock primitives through BPF trampolines: fexit on the acquire functions (the lock is
//! held when they return; trylocks report only success) and fentry on the release functions,
//! plus the scheduler's hand-over of the run-queue lock and task exit. Needs a kernel that
//! allows trampolines (Linux 5.5+, not locked down against them). The same by kprobes (the
//! kprobe path): where the kernel refuses trampolines, where a kprobe sees more (the flags
//! register, where the IRQ-state kfunc is missing; the caller, where `bpf_get_func_ip` is), and
//! under `--attach kprobe`.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use tracer_common::{HeldLock, IrqState, LockKind, ProbeConfig, class::classify, flags};

use crate::{
    context::{self, Here},
    emit::Running,
    held,
    maps::{CALLS, CpuState, cpu_state},
    validate::{self, Maps, ReleaseCounts},
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
    let Some((cfg, here)) = context::begin() else {
        return;
    };
    // Every hooked acquire function takes exactly one argument: the lock. The typed pointer
    // becomes the plain number the kfunc wants.
    let addr: u64 = here.number(ctx.arg(0));
    let site = context::trampoline_caller(ctx, &here, Some(context::FEXIT_ONE_ARG_RETURN_SLOT));
    // An `_irq` or `_irqsave` function returns with interrupts disabled: no need to read
    // the state (and where the kfunc is missing, it is known all the same).
    let irqs = if variant & flags::IRQ_VARIANT != 0 {
        IrqState::Disabled
    } else {
        context::irq_state(&here)
    };
    let taken = Taken {
        addr,
        site,
        lock_kind,
        variant,
        irqs,
        at_entry: false,
    };
    take(ctx, cfg, &here, taken, flags::FROM_TRAMPOLINE);
}

/// Follows an acquisition at the acquire function's entry, by kprobe (the kprobe path): the
/// registers the probe saved hold the flags the lock is taken with and the caller.
/// Only for functions that cannot fail; the lock is not held yet, as in lockdep's own
/// `lock_acquire`, which runs before the lock is taken (see `HeldLock::at_entry`).
#[inline(always)]
pub fn on_acquire_entry(ctx: &ProbeContext, lock_kind: LockKind, variant: u32) {
    let Some((cfg, here)) = context::begin() else {
        return;
    };
    let regs = ctx.regs;
    // SAFETY: a kprobe's context is the saved registers, read with plain loads.
    let (lock, sp, eflags) = unsafe { ((*regs).rdi, (*regs).rsp, (*regs).eflags) };
    let irqs = state_with_flags(&here, variant, eflags);
    let taken = Taken {
        addr: here.number(lock),
        site: context::return_address(sp),
        lock_kind,
        variant,
        irqs,
        at_entry: true,
    };
    take(ctx, cfg, &here, taken, 0);
}

/// The entry half of an acquisition that may fail, by kprobe (the kprobe path): remembers
/// the lock, the caller and the flags for [`on_acquire_return`], which sees the result but no
/// longer the arguments.
#[inline(always)]
pub fn on_acquire_call(ctx: &ProbeContext) {
    let Some(located) = context::locate() else {
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if located.level == 0 && context::filtered_out(located.cfg, pid_tgid) {
        return;
    }
    let regs = ctx.regs;
    // SAFETY: a kprobe's context is the saved registers, read with plain loads.
    let (lock, sp, eflags) = unsafe { ((*regs).rdi, (*regs).rsp, (*regs).eflags) };
    let call = [lock, context::return_address(sp), eflags];
    let key = call_key(pid_tgid, located.level);
    if CALLS.insert(&key, &call, 0).is_err() {
        crate::emit::count(tracer_common::Counter::TaskMapFull, 1);
    }
}

/// The return half of [`on_acquire_call`], by kretprobe: follows the acquisition when the
/// function says it succeeded.
#[inline(always)]
pub fn on_acquire_return(
    ctx: &RetProbeContext,
    lock_kind: LockKind,
    variant: u32,
    success: Success,
) {
    let Some(located) = context::locate() else {
        return;
    };
    let key = call_key(bpf_get_current_pid_tgid(), located.level);
    // SAFETY: a map value copied out at once.
    let Some([lock, site, eflags]) = (unsafe { CALLS.get(&key) }).copied() else {
        return;
    };
    let _ = CALLS.remove(&key);
    // SAFETY: a kretprobe's context is the saved registers, read with a plain load.
    let ret = unsafe { (*ctx.regs).rax } as i32;
    let held = match success {
        Success::Always => true,
        Success::NonZero => ret != 0,
        Success::Zero => ret == 0,
    };
    if !held {
        return;
    }
    let Some((cfg, here)) = context::enter(located) else {
        return;
    };
    let irqs = state_with_flags(&here, variant, eflags);
    let taken = Taken {
        addr: lock,
        site,
        lock_kind,
        variant,
        irqs,
        at_entry: false,
    };
    take(ctx, cfg, &here, taken, 0);
}

/// [`CALLS`]'s key for the current thread at context `level`: in interrupt context the
/// interrupted thread, whose id is unique among running tasks, except the idle tasks' 0
/// (one per CPU, so the CPU joins the key).
#[inline(always)]
fn call_key(pid_tgid: u64, level: u32) -> u64 {
    let tid = pid_tgid & 0xffff_ffff;
    let cpu = if tid == 0 {
        u64::from(context::cpu())
    } else {
        0
    };
    tid | u64::from(level) << 32 | cpu << 34
}

/// The interrupt state an acquisition of `variant` holds its lock with, from the flags a
/// kprobe saved at the acquire function's entry: an `_irq`/`_irqsave` function disables
/// interrupts whatever they were. Laundered (see `context::launder`).
#[inline(always)]
fn state_with_flags(here: &Here, variant: u32, eflags: u64) -> IrqState {
    if variant & flags::IRQ_VARIANT != 0 {
        IrqState::Disabled
    } else {
        IrqState::from_u32(here.launder(IrqState::from_x86_flags(eflags) as u64) as u32)
    }
}

/// An acquisition to follow.
struct Taken {
    /// The lock.
    addr: u64,
    /// Where it is taken (the acquire function's return address), 0 when unknown.
    site: u64,
    lock_kind: LockKind,
    /// [`flags::VARIANT_MASK`] bits.
    variant: u32,
    /// The interrupt state it is held with.
    irqs: IrqState,
    /// Seen at the acquire function's entry (the lock may still be waited for).
    at_entry: bool,
}

/// Classes `taken`, pushes it on this context's held stack and validates it; facts carry
/// `fact_flags`.
#[inline(always)]
fn take<C: EbpfContext>(ctx: &C, cfg: &ProbeConfig, here: &Here, taken: Taken, fact_flags: u32) {
    let class = classify(&context::instance(
        taken.addr,
        taken.site,
        taken.lock_kind.family(),
        cfg,
        here,
    ));
    let lock = here.launder_lock(HeldLock {
        addr: taken.addr,
        site: taken.site,
        class,
        class_key: class.key(),
        acquired_ns: context::coarse_ns(),
        cpu: here.cpu,
        kind: taken.lock_kind as u32,
        variant: taken.variant,
        at_entry: taken.at_entry.into(),
        ..HeldLock::default()
    });
    here.forget_release_claim(taken.addr);
    let Some(stack) = held::kernel_stack(here, true) else {
        return;
    };
    let mut maps = Maps::kernel(ctx, here, taken.irqs, fact_flags);
    validate::acquire(&mut maps, cfg, stack, lock);
}

/// Follows a release before the release function drops the lock. `copies` identical
/// programs run this for every call (see `main.rs`); the first of them to run handles it.
///
/// A spinning lock's release takes no running slot ([`crate::emit::Running`]): it calls no
/// helper that takes a lock, so no probe nests in it, and it cannot be preempted, so no task
/// switch touches its stack while it runs. A sleeping lock's (`preemptible`) does claim one,
/// so that `sched_switch` leaves its stack alone if it is preempted. When a release runs
/// nested in another of our programs (the ring buffer's or a hash map's lock released inside
/// one), the lock is one whose acquisition was not followed: it is not found, and not counted
/// (see `ReleaseCounts`).
#[inline(always)]
pub fn on_release(ctx: &FEntryContext, preemptible: bool, copies: u64) {
    release(ctx.arg(0), preemptible, copies);
}

/// [`on_release`] by kprobe (the kprobe path): one program per kind of lock, attached to
/// every release function of that kind. The kernel runs no kprobe program inside another on
/// the same CPU, so copies would not help.
#[inline(always)]
pub fn on_release_kprobe(ctx: &ProbeContext, preemptible: bool) {
    // SAFETY: a kprobe's context is the saved registers, read with a plain load.
    release(unsafe { (*ctx.regs).rdi }, preemptible, 1);
}

/// Pops the lock at `addr` from the held stack of this context (see [`on_release`]).
#[inline(always)]
fn release(addr: u64, preemptible: bool, copies: u64) {
    let Some(located) = context::locate() else {
        return;
    };
    let Some(state) = cpu_state() else {
        return;
    };
    if !first_copy(state, located.level, addr, copies) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if located.level == 0 && context::filtered_out(located.cfg, pid_tgid) {
        return;
    }
    let _running = if preemptible {
        let Some(running) = Running::enter(state, located.level, pid_tgid as u32) else {
            return;
        };
        Some(running)
    } else {
        None
    };
    // One state for the rest, whichever level this is (see `context::launder`).
    let level = context::launder(pid_tgid, u64::from(located.level)) as u32 & 3;
    let stack = held::kernel_stack_at(level, pid_tgid as u32, context::cpu(), false);
    let mut counts = ReleaseCounts {
        state,
        level,
        tid: pid_tgid as u32,
    };
    tracer_common::validate::release(&mut counts, stack, addr);
}

/// True for the first of the `copies` programs of one release call to run on this CPU at
/// context `level`: it handles the release, and the others that follow in the same call only
/// count down. When the kernel skipped the first (it was running already, interrupted), the
/// next finds no claim for `addr` and handles it instead; its claim then outlives the call
/// (fewer copies follow than it counts), until the lock is acquired again at this level
/// (`Here::forget_release_claim`) or another release claims the level.
#[inline(always)]
fn first_copy(state: &mut CpuState, level: u32, addr: u64, copies: u64) -> bool {
    let Some([claimed, left]) = state.release_claims.get_mut(level as usize) else {
        return true;
    };
    // A task preempted between two copies (a sleeping lock's release) may find its claim
    // overwritten by another task's release and handle its own again: the second finds
    // nothing to release, counted as unmatched.
    if *claimed == addr && *left > 0 {
        *left -= 1;
        if *left == 0 {
            *claimed = 0;
        }
        return false;
    }
    *claimed = addr;
    *left = copies - 1;
    true
}

/// tp_btf `sched_switch(preempt, prev, next, prev_state)`.
#[inline(always)]
pub fn on_switch(ctx: &BtfTracePointContext) {
    let Some((cfg, here)) = context::begin() else {
        return;
    };
    // The arguments as plain scalars (the typed task pointers allow no run-time offsets).
    let arg = |i: usize| {
        // SAFETY: reading the context's argument slots.
        unsafe { bpf_probe_read_kernel((ctx.as_ptr() as *const u64).wrapping_add(i)) }.unwrap_or(0)
    };
    held::switch(cfg, &here, arg(1), arg(2));
}

/// tp_btf `sched_process_free(p)`: the last reference to task `p` goes, after its final
/// switch. Not at `sched_process_exit`: an exiting task takes locks after it, down to its
/// last `schedule()`, and those would make a new stack that nobody deletes.
#[inline(always)]
pub fn on_free(ctx: &BtfTracePointContext) {
    let Some((cfg, _here)) = context::begin() else {
        return;
    };
    // SAFETY: the context's first slot is the task, copied as a plain scalar.
    let task: u64 = unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const u64) }.unwrap_or(0);
    held::free(cfg, task);
}

/// tp_btf `contention_begin(lock, flags)` (`begin`) and `contention_end(lock, ret)`.
#[inline(always)]
pub fn on_contention(ctx: &BtfTracePointContext, begin: bool) {
    let Some((cfg, here)) = context::begin() else {
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
