//! The held locks a fact reports, as the checks see them: with the engine's classes.
//!
//! The held-lock stacks themselves live where the locks are taken (`tracer_common::held`, run
//! by the BPF programs and by `crate::model`); each fact carries the stack of its context.

use tracer_common::LockKind;

use super::class::ClassId;

/// One held lock, resolved to its engine class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLock {
    /// The instance's address.
    pub addr: u64,
    /// Where it was acquired.
    pub caller: u64,
    /// Its class.
    pub class: ClassId,
    /// Its lock kind.
    pub kind: LockKind,
    /// True when it was a successful trylock.
    pub trylock: bool,
}

impl HeldLock {
    /// What the engine's chain key hashes for this lock: class, read mode (0 write, 1 read,
    /// 2 recursive read, as lockdep's `read`) and trylock.
    #[inline]
    pub fn hlock_id(&self) -> u64 {
        let read = if self.kind.is_recursive_read() {
            2
        } else {
            self.kind.is_read() as u64
        };
        u64::from(self.class.0) | read << 32 | (self.trylock as u64) << 34
    }
}
