//! The kernel overhead benchmark's figures (`cargo xtask vm bench`): what tests/vm/bench.sh
//! printed on one guest's console, parsed and printed as tables (Markdown, for the README).
//!
//! The workload (tests/programs/lockload.c) runs bare, under `locktrace watch --floor` (every
//! probe attached with an empty program: what the trampolines, tracepoints and uprobes alone
//! cost), under `watch` and under `record`, all in one boot; a run that repeats the workload
//! counts each phase's median. Per phase: operations per second of each run, and the ratios of time per operation floor/bare (the attachments' cost),
//! watch/floor and record/floor (locktrace's own cost on top of them; the target after the
//! redesign is at most 1.5). Per session: attach time, the lock operations the probes
//! followed and the facts that reached user space (the target: at most 1% of them), losses,
//! stack failures, the held stacks' corrections, locktrace's CPU and the recording's size.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};

/// The file the guest ships with `watch`'s alerts on the workload (one JSON object a line).
pub const ALERTS_FILE: &str = "watch-alerts.json";

/// The measured workload runs of one boot, in order (the warm-up is not reported).
const RUNS: [&str; 4] = ["bare", "floor", "watch", "record"];

/// The ratios of time per operation printed for each phase: (numerator, denominator).
const RATIOS: [(&str, &str); 3] = [("floor", "bare"), ("watch", "floor"), ("record", "floor")];

/// Losses by reason, as locktrace names them (`ring_full`, `stack_failed` ...).
type Losses = Vec<(String, u64)>;

/// One phase of one round of a workload run: `phase run=<run> phase=<name> ops=<n> ns=<n>`.
#[derive(Debug, PartialEq)]
struct Phase {
    run: String,
    name: String,
    ops: u64,
    ns: u64,
}

/// One locktrace session: `session run=<run> attach_ms=<n> ready_ms=<n> traced_ms=<n>
/// cpu_ms=<n> bytes=<n> summary=<locktrace's last line>`.
#[derive(Debug, PartialEq)]
struct Session {
    run: String,
    /// From starting locktrace to its "N probes attached".
    attach_ms: u64,
    /// From starting locktrace until it went quiet, the kernel's symbol table read.
    ready_ms: u64,
    /// From ready to the workload's end.
    traced_ms: u64,
    /// locktrace's utime + stime over `traced_ms`.
    cpu_ms: u64,
    /// The recording's size (0 without one).
    bytes: u64,
    /// What locktrace's summary says; `None` when it printed none.
    summary: Option<Summary>,
}

/// What `watch` and `record` say in their last line.
#[derive(Debug, PartialEq)]
struct Summary {
    /// Lock acquisitions and releases the probes followed.
    lock_ops: u64,
    /// Facts that reached user space.
    facts: u64,
    /// Losses by reason (only those above zero).
    losses: Losses,
    /// How often the held stacks corrected themselves, by reason (only those above zero).
    held: Losses,
}

/// Everything one guest measured.
#[derive(Debug, Default)]
pub struct Figures {
    phases: Vec<Phase>,
    sessions: Vec<Session>,
}

impl Figures {
    /// Parses the console's benchmark lines (`Transcript::bench`).
    pub fn parse(lines: &[String]) -> anyhow::Result<Figures> {
        let mut figures = Figures::default();
        for line in lines {
            let parsed = match line.split_once(' ') {
                Some(("phase", rest)) => Phase::parse(rest).map(|p| figures.phases.push(p)),
                Some(("session", rest)) => Session::parse(rest).map(|s| figures.sessions.push(s)),
                _ => Err(anyhow!("neither a phase nor a session")),
            };
            parsed.with_context(|| format!("benchmark line {line:?}"))?;
        }
        Ok(figures)
    }

    /// Prints the phase table, then the session table.
    pub fn print(&self) {
        println!("{}", self.phase_table());
        println!("{}", self.session_table());
    }

    /// The median time per operation of phase `name` over the rounds of `run`.
    fn ns_per_op(&self, run: &str, name: &str) -> Option<f64> {
        let mut rounds: Vec<f64> = self
            .phases
            .iter()
            .filter(|phase| phase.run == run && phase.name == name)
            .map(|phase| phase.ns as f64 / phase.ops as f64)
            .collect();
        rounds.sort_by(f64::total_cmp);
        rounds.get(rounds.len() / 2).copied()
    }

    /// How many operations phase `name` runs.
    fn ops(&self, name: &str) -> u64 {
        self.phases
            .iter()
            .find(|phase| phase.name == name)
            .map_or(0, |phase| phase.ops)
    }

    /// Phase names in the order the workload ran them.
    fn phase_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for phase in &self.phases {
            if !names.contains(&phase.name.as_str()) {
                names.push(&phase.name);
            }
        }
        names
    }

    /// One row per phase, and one for the whole workload (its total time per run).
    fn phase_table(&self) -> String {
        let mut header = vec!["phase".to_owned(), "ops".to_owned()];
        header.extend(RUNS.iter().map(|run| format!("{run} ops/s")));
        header.extend(RATIOS.iter().map(|(a, b)| format!("{a}/{b}")));
        let mut rows = Vec::new();
        let names = self.phase_names();
        for name in &names {
            let ns_per_op = |run: &str| self.ns_per_op(run, name);
            let mut row = vec![(*name).to_owned(), grouped(self.ops(name) as f64)];
            row.extend(
                RUNS.iter()
                    .map(|run| show(ns_per_op(run).map(|ns| rate(1e9 / ns)))),
            );
            row.extend(
                RATIOS
                    .iter()
                    .map(|(a, b)| ratio(ns_per_op(a), ns_per_op(b))),
            );
            rows.push(row);
        }
        // The whole workload: seconds per run (of the phases' medians), and their ratios.
        let total = |run: &str| -> Option<f64> {
            names
                .iter()
                .map(|name| {
                    self.ns_per_op(run, name)
                        .map(|ns| ns * self.ops(name) as f64)
                })
                .sum::<Option<f64>>()
        };
        let mut row = vec!["all phases (s)".to_owned(), String::new()];
        row.extend(
            RUNS.iter()
                .map(|run| show(total(run).map(|ns| format!("{:.1} s", ns / 1e9)))),
        );
        row.extend(RATIOS.iter().map(|(a, b)| ratio(total(a), total(b))));
        rows.push(row);
        table(&header, &rows, 2)
    }

    /// One row per locktrace session.
    fn session_table(&self) -> String {
        let header: Vec<String> = [
            "session",
            "attached",
            "ready",
            "traced",
            "lock ops/s",
            "facts/s to user space",
            "facts/lock ops",
            "lost",
            "stack_failed",
            "held-stack corrections",
            "locktrace CPU",
            "recording",
        ]
        .map(str::to_owned)
        .to_vec();
        let rows = self
            .sessions
            .iter()
            .map(|session| {
                let traced_s = session.traced_ms.max(1) as f64 / 1e3;
                let summary = session.summary.as_ref();
                let lost = summary.map(|s| {
                    listed(
                        s.losses
                            .iter()
                            .filter(|(reason, _)| reason != "stack_failed"),
                    )
                });
                let stack_failed = summary.map(|s| {
                    let failed = s.losses.iter().find(|(reason, _)| reason == "stack_failed");
                    grouped(failed.map_or(0, |(_, n)| *n) as f64)
                });
                vec![
                    session.run.clone(),
                    format!("{:.1} s", session.attach_ms as f64 / 1e3),
                    format!("{:.1} s", session.ready_ms as f64 / 1e3),
                    format!("{traced_s:.1} s"),
                    show(summary.map(|s| rate(s.lock_ops as f64 / traced_s))),
                    show(summary.map(|s| rate(s.facts as f64 / traced_s))),
                    show(summary.and_then(|s| {
                        (s.lock_ops > 0)
                            .then(|| format!("{:.3}%", 100.0 * s.facts as f64 / s.lock_ops as f64))
                    })),
                    show(lost),
                    show(stack_failed),
                    show(summary.map(|s| listed(s.held.iter()))),
                    format!("{:.0}%", 100.0 * session.cpu_ms as f64 / 1e3 / traced_s),
                    if session.bytes > 0 {
                        format!("{:.2} MB/s", session.bytes as f64 / 1e6 / traced_s)
                    } else {
                        "—".to_owned()
                    },
                ]
            })
            .collect::<Vec<_>>();
        table(&header, &rows, 1)
    }
}

impl Phase {
    fn parse(text: &str) -> anyhow::Result<Phase> {
        let fields = fields(text);
        Ok(Phase {
            run: word(&fields, "run")?,
            name: word(&fields, "phase")?,
            ops: number(&fields, "ops")?.max(1),
            ns: number(&fields, "ns")?,
        })
    }
}

impl Session {
    fn parse(text: &str) -> anyhow::Result<Session> {
        let (figures, line) = text.split_once(" summary=").unwrap_or((text, ""));
        let fields = fields(figures);
        let summary = summary(line).with_context(|| format!("summary {line:?}"))?;
        Ok(Session {
            run: word(&fields, "run")?,
            attach_ms: number(&fields, "attach_ms")?,
            ready_ms: number(&fields, "ready_ms")?,
            traced_ms: number(&fields, "traced_ms")?,
            cpu_ms: number(&fields, "cpu_ms")?,
            bytes: number(&fields, "bytes")?,
            summary,
        })
    }
}

/// The `key=value` words of `text`.
fn fields(text: &str) -> BTreeMap<&str, &str> {
    text.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .collect()
}

fn word(fields: &BTreeMap<&str, &str>, key: &str) -> anyhow::Result<String> {
    fields
        .get(key)
        .map(|value| (*value).to_owned())
        .with_context(|| format!("no {key}="))
}

fn number(fields: &BTreeMap<&str, &str>, key: &str) -> anyhow::Result<u64> {
    word(fields, key)?
        .parse()
        .with_context(|| format!("{key}= is not a number"))
}

/// One line per alert of `locktrace watch --json`: its kind, IRQ and classes in chain order.
pub fn alert_lines(json: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(json)
        .lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(alert) => {
                    let classes: Vec<&str> = alert["classes"]
                        .as_array()
                        .map(|classes| classes.iter().filter_map(|c| c.as_str()).collect())
                        .unwrap_or_default();
                    let irq = alert["irq"]
                        .as_str()
                        .map(|irq| format!(" ({irq})"))
                        .unwrap_or_default();
                    format!(
                        "{}{irq}: {}",
                        alert["kind"].as_str().unwrap_or("?"),
                        classes.join(" → ")
                    )
                }
                Err(err) => format!("not JSON ({err}): {line}"),
            },
        )
        .collect()
}

/// The figures of locktrace's last line, as `watch` and `record` print it
/// (tracer/src/bin/locktrace/live.rs): `locktrace: followed N lock operations; [recorded ]M
/// facts (...) ... (SIGINT; lost: ring_full 5, stack_failed 3; held state: stale_held 2; not
/// sent: repeated_calls 9; covered: release_copy_misses 4)`, `lost: none` when nothing was
/// lost, no `held state` when nothing was corrected, no `not sent` or `covered` when there
/// is none of those. An empty
/// line (locktrace printed no summary) gives `None`.
fn summary(line: &str) -> anyhow::Result<Option<Summary>> {
    if line.is_empty() {
        return Ok(None);
    }
    let rest = line
        .strip_prefix("locktrace: followed ")
        .context("not locktrace's summary")?;
    let (lock_ops, rest) = rest
        .split_once(" lock operations; ")
        .context("no lock operation count")?;
    let rest = rest.strip_prefix("recorded ").unwrap_or(rest);
    let (facts, _) = rest.split_once(" facts").context("no fact count")?;
    let (_, accounting) = line.rsplit_once("lost: ").context("no losses")?;
    let accounting = accounting.trim_end_matches(')');
    // What the programs counted instead of sending, and release copies covered by another
    // copy, are not figures of the table.
    let accounting = ["; not sent: ", "; covered: "]
        .iter()
        .fold(accounting, |text, part| {
            text.split_once(part).map_or(text, |(before, _)| before)
        });
    let (lost, held) = accounting
        .split_once("; held state: ")
        .unwrap_or((accounting, "none"));
    Ok(Some(Summary {
        lock_ops: lock_ops
            .parse()
            .context("the lock operation count is not a number")?,
        facts: facts.parse().context("the fact count is not a number")?,
        losses: counts(lost)?,
        held: counts(held)?,
    }))
}

/// `ring_full 5, stack_failed 3` as pairs; `none` as none.
fn counts(list: &str) -> anyhow::Result<Losses> {
    if list == "none" {
        return Ok(Vec::new());
    }
    list.split(", ")
        .map(|item| {
            let (reason, n) = item.rsplit_once(' ').context("a count without a number")?;
            Ok((reason.to_owned(), n.parse()?))
        })
        .collect()
}

/// Counts as `reason n, ...`, or `none`.
fn listed<'a>(counts: impl Iterator<Item = &'a (String, u64)>) -> String {
    let items: Vec<String> = counts
        .map(|(reason, n)| format!("{reason} {}", grouped(*n as f64)))
        .collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// A rate: grouped digits from 100 up, one decimal below.
fn rate(value: f64) -> String {
    if value >= 100.0 {
        grouped(value)
    } else {
        format!("{value:.1}")
    }
}

/// `value` rounded, with thousands separated by commas.
fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The programs' run times a profile session printed (`LOCKTRACE_PROG_STATS`: "locktrace:
/// program NAME ran N times, T ns each, M ms in all (...)" in the guest's log), as a table
/// sorted by total time, each with its share of the programs' time.
pub fn program_times(log: &str) -> String {
    let mut programs: Vec<(String, u64, u64)> = log
        .lines()
        .filter_map(|line| {
            let rest = line.split_once("locktrace: program ")?.1;
            let (name, rest) = rest.split_once(" ran ")?;
            let (runs, rest) = rest.split_once(" times, ")?;
            let (each, _) = rest.split_once(" ns each")?;
            let runs: u64 = runs.parse().ok()?;
            let each: u64 = each.parse().ok()?;
            Some((name.to_owned(), runs, runs * each))
        })
        .collect();
    programs.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let all: u64 = programs.iter().map(|program| program.2).sum();
    let header = ["program", "runs", "ns each", "ms in all", "share"].map(String::from);
    let rows: Vec<Vec<String>> = programs
        .iter()
        .map(|(name, runs, ns)| {
            vec![
                name.clone(),
                grouped(*runs as f64),
                grouped((*ns / (*runs).max(1)) as f64),
                grouped((*ns / 1_000_000) as f64),
                format!("{:.1}%", *ns as f64 * 100.0 / all.max(1) as f64),
            ]
        })
        .collect();
    format!(
        "programs' time in the profile session: {} ms\n{}",
        grouped((all / 1_000_000) as f64),
        table(&header, &rows, 1)
    )
}

/// `a / b` as `1.23×`, or `—` when either is missing.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".to_owned(),
    }
}

fn show(value: Option<String>) -> String {
    value.unwrap_or_else(|| "—".to_owned())
}

/// A Markdown table, columns padded; the first `left` columns are left-aligned, the others
/// right-aligned.
fn table(header: &[String], rows: &[Vec<String>], left: usize) -> String {
    let width = |i: usize| {
        std::iter::once(&header[i])
            .chain(rows.iter().map(|row| &row[i]))
            .map(|cell| cell.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                if i < left {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            if i < left {
                "-".repeat(w)
            } else {
                format!("{}:", "-".repeat(w.saturating_sub(1)))
            }
        })
        .collect();
    let mut out = vec![line(header), format!("| {} |", rule.join(" | "))];
    out.extend(rows.iter().map(|row| line(row)));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| (*line).to_owned()).collect()
    }

    #[test]
    fn reads_phases_and_sessions_with_locktraces_summaries() {
        let figures = Figures::parse(&lines(&[
            "phase run=bare phase=open ops=8000 ns=2000000000",
            "session run=watch attach_ms=12340 ready_ms=15000 traced_ms=60000 cpu_ms=30000 bytes=0 \
             summary=locktrace: followed 120000 lock operations; 1200 facts (acquire 1100, call 100), \
             10 classes, 5 dependencies, 0 alerts (SIGINT; lost: ring_full 5, stack_failed 3; \
             held state: stale_held 2; not sent: repeated_calls 9; covered: release_copy_misses 4)",
            "session run=record attach_ms=1 ready_ms=2 traced_ms=2 cpu_ms=0 bytes=110 summary=locktrace: \
             followed 7 lock operations; recorded 1 facts (acquire 1) to /traces/bench.lttrace \
             (SIGINT; lost: none)",
            "session run=floor attach_ms=1 ready_ms=2 traced_ms=2 cpu_ms=0 bytes=0 summary=",
        ]))
        .unwrap();
        assert_eq!(
            figures.phases,
            [Phase {
                run: "bare".into(),
                name: "open".into(),
                ops: 8000,
                ns: 2_000_000_000
            }]
        );
        let watch = &figures.sessions[0];
        assert_eq!(watch.attach_ms, 12340);
        assert_eq!(
            watch.summary,
            Some(Summary {
                lock_ops: 120_000,
                facts: 1200,
                losses: vec![("ring_full".into(), 5), ("stack_failed".into(), 3)],
                held: vec![("stale_held".into(), 2)],
            })
        );
        let record = figures.sessions[1].summary.as_ref().unwrap();
        assert_eq!((record.lock_ops, record.facts), (7, 1));
        assert!(record.losses.is_empty() && record.held.is_empty());
        assert_eq!(figures.sessions[2].summary, None);
        let table = figures.session_table();
        let row = table.lines().find(|l| l.starts_with("| watch")).unwrap();
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(
            &cells[5..11],
            [
                "2,000",
                "20.0",
                "1.000%",
                "ring_full 5",
                "3",
                "stale_held 2"
            ],
            "{row}"
        );
    }

    #[test]
    fn a_malformed_line_is_an_error() {
        assert!(Figures::parse(&lines(&["phase run=bare phase=open ops=x ns=1"])).is_err());
        assert!(Figures::parse(&lines(&["something else"])).is_err());
    }

    #[test]
    fn ratios_are_of_time_per_operation_and_rounds_give_their_median() {
        let figures = Figures::parse(&lines(&[
            "phase run=bare phase=fork ops=100 ns=9000000000",
            "phase run=bare phase=fork ops=100 ns=1000000000",
            "phase run=bare phase=fork ops=100 ns=500000000",
            "phase run=floor phase=fork ops=100 ns=1500000000",
            "phase run=watch phase=fork ops=100 ns=3000000000",
        ]))
        .unwrap();
        let table = figures.phase_table();
        let fork = table.lines().find(|l| l.starts_with("| fork")).unwrap();
        let cells: Vec<&str> = fork.split('|').map(str::trim).collect();
        assert_eq!(
            &cells[1..],
            [
                "fork", "100", "100", "66.7", "33.3", "—", "1.50×", "2.00×", "—", ""
            ]
        );
        assert!(table.contains("| all phases (s)"), "{table}");
    }

    #[test]
    fn alerts_are_summed_up_one_a_line() {
        let json = br#"{"kind":"circular_dependency","irq":null,"classes":["a","b"]}
{"kind":"irq_lock_inversion","irq":"hardirq","classes":["c","d"]}
"#;
        assert_eq!(
            alert_lines(json),
            [
                "circular_dependency: a → b",
                "irq_lock_inversion (hardirq): c → d"
            ]
        );
    }

    #[test]
    fn program_times_are_sorted_by_total_with_their_share() {
        let log = "  | locktrace: program acq_spin ran 1000 times, 1500 ns each, 1 ms in all (x)\n\
                   noise\n\
                   locktrace: program rel_spin ran 3000 times, 1500 ns each, 4 ms in all (y)\n";
        let text = program_times(log);
        let rel = text.find("| rel_spin").expect("rel_spin row");
        let acq = text.find("| acq_spin").expect("acq_spin row");
        assert!(rel < acq, "{text}");
        assert!(text.contains("75.0%"), "{text}");
        assert!(text.contains("25.0%"), "{text}");
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(grouped(1234567.4), "1,234,567");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(rate(12.34), "12.3");
    }
}
