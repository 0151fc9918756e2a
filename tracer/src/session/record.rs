//! The recording sink: events and everything needed to name them go to a trace file, chunk by
//! chunk, so that a recording cut short still holds everything before the cut.

use std::{path::Path, time::Duration};

use tracer_common::Event;

use super::{SessionError, Sink, symbolize::Namer};
use crate::tracefile::{DropCounts, EndSummary, Header, ProbeStatus, TraceWriter};

/// Writes a session to a trace file.
pub struct Recorder {
    path: std::path::PathBuf,
    command_line: Vec<String>,
    writer: Option<TraceWriter>,
}

impl Recorder {
    /// A recorder that will create `path` (mode 0600) once the probes are attached.
    /// `command_line` is stored in the header.
    pub fn new(path: &Path, command_line: Vec<String>) -> Recorder {
        Recorder {
            path: path.to_path_buf(),
            command_line,
            writer: None,
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

impl Sink for Recorder {
    fn start(&mut self, probes: &[ProbeStatus]) -> Result<(), SessionError> {
        let header = Header::for_this_machine(self.command_line.clone(), probes.to_vec());
        let mut writer = TraceWriter::create(&self.path, &header)?;
        writer.flush()?;
        self.writer = Some(writer);
        Ok(())
    }

    fn events(&mut self, events: &[Event], namer: &mut Namer) -> Result<(), SessionError> {
        // Names first, so a reader that stops anywhere can name every event it got.
        for record in namer.take_records() {
            self.writer().write(&record)?;
        }
        self.writer().write_events(events)?;
        Ok(())
    }

    fn drops(&mut self, drops: &DropCounts) -> Result<(), SessionError> {
        let writer = self.writer();
        writer.write(&crate::tracefile::Record::Drops(drops.clone()))?;
        writer.flush()?;
        Ok(())
    }

    fn status(&self) -> String {
        let written = self.writer.as_ref().map_or(0, TraceWriter::events_written);
        let path = self.path.display().to_string();
        format!(
            " | {written} written to {}",
            crate::report::printable(&path)
        )
    }

    fn finish(&mut self, namer: &mut Namer, duration: Duration) -> Result<(), SessionError> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        for record in namer.take_records() {
            writer.write(&record)?;
        }
        let summary = EndSummary {
            events_written: writer.events_written(),
            duration_ns: duration.as_nanos() as u64,
        };
        writer.finish(summary)?;
        Ok(())
    }
}
