//! A recording's facts, one line each, like `perf script`: what to read when a report needs
//! explaining (which locks were held, which context an acquisition ran in). Thread names,
//! symbols and file names are made [`printable`] on the way out.

use std::{io::Write, path::Path};

use tracer_common::{ClassTag, HeldLock, IrqState, LockKind, flags};

use crate::{
    engine::TaskRef,
    fact::FactRecord,
    merge::Origin,
    replay::ReplayError,
    report::{call_site, printable, stack_frames},
    symbols::Symbols,
    tracefile::{Record, TraceError, TraceReader, apply_to_symbols},
};

/// What printing a recording's facts went through.
pub struct ScriptSummary {
    /// Facts printed.
    pub facts: u64,
    /// Where and why reading stopped early, if it did (everything before was printed).
    pub damage: Option<TraceError>,
}

/// Prints every fact of the recording at `path` to `out`; with `stacks`, each fact's stack
/// follows it, one frame per line, then the locks it held, each with where and when it was
/// taken.
pub fn write_facts(
    path: &Path,
    stacks: bool,
    out: &mut impl Write,
) -> Result<ScriptSummary, ReplayError> {
    let mut reader = TraceReader::open(path)?;
    let mut symbols = Symbols::default();
    let mut facts = 0;
    for record in reader.by_ref() {
        let Ok(record) = record else { break };
        if apply_to_symbols(&record, &mut symbols) {
            continue;
        }
        if let Record::Recording(start) = &record {
            // A merged file: the next recording's addresses are named by its own symbols.
            symbols = Symbols::default();
            let origin = Origin::of(&start.file, &start.header).describe();
            writeln!(out, "# recording {}", printable(&origin)).map_err(ReplayError::Output)?;
            continue;
        }
        let Record::Facts(batch) = record else {
            continue;
        };
        for fact in &batch {
            writeln!(out, "{}", fact_line(fact, &symbols)).map_err(ReplayError::Output)?;
            if stacks {
                for frame in stack_frames(&symbols, 0, fact.stack).unwrap_or_default() {
                    writeln!(out, "\t{}", printable(&frame)).map_err(ReplayError::Output)?;
                }
                for (i, lock) in fact.held.iter().enumerate() {
                    let site = call_site(
                        &symbols,
                        &TaskRef::of(fact, 0),
                        lock.site,
                        lock.lock_kind().is_user(),
                    );
                    writeln!(
                        out,
                        // Held entries are stamped with the tick-resolution clock.
                        "\t#{i}: {} at {} taken about {} ms before{}",
                        printable(&lock_name(lock, &symbols)),
                        printable(&site),
                        fact.timestamp_ns.saturating_sub(lock.acquired_ns) / 1_000_000,
                        if lock.is_stale(fact.timestamp_ns) {
                            " (stale)"
                        } else {
                            ""
                        }
                    )
                    .map_err(ReplayError::Output)?;
                }
            }
        }
        facts += batch.len() as u64;
    }
    Ok(ScriptSummary {
        facts,
        damage: reader.damage().cloned(),
    })
}

/// `comm pid/tid [cpu] seconds: what lock-kind lock at site context irqs flags | held: ...`.
pub fn fact_line(fact: &FactRecord, symbols: &Symbols) -> String {
    let comm = String::from_utf8_lossy(&fact.comm);
    let comm = printable(comm.trim_end_matches('\0'));
    let mut line = format!(
        "{comm:>16} {:>7}/{:<7} [{:03}] {}.{:09}: {:<12}",
        fact.pid,
        fact.tid,
        fact.cpu,
        fact.timestamp_ns / 1_000_000_000,
        fact.timestamp_ns % 1_000_000_000,
        fact.label()
    );
    let kind = fact.lock_kind();
    if kind != LockKind::None {
        let lock = lock_name(&fact.lock, symbols);
        line += &format!(" {:<10} {}", kind.name(), printable(&lock));
    } else if fact.arg != 0 || fact.arg2 != 0 {
        line += &format!(" arg={:#x} arg2={:#x}", fact.arg, fact.arg2);
    }
    if fact.lock.site != 0 {
        let site = call_site(
            symbols,
            &TaskRef::of(fact, 0),
            fact.lock.site,
            kind.is_user(),
        );
        line += &format!(" at {}", printable(&site));
    }
    line += &format!(
        " {} irqs-{}",
        fact.context.name(),
        match fact.irqs {
            IrqState::Enabled => "on",
            IrqState::Disabled => "off",
            IrqState::Unknown => "unknown",
        }
    );
    let variant = fact.lock.variant;
    for (bit, name) in VARIANT_NAMES {
        if variant & bit != 0 {
            line += " ";
            line += name;
        }
    }
    for (bit, name) in FLAG_NAMES {
        if fact.flags & bit != 0 {
            line += " ";
            line += name;
        }
    }
    if fact.has(flags::PREEMPT_COUNT_VALID) {
        line += &format!(" preempt_count={:#x}", fact.preempt_count);
    }
    if !fact.held.is_empty() {
        let held: Vec<String> = fact
            .held
            .iter()
            .map(|l| printable(&lock_name(l, symbols)).into_owned())
            .collect();
        line += &format!(" | held: {}", held.join(", "));
    }
    line
}

/// Lock variant bits worth showing by name.
const VARIANT_NAMES: [(u32, &str); 3] = [
    (flags::TRYLOCK, "trylock"),
    (flags::IRQ_VARIANT, "irq-variant"),
    (flags::BH_VARIANT, "bh-variant"),
];

/// Fact flags worth showing by name (PREEMPT_COUNT_VALID shows as the count itself).
const FLAG_NAMES: [(u32, &str); 3] = [
    (flags::ATOMIC, "atomic"),
    (flags::FROM_TRAMPOLINE, "trampoline"),
    (flags::SOFTIRQS_DISABLED, "bh-off"),
];

/// The lock as a person reads it: its symbol, per-CPU variable, slab cache, or address.
fn lock_name(lock: &HeldLock, symbols: &Symbols) -> String {
    let addr = lock.addr;
    match lock.class.class_tag() {
        Some(ClassTag::User) => match symbols.user_locks.get(&(lock.class.b as u32, addr)) {
            Some(name) => format!("{name}@{addr:#x}"),
            None => format!("{addr:#x}"),
        },
        Some(ClassTag::Static) => symbols
            .kernel
            .data_name(addr)
            .unwrap_or_else(|| format!("{addr:#x}")),
        Some(ClassTag::PerCpu) => match symbols.percpu_name(lock.class.offset) {
            Some(name) => format!("{name}@{addr:#x}"),
            None => format!("{addr:#x}"),
        },
        Some(ClassTag::SlabField | ClassTag::Slab) => {
            match symbols.slab_caches.get(&lock.class.a) {
                Some(cache) => format!("&{cache}@{addr:#x}"),
                None => format!("{addr:#x}"),
            }
        }
        _ => format!("{addr:#x}"),
    }
}
