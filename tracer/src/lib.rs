//! locktrace: lockdep's checks on a running kernel and on user-space locks, through eBPF.
//!
//! The data path, in order (see ARCHITECTURE.md):
//! - [`probes`] loads the eBPF programs and attaches what the running kernel allows;
//! - [`session`] reads the ring buffer, decodes events, feeds the engine and the trace file;
//! - [`tracefile`] writes and reads recorded sessions;
//! - [`engine`] is lockdep's model on an event stream (no BPF, no I/O);
//! - [`report`] turns the engine's findings into lockdep-style text, JSON and graphs;
//! - [`script`] prints a recording's raw events, one per line;
//! - [`symbols`] names addresses for all of the above.
#![deny(missing_docs)]

pub mod engine;
pub mod probes;
pub mod replay;
pub mod report;
pub mod script;
pub mod session;
pub mod symbols;
pub mod tracefile;
