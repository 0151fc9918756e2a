//! The tracer's own CPU time and resident memory, read from `/proc/self` at each scrape (the
//! `process_cpu_seconds_total` and `process_resident_memory_bytes` every Prometheus client
//! exports).

/// This process's resource use at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds, of every thread.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
}

/// Reads this process's figures; `None` when `/proc` cannot tell (not mounted).
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    // SAFETY: sysconf reads a constant of the system; it has no memory-safety conditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    parse(
        &stat,
        &statm,
        u64::try_from(ticks).ok()?,
        u64::try_from(page).ok()?,
    )
}

/// The figures in `/proc/PID/stat` and `/proc/PID/statm` text, with the clock ticks per
/// second and the page size.
fn parse(stat: &str, statm: &str, ticks_per_second: u64, page_size: u64) -> Option<ProcessStats> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses: the
    // fields that follow start after the last ')'. There the state is field 3, so utime
    // (field 14) and stime (field 15) are the 12th and 13th.
    let mut after_name = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = after_name.next()?.parse().ok()?;
    let stime: u64 = after_name.next()?.parse().ok()?;
    // statm: size, then resident, in pages.
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks_per_second.max(1) as f64,
        resident_bytes: resident_pages * page_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_come_from_the_right_fields_whatever_the_command_name() {
        // A name with spaces and a parenthesis, as a thread may name itself.
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194304 900 0 0 0 250 150 0 0 20 0 3 0 \
                    1000 20000000 1500 18446744073709551615";
        let statm = "5000 1500 300 100 0 2000 0";
        assert_eq!(
            parse(stat, statm, 100, 4096),
            Some(ProcessStats {
                cpu_seconds: 4.0,
                resident_bytes: 1500 * 4096,
            })
        );
        assert_eq!(parse("4242 (truncated", statm, 100, 4096), None);
    }

    #[test]
    fn this_process_has_resident_memory() {
        let stats = read().expect("/proc/self");
        assert!(stats.resident_bytes > 0, "{stats:?}");
    }
}
