//! What can go wrong writing or reading a trace file, and where.
//!
//! Every failure is a [`TraceError`]. Damage found while reading (a file cut short, a flipped
//! byte) carries the byte offset of the chunk where reading stopped, so `locktrace report` can
//! say how much of a recording it used.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// An error writing or reading a trace file. Its `Display` is one line; the underlying
/// [`io::Error`], when there is one, is the error's `source()`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TraceError {
    /// A file operation failed.
    #[error("cannot {op} trace file {}", path.display())]
    Io {
        /// What was being done.
        op: IoOp,
        /// The trace file.
        path: PathBuf,
        /// The operating system's error (shared so a reader can both return and keep it).
        #[source]
        source: Arc<io::Error>,
    },
    /// The path names something other than a regular file (a symbolic link, FIFO, device,
    /// directory or socket): locktrace neither writes through nor reads from those.
    #[error("cannot {op} trace file {}: it is {what}, not a regular file", path.display())]
    NotRegularFile {
        /// What was being done.
        op: IoOp,
        /// The path.
        path: PathBuf,
        /// What is there (`a FIFO`, `a symbolic link`, ...).
        what: &'static str,
    },
    /// Another process is recording to the same file: its partial file exists and is locked.
    #[error(
        "{} is being recorded by another process ({} is locked)",
        path.display(),
        partial.display()
    )]
    Busy {
        /// The target.
        path: PathBuf,
        /// Its partial file.
        partial: PathBuf,
    },
    /// A recording to the same file was killed before it finished and left its partial file,
    /// which is not overwritten.
    #[error(
        "{} is left from a recording that did not finish: move or remove it first",
        partial.display()
    )]
    LeftOver {
        /// The partial file.
        partial: PathBuf,
    },
    /// The target changed while recording (another process wrote it): it is not replaced, and
    /// the recording stays in its partial file.
    #[error(
        "{} changed while recording, so it was not replaced: this recording is in {}",
        path.display(),
        partial.display()
    )]
    Replaced {
        /// The target.
        path: PathBuf,
        /// The partial file that holds the recording.
        partial: PathBuf,
    },
    /// The finished recording could not be renamed into place; it stays in its partial file.
    #[error("cannot rename {} to {}", partial.display(), path.display())]
    Commit {
        /// The partial file that holds the recording.
        partial: PathBuf,
        /// The target.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The file does not start with the trace-file magic.
    #[error("{} is not a locktrace trace file", path.display())]
    NotATraceFile {
        /// The file.
        path: PathBuf,
    },
    /// The file was written in a format version this build cannot read, or a caller asked to
    /// write a version other than the current one.
    #[error(
        "trace file format version {found} is not supported (this build writes version {supported} and reads versions 2 to {supported})"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version this build writes, and the newest it reads.
        supported: u32,
    },
    /// The header body is damaged: its checksum does not match or it does not decode.
    #[error("trace file header at byte {offset} is damaged: {reason}")]
    BadHeader {
        /// Offset of the damaged field.
        offset: u64,
        /// What is wrong.
        reason: Corruption,
    },
    /// The file ends in the middle of the header or of a chunk (the recording was killed or
    /// the disk filled up). Everything before `offset` was read.
    #[error("trace file is cut short in the {what} starting at byte {offset}")]
    Truncated {
        /// Where the incomplete part starts.
        offset: u64,
        /// Which part is incomplete.
        what: Truncation,
    },
    /// A chunk is damaged. Reading stops there: its length field cannot be trusted either, so
    /// nothing after it can be located reliably. Everything before `offset` was read.
    #[error("trace file chunk #{chunk_index} at byte {offset} is corrupt: {reason}")]
    Corrupt {
        /// Where the chunk starts.
        offset: u64,
        /// Position of the chunk in the file, counting from 0 after the header.
        chunk_index: u64,
        /// What is wrong.
        reason: Corruption,
    },
    /// Every chunk is intact but the file has no End chunk: the recording did not finish
    /// cleanly (killed, crashed, or still being written).
    #[error(
        "trace file ends at byte {offset} without an end marker: the recording did not finish cleanly"
    )]
    Unfinished {
        /// The file's length, just after the last complete chunk.
        offset: u64,
    },
    /// The header, or a single item of a record (one stack, one symbol), is too large to
    /// write: readers refuse lengths above the limit.
    #[error("a trace-file {what} item of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// `header`, or the name of the chunk type it was meant for.
        what: &'static str,
        /// The encoded size.
        len: usize,
        /// The largest payload a chunk may carry.
        max: usize,
    },
}

impl TraceError {
    /// Wraps an I/O error with the operation and the file's path.
    pub(crate) fn io(op: IoOp, path: impl Into<PathBuf>, source: io::Error) -> TraceError {
        TraceError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// The file operation an [`TraceError::Io`] was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IoOp {
    /// Creating the file.
    Create,
    /// Locking it for the session.
    Lock,
    /// Writing to it.
    Write,
    /// Flushing or syncing it to disk.
    Sync,
    /// Opening it for reading.
    Open,
    /// Reading from it.
    Read,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Create => "create",
            IoOp::Lock => "lock",
            IoOp::Write => "write",
            IoOp::Sync => "sync",
            IoOp::Open => "open",
            IoOp::Read => "read",
        })
    }
}

/// Which part of the file a [`TraceError::Truncated`] cut through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Truncation {
    /// The fixed prefix: magic, version, header length and checksum.
    FilePrefix,
    /// The header body.
    HeaderBody,
    /// A chunk's 12-byte frame header (type, length, checksum).
    ChunkHeader,
    /// A chunk's payload.
    ChunkPayload,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Truncation::FilePrefix => "file prefix",
            Truncation::HeaderBody => "header body",
            Truncation::ChunkHeader => "chunk header",
            Truncation::ChunkPayload => "chunk payload",
        })
    }
}

/// Why a header or chunk was judged corrupt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Corruption {
    /// The stored CRC32 does not match the bytes.
    CrcMismatch {
        /// The checksum in the file.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The chunk type is not one this build knows (or a retired one).
    UnknownChunkType(u32),
    /// The length field is larger than any writer produces.
    TooLong {
        /// The length found.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The checksum matched but the content does not decode (a writer bug, or a collision).
    Malformed(&'static str),
    /// Bytes follow the End chunk.
    TrailingData,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::CrcMismatch { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Corruption::UnknownChunkType(kind) => write!(f, "unknown chunk type {kind}"),
            Corruption::TooLong { len, max } => {
                write!(f, "length {len} exceeds the limit of {max} bytes")
            }
            Corruption::Malformed(what) => write!(f, "malformed content: {what}"),
            Corruption::TrailingData => f.write_str("data follows the end marker"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_and_names_the_path() {
        let err = TraceError::io(
            IoOp::Create,
            "/nowhere/trace.lt",
            io::Error::from(io::ErrorKind::NotFound),
        );
        let text = err.to_string();
        assert_eq!(text, "cannot create trace file /nowhere/trace.lt");
        assert!(std::error::Error::source(&err).is_some());

        let err = TraceError::Corrupt {
            offset: 4096,
            chunk_index: 3,
            reason: Corruption::CrcMismatch {
                stored: 1,
                computed: 2,
            },
        };
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("#3") && text.contains("4096"), "{text}");
    }
}
