"""The TLS run of scripts/bench.sh (--proxy-cpu FRACTION --tls): sluice, HAProxy and
nginx terminating TLS with the same ECDSA P-256 certificate, each in a cgroup of its
own at the same CPU quota, in one interleaved run: full handshakes/s (a new connection
per request), resumed handshakes/s (session tickets), HTTPS keep-alive requests/s and
1 MiB bulk Gbit/s, and the memory of idle TLS keep-alive connections."""

import json, os, shutil, socket, ssl, subprocess, time

from bench_cgroup import Group
from bench_common import (NAMES, PORT_BASE, PROXIES, TARGET, BACKEND_PORT, Procs,
                          backend_config, check_free, check_group, environment, fmt, group_prefix,
                          line, measure, median, nginx_worker, quota_args, remove_groups,
                          replace_section, rss_kib, save, scratch_dir, start_backend, wait_port)

HOST = "bench.example"
# The same key exchange for every proxy: OpenSSL 3.0 (HAProxy, nginx) has no
# X25519MLKEM768, which rustls (sluice) would otherwise prefer.
TLS = ["--tls", "--insecure", "--host", HOST, "--groups", "X25519"]
SCENARIOS = {
    "TLS full handshakes": dict(mode="close", connections=32, metric="requests_per_s",
                                unit="hs/s", extra=TLS),
    "TLS resumed handshakes": dict(mode="close", connections=32, metric="requests_per_s",
                                   unit="hs/s", extra=TLS + ["--resume"]),
    "HTTPS keepalive": dict(mode="keepalive", connections=64, metric="requests_per_s",
                            unit="req/s", extra=TLS),
    "HTTPS bulk 1 MiB": dict(mode="bulk", connections=8, metric="rx_gbit_per_s", unit="Gbit/s",
                             extra=TLS + ["--path", "/bulk"]),
}
TARGETS = {"TLS full handshakes": 1.5, "TLS resumed handshakes": 1.5, "HTTPS keepalive": 1.2,
           "HTTPS bulk 1 MiB": 1.2}
PROXY_CPUS = "0"
IDLE = 2000  # idle TLS keep-alive connections for the memory figure
SECTION = "## TLS at a fixed CPU budget: sluice, HAProxy, nginx"


def tls_ports():
    return {p: PORT_BASE + 400 + i for i, p in enumerate(PROXIES)}


def certificate(tmp):
    """An ECDSA P-256 certificate for HOST, key and chain in one PEM (all three read it)."""
    key, crt = os.path.join(tmp, "key.pem"), os.path.join(tmp, "crt.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-days",
                    "30", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"],
                   check=True, capture_output=True)
    pem = os.path.join(tmp, "bench.pem")
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    os.chmod(pem, 0o644)
    return pem


def configs(tmp, pem):
    port = tls_ports()
    sluice = f"""
[server]
workers = 1
max_connections = 9900
[https]
listen = "127.0.0.1:{port['sluice']}"
[tls]
certificates = ["{pem}"]
[[service]]
name = "bench-https"
mode = "http"
vhosts = ["{HOST}"]
backends = ["127.0.0.1:{BACKEND_PORT}"]
"""
    haproxy = f"""
global
  nbthread 1
  maxconn 9900
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 3s
  timeout client 1h
  timeout server 1h
  timeout http-keep-alive 60s
frontend ft
  option http-keep-alive
  bind 127.0.0.1:{port['haproxy']} ssl crt {pem} alpn http/1.1
  default_backend bh
backend bh
  http-reuse always
  option forwardfor
  http-request set-header X-Forwarded-Proto https
  server s1 127.0.0.1:{BACKEND_PORT}
"""
    nginx = f"""
worker_processes 1;
pid {tmp}/nginx-tls.pid;
error_log {tmp}/nginx-tls.err;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  ssl_session_cache shared:SSL:10m;
  upstream backend {{
    server 127.0.0.1:{BACKEND_PORT};
    keepalive 64;
    keepalive_requests 10000000;
  }}
  server {{
    listen 127.0.0.1:{port['nginx']} ssl reuseport backlog=4096;
    ssl_certificate {pem};
    ssl_certificate_key {pem};
    # Debian's nginx offers prime256v1 alone by default: X25519 as the others do.
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""
    return {"sluice": save(tmp, "sluice-tls.toml", sluice),
            "haproxy": save(tmp, "haproxy-tls.cfg", haproxy),
            "nginx": save(tmp, "nginx-tls.conf", nginx)}


def start(procs, paths, groups, tmp):
    """The three proxies in their groups; {proxy: (pid started, pid of the process that
    works)} (nginx works in its worker)."""
    from bench_common import SLUICE
    cmds = {"sluice": [SLUICE, "run", "--config", paths["sluice"]],
            "haproxy": ["haproxy", "-db", "-f", paths["haproxy"]],
            "nginx": ["nginx", "-g", "daemon off;", "-c", paths["nginx"]]}
    started = {p: procs.start(cmd, PROXY_CPUS, groups[p]) for p, cmd in cmds.items()}
    for port in tls_ports().values():
        wait_port(port)
    worker = nginx_worker(os.path.join(tmp, "nginx-tls.pid"))
    return {p: (s.pid, worker if p == "nginx" else s.pid) for p, s in started.items()}


def idle_memory(pids):
    """RSS growth per idle TLS keep-alive connection (one request, then silence)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    out = {}
    for p, port in tls_ports().items():
        before = rss_kib(pids[p][1])
        conns = []
        for _ in range(IDLE):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=HOST)
            s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            got = b""
            while b"\r\n\r\n" not in got:
                got += s.recv(4096)
            conns.append(s)
        time.sleep(1)
        out[p] = (rss_kib(pids[p][1]) - before) * 1024 / IDLE
        for s in conns:
            s.close()
    return out


def main(args):
    frac, period_us = quota_args(args)
    rounds, seconds = (1, 2) if args.smoke else (3, 2) if args.quick else (5, 6)
    print(f"TLS at a fixed CPU budget: {frac} CPU per proxy, {rounds} rounds of {seconds} s",
          flush=True)
    check_free((), list(tls_ports().values()))
    procs, groups = Procs(), {}
    tmp = scratch_dir()
    try:
        backend = start_backend(procs, backend_config(tmp), None)
        pem = certificate(tmp)
        for p in PROXIES:
            groups[p] = g = Group(f"{group_prefix()}-tls-{p}")
            g.set_quota(frac, period_us)
        pids = start(procs, configs(tmp, pem), groups, tmp)
        for p in PROXIES:
            check_group(groups[p], pids[p][0], NAMES[p])
        results = {(n, p): [] for n in SCENARIOS for p in PROXIES}
        for r in range(rounds):
            for name, sc in SCENARIOS.items():
                order = PROXIES if r % 2 == 0 else list(reversed(PROXIES))
                for p in order:
                    m = measure(groups[p], backend, tls_ports()[p], sc, seconds)
                    results[(name, p)].append(m)
                    print(f"round {r + 1}/{rounds} {name:22} {NAMES[p]:8} {fmt(sc, m['value']):>9} "
                          f"{sc['unit']:6} {line(m)}", flush=True)
        memory = idle_memory(pids)
    finally:
        procs.stop_all()
        remove_groups(groups)
        shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(TARGET, "bench-tls.json"), "w") as f:
        json.dump(dict(runs={f"{n} {p}": r for (n, p), r in results.items()}, memory=memory), f,
                  indent=1)
    doc = render(args, frac, period_us, rounds, seconds, results, memory)
    if not (args.smoke or args.quick):
        replace_section(doc, [SECTION])
    print(doc)


def render(args, frac, period_us, rounds, seconds, results, memory):
    cmd = f"scripts/bench.sh --proxy-cpu {frac:g} --tls" + (" --quick" if args.quick else "")
    rows = ["| scenario | sluice | HAProxy | nginx | sluice / HAProxy (target) | sluice / nginx |",
            "|---|---|---|---|---|---|"]
    for name, sc in SCENARIOS.items():
        med = {p: median([m["value"] for m in results[(name, p)]]) for p in PROXIES}
        cells = " | ".join(f"{fmt(sc, med[p])} {sc['unit']}" for p in PROXIES)
        hr = med["sluice"] / med["haproxy"] if med["haproxy"] else float("nan")
        nr = med["sluice"] / med["nginx"] if med["nginx"] else float("nan")
        rows.append(f"| {name} | {cells} | {hr:.2f} (≥ {TARGETS[name]}) | {nr:.2f} |")
    mem = " · ".join(f"{NAMES[p]} {memory[p]:,.0f} B" for p in PROXIES)
    runs = [m for rs in results.values() for m in rs]
    bad = [m for m in runs if m["flag"]]
    bounded = (f"All {len(runs)} runs were bounded by the proxy (at least 90 % of its quota "
               f"used, client and backend each under 90 % of a core)." if not bad else
               f"{len(bad)} of {len(runs)} runs were not bounded by the proxy: "
               f"{'; '.join(', '.join(m['flag']) for m in bad[:5])}.")
    return f"""{SECTION}

Produced by `{cmd}` on {environment()}.

Each proxy with one worker, pinned to CPU 0, in a cgroup of its own limited to {frac:g}
of a CPU (period {period_us} µs), terminating TLS with one ECDSA P-256 certificate in
front of the same nginx backend; the load generator is `sluice bench --tls --insecure
--groups X25519` (every proxy negotiates X25519: OpenSSL 3.0 has no X25519MLKEM768),
neither limited nor pinned. {rounds} rounds of {seconds} s, the proxies' order
alternating; medians. Full handshakes: a new connection (and a full TLS 1.3 handshake)
per request; resumed: the same with session tickets; keep-alive: 64 connections;
bulk: 8 connections each fetching a 1 MiB body.

{chr(10).join(rows)}

{bounded} kTLS is not used: rustls encrypts in user space, and bulk is above
target without it.

Memory per idle TLS keep-alive connection (resident memory growth over {IDLE:,} idle
connections, after one request each): {mem}.
"""
