//! Replaying a recorded session through the engine: the same facts in the same order with
//! the same names give the same alerts as the live run did.

use std::path::Path;

use crate::{
    engine::{Alert, Engine},
    symbols::Symbols,
    tracefile::{
        ContentionSnapshot, DropCounts, Header, Record, TraceError, TraceReader, apply_to_symbols,
    },
};

/// What a replay found.
pub struct Replay {
    /// The recording's header.
    pub header: Header,
    /// The engine after every event.
    pub engine: Engine,
    /// Everything the file named.
    pub symbols: Symbols,
    /// Every alert, in the order found (reports print them once the whole file is read, with
    /// its final names and figures).
    pub alerts: Vec<Alert>,
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

/// Replays `path` through the engine.
pub fn replay(path: &Path) -> Result<Replay, TraceError> {
    let mut reader = TraceReader::open(path)?;
    let header = reader.header().clone();
    let mut engine = Engine::default();
    let mut symbols = Symbols::default();
    let mut alerts = Vec::new();
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
                    alerts.extend_from_slice(engine.process(fact, &symbols));
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
        alerts,
        drops,
        contention,
        facts,
        damage,
    })
}
