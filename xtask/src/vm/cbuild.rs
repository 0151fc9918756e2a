//! Builds the guest's C parts in the build root: the test module (tests/kmod) against one
//! kernel's headers, and the guest's programs (linked against trixie's glibc).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context;

use super::{buildroot::BuildRoot, suites::Kernel};

/// The guest's programs, by source file: each is built as the file's stem and goes to
/// /tests/<stem> in the guest. They are dynamically linked: locktrace traces a command's
/// pthread locks through its C library, which a static binary does not map.
pub const PROGRAMS: &[&str] = &["tests/vm/percpu_map.c", "tests/programs/lockload.c"];

/// Builds tests/kmod for `kernel` and returns the module's host path (in `out`).
pub fn build_module(
    root: &BuildRoot,
    kernel: &Kernel,
    repo: &Path,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let inside = format!("/build/kmod-{}", kernel.release());
    let dir = root.path(&inside);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    for name in ["locktrace_test.c", "Kbuild", "Makefile"] {
        fs::copy(repo.join("tests/kmod").join(name), dir.join(name))
            .with_context(|| format!("copying tests/kmod/{name}"))?;
    }
    root.sh(
        &inside,
        &format!("make -s KDIR=/usr/src/linux-headers-{}", kernel.release()),
    )
    .map(drop)
    .with_context(|| format!("building the test module for {}", kernel.release()))?;
    fs::create_dir_all(out)?;
    let module = out.join("locktrace_test.ko");
    fs::copy(dir.join("locktrace_test.ko"), &module)?;
    Ok(module)
}

/// Builds the guest's programs and returns their host paths (in `out`).
pub fn build_programs(root: &BuildRoot, repo: &Path, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let inside = "/build/programs";
    let dir = root.path(inside);
    fs::create_dir_all(&dir)?;
    fs::create_dir_all(out)?;
    let mut built = Vec::new();
    for source in PROGRAMS {
        let name = Path::new(source)
            .file_stem()
            .and_then(|stem| stem.to_str())
            .with_context(|| format!("no program name in {source}"))?;
        fs::copy(repo.join(source), dir.join(format!("{name}.c")))
            .with_context(|| format!("copying {source}"))?;
        root.sh(
            inside,
            &format!("gcc-14 -O2 -Wall -Werror -pthread -o {name} {name}.c"),
        )?;
        let program = out.join(name);
        fs::copy(dir.join(name), &program)?;
        built.push(program);
    }
    Ok(built)
}
