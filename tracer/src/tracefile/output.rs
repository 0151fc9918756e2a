//! Where a recording is written: never into the target path itself. locktrace runs as root
//! and the file holds kernel addresses, so a target in a shared directory must not be a way to
//! overwrite, re-mode or leak anything.
//!
//! [`OutputFile::create`] makes a new file next to the target, `<target>.partial`: created
//! exclusively (a name that exists, symbolic link or not, is never opened for writing), mode
//! 0600, owned by the running user, and locked (`flock`) for as long as the recording runs.
//! The target is only looked at (a symbolic link, FIFO, device, directory or socket there is
//! refused) until `OutputFile::commit` renames the finished recording over it, and only if
//! nothing else replaced it meanwhile. So:
//!
//! - nothing at the target is opened, truncated or chmodded, and a failed recording leaves
//!   it as it was;
//! - a second recording to the same target fails at once (the partial file exists and is
//!   locked), and one that finds the target replaced at the end keeps its own data in its
//!   partial file rather than overwrite the other's;
//! - a recording killed outright (SIGKILL, a crash) leaves its facts, readable, in
//!   `<target>.partial`; the next recording to that target refuses to start until it is moved
//!   away or removed.

use std::ffi::{CString, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::{IoOp, TraceError};

/// The file a recording is being written to, and the target it will replace when finished.
#[derive(Debug)]
pub struct OutputFile {
    target: PathBuf,
    partial: PathBuf,
    file: File,
    /// The regular file at the target when recording began, as (device, inode).
    replaces: Option<(u64, u64)>,
    /// Set once renamed into place, or when the partial file is to be kept.
    settled: bool,
}

impl OutputFile {
    /// Creates and locks `<target>.partial`. Fails when the target exists and is not a
    /// regular file ([`TraceError::NotRegularFile`]), when another process is recording to
    /// the same target ([`TraceError::Busy`]), when a killed recording left its partial file
    /// ([`TraceError::LeftOver`]), and when the file cannot be created ([`TraceError::Io`],
    /// naming the target).
    pub fn create(target: &Path) -> Result<OutputFile, TraceError> {
        let replaces = match std::fs::symlink_metadata(target) {
            Ok(meta) => {
                regular(target, &meta, IoOp::Create)?;
                Some((meta.dev(), meta.ino()))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(TraceError::io(IoOp::Create, target, err)),
        };
        let partial = partial_path(target).ok_or_else(|| {
            TraceError::io(IoOp::Create, target, io::ErrorKind::InvalidInput.into())
        })?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&partial);
        let file = match file {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(why_partial_exists(target, &partial));
            }
            Err(err) => return Err(TraceError::io(IoOp::Create, target, err)),
        };
        let mut output = OutputFile {
            target: target.to_path_buf(),
            partial,
            file,
            replaces,
            settled: false,
        };
        if let Err(err) = flock(&output.file, libc::LOCK_EX | libc::LOCK_NB) {
            // Our own new file: nobody else can hold a lock on it yet.
            let err = TraceError::io(IoOp::Lock, &output.partial, err);
            output.discard();
            return Err(err);
        }
        Ok(output)
    }

    /// The file being written: `<target>.partial`.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// The open partial file.
    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Waits until the finished recording is on disk, then renames it over the target,
    /// unless the target changed since [`OutputFile::create`] ([`TraceError::Replaced`]).
    /// Whatever the outcome, the partial file is kept from then on (a recording that could
    /// not be put in place stays there): call it once.
    pub(crate) fn commit(&mut self) -> Result<(), TraceError> {
        self.settled = true;
        self.file
            .sync_all()
            .map_err(|err| TraceError::io(IoOp::Sync, &self.partial, err))?;
        let replaced = || TraceError::Replaced {
            path: self.target.clone(),
            partial: self.partial.clone(),
        };
        let renamed = match self.replaces {
            // Nothing was there: the rename itself refuses to replace what appeared since.
            None => rename_noreplace(&self.partial, &self.target),
            Some(id) => match std::fs::symlink_metadata(&self.target) {
                Ok(meta) if meta.is_file() && (meta.dev(), meta.ino()) == id => {
                    std::fs::rename(&self.partial, &self.target)
                }
                Ok(_) | Err(_) => return Err(replaced()),
            },
        };
        match renamed {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Err(replaced()),
            Err(err) => {
                return Err(TraceError::Commit {
                    partial: self.partial.clone(),
                    path: self.target.clone(),
                    source: err.into(),
                });
            }
        }
        // The rename is durable once the directory is: failing that is no reason to fail a
        // recording that is in place.
        if let Some(dir) = self.target.parent()
            && let Ok(dir) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Leaves the partial file where it is when dropped (it holds something worth reading).
    pub(crate) fn keep(&mut self) {
        self.settled = true;
    }

    /// Removes the partial file, if it is still the one created here.
    fn discard(&mut self) {
        self.settled = true;
        let ours = (|| {
            let on_disk = std::fs::symlink_metadata(&self.partial).ok()?;
            let open = self.file.metadata().ok()?;
            Some((on_disk.dev(), on_disk.ino()) == (open.dev(), open.ino()))
        })();
        if ours == Some(true) {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

impl Drop for OutputFile {
    /// A recording neither committed nor kept leaves nothing behind.
    fn drop(&mut self) {
        if !self.settled {
            self.discard();
        }
    }
}

/// `<target>.partial`, or `None` when the target has no file name (`/`, `..`).
fn partial_path(target: &Path) -> Option<PathBuf> {
    let mut name = OsString::from(target.file_name()?);
    name.push(".partial");
    Some(target.with_file_name(name))
}

/// Refuses anything but a regular file, naming what it is.
pub(crate) fn regular(path: &Path, meta: &std::fs::Metadata, op: IoOp) -> Result<(), TraceError> {
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(TraceError::NotRegularFile {
        op,
        path: path.to_path_buf(),
        what,
    })
}

/// Why `<target>.partial` could not be created although its directory is writable.
fn why_partial_exists(target: &Path, partial: &Path) -> TraceError {
    let meta = match std::fs::symlink_metadata(partial) {
        Ok(meta) => meta,
        Err(err) => return TraceError::io(IoOp::Create, target, err),
    };
    if let Err(err) = regular(partial, &meta, IoOp::Create) {
        return err;
    }
    let locked = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(partial)
        .map(|file| {
            flock(&file, libc::LOCK_SH | libc::LOCK_NB)
                .is_err_and(|err| err.kind() == io::ErrorKind::WouldBlock)
        });
    if let Ok(true) = locked {
        TraceError::Busy {
            path: target.to_path_buf(),
            partial: partial.to_path_buf(),
        }
    } else {
        TraceError::LeftOver {
            partial: partial.to_path_buf(),
        }
    }
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a descriptor this `File` owns.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// rename(2) that fails with `AlreadyExists` instead of replacing `to`. Falls back to a check
/// then a rename on file systems without RENAME_NOREPLACE.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that live across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(err);
    }
    match std::fs::symlink_metadata(to) {
        Ok(_) => Err(io::ErrorKind::AlreadyExists.into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::rename(from, to),
        Err(e) => Err(e),
    }
}
