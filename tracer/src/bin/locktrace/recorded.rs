//! `report`, `script` and `graph`: a recorded session read back. A damaged or unfinished file
//! is used up to the damage, said in one warning line, and shows in the exit status.

use std::{
    io::{ErrorKind, Write},
    path::Path,
};

use anyhow::Context;
use tracer::{
    replay::{ReplayError, replay},
    report::{
        contention::{Contention, sort_by_risk},
        graph::{self, AlertEdges},
        printer::AlertPrinter,
        suppress::Suppressions,
    },
    tracefile::TraceError,
};

use crate::{
    args::{AlertOrder, GraphFormat},
    exit::Outcome,
    live::accounting,
};

/// Replays `file` and prints its alerts through `printer`, in `order`, each with the whole
/// session's contention figures.
pub fn report(
    file: &Path,
    mut printer: AlertPrinter,
    order: AlertOrder,
) -> anyhow::Result<Outcome> {
    let mut replayed = replay(file)?;
    let (engine, symbols) = (&replayed.engine, &replayed.symbols);
    let contention = Contention::new(
        Contention::traced_by(&replayed.header.probes),
        true,
        replayed.contention.as_ref(),
        engine,
        symbols,
    );
    if order == AlertOrder::Risk {
        sort_by_risk(&mut replayed.alerts, &contention, engine);
    }
    for alert in &replayed.alerts {
        match printer.print(alert, engine, symbols, &contention) {
            Ok(()) => {}
            // The reader went away (a pager quit): nothing more to say, but what was printed
            // still counts.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                return Ok(Outcome::of(printer.alerts(), false));
            }
            Err(e) => return Err(e).context("writing alerts"),
        }
    }
    warn_damage(replayed.damage.as_ref());
    let stats = replayed.engine.stats();
    note!(
        "locktrace: replayed {} facts from {}: {} classes, {} dependencies, {}{}",
        replayed.facts,
        file.display(),
        stats.classes,
        stats.dependencies,
        printer.summary(),
        replayed
            .drops
            .as_ref()
            .map(|d| format!(" (while recording: {})", accounting(d)))
            .unwrap_or_default()
    );
    Ok(Outcome::of(printer.alerts(), replayed.damage.is_some()))
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

/// Exports the recording's dependency graph, marking the edges of alerts (reported, or only
/// suppressed by `suppressions`).
pub fn graph(
    file: &Path,
    format: GraphFormat,
    suppressions: &Suppressions,
) -> anyhow::Result<Outcome> {
    let replayed = replay(file)?;
    warn_damage(replayed.damage.as_ref());
    let (engine, symbols) = (&replayed.engine, &replayed.symbols);
    let alerts = AlertEdges::of(&replayed.alerts, suppressions, engine, symbols);
    let mut out = std::io::stdout().lock();
    let written = match format {
        GraphFormat::Dot => write!(out, "{}", graph::to_dot(engine, symbols, &alerts)),
        GraphFormat::Json => writeln!(out, "{}", graph::to_json(engine, symbols, &alerts)),
    };
    written.context("writing the graph")?;
    Ok(Outcome::of(0, replayed.damage.is_some()))
}

fn warn_damage(damage: Option<&TraceError>) {
    if let Some(damage) = damage {
        note!("locktrace: warning: {damage}; everything before it was used");
    }
}
