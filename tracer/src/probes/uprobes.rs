//! pthread lock probes: finding the C library a process really uses and attaching the
//! uprobes and uretprobes to it.

use std::{
    num::NonZeroU32,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{ProgramError, UProbe, uprobe::UProbeScope},
};

use super::{
    AttachKind, Attachment, Outcome, ProbeError, UserTarget,
    catalog::{self, UserProbe},
    kernel::{self, explain},
    proc_path,
};

/// True for a mapped file that is the C library (`libc.so.6`, `libc-2.31.so`, musl's
/// `libc.musl-x86_64.so.1` has no pthread symbols of its own name and is matched too).
fn is_libc(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("libc.so") || name.starts_with("libc-") || name.starts_with("libc.musl")
}

/// The C library mapped into process `pid` (or this process), as a path openable from here.
pub fn find_libc(pid: Option<u32>) -> Result<PathBuf, ProbeError> {
    let maps_path = match pid {
        Some(pid) => format!("/proc/{pid}/maps"),
        None => "/proc/self/maps".to_string(),
    };
    let maps = std::fs::read_to_string(&maps_path)
        .map_err(|e| ProbeError::UserProbes(format!("cannot read {maps_path}: {e}")))?;
    let path = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.starts_with('/') && is_libc(path))
        .ok_or_else(|| {
            ProbeError::UserProbes(format!(
                "no C library mapped in {maps_path}: a static binary cannot be traced through \
                 its libc"
            ))
        })?;
    Ok(match pid {
        Some(pid) => proc_path(pid, path),
        None => PathBuf::from(path),
    })
}

/// The (device, inode) of a file: two paths to one library compare equal.
pub fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Every pthread probe, refused for `why`.
pub fn not_attached(why: &str) -> Vec<Attachment> {
    catalog::USER_LOCKS
        .iter()
        .flat_map(|probe| {
            probe
                .functions
                .iter()
                .map(move |function| attachment(probe, function, Err(why.to_string())))
        })
        .collect()
}

/// `probe` on `function`: attached, or refused and why.
fn attachment(probe: &UserProbe, function: &str, result: Result<(), String>) -> Attachment {
    let kind = if probe.ret {
        AttachKind::Uretprobe
    } else {
        AttachKind::Uprobe
    };
    Attachment {
        program: probe.program,
        name: format!("{}:{function}", kind.name()),
        kind,
        outcome: match result {
            Ok(()) => Outcome::Attached,
            Err(reason) => Outcome::Refused(reason),
        },
    }
}

/// Every distinct C library (by device and inode) mapped by any running process, as paths
/// openable from here: what "all processes" means for uprobes, containers included.
pub fn system_libcs() -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(path) = find_libc(Some(pid))
            && let Some(id) = file_identity(&path)
            && seen.insert(id)
        {
            found.push(path);
        }
    }
    found
}

/// Attaches the pthread probes for `target`; `empty` attaches the empty baseline programs.
/// Returns the probes and the libraries probed.
pub fn attach(
    ebpf: &mut Ebpf,
    target: UserTarget,
    empty: bool,
) -> Result<(Vec<Attachment>, Vec<PathBuf>), ProbeError> {
    let libraries = match target {
        UserTarget::Process(pid) => vec![find_libc(Some(pid))?],
        UserTarget::AllProcesses | UserTarget::ProbeOnly => {
            let all = system_libcs();
            if all.is_empty() {
                return Err(ProbeError::UserProbes(
                    "no running process maps a C library".to_string(),
                ));
            }
            all
        }
    };
    let mut attachments = Vec::new();
    for libc in &libraries {
        attachments.extend(attach_library(ebpf, target, libc, empty)?);
    }
    Ok((attachments, libraries))
}

/// Attaches the pthread probes to the C library at `libc`, for `target`.
pub fn attach_library(
    ebpf: &mut Ebpf,
    target: UserTarget,
    libc: &Path,
    empty: bool,
) -> Result<Vec<Attachment>, ProbeError> {
    let scope = match target {
        UserTarget::AllProcesses => UProbeScope::AllProcesses,
        // Fires only for locktrace itself, which the programs ignore.
        UserTarget::ProbeOnly => UProbeScope::CallingProcess,
        UserTarget::Process(pid) => UProbeScope::OneProcess(
            NonZeroU32::new(pid)
                .ok_or_else(|| ProbeError::UserProbes("pid 0 is not a process".into()))?,
        ),
    };
    Ok(catalog::USER_LOCKS
        .iter()
        .map(|probe| match (empty, probe.ret) {
            (false, _) => *probe,
            (true, false) => UserProbe {
                program: catalog::EMPTY_UPROBE,
                ..*probe
            },
            (true, true) => UserProbe {
                program: catalog::EMPTY_URETPROBE,
                ..*probe
            },
        })
        .flat_map(|probe| attach_program(ebpf, &probe, libc, scope))
        .collect())
}

fn attach_program(
    ebpf: &mut Ebpf,
    probe: &UserProbe,
    libc: &Path,
    scope: UProbeScope,
) -> Vec<Attachment> {
    let attachment = |function: &str, result| attachment(probe, function, result);
    let program = ebpf
        .program_mut(probe.program)
        .unwrap_or_else(|| panic!("program {} missing from the eBPF object", probe.program));
    let uprobe = match <&mut UProbe>::try_from(program) {
        Ok(p) => p,
        Err(e) => {
            let why = e.to_string();
            return probe
                .functions
                .iter()
                .map(|f| attachment(f, Err(why.clone())))
                .collect();
        }
    };
    if let Err(e) = uprobe.load()
        && !matches!(e, ProgramError::AlreadyLoaded)
    {
        kernel::save_verifier_log(probe.program, &e);
        let why = explain(&e, false);
        return probe
            .functions
            .iter()
            .map(|f| attachment(f, Err(why.clone())))
            .collect();
    }
    probe
        .functions
        .iter()
        .map(|function| {
            let result = uprobe
                .attach([*function], libc, scope)
                .map(drop)
                .map_err(|e| explain(&e, false));
            attachment(function, result)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_names() {
        assert!(is_libc("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(is_libc("/lib/libc-2.31.so"));
        assert!(!is_libc("/usr/lib/x86_64-linux-gnu/libcap.so.2"));
        assert!(!is_libc("/usr/lib/x86_64-linux-gnu/libcrypt.so.1"));
    }

    #[test]
    fn every_process_libc_is_found_once() {
        let all = system_libcs();
        let own = find_libc(None).unwrap();
        assert!(
            all.iter().any(|p| file_identity(p) == file_identity(&own)),
            "{all:?} lacks {own:?}"
        );
        let mut ids: Vec<_> = all.iter().map(|p| file_identity(p)).collect();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "no library twice");
    }

    #[test]
    fn this_process_has_a_libc() {
        let path = find_libc(None).expect("the test binary links glibc");
        assert!(path.exists(), "{path:?}");
    }
}
