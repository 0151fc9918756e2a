//! Usage bits of a lock class (lockdep's `lock_usage_bit`): in which irq-related situations
//! the class has been acquired, with the first event that set each bit. Which bits an
//! acquisition sets is decided where the lock is taken (`tracer_common::usage`); a fact brings
//! the bits its class did not have.
//!
//! The layout mirrors lockdep's: bit = `state << 2 | dir << 1 | read`, where state is hardirq
//! or softirq, dir is "used in irq context" (0) or "acquired with that irq enabled" (1), and
//! read marks a read acquisition. Two bits conflict when they are about the same irq, point in
//! opposite directions, and at least one is a write (lockdep's `exclusive_bit` rule: readers in
//! irq context only deadlock against a writer).

use serde::Serialize;

use super::trace::Trace;

/// Which interrupt a usage bit, and an irq-related alert, is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IrqKind {
    /// Hardware interrupts.
    Hardirq,
    /// Softirqs (bottom halves).
    Softirq,
}

impl IrqKind {
    /// `hardirq` or `softirq`.
    pub const fn name(self) -> &'static str {
        match self {
            IrqKind::Hardirq => "hardirq",
            IrqKind::Softirq => "softirq",
        }
    }

    /// lockdep's upper-case spelling, `HARDIRQ` or `SOFTIRQ`.
    pub const fn upper(self) -> &'static str {
        match self {
            IrqKind::Hardirq => "HARDIRQ",
            IrqKind::Softirq => "SOFTIRQ",
        }
    }
}

/// One usage bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UsageBit {
    /// Acquired (for write) in hardirq context: the class is HARDIRQ-safe.
    UsedInHardirq = 0,
    /// Acquired for read in hardirq context.
    UsedInHardirqRead = 1,
    /// Acquired (for write) with hardirqs enabled: the class is HARDIRQ-unsafe.
    EnabledHardirq = 2,
    /// Acquired for read with hardirqs enabled.
    EnabledHardirqRead = 3,
    /// Acquired (for write) in softirq context: the class is SOFTIRQ-safe.
    UsedInSoftirq = 4,
    /// Acquired for read in softirq context.
    UsedInSoftirqRead = 5,
    /// Acquired (for write) in task context with softirqs enabled: SOFTIRQ-unsafe.
    EnabledSoftirq = 6,
    /// Acquired for read in task context with softirqs enabled.
    EnabledSoftirqRead = 7,
}

impl UsageBit {
    /// Every bit, in bit order.
    pub const ALL: [UsageBit; 8] = [
        UsageBit::UsedInHardirq,
        UsageBit::UsedInHardirqRead,
        UsageBit::EnabledHardirq,
        UsageBit::EnabledHardirqRead,
        UsageBit::UsedInSoftirq,
        UsageBit::UsedInSoftirqRead,
        UsageBit::EnabledSoftirq,
        UsageBit::EnabledSoftirqRead,
    ];

    const fn from_parts(irq: IrqKind, enabled: bool, read: bool) -> UsageBit {
        let state = match irq {
            IrqKind::Hardirq => 0,
            IrqKind::Softirq => 1,
        };
        Self::ALL[state << 2 | (enabled as usize) << 1 | read as usize]
    }

    /// The irq this bit is about.
    pub const fn irq(self) -> IrqKind {
        if (self as u8) & 4 == 0 {
            IrqKind::Hardirq
        } else {
            IrqKind::Softirq
        }
    }

    /// True for the "used in irq context" direction (the class is irq-safe).
    pub const fn is_used_in(self) -> bool {
        (self as u8) & 2 == 0
    }

    /// True for a read acquisition.
    pub const fn is_read(self) -> bool {
        (self as u8) & 1 != 0
    }

    /// True when a class holding both bits can deadlock against an interrupt.
    pub const fn conflicts_with(self, other: UsageBit) -> bool {
        (self as u8) & 4 == (other as u8) & 4
            && self.is_used_in() != other.is_used_in()
            && !(self.is_read() && other.is_read())
    }

    /// The bit's mask in a [`UsageMask`].
    pub const fn mask(self) -> UsageMask {
        UsageMask(1 << self as u8)
    }

    /// The JSON and graph name, e.g. `USED_IN_HARDIRQ`.
    pub const fn name(self) -> &'static str {
        match self {
            UsageBit::UsedInHardirq => "USED_IN_HARDIRQ",
            UsageBit::UsedInHardirqRead => "USED_IN_HARDIRQ_READ",
            UsageBit::EnabledHardirq => "ENABLED_HARDIRQ",
            UsageBit::EnabledHardirqRead => "ENABLED_HARDIRQ_READ",
            UsageBit::UsedInSoftirq => "USED_IN_SOFTIRQ",
            UsageBit::UsedInSoftirqRead => "USED_IN_SOFTIRQ_READ",
            UsageBit::EnabledSoftirq => "ENABLED_SOFTIRQ",
            UsageBit::EnabledSoftirqRead => "ENABLED_SOFTIRQ_READ",
        }
    }

    /// lockdep's `usage_str`, e.g. `IN-HARDIRQ-W` or `SOFTIRQ-ON-R`.
    pub const fn lockdep_name(self) -> &'static str {
        match self {
            UsageBit::UsedInHardirq => "IN-HARDIRQ-W",
            UsageBit::UsedInHardirqRead => "IN-HARDIRQ-R",
            UsageBit::EnabledHardirq => "HARDIRQ-ON-W",
            UsageBit::EnabledHardirqRead => "HARDIRQ-ON-R",
            UsageBit::UsedInSoftirq => "IN-SOFTIRQ-W",
            UsageBit::UsedInSoftirqRead => "IN-SOFTIRQ-R",
            UsageBit::EnabledSoftirq => "SOFTIRQ-ON-W",
            UsageBit::EnabledSoftirqRead => "SOFTIRQ-ON-R",
        }
    }
}

/// A set of [`UsageBit`]s: bit `b` of the mask is `UsageBit::ALL[b]`, the layout of
/// `tracer_common::usage::bit`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UsageMask(pub u8);

impl UsageMask {
    /// No bits.
    pub const EMPTY: UsageMask = UsageMask(0);

    /// True when `bit` is set.
    pub const fn has(self, bit: UsageBit) -> bool {
        self.0 & bit.mask().0 != 0
    }

    /// True when no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits of `self` not in `other`.
    pub const fn without(self, other: UsageMask) -> UsageMask {
        UsageMask(self.0 & !other.0)
    }

    /// The bits set, in bit order.
    pub fn bits(self) -> impl Iterator<Item = UsageBit> {
        UsageBit::ALL.into_iter().filter(move |b| self.has(*b))
    }

    /// The irq-safe ("used in") bits of one irq.
    pub fn used_in(self, irq: IrqKind) -> UsageMask {
        UsageMask(self.0 & Self::of(irq, false).0)
    }

    /// The irq-unsafe ("enabled") bits of one irq.
    pub fn enabled(self, irq: IrqKind) -> UsageMask {
        UsageMask(self.0 & Self::of(irq, true).0)
    }

    const fn of(irq: IrqKind, enabled: bool) -> UsageMask {
        UsageMask(
            UsageBit::from_parts(irq, enabled, false).mask().0
                | UsageBit::from_parts(irq, enabled, true).mask().0,
        )
    }

    /// The first pair (bit of `self`, bit of `other`) that conflicts, write bits first.
    pub fn conflict(self, other: UsageMask) -> Option<(UsageBit, UsageBit)> {
        let mut found = None;
        for a in self.bits() {
            for b in other.bits() {
                if a.conflicts_with(b) {
                    // Prefer the pair with the fewest read bits (the clearest report).
                    let weight = a.is_read() as u8 + b.is_read() as u8;
                    if found.is_none_or(|(_, _, w)| weight < w) {
                        found = Some((a, b, weight));
                    }
                }
            }
        }
        found.map(|(a, b, _)| (a, b))
    }

    /// lockdep's four usage characters `{hw hr sw sr}`: `.` never in irq nor with it enabled,
    /// `+` with it enabled only, `-` in irq context only, `?` both.
    pub fn lockdep_chars(self) -> String {
        let mut s = String::with_capacity(4);
        for irq in [IrqKind::Hardirq, IrqKind::Softirq] {
            for read in [false, true] {
                let used = self.has(UsageBit::from_parts(irq, false, read));
                let enabled = self.has(UsageBit::from_parts(irq, true, read));
                s.push(match (used, enabled) {
                    (false, false) => '.',
                    (false, true) => '+',
                    (true, false) => '-',
                    (true, true) => '?',
                });
            }
        }
        s
    }
}

/// A class's usage bits with the first trace of each.
#[derive(Clone, Debug, Default)]
pub struct ClassUsage {
    /// The bits set so far.
    pub mask: UsageMask,
    traces: Vec<(UsageBit, Trace)>,
}

impl ClassUsage {
    /// Sets the bits of `add` not yet set, recording `trace` for each; returns the new ones.
    pub fn mark(&mut self, add: UsageMask, trace: Trace) -> UsageMask {
        let new = add.without(self.mask);
        for bit in new.bits() {
            self.traces.push((bit, trace));
        }
        self.mask = UsageMask(self.mask.0 | new.0);
        new
    }

    /// The first trace of every bit set.
    pub fn traces(&self) -> impl Iterator<Item = &Trace> {
        self.traces.iter().map(|(_, trace)| trace)
    }

    /// The event that first set `bit`.
    pub fn trace(&self, bit: UsageBit) -> Option<&Trace> {
        self.traces.iter().find(|(b, _)| *b == bit).map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_follow_lockdeps_exclusive_bit_rule() {
        use UsageBit::*;
        let cases = [
            (UsedInHardirq, EnabledHardirq, true),
            (UsedInHardirq, EnabledHardirqRead, true),
            (UsedInHardirqRead, EnabledHardirq, true),
            (UsedInHardirqRead, EnabledHardirqRead, false),
            (UsedInHardirq, EnabledSoftirq, false),
            (UsedInSoftirq, EnabledSoftirq, true),
            (UsedInHardirq, UsedInHardirq, false),
        ];
        for (a, b, want) in cases {
            assert_eq!(a.conflicts_with(b), want, "{a:?} vs {b:?}");
            assert_eq!(b.conflicts_with(a), want, "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn lockdep_chars() {
        let cases: [(&[UsageBit], &str); 4] = [
            (&[], "...."),
            (&[UsageBit::UsedInHardirq], "-..."),
            (
                &[UsageBit::EnabledHardirq, UsageBit::EnabledSoftirq],
                "+.+.",
            ),
            (
                &[
                    UsageBit::UsedInHardirq,
                    UsageBit::EnabledHardirq,
                    UsageBit::EnabledSoftirqRead,
                ],
                "?..+",
            ),
        ];
        for (bits, want) in cases {
            let mask = UsageMask(bits.iter().fold(0, |m, b| m | b.mask().0));
            assert_eq!(mask.lockdep_chars(), want, "{bits:?}");
        }
    }
}

#[cfg(test)]
mod layout {
    use tracer_common::usage::bit;

    use super::UsageBit;

    /// The engine's bits are the programs' bits.
    #[test]
    fn bits_match_the_programs_masks() {
        let programs = [
            bit::USED_IN_HARDIRQ,
            bit::USED_IN_HARDIRQ_READ,
            bit::ENABLED_HARDIRQ,
            bit::ENABLED_HARDIRQ_READ,
            bit::USED_IN_SOFTIRQ,
            bit::USED_IN_SOFTIRQ_READ,
            bit::ENABLED_SOFTIRQ,
            bit::ENABLED_SOFTIRQ_READ,
        ];
        for (bit, mask) in UsageBit::ALL.into_iter().zip(programs) {
            assert_eq!(bit.mask().0, mask, "{bit:?}");
        }
    }
}
