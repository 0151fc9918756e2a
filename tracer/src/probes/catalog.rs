//! Every program in the eBPF object and where it attaches, in one table. Names here must
//! match the entry points in `tracer-ebpf/src/main.rs`.

/// How a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// BPF trampoline after the function (Linux 5.5+; refused by some locked-down kernels).
    Fexit,
    /// BPF trampoline before the function (Linux 5.5+).
    Fentry,
    /// kprobe at the function's entry: its program sees the saved registers, the flags
    /// register among them (needs `CONFIG_KPROBES`).
    Kprobe,
    /// kretprobe at the function's return (the kprobe path).
    Kretprobe,
    /// BTF-typed raw tracepoint (Linux 5.5+), in `category`.
    TpBtf {
        /// The tracepoint's category, for display (`percpu`, `irq` ...).
        category: &'static str,
    },
}

impl Hook {
    /// The attach type's short name, as in `locktrace check` and trace-file headers.
    pub fn kind(self) -> &'static str {
        match self {
            Hook::Fexit => "fexit",
            Hook::Fentry => "fentry",
            Hook::Kprobe => "kprobe",
            Hook::Kretprobe => "kretprobe",
            Hook::TpBtf { .. } => "tp_btf",
        }
    }

    /// True for trampolines.
    pub fn is_trampoline(self) -> bool {
        matches!(self, Hook::Fexit | Hook::Fentry)
    }
}

/// A kernel program and what it attaches to.
#[derive(Clone, Copy, Debug)]
pub struct KernelProbe {
    /// The program's name in the object.
    pub program: &'static str,
    /// How it attaches.
    pub hook: Hook,
    /// The function or tracepoint; for functions renamed across versions, the alternatives in
    /// order of preference (the first the kernel's BTF has is used).
    pub targets: &'static [&'static str],
    /// For one of several programs on the same function, which (`copy 2` ...).
    pub copy: Option<&'static str>,
}

impl KernelProbe {
    /// `fexit:_raw_spin_lock`, `tp:percpu:percpu_alloc_percpu` ...: the probe's display name
    /// for `target`.
    pub fn display_name(&self, target: &str) -> String {
        let name = match self.hook {
            Hook::TpBtf { category } => format!("tp:{category}:{target}"),
            hook => format!("{}:{target}", hook.kind()),
        };
        match self.copy {
            Some(copy) => format!("{name} [{copy}]"),
            None => name,
        }
    }
}

const fn fexit(program: &'static str, targets: &'static [&'static str]) -> KernelProbe {
    KernelProbe {
        program,
        hook: Hook::Fexit,
        targets,
        copy: None,
    }
}

const fn fentry(program: &'static str, targets: &'static [&'static str]) -> KernelProbe {
    KernelProbe {
        program,
        hook: Hook::Fentry,
        targets,
        copy: None,
    }
}

/// A further copy of a release program (see `tracer-ebpf/src/main.rs`), named `copy`.
const fn fentry_copy(
    program: &'static str,
    targets: &'static [&'static str],
    copy: &'static str,
) -> KernelProbe {
    KernelProbe {
        copy: Some(copy),
        ..fentry(program, targets)
    }
}

const fn kprobe(program: &'static str, targets: &'static [&'static str]) -> KernelProbe {
    KernelProbe {
        program,
        hook: Hook::Kprobe,
        targets,
        copy: None,
    }
}

const fn kretprobe(program: &'static str, targets: &'static [&'static str]) -> KernelProbe {
    KernelProbe {
        program,
        hook: Hook::Kretprobe,
        targets,
        copy: None,
    }
}

const fn tp(
    program: &'static str,
    category: &'static str,
    targets: &'static [&'static str],
) -> KernelProbe {
    KernelProbe {
        program,
        hook: Hook::TpBtf { category },
        targets,
        copy: None,
    }
}

/// Kernel lock primitives: fexit on acquire, fentry on release. Every release function has
/// three identical programs: the kernel skips a program that fires while it already
/// runs on the CPU, so one program would lose the releases of an interrupt that arrives while
/// it runs for the interrupted task (see `tracer-ebpf/src/main.rs`).
pub const KERNEL_LOCKS: &[KernelProbe] = &[
    fexit("acq_spin", &["_raw_spin_lock"]),
    fexit("acq_spin_irqsave", &["_raw_spin_lock_irqsave"]),
    fexit("acq_spin_irq", &["_raw_spin_lock_irq"]),
    fexit("acq_spin_bh", &["_raw_spin_lock_bh"]),
    fexit("acq_spin_try", &["_raw_spin_trylock"]),
    fexit("acq_spin_try_bh", &["_raw_spin_trylock_bh"]),
    fexit("acq_read", &["_raw_read_lock"]),
    fexit("acq_read_irqsave", &["_raw_read_lock_irqsave"]),
    fexit("acq_read_irq", &["_raw_read_lock_irq"]),
    fexit("acq_read_bh", &["_raw_read_lock_bh"]),
    fexit("acq_read_try", &["_raw_read_trylock"]),
    fexit("acq_write", &["_raw_write_lock"]),
    fexit("acq_write_irqsave", &["_raw_write_lock_irqsave"]),
    fexit("acq_write_irq", &["_raw_write_lock_irq"]),
    fexit("acq_write_bh", &["_raw_write_lock_bh"]),
    fexit("acq_write_try", &["_raw_write_trylock"]),
    fexit("acq_mutex", &["mutex_lock"]),
    fexit("acq_mutex_intr", &["mutex_lock_interruptible"]),
    fexit("acq_mutex_kill", &["mutex_lock_killable"]),
    fexit("acq_mutex_io", &["mutex_lock_io"]),
    fexit("acq_mutex_try", &["mutex_trylock"]),
    fexit("acq_down_read", &["down_read"]),
    fexit("acq_down_read_intr", &["down_read_interruptible"]),
    fexit("acq_down_read_kill", &["down_read_killable"]),
    fexit("acq_down_read_try", &["down_read_trylock"]),
    fexit("acq_down_write", &["down_write"]),
    fexit("acq_down_write_kill", &["down_write_killable"]),
    fexit("acq_down_write_try", &["down_write_trylock"]),
    fentry("rel_spin", &["_raw_spin_unlock"]),
    fentry_copy("rel_spin_2", &["_raw_spin_unlock"], "copy 2"),
    fentry_copy("rel_spin_3", &["_raw_spin_unlock"], "copy 3"),
    fentry("rel_spin_irqrestore", &["_raw_spin_unlock_irqrestore"]),
    fentry_copy(
        "rel_spin_irqrestore_2",
        &["_raw_spin_unlock_irqrestore"],
        "copy 2",
    ),
    fentry_copy(
        "rel_spin_irqrestore_3",
        &["_raw_spin_unlock_irqrestore"],
        "copy 3",
    ),
    fentry("rel_spin_irq", &["_raw_spin_unlock_irq"]),
    fentry_copy("rel_spin_irq_2", &["_raw_spin_unlock_irq"], "copy 2"),
    fentry_copy("rel_spin_irq_3", &["_raw_spin_unlock_irq"], "copy 3"),
    fentry("rel_spin_bh", &["_raw_spin_unlock_bh"]),
    fentry_copy("rel_spin_bh_2", &["_raw_spin_unlock_bh"], "copy 2"),
    fentry_copy("rel_spin_bh_3", &["_raw_spin_unlock_bh"], "copy 3"),
    fentry("rel_read", &["_raw_read_unlock"]),
    fentry_copy("rel_read_2", &["_raw_read_unlock"], "copy 2"),
    fentry_copy("rel_read_3", &["_raw_read_unlock"], "copy 3"),
    fentry("rel_read_irqrestore", &["_raw_read_unlock_irqrestore"]),
    fentry_copy(
        "rel_read_irqrestore_2",
        &["_raw_read_unlock_irqrestore"],
        "copy 2",
    ),
    fentry_copy(
        "rel_read_irqrestore_3",
        &["_raw_read_unlock_irqrestore"],
        "copy 3",
    ),
    fentry("rel_read_irq", &["_raw_read_unlock_irq"]),
    fentry_copy("rel_read_irq_2", &["_raw_read_unlock_irq"], "copy 2"),
    fentry_copy("rel_read_irq_3", &["_raw_read_unlock_irq"], "copy 3"),
    fentry("rel_read_bh", &["_raw_read_unlock_bh"]),
    fentry_copy("rel_read_bh_2", &["_raw_read_unlock_bh"], "copy 2"),
    fentry_copy("rel_read_bh_3", &["_raw_read_unlock_bh"], "copy 3"),
    fentry("rel_write", &["_raw_write_unlock"]),
    fentry_copy("rel_write_2", &["_raw_write_unlock"], "copy 2"),
    fentry_copy("rel_write_3", &["_raw_write_unlock"], "copy 3"),
    fentry("rel_write_irqrestore", &["_raw_write_unlock_irqrestore"]),
    fentry_copy(
        "rel_write_irqrestore_2",
        &["_raw_write_unlock_irqrestore"],
        "copy 2",
    ),
    fentry_copy(
        "rel_write_irqrestore_3",
        &["_raw_write_unlock_irqrestore"],
        "copy 3",
    ),
    fentry("rel_write_irq", &["_raw_write_unlock_irq"]),
    fentry_copy("rel_write_irq_2", &["_raw_write_unlock_irq"], "copy 2"),
    fentry_copy("rel_write_irq_3", &["_raw_write_unlock_irq"], "copy 3"),
    fentry("rel_write_bh", &["_raw_write_unlock_bh"]),
    fentry_copy("rel_write_bh_2", &["_raw_write_unlock_bh"], "copy 2"),
    fentry_copy("rel_write_bh_3", &["_raw_write_unlock_bh"], "copy 3"),
    fentry("rel_mutex", &["mutex_unlock"]),
    fentry_copy("rel_mutex_2", &["mutex_unlock"], "copy 2"),
    fentry_copy("rel_mutex_3", &["mutex_unlock"], "copy 3"),
    fentry("rel_up_read", &["up_read"]),
    fentry_copy("rel_up_read_2", &["up_read"], "copy 2"),
    fentry_copy("rel_up_read_3", &["up_read"], "copy 3"),
    fentry("rel_up_write", &["up_write"]),
    fentry_copy("rel_up_write_2", &["up_write"], "copy 2"),
    fentry_copy("rel_up_write_3", &["up_write"], "copy 3"),
];

/// kprobes at the entry of the acquire functions that leave the interrupt state as it was. The
/// flags a kprobe saves say the state the lock is taken with, which a trampoline can only
/// read through the IRQ-state kfunc (Linux 6.14+): where the kernel lacks it, each takes the
/// place of the fexit program of the same function ([`at_entry_for`]).
pub const ACQUIRE_AT_ENTRY: &[KernelProbe] = &[
    kprobe("kp_acq_spin", &["_raw_spin_lock"]),
    kprobe("kp_acq_spin_bh", &["_raw_spin_lock_bh"]),
    kprobe("kp_acq_read", &["_raw_read_lock"]),
    kprobe("kp_acq_read_bh", &["_raw_read_lock_bh"]),
    kprobe("kp_acq_write", &["_raw_write_lock"]),
    kprobe("kp_acq_write_bh", &["_raw_write_lock_bh"]),
];

/// The kprobe that can take the place of the acquire program `probe` ([`ACQUIRE_AT_ENTRY`]).
pub fn at_entry_for(probe: &KernelProbe) -> Option<&'static KernelProbe> {
    ACQUIRE_AT_ENTRY
        .iter()
        .find(|kprobe| probe.hook == Hook::Fexit && kprobe.targets == probe.targets)
}

/// The rest of the kernel lock functions by kprobe (with [`ACQUIRE_AT_ENTRY`]): the kprobe
/// path, for kernels that refuse trampolines but allow kprobes, for acquisitions where
/// `bpf_get_func_ip` is missing, and for `--attach kprobe`.
/// Acquisitions that cannot fail are followed at their entry; the others by a kretprobe,
/// which sees the result, after one shared kprobe program (`kp_acq_call`) remembered the
/// call; releases by one program per kind of lock. The kernel runs no kprobe program nested
/// in another on a CPU, so a release function has one program, not copies.
pub const KPROBE_LOCKS: &[KernelProbe] = &[
    kprobe("kp_acq_spin_irqsave", &["_raw_spin_lock_irqsave"]),
    kprobe("kp_acq_spin_irq", &["_raw_spin_lock_irq"]),
    kprobe("kp_acq_read_irqsave", &["_raw_read_lock_irqsave"]),
    kprobe("kp_acq_read_irq", &["_raw_read_lock_irq"]),
    kprobe("kp_acq_write_irqsave", &["_raw_write_lock_irqsave"]),
    kprobe("kp_acq_write_irq", &["_raw_write_lock_irq"]),
    kprobe("kp_acq_mutex", &["mutex_lock"]),
    kprobe("kp_acq_mutex_io", &["mutex_lock_io"]),
    kprobe("kp_acq_down_read", &["down_read"]),
    kprobe("kp_acq_down_write", &["down_write"]),
    kprobe("kp_acq_call", &["_raw_spin_trylock"]),
    kretprobe("kr_acq_spin_try", &["_raw_spin_trylock"]),
    kprobe("kp_acq_call", &["_raw_spin_trylock_bh"]),
    kretprobe("kr_acq_spin_try_bh", &["_raw_spin_trylock_bh"]),
    kprobe("kp_acq_call", &["_raw_read_trylock"]),
    kretprobe("kr_acq_read_try", &["_raw_read_trylock"]),
    kprobe("kp_acq_call", &["_raw_write_trylock"]),
    kretprobe("kr_acq_write_try", &["_raw_write_trylock"]),
    kprobe("kp_acq_call", &["mutex_lock_interruptible"]),
    kretprobe("kr_acq_mutex_intr", &["mutex_lock_interruptible"]),
    kprobe("kp_acq_call", &["mutex_lock_killable"]),
    kretprobe("kr_acq_mutex_kill", &["mutex_lock_killable"]),
    kprobe("kp_acq_call", &["mutex_trylock"]),
    kretprobe("kr_acq_mutex_try", &["mutex_trylock"]),
    kprobe("kp_acq_call", &["down_read_interruptible"]),
    kretprobe("kr_acq_down_read_intr", &["down_read_interruptible"]),
    kprobe("kp_acq_call", &["down_read_killable"]),
    kretprobe("kr_acq_down_read_kill", &["down_read_killable"]),
    kprobe("kp_acq_call", &["down_read_trylock"]),
    kretprobe("kr_acq_down_read_try", &["down_read_trylock"]),
    kprobe("kp_acq_call", &["down_write_killable"]),
    kretprobe("kr_acq_down_write_kill", &["down_write_killable"]),
    kprobe("kp_acq_call", &["down_write_trylock"]),
    kretprobe("kr_acq_down_write_try", &["down_write_trylock"]),
    kprobe("kp_rel_spinning", &["_raw_spin_unlock"]),
    kprobe("kp_rel_spinning", &["_raw_spin_unlock_irqrestore"]),
    kprobe("kp_rel_spinning", &["_raw_spin_unlock_irq"]),
    kprobe("kp_rel_spinning", &["_raw_spin_unlock_bh"]),
    kprobe("kp_rel_spinning", &["_raw_read_unlock"]),
    kprobe("kp_rel_spinning", &["_raw_read_unlock_irqrestore"]),
    kprobe("kp_rel_spinning", &["_raw_read_unlock_irq"]),
    kprobe("kp_rel_spinning", &["_raw_read_unlock_bh"]),
    kprobe("kp_rel_spinning", &["_raw_write_unlock"]),
    kprobe("kp_rel_spinning", &["_raw_write_unlock_irqrestore"]),
    kprobe("kp_rel_spinning", &["_raw_write_unlock_irq"]),
    kprobe("kp_rel_spinning", &["_raw_write_unlock_bh"]),
    kprobe("kp_rel_sleeping", &["mutex_unlock"]),
    kprobe("kp_rel_sleeping", &["up_read"]),
    kprobe("kp_rel_sleeping", &["up_write"]),
];

/// One kernel lock function and the two ways to follow it.
#[derive(Clone, Debug)]
pub struct LockFunction {
    /// The function.
    pub name: &'static str,
    /// Its trampoline programs ([`KERNEL_LOCKS`]: one fexit, or a release's copies).
    pub trampolines: Vec<&'static KernelProbe>,
    /// Its kprobe programs ([`ACQUIRE_AT_ENTRY`], [`KPROBE_LOCKS`]: one kprobe, or a
    /// kprobe and a kretprobe).
    pub kprobes: Vec<&'static KernelProbe>,
}

impl LockFunction {
    /// True for a release function.
    pub fn is_release(&self) -> bool {
        self.trampolines.iter().any(|probe| is_release(probe))
    }

    /// True for an acquire function whose IRQ state only a kprobe (or the kfunc) can read:
    /// its kprobe comes first where the kfunc is missing ([`at_entry_for`]).
    pub fn reads_irq_state(&self) -> bool {
        self.trampolines
            .iter()
            .any(|probe| at_entry_for(probe).is_some())
    }
}

/// Every kernel lock function, in [`KERNEL_LOCKS`]' order, with its programs.
pub fn lock_functions() -> Vec<LockFunction> {
    let mut functions: Vec<LockFunction> = Vec::new();
    for probe in KERNEL_LOCKS {
        let name = probe.targets[0];
        match functions.iter_mut().find(|function| function.name == name) {
            Some(function) => function.trampolines.push(probe),
            None => functions.push(LockFunction {
                name,
                trampolines: vec![probe],
                kprobes: ACQUIRE_AT_ENTRY
                    .iter()
                    .chain(KPROBE_LOCKS)
                    .filter(|kprobe| kprobe.targets[0] == name)
                    .collect(),
            }),
        }
    }
    functions
}

/// True for a release program (by trampoline or by kprobe).
pub fn is_release(probe: &KernelProbe) -> bool {
    probe.program.starts_with("rel_") || probe.program.starts_with("kp_rel_")
}

/// The family of kernel locks lock function `function` belongs to, from its name: a family's
/// ordering is followed only when all its release functions are.
pub fn family_of(function: &str) -> Option<&'static str> {
    if function.starts_with("_raw_spin_") {
        Some("spinlock")
    } else if function.starts_with("_raw_read_") || function.starts_with("_raw_write_") {
        Some("rwlock")
    } else if function.starts_with("mutex_") {
        Some("mutex")
    } else if function.starts_with("down_") || function.starts_with("up_") {
        Some("rwsem")
    } else {
        None
    }
}

/// How the refusal of an acquisition whose family's releases cannot be traced begins.
pub const ORDERING_OFF: &str = "ordering checks off";

/// The lock families whose ordering checks are off, from probes' display names and refusal
/// details (`(name, detail)`): their acquisitions were refused because their releases cannot
/// be traced.
pub fn families_off<'a>(probes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<&'static str> {
    let mut off: Vec<&'static str> = probes
        .into_iter()
        .filter(|(_, detail)| detail.starts_with(ORDERING_OFF))
        .filter_map(|(name, _)| family_of(name.split_once(':')?.1.split(' ').next()?))
        .collect();
    off.sort_unstable();
    off.dedup();
    off
}

/// True for the programs that follow acquisitions (whichever way they attach): contention is
/// then accounted where the lock is acquired.
pub fn is_acquisition(program: &str) -> bool {
    program.starts_with("acq_") || program.starts_with("kp_acq_") || program.starts_with("kr_acq_")
}

/// True when `function` is one the trampolines probe (a lock or release function, or the
/// allocator's): a frame inside it is the probe's own, never the caller.
pub fn is_probed_function(function: &str) -> bool {
    KERNEL_LOCKS
        .iter()
        .chain(ALLOCATOR.iter().map(|seed| &seed.trampoline))
        .any(|probe| probe.targets.contains(&function))
}

/// True for a program of a function that has several copies of it (the release programs):
/// when the kernel skips one copy because it is running already on the CPU, another copy of
/// the same call follows the release, so such a skip loses nothing.
pub fn is_copied(program: &str) -> bool {
    KERNEL_LOCKS.iter().any(|probe| {
        probe.program == program
            && KERNEL_LOCKS
                .iter()
                .any(|other| other.copy.is_some() && other.targets == probe.targets)
    })
}

/// The per-CPU allocator's entry point: `pcpu_alloc_noprof` from Linux 6.10, `pcpu_alloc`
/// before (`check` names the one this kernel has).
pub const PCPU_ALLOC_NAMES: [&str; 2] = ["pcpu_alloc_noprof", "pcpu_alloc"];

/// The probes of one of the seed's functions, one of which attaches.
#[derive(Clone, Copy, Debug)]
pub struct SeedProbes {
    /// A trampoline at its entry: the first choice where the IRQ-state kfunc reads the state.
    pub trampoline: KernelProbe,
    /// A kprobe at its entry: the first choice where the kfunc is missing (the saved flags
    /// say the state) or `bpf_get_func_ip` is (the stack pointer says the caller), the
    /// second otherwise.
    pub kprobe: KernelProbe,
    /// The tracepoint on the same path, where neither attaches: no IRQ state there without
    /// the kfunc.
    pub tracepoint: KernelProbe,
}

impl SeedProbes {
    /// The probes in the order to try them: the first that attaches is used (klockstat's
    /// pattern: choose per kernel, say what was chosen).
    pub fn in_order(&self, trampoline_first: bool) -> [&KernelProbe; 3] {
        if trampoline_first {
            [&self.trampoline, &self.kprobe, &self.tracepoint]
        } else {
            [&self.kprobe, &self.trampoline, &self.tracepoint]
        }
    }
}

/// The seed's functions.
pub const ALLOCATOR: &[SeedProbes] = &[
    SeedProbes {
        trampoline: fentry("fn_pcpu_alloc", &PCPU_ALLOC_NAMES),
        kprobe: kprobe("kp_pcpu_alloc", &PCPU_ALLOC_NAMES),
        tracepoint: tp("tp_percpu_alloc", "percpu", &["percpu_alloc_percpu"]),
    },
    SeedProbes {
        trampoline: fentry("fn_free_percpu", &["free_percpu"]),
        kprobe: kprobe("kp_free_percpu", &["free_percpu"]),
        tracepoint: tp("tp_percpu_free", "percpu", &["percpu_free_percpu"]),
    },
    SeedProbes {
        trampoline: fentry("fn_vfree", &["vfree"]),
        kprobe: kprobe("kp_vfree", &["vfree"]),
        tracepoint: tp("tp_free_vmap_area", "vmalloc", &["free_vmap_area_noflush"]),
    },
];

/// Interrupt-handler brackets (they place events where `preempt_count` cannot be read), lock
/// contention, and the scheduler events the held stacks follow: the run-queue lock handed to
/// the next task at `sched_switch`, a task's stacks dropped when it is freed.
pub const TRACEPOINTS: &[KernelProbe] = &[
    tp("tp_sched_switch", "sched", &["sched_switch"]),
    tp("tp_process_free", "sched", &["sched_process_free"]),
    tp("tp_hardirq_entry", "irq", &["irq_handler_entry"]),
    tp("tp_hardirq_exit", "irq", &["irq_handler_exit"]),
    tp("tp_softirq_entry", "irq", &["softirq_entry"]),
    tp("tp_softirq_exit", "irq", &["softirq_exit"]),
    tp("tp_contention_begin", "lock", &["contention_begin"]),
    tp("tp_contention_end", "lock", &["contention_end"]),
];

/// A user-space program and the C library functions it attaches to.
#[derive(Clone, Copy, Debug)]
pub struct UserProbe {
    /// The program's name in the object.
    pub program: &'static str,
    /// True for a uretprobe.
    pub ret: bool,
    /// The C library functions.
    pub functions: &'static [&'static str],
}

/// Every pthread lock function that acquires: the return probe reports success.
pub const PTHREAD_LOCK_FUNCTIONS: &[&str] = &[
    "pthread_mutex_lock",
    "pthread_mutex_trylock",
    "pthread_mutex_timedlock",
    "pthread_rwlock_rdlock",
    "pthread_rwlock_tryrdlock",
    "pthread_rwlock_wrlock",
    "pthread_rwlock_trywrlock",
];

/// pthread mutexes and rwlocks, in attach order: unlocks first, then the return probe, then
/// the entries, so a library probed in the middle of a session (`follow_libc`) never reports
/// an acquisition whose release is not probed yet.
pub const USER_LOCKS: &[UserProbe] = &[
    UserProbe {
        program: "up_mutex_unlock",
        ret: false,
        functions: &["pthread_mutex_unlock"],
    },
    UserProbe {
        program: "up_rwlock_unlock",
        ret: false,
        functions: &["pthread_rwlock_unlock"],
    },
    UserProbe {
        program: "up_lock_return",
        ret: true,
        functions: PTHREAD_LOCK_FUNCTIONS,
    },
    UserProbe {
        program: "up_mutex_lock",
        ret: false,
        functions: &["pthread_mutex_lock", "pthread_mutex_timedlock"],
    },
    UserProbe {
        program: "up_mutex_trylock",
        ret: false,
        functions: &["pthread_mutex_trylock"],
    },
    UserProbe {
        program: "up_rwlock_rdlock",
        ret: false,
        functions: &["pthread_rwlock_rdlock"],
    },
    UserProbe {
        program: "up_rwlock_tryrdlock",
        ret: false,
        functions: &["pthread_rwlock_tryrdlock"],
    },
    UserProbe {
        program: "up_rwlock_wrlock",
        ret: false,
        functions: &["pthread_rwlock_wrlock"],
    },
    UserProbe {
        program: "up_rwlock_trywrlock",
        ret: false,
        functions: &["pthread_rwlock_trywrlock"],
    },
];

/// The benchmark's baseline programs, attached to the same points as [`USER_LOCKS`]: an
/// empty uprobe and an empty uretprobe.
pub const EMPTY_UPROBE: &str = "up_empty";
/// See [`EMPTY_UPROBE`].
pub const EMPTY_URETPROBE: &str = "up_empty_ret";
