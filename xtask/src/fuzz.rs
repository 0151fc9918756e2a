//! The fuzz smoke run of `cargo xtask test`: each cargo-fuzz target of `fuzz/` for a fixed
//! time, starting from its committed seed corpus (`fuzz/corpus/<target>`). Inputs the fuzzer
//! finds go to a scratch corpus (`fuzz/corpus-run`, git-ignored) so the seeds stay as
//! committed; a crash leaves its input in `fuzz/artifacts/<target>` and fails the run (keep
//! such an input as a regression test in tests/tracefile.rs).

use std::process::Command;

use crate::setup::{EBPF_TOOLCHAIN, run_checked};

/// Every fuzz target (`fuzz/fuzz_targets/<name>.rs`).
const TARGETS: &[&str] = &["tracefile"];
/// Fuzzing time per target, not counting the build.
const SECONDS: u32 = 30;

/// Builds and runs every target for [`SECONDS`]. libFuzzer needs a nightly; the one that
/// builds the eBPF programs serves. No sanitizer: the code is safe Rust, and what is looked
/// for is a panic, an overflow (debug assertions are on), a hang or a runaway allocation.
pub fn smoke() -> anyhow::Result<()> {
    let root = crate::tasks::workspace_root();
    for target in TARGETS {
        let scratch = root.join("fuzz/corpus-run").join(target);
        std::fs::create_dir_all(&scratch)?;
        let seeds = root.join("fuzz/corpus").join(target);
        println!("\n== fuzzing {target} for {SECONDS} s");
        run_checked(
            Command::new("cargo")
                .current_dir(&root)
                // The fuzz build reads trace files only: no eBPF object needed.
                .env("AYA_BUILD_SKIP", "1")
                .arg(format!("+{EBPF_TOOLCHAIN}"))
                .args(["fuzz", "run", "--sanitizer", "none", target])
                .arg(&scratch)
                .arg(&seeds)
                .arg("--")
                .arg(format!("-max_total_time={SECONDS}"))
                .args(["-rss_limit_mb=1024", "-timeout=10", "-print_final_stats=1"]),
        )?;
    }
    Ok(())
}
