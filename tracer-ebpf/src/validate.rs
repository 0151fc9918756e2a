//! lockdep's validation where the lock is taken, wired to the maps: the decisions are
//! `tracer_common::validate`'s (the same code user space's model runs); [`Maps`] gives it the
//! chain cache, the usage bits, the contention figures and the ring buffer.

use aya_ebpf::EbpfContext;
use tracer_common::{
    AcquireState, ClassDesc, ContentionStat, Counter, FactKind, HeldLock, HeldStack, IrqState,
    ProbeConfig, fact::news, validate,
};

use crate::{
    context::{self, Here},
    emit::{self, FactInfo, Running},
    maps::{CHAINS, CONTENTION, CpuState, RECENT, RECENT_CHAINS, USAGE},
};

/// `BPF_ANY`.
const BPF_ANY: u64 = 0;

/// The validation's view of the maps, for one program run.
pub struct Maps<'a, C> {
    /// The program's context (for the stack).
    ctx: &'a C,
    /// Where it runs.
    here: &'a Here,
    /// The hardware-interrupt state.
    irqs: IrqState,
    /// Extra fact [`tracer_common::flags`] (`FROM_TRAMPOLINE`).
    flags: u32,
    /// A user-space lock: facts carry the user stack.
    user: bool,
}

impl<'a, C> Maps<'a, C> {
    /// For a kernel event seen `here` with the interrupt state `irqs`; facts carry `flags`
    /// and the kernel stack.
    #[inline(always)]
    pub fn kernel(ctx: &'a C, here: &'a Here, irqs: IrqState, flags: u32) -> Self {
        Maps {
            ctx,
            here,
            irqs,
            flags,
            user: false,
        }
    }

    /// For a user-space lock taken `here` (task context, interrupts on); facts carry the
    /// user stack.
    #[inline(always)]
    pub fn user(ctx: &'a C, here: &'a Here) -> Self {
        Maps {
            ctx,
            here,
            irqs: IrqState::Enabled,
            flags: 0,
            user: true,
        }
    }
}

/// Counts into the counters map: all a release needs (see `user_locks::on_unlock`).
pub struct Counters;

/// Counts for a kernel lock's release at context `level` (see `kernel_locks::on_release`). A
/// release made inside another of our programs (the current task holds a running slot at
/// this level) is of a lock one of our helpers took — the ring buffer's, a hash map's bucket
/// lock — whose acquisition was not followed: not finding it is not counted as unmatched.
pub struct ReleaseCounts<'a> {
    /// This CPU's state.
    pub state: &'a CpuState,
    /// The release's context level.
    pub level: u32,
    /// The current thread.
    pub tid: u32,
}

impl validate::Counts for ReleaseCounts<'_> {
    #[inline(always)]
    fn count(&mut self, counter: Counter, n: u64) {
        if matches!(counter, Counter::UnmatchedRelease)
            && Running::held_by(self.state, self.level, self.tid, None)
        {
            return;
        }
        emit::count(counter, n);
    }
}

impl validate::Counts for Counters {
    #[inline(always)]
    fn count(&mut self, counter: Counter, n: u64) {
        emit::count(counter, n);
    }
}

impl<C> validate::Counts for Maps<'_, C> {
    #[inline(always)]
    fn count(&mut self, counter: Counter, n: u64) {
        emit::count(counter, n);
    }
}

impl<C: EbpfContext> validate::Validator for Maps<'_, C> {
    #[inline(always)]
    fn known_usage(&mut self, class_key: u64) -> u8 {
        // SAFETY: a map value read once.
        unsafe { USAGE.get(&class_key) }.copied().unwrap_or(0)
    }

    /// This CPU's recent chains first (see `RecentCaches`), then the chain cache.
    #[inline(always)]
    fn chain_known(&mut self, lookup: u64) -> bool {
        let recent = recent_chain(lookup);
        if let Some(slot) = &recent
            && **slot == lookup
        {
            return true;
        }
        if CHAINS.get_ptr(&lookup).is_none() {
            return false;
        }
        if let Some(slot) = recent {
            *slot = lookup;
        }
        true
    }

    #[inline(always)]
    fn report(
        &mut self,
        news: u32,
        usage: u8,
        state: &AcquireState,
        lock: &HeldLock,
        held: &HeldStack,
    ) -> bool {
        let info = FactInfo {
            kind: FactKind::Acquire,
            news,
            arg: u64::from(usage),
            arg2: 0,
            irqs: state.irqs,
            flags: self.flags,
            user_stack: self.user,
        };
        emit::fact(self.ctx, self.here, &info, lock, held)
    }

    #[inline(always)]
    fn remember_usage(&mut self, class_key: u64, mask: u8) {
        let _ = USAGE.insert(&class_key, &mask, BPF_ANY);
    }

    #[inline(always)]
    fn remember_chain(&mut self, lookup: u64) {
        let _ = CHAINS.insert(&lookup, &1, BPF_ANY);
        if let Some(slot) = recent_chain(lookup) {
            *slot = lookup;
        }
    }

    #[inline(always)]
    fn contended(&mut self, class: &ClassDesc, class_key: u64, ns: u64) {
        account_contention(class, class_key, ns);
    }
}

/// The slot of this CPU's recent chains (see `RecentCaches`) where the chain-cache key
/// `lookup` goes. A slot is one word, written whole: an interrupting program can only replace
/// a key by another, which makes a miss, never a false hit.
#[inline(always)]
fn recent_chain(lookup: u64) -> Option<&'static mut u64> {
    let recent = RECENT.get_ptr_mut(0)?;
    // SAFETY: this CPU's value, valid for the program run; the index is masked to the
    // array's length.
    Some(unsafe {
        (*recent)
            .chains
            .get_unchecked_mut(lookup as usize & (RECENT_CHAINS - 1))
    })
}

/// Follows an acquisition (see `tracer_common::validate::acquire`).
#[inline(always)]
pub fn acquire<C: EbpfContext>(
    maps: &mut Maps<'_, C>,
    cfg: &ProbeConfig,
    stack: &mut HeldStack,
    lock: HeldLock,
) {
    let state = if maps.user {
        // User code runs in task context with interrupts on; no usage bits come of it.
        AcquireState {
            context: tracer_common::ExecContext::Task,
            irqs: IrqState::Enabled,
            softirqs_disabled: None,
        }
    } else {
        maps.here.state(maps.irqs)
    };
    validate::acquire(maps, stack, lock, &state, &cfg.limits);
}

/// Adds one wait of `ns` to the class's contention figures.
#[inline(always)]
fn account_contention(class: &ClassDesc, class_key: u64, ns: u64) {
    if let Some(stat) = CONTENTION.get_ptr_mut(&class_key) {
        // SAFETY: a map value; concurrent updates from other CPUs go through atomic adds, the
        // maximum is best effort.
        unsafe {
            atomic_add(&raw mut (*stat).count, 1);
            atomic_add(&raw mut (*stat).wait_ns, ns);
            if (*stat).max_ns < ns {
                (*stat).max_ns = ns;
            }
        }
        return;
    }
    let stat = ContentionStat {
        class: *class,
        count: 1,
        wait_ns: ns,
        max_ns: ns,
    };
    let _ = CONTENTION.insert(&class_key, &stat, BPF_ANY);
}

/// `*target += n` as one BPF atomic add (core has no atomic read-modify-write for this target).
///
/// # Safety
/// `target` must point at a u64 in map memory.
#[inline(always)]
unsafe fn atomic_add(target: *mut u64, n: u64) {
    // SAFETY: the caller's promise; the instruction writes only `*target`.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({target} + 0) += {n}",
            target = in(reg) target,
            n = in(reg) n,
        );
    }
}

/// The contention tracepoints: a wait begins (`begin` holds the tracepoint's flags) or ends
/// for the lock at `addr`. A wait for a lock the waiter already holds is reported as a
/// recursive acquisition; a wait that ended is accounted when the acquisition follows, or at
/// once (under the class the address alone gives) where acquisitions are not traced.
#[inline(always)]
pub fn contention<C: EbpfContext>(
    ctx: &C,
    cfg: &ProbeConfig,
    here: &Here,
    stack: &mut HeldStack,
    addr: u64,
    begin: Option<u64>,
) {
    let now = context::now_ns();
    let Some(tp_flags) = begin else {
        let Some(ns) = validate::contention_end(stack, addr, now) else {
            return;
        };
        if let Some(lock) = validate::waiting_acquisition(stack, addr) {
            account_contention(&lock.class, lock.class_key, ns);
            stack.contending = 0;
        } else if cfg.acquisitions_traced == 0 {
            // No site here: a class by site would mean nothing, so none is given a type.
            let inst = context::instance(addr, 0, tracer_common::LockFamily::None, cfg, here);
            let class = tracer_common::class::classify(&inst);
            account_contention(&class, class.key(), ns);
            stack.contending = 0;
        }
        return;
    };
    let Some(again) = validate::contention_begin(stack, addr, now, tp_flags) else {
        return;
    };
    let info = FactInfo {
        kind: FactKind::Acquire,
        news: news::RECURSIVE,
        arg: 0,
        arg2: 0,
        irqs: context::irq_state(here),
        flags: 0,
        user_stack: false,
    };
    emit::fact(ctx, here, &info, &again, stack);
}
