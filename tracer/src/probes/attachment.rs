//! What became of each probe: attached, left out because its first choice attached, or
//! refused and why. `Probes::load` records one [`Attachment`] per probe; `locktrace check`,
//! the session's "not attached" lines and the trace file's header ([`ProbeStatus`]) are all
//! read from it, so none of them has to recognize a probe's state from its display text.

use std::collections::BTreeMap;

use super::catalog::Hook;
use crate::tracefile::ProbeStatus;

/// How a probe attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachKind {
    /// BPF trampoline after a kernel function.
    Fexit,
    /// BPF trampoline before a kernel function.
    Fentry,
    /// kprobe at a kernel function's entry.
    Kprobe,
    /// kretprobe at a kernel function's return.
    Kretprobe,
    /// BTF-typed tracepoint.
    TpBtf,
    /// uprobe on a C library function's entry.
    Uprobe,
    /// uretprobe on a C library function's return.
    Uretprobe,
}

impl AttachKind {
    /// The attach type's short name, as `locktrace check` and trace-file headers show it.
    pub fn name(self) -> &'static str {
        match self {
            AttachKind::Fexit => "fexit",
            AttachKind::Fentry => "fentry",
            AttachKind::Kprobe => "kprobe",
            AttachKind::Kretprobe => "kretprobe",
            AttachKind::TpBtf => "tp_btf",
            AttachKind::Uprobe => "uprobe",
            AttachKind::Uretprobe => "uretprobe",
        }
    }

    /// True for BPF trampolines (fentry and fexit), which some kernels refuse.
    pub fn is_trampoline(self) -> bool {
        matches!(self, AttachKind::Fexit | AttachKind::Fentry)
    }
}

impl From<Hook> for AttachKind {
    fn from(hook: Hook) -> AttachKind {
        match hook {
            Hook::Fexit => AttachKind::Fexit,
            Hook::Fentry => AttachKind::Fentry,
            Hook::Kprobe => AttachKind::Kprobe,
            Hook::Kretprobe => AttachKind::Kretprobe,
            Hook::TpBtf { .. } => AttachKind::TpBtf,
        }
    }
}

/// What became of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It is attached.
    Attached,
    /// A fallback left out because its first choice, named here, attached: not a failure,
    /// and not needed on this kernel.
    NotNeeded {
        /// The display name of the probe that attached instead.
        instead: String,
    },
    /// It did not attach: the reason, one line first (a verifier log may follow).
    Refused(String),
    /// Not tried: the session's `--attach` choice leaves its kind of probe out.
    LeftOut {
        /// The choice, as given (`--attach kprobe`).
        by: &'static str,
    },
}

/// One probe: its program, where it attaches and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The program's name in the eBPF object.
    pub program: &'static str,
    /// The display name (`fexit:_raw_spin_lock`, `uprobe:pthread_mutex_lock` ...).
    pub name: String,
    /// How it attaches.
    pub kind: AttachKind,
    /// Attached or not, and why.
    pub outcome: Outcome,
}

impl Attachment {
    /// True when it is attached.
    pub fn is_attached(&self) -> bool {
        self.outcome == Outcome::Attached
    }

    /// False for a fallback whose first choice attached (this kernel does not need it) and
    /// for a probe the session's `--attach` choice left out.
    pub fn is_needed(&self) -> bool {
        !matches!(
            self.outcome,
            Outcome::NotNeeded { .. } | Outcome::LeftOut { .. }
        )
    }

    /// Why it did not attach, when it was refused.
    pub fn refusal(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Refused(reason) => Some(reason),
            Outcome::Attached | Outcome::NotNeeded { .. } | Outcome::LeftOut { .. } => None,
        }
    }

    /// The probe as a trace file's header records it: the outcome becomes the `attached`
    /// flag and a one-line `detail`.
    pub fn status(&self) -> ProbeStatus {
        ProbeStatus {
            name: self.name.clone(),
            kind: self.kind.name().to_string(),
            attached: self.is_attached(),
            detail: match &self.outcome {
                Outcome::Attached => String::new(),
                Outcome::NotNeeded { instead } => format!("not needed: {instead} attached"),
                Outcome::LeftOut { by } => format!("left out by {by}"),
                Outcome::Refused(reason) => reason.clone(),
            },
        }
    }
}

/// Refused probes grouped by reason, one line per reason naming a few of them (fallbacks
/// that were not needed are not failures and are left out).
pub fn summarize_refusals(attachments: &[Attachment]) -> Vec<String> {
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for attachment in attachments {
        if let Some(reason) = attachment.refusal() {
            by_reason
                .entry(reason)
                .or_default()
                .push(attachment.name.as_str());
        }
    }
    by_reason
        .into_iter()
        .map(|(reason, names)| {
            let shown: Vec<&str> = names.iter().take(3).copied().collect();
            let more = names.len().saturating_sub(shown.len());
            let list = if more > 0 {
                format!("{} and {more} more", shown.join(", "))
            } else {
                shown.join(", ")
            };
            let count = names.len();
            let noun = if count == 1 { "probe" } else { "probes" };
            format!("{count} {noun} not attached ({list}): {reason}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(name: &str, outcome: Outcome) -> Attachment {
        Attachment {
            program: "acq_spin",
            name: name.to_string(),
            kind: AttachKind::Fexit,
            outcome,
        }
    }

    #[test]
    fn a_header_status_carries_the_outcome_as_flag_and_detail() {
        let attached = attachment("fexit:a", Outcome::Attached).status();
        assert!(attached.attached && attached.detail.is_empty());
        let spare = attachment(
            "tp:percpu:percpu_alloc_percpu",
            Outcome::NotNeeded {
                instead: "fentry:pcpu_alloc".to_string(),
            },
        )
        .status();
        assert!(!spare.attached);
        assert_eq!(spare.detail, "not needed: fentry:pcpu_alloc attached");
        let refused = attachment("fexit:b", Outcome::Refused("refused: EINVAL".into())).status();
        assert_eq!((refused.attached, refused.kind.as_str()), (false, "fexit"));
        assert_eq!(refused.detail, "refused: EINVAL");
    }

    #[test]
    fn refusals_are_summarized_by_reason_and_spare_fallbacks_are_not_refusals() {
        let mut attachments: Vec<Attachment> = (0..5)
            .map(|i| attachment(&format!("fexit:f{i}"), Outcome::Refused("EPERM".into())))
            .collect();
        attachments.push(attachment("fexit:g", Outcome::Refused("not in BTF".into())));
        attachments.push(attachment("fexit:h", Outcome::Attached));
        attachments.push(attachment(
            "tp:x",
            Outcome::NotNeeded {
                instead: "fentry:x".into(),
            },
        ));
        assert_eq!(
            summarize_refusals(&attachments),
            [
                "5 probes not attached (fexit:f0, fexit:f1, fexit:f2 and 2 more): EPERM",
                "1 probe not attached (fexit:g): not in BTF",
            ]
        );
    }
}
