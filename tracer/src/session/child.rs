//! Spawning the traced command so that nothing it does escapes the probes: the child is
//! forked, waits on a pipe until the probes are attached, then executes the command. A
//! watcher thread holds the child at its exit (ptrace `PTRACE_O_TRACEEXIT`) until the session
//! has read its memory map, so even a process that lives a millisecond can be symbolized.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// A forked child waiting at the gate.
pub struct GatedChild {
    pid: u32,
    gate: Option<OwnedFd>,
}

/// How the command's standard output is wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStdout {
    /// Shares locktrace's standard output.
    Inherit,
    /// Goes to locktrace's standard error (keeps a JSON stdout clean).
    ToStderr,
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
}

/// Finds `program` on PATH the way a shell would (before forking: allocation is not allowed
/// after `fork` in a threaded process).
fn resolve(program: &str) -> io::Result<CString> {
    if program.contains('/') {
        return cstring(program);
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    for dir in path.split(':') {
        let candidate = std::path::Path::new(dir).join(program);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
        {
            return cstring(&candidate.to_string_lossy());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("command not found: {program}"),
    ))
}

impl GatedChild {
    /// Forks a child that will run `argv` once [`GatedChild::release`] is called. If
    /// locktrace dies first, the gate closes and the child exits without running the command.
    pub fn spawn(argv: &[String], stdout: ChildStdout) -> io::Result<GatedChild> {
        let (program, _) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let path = resolve(program)?;
        let args: Vec<CString> = argv.iter().map(|a| cstring(a)).collect::<io::Result<_>>()?;
        let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        arg_ptrs.push(std::ptr::null());

        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child only calls async-signal-safe functions (close, read, dup2, execv,
        // _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // Child.
            unsafe {
                libc::close(write_end.as_raw_fd());
                let mut byte = 0u8;
                let n = libc::read(read_end.as_raw_fd(), (&raw mut byte).cast(), 1);
                if n != 1 {
                    libc::_exit(127);
                }
                if stdout == ChildStdout::ToStderr {
                    libc::dup2(2, 1);
                }
                libc::execv(path.as_ptr(), arg_ptrs.as_ptr());
                libc::_exit(127);
            }
        }
        drop(read_end);
        Ok(GatedChild {
            pid: pid as u32,
            gate: Some(write_end),
        })
    }

    /// The child's pid (the command keeps it across exec).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lets the child execute the command.
    pub fn release(&mut self) -> io::Result<()> {
        if let Some(gate) = self.gate.take() {
            let byte = 1u8;
            // SAFETY: writing one byte from a live buffer to an owned descriptor.
            let n = unsafe { libc::write(gate.as_raw_fd(), (&raw const byte).cast(), 1) };
            if n != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// What the watcher thread reports.
#[derive(Debug)]
pub enum ChildEvent {
    /// The child is stopped at exit with its memory still mapped; it goes on when the sender
    /// is dropped or signalled.
    Exiting(std::sync::mpsc::Sender<()>),
    /// The child is gone, with its exit status as a shell shows it.
    Exited(i32),
}

const PTRACE_EVENT_EXIT: i32 = 6;

/// Seizes `pid` and follows it to its end on a thread of its own (ptrace requests must come
/// from the thread that attached). Returns once the child is seized, so it can be released.
/// If seizing is not allowed, the child is still waited for, only not held at exit.
pub fn watch(pid: u32, events: tokio::sync::mpsc::UnboundedSender<ChildEvent>) {
    let (seized_tx, seized_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pid = pid as libc::pid_t;
        // SAFETY: ptrace on our own, still-gated child.
        let seized = unsafe {
            libc::ptrace(
                libc::PTRACE_SEIZE,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                libc::PTRACE_O_TRACEEXIT as usize as *mut libc::c_void,
            )
        } == 0;
        let _ = seized_tx.send(());
        let status = loop {
            let mut status = 0;
            // SAFETY: waiting on our own child with a live status slot.
            let ret = unsafe { libc::waitpid(pid, &raw mut status, libc::__WALL) };
            if ret != pid {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break -1;
            }
            if libc::WIFEXITED(status) {
                break libc::WEXITSTATUS(status);
            }
            if libc::WIFSIGNALED(status) {
                break 128 + libc::WTERMSIG(status);
            }
            if !seized || !libc::WIFSTOPPED(status) {
                continue;
            }
            let mut deliver = 0;
            if status >> 8 == (libc::SIGTRAP | (PTRACE_EVENT_EXIT << 8)) {
                let (done_tx, done_rx) = std::sync::mpsc::channel();
                if events.send(ChildEvent::Exiting(done_tx)).is_ok() {
                    let _ = done_rx.recv_timeout(std::time::Duration::from_secs(10));
                }
            } else if status >> 16 == 0 {
                // A signal-delivery stop: pass the signal on.
                deliver = libc::WSTOPSIG(status);
            }
            // SAFETY: resuming our own stopped tracee.
            unsafe {
                libc::ptrace(
                    libc::PTRACE_CONT,
                    pid,
                    std::ptr::null_mut::<libc::c_void>(),
                    deliver as usize as *mut libc::c_void,
                )
            };
        };
        let _ = events.send(ChildEvent::Exited(status));
    });
    let _ = seized_rx.recv();
}
