//! A session once its probes are attached: the tokio loop that reads the ring on a timer,
//! hands the sink named facts, counters and contention figures, follows the traced command,
//! and, when something ends the session, stops the programs and reads what is still in
//! flight.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use aya::maps::MapData;
use tokio::sync::mpsc::UnboundedReceiver;
use tracer_common::Counter;

use super::{
    SessionError, Signals, Sink, child::ChildEvent, decode, notice, status::Counters,
    symbolize::Namer,
};
use crate::{
    fact::FactRecord,
    metrics::Metrics,
    probes::{Probes, SessionMaps},
    symbols::PinnedNames,
    tracefile::{ContentionSnapshot, DropCounts},
};

/// How long to keep reading after the traced command exits: events still in flight.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);
/// How often the ring is read (the programs never wake the reader): the longest an alert
/// waits. 16 MiB of ring per 10 ms is room for about 500,000 facts a second, far more than
/// even a cold start of a busy kernel brings.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// How often the traced command's C library is looked up again (it may execute another
/// program at any time).
const LIBC_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Most facts handed to the sink at once.
const BATCH: usize = 1024;

/// A session once its probes are attached: the maps it reads, what names the facts, and
/// where they go.
pub(super) struct Live<'a> {
    probes: Probes,
    maps: SessionMaps,
    namer: Namer,
    counters: Counters,
    /// Facts read and named, not yet handed to the sink.
    batch: Vec<FactRecord>,
    sink: &'a mut dyn Sink,
    metrics: Option<&'a Metrics>,
    /// Standard error is a terminal: keep a status line there.
    show_status: bool,
}

impl<'a> Live<'a> {
    /// The session from now on: facts from `maps` named by `namer` go to `sink`, figures to
    /// `metrics` once a second, and a status line to a terminal.
    pub(super) fn new(
        probes: Probes,
        maps: SessionMaps,
        namer: Namer,
        sink: &'a mut dyn Sink,
        metrics: Option<&'a Metrics>,
    ) -> Live<'a> {
        Live {
            probes,
            maps,
            namer,
            counters: Counters::default(),
            batch: Vec::with_capacity(BATCH),
            sink,
            metrics,
            show_status: std::io::stderr().is_terminal(),
        }
    }

    /// Reads the ring every [`DRAIN_INTERVAL`], the counters and contention figures every
    /// second, and follows the command's C library, until the command exits, a signal
    /// arrives or `duration` ends. Returns why it stopped and the command's exit status.
    pub(super) async fn until_stopped(
        &mut self,
        signals: &mut Signals,
        child_pid: Option<u32>,
        mut child_events: Option<UnboundedReceiver<ChildEvent>>,
        duration: Option<Duration>,
    ) -> Result<(&'static str, Option<i32>), SessionError> {
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // The programs never wake us (see tracer-ebpf's emit.rs): the ring is read on this
        // timer.
        let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
        let mut libc_tick = tokio::time::interval(LIBC_CHECK_INTERVAL);
        let has_child = child_events.is_some();
        loop {
            tokio::select! {
                _ = drain_tick.tick() => {
                    self.probes.tick_clock()?;
                    self.drain()?;
                }
                // The command was probed through locktrace's own C library before it
                // executed, and may execute other programs at any time: keep its real
                // library probed.
                _ = libc_tick.tick(), if child_pid.is_some() => {
                    if let Some(pid) = child_pid {
                        self.follow_libc(pid)?;
                    }
                }
                _ = tick.tick() => self.each_second()?,
                event = next_child_event(&mut child_events), if has_child => match event {
                    // Stopped at exit with its memory intact: keep its mappings and name
                    // what it left in the ring before letting it go.
                    Some(ChildEvent::Exiting(done)) => {
                        if let Some(pid) = child_pid {
                            self.namer.snapshot_process(pid);
                        }
                        self.drain()?;
                        drop(done);
                    }
                    Some(ChildEvent::Exited(status)) => {
                        return Ok(("command exited", Some(status)));
                    }
                    None => return Ok(("command exited", None)),
                },
                _ = signals.interrupt.recv() => return Ok(("SIGINT", None)),
                _ = signals.terminate.recv() => return Ok(("SIGTERM", None)),
                _ = sleep_until(deadline) => return Ok(("duration elapsed", None)),
            }
        }
    }

    /// Stops the programs before anything is detached, reads what is still in flight, hands
    /// the sink the last counters and contention figures, says which programs the kernel
    /// skipped, and finishes the sink (`started`: when the session started). Returns the
    /// session's figures and the last counters.
    pub(super) async fn wind_down(
        mut self,
        started: Instant,
    ) -> Result<(Counters, DropCounts), SessionError> {
        self.probes.stop_tracing()?;
        let drain_until = Instant::now() + DRAIN_AFTER_EXIT;
        loop {
            self.drain()?;
            if Instant::now() >= drain_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drops = drop_counts(&self.probes, &mut self.counters);
        self.sink.drops(&drops)?;
        self.contention()?;
        if self.show_status {
            notice(format_args!(""));
        }
        report_recursion_misses(&self.probes);
        report_run_times(&self.probes);
        self.sink.finish(&mut self.namer, started.elapsed())?;
        Ok((self.counters, drops))
    }

    /// Once a second: forget exited processes (but what the sink still refers to), hand the sink the counters and contention
    /// figures, publish `--metrics`, redraw the status line.
    fn each_second(&mut self) -> Result<(), SessionError> {
        let sink = &*self.sink;
        self.namer.forget_exited(|pids| {
            let mut pinned = PinnedNames::default();
            sink.pin_names(pids, &mut pinned);
            pinned
        });
        let drops = drop_counts(&self.probes, &mut self.counters);
        self.sink.drops(&drops)?;
        if let Some(metrics) = self.metrics {
            publish(metrics, &self.counters, drops, &*self.sink);
        }
        self.contention()?;
        if self.show_status {
            let line = self.counters.status_line(&self.sink.status());
            let mut stderr = std::io::stderr();
            let _ = write!(stderr, "\r\x1b[K{line}");
            let _ = stderr.flush();
        }
        Ok(())
    }

    /// Hands the sink the programs' contention figures, their classes named.
    fn contention(&mut self) -> Result<(), SessionError> {
        let snapshot = contention_snapshot(&self.maps.contention);
        self.namer.observe_contention(&snapshot, &self.maps.names);
        self.sink.contention(&snapshot, &mut self.namer)
    }

    /// Probes the C library process `pid` maps now, if it is not probed yet.
    fn follow_libc(&mut self, pid: u32) -> Result<(), SessionError> {
        if let Some(libc) = self.probes.follow_libc(pid)? {
            notice(format_args!(
                "locktrace: the command maps another C library, now probed too: {}",
                libc.display()
            ));
        }
        Ok(())
    }

    /// Reads everything in the ring, in batches, through the namer into the sink.
    fn drain(&mut self) -> Result<(), SessionError> {
        loop {
            self.batch.clear();
            while self.batch.len() < BATCH {
                let Some(item) = self.maps.facts.next() else {
                    break;
                };
                match decode::decode(&item)
                    .and_then(|fact| self.namer.observe(&fact, &self.maps.names))
                {
                    Some(fact) => {
                        self.counters.count(&fact);
                        self.batch.push(fact);
                    }
                    None => self.counters.malformed += 1,
                }
            }
            if self.batch.is_empty() {
                return Ok(());
            }
            self.sink.facts(&self.batch, &mut self.namer)?;
        }
    }
}

/// The traced command's next event; `None` when there is no command or its watcher is gone.
async fn next_child_event(
    events: &mut Option<UnboundedReceiver<ChildEvent>>,
) -> Option<ChildEvent> {
    match events {
        Some(events) => events.recv().await,
        None => None,
    }
}

/// Which programs the kernel skipped: where the events counted as recursion misses went.
fn report_recursion_misses(probes: &Probes) {
    let missed = probes.recursion_misses_by_program();
    if missed.is_empty() {
        return;
    }
    let top: Vec<String> = missed
        .iter()
        .take(5)
        .map(|(program, n)| format!("{program} {n}"))
        .collect();
    notice(format_args!(
        "locktrace: recursion misses by program (the kernel skipped a program already running on the CPU; a release copy's are covered by another copy): {}{}",
        top.join(", "),
        if missed.len() > 5 { ", ..." } else { "" }
    ));
}

/// `LOCKTRACE_PROG_STATS`: where the programs' time went.
fn report_run_times(probes: &Probes) {
    for time in probes.run_times() {
        notice(format_args!(
            "locktrace: program {} ran {} times, {} ns each, {} ms in all ({} bytes of eBPF, {})",
            time.program,
            time.runs,
            time.total.as_nanos() / u128::from(time.runs.max(1)),
            time.total.as_millis(),
            time.xlated_bytes.unwrap_or(0),
            if time.jitted_bytes == 0 {
                "interpreted".to_string()
            } else {
                format!("{} bytes jitted", time.jitted_bytes)
            }
        ));
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Hands the figures of the second to `--metrics` (the status line's, with every counter and
/// the engine's).
fn publish(metrics: &Metrics, counters: &Counters, drops: DropCounts, sink: &dyn Sink) {
    let engine = sink.engine_figures();
    metrics.publish(|figures| {
        figures.facts.clone_from(&counters.total);
        figures.drops = drops;
        figures.engine = engine;
    });
}

/// Reads the programs' contention figures.
fn contention_snapshot(
    map: &aya::maps::HashMap<MapData, u64, tracer_common::ContentionStat>,
) -> ContentionSnapshot {
    let mut stats: Vec<_> = map.iter().filter_map(Result::ok).map(|(_, v)| v).collect();
    stats.sort_by_key(|stat| std::cmp::Reverse(stat.wait_ns));
    ContentionSnapshot {
        monotonic_ns: crate::clock::monotonic_ns(),
        stats,
    }
}

/// Every counter, by name: the programs' counters, the kernel's recursion misses for our
/// programs, and records this side could not decode. Updates `counters`' lock operations.
fn drop_counts(probes: &Probes, counters: &mut Counters) -> DropCounts {
    let programs = probes.counters();
    let ops: u64 = programs
        .iter()
        .filter(|(c, _)| matches!(c, Counter::Acquisitions | Counter::Releases))
        .map(|(_, n)| n)
        .sum();
    counters.set_lock_ops(ops);
    let mut counts: Vec<(String, u64)> = programs
        .into_iter()
        .map(|(counter, n)| (counter.name().to_string(), n))
        .collect();
    let (lost, covered) = probes.recursion_misses();
    counts.push(("recursion_misses".to_string(), lost));
    counts.push(("release_copy_misses".to_string(), covered));
    counts.push(("malformed_records".to_string(), counters.malformed));
    DropCounts {
        monotonic_ns: crate::clock::monotonic_ns(),
        counts,
    }
}
