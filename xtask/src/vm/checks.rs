//! The host's half of the VM tests: judges the files the guest shipped back (`locktrace check`,
//! `graph` and `watch` output, a recorded trace) against what each kernel and each pattern of
//! the test module must give. JSON is read here, not in the guest's busybox shell.
//!
//! The expected alerts of each test module pattern are in [`PATTERNS`], and only there.

use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use super::{serial::Check, suites::Suite};

/// One alert that a pattern must raise. `None` fields are not compared.
pub struct Expected {
    /// The alert's `kind`.
    pub kind: &'static str,
    /// The alert's `irq` (`Some(None)`: must be null).
    pub irq: Option<Option<&'static str>>,
    /// The alert's `classes`, in any order.
    pub classes: Option<&'static [&'static str]>,
}

/// The test module's patterns (tests/kmod/locktrace_test.c) and exactly the alerts each must
/// give, as lockdep would report them.
pub const PATTERNS: &[(&str, &[Expected])] = &[
    // HARDIRQ-safe lt_seed_outer_lock held while taking HARDIRQ-unsafe lt_seed_inner_lock.
    (
        "seed",
        &[Expected {
            kind: "irq_lock_inversion",
            irq: Some(Some("hardirq")),
            classes: Some(&["lt_seed_outer_lock", "lt_seed_inner_lock"]),
        }],
    ),
    (
        "abba",
        &[Expected {
            kind: "circular_dependency",
            irq: None,
            classes: Some(&["lt_abba_a", "lt_abba_b"]),
        }],
    ),
    // vfree() may sleep: called with IRQs disabled.
    (
        "vfree_irqoff",
        &[Expected {
            kind: "atomic_context",
            irq: None,
            classes: None,
        }],
    ),
    // A sleeping allocation in softirq; inside it pcpu_alloc_mutex is taken there (a sleeping
    // lock in atomic context: might_sleep's BUG), while the same mutex was taken with softirqs
    // enabled just before: lockdep's {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W}.
    (
        "percpu_softirq",
        &[
            Expected {
                kind: "atomic_context",
                irq: None,
                classes: Some(&[]),
            },
            Expected {
                kind: "atomic_context",
                irq: None,
                classes: Some(&["pcpu_alloc_mutex"]),
            },
            Expected {
                kind: "inconsistent_lock_state",
                irq: Some(Some("softirq")),
                classes: Some(&["pcpu_alloc_mutex"]),
            },
        ],
    ),
    ("clean", &[]),
];

/// Alert kinds that an ordinary workload must never raise.
const INVERSION_KINDS: &[&str] = &[
    "circular_dependency",
    "irq_lock_inversion",
    "inconsistent_lock_state",
    "recursive_locking",
];

/// Judges everything the guest shipped. `locktrace` is the host's binary (for `report`),
/// `work` a directory for the files it reads.
pub fn judge(
    suite: &Suite,
    files: &BTreeMap<String, Vec<u8>>,
    locktrace: &Path,
    work: &Path,
) -> Vec<Check> {
    let mut checks = vec![
        check("probes-attached", probes_attached(files)),
        check("irq-state-kfunc", irq_state_kfunc(suite, files)),
        check("irq-state", irq_state(suite, files)),
        check("graph-pcpu", graph_pcpu(files)),
    ];
    for (pattern, expected) in PATTERNS {
        let expected: Vec<&Expected> = expected.iter().collect();
        let result = shipped_alerts(files, &format!("watch-{pattern}.json"))
            .and_then(|alerts| compare(&alerts, &expected));
        checks.push(check(&format!("alerts-{pattern}"), result));
    }
    let every_pattern: Vec<&Expected> = PATTERNS
        .iter()
        .flat_map(|(_, expected)| expected.iter())
        .collect();
    let result = shipped_alerts(files, "watch-kprobe.json")
        .and_then(|alerts| compare(&alerts, &every_pattern));
    checks.push(check("alerts-kprobe", result));
    checks.push(check("contention-figures", contention_figures(files)));
    checks.push(check("workload-clean", workload_clean(files)));
    checks.push(check(
        "replay-on-host",
        replay_on_host(files, locktrace, work),
    ));
    checks
}

fn check(name: &str, result: anyhow::Result<String>) -> Check {
    match result {
        Ok(detail) => Check {
            name: name.to_owned(),
            pass: true,
            detail,
        },
        Err(err) => Check {
            name: name.to_owned(),
            pass: false,
            detail: format!("{err:#}"),
        },
    }
}

fn shipped<'a>(files: &'a BTreeMap<String, Vec<u8>>, name: &str) -> anyhow::Result<&'a [u8]> {
    files
        .get(name)
        .map(Vec::as_slice)
        .with_context(|| format!("the guest shipped no {name}"))
}

fn shipped_json(files: &BTreeMap<String, Vec<u8>>, name: &str) -> anyhow::Result<Value> {
    serde_json::from_slice(shipped(files, name)?).with_context(|| format!("{name} is not JSON"))
}

fn shipped_alerts(files: &BTreeMap<String, Vec<u8>>, name: &str) -> anyhow::Result<Vec<Value>> {
    alert_lines(shipped(files, name)?).with_context(|| format!("reading {name}"))
}

/// Every kernel probe this kernel needs attached: a kprobe or a trampoline, where the other
/// attached, is not needed (tracepoints may stand in for the allocator elsewhere, not here).
fn probes_attached(files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<String> {
    let check = shipped_json(files, "check.json")?;
    let probes = check["probes"]
        .as_array()
        .context("check.json has no probes array")?;
    let kernel: Vec<_> = probes
        .iter()
        .filter(|probe| {
            matches!(
                probe["kind"].as_str(),
                Some("fentry" | "fexit" | "kprobe" | "tp_btf")
            )
        })
        .collect();
    ensure!(
        kernel.iter().any(|probe| probe["kind"] == "fexit"),
        "check.json lists no fexit probe"
    );
    // A probe whose alternative attached (a kprobe where the kfunc is missing, a trampoline
    // where it is there) is not needed on this kernel; every other must attach.
    let not_needed = |probe: &&&Value| {
        probe["detail"]
            .as_str()
            .is_some_and(|detail| detail.starts_with("not needed"))
    };
    let failed: Vec<String> = kernel
        .iter()
        .filter(|probe| probe["attached"] != Value::Bool(true) && !not_needed(probe))
        .map(|probe| format!("{} ({})", probe["name"], probe["detail"]))
        .collect();
    ensure!(
        failed.is_empty(),
        "{} of {} kernel probes did not attach: {}",
        failed.len(),
        kernel.len(),
        failed.join(", ")
    );
    let attached = kernel
        .iter()
        .filter(|probe| probe["attached"] == Value::Bool(true))
        .count();
    Ok(format!(
        "{attached} kernel probes attached, {} not needed here",
        kernel.len() - attached
    ))
}

/// `check` sees the IRQ-state kfunc exactly on the kernels that have it.
fn irq_state_kfunc(suite: &Suite, files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<String> {
    let check = shipped_json(files, "check.json")?;
    let feature = check["features"]
        .as_array()
        .context("check.json has no features array")?
        .iter()
        .find(|feature| feature["name"] == "kfunc:bpf_local_irq_save")
        .context("check.json has no kfunc:bpf_local_irq_save feature")?;
    let ok = feature["ok"] == Value::Bool(true);
    ensure!(
        ok == suite.irq_state_kfunc,
        "kfunc:bpf_local_irq_save ok={ok}, expected {} ({})",
        suite.irq_state_kfunc,
        feature["detail"]
    );
    Ok(format!("kfunc:bpf_local_irq_save ok={ok}, as expected"))
}

/// `check` says the IRQ state is known: through the kfunc where the kernel has it, from the
/// flags kprobes save everywhere else (every guest kernel has kprobes).
fn irq_state(suite: &Suite, files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<String> {
    let check = shipped_json(files, "check.json")?;
    let feature = check["features"]
        .as_array()
        .context("check.json has no features array")?
        .iter()
        .find(|feature| feature["name"] == "irq state")
        .context("check.json has no irq state feature")?;
    let detail = feature["detail"].as_str().unwrap_or_default();
    let way = if suite.irq_state_kfunc {
        "kfunc"
    } else {
        "kprobes"
    };
    ensure!(
        feature["ok"] == Value::Bool(true) && detail.contains(way),
        "irq state: expected from {way}, check says {detail:?}"
    );
    Ok(format!("irq state {detail}"))
}

/// Ordinary kernel activity (per-CPU BPF maps) gives pcpu_alloc_mutex -> pcpu_lock, both named
/// from kallsyms.
fn graph_pcpu(files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<String> {
    let graph = shipped_json(files, "graph.json")?;
    let dependencies = graph["dependencies"]
        .as_array()
        .context("graph.json has no dependencies")?;
    let found = dependencies
        .iter()
        .find(|dep| dep["from"] == "pcpu_alloc_mutex" && dep["to"] == "pcpu_lock")
        .with_context(|| {
            format!(
                "no pcpu_alloc_mutex -> pcpu_lock among {} dependencies",
                dependencies.len()
            )
        })?;
    Ok(format!(
        "pcpu_alloc_mutex -> pcpu_lock (count {}) among {} dependencies",
        found["count"],
        dependencies.len()
    ))
}

/// The AB-BA alert `watch` printed in the guest carries each lock's contention figures: the
/// contention tracepoints attach on every suite's kernel, so a null (not traced) means the
/// live path lost them.
fn contention_figures(files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<String> {
    let alerts = shipped_alerts(files, "watch-abba.json")?;
    let alert = alerts
        .iter()
        .find(|alert| alert["kind"] == "circular_dependency")
        .context("watch-abba.json has no circular_dependency")?;
    let classes = alert["class_info"]
        .as_array()
        .context("the alert has no class_info")?;
    ensure!(!classes.is_empty(), "the alert's class_info is empty");
    let figures: Vec<String> = classes
        .iter()
        .map(|class| {
            format!(
                "{}: contended {}, {} ns",
                class["name"], class["contended"], class["wait_ns"]
            )
        })
        .collect();
    ensure!(
        classes
            .iter()
            .all(|class| class["contended"].is_u64() && class["wait_ns"].is_u64()),
        "not every lock has figures: {}",
        figures.join("; ")
    );
    Ok(figures.join("; "))
}

fn workload_clean(files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<String> {
    let alerts = shipped_alerts(files, "workload.json")?;
    let inversions: Vec<String> = alerts
        .iter()
        .filter(|alert| INVERSION_KINDS.iter().any(|kind| alert["kind"] == *kind))
        .map(describe)
        .collect();
    ensure!(
        inversions.is_empty(),
        "{} inversion alerts: {}",
        inversions.len(),
        sample(&inversions)
    );
    Ok(format!(
        "no inversion alert ({} other alerts)",
        alerts.len()
    ))
}

/// `locktrace report` on the host, over the trace recorded in the guest, gives the guest's own
/// report and the alerts `watch` gave for the same patterns.
fn replay_on_host(
    files: &BTreeMap<String, Vec<u8>>,
    locktrace: &Path,
    work: &Path,
) -> anyhow::Result<String> {
    let trace = work.join("patterns.lttrace");
    std::fs::write(&trace, shipped(files, "patterns.lttrace")?)?;
    let output = Command::new(locktrace)
        .arg("report")
        .arg(&trace)
        .arg("--json")
        .output()
        .context("running locktrace report on the host")?;
    let alerts = alert_lines(&output.stdout)?;
    // `report` exits with 2 when it found alerts, 0 when it found none.
    let expected = if alerts.is_empty() { 0 } else { 2 };
    ensure!(
        output.status.code() == Some(expected),
        "locktrace report: {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let host = keys(&alerts);
    let guest = keys(&shipped_alerts(files, "report.json")?);
    ensure!(
        host == guest,
        "host report {host:?} differs from guest report {guest:?}"
    );
    let mut watched = Vec::new();
    for (pattern, _) in PATTERNS {
        watched.extend(shipped_alerts(files, &format!("watch-{pattern}.json"))?);
    }
    let watched = keys(&watched);
    ensure!(
        host == watched,
        "host report {host:?} differs from the guest's watch {watched:?}"
    );
    Ok(format!("{} alerts, same as in the guest", host.len()))
}

/// Parses JSON lines (one alert per line).
fn alert_lines(bytes: &[u8]) -> anyhow::Result<Vec<Value>> {
    std::str::from_utf8(bytes)?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("not a JSON alert: {line}")))
        .collect()
}

/// An alert's identity across runs and machines: kind, IRQ context and sorted classes.
fn key(alert: &Value) -> String {
    let mut classes: Vec<String> = alert["classes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|class| {
            class
                .as_str()
                .map_or_else(|| class.to_string(), str::to_owned)
        })
        .collect();
    classes.sort();
    format!(
        "{}/{}/{}",
        alert["kind"].as_str().unwrap_or("?"),
        alert["irq"],
        classes.join(",")
    )
}

fn keys(alerts: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = alerts.iter().map(key).collect();
    keys.sort();
    keys
}

fn describe(alert: &Value) -> String {
    format!("{} {} {}", alert["kind"], alert["irq"], alert["classes"])
}

/// Whether `alert` is an instance of `expected`.
fn matches(expected: &Expected, alert: &Value) -> bool {
    if alert["kind"] != expected.kind {
        return false;
    }
    if let Some(irq) = expected.irq
        && alert["irq"] != irq.map_or(Value::Null, Value::from)
    {
        return false;
    }
    let Some(classes) = expected.classes else {
        return true;
    };
    let Some(found) = alert["classes"].as_array() else {
        return false;
    };
    let mut found: Vec<&str> = found.iter().filter_map(Value::as_str).collect();
    let mut wanted = classes.to_vec();
    found.sort_unstable();
    wanted.sort_unstable();
    found == wanted
}

/// Exactly the expected alerts, each once: nothing missing, nothing more.
fn compare(alerts: &[Value], expected: &[&Expected]) -> anyhow::Result<String> {
    let mut unmatched: Vec<&Value> = alerts.iter().collect();
    let mut missing = Vec::new();
    for want in expected {
        match unmatched.iter().position(|alert| matches(want, alert)) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(format!(
                "{} {:?}",
                want.kind,
                want.classes.unwrap_or_default()
            )),
        }
    }
    if missing.is_empty() && unmatched.is_empty() {
        return Ok(if alerts.is_empty() {
            "no alert, as expected".to_owned()
        } else {
            alerts.iter().map(describe).collect::<Vec<_>>().join("; ")
        });
    }
    let extra: Vec<String> = unmatched.into_iter().map(describe).collect();
    bail!(
        "missing [{}]; {} unexpected [{}]",
        missing.join("; "),
        extra.len(),
        sample(&extra)
    )
}

/// The first few items of a list, for a one-line detail (the shipped files have them all).
fn sample(items: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = items[..items.len().min(SHOWN)].join("; ");
    if items.len() > SHOWN {
        text.push_str(&format!("; and {} more", items.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts(text: &str) -> Vec<Value> {
        alert_lines(text.as_bytes()).unwrap()
    }

    /// The expected alerts of pattern `i`.
    fn expected(i: usize) -> Vec<&'static Expected> {
        PATTERNS[i].1.iter().collect()
    }

    #[test]
    fn the_expected_alerts_pass_in_any_class_order() {
        let seed = expected(0);
        let found = alerts(
            r#"{"kind":"irq_lock_inversion","irq":"hardirq","classes":["lt_seed_inner_lock","lt_seed_outer_lock"],"chain":[],"tasks":[]}"#,
        );
        assert!(compare(&found, &seed).is_ok());
        assert!(compare(&[], &seed).is_err());
    }

    #[test]
    fn a_missing_or_an_extra_alert_fails() {
        let abba = &expected(1);
        assert!(compare(&[], abba).is_err());
        let twice = alerts(
            "{\"kind\":\"circular_dependency\",\"irq\":null,\"classes\":[\"lt_abba_a\",\"lt_abba_b\"]}\n\
             {\"kind\":\"circular_dependency\",\"irq\":null,\"classes\":[\"lt_abba_b\",\"lt_abba_a\"]}\n",
        );
        assert!(compare(&twice, abba).is_err());
        assert!(compare(&twice[..1], abba).is_ok());
    }

    #[test]
    fn the_wrong_irq_context_fails() {
        let seed = &expected(0);
        let softirq = alerts(
            r#"{"kind":"irq_lock_inversion","irq":"softirq","classes":["lt_seed_outer_lock","lt_seed_inner_lock"]}"#,
        );
        assert!(compare(&softirq, seed).is_err());
    }

    #[test]
    fn the_clean_pattern_allows_nothing() {
        let clean = &expected(4);
        assert!(compare(&[], clean).is_ok());
        let any = alerts(r#"{"kind":"atomic_context","irq":null,"classes":[]}"#);
        assert!(compare(&any, clean).is_err());
    }
}
