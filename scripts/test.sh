#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, then runs every test.
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Rust toolchain: the machine's own; nothing is downloaded outside the package registries.
command -v cargo >/dev/null || { echo "cargo is required (rustup toolchain)" >&2; exit 1; }

# The PII scorer needs only python3's standard library.
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }

log "build"
cargo build --locked --release --bin audittrail
cargo test --locked --no-run --all-targets

log "tests"
cargo test --locked --all-targets -- --test-threads="${TEST_THREADS:-4}"
