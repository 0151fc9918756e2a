//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`), for the few facts the
//! probes need: whether a function exists, the id of a kfunc, a struct member's offset and a
//! per-CPU variable's offset.
//!
//! Why not a crate: aya-obj parses BTF but keeps struct members and DATASEC entries private,
//! and btf-rs is LGPL, which does not sit well with a statically linked binary. The format is
//! simple and stable (include/uapi/linux/btf.h); this reads only what it needs.

use std::collections::HashMap;

use thiserror::Error;

/// What can go wrong reading BTF.
#[derive(Debug, Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read BTF from {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not BTF this reader understands.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
}

const BTF_MAGIC: u16 = 0xeb9f;

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_TYPE_TAG: u32 = 18;

/// One parsed type: only what the queries below use.
#[derive(Debug, Clone)]
struct Type {
    kind: u32,
    name: u32,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    kind_flag: bool,
    /// Struct/union members (name, type, bit offset) or DATASEC entries (size, type, offset).
    members: Vec<(u32, u32, u32)>,
}

/// A variable of a DATASEC (per-CPU variables are those of `.data..percpu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionVar {
    /// The variable's BTF id (what a typed ksym load needs).
    pub btf_id: u32,
    /// Its offset in the section (for `.data..percpu`, the per-CPU offset).
    pub offset: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// Parsed kernel BTF.
pub struct KernelBtf {
    strings: Vec<u8>,
    /// Index 0 is `void`; type ids index directly.
    types: Vec<Type>,
    by_name: HashMap<String, Vec<u32>>,
}

impl KernelBtf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<KernelBtf, BtfError> {
        Self::from_file("/sys/kernel/btf/vmlinux")
    }

    /// Reads BTF from a file.
    pub fn from_file(path: &str) -> Result<KernelBtf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses raw BTF (little-endian, as on x86-64).
    pub fn parse(data: &[u8]) -> Result<KernelBtf, BtfError> {
        let u16_at = |off: usize| {
            data.get(off..off + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        let u32_at = |off: usize| {
            data.get(off..off + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if u16_at(0) != Some(BTF_MAGIC) {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = u32_at(4).ok_or(BtfError::Malformed("short header"))? as usize;
        let type_off = u32_at(8).ok_or(BtfError::Malformed("short header"))? as usize;
        let type_len = u32_at(12).ok_or(BtfError::Malformed("short header"))? as usize;
        let str_off = u32_at(16).ok_or(BtfError::Malformed("short header"))? as usize;
        let str_len = u32_at(20).ok_or(BtfError::Malformed("short header"))? as usize;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        let mut types = vec![Type {
            kind: 0,
            name: 0,
            size_or_type: 0,
            kind_flag: false,
            members: Vec::new(),
        }];
        let mut pos = hdr_len + type_off;
        let end = pos + type_len;
        while pos < end {
            let name = u32_at(pos).ok_or(BtfError::Malformed("truncated type"))?;
            let info = u32_at(pos + 4).ok_or(BtfError::Malformed("truncated type"))?;
            let size_or_type = u32_at(pos + 8).ok_or(BtfError::Malformed("truncated type"))?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let mut members = Vec::new();
            let extra = match kind {
                1 | 14 | 17 => 4,        // INT, VAR, DECL_TAG
                3 => 12,                 // ARRAY
                4 | 5 | 15 => vlen * 12, // STRUCT, UNION, DATASEC
                6 | 13 => vlen * 8,      // ENUM, FUNC_PROTO
                19 => vlen * 12,         // ENUM64
                2 | 7..=12 | 16 | 18 => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            if matches!(kind, KIND_STRUCT | KIND_UNION | KIND_DATASEC) {
                for i in 0..vlen {
                    let at = pos + i * 12;
                    let a = u32_at(at).ok_or(BtfError::Malformed("truncated members"))?;
                    let b = u32_at(at + 4).ok_or(BtfError::Malformed("truncated members"))?;
                    let c = u32_at(at + 8).ok_or(BtfError::Malformed("truncated members"))?;
                    members.push(if kind == KIND_DATASEC {
                        (c, a, b)
                    } else {
                        (a, b, c)
                    });
                }
            }
            pos += extra;
            types.push(Type {
                kind,
                name,
                size_or_type,
                kind_flag: info >> 31 != 0,
                members,
            });
        }
        let mut btf = KernelBtf {
            strings,
            types,
            by_name: HashMap::new(),
        };
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, ty) in btf.types.iter().enumerate().skip(1) {
            if ty.name != 0 {
                by_name
                    .entry(btf.string(ty.name).to_string())
                    .or_default()
                    .push(id as u32);
            }
        }
        btf.by_name = by_name;
        Ok(btf)
    }

    fn string(&self, off: u32) -> &str {
        let start = off as usize;
        let Some(rest) = self.strings.get(start..) else {
            return "";
        };
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..len]).unwrap_or("")
    }

    fn ids_of_kind(&self, name: &str, kind: u32) -> impl Iterator<Item = u32> + '_ {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&id| self.types[id as usize].kind == kind)
    }

    /// The BTF id of function `name` (what a kfunc call instruction needs), if it exists.
    pub fn func_id(&self, name: &str) -> Option<u32> {
        self.ids_of_kind(name, KIND_FUNC).next()
    }

    /// The BTF id of `struct name`, if the kernel has one.
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.ids_of_kind(name, KIND_STRUCT).next()
    }

    /// True when the kernel has a function called `name`.
    pub fn has_func(&self, name: &str) -> bool {
        self.func_id(name).is_some()
    }

    /// Skips typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            let ty = &self.types[id as usize];
            if matches!(
                ty.kind,
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
            ) {
                id = ty.size_or_type;
            } else {
                break;
            }
        }
        id
    }

    /// Byte offset of `member` in `struct name`, with the member's type id. Looks into
    /// anonymous struct/union members as C does.
    fn member_in(&self, struct_id: u32, member: &str) -> Option<(u64, u32)> {
        let ty = &self.types[self.resolve(struct_id) as usize];
        if !matches!(ty.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for &(name, type_id, offset) in &ty.members {
            let bits = if ty.kind_flag {
                offset & 0xff_ffff
            } else {
                offset
            };
            if name == 0 {
                if let Some((inner, id)) = self.member_in(type_id, member) {
                    return Some((u64::from(bits / 8) + inner, id));
                }
            } else if self.string(name) == member {
                return Some((u64::from(bits / 8), type_id));
            }
        }
        None
    }

    /// Byte offset of a member path such as `["se", "cfs_rq"]` in `struct name`.
    pub fn member_offset(&self, struct_name: &str, path: &[&str]) -> Option<u64> {
        let mut id = self.ids_of_kind(struct_name, KIND_STRUCT).next()?;
        let mut total = 0;
        for member in path {
            let (off, member_type) = self.member_in(id, member)?;
            total += off;
            id = member_type;
        }
        Some(total)
    }

    /// Offset of variable `var` in DATASEC `section` (for `.data..percpu`, the per-CPU offset).
    pub fn var_offset(&self, section: &str, var: &str) -> Option<u64> {
        self.section_var(section, var).map(|v| v.offset)
    }

    /// The DATASEC named `section`.
    fn datasec(&self, section: &str) -> Option<&Type> {
        self.by_name
            .get(section)?
            .iter()
            .map(|&id| &self.types[id as usize])
            .find(|ty| ty.kind == KIND_DATASEC)
    }

    /// Size of DATASEC `section` in bytes (for `.data..percpu`, the static per-CPU area).
    pub fn section_size(&self, section: &str) -> Option<u64> {
        self.datasec(section).map(|sec| u64::from(sec.size_or_type))
    }

    /// Every named variable of DATASEC `section` as (offset, size, name), by offset.
    pub fn section_vars(&self, section: &str) -> Vec<(u64, u64, String)> {
        let Some(sec) = self.datasec(section) else {
            return Vec::new();
        };
        let mut vars: Vec<(u64, u64, String)> = sec
            .members
            .iter()
            .filter_map(|&(size, var_id, offset)| {
                let var_ty = self.types.get(var_id as usize)?;
                (var_ty.kind == KIND_VAR && var_ty.name != 0).then(|| {
                    (
                        u64::from(offset),
                        u64::from(size),
                        self.string(var_ty.name).to_string(),
                    )
                })
            })
            .collect();
        vars.sort();
        vars
    }

    /// Variable `var` of DATASEC `section`: its BTF id, offset and size.
    pub fn section_var(&self, section: &str, var: &str) -> Option<SectionVar> {
        let sec = self.datasec(section)?;
        sec.members.iter().find_map(|&(size, var_id, offset)| {
            let var_ty = self.types.get(var_id as usize)?;
            (var_ty.kind == KIND_VAR && self.string(var_ty.name) == var).then_some(SectionVar {
                btf_id: var_id,
                offset: u64::from(offset),
                size: u64::from(size),
            })
        })
    }
}
