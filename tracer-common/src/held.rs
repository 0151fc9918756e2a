//! Held locks (lockdep's `held_lock` stacks), kept where the locks are taken: one stack per
//! task for its task context, one per CPU for each interrupt context. The BPF programs keep
//! them in maps; user space's model of the kernel side keeps them in memory; both run this
//! code.
//!
//! Every lock operation in the kernel runs one of these, so their cost — at run time and
//! for the BPF verifier, which walks each of the ~70 programs apart — decides what locktrace
//! costs. The paths a lock operation takes are therefore loop-free or scan a few entries:
//!
//! - each entry keeps the chain key of the stack up to it, so [`HeldStack::push`] computes
//!   the new key from the top one;
//! - [`HeldStack::release`] looks at the topmost [`RECENT`] entries only (releases come in
//!   nearly last-in-first-out order) and pops the top, or moves the top down over the entry
//!   just under it (hand-over-hand locking), or buries a deeper entry as a tombstone
//!   (address 0) that leaves the keys above unchanged; tombstones on top are popped with it;
//! - a full stack takes no more (counted as an overflow).
//!
//! When a task switches out (`sched_switch`), [`HeldStack::switch_out`] hands the run-queue
//! lock over and drops what cannot still be held among the recent entries. Releases still
//! get missed (the kernel skips a program already running on the CPU; some unlocks are
//! inlined): an entry older than its [`HeldLock::stale_ns`] is dropped there, and user space
//! ignores it before.
//!
//! Written for the BPF verifier as much as for people: every loop is bounded by a constant,
//! every index is masked, nothing can panic.

use crate::{
    ExecContext, LockKind,
    chain::{self, EMPTY},
    class::ClassDesc,
    flags,
};

/// Most locks one stack holds. lockdep allows 48; real kernel paths rarely nest more than a
/// dozen, and every stack costs `MAX_HELD` entries of memory per task.
pub const MAX_HELD: usize = 32;
const _: () = assert!(MAX_HELD.is_power_of_two());

/// How many of the topmost entries a release or a re-acquisition looks at: a lock released
/// (or taken again) below them is not found (a release then counts as unmatched).
pub const RECENT: usize = 8;

/// `i` as an index into a stack's entries that the BPF verifier can bound: masked to
/// `MAX_HELD - 1` in a way the compiler cannot drop (it may drop a plain mask when it knows
/// `i` is in range, from a comparison the verifier no longer connects to `i`).
#[inline(always)]
fn slot(i: usize) -> usize {
    #[cfg(target_arch = "bpf")]
    {
        let mut i = i as u64;
        // SAFETY: one ALU instruction on a register.
        unsafe { core::arch::asm!("{0} &= 31", inout(reg) i) };
        const _: () = assert!(MAX_HELD == 32);
        i as usize
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        i & (MAX_HELD - 1)
    }
}

/// One held lock.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldLock {
    /// The instance's address; 0 for a tombstone (a lock released below the top).
    pub addr: u64,
    /// Where it was acquired (return address into the acquiring function), 0 when unknown.
    pub site: u64,
    /// Its class.
    pub class: ClassDesc,
    /// `class.key()`, kept so chain keys need no hashing of the class.
    pub class_key: u64,
    /// The chain key of the stack up to and including this lock.
    pub chain_key: u64,
    /// When it was acquired (`bpf_ktime_get_ns`).
    pub acquired_ns: u64,
    /// When it is taken for a missed release if still held (set by [`HeldStack::push`] from
    /// [`Limits`]).
    pub stale_ns: u64,
    /// The CPU it was acquired on.
    pub cpu: u32,
    /// [`LockKind`] discriminant.
    pub kind: u32,
    /// [`flags::TRYLOCK`], [`flags::IRQ_VARIANT`] and [`flags::BH_VARIANT`] bits.
    pub variant: u32,
    /// Non-zero when it was pushed at the acquire function's entry (a kprobe), as lockdep's
    /// `lock_acquire` does, rather than on its return: until the function returns the lock may
    /// still be waited for, so its contention is this acquisition's, not a second one.
    pub at_entry: u32,
}

const _: () = assert!(core::mem::size_of::<HeldLock>() == 88);

impl HeldLock {
    /// The decoded lock kind ([`LockKind::None`] when unknown).
    #[inline(always)]
    pub const fn lock_kind(&self) -> LockKind {
        match LockKind::from_u32(self.kind) {
            Some(kind) => kind,
            None => LockKind::None,
        }
    }

    /// True for a successful trylock.
    #[inline(always)]
    pub const fn is_trylock(&self) -> bool {
        self.variant & flags::TRYLOCK != 0
    }

    /// True for a tombstone (see the module documentation).
    #[inline(always)]
    pub const fn is_tombstone(&self) -> bool {
        self.addr == 0
    }

    /// True when, at `now_ns`, the entry has been held too long to be anything but a missed
    /// release.
    #[inline(always)]
    pub const fn is_stale(&self, now_ns: u64) -> bool {
        now_ns > self.stale_ns
    }

    /// What the chain key hashes for this lock.
    #[inline(always)]
    pub const fn hlock_id(&self) -> u64 {
        chain::hlock_id(self.class_key, self.lock_kind(), self.variant)
    }
}

/// The bounds that decide when an entry cannot still be held.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A spinning lock held longer than this is a missed release.
    pub stale_spin_ns: u64,
    /// A sleeping or user-space lock held longer than this is a missed release.
    pub stale_sleep_ns: u64,
    /// Most locks a stack holds (at most [`MAX_HELD`]).
    pub max_depth: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

impl Limits {
    /// The bounds for a live kernel.
    pub const DEFAULT: Limits = Limits {
        stale_spin_ns: 1_000_000_000,
        stale_sleep_ns: 600_000_000_000,
        max_depth: MAX_HELD as u32,
        reserved: 0,
    };
}

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

impl Reacquire {
    /// Classifies acquiring `kind` (a trylock when `trylock`) while `held` is held.
    ///
    /// Probes report an acquisition when the lock function returns, so a spinlock truly
    /// taken twice never returns: what is seen is a non-recursive read taken twice (possible
    /// while no writer waits, a deadlock when one does) or a release that was missed.
    #[inline(always)]
    pub const fn classify(held: LockKind, kind: LockKind, trylock: bool) -> Reacquire {
        if kind.is_recursive_read() && held.is_read() {
            Reacquire::Nested
        } else if !trylock && matches!(kind, LockKind::RwsemRead) && held.is_read() {
            Reacquire::Recursive
        } else {
            // A trylock, a spinning lock or a mutex that returned holding a lock already held:
            // the release was missed (or, for user-space mutexes, the mutex is recursive).
            Reacquire::Stale
        }
    }
}

/// What [`HeldStack::reacquired`] found before a lock is pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The instance is not among the recent entries, or readers nest: push it.
    Fresh,
    /// The recent entry at this index was a missed release and is buried now.
    Stale,
    /// The acquisition takes the recent entry at this index again: report it, then
    /// [`HeldStack::bury`] that entry.
    Recursive(usize),
}

/// The locks held in one place, bottom first, with the contention in progress there.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldStack {
    /// How many entries of `locks` are in use (tombstones included).
    pub depth: u32,
    /// Scratch for [`HeldStack::launder`] and counts kept in memory.
    scratch: u32,
    /// The lock this place is waiting for (`lock:contention_begin`), or 0.
    pub contending: u64,
    /// When that wait began.
    pub contending_since: u64,
    /// How long it lasted, once `lock:contention_end` said so (0 until then).
    pub contended_ns: u64,
    /// The held locks, bottom first; entries at `depth` and above mean nothing.
    pub locks: [HeldLock; MAX_HELD],
}

const ZERO_LOCK: HeldLock = HeldLock {
    addr: 0,
    site: 0,
    class: ClassDesc {
        a: 0,
        b: 0,
        tag: 0,
        family: 0,
        offset: 0,
    },
    class_key: 0,
    chain_key: 0,
    acquired_ns: 0,
    stale_ns: 0,
    cpu: 0,
    kind: 0,
    variant: 0,
    at_entry: 0,
};

impl HeldStack {
    /// An empty stack.
    pub const EMPTY: HeldStack = HeldStack {
        depth: 0,
        scratch: 0,
        contending: 0,
        contending_since: 0,
        contended_ns: 0,
        locks: [ZERO_LOCK; MAX_HELD],
    };

    /// The entry in slot `i` (masked: never out of bounds, and no bounds check that could
    /// panic in a BPF program).
    #[inline(always)]
    fn at(&self, i: usize) -> &HeldLock {
        // SAFETY: `slot` is below MAX_HELD, the array's length.
        unsafe { self.locks.get_unchecked(slot(i)) }
    }

    /// The entry in slot `i`, mutably (see [`HeldStack::at`]).
    #[inline(always)]
    fn at_mut(&mut self, i: usize) -> &mut HeldLock {
        // SAFETY: as above.
        unsafe { self.locks.get_unchecked_mut(slot(i)) }
    }

    /// `value`, made opaque to the BPF verifier by a round trip through the stack's memory: a
    /// value that several paths computed differently (an index found at one of several
    /// places, a set of flags) then reaches the code after as one state, so that code is
    /// verified once rather than once per path. Free in user space.
    #[inline(always)]
    pub fn launder(&mut self, value: u32) -> u32 {
        // SAFETY: plain accesses to our own field.
        unsafe {
            core::ptr::write_volatile(&raw mut self.scratch, value);
            core::ptr::read_volatile(&raw const self.scratch)
        }
    }

    /// How many entries are in use, tombstones included (never more than [`MAX_HELD`]).
    #[inline(always)]
    pub fn len(&self) -> usize {
        let depth = self.depth as usize;
        if depth > MAX_HELD { MAX_HELD } else { depth }
    }

    /// True when nothing is held.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.depth == 0
    }

    /// The entry at `index` (bottom first), tombstones included.
    #[inline(always)]
    pub fn get(&self, index: usize) -> Option<&HeldLock> {
        if index < self.len() {
            Some(self.at(index))
        } else {
            None
        }
    }

    /// The chain key of what is held: the top entry's.
    #[inline(always)]
    pub fn chain_key(&self) -> u64 {
        match self.len() {
            0 => EMPTY,
            len => self.at(len - 1).chain_key,
        }
    }

    /// The chain key the stack will have once `lock` is pushed.
    #[inline(always)]
    pub fn next_chain_key(&self, lock: &HeldLock) -> u64 {
        chain::extend(self.chain_key(), lock.hlock_id())
    }

    /// The topmost of the [`RECENT`] topmost entries holding the instance at `addr`.
    #[inline(always)]
    pub fn find_recent(&mut self, addr: u64) -> Option<usize> {
        self.find_recent_where(|lock| lock.addr == addr)
    }

    /// The topmost of the [`RECENT`] topmost entries `matches` accepts, laundered (see
    /// [`HeldStack::launder`]).
    #[inline(always)]
    fn find_recent_where(&mut self, matches: impl Fn(&HeldLock) -> bool) -> Option<usize> {
        let len = self.len();
        let mut found = u32::MAX;
        for k in 0..RECENT {
            if k < len && matches(self.at(len - 1 - k)) {
                found = (len - 1 - k) as u32;
                break;
            }
        }
        match self.launder(found) {
            u32::MAX => None,
            i => Some(i as usize),
        }
    }

    /// Pops tombstones off the top, at most [`RECENT`] (more go with the next release).
    #[inline(always)]
    fn trim(&mut self) {
        for _ in 0..RECENT {
            let len = self.len();
            if len == 0 || !self.at(len - 1).is_tombstone() {
                break;
            }
            self.depth = (len - 1) as u32;
        }
    }

    /// Drops the entry at `index`: pops it when on top (with the tombstones it uncovers);
    /// when just below the top, moves the top entry down into its slot with its chain key
    /// made again (hand-over-hand locking: take A, take B, drop A, take C, drop B ...);
    /// deeper, leaves a tombstone that keeps the chain keys above as they are.
    ///
    /// Without the move, a hand-over-hand walk leaves one tombstone per step, which only the
    /// release of the lock above them pops: a walk of more steps than the stack holds
    /// overflowed it (lockdep rebuilds its stack above any release; one entry is what a BPF
    /// program can afford).
    #[inline(always)]
    pub fn bury(&mut self, index: usize) {
        let len = self.len();
        if index >= len {
            return;
        }
        if index + 1 == len {
            self.at_mut(index).addr = 0;
            self.depth = index as u32;
            self.trim();
        } else if index + 2 == len {
            let below = match index {
                0 => EMPTY,
                i => self.at(i - 1).chain_key,
            };
            let mut top = *self.at(len - 1);
            top.chain_key = chain::extend(below, top.hlock_id());
            *self.at_mut(index) = top;
            self.depth = (index + 1) as u32;
        } else {
            self.at_mut(index).addr = 0;
        }
    }

    /// Releases the topmost recent entry for `addr`; false when none holds it.
    #[inline(always)]
    pub fn release(&mut self, addr: u64) -> bool {
        match self.find_recent(addr) {
            Some(i) => {
                self.bury(i);
                true
            }
            None => false,
        }
    }

    /// Drops everything; returns how many locks were dropped.
    #[inline(always)]
    pub fn clear(&mut self) -> u32 {
        let n = self.len() as u32;
        self.depth = 0;
        n
    }

    /// Looks for the instance `lock` takes among the recent entries before it is pushed:
    /// a missed release is buried, recursive readers nest, and a recursive acquisition is left
    /// in place for the caller to report.
    #[inline(always)]
    pub fn reacquired(&mut self, lock: &HeldLock) -> Prepared {
        let Some(i) = self.find_recent(lock.addr) else {
            return Prepared::Fresh;
        };
        let old = self.at(i).lock_kind();
        match Reacquire::classify(old, lock.lock_kind(), lock.is_trylock()) {
            Reacquire::Nested => Prepared::Fresh,
            Reacquire::Stale => {
                self.bury(i);
                Prepared::Stale
            }
            Reacquire::Recursive => Prepared::Recursive(i),
        }
    }

    /// Pushes `lock` with its chain key and staleness bound. A stack holding
    /// `limits.max_depth` entries takes no more: returns false then (an overflow, counted by
    /// the caller), and the lock is not followed.
    #[inline(always)]
    pub fn push(&mut self, mut lock: HeldLock, limits: &Limits) -> bool {
        let len = self.len();
        let max = if limits.max_depth > 0 && (limits.max_depth as usize) < MAX_HELD {
            limits.max_depth as usize
        } else {
            MAX_HELD
        };
        if len >= max {
            return false;
        }
        let bound = if lock.lock_kind().is_spinning() {
            limits.stale_spin_ns
        } else {
            limits.stale_sleep_ns
        };
        lock.stale_ns = lock.acquired_ns.saturating_add(bound);
        lock.chain_key = self.next_chain_key(&lock);
        *self.at_mut(len) = lock;
        self.depth = (len + 1) as u32;
        true
    }

    /// The task switches out (`sched_switch`) at `now_ns`: it cannot hold a spinning lock
    /// while it sleeps or is preempted, except the run-queue lock at `rq_lock` that the
    /// scheduler hands to the next task (lockdep's `prepare_lock_switch`). Among the
    /// [`RECENT`] topmost entries, drops every spinning lock and every entry past its
    /// staleness bound, and returns the run-queue lock's entry, to be pushed on the next
    /// task's stack, and how many locks were dropped as stale. With `rq_lock` unknown nothing
    /// is handed over (the next task's release of it then finds nothing): no guess.
    #[inline(always)]
    pub fn switch_out(&mut self, now_ns: u64, rq_lock: Option<u64>) -> (Option<HeldLock>, u32) {
        let spinning = |lock: &HeldLock| !lock.is_tombstone() && lock.lock_kind().is_spinning();
        let top = match rq_lock {
            Some(addr) => self.find_recent(addr),
            None => None,
        };
        let handed = top.map(|i| *self.at(i));
        // The count goes through memory, so that the paths through the loop stay alike.
        self.launder(0);
        let len = self.len();
        for k in 0..RECENT {
            if k >= len {
                break;
            }
            let i = len - 1 - k;
            let lock = self.at(i);
            if spinning(lock) || (!lock.is_tombstone() && lock.is_stale(now_ns)) {
                self.at_mut(i).addr = 0;
                // SAFETY: plain accesses to our own field.
                unsafe {
                    let n = core::ptr::read_volatile(&raw const self.scratch);
                    core::ptr::write_volatile(&raw mut self.scratch, n + 1);
                }
            }
        }
        // SAFETY: as above.
        let removed = unsafe { core::ptr::read_volatile(&raw const self.scratch) };
        self.trim();
        (handed, removed.saturating_sub(u32::from(handed.is_some())))
    }

    /// The locks held, without tombstones, bottom first.
    pub fn held(&self) -> impl Iterator<Item = &HeldLock> {
        self.locks[..self.len()]
            .iter()
            .filter(|lock| !lock.is_tombstone())
    }
}

/// Where a held stack lives: which stack an event at `context` uses. Task context and unknown
/// context share the task's stack; each interrupt context has a per-CPU stack.
#[inline(always)]
pub const fn irq_level(context: ExecContext) -> Option<u32> {
    match context {
        ExecContext::Softirq => Some(0),
        ExecContext::Hardirq => Some(1),
        ExecContext::Nmi => Some(2),
        ExecContext::Task | ExecContext::Unknown => None,
    }
}

/// The key of a task's stack in the task map: its thread id, except for the idle tasks, which
/// all have thread id 0 but are one per CPU; user-space locks of a thread have a stack of
/// their own (kernel locks never wait on user-space locks).
#[inline(always)]
pub const fn task_key(tid: u32, cpu: u32, user: bool) -> u64 {
    if tid == 0 {
        2 << 32 | cpu as u64
    } else if user {
        1 << 32 | tid as u64
    } else {
        tid as u64
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::class::ClassTag;

    /// A held lock of `kind` at `addr`, acquired at `ns`, in a static class of its own.
    pub(crate) fn lock(addr: u64, kind: LockKind, ns: u64) -> HeldLock {
        let class = ClassDesc {
            a: addr,
            tag: ClassTag::Static as u16,
            ..ClassDesc::default()
        };
        HeldLock {
            addr,
            class,
            class_key: class.key(),
            acquired_ns: ns,
            kind: kind as u32,
            ..HeldLock::default()
        }
    }

    fn addrs(stack: &HeldStack) -> Vec<u64> {
        stack.held().map(|l| l.addr).collect()
    }

    const LIMITS: Limits = Limits::DEFAULT;

    #[test]
    fn releases_in_order_or_not_leave_the_keys_of_what_is_held() {
        let mut a = HeldStack::EMPTY;
        for addr in [1, 2, 3] {
            assert!(a.push(lock(addr, LockKind::Spin, 0), &LIMITS));
        }
        a.push(lock(4, LockKind::Spin, 0), &LIMITS);
        assert!(a.release(2), "deeper than under the top: a tombstone");
        assert!(!a.release(9));
        assert_eq!(addrs(&a), [1, 3, 4]);
        assert_eq!(a.len(), 4);
        assert!(
            a.release(4),
            "the top goes, and the tombstone under 3 stays"
        );
        assert_eq!(a.len(), 3);
        assert!(a.release(3), "the top goes, and the tombstone under it");
        assert_eq!(a.len(), 1);
        let mut b = HeldStack::EMPTY;
        b.push(lock(1, LockKind::Spin, 0), &LIMITS);
        assert_eq!(
            a.chain_key(),
            b.chain_key(),
            "as if 2 and 3 were never taken"
        );
    }

    #[test]
    fn a_hand_over_hand_walk_never_fills_the_stack() {
        // Take 1, then for each next one: take it, drop the one before (as list walks do).
        let mut s = HeldStack::EMPTY;
        s.push(lock(100, LockKind::Mutex, 0), &LIMITS);
        s.push(lock(1, LockKind::Spin, 0), &LIMITS);
        for addr in 2..=4 * MAX_HELD as u64 {
            assert!(
                s.push(lock(addr, LockKind::Spin, 0), &LIMITS),
                "step {addr}"
            );
            assert!(s.release(addr - 1), "step {addr}");
        }
        assert_eq!(addrs(&s), [100, 4 * MAX_HELD as u64]);
        assert_eq!(s.len(), 2, "no tombstones left behind");
        let mut clean = HeldStack::EMPTY;
        clean.push(lock(100, LockKind::Mutex, 0), &LIMITS);
        clean.push(lock(4 * MAX_HELD as u64, LockKind::Spin, 0), &LIMITS);
        assert_eq!(s.chain_key(), clean.chain_key(), "the key of what is held");
        assert!(s.release(4 * MAX_HELD as u64));
        assert!(s.release(100));
        assert!(s.is_empty());
    }

    #[test]
    fn a_full_stack_takes_no_more() {
        let limits = Limits {
            max_depth: 3,
            ..LIMITS
        };
        let mut s = HeldStack::EMPTY;
        let pushed: Vec<bool> = (1..=4)
            .map(|i| s.push(lock(i, LockKind::Spin, 0), &limits))
            .collect();
        assert_eq!(pushed, [true, true, true, false]);
        assert_eq!(addrs(&s), [1, 2, 3]);
        let mut full = HeldStack::EMPTY;
        for i in 1..=MAX_HELD as u64 + 2 {
            full.push(lock(i, LockKind::Mutex, 0), &LIMITS);
        }
        assert_eq!(full.len(), MAX_HELD);
    }

    #[test]
    fn releases_are_looked_for_among_the_recent_entries_only() {
        let mut s = HeldStack::EMPTY;
        for i in 1..=RECENT as u64 + 1 {
            s.push(lock(i, LockKind::Mutex, 0), &LIMITS);
        }
        assert!(!s.release(1), "below the recent entries");
        assert!(s.release(2));
    }

    #[test]
    fn reacquisitions_are_told_apart() {
        use LockKind::{Mutex, RwlockRead, RwsemRead, Spin};
        let cases = [
            (RwlockRead, RwlockRead, false, Prepared::Fresh),
            (Spin, Spin, false, Prepared::Stale),
            (RwsemRead, RwsemRead, false, Prepared::Recursive(0)),
            (RwsemRead, RwsemRead, true, Prepared::Stale),
            (Mutex, Mutex, false, Prepared::Stale),
        ];
        for (held, kind, trylock, want) in cases {
            let mut s = HeldStack::EMPTY;
            s.push(lock(1, held, 0), &LIMITS);
            let mut new = lock(1, kind, 1);
            if trylock {
                new.variant = flags::TRYLOCK;
            }
            assert_eq!(s.reacquired(&new), want, "{held:?} then {kind:?}");
        }
    }

    #[test]
    fn switching_out_hands_over_the_topmost_spinning_lock() {
        let mut s = HeldStack::EMPTY;
        s.push(lock(1, LockKind::Mutex, 0), &LIMITS);
        s.push(lock(2, LockKind::Spin, 0), &LIMITS);
        s.push(lock(3, LockKind::Mutex, 0), &LIMITS);
        s.push(lock(4, LockKind::Spin, 0), &LIMITS);
        assert!(s.release(3));
        let (handed, stale) = s.switch_out(10, Some(4));
        assert_eq!(handed.map(|l| l.addr), Some(4));
        assert_eq!(stale, 1, "the other spinning lock");
        assert_eq!(addrs(&s), [1]);
        assert_eq!(s.len(), 1, "tombstones on top go");
        let mut clean = HeldStack::EMPTY;
        clean.push(lock(1, LockKind::Mutex, 0), &LIMITS);
        assert_eq!(s.chain_key(), clean.chain_key());
        let (_, stale) = s.switch_out(LIMITS.stale_sleep_ns + 1, Some(4));
        assert_eq!(stale, 1, "held too long");
        assert!(s.is_empty());
        s.push(lock(4, LockKind::Spin, 0), &LIMITS);
        assert_eq!(
            s.switch_out(10, None),
            (None, 1),
            "no guess without the address"
        );
    }
}
