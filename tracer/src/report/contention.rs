//! How contended an alert's locks were, in lockdep's lock_stat spirit: how many waits ended on
//! each class and how long they took, from the `lock:contention_begin`/`contention_end`
//! tracepoints, which the programs sum per class (the recording keeps the sums). An inversion
//! between two contended locks is far more likely to deadlock soon than one between locks
//! nobody waits for, so reports show the figures and `report --sort risk` orders by them.
//!
//! Figures exist only where they were traced: kernel locks, when both tracepoints attached.
//! A user-space lock (the pthread probes do not see waits) or a session without the
//! tracepoints has none, which reports say rather than printing zero.

use rustc_hash::FxHashMap;

use crate::{
    engine::{Alert, ClassId, Engine},
    probes::catalog,
    symbols::Symbols,
    tracefile::{ContentionSnapshot, ProbeStatus},
};

/// The waits that ended on one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waits {
    /// How many.
    pub contended: u64,
    /// Their total length, in nanoseconds.
    pub wait_ns: u64,
    /// The longest, in nanoseconds.
    pub max_ns: u64,
}

/// A session's contention figures, by engine class.
#[derive(Clone, Debug, Default)]
pub struct Contention {
    /// Both contention tracepoints attached.
    traced: bool,
    /// The figures cover the whole session (a replay), not the session so far (live).
    pub whole_session: bool,
    by_class: FxHashMap<ClassId, Waits>,
}

impl Contention {
    /// True when `probes` (a session's, or a recording's header) say both contention
    /// tracepoints attached.
    pub fn traced_by(probes: &[ProbeStatus]) -> bool {
        let names: Vec<String> = catalog::TRACEPOINTS
            .iter()
            .filter(|p| p.program.starts_with("tp_contention_"))
            .map(|p| p.display_name(p.targets[0]))
            .collect();
        !names.is_empty()
            && names
                .iter()
                .all(|name| probes.iter().any(|s| s.attached && &s.name == name))
    }

    /// The figures of `snapshot` (cumulative, as the programs sum them per class) on the
    /// engine's classes; several of the programs' classes may be one of the engine's (a
    /// site class per function), and their figures add up. `traced` says whether figures
    /// exist at all: without it every kernel lock is "not traced".
    pub fn new(
        traced: bool,
        whole_session: bool,
        snapshot: Option<&ContentionSnapshot>,
        engine: &Engine,
        symbols: &Symbols,
    ) -> Contention {
        let mut contention = Contention {
            traced,
            whole_session,
            by_class: FxHashMap::default(),
        };
        contention.add(snapshot, engine, symbols, engine.recording());
        contention
    }

    /// The whole-session figures of several recordings read by one merging engine, one
    /// (traced, snapshot, symbols) per recording in the engine's order, summed per class.
    /// They count as traced only when every recording traced them: a class seen only where
    /// contention was not traced must not pass for never contended.
    pub fn merged(
        recordings: &[(bool, Option<&ContentionSnapshot>, &Symbols)],
        engine: &Engine,
    ) -> Contention {
        let mut contention = Contention {
            traced: recordings.iter().all(|(traced, _, _)| *traced),
            whole_session: true,
            by_class: FxHashMap::default(),
        };
        for (recording, (_, snapshot, symbols)) in recordings.iter().enumerate() {
            contention.add(*snapshot, engine, symbols, recording as u16);
        }
        contention
    }

    /// Adds the figures of `snapshot`, taken in `recording`, to the engine's classes.
    fn add(
        &mut self,
        snapshot: Option<&ContentionSnapshot>,
        engine: &Engine,
        symbols: &Symbols,
        recording: u16,
    ) {
        let stats = snapshot.map_or(&[][..], |s| &s.stats);
        for stat in stats {
            if let Some(class) = engine.find_class(&stat.class, symbols, recording) {
                let waits = self.by_class.entry(class).or_default();
                waits.contended += stat.count;
                waits.wait_ns += stat.wait_ns;
                waits.max_ns = waits.max_ns.max(stat.max_ns);
            }
        }
    }

    /// The waits of `class` (zero when it was never contended), or `None` when they were
    /// not traced: a user-space lock, or a session without the tracepoints.
    pub fn of(&self, class: ClassId, engine: &Engine) -> Option<Waits> {
        if !self.traced || engine.class(class).kind.is_user() {
            return None;
        }
        Some(self.by_class.get(&class).copied().unwrap_or_default())
    }

    /// How likely `alert` is to deadlock soon, judged by its locks' contention (see
    /// [`Risk`]). Locks whose contention was not traced count as never contended.
    pub fn risk(&self, alert: &Alert, engine: &Engine) -> Risk {
        let waits: Vec<Waits> = alert
            .classes()
            .iter()
            .map(|&class| self.of(class, engine).unwrap_or_default())
            .collect();
        Risk {
            all_contended: !waits.is_empty() && waits.iter().all(|w| w.contended > 0),
            least_contended: waits.iter().map(|w| w.contended).min().unwrap_or(0),
            wait_ns: waits.iter().map(|w| w.wait_ns).sum(),
        }
    }
}

/// An alert's contention risk, ordered from low to high: alerts whose locks were **all**
/// contended come above the others (a deadlock needs every lock of the cycle wanted at once),
/// then the one whose least contended lock was contended more often (that lock bounds how
/// often the whole scenario can happen), then the one with more time spent waiting on its
/// locks altogether.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Risk {
    /// Every lock of the alert was contended at least once.
    pub all_contended: bool,
    /// The smallest contention count among the alert's locks.
    pub least_contended: u64,
    /// The total wait on the alert's locks, in nanoseconds.
    pub wait_ns: u64,
}

/// Sorts `alerts` by [`Risk`], highest first; alerts of equal risk keep their order.
pub fn sort_by_risk(alerts: &mut [Alert], contention: &Contention, engine: &Engine) {
    alerts.sort_by_cached_key(|alert| std::cmp::Reverse(contention.risk(alert, engine)));
}

/// `1,234`: a count people read at a glance.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `850 ns`, `12.5 us`, `5.6 ms`, `2.1 s`: a wait in its natural unit.
pub fn duration(ns: u64) -> String {
    let ns_f = ns as f64;
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} us", ns_f / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", ns_f / 1e6),
        _ => format!("{:.1} s", ns_f / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::LockKind;

    use super::*;
    use crate::report::testing::{
        ALPHA, BETA, GAMMA, alerts, contention_of, nested, symbols, waits,
    };

    /// Both contention tracepoints, attached.
    fn contention_probes() -> Vec<ProbeStatus> {
        ["tp:lock:contention_begin", "tp:lock:contention_end"]
            .into_iter()
            .map(|name| ProbeStatus {
                name: name.into(),
                kind: "tp_btf".into(),
                attached: true,
                detail: String::new(),
            })
            .collect()
    }

    /// The AB-BA between alpha and beta, then the one between beta and gamma, with the
    /// contention `extra` events bring, as the programs would have summed it.
    fn session(extra: &[tracer_common::Event]) -> (Engine, Vec<Alert>, ContentionSnapshot) {
        let symbols = symbols();
        let mut events = nested(&[
            &[ALPHA, BETA],
            &[BETA, ALPHA],
            &[BETA, GAMMA],
            &[GAMMA, BETA],
        ]);
        events.extend_from_slice(extra);
        let (engine, found) = alerts(&events, &symbols, |_| {});
        (engine, found, contention_of(&events))
    }

    #[test]
    fn the_contention_tracepoints_must_both_have_attached() {
        let mut probes = contention_probes();
        assert!(Contention::traced_by(&probes));
        probes[1].attached = false;
        assert!(!Contention::traced_by(&probes));
        assert!(!Contention::traced_by(&probes[..1]));
        assert!(!Contention::traced_by(&[]));
    }

    #[test]
    fn waits_are_summed_on_the_engines_classes() {
        let mut extra = waits(ALPHA, 3, 2_000);
        extra.extend(waits(BETA, 1, 500));
        let (engine, found, snapshot) = session(&extra);
        let symbols = symbols();
        let c = Contention::new(true, true, Some(&snapshot), &engine, &symbols);
        assert_eq!(found.len(), 2);
        let class = |name: &str| {
            let class = engine.classes().iter().find(|c| c.name(&symbols) == name);
            class.unwrap().id
        };
        let (alpha, beta, gamma) = (class("alpha_lock"), class("beta_lock"), class("gamma_lock"));
        assert_eq!(
            c.of(alpha, &engine),
            Some(Waits {
                contended: 3,
                wait_ns: 6_000,
                max_ns: 2_000
            })
        );
        assert_eq!(c.of(beta, &engine).map(|w| w.contended), Some(1));
        assert_eq!(
            c.of(gamma, &engine),
            Some(Waits::default()),
            "never contended"
        );
        let untraced = Contention::new(false, true, Some(&snapshot), &engine, &symbols);
        assert_eq!(untraced.of(alpha, &engine), None, "not traced, not zero");
    }

    #[test]
    fn a_user_lock_has_no_contention_figures() {
        let symbols = symbols();
        let mut events = nested(&[&[0x1000, 0x2000], &[0x2000, 0x1000]]);
        for ev in &mut events {
            // Two threads of one process.
            ev.lock_kind = LockKind::PthreadMutex as u32;
            ev.pid = 100;
        }
        let (engine, found) = alerts(&events, &symbols, |_| {});
        let c = Contention::new(true, true, None, &engine, &symbols);
        assert_eq!(c.of(found[0].classes()[0], &engine), None);
    }

    #[test]
    fn alerts_whose_locks_all_waited_come_first_then_by_their_least_contended_lock() {
        let symbols = symbols();
        let order = |extra: &[tracer_common::Event]| -> Vec<Vec<ClassId>> {
            let (engine, mut found, snapshot) = session(extra);
            let c = Contention::new(true, true, Some(&snapshot), &engine, &symbols);
            sort_by_risk(&mut found, &c, &engine);
            found.iter().map(|a| a.classes().to_vec()).collect()
        };
        let (_, found, _) = session(&[]);
        let (ab, bg) = (found[0].classes().to_vec(), found[1].classes().to_vec());
        assert_eq!(
            order(&[]),
            vec![ab.clone(), bg.clone()],
            "ties keep the order found"
        );
        // alpha waited for a lot, gamma never: beta/gamma is not all contended.
        let lopsided = [waits(ALPHA, 50, 1_000), waits(BETA, 1, 10)].concat();
        assert_eq!(order(&lopsided), vec![ab.clone(), bg.clone()]);
        // Both of beta/gamma waited, and its least contended lock more than alpha/beta's.
        let both = [
            waits(ALPHA, 1, 1_000_000),
            waits(BETA, 5, 10),
            waits(GAMMA, 2, 10),
        ]
        .concat();
        assert_eq!(order(&both), vec![bg.clone(), ab.clone()]);
        // Equal least counts: the longer total wait first.
        let tie = [
            waits(ALPHA, 2, 10),
            waits(BETA, 2, 10),
            waits(GAMMA, 2, 5_000),
        ]
        .concat();
        assert_eq!(order(&tie), vec![bg, ab]);
    }

    #[test]
    fn figures_read_at_a_glance() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234), "1,234");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(duration(850), "850 ns");
        assert_eq!(duration(12_500), "12.5 us");
        assert_eq!(duration(5_600_000), "5.6 ms");
        assert_eq!(duration(2_100_000_000), "2.1 s");
    }
}
