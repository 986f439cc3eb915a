#!/usr/bin/env bash
# What active health checks cost: 1,000 backends, each checked over HTTP every 2 s.
#
# nginx serves 1,000 loopback listeners (the backends); sluice runs one HTTP service
# over all of them, alternately without [service.health] ("off") and with an HTTP
# check of every backend every 2 s ("on"). Each run:
#   - waits for every backend to be checked (on) and lets the checks run IDLE seconds
#     with no traffic: the health thread's CPU alone (/proc/PID/task/TID/stat);
#   - drives DURATION seconds of keep-alive requests with `sluice bench` through the
#     service: the proxy's throughput, and the health thread's CPU meanwhile.
# Prints a Markdown table (for docs/benchmarks.md).
#
# With --shard-cpu FRACTION (root, cgroup v1), the shard thread alone runs in a cgroup
# limited to FRACTION of a CPU, the health thread and everything else outside it: the
# data plane has the same fixed budget with checks on and off, and is the bottleneck
# (not the load generator or nginx), so any cost the checks put on the data plane
# shows as fewer requests/s.
#
# Usage: scripts/health_bench.sh [--bin target/release/sluice] [--duration 10]
#                                [--idle 10] [--rounds 2] [--shard-cpu 0.3]
set -euo pipefail

BIN=target/release/sluice
DURATION=10
IDLE=10
ROUNDS=2
N=1000
BASE_PORT=21000
SHARD_CPU=""
CGROUP_PREFIX="sluice-bench-health-$$"
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --idle) IDLE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --shard-cpu) SHARD_CPU=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v nginx >/dev/null || { echo "nginx is needed" >&2; exit 1; }

TMP=$(mktemp -d)
NGINX_PID=""
SLUICE_PID=""
cleanup() {
    [ -n "$SLUICE_PID" ] && kill "$SLUICE_PID" 2>/dev/null && wait "$SLUICE_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    [ -n "$SHARD_CPU" ] && python3 scripts/bench_cgroup.py cleanup "$CGROUP_PREFIX"
    rm -rf "$TMP"
}
trap cleanup EXIT

# The backends: one nginx worker, N listeners answering 200.
{
    echo "worker_processes 1; daemon off; pid $TMP/nginx.pid; error_log $TMP/nginx.err;"
    echo "events { worker_connections 8192; }"
    echo "http { access_log off; server {"
    for i in $(seq 0 $((N - 1))); do echo "  listen 127.0.0.1:$((BASE_PORT + i)) reuseport;"; done
    echo "  location / { return 200 'ok'; } } }"
} > "$TMP/nginx.conf"
nginx -c "$TMP/nginx.conf" -p "$TMP" &
NGINX_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$((BASE_PORT + N - 1))/" && break
    sleep 0.1
done

backends=$(for i in $(seq 0 $((N - 1))); do printf '"127.0.0.1:%d",' $((BASE_PORT + i)); done)

config() { # $1: on|off
    cat <<EOF
[server]
workers = 1
[admin]
listen = "127.0.0.1:0"
[[service]]
name = "many"
mode = "http"
listen = "127.0.0.1:0"
balance = "roundrobin"
backends = [${backends%,}]
EOF
    if [ "$1" = on ]; then
        printf '[service.health]\nkind = "http"\npath = "/"\ninterval_ms = 2000\n'
    fi
}

# utime + stime (clock ticks) of the thread named $2 of process $1.
thread_ticks() {
    for t in /proc/"$1"/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ]; then
            awk '{print $14 + $15}' "$t/stat"
            return
        fi
    done
    echo 0
}
# The thread id of the thread named $2 of process $1.
thread_id() {
    for t in /proc/"$1"/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ]; then
            basename "$t"
            return
        fi
    done
    echo "no thread $2 in $1" >&2
    exit 1
}
RUNS=0
process_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
HZ=$(getconf CLK_TCK)
pct() { python3 -c "print(f'{100 * $1 / $HZ / $2:.2f}')"; }

run() { # $1: on|off → "idle% | bench% | req/s | process%"
    config "$1" > "$TMP/sluice.toml"
    RUST_LOG=info "$BIN" run --config "$TMP/sluice.toml" 2> "$TMP/sluice.log" &
    SLUICE_PID=$!
    local addr admin
    for _ in $(seq 200); do
        addr=$(grep 'service listening' "$TMP/sluice.log" | grep -o 'listen=127.0.0.1:[0-9]*' | head -1 | cut -d= -f2 || true)
        admin=$(grep 'admin listening' "$TMP/sluice.log" | grep -o '127.0.0.1:[0-9]*' | head -1 || true)
        [ -n "$addr" ] && [ -n "$admin" ] && break
        sleep 0.1
    done
    if [ "$1" = on ]; then
        # Every backend checked once (each has its own phase in the 2 s).
        for _ in $(seq 100); do
            ok=$(curl -s "http://$admin/metrics" | grep -c 'check_status="L7OK"} 1' || true)
            [ "$ok" -ge "$N" ] && break
            sleep 0.2
        done
        [ "$ok" -ge "$N" ] || { echo "only $ok of $N backends checked" >&2; exit 1; }
    fi
    RUNS=$((RUNS + 1))
    if [ -n "$SHARD_CPU" ]; then
        local shard
        shard=$(thread_id "$SLUICE_PID" sluice-shard-0)
        python3 scripts/bench_cgroup.py limit-thread "$CGROUP_PREFIX-$RUNS" "$SHARD_CPU" "$shard" >&2
    fi
    local h0 h1 h2
    h0=$(thread_ticks "$SLUICE_PID" sluice-health)
    sleep "$IDLE"
    h1=$(thread_ticks "$SLUICE_PID" sluice-health)
    local p1 n1 worker
    worker=$(pgrep -P "$NGINX_PID" | head -1)
    p1=$(process_ticks "$SLUICE_PID")
    n1=$(process_ticks "$worker")
    "$BIN" bench --target "$addr" --mode keepalive --connections 32 --threads 1 \
        --duration "${DURATION}s" --json > "$TMP/bench.json"
    h2=$(thread_ticks "$SLUICE_PID" sluice-health)
    local p2 n2
    p2=$(process_ticks "$SLUICE_PID")
    n2=$(process_ticks "$worker")
    local rps errors
    rps=$(python3 -c "import json; print(round(json.load(open('$TMP/bench.json'))['requests_per_s']))")
    errors=$(python3 -c "import json; print(sum(json.load(open('$TMP/bench.json'))['errors'].values()))")
    kill "$SLUICE_PID"; wait "$SLUICE_PID" 2>/dev/null || true
    SLUICE_PID=""
    [ -n "$SHARD_CPU" ] && python3 scripts/bench_cgroup.py cleanup "$CGROUP_PREFIX"
    # The data plane's own cost: sluice's CPU but the health thread's, per request.
    local us
    us=$(python3 -c "print(f'{1e6 * ($p2 - $p1 - ($h2 - $h1)) / $HZ / ($rps * $DURATION):.1f}')")
    echo "| $1 | $(pct $((h1 - h0)) "$IDLE") % | $(pct $((h2 - h1)) "$DURATION") % | $rps | $errors | $(pct $((p2 - p1)) "$DURATION") % | $us | $(pct $((n2 - n1)) "$DURATION") % |"
}

[ -n "$SHARD_CPU" ] && echo "The shard thread limited to $SHARD_CPU of a CPU (cgroup), the health thread outside it."
echo
echo "| checks | health thread CPU, idle | health thread CPU, under load | requests/s | errors | sluice CPU, under load | shard CPU µs per request | nginx CPU, under load |"
echo "|---|---|---|---|---|---|---|---|"
for _ in $(seq "$ROUNDS"); do
    run off
    run on
done
