//! The `locktrace` command: glue between the command line and the `tracer` library.
//!
//! Exit status: see `exit` (0 nothing found, 1 failure with one `locktrace: error: ...` line,
//! 2 alerts found, 3 damaged trace file).

/// A line on standard error that cannot fail the command (see `session::notice`).
macro_rules! note {
    ($($arg:tt)*) => {
        tracer::session::notice(format_args!($($arg)*))
    };
}

mod args;
#[cfg(test)]
mod deploy;
mod exit;
mod live;
mod recorded;

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use tracer::{probes::check, report::suppress::Suppressions};

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return exit::usage_error(err),
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            note!("locktrace: error: {err:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { json, verbose } => {
            let report = check::run();
            let mut out = std::io::stdout().lock();
            let written = if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)
            } else {
                write!(out, "{}", report.render_table(verbose))
            };
            written.context("writing the report")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Record { output, trace } => {
            live::record(&output, &trace).map(|()| ExitCode::SUCCESS)
        }
        Command::Watch {
            json,
            floor,
            metrics,
            alerts,
            trace,
        } => live::watch(alerts.printer(json)?, json, floor, metrics, &trace)
            .map(|o| o.exit_code(alerts.alert_exit_code)),
        Command::Report {
            files,
            json,
            sort,
            alerts,
        } => recorded::report(&files, alerts.printer(json)?, sort)
            .map(|o| o.exit_code(alerts.alert_exit_code)),
        Command::Merge { files, output } => recorded::merge(&files, &output).map(ExitCode::from),
        Command::Script { file, stacks } => recorded::script(&file, stacks).map(ExitCode::from),
        Command::Graph {
            files,
            format,
            suppressions,
        } => {
            let suppressions = match suppressions {
                Some(path) => Suppressions::load(&path)?,
                None => Suppressions::default(),
            };
            recorded::graph(&files, format, &suppressions).map(ExitCode::from)
        }
    }
}
