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
    /// What `locktrace check` must say it detects (names of its `detects` entries) for the
    /// alert to be expected. On a kernel that may lack one (`Suite::may_lack`), `check`
    /// saying it is off excuses the alert's absence, and nothing may stand in its place.
    pub needs: &'static [&'static str],
    /// The lock family whose ordering the alert is built from (`spinlock`, `mutex` ...): on a
    /// kernel that may lack kernel lock ordering, `check` naming the family off (its releases
    /// cannot be traced) excuses it in the same way.
    pub family: Option<&'static str>,
}

/// `locktrace check`'s line for ordering checks between kernel locks.
pub const LOCK_ORDERING: &str = "kernel lock ordering";
/// `locktrace check`'s line for checks that need the execution context (`preempt_count`).
pub const CONTEXT_CHECKS: &str = "context checks";

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
            needs: &[LOCK_ORDERING],
            family: Some("spinlock"),
        }],
    ),
    (
        "abba",
        &[Expected {
            kind: "circular_dependency",
            irq: None,
            classes: Some(&["lt_abba_a", "lt_abba_b"]),
            needs: &[LOCK_ORDERING],
            family: Some("mutex"),
        }],
    ),
    // vfree() may sleep: called with IRQs disabled.
    (
        "vfree_irqoff",
        &[Expected {
            kind: "atomic_context",
            irq: None,
            classes: None,
            needs: &[],
            family: None,
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
                needs: &[CONTEXT_CHECKS],
                family: None,
            },
            Expected {
                kind: "atomic_context",
                irq: None,
                classes: Some(&["pcpu_alloc_mutex"]),
                needs: &[CONTEXT_CHECKS, LOCK_ORDERING],
                family: Some("mutex"),
            },
            Expected {
                kind: "inconsistent_lock_state",
                irq: Some(Some("softirq")),
                classes: Some(&["pcpu_alloc_mutex"]),
                needs: &[CONTEXT_CHECKS, LOCK_ORDERING],
                family: Some("mutex"),
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
    let off = shipped_json(files, "check.json")
        .map(|check| Lacking::from_check(suite.may_lack, &check))
        .unwrap_or_default();
    let mut checks = vec![
        check("probes-attached", probes_attached(suite, files, &off)),
        check("irq-state-kfunc", irq_state_kfunc(suite, files)),
        check("irq-state", irq_state(suite, files)),
        check("graph-pcpu", graph_pcpu(files, &off)),
    ];
    for (pattern, expected) in PATTERNS {
        let (expected, excused) = expected_on(&off, expected.iter());
        let result = shipped_alerts(files, &format!("watch-{pattern}.json"))
            .and_then(|alerts| compare(&alerts, &expected))
            .map(|detail| with_excused(detail, &excused));
        checks.push(check(&format!("alerts-{pattern}"), result));
    }
    let (every_pattern, excused) = expected_on(
        &off,
        PATTERNS.iter().flat_map(|(_, expected)| expected.iter()),
    );
    let result = shipped_alerts(files, "watch-kprobe.json")
        .and_then(|alerts| compare(&alerts, &every_pattern))
        .map(|detail| with_excused(detail, &excused));
    checks.push(check("alerts-kprobe", result));
    checks.push(check(
        "contention-figures",
        contention_figures(suite, files, &off),
    ));
    checks.push(check("workload-clean", workload_clean(files)));
    checks.push(check(
        "replay-on-host",
        replay_on_host(files, locktrace, work),
    ));
    checks
}

/// What `locktrace check` said the guest's kernel cannot detect, among what its suite may
/// lack (`Suite::may_lack`): whole lines (name and detail) it reports off, and the lock
/// families its kernel lock ordering line names off ("off for spinlock, rwlock: their
/// releases cannot be traced"). Anything else `check` calls off is not excused here, and
/// its checks fail as they would without the line.
#[derive(Default)]
struct Lacking {
    lines: Vec<(String, String)>,
    families: Vec<String>,
    /// The kernel lock ordering line, when it names families off.
    families_line: String,
}

impl Lacking {
    fn from_check(may_lack: &[&str], check: &Value) -> Lacking {
        let mut lacking = Lacking::default();
        let entries = check["detects"].as_array().into_iter().flatten();
        for entry in entries {
            let (Some(name), Some(ok)) = (entry["name"].as_str(), entry["ok"].as_bool()) else {
                continue;
            };
            if !may_lack.contains(&name) {
                continue;
            }
            let detail = entry["detail"].as_str().unwrap_or_default();
            if !ok {
                lacking.lines.push((name.to_owned(), detail.to_owned()));
            } else if name == LOCK_ORDERING
                && let Some(families) = families_off(detail)
            {
                lacking.families = families;
                lacking.families_line = format!("check says \"{name}: yes ({detail})\"");
            }
        }
        lacking
    }

    /// `check`'s line for the first of `needs` that it says is off, or for `family` when it
    /// names it off; `None` when the alert is expected.
    fn any_of(&self, needs: &[&str], family: Option<&str>) -> Option<String> {
        let line = self
            .lines
            .iter()
            .find(|(name, _)| needs.contains(&name.as_str()))
            .map(|(name, detail)| format!("check says \"{name}: no ({detail})\""));
        line.or_else(|| {
            family
                .filter(|family| self.families.iter().any(|off| off == family))
                .map(|_| self.families_line.clone())
        })
    }
}

/// The families a kernel lock ordering detail names off: "...; off for spinlock, rwlock:
/// their releases cannot be traced".
fn families_off(detail: &str) -> Option<Vec<String>> {
    let (_, rest) = detail.split_once("off for ")?;
    let (list, _) = rest.split_once(':')?;
    Some(list.split(", ").map(str::to_owned).collect())
}

/// Adds what was not expected, and why, to a passing check's detail.
fn with_excused(detail: String, excused: &[String]) -> String {
    if excused.is_empty() {
        detail
    } else {
        format!("{detail}; not expected: {}", excused.join("; "))
    }
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
/// Some may be missing where the kernel has no such thing ([`absent_here`]).
fn probes_attached(
    suite: &Suite,
    files: &BTreeMap<String, Vec<u8>>,
    off: &Lacking,
) -> anyhow::Result<String> {
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
    let mut absent: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    for probe in kernel
        .iter()
        .filter(|probe| probe["attached"] != Value::Bool(true) && !not_needed(probe))
    {
        match absent_here(suite, off, probe) {
            Some(why) => *absent.entry(why).or_default() += 1,
            None => failed.push(format!("{} ({})", probe["name"], probe["detail"])),
        }
    }
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
    let absent_count: usize = absent.values().sum();
    let absent: Vec<String> = absent
        .iter()
        .map(|(why, count)| format!(", {count} {why}"))
        .collect();
    Ok(format!(
        "{attached} kernel probes attached, {} not needed here{}",
        kernel.len() - attached - absent_count,
        absent.concat()
    ))
}

/// Why `probe`, which `check` reports not attached, may be missing on this kernel, or `None`:
/// the probe of a plain or `_irq` spin, read or write unlock the kernel inlines
/// (`Suite::unlocks_inlined`), where `check` says it is not in the kernel; an acquisition
/// probe of a lock family `check` names off (left out on purpose: its releases cannot be
/// traced); a contention tracepoint on a kernel without them
/// (`Suite::contention_tracepoints`).
fn absent_here(suite: &Suite, off: &Lacking, probe: &Value) -> Option<&'static str> {
    let name = probe["name"].as_str().unwrap_or_default();
    let detail = probe["detail"].as_str().unwrap_or_default();
    let function = name.split_once(':').map_or("", |(_, function)| function);
    let function = function.split(' ').next().unwrap_or_default();
    let unlock = function.starts_with("_raw_")
        && (function.ends_with("_unlock") || function.ends_with("_unlock_irq"));
    if suite.unlocks_inlined && unlock && detail.starts_with("not in this kernel") {
        return Some("unlock probes not in this kernel (inlined)");
    }
    let family_off =
        lock_family(function).is_some_and(|family| off.any_of(&[], Some(family)).is_some());
    if family_off && detail.starts_with("ordering checks off") {
        return Some("acquisition probes of a family check says is off");
    }
    if !suite.contention_tracepoints && name.starts_with("tp:lock:contention_") {
        return Some("contention tracepoints not in this kernel");
    }
    None
}

/// The family of kernel locks a lock function belongs to, by its name, as `locktrace check`
/// names families.
fn lock_family(function: &str) -> Option<&'static str> {
    if function.starts_with("_raw_spin_") {
        Some("spinlock")
    } else if function.starts_with("_raw_read_") || function.starts_with("_raw_write_") {
        Some("rwlock")
    } else if function.starts_with("mutex_") {
        Some("mutex")
    } else if function.starts_with("down_") || function.starts_with("up_") {
        Some("rwsem")
    } else {
        None
    }
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
/// from kallsyms. Where `check` says kernel lock ordering is off, no dependency that involves
/// a kernel lock; where it names the spinlock family off, not that one (pcpu_lock is a
/// spinlock).
fn graph_pcpu(files: &BTreeMap<String, Vec<u8>>, off: &Lacking) -> anyhow::Result<String> {
    let graph = shipped_json(files, "graph.json")?;
    let dependencies = graph["dependencies"]
        .as_array()
        .context("graph.json has no dependencies")?;
    if let Some(line) = off.any_of(&[LOCK_ORDERING], None) {
        let user = user_classes(&graph);
        let kernel: Vec<String> = dependencies
            .iter()
            .filter(|dep| !(user.contains(&&dep["from"]) && user.contains(&&dep["to"])))
            .map(|dep| format!("{} -> {}", dep["from"], dep["to"]))
            .collect();
        ensure!(
            kernel.is_empty(),
            "{line}, yet the graph has {} dependencies of kernel locks: {}",
            kernel.len(),
            sample(&kernel)
        );
        return Ok(format!(
            "no dependency of kernel locks ({} between user-space locks), as {line}",
            dependencies.len()
        ));
    }
    let found = dependencies
        .iter()
        .find(|dep| dep["from"] == "pcpu_alloc_mutex" && dep["to"] == "pcpu_lock");
    if let Some(line) = off.any_of(&[], Some("spinlock")) {
        ensure!(
            found.is_none(),
            "{line}, yet the graph has pcpu_alloc_mutex -> pcpu_lock"
        );
        return Ok(format!(
            "no pcpu_alloc_mutex -> pcpu_lock among {} dependencies, as {line}",
            dependencies.len()
        ));
    }
    let found = found.with_context(|| {
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

/// The names of a graph's user-space classes (`identified_by` says so), as JSON strings.
fn user_classes(graph: &Value) -> Vec<&Value> {
    graph["classes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|class| {
            class["identified_by"]
                .as_str()
                .is_some_and(|how| how.starts_with("user-space"))
        })
        .map(|class| &class["name"])
        .collect()
}

/// The AB-BA alert `watch` printed in the guest carries each lock's contention figures on
/// kernels with the contention tracepoints (`Suite::contention_tracepoints`): a null (not
/// traced) there means the live path lost them; elsewhere it says "not traced" (null) rather
/// than a zero. Nothing to judge where `check` says the alert cannot be built (mutex
/// ordering off).
fn contention_figures(
    suite: &Suite,
    files: &BTreeMap<String, Vec<u8>>,
    off: &Lacking,
) -> anyhow::Result<String> {
    if let Some(line) = off.any_of(&[LOCK_ORDERING], Some("mutex")) {
        return Ok(format!("no AB-BA alert to carry figures: {line}"));
    }
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
    let traced = suite.contention_tracepoints;
    if traced {
        ensure!(
            classes
                .iter()
                .all(|class| class["contended"].is_u64() && class["wait_ns"].is_u64()),
            "not every lock has figures: {}",
            figures.join("; ")
        );
    } else {
        ensure!(
            classes
                .iter()
                .all(|class| class["contended"].is_null() && class["wait_ns"].is_null()),
            "figures on a kernel without the contention tracepoints: {}",
            figures.join("; ")
        );
    }
    let traced = if traced { "traced" } else { "not traced" };
    Ok(format!("{traced}: {}", figures.join("; ")))
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

/// The alerts of `expected` this kernel can give, without what `check` says is `off`; and,
/// for those left out, why.
fn expected_on<'a>(
    off: &Lacking,
    expected: impl Iterator<Item = &'a Expected>,
) -> (Vec<&'a Expected>, Vec<String>) {
    let mut kept = Vec::new();
    let mut excused = Vec::new();
    for want in expected {
        match off.any_of(want.needs, want.family) {
            Some(line) => excused.push(format!("{} ({line})", want.kind)),
            None => kept.push(want),
        }
    }
    (kept, excused)
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
    use crate::vm::suites::find;

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

    /// `check.json` with the given `detects` entries (name, ok, detail).
    fn check_json(detects: &[(&str, bool, &str)]) -> Value {
        let detects: Vec<Value> = detects
            .iter()
            .map(|(name, ok, detail)| serde_json::json!({"name": name, "ok": ok, "detail": detail}))
            .collect();
        serde_json::json!({ "detects": detects })
    }

    fn files(name: &str, json: Value) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(name.to_owned(), json.to_string().into_bytes())])
    }

    const ABBA: &str =
        r#"{"kind":"circular_dependency","irq":null,"classes":["lt_abba_a","lt_abba_b"]}"#;
    const SPIN_OFF: &str = "circular dependencies ...; off for spinlock, rwlock: their releases \
                            cannot be traced";

    #[test]
    fn check_saying_ordering_is_off_excuses_its_alerts_and_allows_no_false_one() {
        let check = check_json(&[(LOCK_ORDERING, false, "why")]);
        let off = Lacking::from_check(&[LOCK_ORDERING], &check);
        let (abba, excused) = expected_on(&off, PATTERNS[1].1.iter());
        assert!(compare(&[], &abba).is_ok());
        assert_eq!(excused.len(), 1);
        assert!(excused[0].contains("kernel lock ordering: no (why)"));
        // An alert built from the untraced locks is a false one.
        assert!(compare(&alerts(ABBA), &abba).is_err());
        // The per-CPU pattern keeps what needs the context only.
        let (percpu, excused) = expected_on(&off, PATTERNS[3].1.iter());
        assert_eq!(percpu.len(), 1);
        assert_eq!(percpu[0].classes, Some(&[][..]));
        assert_eq!(excused.len(), 2);
    }

    #[test]
    fn a_family_named_off_excuses_its_alerts_only() {
        let check = check_json(&[(LOCK_ORDERING, true, SPIN_OFF)]);
        let off = Lacking::from_check(&[LOCK_ORDERING], &check);
        let (seed, excused) = expected_on(&off, PATTERNS[0].1.iter());
        assert!(seed.is_empty());
        assert!(excused[0].contains("off for spinlock, rwlock"));
        // Mutexes are still traced: the AB-BA between two of them is expected.
        let (abba, excused) = expected_on(&off, PATTERNS[1].1.iter());
        assert!(excused.is_empty());
        assert!(compare(&[], &abba).is_err());
        assert!(compare(&alerts(ABBA), &abba).is_ok());
    }

    #[test]
    fn check_saying_off_excuses_nothing_on_a_kernel_that_must_have_it() {
        let check = check_json(&[
            (LOCK_ORDERING, false, "why"),
            (CONTEXT_CHECKS, false, "why"),
        ]);
        let off = Lacking::from_check(&[], &check);
        let (abba, excused) = expected_on(&off, PATTERNS[1].1.iter());
        assert!(excused.is_empty());
        assert!(compare(&[], &abba).is_err());
        let check = check_json(&[(LOCK_ORDERING, true, SPIN_OFF)]);
        let off = Lacking::from_check(&[CONTEXT_CHECKS], &check);
        let (seed, _) = expected_on(&off, PATTERNS[0].1.iter());
        assert_eq!(seed.len(), 1);
    }

    #[test]
    fn with_ordering_off_the_graph_may_hold_user_space_dependencies_only() {
        let check = check_json(&[(LOCK_ORDERING, false, "why")]);
        let off = Lacking::from_check(&[LOCK_ORDERING], &check);
        let user = serde_json::json!({
            "classes": [
                {"name": "a", "identified_by": "user-space lock (pid + address)"},
                {"name": "b", "identified_by": "user-space static lock (binary + symbol)"},
                {"name": "pcpu_lock", "identified_by": "static lock"},
            ],
            "dependencies": [{"from": "a", "to": "b", "count": 1}],
        });
        assert!(graph_pcpu(&files("graph.json", user.clone()), &off).is_ok());
        let mut kernel = user;
        kernel["dependencies"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"from": "pcpu_alloc_mutex", "to": "pcpu_lock", "count": 1}));
        assert!(graph_pcpu(&files("graph.json", kernel.clone()), &off).is_err());
        // With spinlocks off, that very dependency is one built from them.
        let check = check_json(&[(LOCK_ORDERING, true, SPIN_OFF)]);
        let spin_off = Lacking::from_check(&[LOCK_ORDERING], &check);
        assert!(graph_pcpu(&files("graph.json", kernel.clone()), &spin_off).is_err());
        // Where ordering works, it must be there.
        assert!(graph_pcpu(&files("graph.json", kernel), &Lacking::default()).is_ok());
    }

    #[test]
    fn only_what_the_kernel_lacks_may_be_missing() {
        let probe = |name: &str, kind: &str, attached: bool, detail: &str| serde_json::json!({"name": name, "kind": kind, "attached": attached, "detail": detail});
        let blind = "ordering checks off, the releases cannot be traced: not in this kernel";
        let mut check = check_json(&[(LOCK_ORDERING, true, SPIN_OFF)]);
        check["probes"] = serde_json::json!([
            probe("fexit:mutex_lock", "fexit", true, ""),
            probe(
                "fentry:_raw_spin_unlock [copy 2]",
                "fentry",
                false,
                "not in this kernel (BTF has no _raw_spin_unlock)",
            ),
            probe("fexit:_raw_spin_lock", "fexit", false, blind),
            probe(
                "tp:lock:contention_begin",
                "tp_btf",
                false,
                "unknown BTF type"
            ),
        ]);
        let bullseye = find("bullseye").unwrap();
        let trixie = find("trixie").unwrap();
        let shipped = files("check.json", check.clone());
        let off = Lacking::from_check(bullseye.may_lack, &check);
        assert!(probes_attached(bullseye, &shipped, &off).is_ok());
        assert!(probes_attached(trixie, &shipped, &Lacking::default()).is_err());
        // A family check does not name off must attach.
        let mut blind_mutex = check.clone();
        blind_mutex["probes"].as_array_mut().unwrap().push(probe(
            "fexit:mutex_trylock",
            "fexit",
            false,
            blind,
        ));
        let shipped = files("check.json", blind_mutex);
        assert!(probes_attached(bullseye, &shipped, &off).is_err());
        // So must a release that exists.
        let mut refused = check;
        refused["probes"].as_array_mut().unwrap().push(probe(
            "fentry:mutex_unlock",
            "fentry",
            false,
            "verifier rejected it",
        ));
        let shipped = files("check.json", refused);
        assert!(probes_attached(bullseye, &shipped, &off).is_err());
    }
}
