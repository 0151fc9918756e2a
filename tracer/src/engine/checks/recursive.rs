//! Recursive locking (lockdep's `check_deadlock`): the same lock instance acquired again in
//! the same held-lock stack. Where the lock is taken, `tracer_common::held::Reacquire` tells a
//! recursive acquisition (a non-recursive read taken twice, or a wait for a lock the waiter
//! holds) from nesting readers and missed releases; such an acquisition comes as a fact with
//! `RECURSIVE`, and the held entry with the same address is the earlier acquisition.

use super::CheckCtx;
use crate::engine::alert::{DedupKey, Trigger};
use crate::engine::class::ClassId;
use crate::engine::finding::{Finding, RecursiveLocking};
use crate::engine::held::HeldLock;

/// Reports acquiring (or waiting for) `held` again, as class `acquiring`.
pub fn report(
    ctx: &mut CheckCtx<'_>,
    held: &HeldLock,
    acquiring: ClassId,
    trigger: &Trigger,
    locks: &[HeldLock],
) {
    ctx.report(DedupKey::recursive(held.class), trigger, locks, || {
        Finding::RecursiveLocking(RecursiveLocking {
            held: held.class,
            acquiring,
        })
    });
}
