#!/usr/bin/env python3
"""Resident memory per idle HTTP keep-alive client connection (one request each, then
silent), after the once-a-second sweep has trimmed the sessions.

    python3 scripts/idle_memory.py target/release/sluice uring [N]
    python3 scripts/idle_memory.py target/release/sluice epoll [N]
    python3 scripts/idle_memory.py haproxy - [N]      # HAProxy, the bench's configuration

An nginx backend on 127.0.0.1:26081, the proxy's HTTP port 26010 (one worker). A
warm-up of 1,250 connections (past the 1,024 provided buffers an io_uring shard cycles
through, whose pages are touched as they come into use) is opened and closed; then N
(default 5,000) clients are opened in batches of 250, 1.2 s apart, so that what each
batch's sessions held while busy is given back before the next; RSS growth over the N
divided by N. Opening all at once (scripts/bench.py's way) measures the burst's peak
instead, which the allocator keeps.
"""
import os, resource, signal, socket, subprocess, sys, tempfile, time

BIN, IO = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
BACKEND, HTTP = 26081, 26010
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
tmp = tempfile.mkdtemp(prefix="idlemem-")
os.chmod(tmp, 0o755)
open(f"{tmp}/backend.conf", "w").write(f"""
worker_processes 1; pid {tmp}/backend.pid; error_log {tmp}/backend.err;
worker_rlimit_nofile 20000; events {{ worker_connections 19000; }}
http {{ access_log off; keepalive_requests 10000000;
  server {{ listen 127.0.0.1:{BACKEND} reuseport backlog=4096;
    location / {{ return 200 "hello from the backend\\n"; }} }} }}
""")
open(f"{tmp}/sluice.toml", "w").write(f"""
[server]
workers = 1
io = "{IO}"
max_connections = 9900
[admin]
listen = "127.0.0.1:26090"
[[service]]
name = "bench-http"
mode = "http"
listen = "127.0.0.1:{HTTP}"
backends = ["127.0.0.1:{BACKEND}"]
""")
def wait_port(p):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", p)).close(); return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {p} never opened")
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
ng = subprocess.Popen(["nginx", "-g", "daemon off;", "-c", f"{tmp}/backend.conf"], start_new_session=True)
open(f"{tmp}/haproxy.cfg", "w").write(f"""
global
  nbthread 1
  maxconn 9900
defaults
  mode http
  timeout connect 3s
  timeout client 1h
  timeout server 1h
frontend fh
  option http-keep-alive
  timeout http-keep-alive 60s
  bind 127.0.0.1:{HTTP}
  default_backend bh
backend bh
  http-reuse always
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto http
  server s1 127.0.0.1:{BACKEND}
""")
cmd = ["haproxy", "-db", "-f", f"{tmp}/haproxy.cfg"] if BIN == "haproxy" else [BIN, "run", "--config", f"{tmp}/sluice.toml"]
sl = subprocess.Popen(cmd, start_new_session=True,
                      stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/sluice.err", "w"))
try:
    wait_port(BACKEND); wait_port(HTTP); time.sleep(0.5)
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    def batch(n, keep):
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", HTTP)); s.sendall(req); socks.append(s)
        for s in socks:
            got = b""
            while not got.endswith(b"backend\n"):
                c = s.recv(4096)
                if not c: raise SystemExit("closed")
                got += c
        keep += socks
        time.sleep(1.2)  # the sweep gives the sets back to the pool
    warm = []
    while len(warm) < 1250:  # past the 1024 provided buffers io_uring cycles through
        batch(250, warm)
    for s in warm: s.close()
    time.sleep(1.2)
    before = rss(sl.pid)
    socks = []
    while len(socks) < N:
        batch(250, socks)
    time.sleep(1.3)
    after = rss(sl.pid)
    print(f"{IO}: {(after - before) * 1024 / len(socks):.0f} B/idle conn (rss {before} -> {after} KiB, {len(socks)} conns)", flush=True)
    for s in socks: s.close()
finally:
    os.killpg(sl.pid, signal.SIGTERM); os.killpg(ng.pid, signal.SIGTERM)
    sl.wait(); ng.wait()
