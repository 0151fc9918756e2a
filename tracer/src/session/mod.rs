//! A live tracing session: attach the probes, read the facts ring buffer on a timer (the
//! programs never wake the reader: see tracer-ebpf's emit.rs) in a tokio loop, name what the
//! facts point at, and hand them to a [`Sink`] (the trace-file recorder or the live engine)
//! with the programs' counters and contention figures once a second, until the duration ends,
//! the traced command exits, or SIGINT/SIGTERM arrives. Whatever ends the session, the sink is
//! finished: a recording is always left valid.

mod child;
pub mod decode;
mod process_maps;
pub mod record;
pub mod status;
pub mod symbolize;
pub mod watch;

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::maps::MapData;
use thiserror::Error;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc::UnboundedReceiver,
};
use tracer_common::Counter;

use crate::{
    fact::FactRecord,
    metrics::{EngineFigures, Metrics},
    probes::{ProbeError, ProbeOptions, Probes, SessionMaps, UserTarget},
    symbols::KernelSymbols,
    tracefile::{ContentionSnapshot, DropCounts, ProbeStatus, TraceError},
};
pub use child::ChildStdout;
use child::{ChildEvent, GatedChild};
use status::Counters;
use symbolize::Namer;

/// What can end a session with an error.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The probes could not be loaded or attached.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The traced command could not be started.
    #[error("cannot start {command}")]
    Spawn {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel symbol table could not be read.
    #[error("cannot read kernel symbols from {path}")]
    Symbols {
        /// The file (/proc/kallsyms or the `--symbols` file).
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The trace file failed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// Reading the ring buffer or another local operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where the facts of a session go.
pub trait Sink {
    /// The probes are attached: a last chance to write headers.
    fn start(&mut self, probes: &[ProbeStatus]) -> Result<(), SessionError>;
    /// A batch of named facts, in ring-buffer order.
    fn facts(&mut self, facts: &[FactRecord], namer: &mut Namer) -> Result<(), SessionError>;
    /// The programs' counters, cumulative since the start, once a second and at the end.
    fn drops(&mut self, drops: &DropCounts) -> Result<(), SessionError>;
    /// Contention figures by class, cumulative since the start, once a second and at the end.
    fn contention(
        &mut self,
        snapshot: &ContentionSnapshot,
        namer: &mut Namer,
    ) -> Result<(), SessionError>;
    /// Figures for the status line (engine size, alerts so far).
    fn status(&self) -> String;
    /// The engine's figures for `--metrics`, from a sink that runs the engine.
    fn engine_figures(&self) -> Option<EngineFigures> {
        None
    }
    /// The session is over (normally or not): flush everything.
    fn finish(&mut self, namer: &mut Namer, duration: Duration) -> Result<(), SessionError>;
}

/// How to run a session.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Spawn and trace this command; stop when it exits.
    pub command: Vec<String>,
    /// Trace the pthread locks of this running process.
    pub pid: Option<u32>,
    /// Trace the pthread locks of every process.
    pub all_user: bool,
    /// Attach the kernel probes.
    pub kernel: bool,
    /// A System.map or kallsyms copy to name kernel addresses with (default /proc/kallsyms).
    pub symbols: Option<PathBuf>,
    /// Where the command's standard output goes.
    pub child_stdout: Option<ChildStdout>,
    /// Attach empty user-space programs (the benchmark's bare-uprobe baseline).
    pub empty_user_programs: bool,
    /// Attach every probe with its program switched off (the kernel benchmark's floor).
    pub floor: bool,
    /// Publish the session's figures here once a second (`--metrics`).
    pub metrics: Option<Metrics>,
}

/// How a session ended.
#[derive(Debug)]
pub struct SessionSummary {
    /// Facts read.
    pub facts: u64,
    /// Facts read, by kind (`chain`, `usage`, `pcpu_alloc` ...).
    pub by_kind: std::collections::BTreeMap<&'static str, u64>,
    /// Lock operations (acquisitions and releases) the programs followed.
    pub lock_ops: u64,
    /// The programs' counters and other losses, by name.
    pub drops: DropCounts,
    /// The traced command's exit status, when there was one.
    pub command_status: Option<i32>,
    /// Why the session stopped.
    pub stopped_by: &'static str,
}

/// How long to keep reading after the traced command exits: events still in flight.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);
/// How often the ring is read (the programs never wake the reader): the longest an alert
/// waits. 16 MiB of ring per 10 ms is room for about 500,000 facts a second, far more than
/// even a cold start of a busy kernel brings.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// How often the traced command's C library is looked up again (it may execute another
/// program at any time).
const LIBC_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Most facts handed to the sink at once.
const BATCH: usize = 1024;

/// Runs a session to its end, feeding `sink`. Prints what did not attach (one line per
/// reason) and, on a terminal, a live status line, to standard error.
pub async fn run(
    options: &SessionOptions,
    sink: &mut dyn Sink,
) -> Result<SessionSummary, SessionError> {
    // First of all: a signal from now on stops the session cleanly rather than killing us.
    let mut signals = Signals::install()?;
    // The table itself is read after attaching (see below), but a bad path fails first.
    if let Some(path) = &options.symbols {
        std::fs::File::open(path).map_err(|source| SessionError::Symbols {
            path: path.clone(),
            source,
        })?;
    }
    // A child that never gets released exits by itself when the gate closes.
    let mut child = spawn_command(options)?;
    let (mut probes, maps) = Probes::load(&probe_options(options, child.as_ref()))?;
    // Every probe is attached: the session starts here, for all of them at once (events
    // wait in the ring until the symbol table below is read).
    probes.start_tracing()?;
    announce(&probes, sink, options.metrics.as_ref())?;

    // After attaching: kallsyms then names our own programs and trampolines, which head every
    // kernel stack the probes take and must be recognized to be skipped.
    let mut namer = Namer::new(load_kernel_symbols(options.symbols.as_deref())?);
    namer.set_percpu_vars(probes.percpu_vars());
    let child_events = release_command(child.as_mut(), &options.command)?;

    let mut live = Live {
        probes,
        maps,
        namer,
        counters: Counters::default(),
        batch: Vec::with_capacity(BATCH),
        sink,
        metrics: options.metrics.as_ref(),
        show_status: std::io::stderr().is_terminal(),
    };
    let started = Instant::now();
    let (stopped_by, command_status) = live
        .until_stopped(
            &mut signals,
            child.as_ref().map(GatedChild::pid),
            child_events,
            options.duration,
        )
        .await?;
    let drops = live.wind_down().await?;
    live.sink.finish(&mut live.namer, started.elapsed())?;
    Ok(SessionSummary {
        facts: live.counters.facts,
        by_kind: live.counters.total,
        lock_ops: live.counters.lock_ops,
        drops,
        command_status,
        stopped_by,
    })
}

/// SIGINT and SIGTERM, caught: either ends the session cleanly.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, SessionError> {
        let install = |kind, what| signal(kind).map_err(|source| SessionError::Io { what, source });
        Ok(Signals {
            interrupt: install(SignalKind::interrupt(), "installing the SIGINT handler")?,
            terminate: install(SignalKind::terminate(), "installing the SIGTERM handler")?,
        })
    }
}

/// Spawns the command to trace, if there is one, held at its gate until the probes are
/// attached.
fn spawn_command(options: &SessionOptions) -> Result<Option<GatedChild>, SessionError> {
    if options.command.is_empty() {
        return Ok(None);
    }
    let stdout = options.child_stdout.unwrap_or(ChildStdout::Inherit);
    GatedChild::spawn(&options.command, stdout)
        .map(Some)
        .map_err(|source| SessionError::Spawn {
            command: options.command.join(" "),
            source,
        })
}

/// What to attach: the user-space target is the command, else `--pid`, else every process
/// under `--all-user`.
fn probe_options(options: &SessionOptions, child: Option<&GatedChild>) -> ProbeOptions {
    let user = match (child, options.pid, options.all_user) {
        (Some(child), _, _) => Some(UserTarget::Process(child.pid())),
        (None, Some(pid), _) => Some(UserTarget::Process(pid)),
        (None, None, true) => Some(UserTarget::AllProcesses),
        (None, None, false) => None,
    };
    ProbeOptions {
        kernel: options.kernel,
        user,
        empty_user_programs: options.empty_user_programs,
        floor: options.floor,
    }
}

/// Says what attached (and, one line per reason, what did not), and tells the sink and
/// `--metrics` that the session has started.
fn announce(
    probes: &Probes,
    sink: &mut dyn Sink,
    metrics: Option<&Metrics>,
) -> Result<(), SessionError> {
    for line in probes.not_attached_summary() {
        notice(format_args!("locktrace: {line}"));
    }
    let attached = probes
        .attachments()
        .iter()
        .filter(|a| a.is_attached())
        .count();
    notice(format_args!("locktrace: {attached} probes attached"));
    sink.start(&probes.statuses())?;
    if let Some(metrics) = metrics {
        metrics.publish(|figures| {
            figures.started = Some(std::time::SystemTime::now());
            figures.probes_attached = attached as u64;
        });
    }
    Ok(())
}

/// Lets the traced command run, watching for its exit; `None` without a command.
fn release_command(
    child: Option<&mut GatedChild>,
    command: &[String],
) -> Result<Option<UnboundedReceiver<ChildEvent>>, SessionError> {
    let Some(child) = child else {
        return Ok(None);
    };
    let (child_tx, child_rx) = tokio::sync::mpsc::unbounded_channel::<ChildEvent>();
    child::watch(child.pid(), child_tx);
    child.release().map_err(|source| SessionError::Spawn {
        command: command.join(" "),
        source,
    })?;
    Ok(Some(child_rx))
}

/// A session once its probes are attached: the maps it reads, what names the facts, and
/// where they go.
struct Live<'a> {
    probes: Probes,
    maps: SessionMaps,
    namer: Namer,
    counters: Counters,
    /// Facts read and named, not yet handed to the sink.
    batch: Vec<FactRecord>,
    sink: &'a mut dyn Sink,
    metrics: Option<&'a Metrics>,
    /// Standard error is a terminal: keep a status line there.
    show_status: bool,
}

impl Live<'_> {
    /// Reads the ring every [`DRAIN_INTERVAL`], the counters and contention figures every
    /// second, and follows the command's C library, until the command exits, a signal
    /// arrives or `duration` ends. Returns why it stopped and the command's exit status.
    async fn until_stopped(
        &mut self,
        signals: &mut Signals,
        child_pid: Option<u32>,
        mut child_events: Option<UnboundedReceiver<ChildEvent>>,
        duration: Option<Duration>,
    ) -> Result<(&'static str, Option<i32>), SessionError> {
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // The programs never wake us (see tracer-ebpf's emit.rs): the ring is read on this
        // timer.
        let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
        let mut libc_tick = tokio::time::interval(LIBC_CHECK_INTERVAL);
        let has_child = child_events.is_some();
        loop {
            tokio::select! {
                _ = drain_tick.tick() => {
                    self.probes.tick_clock()?;
                    self.drain()?;
                }
                // The command was probed through locktrace's own C library before it
                // executed, and may execute other programs at any time: keep its real
                // library probed.
                _ = libc_tick.tick(), if child_pid.is_some() => {
                    if let Some(pid) = child_pid {
                        self.follow_libc(pid)?;
                    }
                }
                _ = tick.tick() => self.each_second()?,
                event = next_child_event(&mut child_events), if has_child => match event {
                    // Stopped at exit with its memory intact: keep its mappings and name
                    // what it left in the ring before letting it go.
                    Some(ChildEvent::Exiting(done)) => {
                        if let Some(pid) = child_pid {
                            self.namer.snapshot_process(pid);
                        }
                        self.drain()?;
                        drop(done);
                    }
                    Some(ChildEvent::Exited(status)) => {
                        return Ok(("command exited", Some(status)));
                    }
                    None => return Ok(("command exited", None)),
                },
                _ = signals.interrupt.recv() => return Ok(("SIGINT", None)),
                _ = signals.terminate.recv() => return Ok(("SIGTERM", None)),
                _ = sleep_until(deadline) => return Ok(("duration elapsed", None)),
            }
        }
    }

    /// Stops the programs before anything is detached, reads what is still in flight, hands
    /// the sink the last counters and contention figures, and says which programs the kernel
    /// skipped. Returns the last counters.
    async fn wind_down(&mut self) -> Result<DropCounts, SessionError> {
        self.probes.stop_tracing()?;
        let drain_until = Instant::now() + DRAIN_AFTER_EXIT;
        loop {
            self.drain()?;
            if Instant::now() >= drain_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drops = drop_counts(&self.probes, &mut self.counters);
        self.sink.drops(&drops)?;
        self.contention()?;
        if self.show_status {
            notice(format_args!(""));
        }
        report_recursion_misses(&self.probes);
        report_run_times(&self.probes);
        Ok(drops)
    }

    /// Once a second: forget exited processes, hand the sink the counters and contention
    /// figures, publish `--metrics`, redraw the status line.
    fn each_second(&mut self) -> Result<(), SessionError> {
        self.namer.forget_exited();
        let drops = drop_counts(&self.probes, &mut self.counters);
        self.sink.drops(&drops)?;
        if let Some(metrics) = self.metrics {
            publish(metrics, &self.counters, drops, &*self.sink);
        }
        self.contention()?;
        if self.show_status {
            let line = self.counters.status_line(&self.sink.status());
            let mut stderr = std::io::stderr();
            let _ = write!(stderr, "\r\x1b[K{line}");
            let _ = stderr.flush();
        }
        Ok(())
    }

    /// Hands the sink the programs' contention figures, their classes named.
    fn contention(&mut self) -> Result<(), SessionError> {
        let snapshot = contention_snapshot(&self.maps.contention);
        self.namer.observe_contention(&snapshot, &self.maps.names);
        self.sink.contention(&snapshot, &mut self.namer)
    }

    /// Probes the C library process `pid` maps now, if it is not probed yet.
    fn follow_libc(&mut self, pid: u32) -> Result<(), SessionError> {
        if let Some(libc) = self.probes.follow_libc(pid)? {
            notice(format_args!(
                "locktrace: the command maps another C library, now probed too: {}",
                libc.display()
            ));
        }
        Ok(())
    }

    /// Reads everything in the ring, in batches, through the namer into the sink.
    fn drain(&mut self) -> Result<(), SessionError> {
        loop {
            self.batch.clear();
            while self.batch.len() < BATCH {
                let Some(item) = self.maps.facts.next() else {
                    break;
                };
                match decode::decode(&item)
                    .and_then(|fact| self.namer.observe(&fact, &self.maps.names))
                {
                    Some(fact) => {
                        self.counters.count(&fact);
                        self.batch.push(fact);
                    }
                    None => self.counters.malformed += 1,
                }
            }
            if self.batch.is_empty() {
                return Ok(());
            }
            self.sink.facts(&self.batch, &mut self.namer)?;
        }
    }
}

/// The traced command's next event; `None` when there is no command or its watcher is gone.
async fn next_child_event(
    events: &mut Option<UnboundedReceiver<ChildEvent>>,
) -> Option<ChildEvent> {
    match events {
        Some(events) => events.recv().await,
        None => None,
    }
}

/// Which programs the kernel skipped: where the events counted as recursion misses went.
fn report_recursion_misses(probes: &Probes) {
    let missed = probes.recursion_misses_by_program();
    if missed.is_empty() {
        return;
    }
    let top: Vec<String> = missed
        .iter()
        .take(5)
        .map(|(program, n)| format!("{program} {n}"))
        .collect();
    notice(format_args!(
        "locktrace: recursion misses by program (the kernel skipped a program already running on the CPU; a release copy's are covered by another copy): {}{}",
        top.join(", "),
        if missed.len() > 5 { ", ..." } else { "" }
    ));
}

/// `LOCKTRACE_PROG_STATS`: where the programs' time went.
fn report_run_times(probes: &Probes) {
    for time in probes.run_times() {
        notice(format_args!(
            "locktrace: program {} ran {} times, {} ns each, {} ms in all ({} bytes of eBPF, {})",
            time.program,
            time.runs,
            time.total.as_nanos() / u128::from(time.runs.max(1)),
            time.total.as_millis(),
            time.xlated_bytes.unwrap_or(0),
            if time.jitted_bytes == 0 {
                "interpreted".to_string()
            } else {
                format!("{} bytes jitted", time.jitted_bytes)
            }
        ));
    }
}

/// Writes one line to standard error, control characters escaped (it may name paths and
/// programs of the traced world). A closed or full standard error must not stop a session (a
/// recording would be lost for a status line), so failures are ignored.
pub fn notice(line: std::fmt::Arguments<'_>) {
    let line = crate::report::printable(&line.to_string()).into_owned();
    let _ = writeln!(std::io::stderr(), "{line}");
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn load_kernel_symbols(path: Option<&std::path::Path>) -> Result<KernelSymbols, SessionError> {
    let path = path.unwrap_or(std::path::Path::new("/proc/kallsyms"));
    KernelSymbols::load(path).map_err(|source| SessionError::Symbols {
        path: path.to_path_buf(),
        source,
    })
}

/// Hands the figures of the second to `--metrics` (the status line's, with every counter and
/// the engine's).
fn publish(metrics: &Metrics, counters: &Counters, drops: DropCounts, sink: &dyn Sink) {
    let engine = sink.engine_figures();
    metrics.publish(|figures| {
        figures.facts.clone_from(&counters.total);
        figures.drops = drops;
        figures.engine = engine;
    });
}

/// Reads the programs' contention figures.
fn contention_snapshot(
    map: &aya::maps::HashMap<MapData, u64, tracer_common::ContentionStat>,
) -> ContentionSnapshot {
    let mut stats: Vec<_> = map.iter().filter_map(Result::ok).map(|(_, v)| v).collect();
    stats.sort_by_key(|stat| std::cmp::Reverse(stat.wait_ns));
    ContentionSnapshot {
        monotonic_ns: crate::clock::monotonic_ns(),
        stats,
    }
}

/// Every counter, by name: the programs' counters, the kernel's recursion misses for our
/// programs, and records this side could not decode. Updates `counters`' lock operations.
fn drop_counts(probes: &Probes, counters: &mut Counters) -> DropCounts {
    let programs = probes.counters();
    let ops: u64 = programs
        .iter()
        .filter(|(c, _)| matches!(c, Counter::Acquisitions | Counter::Releases))
        .map(|(_, n)| n)
        .sum();
    counters.set_lock_ops(ops);
    let mut counts: Vec<(String, u64)> = programs
        .into_iter()
        .map(|(counter, n)| (counter.name().to_string(), n))
        .collect();
    let (lost, covered) = probes.recursion_misses();
    counts.push(("recursion_misses".to_string(), lost));
    counts.push(("release_copy_misses".to_string(), covered));
    counts.push(("malformed_records".to_string(), counters.malformed));
    DropCounts {
        monotonic_ns: crate::clock::monotonic_ns(),
        counts,
    }
}
