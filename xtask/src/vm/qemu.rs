//! Boots one guest under qemu's TCG and follows its serial console until the guest powers off,
//! a hard timeout passes, or the kernel shows a panic, Oops, soft lockup or RCU stall.
//!
//! On the timeout the guest is asked, before it is killed, for the backtraces of all its CPUs
//! and of its blocked tasks (magic SysRq `l` and `w`, sent as a serial break through qemu's
//! console multiplexer), and qemu's monitor for every vCPU's registers, so a hard hang leaves
//! evidence in the serial log. The kernel runs with `nokaslr`, so a RIP there can be named with
//! any /proc/kallsyms of the same kernel.
//!
//! KVM is not available on the machines this runs on, so the CPU is emulated; single-threaded
//! TCG because multi-threaded TCG sometimes oopsed in kernel text patching (which BPF trampoline
//! attachment uses) on 6.12.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::serial::Transcript;

/// How the guest's run ended.
pub enum Ending {
    /// The guest powered off by itself.
    PoweredOff,
    /// The hard timeout passed; the guest was killed.
    TimedOut,
    /// The kernel failed (the line that showed it); the guest was killed.
    KernelFailure(String),
}

/// What one guest needs.
pub struct Guest<'a> {
    /// The kernel image (bzImage).
    pub kernel: &'a Path,
    /// The initramfs.
    pub initramfs: &'a Path,
    /// Where the raw serial console (and qemu's own messages) go.
    pub log: &'a Path,
    /// The hard limit for the whole boot.
    pub timeout: Duration,
    /// Added to the kernel command line (empty: nothing): tells the guest's /init what to run.
    pub cmdline: &'a str,
    /// The guest's memory, in MiB.
    pub memory_mib: u32,
}

/// How long the console is still read after a kernel failure shows (for its backtraces) and
/// after the result line (for the power-off).
const GRACE: Duration = Duration::from_secs(10);

/// Kernel command line: serial console; reboot (qemu exits, `-no-reboot`) instead of hanging on
/// panic; every CPU's backtrace on a soft lockup; SysRq allowed (see above); notices and info
/// messages off the console so test output stays readable.
const CMDLINE: &str = "console=ttyS0 panic=-1 oops=panic softlockup_all_cpu_backtrace=1 \
                       sysrq_always_enabled=1 nokaslr loglevel=5 mitigations=off";

/// Sent to qemu's console multiplexer on the timeout: Ctrl-A b sends a serial break, which with
/// the next character makes a SysRq (`l` backtraces all CPUs, `w` lists blocked tasks); Ctrl-A c
/// switches to the monitor, which then dumps every vCPU's registers even when the guest is
/// past answering.
const HANG_DIAGNOSTICS: &[&[u8]] = &[b"\x01bl", b"\x01bw", b"\x01cinfo registers -a\n"];

/// Boots `guest` and returns what its console said and how the run ended.
pub fn boot(guest: &Guest) -> anyhow::Result<(Transcript, Ending)> {
    let mut log =
        File::create(guest.log).with_context(|| format!("creating {}", guest.log.display()))?;
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg,thread=single", "-smp", "2", "-m"])
        .arg(format!("{}M", guest.memory_mib))
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "mon:stdio",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(guest.kernel)
        .arg("-initrd")
        .arg(guest.initramfs)
        .args(["-append", format!("{CMDLINE} {}", guest.cmdline).trim_end()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let console = child.stdout.take().context("qemu's stdout")?;
    let mut keyboard = child.stdin.take().context("qemu's stdin")?;
    let (lines, received) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut console = BufReader::new(console);
        loop {
            let mut line = Vec::new();
            match console.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let _ = log.write_all(&line);
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if lines.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let mut transcript = Transcript::default();
    let mut deadline = Instant::now() + guest.timeout;
    let mut ending = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                let had_fatal = transcript.fatal.is_some();
                let had_verdict = !transcript.verdicts.is_empty();
                transcript.feed(&line);
                if let (false, Some(fatal)) = (had_fatal, &transcript.fatal) {
                    ending = Some(Ending::KernelFailure(fatal.clone()));
                    deadline = deadline.min(Instant::now() + GRACE);
                }
                if !had_verdict && !transcript.verdicts.is_empty() {
                    deadline = deadline.min(Instant::now() + GRACE);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if ending.is_some() || !transcript.verdicts.is_empty() {
                    break;
                }
                ending = Some(Ending::TimedOut);
                for keys in HANG_DIAGNOSTICS {
                    // Best effort: qemu may be gone already.
                    let _ = keyboard.write_all(keys).and_then(|()| keyboard.flush());
                    thread::sleep(Duration::from_secs(1));
                }
                deadline = Instant::now() + GRACE;
            }
        }
    }
    // Still running after its result line, a failure or the timeout: stop it.
    if child.try_wait()?.is_none() {
        child.kill().context("killing qemu")?;
    }
    child.wait()?;
    let _ = reader.join();
    Ok((transcript, ending.unwrap_or(Ending::PoweredOff)))
}
