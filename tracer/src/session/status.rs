//! Counting what flows through a session, and the one-line live status shown on a terminal.

use std::{collections::BTreeMap, time::Instant};

use tracer_common::{Event, EventKind};

/// Event counts and losses, cumulative and since the last status line.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events by kind since the session started.
    pub total: BTreeMap<&'static str, u64>,
    window: BTreeMap<&'static str, u64>,
    /// All events since the session started.
    pub events: u64,
    /// Ring-buffer records that were not a whole event.
    pub malformed: u64,
    window_start: Option<Instant>,
}

impl Counters {
    /// Counts one event.
    pub fn count(&mut self, event: &Event) {
        let name = event.event_kind().map_or("unknown", EventKind::name);
        *self.total.entry(name).or_default() += 1;
        *self.window.entry(name).or_default() += 1;
        self.events += 1;
    }

    /// The status line for the window since the last call, and starts a new window.
    /// `extra` is appended (engine figures, losses).
    pub fn status_line(&mut self, extra: &str) -> String {
        let now = Instant::now();
        let secs = self
            .window_start
            .map_or(1.0, |start| now.duration_since(start).as_secs_f64())
            .max(1e-3);
        self.window_start = Some(now);
        let rate: u64 = self.window.values().sum();
        let mut by_kind: Vec<(&str, u64)> = self.window.iter().map(|(k, v)| (*k, *v)).collect();
        by_kind.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        let kinds: Vec<String> = by_kind
            .iter()
            .take(4)
            .map(|(k, v)| format!("{k} {}", human(*v as f64 / secs)))
            .collect();
        self.window.clear();
        format!(
            "{} ev/s ({}) | {} events{extra}",
            human(rate as f64 / secs),
            kinds.join(", "),
            self.events
        )
    }
}

/// 1234 → "1.2k", 2_500_000 → "2.5M".
pub fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human(999.0), "999");
        assert_eq!(human(1234.0), "1.2k");
        assert_eq!(human(2_500_000.0), "2.5M");
    }

    #[test]
    fn counts_by_kind() {
        let mut counters = Counters::default();
        let mut ev = Event::zeroed();
        ev.kind = EventKind::LockAcquire as u32;
        counters.count(&ev);
        counters.count(&ev);
        ev.kind = EventKind::Vfree as u32;
        counters.count(&ev);
        assert_eq!(counters.total["acquire"], 2);
        assert_eq!(counters.total["vfree"], 1);
        let line = counters.status_line("");
        assert!(line.contains("acquire"), "{line}");
        assert!(line.contains("3 events"), "{line}");
    }
}
