//! Per-program counters aya does not expose: `bpf_prog_info.recursion_misses` (Linux 5.12+),
//! read with `BPF_OBJ_GET_INFO_BY_FD`.

use std::os::fd::{AsFd, AsRawFd};

use aya::programs::ProgramFd;

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// Offset of `recursion_misses` in `struct bpf_prog_info` (include/uapi/linux/bpf.h).
const RECURSION_MISSES_OFFSET: usize = 208;
/// How much of `struct bpf_prog_info` we ask for: up to and including `recursion_misses`.
const INFO_LEN: usize = RECURSION_MISSES_OFFSET + 8;

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// How many times the kernel skipped this program because it was already running on the CPU;
/// 0 when the kernel does not say.
pub fn recursion_misses(fd: &ProgramFd) -> u64 {
    let mut info = [0u8; INFO_LEN];
    let mut attr = InfoAttr {
        bpf_fd: fd.as_fd().as_raw_fd() as u32,
        info_len: INFO_LEN as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: the attribute points to a live buffer of `info_len` bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw mut attr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if ret != 0 || (attr.info_len as usize) < INFO_LEN {
        return 0;
    }
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&info[RECURSION_MISSES_OFFSET..INFO_LEN]);
    u64::from_le_bytes(bytes)
}
