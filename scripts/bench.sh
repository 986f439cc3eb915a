#!/usr/bin/env bash
# Side-by-side benchmark: sluice, HAProxy and nginx (stream) in front of the same nginx
# backend. Writes docs/benchmarks.md (and docs/bench-ratios.svg).
#   scripts/bench.sh --proxy-cpu 0.35   the headline: each proxy in a cgroup of its own
#                                       limited to 0.35 of a CPU (about 18 minutes; root)
#   scripts/bench.sh                    the ceiling: no limit, plus the direct run
#                                       (about 17 minutes)
#   --quick                             a short run of either (about 3 minutes)
#   --smoke                             checks the machinery (about a minute); prints,
#                                       writes nothing
#   --cpu-period-ms MS                  the quota's period with --proxy-cpu (default 100)
#   --proxy-cpu 0.35 --compare OLD      the sluice built here against the binary OLD, each
#                                       with io = uring and io = epoll, at that budget, in
#                                       one interleaved run; writes only its own section
#                                       (about 17 minutes; no HAProxy, no nginx proxy)
#   --compare-label TEXT                what OLD is (a commit, a tag), for the page
#   --proxy-cpu 0.35 --tls              TLS termination of the three at that budget: full
#                                       and resumed handshakes, HTTPS keep-alive and bulk,
#                                       idle memory (about 6 minutes; --quick: 2)
#   --scenario NAME                     with --compare: only that scenario ("HTTP
#                                       keepalive"; again for more); prints, writes nothing
# SLUICE_BENCH_PORT_BASE (default 18000) moves every port (backend: base + 81).
set -euo pipefail
# --compare's path may be relative to where this was called from.
export SLUICE_BENCH_CALLER_DIR="$PWD"
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

# The cgroups of a --proxy-cpu run are named after this shell; whatever way the run
# ends (done, failed, Ctrl-C, TERM), the trap stops the run and removes them. The run
# goes in the background so that `wait` returns as soon as a signal arrives.
prefix="sluice-bench-$$"
child=
# shellcheck disable=SC2317  # finish is run by the trap
finish() {
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    python3 scripts/bench_cgroup.py cleanup "$prefix" || true
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
SLUICE_BENCH_CGROUP_PREFIX="$prefix" python3 scripts/bench.py "$@" &
child=$!
rc=0
wait "$child" || rc=$?
child=
exit "$rc"
