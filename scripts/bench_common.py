"""What both modes of scripts/bench.sh share: processes, configurations, the load
generator, the scenarios and the page's environment line."""

import datetime, json, os, platform, resource, signal, socket, statistics
import subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.path.join(ROOT, "target/release/sluice")
DOC = os.path.join(ROOT, "docs/benchmarks.md")
# Every port is an offset from one base, so that a run can move out of the way of other
# servers on the machine (SLUICE_BENCH_PORT_BASE; by default the backend is on 18081).
PORT_BASE = int(os.environ.get("SLUICE_BENCH_PORT_BASE", "18000"))
BACKEND_PORT, BULK_BYTES = PORT_BASE + 81, 1 << 20
PROXY_CPU, CLIENT_CPU = "0", "1"
CLK = os.sysconf("SC_CLK_TCK")
PROXIES = ["sluice", "haproxy", "nginx"]
NAMES = {"sluice": "sluice", "haproxy": "HAProxy", "nginx": "nginx", "direct": "direct"}


def ports(workers=1):
    """L4, HTTP and HTTP-deferred ports of the proxies with `workers` workers; HAProxy
    and nginx listen with `defer-accept` / `deferred` on the last, as sluice's HTTP
    listeners always do (sluice: its HTTP port)."""
    base = PORT_BASE + 100 * workers
    l4 = {p: base + i for i, p in enumerate(PROXIES)}
    http = {p: base + 10 + i for i, p in enumerate(PROXIES)}
    defer = {"sluice": http["sluice"], "haproxy": base + 13, "nginx": base + 14}
    return l4, http, defer


PORTS, HTTP_PORTS, HTTP_DEFER_PORTS = ports(1)

SCENARIOS = {
    "L4 close": dict(mode="close", connections=64, metric="connections_per_s", unit="conn/s"),
    "L4 keepalive": dict(mode="keepalive", connections=64, metric="requests_per_s", unit="req/s"),
    "L4 bulk": dict(mode="bulk", connections=8, metric="rx_gbit_per_s", unit="Gbit/s",
                    extra=["--path", "/bulk"]),
    "HTTP close": dict(mode="close", connections=64, metric="requests_per_s", unit="req/s", http=True),
    "HTTP close, deferred": dict(mode="close", connections=64, metric="requests_per_s", unit="req/s",
                                 http=True, defer=True, targets=["sluice", "haproxy", "nginx"]),
    "HTTP keepalive": dict(mode="keepalive", connections=64, metric="requests_per_s", unit="req/s",
                           http=True),
}


def port_of(t, sc=None, workers=1):
    sc = sc or {}
    if t == "direct":
        return BACKEND_PORT
    l4, http, defer = ports(workers)
    return (defer if sc.get("defer") else http if sc.get("http") else l4)[t]


def check_free(workers=(1,)):
    """Stop before starting anything when one of the run's ports is taken: the load
    would otherwise go to whatever listens there."""
    taken = []
    for port in [BACKEND_PORT] + [p for w in workers for d in ports(w) for p in d.values()]:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            taken.append(port)
        finally:
            s.close()
    if taken:
        raise SystemExit(f"ports in use: {sorted(set(taken))}; choose other ports with "
                         f"SLUICE_BENCH_PORT_BASE (now {PORT_BASE})")


def fmt(sc, v):
    return f"{v:.2f}" if sc["unit"] == "Gbit/s" else f"{v:,.0f}"


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


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Procs:
    """Processes this run started; all stopped at exit."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, cpus, group=None):
        """`cpus`: a taskset list, or None for any CPU; `group`: a cgroup the process
        enters before it executes the command."""
        pin = ["taskset", "-c", cpus] if cpus is not None else []
        p = subprocess.Popen(pin + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, preexec_fn=group.join if group else None)
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
                p.wait()


def write_bulk(tmp):
    bulk = os.path.join(tmp, "bulk.bin")
    with open(bulk, "wb") as f:
        f.write(os.urandom(BULK_BYTES))
    os.chmod(bulk, 0o644)
    return bulk


def backend_config(tmp):
    bulk = write_bulk(tmp)
    return _save(tmp, "backend.conf", f"""
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
""")


def configs(tmp, workers=1):
    """The three proxies with `workers` workers (threads), on `ports(workers)`."""
    l4, http, defer = ports(workers)
    w = f"{workers}w"
    sluice = f"""
[server]
workers = {workers}
max_connections = 9900
[[service]]
name = "bench"
listen = "127.0.0.1:{l4['sluice']}"
backends = ["127.0.0.1:{BACKEND_PORT}"]
[[service]]
name = "bench-http"
mode = "http"
listen = "127.0.0.1:{http['sluice']}"
backends = ["127.0.0.1:{BACKEND_PORT}"]
"""
    haproxy = f"""
global
  nbthread {workers}
  maxconn 9900
defaults
  mode tcp
  timeout connect 3s
  timeout client 1h
  timeout server 1h
frontend f
  bind 127.0.0.1:{l4['haproxy']}
  default_backend b
backend b
  server s1 127.0.0.1:{BACKEND_PORT}
frontend fh
  mode http
  option http-keep-alive
  timeout http-keep-alive 60s
  bind 127.0.0.1:{http['haproxy']}
  default_backend bh
frontend fhd
  mode http
  option http-keep-alive
  timeout http-keep-alive 60s
  bind 127.0.0.1:{defer['haproxy']} defer-accept
  default_backend bh
backend bh
  mode http
  http-reuse always
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto http
  server s1 127.0.0.1:{BACKEND_PORT}
"""
    nginx = f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes {workers};
pid {tmp}/nginx-{w}.pid;
error_log {tmp}/nginx-{w}.err;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
stream {{
  server {{
    listen 127.0.0.1:{l4['nginx']} reuseport backlog=4096;
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
    listen 127.0.0.1:{http['nginx']} reuseport backlog=4096;
    listen 127.0.0.1:{defer['nginx']} reuseport backlog=4096 deferred;
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
    return {"sluice": _save(tmp, f"sluice-{w}.toml", sluice),
            "haproxy": _save(tmp, f"haproxy-{w}.cfg", haproxy),
            "nginx": _save(tmp, f"nginx-{w}.conf", nginx)}


def _save(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def start_backend(procs, path, cpus):
    """The nginx backend; returns its worker's pid."""
    procs.start(["nginx", "-g", "daemon off;", "-c", path], cpus)
    wait_port(BACKEND_PORT)
    return nginx_worker(os.path.join(os.path.dirname(path), "backend.pid"))


def nginx_worker(pid_file):
    """nginx's (first) worker: the process that does the work."""
    end = time.time() + 5
    while True:
        try:
            master = int(open(pid_file).read())
            return int(sh(["pgrep", "-P", str(master)]).split()[0])
        except (OSError, ValueError, subprocess.CalledProcessError):
            if time.time() > end:
                raise
            time.sleep(0.1)


def start_proxies(procs, paths, workers=1, cpus=PROXY_CPU, groups=None):
    """Start the three proxies; returns {proxy: (process started, working pid)} (nginx
    works in its worker, the others in the process started). `groups`: {proxy: cgroup}."""
    groups = groups or {}
    started = {
        "sluice": procs.start([SLUICE, "run", "--config", paths["sluice"]], cpus, groups.get("sluice")),
        "haproxy": procs.start(["haproxy", "-db", "-f", paths["haproxy"]], cpus, groups.get("haproxy")),
        "nginx": procs.start(["nginx", "-g", "daemon off;", "-c", paths["nginx"]], cpus, groups.get("nginx")),
    }
    for port in (p for d in ports(workers) for p in d.values()):
        wait_port(port)
    tmp = os.path.dirname(paths["nginx"])
    worker = nginx_worker(os.path.join(tmp, f"nginx-{workers}w.pid"))
    return {t: (p.pid, worker if t == "nginx" else p.pid) for t, p in started.items()}


def cpu_ticks(pid):
    if pid is None:
        return 0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def machine_busy_s():
    """CPU time the whole machine has spent busy (steal included: a virtual CPU's time
    taken by the host) since boot, in seconds over all CPUs."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench(port, mode, seconds, connections, extra=(), cpus=CLIENT_CPU):
    """One `sluice bench` run; the report gains `client_cpu_s`, the generator's own CPU
    time (user + system, from its rusage)."""
    pin = ["taskset", "-c", cpus] if cpus is not None else []
    cmd = pin + [SLUICE, "bench", "--target", f"127.0.0.1:{port}", "--mode", mode,
                 "--connections", str(connections), "--duration", f"{seconds}s",
                 "--threads", "1", "--json"] + list(extra)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rep = json.loads(sh(cmd))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rep["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rep


def environment():
    """The machine and versions, for the page."""
    def ver(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return r.stdout + r.stderr
        except OSError:
            return "?"
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                      if l.startswith("model name")), "?")
    return (f"{datetime.date.today()}; CPU {cpu_model} ({os.cpu_count()} cores),\n"
            f"kernel {platform.release()}; {ver([SLUICE, '--version']).strip()}, "
            f"{ver(['haproxy', '-v']).splitlines()[0]}, {ver(['nginx', '-v']).strip()}")


def replace_section(doc, markers, first=False):
    """Put `doc` (a "## " section) into docs/benchmarks.md in place of the section whose
    heading starts with one of `markers`; a new one goes before the first section when
    `first`, else at the end."""
    text = open(DOC).read() if os.path.exists(DOC) else "# Benchmarks\n"
    doc = doc.rstrip("\n") + "\n"
    for marker in markers:
        at = text.find(marker)
        if at >= 0:
            nxt = text.find("\n## ", at + 1)
            text = text[:at] + doc + ("\n" + text[nxt + 1:] if nxt >= 0 else "")
            break
    else:
        at = text.find("\n## ")
        if first and at >= 0:
            text = text[:at + 1] + doc + "\n" + text[at + 1:]
        else:
            text = text.rstrip() + "\n\n" + doc
    with open(DOC, "w") as f:
        f.write(text)
