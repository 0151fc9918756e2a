//! What a trace file holds after its header: [`Record`]s, one kind per chunk type, and how the
//! symbol-bearing ones fold into a [`Symbols`].

use tracer_common::{ContentionStat, Counter};

use crate::fact::FactRecord;
use crate::symbols::kallsyms::KernelSymbol;
use crate::symbols::{Frame, StackKey, Symbols, UserObject};

/// One unit of a recording, as written by [`super::TraceWriter::write`] and yielded by
/// [`super::TraceReader`]. Each is stored as one chunk (large lists may be split over several
/// chunks of the same kind; tables are additive, so readers just apply them in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A batch of facts, in the order they were read from the ring buffer.
    Facts(Vec<FactRecord>),
    /// The programs' counters (losses and held-state corrections) at one point in time.
    Drops(DropCounts),
    /// Contention figures by class at one point in time (cumulative).
    Contention(ContentionSnapshot),
    /// The static per-CPU variables (offset, size, name), to name per-CPU lock classes.
    PercpuVars(Vec<(u64, u64, String)>),
    /// Kernel symbols needed to name addresses in the file (written as new addresses appear).
    KernelSymbols(Vec<KernelSymbol>),
    /// Symbolized stacks (written as new stack ids appear).
    Stacks(Vec<(StackKey, Vec<Frame>)>),
    /// Slab cache names by `struct kmem_cache *`.
    SlabCaches(Vec<(u64, String)>),
    /// User-space lock names by (pid, address).
    UserLocks(Vec<((u32, u64), String)>),
    /// User-space code locations by (pid, address).
    UserFunctions(Vec<((u32, u64), Frame)>),
    /// The trailer of a cleanly finished recording.
    End(EndSummary),
    /// The binary (path and build id) each named user-space lock is in, by (pid, address):
    /// what makes a user-space lock's name comparable across recordings.
    UserLockObjects(Vec<((u32, u64), UserObject)>),
    /// In a merged file (`locktrace merge`): the records up to the next `Recording` are those
    /// of the recording this one describes.
    Recording(RecordingStart),
}

/// Where a recording in a merged file came from, and what of it was readable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordingStart {
    /// The file it was merged from, as named on the merge's command line.
    pub file: String,
    /// The damage that stopped the merge from reading that file, if any (everything before
    /// it was merged).
    pub damage: Option<String>,
    /// Its own header.
    pub header: super::Header,
}

/// The programs' counters as read at one moment: what was lost, what the held stacks had to
/// correct, how many lock operations were followed. Counts are cumulative since the session
/// started, so the last `Drops` record in a file holds the totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropCounts {
    /// CLOCK_MONOTONIC nanoseconds at which the counters were read (same clock as
    /// [`FactRecord::timestamp_ns`]).
    pub monotonic_ns: u64,
    /// Counter name and value: the [`tracer_common::Counter`] names (summed over CPUs), and
    /// what user space counts itself, such as `recursion_misses` and `malformed_records`. A
    /// name/value list, so new counters need no format change.
    pub counts: Vec<(String, u64)>,
}

impl DropCounts {
    /// The value of counter `name`, or 0 when it is absent.
    pub fn get(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |&(_, value)| value)
    }

    /// The sum of the counters that count losses: the programs' (see
    /// [`Counter::is_loss`]), the kernel's recursion misses for our programs and records this
    /// side could not decode.
    pub fn losses(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(name, _)| DropCounts::is_loss(name))
            .map(|&(_, value)| value)
            .sum()
    }

    /// The loss counters that are not zero, by name.
    pub fn nonzero_losses(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts
            .iter()
            .filter(|(name, value)| *value > 0 && DropCounts::is_loss(name))
            .map(|(name, value)| (name.as_str(), *value))
    }

    /// True for a counter name that counts losses: the programs' (see
    /// [`Counter::is_loss`]), the kernel's recursion misses for our programs and records this
    /// side could not decode.
    pub fn is_loss(name: &str) -> bool {
        matches!(name, "recursion_misses" | "malformed_records")
            || Counter::ALL
                .iter()
                .any(|counter| counter.is_loss() && counter.name() == name)
    }
}

/// Contention figures by class, as read at one moment (cumulative since the start).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentionSnapshot {
    /// CLOCK_MONOTONIC nanoseconds at which they were read.
    pub monotonic_ns: u64,
    /// One entry per class that was waited for.
    pub stats: Vec<ContentionStat>,
}

/// The trailer written by [`super::TraceWriter::finish`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EndSummary {
    /// Facts in the file; the session passes [`super::TraceWriter::facts_written`].
    pub facts_written: u64,
    /// How long the recording ran, in nanoseconds.
    pub duration_ns: u64,
}

/// Folds a symbol-bearing record (kernel symbols, stacks, slab caches, user locks, user
/// functions, per-CPU variables) into `symbols`. Returns true if the record was one of those,
/// false for facts, counters, contention and the end marker, which it leaves alone.
pub fn apply_to_symbols(record: &Record, symbols: &mut Symbols) -> bool {
    match record {
        Record::KernelSymbols(list) => symbols.kernel.extend(list.iter().cloned()),
        Record::Stacks(list) => symbols.stacks.extend(list.iter().cloned()),
        Record::SlabCaches(list) => symbols.slab_caches.extend(list.iter().cloned()),
        Record::UserLocks(list) => symbols.user_locks.extend(list.iter().cloned()),
        Record::UserFunctions(list) => symbols.user_functions.extend(list.iter().cloned()),
        Record::UserLockObjects(list) => symbols.user_lock_objects.extend(list.iter().cloned()),
        Record::PercpuVars(list) => {
            symbols.percpu.extend(list.iter().cloned());
            symbols.percpu.sort_by_key(|(offset, _, _)| *offset);
        }
        Record::Facts(_)
        | Record::Drops(_)
        | Record::Contention(_)
        | Record::End(_)
        | Record::Recording(_) => {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_records_fold_into_symbols_and_others_do_not() {
        let mut symbols = Symbols::default();
        let sym = KernelSymbol {
            addr: 0xffff_ffff_8100_0000,
            kind: 'T',
            name: "_stext".into(),
            module: None,
        };
        assert!(apply_to_symbols(
            &Record::KernelSymbols(vec![sym]),
            &mut symbols
        ));
        assert!(apply_to_symbols(
            &Record::Stacks(vec![(StackKey::kernel(7), vec![Frame::unresolved(1)])]),
            &mut symbols
        ));
        assert!(apply_to_symbols(
            &Record::SlabCaches(vec![(0x10, "kmalloc-64".into())]),
            &mut symbols
        ));
        assert!(apply_to_symbols(
            &Record::UserLocks(vec![((42, 0x20), "big_lock".into())]),
            &mut symbols
        ));
        assert!(apply_to_symbols(
            &Record::UserFunctions(vec![((42, 0x30), Frame::unresolved(0x30))]),
            &mut symbols
        ));
        assert!(!apply_to_symbols(&Record::Facts(vec![]), &mut symbols));
        assert!(apply_to_symbols(
            &Record::PercpuVars(vec![(0x100, 8, "runqueues".into())]),
            &mut symbols
        ));
        assert!(!apply_to_symbols(
            &Record::End(EndSummary::default()),
            &mut symbols
        ));

        assert_eq!(
            symbols.kernel.function(0xffff_ffff_8100_0010).unwrap().1,
            0x10
        );
        assert_eq!(symbols.stack(StackKey::kernel(7)).unwrap().len(), 1);
        assert_eq!(symbols.slab_caches[&0x10], "kmalloc-64");
        assert_eq!(symbols.user_locks[&(42, 0x20)], "big_lock");
        assert_eq!(symbols.user_functions[&(42, 0x30)].addr, 0x30);
    }

    #[test]
    fn counts_lookup_and_losses() {
        let drops = DropCounts {
            monotonic_ns: 5,
            counts: vec![
                ("ring_full".into(), 3),
                ("stale_held".into(), 4),
                ("recursion_misses".into(), 2),
                ("acquisitions".into(), 100),
            ],
        };
        assert_eq!(drops.get("stale_held"), 4);
        assert_eq!(drops.get("stack_failed"), 0);
        assert_eq!(drops.losses(), 5, "ring_full and recursion_misses only");
        assert_eq!(
            drops.nonzero_losses().collect::<Vec<_>>(),
            [("ring_full", 3), ("recursion_misses", 2)]
        );
    }
}
