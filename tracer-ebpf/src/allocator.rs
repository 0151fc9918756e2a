//! The functions of the seed bug: the per-CPU allocator (`pcpu_alloc`, `free_percpu`) and
//! `vfree`, by fentry where trampolines are allowed and by their tracepoints everywhere else,
//! plus the tracepoints that bracket interrupt handlers and report lock contention.

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_probe_read_kernel,
    programs::{BtfTracePointContext, FEntryContext, tracing::StackIdContext},
};
use tracer_common::{Event, EventKind, flags};

use crate::{context, emit};

/// `__GFP_DIRECT_RECLAIM` (bit 10 since Linux 4.4): an allocation is atomic when it may not
/// reclaim directly, exactly as `pcpu_alloc` computes `is_atomic`.
const GFP_DIRECT_RECLAIM: u64 = 0x400;

/// Sends a non-lock event of `kind` with two arguments, the caller (0 when the stack must
/// tell) and a kernel stack.
#[inline(always)]
fn report<C: StackIdContext>(
    ctx: &C,
    kind: EventKind,
    caller: u64,
    (arg, arg2): (u64, u64),
    extra: u32,
) {
    let Some((cfg, _running, here)) = context::begin() else {
        return;
    };
    let mut ev = Event::zeroed();
    ev.kind = kind as u32;
    ev.caller = caller;
    ev.arg = arg;
    ev.arg2 = arg2;
    ev.flags = extra;
    context::fill(&mut ev, cfg, &here);
    // The raw frames travel in the argument slots: only where those are free.
    if caller == 0 && arg == 0 && arg2 == 0 {
        context::raw_callers(ctx, &mut ev);
    }
    ev.kernel_stack_id = emit::kernel_stack(ctx);
    emit::send(&mut ev);
}

/// Sends an interrupt bracket event (no stack: they are frequent and the stack says nothing).
#[inline(always)]
fn bracket(kind: EventKind, arg: u64) {
    let Some(cfg) = context::config() else { return };
    let Some((_running, here)) = context::enter(cfg) else {
        return;
    };
    let mut ev = Event::zeroed();
    ev.kind = kind as u32;
    ev.arg = arg;
    context::fill(&mut ev, cfg, &here);
    emit::send(&mut ev);
}

/// fentry `pcpu_alloc_noprof(size, align, reserved, gfp)` (`pcpu_alloc` before Linux 6.10).
#[inline(always)]
pub fn pcpu_alloc_entry(ctx: &FEntryContext) {
    let size: u64 = ctx.arg(0);
    let gfp: u32 = ctx.arg(3);
    let atomic = if gfp as u64 & GFP_DIRECT_RECLAIM == 0 {
        flags::ATOMIC
    } else {
        0
    };
    report(
        ctx,
        EventKind::PcpuAlloc,
        0,
        (size, gfp as u64),
        atomic | flags::FROM_TRAMPOLINE,
    );
}

/// fentry `free_percpu(ptr)`.
#[inline(always)]
pub fn free_percpu_entry(ctx: &FEntryContext) {
    let ptr: u64 = ctx.arg(0);
    report(
        ctx,
        EventKind::PcpuFree,
        0,
        (ptr, 0),
        flags::FROM_TRAMPOLINE,
    );
}

/// fentry `vfree(addr)`. The address is not read: the checks only need the call, and 6.12's
/// verifier refuses the argument access ("invalid bpf_context access off=0"), which cost the
/// whole probe there.
#[inline(always)]
pub fn vfree_entry(ctx: &FEntryContext) {
    report(ctx, EventKind::Vfree, 0, (0, 0), flags::FROM_TRAMPOLINE);
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
    report(
        ctx,
        EventKind::PcpuAlloc,
        call_site,
        (size, gfp & 0xffff_ffff),
        atomic,
    );
}

/// tp_btf `percpu_free_percpu(base_addr, off, ptr)`.
#[inline(always)]
pub fn percpu_free_tp(ctx: &BtfTracePointContext) {
    let ptr: u64 = ctx.arg(2);
    report(ctx, EventKind::PcpuFree, 0, (ptr, 0), 0);
}

/// tp_btf `free_vmap_area_noflush(va_start, nr_lazy, nr_lazy_max)`: on the `vfree` path.
#[inline(always)]
pub fn free_vmap_area_tp(ctx: &BtfTracePointContext) {
    let va_start: u64 = ctx.arg(0);
    report(ctx, EventKind::Vfree, 0, (va_start, 0), 0);
}

/// tp_btf `contention_begin(lock, flags)` and `contention_end(lock, ret)`.
#[inline(always)]
pub fn contention_tp(ctx: &BtfTracePointContext, kind: EventKind) {
    let Some((cfg, _running, here)) = context::begin() else {
        return;
    };
    let mut ev = Event::zeroed();
    ev.kind = kind as u32;
    ev.lock_addr = ctx.arg(0);
    ev.arg = ctx.arg::<u64>(1) & 0xffff_ffff;
    if kind == EventKind::ContentionBegin {
        // SAFETY: the context's first slot is the lock address, copied as a plain scalar.
        let lock: u64 = unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const u64) }.unwrap_or(0);
        (ev.slab_cache, ev.slab_offset) = context::slab_cache(lock, cfg);
    }
    context::fill(&mut ev, cfg, &here);
    emit::send(&mut ev);
}

/// tp_btf `irq_handler_entry(irq, action)` / `irq_handler_exit(irq, action, ret)` and
/// `softirq_entry(vec_nr)` / `softirq_exit(vec_nr)`.
#[inline(always)]
pub fn irq_bracket_tp(ctx: &BtfTracePointContext, kind: EventKind) {
    let nr: u64 = ctx.arg(0);
    bracket(kind, nr & 0xffff_ffff);
}
