#!/usr/bin/env bash
# Sotto on 1, 2 and 3 nodes on this machine: the same sotto-bench runs
# against one node on SQLite (the default), then clusters of 1, 2 and 3
# nodes sharing a PostgreSQL database and a NATS bus (private servers
# started here; PostgreSQL with fsync on, as in production). The bench
# spreads its clients over the nodes and samples the CPU of the nodes, of
# every PostgreSQL process and of nats-server over the measured window.
# Prints one JSON line per run, then a markdown table (for BENCHMARKS.md).
#
#   bench/cluster.sh                # DURATION=10 CLIENTS=500 PAIRS=250
#
# Not part of CI: it takes a few minutes. Needs postgresql and nats-server
# (Debian packages).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CLIENTS=${CLIENTS:-500}
SENDERS=${SENDERS:-10}
PAIRS=${PAIRS:-250}
WINDOW=${WINDOW:-16}
WORK=$(mktemp -d /tmp/sotto-cluster-bench.XXXXXX)
RESULTS=$WORK/results.jsonl

. scripts/services.sh
PG_FSYNC=on start_postgres
start_nats
cargo build --release -q -p sotto -p sotto-bench
SOTTO=$REPO/target/release/sotto
BENCH=$REPO/target/release/sotto-bench
pids=()
stop_nodes() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() { stop_nodes; stop_services; rm -rf "$WORK"; }
trap cleanup EXIT

# Every process of the private PostgreSQL server: the postmaster and its
# children (the nodes' connections among them).
pg_pids() {
    local main
    main=$(head -n 1 "$PG_TMP/data/postmaster.pid")
    { echo "$main"; pgrep -P "$main"; } | paste -sd, -
}

# start_nodes ENGINE N: N nodes on ports 7601.. (ENGINE sqlite or postgres).
start_nodes() {
    local engine=$1 n=$2 db="sotto_bench_${1}_$2" i port
    if [ "$engine" = postgres ]; then
        psql "$SOTTO_TEST_POSTGRES" -qc "CREATE DATABASE $db" >/dev/null
    fi
    ADDRS=""
    for i in $(seq "$n"); do
        port=$((7600 + i))
        # As bench/compare.sh runs Sotto: no request or registration limits.
        local args=(serve --listen "127.0.0.1:$port" --data-dir "$WORK/$engine-$n-$i"
                    --requests-per-second 1000000 --request-burst 1000000
                    --outbound-buffer 1048576 --max-registrations-per-hour 1000000000)
        if [ "$engine" = postgres ]; then
            args+=(--database "${SOTTO_TEST_POSTGRES/dbname=postgres/dbname=$db}"
                   --cluster "$SOTTO_TEST_NATS")
        fi
        "$SOTTO" "${args[@]}" </dev/null >"$WORK/node-$engine-$n-$i.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 200); do
            grep -q "Certificate fingerprint" "$WORK/node-$engine-$n-$i.log" && break
            sleep 0.05
        done
        ADDRS+="${ADDRS:+,}127.0.0.1:$port"
    done
    NODE_PIDS=$(IFS=,; echo "${pids[*]}")
}

run() {  # run ENGINE N SCENARIO ARGS...
    local engine=$1 n=$2 scenario=$3; shift 3
    local watch=(--server-pid "$NODE_PIDS")
    if [ "$engine" = postgres ]; then
        watch+=(--db-pid "$(pg_pids)" --bus-pid "$NATS_PID")
    fi
    "$BENCH" "$scenario" --server "$ADDRS" "${watch[@]}" \
        --state-dir "$WORK/state-$engine-$n" --duration "$DURATION" --warmup "$WARMUP" \
        --json "$@" >"$WORK/run.out"
    tail -n 1 "$WORK/run.out" \
        | python3 -c "import json,sys; d=json.load(sys.stdin); d.update(engine='$engine', nodes=$n); print(json.dumps(d))" \
        | tee -a "$RESULTS"
}

for config in "sqlite 1" "postgres 1" "postgres 2" "postgres 3"; do
    set -- $config
    echo "== $1, $2 node(s)" >&2
    start_nodes "$1" "$2"
    run "$1" "$2" fanout --clients "$CLIENTS" --senders "$SENDERS" --window "$WINDOW"
    run "$1" "$2" direct --pairs "$PAIRS" --window "$WINDOW"
    stop_nodes
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def f(v, d=0):
    return "–" if v is None else f"{v:,.{d}f}"
print()
print("| engine | nodes | scenario | rate/s | lost | p50 ms | p99 ms | join s | nodes CPU % | per node % | CPU µs per delivery | PostgreSQL CPU % | NATS CPU % | bench CPU % |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    rate = r.get("deliveries_per_s")
    cpu = r.get("server_cpu_pct")
    lat = r.get("latency_us") or {}
    per = None if cpu is None or not rate else cpu / 100 * 1e6 / rate
    print(f"| {r['engine']} | {r['nodes']} | {r['scenario']} | {f(rate)} | {r.get('lost')} "
          f"| {f((lat.get('p50') or 0)/1000, 1)} | {f((lat.get('p99') or 0)/1000, 1)} "
          f"| {f(r.get('join_time_s'), 2)} | {f(cpu)} | {f(None if cpu is None else cpu / r['nodes'])} "
          f"| {f(per, 1)} | {f(r.get('db_cpu_pct'))} | {f(r.get('bus_cpu_pct'))} | {f(r.get('bench_cpu_pct'))} |")
PY
