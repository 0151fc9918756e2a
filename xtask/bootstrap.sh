#!/usr/bin/env bash
# Entry point for a fresh machine: installs the pinned Rust toolchain (cargo cannot start
# without it when rustup's auto-install is off), then hands over to `cargo xtask`, whose
# `setup` installs everything else. Usage: bash xtask/bootstrap.sh run|test|setup|vm ...
set -euo pipefail
cd "$(dirname "$0")/.."
toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup run "$toolchain" cargo --version >/dev/null 2>&1; then
    echo "bootstrap: installing Rust $toolchain"
    rustup toolchain install "$toolchain" --profile minimal --component clippy,rustfmt
fi
exec cargo xtask "$@"
