//! `locktrace check`: what the running kernel allows, probe by probe, and what locktrace can
//! therefore detect here. It attaches every probe for a moment (uprobes to this process only)
//! and detaches them again.

use serde::Serialize;

use super::{ProbeOptions, Probes, UserTarget, btf::KernelBtf, effective_uid, facts::KernelFacts};
use crate::{report::printable, symbols::KernelSymbols, tracefile::ProbeStatus};

/// One yes/no fact with an explanation.
#[derive(Clone, Debug, Serialize)]
pub struct Feature {
    /// Stable name (`btf`, `trampolines`, `kfunc:bpf_local_irq_save` ...).
    pub name: String,
    /// Whether it is available.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

fn feature(name: &str, ok: bool, detail: impl Into<String>) -> Feature {
    Feature {
        name: name.to_string(),
        ok,
        detail: detail.into(),
    }
}

/// The whole answer.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// `uname -r`.
    pub kernel_release: String,
    /// Kernel features.
    pub features: Vec<Feature>,
    /// Every probe and whether it attached.
    pub probes: Vec<ProbeStatus>,
    /// The same probes counted by attach type: what the table shows unless `--verbose`.
    pub probe_groups: Vec<ProbeGroup>,
    /// What locktrace can detect on this kernel.
    pub detects: Vec<Feature>,
}

/// The probes of one attach type, counted: `check`'s default view of them (a hundred lines of
/// one probe each are for `--verbose`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeGroup {
    /// The attach type (`fexit`, `fentry`, `tp_btf`, `uprobe` ...).
    pub kind: String,
    /// How many attached.
    pub attached: usize,
    /// How many this kernel needs (a fallback is not needed when its first choice attached).
    pub needed: usize,
    /// Why the others did not attach (the first line of each reason), most frequent first,
    /// with how many probes gave it.
    pub refusals: Vec<(String, usize)>,
}

/// `probes` counted by attach type, in the order the types first appear.
pub fn probe_groups(probes: &[ProbeStatus]) -> Vec<ProbeGroup> {
    let mut groups: Vec<ProbeGroup> = Vec::new();
    for probe in probes.iter().filter(|p| !is_unneeded(p)) {
        let index = match groups.iter().position(|g| g.kind == probe.kind) {
            Some(index) => index,
            None => {
                groups.push(ProbeGroup {
                    kind: probe.kind.clone(),
                    attached: 0,
                    needed: 0,
                    refusals: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        group.needed += 1;
        if probe.attached {
            group.attached += 1;
            continue;
        }
        let reason = probe.detail.lines().next().unwrap_or("").to_string();
        match group.refusals.iter_mut().find(|(seen, _)| *seen == reason) {
            Some((_, count)) => *count += 1,
            None => group.refusals.push((reason, 1)),
        }
    }
    for group in &mut groups {
        group
            .refusals
            .sort_by_key(|&(_, count)| std::cmp::Reverse(count));
    }
    groups
}

/// A fallback probe left out because its first choice attached.
fn is_unneeded(probe: &ProbeStatus) -> bool {
    !probe.attached && probe.detail.starts_with("not needed")
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn attached(probes: &[ProbeStatus], prefix: &str) -> (usize, usize) {
    let matching: Vec<&ProbeStatus> = probes
        .iter()
        .filter(|p| p.name.starts_with(prefix) && !is_unneeded(p))
        .collect();
    (
        matching.iter().filter(|p| p.attached).count(),
        matching.len(),
    )
}

/// Probes the running kernel.
pub fn run() -> CheckReport {
    let mut features = Vec::new();
    let uid = effective_uid();
    features.push(feature(
        "privileges",
        uid == 0,
        if uid == 0 {
            "root".to_string()
        } else {
            format!("uid {uid}: loading BPF programs needs root")
        },
    ));
    let btf = KernelBtf::from_sys_fs();
    features.push(match &btf {
        Ok(_) => feature("btf", true, "/sys/kernel/btf/vmlinux"),
        Err(e) => feature("btf", false, e.to_string()),
    });
    let kallsyms_text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let facts = btf
        .as_ref()
        .ok()
        .map(|btf| KernelFacts::from_btf(btf, |name| KernelSymbols::lists(&kallsyms_text, name)));
    let kallsyms = KernelSymbols::parse(&kallsyms_text);
    let data = kallsyms.has_data_symbols();
    features.push(feature(
        "kallsyms_data",
        data,
        if data {
            "static locks are named from /proc/kallsyms"
        } else if kallsyms.is_empty() {
            "/proc/kallsyms unreadable or hidden"
        } else {
            "text symbols only (CONFIG_KALLSYMS_ALL=n): pass --symbols System.map to name static locks"
        },
    ));
    if let Some(facts) = &facts {
        features.push(feature(
            "kfunc:bpf_local_irq_save",
            facts.irq_kfunc,
            if facts.irq_kfunc {
                "hardware-interrupt state is read at every probe"
            } else {
                "absent (Linux 6.14+): irq state is reported as unknown"
            },
        ));
        features.push(feature(
            "kfunc:bpf_get_kmem_cache",
            facts.kmem_cache_kfunc,
            if facts.kmem_cache_kfunc {
                "dynamic locks are classed by slab cache"
            } else {
                "absent (Linux 6.13+): dynamic locks are classed by address"
            },
        ));
        features.push(feature(
            "kfunc:bpf_rdonly_cast",
            facts.frame_btf_id != 0,
            if facts.frame_btf_id != 0 {
                "acquiring functions are read from the trampoline's frame with plain loads"
            } else {
                "absent (Linux 6.2+): acquiring functions are read through a helper call"
            },
        ));
        features.push(match &facts.preempt_count {
            Ok(count) => feature("preempt_count", true, count.describe()),
            Err(missing) => feature(
                "preempt_count",
                false,
                format!("BTF lacks {missing}: context comes from irq tracepoints only"),
            ),
        });
        features.push(feature(
            "pcpu_alloc",
            facts.pcpu_alloc.is_some(),
            facts
                .pcpu_alloc
                .unwrap_or("neither pcpu_alloc_noprof nor pcpu_alloc in BTF"),
        ));
    }

    let mut probes = Vec::new();
    if uid == 0 && btf.is_ok() {
        let options = ProbeOptions {
            kernel: true,
            user: Some(UserTarget::ProbeOnly),
            empty_user_programs: false,
            floor: false,
        };
        match Probes::load(&options) {
            Ok((loaded, _maps)) => probes = loaded.statuses().to_vec(),
            Err(e) => features.push(feature("load", false, e.to_string())),
        }
    }
    let (fexit_ok, fexit_all) = attached(&probes, "fexit:");
    let (fentry_ok, fentry_all) = attached(&probes, "fentry:");
    let (tp_ok, tp_all) = attached(&probes, "tp:");
    let (up_ok, up_all) = {
        let (a, b) = attached(&probes, "uprobe:");
        let (c, d) = attached(&probes, "uretprobe:");
        (a + c, b + d)
    };
    let trampolines = fexit_ok + fentry_ok > 0;
    let refusal = probes
        .iter()
        .find(|p| p.kind.starts_with("f") && !p.attached && !p.detail.is_empty())
        .map(|p| p.detail.clone())
        .unwrap_or_default();
    features.push(feature(
        "trampolines",
        trampolines,
        format!(
            "{}/{} fentry/fexit probes attached{}",
            fexit_ok + fentry_ok,
            fexit_all + fentry_all,
            if refusal.is_empty() {
                String::new()
            } else {
                format!("; {refusal}")
            }
        ),
    ));
    features.push(feature(
        "tracepoints",
        tp_ok > 0,
        format!("{tp_ok}/{tp_all} tracepoint probes attached"),
    ));
    features.push(feature(
        "uprobes",
        up_ok > 0,
        format!("{up_ok}/{up_all} pthread uprobes attached (firing for no process, for the check)"),
    ));

    let irq = facts.as_ref().is_some_and(|f| f.irq_kfunc);
    let context = facts.as_ref().is_some_and(|f| f.preempt_count.is_ok());
    let alloc = probes
        .iter()
        .any(|p| p.attached && (p.name.contains("pcpu_alloc") || p.name.contains("percpu_alloc")));
    let detects = vec![
        feature(
            "kernel lock ordering",
            fexit_ok > 0,
            if fexit_ok > 0 {
                "circular dependencies, recursive locking, irq lock inversions and inconsistent lock state between kernel locks"
            } else {
                "needs fentry/fexit on the lock functions, which this kernel refuses"
            },
        ),
        feature(
            "irq-state checks",
            irq && alloc,
            if irq && alloc {
                "vfree() and non-atomic per-CPU allocations with IRQs disabled"
            } else if !irq {
                "needs the bpf_local_irq_save kfunc (Linux 6.14+)"
            } else {
                "needs the allocator probes"
            },
        ),
        feature(
            "context checks",
            context && alloc,
            if context && alloc {
                "vfree() in interrupt context, non-atomic per-CPU allocations from softirq/hardirq"
            } else {
                "needs preempt_count offsets in BTF and the allocator probes"
            },
        ),
        feature(
            "user-space lock ordering",
            up_ok > 0,
            if up_ok > 0 {
                "circular dependencies and recursive locking between pthread mutexes and rwlocks"
            } else {
                "needs uprobes"
            },
        ),
        feature(
            "static kernel lock names",
            data,
            if data {
                "from kallsyms"
            } else {
                "only with --symbols System.map"
            },
        ),
    ];
    CheckReport {
        kernel_release: kernel_release(),
        features,
        probe_groups: probe_groups(&probes),
        probes,
        detects,
    }
}

impl CheckReport {
    /// A human table: features, probes counted by attach type (one probe a line when
    /// `verbose`), and what locktrace can detect here.
    pub fn render_table(&self, verbose: bool) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mark = |ok: bool| if ok { "yes" } else { "no " };
        let _ = writeln!(out, "kernel {}", printable(&self.kernel_release));
        let _ = writeln!(out, "\nFEATURE                    OK   DETAIL");
        for f in &self.features {
            let _ = writeln!(
                out,
                "{:<26} {}  {}",
                f.name,
                mark(f.ok),
                printable(&f.detail)
            );
        }
        if verbose {
            let _ = writeln!(
                out,
                "\nPROBE                                    OK   DETAIL"
            );
            for p in &self.probes {
                let _ = writeln!(
                    out,
                    "{:<40} {}  {}",
                    p.name,
                    mark(p.attached),
                    printable(&p.detail)
                );
            }
        } else {
            let _ = writeln!(out, "\nPROBES                     ATTACHED  WHY NOT");
            for g in &self.probe_groups {
                let why = match g.refusals.as_slice() {
                    [] => String::new(),
                    [(reason, count), rest @ ..] => format!(
                        "{count}: {}{}",
                        printable(reason),
                        if rest.is_empty() {
                            String::new()
                        } else {
                            format!(" (and {} other reasons)", rest.len())
                        }
                    ),
                };
                let counts = format!("{}/{}", g.attached, g.needed);
                let _ = writeln!(out, "{:<26} {counts:<9} {why}", g.kind);
            }
            let _ = writeln!(out, "(one line per probe: locktrace check --verbose)");
        }
        let _ = writeln!(out, "\nDETECTS                    OK   HOW");
        for f in &self.detects {
            let _ = writeln!(out, "{:<26} {}  {}", f.name, mark(f.ok), f.detail);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(name: &str, kind: &str, attached: bool, detail: &str) -> ProbeStatus {
        ProbeStatus {
            name: name.to_string(),
            kind: kind.to_string(),
            attached,
            detail: detail.to_string(),
        }
    }

    fn report() -> CheckReport {
        let mut probes = vec![
            probe("fexit:_raw_spin_lock", "fexit", true, ""),
            probe(
                "fexit:_raw_spin_lock_irq",
                "fexit",
                false,
                "refused: EINVAL\nverifier log",
            ),
            probe("fexit:_raw_read_lock", "fexit", false, "not in BTF"),
            probe("fentry:pcpu_alloc", "fentry", true, ""),
            probe(
                "tp:percpu_alloc_percpu",
                "tp_btf",
                false,
                "not needed: fentry attached",
            ),
            probe("tp:sched_switch", "tp_btf", true, ""),
        ];
        probes.extend((0..40).map(|i| probe(&format!("fentry:unlock_{i}"), "fentry", true, "")));
        probes.push(probe(
            "fexit:_raw_write_lock",
            "fexit",
            false,
            "refused: EINVAL",
        ));
        CheckReport {
            kernel_release: "6.12.0".to_string(),
            features: Vec::new(),
            probe_groups: probe_groups(&probes),
            probes,
            detects: Vec::new(),
        }
    }

    #[test]
    fn probes_are_counted_by_attach_type_with_the_commonest_refusal_first() {
        let groups = report().probe_groups;
        let kinds: Vec<&str> = groups.iter().map(|g| g.kind.as_str()).collect();
        assert_eq!(kinds, ["fexit", "fentry", "tp_btf"]);
        assert_eq!((groups[0].attached, groups[0].needed), (1, 4));
        assert_eq!(
            groups[0].refusals,
            [
                ("refused: EINVAL".to_string(), 2),
                ("not in BTF".to_string(), 1)
            ]
        );
        assert_eq!((groups[1].attached, groups[1].needed), (41, 41));
        // The fallback whose first choice attached is not counted as needed.
        assert_eq!((groups[2].attached, groups[2].needed), (1, 1));
    }

    #[test]
    fn the_table_has_a_line_per_attach_type_and_every_probe_only_when_verbose() {
        let report = report();
        let short = report.render_table(false);
        assert!(
            short.contains(
                "fexit                      1/4       2: refused: EINVAL (and 1 other reasons)"
            ),
            "{short}"
        );
        assert!(!short.contains("unlock_7"), "{short}");
        assert!(short.lines().count() < 20, "{short}");
        let long = report.render_table(true);
        for p in &report.probes {
            assert!(long.contains(&p.name), "{} in {long}", p.name);
        }
    }
}
