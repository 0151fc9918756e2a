//! Builds the eBPF programs (`tracer-ebpf`) with the pinned nightly and bpf-linker, and places
//! the object in OUT_DIR for `include_bytes_aligned!`.
//!
//! With `AYA_BUILD_SKIP=1` aya-build skips the eBPF build; an empty placeholder object is then
//! written so the crate still compiles (for engine-only work), and loading reports clearly that
//! this build carries no eBPF programs.
use std::{env, fs, path::PathBuf};

/// The nightly that builds the eBPF crate; `cargo xtask setup` installs it.
const EBPF_TOOLCHAIN: &str = "nightly-2026-07-20";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let object = out_dir.join("tracer");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo::rerun-if-env-changed=AYA_BUILD_SKIP");
        fs::write(&object, [])?;
        return Ok(());
    }
    let package = aya_build::Package {
        name: "tracer-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../tracer-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(EBPF_TOOLCHAIN))
}
