//! Atomic-context misuse: operations that may sleep (`vfree`, a non-atomic `pcpu_alloc`, a
//! sleeping lock) done with irqs disabled, in irq context, or under a spinning lock.
//! Reported once per (problem, call site or class).

use tracer_common::{ExecContext, IrqState};

use super::{CheckCtx, held_summary};
use crate::engine::alert::{Alert, AlertKind, AtomicProblem, Cause, DedupKey, Trigger};
use crate::engine::class::ClassId;
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

/// Checks a call that may sleep (`vfree`, non-atomic `pcpu_alloc`), deduplicated by the
/// calling function.
pub fn sleeping_call(
    ctx: &mut CheckCtx<'_>,
    problem: AtomicProblem,
    trigger: &Trigger,
    locks: &[HeldLock],
    symbols: &Symbols,
) {
    let atomic = match problem {
        AtomicProblem::Vfree => vfree_may_sleep(trigger, locks),
        _ => is_atomic(trigger, locks),
    };
    if !atomic {
        return;
    }
    let site = symbols
        .kernel
        .function(trigger.caller)
        .map_or(trigger.caller, |(sym, _)| sym.addr);
    ctx.report(DedupKey::atomic(problem, site, 0), || Alert {
        kind: AlertKind::AtomicContext,
        irq: None,
        problem: Some(problem),
        classes: locks.iter().map(|l| l.class).collect(),
        chain: Vec::new(),
        usage: None,
        cause: Cause::Event,
        trigger: *trigger,
        held: held_summary(locks),
        tasks: Vec::new(),
    });
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
    let spin = locks.iter().rev().find(|l| l.kind.is_spinning());
    let under = spin.map_or(u64::MAX, |l| u64::from(l.class.0));
    ctx.report(
        DedupKey::atomic(AtomicProblem::SleepingLock, u64::from(class.0), under),
        || Alert {
            kind: AlertKind::AtomicContext,
            irq: None,
            problem: Some(AtomicProblem::SleepingLock),
            classes: spin.map(|l| l.class).into_iter().chain([class]).collect(),
            chain: Vec::new(),
            usage: None,
            cause: Cause::Event,
            trigger: *trigger,
            held: held_summary(locks),
            tasks: Vec::new(),
        },
    );
}
