//! The dependency graph with each class's usage, as Graphviz DOT (to look at) and as JSON
//! (for other tools; the schema below is relied on):
//!
//! `{"classes":[{"id":N,"name":"...","identified_by":"...","usage":["USED_IN_HARDIRQ",...]}],
//!   "dependencies":[{"from":"<class name>","to":"<class name>","read":bool,"count":N,
//!                    "kinds":[...],"alert":null|"reported"|"suppressed",
//!                    "origin":null|{"file","hostname","start_unix_ns","kernel_release"}}]}`
//!
//! `origin` is the recording that first showed the dependency, when several were read.
//!
//! Every dependency is kept, suppressed or not: the graph is what the session did. `alert`
//! says whether the dependency is an edge of an alert's chain: `reported` when some reported
//! alert goes through it, `suppressed` when only alerts a suppression rule matched do. DOT
//! draws the first red and bold, the second grey with "suppressed" in its label.

use std::fmt::Write;

use rustc_hash::FxHashMap;
use serde_json::{Value, json};

use super::{Sources, class_name, printable, suppress::Suppressions, usage_names};
use crate::engine::{Alert, ClassId, Engine, UsageBit};

/// Which dependencies alerts go through, and whether a reported one does.
#[derive(Debug, Default)]
pub struct AlertEdges {
    /// (from, to) → true when a reported alert's chain has the edge, false when only
    /// suppressed ones do.
    edges: FxHashMap<(ClassId, ClassId), bool>,
}

impl AlertEdges {
    /// The chains of `alerts`, each judged by `suppressions`.
    pub fn of(
        alerts: &[Alert],
        suppressions: &Suppressions,
        engine: &Engine,
        symbols: &dyn Sources,
    ) -> AlertEdges {
        let mut edges: FxHashMap<(ClassId, ClassId), bool> = FxHashMap::default();
        for alert in alerts {
            let reported = suppressions.find(alert, engine, symbols).is_none();
            for link in alert.finding().chain() {
                *edges.entry((link.from, link.to)).or_default() |= reported;
            }
        }
        AlertEdges { edges }
    }

    /// Whether `from → to` is in a reported alert's chain (`Some(true)`), only in suppressed
    /// ones (`Some(false)`), or in none.
    fn reported(&self, from: ClassId, to: ClassId) -> Option<bool> {
        self.edges.get(&(from, to)).copied()
    }
}

/// The JSON `alert` of an edge: `reported`, `suppressed` or null.
fn alert_name(reported: Option<bool>) -> Option<&'static str> {
    reported.map(|reported| if reported { "reported" } else { "suppressed" })
}

/// The graph as JSON (schema in the module docs).
pub fn to_json(engine: &Engine, symbols: &dyn Sources, alerts: &AlertEdges) -> Value {
    let classes: Vec<Value> = engine
        .classes()
        .iter()
        .map(|c| {
            json!({
                "id": c.id.0,
                "name": class_name(engine, symbols, c.id),
                "identified_by": c.source.describe(),
                "usage": usage_names(engine, c.id),
            })
        })
        .collect();
    let dependencies: Vec<Value> = engine
        .dependencies()
        .map(|(from, to, dep, count)| {
            json!({
                "from": class_name(engine, symbols, from),
                "to": class_name(engine, symbols, to),
                "read": dep.read(),
                "count": count,
                "kinds": dep.kinds.names(),
                "alert": alert_name(alerts.reported(from, to)),
                "origin": symbols.origin(dep.first.task.recording).map(|o| o.to_json()),
            })
        })
        .collect();
    json!({ "classes": classes, "dependencies": dependencies })
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Node colour by irq safety: red both safe and unsafe, orange irq-safe, blue irq-unsafe.
fn colour(engine: &Engine, class: ClassId) -> &'static str {
    let mask = engine.class(class).usage.mask;
    let safe = mask.bits().any(UsageBit::is_used_in);
    let unsafe_ = mask.bits().any(|b| !b.is_used_in());
    match (safe, unsafe_) {
        (true, true) => "red",
        (true, false) => "orange",
        (false, true) => "lightblue",
        (false, false) => "white",
    }
}

/// The graph as Graphviz DOT: one node per class labelled with its name, lockdep usage
/// characters and identification; one edge per dependency, dashed when read-only, red and
/// bold in a reported alert's chain, grey and labelled "suppressed" in only suppressed ones.
/// Names are made [`printable`] first: the labels end up in front of people.
pub fn to_dot(engine: &Engine, symbols: &dyn Sources, alerts: &AlertEdges) -> String {
    let mut out = String::from("digraph lockdep {\n  node [shape=box, style=filled];\n");
    for c in engine.classes() {
        let label = format!(
            "{}\\n{{{}}}\\n{}",
            printable(&class_name(engine, symbols, c.id))
                .replace('\\', "\\\\")
                .replace('"', "\\\""),
            c.usage.mask.lockdep_chars(),
            c.source.describe()
        );
        let _ = writeln!(
            out,
            "  c{} [label=\"{label}\", fillcolor={}];",
            c.id.0,
            colour(engine, c.id)
        );
    }
    for (from, to, dep, count) in engine.dependencies() {
        let style = if dep.read() { "dashed" } else { "solid" };
        let (label, emphasis) = match alerts.reported(from, to) {
            Some(true) => (count.to_string(), ", color=red, penwidth=2"),
            Some(false) => (
                format!("{count}, suppressed"),
                ", color=gray, fontcolor=gray",
            ),
            None => (count.to_string(), ""),
        };
        let _ = writeln!(
            out,
            "  c{} -> c{} [label={}, style={style}{emphasis}];",
            from.0,
            to.0,
            quote(&label)
        );
    }
    out.push_str("}\n");
    out
}
