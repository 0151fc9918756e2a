//! locktrace: lockdep's checks on a running kernel and on user-space locks, through eBPF.
//!
//! The data path, in order (see ARCHITECTURE.md):
//! - [`probes`] loads the eBPF programs and attaches what the running kernel allows; the
//!   programs keep held locks, classes and the chain cache, and send only new [`fact`]s;
//! - [`session`] reads the ring buffer, names the facts, feeds the engine and the trace file;
//! - [`tracefile`] writes and reads recorded sessions; [`replay`] feeds them to the engine,
//!   and [`merge`] matches several recordings' classes by name and writes merged files;
//! - [`engine`] is lockdep's model on a stream of facts (no BPF, no I/O);
//! - [`model`] is the programs' side run in user space, turning raw lock events into facts
//!   (fixtures, benchmarks, tests);
//! - [`report`] turns the engine's findings into lockdep-style text, JSON and graphs;
//! - [`metrics`] serves a live session's figures to Prometheus;
//! - [`script`] prints a recording's facts, one per line;
//! - [`symbols`] names addresses for all of the above; [`clock`] is the time they share.
#![deny(missing_docs)]

pub mod clock;
pub mod engine;
pub mod fact;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod probes;
pub mod replay;
pub mod report;
pub mod script;
pub mod session;
pub mod symbols;
pub mod tracefile;
