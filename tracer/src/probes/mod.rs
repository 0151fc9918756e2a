//! Loading locktrace's eBPF programs and attaching what the running kernel allows.
//!
//! Each program is attached on its own: one that cannot attach (trampolines refused, function
//! absent under that name, kfunc missing) is recorded with the reason and the rest carry on.
//! Loading fails only when nothing useful attached. Every link is owned by this process's file
//! descriptors and nothing is pinned, so nothing stays attached after the process ends,
//! however it ends.

mod attachment;
pub mod btf;
pub mod catalog;
pub mod check;
pub mod facts;
mod kernel;
pub mod kfunc;
mod stats;
pub mod uprobes;

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
};
use thiserror::Error;
use tracer_common::{ContentionStat, Counter, ProbeConfig};

use crate::tracefile::ProbeStatus;
pub use attachment::{AttachKind, Attachment, Outcome};
use btf::KernelBtf;
use facts::KernelFacts;

/// The eBPF object built by `tracer/build.rs`, 8-byte aligned for the ELF parser.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// What can stop locktrace from tracing at all.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// Loading BPF programs needs root (CAP_BPF and CAP_PERFMON).
    #[error("locktrace needs root to load BPF programs (running as uid {uid})")]
    NotRoot {
        /// The effective uid.
        uid: u32,
    },
    /// The kernel has no BTF, which every program here needs.
    #[error("this kernel has no usable BTF (/sys/kernel/btf/vmlinux)")]
    NoBtf(#[source] btf::BtfError),
    /// This binary was built with `AYA_BUILD_SKIP=1` and carries no programs.
    #[error("this locktrace was built without its eBPF programs (AYA_BUILD_SKIP); rebuild it")]
    NoObject,
    /// The object could not be parsed or its maps created.
    #[error("cannot load locktrace's eBPF object")]
    Load(#[source] Box<aya::EbpfError>),
    /// A map the programs need is missing or of the wrong type.
    #[error("eBPF map {name}")]
    Map {
        /// The map.
        name: &'static str,
        /// The cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// The C library could not be found or probed.
    #[error("{0}")]
    UserProbes(String),
    /// No probe attached: nothing could be traced.
    #[error("no probe could be attached: {0}")]
    NothingAttached(String),
}

/// Which user-space processes to trace pthread locks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserTarget {
    /// Every process using the system's C library.
    AllProcesses,
    /// One process.
    Process(u32),
    /// Attach to the system's C libraries but fire for no one: proves uprobes work here
    /// without tracing anything (`locktrace check`).
    ProbeOnly,
}

/// What to attach.
#[derive(Clone, Debug, Default)]
pub struct ProbeOptions {
    /// Attach the kernel probes (locks, allocator, interrupts).
    pub kernel: bool,
    /// Attach the pthread probes, and where.
    pub user: Option<UserTarget>,
    /// Attach empty user programs instead of the real ones (the benchmark's baseline).
    pub empty_user_programs: bool,
    /// Attach every program with its body switched off (the eBPF object's `FLOOR`): the
    /// kernel overhead benchmark's floor, what the attachments alone cost.
    pub floor: bool,
    /// How the kernel lock functions are probed.
    pub attach: AttachMode,
}

/// How the kernel lock and allocator functions are probed (`--attach`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Trampolines where the kernel allows them, kprobes where the IRQ state must be read
    /// without the kfunc or where trampolines are refused; tracepoints for the allocator
    /// where neither works.
    #[default]
    Auto,
    /// kprobes and kretprobes only, no trampolines: the path of kernels that refuse
    /// trampolines but allow kprobes (older arm64 kernels, some hardened configurations).
    Kprobe,
}

/// Loaded and attached programs, and the maps user space reads.
pub struct Probes {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
    counters: PerCpuArray<MapData, u64>,
    /// `CLOCK`: the tick-resolution clock the programs stamp held entries with.
    clock: Array<MapData, u64>,
    percpu_vars: Vec<(u64, u64, String)>,
    user: Option<UserProbes>,
    /// What the programs read from `CONFIG`, as last written.
    config: ProbeConfig,
    /// With `LOCKTRACE_PROG_STATS` set: the kernel's per-program run-time statistics,
    /// switched on while this descriptor is open (`BPF_ENABLE_STATS`). They cost two clock
    /// reads per program run, so they are for finding where the time goes, not for timing.
    run_stats: Option<std::os::fd::OwnedFd>,
}

/// How often one program ran and for how long in all (`LOCKTRACE_PROG_STATS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRunTime {
    /// The program's name in the object.
    pub program: String,
    /// How many times it ran.
    pub runs: u64,
    /// Its run time summed over those runs.
    pub total: std::time::Duration,
    /// Bytes of machine code the JIT made of it; 0 when the kernel interprets it.
    pub jitted_bytes: u32,
    /// eBPF instructions after the verifier's rewrites, when the kernel says.
    pub xlated_bytes: Option<u32>,
}

/// Where the pthread probes are attached.
struct UserProbes {
    target: UserTarget,
    empty: bool,
    libraries: Vec<PathBuf>,
}

/// The maps the session reads, taken out of the object so they can move to another task.
pub struct SessionMaps {
    /// The facts ring buffer.
    pub facts: RingBuf<MapData>,
    /// What facts refer to: slab cache names.
    pub names: NameMaps,
    /// Contention figures by class key.
    pub contention: aya::maps::HashMap<MapData, u64, ContentionStat>,
}

/// The maps that name what facts refer to.
pub struct NameMaps {
    /// Slab cache names by `struct kmem_cache *`.
    pub slab_names: aya::maps::HashMap<MapData, u64, [u8; tracer_common::SLAB_NAME_LEN]>,
}

impl SessionMaps {
    /// Takes the session's maps out of the loaded object.
    fn take(ebpf: &mut Ebpf) -> Result<SessionMaps, ProbeError> {
        Ok(SessionMaps {
            facts: take_map(ebpf, "FACTS")?,
            names: NameMaps {
                slab_names: take_map(ebpf, "SLAB_NAMES")?,
            },
            contention: take_map(ebpf, "CONTENTION")?,
        })
    }
}

/// Takes map `name` out of the object as a `T`.
fn take_map<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, ProbeError> {
    let map = ebpf.take_map(name).ok_or_else(|| missing_map(name))?;
    T::try_from(map).map_err(|source| ProbeError::Map { name, source })
}

/// The error for a map the object does not have.
fn missing_map(name: &'static str) -> ProbeError {
    ProbeError::Map {
        name,
        source: aya::maps::MapError::InvalidName {
            name: name.to_string(),
        },
    }
}

/// Patches the kfunc calls and the `preempt_count` ksym load for this kernel in a private,
/// 8-byte aligned copy of the object, and loads it with this session's read-only globals.
fn load_object(
    kernel_btf: &KernelBtf,
    facts: &KernelFacts,
    floor: bool,
) -> Result<Ebpf, ProbeError> {
    let mut words = aligned_copy(OBJECT);
    let object = &mut words_as_bytes(&mut words)[..OBJECT.len()];
    kfunc::patch(object, kernel_btf);
    kfunc::patch_object_ksym(
        object,
        tracer_common::PREEMPT_COUNT_VAR_MARKER,
        facts.preempt_count_ksym(),
    );
    EbpfLoader::new()
        .override_global("FLOOR", &u32::from(floor), true)
        .override_global("FUNC_IP_HELPER", &u32::from(facts.func_ip_helper), true)
        .override_global("IRQ_KFUNC", &u32::from(facts.irq_kfunc), true)
        .override_global("KMEM_CACHE_KFUNC", &u32::from(facts.kmem_cache_kfunc), true)
        .override_global(
            "PREEMPT_COUNT_SOURCE",
            &(facts.preempt_count_source() as u32),
            true,
        )
        .override_global(
            "PREEMPT_COUNT_OFFSET",
            &facts.preempt_count_ksym_offset(),
            true,
        )
        // The type the programs read a trampoline's frame as (`context::frame_words`):
        // any struct of plain 8-byte members does, and x86's `pt_regs` is one.
        .override_global("FRAME_BTF_ID", &facts.frame_btf_id, true)
        .load(object)
        .map_err(|e| ProbeError::Load(Box::new(e)))
}

/// True when /proc/kallsyms lists `name`: the kernel resolves a typed ksym through kallsyms,
/// so a per-CPU variable missing there (no `CONFIG_KALLSYMS_ALL`) cannot be loaded as one.
fn kallsyms_lists(name: &str) -> bool {
    std::fs::read_to_string("/proc/kallsyms")
        .is_ok_and(|text| crate::symbols::KernelSymbols::lists(&text, name))
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

impl Probes {
    /// Loads the object and attaches what `options` asks for and the kernel allows.
    pub fn load(options: &ProbeOptions) -> Result<(Probes, SessionMaps), ProbeError> {
        let uid = effective_uid();
        if uid != 0 {
            return Err(ProbeError::NotRoot { uid });
        }
        if OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        let kernel_btf = KernelBtf::from_sys_fs().map_err(ProbeError::NoBtf)?;
        let facts = KernelFacts::from_btf(&kernel_btf, kallsyms_lists);
        let mut ebpf = load_object(&kernel_btf, &facts, options.floor)?;
        let config = facts.probe_config(std::process::id());
        write_config(&mut ebpf, &config)?;
        let maps = SessionMaps::take(&mut ebpf)?;
        let mut probes = Probes {
            counters: take_map(&mut ebpf, "COUNTERS_MAP")?,
            clock: take_map(&mut ebpf, "CLOCK")?,
            ebpf,
            attachments: Vec::new(),
            percpu_vars: KernelFacts::percpu_vars(&kernel_btf),
            user: None,
            config,
            run_stats: std::env::var_os("LOCKTRACE_PROG_STATS")
                .and_then(|_| aya::sys::enable_stats(aya::sys::Stats::RunTime).ok()),
        };
        if options.kernel {
            kernel::attach(
                &mut probes.ebpf,
                &mut probes.attachments,
                &kernel_btf,
                options.attach,
                kernel::Preference {
                    no_irq_kfunc: !facts.irq_kfunc,
                    no_func_ip: !facts.func_ip_helper,
                },
            );
            probes.account_contention_where_acquisitions_are_followed()?;
        }
        if let Some(target) = options.user {
            probes.attach_user(target, options.empty_user_programs);
        }
        probes.save_verified_counts();
        if !probes.attachments.iter().any(Attachment::is_attached) {
            let why = probes.not_attached_summary().join("; ");
            return Err(ProbeError::NothingAttached(why));
        }
        Ok((probes, maps))
    }

    /// Contention is accounted at the acquisition where acquisitions are followed (an fexit
    /// attached), at the end of the wait otherwise: tells the programs which.
    fn account_contention_where_acquisitions_are_followed(&mut self) -> Result<(), ProbeError> {
        self.config.acquisitions_traced = self
            .attachments
            .iter()
            .any(|a| a.is_attached() && catalog::is_acquisition(a.program))
            .into();
        write_config(&mut self.ebpf, &self.config)
    }

    /// Attaches the pthread probes for `target`. A process without a C library (a static
    /// binary, or a command not yet executed from a static locktrace) is one reason among
    /// others, not a failure of the whole session; `follow_libc` may still find its library
    /// later.
    fn attach_user(&mut self, target: UserTarget, empty: bool) {
        let libraries = match uprobes::attach(&mut self.ebpf, target, empty) {
            Ok((attachments, libraries)) => {
                self.attachments.extend(attachments);
                libraries
            }
            Err(err) => {
                self.attachments
                    .extend(uprobes::not_attached(&err.to_string()));
                Vec::new()
            }
        };
        self.user = Some(UserProbes {
            target,
            empty,
            libraries,
        });
    }

    /// Makes sure the pthread probes cover the C library process `pid` maps now: a command
    /// is probed before it executes, through the library locktrace itself maps, and may turn
    /// out to use another. Returns the newly probed library, if one was added.
    pub fn follow_libc(&mut self, pid: u32) -> Result<Option<PathBuf>, ProbeError> {
        let Some(user) = self.user.as_mut() else {
            return Ok(None);
        };
        let Ok(libc) = uprobes::find_libc(Some(pid)) else {
            return Ok(None);
        };
        let known = uprobes::file_identity(&libc);
        if user
            .libraries
            .iter()
            .any(|lib| uprobes::file_identity(lib) == known)
        {
            return Ok(None);
        }
        let attachments = uprobes::attach_library(&mut self.ebpf, user.target, &libc, user.empty)?;
        self.attachments.extend(attachments);
        user.libraries.push(libc.clone());
        Ok(Some(libc))
    }

    /// Writes the monotonic clock into `CLOCK`, which the programs stamp held entries with
    /// (a clocksource read per lock operation would cost more): the session calls this every
    /// 10 ms.
    pub fn tick_clock(&mut self) -> Result<(), ProbeError> {
        self.clock
            .set(0, &crate::clock::monotonic_ns(), 0)
            .map_err(|source| ProbeError::Map {
                name: "CLOCK",
                source,
            })
    }

    /// Starts recording: until now the programs returned at once, so that no acquisition is
    /// seen from a moment when the probe of its release was not attached yet.
    pub fn start_tracing(&mut self) -> Result<(), ProbeError> {
        self.tick_clock()?;
        self.config.tracing = 1;
        write_config(&mut self.ebpf, &self.config)
    }

    /// Stops recording before the programs are detached (which happens one by one).
    pub fn stop_tracing(&mut self) -> Result<(), ProbeError> {
        self.config.tracing = 0;
        write_config(&mut self.ebpf, &self.config)
    }

    /// Every probe and what became of it.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Every probe as a trace file's header records it.
    pub fn statuses(&self) -> Vec<ProbeStatus> {
        self.attachments.iter().map(Attachment::status).collect()
    }

    /// With `LOCKTRACE_VERIFIER_LOG=DIR`, writes how many instructions the verifier walked for
    /// each loaded program to `DIR/verified.txt` (what verifying costs, kernel by kernel).
    fn save_verified_counts(&self) {
        let Some(dir) = std::env::var_os("LOCKTRACE_VERIFIER_LOG") else {
            return;
        };
        let mut lines: Vec<String> = self
            .ebpf
            .programs()
            .filter_map(|(name, program)| {
                let count = program.info().ok()?.verified_instruction_count()?;
                Some(format!("{name} {count}"))
            })
            .collect();
        lines.sort();
        let path = std::path::Path::new(&dir).join("verified.txt");
        let _ = std::fs::write(path, lines.join("\n") + "\n");
    }

    /// The kernel's static per-CPU variables (offset, size, name), to name per-CPU classes.
    pub fn percpu_vars(&self) -> &[(u64, u64, String)] {
        &self.percpu_vars
    }

    /// One line per distinct reason probes did not attach, naming a few of them.
    pub fn not_attached_summary(&self) -> Vec<String> {
        attachment::summarize_refusals(&self.attachments)
    }

    /// The programs' counters, summed over CPUs.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|&counter| {
                let total = self
                    .counters
                    .get(&(counter as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (counter, total)
            })
            .collect()
    }

    /// Program runs the kernel skipped because the same program was already running on the
    /// CPU (an interrupt arrived while it ran, and took a lock), summed over programs: first
    /// those of programs without copies (lock operations lost), then those of release
    /// copies (covered by another copy of the same call: see [`catalog::is_copied`]).
    pub fn recursion_misses(&self) -> (u64, u64) {
        self.recursion_misses_by_program()
            .iter()
            .fold((0, 0), |(lost, covered), (program, n)| {
                if catalog::is_copied(program) {
                    (lost, covered + n)
                } else {
                    (lost + n, covered)
                }
            })
    }

    /// With `LOCKTRACE_PROG_STATS` set, every program that ran, with its runs and run time,
    /// most time first; empty otherwise (or when the kernel would not switch them on).
    pub fn run_times(&self) -> Vec<ProgramRunTime> {
        if self.run_stats.is_none() {
            return Vec::new();
        }
        let mut times: Vec<ProgramRunTime> = self
            .ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                (info.run_count() > 0).then(|| ProgramRunTime {
                    program: name.to_owned(),
                    runs: info.run_count(),
                    total: info.run_time(),
                    jitted_bytes: info.size_jitted(),
                    xlated_bytes: info.size_translated(),
                })
            })
            .collect();
        times.sort_by_key(|t| std::cmp::Reverse(t.total));
        times
    }

    /// [`Probes::recursion_misses`] per program that had any, most first.
    pub fn recursion_misses_by_program(&self) -> Vec<(String, u64)> {
        let mut misses: Vec<(String, u64)> = self
            .ebpf
            .programs()
            .filter_map(|(name, program)| {
                let n = stats::recursion_misses(program.fd().ok()?);
                (n > 0).then(|| (name.to_owned(), n))
            })
            .collect();
        misses.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        misses
    }
}

/// Writes the configuration the programs read.
fn write_config(ebpf: &mut Ebpf, config: &ProbeConfig) -> Result<(), ProbeError> {
    let map_error = |source| ProbeError::Map {
        name: "CONFIG",
        source,
    };
    let map = ebpf
        .map_mut("CONFIG")
        .ok_or_else(|| missing_map("CONFIG"))?;
    let mut map: Array<_, ProbeConfig> = Array::try_from(map).map_err(map_error)?;
    map.set(0, config, 0).map_err(map_error)
}

/// `bytes` in a `u64` buffer (8-byte aligned, as the ELF parser wants), zero-padded to a whole
/// word: view it with [`words_as_bytes`], cut to `bytes.len()`.
fn aligned_copy(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    words_as_bytes(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

/// Views a `u64` buffer as bytes (keeps the 8-byte alignment the ELF parser wants).
fn words_as_bytes(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements; the length covers the same memory.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), words.len() * 8) }
}

/// The eBPF object, for a test that reads it; `None`, with the reason printed, when this
/// build carries none (`AYA_BUILD_SKIP=1`, which skips building the programs). An empty
/// object without that setting is a broken build and fails the test.
#[cfg(test)]
fn object_for_test(test: &str) -> Option<&'static [u8]> {
    if !OBJECT.is_empty() {
        return Some(OBJECT);
    }
    assert!(
        std::env::var_os("AYA_BUILD_SKIP").is_some(),
        "{test}: the eBPF object is empty, and AYA_BUILD_SKIP is not set"
    );
    eprintln!("SKIPPED {test}: the eBPF object was not built (AYA_BUILD_SKIP=1)");
    None
}

/// The path of a process's file as seen from here (through its root, for containers).
pub(crate) fn proc_path(pid: u32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

#[cfg(test)]
mod tests {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

    use super::{catalog, object_for_test};

    /// A skipped run of a release program is covered by its copies; one of an acquire or
    /// tracepoint program is a lost event.
    #[test]
    fn release_programs_and_their_copies_are_the_copied_ones() {
        for program in ["rel_spin", "rel_spin_2", "rel_spin_3", "rel_mutex"] {
            assert!(catalog::is_copied(program), "{program}");
        }
        for program in [
            "acq_spin",
            "acq_mutex",
            "tp_sched_switch",
            "no_such_program",
        ] {
            assert!(!catalog::is_copied(program), "{program}");
        }
    }

    /// `--attach kprobe` covers every lock function the trampolines probe, and only those;
    /// an acquire function that may fail is followed on its return, after the shared entry
    /// program. Where the kfunc is missing, exactly the acquisitions that leave the IRQ state
    /// as it was are taken by kprobe.
    #[test]
    fn the_kprobe_path_covers_every_lock_function() {
        use catalog::Hook;
        let functions = |probes: &mut dyn Iterator<Item = &catalog::KernelProbe>| {
            let mut names: Vec<&str> = probes.map(|probe| probe.targets[0]).collect();
            names.sort_unstable();
            names.dedup();
            names
        };
        let by_trampoline = functions(&mut catalog::KERNEL_LOCKS.iter());
        let by_kprobe = functions(
            &mut catalog::ACQUIRE_AT_ENTRY
                .iter()
                .chain(catalog::KPROBE_LOCKS),
        );
        assert_eq!(by_trampoline, by_kprobe);
        for kretprobe in catalog::KPROBE_LOCKS
            .iter()
            .filter(|probe| probe.hook == Hook::Kretprobe)
        {
            assert!(
                catalog::KPROBE_LOCKS
                    .iter()
                    .any(|probe| probe.program == "kp_acq_call"
                        && probe.targets == kretprobe.targets),
                "{} has no entry half",
                kretprobe.program
            );
        }
        let replaced: Vec<&str> = catalog::KERNEL_LOCKS
            .iter()
            .filter_map(|probe| catalog::at_entry_for(probe).map(|_| probe.program))
            .collect();
        assert_eq!(
            replaced,
            [
                "acq_spin",
                "acq_spin_bh",
                "acq_read",
                "acq_read_bh",
                "acq_write",
                "acq_write_bh"
            ]
        );
    }

    /// Every kernel program in the eBPF object is in the catalog and the other way round: a
    /// program the catalog forgets is never attached, and nothing says so. Each program's
    /// section (`fexit/_raw_spin_lock`: its `#[fexit(function = ...)]` in main.rs) names the
    /// catalog's hook and first target: the two lists cannot drift apart unnoticed (aya
    /// attaches to the catalog's target; the section's is never read otherwise).
    #[test]
    fn the_catalog_names_every_kernel_program_of_the_object() {
        let Some(object) = object_for_test("the_catalog_names_every_kernel_program_of_the_object")
        else {
            return;
        };
        let file = object::File::parse(object).expect("the eBPF object parses");
        let mut in_object: Vec<String> = file
            .symbols()
            .filter(|sym| sym.kind() == SymbolKind::Text && sym.is_global())
            .filter(|sym| {
                let section = sym
                    .section_index()
                    .and_then(|i| file.section_by_index(i).ok());
                section
                    .and_then(|s| s.name().ok().map(str::to_owned))
                    .is_some_and(|name| {
                        ["fentry/", "fexit/", "kprobe/", "kretprobe/", "tp_btf/"]
                            .iter()
                            .any(|prefix| name.starts_with(prefix))
                    })
            })
            .map(|sym| {
                let section = sym
                    .section_index()
                    .and_then(|i| file.section_by_index(i).ok())
                    .and_then(|s| s.name().ok())
                    .unwrap_or_default();
                format!("{} {section}", sym.name().expect("a symbol name"))
            })
            .collect();
        let mut programs: Vec<&catalog::KernelProbe> = catalog::KERNEL_LOCKS
            .iter()
            .chain(catalog::TRACEPOINTS)
            .chain(catalog::ACQUIRE_AT_ENTRY)
            .chain(catalog::KPROBE_LOCKS)
            .chain(
                catalog::ALLOCATOR
                    .iter()
                    .flat_map(|seed| [&seed.trampoline, &seed.kprobe, &seed.tracepoint]),
            )
            .collect();
        // A kprobe program attached to several functions names the first in its section.
        let mut seen = std::collections::HashSet::new();
        programs.retain(|probe| seen.insert(probe.program));
        let mut in_catalog: Vec<String> = programs
            .into_iter()
            .map(|probe| {
                format!(
                    "{} {}/{}",
                    probe.program,
                    probe.hook.kind(),
                    probe.targets[0]
                )
            })
            .collect();
        in_object.sort();
        in_catalog.sort();
        assert!(!in_object.is_empty());
        assert_eq!(in_object, in_catalog);
    }
}
