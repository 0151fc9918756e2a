//! `cargo xtask setup`: installs what is missing, quickly when all is present: the nightly
//! that builds the eBPF crate (with rust-src) and the fuzz targets, bpf-linker, cargo-fuzz,
//! C and C++ compilers for the test programs and libFuzzer, and what the VM suite needs.

use std::process::Command;

use anyhow::{Context, bail};

/// The nightly aya-build uses for the eBPF crate (keep in step with tracer/build.rs).
pub const EBPF_TOOLCHAIN: &str = "nightly-2026-07-20";
/// bpf-linker 0.10 loads the nightly's own LLVM 22; 0.11+ needs a separate LLVM install.
const BPF_LINKER_VERSION: &str = "0.10.0";
/// Runs the fuzz targets of `fuzz/` (xtask/src/fuzz.rs).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Runs `cmd` and fails with its name when it does not succeed.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_nightly() -> anyhow::Result<()> {
    let components = output_of(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        EBPF_TOOLCHAIN,
    ]));
    if components.is_some_and(|c| c.lines().any(|l| l.starts_with("rust-src"))) {
        return Ok(());
    }
    eprintln!("setup: installing {EBPF_TOOLCHAIN} with rust-src (builds the eBPF programs)");
    run_checked(Command::new("rustup").args([
        "toolchain",
        "install",
        EBPF_TOOLCHAIN,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let version = output_of(Command::new("bpf-linker").arg("--version"));
    if version.is_some_and(|v| v.contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    eprintln!("setup: installing bpf-linker {BPF_LINKER_VERSION}");
    run_checked(Command::new("cargo").args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
        "--force",
    ]))
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let version = output_of(Command::new("cargo").args(["fuzz", "--version"]));
    if version.is_some_and(|v| v.contains(CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    run_checked(Command::new("cargo").args([
        "install",
        &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
        "--locked",
        "--force",
    ]))
}

fn ensure_c_compiler() -> anyhow::Result<()> {
    if output_of(Command::new("cc").arg("--version")).is_some()
        && output_of(Command::new("c++").arg("--version")).is_some()
    {
        return Ok(());
    }
    eprintln!("setup: installing gcc and g++ (build the pthread test programs and libFuzzer)");
    run_checked(Command::new("apt-get").arg("update"))?;
    run_checked(Command::new("apt-get").args(["install", "-y", "gcc", "g++", "libc6-dev"]))
}

/// Installs every missing prerequisite.
pub fn run() -> anyhow::Result<()> {
    ensure_nightly()?;
    ensure_bpf_linker()?;
    ensure_c_compiler()?;
    ensure_cargo_fuzz()?;
    crate::vm::install_prerequisites()
}
