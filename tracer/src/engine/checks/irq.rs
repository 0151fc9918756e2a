//! Interrupt checks (lockdep's `mark_lock_irq` and `check_irq_usage`):
//!
//! - inconsistent lock state: one class both used in an irq and taken with that irq enabled;
//! - irq lock inversion: an irq-safe class depends, directly or through other classes, on an
//!   irq-unsafe one. An interrupt taking the safe lock can then wait for a CPU that holds the
//!   unsafe lock with interrupts on.
//!
//! The inversion is looked for from both ends, so the order the engine learns things in does
//! not matter: when a dependency appears (backward from the held lock for safe classes,
//! forward from the new lock for unsafe ones), and when a class gains a usage bit (forward
//! from a newly safe class, backward from a newly unsafe one).
//!
//! Only kernel classes take part (see `irq_capable`): user-space locks cost these checks
//! nothing, however many a program has.

use petgraph::graph::EdgeIndex;

use super::{CheckCtx, link};
use crate::engine::alert::{DedupKey, Trigger};
use crate::engine::class::{ClassId, ClassKey, ClassTable};
use crate::engine::finding::{
    ChainLink, Finding, InconsistentLockState, InversionCause, IrqLockInversion,
};
use crate::engine::graph::{Found, Walk};
use crate::engine::held::HeldLock;
use crate::engine::usage::{IrqKind, UsageBit, UsageMask};

/// Checks a class that just gained the bits `new` (already recorded on the class).
pub fn usage_changed(
    ctx: &mut CheckCtx<'_>,
    class: ClassId,
    new: UsageMask,
    trigger: &Trigger,
    held: &[HeldLock],
) {
    // Whatever this class leads to now has irq-safe usage behind it (see `new_dependency`).
    let safe = new.used_in(IrqKind::Hardirq).0 | new.used_in(IrqKind::Softirq).0;
    ctx.graph.mark(class, safe);
    for bit in new.bits() {
        let mask = ctx.classes.get(class).usage.mask;
        if let Some((old, _)) = mask.conflict(bit.mask()) {
            let key = DedupKey::inconsistent(bit.irq(), class);
            ctx.report(key, trigger, held, || {
                Finding::InconsistentLockState(InconsistentLockState {
                    class,
                    old,
                    new: bit,
                })
            });
        }
        inversion_from_usage(ctx, class, bit, trigger, held);
    }
}

/// True when `class` can be part of an irq problem. User-space locks cannot: they never run
/// in an interrupt and get no usage bits (`usage::acquisition_usage`), and nothing real leads
/// from a kernel lock to one (the kernel never takes a user lock: such a dependency only comes
/// from a missed release), so no irq-safe usage reaches a kernel lock through them. The irq
/// searches neither start from nor walk them.
fn irq_capable(classes: &ClassTable, class: ClassId) -> bool {
    !matches!(
        classes.get(class).key,
        ClassKey::User { .. } | ClassKey::UserStatic { .. }
    )
}

fn inversion_from_usage(
    ctx: &mut CheckCtx<'_>,
    class: ClassId,
    bit: UsageBit,
    trigger: &Trigger,
    held: &[HeldLock],
) {
    let irq = bit.irq();
    let classes = ctx.classes;
    let (walk, other_side): (Walk, fn(UsageMask, IrqKind) -> UsageMask) = if bit.is_used_in() {
        (Walk::Forward, UsageMask::enabled)
    } else {
        (Walk::Backward, UsageMask::used_in)
    };
    let enter = |c| irq_capable(classes, c);
    let Some(found) = ctx.graph.search_within(class, false, walk, enter, |c, _| {
        c != class
            && other_side(classes.get(c).usage.mask, irq)
                .conflict(bit.mask())
                .is_some()
    }) else {
        return;
    };
    let (safe, unsafe_class) = if bit.is_used_in() {
        (class, found.class)
    } else {
        (found.class, class)
    };
    let chain = found.path.iter().map(|&e| link(ctx.graph, e)).collect();
    let cause = InversionCause::NewUsage { class, bit };
    report_inversion(ctx, irq, (safe, unsafe_class), chain, cause, trigger, held);
}

/// The conflicting (safe bit, unsafe bit) of two classes.
fn pair(
    ctx: &CheckCtx<'_>,
    safe: ClassId,
    unsafe_class: ClassId,
    irq: IrqKind,
) -> Option<(UsageBit, UsageBit)> {
    let s = ctx.classes.get(safe).usage.mask.used_in(irq);
    let u = ctx.classes.get(unsafe_class).usage.mask.enabled(irq);
    s.conflict(u)
}

/// Checks the new dependency `prev → next` (edge `edge`) for an irq-safe class before it and
/// an irq-unsafe class after it. `recursive_read` says how `next` was acquired.
pub fn new_dependency(
    ctx: &mut CheckCtx<'_>,
    prev: &HeldLock,
    edge: EdgeIndex,
    recursive_read: bool,
    trigger: &Trigger,
    held: &[HeldLock],
) {
    let (_, next, _) = ctx.graph.edge(edge);
    let classes = ctx.classes;
    if !irq_capable(classes, prev.class) || !irq_capable(classes, next) {
        return;
    }
    let enter = |c| irq_capable(classes, c);
    let prev_shared = prev.kind.is_read();
    for irq in [IrqKind::Hardirq, IrqKind::Softirq] {
        // No irq-safe class leads to `prev` (the marks of `usage_changed` say so without a
        // walk): nothing before the new dependency to look for.
        if UsageMask(ctx.graph.marks_reaching(prev.class))
            .used_in(irq)
            .is_empty()
        {
            continue;
        }
        // Step 1: every irq-safe usage that leads to `prev`.
        let mut safe_union = UsageMask::EMPTY;
        ctx.graph
            .search_within(prev.class, prev_shared, Walk::Backward, enter, |c, _| {
                safe_union.0 |= classes.get(c).usage.mask.used_in(irq).0;
                false
            });
        if safe_union.is_empty() {
            continue;
        }
        // Step 2: an irq-unsafe class after `next` that conflicts with one of them.
        let Some(unsafe_hit) =
            ctx.graph
                .search_within(next, recursive_read, Walk::Forward, enter, |c, _| {
                    classes
                        .get(c)
                        .usage
                        .mask
                        .enabled(irq)
                        .conflict(safe_union)
                        .is_some()
                })
        else {
            continue;
        };
        // Step 3: the safe class that conflicts with that one.
        let unsafe_mask = classes.get(unsafe_hit.class).usage.mask.enabled(irq);
        let Some(safe_hit) =
            ctx.graph
                .search_within(prev.class, prev_shared, Walk::Backward, enter, |c, _| {
                    classes
                        .get(c)
                        .usage
                        .mask
                        .used_in(irq)
                        .conflict(unsafe_mask)
                        .is_some()
                })
        else {
            continue;
        };
        report_dependency(ctx, edge, irq, &safe_hit, &unsafe_hit, trigger, held);
    }
}

fn report_dependency(
    ctx: &mut CheckCtx<'_>,
    edge: EdgeIndex,
    irq: IrqKind,
    safe_hit: &Found,
    unsafe_hit: &Found,
    trigger: &Trigger,
    held: &[HeldLock],
) {
    let mut chain: Vec<_> = safe_hit.path.iter().map(|&e| link(ctx.graph, e)).collect();
    let new_edge = chain.len();
    chain.push(link(ctx.graph, edge));
    chain.extend(unsafe_hit.path.iter().map(|&e| link(ctx.graph, e)));
    let classes = (safe_hit.class, unsafe_hit.class);
    let cause = InversionCause::NewDependency { edge: new_edge };
    report_inversion(ctx, irq, classes, chain, cause, trigger, held);
}

/// Reports that `safe` (irq-safe) depends on `unsafe_class` (irq-unsafe) through `chain`,
/// found as `cause` says: once per (irq, safe, unsafe) triple.
fn report_inversion(
    ctx: &mut CheckCtx<'_>,
    irq: IrqKind,
    (safe, unsafe_class): (ClassId, ClassId),
    chain: Vec<ChainLink>,
    cause: InversionCause,
    trigger: &Trigger,
    held: &[HeldLock],
) {
    // The searches found the two classes by this very conflict.
    let Some((safe_bit, unsafe_bit)) = pair(ctx, safe, unsafe_class, irq) else {
        return;
    };
    ctx.report(
        DedupKey::inversion(irq, safe, unsafe_class),
        trigger,
        held,
        || {
            Finding::IrqLockInversion(IrqLockInversion {
                safe,
                safe_bit,
                unsafe_class,
                unsafe_bit,
                chain,
                cause,
            })
        },
    );
}
