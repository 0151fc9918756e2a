//! Reads the guest's serial console: check lines, the one result line, files shipped in
//! base64 between marker lines, and the benchmark's figures. The guest side is
//! tests/vm/guest-tests.sh (and tests/vm/bench.sh).
//!
//! The console carries SeaBIOS's escape sequences, `\r\n` line ends and kernel messages, so
//! every line is cleaned first and only lines that begin with a marker count.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};

/// One in-guest check: `LOCKTRACE-VM-CHECK <name> PASS|FAIL <detail>`.
#[derive(Debug, PartialEq)]
pub struct Check {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub pass: bool,
    /// What the guest said about it.
    pub detail: String,
}

/// The guest's final line: `LOCKTRACE-VM-RESULT PASS` or `LOCKTRACE-VM-RESULT FAIL n/m`.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Every in-guest check passed.
    Pass,
    /// Some failed; the guest's own count.
    Fail(String),
}

/// Lines whose presence means the guest kernel is broken: the run stops there.
const FATAL: &[&str] = &[
    "Kernel panic - not syncing",
    "Oops:",
    "BUG: unable to handle",
    "BUG: kernel NULL pointer",
    "BUG: soft lockup",
    "detected stalls on CPUs",
    "self-detected stall on CPU",
    "blocked for more than",
];

/// Everything read from the console so far.
#[derive(Default)]
pub struct Transcript {
    /// `uname -r` as the guest reported it.
    pub kernel_release: Option<String>,
    /// The in-guest checks, in order.
    pub checks: Vec<Check>,
    /// The result lines seen (exactly one is expected).
    pub verdicts: Vec<Verdict>,
    /// Shipped files by name.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The first line that showed a kernel failure.
    pub fatal: Option<String>,
    /// A file being received: its name, announced size and base64 text so far.
    receiving: Option<(String, usize, String)>,
    /// Malformed shipments.
    pub errors: Vec<String>,
    /// Each vCPU's instruction pointer (`RIP=...`), when qemu's monitor dumped them.
    pub stuck_at: Vec<String>,
    /// The benchmark's lines (`LOCKTRACE-BENCH <figures>`), without the marker, in order;
    /// `bench.rs` reads them.
    pub bench: Vec<String>,
}

impl Transcript {
    /// Takes one raw console line (without its `\n`).
    pub fn feed(&mut self, raw: &[u8]) {
        let line = clean(raw);
        let line = line.trim();
        if let Some((name, size, mut text)) = self.receiving.take() {
            if line == format!("LOCKTRACE-VM-FILE-END {name}") {
                match decode_base64(&text) {
                    Ok(bytes) if bytes.len() == size => {
                        self.files.insert(name, bytes);
                    }
                    Ok(bytes) => self.errors.push(format!(
                        "file {name}: {} bytes arrived, {size} announced",
                        bytes.len()
                    )),
                    Err(err) => self.errors.push(format!("file {name}: {err:#}")),
                }
            } else {
                text.push_str(line);
                self.receiving = Some((name, size, text));
            }
            return;
        }
        if let Some(rest) = line.strip_prefix("LOCKTRACE-VM-FILE-BEGIN ") {
            match rest
                .split_once(' ')
                .map(|(name, size)| (name, size.parse()))
            {
                Some((name, Ok(size))) => {
                    self.receiving = Some((name.to_owned(), size, String::new()))
                }
                _ => self.errors.push(format!("malformed file header: {line}")),
            }
        } else if let Some(rest) = line.strip_prefix("LOCKTRACE-VM-CHECK ") {
            let mut words = rest.splitn(3, ' ');
            let name = words.next().unwrap_or_default().to_owned();
            let pass = words.next() == Some("PASS");
            let detail = words.next().unwrap_or_default().to_owned();
            self.checks.push(Check { name, pass, detail });
        } else if let Some(rest) = line.strip_prefix("LOCKTRACE-VM-RESULT ") {
            self.verdicts.push(match rest {
                "PASS" => Verdict::Pass,
                other => Verdict::Fail(other.trim_start_matches("FAIL").trim().to_owned()),
            });
        } else if let Some(figures) = line.strip_prefix("LOCKTRACE-BENCH ") {
            self.bench.push(figures.to_owned());
        } else if let Some(release) = line.strip_prefix("LOCKTRACE-VM-KERNEL ") {
            self.kernel_release = Some(release.to_owned());
        } else if line.starts_with("RIP=") {
            // qemu's monitor, after a timeout: where each vCPU was.
            self.stuck_at.push(
                line.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        } else if self.fatal.is_none() && FATAL.iter().any(|pattern| line.contains(pattern)) {
            self.fatal = Some(line.to_owned());
        }
    }

    /// The guest's single verdict, or why there is none.
    pub fn verdict(&self) -> anyhow::Result<&Verdict> {
        match self.verdicts.as_slice() {
            [verdict] => Ok(verdict),
            [] => bail!("the guest never reported a result line"),
            more => bail!(
                "the guest reported {} result lines, expected one",
                more.len()
            ),
        }
    }
}

/// Drops `\r`, terminal escape sequences and other control characters.
fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            // CSI (ESC [): parameters and intermediates up to a final byte in @..~. Other
            // escapes (ESC c, ESC 7) are two bytes.
            '\x1b' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Decodes standard base64 (busybox `base64` output, lines already joined).
fn decode_base64(text: &str) -> anyhow::Result<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        ensure!(chunk.len() > 1, "truncated base64");
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).with_context(|| format!("not base64: {:?}", char::from(c)))?;
            acc |= v << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(lines: &[&[u8]]) -> Transcript {
        let mut transcript = Transcript::default();
        for line in lines {
            transcript.feed(line);
        }
        transcript
    }

    #[test]
    fn reads_checks_and_the_result_through_escapes_and_carriage_returns() {
        let t = transcript(&[
            b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r",
            b"LOCKTRACE-VM-KERNEL 6.12.117+deb13-amd64\r",
            b"LOCKTRACE-VM-CHECK kmod-load PASS \r",
            b"LOCKTRACE-VM-CHECK locktrace-check FAIL exit 2: no such command\r",
            b"[    3.1] some kernel message\r",
            b"LOCKTRACE-VM-RESULT FAIL 1/2\r",
        ]);
        assert_eq!(t.kernel_release.as_deref(), Some("6.12.117+deb13-amd64"));
        assert_eq!(t.checks.len(), 2);
        assert!(t.checks[0].pass);
        assert_eq!(t.checks[1].detail, "exit 2: no such command");
        assert_eq!(t.verdict().unwrap(), &Verdict::Fail("1/2".into()));
        assert!(t.fatal.is_none());
    }

    #[test]
    fn keeps_the_benchmark_lines() {
        let t = transcript(&[
            b"LOCKTRACE-BENCH phase run=bare phase=open ops=10 ns=20\r",
            b"  | locktrace: 3 probes attached\r",
        ]);
        assert_eq!(t.bench, ["phase run=bare phase=open ops=10 ns=20"]);
    }

    #[test]
    fn a_missing_or_repeated_result_line_is_an_error() {
        assert!(
            transcript(&[b"LOCKTRACE-VM-CHECK a PASS"])
                .verdict()
                .is_err()
        );
        let twice = transcript(&[b"LOCKTRACE-VM-RESULT PASS", b"LOCKTRACE-VM-RESULT PASS"]);
        assert!(twice.verdict().is_err());
    }

    #[test]
    fn decodes_shipped_files_and_checks_their_size() {
        let t = transcript(&[
            b"LOCKTRACE-VM-FILE-BEGIN a.json 15\r",
            b"eyJraW5kIjoiYWJj\r",
            b"In0K\r",
            b"LOCKTRACE-VM-FILE-END a.json\r",
            b"LOCKTRACE-VM-FILE-BEGIN b 5",
            b"aGk=",
            b"LOCKTRACE-VM-FILE-END b",
        ]);
        assert_eq!(t.files["a.json"], b"{\"kind\":\"abc\"}\n");
        assert!(!t.files.contains_key("b"));
        assert_eq!(t.errors.len(), 1);
    }

    #[test]
    fn base64_round_trips_every_tail_length() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YWJj").unwrap(), b"abc");
        assert!(decode_base64("YW!j").is_err());
    }

    #[test]
    fn flags_kernel_failures() {
        let t = transcript(&[b"[   12.5] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!"]);
        assert!(t.fatal.unwrap().contains("soft lockup"));
    }
}
