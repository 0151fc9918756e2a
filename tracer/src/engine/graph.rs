//! The lock-dependency graph: an edge A → B ([`Dependency`]) says B was acquired while A was
//! held, with lockdep's read/write kinds, and searches over it that follow lockdep's rules for
//! readers (Documentation/locking/lockdep-design.rst, "Dependency types and strong dependency
//! paths").
//!
//! Each edge carries the kinds it was seen with: `-(SR)->`, `-(ER)->`, `-(SN)->`, `-(EN)->`,
//! where the first letter is how A was held (Exclusive writer or Shared reader) and the second
//! how B was acquired (Recursive reader or Non-recursive). A path is "strong", and can deadlock,
//! when no `-(xR)->` step is followed by a `-(Sx)->` step: a recursive reader never waits for
//! another reader. The searches walk (class, restricted) states, so they are exact.
//!
//! petgraph holds the graph; a hash index finds an edge by its endpoints in O(1). The graph is
//! only touched when a chain is new (see `chain`), so its speed is not on the hot path; but a
//! search runs for every new dependency, so one costs what it visits, never the size of the
//! graph (a program with tens of thousands of mutexes has as many classes).

use std::cell::RefCell;
use std::collections::VecDeque;

use petgraph::Direction;
use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;
use rustc_hash::FxHashMap;

use super::class::ClassId;
use super::trace::Trace;

/// The set of lockdep dependency kinds seen on one edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DepKinds(pub u8);

impl DepKinds {
    /// Shared reader held, recursive reader acquired.
    pub const SR: DepKinds = DepKinds(1);
    /// Exclusive writer held, recursive reader acquired.
    pub const ER: DepKinds = DepKinds(2);
    /// Shared reader held, non-recursive locker acquired.
    pub const SN: DepKinds = DepKinds(4);
    /// Exclusive writer held, non-recursive locker acquired.
    pub const EN: DepKinds = DepKinds(8);
    const FROM_EXCLUSIVE: u8 = 2 | 8;
    const TO_NON_RECURSIVE: u8 = 4 | 8;

    /// The kind of one dependency: how the held lock is held (any read is "shared") and
    /// whether the new lock is a recursive read.
    pub const fn of(held_read: bool, acquired_recursive_read: bool) -> DepKinds {
        match (held_read, acquired_recursive_read) {
            (true, true) => Self::SR,
            (false, true) => Self::ER,
            (true, false) => Self::SN,
            (false, false) => Self::EN,
        }
    }

    /// True when every kind of `other` is in `self`.
    pub const fn contains(self, other: DepKinds) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when one of the kinds has a writer held (`-(E*)->`).
    pub const fn from_exclusive(self) -> bool {
        self.0 & Self::FROM_EXCLUSIVE != 0
    }

    /// True when one of the kinds acquires a non-recursive locker (`-(*N)->`).
    pub const fn to_non_recursive(self) -> bool {
        self.0 & Self::TO_NON_RECURSIVE != 0
    }

    /// lockdep's names of the kinds, e.g. `["EN", "SR"]`.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::ER, "ER"),
            (Self::EN, "EN"),
            (Self::SR, "SR"),
            (Self::SN, "SN"),
        ]
        .into_iter()
        .filter(|(k, _)| self.contains(*k))
        .map(|(_, n)| n)
        .collect()
    }
}

/// One edge of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The kinds seen.
    pub kinds: DepKinds,
    /// True once the new lock was acquired for write (or a non-read kind) under the old one.
    pub write_seen: bool,
    /// The acquisition that first showed it.
    pub first: Trace,
}

impl Dependency {
    /// True when the acquired lock was only ever taken for read along this edge.
    pub fn read(&self) -> bool {
        !self.write_seen
    }
}

/// What [`DepGraph::add`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// A new edge.
    New,
    /// An existing edge gained the kind: new paths may be strong now.
    NewKind,
    /// Nothing new.
    Known,
}

/// The direction of a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// Along dependencies: what the start class leads to.
    Forward,
    /// Against dependencies: what leads to the start class.
    Backward,
}

/// A search hit: the class found and the edges between it and the start, in dependency order
/// (start → … → found when walking forward, found → … → start when walking backward).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The class found.
    pub class: ClassId,
    /// The path, in dependency order.
    pub path: Vec<EdgeIndex>,
}

/// The dependency graph. Node `i` is class `ClassId(i)`.
#[derive(Debug, Default)]
pub struct DepGraph {
    graph: DiGraph<(), Dependency, u32>,
    index: FxHashMap<(u32, u32), EdgeIndex>,
    /// Acquisitions that exercised each edge (chain-cache hits included), by edge index: kept
    /// apart from the edges so the hot path touches 8 bytes per dependency, not a whole edge.
    counts: Vec<u64>,
    /// Reused by every search (see [`SearchState`]); a cell because searches only read the
    /// graph.
    search_state: RefCell<SearchState>,
    /// By class: the marks of every class with a path to it, its own included (see
    /// [`DepGraph::mark`]); a cell because checks mark through a shared graph.
    reaching: RefCell<Vec<u8>>,
}

impl DepGraph {
    /// Makes sure the graph has a node for `class` (classes are created in id order).
    pub fn ensure_class(&mut self, class: ClassId) {
        while self.graph.node_count() <= class.0 as usize {
            self.graph.add_node(());
        }
        self.reaching.get_mut().resize(self.graph.node_count(), 0);
    }

    /// Adds (or extends) the edge `from → to`.
    pub fn add(
        &mut self,
        from: ClassId,
        to: ClassId,
        kinds: DepKinds,
        write: bool,
        first: Trace,
    ) -> (EdgeIndex, Added) {
        if let Some(&edge) = self.index.get(&(from.0, to.0)) {
            self.counts[edge.index()] += 1;
            let dep = &mut self.graph[edge];
            dep.write_seen |= write;
            if dep.kinds.contains(kinds) {
                return (edge, Added::Known);
            }
            dep.kinds.0 |= kinds.0;
            return (edge, Added::NewKind);
        }
        let dep = Dependency {
            kinds,
            write_seen: write,
            first,
        };
        let edge = self.graph.add_edge(
            NodeIndex::new(from.0 as usize),
            NodeIndex::new(to.0 as usize),
            dep,
        );
        self.index.insert((from.0, to.0), edge);
        self.counts.push(1);
        let marks = self.reaching.get_mut()[from.0 as usize];
        self.spread(to, marks);
        (edge, Added::New)
    }

    /// Sets `bits` on `class`; every class a path of dependencies leads to from it inherits
    /// them, now and as dependencies are added ([`DepGraph::marks_reaching`]). A check marks
    /// what it looks for on the far side of a path (the irq check: irq-safe usage), and skips
    /// its search where no mark arrived. Paths here ignore the reader rules, so a mark may
    /// arrive where a strong path would not: a skip is always safe, a search still decides.
    ///
    /// Marks only grow, so a class passes each bit on at most once: the upkeep is a few
    /// steps per dependency over a whole session.
    pub fn mark(&self, class: ClassId, bits: u8) {
        self.spread(class, bits);
    }

    /// The marks of every class with a path to `class`, its own included.
    pub fn marks_reaching(&self, class: ClassId) -> u8 {
        self.reaching.borrow()[class.0 as usize]
    }

    /// Adds `bits` to `start` and to everything it leads to that lacks some of them.
    fn spread(&self, start: ClassId, bits: u8) {
        let mut reaching = self.reaching.borrow_mut();
        let start = start.0 as usize;
        if reaching[start] | bits == reaching[start] {
            return;
        }
        reaching[start] |= bits;
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            let carried = reaching[node];
            for next in self
                .graph
                .neighbors_directed(NodeIndex::new(node), Direction::Outgoing)
            {
                let next = next.index();
                if reaching[next] | carried != reaching[next] {
                    reaching[next] |= carried;
                    stack.push(next);
                }
            }
        }
    }

    /// Counts one more acquisition along `edge`.
    #[inline]
    pub fn bump(&mut self, edge: EdgeIndex) {
        self.counts[edge.index()] += 1;
    }

    /// The edge `from → to` and its count, if any.
    pub fn find(&self, from: ClassId, to: ClassId) -> Option<(&Dependency, u64)> {
        self.index
            .get(&(from.0, to.0))
            .map(|&e| (&self.graph[e], self.counts[e.index()]))
    }

    /// An edge's endpoints and data.
    pub fn edge(&self, edge: EdgeIndex) -> (ClassId, ClassId, &Dependency) {
        let (a, b) = self.graph.edge_endpoints(edge).expect("edge of this graph");
        (
            ClassId(a.index() as u32),
            ClassId(b.index() as u32),
            &self.graph[edge],
        )
    }

    /// Every edge as (from, to, dependency, count), in creation order.
    pub fn edges(&self) -> impl Iterator<Item = (ClassId, ClassId, &Dependency, u64)> {
        self.graph.edge_references().map(|e| {
            (
                ClassId(e.source().index() as u32),
                ClassId(e.target().index() as u32),
                e.weight(),
                self.counts[e.id().index()],
            )
        })
    }

    /// True when no dependency leads into `class`: no path can end there.
    pub fn nothing_leads_to(&self, class: ClassId) -> bool {
        self.graph
            .neighbors_directed(NodeIndex::new(class.0 as usize), Direction::Incoming)
            .next()
            .is_none()
    }

    /// Number of dependencies.
    pub fn len(&self) -> usize {
        self.graph.edge_count()
    }

    /// True when there is no dependency.
    pub fn is_empty(&self) -> bool {
        self.graph.edge_count() == 0
    }

    /// Breadth-first search over strong paths from `start`, calling `accept(class,
    /// restricted)` on each state reached (the start included, with an empty path) until it
    /// returns true.
    ///
    /// Walking forward, `restricted` means the last step acquired a recursive reader only, so
    /// the next step must hold a writer. Walking backward, it means the step after this class
    /// holds a reader only, so the step before must acquire a non-recursive locker.
    pub fn search(
        &self,
        start: ClassId,
        restricted: bool,
        walk: Walk,
        accept: impl FnMut(ClassId, bool) -> bool,
    ) -> Option<Found> {
        self.search_within(start, restricted, walk, |_| true, accept)
    }

    /// [`DepGraph::search`] that only steps onto classes for which `enter` is true (the start
    /// is always visited): a check that cannot care about some classes does not walk them.
    ///
    /// A search costs what it visits, not the size of the graph: the visited marks and the
    /// path back to the start live in a `SearchState` kept from one search to the next.
    pub fn search_within(
        &self,
        start: ClassId,
        restricted: bool,
        walk: Walk,
        mut enter: impl FnMut(ClassId) -> bool,
        mut accept: impl FnMut(ClassId, bool) -> bool,
    ) -> Option<Found> {
        // `accept` or `enter` searching this graph again would find the state in use: such a
        // nested search gets a state of its own.
        let mut own = None;
        let mut shared = self.search_state.try_borrow_mut();
        let state = match shared.as_deref_mut() {
            Ok(state) => state,
            Err(_) => own.insert(SearchState::default()),
        };
        state.begin(self.graph.node_count() * 2);
        let start_slot = slot(start.0, restricted);
        state.visit(start_slot, None);
        state.queue.push_back((start.0, restricted));
        let direction = match walk {
            Walk::Forward => Direction::Outgoing,
            Walk::Backward => Direction::Incoming,
        };
        while let Some((node, restricted)) = state.queue.pop_front() {
            if accept(ClassId(node), restricted) {
                let mut path = state.path_to(slot(node, restricted));
                if walk == Walk::Forward {
                    path.reverse();
                }
                return Some(Found {
                    class: ClassId(node),
                    path,
                });
            }
            for e in self
                .graph
                .edges_directed(NodeIndex::new(node as usize), direction)
            {
                let kinds = e.weight().kinds;
                let (usable, next_restricted) = match walk {
                    Walk::Forward => {
                        let usable = if restricted {
                            DepKinds(kinds.0 & DepKinds::FROM_EXCLUSIVE)
                        } else {
                            kinds
                        };
                        (usable, !usable.to_non_recursive())
                    }
                    Walk::Backward => {
                        let usable = if restricted {
                            DepKinds(kinds.0 & DepKinds::TO_NON_RECURSIVE)
                        } else {
                            kinds
                        };
                        (usable, !usable.from_exclusive())
                    }
                };
                if usable.0 == 0 {
                    continue;
                }
                let other = match walk {
                    Walk::Forward => e.target(),
                    Walk::Backward => e.source(),
                }
                .index() as u32;
                // An unrestricted visit subsumes a restricted one.
                if state.visited(slot(other, false))
                    || (next_restricted && state.visited(slot(other, true)))
                {
                    continue;
                }
                if !enter(ClassId(other)) {
                    continue;
                }
                state.visit(
                    slot(other, next_restricted),
                    Some((e.id(), slot(node, restricted))),
                );
                state.queue.push_back((other, next_restricted));
            }
        }
        None
    }
}

/// The search state of a (class, restricted) pair: two per class.
fn slot(class: u32, restricted: bool) -> usize {
    class as usize * 2 + restricted as usize
}

/// What a breadth-first search remembers, kept between searches so that one costs what it
/// visits: a slot is visited in this search when its stamp is the current generation, so
/// starting a search clears nothing.
#[derive(Debug, Default)]
struct SearchState {
    /// The current search's stamp (never 0, which marks slots never visited).
    generation: u32,
    /// The generation that last visited each slot.
    stamp: Vec<u32>,
    /// How each visited slot was reached: the edge and the slot it came from (`None` for
    /// the start). Only meaningful where `stamp` is the current generation.
    parent: Vec<Option<(EdgeIndex, usize)>>,
    /// The breadth-first queue of (class, restricted).
    queue: VecDeque<(u32, bool)>,
}

impl SearchState {
    /// Starts a search over `slots` slots: grows the arrays with the graph, never clears them.
    fn begin(&mut self, slots: usize) {
        self.queue.clear();
        if self.stamp.len() < slots {
            self.stamp.resize(slots, 0);
            self.parent.resize(slots, None);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Once every 2^32 searches: old stamps could pass for new ones.
            self.stamp.fill(0);
            self.generation = 1;
        }
    }

    fn visited(&self, slot: usize) -> bool {
        self.stamp[slot] == self.generation
    }

    fn visit(&mut self, slot: usize, parent: Option<(EdgeIndex, usize)>) {
        self.stamp[slot] = self.generation;
        self.parent[slot] = parent;
    }

    /// The edges from `slot` back to the start, nearest first.
    fn path_to(&self, mut slot: usize) -> Vec<EdgeIndex> {
        let mut path = Vec::new();
        while let Some((edge, prev)) = self.parent[slot] {
            path.push(edge);
            slot = prev;
        }
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::trace::TaskRef;

    fn trace() -> Trace {
        Trace {
            stack: None,
            task: TaskRef {
                recording: 0,
                comm: [0; 16],
                pid: 1,
                tid: 1,
            },
            caller: 0,
        }
    }

    /// Builds a graph from (from, to, held_read, acquired_recursive_read) and asks whether a
    /// strong path leads from `start` (entered by a recursive read or not) to `goal`.
    fn strong_path(edges: &[Edge], start: (u32, bool), goal: u32) -> bool {
        let mut g = DepGraph::default();
        g.ensure_class(ClassId(9));
        for &(a, b, held_read, rr) in edges {
            g.add(
                ClassId(a),
                ClassId(b),
                DepKinds::of(held_read, rr),
                !rr,
                trace(),
            );
        }
        g.search(ClassId(start.0), start.1, Walk::Forward, |c, _| {
            c == ClassId(goal)
        })
        .is_some()
    }

    /// (from, to, held_read, acquired_recursive_read)
    type Edge = (u32, u32, bool, bool);
    /// (edges, start class and whether it was entered by a recursive read, goal, expected)
    type Case = (&'static [Edge], (u32, bool), u32, bool);

    #[test]
    fn strong_paths_follow_lockdeps_reader_rules() {
        let cases: [Case; 5] = [
            (
                &[(0, 1, false, false), (1, 2, false, false)],
                (0, false),
                2,
                true,
            ),
            // 0 -(ER)-> 1 -(SN)-> 2: a recursive reader then a reader held: not strong.
            (
                &[(0, 1, false, true), (1, 2, true, false)],
                (0, false),
                2,
                false,
            ),
            // 0 -(ER)-> 1 -(EN)-> 2: the writer breaks nothing.
            (
                &[(0, 1, false, true), (1, 2, false, false)],
                (0, false),
                2,
                true,
            ),
            // Entering 0 by a recursive read forbids a shared first step.
            (&[(0, 1, true, false)], (0, true), 1, false),
            // A second, stronger edge makes the path strong again.
            (
                &[
                    (0, 1, false, true),
                    (1, 2, true, false),
                    (0, 1, false, false),
                ],
                (0, false),
                2,
                true,
            ),
        ];
        for (edges, start, goal, want) in cases {
            assert_eq!(strong_path(edges, start, goal), want, "{edges:?}");
        }
    }

    /// A chain 0 → 1 → … → n-1.
    fn chain(n: u32) -> (DepGraph, Vec<EdgeIndex>) {
        let mut g = DepGraph::default();
        g.ensure_class(ClassId(n - 1));
        let edges = (0..n - 1)
            .map(|i| {
                g.add(ClassId(i), ClassId(i + 1), DepKinds::EN, true, trace())
                    .0
            })
            .collect();
        (g, edges)
    }

    #[test]
    fn searches_reuse_their_state_and_stay_exact() {
        let (mut g, edges) = chain(50);
        // Many searches in both directions, with the graph growing between them: each one
        // sees only its own visits.
        for round in 0..200u32 {
            let (from, to) = (round % 49, 49 - round % 7);
            let found = g
                .search(ClassId(from), false, Walk::Forward, |c, _| c == ClassId(to))
                .map(|f| f.path);
            let expected = (from <= to).then(|| edges[from as usize..to as usize].to_vec());
            assert_eq!(found, expected, "round {round}: {from} -> {to}");
            let back = g.search(ClassId(to), false, Walk::Backward, |c, _| {
                c == ClassId(from)
            });
            assert_eq!(back.map(|f| f.path), expected, "round {round} backward");
            g.ensure_class(ClassId(50 + round));
        }
        // A search started from inside another one's `accept` gets a state of its own.
        let mut inner = Vec::new();
        let outer = g.search(ClassId(0), false, Walk::Forward, |c, _| {
            inner.push(
                g.search(ClassId(49), false, Walk::Backward, |b, _| b == c)
                    .map(|f| f.path.len()),
            );
            c == ClassId(3)
        });
        assert_eq!(outer.unwrap().path, edges[..3].to_vec());
        assert_eq!(inner, vec![Some(49), Some(48), Some(47), Some(46)]);
    }

    #[test]
    fn marks_flow_along_dependencies_whenever_they_are_added() {
        // 0 → 1 → 2, and 3 alone; 4 joins later.
        let mut g = DepGraph::default();
        g.ensure_class(ClassId(3));
        g.add(ClassId(0), ClassId(1), DepKinds::EN, true, trace());
        g.add(ClassId(1), ClassId(2), DepKinds::SR, false, trace());
        g.mark(ClassId(0), 0b01);
        g.mark(ClassId(1), 0b10);
        let reaching = |g: &DepGraph| {
            (0..5)
                .map(|c| g.marks_reaching(ClassId(c)))
                .collect::<Vec<_>>()
        };
        g.ensure_class(ClassId(4));
        assert_eq!(reaching(&g), vec![0b01, 0b11, 0b11, 0, 0]);
        // A new dependency carries what reaches its start; a cycle ends the spreading.
        g.add(ClassId(2), ClassId(4), DepKinds::EN, true, trace());
        g.add(ClassId(4), ClassId(0), DepKinds::EN, true, trace());
        g.mark(ClassId(3), 0b100);
        assert_eq!(reaching(&g), vec![0b11, 0b11, 0b11, 0b100, 0b11]);
    }

    #[test]
    fn a_search_within_never_steps_onto_excluded_classes() {
        // 0 → 1 → 3 and 0 → 2 → 3: without class 1, the path goes through 2.
        let mut g = DepGraph::default();
        g.ensure_class(ClassId(3));
        g.add(ClassId(0), ClassId(1), DepKinds::EN, true, trace());
        let (e02, _) = g.add(ClassId(0), ClassId(2), DepKinds::EN, true, trace());
        g.add(ClassId(1), ClassId(3), DepKinds::EN, true, trace());
        let (e23, _) = g.add(ClassId(2), ClassId(3), DepKinds::EN, true, trace());
        let mut seen = Vec::new();
        let found = g.search_within(
            ClassId(0),
            false,
            Walk::Forward,
            |c| c != ClassId(1),
            |c, _| {
                seen.push(c.0);
                c == ClassId(3)
            },
        );
        assert_eq!(found.unwrap().path, vec![e02, e23]);
        assert_eq!(seen, vec![0, 2, 3], "class 1 is never visited");
    }

    #[test]
    fn backward_search_returns_path_in_dependency_order() {
        let mut g = DepGraph::default();
        g.ensure_class(ClassId(2));
        let (e01, _) = g.add(ClassId(0), ClassId(1), DepKinds::EN, true, trace());
        let (e12, _) = g.add(ClassId(1), ClassId(2), DepKinds::EN, true, trace());
        let found = g
            .search(ClassId(2), false, Walk::Backward, |c, _| c == ClassId(0))
            .unwrap();
        assert_eq!(found.path, vec![e01, e12]);
        assert_eq!(
            g.add(ClassId(0), ClassId(1), DepKinds::EN, true, trace()).1,
            Added::Known
        );
        assert_eq!(
            g.add(ClassId(0), ClassId(1), DepKinds::SR, false, trace())
                .1,
            Added::NewKind
        );
        assert_eq!(g.find(ClassId(0), ClassId(1)).unwrap().1, 3);
    }
}
