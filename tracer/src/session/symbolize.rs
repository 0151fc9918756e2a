//! Naming what facts point at, while it can still be named: kernel stacks (through kallsyms)
//! and user stacks and lock addresses (through a snapshot of the process's mappings, since a
//! short-lived process may be gone before its facts are read). Each distinct stack gets a
//! [`StackKey`]. Everything learned goes into a [`Symbols`], and what is new since the last
//! call is handed out so the trace file can carry it.
//!
//! A process's user-space names are kept while it lives: once a second the session looks in
//! `/proc` for the processes the namer knows (a stat each; the programs send no exit fact),
//! and a process found gone twice in a row is forgotten — its mapping snapshot, its names and
//! stacks, its cached paths in the symbolizer — except what the sink still refers to
//! ([`PinnedNames`]: the engine's classes and first traces). A long session over thousands of
//! short-lived processes keeps what its alerts may still need, not every process it saw.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::process_maps::ProcessMaps;

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer, evict, evict::Evict, source::Elf, source::Source,
};
use tracer_common::{ClassTag, Fact, HeldLock, SLAB_NAME_LEN, flags};

use crate::{
    fact::FactRecord,
    probes::NameMaps,
    symbols::{Frame, KernelSymbol, PinnedNames, StackKey, StackSpace, Symbols, UserObject},
    tracefile::{ContentionSnapshot, Record},
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

/// Names addresses as facts arrive and remembers what it named.
pub struct Namer {
    symbols: Symbols,
    symbolizer: Symbolizer,
    maps: HashMap<u32, ProcessMaps>,
    /// Every process the namer holds something for (a snapshot, names, stacks).
    processes: HashSet<u32>,
    /// Processes whose `/proc` entry was gone at the last [`Namer::forget_exited`]: they are
    /// forgotten at the next.
    exited: HashSet<u32>,
    written_kernel: HashSet<u64>,
    /// User lock addresses already looked up that have no symbol (heap or stack locks).
    anonymous_user_locks: HashSet<(u32, u64)>,
    /// Stack ids by (process, hash of the space and frames); the process is 0 for kernel
    /// stacks.
    stack_ids: HashMap<(u32, u64), i32>,
    /// The next stack id (ids of forgotten stacks are not reused).
    next_stack_id: i32,
    /// What the trace file has not been given yet; `None` when no file is written.
    pending: Option<PendingRecords>,
}

/// Symbol knowledge not yet written to the trace file.
#[derive(Default)]
struct PendingRecords {
    kernel: Vec<KernelSymbol>,
    stacks: Vec<(StackKey, Vec<Frame>)>,
    user_locks: Vec<((u32, u64), String)>,
    user_lock_objects: Vec<((u32, u64), UserObject)>,
    user_functions: Vec<((u32, u64), Frame)>,
    slab_caches: Vec<(u64, String)>,
    percpu: Vec<(u64, u64, String)>,
}

impl Namer {
    /// Starts with the kernel's symbol table (kallsyms, or a System.map given by the user);
    /// with `records`, keeps what it learns for [`Namer::take_records`] (a recording) too.
    pub fn new(kernel: crate::symbols::KernelSymbols, records: bool) -> Namer {
        Namer {
            symbols: Symbols {
                kernel,
                ..Symbols::default()
            },
            symbolizer: Symbolizer::new(),
            maps: HashMap::new(),
            processes: HashSet::new(),
            exited: HashSet::new(),
            written_kernel: HashSet::new(),
            anonymous_user_locks: HashSet::new(),
            stack_ids: HashMap::new(),
            next_stack_id: 0,
            pending: records.then(PendingRecords::default),
        }
    }

    /// Knows the kernel's static per-CPU variables (offset, size, name), to name per-CPU
    /// classes.
    pub fn set_percpu_vars(&mut self, vars: &[(u64, u64, String)]) {
        self.symbols.percpu = vars.to_vec();
        if let Some(pending) = &mut self.pending {
            pending.percpu = vars.to_vec();
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
                self.processes.insert(pid);
                true
            }
            None => false,
        }
    }

    /// Forgets the processes that have exited, so that a long session over many short-lived
    /// processes does not keep each forever: a process goes at the second call that finds its
    /// `/proc` entry gone (facts it left in the ring are named in between: the session calls
    /// this every second and drains the ring every 10 ms), with its snapshot, its names and
    /// its stacks, except those `pinned` gives for the processes going (what the sink still
    /// refers to). What went to the trace file stays there.
    pub fn forget_exited(&mut self, pinned: impl FnOnce(&HashSet<u32>) -> PinnedNames) {
        let gone: HashSet<u32> = self
            .processes
            .iter()
            .copied()
            .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        let going: HashSet<u32> = gone.intersection(&self.exited).copied().collect();
        self.exited = gone;
        if going.is_empty() {
            return;
        }
        let pinned = pinned(&going);
        for pid in &going {
            if let Some(maps) = self.maps.remove(pid) {
                // Paths through /proc/PID/root are this process's alone.
                for path in maps.paths() {
                    let _ = self.symbolizer.evict(&Evict::Elf(evict::Elf::new(path)));
                }
            }
            self.processes.remove(pid);
        }
        self.symbols.forget_processes(&going, &pinned);
        self.anonymous_user_locks
            .retain(|(pid, _)| !going.contains(pid));
        self.stack_ids.retain(|(pid, _), _| !going.contains(pid));
    }

    /// How many processes the namer holds something for (a snapshot, names or stacks).
    pub fn processes(&self) -> usize {
        self.processes.len()
    }

    /// How many processes' mapping snapshots are kept.
    pub fn snapshots(&self) -> usize {
        self.maps.len()
    }

    /// Names what `fact` points at and returns it as user space keeps it; `None` for a kind
    /// this build does not know. A call seen by a tracepoint without its caller gets its
    /// stack's first frame.
    pub fn observe(&mut self, fact: &Fact, maps: &NameMaps) -> Option<FactRecord> {
        let user = fact.has(flags::USER_STACK);
        let stack = self.name_stack(fact, user);
        let mut record = FactRecord::from_fact(fact, stack)?;
        if record.lock.site == 0
            && !user
            && let Some(first) = stack
                .and_then(|key| self.symbols.stacks.get(&key))
                .and_then(|frames| frames.first())
        {
            record.lock.site = first.addr;
        }
        for lock in record.held.iter().chain([&record.lock]) {
            self.name_lock(lock, record.pid, maps);
        }
        Some(record)
    }

    /// Names the slab caches of the classes contention figures are about.
    pub fn observe_contention(&mut self, snapshot: &ContentionSnapshot, maps: &NameMaps) {
        for stat in &snapshot.stats {
            if matches!(
                stat.class.class_tag(),
                Some(ClassTag::SlabField | ClassTag::Slab)
            ) && !self.symbols.slab_caches.contains_key(&stat.class.a)
            {
                self.name_slab_cache(stat.class.a, maps);
            }
        }
    }

    /// Names the class and site of one held lock.
    fn name_lock(&mut self, lock: &HeldLock, pid: u32, maps: &NameMaps) {
        match lock.class.class_tag() {
            Some(ClassTag::User) => {
                self.name_user_lock(lock.class.b as u32, lock.addr, lock.site);
                return;
            }
            Some(ClassTag::SlabField | ClassTag::Slab)
                if !self.symbols.slab_caches.contains_key(&lock.class.a) =>
            {
                self.name_slab_cache(lock.class.a, maps);
            }
            _ => {}
        }
        let _ = pid;
        self.note_kernel_addr(lock.addr);
        self.note_kernel_addr(lock.site);
    }

    /// The key of the fact's stack, symbolizing it the first time it is seen.
    fn name_stack(&mut self, fact: &Fact, user: bool) -> Option<StackKey> {
        let frames = fact.frames();
        if frames.is_empty() {
            return None;
        }
        let pid = if user { fact.pid } else { 0 };
        if user {
            self.processes.insert(pid);
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (user, frames).hash(&mut hasher);
        let next = &mut self.next_stack_id;
        let id = *self
            .stack_ids
            .entry((pid, hasher.finish()))
            .or_insert_with(|| {
                *next += 1;
                *next - 1
            });
        let key = StackKey {
            space: if user {
                StackSpace::User
            } else {
                StackSpace::Kernel
            },
            pid,
            id,
        };
        if !self.symbols.stacks.contains_key(&key) {
            let named = if user {
                frames
                    .iter()
                    .map(|&ip| self.user_frame(fact.pid, ip))
                    .collect()
            } else {
                self.kernel_frames(frames)
            };
            if let Some(pending) = &mut self.pending {
                pending.stacks.push((key, named.clone()));
            }
            self.symbols.stacks.insert(key, named);
        }
        Some(key)
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
        if let Some(pending) = self.pending.as_mut().filter(|_| !name.is_empty()) {
            pending.slab_caches.push((cache, name.clone()));
        }
        self.symbols.slab_caches.insert(cache, name);
    }

    fn note_kernel_addr(&mut self, addr: u64) {
        if addr == 0 {
            return;
        }
        if let Some(pending) = &mut self.pending
            && let Some((sym, _)) = self.symbols.kernel.lookup(addr)
            && self.written_kernel.insert(sym.addr)
        {
            pending.kernel.push(sym.clone());
        }
    }

    /// Names kernel frames, innermost first, without the leading frames of the probe itself.
    fn kernel_frames(&mut self, ips: &[u64]) -> Vec<Frame> {
        let mut frames = Vec::new();
        for &ip in ips {
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

    fn name_user_lock(&mut self, pid: u32, addr: u64, site: u64) {
        self.processes.insert(pid);
        let key = (pid, addr);
        if !self.symbols.user_locks.contains_key(&key) && !self.anonymous_user_locks.contains(&key)
        {
            let frame = self.user_frame(pid, addr);
            // Only a symbol that contains the address names a static lock; heap and stack
            // locks stay anonymous and the engine names them by where they were taken.
            if let Some(name) = frame.function {
                let name = if frame.offset == 0 {
                    name
                } else {
                    format!("{name}+{:#x}", frame.offset)
                };
                if let Some(pending) = &mut self.pending {
                    pending.user_locks.push((key, name.clone()));
                }
                self.symbols.user_locks.insert(key, name);
                if let Some(object) = self.maps.get(&pid).and_then(|m| m.object(addr)) {
                    if let Some(pending) = &mut self.pending {
                        pending.user_lock_objects.push((key, object.clone()));
                    }
                    self.symbols.user_lock_objects.insert(key, object);
                }
            } else {
                self.anonymous_user_locks.insert(key);
            }
        }
        if site != 0 {
            let key = (pid, site);
            if !self.symbols.user_functions.contains_key(&key) {
                let frame = self.user_frame(pid, site);
                if let Some(pending) = &mut self.pending {
                    pending.user_functions.push((key, frame.clone()));
                }
                self.symbols.user_functions.insert(key, frame);
            }
        }
    }

    /// The symbol records learned since the last call, for the trace file (none when the
    /// namer was made without `records`).
    pub fn take_records(&mut self) -> Vec<Record> {
        let Some(pending) = self.pending.as_mut().map(std::mem::take) else {
            return Vec::new();
        };
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
        if !pending.user_lock_objects.is_empty() {
            records.push(Record::UserLockObjects(pending.user_lock_objects));
        }
        if !pending.slab_caches.is_empty() {
            records.push(Record::SlabCaches(pending.slab_caches));
        }
        if !pending.user_functions.is_empty() {
            records.push(Record::UserFunctions(pending.user_functions));
        }
        if !pending.percpu.is_empty() {
            records.push(Record::PercpuVars(pending.percpu));
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::Namer;
    use crate::symbols::{KernelSymbols, PinnedNames};

    /// A process's snapshot and names live as long as it does, and one more second; then
    /// only what the sink pins stays.
    #[test]
    fn exited_processes_are_forgotten_at_the_second_look_but_what_is_pinned() {
        let mut namer = Namer::new(KernelSymbols::parse(""), false);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let (me, pid) = (std::process::id(), child.id());
        // Heap locks (no symbol covers them) and their sites, in both processes.
        namer.name_user_lock(me, 0x10, 0x20);
        namer.name_user_lock(pid, 0x10, 0x20);
        namer.name_user_lock(pid, 0x10, 0x30);
        let nothing = |_: &HashSet<u32>| -> PinnedNames { panic!("nothing is due") };
        namer.forget_exited(nothing);
        assert_eq!((namer.processes(), namer.snapshots()), (2, 2), "both live");
        child.kill().unwrap();
        child.wait().unwrap();
        namer.forget_exited(nothing);
        assert_eq!(
            namer.processes(),
            2,
            "kept one more round for facts in flight"
        );
        namer.forget_exited(|going| {
            assert_eq!(going, &HashSet::from([pid]));
            PinnedNames {
                addresses: HashSet::from([(pid, 0x30)]),
                ..PinnedNames::default()
            }
        });
        assert_eq!((namer.processes(), namer.snapshots()), (1, 1));
        let mut named: Vec<(u32, u64)> = namer.symbols().user_functions.keys().copied().collect();
        named.sort();
        assert_eq!(named, [(me, 0x20), (pid, 0x30)], "the pinned site stays");
        assert!(namer.anonymous_user_locks.iter().all(|&(p, _)| p == me));
    }

    /// A kernel stack starts with our program and its trampoline (or the tracepoint
    /// machinery): those frames are not the traced code's.
    #[test]
    fn leading_tracing_frames_are_left_out() {
        let kallsyms = "\
ffffffff81000000 T do_work
ffffffff81100000 T _raw_spin_lock
ffffffffa0000000 t bpf_trampoline_6442514761\t[bpf]
ffffffffa0001000 t bpf_prog_1234_acq_spin\t[bpf]
";
        let mut namer = Namer::new(KernelSymbols::parse(kallsyms), false);
        let frames = namer.kernel_frames(&[
            0xffffffffa0001010,
            0xffffffffa0000048,
            0xffffffff81000010,
            0xffffffffa0000048,
        ]);
        let names: Vec<String> = frames.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["do_work+0x10", "bpf_trampoline_6442514761+0x48"],
            "only leading tracing frames go"
        );
    }
}
