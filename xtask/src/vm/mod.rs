//! `cargo xtask vm`: boots stock Debian kernels under qemu and runs locktrace's in-guest tests
//! (issue 4); `cargo xtask vm bench` boots the same guests to run the kernel overhead
//! benchmark instead (see `bench.rs`).
//!
//! For each suite in [`suites::SUITES`]: resolve the suite's current kernel, fetch its image
//! (cached), unpack its headers into the build root of the kernel's own Debian release (its
//! compiler built the kernel), build the test module against them,
//! pack an initramfs with busybox, `locktrace`, the test module and programs, the scripts of
//! tests/vm and trixie's C library, boot it, read the checks from the serial console, then judge
//! on the host what the guest shipped back.
//!
//! Cache (downloads, build root, kernels): `$LOCKTRACE_VM_CACHE`, else
//! /var/cache/locktrace-vm, outside the work tree so fresh clones share it. Per-run output
//! (serial logs, initramfs, shipped files): target/vm/<suite>/. `locktrace` is the workspace's
//! ordinary release build (target/release, or `$CARGO_TARGET_DIR`), dynamically linked: it
//! uprobes its own C library in `check`, which a static build would not map. The guest runs it
//! with trixie's glibc, the host runs the same binary for `locktrace report`.

mod apt;
mod bench;
mod buildroot;
mod cbuild;
mod checks;
mod initramfs;
mod qemu;
mod serial;
mod suites;

use std::{
    env, fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail, ensure};

use self::{
    apt::Apt,
    buildroot::BuildRoot,
    initramfs::Initramfs,
    qemu::{Ending, Guest},
    serial::{Check, Transcript, Verdict},
    suites::{Kernel, Suite},
};

/// Arguments of `cargo xtask vm`.
#[derive(clap::Args)]
pub struct VmArgs {
    /// What the guests run instead of the in-guest tests.
    #[command(subcommand)]
    action: Option<VmAction>,
    /// Debian suites whose kernels to boot (repeatable; default: all of `suites.rs`, for
    /// bench trixie and trixie-backports).
    #[arg(long = "suite", value_name = "SUITE", global = true)]
    suites: Vec<String>,
    /// Hard time limit for one guest, in seconds: the guest is killed and the run fails. Each
    /// locktrace step in the guest has its own limit (tests/vm/guest-tests.sh), so this one
    /// catches hung kernels; a passing guest needs a few minutes [default: 900; for bench
    /// 3600].
    #[arg(long, global = true)]
    timeout: Option<u64>,
    /// How many guests run at once [default: the host's cores]. Each guest is one
    /// single-threaded TCG process: more guests than cores only slow each one down, until
    /// their timers lag enough for the kernel to see RCU stalls.
    #[arg(long, value_name = "N", global = true)]
    parallel: Option<usize>,
    /// Cache directory for downloads, kernels and the build roots [default:
    /// $LOCKTRACE_VM_CACHE, else /var/cache/locktrace-vm].
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,
}

/// What the guests can run besides the in-guest tests.
#[derive(clap::Subcommand)]
enum VmAction {
    /// The kernel overhead benchmark (not part of `cargo xtask test`).
    ///
    /// A lock-heavy workload (tests/programs/lockload.c) runs bare, under every probe with
    /// empty programs (`watch --floor`), under `watch` and under `record`, in one boot per
    /// kernel; prints ops/s and time-per-operation ratios per phase, and each session's
    /// figures.
    Bench {
        /// Only the profile session (the kernel's run time of every program, the workload
        /// once under `watch`), with each program's time printed: for working on the
        /// programs' cost, a few minutes faster than the whole benchmark.
        #[arg(long)]
        profile: bool,
    },
}

/// The default of `--timeout` for the in-guest tests, in seconds.
const TESTS_TIMEOUT: u64 = 900;
/// The default of `--timeout` for the benchmark, in seconds: a guest runs the workload nine
/// times, two of them under full tracing (minutes each); about 10 minutes in all.
const BENCH_TIMEOUT: u64 = 3600;

/// What the guest's /init runs, chosen on the kernel command line (tests/vm/init).
#[derive(Clone, Copy)]
enum GuestScript {
    /// tests/vm/guest-tests.sh.
    Tests,
    /// tests/vm/bench.sh.
    Bench,
    /// tests/vm/bench.sh, its profile session only.
    Profile,
}

impl GuestScript {
    /// What goes on the kernel command line: for /init to pick the script, and for the
    /// benchmark the kernel's longest RCU-stall and soft-lockup thresholds (300 s, 120 s).
    /// Its traced runs take minutes of emulated CPU at full load, and on a busy host a guest's
    /// timers can lag by tens of seconds: the default thresholds (21 s, 20 s) then report
    /// stalls that are the emulation's, and the run would stop there.
    fn cmdline(self) -> &'static str {
        match self {
            GuestScript::Tests => "",
            GuestScript::Bench => {
                "locktrace.run=bench rcupdate.rcu_cpu_stall_timeout=300 watchdog_thresh=60"
            }
            GuestScript::Profile => {
                "locktrace.run=bench locktrace.bench=profile rcupdate.rcu_cpu_stall_timeout=300 \
                 watchdog_thresh=60"
            }
        }
    }

    /// The guest's memory in MiB. The benchmark's recording goes to a tmpfs and takes over a
    /// GB (tests/vm/bench.sh).
    fn memory_mib(self) -> u32 {
        match self {
            GuestScript::Tests => 1024,
            GuestScript::Bench | GuestScript::Profile => 3072,
        }
    }
}

/// Host packages the suite needs, each with a file that shows it installed.
const HOST_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("debootstrap", "/usr/sbin/debootstrap"),
    (
        "debian-archive-keyring",
        "/usr/share/keyrings/debian-archive-keyring.gpg",
    ),
];

/// The guest's scripts, from tests/vm, and where they go in the initramfs.
const SCRIPTS: &[(&str, &str)] = &[
    ("init", "/init"),
    ("protocol.sh", "/tests/protocol.sh"),
    ("guest-tests.sh", "/tests/guest-tests.sh"),
    ("bench.sh", "/tests/bench.sh"),
    ("trigger.sh", "/tests/trigger.sh"),
    ("workload.sh", "/tests/workload.sh"),
];

/// Installs what the VM suite needs on the host (called by `cargo xtask setup`): qemu and
/// debootstrap. Fast when all is present.
pub fn install_prerequisites() -> anyhow::Result<()> {
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if !missing.is_empty() {
        println!("vm: installing {}", missing.join(" "));
        run_command(
            Command::new("apt-get")
                .args(["-q", "update"])
                .stdout(Stdio::null()),
        )?;
        run_command(
            Command::new("apt-get")
                .args(["-q", "-y", "--no-install-recommends", "install"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null()),
        )?;
    }
    Ok(())
}

/// Runs the VM suite, or the benchmark.
pub fn run(args: VmArgs) -> anyhow::Result<()> {
    match args.action {
        None => run_tests(&args),
        Some(VmAction::Bench { profile }) => run_bench(&args, profile),
    }
}

/// Runs the in-guest tests on every selected kernel and judges them.
fn run_tests(args: &VmArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout.unwrap_or(TESTS_TIMEOUT));
    let booted = boot_suites(args, GuestScript::Tests, timeout)?;
    let mut failures = booted.failures;
    let mut summaries = Vec::new();
    for (guest, run) in booted.runs {
        match run.and_then(|(transcript, ending)| {
            guest.judge(transcript, &ending, timeout, &booted.locktrace)
        }) {
            Ok(summary) => {
                if summary.failed() {
                    failures.push(format!(
                        "{}: {}",
                        guest.suite.name,
                        summary.failed_names().join(", ")
                    ));
                }
                summaries.push(summary);
            }
            Err(err) => failures.push(format!("{}: {err:#}", guest.suite.name)),
        }
    }

    println!("\nvm: summary ({:.0?} in all)", started.elapsed());
    for summary in &summaries {
        summary.print_line();
    }
    if !failures.is_empty() {
        bail!("VM tests failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

/// Runs the benchmark on every selected kernel and prints its figures.
fn run_bench(args: &VmArgs, profile: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout.unwrap_or(BENCH_TIMEOUT));
    let load_before = host_load();
    let script = if profile {
        GuestScript::Profile
    } else {
        GuestScript::Bench
    };
    let booted = boot_suites(args, script, timeout)?;
    // Other work on the host slows the guests unevenly: say how busy it was.
    println!(
        "vm bench: host load average (1, 5, 15 min) {load_before} before, {} after; the \
         guests add one each",
        host_load()
    );
    let mut failures = booted.failures;
    for (guest, run) in booted.runs {
        let result = run
            .and_then(|(transcript, ending)| guest.bench(&transcript, &ending, timeout, profile));
        if let Err(err) = result {
            failures.push(format!("{}: {err:#}", guest.suite.name));
        }
    }
    println!("\nvm bench: {:.0?} in all", started.elapsed());
    if !failures.is_empty() {
        bail!("the benchmark failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

/// The host's load averages over 1, 5 and 15 minutes (/proc/loadavg).
fn host_load() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|err| format!("unknown ({err})"))
}

/// The guests of one run after they powered off (or were killed).
struct Booted {
    /// The `locktrace` the guests ran.
    locktrace: PathBuf,
    /// Each guest and what its console said.
    runs: Vec<(Prepared, anyhow::Result<(Transcript, Ending)>)>,
    /// Suites whose guest could not even be prepared.
    failures: Vec<String>,
}

/// Builds everything, prepares a guest per selected suite and boots them side by side, each
/// running `script`.
fn boot_suites(args: &VmArgs, script: GuestScript, timeout: Duration) -> anyhow::Result<Booted> {
    let selected: Vec<&'static Suite> = if args.suites.is_empty() {
        let benching = !matches!(script, GuestScript::Tests);
        suites::SUITES
            .iter()
            .filter(|suite| suite.benched || !benching)
            .collect()
    } else {
        args.suites
            .iter()
            .map(|name| suites::find(name))
            .collect::<anyhow::Result<_>>()?
    };
    let repo = repo_root();
    let cache = args
        .cache_dir
        .clone()
        .or_else(|| env::var_os("LOCKTRACE_VM_CACHE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/cache/locktrace-vm"));
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let out = repo.join("target/vm");

    let locktrace = step("build locktrace", || build_locktrace(&repo))?;
    let userland = step("build root", || {
        BuildRoot::ensure(&cache, suites::USERLAND_ROOT)
    })?;
    let programs = step("test programs", || {
        cbuild::build_programs(&userland, &repo, &out.join("programs"))
    })?;

    let mut failures = Vec::new();
    let mut prepared = Vec::new();
    for suite in selected {
        let parts = GuestParts {
            repo: &repo,
            cache: &cache,
            out: out.join(suite.name),
            userland: &userland,
            locktrace: &locktrace,
            programs: &programs,
        };
        match prepare(suite, &parts) {
            Ok(guest) => prepared.push(guest),
            Err(err) => failures.push(format!("{}: {err:#}", suite.name)),
        }
    }

    let parallel = args
        .parallel
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |cores| cores.get()))
        .max(1);
    let names: Vec<&str> = prepared.iter().map(|guest| guest.suite.name).collect();
    println!(
        "\nvm: booting {} ({parallel} at a time, timeout {timeout:?} each)",
        names.join(", ")
    );
    let booted = Instant::now();
    let runs = side_by_side(&prepared, parallel, |guest| {
        let started = Instant::now();
        let run = guest.boot(timeout, script);
        println!("vm: {} ran in {:.1?}", guest.suite.name, started.elapsed());
        run
    });
    println!("vm: guests ran in {:.1?}", booted.elapsed());
    Ok(Booted {
        locktrace,
        runs: prepared.into_iter().zip(runs).collect(),
        failures,
    })
}

/// Runs `run` on every item, at most `parallel` at a time, in their order (the next one
/// starts when one finishes); returns the results in the same order. A run that panics gives
/// an error.
fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    run: impl Fn(&T) -> anyhow::Result<R> + Sync,
) -> Vec<anyhow::Result<R>> {
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    thread::scope(|scope| {
        for _ in 0..parallel.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = panic::catch_unwind(AssertUnwindSafe(|| run(item)))
                        .unwrap_or_else(|_| Err(anyhow!("the guest's thread panicked")));
                    done.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((index, result));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(PoisonError::into_inner);
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

/// What every guest is made of, besides its kernel.
struct GuestParts<'a> {
    repo: &'a Path,
    cache: &'a Path,
    out: PathBuf,
    /// The chroot that built the programs: the guest's busybox, dash and C library.
    userland: &'a BuildRoot,
    locktrace: &'a Path,
    programs: &'a [PathBuf],
}

/// A guest ready to boot: its kernel, initramfs and output directory.
struct Prepared {
    suite: &'static Suite,
    release: String,
    vmlinuz: PathBuf,
    initramfs: PathBuf,
    out: PathBuf,
}

/// Checks that fail for a known, recorded reason: printed as XFAIL (with the reason) and not
/// failing the run, so the suite still guards everything that works. A known failure that
/// passes is printed as XPASS: delete its line then. Entries are `("suite/check", reason)`,
/// `("check", reason)` for every suite, or a name ending in `*` for every check it starts.
const KNOWN_FAILURES: &[(&str, &str)] = &[
    (
        "bookworm/workload-clean",
        "sometimes (1 run in 3) a false inconsistent_lock_state (softirq) and \
         irq_lock_inversion on \"spinlock (taken in inet_unhash)\": without \
         bpf_get_kmem_cache (6.13+) the engine classes the two locks inet_unhash takes by \
         that one function, the ehash bucket lock (spin_lock_bh at inet_unhash+0x3f, in \
         softirq from tcp_v4_rcv) and a listening socket's ilb2->lock (plain spin_lock at \
         inet_unhash+0xb0, task context, softirqs on, from __tcp_close)",
    ),
    (
        "bullseye/alerts-percpu_softirq",
        "check says context checks are off on 5.10 (no per-CPU __preempt_count in BTF: \
         context comes from irq tracepoints only), yet watch builds the pattern's two \
         atomic_context alerts (non-atomic pcpu_alloc, pcpu_alloc_mutex in softirq) from the \
         softirq context the irq tracepoints give: check's line and the engine disagree on \
         whether that context is enough (the alerts are right; the \
         inconsistent_lock_state is not given)",
    ),
    (
        "bullseye/alerts-kprobe",
        "the same two atomic_context alerts under --attach kprobe while check says context \
         checks are off (see bullseye/alerts-percpu_softirq)",
    ),
];

/// The reason check `name` of `suite` is a known failure. An entry `suite/check` is for that
/// suite only; an entry ending in `*` covers every name it starts.
fn known_failure(suite: &str, name: &str) -> Option<&'static str> {
    KNOWN_FAILURES
        .iter()
        .find(|(known, _)| {
            let (for_suite, pattern) = known.split_once('/').unwrap_or((suite, known));
            for_suite == suite
                && match pattern.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => pattern == name,
                }
        })
        .map(|(_, why)| *why)
}

/// What one kernel verified.
struct Summary {
    suite: &'static str,
    release: String,
    checks: Vec<Check>,
}

impl Summary {
    fn failed(&self) -> bool {
        !self.failed_names().is_empty()
    }

    /// Failed checks that are not known failures.
    fn failed_names(&self) -> Vec<&str> {
        self.failed_where(false)
    }

    /// Failed checks that are (`known`) or are not known failures.
    fn failed_where(&self, known: bool) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|check| {
                !check.pass && known_failure(self.suite, &check.name).is_some() == known
            })
            .map(|check| check.name.as_str())
            .collect()
    }

    fn print_line(&self) {
        let passed: Vec<&str> = self
            .checks
            .iter()
            .filter(|check| check.pass)
            .map(|check| check.name.as_str())
            .collect();
        println!(
            "  {} ({}): {}/{} checks passed: {}",
            self.suite,
            self.release,
            passed.len(),
            self.checks.len(),
            passed.join(" ")
        );
        let failed = self.failed_names();
        if !failed.is_empty() {
            println!("    failed: {}", failed.join(" "));
        }
        let known = self.failed_where(true);
        if !known.is_empty() {
            println!("    known failures: {}", known.join(" "));
        }
    }
}

/// Resolves one suite's kernel, fetches it and builds its initramfs.
fn prepare(suite: &'static Suite, parts: &GuestParts) -> anyhow::Result<Prepared> {
    println!("\nvm: {} — {}", suite.name, suite.about);
    let apt = Apt::new(parts.cache, suite.name)?;
    let kernel = step("resolve the kernel", || {
        apt.update()?;
        suites::resolve(suite, &apt)
    })?;
    println!(
        "vm: {}: kernel {} ({} {})",
        suite.name,
        kernel.release(),
        kernel.image_package,
        kernel.version
    );
    let downloads = parts.cache.join("downloads");
    let vmlinuz = step("kernel image", || {
        kernel_image(&kernel, &apt, parts.cache, &downloads)
    })?;
    let module_root = step("module build root", || {
        BuildRoot::ensure(parts.cache, suite.module_root)
    })?;
    step("kernel headers", || {
        module_root.install_headers(&kernel, &apt, &downloads)
    })?;
    let module = step("test module", || {
        cbuild::build_module(&module_root, &kernel, parts.repo, &parts.out)
    })?;
    let initramfs = parts.out.join("initramfs.cpio");
    step("initramfs", || pack_initramfs(parts, &module, &initramfs))?;
    Ok(Prepared {
        suite,
        release: kernel.release(),
        vmlinuz,
        initramfs,
        out: parts.out.clone(),
    })
}

impl Prepared {
    fn log(&self) -> PathBuf {
        self.out.join("serial.log")
    }

    /// Boots the guest running `script` and reads its console.
    fn boot(&self, timeout: Duration, script: GuestScript) -> anyhow::Result<(Transcript, Ending)> {
        qemu::boot(&Guest {
            kernel: &self.vmlinuz,
            initramfs: &self.initramfs,
            log: &self.log(),
            timeout,
            cmdline: script.cmdline(),
            memory_mib: script.memory_mib(),
        })
    }

    /// Saves what the guest shipped, judges it and prints every check.
    fn judge(
        &self,
        mut transcript: Transcript,
        ending: &Ending,
        timeout: Duration,
        locktrace: &Path,
    ) -> anyhow::Result<Summary> {
        let suite = self.suite;
        println!("\nvm: {} ({})", suite.name, self.release);
        let shipped = self.save_shipped(&transcript)?;
        let mut checks = vec![guest_run(&transcript, ending, timeout)];
        checks.append(&mut transcript.checks);
        checks.extend(checks::judge(suite, &transcript.files, locktrace, &shipped));
        for err in &transcript.errors {
            checks.push(Check {
                name: "console-transfer".into(),
                pass: false,
                detail: err.clone(),
            });
        }
        let release = transcript
            .kernel_release
            .clone()
            .unwrap_or_else(|| self.release.clone());
        if release != self.release {
            checks.push(Check {
                name: "kernel-release".into(),
                pass: false,
                detail: format!("guest runs {release}, expected {}", self.release),
            });
        }
        for check in &checks {
            let known = known_failure(suite.name, &check.name);
            let status = match (check.pass, known) {
                (true, None) => "PASS",
                (true, Some(_)) => "XPASS",
                (false, None) => "FAIL",
                (false, Some(_)) => "XFAIL",
            };
            println!("  {status:<5} {:<24} {}", check.name, check.detail);
            if let (false, Some(why)) = (check.pass, known) {
                println!("        known failure: {why}");
            }
        }
        let summary = Summary {
            suite: suite.name,
            release,
            checks,
        };
        if summary.failed() {
            print_log_tail(&self.log())?;
        }
        Ok(summary)
    }
}

impl Prepared {
    /// Saves the files the guest shipped in <out>/shipped; returns that directory. Only this
    /// run's files: a stale one must not stand in for a step that failed.
    fn save_shipped(&self, transcript: &Transcript) -> anyhow::Result<PathBuf> {
        let shipped = self.out.join("shipped");
        if shipped.exists() {
            fs::remove_dir_all(&shipped)?;
        }
        fs::create_dir_all(&shipped)?;
        for (name, bytes) in &transcript.files {
            fs::write(shipped.join(name), bytes)?;
        }
        Ok(shipped)
    }

    /// Prints the benchmark's figures, then any failed check (the guest's run and each of its
    /// workload runs and sessions); fails when there is one.
    fn bench(
        &self,
        transcript: &Transcript,
        ending: &Ending,
        timeout: Duration,
        profile: bool,
    ) -> anyhow::Result<()> {
        let release = transcript
            .kernel_release
            .as_deref()
            .unwrap_or(&self.release);
        println!("\nvm bench: {} ({release})", self.suite.name);
        let figures = bench::Figures::parse(&transcript.bench)?;
        figures.print();
        if profile {
            println!("{}", bench::program_times(&fs::read_to_string(self.log())?));
        }
        let shipped = self.save_shipped(transcript)?;
        if let Some(alerts) = transcript.files.get(bench::ALERTS_FILE) {
            let lines = bench::alert_lines(alerts);
            println!(
                "watch's alerts on the workload: {} ({})",
                lines.len(),
                shipped.join(bench::ALERTS_FILE).display()
            );
            for line in lines {
                println!("  {line}");
            }
        }
        let run = guest_run(transcript, ending, timeout);
        let errors: Vec<Check> = transcript
            .errors
            .iter()
            .map(|err| Check {
                name: "console-transfer".into(),
                pass: false,
                detail: err.clone(),
            })
            .collect();
        let failed: Vec<&Check> = std::iter::once(&run)
            .chain(&transcript.checks)
            .chain(&errors)
            .filter(|check| !check.pass)
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        for check in &failed {
            println!("  FAIL  {:<24} {}", check.name, check.detail);
        }
        print_log_tail(&self.log())?;
        let names: Vec<&str> = failed.iter().map(|check| check.name.as_str()).collect();
        bail!("failed: {}", names.join(", "))
    }
}

/// Whether the guest ran to its single result line and powered off.
fn guest_run(transcript: &Transcript, ending: &Ending, timeout: Duration) -> Check {
    let verdict = transcript.verdict().map(|verdict| match verdict {
        Verdict::Pass => "PASS".to_owned(),
        Verdict::Fail(count) => format!("FAIL {count}"),
    });
    let (pass, detail) = match (ending, verdict) {
        (Ending::PoweredOff, Ok(verdict)) => (true, format!("guest result {verdict}, powered off")),
        (Ending::PoweredOff, Err(err)) => (false, format!("{err:#}")),
        (Ending::TimedOut, _) => (
            false,
            format!(
                "no result within {timeout:?}: guest killed (vCPUs at {}; nokaslr)",
                transcript.stuck_at.join(" ")
            ),
        ),
        (Ending::KernelFailure(line), _) => (false, format!("kernel failure: {line}")),
    };
    Check {
        name: "guest-run".into(),
        pass,
        detail,
    }
}

/// Runs one step, printing how long it took.
fn step<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let started = Instant::now();
    let result = f().with_context(|| what.to_owned());
    println!("vm: {what}: {:.1?}", started.elapsed());
    result
}

/// The kernel's vmlinuz, from the cache or downloaded and unpacked into it.
fn kernel_image(
    kernel: &Kernel,
    apt: &Apt,
    cache: &Path,
    downloads: &Path,
) -> anyhow::Result<PathBuf> {
    let dir = cache.join("kernels").join(kernel.release());
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.exists() {
        return Ok(vmlinuz);
    }
    let deb = apt.download(&kernel.image_package, downloads)?;
    let unpacked = downloads.join(format!("{}.unpacked", kernel.image_package));
    if unpacked.exists() {
        fs::remove_dir_all(&unpacked)?;
    }
    // 6.12: ./boot/vmlinuz-<release>; 7.x: ./usr/lib/modules/<release>/vmlinuz.unsigned.
    apt::extract(&deb, &unpacked, &["*/vmlinuz*"])?;
    let found = find_file(&unpacked, "vmlinuz")?
        .with_context(|| format!("no vmlinuz in {}", deb.display()))?;
    fs::create_dir_all(&dir)?;
    fs::rename(found, &vmlinuz)?;
    fs::remove_dir_all(&unpacked)?;
    fs::remove_file(&deb)?;
    Ok(vmlinuz)
}

/// The first regular file under `dir` whose name starts with `prefix`.
fn find_file(dir: &Path, prefix: &str) -> anyhow::Result<Option<PathBuf>> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if let Some(found) = find_file(&entry.path(), prefix)? {
                return Ok(Some(found));
            }
        } else if kind.is_file() && entry.file_name().to_string_lossy().starts_with(prefix) {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// Packs busybox, dash, the scripts, locktrace, the test programs and module, and the shared
/// libraries they need.
fn pack_initramfs(parts: &GuestParts, module: &Path, dest: &Path) -> anyhow::Result<()> {
    let mut archive = Initramfs::default();
    for dir in [
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
        "/root",
        "/etc",
        "/tests",
        "/lib",
        "/lib64",
        "/lib/x86_64-linux-gnu",
    ] {
        archive.dir(dir);
    }
    archive.char_device("/dev/console", 0o600, 5, 1);
    archive.copy(
        "/bin/busybox",
        0o755,
        &parts.userland.path("/usr/bin/busybox"),
    )?;
    archive.symlink("/bin/sh", "busybox");
    // A dynamically linked shell, for the commands that `locktrace watch` spawns.
    let dash = parts.userland.path("/usr/bin/dash");
    archive.copy("/usr/bin/dash", 0o755, &dash)?;
    for (script, path) in SCRIPTS {
        archive.copy(path, 0o755, &parts.repo.join("tests/vm").join(script))?;
    }
    let patterns: Vec<&str> = checks::PATTERNS.iter().map(|(name, _)| *name).collect();
    archive.file(
        "/tests/patterns",
        0o644,
        format!("{}\n", patterns.join(" ")).as_bytes(),
    );
    archive.copy("/usr/bin/locktrace", 0o755, parts.locktrace)?;
    for program in parts.programs {
        let name = program
            .file_name()
            .context("program name")?
            .to_string_lossy();
        archive.copy(&format!("/tests/{name}"), 0o755, program)?;
    }
    archive.copy("/tests/locktrace_test.ko", 0o644, module)?;
    let mut dynamic = vec![dash, parts.locktrace.to_path_buf()];
    dynamic.extend_from_slice(parts.programs);
    for library in parts.userland.libraries(&dynamic)? {
        ensure!(
            library.starts_with("/lib/x86_64-linux-gnu/") || library.starts_with("/lib64/"),
            "unexpected library location {library}"
        );
        archive.copy(&library, 0o755, &parts.userland.path(&library))?;
    }
    archive.write(dest)
}

/// Builds `locktrace` (release) in the workspace's target directory; returns its path.
fn build_locktrace(repo: &Path) -> anyhow::Result<PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo)
        .args(["build", "--release", "-p", "tracer", "--bin", "locktrace"])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    ensure!(output.status.success(), "cargo build of locktrace failed");
    let mut executable = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "locktrace"
            && let Some(path) = message["executable"].as_str()
        {
            executable = Some(PathBuf::from(path));
        }
    }
    executable.context("cargo reported no locktrace executable")
}

/// The workspace root (xtask's parent).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Prints the end of a guest's serial log.
fn print_log_tail(log: &Path) -> anyhow::Result<()> {
    let text = fs::read(log)?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    println!("  --- last lines of {} ---", log.display());
    for line in &lines[lines.len().saturating_sub(40)..] {
        println!("  | {}", line.trim_end_matches('\r'));
    }
    Ok(())
}

/// Runs a command, failing with its status.
fn run_command(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    ensure!(
        status.success(),
        "{:?} failed: {status}",
        command.get_program()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_runs_at_most_n_at_once_and_keeps_the_order() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<u64> = vec![30, 5, 20, 1, 10];
        let results = side_by_side(&items, 2, |&ms| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(ms));
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(ms * 2)
        });
        let results: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, vec![60, 10, 40, 2, 20]);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_panicking_run_is_an_error_and_the_others_still_run() {
        let results = side_by_side(&[1, 2, 3], 1, |&n| {
            assert_ne!(n, 2, "guest 2 breaks");
            Ok(n)
        });
        assert_eq!(results.len(), 3);
        assert_eq!(*results[0].as_ref().unwrap(), 1);
        assert!(results[1].is_err());
        assert_eq!(*results[2].as_ref().unwrap(), 3);
    }
}
