//! The recording sink: facts and everything needed to name them go to a trace file, chunk by
//! chunk, so that a recording cut short still holds everything before the cut.

use std::{path::Path, time::Duration};

use super::{SessionError, Sink, symbolize::Namer};
use crate::{
    fact::FactRecord,
    tracefile::{
        ContentionSnapshot, DropCounts, EndSummary, Header, ProbeStatus, Record, TraceWriter,
    },
};

/// How often contention figures are written while they change (the last ones are written at
/// the end whatever): they are cumulative, so fewer snapshots lose nothing but resolution.
const CONTENTION_EVERY_NS: u64 = 10_000_000_000;

/// Writes a session to a trace file.
pub struct Recorder {
    path: std::path::PathBuf,
    command_line: Vec<String>,
    writer: Option<TraceWriter>,
    /// The latest contention figures, and the last ones written.
    contention: ContentionSnapshot,
    contention_written: ContentionSnapshot,
}

impl Recorder {
    /// A recorder that will create `path` (mode 0600) once the probes are attached.
    /// `command_line` is stored in the header.
    pub fn new(path: &Path, command_line: Vec<String>) -> Recorder {
        Recorder {
            path: path.to_path_buf(),
            command_line,
            writer: None,
            contention: ContentionSnapshot::default(),
            contention_written: ContentionSnapshot::default(),
        }
    }

    /// Checks early that the file can be created, so a bad path fails before anything is
    /// attached. The file is rewritten with the real header at start.
    pub fn check_writable(&self) -> Result<(), SessionError> {
        let header = Header::for_this_machine(self.command_line.clone(), Vec::new());
        TraceWriter::create(&self.path, &header)?;
        Ok(())
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
        let mut writer = TraceWriter::create(&self.path, &header)?;
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
        format!(" | {written} facts written to {}", self.path.display())
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
