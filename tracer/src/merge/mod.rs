//! Several recordings as one: from several hosts, or several runs on one host. Classes are
//! matched across recordings by stable name, never by address (see
//! `crate::engine::class::stable_name`); the merging engine then sees, in one graph,
//! dependencies that no single recording put together.
//!
//! [`sections`] reads a file as the recordings it holds (one, or a merged file's several);
//! [`origin`] says where each came from; [`write`] writes a merged file (`locktrace merge`).
//! Here: which of the merging engine's alerts exist only across recordings
//! ([`only_across`]), how much matched ([`summary`]), and the names reports look up per
//! recording ([`crate::report::Sources`] for [`Replayed`]).

pub mod origin;
pub mod sections;
pub mod write;

use std::collections::BTreeSet;

pub use origin::Origin;
pub use sections::Section;

use crate::{
    engine::{Alert, AlertKind, AtomicProblem, ClassId, Engine, IrqKind},
    replay::{Replay, Replayed},
    report::Sources,
    symbols::Symbols,
};

impl Sources for Replayed {
    fn symbols(&self, recording: u16) -> &Symbols {
        &self.recordings[usize::from(recording)].symbols
    }

    fn origin(&self, recording: u16) -> Option<&Origin> {
        (self.recordings.len() > 1).then(|| &self.recordings[usize::from(recording)].origin)
    }
}

/// The recordings an alert's evidence comes from: the event that fired it, each dependency of
/// its chain, and the usage traces of its usage bits.
pub fn evidence(alert: &Alert, engine: &Engine) -> BTreeSet<u16> {
    let finding = alert.finding();
    let mut recordings = BTreeSet::from([alert.trigger().task.recording]);
    recordings.extend(finding.chain().iter().map(|link| link.first.task.recording));
    for bit in finding.usage().iter().flat_map(|&(a, b)| [a, b]) {
        for &class in alert.classes() {
            if let Some(trace) = engine.class(class).usage.trace(bit) {
                recordings.insert(trace.task.recording);
            }
        }
    }
    recordings
}

/// What makes two alerts one problem across engines: kind, interrupt, misuse and the set of
/// (merged) classes.
type Problem = (
    AlertKind,
    Option<IrqKind>,
    Option<AtomicProblem>,
    BTreeSet<ClassId>,
);

fn problem(alert: &Alert, class: impl Fn(ClassId) -> Option<ClassId>) -> Option<Problem> {
    let classes = alert
        .classes()
        .iter()
        .map(|&c| class(c))
        .collect::<Option<_>>()?;
    let finding = alert.finding();
    Some((
        finding.kind(),
        finding.irq(),
        finding.atomic_problem(),
        classes,
    ))
}

/// The alerts of the merging engine `merged` (`alerts`) that no single recording shows: their
/// evidence comes from two recordings or more, and no recording's own alerts are the same
/// problem (the same kind over the same classes, once matched by name). A recording's own
/// alerts are reported as it alone gives them; these come on top.
pub fn only_across(recordings: &[Replay], merged: &Engine, alerts: &[Alert]) -> Vec<Alert> {
    let mut known = BTreeSet::new();
    for (number, recording) in recordings.iter().enumerate() {
        let to_merged =
            |class: ClassId| merged.class_by_key(number as u16, recording.engine.class(class).key);
        known.extend(
            recording
                .alerts
                .iter()
                .filter_map(|a| problem(a, to_merged)),
        );
    }
    alerts
        .iter()
        .filter(|alert| evidence(alert, merged).len() > 1)
        .filter(|alert| problem(alert, Some).is_none_or(|p| !known.contains(&p)))
        .cloned()
        .collect()
}

/// One line on how a merge matched: `merged 2 recordings (2 hosts): 4 of 6 classes matched
/// by name across recordings; 1 named in one recording only; 1 had no stable name (an
/// address) and was kept per recording`, and when the recordings' kernels differ, which
/// releases they were.
pub fn summary(recordings: &[Replay], merged: &Engine) -> String {
    let stats = merged.match_stats();
    let hosts: BTreeSet<&str> = recordings
        .iter()
        .map(|r| r.header.hostname.as_str())
        .collect();
    let kernels: BTreeSet<&str> = recordings
        .iter()
        .map(|r| r.header.kernel_release.as_str())
        .collect();
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut line = format!(
        "merged {} ({}): {} of {} matched by name across recordings; {} named in one \
         recording only; {} no stable name (an address) and {} kept per recording",
        plural(recordings.len() as u64, "recording", "recordings"),
        plural(hosts.len() as u64, "host", "hosts"),
        stats.matched,
        plural(stats.classes, "class", "classes"),
        stats.named_once,
        plural(stats.unnamed, "had", "had"),
        if stats.unnamed == 1 { "was" } else { "were" },
    );
    if kernels.len() > 1 {
        let list: Vec<&str> = kernels.into_iter().collect();
        line.push_str(&format!(
            "; {} kernel releases ({}): kernel classes matched by name only",
            list.len(),
            list.join(", ")
        ));
    }
    line
}
