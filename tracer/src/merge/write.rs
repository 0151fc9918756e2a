//! `locktrace merge FILE... -o OUT`: the recordings of several trace files in one merged file
//! (layout in [`crate::tracefile`]). Each recording's records are copied unchanged behind a
//! Recording chunk with its header; nothing is matched or rewritten here, so a merged file
//! reports exactly as its inputs given together would.

use std::path::{Path, PathBuf};

use super::sections::{self, Section};
use crate::tracefile::{EndSummary, Header, Record, RecordingStart, TraceError, TraceWriter};

/// What a merge wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// Recordings merged.
    pub recordings: usize,
    /// Facts merged.
    pub facts: u64,
    /// Each input's damage, naming the file (what came before it was merged).
    pub damage: Vec<String>,
}

/// Merges the recordings of `inputs`, in order, into `output` (written as `output.partial`
/// and renamed when complete, as `record` does). `header` describes the merge itself.
pub fn merge(inputs: &[PathBuf], output: &Path, header: &Header) -> Result<Written, TraceError> {
    let mut written = Written::default();
    let mut writer = TraceWriter::create(output, header)?;
    for input in inputs {
        // A recording's damage is only known once it is read to its end, and its Recording
        // chunk comes first: each input is read whole before it is written.
        let mut parts: Vec<(RecordingStart, Vec<Record>)> = Vec::new();
        let damage = sections::read(input, |section| match section {
            Section::Start(start) => parts.push((start, Vec::new())),
            Section::Record(record) => {
                if let Some((_, records)) = parts.last_mut() {
                    records.push(record);
                }
            }
        })?;
        if let (Some(damage), Some((start, _))) = (&damage, parts.last_mut()) {
            start.damage = Some(match start.damage.take() {
                Some(earlier) => format!("{earlier}; then {damage}"),
                None => damage.clone(),
            });
        }
        written.damage.extend(damage);
        for (start, records) in parts {
            writer.write(&Record::Recording(start))?;
            for record in &records {
                if let Record::Facts(facts) = record {
                    written.facts += facts.len() as u64;
                }
                writer.write(record)?;
            }
            written.recordings += 1;
        }
    }
    let facts_written = writer.facts_written();
    writer.finish(EndSummary {
        facts_written,
        duration_ns: 0,
    })?;
    Ok(written)
}
