//! Recursive locking (lockdep's `check_deadlock`): the same lock instance acquired again in
//! the same held-lock stack.
//!
//! Probes report an acquisition when the lock function returns, so a spinlock truly taken
//! twice would never return: what the engine sees is either a contended wait on a lock the
//! waiter already holds (`contention_begin`), a non-recursive read taken twice (possible
//! while no writer waits, and a deadlock when one does), or a release it missed. [`classify`]
//! tells them apart; the engine drops a missed release's entry as stale. An exclusive lock
//! that an acquisition returned holding again proves the earlier release was missed: the
//! kernel would have hung otherwise.

use tracer_common::LockKind;

use super::{CheckCtx, held_summary};
use crate::engine::alert::{Alert, AlertKind, Cause, DedupKey, Trigger};
use crate::engine::held::HeldLock;

/// What acquiring an instance that is already held means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reacquire {
    /// Recursive readers nest: both entries stay.
    Nested,
    /// The old entry is a missed release: drop it.
    Stale,
    /// A real recursive acquisition: report it, and keep one entry.
    Recursive,
}

/// Classifies acquiring `kind` (a trylock when `trylock`) while `held` is held.
pub fn classify(held: &HeldLock, kind: LockKind, trylock: bool) -> Reacquire {
    if kind.is_recursive_read() && held.kind.is_read() {
        Reacquire::Nested
    } else if !trylock && kind == LockKind::RwsemRead && held.kind.is_read() {
        // A second reader gets in while no writer waits, and deadlocks behind one that does.
        Reacquire::Recursive
    } else {
        // A trylock, a spinning lock or a mutex that returned holding a lock already held:
        // the release was missed (or, for user-space mutexes, the mutex is recursive).
        Reacquire::Stale
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::chain::ChainKey;
    use crate::engine::class::ClassId;

    #[test]
    fn reacquisitions_are_told_apart() {
        use LockKind::*;
        let cases = [
            (RwlockRead, RwlockRead, false, Reacquire::Nested),
            (RwsemRead, RwlockRead, false, Reacquire::Nested),
            (Spin, Spin, false, Reacquire::Stale),
            (RwlockRead, RwlockWrite, false, Reacquire::Stale),
            (RwlockWrite, RwlockWrite, false, Reacquire::Stale),
            (RwsemRead, RwsemRead, false, Reacquire::Recursive),
            (Spin, Spin, true, Reacquire::Stale),
            (Mutex, Mutex, false, Reacquire::Stale),
            (PthreadMutex, PthreadMutex, false, Reacquire::Stale),
            (
                PthreadRwlockRead,
                PthreadRwlockRead,
                false,
                Reacquire::Nested,
            ),
        ];
        for (held_kind, kind, trylock, want) in cases {
            let held = HeldLock {
                addr: 1,
                caller: 0,
                acquired_ns: 0,
                acquired_at: 0,
                chain_key: ChainKey::EMPTY,
                class: ClassId(0),
                cpu: 0,
                kind: held_kind,
                trylock: false,
            };
            assert_eq!(
                classify(&held, kind, trylock),
                want,
                "{held_kind:?} then {kind:?}"
            );
        }
    }
}
