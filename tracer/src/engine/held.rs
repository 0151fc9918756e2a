//! Held locks (lockdep's `held_lock` stacks), one stack per place a lock can be held in: each
//! task's task context, and each CPU's softirq, hardirq and NMI contexts. A lock taken in an
//! interrupt handler does not depend on the locks of the task it interrupted, so they never
//! share a stack.
//!
//! Events get lost and unlocks get inlined, so a stack must never trust itself for long:
//! it is bounded ([`EngineConfig::max_lock_depth`], lockdep's `MAX_LOCK_DEPTH`), releases
//! remove a lock wherever it sits, and [`HeldStack::expire`] drops entries that cannot still be
//! held (a spinning lock whose holder ran on another CPU, or held too long). A kernel lock
//! acquired while another place holds it exclusively proves that holder's release was missed
//! (the acquisition would not have returned otherwise), so [`HeldLocks`] remembers exclusive
//! owners. The engine counts every entry it drops.

use rustc_hash::FxHashMap;
use tracer_common::{Event, EventKind, ExecContext, LockKind};

use super::EngineConfig;
use super::chain::ChainKey;
use super::class::ClassId;

/// One held lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLock {
    /// The instance's address.
    pub addr: u64,
    /// Where it was acquired.
    pub caller: u64,
    /// When it was acquired (event time).
    pub acquired_ns: u64,
    /// The stack's acquisition counter when it was acquired.
    pub acquired_at: u64,
    /// The chain key up to and including this lock.
    pub chain_key: ChainKey,
    /// Its class.
    pub class: ClassId,
    /// The CPU it was acquired on.
    pub cpu: u32,
    /// Its lock kind.
    pub kind: LockKind,
    /// True when it was a successful trylock.
    pub trylock: bool,
}

impl HeldLock {
    /// What the chain key hashes for this lock: class, read mode (0 write, 1 read,
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

/// The locks held in one place, bottom first.
#[derive(Clone, Debug, Default)]
pub struct HeldStack {
    locks: Vec<HeldLock>,
    /// Acquisitions made in this place so far (ages entries by activity, not time).
    pub(crate) acquisitions: u64,
}

impl HeldStack {
    /// The held locks, bottom first.
    pub fn locks(&self) -> &[HeldLock] {
        &self.locks
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// The chain key of what is held.
    #[inline]
    pub fn chain_key(&self) -> ChainKey {
        self.locks.last().map_or(ChainKey::EMPTY, |l| l.chain_key)
    }

    /// The topmost entry for the instance at `addr`.
    #[inline]
    pub fn position(&self, addr: u64) -> Option<usize> {
        self.locks.iter().rposition(|l| l.addr == addr)
    }

    /// Pushes a lock whose chain key is already set. When the stack is full the bottom entry
    /// is dropped (it is the likeliest to be a missed release); returns true then.
    #[inline]
    pub fn push(&mut self, lock: HeldLock, max_depth: usize) -> bool {
        self.acquisitions += 1;
        let overflow = self.locks.len() >= max_depth.max(1);
        if overflow {
            self.remove(0);
        }
        self.locks.push(lock);
        if overflow {
            // The pushed key was computed over the dropped entry; recompute it too.
            self.rekey(self.locks.len() - 1);
        }
        overflow
    }

    /// Removes the entry at `index` and recomputes the chain keys above it.
    pub fn remove(&mut self, index: usize) -> HeldLock {
        let lock = self.locks.remove(index);
        self.rekey(index);
        lock
    }

    /// Releases the topmost entry for `addr`; false when it is not held here.
    #[inline]
    pub fn release(&mut self, addr: u64) -> bool {
        match self.locks.last() {
            Some(top) if top.addr == addr => {
                self.locks.pop();
                true
            }
            _ => match self.position(addr) {
                Some(i) => {
                    self.remove(i);
                    true
                }
                None => false,
            },
        }
    }

    /// Drops everything; returns how many entries were dropped.
    pub fn clear(&mut self) -> u64 {
        let n = self.locks.len() as u64;
        self.locks.clear();
        n
    }

    /// Drops entries that cannot still be held at `now_ns` on `cpu`: spinning locks of a task
    /// now running on another CPU (their holder cannot migrate), and entries held longer than
    /// the configured bounds. Returns how many were dropped.
    #[inline]
    pub fn expire(&mut self, now_ns: u64, cpu: u32, task: bool, config: &EngineConfig) -> u64 {
        let acquisitions = self.acquisitions;
        let stale = |l: &HeldLock| {
            let age = now_ns.saturating_sub(l.acquired_ns);
            if l.kind.is_spinning() {
                (task && l.cpu != cpu)
                    || age > config.stale_spin_ns
                    || acquisitions - l.acquired_at > config.stale_spin_acquisitions
            } else {
                age > config.stale_sleep_ns
            }
        };
        let Some(first) = self.locks.iter().position(stale) else {
            return 0;
        };
        let before = self.locks.len();
        let mut i = first;
        while i < self.locks.len() {
            if stale(&self.locks[i]) {
                self.locks.remove(i);
            } else {
                i += 1;
            }
        }
        self.rekey(first);
        (before - self.locks.len()) as u64
    }

    fn rekey(&mut self, from: usize) {
        let mut key = match from {
            0 => ChainKey::EMPTY,
            i => self.locks[i - 1].chain_key,
        };
        for lock in &mut self.locks[from..] {
            key = key.extend(lock.hlock_id());
            lock.chain_key = key;
        }
    }
}

/// A task, as the held-lock stacks key it: its thread id, except for the idle tasks, which
/// all have thread id 0 but are one per CPU (lockdep has a `task_struct` for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskKey(u64);

impl TaskKey {
    /// The task an event ran in.
    #[inline]
    pub fn of(ev: &Event) -> TaskKey {
        if ev.tid == 0 {
            TaskKey(1 << 32 | u64::from(ev.cpu))
        } else {
            TaskKey(u64::from(ev.tid))
        }
    }
}

/// Where a stack lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// A task's task context.
    Task(TaskKey),
    /// An interrupt context of a CPU.
    Irq {
        /// The CPU.
        cpu: u32,
        /// Which interrupt context (softirq, hardirq or NMI).
        context: ExecContext,
    },
}

impl Place {
    /// The place of an event that ran in `context`.
    #[inline]
    pub fn of(ev: &Event, context: ExecContext) -> Place {
        match context {
            ExecContext::Softirq | ExecContext::Hardirq | ExecContext::Nmi => Place::Irq {
                cpu: ev.cpu,
                context,
            },
            ExecContext::Task | ExecContext::Unknown => Place::Task(TaskKey::of(ev)),
        }
    }
}

/// Interrupt state of one CPU.
#[derive(Clone, Debug, Default)]
struct CpuState {
    hardirq_depth: u32,
    softirq_depth: u32,
    /// Softirq, hardirq and NMI stacks.
    stacks: [HeldStack; 3],
}

/// CPU numbers above this share the last slot (only corrupt input has them).
const MAX_CPUS: usize = 8192;

/// Task stacks above this count trigger a sweep of the empty ones.
const TASK_SWEEP: usize = 1 << 16;

fn level(context: ExecContext) -> usize {
    match context {
        ExecContext::Task | ExecContext::Unknown => 0,
        ExecContext::Softirq => 1,
        ExecContext::Hardirq => 2,
        ExecContext::Nmi => 3,
    }
}

/// Every held-lock stack.
#[derive(Debug)]
pub struct HeldLocks {
    tasks: FxHashMap<TaskKey, HeldStack>,
    cpus: Vec<CpuState>,
    sweep_at: usize,
    /// Where each exclusively held kernel lock was last acquired. An entry may outlive its
    /// lock (stacks drop entries without telling): it is checked against the stack before use.
    owners: FxHashMap<u64, Place>,
    owners_sweep_at: usize,
}

/// Owner entries above this count trigger a sweep of those no stack confirms.
const OWNER_SWEEP: usize = 1 << 18;

impl Default for HeldLocks {
    fn default() -> HeldLocks {
        HeldLocks {
            tasks: FxHashMap::default(),
            cpus: Vec::new(),
            sweep_at: TASK_SWEEP,
            owners: FxHashMap::default(),
            owners_sweep_at: OWNER_SWEEP,
        }
    }
}

impl HeldLocks {
    #[inline]
    fn cpu(&mut self, cpu: u32) -> &mut CpuState {
        let idx = (cpu as usize).min(MAX_CPUS - 1);
        if idx >= self.cpus.len() {
            self.cpus.resize_with(idx + 1, CpuState::default);
        }
        &mut self.cpus[idx]
    }

    /// Places `ev` in a context and tracks interrupt entry and exit. The event's own context
    /// wins; when it is unknown, the CPU's open hardirq/softirq brackets decide. Interrupt
    /// stacks of a context above the event's on that CPU cannot still be live (that handler
    /// returned), so they are dropped. Returns the context and the number of entries dropped.
    #[inline]
    pub fn enter(&mut self, ev: &Event, kind: EventKind) -> (ExecContext, u64) {
        let state = self.cpu(ev.cpu);
        let mut context = ev.exec_context();
        if context == ExecContext::Unknown {
            context = if state.hardirq_depth > 0 || kind == EventKind::HardirqEntry {
                ExecContext::Hardirq
            } else if state.softirq_depth > 0 || kind == EventKind::SoftirqEntry {
                ExecContext::Softirq
            } else {
                ExecContext::Task
            };
        }
        let lvl = level(context);
        let mut dropped = 0;
        if lvl < 3 {
            for stack in &mut state.stacks[lvl..] {
                dropped += stack.clear();
            }
            if lvl < 2 {
                state.hardirq_depth = 0;
            }
            if lvl < 1 {
                state.softirq_depth = 0;
            }
        }
        match kind {
            EventKind::HardirqEntry => state.hardirq_depth += 1,
            EventKind::SoftirqEntry => state.softirq_depth += 1,
            EventKind::HardirqExit => {
                state.hardirq_depth = state.hardirq_depth.saturating_sub(1);
                if state.hardirq_depth == 0 {
                    dropped += state.stacks[1].clear();
                }
            }
            EventKind::SoftirqExit => {
                state.softirq_depth = state.softirq_depth.saturating_sub(1);
                if state.softirq_depth == 0 {
                    dropped += state.stacks[0].clear();
                }
            }
            _ => {}
        }
        (context, dropped)
    }

    /// The stack of `place`, created empty if needed.
    #[inline]
    pub fn stack_mut(&mut self, place: Place) -> &mut HeldStack {
        match place {
            Place::Task(tid) => {
                if self.tasks.len() >= self.sweep_at && !self.tasks.contains_key(&tid) {
                    // Exited tasks leave empty stacks behind: keep memory bounded by live ones.
                    self.tasks.retain(|_, s| !s.is_empty());
                    self.sweep_at = TASK_SWEEP.max(self.tasks.len() * 2);
                }
                self.tasks.entry(tid).or_default()
            }
            Place::Irq { cpu, context } => {
                let idx = level(context) - 1;
                &mut self.cpu(cpu).stacks[idx]
            }
        }
    }

    /// Drops every held lock of every task and CPU; returns how many entries were dropped.
    /// For when events were lost: any stack may have missed a release.
    pub fn clear_all(&mut self) -> u64 {
        let tasks: u64 = self.tasks.values_mut().map(HeldStack::clear).sum();
        let irqs: u64 = self
            .cpus
            .iter_mut()
            .flat_map(|cpu| cpu.stacks.iter_mut())
            .map(HeldStack::clear)
            .sum();
        tasks + irqs
    }

    /// `place` acquired kernel lock `addr` (exclusively when `exclusive`): if another place
    /// holds it exclusively, that entry is a missed release and is dropped. Returns true when
    /// one was. Spinning and sleeping kernel locks alike: no acquisition returns while another
    /// holder keeps the lock exclusively.
    pub fn acquired_elsewhere(&mut self, addr: u64, place: Place, exclusive: bool) -> bool {
        let previous = if exclusive {
            self.owners.insert(addr, place)
        } else {
            self.owners.remove(&addr)
        };
        let mut dropped = false;
        if let Some(owner) = previous.filter(|&owner| owner != place)
            && let Some(stack) = self.stack_existing(owner)
            && let Some(i) = stack.position(addr)
            && !stack.locks()[i].kind.is_read()
        {
            stack.remove(i);
            dropped = true;
        }
        if self.owners.len() >= self.owners_sweep_at {
            self.sweep_owners();
        }
        dropped
    }

    /// Kernel lock `addr` was released: it has no exclusive owner any more.
    pub fn released(&mut self, addr: u64) {
        self.owners.remove(&addr);
    }

    /// Keeps only owner entries a stack still confirms.
    fn sweep_owners(&mut self) {
        let mut owners = std::mem::take(&mut self.owners);
        owners.retain(|&addr, &mut place| {
            self.stack_existing(place)
                .is_some_and(|stack| stack.position(addr).is_some())
        });
        self.owners = owners;
        self.owners_sweep_at = OWNER_SWEEP.max(self.owners.len() * 2);
    }

    /// Releases `addr` from whichever task holds it; false when none does. For a lock handed
    /// from one task to another (see `Engine::release`).
    pub fn release_in_any_task(&mut self, addr: u64) -> bool {
        self.tasks
            .values_mut()
            .any(|stack| !stack.is_empty() && stack.release(addr))
    }

    /// The stack of `place`, mutably, if it exists.
    pub fn stack_existing(&mut self, place: Place) -> Option<&mut HeldStack> {
        match place {
            Place::Task(tid) => self.tasks.get_mut(&tid),
            Place::Irq { cpu, context } => {
                let idx = (cpu as usize).min(MAX_CPUS - 1);
                self.cpus
                    .get_mut(idx)
                    .map(|c| &mut c.stacks[level(context) - 1])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(addr: u64, class: u32, kind: LockKind, ns: u64, cpu: u32) -> HeldLock {
        HeldLock {
            addr,
            caller: 0,
            acquired_ns: ns,
            acquired_at: 0,
            chain_key: ChainKey::EMPTY,
            class: ClassId(class),
            cpu,
            kind,
            trylock: false,
        }
    }

    fn push(stack: &mut HeldStack, mut l: HeldLock, depth: usize) -> bool {
        l.chain_key = stack.chain_key().extend(l.hlock_id());
        l.acquired_at = stack.acquisitions;
        stack.push(l, depth)
    }

    #[test]
    fn removing_from_the_middle_rekeys_like_never_taken() {
        let mut a = HeldStack::default();
        let mut b = HeldStack::default();
        for (addr, class) in [(1, 1), (2, 2), (3, 3)] {
            push(&mut a, lock(addr, class, LockKind::Spin, 0, 0), 48);
        }
        for (addr, class) in [(1, 1), (3, 3)] {
            push(&mut b, lock(addr, class, LockKind::Spin, 0, 0), 48);
        }
        assert!(a.release(2));
        assert!(!a.release(9));
        assert_eq!(a.chain_key(), b.chain_key());
    }

    #[test]
    fn overflow_drops_the_bottom() {
        let mut s = HeldStack::default();
        let overflowed: Vec<bool> = (0..4)
            .map(|i| push(&mut s, lock(i, i as u32, LockKind::Spin, 0, 0), 3))
            .collect();
        assert_eq!(overflowed, [false, false, false, true]);
        assert_eq!(
            s.locks().iter().map(|l| l.addr).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn expire_drops_migrated_and_old_entries() {
        let config = EngineConfig::default();
        let mut s = HeldStack::default();
        push(&mut s, lock(1, 1, LockKind::Spin, 0, 0), 48);
        push(&mut s, lock(2, 2, LockKind::Mutex, 0, 0), 48);
        assert_eq!(s.expire(10, 0, true, &config), 0, "fresh, same CPU");
        assert_eq!(
            s.expire(10, 1, true, &config),
            1,
            "the spinlock holder migrated"
        );
        assert_eq!(s.locks()[0].addr, 2, "a mutex holder may migrate");
        assert_eq!(s.expire(config.stale_sleep_ns + 1, 1, true, &config), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn irq_exit_drops_what_the_handler_left() {
        let mut held = HeldLocks::default();
        let mut ev = Event::zeroed();
        ev.cpu = 1;
        ev.context = ExecContext::Unknown as u32;
        assert_eq!(
            held.enter(&ev, EventKind::HardirqEntry).0,
            ExecContext::Hardirq
        );
        let (ctx, _) = held.enter(&ev, EventKind::LockAcquire);
        assert_eq!(ctx, ExecContext::Hardirq, "inside the bracket");
        let place = Place::of(&ev, ctx);
        push(held.stack_mut(place), lock(1, 1, LockKind::Spin, 0, 1), 48);
        assert_eq!(held.enter(&ev, EventKind::HardirqExit).1, 1);
        assert_eq!(held.enter(&ev, EventKind::LockAcquire).0, ExecContext::Task);
    }
}
