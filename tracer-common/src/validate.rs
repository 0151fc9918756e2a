//! lockdep's validation of one acquisition, where the lock is taken: the held stack drops what
//! is stale and spots a recursive acquisition, the chain cache and the usage bits say whether
//! anything is new, and only what is new is reported. The BPF programs run [`acquire`] against
//! their maps; user space's model of the kernel side runs it against memory. What differs —
//! where caches live, how a fact is sent — is behind [`Validator`].

use crate::{
    AcquireState, ClassDesc, Counter, HeldLock, HeldStack, Limits, chain, fact::news,
    held::Prepared, usage::acquisition_usage,
};

/// Where the validation counts what it did: all a release needs.
pub trait Counts {
    /// Adds `n` to `counter`.
    fn count(&mut self, counter: Counter, n: u64);
}

/// What the validation of an acquisition needs from where it runs.
pub trait Validator: Counts {
    /// The usage bits already reported for the class with key `class_key`.
    fn known_usage(&mut self, class_key: u64) -> u8;
    /// True when the chain with lookup key `lookup` was reported.
    fn chain_known(&mut self, lookup: u64) -> bool;
    /// Sends a fact about acquiring `lock` in `state` with the locks of `held`: the [`news`]
    /// bits `news` and the usage bits `usage` it sets. False when it could not be sent (the
    /// news is then not remembered, so it is sent again next time).
    fn report(
        &mut self,
        news: u32,
        usage: u8,
        state: &AcquireState,
        lock: &HeldLock,
        held: &HeldStack,
    ) -> bool;
    /// Remembers that the class with key `class_key` has the usage bits `mask`.
    fn remember_usage(&mut self, class_key: u64, mask: u8);
    /// Remembers that the chain with lookup key `lookup` was reported.
    fn remember_chain(&mut self, lookup: u64);
    /// Accounts one wait of `ns` for the lock of `class`.
    fn contended(&mut self, class: &ClassDesc, class_key: u64, ns: u64);
}

/// Follows the acquisition of `lock` (its address, site, class, kind, variant, CPU and time
/// set) on `stack`, in `state`: buries the same instance when its release was missed, accounts
/// a contention that ended on this lock, reports what is new (a chain, usage bits, a recursive
/// acquisition) in one fact, then pushes it. No loop longer than [`crate::held::RECENT`].
#[inline(always)]
pub fn acquire<V: Validator>(
    v: &mut V,
    stack: &mut HeldStack,
    lock: HeldLock,
    state: &AcquireState,
    limits: &Limits,
) {
    v.count(Counter::Acquisitions, 1);
    let again = match stack.reacquired(&lock) {
        Prepared::Fresh => u32::MAX,
        Prepared::Stale => {
            v.count(Counter::StaleHeld, 1);
            u32::MAX
        }
        Prepared::Recursive(i) => i as u32,
    };
    // Through memory: whichever entry it was, what follows is one state for the verifier.
    let again = match stack.launder(again) {
        u32::MAX => None,
        i => Some(i as usize),
    };
    if stack.contending == lock.addr {
        if stack.contended_ns != 0 {
            v.contended(&lock.class, lock.class_key, stack.contended_ns);
        }
        stack.contending = 0;
    }
    // A known chain (its key covers the context, the interrupt state and the lock's variant)
    // was reported with this acquisition's usage bits: only a new one needs them looked up.
    let lookup = chain::lookup_key(stack.next_chain_key(&lock), state, lock.variant);
    let mut new = 0;
    if again.is_some() {
        // Rare: reported every time; user space validates the chain it leaves.
        new |= news::RECURSIVE | news::NEW_CHAIN;
    } else if !v.chain_known(lookup) {
        new |= news::NEW_CHAIN;
    }
    let usage = acquisition_usage(lock.lock_kind(), lock.variant, state);
    let mut known_usage = 0;
    if new != 0 && usage != 0 {
        known_usage = v.known_usage(lock.class_key);
        if usage & !known_usage != 0 {
            new |= news::NEW_USAGE;
        }
    }
    // One state into the report, whichever way the bits were found (see `launder`).
    let bits = stack.launder(new | u32::from(usage) << 8 | u32::from(known_usage) << 16);
    let (new, usage, known_usage) = (bits & 0xff, (bits >> 8) as u8, (bits >> 16) as u8);
    if new != 0 && v.report(new, usage, state, &lock, stack) {
        if new & news::NEW_USAGE != 0 {
            v.remember_usage(lock.class_key, known_usage | usage);
        }
        if new & news::RECURSIVE == 0 {
            v.remember_chain(lookup);
        }
    }
    if let Some(i) = again {
        stack.bury(i);
    }
    if !stack.push(lock, limits) {
        v.count(Counter::HeldOverflow, 1);
    }
}

/// What to do with a call of one of the seed's functions (see [`call`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallNews {
    /// An identical call was reported already: it is counted, nothing is sent.
    Known,
    /// Report it, then remember it under this chain-cache key.
    New(u64),
    /// Report it and remember nothing: locks are held, or the caller is unknown.
    Always,
}

/// A call of `pcpu_alloc`, `free_percpu` or `vfree` (`kind`, an [`crate::EventKind`]; `atomic`
/// for an atomic allocation) from `caller`, in `state`, with the locks of `held` held.
///
/// With nothing held, the key covers everything the engine's atomic-context checks judge —
/// the function, the atomic flag, the caller, the context, the interrupt and softirq state —
/// so an identical call is reported once and counted as [`Counter::RepeatedCalls`] after
/// that (a fork-heavy load makes thousands of such calls a second, every one in plain task
/// context). With locks held a call is always reported: whether a held entry has gone stale,
/// which the engine ignores, is in no key. So is a call whose caller the probe does not know
/// (`caller` 0, from a tracepoint without a call site): user space finds it in the stack,
/// and the engine reports per calling function.
#[inline(always)]
pub fn call<V: Validator>(
    v: &mut V,
    held: &HeldStack,
    state: &AcquireState,
    kind: u32,
    atomic: bool,
    caller: u64,
) -> CallNews {
    if !held.is_empty() || caller == 0 {
        return CallNews::Always;
    }
    let key = chain::call_key(kind, atomic, caller, state);
    if v.chain_known(key) {
        v.count(Counter::RepeatedCalls, 1);
        CallNews::Known
    } else {
        CallNews::New(key)
    }
}

/// Follows a release of the lock at `addr` on `stack` (`None` when the place has no stack).
#[inline(always)]
pub fn release<V: Counts>(v: &mut V, stack: Option<&mut HeldStack>, addr: u64) {
    v.count(Counter::Releases, 1);
    if !stack.is_some_and(|stack| stack.release(addr)) {
        v.count(Counter::UnmatchedRelease, 1);
    }
}

/// `lock:contention_begin` for `addr` at `now_ns`, with the tracepoint's flags: remembers the
/// wait on the place's stack and returns the held entry of that lock when the waiter already
/// holds it (a recursive acquisition caught in the act; a reader waiting on a read-held lock
/// is not one), for the caller to report.
#[inline(always)]
pub fn contention_begin(
    stack: &mut HeldStack,
    addr: u64,
    now_ns: u64,
    tp_flags: u64,
) -> Option<HeldLock> {
    /// `lock:contention_begin` flag for a reader.
    const LCB_F_READ: u64 = 2;
    stack.contending = addr;
    stack.contending_since = now_ns;
    stack.contended_ns = 0;
    let i = stack.find_recent(addr)?;
    let old = *stack.get(i)?;
    // Held since the entry of the function now waiting: this acquisition's own wait (a
    // recursive one was reported at its entry already).
    if old.at_entry != 0 || old.lock_kind().is_read() && tp_flags & LCB_F_READ != 0 {
        return None;
    }
    Some(HeldLock {
        acquired_ns: now_ns,
        ..old
    })
}

/// `lock:contention_end` for `addr` at `now_ns`: the wait's length, when this place was
/// waiting for that lock. It stays on the stack for the acquisition to account under its full
/// class; a caller that sees no acquisitions, or finds the lock pushed at its function's
/// entry already ([`waiting_acquisition`]), accounts it at once and clears it.
#[inline(always)]
pub fn contention_end(stack: &mut HeldStack, addr: u64, now_ns: u64) -> Option<u64> {
    if stack.contending != addr {
        return None;
    }
    let ns = now_ns.saturating_sub(stack.contending_since);
    stack.contended_ns = if ns == 0 { 1 } else { ns };
    Some(stack.contended_ns)
}

/// The held entry of `addr` when it was pushed at its acquire function's entry
/// ([`HeldLock::at_entry`]): the acquisition whose wait just ended, already classed.
#[inline(always)]
pub fn waiting_acquisition(stack: &mut HeldStack, addr: u64) -> Option<HeldLock> {
    let i = stack.find_recent(addr)?;
    stack.get(i).filter(|lock| lock.at_entry != 0).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LockKind;

    const LIMITS: Limits = Limits::DEFAULT;

    fn spinlock(addr: u64, at_entry: bool) -> HeldLock {
        HeldLock {
            at_entry: at_entry.into(),
            ..crate::held::tests::lock(addr, LockKind::Spin, 0)
        }
    }

    /// A lock followed on its function's return and waited for again is a recursive
    /// acquisition caught in the act.
    #[test]
    fn contention_on_a_lock_held_since_a_return_is_recursion() {
        let mut stack = HeldStack::EMPTY;
        assert!(stack.push(spinlock(0x10, false), &LIMITS));
        let again = contention_begin(&mut stack, 0x10, 100, 1).expect("recursion");
        assert_eq!((again.addr, again.acquired_ns), (0x10, 100));
        assert_eq!(contention_end(&mut stack, 0x10, 150), Some(50));
        assert!(waiting_acquisition(&mut stack, 0x10).is_none());
    }

    /// A lock pushed at its function's entry (a kprobe) is still waited for by that very
    /// call: its contention is its own, accounted under its class when the wait ends.
    #[test]
    fn contention_on_a_lock_pushed_at_entry_is_its_own_wait() {
        let mut stack = HeldStack::EMPTY;
        assert!(stack.push(spinlock(0x10, false), &LIMITS));
        assert!(stack.push(spinlock(0x20, true), &LIMITS));
        assert!(contention_begin(&mut stack, 0x20, 100, 1).is_none());
        assert_eq!(contention_end(&mut stack, 0x20, 130), Some(30));
        let waiting = waiting_acquisition(&mut stack, 0x20).expect("the waiting acquisition");
        assert_eq!(waiting.class_key, spinlock(0x20, true).class_key);
        assert!(waiting_acquisition(&mut stack, 0x10).is_none());
        assert!(waiting_acquisition(&mut stack, 0x30).is_none());
    }
}
