//! The dependency graph with each class's usage, as Graphviz DOT (to look at) and as JSON
//! (for other tools; the schema below is relied on):
//!
//! `{"classes":[{"id":N,"name":"...","identified_by":"...","usage":["USED_IN_HARDIRQ",...]}],
//!   "dependencies":[{"from":"<class name>","to":"<class name>","read":bool,"count":N}]}`

use std::fmt::Write;

use serde_json::{Value, json};

use super::{class_name, printable, usage_names};
use crate::engine::{ClassId, Engine, UsageBit};
use crate::symbols::Symbols;

/// The graph as JSON (schema in the module docs).
pub fn to_json(engine: &Engine, symbols: &Symbols) -> Value {
    let classes: Vec<Value> = engine
        .classes()
        .iter()
        .map(|c| {
            json!({
                "id": c.id.0,
                "name": c.name(symbols),
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
/// characters and identification; one edge per dependency, dashed when read-only. Names are
/// made [`printable`] first: the labels end up in front of people.
pub fn to_dot(engine: &Engine, symbols: &Symbols) -> String {
    let mut out = String::from("digraph lockdep {\n  node [shape=box, style=filled];\n");
    for c in engine.classes() {
        let label = format!(
            "{}\\n{{{}}}\\n{}",
            printable(&c.name(symbols))
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
        let _ = writeln!(
            out,
            "  c{} -> c{} [label={}, style={style}];",
            from.0,
            to.0,
            quote(&count.to_string())
        );
    }
    out.push_str("}\n");
    out
}
