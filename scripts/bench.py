#!/usr/bin/env python3
"""Side-by-side run of sluice, HAProxy and nginx; see scripts/bench.sh."""

import argparse, datetime, json, os, platform, resource, signal, socket, statistics
import subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.path.join(ROOT, "target/release/sluice")
BACKEND_PORT, BULK_BYTES = 18081, 1 << 20
PORTS = {"sluice": 18100, "haproxy": 18101, "nginx": 18102}
# The same proxies in HTTP mode (one process each serves both).
HTTP_PORTS = {"sluice": 18110, "haproxy": 18111, "nginx": 18112}
# HTTP again, HAProxy and nginx listening with `defer-accept` / `deferred` as sluice's
# HTTP listeners always do (sluice: the same port).
HTTP_DEFER_PORTS = {"sluice": 18110, "haproxy": 18113, "nginx": 18114}
PROXY_CPU, CLIENT_CPU = "0", "1"
CLK = os.sysconf("SC_CLK_TCK")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Procs:
    """Processes this run started; all stopped at exit."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, cpu):
        p = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def stop_all(self, keep=0):
        """Stop every process but the first `keep` started."""
        stopping, self.procs = self.procs[keep:], self.procs[:keep]
        for p in stopping:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in stopping:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def configs(tmp):
    bulk = os.path.join(tmp, "bulk.bin")
    with open(bulk, "wb") as f:
        f.write(os.urandom(BULK_BYTES))
    os.chmod(bulk, 0o644)
    files = {}
    files["backend"] = f"""
worker_processes 1;
pid {tmp}/backend.pid;
error_log {tmp}/backend.err;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  server {{
    listen 127.0.0.1:{BACKEND_PORT} reuseport backlog=4096;
    location / {{ return 200 "hello from the backend\\n"; }}
    location = /bulk {{ alias {bulk}; }}
  }}
}}
"""
    files["sluice"] = f"""
[server]
workers = 1
max_connections = 9900
[[service]]
name = "bench"
listen = "127.0.0.1:{PORTS['sluice']}"
backends = ["127.0.0.1:{BACKEND_PORT}"]
[[service]]
name = "bench-http"
mode = "http"
listen = "127.0.0.1:{HTTP_PORTS['sluice']}"
backends = ["127.0.0.1:{BACKEND_PORT}"]
"""
    files["haproxy"] = f"""
global
  nbthread 1
  maxconn 9900
defaults
  mode tcp
  timeout connect 3s
  timeout client 1h
  timeout server 1h
frontend f
  bind 127.0.0.1:{PORTS['haproxy']}
  default_backend b
backend b
  server s1 127.0.0.1:{BACKEND_PORT}
frontend fh
  mode http
  option http-keep-alive
  timeout http-keep-alive 60s
  bind 127.0.0.1:{HTTP_PORTS['haproxy']}
  default_backend bh
frontend fhd
  mode http
  option http-keep-alive
  timeout http-keep-alive 60s
  bind 127.0.0.1:{HTTP_DEFER_PORTS['haproxy']} defer-accept
  default_backend bh
backend bh
  mode http
  http-reuse always
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto http
  server s1 127.0.0.1:{BACKEND_PORT}
"""
    files["nginx"] = f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
stream {{
  server {{
    listen 127.0.0.1:{PORTS['nginx']} reuseport backlog=4096;
    proxy_pass 127.0.0.1:{BACKEND_PORT};
  }}
}}
http {{
  access_log off;
  keepalive_requests 10000000;
  upstream backend {{
    server 127.0.0.1:{BACKEND_PORT};
    keepalive 64;
    keepalive_requests 10000000;
  }}
  server {{
    listen 127.0.0.1:{HTTP_PORTS['nginx']} reuseport backlog=4096;
    listen 127.0.0.1:{HTTP_DEFER_PORTS['nginx']} reuseport backlog=4096 deferred;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Port $server_port;
    }}
  }}
}}
"""
    paths = {}
    for name, text in files.items():
        ext = "toml" if name == "sluice" else "cfg" if name == "haproxy" else "conf"
        paths[name] = os.path.join(tmp, f"{name}.{ext}")
        with open(paths[name], "w") as f:
            f.write(text)
    return paths


def start_proxies(procs, paths):
    pids = {}
    pids["sluice"] = procs.start([SLUICE, "run", "--config", paths["sluice"]], PROXY_CPU).pid
    pids["haproxy"] = procs.start(["haproxy", "-db", "-f", paths["haproxy"]], PROXY_CPU).pid
    procs.start(["nginx", "-g", "daemon off;", "-c", paths["nginx"]], PROXY_CPU)
    for port in list(PORTS.values()) + list(HTTP_PORTS.values()) + list(HTTP_DEFER_PORTS.values()):
        wait_port(port)
    # nginx's worker is the process that does the work.
    time.sleep(0.3)
    tmp = os.path.dirname(paths["nginx"])
    master = int(open(os.path.join(tmp, "nginx.pid")).read())
    pids["nginx"] = int(sh(["pgrep", "-P", str(master)]).split()[0])
    return pids


def cpu_ticks(pid):
    if pid is None:
        return 0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench(port, mode, seconds, connections, extra=()):
    cmd = ["taskset", "-c", CLIENT_CPU, SLUICE, "bench", "--target", f"127.0.0.1:{port}",
           "--mode", mode, "--connections", str(connections), "--duration", f"{seconds}s",
           "--threads", "1", "--json"] + list(extra)
    return json.loads(sh(cmd))


SCENARIOS = {
    "L4 close": dict(mode="close", connections=64, metric="connections_per_s", unit="conn/s"),
    "L4 keepalive": dict(mode="keepalive", connections=64, metric="requests_per_s", unit="req/s"),
    "L4 bulk": dict(mode="bulk", connections=8, metric="rx_gbit_per_s", unit="Gbit/s",
                    extra=["--path", "/bulk"]),
    "HTTP close": dict(mode="close", connections=64, metric="requests_per_s", unit="req/s", http=True),
    "HTTP close, deferred": dict(mode="close", connections=64, metric="requests_per_s", unit="req/s",
                                 http=True, ports=HTTP_DEFER_PORTS, targets=["sluice", "haproxy", "nginx"]),
    "HTTP keepalive": dict(mode="keepalive", connections=64, metric="requests_per_s", unit="req/s",
                           http=True),
}
TARGETS = ["sluice", "haproxy", "nginx", "direct"]


def port_of(t, sc=None):
    sc = sc or {}
    if t == "direct":
        return BACKEND_PORT
    return sc.get("ports", HTTP_PORTS if sc.get("http") else PORTS)[t]


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


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def svg_chart(rows, path):
    """Grouped bars: sluice/HAProxy and sluice/nginx per figure; 1.0 marked."""
    w, bar, gap = 760, 14, 18
    h = 60 + len(rows) * (2 * bar + gap)
    scale = 250
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14">sluice / HAProxy (blue) and sluice / nginx (green); higher is better, 1.0 = parity</text>']
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds, seconds, idle, rate_secs = (3, 2, 2000, 3) if args.quick else (5, 8, 9000, 10)
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(tmp, 0o755)  # nginx workers run unprivileged and read the bulk file
    try:
        paths = configs(tmp)
        procs.start(["nginx", "-g", "daemon off;", "-c", paths["backend"]], CLIENT_CPU)
        wait_port(BACKEND_PORT)
        pids = start_proxies(procs, paths)
        results, cpu = run_scenarios(pids, rounds, seconds)
        mem = idle_memory(pids, idle)
        # Fresh proxies: each keeps (and would re-use) what the idle L4 connections freed.
        procs.stop_all(keep=1)  # the backend, started first, stays
        pids = start_proxies(procs, paths)
        mem_http = idle_memory(pids, idle, http=True)
        hap_max = median([r["requests_per_s"] for r in results["L4 keepalive"]["haproxy"]])
        p99 = fixed_rate(pids, hap_max / 2, rate_secs)
        check = cross_check(3, seconds)
    finally:
        procs.stop_all()
    write_doc(args, rounds, seconds, idle, results, cpu, mem, mem_http, hap_max, p99, check)


def write_doc(args, rounds, seconds, idle, results, cpu, mem, mem_http, hap_max, p99, check):
    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout + \
                   subprocess.run(cmd, capture_output=True, text=True).stderr
        except OSError:
            return "?"
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    versions = {
        "sluice": ver([SLUICE, "--version"]).strip(),
        "HAProxy": ver(["haproxy", "-v"]).splitlines()[0],
        "nginx": ver(["nginx", "-v"]).strip(),
    }
    lines = []
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
    svg_chart(chart, os.path.join(ROOT, "docs/bench-ratios.svg"))
    cmd = "scripts/bench.sh" + (" --quick" if args.quick else "")
    doc = f"""## Side by side: sluice, HAProxy, nginx (L4 and HTTP)

Produced by `{cmd}` on {datetime.date.today()}; CPU {cpu_model} ({os.cpu_count()} cores),
kernel {platform.release()}; {versions['sluice']}, {versions['HAProxy']}, {versions['nginx']}.

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
maximum ({hap_max:,.0f} req/s → {hap_max / 2:,.0f} req/s), {rate_secs_of(args)} s each.

{chr(10).join(table)}

![ratios](bench-ratios.svg)

Load generator cross-check, same target (the backend directly), 3 alternating runs of
{seconds} s, medians: {check_text(check, seconds)}.
"""
    path = os.path.join(ROOT, "docs/benchmarks.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    marker = "## Side by side: sluice, HAProxy, nginx (L4"
    if marker in text:
        head, rest = text.split(marker, 1)
        nxt = rest.find("\n## ")
        text = head + doc + (rest[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + doc
    with open(path, "w") as f:
        f.write(text)
    print(doc)


def check_text(check, seconds):
    parts = []
    for mode, (ours, wrk) in check.items():
        flag = "" if mode == "keepalive" else ' -H "Connection: close"'
        parts.append(f"{mode}: `sluice bench --mode {mode} --connections 64 --threads 1` "
                     f"{ours:,.0f} req/s, `wrk -t1 -c64 -d{seconds}s{flag}` {wrk:,.0f} req/s "
                     f"(ratio {ours / wrk:.2f})")
    return "; ".join(parts)


def rate_secs_of(args):
    return 3 if args.quick else 10


if __name__ == "__main__":
    main()
