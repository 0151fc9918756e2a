//! Recursive locking (lockdep's `check_deadlock`): the same lock instance acquired again in
//! the same held-lock stack. Where the lock is taken, `tracer_common::held::Reacquire` tells a
//! recursive acquisition (a non-recursive read taken twice, or a wait for a lock the waiter
//! holds) from nesting readers and missed releases; such an acquisition comes as a fact with
//! `RECURSIVE`, and the held entry with the same address is the earlier acquisition.

use super::{CheckCtx, held_summary};
use crate::engine::alert::{Alert, AlertKind, Cause, DedupKey, Trigger};
use crate::engine::held::HeldLock;

/// Reports acquiring (or waiting for) `held` again.
pub fn report(ctx: &mut CheckCtx<'_>, held: &HeldLock, trigger: &Trigger, locks: &[HeldLock]) {
    ctx.report(DedupKey::recursive(held.class), || Alert {
        kind: AlertKind::RecursiveLocking,
        irq: None,
        problem: None,
        classes: vec![held.class],
        chain: Vec::new(),
        usage: None,
        cause: Cause::Event,
        trigger: *trigger,
        held: held_summary(locks),
        tasks: Vec::new(),
    });
}
