//! Names for addresses: kernel symbols, symbolized stacks, slab caches and user-space lock names.
//!
//! A [`Symbols`] value is everything a report needs to turn addresses into names. Live, the
//! session fills it as new addresses and stacks appear; the trace file carries the same tables,
//! so a recording made on one machine reports identically on another.

pub mod kallsyms;

use std::collections::{HashMap, HashSet};

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

/// The user-space names of some processes that something still refers to (the engine's
/// classes, dependencies and usage traces), kept when the processes are forgotten.
#[derive(Clone, Debug, Default)]
pub struct PinnedNames {
    /// User stacks.
    pub stacks: HashSet<StackKey>,
    /// Lock and code addresses, by (pid, address).
    pub addresses: HashSet<(u32, u64)>,
}

impl Symbols {
    /// Forgets the user-space names of the processes `pids` (gone: their addresses will mean
    /// nothing again), except what `pinned` holds.
    pub fn forget_processes(&mut self, pids: &HashSet<u32>, pinned: &PinnedNames) {
        let keep = |key: &(u32, u64)| !pids.contains(&key.0) || pinned.addresses.contains(key);
        self.user_locks.retain(|key, _| keep(key));
        self.user_lock_objects.retain(|key, _| keep(key));
        self.user_functions.retain(|key, _| keep(key));
        self.stacks.retain(|key, _| {
            key.space != StackSpace::User || !pids.contains(&key.pid) || pinned.stacks.contains(key)
        });
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A gone process's names and user stacks go, but what is pinned; kernel stacks and other
    /// processes' names stay.
    #[test]
    fn forgetting_processes_keeps_the_pinned_and_the_others() {
        let mut symbols = Symbols::default();
        for pid in [1, 2] {
            symbols.user_locks.insert((pid, 0x10), "lock".into());
            symbols
                .user_functions
                .insert((pid, 0x20), Frame::unresolved(0x20));
            symbols
                .user_functions
                .insert((pid, 0x30), Frame::unresolved(0x30));
            symbols.stacks.insert(StackKey::user(pid, 1), vec![]);
            symbols.stacks.insert(StackKey::user(pid, 2), vec![]);
        }
        symbols.stacks.insert(StackKey::kernel(3), vec![]);
        let pinned = PinnedNames {
            stacks: HashSet::from([StackKey::user(2, 2)]),
            addresses: HashSet::from([(2, 0x30)]),
        };
        symbols.forget_processes(&HashSet::from([2]), &pinned);
        let mut functions: Vec<_> = symbols.user_functions.keys().copied().collect();
        functions.sort();
        assert_eq!(functions, [(1, 0x20), (1, 0x30), (2, 0x30)]);
        assert_eq!(symbols.user_locks.keys().collect::<Vec<_>>(), [&(1, 0x10)]);
        let mut stacks: Vec<_> = symbols.stacks.keys().copied().collect();
        stacks.sort();
        assert_eq!(
            stacks,
            [
                StackKey::kernel(3),
                StackKey::user(1, 1),
                StackKey::user(1, 2),
                StackKey::user(2, 2)
            ]
        );
    }
}
