//! lockdep-shaped text reports: the same headlines, sections and "Possible unsafe locking
//! scenario" tables a kernel developer knows from `dmesg`, so they can be read the same way.
//! Each class line also says how the class was identified, since the tracer had to guess
//! what lockdep knows from the init site.
//!
//! Every name from the traced world (classes, tasks, call sites, stack frames) goes through
//! [`printable`]: a thread name cannot clear the reader's screen or forge a report line.

use std::fmt::Write;

use tracer_common::{ExecContext, IrqState};

use super::{
    AlertNotes, Sources, call_site, class_name,
    contention::{self, Contention},
    printable, stack_frames,
};
use crate::engine::alert::HeldSummary;
use crate::engine::finding::{
    AtomicContext, ChainLink, CircularDependency, Finding, InconsistentLockState, InversionCause,
    IrqLockInversion, RecursiveLocking,
};
use crate::engine::{Alert, ClassId, Engine, IrqKind, TaskRef, UsageBit};
use crate::symbols::StackKey;

/// Renders one alert as lockdep would print it; a suppressed one (printed under
/// `--show-suppressed`) starts with `[suppressed by FILE:LINE: RULE]`, and with contention
/// figures it ends with a line per lock saying how contended it was.
/// When several recordings were read, it also says which recording the event and each
/// dependency and usage trace came from.
pub fn render(alert: &Alert, engine: &Engine, symbols: &dyn Sources, notes: &AlertNotes) -> String {
    let r = Renderer {
        engine,
        symbols,
        alert,
    };
    let mut out = String::new();
    if let Some(rule) = notes.suppressed_by {
        let _ = writeln!(out, "[suppressed by {}]", printable(&rule.to_string()));
    }
    match alert.finding() {
        Finding::CircularDependency(cycle) => r.circular(&mut out, cycle),
        Finding::IrqLockInversion(inversion) => match inversion.cause {
            InversionCause::NewDependency { edge } => {
                r.inversion_by_dependency(&mut out, inversion, edge);
            }
            InversionCause::NewUsage { class, .. } => {
                r.inversion_by_usage(&mut out, inversion, class);
            }
        },
        Finding::InconsistentLockState(state) => r.inconsistent(&mut out, state),
        Finding::RecursiveLocking(recursive) => r.recursive(&mut out, recursive),
        Finding::AtomicContext(misuse) => r.atomic(&mut out, misuse),
    }
    if let Some(contention) = notes.contention {
        r.contention(&mut out, contention);
    }
    out
}

struct Renderer<'a> {
    engine: &'a Engine,
    symbols: &'a dyn Sources,
    alert: &'a Alert,
}

fn banner(out: &mut String, title: &str) {
    let rule = |c: char| std::iter::repeat_n(c, title.len()).collect::<String>();
    let _ = writeln!(out, "{}\n{title}\n{}", rule('='), rule('-'));
}

const CPU_TABLE_HEAD: &str =
    "       CPU0                    CPU1\n       ----                    ----\n";
const CPU1: &str = "                               ";

impl Renderer<'_> {
    fn name(&self, class: ClassId) -> String {
        printable(&class_name(self.engine, self.symbols, class)).into_owned()
    }

    /// `comm/tid`, as lockdep names a task.
    fn task(&self, task: &TaskRef) -> String {
        printable(&task.to_string()).into_owned()
    }

    /// A call site of `task`, looked up per process when the lock is a user-space one.
    fn site(&self, task: &TaskRef, addr: u64, user: bool) -> String {
        printable(&call_site(self.symbols, task, addr, user)).into_owned()
    }

    /// `{indent}from recording: FILE (host H, started T)` when several recordings were read.
    fn origin(&self, out: &mut String, recording: u16, indent: &str) {
        if let Some(origin) = self.symbols.origin(recording) {
            let _ = writeln!(
                out,
                "{indent}from recording: {}",
                printable(&origin.describe())
            );
        }
    }

    fn is_user(&self, class: ClassId) -> bool {
        self.engine.class(class).kind.is_user()
    }

    /// ` (name){usage}, at: site [identified by: ...]`
    fn class_line(&self, class: ClassId, at: Option<u64>) -> String {
        let c = self.engine.class(class);
        let mut line = format!(
            " ({}){{{}}}",
            self.name(class),
            c.usage.mask.lockdep_chars()
        );
        if let Some(addr) = at {
            let task = &self.alert.trigger().task;
            let _ = write!(line, ", at: {}", self.site(task, addr, self.is_user(class)));
        }
        let _ = write!(line, " [identified by: {}]", c.source.describe());
        line
    }

    /// lock_stat's figures for each lock of the alert: ` (name): contended 1,234 times, 5.6 ms
    /// waiting (longest 1.2 ms)`, `never contended`, or `contention: not traced`.
    fn contention(&self, out: &mut String, contention: &Contention) {
        if self.alert.classes().is_empty() {
            return;
        }
        let when = if contention.whole_session {
            "during the session"
        } else {
            "so far"
        };
        let _ = writeln!(out, "\nlock contention {when}:");
        let mut seen = Vec::new();
        for &class in self.alert.classes() {
            if seen.contains(&class) {
                continue;
            }
            seen.push(class);
            let figures = match contention.of(class, self.engine) {
                None => "contention: not traced".to_string(),
                Some(w) if w.contended == 0 => "never contended".to_string(),
                Some(w) => format!(
                    "contended {} time{}, {} waiting (longest {})",
                    contention::count(w.contended),
                    if w.contended == 1 { "" } else { "s" },
                    contention::duration(w.wait_ns),
                    contention::duration(w.max_ns)
                ),
            };
            let _ = writeln!(out, " ({}): {figures}", self.name(class));
        }
    }

    fn frames(&self, out: &mut String, recording: u16, stack: Option<StackKey>, indent: &str) {
        match stack_frames(self.symbols, recording, stack) {
            Some(frames) if !frames.is_empty() => {
                for frame in frames {
                    let _ = writeln!(out, "{indent}{}", printable(&frame));
                }
            }
            _ => {
                let _ = writeln!(out, "{indent}(stack not recorded)");
            }
        }
    }

    /// lockdep's `[HC0[0]:SC0[0]:HE1:SE1]` irq state of the trigger.
    fn irq_state(&self) -> String {
        let t = self.alert.trigger();
        let hc = (t.context == ExecContext::Hardirq) as u8;
        let sc = (t.context == ExecContext::Softirq) as u8;
        let he = match t.irqs {
            IrqState::Enabled => "1",
            IrqState::Disabled => "0",
            IrqState::Unknown => "?",
        };
        let se = match t.softirqs_disabled {
            Some(false) => "1",
            Some(true) => "0",
            None => "?",
        };
        format!("[HC{hc}[{hc}]:SC{sc}[{sc}]:HE{he}:SE{se}]")
    }

    fn held_caller(&self, class: ClassId) -> Option<u64> {
        self.alert
            .held()
            .iter()
            .rev()
            .find(|h| h.class == class)
            .map(|h| h.caller)
    }

    fn held_locks(&self, out: &mut String) {
        let task = self.task(&self.alert.trigger().task);
        if self.alert.held().is_empty() {
            let _ = writeln!(out, "no locks held by {task}.");
            return;
        }
        let n = self.alert.held().len();
        let _ = writeln!(
            out,
            "{n} lock{} held by {task}:",
            if n == 1 { "" } else { "s" }
        );
        for (i, HeldSummary { class, caller, .. }) in self.alert.held().iter().enumerate() {
            let _ = writeln!(out, " #{i}:{}", self.class_line(*class, Some(*caller)));
        }
    }

    fn backtrace(&self, out: &mut String) {
        let t = self.alert.trigger();
        let _ = writeln!(out, "\nstack backtrace:");
        self.frames(out, t.task.recording, t.stack, "  ");
        self.origin(out, t.task.recording, "  ");
    }

    /// One `-> #n (class){usage}:` entry with the stack of the dependency into it, shown by
    /// `task`.
    fn chain_entry(
        &self,
        out: &mut String,
        n: usize,
        class: ClassId,
        stack: Option<StackKey>,
        task: &TaskRef,
    ) {
        let _ = writeln!(out, "-> #{n}{}:", self.class_line(class, None));
        self.frames(out, task.recording, stack, "       ");
        self.origin(out, task.recording, "       ");
        let _ = writeln!(out);
    }

    fn chain_section(&self, out: &mut String, links: &[ChainLink]) {
        for (i, link) in links.iter().enumerate().rev() {
            self.chain_entry(out, i, link.to, link.first.stack, &link.first.task);
        }
    }

    fn circular(&self, out: &mut String, cycle: &CircularDependency) {
        let t = self.alert.trigger();
        let chain = &cycle.chain;
        let (prev, next) = (chain[0].from, chain[0].to);
        banner(
            out,
            "WARNING: possible circular locking dependency detected",
        );
        let _ = writeln!(out, "{} is trying to acquire lock:", self.task(&t.task));
        let _ = writeln!(out, "{}\n", self.class_line(next, Some(t.caller)));
        let _ = writeln!(out, "but task is already holding lock:");
        let _ = writeln!(out, "{}\n", self.class_line(prev, self.held_caller(prev)));
        let _ = writeln!(out, "which lock already depends on the new lock.\n\n");
        let _ = writeln!(
            out,
            "the existing dependency chain (in reverse order) is:\n"
        );
        let path = &chain[1..];
        for (i, link) in path.iter().enumerate().rev() {
            self.chain_entry(out, i + 1, link.to, link.first.stack, &link.first.task);
        }
        self.chain_entry(out, 0, next, t.stack, &t.task);
        let _ = writeln!(out, "other info that might help us debug this:\n");
        let (target, source) = (prev, next);
        let parent = path.last().map_or(source, |l| l.from);
        if parent != source {
            let _ = writeln!(
                out,
                "Chain exists of:\n  {} --> {} --> {}\n",
                self.name(source),
                self.name(parent),
                self.name(target)
            );
        }
        let _ = writeln!(out, " Possible unsafe locking scenario:\n");
        out.push_str(CPU_TABLE_HEAD);
        let _ = writeln!(out, "  lock({});", self.name(target));
        let _ = writeln!(out, "{CPU1}lock({});", self.name(parent));
        let _ = writeln!(out, "{CPU1}lock({});", self.name(target));
        let _ = writeln!(out, "  lock({});", self.name(source));
        let _ = writeln!(out, "\n *** DEADLOCK ***\n");
        self.held_locks(out);
        self.backtrace(out);
    }

    fn irq_scenario(
        &self,
        out: &mut String,
        irq: IrqKind,
        safe: ClassId,
        middle: ClassId,
        unsafe_class: ClassId,
    ) {
        if middle != unsafe_class {
            let _ = writeln!(
                out,
                "Chain exists of:\n  {} --> {} --> {}\n",
                self.name(safe),
                self.name(middle),
                self.name(unsafe_class)
            );
        }
        let disable = match irq {
            IrqKind::Hardirq => "local_irq_disable();",
            IrqKind::Softirq => "local_bh_disable();",
        };
        let _ = writeln!(out, " Possible interrupt unsafe locking scenario:\n");
        out.push_str(CPU_TABLE_HEAD);
        let _ = writeln!(out, "  lock({});", self.name(unsafe_class));
        let _ = writeln!(out, "{CPU1}{disable}");
        let _ = writeln!(out, "{CPU1}lock({});", self.name(safe));
        let _ = writeln!(out, "{CPU1}lock({});", self.name(middle));
        let _ = writeln!(out, "  <Interrupt>");
        let _ = writeln!(out, "    lock({});", self.name(safe));
        let _ = writeln!(out, "\n *** DEADLOCK ***\n");
    }

    /// Where `class` first got `bit`.
    fn usage_trace(&self, out: &mut String, class: ClassId, bit: UsageBit) {
        match self.engine.class(class).usage.trace(bit) {
            Some(t) => {
                let _ = writeln!(
                    out,
                    "  (by {} at {})",
                    self.task(&t.task),
                    self.site(&t.task, t.caller, self.is_user(class))
                );
                self.frames(out, t.task.recording, t.stack, "  ");
                self.origin(out, t.task.recording, "  ");
            }
            None => {
                let _ = writeln!(out, "  (stack not recorded)");
            }
        }
    }

    /// lockdep's "irq-safe -> irq-unsafe lock order detected": the dependency `chain[edge]`,
    /// being added, connects an irq-safe class to an irq-unsafe one.
    fn inversion_by_dependency(&self, out: &mut String, inversion: &IrqLockInversion, edge: usize) {
        let t = self.alert.trigger();
        let IrqLockInversion {
            safe,
            safe_bit,
            unsafe_class,
            unsafe_bit,
            ref chain,
            ..
        } = *inversion;
        let irq = inversion.irq();
        let up = irq.upper();
        let link = chain[edge];
        let (prev, next) = (link.from, link.to);
        banner(
            out,
            &format!("WARNING: {up}-safe -> {up}-unsafe lock order detected"),
        );
        let _ = writeln!(
            out,
            "{} {} is trying to acquire:",
            self.task(&t.task),
            self.irq_state()
        );
        let _ = writeln!(out, "{}\n", self.class_line(next, Some(t.caller)));
        let _ = writeln!(out, "and this task is already holding:");
        let _ = writeln!(out, "{}", self.class_line(prev, self.held_caller(prev)));
        let _ = writeln!(out, "which would create a new lock dependency:");
        let chars = |c: ClassId| self.engine.class(c).usage.mask.lockdep_chars();
        let _ = writeln!(
            out,
            " ({}){{{}}} -> ({}){{{}}}\n",
            self.name(prev),
            chars(prev),
            self.name(next),
            chars(next)
        );
        let _ = writeln!(
            out,
            "but this new dependency connects a {up}-irq-safe lock:"
        );
        let _ = writeln!(out, "{}\n", self.class_line(safe, None));
        let _ = writeln!(out, "... which became {up}-irq-safe at:");
        self.usage_trace(out, safe, safe_bit);
        let _ = writeln!(out, "\nto a {up}-irq-unsafe lock:");
        let _ = writeln!(out, "{}\n", self.class_line(unsafe_class, None));
        let _ = writeln!(out, "... which became {up}-irq-unsafe at:\n...");
        self.usage_trace(out, unsafe_class, unsafe_bit);
        let _ = writeln!(out, "\nother info that might help us debug this:\n");
        let middle = if prev == safe { next } else { prev };
        self.irq_scenario(out, irq, safe, middle, unsafe_class);
        self.held_locks(out);
        let _ = writeln!(
            out,
            "\nthe dependencies between {up}-irq-safe lock and the holding lock:"
        );
        self.chain_section(out, &chain[..edge]);
        if edge == 0 {
            let _ = writeln!(out, " (the holding lock is the {up}-irq-safe lock)\n");
        }
        let _ = writeln!(
            out,
            "the dependencies between the lock to be acquired and {up}-irq-unsafe lock:"
        );
        self.chain_section(out, &chain[edge + 1..]);
        if edge + 1 == chain.len() {
            let _ = writeln!(
                out,
                " (the lock to be acquired is the {up}-irq-unsafe lock)"
            );
        }
        self.backtrace(out);
    }

    /// lockdep's "possible irq lock inversion dependency": `class`, one end of an existing
    /// chain from an irq-safe class to an irq-unsafe one, just gained the usage bit that
    /// makes it so.
    fn inversion_by_usage(&self, out: &mut String, inversion: &IrqLockInversion, class: ClassId) {
        let t = self.alert.trigger();
        let IrqLockInversion {
            safe,
            safe_bit,
            unsafe_class,
            unsafe_bit,
            ref chain,
            ..
        } = *inversion;
        let irq = inversion.irq();
        let up = irq.upper();
        banner(
            out,
            "WARNING: possible irq lock inversion dependency detected",
        );
        let _ = writeln!(
            out,
            "{} {} just changed the state of lock:",
            self.task(&t.task),
            self.irq_state()
        );
        let _ = writeln!(out, "{}", self.class_line(class, Some(t.caller)));
        let forwards = class == safe;
        let other = if forwards {
            let _ = writeln!(
                out,
                "but this lock took another, {up}-unsafe lock in the past:"
            );
            unsafe_class
        } else {
            let _ = writeln!(
                out,
                "but this lock was taken by another, {up}-safe lock in the past:"
            );
            safe
        };
        let _ = writeln!(out, "{}\n", self.class_line(other, None));
        let _ = writeln!(
            out,
            "and interrupts could create inverse lock ordering between them.\n\n"
        );
        let _ = writeln!(out, "... {} became {up}-irq-safe at:", self.name(safe));
        self.usage_trace(out, safe, safe_bit);
        let _ = writeln!(
            out,
            "... {} became {up}-irq-unsafe at:",
            self.name(unsafe_class)
        );
        self.usage_trace(out, unsafe_class, unsafe_bit);
        let _ = writeln!(out, "\nother info that might help us debug this:\n");
        let middle = match chain.first() {
            Some(first) if chain.len() > 1 => first.to,
            _ => unsafe_class,
        };
        self.irq_scenario(out, irq, safe, middle, unsafe_class);
        self.held_locks(out);
        let _ = writeln!(
            out,
            "\nthe shortest dependencies between 2nd lock and 1st lock:"
        );
        self.chain_section(out, chain);
        self.backtrace(out);
    }

    fn inconsistent(&self, out: &mut String, state: &InconsistentLockState) {
        let t = self.alert.trigger();
        let InconsistentLockState { class, old, new } = *state;
        banner(out, "WARNING: inconsistent lock state");
        let _ = writeln!(
            out,
            "inconsistent {{{}}} -> {{{}}} usage.",
            old.lockdep_name(),
            new.lockdep_name()
        );
        let _ = writeln!(out, "{} {} takes:", self.task(&t.task), self.irq_state());
        let _ = writeln!(out, "{}", self.class_line(class, Some(t.caller)));
        let _ = writeln!(out, "{{{}}} state was registered at:", old.lockdep_name());
        self.usage_trace(out, class, old);
        let _ = writeln!(out, "\nother info that might help us debug this:");
        let _ = writeln!(out, " Possible unsafe locking scenario:\n");
        let name = self.name(class);
        let _ = writeln!(out, "       CPU0\n       ----");
        let _ = writeln!(out, "  lock({name});\n  <Interrupt>\n    lock({name});");
        let _ = writeln!(out, "\n *** DEADLOCK ***\n");
        self.held_locks(out);
        self.backtrace(out);
    }

    fn recursive(&self, out: &mut String, recursive: &RecursiveLocking) {
        let t = self.alert.trigger();
        let RecursiveLocking { held, acquiring } = *recursive;
        banner(out, "WARNING: possible recursive locking detected");
        let _ = writeln!(out, "{} is trying to acquire lock:", self.task(&t.task));
        let _ = writeln!(out, "{}\n", self.class_line(acquiring, Some(t.caller)));
        let _ = writeln!(out, "but task is already holding lock:");
        let _ = writeln!(out, "{}\n", self.class_line(held, self.held_caller(held)));
        let _ = writeln!(out, "other info that might help us debug this:");
        let _ = writeln!(out, " Possible unsafe locking scenario:\n");
        let name = self.name(held);
        let _ = writeln!(out, "       CPU0\n       ----");
        let _ = writeln!(out, "  lock({name});\n  lock({name});");
        let _ = writeln!(out, "\n *** DEADLOCK ***\n");
        let _ = writeln!(out, " May be due to missing lock nesting notation\n");
        self.held_locks(out);
        self.backtrace(out);
    }

    fn atomic(&self, out: &mut String, misuse: &AtomicContext) {
        let t = self.alert.trigger();
        let problem = misuse.problem();
        let site = self.site(&t.task, t.caller, t.lock_kind.is_user());
        banner(
            out,
            &format!("BUG: sleeping function called from invalid context at {site}"),
        );
        let _ = writeln!(out, "{} ({})", problem.what(), problem.name());
        let in_irq = matches!(
            t.context,
            ExecContext::Softirq | ExecContext::Hardirq | ExecContext::Nmi
        );
        let spinning = self.alert.held().iter().any(|h| h.kind.is_spinning());
        let irqs_disabled = match t.irqs {
            IrqState::Disabled => "1",
            IrqState::Enabled => "0",
            IrqState::Unknown => "?",
        };
        let _ = writeln!(
            out,
            "in_atomic(): {}, irqs_disabled(): {irqs_disabled}, context: {}, pid: {}, name: {}",
            (in_irq || spinning) as u8,
            t.context.name(),
            t.task.tid,
            printable(&t.task.comm())
        );
        if let AtomicContext::SleepingLock { lock, .. } = *misuse {
            let _ = writeln!(out, "acquiring:\n{}", self.class_line(lock, Some(t.caller)));
        }
        self.held_locks(out);
        self.backtrace(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::{
        ALPHA, BETA, GAMMA, alerts, contention_of, nested, symbols, waits,
    };

    #[test]
    fn each_lock_says_how_contended_it_was_or_that_it_was_not_traced() {
        let symbols = symbols();
        let mut events = nested(&[
            &[ALPHA, BETA],
            &[BETA, ALPHA],
            &[GAMMA, BETA],
            &[BETA, GAMMA],
        ]);
        events.extend(waits(ALPHA, 1_234, 4_538));
        let (engine, found) = alerts(&events, &symbols, |_| {});
        let snapshot = contention_of(&events);
        let render = |alert, contention: Option<&Contention>| {
            let notes = AlertNotes {
                contention,
                ..AlertNotes::default()
            };
            render(alert, &engine, &symbols, &notes)
        };
        let traced = Contention::new(true, true, Some(&snapshot), &engine, &symbols);
        let text = render(&found[0], Some(&traced));
        assert!(
            text.ends_with(
                "\nlock contention during the session:\n \
                 (beta_lock): never contended\n \
                 (alpha_lock): contended 1,234 times, 5.6 ms waiting (longest 4.5 us)\n"
            ),
            "{text}"
        );
        let live = Contention::new(true, false, Some(&snapshot), &engine, &symbols);
        let text = render(&found[1], Some(&live));
        assert!(text.contains("\nlock contention so far:\n"), "{text}");
        let untraced = Contention::new(false, true, Some(&snapshot), &engine, &symbols);
        let text = render(&found[0], Some(&untraced));
        assert!(
            text.ends_with(
                " (beta_lock): contention: not traced\n (alpha_lock): contention: not traced\n"
            ),
            "{text}"
        );
        assert!(!render(&found[0], None).contains("contention"));
    }
}
