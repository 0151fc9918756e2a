//! Names for addresses: kernel symbols, symbolized stacks, slab caches and user-space lock names.
//!
//! A [`Symbols`] value is everything a report needs to turn addresses into names. Live, the
//! session fills it as new addresses and stacks appear; the trace file carries the same tables,
//! so a recording made on one machine reports identically on another.

pub mod kallsyms;

use std::collections::HashMap;

pub use kallsyms::{KernelSymbol, KernelSymbols};

/// One symbolized stack frame.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frame {
    /// The instruction address.
    pub addr: u64,
    /// The function containing it, when known.
    pub function: Option<String>,
    /// Offset of `addr` from the function's start.
    pub offset: u64,
    /// Source file, when debug information gave one.
    pub file: Option<String>,
    /// Source line, when debug information gave one.
    pub line: Option<u32>,
}

impl Frame {
    /// A frame with no name.
    pub fn unresolved(addr: u64) -> Frame {
        Frame {
            addr,
            ..Frame::default()
        }
    }
}

impl std::fmt::Display for Frame {
    /// `function+0xoff/` style like the kernel's `%pS`, with `file:line` when known.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.function {
            Some(name) => write!(f, "{name}+{:#x}", self.offset)?,
            None => write!(f, "{:#x}", self.addr)?,
        }
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            write!(f, " ({file}:{line})")?;
        }
        Ok(())
    }
}

/// Which address space a stack belongs to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum StackSpace {
    /// A kernel stack.
    Kernel,
    /// A user stack of process `pid` (user addresses only mean something per process).
    User,
}

/// Identifies a stack recorded in the BPF stack-trace map.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct StackKey {
    /// Kernel or user.
    pub space: StackSpace,
    /// The process for user stacks; 0 for kernel stacks.
    pub pid: u32,
    /// The id `bpf_get_stackid` returned.
    pub id: i32,
}

impl StackKey {
    /// The key of a kernel stack.
    pub fn kernel(id: i32) -> StackKey {
        StackKey {
            space: StackSpace::Kernel,
            pid: 0,
            id,
        }
    }

    /// The key of a user stack of process `pid`.
    pub fn user(pid: u32, id: i32) -> StackKey {
        StackKey {
            space: StackSpace::User,
            pid,
            id,
        }
    }
}

/// Everything needed to name what a trace contains.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    /// Kernel symbols (text, and data where the kernel exports them or `--symbols` gave them).
    pub kernel: KernelSymbols,
    /// Symbolized stacks, by the key the events carry.
    pub stacks: HashMap<StackKey, Vec<Frame>>,
    /// Slab cache names, by `struct kmem_cache *` (from [`tracer_common::Event::slab_cache`]).
    pub slab_caches: HashMap<u64, String>,
    /// Names of user-space locks by (pid, address): the ELF symbol of a static lock.
    pub user_locks: HashMap<(u32, u64), String>,
    /// Names of user-space code addresses by (pid, address), for acquisition sites.
    pub user_functions: HashMap<(u32, u64), Frame>,
    /// The static per-CPU variables (offset in the per-CPU area, size, name), from the
    /// kernel's BTF, sorted by offset.
    pub percpu: Vec<(u64, u64, String)>,
    /// The binary each named user-space lock is in, by (pid, address) as in `user_locks`
    /// (recordings before format version 3 do not have them).
    pub user_lock_objects: HashMap<(u32, u64), UserObject>,
}

/// A binary a user-space lock lives in: what, with the lock's symbol, names it the same way
/// in every process and on every machine that runs the same binary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UserObject {
    /// Its path as the process mapped it (inside the process's mount namespace).
    pub path: String,
    /// Its GNU build id in hex, when it has one: the same bytes wherever it is installed.
    pub build_id: Option<String>,
}

impl Symbols {
    /// The frames of a stack, if it was symbolized.
    pub fn stack(&self, key: StackKey) -> Option<&[Frame]> {
        self.stacks.get(&key).map(Vec::as_slice)
    }

    /// The per-CPU variable at `offset` in the per-CPU area: `name` or `name+0x40`.
    pub fn percpu_name(&self, offset: u32) -> Option<String> {
        let offset = u64::from(offset);
        let i = self
            .percpu
            .partition_point(|(start, _, _)| *start <= offset);
        let (start, size, name) = self.percpu.get(i.checked_sub(1)?)?;
        if offset >= start + (*size).max(1) {
            return None;
        }
        Some(match offset - start {
            0 => name.clone(),
            off => format!("{name}+{off:#x}"),
        })
    }
}
