//! Shared helpers of the integration tests that need root and BPF: the skip rule, the
//! `locktrace` binary, the pthread test program, and temporary directories.
#![allow(dead_code)] // each test binary uses a different subset

use std::{
    path::PathBuf,
    process::Command,
    sync::{Mutex, MutexGuard, OnceLock},
};

/// Returns `true` when the test can use BPF here. Otherwise prints why and returns `false`
/// (the caller returns early: a visible skip) — unless `LOCKTRACE_REQUIRE_BPF=1`, where a
/// missing prerequisite fails the test.
pub fn bpf_available(test: &str) -> bool {
    let reason = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root")
    } else if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        Some("the kernel has no BTF")
    } else {
        None
    };
    match reason {
        None => true,
        Some(reason) => {
            if std::env::var("LOCKTRACE_REQUIRE_BPF").as_deref() == Ok("1") {
                panic!("{test}: BPF required (LOCKTRACE_REQUIRE_BPF=1) but {reason}");
            }
            eprintln!("SKIPPED {test}: {reason}");
            false
        }
    }
}

/// The `locktrace` binary built for this test run.
pub fn locktrace() -> Command {
    Command::new(env!("CARGO_BIN_EXE_locktrace"))
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// A path inside `dir`.
pub fn path_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// `tests/programs/lockpatterns.c` (pthread lock patterns), built with frame pointers once per
/// test binary.
pub fn lockpatterns() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let source = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/programs/lockpatterns.c"
            );
            let out = std::env::temp_dir().join(format!("lockpatterns-{}", std::process::id()));
            let status = Command::new("cc")
                .args(["-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
                .arg(&out)
                .arg(source)
                .status()
                .expect("a C compiler (cc) to build the test program");
            assert!(status.success(), "building {source}");
            out
        })
        .clone()
}

/// Holds off every other test of this binary that runs a locktrace session until the guard
/// is dropped. A session sees all kernel activity, another test's locktrace included: its
/// object's per-CPU maps are allocations a session counts, and a repeated call is sent once,
/// by whichever process made it first.
pub fn one_session_at_a_time() -> MutexGuard<'static, ()> {
    static SESSIONS: Mutex<()> = Mutex::new(());
    SESSIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
