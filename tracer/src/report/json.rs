//! One JSON object per alert, for tools: the kind, the classes in chain order (with how each
//! was identified, its usage and its contention), the chain edge by edge with symbolized
//! stacks, and the tasks.

use serde_json::{Value, json};

use super::{AlertNotes, Sources, call_site, class_name, stack_frames, usage_names};
use crate::engine::finding::Cause;
use crate::engine::{Alert, ClassId, Engine};

/// Renders one alert as a JSON object. `suppressed` is always there; a suppressed alert
/// (printed under `--show-suppressed`) also has `suppression`: the rule's `file`, `line` and
/// `rule` text. Each of `class_info` has `contended`, `wait_ns` and `max_wait_ns`, null when
/// not traced (a user-space lock, no contention tracepoints, no figures given). Each edge of
/// `chain`, and `trigger`, has `origin`: the recording it came from (`file`, `hostname`,
/// `start_unix_ns`, `kernel_release`) when several were read, null for one. For an irq
/// inversion or an inconsistent lock state, each of `class_info` has `registered`: where the
/// class first got each of the two usage bits in question, as lockdep's report shows it.
pub fn render(alert: &Alert, engine: &Engine, symbols: &dyn Sources, notes: &AlertNotes) -> Value {
    let name = |c: ClassId| class_name(engine, symbols, c);
    let frames = |recording, stack| stack_frames(symbols, recording, stack).unwrap_or_default();
    let origin = |recording| symbols.origin(recording).map(|o| o.to_json());
    let finding = alert.finding();
    let chain: Vec<Value> = finding
        .chain()
        .iter()
        .map(|link| {
            let first = &link.first;
            json!({
                "from": name(link.from),
                "to": name(link.to),
                "read": link.read,
                "stack": frames(first.task.recording, first.stack),
                "stack_recorded": first.stack.is_some_and(|k| symbols.symbols(first.task.recording).stack(k).is_some()),
                "task": first.task,
                "at": call_site(symbols, &first.task, first.caller, engine.class(link.to).kind.is_user()),
                "origin": origin(first.task.recording),
            })
        })
        .collect();
    // Where each class first got the usage bits the finding is about (lockdep's "state was
    // registered at"): the bit's name, the task, the call site and the stack.
    let registered = |c: ClassId| -> Value {
        let usage = &engine.class(c).usage;
        let traces: serde_json::Map<String, Value> = finding
            .usage()
            .into_iter()
            .flat_map(|(a, b)| [a, b])
            .filter_map(|bit| {
                let t = usage.trace(bit)?;
                let user = engine.class(c).kind.is_user();
                Some((
                    bit.name().to_string(),
                    json!({
                        "task": t.task,
                        "at": call_site(symbols, &t.task, t.caller, user),
                        "stack": frames(t.task.recording, t.stack),
                    }),
                ))
            })
            .collect();
        Value::Object(traces)
    };
    let class_info: Vec<Value> = alert
        .classes()
        .iter()
        .map(|&c| {
            let waits = notes.contention.and_then(|n| n.of(c, engine));
            json!({
                "id": c.0,
                "name": name(c),
                "identified_by": engine.class(c).source.describe(),
                "usage": usage_names(engine, c),
                "registered": registered(c),
                "contended": waits.map(|w| w.contended),
                "wait_ns": waits.map(|w| w.wait_ns),
                "max_wait_ns": waits.map(|w| w.max_ns),
            })
        })
        .collect();
    let t = alert.trigger();
    let held: Vec<Value> = alert
        .held()
        .iter()
        .map(|h| {
            json!({
                "class": name(h.class),
                "kind": h.kind.name(),
                "at": call_site(symbols, &t.task, h.caller, h.kind.is_user()),
            })
        })
        .collect();
    let cause = match finding.cause() {
        Cause::Dependency { edge } => json!({"new_dependency": edge}),
        Cause::Usage { class, bit } => json!({"usage_changed": name(class), "bit": bit.name()}),
        Cause::Event => json!("event"),
    };
    json!({
        "kind": finding.kind().name(),
        "irq": finding.irq().map(|i| i.name()),
        "problem": finding.atomic_problem().map(|p| p.name()),
        "classes": alert.classes().iter().map(|&c| name(c)).collect::<Vec<_>>(),
        "class_info": class_info,
        "usage": finding.usage().map(|(a, b)| [a.name(), b.name()]),
        "chain": chain,
        "cause": cause,
        "tasks": alert.tasks(),
        "trigger": {
            "task": t.task,
            "cpu": t.cpu,
            "context": t.context.name(),
            "irqs": format!("{:?}", t.irqs).to_lowercase(),
            "softirqs_disabled": t.softirqs_disabled,
            "lock": t.class.map(name),
            "lock_kind": t.lock_kind.name(),
            "at": call_site(symbols, &t.task, t.caller, t.lock_kind.is_user()),
            "stack": frames(t.task.recording, t.stack),
            "origin": origin(t.task.recording),
            "timestamp_ns": t.timestamp_ns,
        },
        "held": held,
        "suppressed": notes.suppressed_by.is_some(),
        "suppression": notes.suppressed_by.map(|rule| json!({
            "file": rule.file,
            "line": rule.line,
            "rule": rule.text,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::contention::Contention;
    use crate::report::testing::{ALPHA, BETA, alerts, contention_of, nested, symbols, waits};

    #[test]
    fn each_class_carries_its_contention_or_null() {
        let symbols = symbols();
        let mut events = nested(&[&[ALPHA, BETA], &[BETA, ALPHA]]);
        events.extend(waits(ALPHA, 3, 1_000));
        let (engine, found) = alerts(&events, &symbols, |_| {});
        let snapshot = contention_of(&events);
        let figures = |traced: bool| -> Vec<Value> {
            let contention = Contention::new(traced, true, Some(&snapshot), &engine, &symbols);
            let notes = AlertNotes {
                contention: Some(&contention),
                ..AlertNotes::default()
            };
            let value = render(&found[0], &engine, &symbols, &notes);
            value["class_info"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| json!([c["name"], c["contended"], c["wait_ns"], c["max_wait_ns"]]))
                .collect()
        };
        assert_eq!(
            figures(true),
            vec![
                json!(["beta_lock", 0, 0, 0]),
                json!(["alpha_lock", 3, 3_000, 1_000])
            ]
        );
        assert_eq!(
            figures(false),
            vec![
                json!(["beta_lock", null, null, null]),
                json!(["alpha_lock", null, null, null])
            ]
        );
    }
}
