//! User-space locks end to end: real programs (tests/programs/lockpatterns.c, built here with
//! frame pointers), real uprobes, `locktrace watch --json -- PROGRAM`, and the exact set of
//! alerts each pattern must give.

mod support;

use std::{collections::BTreeSet, path::PathBuf, sync::OnceLock};

use serde_json::Value;

/// Builds the test program once per test binary.
fn lockpatterns() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let source = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/programs/lockpatterns.c"
            );
            let out = std::env::temp_dir().join(format!("lockpatterns-{}", std::process::id()));
            let status = std::process::Command::new("cc")
                .args(["-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
                .arg(&out)
                .arg(source)
                .status()
                .expect("a C compiler (cc) to build the test program");
            assert!(status.success(), "building {source}");
            out
        })
        .clone()
}

/// Runs the pattern under `locktrace watch --json` and returns the alerts.
fn watch(args: &[&str]) -> Vec<Value> {
    let output = support::locktrace()
        .args(["watch", "--json", "--no-kernel", "--"])
        .arg(lockpatterns())
        .args(args)
        .output()
        .expect("run locktrace");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "locktrace failed: {stderr}");
    assert!(
        !stderr.contains("exited with status"),
        "the program itself failed: {stderr}"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
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
    let alerts = watch(&["clean"]);
    assert!(alerts.is_empty(), "unexpected alerts: {alerts:?}");
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
    let trace = support::path_in(&dir, "cycle3.lttrace");
    let record = support::locktrace()
        .args(["record", "--no-kernel", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(lockpatterns())
        .arg("cycle3")
        .output()
        .unwrap();
    assert!(
        record.status.success(),
        "{}",
        String::from_utf8_lossy(&record.stderr)
    );
    let replay = support::locktrace()
        .args(["report", "--json"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(replay.status.success());
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
        .arg(lockpatterns())
        .arg("late-abba")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
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
fn the_benchmark_floor_attaches_every_probe_and_reports_nothing() {
    if !support::bpf_available("the_benchmark_floor_attaches_every_probe_and_reports_nothing") {
        return;
    }
    // The AB-BA that gives one alert above, with the kernel probes too: under `--floor` the
    // same probes attach, and their programs return at once.
    let output = support::locktrace()
        .args(["watch", "--json", "--floor", "--"])
        .arg(lockpatterns())
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
        stderr.contains("locktrace: 0 events, 0 classes, 0 dependencies, 0 alerts"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no alert");
}
