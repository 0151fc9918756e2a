//! [`Figures`] in the Prometheus text format (version 0.0.4), through prometheus-client's
//! encoder: one [`Collector`] over a copy of the figures, so that the names, help lines,
//! types and label escaping are the crate's, and the values are read once a second rather
//! than kept in atomics on the session's path.
//!
//! Every counter of [`DropCounts`] lands in exactly one family, grouped as the session's
//! summary line groups them: lock operations, losses, held-stack corrections, and what was
//! skipped on purpose.

use std::time::UNIX_EPOCH;

use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric, prometheus_text,
    },
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::{Figures, process::ProcessStats};
use crate::{engine::AlertKind, tracefile::DropCounts};

/// The `Content-Type` of what [`render`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The held-stack counters: corrections the held stacks made, not losses of the traced world
/// (the session's summary calls them "held state").
const HELD_STATE: [&str; 4] = [
    "stale_held",
    "held_overflow",
    "unmatched_release",
    "handoff",
];

/// Which family a [`DropCounts`] counter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    /// `locktrace_lock_operations_total{operation}`.
    LockOps,
    /// `locktrace_losses_total{reason}`.
    Loss,
    /// `locktrace_held_corrections_total{reason}`.
    HeldState,
    /// `locktrace_skipped_total{reason}`.
    Skipped,
}

fn group_of(name: &str) -> Group {
    match name {
        "acquisitions" | "releases" => Group::LockOps,
        _ if DropCounts::is_loss(name) => Group::Loss,
        _ if HELD_STATE.contains(&name) => Group::HeldState,
        _ => Group::Skipped,
    }
}

/// The counters of `group`, by name.
fn members(drops: &DropCounts, group: Group) -> impl Iterator<Item = (&str, u64)> {
    drops
        .counts
        .iter()
        .filter(move |(name, _)| group_of(name) == group)
        .map(|(name, n)| (name.as_str(), *n))
}

/// The figures and this process's resource use (when `/proc` told), in the Prometheus text
/// format.
pub fn render(figures: &Figures, process: Option<ProcessStats>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        figures: figures.clone(),
        process,
    }));
    let mut text = String::new();
    // Writing to a String cannot fail, and every name and label here is valid.
    prometheus_text::encode(&mut text, &registry).expect("encoding metrics into a String");
    text
}

/// One scrape's values, handed to the registry.
#[derive(Debug)]
struct Scrape {
    figures: Figures,
    process: Option<ProcessStats>,
}

impl Collector for Scrape {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let f = &self.figures;
        let info = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("kernel", f.kernel_release.as_str()),
        ];
        let mut metric = out.encode_descriptor(
            "locktrace_info",
            "locktrace's version and the traced kernel's release (always 1).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1u64).encode(metric.encode_family(&info)?)?;
        if let Some(started) = f.started {
            let secs = started
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            gauge(
                &mut out,
                "locktrace_session_start_time_seconds",
                "When tracing started (every probe attached), in seconds since the Unix epoch; absent while the probes load.",
                secs,
            )?;
        }
        gauge(
            &mut out,
            "locktrace_probes_attached",
            "Probes attached (0 while they load).",
            f.probes_attached,
        )?;

        let operations = members(&f.drops, Group::LockOps).map(|(name, n)| match name {
            "acquisitions" => ("acquire", n),
            _ => ("release", n),
        });
        counters(
            &mut out,
            "locktrace_lock_operations",
            "Lock acquisitions and releases the programs followed.",
            "operation",
            operations,
        )?;
        counters(
            &mut out,
            "locktrace_facts",
            "Facts (what was new: a chain, usage bits, a recursive acquisition, a call) read from the ring buffer, by kind.",
            "kind",
            f.facts.iter().map(|(kind, n)| (*kind, *n)),
        )?;
        counters(
            &mut out,
            "locktrace_losses",
            "Events of the traced world that could not be followed, by reason (ring_full: a fact waits for its next occurrence).",
            "reason",
            members(&f.drops, Group::Loss),
        )?;
        counters(
            &mut out,
            "locktrace_held_corrections",
            "Corrections of the held-lock stacks, by reason (held_overflow: locks past a full stack, not followed).",
            "reason",
            members(&f.drops, Group::HeldState),
        )?;
        counters(
            &mut out,
            "locktrace_skipped",
            "Events skipped on purpose, nothing lost: nested (our own helpers' locks), repeated_calls (identical to one sent), release_copy_misses (another release copy followed it).",
            "reason",
            members(&f.drops, Group::Skipped),
        )?;

        if let Some(engine) = &f.engine {
            gauge(
                &mut out,
                "locktrace_classes",
                "Lock classes the engine knows.",
                engine.stats.classes,
            )?;
            gauge(
                &mut out,
                "locktrace_dependencies",
                "Dependencies (edges of the lock-dependency graph).",
                engine.stats.dependencies,
            )?;
            gauge(
                &mut out,
                "locktrace_chains",
                "Lock chains validated.",
                engine.stats.chains,
            )?;
            let by_kind = |counts: &std::collections::BTreeMap<AlertKind, u64>| {
                AlertKind::ALL.map(|kind| (kind.name(), counts.get(&kind).copied().unwrap_or(0)))
            };
            counters(
                &mut out,
                "locktrace_alerts",
                "Alerts reported, by kind.",
                "kind",
                by_kind(&engine.alerts),
            )?;
            counters(
                &mut out,
                "locktrace_suppressed_alerts",
                "Alerts found but suppressed, by kind.",
                "kind",
                by_kind(&engine.suppressed),
            )?;
        }

        if let Some(process) = self.process {
            counter(
                &mut out,
                "process_cpu_seconds",
                "User and system CPU time of the tracer, in seconds.",
                process.cpu_seconds,
            )?;
            gauge(
                &mut out,
                "process_resident_memory_bytes",
                "Resident memory of the tracer, in bytes.",
                process.resident_bytes,
            )?;
        }
        Ok(())
    }
}

/// One gauge without labels.
fn gauge(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> std::fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(out.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// One counter without labels; the encoder appends `_total` to `name`.
fn counter(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> std::fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(out.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// A counter family with one label; the encoder appends `_total` to `name`.
fn counters<'a>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut metric = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        time::{Duration, UNIX_EPOCH},
    };

    use tracer_common::Counter;

    use super::*;
    use crate::{engine::EngineStats, metrics::EngineFigures};

    /// The names `session::run` gives the counters it reads.
    fn session_counter_names() -> Vec<&'static str> {
        Counter::ALL
            .iter()
            .map(|counter| counter.name())
            .chain([
                "recursion_misses",
                "release_copy_misses",
                "malformed_records",
            ])
            .collect()
    }

    fn figures() -> Figures {
        Figures {
            kernel_release: "6.12.0-\"odd\"".to_string(),
            started: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)),
            probes_attached: 9,
            facts: BTreeMap::from([("chain", 3), ("usage", 2)]),
            drops: DropCounts {
                monotonic_ns: 0,
                counts: vec![
                    ("acquisitions".to_string(), 120),
                    ("releases".to_string(), 118),
                    ("ring_full".to_string(), 4),
                    ("held_overflow".to_string(), 5),
                    ("nested".to_string(), 6),
                ],
            },
            engine: Some(EngineFigures {
                stats: EngineStats {
                    classes: 2,
                    dependencies: 2,
                    chains: 2,
                    ..EngineStats::default()
                },
                alerts: BTreeMap::from([(AlertKind::CircularDependency, 1)]),
                suppressed: BTreeMap::from([(AlertKind::AtomicContext, 7)]),
            }),
        }
    }

    /// The sample lines (not comments) of `text`.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn a_session_renders_as_prometheus_text() {
        let process = ProcessStats {
            cpu_seconds: 1.5,
            resident_bytes: 4096,
        };
        let text = render(&figures(), Some(process));
        let info = format!(
            r#"locktrace_info{{version="{}",kernel="6.12.0-\"odd\""}} 1"#,
            env!("CARGO_PKG_VERSION")
        );
        let expected = [
            info.as_str(),
            "locktrace_session_start_time_seconds 1700000000.5",
            "locktrace_probes_attached 9",
            r#"locktrace_lock_operations_total{operation="acquire"} 120"#,
            r#"locktrace_lock_operations_total{operation="release"} 118"#,
            r#"locktrace_facts_total{kind="chain"} 3"#,
            r#"locktrace_facts_total{kind="usage"} 2"#,
            r#"locktrace_losses_total{reason="ring_full"} 4"#,
            r#"locktrace_held_corrections_total{reason="held_overflow"} 5"#,
            r#"locktrace_skipped_total{reason="nested"} 6"#,
            "locktrace_classes 2",
            "locktrace_dependencies 2",
            "locktrace_chains 2",
            r#"locktrace_alerts_total{kind="circular_dependency"} 1"#,
            r#"locktrace_alerts_total{kind="irq_lock_inversion"} 0"#,
            r#"locktrace_alerts_total{kind="inconsistent_lock_state"} 0"#,
            r#"locktrace_alerts_total{kind="recursive_locking"} 0"#,
            r#"locktrace_alerts_total{kind="atomic_context"} 0"#,
            r#"locktrace_suppressed_alerts_total{kind="circular_dependency"} 0"#,
            r#"locktrace_suppressed_alerts_total{kind="irq_lock_inversion"} 0"#,
            r#"locktrace_suppressed_alerts_total{kind="inconsistent_lock_state"} 0"#,
            r#"locktrace_suppressed_alerts_total{kind="recursive_locking"} 0"#,
            r#"locktrace_suppressed_alerts_total{kind="atomic_context"} 7"#,
            "process_cpu_seconds_total 1.5",
            "process_resident_memory_bytes 4096",
        ];
        assert_eq!(samples(&text), expected, "{text}");
        assert!(
            text.contains("# TYPE locktrace_alerts_total counter\n")
                && text.contains("# TYPE locktrace_classes gauge\n")
                && text.contains("# HELP locktrace_alerts_total Alerts reported, by kind.\n"),
            "{text}"
        );
    }

    #[test]
    fn every_counter_of_a_session_is_in_exactly_one_family() {
        let names = session_counter_names();
        // Distinct values, so that each sample line names one counter.
        let counts = names
            .iter()
            .zip(1000u64..)
            .map(|(name, n)| (name.to_string(), n))
            .collect();
        let figures = Figures {
            drops: DropCounts {
                monotonic_ns: 0,
                counts,
            },
            ..Figures::default()
        };
        let text = render(&figures, None);
        for (name, n) in names.iter().zip(1000u64..) {
            let lines: Vec<&str> = samples(&text)
                .into_iter()
                .filter(|line| line.ends_with(&format!("}} {n}")))
                .collect();
            assert_eq!(lines.len(), 1, "{name}: {lines:?}\n{text}");
            let label = match *name {
                "acquisitions" => "acquire",
                "releases" => "release",
                other => other,
            };
            assert!(
                lines[0].contains(&format!("=\"{label}\"}}")),
                "{name}: {lines:?}"
            );
        }
    }

    #[test]
    fn before_tracing_starts_there_is_no_start_time_and_no_engine() {
        let text = render(&Figures::default(), None);
        assert!(
            !text.contains("locktrace_session_start_time_seconds"),
            "{text}"
        );
        assert!(text.contains("\nlocktrace_probes_attached 0\n"), "{text}");
        assert!(!text.contains("locktrace_alerts_total"), "{text}");
        assert!(!text.contains("process_"), "{text}");
    }
}
