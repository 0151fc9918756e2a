//! Any bytes given to the trace-file reader: it must never panic, hang or allocate beyond
//! what the input holds, and must keep its own contract whatever chunk types it meets.
//!
//! Generic over the reader API (open, iterate, `damage`, `end`, names applied to a symbol
//! table) and the chunk framing, not over record types, so chunk types added later are fuzzed
//! without a change. Each input is read as it is, then with its checksums made right, so
//! that mutations reach the payload decoders instead of stopping at a CRC mismatch. The seed
//! corpus (fuzz/corpus/tracefile) holds small valid, truncated and corrupted recordings.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tracer::{
    symbols::Symbols,
    tracefile::{CHUNK_HEADER_LEN, FILE_PREFIX_LEN, TraceReader, apply_to_symbols, chunk_crc},
};

fuzz_target!(|data: &[u8]| {
    read(data);
    read(&with_checksums_fixed(data));
});

/// `data` with the header's and every complete chunk's CRC32 recomputed.
fn with_checksums_fixed(data: &[u8]) -> Vec<u8> {
    let mut bytes = data.to_vec();
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    if bytes.len() < FILE_PREFIX_LEN {
        return bytes;
    }
    let body_len = u32_at(&bytes, 12) as usize;
    let Some(body_end) = FILE_PREFIX_LEN
        .checked_add(body_len)
        .filter(|&e| e <= bytes.len())
    else {
        return bytes;
    };
    let crc = crc32fast::hash(&bytes[FILE_PREFIX_LEN..body_end]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    let mut at = body_end;
    while at + CHUNK_HEADER_LEN <= bytes.len() {
        let kind = u32_at(&bytes, at);
        let len = u32_at(&bytes, at + 4) as usize;
        let start = at + CHUNK_HEADER_LEN;
        let Some(end) = start.checked_add(len).filter(|&e| e <= bytes.len()) else {
            break;
        };
        let crc = chunk_crc(kind, &bytes[start..end]);
        bytes[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
    bytes
}

/// Reads `data` to the end, checking the reader's contract.
fn read(data: &[u8]) {
    let Ok(mut reader) = TraceReader::new(data, Path::new("fuzz input")) else {
        return;
    };
    let mut symbols = Symbols::default();
    let mut errors = 0;
    for item in reader.by_ref() {
        match item {
            Ok(record) => {
                apply_to_symbols(&record, &mut symbols);
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors <= 1, "the reader yields at most one error");
    assert!(reader.next().is_none(), "the reader stays finished");
    assert!(
        reader.damage().is_some() || reader.end().is_some(),
        "a clean end has its End chunk"
    );
}
