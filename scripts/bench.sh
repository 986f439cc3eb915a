#!/usr/bin/env bash
# Side-by-side benchmark: sluice, HAProxy and nginx (stream) in front of the same nginx
# backend, plus the direct client → backend run as the ceiling. Writes docs/benchmarks.md
# and docs/bench-ratios.svg.
#   scripts/bench.sh           full run (about 10 minutes)
#   scripts/bench.sh --quick   short run (under 3 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
ulimit -n "$(ulimit -Hn)"
cargo build --release -q --bin sluice
exec python3 scripts/bench.py "$@"
