//! Text from the traced world made safe to show a person: thread names, symbols, file paths
//! and lock names come from programs (or from a trace file someone sent) and may hold
//! terminal escape sequences or line breaks that would clear a screen or forge report lines.
//!
//! [`printable`] is the one helper every human-readable output passes such text through (text
//! alerts, `script`, DOT labels, every line on standard error). JSON output does not need it:
//! serde escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character written as an escape: `\n`, `\r`, `\t`, `\xHH` for
/// the other C0 controls and DEL, `\u{HHHH}` for C1 controls and for the bidirectional
/// overrides and isolates that reorder what a terminal shows. Borrowed when nothing needed
/// escaping.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters (C0, DEL, C1) and the bidirectional formatting characters.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(printable("kworker/0:1"), Cow::Borrowed(_)));
        assert_eq!(printable("\x1b[2J\nFORGED"), "\\x1b[2J\\nFORGED");
        assert_eq!(printable("a\tb\rc\x7fd\0"), "a\\tb\\rc\\x7fd\\x00");
        assert_eq!(printable("csi\u{9b}2J"), "csi\\u{009b}2J");
        assert_eq!(printable("rtl\u{202e}gpj.exe"), "rtl\\u{202e}gpj.exe");
        assert_eq!(printable("é→λ 文字"), "é→λ 文字", "printable Unicode stays");
    }
}
