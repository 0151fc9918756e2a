//! Overhead of tracing pthread locks: a lock-heavy program (tests/programs/lockpatterns.c,
//! `bench N`, which times its own loop) runs bare, under the bare-uprobe baseline (the same
//! probe points with empty programs), and under `locktrace watch`. Prints lock operations per
//! second for each and the cost per operation added by the probes.
//!
//! Every uprobe hit traps into the kernel, and on this kind of VM a trap costs microseconds:
//! locktrace's cost is judged as a ratio to the baseline, never as an absolute. Target: at
//! most 1.2x the bare-uprobe cost. Needs root; prints why and exits otherwise.
//!
//! `cargo bench -p tracer --bench uprobe` (LOCKTRACE_BENCH_PAIRS sets the traced loop size).

use std::{path::PathBuf, process::Command};

const RUNS: usize = 5;

fn build_program() -> PathBuf {
    let out = std::env::temp_dir().join(format!("lockpatterns-bench-{}", std::process::id()));
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/programs/lockpatterns.c"
    );
    let status = Command::new("cc")
        .args(["-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
        .arg(&out)
        .arg(source)
        .status()
        .expect("cc");
    assert!(status.success(), "building {source}");
    out
}

/// Nanoseconds per lock operation as the program measured it.
fn ns_per_op(stderr: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("bench: "))
        .unwrap_or_else(|| panic!("no bench line in: {text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let ops: f64 = words[1].parse().unwrap();
    let ns: f64 = words[5].parse().unwrap();
    ns / ops
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn measure(mut make: impl FnMut() -> Command) -> f64 {
    median(
        (0..RUNS)
            .map(|_| {
                let output = make().output().expect("run");
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                ns_per_op(&output.stderr)
            })
            .collect(),
    )
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        println!("uprobe benchmark skipped: needs root to attach uprobes");
        return;
    }
    let program = build_program();
    let pairs: u64 = std::env::var("LOCKTRACE_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let locktrace = env!("CARGO_BIN_EXE_locktrace");

    let bare = measure(|| {
        let mut cmd = Command::new(&program);
        cmd.args(["bench", "10000000"]);
        cmd
    });
    let traced = |extra: &'static [&'static str]| {
        let program = program.clone();
        move || {
            let mut cmd = Command::new(locktrace);
            cmd.args(["watch", "--no-kernel"])
                .args(extra)
                .arg("--")
                .arg(&program)
                .args(["bench", &pairs.to_string()]);
            cmd
        }
    };
    let baseline = measure(traced(&["--empty-programs"]));
    let full = measure(traced(&[]));

    let per_sec = |ns: f64| 1e9 / ns;
    println!("pthread lock operations (lock or unlock), median of {RUNS} runs:");
    println!(
        "  bare                 {:>14.0} ops/s  {:>10.1} ns/op",
        per_sec(bare),
        bare
    );
    println!(
        "  bare uprobes         {:>14.0} ops/s  {:>10.1} ns/op",
        per_sec(baseline),
        baseline
    );
    println!(
        "  locktrace            {:>14.0} ops/s  {:>10.1} ns/op",
        per_sec(full),
        full
    );
    let probe_cost = baseline - bare;
    let locktrace_cost = full - bare;
    println!(
        "  overhead per op: bare uprobes {probe_cost:.1} ns, locktrace {locktrace_cost:.1} ns"
    );
    println!(
        "  locktrace / bare-uprobe cost: {:.2}x (target <= 1.20x)",
        locktrace_cost / probe_cost
    );
    let _ = std::fs::remove_file(&program);
}
