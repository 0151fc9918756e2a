//! Spawning the traced command so that nothing it does escapes the probes: the child is
//! forked, waits on a pipe until the probes are attached, then executes the command. A
//! watcher thread holds the child at its exit (ptrace `PTRACE_O_TRACEEXIT`) until the session
//! has read its memory map, so even a process that lives a millisecond can be symbolized.
//!
//! The command never outlives the session untraced: dropping the [`GatedChild`] (the session
//! ended by duration, signal or error) kills it, and it is also killed (`PR_SET_PDEATHSIG`)
//! if locktrace dies without unwinding.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
};

/// A forked child waiting at the gate. Dropping it kills the command if it still runs.
pub struct GatedChild {
    pid: u32,
    gate: Option<OwnedFd>,
    /// Read end of a close-on-exec pipe: EOF once the command is executing, or the errno of
    /// a failed `execv`.
    exec_status: Option<OwnedFd>,
    /// Refers to the child for as long as this handle lives, whatever happens to its pid
    /// (`None` on kernels before 5.3, where the death signal alone stops it).
    pidfd: Option<OwnedFd>,
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

/// Finds `program` on PATH the way a shell would, or checks the path it names, so that a
/// command that cannot run fails here, before anything is attached, whichever way it was
/// named (before forking too: allocation is not allowed after `fork` in a threaded process).
fn resolve(program: &str) -> io::Result<CString> {
    let not_found = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("command not found: {program}"),
        )
    };
    if program.contains('/') {
        let path = cstring(program)?;
        return match executable(&path) {
            Ok(()) => Ok(path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(not_found()),
            Err(err) => Err(err),
        };
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    for dir in path.split(':') {
        let candidate = cstring(&std::path::Path::new(dir).join(program).to_string_lossy())?;
        if executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

/// Whether `path` is a file this process may execute.
fn executable(path: &CString) -> io::Result<()> {
    let meta = std::fs::metadata(std::ffi::OsStr::from_bytes(path.as_bytes()))?;
    if !meta.is_file() {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::access(path.as_ptr(), libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pipe whose ends close on exec: (read end, write end).
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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

        let (read_end, write_end) = cloexec_pipe()?;
        let (status_read, status_write) = cloexec_pipe()?;
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the child only calls async-signal-safe functions (prctl, getppid, close,
        // read, write, dup2, execv, _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // Child.
            unsafe {
                // Killed with locktrace, even one killed outright; if locktrace is already
                // gone, the command never runs.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(127);
                }
                libc::close(write_end.as_raw_fd());
                libc::close(status_read.as_raw_fd());
                let mut byte = 0u8;
                let n = libc::read(read_end.as_raw_fd(), (&raw mut byte).cast(), 1);
                if n != 1 {
                    libc::_exit(127);
                }
                if stdout == ChildStdout::ToStderr {
                    libc::dup2(2, 1);
                }
                libc::execv(path.as_ptr(), arg_ptrs.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(
                    status_write.as_raw_fd(),
                    (&raw const errno).cast(),
                    std::mem::size_of::<i32>(),
                );
                libc::_exit(127);
            }
        }
        drop(read_end);
        drop(status_write);
        // SAFETY: pidfd_open on our own child, not yet waited for, so the pid is its own.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a descriptor pidfd_open just returned is ours.
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as i32) });
        Ok(GatedChild {
            pid: pid as u32,
            gate: Some(write_end),
            exec_status: Some(status_read),
            pidfd,
        })
    }

    /// The child's pid (the command keeps it across exec).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lets the child execute the command, and returns once it is executing: an error says
    /// why `execv` failed (the command then never ran).
    pub fn release(&mut self) -> io::Result<()> {
        if let Some(gate) = self.gate.take() {
            let byte = 1u8;
            // SAFETY: writing one byte from a live buffer to an owned descriptor.
            let n = unsafe { libc::write(gate.as_raw_fd(), (&raw const byte).cast(), 1) };
            if n != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        let Some(status) = self.exec_status.take() else {
            return Ok(());
        };
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < errno.len() {
            // SAFETY: reading into the live remainder of `errno` from an owned descriptor.
            let n = unsafe {
                libc::read(
                    status.as_raw_fd(),
                    errno[got..].as_mut_ptr().cast(),
                    errno.len() - got,
                )
            };
            match n {
                0 => break,
                n if n > 0 => got += n as usize,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                _ => return Err(io::Error::last_os_error()),
            }
        }
        match got {
            // Closed by a successful exec.
            0 => Ok(()),
            _ => Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno))),
        }
    }
}

/// How long a killed command may take to die before locktrace goes on without waiting.
const DEATH_WAIT_MS: libc::c_int = 5000;

impl Drop for GatedChild {
    /// Kills the command if it still runs, and waits until it is dead: a session that ends
    /// before its command (duration, signal, error) must not leave it running untraced.
    /// Through the pidfd, so a pid that was reaped and reused meanwhile is never signalled.
    fn drop(&mut self) {
        let Some(pidfd) = &self.pidfd else { return };
        // SAFETY: pidfd_send_signal on a pidfd we own; ESRCH (already gone) is fine.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        // A pidfd becomes readable when its process has exited.
        let mut poll = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polling one live pollfd.
        unsafe { libc::poll(&raw mut poll, 1, DEATH_WAIT_MS) };
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
