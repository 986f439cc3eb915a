#!/usr/bin/env bash
# Flows of one size through a one-shard sluice, recv/send path against splice path, on
# both I/O backends. The crossover size is where `splice = "auto"` should switch.
# Usage: scripts/splice-threshold.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
cargo build --release -q --bin sluice --example flows
bin=target/release/sluice
flows=target/release/examples/flows
conf=$(mktemp)
trap 'kill $(jobs -p) 2>/dev/null; rm -f "$conf"' EXIT
for size in 16384 65536 262144 1048576 4194304; do
    "$flows" serve 127.0.0.1:5400 "$size" & server=$!
    sleep 0.2
    for io in uring epoll; do
        for splice in never always; do
            printf '[server]\nworkers = 1\nio = "%s"\nsplice = "%s"\n[[service]]\nname = "fb"\nlisten = "127.0.0.1:15400"\nbackends = ["127.0.0.1:5400"]\n' "$io" "$splice" >"$conf"
            taskset -c 0 "$bin" run --config "$conf" 2>/dev/null & lb=$!
            sleep 0.4
            echo "size=$size io=$io splice=$splice: $(taskset -c 1 "$flows" get 127.0.0.1:15400 4 "$secs")"
            kill "$lb"; wait "$lb" 2>/dev/null || true
        done
    done
    kill "$server"; wait "$server" 2>/dev/null || true
done
