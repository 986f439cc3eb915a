#!/usr/bin/env python3
"""Resident memory per idle HTTP keep-alive client connection (one request each, then
silent), one worker, the benchmark's configurations and nginx backend
(scripts/bench_common.py).

    python3 scripts/idle_memory.py target/release/sluice uring [N] [--burst]
    python3 scripts/idle_memory.py target/release/sluice epoll [N] [--burst]
    python3 scripts/idle_memory.py haproxy - [N] [--burst]
    python3 scripts/idle_memory.py nginx - [N] [--burst]

A warm-up of 1,250 connections (past the 1,024 provided buffers an io_uring shard cycles
through, whose pages are touched as they come into use) is opened and closed; then N
(default 5,000) clients are opened in batches of 250, 1.2 s apart, so that what each
batch held while busy is given back before the next; RSS growth over the N divided by N.
`--burst`: the N clients open at once, each sending its request as it connects, and all
read their responses after (scripts/bench.py's way, without the warm-up): this measures
the burst's peak, which the allocator keeps.
"""
import os
import resource
import shutil
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (BACKEND_PORT, HTTP_PORTS, PORTS, Procs, backend_config,  # noqa: E402
                          check_free, configs, nginx_worker, rss_kib, save, scratch_dir,
                          sluice_config, wait_port)

args = [a for a in sys.argv[1:] if a != "--burst"]
BURST = "--burst" in sys.argv[1:]
if len(args) < 2:
    raise SystemExit(__doc__)
BIN, IO = args[0], args[1]
N = int(args[2]) if len(args) > 2 else 5000
KIND = BIN if BIN in ("haproxy", "nginx") else "sluice"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def batch(n, keep):
    """Open `n` clients, each sending its request; then read every response."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", HTTP_PORTS[KIND]))
        s.sendall(REQUEST)
        socks.append(s)
    for s in socks:
        got = b""
        while not got.endswith(b"backend\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit(f"{KIND} closed an HTTP keep-alive connection")
            got += chunk
    keep += socks


def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    check_free()
    tmp = scratch_dir()
    procs = Procs()
    try:
        procs.start(["nginx", "-g", "daemon off;", "-c", backend_config(tmp)], None)
        wait_port(BACKEND_PORT)
        paths = configs(tmp)
        if KIND == "sluice":
            path = save(tmp, "sluice-io.toml", sluice_config(PORTS["sluice"], HTTP_PORTS["sluice"], 1, IO))
            pid = procs.start([os.path.abspath(BIN), "run", "--config", path], None).pid
        elif KIND == "haproxy":
            pid = procs.start(["haproxy", "-db", "-f", paths["haproxy"]], None).pid
        else:
            procs.start(["nginx", "-g", "daemon off;", "-c", paths["nginx"]], None)
            wait_port(HTTP_PORTS["nginx"])
            pid = nginx_worker(os.path.join(tmp, "nginx-1w.pid"))
        wait_port(HTTP_PORTS[KIND])
        time.sleep(0.5)
        if not BURST:
            warm = []
            while len(warm) < 1250:
                batch(250, warm)
                time.sleep(1.2)
            for s in warm:
                s.close()
            time.sleep(1.2)
        before = rss_kib(pid)
        socks = []
        while len(socks) < N:
            batch(N if BURST else 250, socks)
            time.sleep(1.2)  # sluice's sweep (once a second) trims what a batch left
        time.sleep(1.3)
        after = rss_kib(pid)
        how = "at once" if BURST else "in batches"
        print(f"{KIND} {IO}: {(after - before) * 1024 / len(socks):.0f} B per idle client "
              f"(RSS {before} -> {after} KiB, {len(socks)} clients opened {how})", flush=True)
        for s in socks:
            s.close()
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


main()
