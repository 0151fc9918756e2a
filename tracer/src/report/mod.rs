//! Turns the engine's findings into what people and tools read: lockdep-shaped text
//! ([`text`]), JSON ([`json`]) and the dependency graph as Graphviz DOT or JSON ([`graph`]).
//! The helpers here name classes, usage and stacks the same way in all of them;
//! [`printable`] escapes what the traced world named before a person reads it; [`suppress`]
//! decides which alerts a suppression file leaves out, and [`printer`] prints the rest as they
//! are found; [`contention`] says how contended each alert's locks were.

pub mod contention;
pub mod graph;
pub mod json;
mod printable;
pub mod printer;
pub mod suppress;
pub mod text;

pub use printable::printable;

use crate::engine::{ClassId, Engine, TaskRef};
use crate::merge::Origin;
use crate::symbols::{StackKey, Symbols};

/// Where reports find names: one recording's [`Symbols`] (a live session, one file), or the
/// symbols of several recordings with where each came from (`crate::merge`). Addresses,
/// pids and stacks mean something only in their own recording, so every lookup says which.
pub trait Sources {
    /// The symbols of `recording`.
    fn symbols(&self, recording: u16) -> &Symbols;
    /// Where `recording` came from, when reports name recordings (several were read); `None`
    /// for a single one, whose reports stay as they always were.
    fn origin(&self, recording: u16) -> Option<&Origin>;
}

impl Sources for Symbols {
    fn symbols(&self, _: u16) -> &Symbols {
        self
    }

    fn origin(&self, _: u16) -> Option<&Origin> {
        None
    }
}

/// What a report says about an alert beyond the engine's findings.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlertNotes<'a> {
    /// The suppression rule that matched it, when it is printed anyway (`--show-suppressed`).
    pub suppressed_by: Option<&'a suppress::Rule>,
    /// How contended its locks were, when the caller knows (live: so far; replayed: over the
    /// whole session).
    pub contention: Option<&'a contention::Contention>,
}

/// A class's name from the symbols known now (those of the recording that first showed it).
pub fn class_name(engine: &Engine, symbols: &dyn Sources, class: ClassId) -> String {
    let class = engine.class(class);
    class.name(symbols.symbols(class.recording))
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

/// A user or kernel call site of `task`: user sites are looked up per process, both in the
/// task's recording.
pub fn call_site(symbols: &dyn Sources, task: &TaskRef, addr: u64, user: bool) -> String {
    let symbols = symbols.symbols(task.recording);
    if user && let Some(frame) = symbols.user_functions.get(&(task.pid, addr)) {
        return frame.to_string();
    }
    code_address(symbols, addr)
}

/// The frames of a stack of `recording` as text, or `None` when it was not recorded.
pub fn stack_frames(
    symbols: &dyn Sources,
    recording: u16,
    stack: Option<StackKey>,
) -> Option<Vec<String>> {
    let frames = symbols.symbols(recording).stack(stack?)?;
    Some(frames.iter().map(ToString::to_string).collect())
}

/// A small kernel world for the report modules' tests: named locks and functions, lock event
/// streams through `crate::model`, and the engine's alerts on them.
#[cfg(test)]
pub(crate) mod testing {
    use tracer_common::{Event, EventKind, ExecContext, IrqState, LockKind};

    use crate::{
        engine::{Alert, Engine},
        fact::FactRecord,
        model::KernelModel,
        symbols::{KernelSymbols, Symbols},
        tracefile::ContentionSnapshot,
    };

    /// Static locks, named `alpha_lock`, `beta_lock`, `gamma_lock`.
    pub const ALPHA: u64 = 0xffff_ffff_8260_0000;
    pub const BETA: u64 = 0xffff_ffff_8260_0100;
    pub const GAMMA: u64 = 0xffff_ffff_8260_0200;
    /// `do_work`, the function every lock is taken in.
    pub const DO_WORK: u64 = 0xffff_ffff_8100_0000;

    /// The names of the locks and of `do_work`.
    pub fn symbols() -> Symbols {
        Symbols {
            kernel: KernelSymbols::parse(
                "ffffffff81000000 T do_work\nffffffff81001000 T other_work\n\
                 ffffffff82600000 d alpha_lock\nffffffff82600100 d beta_lock\n\
                 ffffffff82600200 d gamma_lock\n",
            ),
            ..Symbols::default()
        }
    }

    /// A spinlock event of task `tid` on `addr`, from `do_work`, at `ns`.
    pub fn event(kind: EventKind, tid: u32, addr: u64, ns: u64) -> Event {
        let mut ev = Event::zeroed();
        ev.kind = kind as u32;
        ev.lock_kind = LockKind::Spin as u32;
        ev.lock_addr = addr;
        ev.caller = DO_WORK + 0x10;
        ev.pid = tid;
        ev.tid = tid;
        ev.irqs = IrqState::Enabled as u32;
        ev.context = ExecContext::Task as u32;
        ev.timestamp_ns = ns;
        ev.comm[..4].copy_from_slice(b"test");
        ev
    }

    /// Task `i + 1` takes the locks of `orders[i]` in order, then releases them.
    pub fn nested(orders: &[&[u64]]) -> Vec<Event> {
        let mut events = Vec::new();
        for (i, order) in orders.iter().enumerate() {
            let tid = i as u32 + 1;
            for &lock in *order {
                events.push(event(EventKind::LockAcquire, tid, lock, 0));
            }
            for &lock in order.iter().rev() {
                events.push(event(EventKind::LockRelease, tid, lock, 0));
            }
        }
        events
    }

    /// Task 9 waits `ns` for `lock` `times` times (each wait ends in the acquisition).
    pub fn waits(lock: u64, times: u64, ns: u64) -> Vec<Event> {
        let mut events = Vec::new();
        for i in 0..times {
            let start = 1_000_000 * (i + 1);
            for (kind, at) in [
                (EventKind::ContentionBegin, start),
                (EventKind::ContentionEnd, start + ns),
                (EventKind::LockAcquire, start + ns),
                (EventKind::LockRelease, start + ns),
            ] {
                events.push(event(kind, 9, lock, at));
            }
        }
        events
    }

    /// The contention figures the programs would have summed over `events`.
    pub fn contention_of(events: &[Event]) -> ContentionSnapshot {
        let mut model = KernelModel::default();
        let mut facts = Vec::new();
        for ev in events {
            model.process(ev, &mut facts);
        }
        ContentionSnapshot {
            monotonic_ns: 0,
            stats: model.contention_stats(),
        }
    }

    /// The facts of `events`, each changed by `edit`, through the engine: the engine and
    /// every alert, in the order found.
    pub fn alerts(
        events: &[Event],
        symbols: &Symbols,
        mut edit: impl FnMut(&mut FactRecord),
    ) -> (Engine, Vec<Alert>) {
        let mut model = KernelModel::default();
        let mut facts = Vec::new();
        for ev in events {
            model.process(ev, &mut facts);
        }
        let mut engine = Engine::default();
        let mut alerts = Vec::new();
        for fact in &mut facts {
            edit(fact);
            alerts.extend_from_slice(engine.process(fact, symbols));
        }
        (engine, alerts)
    }
}
