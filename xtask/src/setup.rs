//! `cargo xtask setup`: installs what is missing, quickly when all is present.

/// Installs every missing prerequisite.
pub fn run() -> anyhow::Result<()> {
    crate::vm::install_prerequisites()
}
