//! Patching kfunc calls into the eBPF object before it is loaded.
//!
//! aya-ebpf cannot declare a kfunc, so the programs emit each call as one raw instruction:
//! opcode 0x85 (call), src_reg 2 (`BPF_PSEUDO_KFUNC_CALL`) and a marker in `imm`
//! (`tracer_common::kfunc_marker`). Here each marker becomes the kfunc's BTF id in vmlinux,
//! or, when the running kernel lacks the kfunc, the call becomes `r0 = 0` so the program still
//! loads and reports the value as unknown. Only the object's program sections are searched: a
//! word of BTF, debug info or data that happened to look like a marked call stays as it is.

use std::ops::Range;

use object::{Object, ObjectSection, SectionKind};
use tracer_common::kfunc_marker;

use super::btf::KernelBtf;

/// A kfunc the programs call, with the marker that stands for it.
#[derive(Clone, Copy, Debug)]
pub struct Kfunc {
    /// The kernel's name for it.
    pub name: &'static str,
    /// The placeholder in the call instruction.
    pub marker: u32,
    /// The first Linux version that has it, for `check`'s messages.
    pub since: &'static str,
}

/// Every kfunc the programs call.
pub const KFUNCS: [Kfunc; 4] = [
    Kfunc {
        name: "bpf_local_irq_save",
        marker: kfunc_marker::LOCAL_IRQ_SAVE,
        since: "6.14",
    },
    Kfunc {
        name: "bpf_local_irq_restore",
        marker: kfunc_marker::LOCAL_IRQ_RESTORE,
        since: "6.14",
    },
    Kfunc {
        name: "bpf_get_kmem_cache",
        marker: kfunc_marker::GET_KMEM_CACHE,
        since: "6.13",
    },
    Kfunc {
        name: "bpf_rdonly_cast",
        marker: kfunc_marker::RDONLY_CAST,
        since: "6.2",
    },
];

/// The call instruction as the programs emit it: opcode, registers (src 2, dst 0), offset 0.
const CALL_KFUNC_PREFIX: [u8; 4] = [0x85, 0x20, 0x00, 0x00];
/// `r0 = 0` (BPF_ALU64 | BPF_MOV | BPF_K), the stand-in for a missing kfunc.
const MOV_R0_ZERO: [u8; 8] = [0xb7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];

/// The byte ranges of `object`'s program sections (its executable code), where the marked
/// instructions are; none when it is not an ELF image.
pub fn program_ranges(object: &[u8]) -> Vec<Range<usize>> {
    let Ok(file) = object::File::parse(object) else {
        return Vec::new();
    };
    file.sections()
        .filter(|section| section.kind() == SectionKind::Text)
        .filter_map(|section| section.file_range())
        .map(|(start, len)| start as usize..(start + len) as usize)
        .filter(|range| range.end <= object.len())
        .collect()
}

/// Rewrites every marked call in the program sections of `object` (an ELF image, patched in
/// place). Instruction sizes do not change, so relocations and line info stay valid. Which
/// kfuncs the kernel has is `KernelFacts`' to say; that the object calls each one is the
/// object test's (`the_object_has_every_marker_the_patcher_knows`), not every load's.
pub fn patch(object: &mut [u8], btf: &KernelBtf) {
    let ranges = program_ranges(object);
    for kfunc in &KFUNCS {
        let btf_id = btf.func_id(kfunc.name);
        patch_each(object, &ranges, |bytes| {
            patch_marker(bytes, kfunc.marker, btf_id)
        });
    }
}

/// The typed ksym load as the programs emit it: `r1 = ld_imm64` with src_reg 3
/// (`BPF_PSEUDO_BTF_ID`) and the marker in `imm`, its second half zero, then `call 154`
/// (`bpf_this_cpu_ptr`).
const KSYM_LOAD_PREFIX: [u8; 4] = [0x18, 0x31, 0x00, 0x00];
const CALL_THIS_CPU_PTR: [u8; 8] = [0x85, 0x00, 0x00, 0x00, 0x9a, 0x00, 0x00, 0x00];
/// `r1 = 0`, which stands in for each half of a load not used.
const MOV_R1_ZERO: [u8; 8] = [0xb7, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];

/// Points every `bpf_this_cpu_ptr(&marker var)` sequence in the program sections of `object`
/// at the per-CPU variable `btf_id`, or, when `None`, turns it into `r1 = 0; r1 = 0; r0 = 0`
/// (the verifier refuses a ksym the kernel cannot resolve even on a path never taken).
pub fn patch_object_ksym(object: &mut [u8], marker: u32, btf_id: Option<u32>) {
    let ranges = program_ranges(object);
    patch_each(object, &ranges, |bytes| patch_ksym(bytes, marker, btf_id));
}

/// [`patch_object_ksym`] on one run of instructions; the sites patched.
fn patch_ksym(object: &mut [u8], marker: u32, btf_id: Option<u32>) -> usize {
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&KSYM_LOAD_PREFIX);
    head[4..].copy_from_slice(&marker.to_le_bytes());
    let insns = object.as_chunks_mut::<8>().0;
    let mut sites = 0;
    for i in 0..insns.len().saturating_sub(2) {
        if insns[i] != head || insns[i + 1] != [0; 8] || insns[i + 2] != CALL_THIS_CPU_PTR {
            continue;
        }
        match btf_id {
            Some(id) => insns[i][4..].copy_from_slice(&id.to_le_bytes()),
            None => {
                insns[i] = MOV_R1_ZERO;
                insns[i + 1] = MOV_R1_ZERO;
                insns[i + 2] = MOV_R0_ZERO;
            }
        }
        sites += 1;
    }
    sites
}

/// `patch` (such as [`patch_marker`] or [`patch_ksym`]) on each of `ranges` of `object` (its
/// program sections); the sites patched, which the object test counts.
fn patch_each(
    object: &mut [u8],
    ranges: &[Range<usize>],
    patch: impl Fn(&mut [u8]) -> usize,
) -> usize {
    ranges
        .iter()
        .map(|range| patch(&mut object[range.clone()]))
        .sum()
}

fn patch_marker(object: &mut [u8], marker: u32, btf_id: Option<u32>) -> usize {
    let mut pattern = [0u8; 8];
    pattern[..4].copy_from_slice(&CALL_KFUNC_PREFIX);
    pattern[4..].copy_from_slice(&marker.to_le_bytes());
    let mut sites = 0;
    // BPF instructions are 8-byte aligned within their section, and sections in the object
    // are 8-byte aligned: stepping by 8 never misses an instruction.
    for insn in object.as_chunks_mut::<8>().0 {
        if *insn == pattern {
            match btf_id {
                Some(id) => insn[4..].copy_from_slice(&id.to_le_bytes()),
                None => insn.copy_from_slice(&MOV_R0_ZERO),
            }
            sites += 1;
        }
    }
    sites
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(marker: u32) -> [u8; 8] {
        let mut insn = [0x85, 0x20, 0, 0, 0, 0, 0, 0];
        insn[4..].copy_from_slice(&marker.to_le_bytes());
        insn
    }

    #[test]
    fn ksym_load_becomes_var_id_or_zero() {
        let marker = tracer_common::PREEMPT_COUNT_VAR_MARKER;
        let mut site = Vec::new();
        site.extend_from_slice(&[0x18, 0x31, 0, 0]);
        site.extend_from_slice(&marker.to_le_bytes());
        site.extend_from_slice(&[0; 8]);
        site.extend_from_slice(&CALL_THIS_CPU_PTR);
        let mut object = [0x95, 0, 0, 0, 0, 0, 0, 0].to_vec();
        object.extend_from_slice(&site);

        let mut used = object.clone();
        assert_eq!(patch_ksym(&mut used, marker, Some(0xabcd)), 1);
        assert_eq!(&used[8..16], &[0x18, 0x31, 0, 0, 0xcd, 0xab, 0, 0]);
        assert_eq!(&used[16..], &object[16..], "second half and call untouched");

        let mut unused = object.clone();
        assert_eq!(patch_ksym(&mut unused, marker, None), 1);
        assert_eq!(&unused[8..16], &MOV_R1_ZERO);
        assert_eq!(&unused[16..24], &MOV_R1_ZERO);
        assert_eq!(&unused[24..32], &MOV_R0_ZERO);

        let mut other = object.clone();
        assert_eq!(patch_ksym(&mut other, marker + 1, None), 0);
        assert_eq!(other, object);
    }

    /// Every marker the patcher knows is in the eBPF object: a program that stopped calling
    /// a kfunc the same way (or a marker renumbered on one side) would otherwise load with a
    /// raw marker the verifier refuses, or never be patched.
    #[test]
    fn the_object_has_every_marker_the_patcher_knows() {
        let Some(object) =
            super::super::object_for_test("the_object_has_every_marker_the_patcher_knows")
        else {
            return;
        };
        let mut words = super::super::aligned_copy(object);
        let bytes = &mut super::super::words_as_bytes(&mut words)[..object.len()];
        let ranges = program_ranges(bytes);
        assert!(!ranges.is_empty(), "the object has program sections");
        for kfunc in KFUNCS {
            assert!(
                patch_each(bytes, &ranges, |b| patch_marker(b, kfunc.marker, None)) > 0,
                "no call of {} in a program section",
                kfunc.name
            );
        }
        assert!(
            patch_each(bytes, &ranges, |b| patch_ksym(
                b,
                tracer_common::PREEMPT_COUNT_VAR_MARKER,
                None
            )) > 0,
            "no preempt_count ksym load in a program section"
        );
    }

    #[test]
    fn marker_becomes_btf_id_or_mov() {
        let mut object = Vec::new();
        object.extend_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]); // exit
        object.extend_from_slice(&marked(kfunc_marker::LOCAL_IRQ_SAVE));
        object.extend_from_slice(&marked(kfunc_marker::GET_KMEM_CACHE));
        assert_eq!(
            patch_marker(&mut object, kfunc_marker::LOCAL_IRQ_SAVE, Some(0x1234)),
            1
        );
        assert_eq!(&object[8..16], &[0x85, 0x20, 0, 0, 0x34, 0x12, 0, 0]);
        assert_eq!(
            patch_marker(&mut object, kfunc_marker::GET_KMEM_CACHE, None),
            1
        );
        assert_eq!(&object[16..24], &MOV_R0_ZERO);
        assert_eq!(
            &object[..8],
            &[0x95, 0, 0, 0, 0, 0, 0, 0],
            "other instructions untouched"
        );
    }
}
