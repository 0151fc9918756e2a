//! What a recording may do to the path it is given (`record -o`): locktrace runs as root and
//! the file holds kernel addresses. A recording is written to `<target>.partial` and renamed
//! over the target when finished; nothing at the target is opened, truncated or chmodded, no
//! symbolic link is followed, special files are refused, and two recordings to one target
//! never silently lose one's data. The `locktrace record` side of the same rules is in
//! `cli.rs` and `kernel.rs`.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracer::fact::FactRecord;
use tracer::tracefile::{
    EndSummary, Header, OutputFile, Record, TraceError, TraceReader, TraceWriter,
};
use tracer_common::{ExecContext, IrqState, fact::FactKind, held::HeldLock};

/// One acquisition fact, all else zero.
fn a_fact() -> FactRecord {
    FactRecord {
        timestamp_ns: 0,
        kind: FactKind::Acquire,
        news: 0,
        arg: 0,
        arg2: 0,
        cpu: 0,
        pid: 0,
        tid: 0,
        context: ExecContext::Task,
        irqs: IrqState::Enabled,
        preempt_count: 0,
        flags: 0,
        comm: [0; 16],
        lock: HeldLock::default(),
        held: Vec::new(),
        stack: None,
    }
}

fn header() -> Header {
    Header::for_this_machine(vec!["test".into()], Vec::new())
}

fn end(facts: u64) -> EndSummary {
    EndSummary {
        facts_written: facts,
        duration_ns: 1,
    }
}

fn partial(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}

/// What a test compares before and after: content, mode, owner, inode, file type.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    content: Option<Vec<u8>>,
    mode: u32,
    uid: u32,
    ino: u64,
}

fn snapshot(path: &Path) -> Snapshot {
    let meta = fs::symlink_metadata(path).unwrap();
    Snapshot {
        content: meta.is_file().then(|| fs::read(path).unwrap()),
        mode: meta.mode(),
        uid: meta.uid(),
        ino: meta.ino(),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn an_existing_file_is_replaced_only_when_the_recording_finishes() {
    let dir = support::tempdir();
    let target = support::path_in(&dir, "existing.lt");
    fs::write(&target, b"another user's file").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
    }
    let before = snapshot(&target);

    // Started, written to, dropped unfinished: the target is as it was.
    let mut writer = TraceWriter::create(&target, &header()).unwrap();
    writer.write_facts(&[a_fact()]).unwrap();
    writer.flush().unwrap();
    assert_eq!(snapshot(&target), before, "untouched while recording");
    drop(writer);
    assert_eq!(
        snapshot(&target),
        before,
        "untouched by an unfinished recording"
    );
    fs::remove_file(partial(&target)).unwrap();

    // Finished: a new file owned by us, mode 0600, in the target's place.
    let mut writer = TraceWriter::create(&target, &header()).unwrap();
    writer.write_facts(&[a_fact()]).unwrap();
    writer.finish(end(1)).unwrap();
    let after = fs::metadata(&target).unwrap();
    assert_ne!(
        after.ino(),
        before.ino,
        "a new file, not the old one rewritten"
    );
    assert_eq!(after.mode() & 0o777, 0o600);
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        after.uid(),
        unsafe { libc::geteuid() },
        "owned by the recorder"
    );
    assert!(!partial(&target).exists());
    let mut reader = TraceReader::open(&target).unwrap();
    assert_eq!(reader.by_ref().count(), 2, "one facts chunk and the end");
    assert!(reader.damage().is_none());
}

#[test]
fn links_and_special_files_are_refused_and_left_alone() {
    let dir = support::tempdir();
    let victim = support::path_in(&dir, "victim");
    fs::write(&victim, b"root's file").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let link = support::path_in(&dir, "link.lt");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let nowhere = support::path_in(&dir, "nowhere");
    let dangling = support::path_in(&dir, "dangling.lt");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    let fifo = support::path_in(&dir, "fifo.lt");
    mkfifo(&fifo);
    // A reader, so that a writer opening the FIFO would not block.
    let _reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let subdir = support::path_in(&dir, "subdir.lt");
    fs::create_dir(&subdir).unwrap();

    let cases: [(&Path, &str); 5] = [
        (&link, "a symbolic link"),
        (&dangling, "a symbolic link"),
        (&fifo, "a FIFO"),
        (Path::new("/dev/null"), "a character device"),
        (&subdir, "a directory"),
    ];
    for (path, what) in cases {
        let before = snapshot(path);
        let victim_before = snapshot(&victim);
        let err = TraceWriter::create(path, &header()).unwrap_err();
        assert!(
            matches!(&err, TraceError::NotRegularFile { what: w, .. } if *w == what),
            "{}: {err:?}",
            path.display()
        );
        let line = err.to_string();
        assert!(
            line.contains(&path.display().to_string()) && line.contains(what),
            "{line}"
        );
        assert_eq!(snapshot(path), before, "{} untouched", path.display());
        assert_eq!(
            snapshot(&victim),
            victim_before,
            "the link's target untouched"
        );
        assert!(!nowhere.exists(), "a dangling link is not followed");
        assert!(
            !partial(path).exists(),
            "no partial file for a refused target"
        );
    }
}

#[test]
fn a_second_recording_to_the_same_file_fails_while_the_first_runs() {
    let dir = support::tempdir();
    let target = support::path_in(&dir, "shared.lt");
    let mut first = TraceWriter::create(&target, &header()).unwrap();
    first.write_facts(&[a_fact()]).unwrap();

    let err = TraceWriter::create(&target, &header()).unwrap_err();
    assert!(matches!(err, TraceError::Busy { .. }), "{err:?}");
    let line = err.to_string();
    assert!(line.contains("being recorded by another process"), "{line}");

    first.finish(end(1)).unwrap();
    let mut reader = TraceReader::open(&target).unwrap();
    let facts: usize = reader
        .by_ref()
        .map(|r| match r.unwrap() {
            Record::Facts(batch) => batch.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(facts, 1, "the first recording's facts are all there");
    // Once it is done, the next one may start.
    TraceWriter::create(&target, &header())
        .unwrap()
        .finish(end(0))
        .unwrap();
}

#[test]
fn a_partial_file_left_by_a_killed_recording_is_never_overwritten() {
    let dir = support::tempdir();
    let target = support::path_in(&dir, "killed.lt");
    fs::write(partial(&target), b"what a killed recording wrote").unwrap();
    let err = TraceWriter::create(&target, &header()).unwrap_err();
    assert!(matches!(err, TraceError::LeftOver { .. }), "{err:?}");
    assert!(err.to_string().contains("move or remove it"), "{err}");
    assert_eq!(
        fs::read(partial(&target)).unwrap(),
        b"what a killed recording wrote"
    );
    assert!(!target.exists());
}

#[test]
fn a_target_written_by_someone_else_meanwhile_is_not_replaced() {
    let dir = support::tempdir();
    // Absent at the start, then created by another process.
    let target = support::path_in(&dir, "raced.lt");
    let writer = TraceWriter::create(&target, &header()).unwrap();
    fs::write(&target, b"theirs").unwrap();
    let err = writer.finish(end(0)).unwrap_err();
    assert!(matches!(err, TraceError::Replaced { .. }), "{err:?}");
    assert_eq!(fs::read(&target).unwrap(), b"theirs");
    let mut kept = TraceReader::open(&partial(&target)).unwrap();
    kept.by_ref().for_each(drop);
    assert!(
        kept.end().is_some(),
        "the recording is whole in its partial file"
    );

    // Present at the start, then replaced by another file.
    let target = support::path_in(&dir, "swapped.lt");
    fs::write(&target, b"old").unwrap();
    let writer = TraceWriter::create(&target, &header()).unwrap();
    let other = support::path_in(&dir, "other");
    fs::write(&other, b"new").unwrap();
    fs::rename(&other, &target).unwrap();
    let err = writer.finish(end(0)).unwrap_err();
    assert!(matches!(err, TraceError::Replaced { .. }), "{err:?}");
    assert_eq!(fs::read(&target).unwrap(), b"new");
}

#[test]
fn a_recording_given_up_before_any_event_leaves_nothing() {
    let dir = support::tempdir();
    let target = support::path_in(&dir, "empty.lt");
    drop(OutputFile::create(&target).unwrap());
    assert!(!partial(&target).exists(), "an output file never written");
    drop(TraceWriter::create(&target, &header()).unwrap());
    assert!(!partial(&target).exists(), "a header and no event");
    assert!(!target.exists());
}
