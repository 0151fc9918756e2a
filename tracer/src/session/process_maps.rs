//! Where a process's code and static data come from: a snapshot of `/proc/PID/maps` plus each
//! file's ELF load segments, enough to turn any of its addresses (code, `.data` or `.bss`) into
//! a file and an ELF virtual address after the process is gone.

use std::collections::HashMap;

use object::{Object, ObjectSegment};

use crate::symbols::UserObject;

/// One file-backed mapping.
#[derive(Clone, Debug)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: String,
}

/// A file's load segments: (virtual address, memory size, file offset); and its GNU build id
/// in hex, read in the same parse.
#[derive(Clone, Debug, Default)]
struct Segments(Vec<(u64, u64, u64)>, Option<String>);

impl Segments {
    fn read(path: &str) -> Option<Segments> {
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let build_id = file
            .build_id()
            .ok()
            .flatten()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
        Some(Segments(
            file.segments()
                .map(|s| (s.address(), s.size(), s.file_range().0))
                .collect(),
            build_id,
        ))
    }

    /// The segment holding file offset `off`: its (vaddr, size, file offset).
    fn by_file_offset(&self, off: u64) -> Option<(u64, u64, u64)> {
        self.0
            .iter()
            .copied()
            .filter(|&(_, _, file_off)| file_off <= off)
            .max_by_key(|&(_, _, file_off)| file_off)
    }

    fn contains_vaddr(&self, vaddr: u64) -> bool {
        self.0
            .iter()
            .any(|&(start, size, _)| (start..start + size).contains(&vaddr))
    }
}

/// A snapshot of one process's file mappings.
#[derive(Clone, Debug, Default)]
pub struct ProcessMaps {
    mappings: Vec<Mapping>,
    segments: HashMap<String, Segments>,
}

impl ProcessMaps {
    /// Reads the mappings of `pid`; `None` when the process is gone or has none.
    pub fn read(pid: u32) -> Option<ProcessMaps> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let mappings: Vec<Mapping> = text.lines().filter_map(|l| parse_line(pid, l)).collect();
        if mappings.is_empty() {
            return None;
        }
        let mut segments = HashMap::new();
        for m in &mappings {
            if !segments.contains_key(&m.path)
                && let Some(s) = Segments::read(&m.path)
            {
                segments.insert(m.path.clone(), s);
            }
        }
        Some(ProcessMaps { mappings, segments })
    }

    /// The file and ELF virtual address that `addr` belongs to. Addresses past a file's
    /// mappings (its `.bss`, which is anonymous memory) still resolve when they fall in one of
    /// its load segments.
    pub fn resolve(&self, addr: u64) -> Option<(&str, u64)> {
        // Each file is mapped with one bias: address = vaddr + bias.
        let mut best: Option<(&str, u64)> = None;
        for m in &self.mappings {
            let Some(segments) = self.segments.get(&m.path) else {
                continue;
            };
            let Some((vaddr, _, file_off)) = segments.by_file_offset(m.offset) else {
                continue;
            };
            let bias = m
                .start
                .wrapping_sub(vaddr.wrapping_add(m.offset - file_off));
            let candidate = addr.wrapping_sub(bias);
            if (m.start..m.end).contains(&addr) {
                return Some((m.path.as_str(), candidate));
            }
            if addr >= m.start && segments.contains_vaddr(candidate) {
                best = Some((m.path.as_str(), candidate));
            }
        }
        best
    }
}

impl ProcessMaps {
    /// The paths this snapshot reads the process's files through (under `/proc/PID/root`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.segments.keys().map(String::as_str)
    }

    /// The binary `addr` belongs to: its path as the process sees it (without the
    /// `/proc/PID/root` prefix this snapshot reads it through) and its build id.
    pub fn object(&self, addr: u64) -> Option<UserObject> {
        let (path, _) = self.resolve(addr)?;
        let build_id = self.segments.get(path).and_then(|s| s.1.clone());
        let seen = path
            .strip_prefix("/proc/")
            .and_then(|rest| rest.split_once("/root/"))
            .map_or(path.to_string(), |(_, inside)| format!("/{inside}"));
        Some(UserObject {
            path: seen,
            build_id,
        })
    }
}

fn parse_line(pid: u32, line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let _perms = fields.next()?;
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.next()?;
    if !path.starts_with('/') {
        return None;
    }
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset,
        path: format!("/proc/{pid}/root{path}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static IN_BSS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    #[inline(never)]
    fn a_function() -> u64 {
        IN_BSS.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn resolves_own_code_and_bss() {
        let maps = ProcessMaps::read(std::process::id()).expect("own maps");
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe_name = exe.file_name().unwrap().to_string_lossy().into_owned();
        let (path, _) = maps
            .resolve(a_function as *const () as u64)
            .expect("code resolves");
        assert!(path.ends_with(&exe_name), "{path} is not {exe_name}");
        let (path, _) = maps
            .resolve(&raw const IN_BSS as u64)
            .expect("bss resolves");
        assert!(path.ends_with(&exe_name), "{path} is not {exe_name}");
        assert_eq!(a_function(), 0);
        let object = maps.object(&raw const IN_BSS as u64).expect("bss object");
        assert_eq!(
            std::path::Path::new(&object.path),
            exe,
            "the path the process sees"
        );
        assert!(
            object.build_id.is_some_and(|id| id.len() >= 16),
            "rustc links a GNU build id"
        );
    }
}
