//! Facts about the running kernel that the programs cannot work out themselves, read once at
//! attach time from vmlinux BTF: where `preempt_count` lives, which kfuncs exist, which name
//! the per-CPU allocator has. **Everything that depends on the running kernel is decided here
//! or in `attach`, at attach time.**

use tracer_common::{PreemptCountSource, PreemptLayout, ProbeConfig};

use super::{btf::KernelBtf, catalog::PCPU_ALLOC_NAMES};

const PERCPU: &str = ".data..percpu";

/// How the programs reach this CPU's `preempt_count`, and how to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreemptCount {
    /// Where it is.
    pub access: PreemptCountAccess,
    /// Where its hardirq and NMI counts are.
    pub layout: PreemptLayout,
}

/// Where this CPU's `preempt_count` is found from a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreemptCountAccess {
    /// `bpf_this_cpu_ptr()` on a per-CPU variable that kallsyms lists (Debian's kernels, with
    /// `CONFIG_KALLSYMS_ALL`): exact for every task.
    ThisCpuPtr {
        /// `__preempt_count`, or `pcpu_hot` on x86 from 6.2 to 6.14.
        var: &'static str,
        /// The variable's BTF id.
        btf_id: u32,
        /// The count's offset inside the variable.
        offset: u64,
        /// The variable's offset in the per-CPU area (its address on a CPU minus this is the
        /// CPU's per-CPU base).
        var_offset: u64,
    },
    /// Through the current task's run queue (kernels whose kallsyms has no data symbols).
    Runqueue(RunqueueOffsets),
}

/// Offsets that locate this CPU's `preempt_count` from the current task's run queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunqueueOffsets {
    /// `offsetof(struct task_struct, se.cfs_rq)`.
    pub task_cfs_rq: u64,
    /// `offsetof(struct cfs_rq, rq)`.
    pub cfs_rq_rq: u64,
    /// `offsetof(struct rq, cpu)`.
    pub rq_cpu: u64,
    /// Per-CPU offset of `runqueues`.
    pub runqueues: u64,
    /// Per-CPU offset of the preempt count.
    pub preempt_count: u64,
}

impl PreemptCount {
    /// Reads where the count is from BTF, preferring a typed ksym when `in_kallsyms` says
    /// the variable can be resolved; `Err` names the missing piece (for example a kernel
    /// without `CONFIG_FAIR_GROUP_SCHED` has no `se.cfs_rq`).
    pub fn from_btf(
        btf: &KernelBtf,
        in_kallsyms: impl Fn(&str) -> bool,
    ) -> Result<PreemptCount, &'static str> {
        // (variable, its count's offset inside it)
        let (var, var_entry, offset) = match btf.section_var(PERCPU, "__preempt_count") {
            Some(entry) => ("__preempt_count", entry, 0),
            None => {
                let entry = btf.section_var(PERCPU, "pcpu_hot");
                let member = btf.member_offset("pcpu_hot", &["preempt_count"]);
                match (entry, member) {
                    (Some(entry), Some(member)) => ("pcpu_hot", entry, member),
                    _ => return Err("per-CPU __preempt_count"),
                }
            }
        };
        let layout = Self::layout(btf, var_entry.size);
        if in_kallsyms(var) {
            return Ok(PreemptCount {
                access: PreemptCountAccess::ThisCpuPtr {
                    var,
                    btf_id: var_entry.btf_id,
                    offset,
                    var_offset: var_entry.offset,
                },
                layout,
            });
        }
        let runqueue = RunqueueOffsets {
            task_cfs_rq: btf
                .member_offset("task_struct", &["se", "cfs_rq"])
                .ok_or("task_struct.se.cfs_rq")?,
            cfs_rq_rq: btf.member_offset("cfs_rq", &["rq"]).ok_or("cfs_rq.rq")?,
            rq_cpu: btf.member_offset("rq", &["cpu"]).ok_or("rq.cpu")?,
            runqueues: btf
                .var_offset(PERCPU, "runqueues")
                .ok_or("per-CPU runqueues")?,
            preempt_count: var_entry.offset + offset,
        };
        Ok(PreemptCount {
            access: PreemptCountAccess::Runqueue(runqueue),
            layout,
        })
    }

    /// Linux 7.0 added an 8-bit hardirq-disable count below the hardirq count, with the
    /// per-CPU `local_interrupt_disable_state` beside it; where the need-resched bit has a
    /// word of its own (`__preempt_count` is 8 bytes) the NMI count takes the top nibble.
    fn layout(btf: &KernelBtf, count_size: u64) -> PreemptLayout {
        if btf
            .section_var(PERCPU, "local_interrupt_disable_state")
            .is_none()
        {
            PreemptLayout::CLASSIC
        } else if count_size == 8 {
            PreemptLayout::HARDIRQ_DISABLE
        } else {
            PreemptLayout::HARDIRQ_DISABLE_FOLDED_RESCHED
        }
    }

    /// How `check` describes it.
    pub fn describe(&self) -> String {
        let access = match self.access {
            PreemptCountAccess::ThisCpuPtr { var, .. } => format!("bpf_this_cpu_ptr(&{var})"),
            PreemptCountAccess::Runqueue(_) => {
                "the current task's run queue (no per-CPU data symbols in kallsyms; \
                 unknown for tasks queued on another CPU)"
                    .to_string()
            }
        };
        let layout = if self.layout == PreemptLayout::CLASSIC {
            "classic layout"
        } else {
            "hardirq-disable layout (Linux 7.0+)"
        };
        format!("execution context read from preempt_count through {access}, {layout}")
    }
}

/// What the running kernel offers, as far as BTF tells.
#[derive(Clone, Debug)]
pub struct KernelFacts {
    /// Where `preempt_count` is, or the name of what is missing.
    pub preempt_count: Result<PreemptCount, &'static str>,
    /// `bpf_local_irq_save` and `_restore` exist (irq state readable).
    pub irq_kfunc: bool,
    /// `bpf_get_kmem_cache` exists and `struct kmem_cache` has `name` (slab caches name
    /// dynamic locks).
    pub kmem_cache_kfunc: bool,
    /// Offset of `name` in `struct kmem_cache`.
    pub kmem_cache_name_offset: u64,
    /// Offsets of `size` and `oo` in `struct kmem_cache` (SLUB), when BTF has both: they
    /// locate a lock inside its object.
    pub kmem_cache_geometry: Option<(u64, u64)>,
    /// The per-CPU allocator's name in this kernel, if either exists.
    pub pcpu_alloc: Option<&'static str>,
    /// Size of the static per-CPU area (`.data..percpu`), 0 when BTF does not say.
    pub percpu_size: u64,
    /// Offset of `pid` in `struct task_struct` (for `sched_switch`), 0 when unknown.
    pub task_pid_offset: u64,
    /// Offset of `tgid` in `struct task_struct` (for `sched_switch`), 0 when unknown.
    pub task_tgid_offset: u32,
    /// Offset of the run-queue lock in the per-CPU area (`runqueues` plus `rq.__lock`, or
    /// `rq.lock` before Linux 5.14), 0 when unknown.
    pub rq_lock_percpu_offset: u64,
    /// `bpf_get_func_ip` exists for trampoline programs (Linux 5.15+).
    pub func_ip_helper: bool,
    /// The BTF id of `struct pt_regs` when the `bpf_rdonly_cast` kfunc exists (Linux 6.2+):
    /// the programs then read the acquiring function from a trampoline's frame with plain
    /// loads rather than a helper call. 0 otherwise.
    pub frame_btf_id: u32,
}

impl KernelFacts {
    /// Reads the facts from BTF; `in_kallsyms` tells whether kallsyms lists a symbol (a
    /// typed ksym can only be loaded then).
    pub fn from_btf(btf: &KernelBtf, in_kallsyms: impl Fn(&str) -> bool) -> KernelFacts {
        KernelFacts {
            preempt_count: PreemptCount::from_btf(btf, in_kallsyms),
            irq_kfunc: btf.has_func("bpf_local_irq_save") && btf.has_func("bpf_local_irq_restore"),
            kmem_cache_kfunc: btf.has_func("bpf_get_kmem_cache")
                && btf.member_offset("kmem_cache", &["name"]).is_some(),
            frame_btf_id: btf
                .struct_id("pt_regs")
                .filter(|_| btf.has_func("bpf_rdonly_cast"))
                .unwrap_or(0),
            kmem_cache_name_offset: btf.member_offset("kmem_cache", &["name"]).unwrap_or(0),
            kmem_cache_geometry: btf
                .member_offset("kmem_cache", &["size"])
                .zip(btf.member_offset("kmem_cache", &["oo"])),
            pcpu_alloc: PCPU_ALLOC_NAMES.into_iter().find(|name| btf.has_func(name)),
            percpu_size: btf.section_size(PERCPU).unwrap_or(0),
            task_pid_offset: btf.member_offset("task_struct", &["pid"]).unwrap_or(0),
            task_tgid_offset: btf
                .member_offset("task_struct", &["tgid"])
                .and_then(|offset| u32::try_from(offset).ok())
                .unwrap_or(0),
            rq_lock_percpu_offset: btf
                .var_offset(PERCPU, "runqueues")
                .zip(
                    btf.member_offset("rq", &["__lock"])
                        .or_else(|| btf.member_offset("rq", &["lock"])),
                )
                .map_or(0, |(rq, lock)| rq + lock),
            // The helper's kernel-side implementation for tracing programs came with it.
            func_ip_helper: btf.has_func("bpf_get_func_ip_tracing") || kernel_at_least(5, 15),
        }
    }

    /// The static per-CPU variables, to name locks in them.
    pub fn percpu_vars(btf: &KernelBtf) -> Vec<(u64, u64, String)> {
        btf.section_vars(PERCPU)
    }

    /// The BTF id of the per-CPU variable the programs load as a typed ksym, if they do.
    pub fn preempt_count_ksym(&self) -> Option<u32> {
        match self.preempt_count {
            Ok(PreemptCount {
                access: PreemptCountAccess::ThisCpuPtr { btf_id, .. },
                ..
            }) => Some(btf_id),
            _ => None,
        }
    }

    /// The offset of the count in the per-CPU variable the programs load as a typed ksym (0
    /// when they do not): a read-only global of the object, so that the verifier sees it as a
    /// constant and lets the programs load the count directly.
    pub fn preempt_count_ksym_offset(&self) -> u64 {
        match self.preempt_count {
            Ok(PreemptCount {
                access: PreemptCountAccess::ThisCpuPtr { offset, .. },
                ..
            }) => offset,
            _ => 0,
        }
    }

    /// How the programs read `preempt_count`: their read-only global `PREEMPT_COUNT_SOURCE`,
    /// a constant to the verifier, which then walks only that way of reading it.
    pub fn preempt_count_source(&self) -> PreemptCountSource {
        match self.preempt_count {
            Ok(PreemptCount {
                access: PreemptCountAccess::ThisCpuPtr { .. },
                ..
            }) => PreemptCountSource::ThisCpuPtr,
            Ok(PreemptCount {
                access: PreemptCountAccess::Runqueue(_),
                ..
            }) => PreemptCountSource::Runqueue,
            Err(_) => PreemptCountSource::None,
        }
    }

    /// The configuration the programs read, when locktrace runs as process `self_pid`
    /// (with tracing off: [`crate::probes::Probes::start_tracing`] turns it on).
    pub fn probe_config(&self, self_pid: u32) -> ProbeConfig {
        let mut cfg = ProbeConfig {
            percpu_size: self.percpu_size,
            task_pid_offset: self.task_pid_offset,
            task_tgid_offset: self.task_tgid_offset,
            rq_lock_percpu_offset: self.rq_lock_percpu_offset,
            kmem_cache_name_offset: self.kmem_cache_name_offset,
            kmem_cache_size_offset: self.kmem_cache_geometry.map_or(0, |(size, _)| size),
            kmem_cache_oo_offset: self.kmem_cache_geometry.map_or(0, |(_, oo)| oo),
            self_pid,
            ..ProbeConfig::default()
        };
        if let Ok(count) = self.preempt_count {
            cfg.preempt_layout = count.layout;
            match count.access {
                PreemptCountAccess::ThisCpuPtr {
                    offset, var_offset, ..
                } => {
                    cfg.preempt_count_offset = offset;
                    cfg.this_cpu_var_percpu_offset = var_offset;
                }
                PreemptCountAccess::Runqueue(off) => {
                    cfg.preempt_count_offset = off.preempt_count;
                    cfg.task_cfs_rq_offset = off.task_cfs_rq;
                    cfg.cfs_rq_rq_offset = off.cfs_rq_rq;
                    cfg.rq_cpu_offset = off.rq_cpu;
                    cfg.runqueues_percpu_offset = off.runqueues;
                }
            }
        }
        cfg
    }
}

/// True when the running kernel's release is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}
