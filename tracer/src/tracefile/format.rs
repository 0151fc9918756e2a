//! The bytes on disk: magic, version, chunk framing and the encoding of every record.
//!
//! Everything is encoded field by field, little-endian, through `bytes`' `BufMut` and decoded
//! through `Buf` on a byte slice, with every length checked before use. Nothing here does I/O,
//! so the same bytes decode to the same values on any machine. The layout is specified in the
//! [module documentation](super).

use bytes::{Buf, BufMut, BytesMut};
use tracer_common::{ClassDesc, ContentionStat, FactKind, HeldLock, IrqState};

use super::error::{Corruption, TraceError};
use super::header::{Header, ProbeStatus};
use super::record::{ContentionSnapshot, DropCounts, EndSummary, Record, RecordingStart};
use crate::fact::FactRecord;
use crate::symbols::kallsyms::KernelSymbol;
use crate::symbols::{Frame, StackKey, StackSpace, UserObject};

/// The first eight bytes of every trace file.
pub const MAGIC: [u8; 8] = *b"LOCKTRC\0";

/// Magic, version, header-body length and header-body CRC32.
pub const FILE_PREFIX_LEN: usize = 20;

/// A chunk's frame header: type, payload length and CRC32.
pub const CHUNK_HEADER_LEN: usize = 12;

/// The largest header body or chunk payload a reader accepts. Writers stay far below it (see
/// [`TARGET_PAYLOAD_LEN`]); a larger length field means the field itself is damaged, and
/// refusing it keeps a corrupt file from making the reader allocate gigabytes.
pub const MAX_PAYLOAD_LEN: usize = 64 << 20;

/// Writers start a new chunk rather than grow one past this size (896 KiB), so a file cut
/// short loses at most about a megabyte and readers stream in bounded memory.
pub const TARGET_PAYLOAD_LEN: usize = 896 * 1024;

tracer_common::wire_enum! {
    /// The kind of a chunk. Values are part of the format: a retired value is never reused,
    /// and 0 is never valid (a zero-filled tail left by a crash must not parse as a chunk).
    /// 1 was version 1's per-event chunk: retired, never valid again. Names are used in
    /// messages.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
    pub enum ChunkType: u32 {
        /// [`Record::Drops`].
        Drops = 2 => "drops",
        /// [`Record::KernelSymbols`].
        KernelSymbols = 3 => "kernel-symbols",
        /// [`Record::Stacks`].
        Stacks = 4 => "stacks",
        /// [`Record::SlabCaches`].
        SlabCaches = 5 => "slab-caches",
        /// [`Record::UserLocks`].
        UserLocks = 6 => "user-locks",
        /// [`Record::UserFunctions`].
        UserFunctions = 7 => "user-functions",
        /// [`Record::End`].
        End = 8 => "end",
        /// [`Record::Facts`].
        Facts = 9 => "facts",
        /// [`Record::Contention`].
        Contention = 10 => "contention",
        /// [`Record::PercpuVars`].
        PercpuVars = 11 => "percpu-vars",
        /// [`Record::UserLockObjects`] (version 3).
        UserLockObjects = 12 => "user-lock-objects",
        /// [`Record::Recording`] (version 3, merged files only).
        Recording = 13 => "recording",
    }
}

impl ChunkType {
    /// The chunk type of a record.
    pub const fn of(record: &Record) -> ChunkType {
        match record {
            Record::Facts(_) => ChunkType::Facts,
            Record::Contention(_) => ChunkType::Contention,
            Record::PercpuVars(_) => ChunkType::PercpuVars,
            Record::Drops(_) => ChunkType::Drops,
            Record::KernelSymbols(_) => ChunkType::KernelSymbols,
            Record::Stacks(_) => ChunkType::Stacks,
            Record::SlabCaches(_) => ChunkType::SlabCaches,
            Record::UserLocks(_) => ChunkType::UserLocks,
            Record::UserFunctions(_) => ChunkType::UserFunctions,
            Record::End(_) => ChunkType::End,
            Record::UserLockObjects(_) => ChunkType::UserLockObjects,
            Record::Recording(_) => ChunkType::Recording,
        }
    }
}

impl std::fmt::Display for ChunkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The CRC32 stored in a chunk's frame header: over the type's four bytes, then the payload.
pub fn chunk_crc(kind: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&kind.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// A chunk being built: a frame header placeholder followed by the payload, so sealing it
/// needs no copy.
pub(crate) struct ChunkBuf {
    kind: ChunkType,
    bytes: BytesMut,
}

impl ChunkBuf {
    pub(crate) fn new(kind: ChunkType) -> ChunkBuf {
        let mut bytes = BytesMut::new();
        bytes.put_bytes(0, CHUNK_HEADER_LEN);
        ChunkBuf { kind, bytes }
    }

    pub(crate) fn payload_len(&self) -> usize {
        self.bytes.len() - CHUNK_HEADER_LEN
    }

    /// Fills in the frame header and returns the whole chunk, leaving `self` empty.
    pub(crate) fn seal(&mut self) -> BytesMut {
        let kind = self.kind as u32;
        // Bounded by MAX_PAYLOAD_LEN (checked per item by `Framer`, by count for events).
        let len = self.payload_len() as u32;
        let crc = chunk_crc(kind, &self.bytes[CHUNK_HEADER_LEN..]);
        let mut header = &mut self.bytes[..CHUNK_HEADER_LEN];
        header.put_u32_le(kind);
        header.put_u32_le(len);
        header.put_u32_le(crc);
        std::mem::replace(self, ChunkBuf::new(self.kind)).bytes
    }

    /// Appends one fact to a Facts chunk.
    pub(crate) fn put_fact(&mut self, fact: &FactRecord) {
        put_fact(&mut self.bytes, fact);
    }
}

/// Splits a list record over chunks of at most [`TARGET_PAYLOAD_LEN`] bytes (or one item when
/// a single item is larger).
struct Framer {
    current: ChunkBuf,
    sealed: Vec<BytesMut>,
}

impl Framer {
    fn item(&mut self, encode: impl FnOnce(&mut BytesMut)) -> Result<(), TraceError> {
        let start = self.current.bytes.len();
        encode(&mut self.current.bytes);
        let item_len = self.current.bytes.len() - start;
        if item_len > MAX_PAYLOAD_LEN {
            return Err(TraceError::RecordTooLarge {
                what: self.current.kind.name(),
                len: item_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let had_items = start > CHUNK_HEADER_LEN;
        if had_items && self.current.payload_len() > TARGET_PAYLOAD_LEN {
            let item = self.current.bytes.split_off(start);
            self.sealed.push(self.current.seal());
            self.current.bytes.extend_from_slice(&item);
        }
        Ok(())
    }
}

/// Encodes a record as one or more complete chunks, ready to write. A record always yields at
/// least one chunk, so an empty table reads back as an empty table.
pub(crate) fn frame_record(record: &Record) -> Result<Vec<BytesMut>, TraceError> {
    let mut framer = Framer {
        current: ChunkBuf::new(ChunkType::of(record)),
        sealed: Vec::new(),
    };
    match record {
        Record::Facts(facts) => {
            for fact in facts {
                framer.item(|buf| put_fact(buf, fact))?;
            }
        }
        Record::Contention(snapshot) => {
            framer.item(|buf| buf.put_u64_le(snapshot.monotonic_ns))?;
            for stat in &snapshot.stats {
                framer.item(|buf| put_contention(buf, stat))?;
            }
        }
        Record::PercpuVars(vars) => {
            for (offset, size, name) in vars {
                framer.item(|buf| {
                    buf.put_u64_le(*offset);
                    buf.put_u64_le(*size);
                    put_str(buf, name);
                })?;
            }
        }
        Record::Drops(drops) => framer.item(|buf| put_drops(buf, drops))?,
        Record::KernelSymbols(symbols) => {
            for symbol in symbols {
                framer.item(|buf| put_kernel_symbol(buf, symbol))?;
            }
        }
        Record::Stacks(stacks) => {
            for (key, frames) in stacks {
                framer.item(|buf| put_stack(buf, key, frames))?;
            }
        }
        Record::SlabCaches(caches) => {
            for (addr, name) in caches {
                framer.item(|buf| {
                    buf.put_u64_le(*addr);
                    put_str(buf, name);
                })?;
            }
        }
        Record::UserLocks(locks) => {
            for ((pid, addr), name) in locks {
                framer.item(|buf| {
                    buf.put_u32_le(*pid);
                    buf.put_u64_le(*addr);
                    put_str(buf, name);
                })?;
            }
        }
        Record::UserFunctions(functions) => {
            for ((pid, addr), frame) in functions {
                framer.item(|buf| {
                    buf.put_u32_le(*pid);
                    buf.put_u64_le(*addr);
                    put_frame(buf, frame);
                })?;
            }
        }
        Record::End(summary) => framer.item(|buf| {
            buf.put_u64_le(summary.facts_written);
            buf.put_u64_le(summary.duration_ns);
        })?,
        Record::UserLockObjects(objects) => {
            for ((pid, addr), object) in objects {
                framer.item(|buf| {
                    buf.put_u32_le(*pid);
                    buf.put_u64_le(*addr);
                    put_str(buf, &object.path);
                    put_option(buf, object.build_id.as_deref(), put_str);
                })?;
            }
        }
        Record::Recording(start) => framer.item(|buf| {
            put_str(buf, &start.file);
            put_option(buf, start.damage.as_deref(), put_str);
            buf.put_u32_le(start.header.format_version);
            put_header_body(buf, &start.header);
        })?,
    }
    let mut chunks = framer.sealed;
    chunks.push(framer.current.seal());
    Ok(chunks)
}

/// Decodes a chunk payload whose frame (type, length, CRC) has already been checked.
pub(crate) fn decode_payload(kind: ChunkType, payload: &[u8]) -> Result<Record, Corruption> {
    let mut dec = Decoder { buf: payload };
    let record = match kind {
        ChunkType::Facts => Record::Facts(dec.until_empty(Decoder::fact)?),
        ChunkType::Contention => {
            let monotonic_ns = dec.u64()?;
            Record::Contention(ContentionSnapshot {
                monotonic_ns,
                stats: dec.until_empty(Decoder::contention)?,
            })
        }
        ChunkType::PercpuVars => {
            Record::PercpuVars(dec.until_empty(|dec| Ok((dec.u64()?, dec.u64()?, dec.string()?)))?)
        }
        ChunkType::Drops => {
            let monotonic_ns = dec.u64()?;
            let count = dec.u32()?;
            let mut counts = Vec::new();
            for _ in 0..count {
                counts.push((dec.string()?, dec.u64()?));
            }
            Record::Drops(DropCounts {
                monotonic_ns,
                counts,
            })
        }
        ChunkType::KernelSymbols => Record::KernelSymbols(dec.until_empty(|dec| {
            Ok(KernelSymbol {
                addr: dec.u64()?,
                kind: char::from_u32(dec.u32()?)
                    .ok_or(Corruption::Malformed("symbol type is not a character"))?,
                name: dec.string()?,
                module: dec.option(Decoder::string)?,
            })
        })?),
        ChunkType::Stacks => Record::Stacks(dec.until_empty(|dec| {
            let key = dec.stack_key()?;
            let count = dec.u32()?;
            let mut frames = Vec::new();
            for _ in 0..count {
                frames.push(dec.frame()?);
            }
            Ok((key, frames))
        })?),
        ChunkType::SlabCaches => {
            Record::SlabCaches(dec.until_empty(|dec| Ok((dec.u64()?, dec.string()?)))?)
        }
        ChunkType::UserLocks => {
            Record::UserLocks(dec.until_empty(|dec| Ok(((dec.u32()?, dec.u64()?), dec.string()?)))?)
        }
        ChunkType::UserFunctions => Record::UserFunctions(
            dec.until_empty(|dec| Ok(((dec.u32()?, dec.u64()?), dec.frame()?)))?,
        ),
        ChunkType::End => Record::End(EndSummary {
            facts_written: dec.u64()?,
            duration_ns: dec.u64()?,
        }),
        ChunkType::UserLockObjects => Record::UserLockObjects(dec.until_empty(|dec| {
            Ok((
                (dec.u32()?, dec.u64()?),
                UserObject {
                    path: dec.string()?,
                    build_id: dec.option(Decoder::string)?,
                },
            ))
        })?),
        ChunkType::Recording => {
            let file = dec.string()?;
            let damage = dec.option(Decoder::string)?;
            let version = dec.u32()?;
            let header = decode_header_fields(version, &mut dec)?;
            Record::Recording(RecordingStart {
                file,
                damage,
                header,
            })
        }
    };
    if !dec.buf.is_empty() {
        return Err(Corruption::Malformed(
            "bytes left over after the last field",
        ));
    }
    Ok(record)
}

/// Encodes the file prefix and header body. The version written is the header's, which the
/// writer has checked equals [`super::FORMAT_VERSION`].
pub(crate) fn encode_file_header(header: &Header) -> Result<BytesMut, TraceError> {
    let mut body = BytesMut::new();
    put_header_body(&mut body, header);
    if body.len() > MAX_PAYLOAD_LEN {
        return Err(TraceError::RecordTooLarge {
            what: "header",
            len: body.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    let mut out = BytesMut::with_capacity(FILE_PREFIX_LEN + body.len());
    out.put_slice(&MAGIC);
    out.put_u32_le(header.format_version);
    out.put_u32_le(body.len() as u32);
    out.put_u32_le(crc32fast::hash(&body));
    out.put_slice(&body);
    Ok(out)
}

/// Encodes a header body (the file's, or a merged recording's in its Recording chunk).
fn put_header_body(body: &mut BytesMut, header: &Header) {
    put_str(body, &header.kernel_release);
    put_str(body, &header.boot_id);
    put_str(body, &header.hostname);
    body.put_u64_le(header.start_unix_ns);
    body.put_u64_le(header.start_monotonic_ns);
    body.put_u32_le(header.command_line.len() as u32);
    for arg in &header.command_line {
        put_str(body, arg);
    }
    body.put_u32_le(header.probes.len() as u32);
    for probe in &header.probes {
        put_str(body, &probe.name);
        put_str(body, &probe.kind);
        body.put_u8(u8::from(probe.attached));
        put_str(body, &probe.detail);
    }
}

/// Decodes a header body whose CRC has been checked.
pub(crate) fn decode_header_body(format_version: u32, body: &[u8]) -> Result<Header, Corruption> {
    let mut dec = Decoder { buf: body };
    let header = decode_header_fields(format_version, &mut dec)?;
    if !dec.buf.is_empty() {
        return Err(Corruption::Malformed("bytes left over after the header"));
    }
    Ok(header)
}

/// Decodes the fields of a header body, leaving what follows them.
fn decode_header_fields(format_version: u32, dec: &mut Decoder) -> Result<Header, Corruption> {
    let kernel_release = dec.string()?;
    let boot_id = dec.string()?;
    let hostname = dec.string()?;
    let start_unix_ns = dec.u64()?;
    let start_monotonic_ns = dec.u64()?;
    let mut command_line = Vec::new();
    for _ in 0..dec.u32()? {
        command_line.push(dec.string()?);
    }
    let mut probes = Vec::new();
    for _ in 0..dec.u32()? {
        probes.push(ProbeStatus {
            name: dec.string()?,
            kind: dec.string()?,
            attached: match dec.u8()? {
                0 => false,
                1 => true,
                _ => return Err(Corruption::Malformed("probe attached flag is not 0 or 1")),
            },
            detail: dec.string()?,
        });
    }
    Ok(Header {
        format_version,
        kernel_release,
        boot_id,
        hostname,
        start_unix_ns,
        start_monotonic_ns,
        command_line,
        probes,
    })
}

/// Encodes a class description: a, b, tag, offset.
fn put_class(buf: &mut impl BufMut, class: &ClassDesc) {
    buf.put_u64_le(class.a);
    buf.put_u64_le(class.b);
    buf.put_u16_le(class.tag);
    buf.put_u16_le(class.family);
    buf.put_u32_le(class.offset);
}

/// Encodes a held lock: its fields in declaration order, little-endian.
fn put_held(buf: &mut impl BufMut, lock: &HeldLock) {
    buf.put_u64_le(lock.addr);
    buf.put_u64_le(lock.site);
    put_class(buf, &lock.class);
    buf.put_u64_le(lock.class_key);
    buf.put_u64_le(lock.chain_key);
    buf.put_u64_le(lock.acquired_ns);
    buf.put_u64_le(lock.stale_ns);
    buf.put_u32_le(lock.cpu);
    buf.put_u32_le(lock.kind);
    buf.put_u32_le(lock.variant);
    buf.put_u32_le(lock.at_entry);
}

/// Encodes a stack key: space (0 kernel, 1 user), pid, id.
fn put_stack_key(buf: &mut BytesMut, key: &StackKey) {
    buf.put_u32_le(match key.space {
        StackSpace::Kernel => 0,
        StackSpace::User => 1,
    });
    buf.put_u32_le(key.pid);
    buf.put_i32_le(key.id);
}

/// Encodes one fact (see the module documentation for the layout).
fn put_fact(buf: &mut BytesMut, fact: &FactRecord) {
    buf.put_u64_le(fact.timestamp_ns);
    buf.put_u64_le(fact.arg);
    buf.put_u64_le(fact.arg2);
    buf.put_u32_le(fact.kind as u32);
    buf.put_u32_le(fact.news);
    buf.put_u32_le(fact.cpu);
    buf.put_u32_le(fact.pid);
    buf.put_u32_le(fact.tid);
    buf.put_u32_le(fact.context as u32);
    buf.put_u32_le(fact.irqs as u32);
    buf.put_u32_le(fact.preempt_count);
    buf.put_u32_le(fact.flags);
    buf.put_slice(&fact.comm);
    put_held(buf, &fact.lock);
    buf.put_u32_le(fact.held.len() as u32);
    for lock in &fact.held {
        put_held(buf, lock);
    }
    put_option(buf, fact.stack.as_ref(), put_stack_key);
}

fn put_contention(buf: &mut BytesMut, stat: &ContentionStat) {
    put_class(buf, &stat.class);
    buf.put_u64_le(stat.count);
    buf.put_u64_le(stat.wait_ns);
    buf.put_u64_le(stat.max_ns);
}

/// Strings: u32 byte length, then UTF-8. Lengths above `u32::MAX` cannot occur: every item
/// and header is checked against [`MAX_PAYLOAD_LEN`] after encoding.
fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32_le(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

/// Options: a u8 tag (0 absent, 1 present), then the value.
fn put_option<T>(buf: &mut BytesMut, value: Option<T>, put: impl FnOnce(&mut BytesMut, T)) {
    match value {
        None => buf.put_u8(0),
        Some(value) => {
            buf.put_u8(1);
            put(buf, value);
        }
    }
}

fn put_frame(buf: &mut BytesMut, frame: &Frame) {
    buf.put_u64_le(frame.addr);
    put_option(buf, frame.function.as_deref(), put_str);
    buf.put_u64_le(frame.offset);
    put_option(buf, frame.file.as_deref(), put_str);
    put_option(buf, frame.line, BufMut::put_u32_le);
}

fn put_kernel_symbol(buf: &mut BytesMut, symbol: &KernelSymbol) {
    buf.put_u64_le(symbol.addr);
    buf.put_u32_le(u32::from(symbol.kind));
    put_str(buf, &symbol.name);
    put_option(buf, symbol.module.as_deref(), put_str);
}

fn put_stack(buf: &mut BytesMut, key: &StackKey, frames: &[Frame]) {
    put_stack_key(buf, key);
    buf.put_u32_le(frames.len() as u32);
    for frame in frames {
        put_frame(buf, frame);
    }
}

fn put_drops(buf: &mut BytesMut, drops: &DropCounts) {
    buf.put_u64_le(drops.monotonic_ns);
    buf.put_u32_le(drops.counts.len() as u32);
    for (name, value) in &drops.counts {
        put_str(buf, name);
        buf.put_u64_le(*value);
    }
}

/// Reads fields from a payload, failing with [`Corruption::Malformed`] instead of panicking
/// when the payload is shorter than its fields claim.
struct Decoder<'a> {
    buf: &'a [u8],
}

const SHORT: Corruption = Corruption::Malformed("a field runs past the end of the payload");

impl Decoder<'_> {
    fn u8(&mut self) -> Result<u8, Corruption> {
        self.buf.try_get_u8().map_err(|_| SHORT)
    }

    fn u16(&mut self) -> Result<u16, Corruption> {
        self.buf.try_get_u16_le().map_err(|_| SHORT)
    }

    fn u32(&mut self) -> Result<u32, Corruption> {
        self.buf.try_get_u32_le().map_err(|_| SHORT)
    }

    fn i32(&mut self) -> Result<i32, Corruption> {
        self.buf.try_get_i32_le().map_err(|_| SHORT)
    }

    fn u64(&mut self) -> Result<u64, Corruption> {
        self.buf.try_get_u64_le().map_err(|_| SHORT)
    }

    fn string(&mut self) -> Result<String, Corruption> {
        let len = self.u32()? as usize;
        if len > self.buf.len() {
            return Err(SHORT);
        }
        let (text, rest) = self.buf.split_at(len);
        self.buf = rest;
        String::from_utf8(text.to_vec())
            .map_err(|_| Corruption::Malformed("a string is not valid UTF-8"))
    }

    fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, Corruption>,
    ) -> Result<Option<T>, Corruption> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(Corruption::Malformed("an option tag is not 0 or 1")),
        }
    }

    /// Items packed back to back until the payload ends (so lists can be split over chunks
    /// without a count to fix up).
    fn until_empty<T>(
        &mut self,
        mut read: impl FnMut(&mut Self) -> Result<T, Corruption>,
    ) -> Result<Vec<T>, Corruption> {
        let mut items = Vec::new();
        while !self.buf.is_empty() {
            items.push(read(self)?);
        }
        Ok(items)
    }

    fn frame(&mut self) -> Result<Frame, Corruption> {
        Ok(Frame {
            addr: self.u64()?,
            function: self.option(Self::string)?,
            offset: self.u64()?,
            file: self.option(Self::string)?,
            line: self.option(Self::u32)?,
        })
    }

    fn stack_key(&mut self) -> Result<StackKey, Corruption> {
        let space = match self.u32()? {
            0 => StackSpace::Kernel,
            1 => StackSpace::User,
            _ => return Err(Corruption::Malformed("unknown stack space")),
        };
        Ok(StackKey {
            space,
            pid: self.u32()?,
            id: self.i32()?,
        })
    }

    fn class(&mut self) -> Result<ClassDesc, Corruption> {
        Ok(ClassDesc {
            a: self.u64()?,
            b: self.u64()?,
            tag: self.u16()?,
            family: self.u16()?,
            offset: self.u32()?,
        })
    }

    fn held(&mut self) -> Result<HeldLock, Corruption> {
        Ok(HeldLock {
            addr: self.u64()?,
            site: self.u64()?,
            class: self.class()?,
            class_key: self.u64()?,
            chain_key: self.u64()?,
            acquired_ns: self.u64()?,
            stale_ns: self.u64()?,
            cpu: self.u32()?,
            kind: self.u32()?,
            variant: self.u32()?,
            at_entry: self.u32()?,
        })
    }

    fn fact(&mut self) -> Result<FactRecord, Corruption> {
        let timestamp_ns = self.u64()?;
        let arg = self.u64()?;
        let arg2 = self.u64()?;
        let kind =
            FactKind::from_u32(self.u32()?).ok_or(Corruption::Malformed("unknown fact kind"))?;
        let news = self.u32()?;
        let cpu = self.u32()?;
        let pid = self.u32()?;
        let tid = self.u32()?;
        let context = tracer_common::ExecContext::from_u32(self.u32()?);
        let irqs = IrqState::from_u32(self.u32()?);
        let preempt_count = self.u32()?;
        let flags = self.u32()?;
        let mut comm = [0; 16];
        self.buf.try_copy_to_slice(&mut comm).map_err(|_| SHORT)?;
        let lock = self.held()?;
        let count = self.u32()? as usize;
        if count > tracer_common::MAX_HELD {
            return Err(Corruption::Malformed(
                "a fact holds more locks than a stack can",
            ));
        }
        let mut held = Vec::with_capacity(count);
        for _ in 0..count {
            held.push(self.held()?);
        }
        let stack = self.option(Self::stack_key)?;
        Ok(FactRecord {
            timestamp_ns,
            kind,
            news,
            arg,
            arg2,
            cpu,
            pid,
            tid,
            context,
            irqs,
            preempt_count,
            flags,
            comm,
            lock,
            held,
            stack,
        })
    }

    fn contention(&mut self) -> Result<ContentionStat, Corruption> {
        Ok(ContentionStat {
            class: self.class()?,
            count: self.u64()?,
            wait_ns: self.u64()?,
            max_ns: self.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracefile::FORMAT_VERSION;

    fn payload_of(chunk: &[u8]) -> &[u8] {
        &chunk[CHUNK_HEADER_LEN..]
    }

    fn sample_stacks() -> Record {
        Record::Stacks(vec![(
            StackKey::user(42, 3),
            vec![
                Frame {
                    addr: 0x401000,
                    function: Some("main".into()),
                    offset: 0x10,
                    file: Some("main.c".into()),
                    line: Some(12),
                },
                Frame::unresolved(0x402000),
            ],
        )])
    }

    #[test]
    fn chunk_type_values_are_stable() {
        for (raw, kind) in [
            (2, ChunkType::Drops),
            (3, ChunkType::KernelSymbols),
            (4, ChunkType::Stacks),
            (5, ChunkType::SlabCaches),
            (6, ChunkType::UserLocks),
            (7, ChunkType::UserFunctions),
            (8, ChunkType::End),
            (9, ChunkType::Facts),
            (10, ChunkType::Contention),
            (11, ChunkType::PercpuVars),
            (12, ChunkType::UserLockObjects),
            (13, ChunkType::Recording),
        ] {
            assert_eq!(kind as u32, raw);
            assert_eq!(ChunkType::from_u32(raw), Some(kind));
        }
        assert_eq!(
            ChunkType::from_u32(0),
            None,
            "a zero-filled tail is not a chunk"
        );
        assert_eq!(
            ChunkType::from_u32(1),
            None,
            "version 1's event chunks are retired"
        );
        assert_eq!(ChunkType::from_u32(14), None);
    }

    /// Version 3's chunks: a user lock's binary, and a merged recording's start with its own
    /// header (a version 2 one too).
    #[test]
    fn version_3_chunks_round_trip() {
        let objects = Record::UserLockObjects(vec![
            (
                (7, 0x601000),
                UserObject {
                    path: "/usr/bin/app".into(),
                    build_id: Some("ab12".into()),
                },
            ),
            ((8, 0x20), UserObject::default()),
        ]);
        let start = Record::Recording(RecordingStart {
            file: "a.lttrace".into(),
            damage: Some("cut short".into()),
            header: Header {
                format_version: 2,
                hostname: "web-1".into(),
                command_line: vec!["locktrace".into()],
                ..Header::default()
            },
        });
        for record in [objects, start] {
            let chunks = frame_record(&record).unwrap();
            let kind = ChunkType::of(&record);
            assert_eq!(decode_payload(kind, payload_of(&chunks[0])), Ok(record));
        }
    }

    #[test]
    fn sealed_chunk_frames_type_length_and_crc() {
        let record = Record::SlabCaches(vec![(0xdead, "kmalloc-64".into())]);
        let chunks = frame_record(&record).unwrap();
        assert_eq!(chunks.len(), 1);
        let mut frame = &chunks[0][..CHUNK_HEADER_LEN];
        let payload = payload_of(&chunks[0]);
        assert_eq!(frame.get_u32_le(), ChunkType::SlabCaches as u32);
        assert_eq!(frame.get_u32_le() as usize, payload.len());
        assert_eq!(frame.get_u32_le(), chunk_crc(5, payload));
        assert_eq!(decode_payload(ChunkType::SlabCaches, payload), Ok(record));
    }

    #[test]
    fn every_prefix_of_a_payload_is_rejected_without_panicking() {
        let chunks = frame_record(&sample_stacks()).unwrap();
        let payload = payload_of(&chunks[0]);
        for len in 1..payload.len() {
            assert!(
                decode_payload(ChunkType::Stacks, &payload[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        assert!(
            decode_payload(ChunkType::End, &[0; 17]).is_err(),
            "trailing byte"
        );
    }

    #[test]
    fn long_tables_are_split_into_chunks_that_each_decode() {
        let names: Vec<(u64, String)> = (0..40_000u64)
            .map(|i| (i, format!("cache-with-a-longish-name-{i}")))
            .collect();
        let chunks = frame_record(&Record::SlabCaches(names.clone())).unwrap();
        assert!(chunks.len() > 1);
        let mut back = Vec::new();
        for chunk in &chunks {
            assert!(payload_of(chunk).len() <= TARGET_PAYLOAD_LEN);
            match decode_payload(ChunkType::SlabCaches, payload_of(chunk)).unwrap() {
                Record::SlabCaches(part) => back.extend(part),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, names);
    }

    #[test]
    fn empty_tables_still_make_a_chunk() {
        let chunks = frame_record(&Record::KernelSymbols(Vec::new())).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].len(), CHUNK_HEADER_LEN);
    }

    #[test]
    fn header_body_round_trips() {
        let header = Header {
            format_version: FORMAT_VERSION,
            kernel_release: "6.12.0".into(),
            boot_id: "b".into(),
            hostname: "h".into(),
            start_unix_ns: 1,
            start_monotonic_ns: 2,
            command_line: vec!["locktrace".into(), "record".into()],
            probes: vec![ProbeStatus {
                name: "mutex_lock".into(),
                kind: "fexit".into(),
                attached: true,
                detail: String::new(),
            }],
        };
        let bytes = encode_file_header(&header).unwrap();
        let body = &bytes[FILE_PREFIX_LEN..];
        assert_eq!(decode_header_body(FORMAT_VERSION, body), Ok(header));
    }
}
