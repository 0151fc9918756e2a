//! Held locks (lockdep's `held_lock` stacks), kept where the locks are taken: one stack per
//! task for its task context, one per CPU for each interrupt context. The BPF programs keep
//! them in maps; user space's model of the kernel side keeps them in memory; both run this
//! code.
//!
//! Releases get missed (the kernel skips a program already running on the CPU; some unlocks
//! are inlined), so a stack never trusts itself for long: it is bounded ([`MAX_HELD`],
//! [`Limits::max_depth`]), a release removes a lock wherever it sits, and
//! [`HeldStack::expire`] drops entries that cannot still be held. Every dropped entry is
//! counted by the caller.
//!
//! Written for the BPF verifier as much as for people: every loop is bounded by a constant,
//! every index is checked, nothing can panic.

use crate::{
    ExecContext, LockKind,
    chain::{self, EMPTY},
    class::ClassDesc,
    flags,
};

/// Most locks one stack holds. lockdep allows 48; real kernel paths rarely nest more than a
/// dozen, and every stack costs `MAX_HELD` entries of memory per task. Past it the bottom entry
/// is dropped (counted as an overflow).
pub const MAX_HELD: usize = 32;
const _: () = assert!(MAX_HELD.is_power_of_two());

/// Stale entries [`HeldStack::expire`] drops in one call: stale entries are rare, and each
/// removal is a loop the BPF verifier walks; more are dropped by the next calls.
pub const EXPIRE_PER_CALL: usize = 2;

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
    /// The instance's address.
    pub addr: u64,
    /// Where it was acquired (return address into the acquiring function), 0 when unknown.
    pub site: u64,
    /// Its class.
    pub class: ClassDesc,
    /// `class.key()`, kept so chain keys need no hashing of the class.
    pub class_key: u64,
    /// When it was acquired (`bpf_ktime_get_ns`).
    pub acquired_ns: u64,
    /// The stack's acquisition count when it was acquired (ages entries by activity).
    pub acquired_at: u32,
    /// The CPU it was acquired on.
    pub cpu: u32,
    /// [`LockKind`] discriminant.
    pub kind: u32,
    /// [`flags::TRYLOCK`], [`flags::IRQ_VARIANT`] and [`flags::BH_VARIANT`] bits.
    pub variant: u32,
}

const _: () = assert!(core::mem::size_of::<HeldLock>() == 72);

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
    /// A spinning lock under which the same stack made this many acquisitions is a missed
    /// release.
    pub stale_spin_acquisitions: u32,
    /// Most locks a stack holds (at most [`MAX_HELD`]).
    pub max_depth: u32,
}

impl Limits {
    /// The bounds for a live kernel.
    pub const DEFAULT: Limits = Limits {
        stale_spin_ns: 1_000_000_000,
        stale_sleep_ns: 600_000_000_000,
        stale_spin_acquisitions: 100_000,
        max_depth: MAX_HELD as u32,
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

/// What [`HeldStack::prepare`] found before a lock is pushed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// Entries dropped as stale (expired, or the same instance whose release was missed).
    pub stale: u32,
    /// Index of the held entry this acquisition recursively takes again, if any: it stays
    /// until the acquisition is reported, then [`HeldStack::remove`] drops it.
    pub recursive: Option<usize>,
}

/// The locks held in one place, bottom first, with the contention in progress there.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldStack {
    /// How many entries of `locks` are held.
    pub depth: u32,
    /// Acquisitions made in this place so far (wrapping).
    pub acquisitions: u32,
    /// Scratch for [`HeldStack::launder`].
    cursor: u32,
    /// Reserved, zero.
    reserved: u32,
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
        offset: 0,
    },
    class_key: 0,
    acquired_ns: 0,
    acquired_at: 0,
    cpu: 0,
    kind: 0,
    variant: 0,
};

impl HeldStack {
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

    /// An empty stack.
    pub const EMPTY: HeldStack = HeldStack {
        depth: 0,
        acquisitions: 0,
        cursor: 0,
        reserved: 0,
        contending: 0,
        contending_since: 0,
        contended_ns: 0,
        locks: [ZERO_LOCK; MAX_HELD],
    };

    /// How many locks are held (never more than [`MAX_HELD`], whatever the memory says).
    ///
    /// Read afresh each time (a volatile read): in a BPF program a length kept in a register
    /// across a loop carries whatever range each loop exit refined it to, and the verifier
    /// then walks everything after the loop once per exit.
    #[inline(always)]
    pub fn len(&self) -> usize {
        // SAFETY: a plain read of our own field.
        let depth = unsafe { core::ptr::read_volatile(&raw const self.depth) } as usize;
        if depth > MAX_HELD { MAX_HELD } else { depth }
    }

    /// `i`, made opaque to the BPF verifier by a round trip through the stack's memory (see
    /// [`HeldStack::len`]): the exits of a search that found different indices then look alike,
    /// so what follows is verified once, not once per exit.
    #[inline(always)]
    fn launder(&mut self, i: usize) -> usize {
        // SAFETY: plain accesses to our own field.
        unsafe {
            core::ptr::write_volatile(&raw mut self.cursor, i as u32);
            core::ptr::read_volatile(&raw const self.cursor) as usize
        }
    }

    /// True when nothing is held.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.depth == 0
    }

    /// The held entry at `index` (bottom first).
    #[inline(always)]
    pub fn get(&self, index: usize) -> Option<&HeldLock> {
        if index < self.len() {
            Some(self.at(index))
        } else {
            None
        }
    }

    /// The chain key of what is held: lockdep's iteration over the held locks, bottom first.
    /// Computed when asked rather than kept per entry, so that removing an entry needs no
    /// rekeying (held stacks are shallow: the loop is short where it runs).
    #[inline(always)]
    pub fn chain_key(&self) -> u64 {
        let len = self.len();
        let mut key = EMPTY;
        for i in 0..MAX_HELD {
            if i >= len {
                break;
            }
            key = chain::extend(key, self.at(i).hlock_id());
        }
        key
    }

    /// The topmost entry for the instance at `addr`.
    #[inline(always)]
    pub fn find(&mut self, addr: u64) -> Option<usize> {
        self.find_where(|lock| lock.addr == addr)
    }

    /// The topmost entry `matches` accepts.
    #[inline(always)]
    fn find_where(&mut self, matches: impl Fn(&HeldLock) -> bool) -> Option<usize> {
        let len = self.len();
        let mut found = MAX_HELD;
        for k in 0..MAX_HELD {
            if k >= len {
                break;
            }
            let i = len - 1 - k;
            if matches(self.at(i)) {
                found = i;
                break;
            }
        }
        match self.launder(found) {
            i if i < MAX_HELD => Some(i),
            _ => None,
        }
    }

    /// Removes the entry at `index`.
    #[inline(always)]
    pub fn remove(&mut self, index: usize) {
        let index = self.launder(index);
        let len = self.len();
        if index >= len {
            return;
        }
        for k in 0..MAX_HELD - 1 {
            let i = index + k;
            if i + 1 >= len {
                break;
            }
            *self.at_mut(i) = *self.at(i + 1);
        }
        self.depth = (len - 1) as u32;
    }

    /// Releases the topmost entry for `addr`; false when it is not held here.
    #[inline(always)]
    pub fn release(&mut self, addr: u64) -> bool {
        match self.find(addr) {
            Some(i) => {
                self.remove(i);
                true
            }
            None => false,
        }
    }

    /// Drops everything; returns how many entries were dropped.
    #[inline(always)]
    pub fn clear(&mut self) -> u32 {
        let n = self.len() as u32;
        self.depth = 0;
        n
    }

    /// Removes the topmost entries `matches` accepts, at most `EXPIRE_PER_CALL`; returns how
    /// many.
    #[inline(always)]
    fn remove_where(&mut self, matches: impl Fn(&HeldLock) -> bool) -> u32 {
        let mut removed = 0;
        for _ in 0..EXPIRE_PER_CALL {
            match self.find_where(&matches) {
                Some(i) => {
                    self.remove(i);
                    removed += 1;
                }
                None => break,
            }
        }
        removed
    }

    /// Drops entries that cannot still be held at `now_ns` on `cpu`: spinning locks of a task
    /// (`in_task`) now running on another CPU (their holder cannot migrate), and entries held
    /// longer than `limits` allow; at most [`EXPIRE_PER_CALL`], the topmost first. Returns how
    /// many were dropped.
    #[inline(always)]
    pub fn expire(&mut self, now_ns: u64, cpu: u32, in_task: bool, limits: &Limits) -> u32 {
        let acquisitions = self.acquisitions;
        self.remove_where(|lock| {
            let age = now_ns.saturating_sub(lock.acquired_ns);
            if lock.lock_kind().is_spinning() {
                (in_task && lock.cpu != cpu)
                    || age > limits.stale_spin_ns
                    || acquisitions.wrapping_sub(lock.acquired_at) > limits.stale_spin_acquisitions
            } else {
                age > limits.stale_sleep_ns
            }
        })
    }

    /// Readies the stack for acquiring `lock` (its address, kind and variant set) at `now_ns`
    /// on `cpu`: drops what expired, and looks for the same instance already held: a missed
    /// release is dropped, recursive readers nest, and a recursive acquisition is left in place
    /// for the caller to report (see [`Prepared::recursive`]).
    #[inline(always)]
    pub fn prepare(
        &mut self,
        lock: &HeldLock,
        now_ns: u64,
        in_task: bool,
        limits: &Limits,
    ) -> Prepared {
        let mut prepared = Prepared {
            stale: self.expire(now_ns, lock.cpu, in_task, limits),
            recursive: None,
        };
        if let Some(i) = self.find(lock.addr) {
            let old = *self.at(i);
            match Reacquire::classify(old.lock_kind(), lock.lock_kind(), lock.is_trylock()) {
                Reacquire::Nested => {}
                Reacquire::Stale => {
                    self.remove(i);
                    prepared.stale += 1;
                }
                Reacquire::Recursive => prepared.recursive = Some(i),
            }
        }
        prepared
    }

    /// The chain key the stack will have once `lock` is pushed.
    #[inline(always)]
    pub fn next_chain_key(&self, lock: &HeldLock) -> u64 {
        chain::extend(self.chain_key(), lock.hlock_id())
    }

    /// Pushes `lock`. When the stack holds `limits.max_depth` locks
    /// the bottom one is dropped first (the likeliest to be a missed release); returns true
    /// then.
    #[inline(always)]
    pub fn push(&mut self, mut lock: HeldLock, limits: &Limits) -> bool {
        let max = if (limits.max_depth as usize) < MAX_HELD && limits.max_depth > 0 {
            limits.max_depth as usize
        } else {
            MAX_HELD
        };
        let overflow = self.len() >= max;
        if overflow {
            self.remove(0);
        }
        lock.acquired_at = self.acquisitions;
        self.acquisitions = self.acquisitions.wrapping_add(1);
        let len = self.len();
        if len < MAX_HELD {
            *self.at_mut(len) = lock;
            self.depth = (len + 1) as u32;
        }
        overflow
    }

    /// The task switches out (`sched_switch`): it cannot hold a spinning lock while it sleeps
    /// or is preempted, except the run-queue lock that the scheduler hands to the next task
    /// (lockdep's `prepare_lock_switch`), which is the topmost spinning lock. Removes every
    /// spinning lock (at most [`EXPIRE_PER_CALL`] besides the handed one) and returns the
    /// topmost one, to be pushed on the next task's stack, and how many others were dropped as
    /// stale.
    #[inline(always)]
    pub fn switch_out(&mut self) -> (Option<HeldLock>, u32) {
        let spinning = |lock: &HeldLock| lock.lock_kind().is_spinning();
        let Some(top) = self.find_where(spinning) else {
            return (None, 0);
        };
        let handed = *self.at(top);
        self.remove(top);
        (Some(handed), self.remove_where(spinning))
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
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::class::ClassTag;

    fn lock(addr: u64, kind: LockKind, ns: u64, cpu: u32) -> HeldLock {
        let class = ClassDesc {
            a: addr,
            tag: ClassTag::Static as u32,
            ..ClassDesc::default()
        };
        HeldLock {
            addr,
            class,
            class_key: class.key(),
            acquired_ns: ns,
            cpu,
            kind: kind as u32,
            ..HeldLock::default()
        }
    }

    fn addrs(stack: &HeldStack) -> Vec<u64> {
        (0..stack.len())
            .map(|i| stack.get(i).unwrap().addr)
            .collect()
    }

    const LIMITS: Limits = Limits::DEFAULT;

    #[test]
    fn removing_from_the_middle_keys_like_never_taken() {
        let mut a = HeldStack::EMPTY;
        let mut b = HeldStack::EMPTY;
        for addr in [1, 2, 3] {
            a.push(lock(addr, LockKind::Spin, 0, 0), &LIMITS);
        }
        for addr in [1, 3] {
            b.push(lock(addr, LockKind::Spin, 0, 0), &LIMITS);
        }
        assert!(a.release(2));
        assert!(!a.release(9));
        assert_eq!(a.chain_key(), b.chain_key());
        assert_eq!(addrs(&a), [1, 3]);
    }

    #[test]
    fn overflow_drops_the_bottom() {
        let limits = Limits {
            max_depth: 3,
            ..LIMITS
        };
        let mut s = HeldStack::EMPTY;
        let overflowed: Vec<bool> = (0..4)
            .map(|i| s.push(lock(i, LockKind::Spin, 0, 0), &limits))
            .collect();
        assert_eq!(overflowed, [false, false, false, true]);
        assert_eq!(addrs(&s), [1, 2, 3]);
        let mut full = HeldStack::EMPTY;
        for i in 0..MAX_HELD as u64 + 2 {
            full.push(lock(i, LockKind::Mutex, 0, 0), &LIMITS);
        }
        assert_eq!(full.len(), MAX_HELD);
    }

    #[test]
    fn expire_drops_migrated_and_old_entries() {
        let mut s = HeldStack::EMPTY;
        s.push(lock(1, LockKind::Spin, 0, 0), &LIMITS);
        s.push(lock(2, LockKind::Mutex, 0, 0), &LIMITS);
        assert_eq!(s.expire(10, 0, true, &LIMITS), 0, "fresh, same CPU");
        assert_eq!(
            s.expire(10, 1, true, &LIMITS),
            1,
            "the spinlock holder migrated"
        );
        assert_eq!(addrs(&s), [2], "a mutex holder may migrate");
        assert_eq!(s.expire(LIMITS.stale_sleep_ns + 1, 1, true, &LIMITS), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn prepare_tells_reacquisitions_apart() {
        use LockKind::{Mutex, RwlockRead, RwsemRead, Spin};
        let cases = [
            (RwlockRead, RwlockRead, false, 0, None),
            (Spin, Spin, false, 1, None),
            (RwsemRead, RwsemRead, false, 0, Some(0)),
            (RwsemRead, RwsemRead, true, 1, None),
            (Mutex, Mutex, false, 1, None),
        ];
        for (held, kind, trylock, stale, recursive) in cases {
            let mut s = HeldStack::EMPTY;
            s.push(lock(1, held, 0, 0), &LIMITS);
            let mut new = lock(1, kind, 0, 0);
            if trylock {
                new.variant = flags::TRYLOCK;
            }
            let prepared = s.prepare(&new, 1, true, &LIMITS);
            assert_eq!(
                (prepared.stale, prepared.recursive),
                (stale, recursive),
                "{held:?} then {kind:?}"
            );
        }
    }

    #[test]
    fn switching_out_hands_the_topmost_spinning_lock_over() {
        let mut s = HeldStack::EMPTY;
        s.push(lock(1, LockKind::Mutex, 0, 0), &LIMITS);
        s.push(lock(2, LockKind::Spin, 0, 0), &LIMITS);
        s.push(lock(3, LockKind::Spin, 0, 0), &LIMITS);
        let (handed, stale) = s.switch_out();
        assert_eq!(handed.map(|l| l.addr), Some(3));
        assert_eq!(stale, 1);
        assert_eq!(addrs(&s), [1]);
        let mut next = HeldStack::EMPTY;
        next.push(lock(1, LockKind::Mutex, 0, 0), &LIMITS);
        assert_eq!(next.chain_key(), s.chain_key(), "same key as never taken");
    }
}
