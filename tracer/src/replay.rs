//! Replaying recorded sessions through the engine: the same facts in the same order with the
//! same names give the same alerts as the live run did.
//!
//! Several recordings (several files, or the recordings a merged file holds) are each replayed
//! alone, exactly as one file would be, and, in the same pass, one after the other through a
//! merging engine ([`Engine::merging`]) that matches their classes by stable name; what only
//! the merged graph shows is kept apart ([`crate::merge::only_across`]).

use std::path::PathBuf;

use crate::{
    engine::{Alert, Engine},
    merge::{Origin, Section, only_across, sections},
    symbols::Symbols,
    tracefile::{
        ContentionSnapshot, DropCounts, Header, Record, TraceError, TraceReader, apply_to_symbols,
    },
};

/// One recording, replayed alone.
pub struct Replay {
    /// Where it came from.
    pub origin: Origin,
    /// Its header.
    pub header: Header,
    /// The engine after its every fact (its classes, tasks and stacks are this recording's,
    /// numbered as [`Replayed::recordings`] is).
    pub engine: Engine,
    /// Everything it named.
    pub symbols: Symbols,
    /// Every alert, in the order found (reports print them once every file is read, with
    /// the final names and figures).
    pub alerts: Vec<Alert>,
    /// The last counters recorded.
    pub drops: Option<DropCounts>,
    /// The last contention figures recorded.
    pub contention: Option<ContentionSnapshot>,
    /// Facts replayed.
    pub facts: u64,
    /// Where and why reading it stopped early, naming the file, if it did (everything before
    /// was replayed).
    pub damage: Option<String>,
}

/// Several recordings through one merging engine.
pub struct Merged {
    /// The engine after every recording's facts, in order.
    pub engine: Engine,
    /// Every alert it found, in order (single-recording problems included: the graph
    /// export marks their edges too).
    pub alerts: Vec<Alert>,
    /// Those no single recording shows: the problems that exist only across recordings.
    pub across: Vec<Alert>,
}

/// Everything one `report` or `graph` read.
pub struct Replayed {
    /// Each recording, in the order given (a merged file's in the order merged).
    pub recordings: Vec<Replay>,
    /// With more than one recording: the merge.
    pub merged: Option<Merged>,
}

/// Why a replay could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file could not be opened or is not a trace file.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// More recordings than the engine numbers.
    #[error("more than {} recordings at once", u16::MAX)]
    TooManyRecordings,
    /// Alerts could not be written (a broken pipe means the reader went away).
    #[error("writing alerts")]
    Output(#[source] std::io::Error),
}

/// Replays the recordings of `paths`, in order.
pub fn replay(paths: &[PathBuf]) -> Result<Replayed, ReplayError> {
    let mut recordings: Vec<Replay> = Vec::new();
    // One recording is its own report: the merging engine only runs when there may be more
    // (it costs a second pass of every fact through an engine).
    let mut merging = may_hold_several(paths).then(Engine::merging);
    let mut merged_alerts = Vec::new();
    let mut too_many = false;
    for path in paths {
        let damage = sections::read(path, |section| match section {
            Section::Start(start) => {
                let Ok(number) = u16::try_from(recordings.len()) else {
                    too_many = true;
                    return;
                };
                let mut engine = Engine::default();
                engine.start_recording(number);
                if let Some(merging) = &mut merging {
                    merging.start_recording(number);
                }
                recordings.push(Replay {
                    origin: Origin::of(&start.file, &start.header),
                    header: start.header,
                    engine,
                    symbols: Symbols::default(),
                    alerts: Vec::new(),
                    drops: None,
                    contention: None,
                    facts: 0,
                    damage: start.damage,
                });
            }
            Section::Record(record) => {
                let Some(current) = recordings.last_mut().filter(|_| !too_many) else {
                    return;
                };
                if apply_to_symbols(&record, &mut current.symbols) {
                    return;
                }
                match record {
                    Record::Facts(batch) => {
                        for fact in &batch {
                            let found = current.engine.process(fact, &current.symbols);
                            current.alerts.extend_from_slice(found);
                            if let Some(merging) = &mut merging {
                                let found = merging.process(fact, &current.symbols);
                                merged_alerts.extend_from_slice(found);
                            }
                        }
                        current.facts += batch.len() as u64;
                    }
                    Record::Drops(d) => current.drops = Some(d),
                    Record::Contention(c) => current.contention = Some(c),
                    _ => {}
                }
            }
        })?;
        if too_many {
            return Err(ReplayError::TooManyRecordings);
        }
        if let (Some(damage), Some(last)) = (damage, recordings.last_mut()) {
            last.damage = Some(match last.damage.take() {
                Some(earlier) => format!("{earlier}; then {damage}"),
                None => damage,
            });
        }
    }
    let merged = merging
        .filter(|_| recordings.len() > 1)
        .map(|merging| Merged {
            across: only_across(&recordings, &merging, &merged_alerts),
            engine: merging,
            alerts: merged_alerts,
        });
    Ok(Replayed { recordings, merged })
}

/// True when `paths` may hold more than one recording: several files, or a merged file (its
/// first record starts a recording). A file that cannot be read says no here; [`replay`]
/// reports why.
fn may_hold_several(paths: &[PathBuf]) -> bool {
    match paths {
        [path] => TraceReader::open(path)
            .ok()
            .and_then(|mut reader| reader.next())
            .is_some_and(|record| matches!(record, Ok(Record::Recording(_)))),
        _ => true,
    }
}
