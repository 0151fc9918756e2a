//! The one hash every key of the shared lockdep core is built with: class keys, chain keys
//! and the chain-cache lookup key. It must give the same value in the BPF programs and in user
//! space, so it is plain integer arithmetic.

/// splitmix64's step: every input bit changes about half the output bits, and no input maps to
/// zero by accident of being zero (the golden-ratio increment comes first).
#[inline(always)]
pub const fn mix64(x: u64) -> u64 {
    let mut x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::mix64;

    #[test]
    fn nearby_inputs_spread() {
        assert_ne!(mix64(1), mix64(2));
        assert_ne!(
            mix64(0),
            0,
            "zero does not hash to zero: keys never look empty"
        );
        let diff = (mix64(0x1000) ^ mix64(0x1001)).count_ones();
        assert!((16..=48).contains(&diff), "{diff} bits differ");
    }
}
