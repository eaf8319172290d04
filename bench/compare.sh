#!/usr/bin/env bash
# Runs every sotto-bench scenario against Sotto, InspIRCd and ngIRCd on this
# machine, one server at a time, and writes the tables into BENCHMARKS.md.
#
# Run as root on Debian from anywhere in the repository:
#
#     sudo bench/compare.sh
#
# It installs inspircd and ngircd from Debian, generates a throwaway
# self-signed certificate for them, writes their configs from
# bench/irc/*.conf.in into a work dir, builds sotto and sotto-bench in
# release mode, and then for each scenario starts each server fresh, runs the
# bench against it with --json, and stops it. The JSON lines land in
# $WORK/results.jsonl; bench/report.py turns them into BENCHMARKS.md.
# Not part of CI: a full run takes about half an hour.
#
# Environment (all optional):
#   WORK      work dir (default: a new /tmp/sotto-compare.XXXXXX)
#   DURATION  measured seconds per run (default 20)
#   WARMUP    warmup seconds per run (default 3)
#   SENDERS   senders in fanout/slow-consumer runs (default 10)
#   WINDOW    messages each sender keeps in flight (default 16)
#   SIZE      message bytes (default 100)
#   ONLY      space-separated scenario ids to run (default: all, see below)
#   SERVERS   space-separated servers to run (default: sotto inspircd ngircd)
#   SKIP      space-separated ID:SERVER runs to leave out, recorded as skipped
#             (e.g. "idle-19000:ngircd": ngIRCd's compiled-in listen backlog
#             of 10 admits about 17 connections/s, so that run takes ~20 min)
#   SKIP_INSTALL=1  do not apt-get (the packages are already there)
#   OUTPUT    the markdown file to write (default: BENCHMARKS.md at the root)

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/sotto-compare.XXXXXX)}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
SENDERS=${SENDERS:-10}
WINDOW=${WINDOW:-16}
SIZE=${SIZE:-100}
ONLY=${ONLY:-}
SERVERS=${SERVERS:-sotto inspircd ngircd}
SKIP=${SKIP:-}
OUTPUT=${OUTPUT:-$REPO/BENCHMARKS.md}

SOTTO_ADDR=127.0.0.1:7443
INSPIRCD_ADDR=127.0.0.1:6697
NGIRCD_ADDR=127.0.0.1:6698
RESULTS=$WORK/results.jsonl

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts the IRC servers as user irc)"
mkdir -p "$WORK"
log "work dir: $WORK"

# --- 1. packages -------------------------------------------------------------
if [[ -z ${SKIP_INSTALL:-} ]]; then
    log "installing inspircd, ngircd, openssl, python3"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y inspircd ngircd openssl python3
fi
# The Debian packages may start their own instances on the default ports;
# ours use other ports, but stop them so they do not share the CPU.
for service in inspircd ngircd; do
    service "$service" stop >/dev/null 2>&1 || true
done

# --- 2. certificate and IRC configs -------------------------------------------
IRC_DIR=$WORK/irc
mkdir -p "$IRC_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$IRC_DIR/key.pem" -out "$IRC_DIR/cert.pem" 2>/dev/null
echo "Sotto benchmark IRC server" >"$IRC_DIR/motd.txt"
for server in inspircd ngircd; do
    sed "s|@WORKDIR@|$IRC_DIR|g" "$REPO/bench/irc/$server.conf.in" >"$IRC_DIR/$server.conf"
done
chown -R irc:irc "$IRC_DIR"

# --- 3. build ------------------------------------------------------------------
log "building sotto, sotto-bench and irc-check (release)"
(cd "$REPO" && cargo build --release -p sotto -p sotto-bench)
SOTTO_BIN=$REPO/target/release/sotto
BENCH_BIN=$REPO/target/release/sotto-bench
CHECK_BIN=$REPO/target/release/irc-check

# Every process started from here inherits the raised descriptor limit
# (the hard limit on this machine is 20,000).
ulimit -n "$(ulimit -Hn)"

# --- 4. servers ------------------------------------------------------------------
SERVER_PID=

wait_port() {
    local port=$1
    for _ in $(seq 1 600); do
        if ss -Hltn "sport = :$port" | grep -q .; then return 0; fi
        sleep 0.1
    done
    return 1
}

# start_server NAME: starts a fresh instance, sets SERVER_PID.
start_server() {
    local name=$1 run_dir=$WORK/run/$2
    mkdir -p "$run_dir"
    case $name in
        sotto)
            "$SOTTO_BIN" serve --listen "$SOTTO_ADDR" --data-dir "$WORK/sotto-data" \
                --requests-per-second 1000000 --request-burst 1000000 --outbound-buffer 1048576 \
                --max-registrations-per-hour 1000000000 \
                </dev/null >"$run_dir/server.log" 2>&1 &
            SERVER_PID=$!
            wait_port "${SOTTO_ADDR##*:}" || die "sotto did not start: see $run_dir/server.log"
            ;;
        inspircd)
            rm -f "$IRC_DIR/inspircd.pid"
            # runuser resets the descriptor limit (PAM): raise it again inside.
            runuser -u irc -- bash -c "ulimit -n $(ulimit -Hn) && exec /usr/sbin/inspircd --config='$IRC_DIR/inspircd.conf' --nofork" \
                </dev/null >"$run_dir/server.log" 2>&1 &
            SERVER_PID=$!
            wait_port "${INSPIRCD_ADDR##*:}" || die "inspircd did not start: see $run_dir/server.log"
            ;;
        ngircd)
            runuser -u irc -- bash -c "ulimit -n $(ulimit -Hn) && exec /usr/sbin/ngircd --nodaemon --config '$IRC_DIR/ngircd.conf'" \
                </dev/null >"$run_dir/server.log" 2>&1 &
            SERVER_PID=$!
            wait_port "${NGIRCD_ADDR##*:}" || die "ngircd did not start: see $run_dir/server.log"
            ;;
    esac
    # runuser forks: sample the server itself, not the wrapper.
    local child
    child=$(pgrep -P "$SERVER_PID" | head -n1 || true)
    if [[ -n $child ]]; then SERVER_PID=$child; fi
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    SERVER_PID=
    sleep 1
}
trap stop_server EXIT

# --- 5. scenarios -----------------------------------------------------------------
# run ID TITLE LABEL SERVER -- sotto-bench arguments
# Starts SERVER fresh, runs the bench against it, appends its JSON line
# (with the table id, title and row label added) to results.jsonl.
run() {
    local id=$1 title=$2 label=$3 server=$4
    shift 5
    if [[ -n $ONLY && " $ONLY " != *" $id "* ]]; then return 0; fi
    if [[ " $SERVERS " != *" $server "* ]]; then return 0; fi
    if [[ " $SKIP " == *" $id:$server "* ]]; then
        log "$title: $label skipped (SKIP)"
        printf '{"error": "not run (SKIP=%s:%s)", "table": "%s", "title": "%s", "label": "%s"}\n' \
            "$id" "$server" "$id" "$title" "$label" >>"$RESULTS"
        return 0
    fi
    local tag="$id-$server-${label// /_}" addr protocol
    case $server in
        sotto) addr=$SOTTO_ADDR protocol=sotto ;;
        inspircd) addr=$INSPIRCD_ADDR protocol=irc ;;
        ngircd) addr=$NGIRCD_ADDR protocol=irc ;;
    esac
    # InspIRCd holds each registration about a second, so connect many at
    # once; ngIRCd's listen backlog of 10 needs few.
    local connects=16
    [[ $server == inspircd ]] && connects=512
    log "$title: $label"
    start_server "$server" "$tag"
    local out=$WORK/run/$tag/bench.out status=0
    # Sotto keeps one data dir and one bench state across runs, so bench
    # accounts are registered (Argon2id) once, not once per run.
    SOTTO_BENCH_IRC_CONNECTS=$connects timeout $((DURATION + WARMUP + 1200)) "$BENCH_BIN" "$@" \
        --protocol "$protocol" --server "$addr" \
        --server-pid "$SERVER_PID" --duration "$DURATION" --warmup "$WARMUP" --json \
        --state-dir "$WORK/bench-state-$server" >"$out" 2>"$WORK/run/$tag/bench.err" || status=$?
    stop_server
    record sotto-bench "$status" "$out" table="$id" title="$title" label="$label"
}

# record TOOL STATUS OUTPUT KEY=VALUE...: appends the last JSON line of
# OUTPUT (or an error naming TOOL, if it failed) to results.jsonl, with
# the keys added.
record() {
    python3 - "$@" >>"$RESULTS" <<'EOF'
import json, sys
tool, status, path, *extra = sys.argv[1:]
lines = [l for l in open(path, encoding="utf-8", errors="replace").read().splitlines() if l.strip()]
try:
    row = json.loads(lines[-1]) if int(status) == 0 else None
except (IndexError, ValueError):
    row = None
if row is None:
    row = {"error": f"{tool} exited with status {status}; see {path}"}
    if tool != "sotto-bench":
        row["tool"] = tool
row.update(dict(kv.split("=", 1) for kv in extra))
print(json.dumps(row))
EOF
}

# check ID SERVER -- irc-check arguments
# The cross-check: the same scenario against a fresh SERVER (inspircd or
# ngircd), measured by irc-check, a second IRC load generator that shares
# no code with sotto-bench. Its JSON line lands in results.jsonl too
# (tool "irc-check"); report.py sets it beside sotto-bench's row.
check() {
    local id=$1 server=$2
    shift 3
    if [[ -n $ONLY && " $ONLY " != *" $id "* ]]; then return 0; fi
    if [[ " $SERVERS " != *" $server "* ]]; then return 0; fi
    if [[ " $SKIP " == *" $id:$server "* ]]; then return 0; fi
    local tag="$id-$server-check" addr label connects=16
    case $server in
        inspircd) addr=$INSPIRCD_ADDR label=InspIRCd connects=512 ;;
        ngircd) addr=$NGIRCD_ADDR label=ngIRCd ;;
    esac
    log "cross-check with irc-check: $id, $label"
    start_server "$server" "$tag"
    local out=$WORK/run/$tag/check.out status=0
    local gate=(--concurrency "$connects")
    [[ " $* " == *" --concurrency "* ]] && gate=()
    timeout $((DURATION + WARMUP + 1200)) "$CHECK_BIN" "$@" --server "$addr" \
        --server-pid "$SERVER_PID" --duration "$DURATION" --warmup "$WARMUP" \
        "${gate[@]}" >"$out" 2>"$WORK/run/$tag/check.err" || status=$?
    stop_server
    record irc-check "$status" "$out" table="$id" label="$label"
}

# checks ID -- ARGS: the cross-check against InspIRCd and ngIRCd.
checks() {
    local id=$1
    shift 2
    check "$id" inspircd -- "$@"
    check "$id" ngircd -- "$@"
}

# each ID TITLE -- ARGS: the scenario against Sotto, InspIRCd and ngIRCd.
each() {
    local id=$1 title=$2
    shift 3
    run "$id" "$title" "Sotto" sotto -- "$@"
    run "$id" "$title" "InspIRCd" inspircd -- "$@"
    run "$id" "$title" "ngIRCd" ngircd -- "$@"
}

: >"$RESULTS"
PACE=(--window "$WINDOW")
FAN=(--senders "$SENDERS" --size "$SIZE")

# IRC has no lobby/group distinction (one channel, #bench), so the 1,000
# member table has two Sotto rows and one row per IRC server.
T="fanout, 1,000 members, $SENDERS senders, window $WINDOW, $SIZE-byte messages"
run fanout-1000 "$T" "Sotto (lobby)" sotto -- fanout --clients 1000 "${FAN[@]}" "${PACE[@]}" --room lobby
run fanout-1000 "$T" "Sotto (group)" sotto -- fanout --clients 1000 "${FAN[@]}" "${PACE[@]}" --room group
run fanout-1000 "$T" "InspIRCd" inspircd -- fanout --clients 1000 "${FAN[@]}" "${PACE[@]}"
run fanout-1000 "$T" "ngIRCd" ngircd -- fanout --clients 1000 "${FAN[@]}" "${PACE[@]}"
checks fanout-1000 -- fanout --clients 1000 --senders "$SENDERS" --size "$SIZE" --window "$WINDOW"

each fanout-5000 "fanout, 5,000 members (group), $SENDERS senders, window $WINDOW, $SIZE-byte messages" -- \
    fanout --clients 5000 "${FAN[@]}" "${PACE[@]}" --room group
checks fanout-5000 -- fanout --clients 5000 --senders "$SENDERS" --size "$SIZE" --window "$WINDOW"

# 200 messages/s over all senders to 1,000 members: 200k deliveries/s offered.
each fanout-rate "fanout at 200k deliveries/s offered (200 msgs/s x 1,000 members, group), $SENDERS senders" -- \
    fanout --clients 1000 "${FAN[@]}" --rate 200 --room group
checks fanout-rate -- fanout --clients 1000 --senders "$SENDERS" --size "$SIZE" --rate 200

each direct-1000 "direct, 1,000 pairs, window $WINDOW, $SIZE-byte messages" -- \
    direct --pairs 1000 "${PACE[@]}" --size "$SIZE"
checks direct-1000 -- direct --pairs 1000 --window "$WINDOW" --size "$SIZE"

each idle-19000 "idle, 19,000 logged-in TLS connections" -- \
    idle --connections 19000
checks idle-19000 -- idle --clients 19000

each login-200 "login storm, 200 clients, 16 at once" -- \
    login --clients 200 --concurrency 16
checks login-200 -- idle --clients 200 --concurrency 16

each slow-consumer "slow consumer, 1,000 members (group), $SENDERS senders, window $WINDOW" -- \
    slow-consumer --clients 1000 "${FAN[@]}" "${PACE[@]}" --room group
checks slow-consumer -- fanout --clients 1000 --senders "$SENDERS" --size "$SIZE" --window "$WINDOW" --stalled 1

# --- 6. report ---------------------------------------------------------------------
log "writing $OUTPUT"
python3 "$REPO/bench/report.py" --results "$RESULTS" --output "$OUTPUT" \
    --duration "$DURATION" --warmup "$WARMUP" \
    --packages "inspircd=$(dpkg-query -W -f '${Version}' inspircd)" \
    --packages "ngircd=$(dpkg-query -W -f '${Version}' ngircd)" \
    --packages "rustc=$(rustc --version)"
log "done: $OUTPUT (raw results in $RESULTS)"
