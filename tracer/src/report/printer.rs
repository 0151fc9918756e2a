//! The alert printer `watch` and `report` share: each alert as lockdep-style text or as one
//! JSON line with its locks' contention, flushed at once, unless a suppression rule matches it. A suppressed alert is
//! counted apart and printed only when asked (`--show-suppressed`), marked with its rule; only
//! reported alerts count for the exit status.

use std::{collections::BTreeMap, io::Write};

use super::{AlertNotes, Sources, contention::Contention, suppress::Suppressions};
use crate::engine::{Alert, AlertKind, Engine};

/// Prints alerts as lockdep-style text or as one JSON object per line.
pub struct AlertPrinter {
    json: bool,
    out: Box<dyn Write>,
    suppressions: Option<Suppressions>,
    show_suppressed: bool,
    reported: BTreeMap<AlertKind, u64>,
    suppressed: BTreeMap<AlertKind, u64>,
}

impl AlertPrinter {
    /// A printer to `out`, suppressing nothing.
    pub fn new(json: bool, out: Box<dyn Write>) -> AlertPrinter {
        AlertPrinter {
            json,
            out,
            suppressions: None,
            show_suppressed: false,
            reported: BTreeMap::new(),
            suppressed: BTreeMap::new(),
        }
    }

    /// A printer to standard output, suppressing nothing.
    pub fn stdout(json: bool) -> AlertPrinter {
        AlertPrinter::new(json, Box::new(std::io::stdout()))
    }

    /// Leaves out the alerts `suppressions` match, printing them marked when `show` is set.
    pub fn suppressing(self, suppressions: Suppressions, show: bool) -> AlertPrinter {
        AlertPrinter {
            suppressions: Some(suppressions),
            show_suppressed: show,
            ..self
        }
    }

    /// Prints one alert (unless suppressed and not shown) with its locks' `contention`, and
    /// flushes, so a reader sees it at once.
    pub fn print(
        &mut self,
        alert: &Alert,
        engine: &Engine,
        symbols: &dyn Sources,
        contention: &Contention,
    ) -> std::io::Result<()> {
        let suppressed_by = self
            .suppressions
            .as_ref()
            .and_then(|s| s.find(alert, engine, symbols));
        if suppressed_by.is_some() {
            *self.suppressed.entry(alert.kind()).or_default() += 1;
            if !self.show_suppressed {
                return Ok(());
            }
        } else {
            *self.reported.entry(alert.kind()).or_default() += 1;
        }
        let notes = AlertNotes {
            suppressed_by,
            contention: Some(contention),
        };
        if self.json {
            let value = super::json::render(alert, engine, symbols, &notes);
            writeln!(self.out, "{value}")?;
        } else {
            let text = super::text::render(alert, engine, symbols, &notes);
            writeln!(self.out, "{text}")?;
        }
        self.out.flush()
    }

    /// Alerts reported: found and not suppressed (what the exit status counts).
    pub fn alerts(&self) -> u64 {
        self.reported.values().sum()
    }

    /// Alerts a suppression rule matched.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.values().sum()
    }

    /// Alerts reported, by kind (for `--metrics`).
    pub fn reported_by_kind(&self) -> &BTreeMap<AlertKind, u64> {
        &self.reported
    }

    /// Alerts a suppression rule matched, by kind (for `--metrics`).
    pub fn suppressed_by_kind(&self) -> &BTreeMap<AlertKind, u64> {
        &self.suppressed
    }

    /// `3 alerts`, or `3 alerts, 1 suppressed` when a suppression file is in use (the
    /// summary lines' wording, which scripts read).
    pub fn summary(&self) -> String {
        match self.suppressions {
            Some(_) => format!("{} alerts, {} suppressed", self.alerts(), self.suppressed()),
            None => format!("{} alerts", self.alerts()),
        }
    }
}
