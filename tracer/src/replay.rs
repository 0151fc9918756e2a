//! Replaying a recorded session through the engine: the same facts in the same order with
//! the same names give the same alerts as the live run did.

use std::path::Path;

use crate::{
    engine::Engine,
    session::watch::{AlertPrinter, process_and_print},
    symbols::Symbols,
    tracefile::{
        ContentionSnapshot, DropCounts, Header, Record, TraceError, TraceReader, apply_to_symbols,
    },
};

/// What a replay found besides its alerts.
pub struct Replay {
    /// The recording's header.
    pub header: Header,
    /// The engine after every event.
    pub engine: Engine,
    /// Everything the file named.
    pub symbols: Symbols,
    /// The last counters recorded.
    pub drops: Option<DropCounts>,
    /// The last contention figures recorded.
    pub contention: Option<ContentionSnapshot>,
    /// Facts replayed.
    pub facts: u64,
    /// Where and why reading stopped early, if it did (everything before was replayed).
    pub damage: Option<TraceError>,
}

/// Why a replay could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be opened or is not a trace file.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// Alerts could not be written (a broken pipe means the reader went away).
    #[error("writing alerts")]
    Output(#[source] std::io::Error),
}

/// Replays `path`, printing each alert through `printer` (if any) as it is found.
pub fn replay(path: &Path, mut printer: Option<&mut AlertPrinter>) -> Result<Replay, ReplayError> {
    let mut reader = TraceReader::open(path)?;
    let header = reader.header().clone();
    let mut engine = Engine::default();
    let mut symbols = Symbols::default();
    let mut drops = None;
    let mut contention = None;
    let mut facts = 0;
    for record in reader.by_ref() {
        let Ok(record) = record else { break };
        if apply_to_symbols(&record, &mut symbols) {
            continue;
        }
        match record {
            Record::Facts(batch) => {
                for fact in &batch {
                    match printer.as_deref_mut() {
                        Some(printer) => {
                            process_and_print(&mut engine, fact, &symbols, printer)
                                .map_err(ReplayError::Output)?;
                        }
                        None => {
                            engine.process(fact, &symbols);
                        }
                    }
                }
                facts += batch.len() as u64;
            }
            Record::Drops(d) => drops = Some(d),
            Record::Contention(c) => contention = Some(c),
            _ => {}
        }
    }
    let damage = reader.damage().cloned();
    Ok(Replay {
        header,
        engine,
        symbols,
        drops,
        contention,
        facts,
        damage,
    })
}
