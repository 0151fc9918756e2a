//! `record` and `watch`: a live session, its arguments checked first, and its summary line.

use std::{net::SocketAddr, path::Path};

use anyhow::{Context, bail};
use tracer::{
    engine::Engine,
    metrics::{Metrics, server::MetricsServer},
    report::printer::AlertPrinter,
    session::{self, ChildStdout, SessionError, SessionOptions, record::Recorder, watch::Watcher},
    tracefile::{DropCounts, TraceError},
};

use crate::{args::TraceArgs, exit::Outcome};

/// Records a session to `output`. Record does not run the engine (it stays light on a busy
/// kernel): its status says whether the recording is complete, and `report` finds alerts.
pub fn record(output: &Path, trace: &TraceArgs) -> anyhow::Result<()> {
    let options = session_options(trace, false, false)?;
    // Lossy: a command line that is not UTF-8 is stored as readably as it can be.
    let command_line = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let mut recorder = Recorder::create(output, command_line)?;
    let summary = match block_on(session::run(&options, &mut recorder)) {
        Ok(summary) => summary,
        Err(err) => return Err(abandoned(recorder, err)),
    };
    note!(
        "locktrace: followed {} lock operations; recorded {} facts{} to {} ({}; {})",
        summary.lock_ops,
        summary.facts,
        by_kind(&summary.by_kind),
        output.display(),
        summary.stopped_by,
        accounting(&summary.drops)
    );
    report_command_status(summary.command_status);
    Ok(())
}

/// Traces live, printing alerts through `printer` as they are found; with `floor`, every
/// probe attaches with its program switched off (the kernel overhead benchmark's floor);
/// with `metrics`, the session's figures are served there.
pub fn watch(
    printer: AlertPrinter,
    json: bool,
    floor: bool,
    metrics: Option<SocketAddr>,
    trace: &TraceArgs,
) -> anyhow::Result<Outcome> {
    let mut options = session_options(trace, json, floor)?;
    options.metrics = metrics.map(serve_metrics).transpose()?;
    let mut watcher = Watcher::new(Engine::default(), printer);
    let summary = block_on(session::run(&options, &mut watcher))?;
    let stats = watcher.engine().stats();
    note!(
        "locktrace: followed {} lock operations; {} facts{}, {} classes, {} dependencies, {} ({}; {})",
        summary.lock_ops,
        summary.facts,
        by_kind(&summary.by_kind),
        stats.classes,
        stats.dependencies,
        watcher.printer().summary(),
        summary.stopped_by,
        accounting(&summary.drops)
    );
    report_command_status(summary.command_status);
    Ok(Outcome::of(watcher.printer().alerts(), false))
}

/// The session's options, once what the arguments name has been checked: a process to trace
/// must exist, and a symbol table must be a regular file (reading a FIFO would wait forever).
fn session_options(trace: &TraceArgs, json: bool, floor: bool) -> anyhow::Result<SessionOptions> {
    if let Some(pid) = trace.pid
        && !Path::new("/proc").join(pid.to_string()).exists()
    {
        bail!("no process with pid {pid}");
    }
    if let Some(path) = &trace.symbols {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read kernel symbols from {}", path.display()))?;
        if !meta.is_file() {
            bail!(
                "cannot read kernel symbols from {}: not a regular file",
                path.display()
            );
        }
    }
    Ok(SessionOptions {
        duration: trace.duration,
        command: trace.command.clone(),
        pid: trace.pid,
        all_user: trace.all_user,
        kernel: !trace.no_kernel,
        symbols: trace.symbols.clone(),
        empty_user_programs: trace.empty_programs,
        floor,
        attach: trace.attach,
        metrics: None,
        child_stdout: Some(if json {
            ChildStdout::ToStderr
        } else {
            ChildStdout::Inherit
        }),
    })
}

/// Binds `addr` and serves the session's metrics there from now on: an address that is taken
/// or not this machine's fails here, before anything is attached.
fn serve_metrics(addr: SocketAddr) -> anyhow::Result<Metrics> {
    let server =
        MetricsServer::bind(addr).with_context(|| format!("cannot serve metrics on {addr}"))?;
    let metrics = Metrics::new();
    server
        .spawn(metrics.clone())
        .context("starting the metrics server")?;
    Ok(metrics)
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .expect("a current-thread runtime always builds")
        .block_on(future)
}

/// The error of a failed recording, saying where its events are when some were kept (the
/// target is untouched either way).
fn abandoned(recorder: Recorder, err: SessionError) -> anyhow::Error {
    // These already say where the recording is.
    let says_where = matches!(
        err,
        SessionError::Trace(TraceError::Replaced { .. } | TraceError::Commit { .. })
    );
    match recorder.abandon() {
        Some(partial) if !says_where => anyhow::Error::from(err).context(format!(
            "the recording stopped; what it recorded is in {}",
            partial.display()
        )),
        _ => err.into(),
    }
}

/// "lost: none; held state: stale_held 3, handoff 10; not sent: repeated_calls 40; covered:
/// release_copy_misses 7": what was lost, how often the held stacks corrected themselves,
/// what the programs counted instead of sending, and the release copies the kernel skipped
/// while another copy followed the release.
pub fn accounting(drops: &DropCounts) -> String {
    let lost: Vec<String> = drops
        .nonzero_losses()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    let named = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter_map(|&name| {
                let n = drops.get(name);
                (n > 0).then(|| format!("{name} {n}"))
            })
            .collect()
    };
    let held = named(&[
        "stale_held",
        "held_overflow",
        "unmatched_release",
        "handoff",
    ]);
    let unsent = named(&["repeated_calls"]);
    let covered = named(&["release_copy_misses"]);
    let mut text = if lost.is_empty() {
        "lost: none".to_string()
    } else {
        format!("lost: {}", lost.join(", "))
    };
    if !held.is_empty() {
        text += &format!("; held state: {}", held.join(", "));
    }
    if !unsent.is_empty() {
        text += &format!("; not sent: {}", unsent.join(", "));
    }
    if !covered.is_empty() {
        text += &format!("; covered: {}", covered.join(", "));
    }
    text
}

/// " (acquire 10, release 9)": the counts by kind, largest first.
fn by_kind(counts: &std::collections::BTreeMap<&'static str, u64>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let mut sorted: Vec<(&str, u64)> = counts.iter().map(|(k, v)| (*k, *v)).collect();
    sorted.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let parts: Vec<String> = sorted.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(" ({})", parts.join(", "))
}

fn report_command_status(status: Option<i32>) {
    if let Some(code) = status
        && code != 0
    {
        note!("locktrace: the traced command exited with status {code}");
    }
}
