//! The live sink: facts go straight into the engine, and each new alert is printed as it is
//! found, through the same [`AlertPrinter`] `locktrace report` prints a recording's with.

use std::time::Duration;

use super::{SessionError, Sink, status::human, symbolize::Namer};
use crate::{
    engine::{Alert, Engine},
    fact::FactRecord,
    metrics::EngineFigures,
    report::printer::AlertPrinter,
    symbols::Symbols,
    tracefile::{ContentionSnapshot, DropCounts, ProbeStatus},
};

/// Feeds `fact` to the engine and prints what it finds.
fn process_and_print(
    engine: &mut Engine,
    fact: &FactRecord,
    symbols: &Symbols,
    printer: &mut AlertPrinter,
) -> std::io::Result<()> {
    let found = engine.process(fact, symbols);
    if found.is_empty() {
        return Ok(());
    }
    let found: Vec<Alert> = found.to_vec();
    for alert in &found {
        printer.print(alert, engine, symbols)?;
    }
    Ok(())
}

/// Runs the engine live.
pub struct Watcher {
    engine: Engine,
    printer: AlertPrinter,
    lost: u64,
}

impl Watcher {
    /// A watcher printing to standard output.
    pub fn new(engine: Engine, printer: AlertPrinter) -> Watcher {
        Watcher {
            engine,
            printer,
            lost: 0,
        }
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
    fn start(&mut self, _probes: &[ProbeStatus]) -> Result<(), SessionError> {
        Ok(())
    }

    fn facts(&mut self, facts: &[FactRecord], namer: &mut Namer) -> Result<(), SessionError> {
        let symbols = namer.symbols();
        for fact in facts {
            process_and_print(&mut self.engine, fact, symbols, &mut self.printer)
                .map_err(sink_error)?;
        }
        Ok(())
    }

    fn drops(&mut self, drops: &DropCounts) -> Result<(), SessionError> {
        self.lost = drops.losses();
        Ok(())
    }

    fn contention(
        &mut self,
        _snapshot: &ContentionSnapshot,
        _namer: &mut Namer,
    ) -> Result<(), SessionError> {
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

    fn finish(&mut self, _namer: &mut Namer, _duration: Duration) -> Result<(), SessionError> {
        Ok(())
    }
}
