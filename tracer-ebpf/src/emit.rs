//! Counting, and writing facts to the ring buffer: the only thing that crosses to user space.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm,
        generated::{bpf_get_stack, bpf_probe_read_kernel},
    },
};
use tracer_common::{
    Counter, ExecContext, Fact, FactKind, HeldLock, HeldStack, IrqState, MAX_FRAMES, MAX_HELD,
    flags,
};

use crate::{
    context::{self, Here},
    maps::{COUNTERS_MAP, CpuState, FACTS, RUNNING_SLOTS},
};

/// `BPF_F_USER_STACK`: walk the user stack instead of the kernel's.
const BPF_F_USER_STACK: u64 = 1 << 8;

/// `BPF_RB_NO_WAKEUP`: do not wake the reader for this record.
///
/// The programs never wake the reader; user space drains the ring on a timer. A wake-up is an
/// irq_work whose handler takes the wait-queue, `pi_lock` and runqueue locks, which our own
/// lock probes trace.
const BPF_RB_NO_WAKEUP: u64 = 1;

/// Adds `n` to the per-CPU counter `counter`.
#[inline(always)]
pub fn count(counter: Counter, n: u64) {
    if let Some(slot) = COUNTERS_MAP.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot; only this CPU writes it while the program runs (an
        // interrupting program may lose an increment: these are statistics).
        unsafe { *slot += n };
    }
}

/// What a fact says besides its kind: the interrupt state it was made in and its arguments.
pub struct FactInfo {
    /// [`FactKind`].
    pub kind: FactKind,
    /// See [`Fact::news`].
    pub news: u32,
    /// See [`Fact::arg`].
    pub arg: u64,
    /// See [`Fact::arg2`].
    pub arg2: u64,
    /// The hardware-interrupt state.
    pub irqs: IrqState,
    /// Extra [`flags`] (`ATOMIC`, `FROM_TRAMPOLINE`).
    pub flags: u32,
    /// Take the user stack rather than the kernel's.
    pub user_stack: bool,
}

/// Writes a fact: `lock` and the locks `held` in its context (bottom first), with one stack.
/// Returns false, counted as `ring_full`, when the ring had no room: the caller must then
/// remember nothing, so that the next occurrence is reported.
#[inline(always)]
pub fn fact<C: EbpfContext>(
    ctx: &C,
    here: &Here,
    info: &FactInfo,
    lock: &HeldLock,
    held: &HeldStack,
) -> bool {
    let Some(mut entry) = FACTS.reserve::<Fact>(0) else {
        count(Counter::RingFull, 1);
        return false;
    };
    let fact = entry.as_mut_ptr();
    // SAFETY: `fact` is the reserved record, written field by field; the helper calls write
    // inside it with sizes that fit.
    unsafe {
        (*fact).timestamp_ns = context::now_ns();
        (*fact).arg = info.arg;
        (*fact).arg2 = info.arg2;
        (*fact).kind = info.kind as u32;
        (*fact).news = info.news;
        (*fact).cpu = here.cpu;
        (*fact).pid = (here.pid_tgid >> 32) as u32;
        (*fact).tid = here.tid();
        (*fact).context = if info.user_stack {
            ExecContext::Task as u32
        } else {
            here.context as u32
        };
        (*fact).irqs = info.irqs as u32;
        (*fact).preempt_count = here.count.unwrap_or(0);
        (*fact).flags = info.flags
            | if info.user_stack {
                flags::USER_STACK
            } else {
                here.flags()
            };
        (*fact).reserved = 0;
        (*fact).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*fact).lock = *lock;
        // One copy of the entries in use, by the kernel's memcpy: a loop of 80-byte copies
        // would be walked by the verifier once per entry and per path.
        let n = held.len().min(MAX_HELD);
        let bytes = n * core::mem::size_of::<HeldLock>();
        let copied = bpf_probe_read_kernel(
            (*fact).held.as_mut_ptr() as *mut core::ffi::c_void,
            bytes as u32,
            held.locks.as_ptr() as *const core::ffi::c_void,
        );
        (*fact).nr_held = if copied == 0 { n as u32 } else { 0 };
        let stack_flags = if info.user_stack { BPF_F_USER_STACK } else { 0 };
        let copied = bpf_get_stack(
            ctx.as_ptr(),
            (*fact).frames.as_mut_ptr() as *mut core::ffi::c_void,
            (MAX_FRAMES * 8) as u32,
            stack_flags,
        );
        (*fact).nr_frames = if copied > 0 {
            (copied as u32) / 8
        } else {
            count(Counter::StackFailed, 1);
            0
        };
    }
    entry.submit(BPF_RB_NO_WAKEUP);
    true
}

/// Marks one of our programs as running for the current task in this CPU's current context
/// until dropped.
///
/// A probe that fires while the same task already runs one of our programs in the same
/// context is inside our own helpers (the ring buffer's lock on kernels where it is a plain
/// spinlock, a hash map's bucket lock) and must not re-enter them. Programs run with migration
/// disabled but, on preemptible kernels, not with preemption disabled: another task may run on
/// this CPU while one is preempted inside a program, and its events are not nested. So each
/// context has [`RUNNING_SLOTS`] slots holding the owning task, by thread id ([`owner`]: the
/// program already has it, where the task's address would cost a helper call; thread ids are
/// unique among live tasks, and the one id shared, the idle tasks' 0, is one task per CPU).
///
/// A spinning lock's release claims none: it calls no helper that takes a lock, and it cannot
/// be preempted.
pub struct Running {
    slot: *mut u64,
    /// The slot's scratch word (see `CpuState::scratch`).
    pub scratch: *mut u64,
    /// The slot's value: the current task's [`owner`] word.
    owner: u64,
}

/// What a running slot holds for the task with thread id `tid`: never 0, the free slot.
#[inline(always)]
pub fn owner(tid: u32) -> u64 {
    u64::from(tid) | 1 << 63
}

impl Running {
    /// Claims a slot of context `level` (0 task, 1 softirq, 2 hardirq, 3 NMI) in `cpu` for the
    /// current task, thread `tid`; `None`, counted, when the task already holds one there
    /// (this probe is nested in one of our programs) or when every slot is held by preempted
    /// tasks.
    #[inline(always)]
    pub fn enter(cpu: &mut CpuState, level: u32, tid: u32) -> Option<Running> {
        let task = owner(tid);
        let mut free: Option<u32> = None;
        for i in 0..RUNNING_SLOTS {
            let index = level * RUNNING_SLOTS + i;
            let owner = *cpu.running.get(index as usize)?;
            if owner == task {
                count(Counter::Nested, 1);
                return None;
            }
            if owner == 0 && free.is_none() {
                free = Some(index);
            }
        }
        let Some(index) = free else {
            count(Counter::Preempted, 1);
            return None;
        };
        // The index is a different constant on each way through the loop above: made one
        // unknown value, so that the verifier walks the rest of the program once, not once per
        // slot.
        let index =
            context::launder(task, u64::from(index)) as usize & (4 * RUNNING_SLOTS as usize - 1);
        let scratch = cpu.scratch.get_mut(index)? as *mut u64;
        let slot = cpu.running.get_mut(index)?;
        // Claiming is not atomic: a task preempted between the read and this write can take
        // over a slot another task claimed meanwhile; the release below only clears a slot it
        // still owns, so the worst case is one unguarded program run.
        *slot = task;
        Some(Running {
            slot: slot as *mut u64,
            scratch,
            owner: task,
        })
    }

    /// The claimed slot (for [`Running::held_by`]'s `except`).
    #[inline(always)]
    pub fn slot(&self) -> *const u64 {
        self.slot
    }

    /// True when thread `tid` holds a slot of context `level` in `cpu` other than `except`: it
    /// was preempted inside one of our programs there (or this program runs nested in one).
    #[inline(always)]
    pub fn held_by(cpu: &CpuState, level: u32, tid: u32, except: Option<*const u64>) -> bool {
        let task = owner(tid);
        for i in 0..RUNNING_SLOTS {
            let Some(slot) = cpu.running.get((level * RUNNING_SLOTS + i) as usize) else {
                continue;
            };
            if except.is_some_and(|except| core::ptr::eq(except, slot)) {
                continue;
            }
            if *slot == task {
                return true;
            }
        }
        false
    }
}

impl Drop for Running {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the slot claimed in `enter`, in this CPU's state (the task cannot migrate
        // while a program runs); cleared only while this task still owns it.
        unsafe {
            if *self.slot == self.owner {
                *self.slot = 0;
            }
        }
    }
}
