//! Turning ring-buffer records into [`Fact`]s.

use tracer_common::{FACT_SIZE, Fact};

/// Decodes one ring-buffer record. The programs only ever write whole `Fact`s, so any other
/// length means a version mismatch between the object and this binary; such records are
/// rejected (and counted by the caller) rather than misread.
pub fn decode(record: &[u8]) -> Option<Box<Fact>> {
    if record.len() != FACT_SIZE {
        return None;
    }
    // SAFETY: `Fact` is `repr(C)`, has no padding and every bit pattern is a valid value;
    // the length was checked and `read_unaligned` makes no alignment assumption.
    Some(Box::new(unsafe {
        std::ptr::read_unaligned(record.as_ptr().cast::<Fact>())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_fact_and_rejects_other_lengths() {
        // SAFETY: an all-zero Fact is valid.
        let mut fact: Fact = unsafe { std::mem::zeroed() };
        fact.lock.addr = 0xffff_ffff_82a0_0000;
        fact.tid = 42;
        fact.nr_held = 1;
        // SAFETY: viewing a plain-old-data struct as bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts((&raw const fact).cast::<u8>(), FACT_SIZE) };
        assert_eq!(decode(bytes).as_deref(), Some(&fact));
        assert_eq!(decode(&bytes[..FACT_SIZE - 1]), None);
    }
}
