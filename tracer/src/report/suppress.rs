//! Suppression files: known, accepted alerts that reports leave out (TSan's suppression files
//! and valgrind's `--suppressions`, for lockdep-style reports).
//!
//! One rule per line: an alert kind (`circular_dependency`, ... as [`AlertKind::name`] spells
//! it, or `*` for any), then any number of patterns, separated by white space:
//!
//! ```text
//! # the AB-BA between the two journal locks, known and accepted
//! circular_dependency  class:jbd2_*  class:&ext4_inode_cache+0x*
//! atomic_context       function:legacy_probe*
//! *                    class:"spinlock (taken in old_driver_*)"
//! ```
//!
//! A rule matches an alert when all of these hold:
//! - its kind is the alert's kind, or `*`;
//! - if it has `class:` patterns, **every** lock class of the alert matches one of them (and
//!   the alert has at least one): a rule names a set of locks, and an alert that drags in a
//!   lock the rule does not name is another problem, still reported;
//! - **each** `function:` pattern matches some function of the alert, as TSan's `deadlock:`
//!   and `race:` lines do: a frame of the trigger's stack, of a dependency's stack or of a
//!   usage trace the report prints, or a call site it names.
//!
//! Patterns are globs over the names reports print: `*` is any run of characters, `?` one
//! character, everything else is itself (names such as `&kmalloc-64+0x8` or `lock#ffff...`
//! hold no other wildcard). Class names are stable across runs and machines when they come
//! from symbols (static locks, per-CPU variables, slab caches and offsets, functions, a user
//! lock's symbol); where a name holds an address (an unnamed lock), match around it with `*`.
//! A pattern holding white space is written in double quotes. `#` starts a comment where a
//! word could start; blank lines are ignored. The first rule that matches is the one reported.

use std::{fmt, path::Path};

use super::{Sources, class_name};
use crate::{
    engine::{Alert, AlertKind, Engine, TaskRef},
    symbols::StackKey,
};

/// Why a suppression file was refused: where, and what is wrong there.
#[derive(Debug, thiserror::Error)]
pub enum SuppressionError {
    /// The file could not be read.
    #[error("cannot read suppressions from {file}")]
    Read {
        /// The file, as given.
        file: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a rule.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file, as given.
        file: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// A `*`/`?` glob. Names are not paths, so no other wildcard and no separator rule: a
/// hand-written matcher says exactly that, where a glob crate would give `[`, `{` and `/`
/// meanings that class names do not want.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Glob(Vec<char>);

impl Glob {
    /// True when the whole of `name` matches. Greedy with backtracking to the last `*`: at
    /// most len(pattern) × len(name) steps.
    fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let pat = &self.0;
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match pat.get(p) {
                Some('*') => {
                    star = Some((p, n));
                    p += 1;
                }
                Some(&c) if c == '?' || c == name[n] => {
                    p += 1;
                    n += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        p = sp + 1;
                        n = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        pat[p..].iter().all(|&c| c == '*')
    }
}

/// One rule of a suppression file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The file it is in, as given.
    pub file: String,
    /// The line it is on, from 1.
    pub line: usize,
    /// The rule as written, without its comment.
    pub text: String,
    /// The kind it applies to; `None` for `*`.
    kind: Option<AlertKind>,
    /// Every lock of the alert must match one of these (when there are any).
    classes: Vec<Glob>,
    /// Each must match some function of the alert.
    functions: Vec<Glob>,
}

impl Rule {
    fn matches(&self, alert: &Alert, engine: &Engine, symbols: &dyn Sources) -> bool {
        if self.kind.is_some_and(|kind| kind != alert.kind()) {
            return false;
        }
        if !self.classes.is_empty() {
            if alert.classes().is_empty() {
                return false;
            }
            let every_lock_named = alert.classes().iter().all(|&class| {
                let name = class_name(engine, symbols, class);
                self.classes.iter().any(|glob| glob.matches(&name))
            });
            if !every_lock_named {
                return false;
            }
        }
        if self.functions.is_empty() {
            return true;
        }
        let functions = alert_functions(alert, engine, symbols);
        self.functions
            .iter()
            .all(|glob| functions.iter().any(|f| glob.matches(f)))
    }
}

impl fmt::Display for Rule {
    /// `file:line: rule`, as reports say which rule suppressed an alert.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.text)
    }
}

/// The rules of one suppression file, in file order (none without a file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suppressions {
    rules: Vec<Rule>,
}

impl Suppressions {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Suppressions, SuppressionError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Suppressions::parse(&file, &text),
            Err(source) => Err(SuppressionError::Read { file, source }),
        }
    }

    /// Parses `text`, read from `file` (named in errors).
    pub fn parse(file: &str, text: &str) -> Result<Suppressions, SuppressionError> {
        let rules = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| {
                parse_rule(file, i + 1, line)
                    .map_err(|message| SuppressionError::Syntax {
                        file: file.to_string(),
                        line: i + 1,
                        message,
                    })
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        Ok(Suppressions { rules })
    }

    /// The first rule that matches `alert`, if any.
    pub fn find(&self, alert: &Alert, engine: &Engine, symbols: &dyn Sources) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.matches(alert, engine, symbols))
    }

    /// How many rules the file holds.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the file holds no rule (or there is no file).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Splits a line into words: white space separates, double quotes keep white space inside a
/// word (and are dropped), `#` at the start of a word ends the line.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if quoted => word.get_or_insert_with(String::new).push(c),
            c if c.is_whitespace() => words.extend(word.take()),
            '#' if word.is_none() => break,
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".to_string());
    }
    words.extend(word);
    Ok(words)
}

/// The rule on line `line` of `file`, `None` for a blank or comment line, or what is wrong with it.
fn parse_rule(file: &str, line: usize, text: &str) -> Result<Option<Rule>, String> {
    let words = words(text)?;
    let Some((kind, patterns)) = words.split_first() else {
        return Ok(None);
    };
    let kind = match kind.as_str() {
        "*" => None,
        name => Some(AlertKind::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = AlertKind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown alert kind \"{name}\" (expected {}, or *)",
                known.join(", ")
            )
        })?),
    };
    let mut rule = Rule {
        file: file.to_string(),
        line,
        text: text_without_comment(text),
        kind,
        classes: Vec::new(),
        functions: Vec::new(),
    };
    for pattern in patterns {
        let (list, glob) = if let Some(glob) = pattern.strip_prefix("class:") {
            (&mut rule.classes, glob)
        } else if let Some(glob) = pattern.strip_prefix("function:") {
            (&mut rule.functions, glob)
        } else {
            return Err(format!(
                "unknown pattern \"{pattern}\" (expected class:PATTERN or function:PATTERN)"
            ));
        };
        if glob.is_empty() {
            return Err(format!("empty pattern \"{pattern}\""));
        }
        list.push(Glob(glob.chars().collect()));
    }
    Ok(Some(rule))
}

/// The line as written, up to its comment (which [`words`] found to be well formed).
fn text_without_comment(line: &str) -> String {
    let mut quoted = false;
    let mut at_word_start = true;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted && at_word_start => return line[..i].trim().to_string(),
            _ => {}
        }
        at_word_start = !quoted && c.is_whitespace();
    }
    line.trim().to_string()
}

/// Every function an alert's report names: the frames of the trigger's stack, of each
/// dependency's stack and of the usage traces of its classes, and the call sites of the
/// trigger, the dependencies and the held locks.
fn alert_functions(alert: &Alert, engine: &Engine, symbols: &dyn Sources) -> Vec<String> {
    let mut functions = Vec::new();
    let mut stack = |task: &TaskRef, key: Option<StackKey>| {
        if let Some(frames) = key.and_then(|k| symbols.symbols(task.recording).stack(k)) {
            functions.extend(frames.iter().filter_map(|f| f.function.clone()));
        }
    };
    let finding = alert.finding();
    let t = alert.trigger();
    stack(&t.task, t.stack);
    for link in finding.chain() {
        stack(&link.first.task, link.first.stack);
    }
    let bits = finding.usage().into_iter().flat_map(|(a, b)| [a, b]);
    for bit in bits {
        for &class in alert.classes() {
            if let Some(trace) = engine.class(class).usage.trace(bit) {
                stack(&trace.task, trace.stack);
            }
        }
    }
    let site = |task: &TaskRef, addr: u64, user: bool| -> Option<String> {
        let symbols = symbols.symbols(task.recording);
        if user {
            let frame = symbols.user_functions.get(&(task.pid, addr))?;
            frame.function.clone()
        } else {
            symbols
                .kernel
                .function(addr)
                .map(|(sym, _)| sym.name.clone())
        }
    };
    functions.extend(site(&t.task, t.caller, t.lock_kind.is_user()));
    for link in finding.chain() {
        let user = engine.class(link.to).kind.is_user();
        functions.extend(site(&link.first.task, link.first.caller, user));
    }
    for held in alert.held() {
        functions.extend(site(&t.task, held.caller, held.kind.is_user()));
    }
    functions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> Glob {
        Glob(s.chars().collect())
    }

    #[test]
    fn globs_match_whole_names_with_star_and_question_mark() {
        let cases = [
            ("alpha_lock", "alpha_lock", true),
            ("alpha_lock", "alpha_lock2", false),
            ("alpha_*", "alpha_lock", true),
            ("alpha_*", "alpha_", true),
            ("*_lock", "beta_lock", true),
            ("*_lock", "beta_locks", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*bc", "abcbc", true),
            ("?eta_lock", "beta_lock", true),
            ("?eta_lock", "eta_lock", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("&kmalloc-64+0x*", "&kmalloc-64+0x8", true),
            ("lock#*", "lock#ffffffff82600000", true),
            ("spinlock (taken in *)", "spinlock (taken in do_work)", true),
            ("[ab]", "a", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(glob(pattern).matches(name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn a_file_parses_kinds_patterns_comments_and_quotes() {
        let text = "\
# known problems

circular_dependency class:alpha_* class:beta_lock   # the AB-BA
*   function:legacy_*
atomic_context class:\"spinlock (taken in do_work)\" function:vfree
recursive_locking
";
        let s = Suppressions::parse("s.txt", text).unwrap();
        assert_eq!(s.len(), 4);
        let r = &s.rules;
        assert_eq!(r[0].line, 3);
        assert_eq!(r[0].kind, Some(AlertKind::CircularDependency));
        assert_eq!(r[0].classes, vec![glob("alpha_*"), glob("beta_lock")]);
        assert_eq!(
            r[0].text,
            "circular_dependency class:alpha_* class:beta_lock"
        );
        assert_eq!((r[1].line, r[1].kind), (4, None));
        assert_eq!(r[1].functions, vec![glob("legacy_*")]);
        assert_eq!(r[2].classes, vec![glob("spinlock (taken in do_work)")]);
        assert_eq!(r[2].functions, vec![glob("vfree")]);
        assert!(r[3].classes.is_empty() && r[3].functions.is_empty());
        assert!(
            Suppressions::parse("empty", "\n  # nothing\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_hash_inside_a_name_is_not_a_comment() {
        let s = Suppressions::parse("s", "* class:lock#ffff* # unnamed").unwrap();
        assert_eq!(s.rules[0].classes, vec![glob("lock#ffff*")]);
        assert_eq!(s.rules[0].text, "* class:lock#ffff*");
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        for (text, line, says) in [
            ("circular class:a", 1, "unknown alert kind \"circular\""),
            ("\n\n* lock:a", 3, "unknown pattern \"lock:a\""),
            ("* class:", 1, "empty pattern \"class:\""),
            ("# ok\n* class:\"a b", 2, "unterminated quote"),
            (
                "* alpha_lock",
                1,
                "expected class:PATTERN or function:PATTERN",
            ),
        ] {
            let err = Suppressions::parse("supp.txt", text)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("supp.txt:{line}: ")) && err.contains(says),
                "{text:?}: {err}"
            );
        }
    }

    /// The kinds of the alerts `rules` leaves, of an AB-BA (alpha, beta) and a cycle of
    /// three (alpha, beta, gamma), the one whose trigger stack has `legacy_probe` in it.
    fn left(rules: &str) -> Vec<(AlertKind, usize)> {
        use crate::report::testing::{ALPHA, BETA, GAMMA, alerts, nested, symbols};
        use crate::symbols::{Frame, StackKey};
        let mut symbols = symbols();
        let legacy = StackKey::kernel(1);
        let frame = Frame {
            function: Some("legacy_probe".into()),
            ..Frame::unresolved(0x1000)
        };
        symbols.stacks.insert(legacy, vec![frame]);
        let events = nested(&[
            &[ALPHA, BETA],
            &[BETA, ALPHA],
            &[BETA, GAMMA],
            &[GAMMA, ALPHA],
        ]);
        let (engine, found) = alerts(&events, &symbols, |fact| {
            if fact.tid == 4 {
                fact.stack = Some(legacy);
            }
        });
        let sizes: Vec<usize> = found.iter().map(|a| a.classes().len()).collect();
        assert_eq!(sizes, vec![2, 3], "the AB-BA, then the cycle of three");
        let suppressions = Suppressions::parse("s", rules).unwrap();
        found
            .iter()
            .filter(|a| suppressions.find(a, &engine, &symbols).is_none())
            .map(|a| (a.kind(), a.classes().len()))
            .collect()
    }

    #[test]
    fn every_lock_must_match_a_class_pattern() {
        let abba = (AlertKind::CircularDependency, 2);
        let three = (AlertKind::CircularDependency, 3);
        assert_eq!(left(""), vec![abba, three]);
        assert_eq!(
            left("circular_dependency class:alpha_lock class:beta_lock"),
            vec![three],
            "gamma_lock is not named: the cycle of three stays"
        );
        assert_eq!(left("* class:*_lock"), vec![]);
        assert_eq!(left("* class:alpha_lock"), vec![abba, three]);
        assert_eq!(left("recursive_locking class:*"), vec![abba, three]);
        assert_eq!(left("circular_dependency"), vec![]);
    }

    #[test]
    fn each_function_pattern_must_match_a_function_of_the_alert() {
        let abba = (AlertKind::CircularDependency, 2);
        let three = (AlertKind::CircularDependency, 3);
        assert_eq!(left("* function:legacy_*"), vec![abba], "a stack frame");
        assert_eq!(left("* function:do_work"), vec![], "a call site");
        assert_eq!(left("* function:do_work function:legacy_probe"), vec![abba]);
        assert_eq!(left("* function:other_work"), vec![abba, three]);
        assert_eq!(
            left("* class:alpha_lock class:beta_lock function:do_work"),
            vec![three]
        );
    }

    #[test]
    fn the_first_matching_rule_is_reported() {
        use crate::report::testing::{ALPHA, BETA, alerts, nested, symbols};
        let symbols = symbols();
        let (engine, found) = alerts(&nested(&[&[ALPHA, BETA], &[BETA, ALPHA]]), &symbols, |_| {});
        let s = Suppressions::parse(
            "s",
            "atomic_context\n* function:nothing\n* class:*lock # all\ncircular_dependency\n",
        )
        .unwrap();
        let rule = s.find(&found[0], &engine, &symbols).unwrap();
        assert_eq!(rule.to_string(), "s:3: * class:*lock");
    }

    #[test]
    fn an_unreadable_file_names_it() {
        let err = Suppressions::load(Path::new("/nonexistent/supp.txt")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read suppressions from /nonexistent/supp.txt"),
            "{err}"
        );
    }
}
