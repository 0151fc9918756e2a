//! Reading a trace file back, one chunk at a time.
//!
//! [`TraceReader::open`] checks the magic, version and header; iterating yields one
//! [`Record`] per chunk, holding one chunk in memory at a time. At the first damaged chunk
//! (cut short, checksum mismatch, unknown type, undecodable) the iterator yields that error
//! once and ends: the damaged chunk's length field cannot be trusted, so nothing after it can
//! be located reliably, and guessing could turn noise into facts. [`TraceReader::damage`]
//! then says where and why reading stopped, including the gentler case of a file whose chunks
//! are all intact but which has no End chunk.
//!
//! Lengths in the file are not trusted with memory: a header or chunk claiming more bytes
//! than the file holds costs only what the file holds.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::iter::FusedIterator;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Buf;

use super::error::{Corruption, IoOp, TraceError, Truncation};
use super::format::{
    CHUNK_HEADER_LEN, ChunkType, FILE_PREFIX_LEN, MAGIC, MAX_PAYLOAD_LEN, chunk_crc,
    decode_header_body, decode_payload,
};
use super::header::{FORMAT_VERSION, Header, OLDEST_READABLE_VERSION};
use super::output::regular;
use super::record::{EndSummary, Record};

/// Reads a recording: the [`Header`] up front, then [`Record`]s as an iterator. Reads a file
/// ([`TraceReader::open`]) or any byte stream ([`TraceReader::new`]).
pub struct TraceReader<R = BufReader<File>> {
    path: PathBuf,
    file: R,
    header: Header,
    /// Offset of the next chunk.
    offset: u64,
    /// Index of the next chunk.
    chunk_index: u64,
    facts_read: u64,
    end: Option<EndSummary>,
    damage: Option<TraceError>,
    done: bool,
    /// Reused payload buffer.
    payload: Vec<u8>,
}

impl TraceReader {
    /// Opens `path` and reads its header. Fails with [`TraceError::NotATraceFile`],
    /// [`TraceError::UnsupportedVersion`], [`TraceError::Truncated`] or
    /// [`TraceError::BadHeader`] when the header is not usable, with
    /// [`TraceError::NotRegularFile`] for a FIFO, device or directory (reading one could
    /// block forever), and with [`TraceError::Io`] naming the path when the file cannot be
    /// read.
    pub fn open(path: &Path) -> Result<TraceReader, TraceError> {
        // Non-blocking, so that opening a FIFO without a writer returns at once and is
        // refused below; regular files ignore the flag.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|err| TraceError::io(IoOp::Open, path, err))?;
        let meta = file
            .metadata()
            .map_err(|err| TraceError::io(IoOp::Open, path, err))?;
        regular(path, &meta, IoOp::Open)?;
        TraceReader::new(BufReader::with_capacity(256 << 10, file), path)
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads a recording from `reader` and checks its header, like [`TraceReader::open`];
    /// `path` is what errors call the input.
    pub fn new(mut file: R, path: &Path) -> Result<TraceReader<R>, TraceError> {
        let read_err = |err| TraceError::io(IoOp::Read, path, err);

        let mut prefix = [0u8; FILE_PREFIX_LEN];
        let got = read_full(&mut file, &mut prefix).map_err(read_err)?;
        let magic_len = got.min(MAGIC.len());
        if prefix[..magic_len] != MAGIC[..magic_len] {
            return Err(TraceError::NotATraceFile {
                path: path.to_path_buf(),
            });
        }
        if got < FILE_PREFIX_LEN {
            return Err(TraceError::Truncated {
                offset: 0,
                what: Truncation::FilePrefix,
            });
        }
        let mut fields = &prefix[MAGIC.len()..];
        let format_version = fields.get_u32_le();
        let body_len = fields.get_u32_le();
        let body_crc = fields.get_u32_le();
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&format_version) {
            return Err(TraceError::UnsupportedVersion {
                found: format_version,
                supported: FORMAT_VERSION,
            });
        }
        if body_len as usize > MAX_PAYLOAD_LEN {
            return Err(TraceError::BadHeader {
                offset: (MAGIC.len() + 4) as u64,
                reason: Corruption::TooLong {
                    len: body_len,
                    max: MAX_PAYLOAD_LEN as u32,
                },
            });
        }
        let mut body = Vec::new();
        if !read_exactly(&mut file, body_len as usize, &mut body).map_err(read_err)? {
            return Err(TraceError::Truncated {
                offset: FILE_PREFIX_LEN as u64,
                what: Truncation::HeaderBody,
            });
        }
        let computed = crc32fast::hash(&body);
        let bad_header = |reason| TraceError::BadHeader {
            offset: FILE_PREFIX_LEN as u64,
            reason,
        };
        if computed != body_crc {
            return Err(bad_header(Corruption::CrcMismatch {
                stored: body_crc,
                computed,
            }));
        }
        let header = decode_header_body(format_version, &body).map_err(bad_header)?;
        Ok(TraceReader {
            path: path.to_path_buf(),
            file,
            header,
            offset: (FILE_PREFIX_LEN + body.len()) as u64,
            chunk_index: 0,
            facts_read: 0,
            end: None,
            damage: None,
            done: false,
            payload: Vec::new(),
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// After iteration: why reading stopped before a clean end, if it did. This is the error
    /// the iterator yielded last, or [`TraceError::Unfinished`] when every chunk was intact
    /// but the End chunk is missing (which the iterator does not yield as an error, since no
    /// byte was damaged). `None` while iterating and after a clean end.
    pub fn damage(&self) -> Option<&TraceError> {
        self.damage.as_ref()
    }

    /// The End chunk's summary, once iteration has reached it.
    pub fn end(&self) -> Option<&EndSummary> {
        self.end.as_ref()
    }

    /// Facts yielded so far (to compare with [`EndSummary::facts_written`]).
    pub fn facts_read(&self) -> u64 {
        self.facts_read
    }

    /// Reads the next chunk. `Ok(None)` at a clean end of file (at a chunk boundary).
    fn next_chunk(&mut self) -> Result<Option<Record>, TraceError> {
        let start = self.offset;
        let truncated = |what| TraceError::Truncated {
            offset: start,
            what,
        };
        let corrupt = |reason| TraceError::Corrupt {
            offset: start,
            chunk_index: self.chunk_index,
            reason,
        };
        let mut frame = [0u8; CHUNK_HEADER_LEN];
        let got = read_full(&mut self.file, &mut frame).map_err(|err| self.read_error(err))?;
        if got == 0 {
            return Ok(None);
        }
        if self.end.is_some() {
            return Err(corrupt(Corruption::TrailingData));
        }
        if got < CHUNK_HEADER_LEN {
            return Err(truncated(Truncation::ChunkHeader));
        }
        let mut fields = &frame[..];
        let raw_kind = fields.get_u32_le();
        let len = fields.get_u32_le();
        let stored = fields.get_u32_le();
        let kind = ChunkType::from_u32(raw_kind)
            .ok_or_else(|| corrupt(Corruption::UnknownChunkType(raw_kind)))?;
        if len as usize > MAX_PAYLOAD_LEN {
            return Err(corrupt(Corruption::TooLong {
                len,
                max: MAX_PAYLOAD_LEN as u32,
            }));
        }
        let complete = read_exactly(&mut self.file, len as usize, &mut self.payload)
            .map_err(|err| self.read_error(err))?;
        if !complete {
            return Err(truncated(Truncation::ChunkPayload));
        }
        let computed = chunk_crc(raw_kind, &self.payload);
        if computed != stored {
            return Err(corrupt(Corruption::CrcMismatch { stored, computed }));
        }
        let record = decode_payload(kind, &self.payload).map_err(corrupt)?;
        self.offset += (CHUNK_HEADER_LEN + self.payload.len()) as u64;
        self.chunk_index += 1;
        match &record {
            Record::Facts(facts) => self.facts_read += facts.len() as u64,
            Record::End(summary) => self.end = Some(*summary),
            _ => {}
        }
        Ok(Some(record))
    }

    fn read_error(&self, err: io::Error) -> TraceError {
        TraceError::io(IoOp::Read, &self.path, err)
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<Record, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_chunk() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                if self.end.is_none() {
                    self.damage = Some(TraceError::Unfinished {
                        offset: self.offset,
                    });
                }
                None
            }
            Err(err) => {
                self.done = true;
                self.damage = Some(err.clone());
                Some(Err(err))
            }
        }
    }
}

impl<R: Read> FusedIterator for TraceReader<R> {}

impl<R> std::fmt::Debug for TraceReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("chunk_index", &self.chunk_index)
            .field("damage", &self.damage)
            .finish()
    }
}

/// Replaces `buf` with the next `len` bytes; false when the input ends first. Memory grows with
/// the bytes actually read, not with `len`.
fn read_exactly(reader: &mut impl Read, len: usize, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let got = reader.take(len as u64).read_to_end(buf)?;
    Ok(got == len)
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}
