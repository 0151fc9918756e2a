//! Where the held stacks live: per task in `TASK_HELD` (created on a task's first
//! acquisition, deleted when the task is freed), per CPU in `IRQ_HELD` for interrupt contexts.
//! The stacks' logic is `tracer_common::held`.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::{Counter, HeldStack, ProbeConfig, held::task_key};

use crate::{
    context::Here,
    emit::{Running, count},
    maps::{EMPTY_HELD, IRQ_HELD, TASK_HELD},
};

/// `BPF_NOEXIST`: create only.
const BPF_NOEXIST: u64 = 1;

/// The held stack of the task with map key `key`, created empty when `create`.
#[inline(always)]
pub fn task_stack(key: u64, create: bool) -> Option<&'static mut HeldStack> {
    if let Some(stack) = TASK_HELD.get_ptr_mut(&key) {
        // SAFETY: a map value, valid for this program run; only its task (or the scheduler
        // handing it a lock while it is switched out) writes it.
        return Some(unsafe { &mut *stack });
    }
    if !create {
        return None;
    }
    let empty = EMPTY_HELD.get(0)?;
    if TASK_HELD.insert(&key, empty, BPF_NOEXIST).is_err() && TASK_HELD.get_ptr(&key).is_none() {
        count(Counter::TaskMapFull, 1);
        return None;
    }
    // SAFETY: as above.
    TASK_HELD
        .get_ptr_mut(&key)
        .map(|stack| unsafe { &mut *stack })
}

/// The held stack of the place `here` runs in, kernel locks, created when `create` (see
/// [`kernel_stack_at`]).
#[inline(always)]
pub fn kernel_stack(here: &Here, create: bool) -> Option<&'static mut HeldStack> {
    kernel_stack_at(here.level, here.tid(), here.cpu, create)
}

/// The held stack of kernel locks at context `level` (0 task, 1 softirq, 2 hardirq, 3 NMI) of
/// thread `tid` on `cpu`: the task's in task context (created when `create`), this CPU's for
/// an interrupt context. Interrupt stacks of the contexts above `level` cannot still hold
/// anything (those handlers have returned): what is left there is dropped, counted as stale.
#[inline(always)]
pub fn kernel_stack_at(
    level: u32,
    tid: u32,
    cpu: u32,
    create: bool,
) -> Option<&'static mut HeldStack> {
    let irqs = IRQ_HELD.get_ptr_mut(0)?;
    // SAFETY: this CPU's value. Programs of one CPU and context level do not nest, except a
    // spinning lock's release inside one of our helpers: it finds nothing of its own to pop
    // (that lock's acquisition was skipped as nested) and clears only the stacks of higher
    // levels, which the program it interrupted does not hold.
    let irqs = unsafe { &mut *irqs };
    let mut stale = 0;
    for (i, stack) in irqs.stacks.iter_mut().enumerate() {
        if i as u32 + 1 > level && !stack.is_empty() {
            stale += stack.clear();
        }
    }
    if stale > 0 {
        count(Counter::StaleHeld, u64::from(stale));
    }
    match level {
        0 => task_stack(task_key(tid, cpu, false), create),
        // SAFETY: `irq_index` is below the array's length.
        level => Some(unsafe { irqs.stacks.get_unchecked_mut(irq_index(level)) }),
    }
}

/// The index of interrupt context `level` (1 softirq, 2 hardirq, 3 NMI) in `IrqStacks`,
/// bounded where the verifier sees it: on the register that indexes (it does not carry
/// `level != 0` over from the caller's `match`, nor a bounds check the compiler made on
/// another register).
#[inline(always)]
fn irq_index(level: u32) -> usize {
    let mut i = u64::from(level.wrapping_sub(1)) & 3;
    // SAFETY: a compare and a move on one register.
    unsafe { core::arch::asm!("if {i} < 3 goto +1", "{i} = 2", i = inout(reg) i) };
    i as usize
}

/// The stack of the user-space locks of thread `tid` (running on `cpu`), created when
/// `create`.
#[inline(always)]
pub fn user_stack(tid: u32, cpu: u32, create: bool) -> Option<&'static mut HeldStack> {
    task_stack(task_key(tid, cpu, true), create)
}

/// Reads a task's thread id through the `pid` offset user space found in BTF.
#[inline(always)]
fn task_tid(task: u64, cfg: &ProbeConfig) -> Option<u32> {
    if cfg.task_pid_offset == 0 {
        return None;
    }
    // SAFETY: a kernel read through the fault-tolerant helper.
    unsafe { bpf_probe_read_kernel((task + cfg.task_pid_offset) as *const u32).ok() }
}

/// Reads a task's thread-group id through the `tgid` offset user space found in BTF.
#[inline(always)]
fn task_tgid(task: u64, cfg: &ProbeConfig) -> Option<u32> {
    if cfg.task_tgid_offset == 0 {
        return None;
    }
    // SAFETY: a kernel read through the fault-tolerant helper.
    unsafe { bpf_probe_read_kernel((task + u64::from(cfg.task_tgid_offset)) as *const u32).ok() }
}

/// `sched_switch` from `prev` to `next` on this CPU: `prev` cannot hold a spinning lock while
/// it is switched out, except this CPU's run-queue lock the scheduler hands to `next`, which
/// releases it (lockdep's `prepare_lock_switch`/`finish_lock_switch`). Moves that lock to
/// `next`'s stack; drops any other spinning lock `prev` still shows (a missed release).
///
/// Not when `prev` is preempted inside one of our programs (it may be changing its stack), nor
/// when `next` was: resumed, it runs the release as a probe nested in that program, which is
/// skipped, and the lock would stay in its stack.
#[inline(always)]
pub fn switch(cfg: &ProbeConfig, here: &Here, prev: u64, next: u64) {
    let (Some(prev_tid), Some(next_tid)) = (task_tid(prev, cfg), task_tid(next, cfg)) else {
        return;
    };
    // A task preempted inside one of our programs (in a slot besides this program's own) may
    // be in the middle of changing its own stack: leave it alone (its run-queue lock was not
    // followed: a nested probe).
    let state = here.cpu_state();
    if Running::held_by(state, 0, prev_tid, Some(here.running_slot())) {
        return;
    }
    let Some(prev_stack) = task_stack(task_key(prev_tid, here.cpu, false), false) else {
        return;
    };
    let rq_lock = match here.percpu_base {
        Some(base) if cfg.rq_lock_percpu_offset != 0 => {
            Some(base.wrapping_add(cfg.rq_lock_percpu_offset))
        }
        _ => None,
    };
    let (handed, stale) = prev_stack.switch_out(crate::context::coarse_ns(), rq_lock);
    if stale > 0 {
        count(Counter::StaleHeld, u64::from(stale));
    }
    let Some(lock) = handed else { return };
    // Nor to a task that was preempted inside one of our programs (see above), nor to one of
    // locktrace's own threads: their releases are not followed, so every switch to one of
    // them would leave one more entry on its stack, until it overflowed.
    if Running::held_by(state, 0, next_tid, None) || task_tgid(next, cfg) == Some(cfg.self_pid) {
        return;
    }
    if let Some(next_stack) = task_stack(task_key(next_tid, here.cpu, false), true) {
        if !next_stack.push(lock, &cfg.limits) {
            count(Counter::HeldOverflow, 1);
        }
        count(Counter::Handoff, 1);
    }
}

/// Task `task` is freed: its stacks go.
#[inline(always)]
pub fn free(cfg: &ProbeConfig, task: u64) {
    // Idle tasks (thread id 0) are never freed.
    let Some(tid) = task_tid(task, cfg).filter(|&tid| tid != 0) else {
        return;
    };
    for user in [false, true] {
        let _ = TASK_HELD.remove(&task_key(tid, 0, user));
    }
}
