//! The trace file on real files: round trips, files cut short or corrupted at every offset,
//! permissions, and the exact bytes of the fact encoding. What a recording may do to the
//! path it is given is in `output.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tracer::fact::FactRecord;
use tracer::symbols::kallsyms::KernelSymbol;
use tracer::symbols::{Frame, StackKey, Symbols};
use tracer::tracefile::{
    CHUNK_HEADER_LEN, ChunkType, ContentionSnapshot, Corruption, DropCounts, EndSummary,
    FILE_PREFIX_LEN, FORMAT_VERSION, Header, IoOp, ProbeStatus, Record, TraceError, TraceReader,
    TraceWriter, Truncation, apply_to_symbols, chunk_crc,
};
use tracer_common::{
    ClassDesc, ContentionStat, ExecContext, FactKind, HeldLock, IrqState, fact::news,
};

fn header() -> Header {
    Header {
        format_version: FORMAT_VERSION,
        kernel_release: "6.12.48+deb13-amd64".into(),
        boot_id: "0f6b2a47-3c1e-4a7e-9a55-2b8e9d0c1f10".into(),
        hostname: "testbox".into(),
        start_unix_ns: 1_750_000_000_123_456_789,
        start_monotonic_ns: 98_765_432_100,
        command_line: vec![
            "locktrace".into(),
            "record".into(),
            "-o".into(),
            "t.lt".into(),
        ],
        probes: vec![
            ProbeStatus {
                name: "mutex_lock".into(),
                kind: "fexit".into(),
                attached: true,
                detail: String::new(),
            },
            ProbeStatus {
                name: "lock_acquired".into(),
                kind: "tp_btf".into(),
                attached: false,
                detail: "CONFIG_LOCK_STAT is off".into(),
            },
        ],
    }
}

/// A held lock whose every field differs from its neighbours' and from zero.
fn held(i: u64) -> HeldLock {
    let small = i as u32;
    HeldLock {
        addr: 0xffff_8880_0000_0000 + i * 64,
        site: 0xffff_ffff_8100_0000 + i,
        class: ClassDesc {
            a: 0xffff_8880_1000_0000 + i,
            b: i * 7,
            tag: 1 + (small % 6) as u16,
            family: (small % 7) as u16,
            offset: 0xa5a5_0000 | small,
        },
        class_key: u64::MAX - i,
        chain_key: i * 0x9e37_79b9,
        acquired_ns: 1_000_000 + i,
        stale_ns: 2_000_000 + i,
        cpu: small % 64,
        kind: small % 10,
        variant: small & 7,
        at_entry: small * 3,
    }
}

/// A fact whose every field differs from its neighbours' and from zero, holding `i % 4` locks.
fn fact(i: u64) -> FactRecord {
    let small = i as u32;
    let mut comm = [0u8; 16];
    comm[..7].copy_from_slice(b"worker-");
    comm[7] = b'a' + (i % 26) as u8;
    FactRecord {
        timestamp_ns: 1_000_000 + i,
        kind: if i.is_multiple_of(2) {
            FactKind::Acquire
        } else {
            FactKind::Call
        },
        news: 1 + small % 7,
        arg: i * 3,
        arg2: u64::MAX - i,
        cpu: small % 64,
        pid: 1000 + small,
        tid: 2000 + small,
        context: ExecContext::from_u32(small % 5),
        irqs: IrqState::from_u32(small % 3),
        preempt_count: 0x100 * (small % 4),
        flags: small & 0xff,
        comm,
        lock: held(i),
        held: (0..i % 4).map(|k| held(i * 10 + k)).collect(),
        stack: (!i.is_multiple_of(3)).then(|| StackKey::user(1000 + small, -(i as i32))),
    }
}

fn frame(addr: u64, function: &str) -> Frame {
    Frame {
        addr,
        function: Some(function.into()),
        offset: 0x1c,
        file: Some("kernel/locking/mutex.c".into()),
        line: Some(281),
    }
}

/// One record of every kind except End, each small.
fn every_record() -> Vec<Record> {
    vec![
        Record::Facts((0..3).map(fact).collect()),
        Record::KernelSymbols(vec![
            KernelSymbol {
                addr: 0xffff_ffff_8100_0000,
                kind: 'T',
                name: "mutex_lock".into(),
                module: None,
            },
            KernelSymbol {
                addr: 0xffff_ffff_c000_1000,
                kind: 'd',
                name: "lt_seed_lock".into(),
                module: Some("locktrace_test".into()),
            },
        ]),
        Record::Stacks(vec![
            (
                StackKey::kernel(7),
                vec![
                    frame(0xffff_ffff_8100_001c, "mutex_lock"),
                    Frame::unresolved(1),
                ],
            ),
            (StackKey::user(1234, -3), vec![]),
        ]),
        Record::SlabCaches(vec![(0xffff_8880_1000_0000, "kmalloc-64".into())]),
        Record::UserLocks(vec![((1234, 0x5555_0000_4010), "big_lock".into())]),
        Record::UserFunctions(vec![(
            (1234, 0x5555_0000_1234),
            frame(0x5555_0000_1234, "worker"),
        )]),
        Record::Drops(DropCounts {
            monotonic_ns: 98_765_999_999,
            counts: vec![("ring_full".into(), 12), ("stale_held".into(), 3)],
        }),
        Record::Contention(ContentionSnapshot {
            monotonic_ns: 98_766_000_000,
            stats: vec![ContentionStat {
                class: held(1).class,
                count: 4,
                wait_ns: 5000,
                max_ns: 2000,
            }],
        }),
        Record::PercpuVars(vec![(0x1f000, 0x1000, "runqueues".into())]),
        Record::Facts((3..5).map(fact).collect()),
    ]
}

fn summary() -> EndSummary {
    EndSummary {
        facts_written: 5,
        duration_ns: 1_500_000_000,
    }
}

/// The End chunk's length in a file: frame and two u64.
const END_CHUNK_LEN: u64 = CHUNK_HEADER_LEN as u64 + 16;

/// Writes `records` and the End chunk; returns the path. Without `finish`, the End chunk is
/// cut off again: the file is then what a recording killed after those records leaves.
fn write_file(dir: &TempDir, name: &str, records: &[Record], finish: bool) -> PathBuf {
    let path = dir.path().join(name);
    let mut writer = TraceWriter::create(&path, &header()).unwrap();
    for record in records {
        writer.write(record).unwrap();
    }
    writer.finish(summary()).unwrap();
    if !finish {
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - END_CHUNK_LEN).unwrap();
    }
    path
}

/// Everything a reader yields: the records, the error it ended with, and `damage()`.
struct ReadBack {
    records: Vec<Record>,
    error: Option<TraceError>,
    damage: Option<TraceError>,
}

fn read_back(path: &Path) -> Result<ReadBack, TraceError> {
    let mut reader = TraceReader::open(path)?;
    let mut records = Vec::new();
    let mut error = None;
    for item in reader.by_ref() {
        match item {
            Ok(record) => records.push(record),
            Err(err) => {
                assert!(error.is_none(), "the reader yields at most one error");
                error = Some(err);
            }
        }
    }
    assert!(reader.next().is_none(), "the reader stays finished");
    Ok(ReadBack {
        records,
        error,
        damage: reader.damage().cloned(),
    })
}

/// Offsets where each chunk starts, and the file's end, parsed by hand from the framing.
fn chunk_boundaries(bytes: &[u8]) -> Vec<usize> {
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut at = FILE_PREFIX_LEN + header_len;
    let mut boundaries = vec![at];
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += CHUNK_HEADER_LEN + len;
        boundaries.push(at);
    }
    assert_eq!(at, bytes.len());
    boundaries
}

#[test]
fn round_trip_preserves_the_header_and_every_record() {
    let dir = TempDir::new().unwrap();
    let records = every_record();
    let path = write_file(&dir, "all.lt", &records, true);

    let mut reader = TraceReader::open(&path).unwrap();
    assert_eq!(reader.header(), &header());
    let back: Vec<Record> = reader.by_ref().map(Result::unwrap).collect();
    let mut expected = records.clone();
    expected.push(Record::End(summary()));
    assert_eq!(
        back, expected,
        "facts byte-exact, every field of every record"
    );
    assert!(reader.damage().is_none());
    assert_eq!(reader.end(), Some(&summary()));
    assert_eq!(reader.facts_read(), 5);

    let mut symbols = Symbols::default();
    let applied = back
        .iter()
        .filter(|record| apply_to_symbols(record, &mut symbols))
        .count();
    assert_eq!(applied, 6);
    assert_eq!(
        symbols.kernel.data(0xffff_ffff_c000_1008).unwrap().0.name,
        "lt_seed_lock"
    );
    assert_eq!(symbols.user_locks[&(1234, 0x5555_0000_4010)], "big_lock");
}

#[test]
fn facts_are_batched_into_bounded_chunks_in_order() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("many.lt");
    let facts: Vec<FactRecord> = (0..20_000).map(fact).collect();
    let mut writer = TraceWriter::create(&path, &header()).unwrap();
    for batch in facts.chunks(7) {
        writer.write_facts(batch).unwrap();
    }
    assert_eq!(writer.facts_written(), 20_000);
    let written = writer.facts_written();
    writer
        .finish(EndSummary {
            facts_written: written,
            duration_ns: 1,
        })
        .unwrap();

    let read = read_back(&path).unwrap();
    assert!(read.damage.is_none());
    let mut back = Vec::new();
    for record in &read.records[..read.records.len() - 1] {
        let Record::Facts(batch) = record else {
            panic!("expected facts, got {record:?}");
        };
        back.extend_from_slice(batch);
    }
    let chunks = read.records.len() - 1;
    assert!(chunks > 1, "{chunks} chunks of facts");
    assert_eq!(back, facts);
}

#[test]
fn flush_makes_buffered_facts_readable() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("flush.lt");
    let mut writer = TraceWriter::create(&path, &header()).unwrap();
    writer.write_facts(&[fact(1), fact(2)]).unwrap();
    writer.flush().unwrap();

    assert!(!path.exists(), "the target appears when finished");
    let read = read_back(writer.path()).unwrap();
    assert_eq!(read.records, vec![Record::Facts(vec![fact(1), fact(2)])]);
    assert!(matches!(read.damage, Some(TraceError::Unfinished { .. })));
    drop(writer);
}

#[test]
fn a_writer_dropped_without_finish_leaves_a_readable_unfinished_file() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("dropped.lt");
    let mut writer = TraceWriter::create(&path, &header()).unwrap();
    writer.write(&every_record()[1]).unwrap();
    writer.write_facts(&[fact(9)]).unwrap();
    let partial = writer.path().to_path_buf();
    assert_eq!(partial, dir.path().join("dropped.lt.partial"));
    drop(writer);

    assert!(
        !path.exists(),
        "an unfinished recording does not replace the target"
    );
    let len = fs::metadata(&partial).unwrap().len();
    let read = read_back(&partial).unwrap();
    assert_eq!(
        read.records,
        vec![every_record()[1].clone(), Record::Facts(vec![fact(9)])]
    );
    assert!(
        read.error.is_none(),
        "missing End is not damage to any byte"
    );
    match read.damage {
        Some(TraceError::Unfinished { offset }) => assert_eq!(offset, len),
        other => panic!("expected Unfinished, got {other:?}"),
    }
}

#[test]
fn every_truncation_yields_exactly_the_complete_chunks_before_the_cut() {
    let dir = TempDir::new().unwrap();
    let records = every_record();
    let full = fs::read(write_file(&dir, "full.lt", &records, true)).unwrap();
    let boundaries = chunk_boundaries(&full);
    let mut expected = records.clone();
    expected.push(Record::End(summary()));
    assert_eq!(boundaries.len(), expected.len() + 1);
    let header_end = boundaries[0];
    let cut_path = dir.path().join("cut.lt");

    for cut in 0..=full.len() {
        fs::write(&cut_path, &full[..cut]).unwrap();
        if cut < header_end {
            let err = TraceReader::open(&cut_path).unwrap_err();
            let (offset, what) = if cut < FILE_PREFIX_LEN {
                (0, Truncation::FilePrefix)
            } else {
                (FILE_PREFIX_LEN as u64, Truncation::HeaderBody)
            };
            assert!(
                matches!(err, TraceError::Truncated { offset: o, what: w } if o == offset && w == what),
                "cut at {cut}: {err:?}"
            );
            continue;
        }
        let read = read_back(&cut_path).unwrap();
        let complete = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
        assert_eq!(read.records, expected[..complete], "cut at {cut}");
        let last = boundaries[complete];
        if cut == full.len() {
            assert!(read.damage.is_none(), "the whole file ends cleanly");
        } else if cut == last {
            assert!(read.error.is_none(), "cut at {cut}");
            assert!(
                matches!(read.damage, Some(TraceError::Unfinished { offset }) if offset == cut as u64),
                "cut at {cut}: {:?}",
                read.damage
            );
        } else {
            let what = if cut - last < CHUNK_HEADER_LEN {
                Truncation::ChunkHeader
            } else {
                Truncation::ChunkPayload
            };
            let damage = read.damage.expect("damage is reported");
            assert!(
                matches!(damage, TraceError::Truncated { offset, what: w } if offset == last as u64 && w == what),
                "cut at {cut}: {damage:?}"
            );
            assert_eq!(read.error.unwrap().to_string(), damage.to_string());
        }
    }
}

#[test]
fn a_flipped_payload_byte_returns_the_chunks_before_then_names_the_corrupt_chunk() {
    let dir = TempDir::new().unwrap();
    let path = write_file(&dir, "flip.lt", &every_record(), true);
    let mut bytes = fs::read(&path).unwrap();
    let boundaries = chunk_boundaries(&bytes);
    bytes[boundaries[2] + CHUNK_HEADER_LEN + 5] ^= 0x40;
    fs::write(&path, &bytes).unwrap();

    let read = read_back(&path).unwrap();
    assert_eq!(read.records, every_record()[..2]);
    let err = read.error.expect("the corrupt chunk is reported");
    match &err {
        TraceError::Corrupt {
            offset,
            chunk_index,
            reason: Corruption::CrcMismatch { .. },
        } => {
            assert_eq!((*offset, *chunk_index), (boundaries[2] as u64, 2));
        }
        other => panic!("expected a CRC mismatch, got {other:?}"),
    }
    assert_eq!(read.damage.unwrap().to_string(), err.to_string());
}

#[test]
fn no_single_flipped_byte_after_the_header_yields_a_wrong_record() {
    let dir = TempDir::new().unwrap();
    let records = every_record();
    let path = write_file(&dir, "orig.lt", &records, true);
    let bytes = fs::read(&path).unwrap();
    let header_end = chunk_boundaries(&bytes)[0];
    let mut expected = records;
    expected.push(Record::End(summary()));
    let flipped = dir.path().join("flipped.lt");
    for at in header_end..bytes.len() {
        let mut copy = bytes.clone();
        copy[at] ^= 0x01;
        fs::write(&flipped, &copy).unwrap();
        let read = read_back(&flipped).unwrap();
        assert!(
            expected.starts_with(&read.records),
            "byte {at}: a damaged chunk was accepted"
        );
        assert!(read.error.is_some(), "byte {at}: damage went unreported");
    }
}

#[test]
fn a_flipped_magic_is_not_a_trace_file() {
    let dir = TempDir::new().unwrap();
    let path = write_file(&dir, "magic.lt", &[], true);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] = b'X';
    fs::write(&path, &bytes).unwrap();
    match TraceReader::open(&path).unwrap_err() {
        TraceError::NotATraceFile { path: named } => assert_eq!(named, path),
        other => panic!("expected NotATraceFile, got {other:?}"),
    }
}

#[test]
fn a_future_version_is_unsupported() {
    let dir = TempDir::new().unwrap();
    let path = write_file(&dir, "future.lt", &[], true);
    let mut bytes = fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    match TraceReader::open(&path).unwrap_err() {
        TraceError::UnsupportedVersion { found, supported } => {
            assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn a_damaged_header_body_is_a_bad_header() {
    let dir = TempDir::new().unwrap();
    let path = write_file(&dir, "header.lt", &[], true);
    let mut bytes = fs::read(&path).unwrap();
    bytes[FILE_PREFIX_LEN + 6] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        TraceReader::open(&path).unwrap_err(),
        TraceError::BadHeader {
            reason: Corruption::CrcMismatch { .. },
            ..
        }
    ));
}

#[test]
fn an_intact_chunk_of_unknown_type_stops_reading() {
    let dir = TempDir::new().unwrap();
    let path = write_file(&dir, "unknown.lt", &every_record()[..1], false);
    let mut bytes = fs::read(&path).unwrap();
    let offset = bytes.len() as u64;
    let payload = [1u8, 2, 3];
    bytes.extend_from_slice(&99u32.to_le_bytes());
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&chunk_crc(99, &payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    fs::write(&path, &bytes).unwrap();

    let read = read_back(&path).unwrap();
    assert_eq!(read.records, every_record()[..1]);
    assert!(matches!(
        read.error,
        Some(TraceError::Corrupt { offset: o, chunk_index: 1, reason: Corruption::UnknownChunkType(99) }) if o == offset
    ));
}

#[test]
fn data_after_the_end_chunk_is_reported() {
    let dir = TempDir::new().unwrap();
    let path = write_file(&dir, "trailing.lt", &[], true);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0; 4]);
    fs::write(&path, &bytes).unwrap();
    let read = read_back(&path).unwrap();
    assert_eq!(read.records, vec![Record::End(summary())]);
    assert!(matches!(
        read.error,
        Some(TraceError::Corrupt {
            chunk_index: 1,
            reason: Corruption::TrailingData,
            ..
        })
    ));
}

#[test]
fn files_are_created_with_mode_0600() {
    let dir = TempDir::new().unwrap();
    let path = write_file(&dir, "mode.lt", &[], true);
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

fn assert_create_fails_naming(path: &Path) {
    let err = TraceWriter::create(path, &header()).unwrap_err();
    let TraceError::Io {
        op, path: named, ..
    } = &err
    else {
        panic!("expected an Io error, got {err:?}");
    };
    assert_eq!((*op, named.as_path()), (IoOp::Create, path));
    assert!(err.to_string().contains(&path.display().to_string()));
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn creating_where_no_file_can_be_made_is_an_io_error_naming_the_path() {
    let dir = TempDir::new().unwrap();
    assert_create_fails_naming(&dir.path().join("missing/dir/trace.lt"));

    let not_a_dir = dir.path().join("plain-file");
    fs::write(&not_a_dir, b"").unwrap();
    assert_create_fails_naming(&not_a_dir.join("trace.lt"));

    // Root ignores directory permissions, so this part only means something for other users.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let locked = dir.path().join("locked");
        fs::create_dir(&locked).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
        assert_create_fails_naming(&locked.join("trace.lt"));
    }
}

#[test]
fn opening_a_missing_file_is_an_io_error_naming_the_path() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("absent.lt");
    assert!(matches!(
        TraceReader::open(&path).unwrap_err(),
        TraceError::Io { op: IoOp::Open, path: named, .. } if named == path
    ));
}

#[test]
fn a_header_of_another_version_is_not_written() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("v2.lt");
    let header = Header {
        format_version: FORMAT_VERSION + 1,
        ..header()
    };
    assert!(matches!(
        TraceWriter::create(&path, &header).unwrap_err(),
        TraceError::UnsupportedVersion { .. }
    ));
    assert!(!path.exists(), "nothing is created");
}

/// The fact of the golden test and its encoding, computed by hand.
fn golden_fact() -> (FactRecord, Vec<u8>) {
    let mut comm = [0u8; 16];
    comm[..11].copy_from_slice(b"kworker/0:1");
    let fact = FactRecord {
        timestamp_ns: 0x0102_0304_0506_0708,
        kind: FactKind::Acquire,
        news: news::NEW_CHAIN,
        arg: 4,
        arg2: 0,
        cpu: 3,
        pid: 0x1234,
        tid: 0x1235,
        context: ExecContext::Task,
        irqs: IrqState::Disabled,
        preempt_count: 0x201,
        flags: 0x10,
        comm,
        lock: HeldLock {
            addr: 0xffff_ffff_8234_5678,
            site: 0xffff_ffff_8123_4567,
            class: ClassDesc {
                a: 0xffff_ffff_8234_5678,
                b: 0,
                tag: 1,
                family: 0,
                offset: 0,
            },
            class_key: 0x1122_3344_5566_7788,
            chain_key: 0x0a0b_0c0d_0e0f_1011,
            acquired_ns: 0x0102_0304_0506_0708,
            stale_ns: 0x0202_0304_0506_0708,
            cpu: 3,
            kind: 4,
            variant: 1,
            at_entry: 0,
        },
        held: Vec::new(),
        stack: Some(StackKey::kernel(7)),
    };
    #[rustfmt::skip]
    let bytes: Vec<u8> = [
        &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01][..], // timestamp_ns
        &[0x04, 0, 0, 0, 0, 0, 0, 0],                           // arg: usage bits
        &[0, 0, 0, 0, 0, 0, 0, 0],                              // arg2
        &[0x01, 0, 0, 0],                                       // kind: Acquire
        &[0x01, 0, 0, 0],                                       // news: NEW_CHAIN
        &[0x03, 0, 0, 0],                                       // cpu
        &[0x34, 0x12, 0, 0],                                    // pid
        &[0x35, 0x12, 0, 0],                                    // tid
        &[0x01, 0, 0, 0],                                       // context: Task
        &[0x02, 0, 0, 0],                                       // irqs: Disabled
        &[0x01, 0x02, 0, 0],                                    // preempt_count
        &[0x10, 0, 0, 0],                                       // flags
        b"kworker/0:1\0\0\0\0\0",                                // comm
        &[0x78, 0x56, 0x34, 0x82, 0xff, 0xff, 0xff, 0xff],     // lock.addr
        &[0x67, 0x45, 0x23, 0x81, 0xff, 0xff, 0xff, 0xff],     // lock.site
        &[0x78, 0x56, 0x34, 0x82, 0xff, 0xff, 0xff, 0xff],     // lock.class.a
        &[0, 0, 0, 0, 0, 0, 0, 0],                              // lock.class.b
        &[0x01, 0],                                             // lock.class.tag: Static
        &[0, 0],                                                // lock.class.family
        &[0, 0, 0, 0],                                          // lock.class.offset
        &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],     // lock.class_key
        &[0x11, 0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a],     // lock.chain_key
        &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01],     // lock.acquired_ns
        &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x02],     // lock.stale_ns
        &[0x03, 0, 0, 0],                                       // lock.cpu
        &[0x04, 0, 0, 0],                                       // lock.kind: Mutex
        &[0x01, 0, 0, 0],                                       // lock.variant: TRYLOCK
        &[0, 0, 0, 0],                                          // lock.reserved
        &[0, 0, 0, 0],                                          // held: none
        &[0x01],                                                // stack: present
        &[0, 0, 0, 0],                                          //   space: kernel
        &[0, 0, 0, 0],                                          //   pid
        &[0x07, 0, 0, 0],                                       //   id
    ]
    .concat();
    (fact, bytes)
}

#[test]
fn facts_are_encoded_little_endian_field_by_field() {
    let (fact, golden) = golden_fact();
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("golden.lt");
    let mut writer = TraceWriter::create(&path, &header()).unwrap();
    writer.write_facts(&[fact]).unwrap();
    let partial = writer.path().to_path_buf();
    drop(writer);

    let bytes = fs::read(&partial).unwrap();
    let chunk = &bytes[chunk_boundaries(&bytes)[0]..];
    assert_eq!(
        &chunk[..8],
        &[9, 0, 0, 0, golden.len() as u8, 0, 0, 0],
        "type Facts, length of one fact"
    );
    assert_eq!(&chunk[CHUNK_HEADER_LEN..], &golden[..]);
}

#[test]
fn hand_written_fact_bytes_decode_to_the_fact() {
    let (fact, golden) = golden_fact();
    let dir = TempDir::new().unwrap();
    let path = write_file(&dir, "hand.lt", &[], false);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&(ChunkType::Facts as u32).to_le_bytes());
    bytes.extend_from_slice(&(golden.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&chunk_crc(ChunkType::Facts as u32, &golden).to_le_bytes());
    bytes.extend_from_slice(&golden);
    fs::write(&path, &bytes).unwrap();

    let read = read_back(&path).unwrap();
    assert_eq!(read.records, vec![Record::Facts(vec![fact])]);
}

// ---------------------------------------------------------------------------------------
// Crafted lengths and the fuzz seed corpus (fuzz/corpus/tracefile, fuzzed by
// fuzz/fuzz_targets/tracefile.rs in every `cargo xtask test`). Inputs the fuzzer or review
// found stay here as regression tests.

/// Records the largest single allocation made by the current thread, so a test can check
/// that a length field does not decide how much memory a reader takes.
struct CountingAllocator;

thread_local! {
    static LARGEST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller's layout, passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's pointer and layout, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        note_allocation(new);
        // SAFETY: the caller's arguments, passed on.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

fn note_allocation(size: usize) {
    // `try_with`: the slot may be gone while the thread exits.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Reads `bytes` to the end; returns what reading stopped on and the largest allocation.
fn read_bytes_measured(bytes: &[u8]) -> (Result<Option<TraceError>, TraceError>, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = TraceReader::new(bytes, Path::new("crafted")).map(|mut reader| {
        reader.by_ref().for_each(drop);
        reader.damage().cloned()
    });
    (result, LARGEST.with(std::cell::Cell::get))
}

/// No allocation above this while reading a crafted file of a few dozen bytes.
const SMALL: usize = 1 << 20;

/// The bytes of a finished file with every record, through the library's writer.
fn valid_bytes(dir: &TempDir, name: &str, records: &[Record]) -> Vec<u8> {
    fs::read(write_file(dir, name, records, true)).unwrap()
}

/// A file prefix whose header body claims `len` bytes.
fn prefix_claiming(len: u32) -> Vec<u8> {
    let mut bytes = b"LOCKTRC\0".to_vec();
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes
}

/// A chunk frame of `kind` with `payload`, its CRC right.
fn chunk(kind: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = kind.to_le_bytes().to_vec();
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&chunk_crc(kind, payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A valid header (no chunk) followed by `tail`.
fn header_then(dir: &TempDir, tail: &[u8]) -> Vec<u8> {
    let mut bytes = valid_bytes(dir, "header-only.lt", &[]);
    let end_len = END_CHUNK_LEN as usize;
    bytes.truncate(bytes.len() - end_len);
    bytes.extend_from_slice(tail);
    bytes
}

#[test]
fn a_header_length_larger_than_the_file_costs_only_the_file() {
    let bytes = prefix_claiming(tracer::tracefile::MAX_PAYLOAD_LEN as u32);
    let (result, largest) = read_bytes_measured(&bytes);
    assert!(
        matches!(
            result,
            Err(TraceError::Truncated {
                what: Truncation::HeaderBody,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        largest < SMALL,
        "a {largest}-byte allocation for a 20-byte file"
    );
}

#[test]
fn a_chunk_length_larger_than_the_file_costs_only_the_file() {
    let dir = TempDir::new().unwrap();
    let mut frame = (ChunkType::Facts as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&(tracer::tracefile::MAX_PAYLOAD_LEN as u32).to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame.extend_from_slice(&[0u8; 8]);
    let bytes = header_then(&dir, &frame);
    let (result, largest) = read_bytes_measured(&bytes);
    assert!(
        matches!(
            result,
            Ok(Some(TraceError::Truncated {
                what: Truncation::ChunkPayload,
                ..
            }))
        ),
        "{result:?}"
    );
    assert!(
        largest < SMALL,
        "a {largest}-byte allocation for a short chunk"
    );
}

#[test]
fn crafted_counts_are_malformed_not_allocated() {
    let dir = TempDir::new().unwrap();
    // A Drops chunk and a Stacks chunk claiming u32::MAX items, CRCs right.
    let mut drops = 7u64.to_le_bytes().to_vec();
    drops.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut stacks = 0u32.to_le_bytes().to_vec(); // kernel
    stacks.extend_from_slice(&1u32.to_le_bytes()); // pid
    stacks.extend_from_slice(&1i32.to_le_bytes()); // id
    stacks.extend_from_slice(&u32::MAX.to_le_bytes()); // frames
    for payload in [
        chunk(ChunkType::Drops as u32, &drops),
        chunk(ChunkType::Stacks as u32, &stacks),
    ] {
        let (result, largest) = read_bytes_measured(&header_then(&dir, &payload));
        assert!(
            matches!(
                result,
                Ok(Some(TraceError::Corrupt {
                    reason: Corruption::Malformed(_),
                    ..
                }))
            ),
            "{result:?}"
        );
        assert!(largest < SMALL, "a {largest}-byte allocation");
    }
}

/// The fuzz seeds, built with the library's writer: small valid recordings, then truncated,
/// corrupted and crafted ones. Names say what reading each must give.
fn fuzz_seeds(dir: &TempDir) -> Vec<(&'static str, Vec<u8>)> {
    let all = valid_bytes(dir, "all.lt", &every_record());
    let empty = valid_bytes(dir, "empty.lt", &[]);
    let boundaries = chunk_boundaries(&all);
    let mut flipped = all.clone();
    flipped[boundaries[2] + CHUNK_HEADER_LEN + 3] ^= 0x20;
    let end_at = all.len() - END_CHUNK_LEN as usize;
    let mut unknown = all[..end_at].to_vec();
    unknown.extend_from_slice(&chunk(99, b"a chunk type from a later version"));
    unknown.extend_from_slice(&all[end_at..]);
    let mut trailing = all.clone();
    trailing.extend_from_slice(&chunk(ChunkType::Facts as u32, &[]));
    let mut long_chunk = all[..boundaries[1]].to_vec();
    long_chunk.extend_from_slice(&(ChunkType::Stacks as u32).to_le_bytes());
    long_chunk.extend_from_slice(&(tracer::tracefile::MAX_PAYLOAD_LEN as u32).to_le_bytes());
    long_chunk.extend_from_slice(&[0; 12]);
    vec![
        ("valid-every-record", all.clone()),
        ("valid-empty", empty),
        ("unfinished", all[..end_at].to_vec()),
        ("truncated-payload", all[..boundaries[3] - 5].to_vec()),
        ("truncated-header", all[..30].to_vec()),
        ("corrupt-crc", flipped),
        ("corrupt-unknown-chunk", unknown),
        ("corrupt-after-end", trailing),
        ("truncated-crafted-chunk-length", long_chunk),
        (
            "truncated-crafted-header-length",
            prefix_claiming(tracer::tracefile::MAX_PAYLOAD_LEN as u32),
        ),
    ]
}

/// Where the committed seeds live.
fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tracefile")
}

#[test]
fn the_fuzz_seeds_are_current_and_read_as_named() {
    let dir = TempDir::new().unwrap();
    let bless = std::env::var("LOCKTRACE_BLESS_FUZZ_SEEDS").as_deref() == Ok("1");
    for (name, bytes) in fuzz_seeds(&dir) {
        let path = seed_dir().join(name);
        if bless {
            fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            fs::read(&path).ok().as_ref(),
            Some(&bytes),
            "{name} differs from what the writer makes now: rerun this test with \
             LOCKTRACE_BLESS_FUZZ_SEEDS=1 to rewrite the seeds"
        );
        let (result, _) = read_bytes_measured(&bytes);
        let kind = name.split('-').next().unwrap();
        let ok = matches!(
            (kind, &result),
            ("valid", Ok(None))
                | ("unfinished", Ok(Some(TraceError::Unfinished { .. })))
                | ("truncated", Ok(Some(TraceError::Truncated { .. })))
                | ("truncated", Err(TraceError::Truncated { .. }))
                | ("corrupt", Ok(Some(TraceError::Corrupt { .. })))
        );
        assert!(ok, "{name}: {result:?}");
    }
}
