//! The kernel programs' attach plan: for each lock function its trampoline programs or its
//! kprobes, whichever this kernel allows (and where the IRQ-state kfunc is missing, kprobes
//! first at the points that need the state); releases before acquisitions, so that a lock
//! family whose releases cannot all be traced gets no acquisitions; the tracepoints; the
//! seed's functions by trampoline, kprobe or tracepoint. Each program's outcome becomes an
//! [`Attachment`].

use aya::{
    Ebpf,
    programs::{BtfTracePoint, FEntry, FExit, KProbe, ProgramError},
};

use super::{
    AttachMode, Attachment, Outcome,
    btf::KernelBtf,
    catalog::{self, Hook, KernelProbe},
};

/// Attaches the kernel programs of `ebpf` the way `mode` says, recording each outcome in
/// `attachments`. In `Auto` each lock function is followed by trampolines where the kernel
/// allows them and by kprobes where it does not (klockstat's choice, made per function).
/// kprobes come first where they see what a trampoline program cannot ([`Preference`]).
pub(super) fn attach(
    ebpf: &mut Ebpf,
    attachments: &mut Vec<Attachment>,
    kernel_btf: &KernelBtf,
    mode: AttachMode,
    prefer: Preference,
) {
    let aya_btf = match aya::Btf::from_sys_fs() {
        Ok(btf) => btf,
        Err(err) => {
            for probe in catalog::KERNEL_LOCKS.iter().chain(catalog::TRACEPOINTS) {
                attachments.push(refused(probe, probe.targets[0], err.to_string()));
            }
            return;
        }
    };
    let mut attacher = Attacher {
        ebpf,
        attachments,
        aya_btf,
        kernel_btf,
        kprobes: kprobes_available(),
    };
    attacher.attach_kernel(mode, prefer);
}

/// Where this kernel's trampoline programs see less than kprobes, which come first there.
#[derive(Clone, Copy, Debug)]
pub(super) struct Preference {
    /// The kernel lacks the IRQ-state kfunc (before 6.14): kprobes at the points that need
    /// the state, since they see the flags register.
    pub no_irq_kfunc: bool,
    /// The kernel lacks `bpf_get_func_ip` for trampolines (before 5.15): kprobes for every
    /// acquisition and the seed's functions, since a trampoline program then cannot tell
    /// the acquiring function from the trampoline in the stack, and a kprobe reads it from
    /// the stack pointer.
    pub no_func_ip: bool,
}

impl Preference {
    /// True when `function`'s kprobes come before its trampoline programs.
    fn kprobes_first(self, function: &catalog::LockFunction) -> bool {
        (self.no_irq_kfunc && function.reads_irq_state())
            || (self.no_func_ip && !function.is_release())
    }

    /// True when the seed's functions are probed by trampoline first.
    fn trampolines_first_for_calls(self) -> bool {
        !self.no_irq_kfunc && !self.no_func_ip
    }
}

/// What attaching needs: the object, where outcomes go, and both views of the kernel's BTF.
struct Attacher<'a> {
    ebpf: &'a mut Ebpf,
    attachments: &'a mut Vec<Attachment>,
    aya_btf: aya::Btf,
    kernel_btf: &'a KernelBtf,
    /// Whether the kernel can create kprobes at all (looked up once).
    kprobes: bool,
}

impl Attacher<'_> {
    /// See [`attach`].
    fn attach_kernel(&mut self, mode: AttachMode, prefer: Preference) {
        const BY_KPROBE: &str = "--attach kprobe";
        let left_out = |probe: &KernelProbe| {
            attachment(probe, probe.targets[0], Outcome::LeftOut { by: BY_KPROBE })
        };
        let functions = catalog::lock_functions();
        let mut releases = Vec::new();
        let mut acquisitions = Vec::new();
        for function in &functions {
            let alternatives = match mode {
                AttachMode::Kprobe => {
                    self.attachments
                        .extend(function.trampolines.iter().copied().map(left_out));
                    vec![function.kprobes.clone()]
                }
                AttachMode::Auto if prefer.kprobes_first(function) => {
                    vec![function.kprobes.clone(), function.trampolines.clone()]
                }
                AttachMode::Auto => {
                    vec![function.trampolines.clone(), function.kprobes.clone()]
                }
            };
            if function.is_release() {
                releases.push((function.name, alternatives));
            } else {
                acquisitions.push((function.name, alternatives));
            }
        }
        self.attach_lock_functions(&releases, &acquisitions);
        for probe in catalog::TRACEPOINTS {
            self.attach_alternatives(&[vec![probe]]);
        }
        for seed in catalog::ALLOCATOR {
            if mode == AttachMode::Kprobe {
                let alternatives = [vec![&seed.kprobe], vec![&seed.tracepoint]];
                self.attach_alternatives(&alternatives);
                self.attachments.push(left_out(&seed.trampoline));
            } else {
                let alternatives = seed
                    .in_order(prefer.trampolines_first_for_calls())
                    .map(|probe| vec![probe]);
                self.attach_alternatives(&alternatives);
            }
        }
    }

    /// Attaches the release functions' programs, then the acquisitions of the lock families
    /// whose every release function is followed (`alternatives` per function). An
    /// acquisition whose release cannot be seen would stay on its held stack until it goes
    /// stale and give dependencies that never existed: that family's ordering checks are off
    /// instead, and its acquisitions say so (with the release's own reason: one line wherever
    /// refusals are summarized).
    fn attach_lock_functions(
        &mut self,
        releases: &[(&str, Vec<Vec<&KernelProbe>>)],
        acquisitions: &[(&str, Vec<Vec<&KernelProbe>>)],
    ) {
        // Each release function: whether it is followed, and why not.
        let mut followed: Vec<(&str, bool, String)> = Vec::new();
        for (function, alternatives) in releases {
            let first = self.attachments.len();
            let attached = self.attach_alternatives(alternatives);
            let why = self.attachments[first..]
                .iter()
                .find_map(Attachment::refusal)
                .and_then(|reason| reason.lines().next())
                .unwrap_or_default();
            followed.push((function, attached, why.to_string()));
        }
        for (function, alternatives) in acquisitions {
            let Some(off) = ordering_off(function, &followed) else {
                self.attach_alternatives(alternatives);
                continue;
            };
            for &probe in alternatives.iter().flatten() {
                // A probe this kernel refuses whatever it follows says that, not more.
                let reason = kind_refusal(probe.hook, self.kprobes, &followed).unwrap_or(&off);
                self.attachments
                    .push(refused(probe, probe.targets[0], reason.to_string()));
            }
        }
    }

    /// Attaches the first of `alternatives` (each a set of programs that work together) that
    /// this kernel allows; the sets after it are not needed. Records an outcome for each
    /// program, and returns whether one set attached. A set attaches when all its programs
    /// do, extra copies of a release program aside (see `catalog::KERNEL_LOCKS`).
    fn attach_alternatives(&mut self, alternatives: &[Vec<&KernelProbe>]) -> bool {
        let mut chosen: Option<String> = None;
        for alternative in alternatives {
            if let Some(instead) = &chosen {
                for &probe in alternative {
                    self.attachments.push(Attachment {
                        outcome: Outcome::NotNeeded {
                            instead: instead.clone(),
                        },
                        ..refused(probe, probe.targets[0], String::new())
                    });
                }
                continue;
            }
            let mut whole = true;
            let mut name = None;
            for &probe in alternative {
                let attachment = if is_kprobe(probe.hook) && !self.kprobes {
                    refused(probe, probe.targets[0], NO_KPROBES.to_string())
                } else {
                    attach_one(self.ebpf, &self.aya_btf, self.kernel_btf, probe)
                };
                if attachment.is_attached() {
                    name.get_or_insert_with(|| attachment.name.clone());
                } else if probe.copy.is_none() {
                    whole = false;
                }
                self.attachments.push(attachment);
            }
            if whole {
                chosen = name;
            }
        }
        chosen.is_some()
    }
}

/// `probe` on `target`, with its outcome.
fn attachment(probe: &KernelProbe, target: &str, outcome: Outcome) -> Attachment {
    Attachment {
        program: probe.program,
        name: probe.display_name(target),
        kind: probe.hook.into(),
        outcome,
    }
}

/// `probe` on `target`, refused for `reason`.
fn refused(probe: &KernelProbe, target: &str, reason: String) -> Attachment {
    attachment(probe, target, Outcome::Refused(reason))
}

/// Loads and attaches one kernel program on the first of its targets this kernel has.
fn attach_one(
    ebpf: &mut Ebpf,
    aya_btf: &aya::Btf,
    kernel_btf: &KernelBtf,
    probe: &KernelProbe,
) -> Attachment {
    let target = if !matches!(probe.hook, Hook::TpBtf { .. }) {
        match probe.targets.iter().find(|name| kernel_btf.has_func(name)) {
            Some(target) => *target,
            None => {
                return refused(
                    probe,
                    probe.targets[0],
                    format!(
                        "not in this kernel (BTF has no {})",
                        probe.targets.join(" or ")
                    ),
                );
            }
        }
    } else {
        probe.targets[0]
    };
    let program = ebpf
        .program_mut(probe.program)
        .unwrap_or_else(|| panic!("program {} missing from the eBPF object", probe.program));
    let result: Result<(), ProgramError> = match probe.hook {
        Hook::Fexit => <&mut FExit>::try_from(program).and_then(|p| {
            p.load(target, aya_btf)?;
            p.attach().map(drop)
        }),
        Hook::Fentry => <&mut FEntry>::try_from(program).and_then(|p| {
            p.load(target, aya_btf)?;
            p.attach().map(drop)
        }),
        // One kprobe program may attach to several functions: loaded once.
        Hook::Kprobe | Hook::Kretprobe => <&mut KProbe>::try_from(program).and_then(|p| {
            if p.fd().is_err() {
                p.load()?;
            }
            p.attach(target, 0).map(drop)
        }),
        Hook::TpBtf { .. } => <&mut BtfTracePoint>::try_from(program).and_then(|p| {
            p.load(target, aya_btf)?;
            p.attach().map(drop)
        }),
    };
    match result {
        Ok(()) => attachment(probe, target, Outcome::Attached),
        Err(err) => {
            save_verifier_log(probe.program, &err);
            refused(probe, target, explain(&err, probe.hook.is_trampoline()))
        }
    }
}

/// Why acquisitions by `function` must not be followed, when a release function of its lock
/// family (in `followed`: function, attached, why not) has no program attached.
fn ordering_off(function: &str, followed: &[(&str, bool, String)]) -> Option<String> {
    let family = catalog::family_of(function);
    followed
        .iter()
        .find(|(release, attached, _)| !attached && catalog::family_of(release) == family)
        .map(|(_, _, why)| {
            format!(
                "{}, the releases cannot be traced: {why}",
                catalog::ORDERING_OFF
            )
        })
}

/// The reason every probe of `hook`'s kind is refused on this kernel, when there is one: no
/// kprobes (`kprobes` false), or trampolines refused outright (as the release functions,
/// `followed`: function, attached, why not, found).
fn kind_refusal<'a>(
    hook: Hook,
    kprobes: bool,
    followed: &'a [(&str, bool, String)],
) -> Option<&'a str> {
    match hook {
        Hook::Kprobe | Hook::Kretprobe => (!kprobes).then_some(NO_KPROBES),
        Hook::Fentry | Hook::Fexit => followed
            .iter()
            .map(|(_, _, why)| why.as_str())
            .find(|why| why.starts_with(TRAMPOLINES_REFUSED)),
        Hook::TpBtf { .. } => None,
    }
}

/// How a refusal of trampolines by the kernel begins.
const TRAMPOLINES_REFUSED: &str = "trampolines refused by this kernel";

/// Why no kprobe attaches on a kernel without them.
const NO_KPROBES: &str =
    "kprobes not available in this kernel (no kprobe event source: CONFIG_KPROBES=n)";

/// True for a kprobe or kretprobe.
fn is_kprobe(hook: Hook) -> bool {
    matches!(hook, Hook::Kprobe | Hook::Kretprobe)
}

/// True when the kernel can create kprobes: the `kprobe` perf event source (Linux 4.17+), or
/// tracefs's `kprobe_events` before it. Looked up once, before any kprobe program is loaded:
/// verifying the programs costs seconds where they can never attach.
fn kprobes_available() -> bool {
    [
        "/sys/bus/event_source/devices/kprobe/type",
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|path| std::path::Path::new(path).exists())
}

/// With `LOCKTRACE_VERIFIER_LOG=DIR`, writes the whole verifier log of a program the kernel
/// refused to `DIR/<program>.log` (the one-line reason shows only its last line): for
/// whoever changes the programs, and for bug reports.
pub(super) fn save_verifier_log(program: &str, err: &ProgramError) {
    let (Some(dir), ProgramError::LoadError { verifier_log, .. }) =
        (std::env::var_os("LOCKTRACE_VERIFIER_LOG"), err)
    else {
        return;
    };
    let path = std::path::Path::new(&dir).join(format!("{program}.log"));
    if let Err(e) = std::fs::write(&path, verifier_log.to_string()) {
        crate::session::notice(format_args!(
            "locktrace: cannot write {}: {e}",
            path.display()
        ));
    }
}

/// One line saying why a program did not load or attach.
pub(super) fn explain(err: &ProgramError, trampoline: bool) -> String {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            // The log ends with statistics ("processed N insns ...", "verification time");
            // the reason is the last line before them.
            let last = log.lines().rev().find(|l| {
                let l = l.trim();
                !l.is_empty()
                    && !["processed ", "verification time", "stack depth"]
                        .iter()
                        .any(|stat| l.starts_with(stat))
            });
            match (io_error.raw_os_error(), last) {
                (Some(libc::EPERM), None) if trampoline => {
                    format!("{TRAMPOLINES_REFUSED} (EPERM at BPF_PROG_LOAD, empty verifier log)")
                }
                (_, Some(line)) => format!("verifier rejected it: {io_error}: {line}"),
                (_, None) => format!("load failed: {io_error}"),
            }
        }
        other => {
            let mut line = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                line.push_str(": ");
                line.push_str(&cause.to_string());
                source = cause.source();
            }
            line
        }
    }
}

#[cfg(test)]
mod tests {
    /// A family with one release function that cannot be traced has its ordering off; the
    /// others are followed.
    #[test]
    fn a_family_with_a_blind_release_has_its_ordering_off() {
        let followed = vec![
            ("_raw_spin_unlock", false, "not in this kernel".to_string()),
            ("_raw_spin_unlock_irqrestore", true, String::new()),
            ("mutex_unlock", true, String::new()),
        ];
        let off = super::ordering_off("_raw_spin_lock_irqsave", &followed).expect("off");
        assert!(off.contains("not in this kernel"), "{off}");
        assert_eq!(super::ordering_off("mutex_lock", &followed), None);
        assert_eq!(super::ordering_off("down_read", &followed), None);
    }
}
