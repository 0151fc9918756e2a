//! Writing events to the ring buffer and counting what could not be written.

use aya_ebpf::{helpers::generated::bpf_get_current_task, programs::tracing::StackIdContext};
use tracer_common::{DropReason, Event, flags};

use crate::maps::{DROPS, EVENTS, LOSS_PENDING, RUNNING, RUNNING_SLOTS, STACKS};

/// `BPF_F_USER_STACK`: walk the user stack instead of the kernel's.
const BPF_F_USER_STACK: u64 = 1 << 8;

/// Adds one to the per-CPU drop counter for `reason`; a lost event also marks the CPU's next
/// event (see [`LOSS_PENDING`]).
#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(counter) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU slot; only this CPU writes it while the program runs.
        unsafe { *counter += 1 };
    }
    // Stack failures lose no event; nested probes are our own helpers' locks. Everything
    // else is an event of the traced kernel or program that was not recorded.
    if !matches!(reason, DropReason::StackFailed | DropReason::Nested)
        && let Some(pending) = LOSS_PENDING.get_ptr_mut(0)
    {
        // SAFETY: as above.
        unsafe { *pending = 1 };
    }
}

/// The id of the current kernel stack, or -1 (counted) when it could not be taken. Without
/// `BPF_F_REUSE_STACKID` a stack whose hash bucket holds another fails rather than replacing
/// it: user space reads a stack some milliseconds after the event, and a replaced one would
/// show the wrong stack for every earlier event that named the id.
#[inline(always)]
pub fn kernel_stack<C: StackIdContext>(ctx: &C) -> i32 {
    match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as i32,
        Err(_) => {
            count_drop(DropReason::StackFailed);
            -1
        }
    }
}

/// The id of the current user stack, or -1 (counted) when it could not be taken.
#[inline(always)]
pub fn user_stack<C: StackIdContext>(ctx: &C) -> i32 {
    match ctx.get_stackid(&STACKS, BPF_F_USER_STACK) {
        Ok(id) => id as i32,
        Err(_) => {
            count_drop(DropReason::StackFailed);
            -1
        }
    }
}

/// `BPF_RB_NO_WAKEUP`: do not wake the reader for this record.
///
/// The programs never wake the reader; user space drains the ring on a 10 ms timer. A wake-up
/// is an irq_work whose handler takes the wait-queue, `pi_lock` and runqueue locks, which our
/// own lock probes trace: with a slow reader every wake-up made events that forced the next
/// one, a storm that livelocked a 6.12 guest on the ring buffer's lock. (Waking per event also
/// cost a context switch per traced pthread operation.)
const BPF_RB_NO_WAKEUP: u64 = 1;

/// Sends one event; a full ring buffer is counted, never silent.
#[inline(always)]
pub fn send(ev: &mut Event) {
    let pending = LOSS_PENDING.get_ptr_mut(0);
    // SAFETY: a per-CPU slot read and written only by this CPU's running program.
    if let Some(pending) = pending
        && unsafe { *pending } != 0
    {
        ev.flags |= flags::AFTER_LOSS;
    }
    if EVENTS.output(&*ev, BPF_RB_NO_WAKEUP).is_err() {
        count_drop(DropReason::RingFull);
    } else if let Some(pending) = pending {
        // SAFETY: as above.
        unsafe { *pending = 0 };
    }
}

/// Marks one of our programs as running for the current task in this CPU's current context
/// until dropped.
///
/// A probe that fires while the same task already runs one of our programs in the same
/// context is inside our own helpers (the ring buffer's lock on kernels where it is a plain
/// spinlock) and must not re-enter them. Programs run with migration disabled but, on
/// preemptible kernels, not with preemption disabled: another task may run on this CPU while
/// one is preempted inside a program, and its events are not nested. So each context has
/// [`RUNNING_SLOTS`] slots holding the owning task.
pub struct Running(*mut u64);

impl Running {
    /// Claims a slot of context `level` (0 task, 1 softirq, 2 hardirq, 3 NMI) for the current
    /// task; `None`, counted, when the task already holds one there (this probe is nested in
    /// one of our programs) or when every slot is held by preempted tasks.
    #[inline(always)]
    pub fn enter(level: u32) -> Option<Running> {
        // SAFETY: a helper without arguments.
        let task = unsafe { bpf_get_current_task() };
        let mut free: Option<*mut u64> = None;
        for i in 0..RUNNING_SLOTS {
            let slot = RUNNING.get_ptr_mut(level * RUNNING_SLOTS + i)?;
            // SAFETY: a per-CPU slot; the task owning it cannot migrate while it does.
            let owner = unsafe { *slot };
            if owner == task {
                count_drop(DropReason::Nested);
                return None;
            }
            if owner == 0 && free.is_none() {
                free = Some(slot);
            }
        }
        let Some(slot) = free else {
            count_drop(DropReason::Preempted);
            return None;
        };
        // SAFETY: as above. Claiming is not atomic: a task preempted between the read and
        // this write can take over a slot another task claimed meanwhile; the release below
        // only clears a slot it still owns, so the worst case is one unguarded program run.
        unsafe { *slot = task };
        Some(Running(slot))
    }
}

impl Drop for Running {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the slot claimed in `enter`; cleared only while this task still owns it.
        unsafe {
            if *self.0 == bpf_get_current_task() {
                *self.0 = 0;
            }
        }
    }
}
