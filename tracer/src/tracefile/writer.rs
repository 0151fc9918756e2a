//! Writing a trace file: the header once, then chunks as the session produces records.
//!
//! Each chunk is built whole in a `BytesMut` and handed to the kernel with one `write_all`, so
//! a killed recorder leaves complete chunks followed by at most one partial chunk, which
//! readers detect. Facts are batched into chunks of [`TARGET_PAYLOAD_LEN`] bytes whatever
//! the caller's batch size.

use std::io::Write;
use std::path::Path;

use super::error::{IoOp, TraceError};
use super::format::{ChunkBuf, ChunkType, TARGET_PAYLOAD_LEN, encode_file_header, frame_record};
use super::header::{FORMAT_VERSION, Header};
use super::output::OutputFile;
use super::record::{EndSummary, Record};
use crate::fact::FactRecord;

/// Writes a recording. Create it with [`TraceWriter::create`] (or [`TraceWriter::new`] on an
/// [`OutputFile`] made earlier), feed it records, and end with [`TraceWriter::finish`], which
/// renames the recording into place. Until then it is written to the partial file,
/// [`TraceWriter::path`].
///
/// A writer dropped without `finish` still writes its buffered facts and leaves the partial
/// file, a valid recording that readers report as unfinished, when it holds facts; without
/// facts it removes it. After a write error the file ends in a partial chunk; readers return
/// everything before it.
pub struct TraceWriter {
    output: OutputFile,
    /// Facts not yet written, already encoded into a Facts chunk.
    pending: ChunkBuf,
    /// How many facts `pending` holds.
    pending_facts: u64,
    facts_written: u64,
}

impl TraceWriter {
    /// Starts a recording that will replace `target` when finished: see [`OutputFile`] for
    /// how the target is protected until then.
    pub fn create(target: &Path, header: &Header) -> Result<TraceWriter, TraceError> {
        check_version(header)?;
        TraceWriter::new(OutputFile::create(target)?, header)
    }

    /// Writes the header to `output` and returns a writer for the rest.
    pub fn new(output: OutputFile, header: &Header) -> Result<TraceWriter, TraceError> {
        check_version(header)?;
        let prefix = encode_file_header(header)?;
        let mut writer = TraceWriter {
            output,
            pending: ChunkBuf::new(ChunkType::Facts),
            pending_facts: 0,
            facts_written: 0,
        };
        writer.write_bytes(&prefix)?;
        Ok(writer)
    }

    /// Writes one record. Facts are buffered like [`TraceWriter::write_facts`]; any other
    /// record first writes the buffered facts, so the file keeps the order of the calls.
    /// A large table may be split over several chunks of its kind.
    ///
    /// [`Record::End`] belongs to [`TraceWriter::finish`]: readers stop at the first End chunk.
    pub fn write(&mut self, record: &Record) -> Result<(), TraceError> {
        if let Record::Facts(facts) = record {
            return self.write_facts(facts);
        }
        self.write_pending()?;
        for chunk in frame_record(record)? {
            self.write_bytes(&chunk)?;
        }
        Ok(())
    }

    /// Appends facts, writing a chunk each time [`TARGET_PAYLOAD_LEN`] bytes of them have
    /// accumulated. Call [`TraceWriter::flush`] to write a partial batch now.
    pub fn write_facts(&mut self, facts: &[FactRecord]) -> Result<(), TraceError> {
        for fact in facts {
            self.pending.put_fact(fact);
            self.pending_facts += 1;
            self.facts_written += 1;
            if self.pending.payload_len() >= TARGET_PAYLOAD_LEN {
                self.write_pending()?;
            }
        }
        Ok(())
    }

    /// Writes buffered facts to the file, so a reader (or a crash) sees everything passed
    /// so far. Does not wait for the disk; [`TraceWriter::finish`] does.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        self.write_pending()?;
        let path = self.output.partial_path().to_path_buf();
        self.output
            .file()
            .flush()
            .map_err(|err| TraceError::io(IoOp::Sync, path, err))
    }

    /// Writes the buffered facts and the End chunk, waits until the file is on disk and
    /// renames it over the target (`OutputFile::commit`). `summary.facts_written` should be
    /// [`TraceWriter::facts_written`].
    pub fn finish(mut self, summary: EndSummary) -> Result<(), TraceError> {
        self.write(&Record::End(summary))?;
        // Nothing is buffered now; once committed, dropping `self` leaves the file alone.
        self.output.commit()
    }

    /// Facts accepted so far, including those still buffered.
    pub fn facts_written(&self) -> u64 {
        self.facts_written
    }

    /// The file being written: the target's partial file until [`TraceWriter::finish`].
    pub fn path(&self) -> &Path {
        self.output.partial_path()
    }

    fn write_pending(&mut self) -> Result<(), TraceError> {
        if self.pending.payload_len() == 0 {
            return Ok(());
        }
        let lost = std::mem::take(&mut self.pending_facts);
        let chunk = self.pending.seal();
        self.write_bytes(&chunk).inspect_err(|_| {
            self.facts_written -= lost;
        })
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), TraceError> {
        let path = self.output.partial_path().to_path_buf();
        self.output
            .file()
            .write_all(bytes)
            .map_err(|err| TraceError::io(IoOp::Write, path, err))
    }
}

fn check_version(header: &Header) -> Result<(), TraceError> {
    if header.format_version != FORMAT_VERSION {
        return Err(TraceError::UnsupportedVersion {
            found: header.format_version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

impl Drop for TraceWriter {
    /// Writes buffered facts so an unfinished recording loses nothing it was given, and keeps
    /// the partial file when it holds facts (it is removed otherwise). Errors cannot be
    /// reported here; call [`TraceWriter::flush`] or [`TraceWriter::finish`] to see them.
    fn drop(&mut self) {
        let _ = self.write_pending();
        if self.facts_written > 0 {
            self.output.keep();
        }
    }
}

impl std::fmt::Debug for TraceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter")
            .field("path", &self.output.partial_path())
            .field("facts_written", &self.facts_written)
            .field("pending_bytes", &self.pending.payload_len())
            .finish()
    }
}
