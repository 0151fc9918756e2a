//! Counting what flows through a session, and the one-line live status shown on a terminal.

use std::{collections::BTreeMap, time::Instant};

use crate::fact::FactRecord;

/// Facts by kind and lock operations, cumulative and since the last status line.
#[derive(Debug, Default)]
pub struct Counters {
    /// Facts by kind (`chain`, `usage`, `recursive`, `pcpu_alloc` ...) since the start.
    pub total: BTreeMap<&'static str, u64>,
    /// All facts since the session started.
    pub facts: u64,
    /// Ring-buffer records that were not a whole fact.
    pub malformed: u64,
    /// Lock operations (acquisitions and releases) the programs followed, as last read.
    pub lock_ops: u64,
    window_facts: u64,
    window_ops: u64,
    window_start: Option<Instant>,
}

impl Counters {
    /// Counts one fact.
    pub fn count(&mut self, fact: &FactRecord) {
        *self.total.entry(fact.label()).or_default() += 1;
        self.facts += 1;
        self.window_facts += 1;
    }

    /// Takes the programs' count of lock operations (cumulative).
    pub fn set_lock_ops(&mut self, ops: u64) {
        self.window_ops += ops.saturating_sub(self.lock_ops);
        self.lock_ops = ops;
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
        let line = format!(
            "{} lock ops/s, {} facts/s | {} lock ops, {} facts{extra}",
            human(self.window_ops as f64 / secs),
            human(self.window_facts as f64 / secs),
            human(self.lock_ops as f64),
            self.facts
        );
        self.window_ops = 0;
        self.window_facts = 0;
        line
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
    use tracer_common::{EventKind, FactKind, HeldLock, fact::news};

    use super::*;

    fn fact(kind: FactKind, news: u32) -> FactRecord {
        FactRecord {
            timestamp_ns: 0,
            kind,
            news,
            arg: 0,
            arg2: 0,
            cpu: 0,
            pid: 0,
            tid: 0,
            context: tracer_common::ExecContext::Task,
            irqs: tracer_common::IrqState::Unknown,
            preempt_count: 0,
            flags: 0,
            comm: [0; 16],
            lock: HeldLock::default(),
            held: Vec::new(),
            stack: None,
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(human(999.0), "999");
        assert_eq!(human(1234.0), "1.2k");
        assert_eq!(human(2_500_000.0), "2.5M");
    }

    #[test]
    fn counts_by_kind() {
        let mut counters = Counters::default();
        counters.count(&fact(FactKind::Acquire, news::NEW_CHAIN));
        counters.count(&fact(FactKind::Acquire, news::NEW_CHAIN | news::NEW_USAGE));
        counters.count(&fact(FactKind::Call, EventKind::Vfree as u32));
        counters.set_lock_ops(5000);
        assert_eq!(counters.total["chain"], 2);
        assert_eq!(counters.total["vfree"], 1);
        let line = counters.status_line("");
        assert!(line.contains("5.0k lock ops,"), "{line}");
        assert!(line.contains("3 facts"), "{line}");
    }
}
