//! Lock classes: which lock instances lockdep's checks treat as one.
//!
//! lockdep keys a class by the site that initialised the lock; a tracer cannot see that, so
//! [`classify`] decides from where the lock instance sits when it is taken, in this one place,
//! for the BPF programs and for user space alike:
//!
//! 1. a lock in the kernel image or a module's static data is its own class, keyed by its
//!    address ([`ClassTag::Static`], `pcpu_lock`);
//! 2. a lock in the static per-CPU area is keyed by its offset there, the same for every CPU
//!    ([`ClassTag::PerCpu`], `runqueues+0x0`), as lockdep's static key of a per-CPU variable;
//! 3. a lock in an object of a dedicated slab cache is keyed by (cache, offset of the lock in
//!    the object): the lock field, lockdep's class in effect ([`ClassTag::SlabField`]);
//!    one in a generic `kmalloc-*` cache, where objects of many types mix, or whose offset is
//!    unknown, by (cache, offset, acquisition site) ([`ClassTag::Slab`]);
//! 4. any other kernel lock (dynamic per-CPU memory, page-table pages, and every dynamic lock
//!    where the kernel has no `bpf_get_kmem_cache`) by its acquisition site
//!    ([`ClassTag::Site`]): that memory is reused for other objects, so an address says
//!    nothing lasting. User space merges the sites of one function into one class.
//!    Classes by site (and those of generic slab caches) are also split by lock type
//!    ([`LockFamily`]): a mutex and a spinlock taken in one function are never one lock;
//! 5. a user-space lock by (process, address) ([`ClassTag::User`]).
//!
//! A class travels as a [`ClassDesc`] (what identifies it, so user space can name it) and is
//! looked up by its [`ClassDesc::key`].

use crate::{LockFamily, hash::mix64};

/// Start of the kernel image mapping on x86-64 (`__START_KERNEL_map`): kernel text, data and
/// bss, then the module area, up to [`STATIC_END`]. Locks there are static.
pub const STATIC_START: u64 = 0xffff_ffff_8000_0000;
/// End of the module area on x86-64 (`MODULES_END`, below the fixmap).
pub const STATIC_END: u64 = 0xffff_ffff_ff00_0000;

crate::wire_enum! {
    /// Which rule of the policy made a class.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum ClassTag: u32 {
        /// A static kernel lock, by address.
        Static = 1,
        /// A lock in a static per-CPU variable, by its offset in the per-CPU area.
        PerCpu = 2,
        /// A lock field of a dedicated slab cache's objects.
        SlabField = 3,
        /// A lock in a slab object of a generic cache (or at an unknown offset), by site.
        Slab = 4,
        /// Any other kernel lock, by acquisition site.
        Site = 5,
        /// A user-space lock, by process and address.
        User = 6,
    }
}

/// What identifies a class, with room for every rule: see [`ClassTag`] for the meaning of
/// `a`, `b` and `offset` under each.
///
/// | tag        | `a`                  | `b`          | `offset`                      | `family` |
/// |------------|----------------------|--------------|-------------------------------|----------|
/// | Static     | lock address         | 0            | 0                             | 0        |
/// | PerCpu     | 0                    | 0            | offset in the per-CPU area    | 0        |
/// | SlabField  | `struct kmem_cache *`| 0            | offset in the object          | 0        |
/// | Slab       | `struct kmem_cache *`| site         | offset in the object + 1, or 0| type     |
/// | Site       | 0                    | site         | 0                             | type     |
/// | User       | lock address         | process id   | 0                             | 0        |
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClassDesc {
    /// See the table above.
    pub a: u64,
    /// See the table above.
    pub b: u64,
    /// [`ClassTag`] discriminant.
    pub tag: u16,
    /// [`LockFamily`] discriminant for classes by site, else 0 (see the table above).
    pub family: u16,
    /// See the table above.
    pub offset: u32,
}

const _: () = assert!(core::mem::size_of::<ClassDesc>() == 24);

impl ClassDesc {
    /// The decoded tag.
    pub const fn class_tag(&self) -> Option<ClassTag> {
        ClassTag::from_u32(self.tag as u32)
    }

    /// The decoded lock type of a class by site.
    pub const fn lock_family(&self) -> LockFamily {
        LockFamily::from_u32(self.family as u32)
    }

    /// The 64-bit key the chain cache and the usage map look the class up by.
    #[inline(always)]
    pub const fn key(&self) -> u64 {
        mix64(
            mix64(self.a ^ (self.tag as u64) << 56 ^ (self.family as u64) << 48)
                ^ mix64(self.b.wrapping_add(0x9e37_79b9_7f4a_7c15))
                ^ (self.offset as u64),
        )
    }

    /// The acquisition site this class depends on, if its rule uses one.
    pub const fn site(&self) -> Option<u64> {
        match self.class_tag() {
            Some(ClassTag::Slab | ClassTag::Site) => Some(self.b),
            _ => None,
        }
    }
}

/// Where a lock instance sits, as the probe that saw it taken found it: the inputs of
/// [`classify`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Instance {
    /// The lock's address.
    pub addr: u64,
    /// Where it was taken (the return address into the acquiring function), 0 if unknown.
    pub site: u64,
    /// The process, for a user-space lock; `None` for a kernel lock.
    pub user_pid: Option<u32>,
    /// Its offset in the static per-CPU area, when it lies there.
    pub percpu_offset: Option<u32>,
    /// The slab cache holding it (`struct kmem_cache *`), or 0.
    pub slab_cache: u64,
    /// Its offset in the slab object plus one, or 0 when unknown.
    pub slab_offset: u32,
    /// True when the slab cache is a generic one (`kmalloc-*`), holding objects of many types.
    pub slab_generic: bool,
    /// The lock's type.
    pub family: LockFamily,
}

/// The class policy (see the module documentation).
#[inline(always)]
pub fn classify(inst: &Instance) -> ClassDesc {
    let (tag, a, b, offset) = if let Some(pid) = inst.user_pid {
        (ClassTag::User, inst.addr, pid as u64, 0)
    } else if inst.addr >= STATIC_START && inst.addr < STATIC_END {
        (ClassTag::Static, inst.addr, 0, 0)
    } else if let Some(offset) = inst.percpu_offset {
        (ClassTag::PerCpu, 0, 0, offset)
    } else if inst.slab_cache != 0 {
        if !inst.slab_generic && inst.slab_offset != 0 {
            (
                ClassTag::SlabField,
                inst.slab_cache,
                0,
                inst.slab_offset - 1,
            )
        } else {
            (ClassTag::Slab, inst.slab_cache, inst.site, inst.slab_offset)
        }
    } else {
        (ClassTag::Site, 0, inst.site, 0)
    };
    let family = match tag {
        ClassTag::Slab | ClassTag::Site => inst.family as u16,
        _ => 0,
    };
    ClassDesc {
        a,
        b,
        tag: tag as u16,
        family,
        offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(inst: Instance) -> ClassTag {
        classify(&inst).class_tag().unwrap()
    }

    #[test]
    fn the_policy_picks_one_rule_per_instance() {
        let kernel = Instance {
            addr: 0xffff_8880_1234_5600,
            site: 0xffff_ffff_8100_0010,
            ..Instance::default()
        };
        assert_eq!(tag(kernel), ClassTag::Site);
        assert_eq!(
            tag(Instance {
                addr: 0xffff_ffff_82a0_0000,
                ..kernel
            }),
            ClassTag::Static
        );
        assert_eq!(
            tag(Instance {
                addr: 0xffff_ffff_c012_3000,
                ..kernel
            }),
            ClassTag::Static,
            "module data is static"
        );
        assert_eq!(
            tag(Instance {
                percpu_offset: Some(0x1f000),
                ..kernel
            }),
            ClassTag::PerCpu
        );
        let slab = Instance {
            slab_cache: 0xffff_8880_0000_1000,
            slab_offset: 0x71,
            ..kernel
        };
        assert_eq!(tag(slab), ClassTag::SlabField);
        assert_eq!(classify(&slab).offset, 0x70);
        assert_eq!(
            tag(Instance {
                slab_generic: true,
                ..slab
            }),
            ClassTag::Slab
        );
        assert_eq!(
            tag(Instance {
                slab_offset: 0,
                ..slab
            }),
            ClassTag::Slab
        );
        assert_eq!(
            tag(Instance {
                user_pid: Some(7),
                ..kernel
            }),
            ClassTag::User
        );
    }

    #[test]
    fn keys_tell_classes_apart_and_ignore_what_the_rule_does_not_use() {
        let a = Instance {
            addr: 0xffff_8880_0000_0100,
            slab_cache: 0xffff_8880_0000_1000,
            slab_offset: 0x11,
            site: 1,
            ..Instance::default()
        };
        let b = Instance {
            addr: 0xffff_8880_0000_9100,
            site: 2,
            ..a
        };
        assert_eq!(
            classify(&a).key(),
            classify(&b).key(),
            "one field of one cache: one class whatever the instance or site"
        );
        let generic = |inst: Instance| Instance {
            slab_generic: true,
            ..inst
        };
        assert_ne!(classify(&generic(a)).key(), classify(&generic(b)).key());
        let user = |pid| Instance {
            addr: 0x601000,
            user_pid: Some(pid),
            ..Instance::default()
        };
        assert_ne!(classify(&user(1)).key(), classify(&user(2)).key());
        let site = |family| Instance {
            addr: 0xffff_8880_0000_0100,
            site: 7,
            family,
            ..Instance::default()
        };
        assert_ne!(
            classify(&site(LockFamily::Mutex)).key(),
            classify(&site(LockFamily::Spinlock)).key(),
            "a mutex and a spinlock taken in one place are two classes"
        );
    }
}
