//! The `locktrace` command on recorded files (no BPF needed): replay, damaged files, graph
//! export and argument errors. Each builds a real trace file with the library's writer.

mod support;

use std::process::Output;

use tracer::{
    fact::FactRecord,
    model::KernelModel,
    symbols::KernelSymbol,
    tracefile::{ContentionSnapshot, EndSummary, Header, ProbeStatus, Record, TraceWriter},
};
use tracer_common::{Event, EventKind, ExecContext, IrqState, LockKind};

const LOCK_A: u64 = 0xffff_ffff_8260_0000;
const LOCK_B: u64 = 0xffff_ffff_8260_0100;
const LOCK_C: u64 = 0xffff_ffff_8260_0200;
const LOCK_D: u64 = 0xffff_ffff_8260_0300;
const FUNC: u64 = 0xffff_ffff_8100_0000;

fn symbols() -> Vec<KernelSymbol> {
    let sym = |addr, kind, name: &str| KernelSymbol {
        addr,
        kind,
        name: name.to_string(),
        module: None,
    };
    vec![
        sym(FUNC, 't', "do_work"),
        sym(LOCK_A, 'd', "alpha_lock"),
        sym(LOCK_B, 'd', "beta_lock"),
        sym(LOCK_C, 'd', "gamma_lock"),
        sym(LOCK_D, 'd', "delta_lock"),
    ]
}

fn lock_event(kind: EventKind, tid: u32, addr: u64) -> Event {
    let mut ev = Event::zeroed();
    ev.kind = kind as u32;
    ev.lock_kind = LockKind::Spin as u32;
    ev.lock_addr = addr;
    ev.caller = FUNC + 0x10;
    ev.pid = tid;
    ev.tid = tid;
    ev.irqs = IrqState::Enabled as u32;
    ev.context = ExecContext::Task as u32;
    ev.comm[..4].copy_from_slice(b"test");
    ev
}

/// Task 1 takes alpha then beta, task 2 beta then alpha.
fn abba() -> Vec<Event> {
    abba_of(LOCK_A, LOCK_B, 1)
}

/// Task `tid` takes `a` then `b`, task `tid + 1` `b` then `a`.
fn abba_of(a: u64, b: u64, tid: u32) -> Vec<Event> {
    let mut events = Vec::new();
    for (tid, first, second) in [(tid, a, b), (tid + 1, b, a)] {
        events.push(lock_event(EventKind::LockAcquire, tid, first));
        events.push(lock_event(EventKind::LockAcquire, tid, second));
        events.push(lock_event(EventKind::LockRelease, tid, second));
        events.push(lock_event(EventKind::LockRelease, tid, first));
    }
    events
}

/// A finished recording, by a session where `probes` attached, of `events` (named by
/// [`symbols`]), then `records`.
fn write_events(
    path: &std::path::Path,
    probes: Vec<ProbeStatus>,
    events: &[Event],
    records: Vec<Record>,
) {
    let header = Header::for_this_machine(vec!["test".into()], probes);
    let mut writer = TraceWriter::create(path, &header).unwrap();
    writer.write(&Record::KernelSymbols(symbols())).unwrap();
    let facts = facts(&mut KernelModel::default(), events);
    writer.write_facts(&facts).unwrap();
    for record in records {
        writer.write(&record).unwrap();
    }
    writer
        .finish(EndSummary {
            facts_written: facts.len() as u64,
            duration_ns: 1,
        })
        .unwrap();
}

/// The facts the kernel side finds in `events`.
fn facts(model: &mut KernelModel, events: &[Event]) -> Vec<FactRecord> {
    let mut facts = Vec::new();
    for ev in events {
        model.process(ev, &mut facts);
    }
    facts
}

/// A file with the symbols, the AB-BA's facts, then `filler` more chunks of unrelated facts.
fn write_trace(path: &std::path::Path, filler: usize) {
    let header = Header::for_this_machine(vec!["test".into()], Vec::new());
    let mut writer = TraceWriter::create(path, &header).unwrap();
    let mut model = KernelModel::default();
    writer.write(&Record::KernelSymbols(symbols())).unwrap();
    writer.write_facts(&facts(&mut model, &abba())).unwrap();
    writer.flush().unwrap();
    for i in 0..filler {
        let mut ev = Event::zeroed();
        ev.kind = EventKind::Vfree as u32;
        ev.arg = i as u64;
        // From callers of their own: a repeat of a call with nothing held is not sent.
        ev.caller = 0xffff_ffff_8100_1000 + i as u64;
        ev.irqs = IrqState::Enabled as u32;
        ev.context = ExecContext::Task as u32;
        writer.write_facts(&facts(&mut model, &[ev])).unwrap();
        writer.flush().unwrap();
    }
    let written = writer.facts_written();
    writer
        .finish(EndSummary {
            facts_written: written,
            duration_ns: 1,
        })
        .unwrap();
}

/// `watch` and `report` when they found an alert (`--alert-exit-code`'s default).
const ALERTS: i32 = 2;
/// A damaged or unfinished trace file.
const DAMAGED: i32 = 3;

fn run(args: &[&str]) -> Output {
    support::locktrace()
        .args(args)
        .output()
        .expect("run locktrace")
}

fn alert_kinds(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object per line");
            v["kind"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn report_replays_alerts_as_json_and_text() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "abba.lttrace");
    write_trace(&path, 0);
    let json = run(&["report", path.to_str().unwrap(), "--json"]);
    assert_eq!(json.status.code(), Some(ALERTS), "alerts found");
    assert_eq!(alert_kinds(&json), vec!["circular_dependency"]);
    let text = run(&["report", path.to_str().unwrap()]);
    assert_eq!(text.status.code(), Some(ALERTS));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("possible circular locking dependency detected"),
        "{text}"
    );
    assert!(
        text.contains("alpha_lock") && text.contains("beta_lock"),
        "{text}"
    );
    assert!(text.contains("*** DEADLOCK ***"), "{text}");
}

#[test]
fn script_prints_every_fact_named_in_order() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "abba.lttrace");
    write_trace(&path, 2);
    let output = run(&["script", path.to_str().unwrap()]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "four new chains (releases bring nothing) and two vfree: {stdout}"
    );
    let expected = [
        ("alpha_lock", None),
        ("beta_lock", Some("alpha_lock")),
        ("beta_lock", None),
        ("alpha_lock", Some("beta_lock")),
    ];
    for (line, (lock, held)) in lines.iter().zip(expected) {
        assert!(
            line.contains(" chain ") && line.contains(&format!("spinlock   {lock}")),
            "chain {lock}: {line}"
        );
        match held {
            Some(held) => assert!(line.ends_with(&format!("| held: {held}")), "{line}"),
            None => assert!(!line.contains("held:"), "{line}"),
        }
        assert!(line.contains("at do_work+0x10"), "caller named: {line}");
        assert!(line.contains("task irqs-on"), "context and irqs: {line}");
    }
    assert!(
        lines[4].contains("vfree") && lines[5].contains("arg=0x1"),
        "{stdout}"
    );

    // Cut inside the last fact chunk (a one-fact chunk is longer than the end record, so
    // the length of the same file with one chunk fewer lands inside it): the readable prefix
    // is printed and the damage reported.
    let shorter = support::path_in(&dir, "shorter.lttrace");
    write_trace(&shorter, 1);
    let cut_at = std::fs::metadata(&shorter).unwrap().len() - 1;
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(cut_at).unwrap();
    let cut = run(&["script", path.to_str().unwrap()]);
    assert_eq!(cut.status.code(), Some(DAMAGED));
    let cut_lines = String::from_utf8_lossy(&cut.stdout).lines().count();
    assert_eq!(cut_lines, 5, "everything before the damaged chunk");
    assert!(String::from_utf8_lossy(&cut.stderr).contains("warning:"));
}

#[test]
fn truncated_file_reports_its_prefix_and_where_it_stopped() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "cut.lttrace");
    write_trace(&path, 3);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 20).unwrap();
    let output = run(&["report", path.to_str().unwrap(), "--json"]);
    assert_eq!(
        output.status.code(),
        Some(ALERTS),
        "alerts found in the readable part take precedence over the damage"
    );
    assert_eq!(
        alert_kinds(&output),
        vec!["circular_dependency"],
        "the prefix is replayed"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("warning:"), "{stderr}");
    assert!(
        stderr.contains("at byte"),
        "the warning says where: {stderr}"
    );
}

#[test]
fn corrupted_chunk_is_reported_not_panicked_on() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "bad.lttrace");
    write_trace(&path, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 40;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let output = run(&["report", path.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(ALERTS));
    assert_eq!(alert_kinds(&output), vec!["circular_dependency"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("warning:"), "{stderr}");
}

#[test]
fn not_a_trace_file_is_one_error_line() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "junk");
    std::fs::write(&path, b"this is not a trace").unwrap();
    let output = run(&["report", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("locktrace: error:"), "{stderr}");
}

#[test]
fn graph_exports_dependencies_as_json_and_dot() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "g.lttrace");
    write_trace(&path, 0);
    let json = run(&["graph", path.to_str().unwrap(), "--format", "json"]);
    assert!(json.status.success());
    let graph: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let deps: Vec<(String, String)> = graph["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["from"].as_str().unwrap().to_string(),
                d["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        deps.contains(&("alpha_lock".into(), "beta_lock".into())),
        "{deps:?}"
    );
    assert!(
        deps.contains(&("beta_lock".into(), "alpha_lock".into())),
        "{deps:?}"
    );
    let dot = run(&["graph", path.to_str().unwrap(), "--format", "dot"]);
    let dot = String::from_utf8_lossy(&dot.stdout);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("alpha_lock") && dot.contains("->"), "{dot}");
}

#[test]
fn unwritable_output_fails_before_attaching_with_one_line() {
    let output = run(&[
        "record",
        "-o",
        "/nonexistent-dir/x.lttrace",
        "--duration",
        "1",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent-dir/x.lttrace"), "{stderr}");
    assert!(
        !stderr.contains("probes attached"),
        "nothing was attached: {stderr}"
    );
}

#[test]
fn a_full_stdout_is_one_error_line_not_a_panic() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "full.lttrace");
    write_trace(&path, 0);
    for args in [
        vec!["graph", path.to_str().unwrap(), "--format", "dot"],
        vec!["report", path.to_str().unwrap(), "--json"],
    ] {
        let output = support::locktrace()
            .args(&args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        assert!(errors[0].contains("No space left"), "{args:?}: {stderr}");
    }
}

/// A thread name that clears the screen and starts a forged line.
const EVIL: &str = "\x1b[2J\nFORGED";

/// The AB-BA of `write_trace`, with every name the traced world controls made hostile: the
/// thread name, the lock and function symbols, a stack's frames and its source file.
fn write_hostile_trace(path: &std::path::Path) {
    let header = Header::for_this_machine(vec!["test".into()], Vec::new());
    let mut writer = TraceWriter::create(path, &header).unwrap();
    let mut symbols = symbols();
    for symbol in &mut symbols {
        symbol.name = format!("{}{EVIL}\u{9b}2J", symbol.name);
    }
    writer.write(&Record::KernelSymbols(symbols)).unwrap();
    let frame = tracer::symbols::Frame {
        addr: FUNC + 0x10,
        function: Some(format!("evil_fn{EVIL}")),
        offset: 0x10,
        file: Some(format!("/src/{EVIL}.c")),
        line: Some(7),
    };
    let stack = tracer::symbols::StackKey::kernel(1);
    writer
        .write(&Record::Stacks(vec![(stack, vec![frame])]))
        .unwrap();
    let mut facts = facts(&mut KernelModel::default(), &abba());
    for fact in &mut facts {
        fact.comm = [0; 16];
        fact.comm[..EVIL.len()].copy_from_slice(EVIL.as_bytes());
        fact.stack = Some(stack);
    }
    writer.write_facts(&facts).unwrap();
    writer
        .finish(EndSummary {
            facts_written: facts.len() as u64,
            duration_ns: 1,
        })
        .unwrap();
}

/// No escape sequence and no line of the output's own making.
fn assert_inert(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.contains(&0x1b) && !String::from_utf8_lossy(bytes).contains('\u{9b}'),
        "{what}: an escape sequence reached the terminal: {}",
        String::from_utf8_lossy(bytes)
    );
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text.lines().any(|l| l.starts_with("FORGED")),
        "{what}: a forged line: {text}"
    );
}

#[test]
fn names_from_the_traced_world_cannot_drive_the_terminal() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "evil.lttrace");
    write_hostile_trace(&path);
    let file = path.to_str().unwrap();
    for args in [
        vec!["report", file],
        vec!["script", file, "--stacks"],
        vec!["graph", file, "--format", "dot"],
    ] {
        let output = run(&args);
        assert!(!output.stdout.is_empty(), "{args:?}");
        assert_inert(&format!("{args:?} stdout"), &output.stdout);
        assert_inert(&format!("{args:?} stderr"), &output.stderr);
    }
    let report = String::from_utf8_lossy(&run(&["report", file]).stdout).into_owned();
    assert!(
        report.contains("\\x1b[2J\\nFORGED/2") && report.contains("evil_fn\\x1b[2J\\nFORGED+0x10"),
        "names are shown escaped: {report}"
    );
    // JSON keeps the real names: serde escapes them itself.
    let json = run(&["report", file, "--json"]);
    let alert: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&json.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(alert["trigger"]["task"]["comm"], EVIL);
}

/// A command that does not exist: a `record` given it fails before attaching anything.
const NO_SUCH_COMMAND: &str = "locktrace-test-no-such-command";

/// The one `locktrace: error:` line of a failed run with status 1.
fn one_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("locktrace: error: "), "{stderr}");
    stderr
}

fn partial_of(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

#[test]
fn record_refuses_links_and_special_files_in_one_line() {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let dir = support::tempdir();
    let victim = support::path_in(&dir, "victim");
    std::fs::write(&victim, b"root's file").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = support::path_in(&dir, "link.lttrace");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let nowhere = support::path_in(&dir, "nowhere");
    let dangling = support::path_in(&dir, "dangling.lttrace");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    let fifo = support::path_in(&dir, "fifo.lttrace");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    // Held open for reading, so that a writer opening the FIFO would not block.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();

    let state = |p: &std::path::Path| {
        let meta = std::fs::symlink_metadata(p).unwrap();
        (
            meta.mode(),
            meta.uid(),
            meta.ino(),
            std::fs::read(&victim).unwrap(),
        )
    };
    for (path, what) in [
        (link.as_path(), "a symbolic link"),
        (dangling.as_path(), "a symbolic link"),
        (fifo.as_path(), "a FIFO"),
        (std::path::Path::new("/dev/null"), "a character device"),
        (dir.path(), "a directory"),
    ] {
        let before = state(path);
        let output = support::locktrace()
            .args(["record", "--no-kernel", "-o"])
            .arg(path)
            .args(["--", NO_SUCH_COMMAND])
            .output()
            .unwrap();
        let line = one_error_line(&output);
        assert!(
            line.contains(&format!("it is {what}, not a regular file")),
            "{}: {line}",
            path.display()
        );
        assert_eq!(state(path), before, "{} left alone", path.display());
        assert!(!nowhere.exists(), "a dangling link is not followed");
    }
}

#[test]
fn a_failed_record_leaves_the_existing_recording_intact() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "precious.lttrace");
    write_trace(&path, 50);
    let before = std::fs::read(&path).unwrap();
    for args in [
        vec!["--", NO_SUCH_COMMAND],
        vec!["--", "/nonexistent/cmd"],
        vec!["--symbols", "/nonexistent/System.map", "--", "true"],
    ] {
        let output = support::locktrace()
            .args(["record", "--no-kernel", "-o"])
            .arg(&path)
            .args(&args)
            .output()
            .unwrap();
        one_error_line(&output);
        assert_eq!(std::fs::read(&path).unwrap(), before, "{args:?}");
        assert!(
            !partial_of(&path).exists(),
            "{args:?}: no partial file left"
        );
    }
}

#[test]
fn report_refuses_a_fifo_and_a_directory_instead_of_waiting() {
    let dir = support::tempdir();
    let fifo = support::path_in(&dir, "fifo.lttrace");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (path, what) in [(fifo.as_path(), "a FIFO"), (dir.path(), "a directory")] {
        for command in ["report", "script", "graph"] {
            let output = support::locktrace()
                .arg(command)
                .arg(path)
                .output()
                .unwrap();
            let line = one_error_line(&output);
            assert!(line.contains(&format!("it is {what}")), "{command}: {line}");
        }
    }
}

#[test]
fn a_damaged_file_without_alerts_has_its_own_status() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "flipped.lttrace");
    write_trace(&path, 0);
    // One flipped byte in the first chunk (the symbols): nothing after it can be read.
    let mut bytes = std::fs::read(&path).unwrap();
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let first_payload =
        tracer::tracefile::FILE_PREFIX_LEN + header_len + tracer::tracefile::CHUNK_HEADER_LEN;
    bytes[first_payload] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let file = path.to_str().unwrap();
    for args in [
        vec!["report", file],
        vec!["report", file, "--json"],
        vec!["script", file],
        vec!["graph", file],
    ] {
        let output = run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(DAMAGED), "{args:?}: {stderr}");
        assert!(
            stderr.contains("warning:") && stderr.contains("corrupt"),
            "{stderr}"
        );
    }
}

#[test]
fn the_alert_status_can_be_chosen() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "abba.lttrace");
    write_trace(&path, 0);
    let file = path.to_str().unwrap();
    for (status, expected) in [("0", 0), ("42", 42), ("2", 2)] {
        let output = run(&["report", file, "--alert-exit-code", status]);
        assert_eq!(output.status.code(), Some(expected));
    }
    let clean = support::path_in(&dir, "clean.lttrace");
    let header = Header::for_this_machine(vec!["test".into()], Vec::new());
    TraceWriter::create(&clean, &header)
        .unwrap()
        .finish(EndSummary {
            facts_written: 0,
            duration_ns: 1,
        })
        .unwrap();
    let output = run(&["report", clean.to_str().unwrap(), "--alert-exit-code", "42"]);
    assert_eq!(output.status.code(), Some(0), "nothing found is 0");
}

#[test]
fn bad_arguments_are_one_error_line_never_a_panic() {
    for args in [
        &["watch", "--duration", "1e30"][..],
        &["record", "-o", "/tmp/x", "--duration", "1e300"],
        &["watch", "--duration", "inf"],
        &["watch", "--duration", "NaN"],
        &["watch", "--duration", "-1"],
        &["watch", "--duration", "315360001"],
        &["watch", "--pid", "0"],
        &["watch", "--pid", "4294967295"],
        &["watch", "--pid", "-5"],
        &["record", "--duration", "1"],
        &["report"],
        &["report", "x.lttrace", "--alert-exit-code", "1"],
        &["report", "x.lttrace", "--alert-exit-code", "3"],
        &["report", "x.lttrace", "--alert-exit-code", "256"],
        &["graph", "x.lttrace", "--format", "svg"],
        &["no-such-subcommand"],
    ] {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let line = one_error_line(&output);
        assert!(line.contains("see --help"), "{args:?}: {line}");
    }
}

#[test]
fn a_missing_process_or_command_is_one_error_line() {
    // A process that existed and is gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id().to_string();
    gone.wait().unwrap();
    let dir = support::tempdir();
    let out = support::path_in(&dir, "never.lttrace");
    let out = out.to_str().unwrap();
    for args in [
        &["watch", "--no-kernel", "--duration", "1", "--pid", &pid][..],
        &[
            "record",
            "-o",
            out,
            "--no-kernel",
            "--duration",
            "1",
            "--pid",
            &pid,
        ],
        &[
            "watch",
            "--no-kernel",
            "--duration",
            "1",
            "--",
            "/nonexistent/cmd",
        ],
        &[
            "watch",
            "--no-kernel",
            "--duration",
            "1",
            "--",
            NO_SUCH_COMMAND,
        ],
        &[
            "watch",
            "--no-kernel",
            "--duration",
            "1",
            "--",
            "/etc/passwd",
        ],
        &[
            "record",
            "-o",
            out,
            "--no-kernel",
            "--duration",
            "1",
            "--",
            "/nonexistent/cmd",
        ],
    ] {
        let output = run(args);
        let line = one_error_line(&output);
        assert!(!line.contains("probes attached"), "{args:?}: {line}");
        assert!(
            line.contains(&pid) || line.contains("cannot start"),
            "{args:?}: {line}"
        );
        assert!(!std::path::Path::new(out).exists(), "{args:?}");
    }
}

/// Two AB-BAs: alpha/beta, then gamma/delta.
/// A directory holding a recording of two inversions (`two.lttrace`) and a suppression file
/// (`known.supp`) of `rules`, and those two paths.
fn two_inversions_and_rules(rules: &str) -> (tempfile::TempDir, String, String) {
    let dir = support::tempdir();
    let trace = support::path_in(&dir, "two.lttrace");
    write_two_inversions(&trace);
    let file = support::path_in(&dir, "known.supp");
    std::fs::write(&file, rules).unwrap();
    let (trace, file) = (
        trace.to_str().unwrap().to_string(),
        file.to_str().unwrap().to_string(),
    );
    (dir, trace, file)
}

fn write_two_inversions(path: &std::path::Path) {
    let mut events = abba_of(LOCK_A, LOCK_B, 1);
    events.extend(abba_of(LOCK_C, LOCK_D, 3));
    write_events(path, Vec::new(), &events, Vec::new());
}

/// Each JSON alert's classes, sorted, and whether it is marked suppressed.
fn alert_classes(output: &Output) -> Vec<(Vec<String>, bool)> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object per line");
            let mut classes: Vec<String> = v["classes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            classes.sort();
            (classes, v["suppressed"].as_bool().unwrap())
        })
        .collect()
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn suppressed_alerts_are_counted_not_printed_and_do_not_set_the_status() {
    let (dir, trace, rules) = two_inversions_and_rules(
        "# accepted: the alpha/beta order\n\ncircular_dependency class:alpha_lock class:beta_*\n",
    );
    let (trace, rules) = (trace.as_str(), rules.as_str());
    let everything = support::path_in(&dir, "all.supp");
    std::fs::write(&everything, "* class:*_lock\n").unwrap();
    let everything = everything.to_str().unwrap();
    let (ab, cd) = (
        names(&["alpha_lock", "beta_lock"]),
        names(&["delta_lock", "gamma_lock"]),
    );

    let plain = run(&["report", trace, "--json"]);
    assert_eq!(plain.status.code(), Some(ALERTS));
    assert_eq!(
        alert_classes(&plain),
        vec![(ab.clone(), false), (cd.clone(), false)]
    );
    assert!(String::from_utf8_lossy(&plain.stderr).contains(", 2 alerts"));

    let one = run(&["report", trace, "--json", "--suppressions", rules]);
    assert_eq!(one.status.code(), Some(ALERTS), "gamma/delta still counts");
    assert_eq!(alert_classes(&one), vec![(cd.clone(), false)]);
    let stderr = String::from_utf8_lossy(&one.stderr);
    assert!(stderr.contains(", 1 alerts, 1 suppressed"), "{stderr}");

    let none = run(&["report", trace, "--suppressions", everything]);
    assert_eq!(none.status.code(), Some(0), "only suppressed alerts: clean");
    assert!(none.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(stderr.contains(", 0 alerts, 2 suppressed"), "{stderr}");

    let shown = run(&[
        "report",
        trace,
        "--json",
        "--suppressions",
        rules,
        "--show-suppressed",
    ]);
    assert_eq!(shown.status.code(), Some(ALERTS));
    assert_eq!(alert_classes(&shown), vec![(ab, true), (cd, false)]);
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&shown.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["suppression"]["line"], 3);
    assert_eq!(first["suppression"]["file"], rules);
    assert_eq!(
        first["suppression"]["rule"],
        "circular_dependency class:alpha_lock class:beta_*"
    );

    let text = run(&[
        "report",
        trace,
        "--suppressions",
        everything,
        "--show-suppressed",
    ]);
    assert_eq!(text.status.code(), Some(0), "shown, still suppressed");
    let text = String::from_utf8_lossy(&text.stdout);
    let marker = format!("[suppressed by {everything}:1: * class:*_lock]");
    assert_eq!(text.matches(&marker).count(), 2, "{text}");
    assert_eq!(text.matches("*** DEADLOCK ***").count(), 2, "{text}");
}

#[test]
fn a_malformed_suppression_file_is_one_error_line_with_its_line_number() {
    let dir = support::tempdir();
    let trace = support::path_in(&dir, "abba.lttrace");
    write_trace(&trace, 0);
    let trace = trace.to_str().unwrap();
    let bad = support::path_in(&dir, "suppressions.txt");
    std::fs::write(&bad, "# ok\n* class:alpha_lock\ncircular class:beta_lock\n").unwrap();
    let bad = bad.to_str().unwrap();
    for args in [
        &["report", trace, "--suppressions", bad][..],
        &["graph", trace, "--suppressions", bad],
        // Checked before anything is attached: no root needed to see it.
        &["watch", "--no-kernel", "--suppressions", bad, "--", "true"],
    ] {
        let line = one_error_line(&run(args));
        assert!(
            line.starts_with(&format!(
                "locktrace: error: {bad}:3: unknown alert kind \"circular\""
            )),
            "{args:?}: {line}"
        );
    }
    let missing = support::path_in(&dir, "missing.supp");
    let line = one_error_line(&run(&[
        "report",
        trace,
        "--suppressions",
        missing.to_str().unwrap(),
    ]));
    assert!(line.contains("cannot read suppressions from"), "{line}");
    let line = one_error_line(&run(&["report", trace, "--show-suppressed"]));
    assert!(line.contains("--suppressions"), "{line}");
}

#[test]
fn graph_marks_the_dependencies_of_reported_and_suppressed_alerts() {
    let (_dir, trace, rules) =
        two_inversions_and_rules("circular_dependency class:alpha_lock class:beta_lock\n");
    let (trace, rules) = (trace.as_str(), rules.as_str());
    let marks = |args: &[&str]| -> Vec<(String, String, serde_json::Value)> {
        let output = run(args);
        assert!(output.status.success());
        let graph: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        graph["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["from"].as_str().unwrap().to_string(),
                    d["to"].as_str().unwrap().to_string(),
                    d["alert"].clone(),
                )
            })
            .collect()
    };
    let edge = |from: &str, to: &str, alert: &str| (from.to_string(), to.to_string(), alert.into());
    let json = ["graph", trace, "--format", "json"];
    assert_eq!(
        marks(&json),
        vec![
            edge("alpha_lock", "beta_lock", "reported"),
            edge("beta_lock", "alpha_lock", "reported"),
            edge("gamma_lock", "delta_lock", "reported"),
            edge("delta_lock", "gamma_lock", "reported"),
        ]
    );
    assert_eq!(
        marks(&[&json[..], &["--suppressions", rules]].concat()),
        vec![
            edge("alpha_lock", "beta_lock", "suppressed"),
            edge("beta_lock", "alpha_lock", "suppressed"),
            edge("gamma_lock", "delta_lock", "reported"),
            edge("delta_lock", "gamma_lock", "reported"),
        ],
        "every dependency is kept"
    );
    let dot = run(&["graph", trace, "--suppressions", rules]);
    let dot = String::from_utf8_lossy(&dot.stdout);
    assert_eq!(
        dot.matches("suppressed\", style=solid, color=gray").count(),
        2,
        "{dot}"
    );
    assert_eq!(dot.matches("color=red").count(), 2, "{dot}");
}

/// The contention tracepoints, attached, as a recording's header lists them.
fn contention_probes() -> Vec<ProbeStatus> {
    ["tp:lock:contention_begin", "tp:lock:contention_end"]
        .into_iter()
        .map(|name| ProbeStatus {
            name: name.into(),
            kind: "tp_btf".into(),
            attached: true,
            detail: String::new(),
        })
        .collect()
}

/// Task 9 waits 1 ms for `lock`, `times` times.
fn waits(lock: u64, times: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for i in 0..times {
        let start = 10_000_000 * (i + 1);
        for (kind, at) in [
            (EventKind::ContentionBegin, start),
            (EventKind::ContentionEnd, start + 1_000_000),
            (EventKind::LockAcquire, start + 1_000_000),
            (EventKind::LockRelease, start + 1_000_000),
        ] {
            let mut ev = lock_event(kind, 9, lock);
            ev.timestamp_ns = at;
            events.push(ev);
        }
    }
    events
}

/// Two AB-BAs, alpha/beta found first; alpha waited for 5 times, gamma and delta twice each,
/// beta never. `traced`: the contention tracepoints attached.
fn write_contended_inversions(path: &std::path::Path, traced: bool) {
    let mut events = abba_of(LOCK_A, LOCK_B, 1);
    events.extend(abba_of(LOCK_C, LOCK_D, 3));
    for (lock, times) in [(LOCK_A, 5), (LOCK_C, 2), (LOCK_D, 2)] {
        events.extend(waits(lock, times));
    }
    let mut model = KernelModel::default();
    facts(&mut model, &events);
    let contention = Record::Contention(ContentionSnapshot {
        monotonic_ns: 1,
        stats: model.contention_stats(),
    });
    let probes = if traced {
        contention_probes()
    } else {
        Vec::new()
    };
    write_events(path, probes, &events, vec![contention]);
}

/// Each JSON alert's locks as (name, contended, wait_ns), in the order printed.
fn alert_contention(output: &Output) -> Vec<Vec<(String, serde_json::Value, serde_json::Value)>> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["class_info"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        c["contended"].clone(),
                        c["wait_ns"].clone(),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn report_sorts_alerts_by_contention_risk_when_asked() {
    let dir = support::tempdir();
    let trace = support::path_in(&dir, "hot.lttrace");
    write_contended_inversions(&trace, true);
    let trace = trace.to_str().unwrap();
    let lock = |name: &str, n: u64| (name.to_string(), n.into(), (n * 1_000_000).into());
    let (ab, cd) = (
        vec![lock("beta_lock", 0), lock("alpha_lock", 5)],
        vec![lock("delta_lock", 2), lock("gamma_lock", 2)],
    );
    let found = run(&["report", trace, "--json"]);
    assert_eq!(found.status.code(), Some(ALERTS));
    assert_eq!(alert_contention(&found), vec![ab.clone(), cd.clone()]);
    let explicit = run(&["report", trace, "--json", "--sort", "found"]);
    assert_eq!(alert_contention(&explicit), vec![ab.clone(), cd.clone()]);
    let risk = run(&["report", trace, "--json", "--sort", "risk"]);
    assert_eq!(
        alert_contention(&risk),
        vec![cd, ab],
        "every lock of gamma/delta was contended; beta never was"
    );
    let text = run(&["report", trace, "--sort", "risk"]);
    let text = String::from_utf8_lossy(&text.stdout);
    let gamma = text.find(" (gamma_lock): contended 2 times, 2.0 ms waiting (longest 1.0 ms)");
    let beta = text.find(" (beta_lock): never contended");
    assert!(
        text.contains("lock contention during the session:") && gamma < beta && beta.is_some(),
        "{text}"
    );
}

#[test]
fn without_the_contention_tracepoints_contention_is_not_traced_rather_than_zero() {
    let dir = support::tempdir();
    let trace = support::path_in(&dir, "untraced.lttrace");
    write_contended_inversions(&trace, false);
    let trace = trace.to_str().unwrap();
    let json = run(&["report", trace, "--json"]);
    let null = serde_json::Value::Null;
    for locks in alert_contention(&json) {
        for (name, contended, wait_ns) in locks {
            assert_eq!((&contended, &wait_ns), (&null, &null), "{name}");
        }
    }
    let text = run(&["report", trace]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(
        text.matches("): contention: not traced").count(),
        4,
        "{text}"
    );
}

/// One task takes `first`, then `second` under it.
fn nested(first: u64, second: u64) -> Vec<Event> {
    vec![
        lock_event(EventKind::LockAcquire, 1, first),
        lock_event(EventKind::LockAcquire, 1, second),
        lock_event(EventKind::LockRelease, 1, second),
        lock_event(EventKind::LockRelease, 1, first),
    ]
}

/// Lines of `output`'s standard error that are warnings.
fn warnings(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains("warning:"))
        .map(str::to_string)
        .collect()
}

/// alpha → beta in one recording, beta → alpha in a second that is cut short after its
/// facts: the inversion exists only across them, is still found from what the second file
/// had before the damage, and the damage is one warning line naming the second file.
#[test]
fn a_damaged_second_recording_is_merged_up_to_its_damage() {
    let dir = support::tempdir();
    let a = support::path_in(&dir, "a.lttrace");
    let b = support::path_in(&dir, "b.lttrace");
    write_events(&a, Vec::new(), &nested(LOCK_A, LOCK_B), Vec::new());
    let filler = Record::Drops(tracer::tracefile::DropCounts::default());
    write_events(&b, Vec::new(), &nested(LOCK_B, LOCK_A), vec![filler]);
    for alone in [&a, &b] {
        let output = run(&["report", alone.to_str().unwrap(), "--json"]);
        assert_eq!(output.status.code(), Some(0), "nothing in one recording");
    }
    let len = std::fs::metadata(&b).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
    file.set_len(len - 4).unwrap();

    let output = run(&["report", "--json", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(ALERTS), "alerts before damage");
    assert_eq!(alert_kinds(&output), vec!["circular_dependency"]);
    let warned = warnings(&output);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains(b.to_str().unwrap()), "{warned:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "merged 2 recordings (1 host): 4 of 4 classes matched by name across recordings; \
             0 named in one recording only; 0 had no stable name (an address) and were kept \
             per recording; 1 across recordings only; 1 alerts"
        ),
        "{stderr}"
    );
    let alert: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let files: Vec<&str> = alert["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|link| link["origin"]["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 2);
    assert_ne!(files[0], files[1], "one edge from each recording");

    let merged = support::path_in(&dir, "m.lttrace");
    let merge = run(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(merge.status.code(), Some(DAMAGED));
    assert_eq!(warnings(&merge).len(), 1);
    let again = run(&["report", "--json", merged.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(ALERTS));
    assert_eq!(
        again.stdout, output.stdout,
        "the merged file reports as its inputs"
    );
    let warned = warnings(&again);
    assert_eq!(warned.len(), 1, "the damage is remembered: {warned:?}");
    assert!(warned[0].contains(b.to_str().unwrap()), "{warned:?}");
}

/// A merge of one file is that file: the same report, without origins or a match line.
#[test]
fn a_merge_of_one_recording_reports_as_the_recording() {
    let dir = support::tempdir();
    let path = support::path_in(&dir, "abba.lttrace");
    write_trace(&path, 0);
    let merged = support::path_in(&dir, "m.lttrace");
    let merge = run(&[
        "merge",
        path.to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(merge.status.code(), Some(0));
    let direct = run(&["report", path.to_str().unwrap()]);
    let via = run(&["report", merged.to_str().unwrap()]);
    assert_eq!(via.status.code(), Some(ALERTS));
    assert_eq!(direct.stdout, via.stdout);
    let text = String::from_utf8_lossy(&via.stdout);
    assert!(!text.contains("from recording"), "{text}");
    assert!(!String::from_utf8_lossy(&via.stderr).contains("merged"));
}

/// A recording made where a lock family's releases could not be traced says, in one line,
/// that its ordering checks were off; one without such a family says nothing of the kind.
#[test]
fn report_says_which_families_ordering_was_off() {
    let dir = support::tempdir();
    let blind = support::path_in(&dir, "blind.lttrace");
    let refused = |name: &str, detail: &str| ProbeStatus {
        name: name.into(),
        kind: "fexit".into(),
        attached: false,
        detail: detail.into(),
    };
    let off = "ordering checks off, the releases cannot be traced: not in this kernel";
    write_events(
        &blind,
        vec![
            refused("fexit:_raw_spin_lock", off),
            refused("fexit:_raw_spin_lock_irqsave", off),
            refused("fexit:_raw_read_lock", off),
            refused("fexit:mutex_lock", "verifier rejected it"),
        ],
        &abba_of(LOCK_A, LOCK_B, 1),
        Vec::new(),
    );
    let output = run(&["report", blind.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ordering checks were off"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("rwlock, spinlock ordering"), "{stderr}");
    assert!(!lines[0].contains("mutex"), "{stderr}");

    let whole = support::path_in(&dir, "whole.lttrace");
    write_events(&whole, Vec::new(), &abba_of(LOCK_A, LOCK_B, 1), Vec::new());
    let output = run(&["report", whole.to_str().unwrap()]);
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("ordering checks"),
        "{output:?}"
    );
}
