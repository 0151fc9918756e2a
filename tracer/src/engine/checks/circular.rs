//! Circular dependencies of any length (lockdep's `check_noncircular`): when `prev → next` is
//! added, a strong path `next ⇝ prev` means the new edge closes a cycle that can deadlock.
//! The search walks what `next` leads to, so it is skipped when nothing leads to `prev`.

use petgraph::graph::EdgeIndex;

use super::{CheckCtx, link};
use crate::engine::alert::{DedupKey, Trigger};
use crate::engine::finding::{CircularDependency, Finding, chain_classes};
use crate::engine::graph::Walk;
use crate::engine::held::HeldLock;

/// Checks the new dependency `prev → trigger.class` (edge `edge`, just added or extended).
/// `recursive_read` says whether the new lock was acquired as a recursive reader.
pub fn new_dependency(
    ctx: &mut CheckCtx<'_>,
    prev: &HeldLock,
    edge: EdgeIndex,
    recursive_read: bool,
    trigger: &Trigger,
    held: &[HeldLock],
) {
    let (_, next, _) = ctx.graph.edge(edge);
    // A cycle needs a path back into `prev`: none when nothing leads to it (a class first
    // seen just now, say), and then the whole graph after `next` need not be walked.
    if next != prev.class && ctx.graph.nothing_leads_to(prev.class) {
        return;
    }
    let prev_is_writer = !prev.kind.is_read();
    // lockdep's hlock_conflict: the cycle closes at `prev` if it is held by a writer, or if the
    // path into it does not end with a recursive-read step.
    let Some(found) = ctx
        .graph
        .search(next, recursive_read, Walk::Forward, |class, only_xr| {
            class == prev.class && (prev_is_writer || !only_xr)
        })
    else {
        return;
    };
    let mut chain = vec![link(ctx.graph, edge)];
    chain.extend(found.path.iter().map(|&e| link(ctx.graph, e)));
    let key = DedupKey::cycle(&chain_classes(&chain));
    ctx.report(key, trigger, held, || {
        Finding::CircularDependency(CircularDependency { chain })
    });
}
