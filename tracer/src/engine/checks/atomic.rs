//! Atomic-context misuse: operations that may sleep (`vfree`, a non-atomic `pcpu_alloc`, a
//! sleeping lock) done with irqs disabled, in irq context, or under a spinning lock.
//! Reported once per (problem, call site or class).

use tracer_common::{ExecContext, IrqState};

use super::CheckCtx;
use crate::engine::alert::{DedupKey, Trigger};
use crate::engine::class::ClassId;
use crate::engine::finding::{AtomicContext, Finding};
use crate::engine::held::HeldLock;
use crate::symbols::Symbols;

/// True when `trigger` ran where sleeping is forbidden: irq context, irqs disabled, or a
/// spinning lock held. Unknown irq state counts as neither enabled nor disabled.
pub fn is_atomic(trigger: &Trigger, locks: &[HeldLock]) -> bool {
    matches!(
        trigger.context,
        ExecContext::Softirq | ExecContext::Hardirq | ExecContext::Nmi
    ) || trigger.irqs == IrqState::Disabled
        || locks.iter().any(|l| l.kind.is_spinning())
}

/// True when `vfree` at `trigger` may sleep where it must not. In interrupt context (and with
/// softirqs disabled: the kernel's `in_interrupt()`) it defers the work to `vfree_atomic()`
/// and never sleeps (Linux 4.10+); in NMI it is a bug whatever else holds; otherwise it calls
/// `might_sleep()`.
fn vfree_may_sleep(trigger: &Trigger, locks: &[HeldLock]) -> bool {
    match trigger.context {
        ExecContext::Nmi => true,
        ExecContext::Softirq | ExecContext::Hardirq => false,
        ExecContext::Task | ExecContext::Unknown => {
            trigger.softirqs_disabled != Some(true) && is_atomic(trigger, locks)
        }
    }
}

/// Checks a call that may sleep (`call` is [`AtomicContext::Vfree`] or
/// [`AtomicContext::PcpuAlloc`]), deduplicated by the calling function.
pub fn sleeping_call(
    ctx: &mut CheckCtx<'_>,
    call: AtomicContext,
    trigger: &Trigger,
    locks: &[HeldLock],
    symbols: &Symbols,
) {
    let atomic = match call {
        AtomicContext::Vfree => vfree_may_sleep(trigger, locks),
        _ => is_atomic(trigger, locks),
    };
    if !atomic {
        return;
    }
    let site = symbols
        .kernel
        .function(trigger.caller)
        .map_or(trigger.caller, |(sym, _)| sym.addr);
    let key = DedupKey::atomic(call.problem(), site, 0);
    ctx.report(key, trigger, locks, || Finding::AtomicContext(call));
}

/// Checks acquiring the sleeping lock `class`, deduplicated by (class, spinning lock held).
pub fn sleeping_lock(
    ctx: &mut CheckCtx<'_>,
    trigger: &Trigger,
    class: ClassId,
    locks: &[HeldLock],
) {
    if !is_atomic(trigger, locks) {
        return;
    }
    let spinning = locks
        .iter()
        .rev()
        .find(|l| l.kind.is_spinning())
        .map(|l| l.class);
    let misuse = AtomicContext::SleepingLock {
        lock: class,
        spinning,
    };
    let under = spinning.map_or(u64::MAX, |class| u64::from(class.0));
    let key = DedupKey::atomic(misuse.problem(), u64::from(class.0), under);
    ctx.report(key, trigger, locks, || Finding::AtomicContext(misuse));
}
