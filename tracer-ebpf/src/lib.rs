//! Empty library target: tracer/build.rs depends on it so cargo rebuilds the eBPF object
//! when this crate changes. The programs live in the `tracer` binary target (src/main.rs).
#![no_std]
