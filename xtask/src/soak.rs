//! `cargo xtask soak`: does a long session stay flat? issue 11's case: `locktrace watch
//! --json --all-user --no-kernel` while thousands of short-lived processes take pthread locks
//! (`lockpatterns abba`, one after the other, each a new process with its own threads), with
//! locktrace's resident memory read from `/proc` after a warm-up, once a minute, and at the
//! end. A benchmark, not a test: it prints figures and judges nothing.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStderr, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{
    setup::run_checked,
    tasks::{build_lockpatterns, workspace_root},
};

/// Arguments of `cargo xtask soak`.
#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long the processes run, in minutes (the run: 10).
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// How long before the first memory reading, in seconds: the first run's classes, the
    /// symbolizer's files, the allocator's arenas.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Processes started per second (the run: 18,360 in 10 minutes, about 30).
    #[arg(long, default_value_t = 30)]
    rate: u32,
    /// How long each process lives after its locks, in milliseconds: 0 runs `lockpatterns
    /// abba`, which exits at once (a few ms: gone before locktrace reads its facts, every
    /// 10 ms, so its binary is never known); more runs `abba-wait` and kills it then.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    linger: u64,
    /// The locktrace binary to soak [default: this tree's, built in release].
    #[arg(long, value_name = "PATH")]
    locktrace: Option<std::path::PathBuf>,
}

/// Builds locktrace (release) and the test program, runs the soak and prints its figures.
pub fn run(args: SoakArgs) -> anyhow::Result<()> {
    if !(args.minutes > 0.0 && args.minutes < 24.0 * 60.0) {
        bail!("--minutes must be more than 0 and less than a day");
    }
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    let root = workspace_root();
    let binary = match &args.locktrace {
        Some(path) => path.clone(),
        None => {
            let build = ["build", "--release", "-p", "tracer", "--bin", "locktrace"];
            run_checked(Command::new("cargo").current_dir(&root).args(build))?;
            root.join("target/release/locktrace")
        }
    };
    let program = build_lockpatterns(&root)?;
    let mut locktrace = Command::new(binary)
        .args(["watch", "--json", "--all-user", "--no-kernel"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting locktrace")?;
    let stderr = match wait_attached(&mut locktrace) {
        Ok(stderr) => stderr,
        Err(err) => {
            let _ = locktrace.kill();
            let _ = locktrace.wait();
            return Err(err);
        }
    };
    // Read all along, so that locktrace never blocks on a full pipe.
    let summary = std::thread::spawn(move || summary_line(stderr));
    let result = soak(locktrace.id(), &program, &args);
    // SIGINT: the session stops cleanly and prints its summary.
    interrupt(locktrace.id());
    let status = locktrace.wait()?;
    let summary = summary.join().expect("the stderr reader")?;
    result?.print(&summary);
    if !status.success() && status.code() != Some(2) {
        bail!("locktrace exited with {status}");
    }
    Ok(())
}

/// What the soak measured.
struct Figures {
    processes: u64,
    elapsed: Duration,
    rss_start_kb: u64,
    rss_end_kb: u64,
    processes_at_start: u64,
}

impl Figures {
    fn print(&self, summary: &str) {
        let machine = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!("soak: kernel {}, {cores} cores", machine.trim());
        println!(
            "soak: {} processes traced in {:.0} s ({:.0}/s)",
            self.processes,
            self.elapsed.as_secs_f64(),
            self.processes as f64 / self.elapsed.as_secs_f64()
        );
        let after = self.processes - self.processes_at_start;
        let growth = self.rss_end_kb as f64 - self.rss_start_kb as f64;
        println!(
            "soak: locktrace RSS {} kB after warm-up, {} kB at the end: {:+.0} kB over {after} \
             processes ({:+.1} bytes each)",
            self.rss_start_kb,
            self.rss_end_kb,
            growth,
            growth * 1024.0 / after.max(1) as f64
        );
        let counter = |name: &str| {
            summary
                .split_once(&format!("{name} "))
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                .unwrap_or("0")
                .to_string()
        };
        println!("soak: stack_failed {}", counter("stack_failed"));
        println!("soak: {summary}");
    }
}

/// Runs `lockpatterns abba` `--rate` times a second for the soak's duration, reading
/// locktrace's memory after the warm-up, each minute and at the end.
fn soak(pid: u32, program: &Path, args: &SoakArgs) -> anyhow::Result<Figures> {
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let warmup = Duration::from_secs(args.warmup).min(duration / 2);
    let started = Instant::now();
    let mut processes = 0u64;
    let mut start = None;
    let mut next_reading = started + warmup;
    let period = Duration::from_secs(1) / args.rate;
    while started.elapsed() < duration {
        let due = started + period * processes as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        run_one(program, args.linger)?;
        processes += 1;
        if Instant::now() >= next_reading {
            let rss = rss_kb(pid)?;
            println!(
                "soak: {:>4.0} s, {processes} processes, locktrace RSS {rss} kB",
                started.elapsed().as_secs_f64()
            );
            start.get_or_insert((rss, processes));
            next_reading += Duration::from_secs(60);
        }
    }
    let (rss_start_kb, processes_at_start) = start.context("no reading after the warm-up")?;
    // The last processes are forgotten two seconds after they exit.
    std::thread::sleep(Duration::from_secs(3));
    Ok(Figures {
        processes,
        elapsed: started.elapsed(),
        rss_start_kb,
        rss_end_kb: rss_kb(pid)?,
        processes_at_start,
    })
}

/// Reads locktrace's standard error until it says its probes are attached; the rest of it.
fn wait_attached(locktrace: &mut Child) -> anyhow::Result<BufReader<ChildStderr>> {
    let stderr = locktrace.stderr.take().context("locktrace's stderr")?;
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("locktrace stopped before attaching");
        }
        eprint!("{line}");
        if line.ends_with(" probes attached\n") {
            return Ok(reader);
        }
    }
}

/// Echoes locktrace's standard error to its end, but the summary line, returned.
fn summary_line(stderr: BufReader<ChildStderr>) -> anyhow::Result<String> {
    let mut summary = String::new();
    for line in stderr.lines() {
        let line = line?;
        if line.starts_with("locktrace: followed ") {
            summary = line;
        } else {
            eprintln!("{line}");
        }
    }
    Ok(summary)
}

/// `VmRSS` of `pid`, in kB.
fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

/// One process taking lock_a and lock_b in both orders, living `linger` ms after.
fn run_one(program: &Path, linger: u64) -> anyhow::Result<()> {
    let pattern = if linger == 0 { "abba" } else { "abba-wait" };
    let mut child = Command::new(program)
        .arg(pattern)
        .stdout(Stdio::null())
        .spawn()
        .context("running lockpatterns")?;
    if linger > 0 {
        std::thread::sleep(Duration::from_millis(linger));
        child.kill()?;
        child.wait()?;
        return Ok(());
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("lockpatterns abba exited with {status}");
    }
    Ok(())
}

/// Sends SIGINT to `pid` (locktrace, which stops its session cleanly on it).
fn interrupt(pid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}
