//! `locktrace check`: what the running kernel allows, probe by probe, and what locktrace can
//! therefore detect here. It attaches every probe for a moment (uprobes to this process only)
//! and detaches them again.

use serde::Serialize;

use super::{
    AttachKind, Attachment, ProbeOptions, Probes, UserTarget, btf::KernelBtf, catalog,
    effective_uid, facts::KernelFacts, kfunc,
};
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
pub fn probe_groups(probes: &[Attachment]) -> Vec<ProbeGroup> {
    let mut groups: Vec<ProbeGroup> = Vec::new();
    for probe in probes.iter().filter(|p| p.is_needed()) {
        let kind = probe.kind.name();
        let index = match groups.iter().position(|g| g.kind == kind) {
            Some(index) => index,
            None => {
                groups.push(ProbeGroup {
                    kind: kind.to_string(),
                    attached: 0,
                    needed: 0,
                    refusals: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        group.needed += 1;
        let Some(refusal) = probe.refusal() else {
            group.attached += 1;
            continue;
        };
        let reason = refusal.lines().next().unwrap_or("").to_string();
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

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Probes the running kernel.
pub fn run() -> CheckReport {
    let uid = effective_uid();
    let btf = KernelBtf::from_sys_fs();
    let kallsyms_text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let kallsyms = KernelSymbols::parse(&kallsyms_text);
    let facts = btf
        .as_ref()
        .ok()
        .map(|btf| KernelFacts::from_btf(btf, |name| KernelSymbols::lists(&kallsyms_text, name)));

    let mut features = vec![
        architecture(),
        privileges(uid),
        match &btf {
            Ok(_) => feature("btf", true, "/sys/kernel/btf/vmlinux"),
            Err(e) => feature("btf", false, e.to_string()),
        },
        kallsyms_data(&kallsyms),
    ];
    if let Some(facts) = &facts {
        features.extend(kernel_features(facts));
    }
    let mut probes = Vec::new();
    if uid == 0 && btf.is_ok() {
        match attach_everything() {
            Ok(attached) => probes = attached,
            Err(e) => features.push(feature("load", false, e.to_string())),
        }
    }
    let counts = AttachCounts::of(&probes);
    features.extend(counts.features(&probes));
    let irqs = IrqStateSource::of(facts.as_ref(), &probes);
    features.push(irqs.feature());
    let detects = detects(
        facts.as_ref(),
        &counts,
        probes
            .iter()
            .any(|p| p.is_attached() && catalog::is_acquisition(p.program)),
        &families_off(&probes),
        irqs,
        traces_pcpu_alloc(&probes),
        kallsyms.has_data_symbols(),
    );
    CheckReport {
        kernel_release: kernel_release(),
        features,
        probe_groups: probe_groups(&probes),
        probes: probes.iter().map(Attachment::status).collect(),
        detects,
    }
}

/// The machine's architecture: the programs and the facts user space gives them assume
/// x86-64 (see README, "Known limits").
fn architecture() -> Feature {
    let arch = std::env::consts::ARCH;
    const ASSUMED: &str =
        "the trampoline frame layout, pt_regs, X86_EFLAGS_IF and 4 KiB pages are assumed";
    if arch == "x86_64" {
        feature("architecture", true, format!("x86_64: {ASSUMED}"))
    } else {
        feature(
            "architecture",
            false,
            format!(
                "{arch}: locktrace is written for x86_64 ({ASSUMED}); results here are not to be trusted"
            ),
        )
    }
}

fn privileges(uid: u32) -> Feature {
    if uid == 0 {
        feature("privileges", true, "root")
    } else {
        feature(
            "privileges",
            false,
            format!("uid {uid}: loading BPF programs needs root"),
        )
    }
}

fn kallsyms_data(kallsyms: &KernelSymbols) -> Feature {
    let data = kallsyms.has_data_symbols();
    feature(
        "kallsyms_data",
        data,
        if data {
            "static locks are named from /proc/kallsyms"
        } else if kallsyms.is_empty() {
            "/proc/kallsyms unreadable or hidden"
        } else {
            "text symbols only (CONFIG_KALLSYMS_ALL=n): pass --symbols System.map to name static locks"
        },
    )
}

/// What the kernel's BTF says the programs can use: kfuncs, `preempt_count`, `pcpu_alloc`.
fn kernel_features(facts: &KernelFacts) -> Vec<Feature> {
    vec![
        kfunc_feature(
            "bpf_local_irq_save",
            facts.irq_kfunc,
            "hardware-interrupt state is read at every probe (known after _irq/_irqsave locks)",
            "irq state is unknown, except after _irq/_irqsave locks (disabled)",
        ),
        kfunc_feature(
            "bpf_get_kmem_cache",
            facts.kmem_cache_kfunc,
            "dynamic locks are classed by slab cache",
            "dynamic locks are classed by acquiring function",
        ),
        kfunc_feature(
            "bpf_rdonly_cast",
            facts.frame_btf_id != 0,
            "acquiring functions are read from the trampoline's frame with plain loads",
            "acquiring functions are read through a helper call",
        ),
        match &facts.preempt_count {
            Ok(count) => feature("preempt_count", true, count.describe()),
            Err(missing) => feature(
                "preempt_count",
                false,
                format!("BTF lacks {missing}: context comes from irq tracepoints only"),
            ),
        },
        feature(
            "pcpu_alloc",
            facts.pcpu_alloc.is_some(),
            facts
                .pcpu_alloc
                .unwrap_or("neither pcpu_alloc_noprof nor pcpu_alloc in BTF"),
        ),
    ]
}

/// Whether kfunc `name` is there: what the programs do with it, or without it, and from which
/// Linux version on it exists (the patcher's table, [`kfunc::KFUNCS`]).
fn kfunc_feature(name: &str, present: bool, with: &str, without: &str) -> Feature {
    let detail = if present {
        with.to_string()
    } else {
        match kfunc::KFUNCS.iter().find(|kfunc| kfunc.name == name) {
            Some(kfunc) => format!("absent (Linux {}+): {without}", kfunc.since),
            None => format!("absent: {without}"),
        }
    };
    feature(&format!("kfunc:{name}"), present, detail)
}

/// Attaches every probe for a moment (uprobes firing for this process only) and says what
/// became of each; they are detached when the returned `Probes` is dropped here.
fn attach_everything() -> Result<Vec<Attachment>, super::ProbeError> {
    let options = ProbeOptions {
        kernel: true,
        user: Some(UserTarget::ProbeOnly),
        empty_user_programs: false,
        floor: false,
        attach: super::AttachMode::Auto,
    };
    let (probes, _maps) = Probes::load(&options)?;
    Ok(probes.attachments().to_vec())
}

/// True when a probe on `pcpu_alloc` (the trampoline or its tracepoint) attached: the
/// allocator checks need it.
fn traces_pcpu_alloc(probes: &[Attachment]) -> bool {
    let programs: Vec<&str> = catalog::ALLOCATOR
        .iter()
        .filter(|seed| seed.trampoline.targets.contains(&"pcpu_alloc"))
        .flat_map(|seed| seed.in_order(true).map(|probe| probe.program))
        .collect();
    probes
        .iter()
        .any(|p| p.is_attached() && programs.contains(&p.program))
}

/// Where the programs learn the hardware-interrupt state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IrqStateSource {
    /// The `bpf_local_irq_save` kfunc, at every probe.
    Kfunc,
    /// The flags register kprobes save: at the acquisitions that need it (`locks`) and at the
    /// seed's functions (`allocator`).
    Kprobes { locks: bool, allocator: bool },
    /// Nowhere: known only after `_irq`/`_irqsave` locks (disabled).
    Unknown,
}

impl IrqStateSource {
    fn of(facts: Option<&KernelFacts>, probes: &[Attachment]) -> IrqStateSource {
        if facts.is_some_and(|f| f.irq_kfunc) {
            return IrqStateSource::Kfunc;
        }
        let attached = |programs: &mut dyn Iterator<Item = &str>| {
            let programs: Vec<&str> = programs.collect();
            probes
                .iter()
                .any(|p| p.is_attached() && programs.contains(&p.program))
        };
        let locks = attached(&mut catalog::ACQUIRE_AT_ENTRY.iter().map(|p| p.program));
        let allocator = attached(&mut catalog::ALLOCATOR.iter().map(|seed| seed.kprobe.program));
        if locks || allocator {
            IrqStateSource::Kprobes { locks, allocator }
        } else {
            IrqStateSource::Unknown
        }
    }

    /// True when acquisitions that leave the state as it was see it: irq lock inversions
    /// and inconsistent lock state can be found.
    fn at_acquisitions(self) -> bool {
        matches!(
            self,
            IrqStateSource::Kfunc | IrqStateSource::Kprobes { locks: true, .. }
        )
    }

    /// True when the seed's functions see it: `vfree()` and non-atomic per-CPU allocations
    /// with IRQs disabled can be found.
    fn at_allocator(self) -> bool {
        matches!(
            self,
            IrqStateSource::Kfunc
                | IrqStateSource::Kprobes {
                    allocator: true,
                    ..
                }
        )
    }

    fn feature(self) -> Feature {
        let detail = match self {
            IrqStateSource::Kfunc => {
                "read through the bpf_local_irq_save kfunc at every probe".to_string()
            }
            IrqStateSource::Kprobes { locks, allocator } => {
                let mut points = Vec::new();
                if locks {
                    points.push("acquisitions by _raw_{spin,read,write}_lock{,_bh}");
                }
                if allocator {
                    points.push("the allocator's functions and vfree()");
                }
                format!(
                    "read from the flags kprobes save, at {}; known disabled after _irq/_irqsave locks, unknown at trylocks and sleeping locks",
                    points.join(" and ")
                )
            }
            IrqStateSource::Unknown => {
                "unknown, except after _irq/_irqsave locks (disabled): needs the bpf_local_irq_save kfunc (Linux 6.14+) or kprobes".to_string()
            }
        };
        feature("irq state", self != IrqStateSource::Unknown, detail)
    }
}

/// The lock families whose ordering checks are off because their releases cannot be traced
/// (their acquisitions say so).
fn families_off(probes: &[Attachment]) -> Vec<&'static str> {
    catalog::families_off(
        probes
            .iter()
            .filter_map(|p| Some((p.name.as_str(), p.refusal()?))),
    )
}

/// Attached and needed probes of each attach type.
struct AttachCounts {
    fexit: (usize, usize),
    fentry: (usize, usize),
    kprobe: (usize, usize),
    tp_btf: (usize, usize),
    /// uprobes and uretprobes together.
    user: (usize, usize),
}

impl AttachCounts {
    fn of(probes: &[Attachment]) -> AttachCounts {
        let count = |kinds: &[AttachKind]| {
            let needed = probes
                .iter()
                .filter(|p| kinds.contains(&p.kind) && p.is_needed());
            (
                needed.clone().filter(|p| p.is_attached()).count(),
                needed.count(),
            )
        };
        AttachCounts {
            fexit: count(&[AttachKind::Fexit]),
            fentry: count(&[AttachKind::Fentry]),
            kprobe: count(&[AttachKind::Kprobe]),
            tp_btf: count(&[AttachKind::TpBtf]),
            user: count(&[AttachKind::Uprobe, AttachKind::Uretprobe]),
        }
    }

    /// Whether trampolines, kprobes, tracepoints and uprobes work here, from what attached.
    fn features(&self, probes: &[Attachment]) -> [Feature; 4] {
        let trampolines = (self.fexit.0 + self.fentry.0, self.fexit.1 + self.fentry.1);
        // "; <the first refusal>" among the probes of the kinds `of`, or nothing.
        let first_refusal = |of: fn(AttachKind) -> bool| {
            probes
                .iter()
                .filter(|p| of(p.kind))
                .find_map(|p| p.refusal().filter(|reason| !reason.is_empty()))
                .map(|reason| format!("; {reason}"))
                .unwrap_or_default()
        };
        let refusal = first_refusal(AttachKind::is_trampoline);
        let kprobe_refusal = first_refusal(|kind| kind == AttachKind::Kprobe);
        let (kp_ok, kp_all) = self.kprobe;
        let (tp_ok, tp_all) = self.tp_btf;
        let (up_ok, up_all) = self.user;
        [
            feature(
                "trampolines",
                trampolines.0 > 0,
                format!(
                    "{}/{} fentry/fexit probes attached{refusal}",
                    trampolines.0, trampolines.1
                ),
            ),
            if kp_all == 0 {
                feature(
                    "kprobes",
                    true,
                    "none needed: the IRQ-state kfunc reads the state at the trampolines",
                )
            } else {
                feature(
                    "kprobes",
                    kp_ok > 0,
                    format!("{kp_ok}/{kp_all} kprobes attached{kprobe_refusal}"),
                )
            },
            feature(
                "tracepoints",
                tp_ok > 0,
                format!("{tp_ok}/{tp_all} tracepoint probes attached"),
            ),
            feature(
                "uprobes",
                up_ok > 0,
                format!(
                    "{up_ok}/{up_all} pthread uprobes attached (firing for no process, for the check)"
                ),
            ),
        ]
    }
}

/// What locktrace can detect with these kernel facts and probes.
fn detects(
    facts: Option<&KernelFacts>,
    counts: &AttachCounts,
    ordering: bool,
    families_off: &[&str],
    irqs: IrqStateSource,
    alloc: bool,
    data_symbols: bool,
) -> Vec<Feature> {
    let context = facts.is_some_and(|f| f.preempt_count.is_ok());
    let user = counts.user.0 > 0;
    let irq_checks = irqs.at_allocator() && alloc;
    vec![
        feature("kernel lock ordering", ordering, {
            let what = match (ordering, irqs.at_acquisitions()) {
                (true, true) => {
                    "circular dependencies, recursive locking, irq lock inversions and inconsistent lock state between kernel locks"
                }
                (true, false) => {
                    "circular dependencies, recursive locking and softirq lock inversions between kernel locks; hardirq inversions need the IRQ state"
                }
                (false, _) => {
                    "needs fentry/fexit or kprobes on the lock functions, which this kernel refuses"
                }
            };
            if ordering && !families_off.is_empty() {
                format!(
                    "{what}; off for {}: their releases cannot be traced",
                    families_off.join(", ")
                )
            } else {
                what.to_string()
            }
        }),
        feature(
            "irq-state checks",
            irq_checks,
            if irq_checks {
                "vfree() and non-atomic per-CPU allocations with IRQs disabled"
            } else if !irqs.at_allocator() {
                "needs the IRQ state at the allocator: the bpf_local_irq_save kfunc (Linux 6.14+) or kprobes"
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
            user,
            if user {
                "circular dependencies and recursive locking between pthread mutexes and rwlocks"
            } else {
                "needs uprobes"
            },
        ),
        feature(
            "static kernel lock names",
            data_symbols,
            if data_symbols {
                "from kallsyms"
            } else {
                "only with --symbols System.map"
            },
        ),
    ]
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

    use crate::probes::Outcome;

    fn probe(name: &str, kind: AttachKind, outcome: Outcome) -> Attachment {
        Attachment {
            program: "acq_spin",
            name: name.to_string(),
            kind,
            outcome,
        }
    }

    fn refused(reason: &str) -> Outcome {
        Outcome::Refused(reason.to_string())
    }

    fn report() -> CheckReport {
        use AttachKind::{Fentry, Fexit, TpBtf};
        use Outcome::Attached;
        let mut probes = vec![
            probe("fexit:_raw_spin_lock", Fexit, Attached),
            probe(
                "fexit:_raw_spin_lock_irq",
                Fexit,
                refused("refused: EINVAL\nverifier log"),
            ),
            probe("fexit:_raw_read_lock", Fexit, refused("not in BTF")),
            probe("fentry:pcpu_alloc", Fentry, Attached),
            probe(
                "tp:percpu_alloc_percpu",
                TpBtf,
                Outcome::NotNeeded {
                    instead: "fentry:pcpu_alloc".to_string(),
                },
            ),
            probe("tp:sched_switch", TpBtf, Attached),
        ];
        probes.extend((0..40).map(|i| probe(&format!("fentry:unlock_{i}"), Fentry, Attached)));
        probes.push(probe(
            "fexit:_raw_write_lock",
            Fexit,
            refused("refused: EINVAL"),
        ));
        CheckReport {
            kernel_release: "6.12.0".to_string(),
            features: Vec::new(),
            probe_groups: probe_groups(&probes),
            probes: probes.iter().map(Attachment::status).collect(),
            detects: Vec::new(),
        }
    }

    /// Without the kfunc the IRQ state comes from whichever kprobes attached, and `check`
    /// claims only what those give.
    #[test]
    fn the_irq_state_comes_from_the_kprobes_that_attached() {
        let named = |program: &'static str, outcome: Outcome| Attachment {
            program,
            name: program.to_string(),
            kind: AttachKind::Kprobe,
            outcome,
        };
        let none = IrqStateSource::of(None, &[named("kp_acq_spin", refused("no kprobes"))]);
        assert_eq!(none, IrqStateSource::Unknown);
        assert!(!none.feature().ok);
        assert!(!none.at_acquisitions() && !none.at_allocator());

        let allocator_only = IrqStateSource::of(None, &[named("kp_vfree", Outcome::Attached)]);
        assert!(allocator_only.at_allocator() && !allocator_only.at_acquisitions());

        let both = IrqStateSource::of(
            None,
            &[
                named("kp_acq_spin", Outcome::Attached),
                named("kp_pcpu_alloc", Outcome::Attached),
            ],
        );
        assert!(both.at_allocator() && both.at_acquisitions());
        let feature = both.feature();
        assert!(feature.ok);
        assert!(feature.detail.contains("kprobes"), "{}", feature.detail);
    }

    /// A kfunc `check` reports is one the patcher knows: its version comes from there.
    #[test]
    fn an_absent_kfunc_says_from_which_linux_on_it_exists() {
        for (name, since) in [
            ("bpf_local_irq_save", "6.14"),
            ("bpf_get_kmem_cache", "6.13"),
            ("bpf_rdonly_cast", "6.2"),
        ] {
            let absent = kfunc_feature(name, false, "with", "without");
            assert_eq!(absent.name, format!("kfunc:{name}"));
            assert_eq!(absent.detail, format!("absent (Linux {since}+): without"));
            assert_eq!(kfunc_feature(name, true, "with", "without").detail, "with");
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
