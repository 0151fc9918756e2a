//! User-space locks end to end: real programs (tests/programs/lockpatterns.c, built here with
//! frame pointers), real uprobes, `locktrace watch --json -- PROGRAM`, and the exact set of
//! alerts each pattern must give.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;

/// `watch` and `report` when they found an alert (`--alert-exit-code`'s default).
const ALERTS: i32 = 2;

/// Runs the pattern under `locktrace watch --json` and returns the alerts. The exit status
/// must say whether there were any: 0 for none, [`ALERTS`] otherwise.
fn watch(args: &[&str]) -> Vec<Value> {
    watch_traced(args).0
}

/// What a session's summary line says it followed.
#[derive(Debug)]
struct Followed {
    lock_ops: u64,
    classes: u64,
    dependencies: u64,
}

/// Reads `locktrace: followed N lock operations; F facts ..., C classes, D dependencies, ...`.
fn followed(stderr: &str) -> Followed {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("locktrace: followed "))
        .unwrap_or_else(|| panic!("no summary line in {stderr}"));
    let before = |what: &str| -> u64 {
        let head = &line[..line
            .find(what)
            .unwrap_or_else(|| panic!("no {what:?} in {line}"))];
        let number = head.rsplit([' ', '(']).next().unwrap();
        number
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {number:?} in {line}"))
    };
    Followed {
        lock_ops: before(" lock operations"),
        classes: before(" classes"),
        dependencies: before(" dependencies"),
    }
}

/// [`watch`], and what the session says it followed.
fn watch_traced(args: &[&str]) -> (Vec<Value>, Followed) {
    let output = support::locktrace()
        .args(["watch", "--json", "--no-kernel", "--"])
        .arg(support::lockpatterns())
        .args(args)
        .output()
        .expect("run locktrace");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("exited with status"),
        "the program itself failed: {stderr}"
    );
    let alerts: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let expected = if alerts.is_empty() { 0 } else { ALERTS };
    assert_eq!(output.status.code(), Some(expected), "{stderr}");
    (alerts, followed(&stderr))
}

/// (kind, set of class names) of each alert.
fn summary(alerts: &[Value]) -> Vec<(String, BTreeSet<String>)> {
    alerts
        .iter()
        .map(|a| {
            let classes = a["classes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            (a["kind"].as_str().unwrap().to_string(), classes)
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Every edge of the alert's chain has a symbolized stack mentioning one of `functions`.
fn assert_stacks_name(alert: &Value, functions: &[&str]) {
    let chain = alert["chain"].as_array().expect("a chain");
    for function in functions {
        let found = chain.iter().any(|edge| {
            edge["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|frame| frame.as_str().unwrap().starts_with(function))
        });
        assert!(found, "no chain stack names {function}: {alert}");
    }
}

#[test]
fn abba_between_two_threads_is_one_circular_dependency() {
    if !support::bpf_available("abba_between_two_threads_is_one_circular_dependency") {
        return;
    }
    // `watch` checks the status too: ALERTS here, 0 for the clean pattern below.
    let alerts = watch(&["abba"]);
    assert_eq!(
        summary(&alerts),
        vec![("circular_dependency".into(), set(&["lock_a", "lock_b"]))]
    );
    assert_stacks_name(&alerts[0], &["take_a_then_b", "take_b_then_a"]);
}

#[test]
fn three_mutex_cycle_is_one_circular_dependency() {
    if !support::bpf_available("three_mutex_cycle_is_one_circular_dependency") {
        return;
    }
    let alerts = watch(&["cycle3"]);
    assert_eq!(
        summary(&alerts),
        vec![(
            "circular_dependency".into(),
            set(&["lock_a", "lock_b", "lock_c"])
        )]
    );
    assert_stacks_name(
        &alerts[0],
        &["take_a_then_b", "take_b_then_c", "take_c_then_a"],
    );
}

#[test]
fn rwlock_writer_against_mutex_is_a_circular_dependency() {
    if !support::bpf_available("rwlock_writer_against_mutex_is_a_circular_dependency") {
        return;
    }
    let alerts = watch(&["rwmutex"]);
    assert_eq!(
        summary(&alerts),
        vec![(
            "circular_dependency".into(),
            set(&["lock_a", "table_rwlock"])
        )]
    );
}

#[test]
fn consistent_order_and_trylock_reversal_give_no_alert() {
    if !support::bpf_available("consistent_order_and_trylock_reversal_give_no_alert") {
        return;
    }
    let (alerts, followed) = watch_traced(&["clean"]);
    assert!(alerts.is_empty(), "unexpected alerts: {alerts:?}");
    // Silence means something only if the locks were followed: lock_a, lock_b and lock_c,
    // nested in order (a -> b, b -> c at least), nine threads' lock and unlock calls.
    assert!(
        followed.classes >= 3 && followed.dependencies >= 2 && followed.lock_ops >= 48,
        "{followed:?}"
    );
}

/// `pthread_rwlock_unlock` is one function for readers and writers: a reader's unlock must
/// release its read-held entry. Held across `lock_a`, the read lock makes a cycle with a
/// writer that takes them the other way round; released first, it makes none (an unlock
/// taken for a writer's, or not matched, would leave it held and report that cycle).
#[test]
fn a_readers_unlock_releases_the_read_held_rwlock() {
    if !support::bpf_available("a_readers_unlock_releases_the_read_held_rwlock") {
        return;
    }
    assert_eq!(
        summary(&watch(&["reader-held"])),
        vec![(
            "circular_dependency".into(),
            set(&["lock_a", "table_rwlock"])
        )]
    );
    let (alerts, followed) = watch_traced(&["reader-released"]);
    assert!(alerts.is_empty(), "unexpected alerts: {alerts:?}");
    // The writer's lock_a -> table_rwlock was followed.
    assert!(
        followed.classes >= 2 && followed.dependencies >= 1,
        "{followed:?}"
    );
}

#[test]
fn a_cycle_repeated_ten_thousand_times_is_reported_once() {
    if !support::bpf_available("a_cycle_repeated_ten_thousand_times_is_reported_once") {
        return;
    }
    let alerts = watch(&["repeat", "10000"]);
    assert_eq!(
        summary(&alerts),
        vec![("circular_dependency".into(), set(&["lock_a", "lock_b"]))]
    );
}

#[test]
fn a_recording_replays_to_the_same_alerts_as_watch() {
    if !support::bpf_available("a_recording_replays_to_the_same_alerts_as_watch") {
        return;
    }
    let live = watch(&["cycle3"]);
    let dir = support::tempdir();
    let trace = record(&dir, "cycle3.lttrace", "cycle3");
    let replay = support::locktrace()
        .args(["report", "--json"])
        .arg(&trace)
        .output()
        .unwrap();
    assert_eq!(replay.status.code(), Some(ALERTS));
    let replayed: Vec<Value> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summary(&replayed), summary(&live));
    assert_stacks_name(
        &replayed[0],
        &["take_a_then_b", "take_b_then_c", "take_c_then_a"],
    );
}

/// Records `lockpatterns PATTERN` to `dir/NAME` (user locks only).
fn record(dir: &tempfile::TempDir, name: &str, pattern: &str) -> std::path::PathBuf {
    let trace = support::path_in(dir, name);
    let record = support::locktrace()
        .args(["record", "--no-kernel", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(support::lockpatterns())
        .arg(pattern)
        .output()
        .unwrap();
    assert!(
        record.status.success(),
        "{}",
        String::from_utf8_lossy(&record.stderr)
    );
    trace
}

/// `locktrace ARGS`: its JSON lines, stderr and status.
fn run_json(args: &[&std::ffi::OsStr]) -> (Vec<Value>, String, Option<i32>) {
    let out = support::locktrace().args(args).output().unwrap();
    let alerts = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        alerts,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

/// The case: A then B in one run, B then A in another. Neither recording alone has a
/// problem; merged (given together, or merged into one file), the two static mutexes are
/// matched by binary and symbol, and the AB-BA is one circular dependency whose edges each
/// name their recording.
#[test]
fn an_abba_split_over_two_runs_is_found_only_when_they_are_merged() {
    if !support::bpf_available("an_abba_split_over_two_runs_is_found_only_when_they_are_merged") {
        return;
    }
    let dir = support::tempdir();
    let a = record(&dir, "a.lttrace", "ab");
    let b = record(&dir, "b.lttrace", "ba");
    for alone in [&a, &b] {
        let (alerts, stderr, status) =
            run_json(&["report".as_ref(), "--json".as_ref(), alone.as_os_str()]);
        assert_eq!((alerts.len(), status), (0, Some(0)), "{stderr}");
    }

    let (alerts, stderr, status) = run_json(&[
        "report".as_ref(),
        "--json".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    assert_eq!(status, Some(ALERTS), "{stderr}");
    assert_eq!(
        summary(&alerts),
        [(
            "circular_dependency".to_string(),
            set(&["lock_a", "lock_b"])
        )]
    );
    let files: BTreeSet<String> = alerts[0]["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|link| link["origin"]["file"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = [&a, &b].iter().map(|p| p.display().to_string()).collect();
    assert_eq!(files, expected, "each edge names its recording");
    let host = alerts[0]["chain"][0]["origin"]["hostname"]
        .as_str()
        .unwrap();
    assert!(!host.is_empty());
    // Both runs take the same locks (the two mutexes, and whatever the C library takes):
    // every class of each is matched in the other.
    let matched = stderr
        .split_once("merged 2 recordings (1 host): ")
        .and_then(|(_, rest)| rest.split_once(" classes matched by name across recordings"))
        .map(|(counts, _)| counts.to_string())
        .unwrap_or_else(|| panic!("no match line: {stderr}"));
    let (n, m) = matched.split_once(" of ").unwrap();
    assert_eq!(n, m, "{stderr}");
    let text = support::locktrace()
        .arg("report")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for file in &expected {
        assert!(
            text.contains(&format!("from recording: {file} (host {host}, started ")),
            "{text}"
        );
    }

    let merged = support::path_in(&dir, "m.lttrace");
    let merge = support::locktrace()
        .arg("merge")
        .arg(&a)
        .arg(&b)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        merge.status.success(),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );
    let (again, stderr, status) =
        run_json(&["report".as_ref(), "--json".as_ref(), merged.as_os_str()]);
    assert_eq!(status, Some(ALERTS), "{stderr}");
    assert_eq!(again, alerts, "a merged file reports as its inputs do");

    let graph = support::locktrace()
        .args(["graph", "--format", "json"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let graph: Value = serde_json::from_slice(&graph.stdout).unwrap();
    let edges: BTreeSet<(String, String)> = graph["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["from"].as_str().unwrap().into(),
                d["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        BTreeSet::from([
            ("lock_a".to_string(), "lock_b".to_string()),
            ("lock_b".to_string(), "lock_a".to_string())
        ])
    );
}

#[test]
fn a_command_using_another_c_library_is_followed_there() {
    if !support::bpf_available("a_command_using_another_c_library_is_followed_there") {
        return;
    }
    // A copy of the system C library is another file (another inode) to uprobes.
    let dir = support::tempdir();
    let system_libc = tracer::probes::uprobes::find_libc(None).unwrap();
    std::fs::copy(&system_libc, dir.path().join("libc.so.6")).unwrap();
    let output = support::locktrace()
        .args(["watch", "--json", "--no-kernel", "--", "env"])
        .arg(format!("LD_LIBRARY_PATH={}", dir.path().display()))
        .arg(support::lockpatterns())
        .arg("late-abba")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(ALERTS), "{stderr}");
    assert!(
        stderr.contains("maps another C library"),
        "the copy was noticed: {stderr}"
    );
    let alerts: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        summary(&alerts),
        vec![("circular_dependency".into(), set(&["lock_a", "lock_b"]))]
    );
}

#[test]
fn thread_names_cannot_drive_the_terminal_under_watch() {
    if !support::bpf_available("thread_names_cannot_drive_the_terminal_under_watch") {
        return;
    }
    // Text output, as a person at a terminal would read it.
    let output = support::locktrace()
        .args(["watch", "--no-kernel", "--"])
        .arg(support::lockpatterns())
        .arg("evil-abba")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(ALERTS), "{stderr}");
    assert!(
        stdout.contains("possible circular locking dependency detected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\\x1b[2J\\nFORGED/"),
        "the thread is named, escaped: {stdout}"
    );
    // The pthread probes do not see waits: said, not shown as zero.
    assert!(
        stdout.contains("lock contention so far:\n (lock_b): contention: not traced\n"),
        "{stdout}"
    );
    for (what, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        assert!(!bytes.contains(&0x1b), "{what}: a raw escape: {stdout}");
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.lines().any(|l| l.starts_with("FORGED")),
            "{what}: a forged line: {text}"
        );
    }
}

#[test]
fn the_alert_status_can_be_chosen_under_watch() {
    if !support::bpf_available("the_alert_status_can_be_chosen_under_watch") {
        return;
    }
    for (status, expected) in [("0", 0), ("77", 77)] {
        let output = support::locktrace()
            .args(["watch", "--no-kernel", "--alert-exit-code", status, "--"])
            .arg(support::lockpatterns())
            .arg("abba")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(expected));
    }
}

#[test]
fn suppressed_alerts_under_watch_are_counted_and_leave_the_status_clean() {
    if !support::bpf_available(
        "suppressed_alerts_under_watch_are_counted_and_leave_the_status_clean",
    ) {
        return;
    }
    let dir = support::tempdir();
    let rules = support::path_in(&dir, "abba.supp");
    // The user locks by their symbols, and a function of the chain's stacks.
    std::fs::write(
        &rules,
        "circular_dependency class:lock_? function:take_b_then_a\n",
    )
    .unwrap();
    for show in [false, true] {
        let output = support::locktrace()
            .args(["watch", "--json", "--no-kernel", "--suppressions"])
            .arg(&rules)
            .args(show.then_some("--show-suppressed"))
            .arg("--")
            .arg(support::lockpatterns())
            .arg("abba")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains(", 0 alerts, 1 suppressed ("), "{stderr}");
        let printed: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if show {
            assert_eq!(
                summary(&printed),
                vec![("circular_dependency".into(), set(&["lock_a", "lock_b"]))]
            );
            assert_eq!(printed[0]["suppressed"], true);
            assert_eq!(printed[0]["suppression"]["line"], 1);
        } else {
            assert!(printed.is_empty(), "{printed:?}");
        }
    }
}

#[test]
fn a_command_that_cannot_execute_is_one_error_line() {
    if !support::bpf_available("a_command_that_cannot_execute_is_one_error_line") {
        return;
    }
    // Executable by its mode, refused by execve (ENOEXEC): found only once released.
    let dir = support::tempdir();
    let garbage = support::path_in(&dir, "garbage");
    std::fs::write(&garbage, b"\x7fELF but not really").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = support::locktrace()
        .args(["watch", "--no-kernel", "--"])
        .arg(&garbage)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("cannot start"), "{stderr}");
    assert!(!stderr.contains("exited with status"), "{stderr}");
}

/// The state letter of /proc/PID/stat, `None` once the process is gone.
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

#[test]
fn the_traced_command_never_outlives_locktrace() {
    if !support::bpf_available("the_traced_command_never_outlives_locktrace") {
        return;
    }
    let dir = support::tempdir();
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        // The command writes its pid (kept across exec) and then sleeps for ten minutes.
        // Empty programs: this is about the command's life, not its locks (whose symbols
        // would take seconds to read in a debug build).
        let pidfile = support::path_in(&dir, &format!("pid-{sig}"));
        let mut locktrace = support::locktrace()
            .args(["watch", "--no-kernel", "--empty-programs", "--", "sh", "-c"])
            .arg(format!(
                "echo $$ > {}.tmp && mv {0}.tmp {0} && exec sleep 600",
                pidfile.display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = loop {
            if let Ok(text) = std::fs::read_to_string(&pidfile) {
                break text.trim().parse::<i32>().unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // A signal to locktrace alone, not to its process group.
        unsafe { libc::kill(locktrace.id() as i32, sig) };
        let status = locktrace.wait().unwrap();
        if sig == libc::SIGTERM {
            // Stopped cleanly: the command was killed and dead before locktrace exited.
            assert!(status.success(), "signal {sig}: {status}");
            assert!(
                matches!(process_state(pid), None | Some('Z')),
                "signal {sig}: the command still runs"
            );
        } else {
            // Killed outright: the kernel kills the command on locktrace's death.
            let mut state = process_state(pid);
            for _ in 0..100 {
                if matches!(state, None | Some('Z')) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                state = process_state(pid);
            }
            assert!(
                matches!(state, None | Some('Z')),
                "signal {sig}: the command still runs ({state:?})"
            );
        }
    }
}

#[test]
fn the_benchmark_floor_attaches_every_probe_and_reports_nothing() {
    if !support::bpf_available("the_benchmark_floor_attaches_every_probe_and_reports_nothing") {
        return;
    }
    // The AB-BA that gives one alert above, with the kernel probes too: under `--floor` the
    // same probes attach, and their programs return at once.
    let output = support::locktrace()
        .args(["watch", "--json", "--floor", "--"])
        .arg(support::lockpatterns())
        .arg("abba")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let attached = stderr
        .lines()
        .find_map(|line| line.strip_suffix(" probes attached"))
        .and_then(|line| line.strip_prefix("locktrace: "))
        .and_then(|count| count.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no attach count: {stderr}"));
    assert!(attached > 8, "pthread and kernel probes attached: {stderr}");
    assert!(
        stderr.contains(
            "locktrace: followed 0 lock operations; 0 facts, 0 classes, 0 dependencies, 0 alerts"
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no alert");
}
