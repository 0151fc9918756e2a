//! The kernel side of locktrace, run in user space: the same held stacks, classes, chain cache
//! and usage bits as the BPF programs (the code is `tracer_common`'s), fed raw lock
//! [`Event`]s instead of probes, and giving the same [`FactRecord`]s. The engine's fixtures,
//! its benchmark and tests speak in events and go through here, so they exercise the code the
//! kernel runs.
//!
//! What the programs read from the kernel, events carry: the context (or, when it is unknown,
//! the interrupt brackets decide), the interrupt state, the lock's slab cache or per-CPU
//! offset, the caller. `sched_switch` and task exit are events too.

use std::collections::{HashMap, HashSet};

use tracer_common::{
    AcquireState, ClassDesc, ContentionStat, Counter, Event, EventKind, ExecContext, FactKind,
    HeldLock, HeldStack, IrqState, Limits,
    class::classify,
    fact::news,
    flags,
    held::task_key,
    validate::{self, CallNews, Counts, Validator},
};

use crate::{fact::FactRecord, symbols::StackKey};

/// The programs' maps, in memory.
#[derive(Debug)]
pub struct KernelModel {
    limits: Limits,
    stacks: Stacks,
    caches: Caches,
}

/// Where the held stacks live: per task, and per CPU for interrupt contexts.
#[derive(Debug, Default)]
struct Stacks {
    tasks: HashMap<u64, Box<HeldStack>>,
    irqs: HashMap<u32, Box<[HeldStack; 3]>>,
    brackets: HashMap<u32, [u32; 2]>,
}

/// The chain cache, usage bits, contention figures and counters.
#[derive(Debug, Default)]
struct Caches {
    chains: HashSet<u64>,
    usage: HashMap<u64, u8>,
    contention: HashMap<u64, ContentionStat>,
    counters: [u64; tracer_common::COUNTERS as usize],
    /// While set, facts cannot be sent (a full ring buffer).
    ring_full: bool,
}

impl Default for KernelModel {
    fn default() -> KernelModel {
        KernelModel::new(Limits::DEFAULT)
    }
}

/// The validation's view of the model for one event: where facts go and what they carry.
struct Run<'a> {
    caches: &'a mut Caches,
    ev: &'a Event,
    context: ExecContext,
    user: bool,
    facts: &'a mut Vec<FactRecord>,
}

impl Counts for Run<'_> {
    fn count(&mut self, counter: Counter, n: u64) {
        self.caches.counters[counter as usize] += n;
    }
}

impl Validator for Run<'_> {
    fn known_usage(&mut self, class_key: u64) -> u8 {
        self.caches.usage.get(&class_key).copied().unwrap_or(0)
    }

    fn chain_known(&mut self, lookup: u64) -> bool {
        self.caches.chains.contains(&lookup)
    }

    fn report(
        &mut self,
        news: u32,
        usage: u8,
        state: &AcquireState,
        lock: &HeldLock,
        held: &HeldStack,
    ) -> bool {
        if self.caches.ring_full {
            self.caches.counters[Counter::RingFull as usize] += 1;
            return false;
        }
        let fact = fact(
            self.ev,
            self.context,
            FactKind::Acquire,
            news,
            (u64::from(usage), 0),
            state.irqs,
            self.user,
            *lock,
            held,
        );
        self.facts.push(fact);
        true
    }

    fn remember_usage(&mut self, class_key: u64, mask: u8) {
        self.caches.usage.insert(class_key, mask);
    }

    fn remember_chain(&mut self, lookup: u64) {
        self.caches.chains.insert(lookup);
    }

    fn contended(&mut self, class: &ClassDesc, class_key: u64, ns: u64) {
        self.caches.contended(class, class_key, ns);
    }
}

impl Caches {
    fn contended(&mut self, class: &ClassDesc, class_key: u64, ns: u64) {
        let stat = self.contention.entry(class_key).or_insert(ContentionStat {
            class: *class,
            ..ContentionStat::default()
        });
        stat.count += 1;
        stat.wait_ns += ns;
        stat.max_ns = stat.max_ns.max(ns);
    }
}

/// A fact about `ev`, made in `context`.
#[allow(clippy::too_many_arguments)]
fn fact(
    ev: &Event,
    context: ExecContext,
    kind: FactKind,
    news: u32,
    (arg, arg2): (u64, u64),
    irqs: IrqState,
    user: bool,
    lock: HeldLock,
    held: &HeldStack,
) -> FactRecord {
    let stack = if user {
        (ev.user_stack_id >= 0).then(|| StackKey::user(ev.pid, ev.user_stack_id))
    } else {
        (ev.kernel_stack_id >= 0).then(|| StackKey::kernel(ev.kernel_stack_id))
    };
    let kept = flags::PREEMPT_COUNT_VALID
        | flags::SOFTIRQS_DISABLED
        | flags::FROM_TRAMPOLINE
        | flags::ATOMIC;
    FactRecord {
        timestamp_ns: ev.timestamp_ns,
        kind,
        news,
        arg,
        arg2,
        cpu: ev.cpu,
        pid: ev.pid,
        tid: ev.tid,
        context: if user { ExecContext::Task } else { context },
        irqs,
        preempt_count: ev.preempt_count,
        flags: if user {
            flags::USER_STACK
        } else {
            ev.flags & kept
        },
        comm: ev.comm,
        lock,
        held: held.held().copied().collect(),
        stack,
    }
}

impl Stacks {
    /// The context `ev` runs in: its own, or where it is unknown, the CPU's open brackets.
    fn context(&self, ev: &Event) -> ExecContext {
        let context = ev.exec_context();
        if context != ExecContext::Unknown {
            return context;
        }
        match self.brackets.get(&ev.cpu) {
            Some([hardirq, _]) if *hardirq > 0 => ExecContext::Hardirq,
            Some([_, softirq]) if *softirq > 0 => ExecContext::Softirq,
            _ => ExecContext::Unknown,
        }
    }

    /// The held stack of the place `ev` runs in, and how many entries of interrupt stacks above
    /// it were dropped (see the programs' `held::kernel_stack`).
    fn kernel(
        &mut self,
        ev: &Event,
        context: ExecContext,
        create: bool,
    ) -> (Option<&mut HeldStack>, u32) {
        let level = match context {
            ExecContext::Softirq => 1,
            ExecContext::Hardirq => 2,
            ExecContext::Nmi => 3,
            ExecContext::Task | ExecContext::Unknown => 0,
        };
        let irqs = self
            .irqs
            .entry(ev.cpu)
            .or_insert_with(|| Box::new([HeldStack::EMPTY; 3]));
        let mut stale = 0;
        for (i, stack) in irqs.iter_mut().enumerate() {
            if i + 1 > level && !stack.is_empty() {
                stale += stack.clear();
            }
        }
        if level > 0 {
            let stack = self.irqs.get_mut(&ev.cpu).map(|s| &mut s[level - 1]);
            return (stack, stale);
        }
        (self.task(task_key(ev.tid, ev.cpu, false), create), stale)
    }

    /// The stack of a thread's user-space locks.
    fn user(&mut self, ev: &Event, create: bool) -> Option<&mut HeldStack> {
        self.task(task_key(ev.tid, ev.cpu, true), create)
    }

    fn task(&mut self, key: u64, create: bool) -> Option<&mut HeldStack> {
        if create {
            Some(
                self.tasks
                    .entry(key)
                    .or_insert_with(|| Box::new(HeldStack::EMPTY)),
            )
        } else {
            self.tasks.get_mut(&key).map(|s| &mut **s)
        }
    }
}

impl KernelModel {
    /// A model with empty maps and the given staleness bounds.
    pub fn new(limits: Limits) -> KernelModel {
        KernelModel {
            limits,
            stacks: Stacks::default(),
            caches: Caches::default(),
        }
    }

    /// Makes the ring buffer full (`true`) or not: while it is, no acquisition fact can be
    /// sent, as when the programs' ring has no room.
    pub fn set_ring_full(&mut self, full: bool) {
        self.caches.ring_full = full;
    }

    /// The counters the programs would have kept.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.caches.counters[counter as usize]
    }

    /// Contention figures by class.
    pub fn contention_stats(&self) -> Vec<ContentionStat> {
        self.caches.contention.values().copied().collect()
    }

    /// The stack `ev` works on: its thread's user-space stack for a user lock, else its place's.
    fn stack_of(
        &mut self,
        ev: &Event,
        context: ExecContext,
        create: bool,
    ) -> Option<&mut HeldStack> {
        if ev.lock_kind().is_user() {
            return self.stacks.user(ev, create);
        }
        let (stack, stale) = self.stacks.kernel(ev, context, create);
        self.caches.counters[Counter::StaleHeld as usize] += u64::from(stale);
        stack
    }

    /// Follows one event; facts it brings go to `facts`.
    pub fn process(&mut self, ev: &Event, facts: &mut Vec<FactRecord>) {
        let Some(kind) = ev.event_kind() else { return };
        let context = self.stacks.context(ev);
        match kind {
            EventKind::LockAcquire => self.acquire(ev, context, facts),
            EventKind::LockRelease => self.release(ev, context),
            EventKind::ContentionBegin | EventKind::ContentionEnd => {
                self.contention(ev, context, kind == EventKind::ContentionBegin, facts)
            }
            EventKind::PcpuAlloc | EventKind::PcpuFree | EventKind::Vfree => {
                self.call(ev, kind, context, facts)
            }
            EventKind::HardirqEntry
            | EventKind::HardirqExit
            | EventKind::SoftirqEntry
            | EventKind::SoftirqExit => self.bracket(ev, kind),
            EventKind::SchedSwitch => self.switch(ev),
            EventKind::TaskExit => {
                for user in [false, true] {
                    self.stacks.tasks.remove(&task_key(ev.tid, ev.cpu, user));
                }
            }
        }
    }

    fn acquire(&mut self, ev: &Event, context: ExecContext, facts: &mut Vec<FactRecord>) {
        let kind = ev.lock_kind();
        if kind == tracer_common::LockKind::None {
            return;
        }
        let user = kind.is_user();
        let class = classify(&ev.instance());
        let lock = HeldLock {
            addr: ev.lock_addr,
            site: ev.caller,
            class,
            class_key: class.key(),
            acquired_ns: ev.timestamp_ns,
            cpu: ev.cpu,
            kind: kind as u32,
            variant: ev.flags & flags::VARIANT_MASK,
            ..HeldLock::default()
        };
        let state = if user {
            AcquireState {
                context: ExecContext::Task,
                irqs: IrqState::Enabled,
                softirqs_disabled: None,
            }
        } else {
            AcquireState {
                context,
                ..ev.acquire_state()
            }
        };
        let limits = self.limits;
        let (stack, stale) = if user {
            (self.stacks.user(ev, true), 0)
        } else {
            self.stacks.kernel(ev, context, true)
        };
        self.caches.counters[Counter::StaleHeld as usize] += u64::from(stale);
        let Some(stack) = stack else { return };
        let mut run = Run {
            caches: &mut self.caches,
            ev,
            context,
            user,
            facts,
        };
        validate::acquire(&mut run, stack, lock, &state, &limits);
    }

    fn release(&mut self, ev: &Event, context: ExecContext) {
        let user = ev.lock_kind().is_user();
        let (stack, stale) = if user {
            (self.stacks.user(ev, false), 0)
        } else {
            self.stacks.kernel(ev, context, false)
        };
        self.caches.counters[Counter::StaleHeld as usize] += u64::from(stale);
        let mut facts = Vec::new();
        let mut run = Run {
            caches: &mut self.caches,
            ev,
            context,
            user,
            facts: &mut facts,
        };
        validate::release(&mut run, stack, ev.lock_addr);
    }

    fn contention(
        &mut self,
        ev: &Event,
        context: ExecContext,
        begin: bool,
        facts: &mut Vec<FactRecord>,
    ) {
        let Some(stack) = self.stack_of(ev, context, true) else {
            return;
        };
        if !begin {
            validate::contention_end(stack, ev.lock_addr, ev.timestamp_ns);
            return;
        }
        let Some(again) = validate::contention_begin(stack, ev.lock_addr, ev.timestamp_ns, ev.arg)
        else {
            return;
        };
        let held = *stack;
        facts.push(fact(
            ev,
            context,
            FactKind::Acquire,
            news::RECURSIVE,
            (0, 0),
            ev.irq_state(),
            false,
            again,
            &held,
        ));
    }

    fn call(
        &mut self,
        ev: &Event,
        kind: EventKind,
        context: ExecContext,
        facts: &mut Vec<FactRecord>,
    ) {
        let held = match self.stack_of(ev, context, false) {
            Some(stack) => *stack,
            None => HeldStack::EMPTY,
        };
        let lock = HeldLock {
            site: ev.caller,
            cpu: ev.cpu,
            ..HeldLock::default()
        };
        let state = AcquireState {
            context,
            ..ev.acquire_state()
        };
        let mut run = Run {
            caches: &mut self.caches,
            ev,
            context,
            user: false,
            facts,
        };
        let news = validate::call(
            &mut run,
            &held,
            &state,
            kind as u32,
            ev.flags & flags::ATOMIC != 0,
            ev.caller,
        );
        if news == CallNews::Known {
            return;
        }
        if run.caches.ring_full {
            run.count(Counter::RingFull, 1);
            return;
        }
        if let CallNews::New(key) = news {
            run.remember_chain(key);
        }
        facts.push(fact(
            ev,
            context,
            FactKind::Call,
            kind as u32,
            (ev.arg, ev.arg2),
            ev.irq_state(),
            false,
            lock,
            &held,
        ));
    }

    fn bracket(&mut self, ev: &Event, kind: EventKind) {
        let depths = self.stacks.brackets.entry(ev.cpu).or_default();
        match kind {
            EventKind::HardirqEntry => depths[0] += 1,
            EventKind::HardirqExit => depths[0] = depths[0].saturating_sub(1),
            EventKind::SoftirqEntry => depths[1] += 1,
            EventKind::SoftirqExit => depths[1] = depths[1].saturating_sub(1),
            _ => {}
        }
    }

    /// `sched_switch` from the event's task to the task whose thread id is `ev.arg`, handing
    /// over the run-queue lock at `ev.lock_addr` (none when 0).
    fn switch(&mut self, ev: &Event) {
        let Some(prev) = self.stacks.task(task_key(ev.tid, ev.cpu, false), false) else {
            return;
        };
        let rq_lock = (ev.lock_addr != 0).then_some(ev.lock_addr);
        let (handed, stale) = prev.switch_out(ev.timestamp_ns, rq_lock);
        self.caches.counters[Counter::StaleHeld as usize] += u64::from(stale);
        let Some(lock) = handed else { return };
        let limits = self.limits;
        if let Some(next) = self
            .stacks
            .task(task_key(ev.arg as u32, ev.cpu, false), true)
        {
            let pushed = next.push(lock, &limits);
            self.caches.counters[Counter::HeldOverflow as usize] += u64::from(!pushed);
            self.caches.counters[Counter::Handoff as usize] += 1;
        }
    }
}
