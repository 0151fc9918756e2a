//! `cargo xtask run` (the main job) and `cargo xtask test` (every test).

use std::{path::PathBuf, process::Command};

use anyhow::{Context, bail};

use crate::setup::run_checked;

/// The repository's root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root());
    cmd
}

/// The main job: build locktrace, show what this kernel allows, watch the running kernel for
/// a few seconds, and catch a real AB-BA in a pthread program.
pub fn run_main() -> anyhow::Result<()> {
    run_checked(cargo().args(["build", "--release", "-p", "tracer", "--bin", "locktrace"]))?;
    let root = workspace_root();
    let locktrace = root.join("target/release/locktrace");
    run_checked(Command::new(&locktrace).arg("check"))?;
    let trace = root.join("target/demo.lttrace");
    println!("\n== recording the running kernel for 5 seconds");
    run_checked(
        Command::new(&locktrace)
            .args(["record", "--duration", "5", "-o"])
            .arg(&trace),
    )?;
    // 0 when the kernel gave no alert, ALERTS_FOUND when it did: both are a good run.
    run_expecting(
        Command::new(&locktrace).arg("report").arg(&trace),
        &[0, ALERTS_FOUND],
    )?;
    let program = build_lockpatterns(&root)?;
    println!("\n== a pthread program with an AB-BA lock order");
    run_expecting(
        Command::new(&locktrace)
            .args(["watch", "--no-kernel", "--"])
            .arg(&program)
            .arg("abba"),
        &[ALERTS_FOUND],
    )
}

/// The exit status of `locktrace watch` and `report` when they found an alert.
const ALERTS_FOUND: i32 = 2;

/// Runs `cmd` and fails unless its exit status is one of `expected`.
/// Compiles tests/programs/lockpatterns.c (with frame pointers, for user stacks) into
/// `target/lockpatterns` under `root`; returns its path.
pub fn build_lockpatterns(root: &std::path::Path) -> anyhow::Result<PathBuf> {
    let program = root.join("target/lockpatterns");
    run_checked(
        Command::new("cc")
            .args(["-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(&program)
            .arg(root.join("tests/programs/lockpatterns.c")),
    )?;
    Ok(program)
}

fn run_expecting(cmd: &mut Command, expected: &[i32]) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.code().is_some_and(|code| expected.contains(&code)) {
        bail!("{shown} exited with {status}, expected one of {expected:?}");
    }
    Ok(())
}

/// Every test: formatting, lints, unit and integration tests (real BPF as root), a short
/// fuzz run of the trace reader, and the VM suite.
pub fn run_tests() -> anyhow::Result<()> {
    run_checked(cargo().args(["fmt", "--all", "--check"]))?;
    run_checked(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    run_checked(cargo().args(["test"]))?;
    crate::fuzz::smoke()?;
    run_checked(cargo().args(["xtask", "vm"]))
}
