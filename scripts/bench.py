#!/usr/bin/env python3
"""Side-by-side run of sluice, HAProxy and nginx; see scripts/bench.sh. Without
--proxy-cpu: the unconstrained run ("the ceiling", this file); with it: the fixed CPU
budget (bench_budget.py); with --compare too: the sluice just built against an earlier
build at that budget (bench_compare.py)."""

import argparse, os, shutil, signal, socket, sys, time

from bench_common import (BACKEND_PORT, BULK_BYTES, CLIENT_CPU, CLK, HTTP_PORTS, PORTS,
                          PROXY_CPU, ROOT, SCENARIOS, Procs, backend_config, bench, check_free,
                          configs, cpu_ticks, environment, median, port_of, replace_section,
                          rss_kib, scratch_dir, sh, start_backend, start_proxies)

TARGETS = ["sluice", "haproxy", "nginx", "direct"]


def run_scenarios(pids, rounds, seconds):
    results = {s: {t: [] for t in TARGETS} for s in SCENARIOS}
    cpu = {s: {t: [] for t in TARGETS if t != "direct"} for s in SCENARIOS}
    for r in range(rounds):
        for name, sc in SCENARIOS.items():
            for t in sc.get("targets", TARGETS):  # interleaved: A B C D A B C D ...
                before = cpu_ticks(pids.get(t))
                port = port_of(t, sc)
                rep = bench(port, sc["mode"], seconds, sc["connections"], sc.get("extra", ()))
                after = cpu_ticks(pids.get(t))
                results[name][t].append(rep)
                if t != "direct" and rep["requests"]:
                    cpu[name][t].append((after - before) / CLK * 1e6 / rep["requests"])
                errs = {k: v for k, v in rep["errors"].items() if v}
                print(f"round {r + 1} {name:13} {t:8} {rep[sc['metric']]:12.2f} {sc['unit']}"
                      f"  errors {errs or 0}", flush=True)
    return results, cpu


def idle_memory(pids, conns, http=False):
    """RSS growth per idle proxied connection; `http`: per idle HTTP keep-alive client
    connection after one request."""
    out = {}
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    for t in ["sluice", "haproxy", "nginx"]:
        pid = pids[t]
        before = rss_kib(pid)
        socks = []
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", HTTP_PORTS[t] if http else PORTS[t]))
            if http:
                s.sendall(request)
            socks.append(s)
        if http:
            for s in socks:
                got = b""
                while not got.endswith(b"backend\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        raise RuntimeError(f"{t} closed an HTTP keep-alive connection")
                    got += chunk
        time.sleep(2.5 if http else 1.0)  # sluice trims idle HTTP sessions once a second
        after = rss_kib(pid)
        for s in socks:
            s.close()
        out[t] = (after - before) * 1024 / conns
        kind = "HTTP keep-alive" if http else "L4"
        print(f"idle {kind} {t:8} {out[t]:8.0f} bytes/connection ({conns} connections)", flush=True)
        time.sleep(1.0)
    return out


def fixed_rate(pids, rate, seconds):
    out = {}
    for t in ["sluice", "haproxy", "nginx", "direct"]:
        rep = bench(port_of(t), "keepalive", seconds, 64, ["--rate", str(rate)])
        out[t] = rep["latency_us"]["p99"]
        print(f"rate {rate:.0f}/s {t:8} p99 {out[t]} us", flush=True)
    return out


def cross_check(rounds, seconds):
    """sluice bench against wrk on the same target (the backend, directly)."""
    out = {}
    for mode in ["keepalive", "close"]:
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(bench(BACKEND_PORT, mode, seconds, 64)["requests_per_s"])
            cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", "-c64", f"-d{seconds}s"]
            if mode == "close":
                cmd += ["-H", "Connection: close"]
            text = sh(cmd + [f"http://127.0.0.1:{BACKEND_PORT}/"])
            theirs.append(float(next(l.split()[1] for l in text.splitlines() if l.startswith("Requests/sec"))))
        out[mode] = (median(ours), median(theirs))
        print(f"cross-check {mode}: sluice bench {out[mode][0]:,.0f} req/s, wrk {out[mode][1]:,.0f} req/s", flush=True)
    return out


def svg_chart(rows, path):
    """Grouped bars: sluice/HAProxy and sluice/nginx per figure; 1.0 marked."""
    w, bar, gap = 760, 14, 18
    h = 60 + len(rows) * (2 * bar + gap)
    scale = 250
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           '<text x="10" y="20" font-size="14">sluice / HAProxy (blue) and sluice / nginx (green); higher is better, 1.0 = parity</text>']
    x0, y = 230, 40
    out.append(f'<line x1="{x0 + scale}" y1="30" x2="{x0 + scale}" y2="{h - 10}" stroke="#888" stroke-dasharray="4"/>')
    for label, vh, vn in rows:
        out.append(f'<text x="10" y="{y + bar + 4}">{label}</text>')
        for i, (v, color) in enumerate([(vh, "#3b6fb6"), (vn, "#3a9a5b")]):
            length = max(1, min(v, 2.0) * scale)
            yy = y + i * bar
            out.append(f'<rect x="{x0}" y="{yy}" width="{length:.0f}" height="{bar - 2}" fill="{color}"/>')
            out.append(f'<text x="{x0 + length + 4:.0f}" y="{yy + bar - 4}">{v:.2f}</text>')
        y += 2 * bar + gap
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


CEILING = "## The ceiling: sluice, HAProxy, nginx without a CPU limit"
CEILING_BEFORE = "## Side by side: sluice, HAProxy, nginx (L4"  # the heading it had


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short run (a few minutes)")
    mode.add_argument("--smoke", action="store_true",
                      help="checks the machinery in about a minute; prints, writes no page")
    ap.add_argument("--proxy-cpu", type=float, metavar="FRACTION",
                    help="each proxy in a cgroup of its own limited to FRACTION of a CPU")
    ap.add_argument("--cpu-period-ms", type=float, default=100,
                    help="the cgroup's quota period with --proxy-cpu (default: 100, the kernel's)")
    ap.add_argument("--compare", metavar="OLD_SLUICE",
                    help="with --proxy-cpu: the sluice just built against this one, each with "
                         "io = uring and io = epoll; no HAProxy, no nginx")
    ap.add_argument("--compare-label", metavar="TEXT",
                    help="what the --compare binary is (a commit, a tag), for the page")
    ap.add_argument("--tls", action="store_true",
                    help="with --proxy-cpu: TLS termination (handshakes, resumption, HTTPS "
                         "keep-alive and bulk, idle memory) of sluice, HAProxy and nginx")
    ap.add_argument("--scenario", action="append", metavar="NAME",
                    help="with --compare: run only this scenario (again for more); prints, "
                         "writes no page")
    args = ap.parse_args()
    if args.scenario and args.compare is None:
        ap.error("--scenario goes with --compare")
    if args.compare is not None and args.proxy_cpu is None:
        ap.error("--compare needs --proxy-cpu")
    if args.compare_label is not None and args.compare is None:
        ap.error("--compare-label goes with --compare")
    signal.signal(signal.SIGTERM, lambda sig, _: sys.exit(128 + sig))  # so `finally` runs
    if args.tls:
        if args.proxy_cpu is None or args.compare is not None:
            ap.error("--tls goes with --proxy-cpu (and not --compare)")
        import bench_tls
        return bench_tls.main(args)
    if args.compare is not None:
        import bench_compare
        return bench_compare.main(args)
    if args.proxy_cpu is not None:
        import bench_budget
        return bench_budget.main(args)
    rounds, seconds, idle, rate_secs, checks = ((1, 1, 300, 2, 1) if args.smoke else
                                                (3, 2, 2000, 3, 3) if args.quick else
                                                (5, 8, 9000, 10, 3))
    check_free()
    procs = Procs()
    tmp = scratch_dir()
    try:
        start_backend(procs, backend_config(tmp), CLIENT_CPU)
        paths = configs(tmp)
        pids = {t: w for t, (_, w) in start_proxies(procs, paths).items()}
        results, cpu = run_scenarios(pids, rounds, seconds)
        mem = idle_memory(pids, idle)
        # Fresh proxies: each keeps (and would re-use) what the idle L4 connections freed.
        procs.stop_all(keep=1)  # the backend, started first, stays
        pids = {t: w for t, (_, w) in start_proxies(procs, paths).items()}
        mem_http = idle_memory(pids, idle, http=True)
        hap_max = median([r["requests_per_s"] for r in results["L4 keepalive"]["haproxy"]])
        p99 = fixed_rate(pids, hap_max / 2, rate_secs)
        check = cross_check(checks, seconds)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    write_doc(args, (rounds, seconds, idle, rate_secs, checks), results, cpu, mem, mem_http,
              hap_max, p99, check)


def write_doc(args, plan, results, cpu, mem, mem_http, hap_max, p99, check):
    rounds, seconds, idle, rate_secs, checks = plan
    table = ["| scenario | sluice | HAProxy | nginx | direct | sluice/HAProxy | sluice/nginx | sluice/direct |",
             "|---|---|---|---|---|---|---|---|"]
    chart = []
    for name, sc in SCENARIOS.items():
        m = {t: median([r[sc["metric"]] for r in results[name][t]]) for t in TARGETS}
        rh, rn, rd = m["sluice"] / m["haproxy"], m["sluice"] / m["nginx"], m["sluice"] / m["direct"]
        fmt = (lambda v: f"{v:.2f}") if sc["unit"] == "Gbit/s" else (lambda v: f"{v:,.0f}")
        direct = (f"{fmt(m['direct'])} | {rh:.2f} | {rn:.2f} | {rd:.2f}" if results[name]["direct"]
                  else f"– | {rh:.2f} | {rn:.2f} | –")
        table.append(f"| {name} ({sc['unit']}) | {fmt(m['sluice'])} | {fmt(m['haproxy'])} | {fmt(m['nginx'])} | "
                     f"{direct} |")
        chart.append((f"{name} {sc['unit']}", rh, rn))
    for name in SCENARIOS:
        c = {t: median(cpu[name][t]) for t in ["sluice", "haproxy", "nginx"]}
        table.append(f"| {name}: proxy CPU µs/request | {c['sluice']:.1f} | {c['haproxy']:.1f} | {c['nginx']:.1f} | – | "
                     f"{c['sluice'] / c['haproxy']:.2f} | {c['sluice'] / c['nginx']:.2f} | – |")
        chart.append((f"{name} CPU/request (inverse)", c["haproxy"] / c["sluice"], c["nginx"] / c["sluice"]))
    table.append(f"| memory per idle proxied connection (bytes) | {mem['sluice']:.0f} | {mem['haproxy']:.0f} | "
                 f"{mem['nginx']:.0f} | – | {mem['sluice'] / mem['haproxy']:.2f} | {mem['sluice'] / mem['nginx']:.2f} | – |")
    chart.append(("idle memory (inverse)", mem["haproxy"] / max(mem["sluice"], 1), mem["nginx"] / max(mem["sluice"], 1)))
    m = mem_http
    table.append(f"| memory per idle HTTP keep-alive client connection (bytes) | {m['sluice']:.0f} | {m['haproxy']:.0f} | "
                 f"{m['nginx']:.0f} | – | {m['sluice'] / m['haproxy']:.2f} | {m['sluice'] / m['nginx']:.2f} | – |")
    chart.append(("idle HTTP memory (inverse)", m["haproxy"] / max(m["sluice"], 1), m["nginx"] / max(m["sluice"], 1)))
    table.append(f"| p99 latency at {hap_max / 2:,.0f} req/s (µs) | {p99['sluice']} | {p99['haproxy']} | {p99['nginx']} | "
                 f"{p99['direct']} | {p99['sluice'] / p99['haproxy']:.2f} | {p99['sluice'] / p99['nginx']:.2f} | "
                 f"{p99['sluice'] / p99['direct']:.2f} |")
    chart.append(("p99 at fixed rate (inverse)", p99["haproxy"] / p99["sluice"], p99["nginx"] / p99["sluice"]))
    if not args.smoke:
        svg_chart(chart, os.path.join(ROOT, "docs/bench-ratios.svg"))
    cmd = "scripts/bench.sh" + (" --quick" if args.quick else " --smoke" if args.smoke else "")
    doc = f"""{CEILING} (L4 and HTTP)

Produced by `{cmd}` on {environment()}.

Nothing limits the proxies here but their core, and the load generator's core is the
bottleneck (see "What bounds these figures"): these figures are the machine's ceiling,
not a measure of the proxies, which the fixed CPU budget above is.

Setup: one nginx backend (1 worker, CPU {CLIENT_CPU}) answering 23 bytes at `/` and
{BULK_BYTES >> 20} MiB at `/bulk`; each proxy with one worker/thread pinned to CPU {PROXY_CPU}
(sluice `workers = 1`, HAProxy `nbthread 1` `mode tcp`, nginx `stream` `proxy_pass`;
for HTTP: a sluice `mode = "http"` service, HAProxy `mode http` with `http-reuse always`,
nginx `proxy_pass` to an upstream with `keepalive 64`, each on a port of its own in
the same process, and each adding X-Forwarded-For, -Proto and -Port as Marathon-LB's
template does);
the load generator `sluice bench --threads 1` on CPU {CLIENT_CPU}. Scenarios: close
(`--mode close --connections 64`, a new client connection per request), keepalive
(`--mode keepalive --connections 64`), bulk (`--mode bulk --connections 8 --path /bulk`).
sluice's HTTP listeners always defer accepting until the request arrives
(`TCP_DEFER_ACCEPT`); HAProxy and nginx do not by default (Marathon-LB's template binds
without it), so "HTTP close" runs them as configured above, and "HTTP close, deferred"
runs them again with `bind … defer-accept` and `listen … deferred`.
{rounds} interleaved rounds of {seconds} s (sluice, HAProxy, nginx, direct, sluice, …);
medians. CPU µs per request: user+system time of the proxy process over the run
(from /proc) divided by the requests. Idle memory: RSS growth over {idle} idle
proxied connections (L4), and over {idle} idle HTTP keep-alive client connections
after one request each (on freshly started proxies). p99: keepalive at a fixed rate of half HAProxy's keepalive
maximum ({hap_max:,.0f} req/s → {hap_max / 2:,.0f} req/s), {rate_secs} s each.

{chr(10).join(table)}

![ratios](bench-ratios.svg)

Load generator cross-check, same target (the backend directly), {checks} alternating runs of
{seconds} s, medians: {check_text(check, seconds)}.
"""
    if not args.smoke:
        replace_section(doc, [CEILING, CEILING_BEFORE])
    print(doc)


def check_text(check, seconds):
    parts = []
    for mode, (ours, wrk) in check.items():
        flag = "" if mode == "keepalive" else ' -H "Connection: close"'
        parts.append(f"{mode}: `sluice bench --mode {mode} --connections 64 --threads 1` "
                     f"{ours:,.0f} req/s, `wrk -t1 -c64 -d{seconds}s{flag}` {wrk:,.0f} req/s "
                     f"(ratio {ours / wrk:.2f})")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
