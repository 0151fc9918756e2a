//! Lock classes, as the engine keeps them: which lock instances lockdep's checks treat as one.
//!
//! The policy itself runs where the locks are taken (`tracer_common::class::classify`, in the
//! BPF programs and in `crate::model`) and every held lock a fact reports carries its
//! [`ClassDesc`]. The engine takes those as they are, with one refinement: classes keyed by an
//! acquisition site are keyed here by the function that site is in (the programs see return
//! addresses; the function is what lockdep's reports name). Names are computed at report time,
//! so that symbols learned later are used.
//!
//! User-space locks are keyed as lockdep keys a static lock, by the code rather than the
//! process: a lock in a binary's static data by (binary, symbol) ([`ClassKey::UserStatic`]),
//! so that a program run a thousand times has one class per lock, not a thousand; the binary
//! is its GNU build id, else its path, as the merge matches it. A lock no binary places (heap,
//! stack) stays keyed by process and address ([`ClassKey::User`]): an address means nothing in
//! another process.
//!
//! Several recordings (a merge) are told apart by a recording number: a class is keyed by its
//! recording and its key, since addresses mean nothing outside their recording. A merging
//! table ([`ClassTable::merging`]) also matches classes across recordings by their
//! [`stable_name`], never by address: the same symbol, slab cache and offset, per-CPU variable,
//! acquiring function, or user-space symbol in the same binary is one class.

use rustc_hash::{FxHashMap, FxHashSet};
use tracer_common::{ClassDesc, ClassTag, HeldLock, LockFamily, LockKind};

use super::usage::ClassUsage;
use crate::symbols::Symbols;

/// Index of a class in the engine (dense, in order of first sight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ClassId(pub u32);

/// What identifies a class in the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassKey {
    /// A static kernel lock: its address.
    Static {
        /// The lock's address.
        addr: u64,
    },
    /// A lock in a static per-CPU variable: its offset in the per-CPU area.
    PerCpu {
        /// The offset.
        offset: u32,
    },
    /// A lock field of a dedicated slab cache's objects.
    SlabField {
        /// `struct kmem_cache *`.
        cache: u64,
        /// The lock's offset in the object.
        offset: u32,
    },
    /// A lock in a slab object of a generic cache (or at an unknown offset), by acquiring
    /// function.
    Slab {
        /// `struct kmem_cache *`.
        cache: u64,
        /// The lock's offset in the object plus one, 0 when unknown.
        offset: u32,
        /// Start of the acquiring function (the site when unresolved).
        site: u64,
        /// The lock's type.
        family: LockFamily,
    },
    /// Any other kernel lock: the function acquiring it, and the lock's type.
    Site {
        /// Start of the acquiring function (the site when unresolved).
        site: u64,
        /// The lock's type.
        family: LockFamily,
    },
    /// A user-space lock in a binary's static data, by the binary and the lock's symbol
    /// (lockdep's static key: the code, not the process): every process running the binary
    /// shares it. An index into the table's [`UserStaticNames`].
    UserStatic {
        /// Which (binary, symbol).
        id: u32,
    },
    /// A user-space lock no binary places (heap, stack, or a binary not known): process and
    /// address.
    User {
        /// Thread-group id.
        pid: u32,
        /// The lock's address in that process.
        addr: u64,
    },
}

/// How a class was identified (which rule of the policy made it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassSource {
    /// In the kernel image or a module's static data.
    KernelSymbol,
    /// In the static per-CPU area.
    PerCpu,
    /// A lock field of a dedicated slab cache.
    SlabField,
    /// In a slab object, split by acquiring function.
    SlabCache,
    /// A kernel lock with no static address, per-CPU offset or slab cache, split by acquiring
    /// function.
    KernelSite,
    /// A user-space lock no binary places, by process and address.
    UserLock,
    /// A user-space lock in a binary's static data, by binary and symbol.
    UserStatic,
}

impl ClassSource {
    /// A human description, shown in reports.
    pub const fn describe(self) -> &'static str {
        match self {
            ClassSource::KernelSymbol => "static lock (address in the kernel image or a module)",
            ClassSource::PerCpu => "per-CPU variable (offset in the per-CPU area)",
            ClassSource::SlabField => "slab object field (cache + offset in the object)",
            ClassSource::SlabCache => "slab object (cache + acquiring function)",
            ClassSource::KernelSite => {
                "acquiring function (no static address, per-CPU offset or slab cache)"
            }
            ClassSource::UserLock => "user-space lock (pid + address)",
            ClassSource::UserStatic => "user-space static lock (binary + symbol)",
        }
    }
}

/// One lock class and what the engine learned about it.
#[derive(Clone, Debug)]
pub struct LockClass {
    /// Its id.
    pub id: ClassId,
    /// The recording that first showed it (0 unless several are merged): `key`,
    /// `first_addr` and `first_caller` are addresses of that recording, named by its symbols.
    pub recording: u16,
    /// What identifies it.
    pub key: ClassKey,
    /// Which rule made it.
    pub source: ClassSource,
    /// The lock kind of its first acquisition.
    pub kind: LockKind,
    /// Address of the first instance seen.
    pub first_addr: u64,
    /// Where it was first acquired.
    pub first_caller: u64,
    /// The process of the first instance seen, for a user-space lock (0 for a kernel one):
    /// `first_addr` and `first_caller` are its addresses, and name the class.
    pub first_pid: u32,
    /// Usage bits and their first traces.
    pub usage: ClassUsage,
}

/// The engine's key and source for a class the programs describe as `desc`; a user-space
/// lock that a binary places gets its id from `user_static` (`None` when that has none).
fn engine_key(
    desc: &ClassDesc,
    symbols: &Symbols,
    user_static: impl FnOnce(String) -> Option<u32>,
) -> Option<(ClassKey, ClassSource)> {
    let function = |site: u64| {
        symbols
            .kernel
            .function(site)
            .map_or(site, |(sym, _)| sym.addr)
    };
    Some(match desc.class_tag() {
        Some(ClassTag::Static) => (ClassKey::Static { addr: desc.a }, ClassSource::KernelSymbol),
        Some(ClassTag::PerCpu) => (
            ClassKey::PerCpu {
                offset: desc.offset,
            },
            ClassSource::PerCpu,
        ),
        Some(ClassTag::SlabField) => (
            ClassKey::SlabField {
                cache: desc.a,
                offset: desc.offset,
            },
            ClassSource::SlabField,
        ),
        Some(ClassTag::Slab) => (
            ClassKey::Slab {
                cache: desc.a,
                offset: desc.offset,
                site: function(desc.b),
                family: desc.lock_family(),
            },
            ClassSource::SlabCache,
        ),
        Some(ClassTag::User) => {
            let (pid, addr) = (desc.b as u32, desc.a);
            match user_static_name(pid, addr, symbols) {
                Some(name) => (
                    ClassKey::UserStatic {
                        id: user_static(name)?,
                    },
                    ClassSource::UserStatic,
                ),
                None => (ClassKey::User { pid, addr }, ClassSource::UserLock),
            }
        }
        Some(ClassTag::Site) | None => (
            ClassKey::Site {
                site: function(desc.b),
                family: desc.lock_family(),
            },
            ClassSource::KernelSite,
        ),
    })
}

/// What names the user-space lock at `addr` in process `pid` in every process running the
/// same binary: its symbol with the binary it is in (its build id, else its path); `None`
/// for a lock no symbol covers or whose binary is not known.
fn user_static_name(pid: u32, addr: u64, symbols: &Symbols) -> Option<String> {
    let symbol = symbols.user_locks.get(&(pid, addr))?;
    let object = symbols.user_lock_objects.get(&(pid, addr))?;
    Some(match &object.build_id {
        Some(id) => format!("build-id {id} {symbol}"),
        None => format!("path {} {symbol}", object.path),
    })
}

/// The (binary, symbol) names of user-space static lock classes, interned: a
/// [`ClassKey::UserStatic`] is an index here.
#[derive(Debug, Default)]
struct UserStaticNames {
    ids: FxHashMap<String, u32>,
    names: Vec<String>,
}

impl UserStaticNames {
    /// The id of `name`, given one when new.
    fn intern(&mut self, name: String) -> u32 {
        if let Some(&id) = self.ids.get(&name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}

/// The name that identifies a class across recordings, or `None` when it has none: a kernel
/// class named by a symbol, a per-CPU variable, a slab cache (and offset) or an acquiring
/// function, prefixed by the rule that made it; a user-space lock's symbol with the binary it
/// is in (its build id, else its path). A class that could only be named by an address, or a
/// user-space lock whose binary the recording does not know, has none.
fn stable_name(
    key: &ClassKey,
    source: ClassSource,
    symbols: &Symbols,
    user_statics: &UserStaticNames,
) -> Option<String> {
    let function = |addr: u64| symbols.kernel.function(addr).map(|(sym, _)| &sym.name);
    let cache = |cache: u64| {
        symbols
            .slab_caches
            .get(&cache)
            .filter(|name| !name.is_empty())
    };
    let name = match *key {
        ClassKey::Static { addr } => symbols.kernel.data_name(addr)?,
        ClassKey::PerCpu { offset } => symbols.percpu_name(offset)?,
        ClassKey::SlabField { cache: c, offset } => format!("{}+{offset:#x}", cache(c)?),
        ClassKey::Slab {
            cache: c,
            offset,
            site,
            family,
        } => format!(
            "{}+{offset:#x} {} {}",
            cache(c)?,
            family.name(),
            function(site)?
        ),
        ClassKey::Site { site, family } => format!("{} {}", family.name(), function(site)?),
        ClassKey::UserStatic { id } => user_statics.names[id as usize].clone(),
        // A lock a binary placed is a `UserStatic` class: this one has only its address.
        ClassKey::User { .. } => return None,
    };
    Some(format!("{source:?} {name}"))
}

impl LockClass {
    /// The class's name as reports print it, from the symbols known now.
    pub fn name(&self, symbols: &Symbols) -> String {
        let kernel_fn = |addr: u64| match symbols.kernel.function(addr) {
            Some((sym, _)) => sym.name.clone(),
            None => format!("{addr:#x}"),
        };
        let cache_name = |cache: u64| {
            symbols
                .slab_caches
                .get(&cache)
                .cloned()
                .unwrap_or_else(|| format!("slab@{cache:#x}"))
        };
        match self.key {
            ClassKey::Static { addr } => symbols
                .kernel
                .data_name(addr)
                .unwrap_or_else(|| format!("lock#{addr:x}")),
            ClassKey::PerCpu { offset } => symbols
                .percpu_name(offset)
                .unwrap_or_else(|| format!("per-CPU+{offset:#x}")),
            ClassKey::SlabField { cache, offset } => {
                format!("&{}+{offset:#x}", cache_name(cache))
            }
            ClassKey::Slab {
                cache,
                offset,
                site,
                ..
            } => match offset {
                0 => format!("&{} (taken in {})", cache_name(cache), kernel_fn(site)),
                o => format!(
                    "&{}+{:#x} (taken in {})",
                    cache_name(cache),
                    o - 1,
                    kernel_fn(site)
                ),
            },
            ClassKey::Site { site, family } => {
                format!("{} (taken in {})", family.name(), kernel_fn(site))
            }
            ClassKey::User { .. } | ClassKey::UserStatic { .. } => {
                let (pid, addr) = (self.first_pid, self.first_addr);
                match symbols.user_locks.get(&(pid, addr)) {
                    Some(name) => name.clone(),
                    None => {
                        let site = match symbols.user_functions.get(&(pid, self.first_caller)) {
                            Some(frame) => frame.to_string(),
                            None => format!("{:#x}", self.first_caller),
                        };
                        format!("{}@{addr:#x} (first taken in {site})", self.kind.name())
                    }
                }
            }
        }
    }
}

/// Every class, and the cache from the programs' class keys to the engine's classes.
#[derive(Debug, Default)]
pub struct ClassTable {
    classes: Vec<LockClass>,
    by_key: FxHashMap<(u16, ClassKey), ClassId>,
    /// The programs' class key (`ClassDesc::key`) → class, for the current recording: the
    /// common path. User-space locks are not cached here: the programs key them by process,
    /// and an entry per process would outlive it.
    by_desc: FxHashMap<u64, ClassId>,
    /// The (binary, symbol) names of [`ClassKey::UserStatic`] classes.
    user_statics: UserStaticNames,
    /// The recording whose facts are being read.
    recording: u16,
    /// Matching across recordings by name, in a merging table.
    names: Option<NameMatching>,
}

/// A merging table's classes by [`stable_name`].
#[derive(Debug, Default)]
struct NameMatching {
    /// Stable name → class.
    by_name: FxHashMap<String, ClassId>,
    /// (recording, stable name) claimed by a class of that recording: a second class with
    /// the same name in one recording (two static functions of one name) is ambiguous, and is
    /// kept to its recording.
    taken: FxHashSet<(u16, String)>,
    /// Every (recording, class) pair and whether it had a usable stable name, in order of
    /// first sight.
    members: Vec<(u16, ClassId, bool)>,
}

impl NameMatching {
    /// The stable name of `key`, claimed for it in `recording`; `None` when it has none or
    /// another class of the same recording claimed the same name first (that one keeps it;
    /// this one is kept to its recording).
    fn claim(
        &mut self,
        recording: u16,
        key: ClassKey,
        source: ClassSource,
        symbols: &Symbols,
        user_statics: &UserStaticNames,
    ) -> Option<String> {
        let name = stable_name(&key, source, symbols, user_statics)?;
        self.taken.insert((recording, name.clone())).then_some(name)
    }
}

/// How a merge matched classes across recordings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatchStats {
    /// Classes summed over recordings (a class seen in two recordings counts twice).
    pub classes: u64,
    /// Of those, classes whose stable name some other recording also showed.
    pub matched: u64,
    /// Classes with a stable name no other recording showed.
    pub named_once: u64,
    /// Classes with no stable name (named by an address, a user lock's binary unknown, or a
    /// name two classes of one recording share), kept to their recording.
    pub unnamed: u64,
}

impl ClassTable {
    /// A table that matches classes across recordings by [`stable_name`].
    pub fn merging() -> ClassTable {
        ClassTable {
            names: Some(NameMatching::default()),
            ..ClassTable::default()
        }
    }

    /// The facts resolved from now on belong to `recording`; the programs' class keys of the
    /// previous one mean nothing here.
    pub fn start_recording(&mut self, recording: u16) {
        if recording != self.recording {
            self.by_desc.clear();
            self.recording = recording;
        }
    }

    /// The class of a held lock a fact reports, creating it if new. The second value is true
    /// when the class was created.
    #[inline]
    pub fn resolve(&mut self, lock: &HeldLock, symbols: &Symbols) -> (ClassId, bool) {
        if let Some(&id) = self.by_desc.get(&lock.class_key) {
            return (id, false);
        }
        self.resolve_slow(lock, symbols)
    }

    #[cold]
    fn resolve_slow(&mut self, lock: &HeldLock, symbols: &Symbols) -> (ClassId, bool) {
        let statics = &mut self.user_statics;
        let (key, source) = engine_key(&lock.class, symbols, |name| Some(statics.intern(name)))
            .expect("every name is interned");
        let recording = self.recording;
        let cache = lock.class.class_tag() != Some(ClassTag::User);
        if let Some(&id) = self.by_key.get(&(recording, key)) {
            if cache {
                self.by_desc.insert(lock.class_key, id);
            }
            return (id, false);
        }
        // In a merging table: the stable name, when this key may carry it in this recording.
        let user_statics = &self.user_statics;
        let name = self
            .names
            .as_mut()
            .and_then(|names| names.claim(recording, key, source, symbols, user_statics));
        let matched = name
            .as_ref()
            .and_then(|name| self.names.as_ref()?.by_name.get(name).copied());
        let (id, created) = match matched {
            Some(id) => (id, false),
            None => {
                let id = ClassId(self.classes.len() as u32);
                self.classes.push(LockClass {
                    id,
                    recording,
                    key,
                    source,
                    kind: lock.lock_kind(),
                    first_addr: lock.addr,
                    first_caller: lock.site,
                    first_pid: match lock.class.class_tag() {
                        Some(ClassTag::User) => lock.class.b as u32,
                        _ => 0,
                    },
                    usage: ClassUsage::default(),
                });
                (id, true)
            }
        };
        if let Some(names) = &mut self.names {
            names.members.push((recording, id, name.is_some()));
            if let (true, Some(name)) = (created, name) {
                names.by_name.insert(name, id);
            }
        }
        self.by_key.insert((recording, key), id);
        if cache {
            self.by_desc.insert(lock.class_key, id);
        }
        (id, created)
    }

    /// How a merging table matched classes (all zero for a table that does not merge).
    pub fn match_stats(&self) -> MatchStats {
        let Some(names) = &self.names else {
            return MatchStats::default();
        };
        let mut recordings: FxHashMap<ClassId, FxHashSet<u16>> = FxHashMap::default();
        for &(recording, id, _) in &names.members {
            recordings.entry(id).or_default().insert(recording);
        }
        let mut stats = MatchStats::default();
        for &(_, id, named) in &names.members {
            stats.classes += 1;
            if !named {
                stats.unnamed += 1;
            } else if recordings[&id].len() > 1 {
                stats.matched += 1;
            } else {
                stats.named_once += 1;
            }
        }
        stats
    }

    /// The class the programs' `desc` of `recording` stands for, if the engine has seen it: by
    /// the programs' key, or else by the engine's (a site class's other sites in the same
    /// function).
    pub fn find(&self, desc: &ClassDesc, symbols: &Symbols, recording: u16) -> Option<ClassId> {
        let cached = (recording == self.recording)
            .then(|| self.by_desc.get(&desc.key()))
            .flatten();
        cached.copied().or_else(|| {
            // A lookup only: a (binary, symbol) never interned has no class.
            let (key, _) = engine_key(desc, symbols, |name| {
                self.user_statics.ids.get(&name).copied()
            })?;
            self.by_key.get(&(recording, key)).copied()
        })
    }

    /// The class `recording`'s class `key` became, if seen.
    pub fn by_key(&self, recording: u16, key: ClassKey) -> Option<ClassId> {
        self.by_key.get(&(recording, key)).copied()
    }

    /// A class by id.
    pub fn get(&self, id: ClassId) -> &LockClass {
        &self.classes[id.0 as usize]
    }

    /// A class by id, mutably.
    pub fn get_mut(&mut self, id: ClassId) -> &mut LockClass {
        &mut self.classes[id.0 as usize]
    }

    /// Every class, by id.
    pub fn all(&self) -> &[LockClass] {
        &self.classes
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// True when no class exists yet.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::class::{Instance, classify};

    use super::*;
    use crate::symbols::KernelSymbols;

    fn symbols() -> Symbols {
        let mut s = Symbols {
            kernel: KernelSymbols::parse(
                "ffffffff81000000 T foo_func\nffffffff82a00000 d pcpu_lock\n\
                 ffffffff82a00100 d foo_struct\n",
            ),
            ..Symbols::default()
        };
        s.slab_caches
            .insert(0xffff_8880_0000_1000, "kmalloc-64".into());
        s.user_locks.insert((7, 0x601000), "app_lock".into());
        s.percpu = vec![(0x1f000, 0x1000, "runqueues".into())];
        s
    }

    fn held(inst: Instance, kind: LockKind) -> HeldLock {
        let class = classify(&Instance {
            family: kind.family(),
            ..inst
        });
        HeldLock {
            addr: inst.addr,
            site: inst.site,
            class,
            class_key: class.key(),
            kind: kind as u32,
            ..HeldLock::default()
        }
    }

    fn class_of(inst: Instance, kind: LockKind) -> (String, ClassSource) {
        let syms = symbols();
        let mut table = ClassTable::default();
        let lock = held(inst, kind);
        let (id, created) = table.resolve(&lock, &syms);
        assert!(created);
        assert_eq!(table.resolve(&lock, &syms), (id, false), "cached");
        let class = table.get(id);
        (class.name(&syms), class.source)
    }

    #[test]
    fn each_kind_of_class_is_named() {
        let site = 0xffffffff81000010;
        let at = |addr| Instance {
            addr,
            site,
            ..Instance::default()
        };
        let cases = [
            (
                at(0xffffffff82a00000),
                LockKind::Spin,
                "pcpu_lock",
                ClassSource::KernelSymbol,
            ),
            (
                at(0xffffffff82a00108),
                LockKind::Spin,
                "foo_struct+0x8",
                ClassSource::KernelSymbol,
            ),
            (
                Instance {
                    percpu_offset: Some(0x1f040),
                    ..at(0xffff888012345600)
                },
                LockKind::Spin,
                "runqueues+0x40",
                ClassSource::PerCpu,
            ),
            (
                Instance {
                    slab_cache: 0xffff_8880_0000_1000,
                    slab_generic: true,
                    ..at(0xffff888012345600)
                },
                LockKind::Spin,
                "&kmalloc-64 (taken in foo_func)",
                ClassSource::SlabCache,
            ),
            (
                at(0xffff888012345600),
                LockKind::Mutex,
                "mutex (taken in foo_func)",
                ClassSource::KernelSite,
            ),
            (
                Instance {
                    user_pid: Some(7),
                    ..at(0x601000)
                },
                LockKind::PthreadMutex,
                "app_lock",
                ClassSource::UserLock,
            ),
            (
                Instance {
                    user_pid: Some(7),
                    ..at(0x602000)
                },
                LockKind::PthreadMutex,
                "pthread_mutex@0x602000 (first taken in 0xffffffff81000010)",
                ClassSource::UserLock,
            ),
        ];
        for (inst, kind, name, source) in cases {
            assert_eq!(class_of(inst, kind), (name.to_string(), source));
        }
    }

    #[test]
    fn sites_in_one_function_are_one_class() {
        let syms = symbols();
        let mut table = ClassTable::default();
        let inst = Instance {
            addr: 0xffff888000aa0000,
            site: 0xffffffff81000010,
            ..Instance::default()
        };
        let (a, _) = table.resolve(&held(inst, LockKind::Spin), &syms);
        let other = Instance {
            addr: 0xffff888000bb0000,
            site: 0xffffffff81000020,
            ..inst
        };
        let (b, created) = table.resolve(&held(other, LockKind::Spin), &syms);
        assert_eq!(a, b, "same function");
        assert!(!created);
    }

    /// Two recordings of one kernel and one binary, at other addresses (another boot, another
    /// process): what has a stable name is one class in both, what is named by an address
    /// never is, even at the same address.
    #[test]
    fn recordings_match_by_stable_name_never_by_address() {
        let mut first = symbols();
        first.user_lock_objects.insert(
            (7, 0x601000),
            crate::symbols::UserObject {
                path: "/usr/bin/app".into(),
                build_id: Some("ab12".into()),
            },
        );
        let mut second = Symbols {
            kernel: KernelSymbols::parse(
                "ffffffff91000000 T foo_func\nffffffff92a00000 d pcpu_lock\n",
            ),
            ..Symbols::default()
        };
        second.user_locks.insert((9, 0x701000), "app_lock".into());
        second.user_lock_objects.insert(
            (9, 0x701000),
            crate::symbols::UserObject {
                path: "/opt/app".into(),
                build_id: Some("ab12".into()),
            },
        );
        let user = |pid, addr| Instance {
            addr,
            user_pid: Some(pid),
            ..Instance::default()
        };
        let kernel = |addr| Instance {
            addr,
            ..Instance::default()
        };
        let mut table = ClassTable::merging();
        let resolve = |table: &mut ClassTable, inst, kind, syms: &Symbols| {
            table.resolve(&held(inst, kind), syms).0
        };
        let static_a = resolve(
            &mut table,
            kernel(0xffffffff82a00000),
            LockKind::Spin,
            &first,
        );
        let user_a = resolve(
            &mut table,
            user(7, 0x601000),
            LockKind::PthreadMutex,
            &first,
        );
        let heap_a = resolve(&mut table, user(7, 0x5000), LockKind::PthreadMutex, &first);
        table.start_recording(1);
        let static_b = resolve(
            &mut table,
            kernel(0xffffffff92a00000),
            LockKind::Spin,
            &second,
        );
        let user_b = resolve(
            &mut table,
            user(9, 0x701000),
            LockKind::PthreadMutex,
            &second,
        );
        let heap_b = resolve(&mut table, user(7, 0x5000), LockKind::PthreadMutex, &second);
        assert_eq!(static_a, static_b, "pcpu_lock in both");
        assert_eq!(user_a, user_b, "app_lock of build id ab12 in both");
        assert_ne!(heap_a, heap_b, "an address names nothing across recordings");
        assert_eq!(
            table.get(static_b).recording,
            0,
            "named by the first to show it"
        );
        assert_eq!(
            table.match_stats(),
            MatchStats {
                classes: 6,
                matched: 4,
                named_once: 0,
                unnamed: 2,
            }
        );
        // Without a build id the binary's path must match: /usr/bin/app is not /opt/app.
        second
            .user_lock_objects
            .get_mut(&(9, 0x701000))
            .unwrap()
            .build_id = None;
        first
            .user_lock_objects
            .get_mut(&(7, 0x601000))
            .unwrap()
            .build_id = None;
        let mut table = ClassTable::merging();
        let user_a = resolve(
            &mut table,
            user(7, 0x601000),
            LockKind::PthreadMutex,
            &first,
        );
        table.start_recording(1);
        let user_b = resolve(
            &mut table,
            user(9, 0x701000),
            LockKind::PthreadMutex,
            &second,
        );
        assert_ne!(user_a, user_b);
        assert_eq!(table.match_stats().named_once, 2);
    }

    /// Lockdep keys a class by the code, not the instance's process: 1,000 runs of one
    /// binary, each at its own address (ASLR), are one class per static lock, named by its
    /// symbol; a heap lock, which no binary places, stays one class per process.
    #[test]
    fn runs_of_one_binary_share_their_static_lock_classes() {
        let mut syms = symbols();
        let object = crate::symbols::UserObject {
            path: "/usr/bin/app".into(),
            build_id: Some("ab12".into()),
        };
        let user = |pid, addr| Instance {
            addr,
            user_pid: Some(pid),
            ..Instance::default()
        };
        let runs = 1000u32;
        for pid in 100..100 + runs {
            let base = 0x5500_0000_0000 + u64::from(pid) * 0x10_0000;
            for (offset, name) in [(0x4010, "lock_a"), (0x4040, "lock_b")] {
                syms.user_locks.insert((pid, base + offset), name.into());
                syms.user_lock_objects
                    .insert((pid, base + offset), object.clone());
            }
        }
        let mut table = ClassTable::default();
        let mut heap = FxHashSet::default();
        for pid in 100..100 + runs {
            let base = 0x5500_0000_0000 + u64::from(pid) * 0x10_0000;
            for offset in [0x4010, 0x4040] {
                let lock = held(user(pid, base + offset), LockKind::PthreadMutex);
                table.resolve(&lock, &syms);
            }
            let lock = held(user(pid, 0x7f00_0000_1000), LockKind::PthreadMutex);
            heap.insert(table.resolve(&lock, &syms).0);
        }
        assert_eq!(heap.len(), runs as usize, "a heap lock per process");
        assert_eq!(table.len(), runs as usize + 2, "lock_a and lock_b once");
        let statics: Vec<(String, ClassSource)> = table
            .all()
            .iter()
            .filter(|c| c.source == ClassSource::UserStatic)
            .map(|c| (c.name(&syms), c.source))
            .collect();
        assert_eq!(
            statics,
            [
                ("lock_a".to_string(), ClassSource::UserStatic),
                ("lock_b".to_string(), ClassSource::UserStatic)
            ]
        );
        // Contention figures find the class from any run's description.
        let later = held(
            user(
                100 + runs - 1,
                0x5500_0000_0000 + u64::from(100 + runs - 1) * 0x10_0000 + 0x4040,
            ),
            LockKind::PthreadMutex,
        );
        assert_eq!(
            table.find(&later.class, &syms, 0),
            Some(table.all()[1].id),
            "lock_b"
        );
    }

    /// A table that does not merge keeps recordings apart even for named classes.
    #[test]
    fn a_plain_table_never_matches_names() {
        let syms = symbols();
        let mut table = ClassTable::default();
        let inst = Instance {
            addr: 0xffffffff82a00000,
            ..Instance::default()
        };
        let (a, _) = table.resolve(&held(inst, LockKind::Spin), &syms);
        table.start_recording(1);
        let (b, created) = table.resolve(&held(inst, LockKind::Spin), &syms);
        assert_ne!(a, b);
        assert!(created);
    }
}
