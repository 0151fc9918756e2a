//! Lock classes: which lock instances lockdep's checks treat as one.
//!
//! lockdep keys a class by the site that initialised the lock; a tracer cannot see that, so
//! [`classify`] decides, in this one place, from what the event and the symbol tables give:
//!
//! 1. a kernel lock inside a kallsyms data symbol is a static class keyed by its address and
//!    named by the symbol (`pcpu_lock`, `foo_struct+0x8`);
//! 2. a kernel lock in an object of a dedicated slab cache is keyed by (cache, offset of the
//!    lock in the object): the lock field, as lockdep's class for it (`&mm_struct+0x70`);
//!    one in a generic `kmalloc-*` cache, where objects of many types mix, or whose offset is
//!    unknown, by (cache, offset, acquiring function), named `&kmalloc-64 (taken in f)`;
//! 3. any other kernel lock (per-CPU data, locks in page-table pages, and every dynamic lock
//!    where the kernel has no `bpf_get_kmem_cache`) is keyed by the function acquiring it,
//!    named `lock (taken in f)`: that memory is reused for other objects, so an address says
//!    nothing lasting (a page-table page comes back as another level's table, and classes
//!    keyed by address made cycles out of such reuse);
//! 4. a user-space lock is keyed by (pid, address), named by its ELF symbol when known.
//!
//! Every class records which rule made it ([`ClassSource`]); reports show it. Classes are
//! cached by address where the address alone decides them, and by call site otherwise; names
//! are computed at report time so that symbols learned later are used.

use rustc_hash::FxHashMap;
use tracer_common::{Event, LockKind};

use super::usage::ClassUsage;
use crate::symbols::Symbols;

/// Index of a class in the engine (dense, in order of first sight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ClassId(pub u32);

/// What identifies a class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassKey {
    /// A static kernel lock: its address.
    Static {
        /// The lock's address.
        addr: u64,
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
        /// Start of the acquiring function (the caller when unresolved).
        site: u64,
    },
    /// Any other kernel lock: the function acquiring it.
    Site {
        /// Start of the acquiring function (the caller when unresolved).
        site: u64,
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
    /// Inside a kallsyms data symbol.
    KernelSymbol,
    /// A lock field of a dedicated slab cache.
    SlabField,
    /// In a slab object, split by acquiring function.
    SlabCache,
    /// A kernel lock with no symbol and no slab cache, split by acquiring function.
    KernelSite,
    /// A user-space lock.
    UserLock,
}

impl ClassSource {
    /// A human description, shown in reports.
    pub const fn describe(self) -> &'static str {
        match self {
            ClassSource::KernelSymbol => "static lock (kallsyms data symbol)",
            ClassSource::SlabField => "slab object field (cache + offset in the object)",
            ClassSource::SlabCache => "slab object (cache + acquiring function)",
            ClassSource::KernelSite => "acquiring function (no symbol, no slab cache)",
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
    /// The process of its first acquisition.
    pub first_pid: u32,
    /// Usage bits and their first traces.
    pub usage: ClassUsage,
}

/// The class policy: the key and source of the lock `ev` acquires.
pub fn classify(ev: &Event, kind: LockKind, symbols: &Symbols) -> (ClassKey, ClassSource) {
    let addr = ev.lock_addr;
    if kind.is_user() {
        return (ClassKey::User { pid: ev.pid, addr }, ClassSource::UserLock);
    }
    if symbols.kernel.data(addr).is_some() {
        return (ClassKey::Static { addr }, ClassSource::KernelSymbol);
    }
    let site = symbols
        .kernel
        .function(ev.caller)
        .map_or(ev.caller, |(sym, _)| sym.addr);
    if ev.slab_cache != 0 {
        let dedicated = symbols
            .slab_caches
            .get(&ev.slab_cache)
            .is_some_and(|name| !is_generic_cache(name));
        if dedicated && ev.slab_offset != 0 {
            let key = ClassKey::SlabField {
                cache: ev.slab_cache,
                offset: ev.slab_offset - 1,
            };
            return (key, ClassSource::SlabField);
        }
        let key = ClassKey::Slab {
            cache: ev.slab_cache,
            offset: ev.slab_offset,
            site,
        };
        return (key, ClassSource::SlabCache);
    }
    (ClassKey::Site { site }, ClassSource::KernelSite)
}

/// True for the kmalloc caches, which hold objects of many types.
fn is_generic_cache(name: &str) -> bool {
    name.contains("kmalloc")
}

impl ClassKey {
    /// True when the lock's address (with its cache or process) alone decides the class.
    fn by_address(&self) -> bool {
        matches!(
            self,
            ClassKey::Static { .. } | ClassKey::SlabField { .. } | ClassKey::User { .. }
        )
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
            ClassKey::SlabField { cache, offset } => {
                format!("&{}+{offset:#x}", cache_name(cache))
            }
            ClassKey::Slab {
                cache,
                offset,
                site,
            } => match offset {
                0 => format!("&{} (taken in {})", cache_name(cache), kernel_fn(site)),
                o => format!(
                    "&{}+{:#x} (taken in {})",
                    cache_name(cache),
                    o - 1,
                    kernel_fn(site)
                ),
            },
            ClassKey::Site { site } => format!("lock (taken in {})", kernel_fn(site)),
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

/// Every class, and the caches that map a lock address to its class.
#[derive(Debug, Default)]
pub struct ClassTable {
    classes: Vec<LockClass>,
    by_key: FxHashMap<ClassKey, ClassId>,
    /// (address, slab cache or pid tag) → class, or [`BY_SITE`]: the hot-path cache.
    by_addr: FxHashMap<(u64, u64), ClassId>,
    /// (call site, slab cache, slab offset) → class, for classes keyed by acquiring function.
    by_site: FxHashMap<(u64, u64, u32), ClassId>,
    addr_cache_limit: usize,
    /// Times the address cache was emptied for reaching its limit.
    pub(crate) addr_cache_flushes: u64,
}

/// Tags user addresses in the address cache so they never meet kernel addresses.
const USER_TAG: u64 = 1 << 63;
/// What the address cache holds for a lock classed by its acquiring function: look the
/// call site up.
const BY_SITE: ClassId = ClassId(u32::MAX);

impl ClassTable {
    /// An empty table whose address cache holds at most `addr_cache_limit` entries.
    pub fn new(addr_cache_limit: usize) -> ClassTable {
        ClassTable {
            addr_cache_limit: addr_cache_limit.max(1),
            ..ClassTable::default()
        }
    }

    /// The class of the lock `ev` acquires or releases, creating it if new. The second value
    /// is true when the class was created.
    #[inline]
    pub fn resolve(&mut self, ev: &Event, kind: LockKind, symbols: &Symbols) -> (ClassId, bool) {
        let tag = if kind.is_user() {
            USER_TAG | u64::from(ev.pid)
        } else {
            ev.slab_cache
        };
        match self.by_addr.get(&(ev.lock_addr, tag)) {
            Some(&BY_SITE) => {
                let site_key = (ev.caller, ev.slab_cache, ev.slab_offset);
                if let Some(&id) = self.by_site.get(&site_key) {
                    return (id, false);
                }
            }
            Some(&id) => return (id, false),
            None => {}
        }
        self.resolve_slow(ev, kind, symbols, tag)
    }

    #[cold]
    fn resolve_slow(
        &mut self,
        ev: &Event,
        kind: LockKind,
        symbols: &Symbols,
        tag: u64,
    ) -> (ClassId, bool) {
        let (key, source) = classify(ev, kind, symbols);
        let mut created = false;
        let id = *self.by_key.entry(key).or_insert_with(|| {
            created = true;
            let id = ClassId(self.classes.len() as u32);
            self.classes.push(LockClass {
                id,
                key,
                source,
                kind,
                first_addr: ev.lock_addr,
                first_caller: ev.caller,
                first_pid: ev.pid,
                usage: ClassUsage::default(),
            });
            id
        });
        if self.by_addr.len() >= self.addr_cache_limit {
            // Lock instances come and go (slab objects are freed); a bounded cache keeps
            // memory proportional to classes, not to every address ever seen.
            self.by_addr.clear();
            self.addr_cache_flushes += 1;
        }
        if key.by_address() {
            self.by_addr.insert((ev.lock_addr, tag), id);
        } else {
            if self.by_site.len() >= self.addr_cache_limit {
                self.by_site.clear();
            }
            self.by_addr.insert((ev.lock_addr, tag), BY_SITE);
            self.by_site
                .insert((ev.caller, ev.slab_cache, ev.slab_offset), id);
        }
        (id, created)
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
        s
    }

    fn class_of(addr: u64, slab: u64, kind: LockKind, pid: u32) -> (String, ClassSource) {
        let syms = symbols();
        let mut table = ClassTable::new(16);
        let mut ev = Event::zeroed();
        ev.lock_addr = addr;
        ev.slab_cache = slab;
        ev.caller = 0xffffffff81000010;
        ev.pid = pid;
        let (id, created) = table.resolve(&ev, kind, &syms);
        assert!(created);
        assert_eq!(table.resolve(&ev, kind, &syms), (id, false), "cached");
        let class = table.get(id);
        (class.name(&syms), class.source)
    }

    #[test]
    fn policy_names_each_kind_of_class() {
        let cases = [
            (
                0xffffffff82a00000,
                0,
                LockKind::Spin,
                0,
                "pcpu_lock",
                ClassSource::KernelSymbol,
            ),
            (
                0xffffffff82a00108,
                0,
                LockKind::Spin,
                0,
                "foo_struct+0x8",
                ClassSource::KernelSymbol,
            ),
            (
                0xffff888012345600,
                0xffff_8880_0000_1000,
                LockKind::Spin,
                0,
                "&kmalloc-64 (taken in foo_func)",
                ClassSource::SlabCache,
            ),
            (
                0xffff888012345600,
                0,
                LockKind::Mutex,
                0,
                "lock (taken in foo_func)",
                ClassSource::KernelSite,
            ),
            (
                0x601000,
                0,
                LockKind::PthreadMutex,
                7,
                "app_lock",
                ClassSource::UserLock,
            ),
            (
                0x602000,
                0,
                LockKind::PthreadMutex,
                7,
                "pthread_mutex@0x602000 (first taken in 0xffffffff81000010)",
                ClassSource::UserLock,
            ),
        ];
        for (addr, slab, kind, pid, name, source) in cases {
            assert_eq!(class_of(addr, slab, kind, pid), (name.to_string(), source));
        }
    }

    #[test]
    fn slab_instances_share_a_class_per_site() {
        let syms = symbols();
        let mut table = ClassTable::new(1);
        let mut ev = Event::zeroed();
        ev.slab_cache = 0xffff_8880_0000_1000;
        ev.caller = 0xffffffff81000010;
        ev.lock_addr = 0xffff888000aa0000;
        let (a, _) = table.resolve(&ev, LockKind::Spin, &syms);
        ev.lock_addr = 0xffff888000bb0000;
        ev.caller = 0xffffffff81000020;
        let (b, created) = table.resolve(&ev, LockKind::Spin, &syms);
        assert_eq!(a, b, "same cache, same function");
        assert!(!created);
        assert_eq!(
            table.addr_cache_flushes, 1,
            "a cache of one entry was flushed"
        );
    }
}
