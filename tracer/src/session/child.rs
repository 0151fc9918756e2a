//! Spawning the traced command so that nothing it does escapes the probes: the child is
//! forked, waits on a pipe until the probes are attached, then executes the command.

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

    /// Waits for the child to end (blocking); returns its exit status as a shell would show it.
    pub fn wait(pid: u32) -> io::Result<i32> {
        let mut status = 0;
        loop {
            // SAFETY: waiting on our own child with a live status slot.
            let ret = unsafe { libc::waitpid(pid as i32, &raw mut status, 0) };
            if ret == pid as i32 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        })
    }
}
