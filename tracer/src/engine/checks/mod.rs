//! The checks, one module per problem (lockdep's report families). Each gets what it needs
//! from the engine's parts, decides, and pushes at most one [`Alert`] per distinct problem
//! into the [`AlertLog`], its [`Finding`] built whole.
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

use super::alert::{Alert, AlertLog, DedupKey, HeldSummary, Trigger};
use super::class::ClassTable;
use super::finding::{ChainLink, Finding};
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

/// lockdep's "locks held" list of a stack.
fn held_summary(locks: &[HeldLock]) -> Vec<HeldSummary> {
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
    /// Records the alert of what `finding` builds, fired by `trigger` with `held` held, if
    /// `key` was never reported.
    pub fn report(
        &mut self,
        key: DedupKey,
        trigger: &Trigger,
        held: &[HeldLock],
        finding: impl FnOnce() -> Finding,
    ) {
        if self.log.first(key) {
            let alert = Alert::new(finding(), *trigger, held_summary(held));
            self.log.push(alert);
        }
    }
}
