#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions (default 10 million) and prints
# each one's last libFuzzer status line. Needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). The corpora grow in corpus/.
#   fuzz/run.sh                 # all targets, 10M executions each
#   RUNS=100000 fuzz/run.sh opaque_server
set -euo pipefail
cd "$(dirname "$0")"
runs=${RUNS:-10000000}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O
mkdir -p logs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    start=$(date +%s)
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- -runs="$runs" -print_final_stats=1 \
        >"logs/$t.log" 2>&1 || { echo "$t: FAILED, see fuzz/logs/$t.log"; tail -30 "logs/$t.log"; exit 1; }
    end=$(date +%s)
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "logs/$t.log" | tail -1)
    echo "$t: $done_line ($((end - start)) s)"
done
