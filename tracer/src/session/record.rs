//! The recording sink: facts and everything needed to name them go to a trace file, chunk by
//! chunk, so that a recording cut short still holds everything before the cut.
//!
//! The file is written as `<target>.partial` and renamed over the target when the session
//! finishes (see [`OutputFile`]): a session that fails leaves the target as it was.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{SessionError, Sink, symbolize::Namer};
use crate::{
    fact::FactRecord,
    tracefile::{
        ContentionSnapshot, DropCounts, EndSummary, Header, OutputFile, ProbeStatus, Record,
        TraceWriter,
    },
};

/// How often contention figures are written while they change (the last ones are written at
/// the end whatever): they are cumulative, so fewer snapshots lose nothing but resolution.
const CONTENTION_EVERY_NS: u64 = 10_000_000_000;

/// Writes a session to a trace file.
pub struct Recorder {
    target: PathBuf,
    partial: PathBuf,
    command_line: Vec<String>,
    /// The file, until [`Sink::start`] writes its header.
    output: Option<OutputFile>,
    writer: Option<TraceWriter>,
    /// The latest contention figures, and the last ones written.
    contention: ContentionSnapshot,
    contention_written: ContentionSnapshot,
}

impl Recorder {
    /// A recorder for `path`. Its partial file is created (and locked) now, so a refused,
    /// busy or unwritable target fails before anything is attached. `command_line` is
    /// stored in the header.
    pub fn create(path: &Path, command_line: Vec<String>) -> Result<Recorder, SessionError> {
        let output = OutputFile::create(path)?;
        Ok(Recorder {
            target: path.to_path_buf(),
            partial: output.partial_path().to_path_buf(),
            command_line,
            output: Some(output),
            writer: None,
            contention: ContentionSnapshot::default(),
            contention_written: ContentionSnapshot::default(),
        })
    }

    /// Gives up a session that failed: the partial file is kept when it holds facts (and
    /// returned, to say where they are), removed otherwise. The target is untouched.
    pub fn abandon(self) -> Option<PathBuf> {
        let partial = self.partial.clone();
        drop(self);
        std::fs::symlink_metadata(&partial)
            .is_ok()
            .then_some(partial)
    }

    fn writer(&mut self) -> &mut TraceWriter {
        self.writer
            .as_mut()
            .expect("Sink::start creates the writer")
    }
}

impl Recorder {
    /// Writes the latest contention figures, after the names they need.
    fn write_contention(&mut self, namer: &mut Namer) -> Result<(), SessionError> {
        for record in namer.take_records() {
            self.writer().write(&record)?;
        }
        let snapshot = self.contention.clone();
        self.writer().write(&Record::Contention(snapshot.clone()))?;
        self.contention_written = snapshot;
        Ok(())
    }
}

impl Sink for Recorder {
    fn start(&mut self, probes: &[ProbeStatus]) -> Result<(), SessionError> {
        let header = Header::for_this_machine(self.command_line.clone(), probes.to_vec());
        let output = self.output.take().expect("Sink::start runs once");
        let mut writer = TraceWriter::new(output, &header)?;
        writer.flush()?;
        self.writer = Some(writer);
        Ok(())
    }

    fn facts(&mut self, facts: &[FactRecord], namer: &mut Namer) -> Result<(), SessionError> {
        // Names first, so a reader that stops anywhere can name every fact it got.
        for record in namer.take_records() {
            self.writer().write(&record)?;
        }
        self.writer().write_facts(facts)?;
        Ok(())
    }

    fn contention(
        &mut self,
        snapshot: &ContentionSnapshot,
        namer: &mut Namer,
    ) -> Result<(), SessionError> {
        self.contention = snapshot.clone();
        let due =
            snapshot.monotonic_ns >= self.contention_written.monotonic_ns + CONTENTION_EVERY_NS;
        if due && snapshot.stats != self.contention_written.stats {
            self.write_contention(namer)?;
        }
        Ok(())
    }

    fn drops(&mut self, drops: &DropCounts) -> Result<(), SessionError> {
        let writer = self.writer();
        writer.write(&crate::tracefile::Record::Drops(drops.clone()))?;
        writer.flush()?;
        Ok(())
    }

    fn status(&self) -> String {
        let written = self.writer.as_ref().map_or(0, TraceWriter::facts_written);
        let path = self.target.display().to_string();
        format!(
            " | {written} facts written to {}",
            crate::report::printable(&path)
        )
    }

    fn writes_names(&self) -> bool {
        true
    }

    fn finish(&mut self, namer: &mut Namer, duration: Duration) -> Result<(), SessionError> {
        if self.writer.is_none() {
            return Ok(());
        }
        if self.contention.stats != self.contention_written.stats {
            self.write_contention(namer)?;
        }
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        for record in namer.take_records() {
            writer.write(&record)?;
        }
        let summary = EndSummary {
            facts_written: writer.facts_written(),
            duration_ns: duration.as_nanos() as u64,
        };
        writer.finish(summary)?;
        Ok(())
    }
}
