//! The guest kernels, named by Debian suite in one place, and their resolution to today's
//! packages.
//!
//! Debian removes superseded kernel packages from its archive (point releases, security
//! updates, new backports), so no version is pinned here: each run asks the suite which
//! kernel its `linux-image-amd64` metapackage currently depends on.

use anyhow::{Context, bail};

use super::{
    apt::Apt,
    checks::{CONTEXT_CHECKS, LOCK_ORDERING},
};

/// One guest kernel, named by the Debian suite it comes from.
pub struct Suite {
    /// The suite's name in the archive, also its name on the command line.
    pub name: &'static str,
    /// What this kernel is there to test.
    pub about: &'static str,
    /// Whether its kernel has the `bpf_local_irq_save` kfunc (6.14+): `locktrace check` must
    /// report the feature as present exactly when this is true, and read the IRQ state from
    /// kprobes when it is false.
    pub irq_state_kfunc: bool,
    /// Whether its kernel has the `lock:contention_begin`/`_end` tracepoints (5.19+): alerts
    /// carry contention figures exactly when this is true.
    pub contention_tracepoints: bool,
    /// Whether its kernel inlines the plain and `_irq` spin, read and write unlocks (built
    /// without PREEMPTION: no `_raw_*_unlock{,_irq}` functions in its BTF), so that their
    /// probes cannot attach.
    pub unlocks_inlined: bool,
    /// What `locktrace check` may say this kernel cannot detect (names of its `detects`
    /// entries, see `checks.rs`): where it says so, the alerts that need it are not expected,
    /// and none may appear. Empty for kernels where everything must work.
    pub may_lack: &'static [&'static str],
    /// Whether `cargo xtask vm bench` boots it when no suite is named: the kernels whose
    /// figures the README keeps.
    pub benched: bool,
    /// The chroot that builds the test module against this kernel's headers: Debian builds
    /// each kernel with its own release's gcc, and kbuild passes that gcc's flags.
    pub module_root: &'static RootSuite,
}

/// A Debian suite whose debootstrap chroot builds C code for the guests, and what it needs
/// beyond minbase.
pub struct RootSuite {
    /// The suite's name in the archive; the chroot is `buildroot-<name>` in the cache.
    pub name: &'static str,
    /// Packages added to the minbase chroot.
    pub packages: &'static [&'static str],
}

/// trixie's chroot: builds the test programs and the modules of trixie's kernels, and supplies
/// the guest's busybox, dash and C library. `gcc-14-for-host` is what the 7.x headers ask for;
/// `libelf1t64` is objtool's (in linux-kbuild) run-time library; `dwarves` is pahole, which
/// module builds run (and whose version they compare with the kernel's); `libc6-dev` brings
/// the static C library and the UAPI headers for the test programs.
pub const TRIXIE_ROOT: RootSuite = RootSuite {
    name: "trixie",
    packages: &[
        "gcc-14",
        "gcc-14-for-host",
        "make",
        "libc6-dev",
        "libelf1t64",
        "dwarves",
        "busybox-static",
    ],
};

/// bookworm's chroot: gcc-12, which built Debian 12's 6.1 kernel (trixie has no gcc-12).
pub const BOOKWORM_ROOT: RootSuite = RootSuite {
    name: "bookworm",
    packages: &["gcc-12", "make", "libelf1", "dwarves"],
};

/// bullseye's chroot: gcc-10, which built Debian 11's 5.10 kernel.
pub const BULLSEYE_ROOT: RootSuite = RootSuite {
    name: "bullseye",
    packages: &["gcc-10", "make", "libelf1", "dwarves"],
};

/// The guest kernels, in the order they run.
pub const SUITES: &[Suite] = &[
    Suite {
        name: "trixie",
        about: "Debian 13's long-term 6.12 kernel, without the IRQ-state kfunc: IRQ state from kprobes",
        irq_state_kfunc: false,
        contention_tracepoints: true,
        unlocks_inlined: false,
        may_lack: &[],
        benched: true,
        module_root: &TRIXIE_ROOT,
    },
    Suite {
        name: "trixie-backports",
        about: "the 7.x backports kernel, with the IRQ-state and slab-cache kfuncs",
        irq_state_kfunc: true,
        contention_tracepoints: true,
        unlocks_inlined: false,
        may_lack: &[],
        benched: true,
        module_root: &TRIXIE_ROOT,
    },
    Suite {
        name: "bookworm",
        about: "Debian 12's long-term 6.1 kernel: trampolines, neither kfunc, `pcpu_alloc`",
        irq_state_kfunc: false,
        contention_tracepoints: true,
        unlocks_inlined: false,
        may_lack: &[],
        benched: false,
        module_root: &BOOKWORM_ROOT,
    },
    Suite {
        name: "bullseye",
        about: "Debian 11's long-term 5.10 kernel: BTF, but an older verifier and fewer \
                functions in BTF",
        irq_state_kfunc: false,
        contention_tracepoints: false,
        unlocks_inlined: true,
        may_lack: &[LOCK_ORDERING, CONTEXT_CHECKS],
        benched: false,
        module_root: &BULLSEYE_ROOT,
    },
];

/// The chroot whose compiler and C library build the guest's programs, and which supplies
/// its userland.
pub const USERLAND_ROOT: &RootSuite = &TRIXIE_ROOT;

/// Where packages come from.
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// Looks up a suite by name.
pub fn find(name: &str) -> anyhow::Result<&'static Suite> {
    match SUITES.iter().find(|suite| suite.name == name) {
        Some(suite) => Ok(suite),
        None => {
            let known: Vec<_> = SUITES.iter().map(|suite| suite.name).collect();
            bail!("unknown suite {name:?}; known: {}", known.join(", "))
        }
    }
}

/// A suite's current kernel and the packages that carry it.
pub struct Kernel {
    /// The ABI name, as in `linux-image-<abi>-amd64`, e.g. `6.12.117+deb13`.
    pub abi: String,
    /// The Debian package version, e.g. `6.12.117-1`.
    pub version: String,
    /// The package holding the unsigned vmlinuz.
    pub image_package: String,
    /// The packages to unpack for building modules: headers, common headers, kbuild.
    pub header_packages: Vec<String>,
}

impl Kernel {
    /// The kernel release (`uname -r` in the guest).
    pub fn release(&self) -> String {
        format!("{}-amd64", self.abi)
    }
}

/// Resolves the suite's current kernel from its (already updated) package lists.
pub fn resolve(suite: &'static Suite, apt: &Apt) -> anyhow::Result<Kernel> {
    let image = apt
        .depends("linux-image-amd64")?
        .into_iter()
        .find_map(|dep| image_abi(&dep))
        .with_context(|| {
            format!(
                "{}: linux-image-amd64 depends on no kernel image",
                suite.name
            )
        })?;
    let release = format!("{image}-amd64");
    // From 7.x the image is split; before, the `-unsigned` image package holds vmlinuz.
    let split = format!("linux-binary-unsigned-{release}");
    let image_package = if apt.has(&split)? {
        split
    } else {
        format!("linux-image-{release}-unsigned")
    };
    let headers = format!("linux-headers-{release}");
    let mut header_packages = vec![headers.clone()];
    for dep in apt.depends(&headers)? {
        if is_headers_part(&dep, &image) && !header_packages.contains(&dep) {
            header_packages.push(dep);
        }
    }
    Ok(Kernel {
        version: apt.version(&image_package)?,
        abi: image,
        image_package,
        header_packages,
    })
}

/// Whether a dependency of the headers package is part of the module build: the common
/// headers of the same ABI (`linux-headers-<abi>-common`), and kbuild, which is named by ABI
/// from trixie on (`linux-kbuild-6.12.117+deb13`) and by kernel series before
/// (`linux-kbuild-6.1`). Not the image, the compiler or `linux-base`.
fn is_headers_part(dependency: &str, abi: &str) -> bool {
    dependency.starts_with("linux-kbuild-")
        || (dependency.starts_with("linux-headers-") && dependency.contains(abi))
}

/// The ABI of a `linux-image-<abi>-amd64` package name, for a versioned image only.
fn image_abi(package: &str) -> Option<String> {
    let abi = package
        .strip_prefix("linux-image-")?
        .strip_suffix("-amd64")?;
    abi.starts_with(|c: char| c.is_ascii_digit())
        .then(|| abi.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{image_abi, is_headers_part};

    #[test]
    fn headers_parts_are_common_headers_and_kbuild_of_any_naming() {
        let trixie = "6.12.117+deb13";
        assert!(is_headers_part(
            "linux-headers-6.12.117+deb13-common",
            trixie
        ));
        assert!(is_headers_part("linux-kbuild-6.12.117+deb13", trixie));
        assert!(!is_headers_part(
            "linux-image-6.12.117+deb13-amd64-unsigned",
            trixie
        ));
        assert!(!is_headers_part("linux-base", trixie));
        assert!(!is_headers_part("gcc-14", trixie));
        let bookworm = "6.1.0-50";
        assert!(is_headers_part("linux-headers-6.1.0-50-common", bookworm));
        assert!(is_headers_part("linux-kbuild-6.1", bookworm));
        assert!(!is_headers_part("linux-compiler-gcc-12-x86", bookworm));
        assert!(!is_headers_part("linux-headers-6.1.0-49-common", bookworm));
    }

    #[test]
    fn image_abi_takes_versioned_images_only() {
        assert_eq!(
            image_abi("linux-image-6.12.117+deb13-amd64").as_deref(),
            Some("6.12.117+deb13")
        );
        assert_eq!(
            image_abi("linux-image-7.3.4+deb13-amd64").as_deref(),
            Some("7.3.4+deb13")
        );
        assert_eq!(
            image_abi("linux-image-5.10.0-32-amd64").as_deref(),
            Some("5.10.0-32")
        );
        assert_eq!(image_abi("linux-image-amd64"), None);
        assert_eq!(image_abi("linux-base-amd64"), None);
        assert_eq!(image_abi("linux-image-6.12.117+deb13-amd64-unsigned"), None);
    }
}
