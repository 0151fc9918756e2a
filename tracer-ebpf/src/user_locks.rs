//! User-space locks through uprobes on the C library: the entry probe remembers which lock a
//! thread is trying to take, the return probe reports the acquisition when the call returned
//! 0, and the unlock probes report releases. Uprobes need Linux 3.5+; the user stack needs
//! the traced program to keep frame pointers.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_get_current_pid_tgid,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{DropReason, Event, EventKind, LockKind};

use crate::{
    context, emit,
    maps::{PENDING, PendingLock},
};

/// Entry of a lock call (`pthread_mutex_lock`, `pthread_rwlock_rdlock` ...): remember it.
#[inline(always)]
pub fn on_lock_entry(ctx: &ProbeContext, lock_kind: LockKind, variant: u32) {
    let Some(cfg) = context::config() else { return };
    if context::filtered_out(cfg) {
        return;
    }
    // The map update takes a bucket lock our kernel probes see: they must know they are
    // nested. Uprobes run in task context: level 0.
    let Some(_running) = emit::Running::enter(0) else {
        return;
    };
    let Some(addr) = ctx.arg::<u64>(0) else {
        return;
    };
    let pending = PendingLock {
        addr,
        lock_kind: lock_kind as u32,
        flags: variant,
    };
    if PENDING
        .insert(&bpf_get_current_pid_tgid(), &pending, 0)
        .is_err()
    {
        emit::count_drop(DropReason::PendingFull);
    }
}

/// Return of any lock call: report the acquisition when it returned 0.
#[inline(always)]
pub fn on_lock_return(ctx: &RetProbeContext) {
    let Some(cfg) = context::config() else { return };
    if context::filtered_out(cfg) {
        return;
    }
    // Uprobes run in task context: level 0.
    let Some(_running) = emit::Running::enter(0) else {
        return;
    };
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pending) = (unsafe { PENDING.get(&key) }).copied() else {
        emit::count_drop(DropReason::PendingMissing);
        return;
    };
    let _ = PENDING.remove(&key);
    let ret: i32 = ctx.ret();
    if ret != 0 {
        return;
    }
    let mut ev = Event::zeroed();
    ev.kind = EventKind::LockAcquire as u32;
    ev.lock_kind = pending.lock_kind;
    ev.lock_addr = pending.addr;
    ev.flags = pending.flags;
    context::fill_user(&mut ev);
    // At the return probe the instruction pointer is the caller's return address and the
    // frame pointer is the caller's: the user stack starts in the function that took the lock.
    // SAFETY: `as_ptr` is the pt_regs of the probed task.
    ev.caller = unsafe { (*(ctx.as_ptr() as *const aya_ebpf::bindings::pt_regs)).rip };
    ev.user_stack_id = emit::user_stack(ctx);
    emit::send(&mut ev);
}

/// Entry of an unlock call: report the release.
#[inline(always)]
pub fn on_unlock(ctx: &ProbeContext, lock_kind: LockKind) {
    let Some(cfg) = context::config() else { return };
    if context::filtered_out(cfg) {
        return;
    }
    // Writing the ring takes its lock; a kernel probe firing under it must not write again
    // (on kernels where that lock is a plain spinlock it would deadlock the CPU).
    let Some(_running) = emit::Running::enter(0) else {
        return;
    };
    let Some(addr) = ctx.arg::<u64>(0) else {
        return;
    };
    let mut ev = Event::zeroed();
    ev.kind = EventKind::LockRelease as u32;
    ev.lock_kind = lock_kind as u32;
    ev.lock_addr = addr;
    context::fill_user(&mut ev);
    emit::send(&mut ev);
}
