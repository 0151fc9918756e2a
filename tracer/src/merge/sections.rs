//! A trace file read as the recordings it holds: a file written by `record` is one recording
//! (its header says where it came from); a merged file is the recordings its Recording chunks
//! start. Both come out the same way, so reports and `merge` handle them alike.

use std::path::Path;

use crate::tracefile::{Header, Record, RecordingStart, TraceError, TraceReader};

/// What reading a file yields, in order.
#[derive(Debug)]
pub enum Section {
    /// A recording starts; the records up to the next `Start` are its.
    Start(RecordingStart),
    /// One record of the current recording (never a Recording or End chunk).
    Record(Record),
}

/// Reads `path` and hands each [`Section`] to `visit`, in file order. Returns the damage that
/// stopped reading early, said with the file's name (everything before it was handed over);
/// it belongs to the last recording started. Fails only when the file cannot be opened or is
/// not a trace file.
pub fn read(path: &Path, mut visit: impl FnMut(Section)) -> Result<Option<String>, TraceError> {
    let mut reader = TraceReader::open(path)?;
    let file = path.display().to_string();
    let header = reader.header().clone();
    let mut started = false;
    for record in reader.by_ref() {
        let Ok(record) = record else { break };
        match record {
            Record::Recording(start) => {
                started = true;
                visit(Section::Start(start));
            }
            Record::End(_) => {}
            record => {
                if !started {
                    started = true;
                    visit(Section::Start(plain(&file, &header)));
                }
                visit(Section::Record(record));
            }
        }
    }
    if !started {
        visit(Section::Start(plain(&file, &header)));
    }
    Ok(reader.damage().map(|damage| format!("{file}: {damage}")))
}

/// The start of the one recording a file written by `record` holds.
fn plain(file: &str, header: &Header) -> RecordingStart {
    RecordingStart {
        file: file.to_string(),
        damage: None,
        header: header.clone(),
    }
}
