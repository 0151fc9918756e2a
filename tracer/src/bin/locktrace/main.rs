//! The `locktrace` command: glue between the command line and the `tracer` library.
//!
//! Exit status: 0 on success, 1 with one `locktrace: error: ...` line for any failure.

mod args;

/// A line on standard error that cannot fail the command (see `session::notice`).
macro_rules! note {
    ($($arg:tt)*) => {
        tracer::session::notice(format_args!($($arg)*))
    };
}

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use tracer::{
    engine::{Engine, EngineConfig},
    probes::check,
    replay::{ReplayError, replay},
    report,
    session::{self, ChildStdout, SessionOptions, record::Recorder, watch::AlertPrinter},
    tracefile::TraceError,
};

use args::{Cli, Command, GraphFormat, TraceArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            note!("locktrace: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { json } => {
            let report = check::run();
            let mut out = std::io::stdout().lock();
            let written = if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)
            } else {
                write!(out, "{}", report.render_table())
            };
            written.context("writing the report")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Record { output, trace } => {
            let options = session_options(&trace, false);
            let mut recorder = Recorder::new(&output, std::env::args().collect());
            recorder.check_writable()?;
            let summary = block_on(session::run(&options, &mut recorder))?;
            note!(
                "locktrace: recorded {} events{} to {} ({}; lost: {})",
                summary.events,
                by_kind(&summary.by_kind),
                output.display(),
                summary.stopped_by,
                losses(&summary.drops)
            );
            report_command_status(summary.command_status);
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { json, floor, trace } => {
            let options = SessionOptions {
                floor,
                ..session_options(&trace, json)
            };
            let mut watcher = session::watch::Watcher::new(
                Engine::new(EngineConfig::default()),
                AlertPrinter::stdout(json),
            );
            let summary = block_on(session::run(&options, &mut watcher))?;
            let stats = watcher.engine().stats();
            note!(
                "locktrace: {} events{}, {} classes, {} dependencies, {} alerts ({}; lost: {})",
                summary.events,
                by_kind(&summary.by_kind),
                stats.classes,
                stats.dependencies,
                watcher.alerts(),
                summary.stopped_by,
                losses(&summary.drops)
            );
            report_command_status(summary.command_status);
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { file, json } => {
            let mut printer = AlertPrinter::stdout(json);
            let replayed = match replay(&file, Some(&mut printer)) {
                Ok(replayed) => replayed,
                // The reader went away (a pager quit): nothing more to say.
                Err(ReplayError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) => return Err(e.into()),
            };
            warn_damage(replayed.damage.as_ref());
            let stats = replayed.engine.stats();
            note!(
                "locktrace: replayed {} events from {}: {} classes, {} dependencies, {} alerts{}",
                replayed.events,
                file.display(),
                stats.classes,
                stats.dependencies,
                printer.printed(),
                replayed
                    .drops
                    .as_ref()
                    .map(|d| format!(" (lost while recording: {})", losses(d)))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Script { file, stacks } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let summary =
                match tracer::script::write_events(&file, stacks, &mut out).and_then(|summary| {
                    out.flush().map_err(ReplayError::Output)?;
                    Ok(summary)
                }) {
                    Ok(summary) => summary,
                    Err(ReplayError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(e) => return Err(e.into()),
                };
            warn_damage(summary.damage.as_ref());
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { file, format } => {
            let replayed = replay(&file, None)?;
            warn_damage(replayed.damage.as_ref());
            let mut out = std::io::stdout().lock();
            let written = match format {
                GraphFormat::Dot => write!(
                    out,
                    "{}",
                    report::graph::to_dot(&replayed.engine, &replayed.symbols)
                ),
                GraphFormat::Json => writeln!(
                    out,
                    "{}",
                    report::graph::to_json(&replayed.engine, &replayed.symbols)
                ),
            };
            written.context("writing the graph")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn session_options(trace: &TraceArgs, json: bool) -> SessionOptions {
    SessionOptions {
        duration: trace.duration,
        command: trace.command.clone(),
        pid: trace.pid,
        all_user: trace.all_user,
        kernel: !trace.no_kernel,
        symbols: trace.symbols.clone(),
        empty_user_programs: trace.empty_programs,
        floor: false,
        child_stdout: Some(if json {
            ChildStdout::ToStderr
        } else {
            ChildStdout::Inherit
        }),
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .expect("a current-thread runtime always builds")
        .block_on(future)
}

fn losses(drops: &tracer::tracefile::DropCounts) -> String {
    let lost: Vec<String> = drops
        .counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if lost.is_empty() {
        "none".to_string()
    } else {
        lost.join(", ")
    }
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

fn warn_damage(damage: Option<&TraceError>) {
    if let Some(damage) = damage {
        note!("locktrace: warning: {damage}; everything before it was replayed");
    }
}
