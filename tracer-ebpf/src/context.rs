//! What every event records about where it happened: time, CPU, task, hardware-interrupt
//! state (through the `bpf_local_irq_save` kfunc) and execution context (from `preempt_count`).

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes,
        generated::{
            bpf_get_current_task, bpf_get_smp_processor_id, bpf_get_stack, bpf_ktime_get_ns,
        },
    },
};
use tracer_common::{
    Event, ExecContext, IrqState, PreemptCountSource, ProbeConfig, SLAB_NAME_LEN, flags, preempt,
};

use crate::{
    emit,
    maps::{CONFIG, SLAB_GEOMETRY, SLAB_NAMES},
};

/// Non-zero for the overhead benchmark's floor (`locktrace watch --floor`): every program
/// returns at once, so a run measures what the attached trampolines, tracepoints and uprobes
/// alone cost. A read-only global that user space overrides at load time: the verifier sees
/// its frozen value and drops the dead path from every program.
#[unsafe(no_mangle)]
static FLOOR: u32 = 0;

/// The configuration user space wrote, or `None` while no session records (before every
/// probe is attached, and while they are detached) and in the benchmark's floor (see
/// [`FLOOR`]). Every program path starts here.
#[inline(always)]
pub fn config() -> Option<&'static ProbeConfig> {
    // SAFETY: a plain read of a static; volatile so the compiler keeps the load the verifier
    // resolves.
    if unsafe { core::ptr::read_volatile(&raw const FLOOR) } != 0 {
        return None;
    }
    CONFIG.get(0).filter(|cfg| cfg.tracing != 0)
}

/// True when this task's events should be dropped at the source: locktrace's own (user-space
/// scoping is done by the uprobe attachment itself).
#[inline(always)]
pub fn filtered_out(cfg: &ProbeConfig) -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == cfg.self_pid
}

/// Reads the x86 flags register through `bpf_local_irq_save`/`bpf_local_irq_restore`
/// (Linux 6.14+).
///
/// The two calls are raw instructions whose `imm` holds a marker; user space replaces the
/// marker with the kfunc's BTF id, or the whole call with `r0 = 0` when the kernel lacks the
/// kfunc (then `cfg.irq_kfunc_valid` is 0 and the state is reported as unknown). aya-ebpf has
/// no way to declare a kfunc, and an `extern "C"` declaration loses the argument register in
/// bpf-linker. The verifier refuses a direct read of the saved slot, so it is copied out with
/// `bpf_probe_read_kernel`.
#[inline(always)]
fn irq_state(cfg: &ProbeConfig) -> IrqState {
    if cfg.irq_kfunc_valid == 0 {
        return IrqState::Unknown;
    }
    let mut saved: u64 = 0;
    let slot = &raw mut saved;
    // SAFETY: both calls take a pointer to an 8-byte stack slot and only write it; every
    // caller-saved register is declared clobbered.
    unsafe {
        core::arch::asm!(
            ".quad 0x7a11000100002085",
            inout("r1") slot => _,
            out("r0") _, out("r2") _, out("r3") _, out("r4") _, out("r5") _,
        );
        core::arch::asm!(
            ".quad 0x7a11000200002085",
            inout("r1") slot => _,
            out("r0") _, out("r2") _, out("r3") _, out("r4") _, out("r5") _,
        );
    }
    // SAFETY: reading our own stack slot through the kernel-read helper.
    match unsafe { bpf_probe_read_kernel(slot as *const u64) } {
        Ok(flags) => IrqState::from_x86_flags(flags),
        Err(_) => IrqState::Unknown,
    }
}

/// Reads this CPU's `preempt_count` the way the configuration says (see
/// [`PreemptCountSource`]); `None` when it cannot be read exactly.
#[inline(always)]
fn preempt_count(cfg: &ProbeConfig) -> Option<u32> {
    if cfg.preempt_count_source == PreemptCountSource::ThisCpuPtr as u32 {
        preempt_count_this_cpu(cfg)
    } else if cfg.preempt_count_source == PreemptCountSource::Runqueue as u32 {
        preempt_count_from_runqueue(cfg)
    } else {
        None
    }
}

/// `bpf_this_cpu_ptr(&var)` on the per-CPU variable holding the count. The `ld_imm64` of the
/// typed ksym is emitted raw with a marker (aya-ebpf cannot declare a ksym) and patched by
/// user space into the variable's BTF id, or, with the call, into `r0 = 0` when this source
/// is not used.
#[inline(always)]
fn preempt_count_this_cpu(cfg: &ProbeConfig) -> Option<u32> {
    let typed: u64;
    // SAFETY: r1 = &var (BPF_PSEUDO_BTF_ID), then helper 154 (bpf_this_cpu_ptr) leaves this
    // CPU's copy in r0; every caller-saved register is declared clobbered.
    unsafe {
        core::arch::asm!(
            ".quad 0x7a11000400003118",
            ".quad 0",
            ".quad 0x0000009a00000085",
            lateout("r0") typed,
            out("r1") _, out("r2") _, out("r3") _, out("r4") _, out("r5") _,
        );
    }
    // The verifier types r0 as read-only memory of the variable's size; copying it out makes
    // it a plain address that may take the run-time member offset.
    // SAFETY: reading our own stack slot, then kernel memory through the read helper.
    unsafe {
        let var: u64 = bpf_probe_read_kernel(&raw const typed).ok()?;
        if var == 0 {
            return None;
        }
        bpf_probe_read_kernel((var + cfg.preempt_count_offset) as *const u32).ok()
    }
}

/// The per-CPU base is `current->se.cfs_rq->rq` minus the per-CPU offset of `runqueues`. A
/// task's `se.cfs_rq` can point at another CPU's queue (real-time and stopper tasks, tasks
/// being migrated), so the queue's own `cpu` must be this CPU, or the count would be another
/// CPU's.
#[inline(always)]
fn preempt_count_from_runqueue(cfg: &ProbeConfig) -> Option<u32> {
    // SAFETY: kernel reads through the fault-tolerant helper.
    unsafe {
        let task = bpf_get_current_task();
        let cfs_rq: u64 =
            bpf_probe_read_kernel((task + cfg.task_cfs_rq_offset) as *const u64).ok()?;
        let rq: u64 = bpf_probe_read_kernel((cfs_rq + cfg.cfs_rq_rq_offset) as *const u64).ok()?;
        let rq_cpu: u32 = bpf_probe_read_kernel((rq + cfg.rq_cpu_offset) as *const u32).ok()?;
        if rq_cpu != bpf_get_smp_processor_id() {
            return None;
        }
        let base = rq.wrapping_sub(cfg.runqueues_percpu_offset);
        bpf_probe_read_kernel(base.wrapping_add(cfg.preempt_count_offset) as *const u32).ok()
    }
}

/// Fills when, where and who: time, CPU, ids and comm.
#[inline(always)]
fn fill_task(ev: &mut Event) {
    // SAFETY: plain helpers without arguments.
    unsafe {
        ev.timestamp_ns = bpf_ktime_get_ns();
        ev.cpu = bpf_get_smp_processor_id();
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    ev.pid = (pid_tgid >> 32) as u32;
    ev.tid = pid_tgid as u32;
    if let Ok(comm) = bpf_get_current_comm() {
        ev.comm = comm;
    }
}

/// What [`enter`] learned about where the program runs, for [`fill`].
pub struct Here {
    /// `preempt_count`, when readable.
    count: Option<u32>,
    /// The hardware-interrupt state.
    irqs: IrqState,
    /// The context level (0 task, 1 softirq, 2 hardirq, 3 NMI, as in [`emit::Running`]).
    pub level: u32,
}

/// Claims this CPU's current context for the running program (see [`emit::Running`]) and
/// reads `preempt_count` and the IRQ state once for it and for [`fill`]. `None` in
/// locktrace's own task context, or when the probe fired inside another of our programs.
/// (Interrupts that arrive while locktrace runs are the kernel's, and traced.)
#[inline(always)]
pub fn enter(cfg: &ProbeConfig) -> Option<(emit::Running, Here)> {
    let count = preempt_count(cfg);
    let level = match count.map(|count| ExecContext::from_preempt_count(count, cfg.preempt_layout))
    {
        Some(ExecContext::Softirq) => 1,
        Some(ExecContext::Hardirq) => 2,
        Some(ExecContext::Nmi) => 3,
        _ => 0,
    };
    if level == 0 && filtered_out(cfg) {
        return None;
    }
    let running = emit::Running::enter(level)?;
    let irqs = irq_state(cfg);
    Some((running, Here { count, irqs, level }))
}

/// The start of every program that reports a kernel event: the configuration (none while
/// no session records) and this context claimed (see [`enter`]).
#[inline(always)]
pub fn begin() -> Option<(&'static ProbeConfig, emit::Running, Here)> {
    let cfg = config()?;
    let (running, here) = enter(cfg)?;
    Some((cfg, running, here))
}

/// Fills the fields every kernel event has: time, CPU, ids, comm, irq state and context (as
/// [`enter`] read them).
#[inline(always)]
pub fn fill(ev: &mut Event, cfg: &ProbeConfig, here: &Here) {
    fill_task(ev);
    ev.irqs = here.irqs as u32;
    match here.count {
        Some(count) => {
            ev.preempt_count = count;
            ev.context = ExecContext::from_preempt_count(count, cfg.preempt_layout) as u32;
            ev.flags |= flags::PREEMPT_COUNT_VALID;
            if count & preempt::SOFTIRQ_MASK != 0 {
                ev.flags |= flags::SOFTIRQS_DISABLED;
            }
        }
        None => ev.context = ExecContext::Unknown as u32,
    }
}

/// Fills the fields of a user-space event: no kernel state is meaningful there (user code
/// always runs in task context with interrupts enabled).
#[inline(always)]
pub fn fill_user(ev: &mut Event) {
    fill_task(ev);
    ev.irqs = IrqState::Enabled as u32;
    ev.context = ExecContext::Task as u32;
}

/// The slab cache holding `addr` (kfunc `bpf_get_kmem_cache`, Linux 6.13+), or 0, and the
/// offset of `addr` in its object plus one (0 when unknown). The first time a cache is seen
/// its name goes into `SLAB_NAMES` and its geometry into `SLAB_GEOMETRY`. The kfunc wants a
/// plain scalar, so callers pass an address copied out of the context, not a typed pointer.
#[inline(always)]
pub fn slab_cache(addr: u64, cfg: &ProbeConfig) -> (u64, u32) {
    if cfg.kmem_cache_kfunc_valid == 0 {
        return (0, 0);
    }
    let typed: u64;
    // SAFETY: one argument in r1, the result in r0, caller-saved registers clobbered; user
    // space patches the marker into the kfunc's BTF id (or `r0 = 0`).
    unsafe {
        core::arch::asm!(
            ".quad 0x7a11000300002085",
            inout("r1") addr => _,
            lateout("r0") typed,
            out("r2") _, out("r3") _, out("r4") _, out("r5") _,
        );
    }
    // The verifier types the result as an untrusted `struct kmem_cache *` and refuses
    // arithmetic with a run-time offset on it; a copy through the read helper is a plain
    // number.
    // SAFETY: reading our own stack slot.
    let cache: u64 = unsafe { bpf_probe_read_kernel(&raw const typed) }.unwrap_or(0);
    if cache == 0 {
        return (0, 0);
    }
    // SAFETY: the map lookup returns a reference valid for this program run.
    if unsafe { SLAB_NAMES.get(&cache) }.is_none() {
        learn_cache(cache, cfg);
    }
    // SAFETY: as above.
    let offset = match unsafe { SLAB_GEOMETRY.get(&cache) } {
        Some(&geometry) => offset_in_object(addr, geometry),
        None => 0,
    };
    (cache, offset)
}

/// Copies a cache's name and geometry into the maps.
#[inline(always)]
fn learn_cache(cache: u64, cfg: &ProbeConfig) {
    let mut name = [0u8; SLAB_NAME_LEN];
    // SAFETY: kernel reads through the fault-tolerant helpers.
    let name_ptr: Option<u64> =
        unsafe { bpf_probe_read_kernel((cache + cfg.kmem_cache_name_offset) as *const u64).ok() };
    if let Some(ptr) = name_ptr {
        // SAFETY: as above.
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(ptr as *const u8, &mut name) };
        let _ = SLAB_NAMES.insert(&cache, &name, 0);
    }
    if cfg.kmem_cache_size_offset == 0 {
        return;
    }
    // SAFETY: as above.
    let (size, oo) = unsafe {
        (
            bpf_probe_read_kernel((cache + cfg.kmem_cache_size_offset) as *const u32),
            bpf_probe_read_kernel((cache + cfg.kmem_cache_oo_offset) as *const u32),
        )
    };
    if let (Ok(size), Ok(oo)) = (size, oo) {
        // `struct kmem_cache_order_objects`: the page order above OO_SHIFT (16).
        let order = u64::from(oo >> 16);
        let _ = SLAB_GEOMETRY.insert(&cache, &(u64::from(size) | order << 32), 0);
    }
}

/// Where `addr` sits in its slab object, plus one. A slab is a buddy allocation of 2^order
/// pages, so it starts at `addr` rounded down to its size, and (without slub_debug's red
/// zones) its objects follow each other from there, `size` bytes apart.
#[inline(always)]
fn offset_in_object(addr: u64, geometry: u64) -> u32 {
    const PAGE_SIZE: u64 = 4096;
    let size = geometry & 0xffff_ffff;
    let order = (geometry >> 32) & 0x1f;
    if size == 0 {
        return 0;
    }
    let slab_bytes = PAGE_SIZE << order;
    let in_slab = addr & (slab_bytes - 1);
    (in_slab % size) as u32 + 1
}

/// The three kernel stack frames below our own program into `caller`, `arg` and `arg2` (see
/// [`flags::RAW_CALLERS`]): the trampoline, then on some kernels a return address into the
/// traced function itself, then the caller.
#[inline(always)]
pub fn raw_callers<C: EbpfContext>(ctx: &C, ev: &mut Event) {
    /// Low bits of the flags: frames to skip (ours is always the first).
    const SKIP_OUR_PROGRAM: u64 = 1;
    let mut frames = [0u64; 3];
    // SAFETY: the buffer is 24 bytes of our stack; the helper writes at most that.
    let copied = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            frames.as_mut_ptr() as *mut core::ffi::c_void,
            core::mem::size_of_val(&frames) as u32,
            SKIP_OUR_PROGRAM,
        )
    };
    if copied > 0 {
        ev.caller = frames[0];
        ev.arg = frames[1];
        ev.arg2 = frames[2];
        ev.flags |= flags::RAW_CALLERS;
    }
}
