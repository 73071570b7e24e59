#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/) with the nightly toolchain.
#   scripts/fuzz.sh                     every target, 10 million executions each
#   RUNS=100000 scripts/fuzz.sh         fewer executions
#   SECONDS_EACH=3600 scripts/fuzz.sh   an hour each instead of a count
#   scripts/fuzz.sh redactor gzip       only these targets
# Seeds come from the project's fixtures (scripts/fuzz_seeds.py); crashes land in
# fuzz/artifacts/<target>/ and the summary (executions, time, crashes) on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
"$PY" scripts/fuzz_seeds.py
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O
for t in "${targets[@]}"; do
    limit=(-runs="${RUNS:-10000000}")
    [ -n "${SECONDS_EACH:-}" ] && limit=(-max_total_time="$SECONDS_EACH")
    start=$(date +%s)
    log="fuzz/artifacts/$t.log"
    mkdir -p "fuzz/artifacts/$t"
    set +e
    cargo +nightly fuzz run -O "$t" -- "${limit[@]}" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    code=$?
    set -e
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    crashes=$(find "fuzz/artifacts/$t" -type f -name 'crash-*' | wc -l)
    printf '%-16s exit %s  %12s executions  %5ss  %s crash file(s)\n' "$t" "$code" "${execs:-?}" "$(( $(date +%s) - start ))" "$crashes"
done
