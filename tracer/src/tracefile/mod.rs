//! Recorded sessions: `locktrace record -o FILE` writes one with [`TraceWriter`],
//! `locktrace report FILE` replays it with [`TraceReader`], possibly on another machine.
//!
//! **Format invariant:** parsing a trace file is deterministic: the same bytes give the same
//! records on any machine. Every integer is encoded explicitly, little-endian, field by field;
//! nothing is transmuted, and nothing depends on the reader's kernel or architecture.
//!
//! # On-disk layout (format version 3)
//!
//! The file prefix, then a header body, then chunks until the end of the file.
//!
//! | Offset     | Size | Field                                                           |
//! |------------|------|-----------------------------------------------------------------|
//! | 0          | 8    | magic `LOCKTRC\0` ([`MAGIC`])                                   |
//! | 8          | 4    | format version, u32 ([`FORMAT_VERSION`])                        |
//! | 12         | 4    | header body length `H`, u32                                     |
//! | 16         | 4    | CRC32 of the header body                                        |
//! | 20         | `H`  | header body (see below)                                         |
//! | 20+`H`     | ...  | chunks                                                          |
//!
//! Each chunk:
//!
//! | Offset | Size | Field                                                                    |
//! |--------|------|--------------------------------------------------------------------------|
//! | 0      | 4    | chunk type, u32 ([`ChunkType`]; 0 and retired values are never valid)   |
//! | 4      | 4    | payload length `L`, u32 (at most [`MAX_PAYLOAD_LEN`])                    |
//! | 8      | 4    | CRC32 (IEEE, as `crc32fast`) of the 4 type bytes followed by the payload |
//! | 12     | `L`  | payload                                                                  |
//!
//! Encodings: integers little-endian; `str` = u32 byte length + UTF-8; `opt<T>` = u8 tag
//! (0 none, 1 some) + `T`; `bool` = u8 0/1; `list<T>` = u32 count + items. Table chunks
//! (*) hold items back to back up to the payload's end, so a long table can be split over
//! several chunks of its type. Every payload must be consumed exactly.
//!
//! | Part               | Content                                                                |
//! |--------------------|------------------------------------------------------------------------|
//! | header body        | kernel release `str`, boot id `str`, hostname `str`, start unix ns u64, start monotonic ns u64, command line `list<str>`, probes `list<{name str, kind str, attached bool, detail str}>` |
//! | 1                  | retired (version 1's per-event chunk); never valid                    |
//! | 2 Drops            | monotonic ns u64, counters `list<{name str, value u64}>` (cumulative: the programs' losses and held-state counters, recursion misses) |
//! | 3 KernelSymbols (*)| addr u64, type letter as u32 (Unicode scalar), name `str`, module `opt<str>` |
//! | 4 Stacks (*)       | space u32 (0 kernel, 1 user), pid u32, id i32, frames `list<frame>`    |
//! | 5 SlabCaches (*)   | cache address u64, name `str`                                          |
//! | 6 UserLocks (*)    | pid u32, address u64, name `str`                                       |
//! | 7 UserFunctions (*)| pid u32, address u64, `frame`                                          |
//! | 8 End              | facts written u64, duration ns u64                                     |
//! | 9 Facts (*)        | `fact`s                                                                |
//! | 10 Contention      | monotonic ns u64, then back to back: `class`, count u64, wait ns u64, max ns u64 (cumulative) |
//! | 11 PercpuVars (*)  | offset in the per-CPU area u64, size u64, name `str`                   |
//! | 12 UserLockObjects (*) | pid u32, address u64, binary path `str`, GNU build id (hex) `opt<str>` (version 3) |
//! | 13 Recording       | file `str`, damage `opt<str>`, format version u32, header body (version 3; merged files only: the chunks up to the next Recording are that recording's) |
//!
//! where `frame` = addr u64, function `opt<str>`, offset u64, file `opt<str>`, line `opt<u32>`;
//! `class` = a u64, b u64, tag u16, family u16, offset u32 ([`tracer_common::ClassDesc`]);
//! `held` = addr u64, site u64, `class`, class key u64, chain key u64, acquired ns u64,
//! stale ns u64, cpu u32, lock kind u32, variant u32, at entry u32
//! ([`tracer_common::HeldLock`]);
//! `stack key` = space u32 (0 kernel, 1 user), pid u32, id i32; and
//! `fact` = timestamp ns u64, arg u64, arg2 u64, kind u32, news u32, cpu u32, pid u32, tid u32,
//! context u32, irqs u32, preempt count u32, flags u32, comm 16 bytes, lock `held`, held
//! `list<held>` (at most [`tracer_common::MAX_HELD`]), stack `opt<stack key>`
//! ([`crate::fact::FactRecord`]).
//!
//! # Damage
//!
//! Writers emit each chunk with a single `write`, so a recorder killed or out of disk space
//! leaves complete chunks and at most one partial chunk. Readers return every complete,
//! checksummed chunk before the first damage, then report it ([`TraceReader::damage`]) with
//! its byte offset: a truncated header or payload, a checksum mismatch, an unknown chunk type.
//! Reading does not continue past a damaged chunk, because its length field may be damaged
//! too. A file whose chunks are intact but which lacks the End chunk (written only by
//! [`TraceWriter::finish`]) is readable and reported as [`TraceError::Unfinished`].
//!
//! # Compatibility
//!
//! A change to any encoding above bumps [`FORMAT_VERSION`]; readers refuse versions older than
//! [`OLDEST_READABLE_VERSION`] or newer than their own with [`TraceError::UnsupportedVersion`].
//! New chunk types take new values; retired values are never reused. Version 3 added chunk
//! types 12 and 13 and changed nothing else, so version 2 files are read as they are.
//!
//! # Merged files
//!
//! `locktrace merge` writes a file whose own header describes the merge (this host, the
//! merge's command line, no probes), then for each recording merged a Recording chunk (its
//! file name, its header, the damage that ended it, if any) followed by that recording's
//! chunks, unchanged, and one End chunk. Nothing is rewritten: addresses keep the meaning they
//! had in their own recording, and reports match lock classes across recordings by name.

mod error;
mod format;
mod header;
mod output;
mod reader;
mod record;
mod writer;

pub use error::{Corruption, IoOp, TraceError, Truncation};
pub use format::{
    CHUNK_HEADER_LEN, ChunkType, FILE_PREFIX_LEN, MAGIC, MAX_PAYLOAD_LEN, TARGET_PAYLOAD_LEN,
    chunk_crc,
};
pub use header::{FORMAT_VERSION, Header, OLDEST_READABLE_VERSION, ProbeStatus};
pub use output::OutputFile;
pub use reader::TraceReader;
pub use record::{
    ContentionSnapshot, DropCounts, EndSummary, Record, RecordingStart, apply_to_symbols,
};
pub use writer::TraceWriter;
