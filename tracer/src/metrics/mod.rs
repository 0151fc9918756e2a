//! Prometheus metrics of a live session (`locktrace watch --metrics ADDR`): the session loop
//! publishes what it knows into a [`Metrics`] handle once a second ([`Figures`]: facts by
//! kind, the programs' counters, the engine's size and alerts), [`render`] writes a snapshot
//! in the Prometheus text format with the tracer's own CPU and memory, and [`server`] serves
//! it over HTTP on a thread of its own.
//!
//! **Architecture invariant:** nothing here runs per event. The session publishes once a
//! second (one mutex, held for a copy); a scrape copies the figures and renders them on the
//! server's thread, so a slow scraper never delays the session and a session busy attaching
//! or reading the symbol table never delays a scrape.

pub mod process;
pub mod render;
pub mod server;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use crate::{
    engine::{AlertKind, EngineStats},
    tracefile::DropCounts,
};

/// What a scrape shows, as the session last published it.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// `uname -r` of the traced kernel, for `locktrace_info`.
    pub kernel_release: String,
    /// When tracing started (every probe attached); `None` while the probes load.
    pub started: Option<SystemTime>,
    /// Probes attached.
    pub probes_attached: u64,
    /// Facts read from the ring, by kind (`chain`, `usage`, `vfree` ...).
    pub facts: BTreeMap<&'static str, u64>,
    /// The programs' counters and the losses of this side, as last read.
    pub drops: DropCounts,
    /// The engine's figures, for a session that runs it (`watch`).
    pub engine: Option<EngineFigures>,
}

/// What the engine adds to a session's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineFigures {
    /// Classes, dependencies, chains.
    pub stats: EngineStats,
    /// Alerts reported, by kind.
    pub alerts: BTreeMap<AlertKind, u64>,
    /// Alerts found but suppressed, by kind.
    pub suppressed: BTreeMap<AlertKind, u64>,
}

/// The figures shared between the session, which publishes them, and the server, which
/// renders them. Cloning gives another handle on the same figures.
#[derive(Clone, Debug)]
pub struct Metrics {
    figures: Arc<Mutex<Figures>>,
}

impl Metrics {
    /// Empty figures for this machine's kernel.
    pub fn new() -> Metrics {
        let kernel_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_string())
            .unwrap_or_default();
        Metrics {
            figures: Arc::new(Mutex::new(Figures {
                kernel_release,
                ..Figures::default()
            })),
        }
    }

    /// Changes the figures (the session calls this once a second; keep `update` short: a
    /// scrape waits for it).
    pub fn publish(&self, update: impl FnOnce(&mut Figures)) {
        update(&mut self.figures.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// A copy of the figures as last published.
    pub fn snapshot(&self) -> Figures {
        self.figures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
