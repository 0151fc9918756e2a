//! A live tracing session: attach the probes, read the facts ring buffer on a timer (the
//! programs never wake the reader: see tracer-ebpf's emit.rs) in a tokio loop, name what the
//! facts point at, and hand them to a [`Sink`] (the trace-file recorder or the live engine)
//! with the programs' counters and contention figures once a second, until the duration ends,
//! the traced command exits, or SIGINT/SIGTERM arrives. Whatever ends the session, the sink is
//! finished: a recording is always left valid.

mod child;
pub mod decode;
mod live;
mod process_maps;
pub mod record;
pub mod status;
pub mod symbolize;
pub mod watch;

use std::{
    collections::HashSet,
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc::UnboundedReceiver,
};

use crate::{
    fact::FactRecord,
    metrics::{EngineFigures, Metrics},
    probes::{AttachMode, ProbeError, ProbeOptions, Probes, UserTarget},
    symbols::{KernelSymbols, PinnedNames},
    tracefile::{ContentionSnapshot, DropCounts, ProbeStatus, TraceError},
};
pub use child::ChildStdout;
use child::{ChildEvent, GatedChild};
use live::Live;
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
    /// True when the sink writes names to a file ([`Namer::take_records`]).
    fn writes_names(&self) -> bool {
        false
    }
    /// Adds to `pinned` the user-space names of the processes `pids`, gone, that the sink
    /// still needs (see [`Namer::forget_exited`]); a sink that keeps nothing adds nothing.
    fn pin_names(&self, _pids: &HashSet<u32>, _pinned: &mut PinnedNames) {}
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
    /// How the kernel lock functions are probed (`--attach`).
    pub attach: AttachMode,
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
    let mut namer = Namer::new(
        load_kernel_symbols(options.symbols.as_deref())?,
        sink.writes_names(),
    );
    namer.set_percpu_vars(probes.percpu_vars());
    let child_events = release_command(child.as_mut(), &options.command)?;

    let mut live = Live::new(probes, maps, namer, sink, options.metrics.as_ref());
    let started = Instant::now();
    let (stopped_by, command_status) = live
        .until_stopped(
            &mut signals,
            child.as_ref().map(GatedChild::pid),
            child_events,
            options.duration,
        )
        .await?;
    let (counters, drops) = live.wind_down(started).await?;
    Ok(SessionSummary {
        facts: counters.facts,
        by_kind: counters.total,
        lock_ops: counters.lock_ops,
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
        attach: options.attach,
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

/// Writes one line to standard error, control characters escaped (it may name paths and
/// programs of the traced world). A closed or full standard error must not stop a session (a
/// recording would be lost for a status line), so failures are ignored.
pub fn notice(line: std::fmt::Arguments<'_>) {
    let line = crate::report::printable(&line.to_string()).into_owned();
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn load_kernel_symbols(path: Option<&std::path::Path>) -> Result<KernelSymbols, SessionError> {
    let path = path.unwrap_or(std::path::Path::new("/proc/kallsyms"));
    KernelSymbols::load(path).map_err(|source| SessionError::Symbols {
        path: path.to_path_buf(),
        source,
    })
}
