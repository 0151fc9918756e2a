//! The trace file's header: where and when a recording was made, which probes attached, and
//! the format versions this build writes and reads.
//!
//! [`Header::for_this_machine`] is the only place in this module that looks at the running
//! system; everything else is plain data.

use std::time::{SystemTime, UNIX_EPOCH};

/// The format version this build writes. Version 2 records facts (what the programs found
/// new) where version 1 recorded every lock event; version 3 adds the binaries of user-space
/// locks ([`super::ChunkType::UserLockObjects`]) and merged files
/// ([`super::ChunkType::Recording`]).
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format version this build reads: version 2 files are version 3 files without
/// the chunks version 3 added.
pub const OLDEST_READABLE_VERSION: u32 = 2;

/// Facts about the recording session, stored once at the start of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    /// The file format version ([`FORMAT_VERSION`] for files this build writes).
    pub format_version: u32,
    /// `uname -r` of the recorded kernel.
    pub kernel_release: String,
    /// `/proc/sys/kernel/random/boot_id`: kernel addresses only mean something within one boot.
    pub boot_id: String,
    /// The recording machine's host name.
    pub hostname: String,
    /// Wall-clock time at the start, in nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// CLOCK_MONOTONIC at the same moment (the clock of [`tracer_common::Event::timestamp_ns`]).
    pub start_monotonic_ns: u64,
    /// The command line of the recording session.
    pub command_line: Vec<String>,
    /// Every probe the session tried, attached or not.
    pub probes: Vec<ProbeStatus>,
}

/// Whether one probe attached, as recorded in the [`Header`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProbeStatus {
    /// The probe's name (usually the kernel or library function it hooks).
    pub name: String,
    /// The attach type: `fexit`, `fentry`, `kprobe`, `kretprobe`, `tp_btf`, `uprobe` or
    /// `uretprobe`.
    pub kind: String,
    /// True when it attached.
    pub attached: bool,
    /// Why it did not attach, or which fallback it replaced; may be empty.
    pub detail: String,
}

impl Header {
    /// A header describing the running machine now: kernel release, boot id, host name and
    /// both clocks, read as close together as possible. A fact that cannot be read (no
    /// `/proc`) is left empty rather than failing the recording.
    pub fn for_this_machine(command_line: Vec<String>, probes: Vec<ProbeStatus>) -> Header {
        let start_monotonic_ns = crate::clock::monotonic_ns();
        let start_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        Header {
            format_version: FORMAT_VERSION,
            kernel_release: read_proc("/proc/sys/kernel/osrelease"),
            boot_id: read_proc("/proc/sys/kernel/random/boot_id"),
            hostname: read_proc("/proc/sys/kernel/hostname"),
            start_unix_ns,
            start_monotonic_ns,
            command_line,
            probes,
        }
    }

    /// Converts an event timestamp (CLOCK_MONOTONIC ns) to wall-clock ns since the Unix epoch,
    /// using the pair of clock readings taken at the start.
    pub fn monotonic_to_unix_ns(&self, monotonic_ns: u64) -> u64 {
        let offset = i128::from(monotonic_ns) - i128::from(self.start_monotonic_ns);
        let unix = i128::from(self.start_unix_ns) + offset;
        u64::try_from(unix.max(0)).unwrap_or(u64::MAX)
    }
}

fn read_proc(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_this_machine_reads_the_system() {
        let header = Header::for_this_machine(vec!["locktrace".into(), "record".into()], vec![]);
        assert_eq!(header.format_version, FORMAT_VERSION);
        assert!(!header.kernel_release.is_empty());
        assert_eq!(header.boot_id.len(), 36, "boot id is a UUID");
        assert!(header.start_unix_ns > 1_600_000_000 * 1_000_000_000);
        assert!(header.start_monotonic_ns > 0);
        assert!(crate::clock::monotonic_ns() >= header.start_monotonic_ns);
    }

    #[test]
    fn monotonic_timestamps_map_to_wall_time() {
        let header = Header {
            start_unix_ns: 1_000_000,
            start_monotonic_ns: 500,
            ..Header::default()
        };
        assert_eq!(header.monotonic_to_unix_ns(500), 1_000_000);
        assert_eq!(header.monotonic_to_unix_ns(1_500), 1_001_000);
        assert_eq!(
            header.monotonic_to_unix_ns(400),
            999_900,
            "before the start"
        );
    }
}
