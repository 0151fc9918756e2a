//! The live sink: facts go straight into the engine, and each new alert is printed as it is
//! found, in the same form `locktrace report` prints it from a recording.

use std::{io::Write, time::Duration};

use super::{SessionError, Sink, status::human, symbolize::Namer};
use crate::{
    engine::{Alert, Engine},
    fact::FactRecord,
    report,
    symbols::Symbols,
    tracefile::{ContentionSnapshot, DropCounts, ProbeStatus},
};

/// Prints alerts as lockdep-style text or as one JSON object per line.
pub struct AlertPrinter {
    json: bool,
    out: Box<dyn Write>,
    printed: u64,
}

impl AlertPrinter {
    /// A printer to standard output.
    pub fn stdout(json: bool) -> AlertPrinter {
        AlertPrinter {
            json,
            out: Box::new(std::io::stdout()),
            printed: 0,
        }
    }

    /// Prints one alert and flushes, so a reader sees it at once.
    pub fn print(
        &mut self,
        alert: &Alert,
        engine: &Engine,
        symbols: &Symbols,
    ) -> std::io::Result<()> {
        if self.json {
            let value = report::json::render(alert, engine, symbols);
            writeln!(self.out, "{value}")?;
        } else {
            writeln!(self.out, "{}", report::text::render(alert, engine, symbols))?;
        }
        self.printed += 1;
        self.out.flush()
    }

    /// How many alerts were printed.
    pub fn printed(&self) -> u64 {
        self.printed
    }
}

/// Feeds `fact` to the engine and prints what it finds.
pub fn process_and_print(
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

    /// How many alerts were printed.
    pub fn alerts(&self) -> u64 {
        self.printer.printed()
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
            self.printer.printed(),
            self.lost
        )
    }

    fn finish(&mut self, _namer: &mut Namer, _duration: Duration) -> Result<(), SessionError> {
        Ok(())
    }
}
