//! Turns the engine's findings into what people and tools read: lockdep-shaped text
//! ([`text`]), JSON ([`json`]) and the dependency graph as Graphviz DOT or JSON ([`graph`]).
//! The helpers here name classes, usage and stacks the same way in all of them;
//! [`printable`] escapes what the traced world named before a person reads it.

pub mod graph;
pub mod json;
mod printable;
pub mod text;

pub use printable::printable;

use crate::engine::{ClassId, Engine};
use crate::symbols::{StackKey, Symbols};

/// A class's name from the symbols known now.
pub fn class_name(engine: &Engine, symbols: &Symbols, class: ClassId) -> String {
    engine.class(class).name(symbols)
}

/// The usage bits of a class, by name (`USED_IN_HARDIRQ`...).
pub fn usage_names(engine: &Engine, class: ClassId) -> Vec<&'static str> {
    engine
        .class(class)
        .usage
        .mask
        .bits()
        .map(|b| b.name())
        .collect()
}

/// A code address as `function+0xoff`, or hex when no symbol covers it.
pub fn code_address(symbols: &Symbols, addr: u64) -> String {
    match symbols.kernel.function(addr) {
        Some((sym, off)) => format!("{}+{off:#x}", sym.name),
        None => format!("{addr:#x}"),
    }
}

/// A user or kernel call site: user sites are looked up per process.
pub fn call_site(symbols: &Symbols, pid: u32, addr: u64, user: bool) -> String {
    if user && let Some(frame) = symbols.user_functions.get(&(pid, addr)) {
        return frame.to_string();
    }
    code_address(symbols, addr)
}

/// The frames of a stack as text, or `None` when it was not recorded.
pub fn stack_frames(symbols: &Symbols, stack: Option<StackKey>) -> Option<Vec<String>> {
    let frames = symbols.stack(stack?)?;
    Some(frames.iter().map(ToString::to_string).collect())
}
