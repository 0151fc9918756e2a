//! Command-line arguments. Validated here, before anything touches the system.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use tracer::probes::AttachMode;
use tracer::report::{
    printer::AlertPrinter,
    suppress::{SuppressionError, Suppressions},
};

use crate::exit::{DEFAULT_ALERT_STATUS, parse_alert_status};

/// Exit statuses, shown under every command's help (see `exit`).
const EXIT_STATUS: &str = "\
Exit status: 0 ran and found nothing; 1 failed (one error line, bad arguments included);
2 alerts found (watch, report; --alert-exit-code chooses another); 3 a trace file is
damaged or unfinished and only its readable part was used (report, script, graph, merge).";

/// lockdep's checks on a running kernel and on pthread locks, through eBPF.
#[derive(Parser, Debug)]
#[command(name = "locktrace", version, about, long_about = None, after_help = EXIT_STATUS)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what the running kernel allows and what locktrace can therefore detect here.
    #[command(after_help = EXIT_STATUS)]
    Check {
        /// One JSON object instead of a table (it always lists every probe).
        #[arg(long)]
        json: bool,
        /// One line per probe instead of one per attach type.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Record a session to a trace file (replay it with `report`).
    ///
    /// Record does not look for alerts (it stays light on a busy kernel): status 0 means the
    /// recording is complete; `report` it to find them.
    #[command(after_help = EXIT_STATUS)]
    Record {
        /// The trace file to write. It is written as FILE.partial (a new file, mode 0600: it
        /// holds kernel addresses) and renamed to FILE when the recording finishes; FILE may
        /// not be a symbolic link, FIFO, device or directory.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        trace: TraceArgs,
    },
    /// Trace live and print alerts as they are found.
    ///
    /// Each alert says how often each of its locks was contended so far and how long tasks
    /// waited for it (kernel locks, where the contention tracepoints attached).
    #[command(after_help = EXIT_STATUS)]
    Watch {
        /// One JSON object per alert per line on standard output.
        #[arg(long)]
        json: bool,
        /// Attach every probe with empty programs: the benchmark's baseline (nothing is
        /// reported).
        #[arg(long)]
        floor: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics while the session runs: lock
        /// operations, facts, losses, classes, dependencies, chains, alerts by kind, CPU and
        /// memory. ADDR is IP:PORT, e.g. 127.0.0.1:9464 or [::]:9464; it is bound before
        /// anything is attached. Only watch serves metrics: record runs no engine, so it has
        /// no classes, dependencies or alerts to show.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        #[command(flatten)]
        alerts: AlertArgs,
        #[command(flatten)]
        trace: TraceArgs,
    },
    /// Replay recorded sessions and print their alerts.
    ///
    /// Each alert says how often each of its locks was contended during the session and how
    /// long tasks waited for it (kernel locks, where the contention tracepoints attached).
    ///
    /// With several files (or a merged file), each recording's own alerts come first, then
    /// those that exist only across recordings: lock classes are matched between recordings
    /// by name (symbol, slab cache and offset, per-CPU variable, acquiring function; a user
    /// lock's binary and symbol), never by address, and each dependency says which recording
    /// it came from. A last line says how many classes matched.
    #[command(after_help = EXIT_STATUS)]
    Report {
        /// The trace files (recordings from several hosts or runs, or merged files).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// One JSON object per alert per line.
        #[arg(long)]
        json: bool,
        /// The order of the alerts.
        #[arg(long, value_enum, default_value_t = AlertOrder::Found)]
        sort: AlertOrder,
        #[command(flatten)]
        alerts: AlertArgs,
    },
    /// Merge recordings (from several hosts or runs) into one trace file.
    ///
    /// The merged file holds every recording unchanged, each with its header (host, start,
    /// kernel); `report` and `graph` on it give what they give on the files themselves.
    /// Status 3 when an input is damaged: what came before the damage is merged.
    #[command(after_help = EXIT_STATUS)]
    Merge {
        /// The trace files to merge (merged files too).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The merged file, written as OUT.partial and renamed when complete (as `record -o`).
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
    /// Print a recorded session's events one per line, like `perf script`.
    #[command(after_help = EXIT_STATUS)]
    Script {
        /// The trace file.
        file: PathBuf,
        /// Print each event's kernel and user stack under it.
        #[arg(long)]
        stacks: bool,
    },
    /// Export the lock-dependency graph of recorded sessions.
    ///
    /// Every dependency is exported; those in an alert's chain are marked (red in DOT,
    /// "alert": "reported" in JSON), and with --suppressions those only suppressed alerts go
    /// through are marked suppressed instead (grey in DOT). With several files (or a merged
    /// file), the merged graph: classes matched by name across recordings.
    #[command(after_help = EXIT_STATUS)]
    Graph {
        /// The trace files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Output format (render dot with Graphviz: `dot -Tsvg`).
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// Mark the dependencies that only alerts suppressed by FILE go through (the format
        /// of `report --suppressions`).
        #[arg(long, value_name = "FILE")]
        suppressions: Option<PathBuf>,
    },
}

/// The order `report` prints alerts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlertOrder {
    /// As the engine found them.
    Found,
    /// Highest contention risk first: alerts whose locks were all contended, then by the
    /// contention count of their least contended lock, then by the total wait on their locks;
    /// ties keep the order found.
    Risk,
}

/// Graph export formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    /// JSON with classes, usage and dependencies.
    Json,
}

/// Which alerts are reported, and how they show in the exit status (`watch` and `report`).
#[derive(Args, Debug)]
pub struct AlertArgs {
    /// The exit status when at least one alert was found (0 to keep 0; not 1 or 3, which
    /// mean failure and a damaged file). Suppressed alerts do not count.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ALERT_STATUS, value_parser = parse_alert_status)]
    pub alert_exit_code: u8,
    /// Leave out the alerts a rule of FILE matches: they are counted in the summary, not
    /// printed, and do not set the exit status. One rule a line: an alert kind (or *), then
    /// class:GLOB and function:GLOB patterns; every lock of the alert must match a class:
    /// pattern, each function: pattern some function of its stacks (see the README).
    #[arg(long, value_name = "FILE")]
    pub suppressions: Option<PathBuf>,
    /// Print the suppressed alerts too, each marked with the rule that matched it.
    #[arg(long, requires = "suppressions")]
    pub show_suppressed: bool,
}

impl AlertArgs {
    /// The alert printer these arguments ask for, its suppression file read and checked.
    pub fn printer(&self, json: bool) -> Result<AlertPrinter, SuppressionError> {
        let printer = AlertPrinter::stdout(json);
        Ok(match &self.suppressions {
            Some(path) => printer.suppressing(Suppressions::load(path)?, self.show_suppressed),
            None => printer,
        })
    }
}

/// What to trace and for how long (shared by `record` and `watch`).
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Stop after this many seconds (at most ten years).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Trace the pthread locks of this running process (it must exist). The process is left
    /// running when the session ends.
    #[arg(long, conflicts_with = "command", value_parser = parse_pid)]
    pub pid: Option<u32>,
    /// Trace the pthread locks of every process (slow: every lock call traps).
    #[arg(long, conflicts_with_all = ["pid", "command"])]
    pub all_user: bool,
    /// Do not attach the kernel probes.
    #[arg(long)]
    pub no_kernel: bool,
    /// How to probe the kernel's lock functions: `auto` uses trampolines (fentry/fexit)
    /// where the kernel allows them and kprobes where the IRQ state must be read without the
    /// kfunc (before Linux 6.14) or trampolines are refused; `kprobe` uses kprobes and
    /// kretprobes only.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,
    /// Name kernel addresses with this System.map or kallsyms copy instead of /proc/kallsyms.
    #[arg(long, value_name = "FILE")]
    pub symbols: Option<PathBuf>,
    /// Attach empty programs to the same user-space probe points (the overhead benchmark's
    /// bare-uprobe baseline); nothing is reported.
    #[arg(long, hide = true)]
    pub empty_programs: bool,
    /// Spawn this command, trace it until it exits. If the session ends first (--duration,
    /// SIGINT or SIGTERM to locktrace, an error), the command is killed: it never runs on
    /// untraced. To trace a process that must outlive the session, start it yourself and use
    /// --pid.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The longest `--duration`: far beyond any session, and far from any clock's overflow.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("not a number of seconds: {s}"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration must be positive: {s}"));
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(duration) if duration <= MAX_DURATION => Ok(duration),
        _ => Err(format!(
            "duration must be at most {} seconds (ten years): {s}",
            MAX_DURATION.as_secs()
        )),
    }
}

/// A process id: 1 to the largest `pid_t` (0 and larger values mean groups or nothing).
fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(pid) if (1..=i32::MAX as u32).contains(&pid) => Ok(pid),
        _ => Err(format!("not a process id: {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_duration_panics_and_only_sensible_ones_pass() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_secs("315360000"), Ok(MAX_DURATION));
        for bad in [
            "1e30",
            "1e300",
            "inf",
            "NaN",
            "-1",
            "0",
            "315360001",
            "x",
            "",
        ] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn process_ids_are_positive_pid_t_values() {
        assert_eq!(parse_pid("1"), Ok(1));
        for bad in ["0", "-1", "2147483648", "4294967295", "x"] {
            assert!(parse_pid(bad).is_err(), "{bad}");
        }
    }
}
