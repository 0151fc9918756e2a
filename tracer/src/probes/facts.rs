//! Facts about the running kernel that the programs cannot work out themselves, read once at
//! attach time from vmlinux BTF: where `preempt_count` lives, which kfuncs exist, which name
//! the per-CPU allocator has. **Everything that depends on the running kernel is decided here
//! or in `attach`, at attach time.**

use tracer_common::ProbeConfig;

use super::btf::KernelBtf;

/// The per-CPU allocator's entry point: `pcpu_alloc_noprof` from Linux 6.10, `pcpu_alloc`
/// before.
pub const PCPU_ALLOC_NAMES: [&str; 2] = ["pcpu_alloc_noprof", "pcpu_alloc"];

/// Offsets that locate this CPU's `preempt_count` from the current task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreemptCountOffsets {
    /// `offsetof(struct task_struct, se.cfs_rq)`.
    pub task_cfs_rq: u64,
    /// `offsetof(struct cfs_rq, rq)`.
    pub cfs_rq_rq: u64,
    /// Per-CPU offset of `runqueues`.
    pub runqueues: u64,
    /// Per-CPU offset of the preempt count (`__preempt_count`, or `pcpu_hot.preempt_count`
    /// on x86 from 6.2 to 6.14).
    pub preempt_count: u64,
}

impl PreemptCountOffsets {
    /// Reads the offsets from BTF; `None` with the missing piece's name when one is absent
    /// (for example a kernel without `CONFIG_FAIR_GROUP_SCHED` has no `se.cfs_rq`).
    pub fn from_btf(btf: &KernelBtf) -> Result<PreemptCountOffsets, &'static str> {
        const PERCPU: &str = ".data..percpu";
        let task_cfs_rq = btf
            .member_offset("task_struct", &["se", "cfs_rq"])
            .ok_or("task_struct.se.cfs_rq")?;
        let cfs_rq_rq = btf.member_offset("cfs_rq", &["rq"]).ok_or("cfs_rq.rq")?;
        let runqueues = btf
            .var_offset(PERCPU, "runqueues")
            .ok_or("per-CPU runqueues")?;
        let preempt_count = btf
            .var_offset(PERCPU, "__preempt_count")
            .or_else(|| {
                Some(
                    btf.var_offset(PERCPU, "pcpu_hot")?
                        + btf.member_offset("pcpu_hot", &["preempt_count"])?,
                )
            })
            .ok_or("per-CPU __preempt_count")?;
        Ok(PreemptCountOffsets {
            task_cfs_rq,
            cfs_rq_rq,
            runqueues,
            preempt_count,
        })
    }
}

/// What the running kernel offers, as far as BTF tells.
#[derive(Clone, Debug)]
pub struct KernelFacts {
    /// Preempt-count offsets, or the name of what is missing.
    pub preempt_count: Result<PreemptCountOffsets, &'static str>,
    /// `bpf_local_irq_save` and `_restore` exist (irq state readable).
    pub irq_kfunc: bool,
    /// `bpf_get_kmem_cache` exists and `struct kmem_cache` has `name` (slab caches name
    /// dynamic locks).
    pub kmem_cache_kfunc: bool,
    /// Offset of `name` in `struct kmem_cache`.
    pub kmem_cache_name_offset: u64,
    /// The per-CPU allocator's name in this kernel, if either exists.
    pub pcpu_alloc: Option<&'static str>,
}

impl KernelFacts {
    /// Reads the facts from BTF.
    pub fn from_btf(btf: &KernelBtf) -> KernelFacts {
        KernelFacts {
            preempt_count: PreemptCountOffsets::from_btf(btf),
            irq_kfunc: btf.has_func("bpf_local_irq_save") && btf.has_func("bpf_local_irq_restore"),
            kmem_cache_kfunc: btf.has_func("bpf_get_kmem_cache")
                && btf.member_offset("kmem_cache", &["name"]).is_some(),
            kmem_cache_name_offset: btf.member_offset("kmem_cache", &["name"]).unwrap_or(0),
            pcpu_alloc: PCPU_ALLOC_NAMES.into_iter().find(|name| btf.has_func(name)),
        }
    }

    /// The configuration the programs read, when locktrace runs as process `self_pid`.
    pub fn probe_config(&self, self_pid: u32) -> ProbeConfig {
        let mut cfg = ProbeConfig {
            irq_kfunc_valid: self.irq_kfunc.into(),
            kmem_cache_kfunc_valid: self.kmem_cache_kfunc.into(),
            kmem_cache_name_offset: self.kmem_cache_name_offset,
            self_pid,
            ..ProbeConfig::default()
        };
        if let Ok(off) = self.preempt_count {
            cfg.task_cfs_rq_offset = off.task_cfs_rq;
            cfg.cfs_rq_rq_offset = off.cfs_rq_rq;
            cfg.runqueues_percpu_offset = off.runqueues;
            cfg.preempt_count_percpu_offset = off.preempt_count;
            cfg.preempt_count_valid = 1;
        }
        cfg
    }
}
