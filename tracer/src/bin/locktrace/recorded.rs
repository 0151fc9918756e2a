//! `report`, `script`, `graph` and `merge`: recorded sessions read back. A damaged or
//! unfinished file is used up to the damage, said in one warning line naming it, and shows
//! in the exit status.

use std::{
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
};

use anyhow::Context;
use tracer::{
    engine::{Alert, Engine},
    merge::{self, write::Written},
    replay::{ReplayError, Replayed, replay},
    report::{
        contention::Contention,
        graph::{self, AlertEdges},
        printer::AlertPrinter,
        suppress::Suppressions,
    },
    tracefile::Header,
};

use crate::{
    args::{AlertOrder, GraphFormat},
    exit::Outcome,
    live::accounting,
};

/// One line when the session could not follow some lock families' ordering (their releases
/// could not be traced): no alert about them means nothing there.
fn say_ordering_off(recording: &tracer::replay::Replay) {
    let off = tracer::probes::catalog::families_off(
        recording
            .header
            .probes
            .iter()
            .map(|p| (p.name.as_str(), p.detail.as_str())),
    );
    if !off.is_empty() {
        eprintln!(
            "locktrace: {}: {} ordering checks were off in this recording: their releases could not be traced",
            recording.origin.file,
            off.join(", ")
        );
    }
}

/// Replays `files` and prints their alerts through `printer`, in `order`, each with the whole
/// session's contention figures: each recording's own alerts, then (several recordings)
/// those that exist only across recordings.
pub fn report(
    files: &[PathBuf],
    mut printer: AlertPrinter,
    order: AlertOrder,
) -> anyhow::Result<Outcome> {
    let replayed = replay(files)?;
    for recording in &replayed.recordings {
        say_ordering_off(recording);
    }
    // Each alert with the engine that found it and that engine's contention figures.
    let mut contention: Vec<Contention> = replayed
        .recordings
        .iter()
        .map(|r| {
            let traced = Contention::traced_by(&r.header.probes);
            Contention::new(traced, true, r.contention.as_ref(), &r.engine, &r.symbols)
        })
        .collect();
    let mut alerts: Vec<(&Engine, usize, &Alert)> = Vec::new();
    for (i, recording) in replayed.recordings.iter().enumerate() {
        alerts.extend(recording.alerts.iter().map(|a| (&recording.engine, i, a)));
    }
    if let Some(merged) = &replayed.merged {
        let parts: Vec<_> = replayed
            .recordings
            .iter()
            .map(|r| {
                (
                    Contention::traced_by(&r.header.probes),
                    r.contention.as_ref(),
                    &r.symbols,
                )
            })
            .collect();
        contention.push(Contention::merged(&parts, &merged.engine));
        let across = contention.len() - 1;
        alerts.extend(merged.across.iter().map(|a| (&merged.engine, across, a)));
    }
    if order == AlertOrder::Risk {
        alerts.sort_by_cached_key(|&(engine, c, alert)| {
            std::cmp::Reverse(contention[c].risk(alert, engine))
        });
    }
    for &(engine, c, alert) in &alerts {
        match printer.print(alert, engine, &replayed, &contention[c]) {
            Ok(()) => {}
            // The reader went away (a pager quit): nothing more to say, but what was printed
            // still counts.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                return Ok(Outcome::of(printer.alerts(), false));
            }
            Err(e) => return Err(e).context("writing alerts"),
        }
    }
    let damaged = warn_damage(&replayed);
    for recording in &replayed.recordings {
        let stats = recording.engine.stats();
        note!(
            "locktrace: replayed {} facts from {}: {} classes, {} dependencies{}{}",
            recording.facts,
            recording.origin.file,
            stats.classes,
            stats.dependencies,
            match &replayed.merged {
                Some(_) => String::new(),
                None => format!(", {}", printer.summary()),
            },
            recording
                .drops
                .as_ref()
                .map(|d| format!(" (while recording: {})", accounting(d)))
                .unwrap_or_default()
        );
    }
    if let Some(merged) = &replayed.merged {
        note!(
            "locktrace: {}; {} across recordings only; {}",
            merge::summary(&replayed.recordings, &merged.engine),
            merged.across.len(),
            printer.summary()
        );
    }
    Ok(Outcome::of(printer.alerts(), damaged))
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
    if let Some(damage) = &summary.damage {
        note!(
            "locktrace: warning: {}: {damage}; everything before it was used",
            file.display()
        );
    }
    Ok(Outcome::of(0, summary.damage.is_some()))
}

/// Exports the dependency graph of `files` (several: the merged graph, classes matched by
/// name), marking the edges of alerts (reported, or only suppressed by `suppressions`).
pub fn graph(
    files: &[PathBuf],
    format: GraphFormat,
    suppressions: &Suppressions,
) -> anyhow::Result<Outcome> {
    let replayed = replay(files)?;
    let damaged = warn_damage(&replayed);
    let (engine, alerts) = match &replayed.merged {
        Some(merged) => (&merged.engine, &merged.alerts),
        // Every file holds at least one recording, and there is at least one file.
        None => (
            &replayed.recordings[0].engine,
            &replayed.recordings[0].alerts,
        ),
    };
    let alerts = AlertEdges::of(alerts, suppressions, engine, &replayed);
    let mut out = std::io::stdout().lock();
    let written = match format {
        GraphFormat::Dot => write!(out, "{}", graph::to_dot(engine, &replayed, &alerts)),
        GraphFormat::Json => writeln!(out, "{}", graph::to_json(engine, &replayed, &alerts)),
    };
    written.context("writing the graph")?;
    Ok(Outcome::of(0, damaged))
}

/// Merges the recordings of `inputs` into `output`.
pub fn merge(inputs: &[PathBuf], output: &Path) -> anyhow::Result<Outcome> {
    let header = Header::for_this_machine(std::env::args().collect(), Vec::new());
    let Written {
        recordings,
        facts,
        damage,
    } = merge::write::merge(inputs, output, &header)?;
    for damage in &damage {
        note!("locktrace: warning: {damage}; everything before it was merged");
    }
    note!(
        "locktrace: merged {recordings} recordings ({facts} facts) into {}",
        output.display()
    );
    Ok(Outcome::of(0, !damage.is_empty()))
}

/// One warning line per damaged recording, naming its file; true when there was one.
fn warn_damage(replayed: &Replayed) -> bool {
    let mut damaged = false;
    for recording in &replayed.recordings {
        if let Some(damage) = &recording.damage {
            note!("locktrace: warning: {damage}; everything before it was used");
            damaged = true;
        }
    }
    damaged
}
