//! locktrace's developer tasks. `cargo xtask --help` lists them.
//!
//! Everything a fresh machine needs is installed by `setup`; `test` and `vm` call it first.
mod fuzz;
mod setup;
mod soak;
mod tasks;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "locktrace developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install every missing prerequisite (toolchains, bpf-linker, Debian packages). Idempotent.
    Setup,
    /// The main job: check this kernel, record it for a few seconds, catch a pthread AB-BA.
    Run,
    /// Every test: fmt, clippy, unit and integration tests (real BPF), a fuzz smoke run, the
    /// VM suite.
    Test,
    /// Boot stock Debian kernels under qemu and run the in-guest tests (`vm bench`: the kernel
    /// overhead benchmark).
    Vm(vm::VmArgs),
    /// A long `watch --all-user` over thousands of short-lived traced processes: locktrace's
    /// memory after warm-up and at the end (issue 11's run: `--minutes 10`).
    Soak(soak::SoakArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Run => setup::run().and_then(|()| tasks::run_main()),
        Task::Test => setup::run().and_then(|()| tasks::run_tests()),
        Task::Vm(args) => setup::run().and_then(|()| vm::run(args)),
        Task::Soak(args) => soak::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}
