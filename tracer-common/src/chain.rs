//! Chain keys (lockdep's `chain_key`): an iterative hash over the held locks of one stack, so
//! that a sequence of held classes validated once is recognised again at the cost of one
//! lookup. The BPF programs keep the keys they have reported in their chain cache; only an
//! acquisition whose key is new crosses to user space.

use crate::{LockKind, flags, hash::mix64, usage::AcquireState};

/// The key of an empty stack.
pub const EMPTY: u64 = 0;

/// What the chain key hashes for one held lock: its class, its lock kind (which says its read
/// mode: write, read or recursive read, as lockdep's `read`) and whether it was a trylock.
#[inline(always)]
pub const fn hlock_id(class_key: u64, kind: LockKind, variant: u32) -> u64 {
    let trylock = (variant & flags::TRYLOCK) as u64;
    class_key ^ mix64(kind as u64 | trylock << 8)
}

/// The chain key of a stack after pushing a lock with `hlock_id` on a stack whose key is `key`.
#[inline(always)]
pub const fn extend(key: u64, hlock_id: u64) -> u64 {
    mix64(key.rotate_left(17) ^ hlock_id)
}

/// The chain cache's key: a chain is validated per context and interrupt state (lockdep keeps
/// chains per irq context; the atomic-context checks depend on the state too), and with the
/// irq and bh variant bits of the lock taken last. With those, the key covers everything the
/// new lock's usage bits depend on (`crate::usage::acquisition_usage`): a known chain needs
/// no look at the usage bits.
#[inline(always)]
pub const fn lookup_key(chain_key: u64, state: &AcquireState, variant: u32) -> u64 {
    let variant = (variant & (flags::IRQ_VARIANT | flags::BH_VARIANT)) as u64;
    mix64(chain_key ^ (state.bits() | variant << 8).wrapping_mul(0xff51_afd7_ed55_8ccd))
}

/// The chain cache's key for a call of the seed's functions made with no lock held (see
/// `crate::validate::call`): the function (`kind`, an [`crate::EventKind`]), whether it was an
/// atomic allocation, the caller and the state. Mixed apart from chain keys by a constant of
/// its own.
#[inline(always)]
pub const fn call_key(kind: u32, atomic: bool, caller: u64, state: &AcquireState) -> u64 {
    /// Keeps call keys apart from chain lookup keys over the same numbers.
    const CALLS: u64 = 0x63a1_1500_0000_0000;
    let what = (kind as u64) << 16 | (atomic as u64) << 15 | state.bits();
    mix64(mix64(caller ^ CALLS) ^ what.wrapping_mul(0xff51_afd7_ed55_8ccd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_order_content_and_mode() {
        let a = hlock_id(1, LockKind::Spin, 0);
        let b = hlock_id(2, LockKind::Spin, 0);
        let ab = extend(extend(EMPTY, a), b);
        let ba = extend(extend(EMPTY, b), a);
        assert_ne!(ab, ba);
        assert_eq!(ab, extend(extend(EMPTY, a), b));
        assert_ne!(extend(EMPTY, a), EMPTY);
        assert_ne!(
            hlock_id(1, LockKind::RwlockWrite, 0),
            hlock_id(1, LockKind::RwlockRead, 0)
        );
        assert_ne!(a, hlock_id(1, LockKind::Spin, flags::TRYLOCK));
    }
}
