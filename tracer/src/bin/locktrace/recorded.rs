//! `report`, `script` and `graph`: a recorded session read back. A damaged or unfinished file
//! is used up to the damage, said in one warning line, and shows in the exit status.

use std::{
    io::{ErrorKind, Write},
    path::Path,
};

use anyhow::Context;
use tracer::{
    replay::{ReplayError, replay},
    report,
    session::watch::AlertPrinter,
    tracefile::TraceError,
};

use crate::{args::GraphFormat, exit::Outcome, live::accounting};

/// Replays `file` and prints its alerts.
pub fn report(file: &Path, json: bool) -> anyhow::Result<Outcome> {
    let mut printer = AlertPrinter::stdout(json);
    let replayed = match replay(file, Some(&mut printer)) {
        Ok(replayed) => replayed,
        // The reader went away (a pager quit): nothing more to say, but what was printed
        // still counts.
        Err(ReplayError::Output(e)) if e.kind() == ErrorKind::BrokenPipe => {
            return Ok(Outcome::of(printer.printed(), false));
        }
        Err(e) => return Err(e.into()),
    };
    warn_damage(replayed.damage.as_ref());
    let stats = replayed.engine.stats();
    note!(
        "locktrace: replayed {} facts from {}: {} classes, {} dependencies, {} alerts{}",
        replayed.facts,
        file.display(),
        stats.classes,
        stats.dependencies,
        printer.printed(),
        replayed
            .drops
            .as_ref()
            .map(|d| format!(" (while recording: {})", accounting(d)))
            .unwrap_or_default()
    );
    Ok(Outcome::of(printer.printed(), replayed.damage.is_some()))
}

/// Prints the recording's facts one per line.
pub fn script(file: &Path, stacks: bool) -> anyhow::Result<Outcome> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let summary = match tracer::script::write_facts(file, stacks, &mut out).and_then(|summary| {
        out.flush().map_err(ReplayError::Output)?;
        Ok(summary)
    }) {
        Ok(summary) => summary,
        Err(ReplayError::Output(e)) if e.kind() == ErrorKind::BrokenPipe => {
            return Ok(Outcome::Clean);
        }
        Err(e) => return Err(e.into()),
    };
    warn_damage(summary.damage.as_ref());
    Ok(Outcome::of(0, summary.damage.is_some()))
}

/// Exports the recording's dependency graph.
pub fn graph(file: &Path, format: GraphFormat) -> anyhow::Result<Outcome> {
    let replayed = replay(file, None)?;
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
    Ok(Outcome::of(0, replayed.damage.is_some()))
}

fn warn_damage(damage: Option<&TraceError>) {
    if let Some(damage) = damage {
        note!("locktrace: warning: {damage}; everything before it was used");
    }
}
