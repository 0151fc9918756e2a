//! Exit statuses, one meaning each, so that scripts and CI can tell "found something" from
//! "could not look" (like valgrind's `--error-exitcode`):
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | ran to the end and found nothing |
//! | 1 | failed: one `locktrace: error: ...` line says why (bad arguments included) |
//! | 2 | `watch`, `report`: found at least one alert (`--alert-exit-code N` chooses another) |
//! | 3 | `report`, `script`, `graph`, `merge`: a trace file is damaged or unfinished; everything before the damage was used (a warning line names the file and says where) |
//!
//! Alerts take precedence over damage: what was found in the readable part was found.

use std::process::ExitCode;

use clap::error::ErrorKind;

/// Any failure.
pub const FAILURE: u8 = 1;
/// Alerts found, unless `--alert-exit-code` says otherwise.
pub const DEFAULT_ALERT_STATUS: u8 = 2;
/// The input trace file is damaged or unfinished.
pub const DAMAGED: u8 = 3;

/// What a command that ran to its end found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report.
    Clean,
    /// At least one alert.
    Alerts,
    /// The input file was only partly readable, and its readable part gave no alert.
    Damaged,
}

impl Outcome {
    /// The outcome of a run that found `alerts` alerts in an input `damaged` or not.
    pub fn of(alerts: u64, damaged: bool) -> Outcome {
        match (alerts, damaged) {
            (1.., _) => Outcome::Alerts,
            (0, true) => Outcome::Damaged,
            (0, false) => Outcome::Clean,
        }
    }

    /// The exit status, with alerts reported as `alert_status` (0 to ignore them).
    pub fn exit_code(self, alert_status: u8) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Clean => 0,
            Outcome::Alerts => alert_status,
            Outcome::Damaged => DAMAGED,
        })
    }
}

impl From<Outcome> for ExitCode {
    /// The exit status of a command that reports no alerts (`script`, `graph`).
    fn from(outcome: Outcome) -> ExitCode {
        outcome.exit_code(DEFAULT_ALERT_STATUS)
    }
}

/// Parses `--alert-exit-code`: 0 to 255, but not the statuses of failure and damage.
pub fn parse_alert_status(s: &str) -> Result<u8, String> {
    let status: u8 = s
        .parse()
        .map_err(|_| format!("not an exit status from 0 to 255: {s}"))?;
    match status {
        FAILURE => Err(format!("{FAILURE} means failure; choose another status")),
        DAMAGED => Err(format!(
            "{DAMAGED} means a damaged trace file; choose another status"
        )),
        _ => Ok(status),
    }
}

/// Reports a command-line error as one `locktrace: error:` line with status 1, like any
/// other failure. Help and version go to standard output with status 0; a missing
/// subcommand prints the help to standard error with status 1.
pub fn usage_error(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(FAILURE)
        }
        _ => {
            note!("locktrace: error: {} (see --help)", one_line(&err));
            ExitCode::from(FAILURE)
        }
    }
}

/// clap's message without its "error: " prefix, usage and hint lines, on one line.
fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect();
    parts.join(" ").trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_take_precedence_over_damage() {
        assert_eq!(Outcome::of(0, false), Outcome::Clean);
        assert_eq!(Outcome::of(0, true), Outcome::Damaged);
        assert_eq!(Outcome::of(3, true), Outcome::Alerts);
        assert_eq!(Outcome::of(1, false), Outcome::Alerts);
    }

    #[test]
    fn the_alert_status_cannot_pose_as_failure_or_damage() {
        assert_eq!(parse_alert_status("0"), Ok(0));
        assert_eq!(parse_alert_status("2"), Ok(2));
        assert_eq!(parse_alert_status("255"), Ok(255));
        for bad in ["1", "3", "256", "-1", "x"] {
            assert!(parse_alert_status(bad).is_err(), "{bad}");
        }
    }
}
