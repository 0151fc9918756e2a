//! Command-line arguments. Validated here, before anything touches the system.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// lockdep's checks on a running kernel and on pthread locks, through eBPF.
#[derive(Parser, Debug)]
#[command(name = "locktrace", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what the running kernel allows and what locktrace can therefore detect here.
    Check {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Record a session to a trace file (replay it with `report`).
    Record {
        /// The trace file to write (created 0600: it holds kernel addresses).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        trace: TraceArgs,
    },
    /// Trace live and print alerts as they are found.
    Watch {
        /// One JSON object per alert per line on standard output.
        #[arg(long)]
        json: bool,
        /// Attach every probe with empty programs: the benchmark's baseline (nothing is
        /// reported).
        #[arg(long)]
        floor: bool,
        #[command(flatten)]
        trace: TraceArgs,
    },
    /// Replay a recorded session and print its alerts.
    Report {
        /// The trace file.
        file: PathBuf,
        /// One JSON object per alert per line.
        #[arg(long)]
        json: bool,
    },
    /// Print a recorded session's events one per line, like `perf script`.
    Script {
        /// The trace file.
        file: PathBuf,
        /// Print each event's kernel and user stack under it.
        #[arg(long)]
        stacks: bool,
    },
    /// Export the lock-dependency graph of a recorded session.
    Graph {
        /// The trace file.
        file: PathBuf,
        /// Output format (render dot with Graphviz: `dot -Tsvg`).
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
}

/// Graph export formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    /// JSON with classes, usage and dependencies.
    Json,
}

/// What to trace and for how long (shared by `record` and `watch`).
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Trace the pthread locks of this running process.
    #[arg(long, conflicts_with = "command")]
    pub pid: Option<u32>,
    /// Trace the pthread locks of every process (slow: every lock call traps).
    #[arg(long, conflicts_with_all = ["pid", "command"])]
    pub all_user: bool,
    /// Do not attach the kernel probes.
    #[arg(long)]
    pub no_kernel: bool,
    /// Name kernel addresses with this System.map or kallsyms copy instead of /proc/kallsyms.
    #[arg(long, value_name = "FILE")]
    pub symbols: Option<PathBuf>,
    /// Attach empty programs to the same user-space probe points (the overhead benchmark's
    /// bare-uprobe baseline); nothing is reported.
    #[arg(long, hide = true)]
    pub empty_programs: bool,
    /// Spawn this command, trace it until it exits.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("not a number of seconds: {s}"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration must be positive: {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}
