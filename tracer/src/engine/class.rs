//! Lock classes, as the engine keeps them: which lock instances lockdep's checks treat as one.
//!
//! The policy itself runs where the locks are taken (`tracer_common::class::classify`, in the
//! BPF programs and in `crate::model`) and every held lock a fact reports carries its
//! [`ClassDesc`]. The engine takes those as they are, with one refinement: classes keyed by an
//! acquisition site are keyed here by the function that site is in (the programs see return
//! addresses; the function is what lockdep's reports name). Names are computed at report time,
//! so that symbols learned later are used.

use rustc_hash::FxHashMap;
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
    /// A user-space lock: process and address.
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
    /// A user-space lock.
    UserLock,
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
        }
    }
}

/// One lock class and what the engine learned about it.
#[derive(Clone, Debug)]
pub struct LockClass {
    /// Its id.
    pub id: ClassId,
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
    /// Usage bits and their first traces.
    pub usage: ClassUsage,
}

/// The engine's key and source for a class the programs describe as `desc`.
pub fn engine_key(desc: &ClassDesc, symbols: &Symbols) -> (ClassKey, ClassSource) {
    let function = |site: u64| {
        symbols
            .kernel
            .function(site)
            .map_or(site, |(sym, _)| sym.addr)
    };
    match desc.class_tag() {
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
        Some(ClassTag::User) => (
            ClassKey::User {
                pid: desc.b as u32,
                addr: desc.a,
            },
            ClassSource::UserLock,
        ),
        Some(ClassTag::Site) | None => (
            ClassKey::Site {
                site: function(desc.b),
                family: desc.lock_family(),
            },
            ClassSource::KernelSite,
        ),
    }
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
            ClassKey::User { pid, addr } => match symbols.user_locks.get(&(pid, addr)) {
                Some(name) => name.clone(),
                None => {
                    let site = match symbols.user_functions.get(&(pid, self.first_caller)) {
                        Some(frame) => frame.to_string(),
                        None => format!("{:#x}", self.first_caller),
                    };
                    format!("{}@{addr:#x} (first taken in {site})", self.kind.name())
                }
            },
        }
    }
}

/// Every class, and the cache from the programs' class keys to the engine's classes.
#[derive(Debug, Default)]
pub struct ClassTable {
    classes: Vec<LockClass>,
    by_key: FxHashMap<ClassKey, ClassId>,
    /// The programs' class key (`ClassDesc::key`) → class: the common path.
    by_desc: FxHashMap<u64, ClassId>,
}

impl ClassTable {
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
        let (key, source) = engine_key(&lock.class, symbols);
        let mut created = false;
        let id = *self.by_key.entry(key).or_insert_with(|| {
            created = true;
            let id = ClassId(self.classes.len() as u32);
            self.classes.push(LockClass {
                id,
                key,
                source,
                kind: lock.lock_kind(),
                first_addr: lock.addr,
                first_caller: lock.site,
                usage: ClassUsage::default(),
            });
            id
        });
        self.by_desc.insert(lock.class_key, id);
        (id, created)
    }

    /// The class the programs' `desc` stands for, if the engine has seen it: by the programs'
    /// key, or else by the engine's (a site class's other sites in the same function).
    pub fn find(&self, desc: &ClassDesc, symbols: &Symbols) -> Option<ClassId> {
        self.by_desc
            .get(&desc.key())
            .or_else(|| self.by_key.get(&engine_key(desc, symbols).0))
            .copied()
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
}
