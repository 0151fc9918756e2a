//! The recording sink: events and everything needed to name them go to a trace file, chunk by
//! chunk, so that a recording cut short still holds everything before the cut.
//!
//! The file is written as `<target>.partial` and renamed over the target when the session
//! finishes (see [`OutputFile`]): a session that fails leaves the target as it was.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tracer_common::Event;

use super::{SessionError, Sink, symbolize::Namer};
use crate::tracefile::{DropCounts, EndSummary, Header, OutputFile, ProbeStatus, TraceWriter};

/// Writes a session to a trace file.
pub struct Recorder {
    target: PathBuf,
    partial: PathBuf,
    command_line: Vec<String>,
    /// The file, until [`Sink::start`] writes its header.
    output: Option<OutputFile>,
    writer: Option<TraceWriter>,
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
        })
    }

    /// Gives up a session that failed: the partial file is kept when it holds events (and
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

impl Sink for Recorder {
    fn start(&mut self, probes: &[ProbeStatus]) -> Result<(), SessionError> {
        let header = Header::for_this_machine(self.command_line.clone(), probes.to_vec());
        let output = self.output.take().expect("Sink::start runs once");
        let mut writer = TraceWriter::new(output, &header)?;
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
        let path = self.target.display().to_string();
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
