//! Boots stock Debian kernels under qemu and runs locktrace's in-guest tests (issue 4).

/// Arguments of `cargo xtask vm`.
#[derive(clap::Args)]
pub struct VmArgs {}

/// Runs the VM suite.
pub fn run(_args: VmArgs) -> anyhow::Result<()> {
    anyhow::bail!("the VM suite is not implemented yet")
}
