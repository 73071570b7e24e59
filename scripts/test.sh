#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, then runs every test.
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

command -v cargo >/dev/null || { echo "cargo is required (the machine's rustup toolchain)" >&2; exit 1; }

# Real clients for the OTLP tests, from PyPI, in a project-local virtualenv (pinned).
log "python clients (.venv)"
if ! command -v python3 >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv .venv; }
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt

# Debian tools the tests drive as a user or an attacker would.
need_pkg() { # need_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    log "installing $2 (Debian)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need_pkg sqlite3 sqlite3

log "format and lints"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

log "build"
cargo build --locked --release --bin audittrail
cargo test --locked --no-run --all-targets

log "tests"
cargo test --locked --lib --bins --tests -- --test-threads="${TEST_THREADS:-4}"
log "benches (criterion test mode: each benchmark runs once)"
cargo test --locked --benches
