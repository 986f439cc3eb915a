"""What the modes of scripts/bench.sh share: processes, configurations, the load
generator, the scenarios and the page's environment line; for the runs at a fixed CPU
budget (--proxy-cpu, with or without --compare), one measured run in a cgroup and
whether the proxy was its bottleneck."""

import datetime, json, os, platform, resource, signal, socket, statistics
import subprocess, sys, tempfile, time

from bench_cgroup import hierarchy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where bench.sh's `cargo build` put the binary (CARGO_TARGET_DIR moves it).
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target")
SLUICE = os.path.join(TARGET, "release/sluice")
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


def check_free(workers=(1,), extra=()):
    """Stop before starting anything when one of the run's ports is taken (the backend's,
    the proxies' with each number of `workers`, and `extra`): the load would otherwise
    go to whatever listens there."""
    taken = []
    for port in [BACKEND_PORT] + [p for w in workers for d in ports(w) for p in d.values()] + list(extra):
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


def wait_port(port, timeout=10, proc=None):
    """Wait until something listens on `port`; `proc`: the process that should, whose
    exit ends the wait at once."""
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening on {port}")
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

    def start(self, cmd, cpus, group=None, log=None):
        """`cpus`: a taskset list, or None for any CPU; `group`: a cgroup the process
        enters before it executes the command; `log`: a file for its stderr."""
        pin = ["taskset", "-c", cpus] if cpus is not None else []
        with open(log or os.devnull, "w") as err:
            p = subprocess.Popen(pin + cmd, stdout=subprocess.DEVNULL, stderr=err,
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


def scratch_dir():
    """The run's temporary folder (configurations, pid files, the bulk file)."""
    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(tmp, 0o755)  # nginx workers run unprivileged and read the bulk file
    return tmp


def write_bulk(tmp):
    bulk = os.path.join(tmp, "bulk.bin")
    with open(bulk, "wb") as f:
        f.write(os.urandom(BULK_BYTES))
    os.chmod(bulk, 0o644)
    return bulk


def backend_config(tmp):
    bulk = write_bulk(tmp)
    return save(tmp, "backend.conf", f"""
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
    sluice = sluice_config(l4["sluice"], http["sluice"], workers)
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
    return {"sluice": save(tmp, f"sluice-{w}.toml", sluice),
            "haproxy": save(tmp, f"haproxy-{w}.cfg", haproxy),
            "nginx": save(tmp, f"nginx-{w}.conf", nginx)}


def sluice_config(l4_port, http_port, workers=1, io=None):
    """sluice with an L4 and an HTTP service to the backend; `io`: its `[server] io`
    ("uring", "epoll"; None leaves the default, auto)."""
    io_line = f'io = "{io}"\n' if io else ""
    return f"""
[server]
workers = {workers}
{io_line}max_connections = 9900
[[service]]
name = "bench"
listen = "127.0.0.1:{l4_port}"
backends = ["127.0.0.1:{BACKEND_PORT}"]
[[service]]
name = "bench-http"
mode = "http"
listen = "127.0.0.1:{http_port}"
backends = ["127.0.0.1:{BACKEND_PORT}"]
"""


def save(tmp, name, text):
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


def start_sluice(procs, binary, path, listen, cpus, group, log):
    """One sluice, `binary run --config path`, in `group`, its stderr to `log`; returns
    its pid once it listens on every port of `listen` (or its last words if it exits)."""
    p = procs.start([binary, "run", "--config", path], cpus, group, log)
    try:
        for port in listen:
            wait_port(port, proc=p)
    except RuntimeError as e:
        with open(log) as f:
            said = f.read().strip().splitlines()[-5:]
        raise RuntimeError("\n".join([f"{binary} run --config {path}: {e}"] + said)) from None
    return p.pid


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


def environment(proxies=True):
    """The machine and versions (HAProxy's and nginx's with `proxies`), for the page."""
    def ver(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return r.stdout + r.stderr
        except OSError:
            return "?"
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                      if l.startswith("model name")), "?")
    others = f", {ver(['haproxy', '-v']).splitlines()[0]}, {ver(['nginx', '-v']).strip()}" if proxies else ""
    return (f"{datetime.date.today()}; CPU {cpu_model} ({os.cpu_count()} cores),\n"
            f"kernel {platform.release()}; {ver([SLUICE, '--version']).strip()}{others}")


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


# The runs at a fixed CPU budget (--proxy-cpu): each proxy in a cgroup of its own.

AT_QUOTA = 0.90  # a proxy under this fraction of its quota was not the bottleneck …
BUSY = 0.90  # … nor was it when the client or the backend used more of a core than this
OTHER_LOAD = 0.2  # CPUs of load besides this run's worth naming when a proxy missed its quota


def pct(x):
    return f"{x * 100:.0f} %"


def quota_args(args):
    """(fraction of a CPU, period in µs) of --proxy-cpu and --cpu-period-ms, checked."""
    frac, period_us = args.proxy_cpu, round(args.cpu_period_ms * 1000)
    if not 0.01 <= frac <= 1:
        sys.exit("--proxy-cpu: a fraction of one CPU, from 0.01 to 1")
    if not 1000 <= period_us <= 1_000_000:
        sys.exit("--cpu-period-ms: from 1 to 1000")
    if os.geteuid() != 0:
        sys.exit("--proxy-cpu creates cgroups: run as root")
    return frac, period_us


def group_prefix():
    """The start of this run's cgroup names: bench.sh's, whose trap removes them."""
    return os.environ.get("SLUICE_BENCH_CGROUP_PREFIX") or f"sluice-bench-{os.getpid()}"


def descendants(pid):
    """`pid` and every process below it."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def check_group(g, pid, what):
    """Group `g` holds the proxy started as `pid` — every thread of every process it
    started — and nothing else, under the quota set; `what` names it in the log."""
    tree = descendants(pid)
    threads = {int(t) for p in tree for t in os.listdir(f"/proc/{p}/task")}
    if set(g.procs()) != set(tree) or not threads <= set(g.threads()):
        raise RuntimeError(f"cgroup {g.dirs[0]} holds {g.procs()}, the proxy is {tree}")
    print(f"cgroup {g.dirs[0]}: {g.quota_text()}; holds {what}: processes {sorted(tree)}, "
          f"{len(threads)} threads", flush=True)


def remove_groups(groups):
    for g in groups.values():
        try:
            g.remove()
        except OSError as e:
            print(f"could not remove cgroup {g.dirs[0]}: {e}", file=sys.stderr)
    left = [d for g in groups.values() for d in g.dirs if os.path.exists(d)]
    print(f"cgroups removed: {len(groups)} groups ({sum(len(g.dirs) for g in groups.values())} "
          f"directories), {len(left)} left" + (f": {left}" if left else ""), flush=True)


def measure(g, backend, port, sc, seconds, extra=()):
    """One run through the proxy in group `g`: the figure, and what bounded it (`flag`:
    why the figure is not the proxy's, empty when it is)."""
    m0, b0, s0 = machine_busy_s(), cpu_ticks(backend), g.sample()
    rep = bench(port, sc["mode"], seconds, sc["connections"], list(sc.get("extra", [])) + list(extra),
                cpus=None)
    d, b1, m1 = g.sample() - s0, cpu_ticks(backend), machine_busy_s()
    proxy_s, backend_s = d.usage_us / 1e6, (b1 - b0) / CLK
    # Whatever else kept the machine's CPUs busy (other processes, the host's steal).
    other_s = (m1 - m0) - proxy_s - rep["client_cpu_s"] - backend_s
    m = dict(value=rep[sc["metric"]], rate=rep["requests_per_s"],
             proxy=proxy_s / (g.quota_us / g.period_us * seconds),
             throttled=d.throttled, periods=d.periods, client=rep["client_cpu_s"] / seconds,
             backend=backend_s / seconds, other=max(0.0, other_s / seconds),
             latency=rep["latency_us"], errors={k: v for k, v in rep["errors"].items() if v})
    m["flag"] = elsewhere(m)
    return m


def elsewhere(m):
    """Why a throughput run does not measure the proxy (empty: it does)."""
    why = []
    if m["proxy"] < AT_QUOTA:
        busy = f", {m['other']:.1f} CPU of other load" if m["other"] > OTHER_LOAD else ""
        why.append(f"proxy at {pct(m['proxy'])} of its quota{busy}")
    if m["client"] > BUSY:
        why.append(f"client at {pct(m['client'])} of a core")
    if m["backend"] > BUSY:
        why.append(f"backend at {pct(m['backend'])} of a core")
    return why


def line(m):
    return (f"proxy {pct(m['proxy']):>5} of quota, throttled {m['throttled']:3}/{m['periods']:<3}  "
            f"client {pct(m['client']):>5}  backend {pct(m['backend']):>5}  other {m['other']:.1f} CPU  "
            f"errors {m['errors'] or 0}")


def counted(runs):
    """The runs a figure is the median of: those that measured the proxy, or all of
    them (and False) when none did."""
    good = [m for m in runs if not m["flag"]]
    return (good, True) if good else (runs, False)


def figure(sc, runs):
    """A table cell: the median of the runs at quota, and how many of the runs those were."""
    used, ok = counted(runs)
    text = fmt(sc, median([m["value"] for m in used]))
    if not ok:
        return f"*{text}, no run at quota*"
    return text if len(used) == len(runs) else f"{text} ({len(used)} of {len(runs)} runs)"


def flagged(runs):
    bad = [m for m in runs if m["flag"]]
    text = f"{len(bad)} of {len(runs)}"
    return text + (f" ({bad[0]['flag'][0]})" if bad else "")


BOTTLENECK_HEAD = ("proxy CPU / quota | throttled periods | client CPU | backend CPU "
                   "| other load (CPU) | runs flagged |")


def bottleneck_cells(runs):
    """The cells under BOTTLENECK_HEAD for one proxy's runs: medians, throttling summed."""
    med = {k: median([m[k] for m in runs]) for k in ("proxy", "client", "backend", "other")}
    thr = f"{sum(m['throttled'] for m in runs)} of {sum(m['periods'] for m in runs)}"
    return (f"{pct(med['proxy'])} | {thr} | {pct(med['client'])} | {pct(med['backend'])} "
            f"| {med['other']:.2f} | {flagged(runs)} |")


def usage_source():
    version, cpu, acct = hierarchy()
    if version == 2:
        return "`cpu.stat` `usage_usec`"
    if acct == cpu:
        return "`cpuacct.usage`"
    return "`cpuacct.usage` of a group of the same name in the cpuacct hierarchy"


def quota_files(frac, period_us):
    version = hierarchy()[0]
    q = round(frac * period_us)
    if version == 2:
        return f"cgroup v2 `cpu.max` \"{q} {period_us}\""
    return f"cgroup v1 `cpu.cfs_quota_us` {q} / `cpu.cfs_period_us` {period_us}"
