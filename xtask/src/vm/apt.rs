//! A private apt configuration per Debian suite: downloads packages without installing them.
//!
//! Each suite gets its own sources list, package lists and cache under the VM cache directory;
//! `Dir::State::status` is /dev/null, so the host's installed packages play no part and nothing
//! is ever installed into the host.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail, ensure};

use super::{run_command, suites::MIRROR};

/// The keyring that signs Debian's archive (package `debian-archive-keyring`).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// apt-get and apt-cache, pointed at one suite through a private configuration.
pub struct Apt {
    suite: String,
    dir: PathBuf,
}

impl Apt {
    /// Writes the private configuration for `suite` under `cache/apt/<suite>`.
    pub fn new(cache: &Path, suite: &str) -> anyhow::Result<Self> {
        let dir = cache.join("apt").join(suite);
        for sub in ["lists/partial", "cache/archives/partial", "state", "empty"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let d = dir.display();
        fs::write(
            dir.join("sources.list"),
            format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n"),
        )?;
        fs::write(
            dir.join("apt.conf"),
            format!(
                "Dir::Etc::SourceList \"{d}/sources.list\";\n\
                 Dir::Etc::SourceParts \"{d}/empty\";\n\
                 Dir::Etc::Preferences \"{d}/empty/none\";\n\
                 Dir::Etc::PreferencesParts \"{d}/empty\";\n\
                 Dir::State \"{d}/state\";\n\
                 Dir::State::Lists \"{d}/lists\";\n\
                 Dir::State::status \"/dev/null\";\n\
                 Dir::Cache \"{d}/cache\";\n\
                 APT::Architecture \"amd64\";\n\
                 APT::Architectures {{ \"amd64\"; }};\n\
                 Acquire::Languages \"none\";\n\
                 APT::Sandbox::User \"root\";\n"
            ),
        )?;
        Ok(Self {
            suite: suite.to_owned(),
            dir,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("APT_CONFIG", self.dir.join("apt.conf"));
        command
    }

    /// Refreshes the package lists. When the archive cannot be reached but lists from an
    /// earlier run exist, warns and goes on with those.
    pub fn update(&self) -> anyhow::Result<()> {
        let mut command = self.command("apt-get");
        command.args(["-q", "update"]).stdout(Stdio::null());
        match run_command(&mut command) {
            Ok(()) => Ok(()),
            Err(err) if self.has_lists()? => {
                eprintln!(
                    "vm: warning: {}: {err:#}; using the package lists of an earlier run",
                    self.suite
                );
                Ok(())
            }
            Err(err) => Err(err.context(format!("updating the package lists of {}", self.suite))),
        }
    }

    fn has_lists(&self) -> anyhow::Result<bool> {
        Ok(fs::read_dir(self.dir.join("lists"))?
            .filter_map(Result::ok)
            .any(|entry| entry.file_name().to_string_lossy().ends_with("_Packages")))
    }

    /// The direct dependencies of the candidate version of `package`, alternatives included.
    pub fn depends(&self, package: &str) -> anyhow::Result<Vec<String>> {
        let output = self.query("apt-cache", &["depends", "--important", package])?;
        Ok(output
            .lines()
            .filter_map(|line| {
                let line = line.trim_start().trim_start_matches('|');
                line.strip_prefix("Depends: ")
            })
            .filter(|name| !name.starts_with('<'))
            .map(str::to_owned)
            .collect())
    }

    /// Whether the suite has `package`.
    pub fn has(&self, package: &str) -> anyhow::Result<bool> {
        let output = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", package])
            .stderr(Stdio::null())
            .output()
            .context("running apt-cache")?;
        Ok(output.status.success() && !output.stdout.is_empty())
    }

    /// The candidate version of `package`.
    pub fn version(&self, package: &str) -> anyhow::Result<String> {
        let output = self.query("apt-cache", &["show", "--no-all-versions", package])?;
        output
            .lines()
            .find_map(|line| line.strip_prefix("Version: "))
            .map(str::to_owned)
            .with_context(|| format!("{}: no version for {package}", self.suite))
    }

    /// Downloads `package` into `dir` and returns the .deb's path.
    pub fn download(&self, package: &str, dir: &Path) -> anyhow::Result<PathBuf> {
        fs::create_dir_all(dir)?;
        let mut command = self.command("apt-get");
        command
            .args(["-q", "download", package])
            .current_dir(dir)
            .stdout(Stdio::null());
        run_command(&mut command).with_context(|| format!("downloading {package}"))?;
        let prefix = format!("{package}_");
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".deb") {
                return Ok(path);
            }
        }
        bail!(
            "apt-get download {package} left no .deb in {}",
            dir.display()
        )
    }

    fn query(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let output = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        ensure!(
            output.status.success(),
            "{program} {} ({}): {}",
            args.join(" "),
            self.suite,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8(output.stdout)?)
    }
}

/// Unpacks the files of a .deb matching the tar `patterns` (all files when empty) into `dest`.
pub fn extract(deb: &Path, dest: &Path, patterns: &[&str]) -> anyhow::Result<()> {
    fs::create_dir_all(dest)?;
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let tarball = dpkg.stdout.take().context("dpkg-deb's stdout")?;
    // Older packages (bookworm's headers) ship ./lib/modules: the chroot's merged-/usr
    // symbolic link /lib must stay one, not become a directory that hides /usr/lib.
    let mut tar = Command::new("tar");
    tar.args(["-x", "--keep-directory-symlink", "-C"])
        .arg(dest)
        .stdin(tarball);
    if !patterns.is_empty() {
        tar.arg("--wildcards").args(patterns);
    }
    let tar_result = run_command(&mut tar);
    let dpkg_status = dpkg.wait()?;
    tar_result.with_context(|| format!("unpacking {}", deb.display()))?;
    ensure!(
        dpkg_status.success(),
        "dpkg-deb --fsys-tarfile {}: {dpkg_status}",
        deb.display()
    );
    Ok(())
}
