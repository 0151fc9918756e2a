//! Where a recording came from, as reports name it when they cover several: the file, the
//! host and the start time (and the kernel, to tell builds apart).

use serde_json::{Value, json};

use crate::tracefile::Header;

/// One recording's origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The file it was read from (for a recording inside a merged file, the file it was
    /// merged from).
    pub file: String,
    /// The host it was recorded on.
    pub hostname: String,
    /// When it started, in nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// The recorded kernel's release.
    pub kernel_release: String,
}

impl Origin {
    /// The origin of the recording `file` whose header is `header`.
    pub fn of(file: &str, header: &Header) -> Origin {
        Origin {
            file: file.to_string(),
            hostname: header.hostname.clone(),
            start_unix_ns: header.start_unix_ns,
            kernel_release: header.kernel_release.clone(),
        }
    }

    /// `a.lttrace (host web-1, started 2026-12-01 10:00:00 UTC)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (host {}, started {})",
            self.file,
            if self.hostname.is_empty() {
                "unknown"
            } else {
                &self.hostname
            },
            utc(self.start_unix_ns)
        )
    }

    /// `{"file", "hostname", "start_unix_ns", "kernel_release"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file,
            "hostname": self.hostname,
            "start_unix_ns": self.start_unix_ns,
            "kernel_release": self.kernel_release,
        })
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix time in nanoseconds (the proleptic Gregorian calendar,
/// from Howard Hinnant's `civil_from_days`).
fn utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            utc(1_764_583_200_123_456_789),
            "2025-12-01 10:00:00 UTC",
            "nanoseconds are dropped"
        );
    }

    #[test]
    fn an_origin_names_file_host_and_start() {
        let origin = Origin {
            file: "a.lttrace".into(),
            hostname: "web-1".into(),
            start_unix_ns: 0,
            kernel_release: "6.12".into(),
        };
        assert_eq!(
            origin.describe(),
            "a.lttrace (host web-1, started 1970-01-01 00:00:00 UTC)"
        );
        assert_eq!(origin.to_json()["hostname"], "web-1");
    }
}
