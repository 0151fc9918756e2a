//! Where a program runs: the session switch, the task, the execution context (from
//! `preempt_count`), the hardware-interrupt state (through the `bpf_local_irq_save` kfunc), this
//! CPU's per-CPU base, and where a lock sits (slab cache, per-CPU offset, acquisition site).

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        bpf_probe_read_kernel_str_bytes,
        generated::{
            bpf_get_current_task, bpf_get_func_ip, bpf_get_smp_processor_id, bpf_get_stack,
            bpf_ktime_get_ns,
        },
    },
};
use tracer_common::{
    AcquireState, ClassDesc, ExecContext, HeldLock, IrqState, LockFamily, PreemptCountSource,
    ProbeConfig, SLAB_NAME_LEN, class::Instance, flags, preempt,
};

use crate::{
    emit,
    maps::{
        BRACKETS, CLOCK, CONFIG, CpuState, RECENT, RECENT_SLABS, SLAB_GENERIC, SLAB_GEOMETRY,
        SLAB_NAMES,
    },
};

/// `value`, made opaque to the verifier. What a program learns about where it runs (context,
/// interrupt state, `preempt_count`, a lock's class) comes out of several paths with a
/// different constant on each; carried as such through the rest of the program, it would make
/// the verifier walk the rest once per constant. Laundered, the rest is walked once.
///
/// `noise` is any value the verifier knows nothing about (a helper's result, such as the
/// `pid_tgid`, or a word made from one). `value ^ noise ^ noise` is `value` again, but the verifier
/// does not track that through two XORs with an unknown: to it the result is unknown. Two
/// register instructions, where a round trip through map memory costs a lookup and two memory
/// accesses, and needs memory no other program run can write in between.
#[inline(always)]
pub fn launder(noise: u64, value: u64) -> u64 {
    let mut value = value;
    // SAFETY: two ALU instructions on registers.
    unsafe {
        core::arch::asm!(
            "{value} ^= {noise}",
            "{value} ^= {noise}",
            value = inout(reg) value,
            noise = in(reg) noise,
        );
    }
    value
}

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

/// True when the events of the task with `pid_tgid` (`bpf_get_current_pid_tgid()`) should be
/// dropped at the source: locktrace's own (user-space scoping is done by the uprobe
/// attachment itself).
#[inline(always)]
pub fn filtered_out(cfg: &ProbeConfig, pid_tgid: u64) -> bool {
    (pid_tgid >> 32) as u32 == cfg.self_pid
}

/// `bpf_ktime_get_ns()`.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// The same monotonic clock as [`now_ns`] as user space last wrote it into `CLOCK` (every
/// 10 ms while a session runs). What every lock operation stamps its held entry with:
/// staleness bounds are a second and more, and a clocksource read can cost more than the rest
/// of the program (HPET where the TSC is unstable, as under qemu's emulation). The kernel's
/// own coarse clock (`bpf_ktime_get_coarse_ns`) is refused to tracing programs.
#[inline(always)]
pub fn coarse_ns() -> u64 {
    CLOCK.get(0).copied().unwrap_or(0)
}

/// This CPU.
#[inline(always)]
pub fn cpu() -> u32 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_smp_processor_id() }
}

/// Reads the x86 flags register through `bpf_local_irq_save`/`bpf_local_irq_restore`
/// (Linux 6.14+), laundered (see [`launder`]).
///
/// The two calls are raw instructions whose `imm` holds a marker; user space replaces the
/// marker with the kfunc's BTF id, or the whole call with `r0 = 0` when the kernel lacks the
/// kfunc (then `IRQ_KFUNC` is 0 and the state is reported as unknown). aya-ebpf has
/// no way to declare a kfunc, and an `extern "C"` declaration loses the argument register in
/// bpf-linker. The verifier refuses a direct read of the saved slot, so it is loaded through
/// an untrusted pointer ([`untrusted_words`]), or copied out with `bpf_probe_read_kernel`.
#[inline(always)]
pub fn irq_state(here: &Here) -> IrqState {
    IrqState::from_u32(launder(here.noise, irq_state_raw() as u64) as u32)
}

/// [`irq_state`] before laundering.
#[inline(always)]
fn irq_state_raw() -> IrqState {
    if global(&raw const IRQ_KFUNC) == 0 {
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
    // The verifier refuses a direct read of the slot the kfuncs used: read it as an untrusted
    // pointer (a plain load), or through the kernel-read helper.
    let flags = match untrusted_words::<1>(slot as u64) {
        Some([flags]) => Some(flags),
        // SAFETY: reading our own stack slot through the kernel-read helper.
        None => unsafe { bpf_probe_read_kernel(slot as *const u64) }.ok(),
    };
    match flags {
        Some(flags) => IrqState::from_x86_flags(flags),
        None => IrqState::Unknown,
    }
}

/// This CPU's `preempt_count` and per-CPU base, read the way the configuration says (see
/// [`PreemptCountSource`]); `None` when they cannot be read exactly. The base comes as a
/// [`RawBase`]: it becomes a number only once the program has claimed its scratch memory.
#[inline(always)]
fn cpu_view(cfg: &ProbeConfig) -> Option<(u32, RawBase)> {
    let source = global(&raw const PREEMPT_COUNT_SOURCE);
    if source == PreemptCountSource::ThisCpuPtr as u32 {
        cpu_view_this_cpu(cfg)
    } else if source == PreemptCountSource::Runqueue as u32 {
        cpu_view_runqueue(cfg).map(|(count, base)| {
            (
                count,
                RawBase {
                    word: base,
                    minus: 0,
                },
            )
        })
    } else {
        None
    }
}

/// A per-CPU base still to be made a number: `word` (to the verifier perhaps a typed pointer)
/// minus `minus`.
#[derive(Clone, Copy)]
struct RawBase {
    word: u64,
    minus: u64,
}

/// `ProbeConfig::preempt_count_offset` for [`PreemptCountSource::ThisCpuPtr`], as a read-only
/// global set at load time: a constant to the verifier, so the count is loaded straight from
/// the variable `bpf_this_cpu_ptr` returns. Through `bpf_probe_read_kernel` (a run-time
/// offset needs it) the two reads cost a third of a release program's time.
#[unsafe(no_mangle)]
static PREEMPT_COUNT_OFFSET: u64 = 0;

/// `bpf_this_cpu_ptr(&var)` on the per-CPU variable holding the count. The `ld_imm64` of the
/// typed ksym is emitted raw with a marker (aya-ebpf cannot declare a ksym) and patched by
/// user space into the variable's BTF id, or, with the call, into `r0 = 0` when this source
/// is not used.
#[inline(always)]
fn cpu_view_this_cpu(cfg: &ProbeConfig) -> Option<(u32, RawBase)> {
    let typed: *const u8;
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
    if typed.is_null() {
        return None;
    }
    // SAFETY: the verifier types `typed` as this CPU's variable (read-only memory of its
    // size, or its BTF struct) and checks the load at the constant offset against it.
    let count = unsafe {
        let offset = core::ptr::read_volatile(&raw const PREEMPT_COUNT_OFFSET) as usize;
        core::ptr::read_volatile(typed.wrapping_add(offset).cast::<u32>())
    };
    Some((
        count,
        RawBase {
            word: typed as u64,
            minus: cfg.this_cpu_var_percpu_offset,
        },
    ))
}

/// The per-CPU base is `current->se.cfs_rq->rq` minus the per-CPU offset of `runqueues`. A
/// task's `se.cfs_rq` can point at another CPU's queue (real-time and stopper tasks, tasks
/// being migrated), so the queue's own `cpu` must be this CPU, or the view would be another
/// CPU's.
#[inline(always)]
fn cpu_view_runqueue(cfg: &ProbeConfig) -> Option<(u32, u64)> {
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
        let count =
            bpf_probe_read_kernel(base.wrapping_add(cfg.preempt_count_offset) as *const u32)
                .ok()?;
        Some((count, base))
    }
}

/// What [`begin`] learned about where the program runs.
pub struct Here {
    /// `preempt_count`, when readable.
    pub count: Option<u32>,
    /// This CPU's per-CPU base (where its copy of the static per-CPU area starts).
    pub percpu_base: Option<u64>,
    /// The execution context: from `preempt_count`, else from the interrupt brackets.
    pub context: ExecContext,
    /// The context level (0 task, 1 softirq, 2 hardirq, 3 NMI, as in [`emit::Running`]).
    pub level: u32,
    /// This CPU.
    pub cpu: u32,
    /// Thread-group and thread id.
    pub pid_tgid: u64,
    /// A value unknown to the verifier, for [`launder`].
    noise: u64,
    /// This CPU's state.
    state: *mut CpuState,
    /// The program's running slot, released when the program ends.
    running: emit::Running,
}

impl Here {
    /// `value`, made opaque to the verifier (see [`launder`]); a typed pointer comes back a
    /// plain number.
    #[inline(always)]
    pub fn launder(&self, value: u64) -> u64 {
        launder(self.noise, value)
    }

    /// The program's running slot (see [`emit::Running::held_by`]).
    #[inline(always)]
    pub fn running_slot(&self) -> *const u64 {
        self.running.slot()
    }

    /// This CPU's state.
    #[inline(always)]
    pub fn cpu_state(&self) -> &CpuState {
        // SAFETY: this CPU's value, valid for the program run.
        unsafe { &*self.state }
    }

    /// Forgets a release claim this context holds for the lock at `addr`, now acquired again
    /// (see `kernel_locks::on_release`): a claim a copy left behind when it did not run
    /// first in its call would otherwise make the first copy of the next release of this
    /// lock defer to a copy that may not run (one nested in the same call, busy).
    #[inline(always)]
    pub fn forget_release_claim(&self, addr: u64) {
        // SAFETY: this CPU's value, valid for the program run; the index is masked to the
        // array's length.
        let claim = unsafe {
            (*self.state)
                .release_claims
                .get_unchecked_mut(self.level as usize & 3)
        };
        if claim[0] == addr {
            *claim = [0, 0];
        }
    }

    /// `value`, perhaps a typed pointer to the verifier (a probed function's argument), as a
    /// plain number, through memory: the verifier refuses arithmetic on such pointers (so
    /// [`launder`] cannot), and root may store a pointer and read it back as a number. The
    /// word is the program's running slot's: no other program run writes it in between.
    #[inline(always)]
    pub fn number(&self, value: u64) -> u64 {
        let word = self.running.scratch;
        // SAFETY: this running slot's scratch word, valid for the program run.
        unsafe {
            core::ptr::write_volatile(word, value);
            core::ptr::read_volatile(word)
        }
    }

    /// `lock`, made opaque to the verifier (see [`launder`]): whichever way its site and class
    /// were found, the rest of the program is one state. (Its address, time, CPU, kind and
    /// variant are the same on every path.)
    #[inline(always)]
    pub fn launder_lock(&self, lock: HeldLock) -> HeldLock {
        let class = lock.class;
        let packed =
            u64::from(class.tag) | u64::from(class.family) << 16 | u64::from(class.offset) << 32;
        let packed = self.launder(packed);
        HeldLock {
            site: self.launder(lock.site),
            class: ClassDesc {
                a: self.launder(class.a),
                b: self.launder(class.b),
                tag: packed as u16,
                family: (packed >> 16) as u16,
                offset: (packed >> 32) as u32,
            },
            class_key: self.launder(lock.class_key),
            ..lock
        }
    }

    /// The thread id.
    #[inline(always)]
    pub fn tid(&self) -> u32 {
        self.pid_tgid as u32
    }

    /// Where and how an acquisition here runs, with the interrupt state `irqs`.
    #[inline(always)]
    pub fn state(&self, irqs: IrqState) -> AcquireState {
        AcquireState {
            context: self.context,
            irqs,
            softirqs_disabled: self.count.map(|count| count & preempt::SOFTIRQ_MASK != 0),
        }
    }

    /// The [`flags`] a fact made here carries.
    #[inline(always)]
    pub fn flags(&self) -> u32 {
        match self.count {
            Some(count) if count & preempt::SOFTIRQ_MASK != 0 => {
                flags::PREEMPT_COUNT_VALID | flags::SOFTIRQS_DISABLED
            }
            Some(_) => flags::PREEMPT_COUNT_VALID,
            None => 0,
        }
    }
}

/// The context of a CPU whose `preempt_count` cannot be read, from its open interrupt
/// brackets.
#[inline(always)]
fn bracket_context() -> ExecContext {
    let depth = |i| BRACKETS.get(i).copied().unwrap_or(0);
    if depth(0) > 0 {
        ExecContext::Hardirq
    } else if depth(1) > 0 {
        ExecContext::Softirq
    } else {
        ExecContext::Unknown
    }
}

/// Where a program runs, found before anything is claimed: see [`locate`].
pub struct Located {
    /// The configuration.
    pub cfg: &'static ProbeConfig,
    view: Option<(u32, RawBase)>,
    context: ExecContext,
    /// The context level (0 task, 1 softirq, 2 hardirq, 3 NMI, as in [`emit::Running`]).
    pub level: u32,
}

/// The first half of [`begin`]: the configuration (none while no session records) and the
/// execution context, nothing claimed yet. Release programs stop here when another copy
/// handles the call.
#[inline(always)]
pub fn locate() -> Option<Located> {
    let cfg = config()?;
    let view = cpu_view(cfg);
    let context = match view {
        Some((count, _)) => ExecContext::from_preempt_count(count, cfg.preempt_layout),
        None => bracket_context(),
    };
    let level = match context {
        ExecContext::Softirq => 1,
        ExecContext::Hardirq => 2,
        ExecContext::Nmi => 3,
        ExecContext::Task | ExecContext::Unknown => 0,
    };
    Some(Located {
        cfg,
        view,
        context,
        level,
    })
}

/// The second half of [`begin`]: this context claimed for the program (see
/// [`emit::Running`]) and what it learned about where it runs. `None` in locktrace's own task
/// context, or when the probe fired inside another of our programs.
#[inline(always)]
pub fn enter(located: Located) -> Option<(&'static ProbeConfig, Here)> {
    let Located {
        cfg,
        view,
        context,
        level,
    } = located;
    let pid_tgid = bpf_get_current_pid_tgid();
    if level == 0 && filtered_out(cfg, pid_tgid) {
        return None;
    }
    let state = crate::maps::cpu_state()?;
    let running = emit::Running::enter(state, level, pid_tgid as u32)?;
    // One state for the rest of the program, whichever way the view was found.
    let noise = pid_tgid;
    let (count, raw) = view.unwrap_or((0, RawBase { word: 0, minus: 0 }));
    let valid = launder(noise, view.is_some() as u64) != 0;
    let count = launder(noise, u64::from(count)) as u32;
    // Through map memory, a typed pointer becomes a plain number (root may store pointers).
    // Memory every program of this CPU writes, but always with the same value: this CPU's
    // base. (No view, no write: the field may still hold the base or 0, and is not used.)
    if view.is_some() {
        // SAFETY: a field of this CPU's value.
        unsafe { core::ptr::write_volatile(&raw mut state.percpu_base, raw.word) };
    }
    // SAFETY: as above.
    let base =
        unsafe { core::ptr::read_volatile(&raw const state.percpu_base) }.wrapping_sub(raw.minus);
    let here = Here {
        count: valid.then_some(count),
        percpu_base: valid.then_some(base),
        context: ExecContext::from_u32(launder(noise, context as u64) as u32),
        level: launder(noise, u64::from(level)) as u32 & 3,
        cpu: cpu(),
        pid_tgid,
        noise,
        state,
        running,
    };
    Some((cfg, here))
}

/// The start of every program that follows a kernel event: the configuration (none while no
/// session records), where it runs, and this context claimed for it (see
/// [`emit::Running`]). `None` in locktrace's own task context, or when the probe fired inside
/// another of our programs. (Interrupts that arrive while locktrace runs are the kernel's,
/// and traced.)
#[inline(always)]
pub fn begin() -> Option<(&'static ProbeConfig, Here)> {
    enter(locate()?)
}

/// Where a kernel lock of type `family` at `addr` sits, taken at `site`: its slab cache (kfunc
/// `bpf_get_kmem_cache`, Linux 6.13+) or its offset in this CPU's static per-CPU area. The
/// kfunc wants a plain scalar, so callers pass an address copied out of the context, not a
/// typed pointer.
#[inline(always)]
pub fn instance(
    addr: u64,
    site: u64,
    family: LockFamily,
    cfg: &ProbeConfig,
    here: &Here,
) -> Instance {
    let mut inst = Instance {
        addr,
        site,
        family,
        ..Instance::default()
    };
    if addr >= tracer_common::class::STATIC_START {
        return inst;
    }
    if let Some(base) = here.percpu_base {
        let offset = addr.wrapping_sub(base);
        if offset < cfg.percpu_size {
            inst.percpu_offset = Some(offset as u32);
            return inst;
        }
    }
    (inst.slab_cache, inst.slab_offset, inst.slab_generic) = slab_cache(addr, cfg, here);
    inst
}

/// The slab cache holding `addr`, or 0; the offset of `addr` in its object plus one (0 when
/// unknown); whether the cache is generic. The first time a cache is seen its name goes into
/// `SLAB_NAMES` and its geometry into `SLAB_GEOMETRY`.
#[inline(always)]
fn slab_cache(addr: u64, cfg: &ProbeConfig, here: &Here) -> (u64, u32, bool) {
    if global(&raw const KMEM_CACHE_KFUNC) == 0 {
        return (0, 0, false);
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
    // arithmetic with a run-time offset on it.
    let cache = here.number(typed);
    if cache == 0 {
        return (0, 0, false);
    }
    let geometry = cache_geometry(cache, cfg);
    (
        cache,
        offset_in_object(addr, geometry),
        geometry & SLAB_GENERIC != 0,
    )
}

/// The geometry of slab cache `cache` (see `SLAB_GEOMETRY`): from this CPU's recent caches,
/// else from the map (learnt the first time), then remembered in this CPU's.
#[inline(always)]
fn cache_geometry(cache: u64, cfg: &ProbeConfig) -> u64 {
    // `struct kmem_cache`s are at least 64-byte aligned objects of a few hundred bytes.
    let index = ((cache >> 6) ^ (cache >> 12)) as usize & (RECENT_SLABS - 1);
    let entry = RECENT
        .get_ptr_mut(0)
        // SAFETY: this CPU's value; `index` is masked to the array's length.
        .map(|recent| unsafe { (*recent).slabs.get_unchecked_mut(index) });
    if let Some(entry) = &entry
        && entry[0] == cache
        && entry[2] == cache ^ entry[1]
    {
        return entry[1];
    }
    // SAFETY: the map lookup returns a reference valid for this program run.
    let geometry = match unsafe { SLAB_GEOMETRY.get(&cache) } {
        Some(&geometry) => geometry,
        None => learn_cache(cache, cfg),
    };
    if let Some(entry) = entry {
        *entry = [cache, geometry, cache ^ geometry];
    }
    geometry
}

/// Copies a cache's name and geometry into the maps; returns the geometry.
#[inline(always)]
fn learn_cache(cache: u64, cfg: &ProbeConfig) -> u64 {
    let mut name = [0u8; SLAB_NAME_LEN];
    // SAFETY: kernel reads through the fault-tolerant helpers.
    let name_ptr: Option<u64> =
        unsafe { bpf_probe_read_kernel((cache + cfg.kmem_cache_name_offset) as *const u64).ok() };
    if let Some(ptr) = name_ptr {
        // SAFETY: as above.
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(ptr as *const u8, &mut name) };
        let _ = SLAB_NAMES.insert(&cache, &name, 0);
    }
    let generic = if name.starts_with(b"kmalloc") {
        SLAB_GENERIC
    } else {
        0
    };
    let mut geometry = generic;
    if cfg.kmem_cache_size_offset != 0 {
        // SAFETY: as above.
        let (size, oo) = unsafe {
            (
                bpf_probe_read_kernel((cache + cfg.kmem_cache_size_offset) as *const u32),
                bpf_probe_read_kernel((cache + cfg.kmem_cache_oo_offset) as *const u32),
            )
        };
        if let (Ok(size), Ok(oo)) = (size, oo) {
            // `struct kmem_cache_order_objects`: the page order above OO_SHIFT (16).
            let order = u64::from(oo >> 16) & 0x1f;
            geometry |= u64::from(size) | order << 32;
        }
    }
    let _ = SLAB_GEOMETRY.insert(&cache, &geometry, 0);
    geometry
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

/// Words of the trampoline's frame read after the probed function's first argument.
const FRAME_WORDS: usize = 6;

/// True for an address in x86-64's kernel text or module area (the top 2 GiB): what a
/// return address is, and what the stack's other words (data, stack and heap pointers,
/// flags) are not.
#[inline(always)]
fn is_kernel_text(addr: u64) -> bool {
    addr >= 0xffff_ffff_8000_0000
}

/// A read-only global set at load time, read so that the verifier sees the load of a frozen
/// constant: it then walks only the branch the value takes, so code for what this kernel lacks
/// (a helper or kfunc it would refuse, another way to read `preempt_count`) is never walked.
#[inline(always)]
fn global(var: *const u32) -> u32 {
    // SAFETY: a plain read of one of our statics.
    unsafe { core::ptr::read_volatile(var) }
}

/// Non-zero where the `bpf_local_irq_save` kfunc exists (its calls were patched in): a
/// read-only global set at load time (see [`global`]).
#[unsafe(no_mangle)]
static IRQ_KFUNC: u32 = 0;

/// Non-zero where the `bpf_get_kmem_cache` kfunc exists (its call was patched in): a
/// read-only global set at load time (see [`global`]).
#[unsafe(no_mangle)]
static KMEM_CACHE_KFUNC: u32 = 0;

/// How this kernel's `preempt_count` is read ([`PreemptCountSource`]): a read-only global set
/// at load time (see [`global`]).
#[unsafe(no_mangle)]
static PREEMPT_COUNT_SOURCE: u32 = 0;

/// Non-zero when `bpf_get_func_ip` may be called from a trampoline (Linux 5.15+), as a
/// read-only global set at load time: a constant to the verifier, which then never sees the
/// call on a kernel whose verifier would refuse the whole program for it (5.10).
#[unsafe(no_mangle)]
static FUNC_IP_HELPER: u32 = 0;

/// The vmlinux BTF id of a struct of plain 8-byte members (`pt_regs`), set at load time: what
/// [`untrusted_words`] reads a trampoline's frame (and a stack slot) as. 0 when the kernel has
/// none.
#[unsafe(no_mangle)]
static FRAME_BTF_ID: u32 = 0;

/// The `N` words at kernel address `at` (a trampoline's frame, a stack slot of our own),
/// read as plain loads: the `bpf_rdonly_cast` kfunc (Linux 6.2+; the verifier turns the call
/// into a register move) types the address as an untrusted pointer to a struct of plain
/// 8-byte members, whose fields the verifier lets a program load directly, each as one
/// instruction with an exception-table entry. Through `bpf_probe_read_kernel` two words of a
/// frame cost a fifth of an acquisition program's time. `None` without the kfunc (user space
/// then patched the call into `r0 = 0`) or the struct. `N` is at most 21 (`pt_regs`).
#[inline(always)]
fn untrusted_words<const N: usize>(at: u64) -> Option<[u64; N]> {
    // SAFETY: a plain read of a static; volatile so that the verifier sees the load of the
    // frozen constant the kfunc's type argument must be.
    let btf_id = unsafe { core::ptr::read_volatile(&raw const FRAME_BTF_ID) };
    if btf_id == 0 {
        return None;
    }
    let frame: *const u64;
    // SAFETY: the kfunc takes the address (any type: `obj__ign`) and the BTF id (a constant)
    // and returns the address; caller-saved registers are declared clobbered.
    unsafe {
        core::arch::asm!(
            ".quad 0x7a11000500002085",
            inout("r1") at => _,
            inout("r2") u64::from(btf_id) => _,
            lateout("r0") frame,
            out("r3") _, out("r4") _, out("r5") _,
        );
    }
    if frame.is_null() {
        return None;
    }
    let mut words = [0u64; N];
    for (i, word) in words.iter_mut().enumerate() {
        // SAFETY: loads the verifier turns into fault-tolerant ones (an untrusted pointer).
        *word = unsafe { core::ptr::read_volatile(frame.wrapping_add(i)) };
    }
    Some(words)
}

/// The return address at the top of the stack `sp` points to: at a probed function's entry
/// (a kprobe's saved `rsp`), the caller. 0 when it cannot be read or is not kernel text.
#[inline(always)]
pub fn return_address(sp: u64) -> u64 {
    let word = match untrusted_words::<1>(sp) {
        Some([word]) => word,
        // SAFETY: a word of the kernel stack, read through the helper.
        None => unsafe { bpf_probe_read_kernel(sp as *const u64) }.unwrap_or(0),
    };
    if is_kernel_text(word) { word } else { 0 }
}

/// Where, in the words [`trampoline_caller`] reads, an fexit program on a function of one
/// argument finds the trampoline's return address: after the return value and the saved
/// frame pointer.
pub const FEXIT_ONE_ARG_RETURN_SLOT: usize = 2;

/// The caller of the probed kernel function (the return address into the function that took
/// the lock), from a trampoline program.
///
/// On x86-64 the trampoline's frame holds, after the arguments (and the return value, for
/// fexit), the saved frame pointer and the trampoline's return address. When `__fentry__`
/// *calls* the trampoline, that is the return address into the probed function (within 16
/// bytes of `bpf_get_func_ip()`) and the caller comes next; when ftrace *jumps* to it (as
/// the 7.3 guest's kernel does; 6.12's calls), it is the caller itself. `return_slot` says
/// where that word is, for programs whose frame is known ([`FEXIT_ONE_ARG_RETURN_SLOT`]): the
/// two words there are read as plain loads ([`untrusted_words`]), else through the read helper;
/// without it, the word next to the one within 16 bytes of the function is taken (call mode
/// only), through the helper. Without `bpf_get_func_ip` (before
/// Linux 5.15) or when the frame does not look like that, three frames of the stack are
/// walked instead (several times the cost of the whole rest of a lock program): the
/// trampoline, possibly the return address into the probed function, then the caller.
#[inline(always)]
pub fn trampoline_caller<C: EbpfContext>(ctx: &C, here: &Here, return_slot: Option<usize>) -> u64 {
    let func_ip = if global(&raw const FUNC_IP_HELPER) != 0 {
        // SAFETY: the helper reads the trampoline's saved function address.
        unsafe { bpf_get_func_ip(ctx.as_ptr()) }
    } else {
        0
    };
    if func_ip != 0 {
        let into_function = |word: u64| word.wrapping_sub(func_ip) < 16;
        let frame = (ctx.as_ptr() as *const u8).wrapping_add(8);
        match return_slot {
            Some(slot) if slot + 1 < FRAME_WORDS => {
                // The return slot and the word after it: two words rather than the whole
                // frame.
                let at = here.number(ctx.as_ptr() as u64) + 8 + 8 * slot as u64;
                let words = untrusted_words::<2>(at).or_else(|| {
                    let mut words = [0u64; 2];
                    // SAFETY: the trampoline's frame on the kernel stack, read through the
                    // helper.
                    let read = unsafe {
                        bpf_probe_read_kernel_buf(
                            frame.wrapping_add(8 * slot),
                            core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 16),
                        )
                    };
                    read.is_ok().then_some(words)
                });
                if let Some(words) = words {
                    let caller = if into_function(words[0]) {
                        words[1]
                    } else {
                        words[0]
                    };
                    if is_kernel_text(caller) {
                        return caller;
                    }
                }
            }
            _ => {
                let mut words = [0u64; FRAME_WORDS];
                // SAFETY: as above.
                let read = unsafe {
                    bpf_probe_read_kernel_buf(
                        frame,
                        core::slice::from_raw_parts_mut(
                            words.as_mut_ptr().cast::<u8>(),
                            8 * FRAME_WORDS,
                        ),
                    )
                };
                if read.is_ok() {
                    for k in 0..FRAME_WORDS - 1 {
                        if into_function(words[k]) {
                            return words[k + 1];
                        }
                    }
                }
            }
        }
    }
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
    if copied <= 0 {
        return 0;
    }
    // frames[0] is the trampoline.
    for &frame in &frames[1..] {
        if frame != 0 && (func_ip == 0 || frame.wrapping_sub(func_ip) >= 16) {
            return frame;
        }
    }
    0
}
