//! A recording's raw events, one line each, like `perf script`: what to read when a report
//! needs explaining (which release never came, which context an acquisition ran in).
//! Thread names, symbols and file names are made [`printable`] on the way out.

use std::{io::Write, path::Path};

use tracer_common::{Event, EventKind, ExecContext, IrqState, LockKind, flags};

use crate::{
    replay::ReplayError,
    report::{call_site, printable, stack_frames},
    symbols::{StackKey, Symbols},
    tracefile::{Record, TraceError, TraceReader, apply_to_symbols},
};

/// What printing a recording's events went through.
pub struct ScriptSummary {
    /// Events printed.
    pub events: u64,
    /// Where and why reading stopped early, if it did (everything before was printed).
    pub damage: Option<TraceError>,
}

/// Prints every event of the recording at `path` to `out`; with `stacks`, each event's
/// kernel and user stack follows it, one frame per line.
pub fn write_events(
    path: &Path,
    stacks: bool,
    out: &mut impl Write,
) -> Result<ScriptSummary, ReplayError> {
    let mut reader = TraceReader::open(path)?;
    let mut symbols = Symbols::default();
    let mut events = 0;
    for record in reader.by_ref() {
        let Ok(record) = record else { break };
        if apply_to_symbols(&record, &mut symbols) {
            continue;
        }
        let Record::Events(batch) = record else {
            continue;
        };
        for event in &batch {
            writeln!(out, "{}", event_line(event, &symbols)).map_err(ReplayError::Output)?;
            if stacks {
                write_stacks(event, &symbols, out).map_err(ReplayError::Output)?;
            }
        }
        events += batch.len() as u64;
    }
    Ok(ScriptSummary {
        events,
        damage: reader.damage().cloned(),
    })
}

/// `comm pid/tid [cpu] seconds: kind lock-kind lock at caller context irqs flags`.
pub fn event_line(ev: &Event, symbols: &Symbols) -> String {
    let comm = String::from_utf8_lossy(&ev.comm);
    let comm = printable(comm.trim_end_matches('\0'));
    let kind = EventKind::from_u32(ev.kind).map_or("unknown", EventKind::name);
    let mut line = format!(
        "{comm:>16} {:>7}/{:<7} [{:03}] {}.{:09}: {kind:<16}",
        ev.pid,
        ev.tid,
        ev.cpu,
        ev.timestamp_ns / 1_000_000_000,
        ev.timestamp_ns % 1_000_000_000
    );
    let lock_kind = LockKind::from_u32(ev.lock_kind).filter(|&k| k != LockKind::None);
    let user = lock_kind.is_some_and(LockKind::is_user);
    if let Some(lock_kind) = lock_kind {
        let lock = lock_name(ev, user, symbols);
        line += &format!(" {:<10} {}", lock_kind.name(), printable(&lock));
    } else if ev.lock_addr != 0 {
        line += &format!(" {}", printable(&lock_name(ev, false, symbols)));
    }
    if lock_kind.is_none() && (ev.arg != 0 || ev.arg2 != 0) {
        line += &format!(" arg={:#x} arg2={:#x}", ev.arg, ev.arg2);
    }
    if ev.caller != 0 {
        let site = call_site(symbols, ev.pid, ev.caller, user);
        line += &format!(" at {}", printable(&site));
    }
    line += &format!(
        " {} irqs-{}",
        ExecContext::from_u32(ev.context).name(),
        match IrqState::from_u32(ev.irqs) {
            IrqState::Enabled => "on",
            IrqState::Disabled => "off",
            IrqState::Unknown => "unknown",
        }
    );
    for (bit, name) in FLAG_NAMES {
        if ev.flags & bit != 0 {
            line += " ";
            line += name;
        }
    }
    if ev.flags & flags::PREEMPT_COUNT_VALID != 0 {
        line += &format!(" preempt_count={:#x}", ev.preempt_count);
    }
    line
}

/// Flags worth showing by name (PREEMPT_COUNT_VALID shows as the count itself).
const FLAG_NAMES: [(u32, &str); 7] = [
    (flags::TRYLOCK, "trylock"),
    (flags::IRQ_VARIANT, "irq-variant"),
    (flags::BH_VARIANT, "bh-variant"),
    (flags::ATOMIC, "atomic"),
    (flags::FROM_TRAMPOLINE, "trampoline"),
    (flags::SOFTIRQS_DISABLED, "bh-off"),
    (flags::AFTER_LOSS, "after-loss"),
];

/// The lock as a person reads it: its symbol, its slab cache, or its address.
fn lock_name(ev: &Event, user: bool, symbols: &Symbols) -> String {
    let addr = ev.lock_addr;
    if user {
        return match symbols.user_locks.get(&(ev.pid, addr)) {
            Some(name) => format!("{name}@{addr:#x}"),
            None => format!("{addr:#x}"),
        };
    }
    if let Some(name) = symbols.kernel.data_name(addr) {
        return name;
    }
    match symbols.slab_caches.get(&ev.slab_cache) {
        Some(cache) => format!("&{cache}@{addr:#x}"),
        None => format!("{addr:#x}"),
    }
}

fn write_stacks(ev: &Event, symbols: &Symbols, out: &mut impl Write) -> std::io::Result<()> {
    let keys = [
        (ev.kernel_stack_id >= 0).then(|| StackKey::kernel(ev.kernel_stack_id)),
        (ev.user_stack_id >= 0).then(|| StackKey::user(ev.pid, ev.user_stack_id)),
    ];
    for frames in keys
        .into_iter()
        .filter_map(|key| stack_frames(symbols, key))
    {
        for frame in frames {
            writeln!(out, "\t{}", printable(&frame))?;
        }
    }
    Ok(())
}
