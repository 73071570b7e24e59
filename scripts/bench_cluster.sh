#!/usr/bin/env bash
# Cluster throughput beside one SQLite node, in one sitting (docs/performance.md has the runs).
#   scripts/bench_cluster.sh                   2 ingest nodes + 1 worker vs one SQLite node
#   DURATION=30 CONNECTIONS=32 BATCH=100 scripts/bench_cluster.sh
#   CONNECTIONS=2 BATCH=10 ...   below the worker's capacity: the end-to-end latency without a backlog
# Needs the release binary (cargo build --release), nats-server (Debian's package) and a
# Postgres with trust auth at $AUDITTRAIL_TEST_PG (default postgres://postgres@127.0.0.1:5432).
# Starts its own nats-server on a free port and its own database; removes both at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/audittrail
DUR=${DURATION:-20}
CONN=${CONNECTIONS:-32}
BATCH=${BATCH:-100}
PG=${AUDITTRAIL_TEST_PG:-postgres://postgres@127.0.0.1:5432}
work=$(mktemp -d)
db="bench_cluster_$$"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -X -q -d "$PG/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -fs "$1" >/dev/null 2>&1 && return; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
bootstrap() { curl -fs -X POST "$1/api/v1/keys/bootstrap" -H 'content-type: application/json' -d '{"name":"bench"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["key"])'; }
common=(--secret-key bench-secret-key-0123456789abcdef0123456789 --rules-dir rules --environment development --rate-limit-ingest 100000)

echo "== one node, SQLite"
p=$(port)
"$BIN" "${common[@]}" --data-dir "$work/single" --bind "127.0.0.1:$p" serve 2>"$work/single.log" &
pids+=($!)
wait_http "http://127.0.0.1:$p/api/v1/health"
"$BIN" bench --url "http://127.0.0.1:$p" --connections "$CONN" --batch "$BATCH" --duration "$DUR"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

echo "== cluster: 2 ingest nodes + 1 worker, NATS JetStream (file storage) + Postgres"
np=$(port)
nats-server -a 127.0.0.1 -p "$np" -js -sd "$work/nats" -l "$work/nats.log" &
pids+=($!)
psql -X -q -d "$PG/postgres" -c "CREATE DATABASE \"$db\"" >/dev/null
cluster=("${common[@]}" --data-dir "$work/cluster" --database-url "$PG/$db" --nats-url "nats://127.0.0.1:$np")
a=$(port); b=$(port); w=$(port)
"$BIN" "${cluster[@]}" --bind "127.0.0.1:$a" serve 2>"$work/a.log" & pids+=($!)
wait_http "http://127.0.0.1:$a/api/v1/health"
"$BIN" "${cluster[@]}" --bind "127.0.0.1:$b" serve 2>"$work/b.log" & pids+=($!)
"$BIN" "${cluster[@]}" --worker-bind "127.0.0.1:$w" worker 2>"$work/w.log" & pids+=($!)
wait_http "http://127.0.0.1:$b/api/v1/health"
wait_http "http://127.0.0.1:$w/api/v1/health"
key=$(bootstrap "http://127.0.0.1:$a")
start=$(date +%s.%N)
"$BIN" bench --url "http://127.0.0.1:$a" --key "$key" --connections $((CONN / 2)) --batch "$BATCH" --duration "$DUR" > "$work/bench-a.txt" &
ba=$!
"$BIN" bench --url "http://127.0.0.1:$b" --key "$key" --connections $((CONN / 2)) --batch "$BATCH" --duration "$DUR" > "$work/bench-b.txt"
wait "$ba"
acked_end=$(date +%s.%N)
echo "node A: $(tail -1 "$work/bench-a.txt")"
echo "node B: $(tail -1 "$work/bench-b.txt")"
# Drained: the stream is empty and the worker has acknowledged everything.
while :; do
    lag=$(curl -fs "http://127.0.0.1:$w/api/v1/health" | python3 -c 'import sys,json; c=json.load(sys.stdin)["cluster"]; print((c["lag_messages"] or 0)+(c["ack_pending"] or 0))')
    [ "$lag" = 0 ] && break
    sleep 0.2
done
end=$(date +%s.%N)
stored=$(psql -X -At -d "$PG/$db" -c "SELECT COUNT(*) FROM events WHERE record_type = 'span'")
python3 - "$start" "$acked_end" "$end" "$stored" <<'EOF'
import sys
start, acked, end, stored = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(f"stored {stored} spans in {end - start:.1f} s (load {acked - start:.1f} s, drain after it {end - acked:.1f} s): {stored / (end - start):.0f} events/s sustained")
EOF
wcpu=$(curl -fs "http://127.0.0.1:$w/metrics" | awk '/^audittrail_process_cpu_seconds /{print $2}')
python3 -c "import sys; print(f'worker CPU {float(sys.argv[1]) / int(sys.argv[2]) * 1e6:.1f} µs per stored event (whole run, start-up included)')" "$wcpu" "$stored"
echo "acknowledgement -> stored (worker histogram, linear within buckets):"
curl -fs "http://127.0.0.1:$w/metrics" | python3 -c '
import sys
b = []
for line in sys.stdin:
    if line.startswith("audittrail_cluster_end_to_end_seconds_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        b.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
b.sort()
total = b[-1][1] if b else 0
def q(p):
    want, lo, prev = p * total, 0.0, 0.0
    for le, c in b:
        if c >= want:
            return lo if le == float("inf") else lo + (le - lo) * ((want - prev) / max(c - prev, 1))
        lo, prev = le, c
    return lo
print(f"  {int(total)} batches: p50 {q(0.5)*1000:.0f} ms, p99 {q(0.99)*1000:.0f} ms")
'
