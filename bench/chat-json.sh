#!/usr/bin/env bash
# How fast one `sotto chat --json` client sends end-to-end encrypted private
# messages from piped input: COUNT lines `@bob message N` are piped into
# alice's client; the time from the first line to the last "sent" reply,
# and bob's client (a second process) reading every one.
#
#     bench/chat-json.sh [COUNT]        (default 20000)
#
# Prints messages/s, alice's and bob's CPU per message and the server's.
# Release builds; a throwaway server on 127.0.0.1:7643.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COUNT=${1:-20000}
ADDR=127.0.0.1:7643
# SOTTO: another build (say target/profiling/sotto, for perf with symbols;
# PERF=FILE records alice's client with perf).
if [[ -z ${SOTTO:-} ]]; then
    (cd "$REPO" && cargo build --release -q -p sotto)
    SOTTO=$REPO/target/release/sotto
fi
WORK=$(mktemp -d /tmp/sotto-chat-json.XXXXXX)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$SOTTO" serve --listen "$ADDR" --data-dir "$WORK/server" \
    --requests-per-second 1000000 --request-burst 1000000 >"$WORK/server.out" 2>&1 </dev/null &
SERVER=$!
for _ in $(seq 300); do grep -q "Certificate fingerprint" "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
FP=$(sed -n 's/^Certificate fingerprint: //p' "$WORK/server.out")
chat() { # NAME: a JSON-lines client reading stdin
    SOTTO_PASSWORD="pw-$1" "$SOTTO" chat --json --server "$ADDR" --user "$1" \
        --server-fingerprint "$FP" --data-dir "$WORK/$1"
}
# Both accounts exist and have published keys before the run.
echo "@quit" | chat alice >/dev/null
# Bob stays online and reads everything.
mkfifo "$WORK/bob.in"
(chat bob <"$WORK/bob.in" >"$WORK/bob.out") &
exec 3>"$WORK/bob.in"
for _ in $(seq 300); do grep -q '"connected"' "$WORK/bob.out" 2>/dev/null && break; sleep 0.1; done
BOB=$(pgrep -f -- "--user bob" | head -n1)

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
seq 1 "$COUNT" | sed 's/^/@bob message /' >"$WORK/input"
server0=$(ticks "$SERVER"); bob0=$(ticks "$BOB")
start=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o "$WORK/alice.time" ${PERF:+perf record -e cpu-clock -F 499 -g -o "$PERF" --} \
    env SOTTO_PASSWORD=pw-alice "$SOTTO" chat --json --server "$ADDR" --user alice \
    --server-fingerprint "$FP" --data-dir "$WORK/alice" <"$WORK/input" >"$WORK/alice.out"
end=$(date +%s.%N)
# Bob has read all of them.
for _ in $(seq 600); do
    [[ $(grep -c '"type":"private"' "$WORK/bob.out") -ge $COUNT ]] && break
    sleep 0.1
done
bob_end=$(date +%s.%N)
server1=$(ticks "$SERVER"); bob1=$(ticks "$BOB")
sent=$(grep -c '"type":"sent"' "$WORK/alice.out" || true)
errors=$(grep -c '"type":"error"' "$WORK/alice.out" || true)
received=$(grep -c '"type":"private"' "$WORK/bob.out" || true)
python3 - "$COUNT" "$sent" "$errors" "$received" "$start" "$end" "$bob_end" "$WORK/bob.out" \
    "$(cat "$WORK/alice.time")" "$((server1 - server0))" "$((bob1 - bob0))" "$HZ" <<'PY'
import json, sys
count, sent, errors, received = map(int, sys.argv[1:5])
start, end, bob_end = map(float, sys.argv[5:8])
stamps = []
for line in open(sys.argv[8], encoding="utf-8"):
    event = json.loads(line)
    if event.get("type") == "private" and "ts" in event:
        stamps.append(event["ts"])
user, system = map(float, sys.argv[9].split())
server_ticks, bob_ticks, hz = map(int, sys.argv[10:13])
wall = end - start
print(f"lines piped: {count}; sent: {sent}; errors: {errors}; bob read: {received}")
print(f"alice (connect, sign-in, {count} messages, quit): {wall:.2f} s -> {sent / wall:,.0f} encrypted messages/s")
print(f"bob had read them all {bob_end - start:.2f} s after the start")
if len(stamps) > 1 and max(stamps) > min(stamps):
    span = (max(stamps) - min(stamps)) / 1000
    print(f"stored (server time, first to last message): {span:.2f} s -> {(len(stamps) - 1) / span:,.0f} encrypted messages/s")
print(f"alice CPU: {(user + system) * 1e6 / max(sent, 1):.1f} µs per message ({(user + system) / wall * 100:.0f}% of a core)")
print(f"bob CPU: {bob_ticks / hz * 1e6 / max(received, 1):.1f} µs per message")
print(f"server CPU: {server_ticks / hz * 1e6 / max(sent, 1):.1f} µs per message")
PY
