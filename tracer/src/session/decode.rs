//! Turning ring-buffer records into [`Event`]s.

use tracer_common::{EVENT_SIZE, Event};

/// Decodes one ring-buffer record. The programs only ever write whole `Event`s, so any other
/// length means a version mismatch between the object and this binary; such records are
/// rejected (and counted by the caller) rather than misread.
pub fn decode(record: &[u8]) -> Option<Event> {
    if record.len() != EVENT_SIZE {
        return None;
    }
    // SAFETY: `Event` is `repr(C)`, has no padding and every bit pattern is a valid value;
    // the length was checked and `read_unaligned` makes no alignment assumption.
    Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<Event>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_an_event_and_rejects_other_lengths() {
        let mut ev = Event::zeroed();
        ev.lock_addr = 0xffff_ffff_82a0_0000;
        ev.tid = 42;
        // SAFETY: viewing a plain-old-data struct as bytes.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const ev).cast::<u8>(), EVENT_SIZE) };
        assert_eq!(decode(bytes), Some(ev));
        assert_eq!(decode(&bytes[..EVENT_SIZE - 1]), None);
    }
}
