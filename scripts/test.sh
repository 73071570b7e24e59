#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, starts what the tests
# need, runs every test twice (the embedded SQLite store, then Postgres), and cleans up.
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
#   TEST_THREADS=4                  parallel tests per binary
#   AUDITTRAIL_TEST_PG=postgres://postgres@127.0.0.1:5432   the Postgres server to use
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }
started=$(date +%s)

command -v cargo >/dev/null || { echo "cargo is required (the machine's rustup toolchain)" >&2; exit 1; }

apt_updated=""
need_pkg() { # need_pkg COMMAND PACKAGE: installs PACKAGE from Debian when COMMAND is missing
    command -v "$1" >/dev/null && return 0
    log "installing $2 (Debian)"
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# Real clients for the OTLP tests, from PyPI, in a project-local virtualenv (pinned).
log "python clients (.venv)"
need_pkg python3 python3
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || { need_pkg virtualenv python3-venv; python3 -m venv .venv; }
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt

# Debian tools the tests drive as a user or an attacker would.
need_pkg sqlite3 sqlite3
need_pkg psql postgresql-client
need_pkg pg_dump postgresql-client
need_pkg nginx nginx
need_pkg promtool prometheus
need_pkg chromium chromium
need_pkg chromedriver chromium-driver
need_pkg pdftotext poppler-utils
# The cluster tests start their own nats-server (JetStream) per test, to kill and restart it.
need_pkg nats-server nats-server

# A Docker engine and offline base images for the compose test (nothing can be pulled).
log "docker engine and base images"
bash scripts/docker_base_images.sh >/dev/null

# Postgres: the machine's own when it listens; otherwise Debian's, started here.
export AUDITTRAIL_TEST_PG="${AUDITTRAIL_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
pg_up() { psql -X -q -d "$AUDITTRAIL_TEST_PG/postgres" -c 'SELECT 1' >/dev/null 2>&1; }
if ! pg_up; then
    log "starting PostgreSQL"
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    version=$(ls /etc/postgresql | sort -n | tail -1)
    # Trust on loopback, as on the test machines (this cluster is the tests' own).
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster --skip-systemctl-redirect "$version" main restart
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    pg_up || { echo "PostgreSQL did not start" >&2; exit 1; }
fi

# Every database this run creates starts with this prefix; all are dropped at the end.
export AUDITTRAIL_TEST_PG_PREFIX="at_run_$$_$(date +%s)"
drop_test_databases() {
    psql -X -At -d "$AUDITTRAIL_TEST_PG/postgres" \
        -c "SELECT datname FROM pg_database WHERE datname LIKE '${AUDITTRAIL_TEST_PG_PREFIX}%'" 2>/dev/null |
        while read -r db; do
            psql -X -q -d "$AUDITTRAIL_TEST_PG/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
        done
}
trap drop_test_databases EXIT

log "format and lints"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# The fuzz crate lives outside the workspace (cargo fuzz builds it with nightly): check that
# it still compiles against the library, so a change cannot break it unnoticed.
log "fuzz targets (nightly check)"
cargo +nightly check --locked --manifest-path fuzz/Cargo.toml --bins

log "build"
cargo build --locked --release --bin audittrail
cargo test --locked --no-run --all-targets

log "tests on SQLite"
cargo test --locked --lib --bins --tests -- --test-threads="${TEST_THREADS:-4}"
log "tests on Postgres"
# The compose stack runs once (its Postgres profile needs a registry image this machine cannot pull);
# the cluster tests store in Postgres on both passes, so they run once too.
AUDITTRAIL_TEST_BACKEND=postgres cargo test --locked --tests -- --test-threads="${TEST_THREADS:-4}" --skip docker_compose_ --skip cluster_
log "benches (criterion test mode: each benchmark runs once)"
cargo test --locked --benches
log "all tests passed in $(( $(date +%s) - started )) s"
