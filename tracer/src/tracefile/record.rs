//! What a trace file holds after its header: [`Record`]s, one kind per chunk type, and how the
//! symbol-bearing ones fold into a [`Symbols`].

use tracer_common::Event;

use crate::symbols::kallsyms::KernelSymbol;
use crate::symbols::{Frame, StackKey, Symbols};

/// One unit of a recording, as written by [`super::TraceWriter::write`] and yielded by
/// [`super::TraceReader`]. Each is stored as one chunk (large lists may be split over several
/// chunks of the same kind; tables are additive, so readers just apply them in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A batch of events, in the order they were read from the ring buffer.
    Events(Vec<Event>),
    /// Lost-event counters at one point in time.
    Drops(DropCounts),
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
}

/// Lost-event counters as read at one moment. Counts are cumulative since the session started,
/// so the last `Drops` record in a file holds the totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropCounts {
    /// CLOCK_MONOTONIC nanoseconds at which the counters were read (same clock as
    /// [`Event::timestamp_ns`]).
    pub monotonic_ns: u64,
    /// Counter name and value: the [`tracer_common::DropReason`] names (summed over CPUs)
    /// and user-space losses such as `ring_lost`. A name/value list, so new reasons need no
    /// format change.
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

    /// The sum of all counters.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&(_, value)| value).sum()
    }
}

/// The trailer written by [`super::TraceWriter::finish`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EndSummary {
    /// Events in the file; the session passes [`super::TraceWriter::events_written`].
    pub events_written: u64,
    /// How long the recording ran, in nanoseconds.
    pub duration_ns: u64,
}

/// Folds a symbol-bearing record (kernel symbols, stacks, slab caches, user locks, user
/// functions) into `symbols`. Returns true if the record was one of those, false for events,
/// drops and the end marker, which it leaves alone.
pub fn apply_to_symbols(record: &Record, symbols: &mut Symbols) -> bool {
    match record {
        Record::KernelSymbols(list) => symbols.kernel.extend(list.iter().cloned()),
        Record::Stacks(list) => symbols.stacks.extend(list.iter().cloned()),
        Record::SlabCaches(list) => symbols.slab_caches.extend(list.iter().cloned()),
        Record::UserLocks(list) => symbols.user_locks.extend(list.iter().cloned()),
        Record::UserFunctions(list) => symbols.user_functions.extend(list.iter().cloned()),
        Record::Events(_) | Record::Drops(_) | Record::End(_) => return false,
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
        assert!(!apply_to_symbols(&Record::Events(vec![]), &mut symbols));
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
    fn drop_counts_lookup_and_total() {
        let drops = DropCounts {
            monotonic_ns: 5,
            counts: vec![("ring_full".into(), 3), ("ring_lost".into(), 4)],
        };
        assert_eq!(drops.get("ring_lost"), 4);
        assert_eq!(drops.get("stack_failed"), 0);
        assert_eq!(drops.total(), 7);
    }
}
