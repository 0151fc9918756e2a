//! Usage bits (lockdep's `lock_usage_bit`): in which irq-related situations a class has been
//! acquired. The BPF programs keep a mask per class and report a class only when an
//! acquisition sets a bit it did not have; the engine checks the bits.
//!
//! The layout mirrors lockdep's: bit = `state << 2 | dir << 1 | read`, where state is hardirq
//! (0) or softirq (1), dir is "used in irq context" (0) or "acquired with that irq enabled" (1),
//! and read marks a read acquisition.

use crate::{ExecContext, IrqState, LockKind, flags};

/// The bits, as masks.
pub mod bit {
    /// Acquired (for write) in hardirq context: the class is HARDIRQ-safe.
    pub const USED_IN_HARDIRQ: u8 = 1 << 0;
    /// Acquired for read in hardirq context.
    pub const USED_IN_HARDIRQ_READ: u8 = 1 << 1;
    /// Acquired (for write) with hardirqs enabled: the class is HARDIRQ-unsafe.
    pub const ENABLED_HARDIRQ: u8 = 1 << 2;
    /// Acquired for read with hardirqs enabled.
    pub const ENABLED_HARDIRQ_READ: u8 = 1 << 3;
    /// Acquired (for write) in softirq context: the class is SOFTIRQ-safe.
    pub const USED_IN_SOFTIRQ: u8 = 1 << 4;
    /// Acquired for read in softirq context.
    pub const USED_IN_SOFTIRQ_READ: u8 = 1 << 5;
    /// Acquired (for write) in task context with softirqs enabled: SOFTIRQ-unsafe.
    pub const ENABLED_SOFTIRQ: u8 = 1 << 6;
    /// Acquired for read in task context with softirqs enabled.
    pub const ENABLED_SOFTIRQ_READ: u8 = 1 << 7;
}

/// Where and how an acquisition ran: what its usage bits and its chain's lookup key depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquireState {
    /// The execution context.
    pub context: ExecContext,
    /// The hardware-interrupt state ([`IrqState::Unknown`] when the kernel cannot tell).
    pub irqs: IrqState,
    /// Whether softirqs were disabled, when `preempt_count` was readable.
    pub softirqs_disabled: Option<bool>,
}

impl AcquireState {
    /// A small number that tells states apart, for the chain cache's lookup key.
    #[inline(always)]
    pub const fn bits(&self) -> u64 {
        let softirqs = match self.softirqs_disabled {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.context as u64 | (self.irqs as u64) << 3 | softirqs << 5
    }
}

/// The usage bits one acquisition of a lock of `kind` sets; `variant` holds its
/// [`flags::TRYLOCK`], [`flags::IRQ_VARIANT`] and [`flags::BH_VARIANT`] bits.
///
/// Unknown irq state sets no ENABLED_HARDIRQ bit (it is unknown, not enabled), and an unknown
/// softirq state no ENABLED_SOFTIRQ bit. As in lockdep, an acquisition with hardirqs off is not
/// SOFTIRQ-unsafe (no softirq can run then), and a trylock in an interrupt does not make the
/// class irq-safe (it never waits). User-space locks have no irq contexts and get no bits.
#[inline(always)]
pub fn acquisition_usage(kind: LockKind, variant: u32, state: &AcquireState) -> u8 {
    if kind.is_user() {
        return 0;
    }
    let read = kind.is_read() as u8;
    // A sleeping lock is only ever taken with hardirqs enabled (might_sleep), so its state is
    // known even where the kernel cannot report it. A spinning lock's is not: plain
    // spin_lock() inside local_irq_save() sections is everywhere.
    let irqs = if kind.is_sleeping() {
        IrqState::Enabled
    } else {
        state.irqs
    };
    let hardirqs_on = matches!(irqs, IrqState::Enabled) && variant & flags::IRQ_VARIANT == 0;
    let softirqs_on = hardirqs_on
        && matches!(state.softirqs_disabled, Some(false))
        && variant & flags::BH_VARIANT == 0;
    let used_in = variant & flags::TRYLOCK == 0;
    let mut mask = 0;
    match state.context {
        ExecContext::Hardirq => {
            if used_in {
                mask |= bit::USED_IN_HARDIRQ << read;
            }
        }
        ExecContext::Softirq => {
            if used_in {
                mask |= bit::USED_IN_SOFTIRQ << read;
            }
            if hardirqs_on {
                mask |= bit::ENABLED_HARDIRQ << read;
            }
        }
        ExecContext::Task => {
            if hardirqs_on {
                mask |= bit::ENABLED_HARDIRQ << read;
            }
            if softirqs_on {
                mask |= bit::ENABLED_SOFTIRQ << read;
            }
        }
        ExecContext::Nmi | ExecContext::Unknown => {}
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(context: ExecContext, irqs: IrqState, softirqs: Option<bool>) -> AcquireState {
        AcquireState {
            context,
            irqs,
            softirqs_disabled: softirqs,
        }
    }

    #[test]
    fn bits_follow_lockdeps_rules() {
        use ExecContext::{Hardirq, Nmi, Softirq, Task};
        use IrqState::{Disabled, Enabled, Unknown};
        use LockKind::{Mutex, PthreadMutex, RwlockRead, Spin};
        let cases = [
            (Spin, 0, state(Task, Unknown, None), 0),
            (Spin, 0, state(Task, Enabled, None), bit::ENABLED_HARDIRQ),
            (
                RwlockRead,
                0,
                state(Task, Enabled, Some(false)),
                bit::ENABLED_HARDIRQ_READ | bit::ENABLED_SOFTIRQ_READ,
            ),
            (
                Spin,
                0,
                state(Hardirq, Disabled, None),
                bit::USED_IN_HARDIRQ,
            ),
            (Spin, flags::TRYLOCK, state(Hardirq, Disabled, None), 0),
            (Spin, 0, state(Task, Disabled, Some(false)), 0),
            (
                Spin,
                flags::IRQ_VARIANT,
                state(Task, Enabled, Some(false)),
                0,
            ),
            (
                Spin,
                flags::BH_VARIANT,
                state(Task, Enabled, Some(false)),
                bit::ENABLED_HARDIRQ,
            ),
            (
                Mutex,
                0,
                state(Task, Unknown, Some(false)),
                bit::ENABLED_HARDIRQ | bit::ENABLED_SOFTIRQ,
            ),
            (
                Spin,
                0,
                state(Softirq, Enabled, Some(true)),
                bit::USED_IN_SOFTIRQ | bit::ENABLED_HARDIRQ,
            ),
            (PthreadMutex, 0, state(Task, Enabled, Some(false)), 0),
            (Spin, 0, state(Nmi, Disabled, None), 0),
        ];
        for (kind, variant, state, want) in cases {
            assert_eq!(
                acquisition_usage(kind, variant, &state),
                want,
                "{kind:?} {variant:#x} {state:?}"
            );
        }
    }

    #[test]
    fn states_have_distinct_bits() {
        use ExecContext::{Hardirq, Nmi, Softirq, Task};
        use IrqState::{Disabled, Enabled};
        let mut seen = [false; 256];
        for context in [ExecContext::Unknown, Task, Softirq, Hardirq, Nmi] {
            for irqs in [IrqState::Unknown, Enabled, Disabled] {
                for softirqs in [None, Some(false), Some(true)] {
                    let b = state(context, irqs, softirqs).bits() as usize;
                    assert!(!seen[b], "{context:?} {irqs:?} {softirqs:?}");
                    seen[b] = true;
                }
            }
        }
    }
}
