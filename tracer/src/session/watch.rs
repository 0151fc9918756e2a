//! The live sink: facts go straight into the engine, and each new alert is printed as it is
//! found, through the same [`AlertPrinter`] `locktrace report` prints a recording's with, with
//! the contention figures read so far (once a second).

use std::{collections::HashSet, time::Duration};

use super::{SessionError, Sink, status::human, symbolize::Namer};
use crate::{
    engine::{Alert, Engine},
    fact::FactRecord,
    metrics::EngineFigures,
    report::{contention::Contention, printer::AlertPrinter},
    symbols::{PinnedNames, Symbols},
    tracefile::{ContentionSnapshot, DropCounts, ProbeStatus},
};

/// Runs the engine live.
pub struct Watcher {
    engine: Engine,
    printer: AlertPrinter,
    lost: u64,
    /// Whether the contention tracepoints attached (known at start).
    contention_traced: bool,
    /// The latest contention figures (cumulative), for the alerts found next.
    contention: Option<ContentionSnapshot>,
}

impl Watcher {
    /// A watcher printing through `printer`.
    pub fn new(engine: Engine, printer: AlertPrinter) -> Watcher {
        Watcher {
            engine,
            printer,
            lost: 0,
            contention_traced: false,
            contention: None,
        }
    }

    /// Feeds `fact` to the engine and prints what it finds, with the contention figures
    /// known so far.
    fn process_and_print(&mut self, fact: &FactRecord, symbols: &Symbols) -> std::io::Result<()> {
        let found = self.engine.process(fact, symbols);
        if found.is_empty() {
            return Ok(());
        }
        let found: Vec<Alert> = found.to_vec();
        let contention = Contention::new(
            self.contention_traced,
            false,
            self.contention.as_ref(),
            &self.engine,
            symbols,
        );
        for alert in &found {
            self.printer
                .print(alert, &self.engine, symbols, &contention)?;
        }
        Ok(())
    }

    /// The engine, for a summary at the end.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The printer, for its counts of reported and suppressed alerts.
    pub fn printer(&self) -> &AlertPrinter {
        &self.printer
    }
}

fn sink_error(e: std::io::Error) -> SessionError {
    SessionError::Io {
        what: "writing alerts",
        source: e,
    }
}

impl Sink for Watcher {
    fn start(&mut self, probes: &[ProbeStatus]) -> Result<(), SessionError> {
        self.contention_traced = Contention::traced_by(probes);
        Ok(())
    }

    fn facts(&mut self, facts: &[FactRecord], namer: &mut Namer) -> Result<(), SessionError> {
        let symbols = namer.symbols();
        for fact in facts {
            self.process_and_print(fact, symbols).map_err(sink_error)?;
        }
        Ok(())
    }

    fn drops(&mut self, drops: &DropCounts) -> Result<(), SessionError> {
        self.lost = drops.losses();
        Ok(())
    }

    fn contention(
        &mut self,
        snapshot: &ContentionSnapshot,
        _namer: &mut Namer,
    ) -> Result<(), SessionError> {
        self.contention = Some(snapshot.clone());
        Ok(())
    }

    fn status(&self) -> String {
        let stats = self.engine.stats();
        format!(
            " | {} classes, {} deps | {} alerts | lost {}",
            human(stats.classes as f64),
            human(stats.dependencies as f64),
            self.printer.alerts(),
            self.lost
        )
    }

    fn engine_figures(&self) -> Option<EngineFigures> {
        Some(EngineFigures {
            stats: self.engine.stats(),
            alerts: self.printer.reported_by_kind().clone(),
            suppressed: self.printer.suppressed_by_kind().clone(),
        })
    }

    fn pin_names(&self, pids: &HashSet<u32>, pinned: &mut PinnedNames) {
        self.engine.pin_names(pids, pinned);
    }

    fn finish(&mut self, _namer: &mut Namer, _duration: Duration) -> Result<(), SessionError> {
        Ok(())
    }
}
