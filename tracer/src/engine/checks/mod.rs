//! The checks, one module per problem (lockdep's report families). Each gets what it needs
//! from the engine's parts, decides, and pushes at most one [`Alert`] per distinct problem
//! into the [`AlertLog`].
//!
//! - [`circular`]: a new dependency closes a cycle;
//! - [`irq`]: irq-safe → irq-unsafe dependencies and inconsistent usage of one class;
//! - [`recursive`]: the same instance acquired again while held;
//! - [`atomic`]: sleeping operations in atomic context.

pub mod atomic;
pub mod circular;
pub mod irq;
pub mod recursive;

use petgraph::graph::EdgeIndex;

use super::alert::{Alert, AlertLog, ChainLink, HeldSummary};
use super::class::{ClassId, ClassTable};
use super::graph::DepGraph;
use super::held::HeldLock;

/// The engine's parts a check reads, and the log it writes.
pub struct CheckCtx<'a> {
    /// Every class.
    pub classes: &'a ClassTable,
    /// The dependency graph.
    pub graph: &'a DepGraph,
    /// Where alerts go.
    pub log: &'a mut AlertLog,
}

/// The chain link of a graph edge, as first seen.
pub fn link(graph: &DepGraph, edge: EdgeIndex) -> ChainLink {
    let (from, to, dep) = graph.edge(edge);
    ChainLink {
        from,
        to,
        read: dep.read(),
        first: dep.first,
    }
}

/// The classes along a chain: the first `from`, then every `to`, without repeating the start
/// when the chain is a cycle.
pub fn chain_classes(chain: &[ChainLink]) -> Vec<ClassId> {
    let mut classes: Vec<ClassId> = chain.first().map(|l| l.from).into_iter().collect();
    for link in chain {
        if !classes.contains(&link.to) {
            classes.push(link.to);
        }
    }
    classes
}

/// lockdep's "locks held" list of a stack.
pub fn held_summary(locks: &[HeldLock]) -> Vec<HeldSummary> {
    locks
        .iter()
        .map(|l| HeldSummary {
            class: l.class,
            caller: l.caller,
            kind: l.kind,
        })
        .collect()
}

impl CheckCtx<'_> {
    /// Records `alert` if `key` was never reported.
    pub fn report(&mut self, key: super::alert::DedupKey, alert: impl FnOnce() -> Alert) {
        if self.log.first(key) {
            self.log.push(alert());
        }
    }
}
