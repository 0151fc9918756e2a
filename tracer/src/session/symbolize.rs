//! Naming what events point at, while it can still be named: kernel stacks (from the
//! stack-trace map, through kallsyms) and user stacks and lock addresses (through a snapshot of
//! the process's mappings, since a short-lived process may be gone before its events are
//! read). Everything learned goes into a [`Symbols`], and what is new since the last call is
//! handed out so the trace file can carry it.

use std::collections::{HashMap, HashSet};

use super::process_maps::ProcessMaps;

use aya::maps::{MapData, StackTraceMap};
use blazesym::symbolize::{Input, Symbolized, Symbolizer, source::Elf, source::Source};
use tracer_common::SLAB_NAME_LEN;
use tracer_common::{Event, EventKind};

use crate::{
    probes::{NameMaps, catalog},
    symbols::{Frame, KernelSymbol, StackKey, Symbols},
    tracefile::Record,
};

/// Kernel frames that belong to the tracing machinery rather than the traced code.
fn is_tracing_frame(sym: &KernelSymbol) -> bool {
    sym.module.as_deref() == Some("bpf")
        || [
            "bpf_prog_",
            "bpf_trampoline_",
            "bpf_trace_run",
            "__traceiter_",
            "__bpf_trace_",
        ]
        .iter()
        .any(|prefix| sym.name.starts_with(prefix))
}

/// Names addresses as events arrive and remembers what it named.
pub struct Namer {
    symbols: Symbols,
    symbolizer: Symbolizer,
    maps: HashMap<u32, ProcessMaps>,
    written_kernel: HashSet<u64>,
    /// User lock addresses already looked up that have no symbol (heap or stack locks).
    anonymous_user_locks: HashSet<(u32, u64)>,
    pending: PendingRecords,
}

/// Symbol knowledge not yet written to the trace file.
#[derive(Default)]
struct PendingRecords {
    kernel: Vec<KernelSymbol>,
    stacks: Vec<(StackKey, Vec<Frame>)>,
    user_locks: Vec<((u32, u64), String)>,
    user_functions: Vec<((u32, u64), Frame)>,
    slab_caches: Vec<(u64, String)>,
}

impl Namer {
    /// Starts with the kernel's symbol table (kallsyms, or a System.map given by the user).
    pub fn new(kernel: crate::symbols::KernelSymbols) -> Namer {
        Namer {
            symbols: Symbols {
                kernel,
                ..Symbols::default()
            },
            symbolizer: Symbolizer::new(),
            maps: HashMap::new(),
            written_kernel: HashSet::new(),
            anonymous_user_locks: HashSet::new(),
            pending: PendingRecords::default(),
        }
    }

    /// Everything named so far.
    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// Remembers the mappings of `pid` (call early and again when the process may have loaded
    /// more code). Keeps the last good snapshot when the process is gone.
    pub fn snapshot_process(&mut self, pid: u32) -> bool {
        match ProcessMaps::read(pid) {
            Some(maps) => {
                self.maps.insert(pid, maps);
                true
            }
            None => false,
        }
    }

    /// Names what `event` points at, filling `event.caller` from the stack when the probe
    /// could not give it. Call before the event reaches the engine or the file.
    pub fn observe(&mut self, event: &mut Event, maps: &NameMaps) {
        if event.has(tracer_common::flags::RAW_CALLERS) {
            self.pick_caller(event);
        }
        let stacks = &maps.stacks;
        if event.slab_cache != 0 && !self.symbols.slab_caches.contains_key(&event.slab_cache) {
            self.name_slab_cache(event.slab_cache, maps);
        }
        if event.kernel_stack_id >= 0 {
            let key = StackKey::kernel(event.kernel_stack_id);
            if !self.symbols.stacks.contains_key(&key) {
                let frames = self.kernel_stack(stacks, event.kernel_stack_id as u32);
                self.pending.stacks.push((key, frames.clone()));
                self.symbols.stacks.insert(key, frames);
            }
            if event.caller == 0
                && let Some(first) = self.symbols.stacks[&key].first()
            {
                event.caller = first.addr;
            }
        }
        if event.user_stack_id >= 0 {
            let key = StackKey::user(event.pid, event.user_stack_id);
            if !self.symbols.stacks.contains_key(&key) {
                let frames = self.user_stack(stacks, event.pid, event.user_stack_id as u32);
                self.pending.stacks.push((key, frames.clone()));
                self.symbols.stacks.insert(key, frames);
            }
        }
        let user = tracer_common::LockKind::from_u32(event.lock_kind).is_some_and(|k| k.is_user());
        if user {
            self.name_user_lock(event);
        } else {
            self.note_kernel_addr(event.lock_addr);
            self.note_kernel_addr(event.caller);
        }
    }

    /// Reads the cache's name from the map the programs fill (empty when it could not be read,
    /// so it is asked once).
    fn name_slab_cache(&mut self, cache: u64, maps: &NameMaps) {
        let name = maps
            .slab_names
            .get(&cache, 0)
            .map(|raw: [u8; SLAB_NAME_LEN]| {
                let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                String::from_utf8_lossy(&raw[..len]).into_owned()
            })
            .unwrap_or_default();
        if !name.is_empty() {
            self.pending.slab_caches.push((cache, name.clone()));
        }
        self.symbols.slab_caches.insert(cache, name);
    }

    /// Turns the raw frames of a [`tracer_common::flags::RAW_CALLERS`] event into its caller:
    /// the first frame that is not our trampoline, unnamed JIT code or the probed function.
    fn pick_caller(&mut self, event: &mut Event) {
        let frames = [event.caller, event.arg, event.arg2];
        event.caller = frames
            .into_iter()
            .find(|&ip| {
                ip != 0
                    && self.symbols.kernel.function(ip).is_some_and(|(sym, _)| {
                        !is_tracing_frame(sym) && !catalog::is_probed_function(&sym.name)
                    })
            })
            .unwrap_or(0);
        event.arg = 0;
        event.arg2 = 0;
        event.flags &= !tracer_common::flags::RAW_CALLERS;
    }

    fn note_kernel_addr(&mut self, addr: u64) {
        if addr == 0 {
            return;
        }
        if let Some((sym, _)) = self.symbols.kernel.lookup(addr)
            && self.written_kernel.insert(sym.addr)
        {
            self.pending.kernel.push(sym.clone());
        }
    }

    fn kernel_stack(&mut self, stacks: &StackTraceMap<MapData>, id: u32) -> Vec<Frame> {
        let Ok(trace) = stacks.get(&id, 0) else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        for ip in trace.frames().iter().map(|f| f.ip) {
            let named = self.symbols.kernel.function(ip);
            // Leading frames are the probe itself: our program, its trampoline, the tracepoint
            // machinery. A leading frame nothing names (JIT code unknown to the table) is too.
            if frames.is_empty() && named.is_none_or(|(sym, _)| is_tracing_frame(sym)) {
                continue;
            }
            let frame = match named {
                Some((sym, offset)) => Frame {
                    addr: ip,
                    function: Some(sym.name.clone()),
                    offset,
                    file: None,
                    line: None,
                },
                None => Frame::unresolved(ip),
            };
            frames.push(frame);
        }
        for frame in &frames {
            self.note_kernel_addr(frame.addr);
        }
        frames
    }

    fn user_stack(&mut self, stacks: &StackTraceMap<MapData>, pid: u32, id: u32) -> Vec<Frame> {
        let Ok(trace) = stacks.get(&id, 0) else {
            return Vec::new();
        };
        let ips: Vec<u64> = trace.frames().iter().map(|f| f.ip).collect();
        ips.into_iter().map(|ip| self.user_frame(pid, ip)).collect()
    }

    /// Symbolizes one user address through the process's mapping snapshot, taking a new
    /// snapshot when the address is not covered (the process may have mapped more since).
    fn user_frame(&mut self, pid: u32, addr: u64) -> Frame {
        let covered = |maps: &HashMap<u32, ProcessMaps>| {
            maps.get(&pid).and_then(|m| m.resolve(addr)).is_some()
        };
        if !covered(&self.maps) {
            self.snapshot_process(pid);
        }
        let Some((path, vaddr)) = self.maps.get(&pid).and_then(|m| m.resolve(addr)) else {
            return Frame::unresolved(addr);
        };
        let source = Source::Elf(Elf::new(path));
        match self
            .symbolizer
            .symbolize_single(&source, Input::VirtOffset(vaddr))
        {
            Ok(Symbolized::Sym(sym)) => {
                let (file, line) = match &sym.code_info {
                    Some(info) => (Some(info.file.to_string_lossy().into_owned()), info.line),
                    None => (None, None),
                };
                Frame {
                    addr,
                    function: Some(sym.name.to_string()),
                    offset: sym.offset as u64,
                    file,
                    line,
                }
            }
            _ => Frame::unresolved(addr),
        }
    }

    fn name_user_lock(&mut self, event: &Event) {
        let key = (event.pid, event.lock_addr);
        if event.kind == EventKind::LockAcquire as u32
            && !self.symbols.user_locks.contains_key(&key)
            && !self.anonymous_user_locks.contains(&key)
        {
            let frame = self.user_frame(event.pid, event.lock_addr);
            // Only a symbol that contains the address names a static lock; heap and stack
            // locks stay anonymous and the engine names them by where they were taken.
            if let Some(name) = frame.function {
                let name = if frame.offset == 0 {
                    name
                } else {
                    format!("{name}+{:#x}", frame.offset)
                };
                self.pending.user_locks.push((key, name.clone()));
                self.symbols.user_locks.insert(key, name);
            } else {
                self.anonymous_user_locks.insert(key);
            }
        }
        if event.caller != 0 {
            let site = (event.pid, event.caller);
            if !self.symbols.user_functions.contains_key(&site) {
                let frame = self.user_frame(event.pid, event.caller);
                self.pending.user_functions.push((site, frame.clone()));
                self.symbols.user_functions.insert(site, frame);
            }
        }
    }

    /// The symbol records learned since the last call, for the trace file.
    pub fn take_records(&mut self) -> Vec<Record> {
        let pending = std::mem::take(&mut self.pending);
        let mut records = Vec::new();
        if !pending.kernel.is_empty() {
            records.push(Record::KernelSymbols(pending.kernel));
        }
        if !pending.stacks.is_empty() {
            records.push(Record::Stacks(pending.stacks));
        }
        if !pending.user_locks.is_empty() {
            records.push(Record::UserLocks(pending.user_locks));
        }
        if !pending.slab_caches.is_empty() {
            records.push(Record::SlabCaches(pending.slab_caches));
        }
        if !pending.user_functions.is_empty() {
            records.push(Record::UserFunctions(pending.user_functions));
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::{Event, flags};

    use super::Namer;
    use crate::symbols::KernelSymbols;

    /// The frames below our program: on 7.x the trampoline then the caller; on 6.12 the
    /// trampoline, a return address into the probed lock function, then the caller.
    #[test]
    fn the_caller_is_the_first_frame_that_is_neither_ours_nor_probed() {
        let kallsyms = "\
ffffffff81000000 T do_work
ffffffff81100000 T _raw_spin_lock
ffffffffa0000000 t bpf_trampoline_6442514761\t[bpf]
";
        let mut namer = Namer::new(KernelSymbols::parse(kallsyms));
        let cases = [
            (
                [0xffffffffa0000048, 0xffffffff81000010, 0],
                0xffffffff81000010,
            ),
            (
                [0xffffffffa0000048, 0xffffffff81100005, 0xffffffff81000020],
                0xffffffff81000020,
            ),
            // An address no symbol covers is not a caller.
            (
                [0xffffffff80000000, 0xffffffff81000030, 0],
                0xffffffff81000030,
            ),
            ([0xffffffffa0000048, 0, 0], 0),
        ];
        for (frames, caller) in cases {
            let mut ev = Event::zeroed();
            (ev.caller, ev.arg, ev.arg2) = (frames[0], frames[1], frames[2]);
            ev.flags = flags::RAW_CALLERS | flags::TRYLOCK;
            namer.pick_caller(&mut ev);
            assert_eq!(ev.caller, caller, "{frames:x?}");
            assert_eq!((ev.arg, ev.arg2), (0, 0), "the frames are not arguments");
            assert_eq!(ev.flags, flags::TRYLOCK, "only RAW_CALLERS is cleared");
        }
    }
}
