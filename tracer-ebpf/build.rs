//! Reruns the eBPF build when bpf-linker changes (a new linker can change the object).
use which::which;

fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo::rerun-if-changed={}", bpf_linker.display());
}
