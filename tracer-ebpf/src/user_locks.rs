//! User-space locks through uprobes on the C library: the entry probe remembers which lock a
//! thread is trying to take, the return probe follows the acquisition when the call returned
//! 0, and the unlock probes follow releases — on a held stack per thread, with the same
//! validation as kernel locks. Uprobes need Linux 3.5+; the user stack needs the traced program
//! to keep frame pointers.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_get_current_pid_tgid,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{Counter, HeldLock, LockKind, class::classify};

use crate::{
    context,
    emit::{self, count},
    held,
    maps::{PENDING, PendingLock, cpu_state},
    validate::{self, Counters, Maps},
};

/// Entry of a lock call (`pthread_mutex_lock`, `pthread_rwlock_rdlock` ...): remember it.
#[inline(always)]
pub fn on_lock_entry(ctx: &ProbeContext, lock_kind: LockKind, variant: u32) {
    let Some(cfg) = context::config() else { return };
    let pid_tgid = bpf_get_current_pid_tgid();
    if context::filtered_out(cfg, pid_tgid) {
        return;
    }
    // The map update takes a bucket lock our kernel probes see: they must know they are
    // nested. Uprobes run in task context: level 0.
    let Some(state) = cpu_state() else {
        return;
    };
    let Some(_running) = emit::Running::enter(state, 0, pid_tgid as u32) else {
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
    if PENDING.insert(&pid_tgid, &pending, 0).is_err() {
        count(Counter::PendingFull, 1);
    }
}

/// Return of any lock call: follow the acquisition when it returned 0.
#[inline(always)]
pub fn on_lock_return(ctx: &RetProbeContext) {
    let Some((cfg, here)) = context::begin() else {
        return;
    };
    let key = here.pid_tgid;
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pending) = (unsafe { PENDING.get(&key) }).copied() else {
        count(Counter::PendingMissing, 1);
        return;
    };
    let _ = PENDING.remove(&key);
    let ret: i32 = ctx.ret();
    if ret != 0 {
        return;
    }
    // At the return probe the instruction pointer is the caller's return address: the site.
    // SAFETY: `as_ptr` is the pt_regs of the probed task.
    let site = unsafe { (*(ctx.as_ptr() as *const aya_ebpf::bindings::pt_regs)).rip };
    let class = classify(&tracer_common::class::Instance {
        addr: pending.addr,
        site,
        user_pid: Some((here.pid_tgid >> 32) as u32),
        family: LockKind::from_u32(pending.lock_kind)
            .map_or(tracer_common::LockFamily::None, LockKind::family),
        ..Default::default()
    });
    let lock = here.launder_lock(HeldLock {
        addr: pending.addr,
        site,
        class,
        class_key: class.key(),
        acquired_ns: context::coarse_ns(),
        cpu: here.cpu,
        kind: pending.lock_kind,
        variant: pending.flags,
        ..HeldLock::default()
    });
    let Some(stack) = held::user_stack(here.tid(), here.cpu, true) else {
        return;
    };
    let mut maps = Maps::user(ctx, &here);
    validate::acquire(&mut maps, cfg, stack, lock);
}

/// Entry of an unlock call: follow the release. Like a kernel lock's release, it takes no
/// running slot (see `kernel_locks::on_release`). The release is matched by address alone, so
/// `pthread_rwlock_unlock`, one function for both sides, releases a read-held entry as it
/// releases a write-held one (tests/pthread.rs, `a_readers_unlock_releases_the_read_held_rwlock`).
#[inline(always)]
pub fn on_unlock(ctx: &ProbeContext) {
    let Some(cfg) = context::config() else { return };
    let pid_tgid = bpf_get_current_pid_tgid();
    if context::filtered_out(cfg, pid_tgid) {
        return;
    }
    let Some(addr) = ctx.arg::<u64>(0) else {
        return;
    };
    let stack = held::user_stack(pid_tgid as u32, context::cpu(), false);
    tracer_common::validate::release(&mut Counters, stack, addr);
}
