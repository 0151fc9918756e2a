//! Debian chroots (debootstrap, minbase) that build what runs in the guest: the test module
//! against each guest kernel's headers, in a chroot of the kernel's own release so that its
//! compiler is the one that built the kernel, and (in trixie's) the test programs. trixie's
//! also supplies the guest's busybox, dash and C library.
//!
//! Each chroot is made once and cached; a stamp names the package set it was made with, so a
//! change of that set rebuilds it. Kernel headers are unpacked into it per kernel ABI with
//! `dpkg-deb` (not installed: the 6.12 headers package depends on the kernel image, and
//! nothing here needs dpkg's bookkeeping).

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, ensure};

use super::{
    apt::{self, Apt},
    run_command,
    suites::{Kernel, MIRROR, RootSuite},
};

const STAMP: &str = ".locktrace-buildroot";

/// The cached build chroot.
pub struct BuildRoot {
    root: PathBuf,
}

impl BuildRoot {
    /// Returns the chroot of `suite` under `cache`, making it first if it is missing or stale.
    pub fn ensure(cache: &Path, suite: &RootSuite) -> anyhow::Result<Self> {
        let name = suite.name;
        let root = cache.join(format!("buildroot-{name}"));
        let stamp = suite.packages.join(",");
        if fs::read_to_string(root.join(STAMP)).is_ok_and(|found| found == stamp) {
            return Ok(Self { root });
        }
        let partial = cache.join(format!("buildroot-{name}.partial"));
        for dir in [&root, &partial] {
            if dir.exists() {
                fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        println!("vm: debootstrap {name} into {} (once)", root.display());
        let mut debootstrap = Command::new("debootstrap");
        debootstrap
            .args(["--variant=minbase", &format!("--include={stamp}"), name])
            .arg(&partial)
            .arg(MIRROR)
            .stdout(Stdio::null());
        run_command(&mut debootstrap).context("debootstrap of the build root")?;
        fs::write(partial.join(STAMP), &stamp)?;
        fs::rename(&partial, &root)?;
        Ok(Self { root })
    }

    /// The host path of a path inside the chroot.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    /// Unpacks `kernel`'s headers and kbuild into the chroot, unless already there.
    pub fn install_headers(
        &self,
        kernel: &Kernel,
        apt: &Apt,
        downloads: &Path,
    ) -> anyhow::Result<()> {
        let stamp = self.path(&format!("usr/src/.locktrace-{}", kernel.release()));
        if stamp.exists() {
            return Ok(());
        }
        for package in &kernel.header_packages {
            let deb = apt.download(package, downloads)?;
            apt::extract(&deb, &self.root, &[])?;
            fs::remove_file(&deb)?;
        }
        fs::write(&stamp, kernel.header_packages.join("\n"))?;
        Ok(())
    }

    /// The shared libraries (and the dynamic loader) that `binaries` need, as their paths in
    /// the chroot, found by the chroot's own `ldd`: the guest gets trixie's C library.
    pub fn libraries(&self, binaries: &[PathBuf]) -> anyhow::Result<BTreeSet<String>> {
        let inside = "/build/ldd";
        let dir = self.path(inside);
        fs::create_dir_all(&dir)?;
        let mut libraries = BTreeSet::new();
        for binary in binaries {
            let name = binary.file_name().context("binary name")?.to_string_lossy();
            fs::copy(binary, dir.join(&*name))?;
            let output = self.sh(inside, &format!("ldd ./{name}"))?;
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2
            // (0x...)"; the vDSO has no path.
            for line in output.lines() {
                let path = line.split("=>").last().unwrap_or_default().trim();
                let path = path.split(" (").next().unwrap_or_default();
                if path.starts_with('/') {
                    libraries.insert(path.to_owned());
                }
            }
        }
        Ok(libraries)
    }

    /// Runs a shell command inside the chroot, with `dir` (inside) as working directory and
    /// /proc mounted (objtool reads it) in a private mount namespace, so the mount goes away
    /// with the command whatever happens. Returns its standard output.
    pub fn sh(&self, dir: &str, script: &str) -> anyhow::Result<String> {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--fork", "chroot"])
            .arg(&self.root)
            .args([
                "/bin/sh",
                "-ec",
                &format!("mount -t proc proc /proc; cd {dir}; {script}"),
            ])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("LANG", "C.UTF-8");
        let output = command.output().context("running chroot")?;
        ensure!(
            output.status.success(),
            "in the build root, {script} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
