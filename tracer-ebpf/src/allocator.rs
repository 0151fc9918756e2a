//! The functions of the seed bug: the per-CPU allocator (`pcpu_alloc`, `free_percpu`) and
//! `vfree`, by fentry where trampolines are allowed (by kprobe where the IRQ-state kfunc is
//! missing: the kprobe sees the flags) and by their tracepoints everywhere else.
//! A call sends a fact with the locks held in its context, unless an identical call with no
//! lock held was sent already (`tracer_common::validate::call`). Also the
//! interrupt brackets, which place events only where `preempt_count` cannot be read.

use aya_ebpf::{
    EbpfContext,
    programs::{BtfTracePointContext, FEntryContext, ProbeContext},
};
use tracer_common::{
    EventKind, FactKind, HeldLock, IrqState, flags,
    validate::{self, CallNews, Validator},
};

use crate::{
    context,
    emit::{self, FactInfo},
    held,
    maps::{BRACKETS, EMPTY_HELD},
    validate::Maps,
};

/// `__GFP_DIRECT_RECLAIM` (bit 10 since Linux 4.4): an allocation is atomic when it may not
/// reclaim directly, exactly as `pcpu_alloc` computes `is_atomic`.
const GFP_DIRECT_RECLAIM: u64 = 0x400;

/// [`flags::ATOMIC`] for an allocation with `gfp` flags that may not reclaim directly.
#[inline(always)]
fn atomic_flag(gfp: u64) -> u32 {
    if gfp & GFP_DIRECT_RECLAIM == 0 {
        flags::ATOMIC
    } else {
        0
    }
}

/// Sends a call fact: `kind` with two arguments, its caller (0: from the trampoline's frame)
/// and the locks held in its context, with the interrupt state `irqs` (`None`: read it here,
/// through the kfunc where the kernel has it).
#[inline(always)]
fn call<C: EbpfContext>(
    ctx: &C,
    kind: EventKind,
    caller: u64,
    (arg, arg2): (u64, u64),
    extra: u32,
    irqs: Option<IrqState>,
) {
    let Some((_, here)) = context::begin() else {
        return;
    };
    let caller = if caller == 0 && extra & flags::FROM_TRAMPOLINE != 0 {
        context::trampoline_caller(ctx, &here, None)
    } else {
        caller
    };
    let lock = HeldLock {
        site: caller,
        cpu: here.cpu,
        ..HeldLock::default()
    };
    let irqs = match irqs {
        Some(irqs) => IrqState::from_u32(here.launder(irqs as u64) as u32),
        None => context::irq_state(&here),
    };
    let info = FactInfo {
        kind: FactKind::Call,
        news: kind as u32,
        arg,
        arg2,
        irqs,
        flags: extra,
        user_stack: false,
    };
    let stack = held::kernel_stack(&here, false);
    let Some(held) = stack.map(|stack| &*stack).or(EMPTY_HELD.get(0)) else {
        return;
    };
    let mut maps = Maps::kernel(ctx, &here, irqs, extra);
    let news = validate::call(
        &mut maps,
        held,
        &here.state(irqs),
        kind as u32,
        extra & flags::ATOMIC != 0,
        caller,
    );
    if news == CallNews::Known {
        return;
    }
    // Held entries past their staleness bound travel too; user space ignores them (a stale
    // spinlock must not make a legal call look atomic).
    if emit::fact(ctx, &here, &info, &lock, held)
        && let CallNews::New(key) = news
    {
        maps.remember_chain(key);
    }
}

/// fentry `pcpu_alloc_noprof(size, align, reserved, gfp)` (`pcpu_alloc` before Linux 6.10).
#[inline(always)]
pub fn pcpu_alloc_entry(ctx: &FEntryContext) {
    let size: u64 = ctx.arg(0);
    let gfp: u32 = ctx.arg(3);
    let atomic = atomic_flag(u64::from(gfp));
    call(
        ctx,
        EventKind::PcpuAlloc,
        0,
        (size, gfp as u64),
        atomic | flags::FROM_TRAMPOLINE,
        None,
    );
}

/// fentry `free_percpu(ptr)`.
#[inline(always)]
pub fn free_percpu_entry(ctx: &FEntryContext) {
    let ptr: u64 = ctx.arg(0);
    call(
        ctx,
        EventKind::PcpuFree,
        0,
        (ptr, 0),
        flags::FROM_TRAMPOLINE,
        None,
    );
}

/// fentry `vfree(addr)`. The address is not read: the checks only need the call, and 6.12's
/// verifier refuses the argument access ("invalid bpf_context access off=0"), which cost the
/// whole probe there.
#[inline(always)]
pub fn vfree_entry(ctx: &FEntryContext) {
    call(
        ctx,
        EventKind::Vfree,
        0,
        (0, 0),
        flags::FROM_TRAMPOLINE,
        None,
    );
}

/// The seed's functions by kprobe at their entry, where the kernel lacks the IRQ-state kfunc
/// or `bpf_get_func_ip` (or refuses trampolines):
/// the saved registers hold the arguments, the flags (the interrupt state of the call) and
/// the stack pointer, whose top word is the caller.
#[inline(always)]
pub fn kprobe_entry(ctx: &ProbeContext, kind: EventKind) {
    let regs = ctx.regs;
    // SAFETY: a kprobe's context is the saved registers, read with plain loads.
    let (first, fourth, sp, eflags) =
        unsafe { ((*regs).rdi, (*regs).rcx, (*regs).rsp, (*regs).eflags) };
    let caller = context::return_address(sp);
    let irqs = Some(IrqState::from_x86_flags(eflags));
    match kind {
        // pcpu_alloc(size, align, reserved, gfp)
        EventKind::PcpuAlloc => {
            let gfp = fourth & 0xffff_ffff;
            call(ctx, kind, caller, (first, gfp), atomic_flag(gfp), irqs);
        }
        // free_percpu(ptr), vfree(addr)
        _ => call(ctx, kind, caller, (first, 0), 0, irqs),
    }
}

/// tp_btf `percpu_alloc_percpu(call_site, reserved, is_atomic, size, align, base_addr, off,
/// ptr, bytes_alloc, gfp_flags)` (this argument list since Linux 6.2).
#[inline(always)]
pub fn percpu_alloc_tp(ctx: &BtfTracePointContext) {
    let call_site: u64 = ctx.arg(0);
    let is_atomic: u64 = ctx.arg(2);
    let size: u64 = ctx.arg(3);
    let gfp: u64 = ctx.arg(9);
    let atomic = if is_atomic & 0xff != 0 {
        flags::ATOMIC
    } else {
        0
    };
    call(
        ctx,
        EventKind::PcpuAlloc,
        call_site,
        (size, gfp & 0xffff_ffff),
        atomic,
        None,
    );
}

/// tp_btf `percpu_free_percpu(base_addr, off, ptr)`.
#[inline(always)]
pub fn percpu_free_tp(ctx: &BtfTracePointContext) {
    let ptr: u64 = ctx.arg(2);
    call(ctx, EventKind::PcpuFree, 0, (ptr, 0), 0, None);
}

/// tp_btf `free_vmap_area_noflush(va_start, nr_lazy, nr_lazy_max)`: on the `vfree` path.
#[inline(always)]
pub fn free_vmap_area_tp(ctx: &BtfTracePointContext) {
    let va_start: u64 = ctx.arg(0);
    call(ctx, EventKind::Vfree, 0, (va_start, 0), 0, None);
}

/// tp_btf `irq_handler_entry`/`_exit` (`hardirq`) and `softirq_entry`/`_exit`: keeps this
/// CPU's bracket depths, which place events where `preempt_count` cannot be read.
#[inline(always)]
pub fn irq_bracket(hardirq: bool, entry: bool) {
    if context::config().is_none() {
        return;
    }
    let Some(depth) = BRACKETS.get_ptr_mut(if hardirq { 0 } else { 1 }) else {
        return;
    };
    // SAFETY: this CPU's slot; brackets of one kind do not nest on a CPU except through
    // a higher context, which keeps its own count.
    unsafe {
        *depth = if entry {
            (*depth).saturating_add(1)
        } else {
            (*depth).saturating_sub(1)
        };
    }
}
