//! Boots stock Debian kernels under qemu and runs locktrace's in-guest tests (issue 4).

/// Arguments of `cargo xtask vm`.
#[derive(clap::Args)]
pub struct VmArgs {}

/// Installs what the VM suite needs on the host (called by `cargo xtask setup`).
pub fn install_prerequisites() -> anyhow::Result<()> {
    Ok(())
}

/// Runs the VM suite.
pub fn run(_args: VmArgs) -> anyhow::Result<()> {
    anyhow::bail!("the VM suite is not implemented yet")
}
