"""The fixed-CPU-budget run of scripts/bench.sh (--proxy-cpu FRACTION): each proxy in a
cgroup of its own with the same CPU quota, so that the proxy, not the load generator's
core, bounds the figures; every run shows whether it did."""

import json, os, shutil, sys, tempfile

from bench_cgroup import Group, hierarchy
from bench_common import (CLK, NAMES, PROXIES, ROOT, SCENARIOS, Procs, backend_config, bench,
                          check_free, configs, cpu_ticks, environment, fmt, machine_busy_s, median,
                          port_of, replace_section, start_backend, start_proxies)

AT_BUDGET = ["L4 close", "L4 keepalive", "L4 bulk", "HTTP close", "HTTP keepalive"]
TWO_WORKERS = ["HTTP keepalive"]  # the scaling row: also run at two workers, twice the budget
LATENCY = ["L4 keepalive", "HTTP keepalive"]  # at half the slowest proxy's capacity
AT_QUOTA = 0.90  # a proxy under this fraction of its quota was not the bottleneck …
BUSY = 0.90  # … nor was it when the client or the backend used more of a core than this
RATE_HELD = 0.97  # a fixed-rate run that reached less of its rate is flagged
OTHER_LOAD = 0.2  # CPUs of load besides this run's worth naming when a proxy missed its quota
PROXY_CPUS = {1: "0", 2: "0,1"}  # taskset lists by workers; client and backend: any CPU
BUDGET = "## At a fixed CPU budget: sluice, HAProxy, nginx"
NOT_YET = "*not yet measured*"


def pct(x):
    return f"{x * 100:.0f} %"


def plan_of(args):
    """(rounds, seconds per run, latency runs, seconds per latency run)."""
    return (1, 2, 1, 3) if args.smoke else (3, 2, 3, 3) if args.quick else (5, 8, 5, 10)


def minutes(plan):
    rounds, seconds, lat_runs, lat_secs = plan
    runs = rounds * (len(AT_BUDGET) + len(TWO_WORKERS)) * len(PROXIES)
    lat = lat_runs * len(LATENCY) * len(PROXIES)
    return (runs * (seconds + 0.2) + lat * (lat_secs + 0.2) + 10) / 60


def main(args):
    frac, period_us = args.proxy_cpu, round(args.cpu_period_ms * 1000)
    if not 0.01 <= frac <= 1:
        sys.exit("--proxy-cpu: a fraction of one CPU, from 0.01 to 1")
    if not 1000 <= period_us <= 1_000_000:
        sys.exit("--cpu-period-ms: from 1 to 1000")
    if os.geteuid() != 0:
        sys.exit("--proxy-cpu creates cgroups: run as root")
    if (os.cpu_count() or 1) < 2:
        sys.exit("--proxy-cpu needs two CPUs (the two-worker row)")
    plan = plan_of(args)
    rounds, seconds, lat_runs, lat_secs = plan
    prefix = os.environ.get("SLUICE_BENCH_CGROUP_PREFIX") or f"sluice-bench-{os.getpid()}"
    print(f"fixed CPU budget: {frac} CPU per proxy worker, period {period_us} µs; "
          f"{rounds} rounds of {seconds} s; about {minutes(plan):.0f} min", flush=True)
    check_free((1, 2))
    procs, groups = Procs(), {}
    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(tmp, 0o755)  # nginx workers run unprivileged and read the bulk file
    try:
        backend = start_backend(procs, backend_config(tmp), None)
        pids = {}
        for workers in (1, 2):
            for p in PROXIES:
                groups[(p, workers)] = g = Group(f"{prefix}-{p}-{workers}w")
                g.set_quota(frac * workers, period_us)
            own = {p: groups[(p, workers)] for p in PROXIES}
            started = start_proxies(procs, configs(tmp, workers), workers, PROXY_CPUS[workers], own)
            pids.update({(p, workers): pid for p, (pid, _) in started.items()})
        check_groups(groups, pids)
        results = run_rounds(groups, backend, rounds, seconds)
        rates = {name: median_of(results[(name, 1)], slowest=True) / 2 for name in LATENCY}
        latency = run_latency(groups, backend, rates, lat_runs, lat_secs)
        check_groups(groups, pids)
    finally:
        procs.stop_all()
        remove_groups(groups)
        shutil.rmtree(tmp, ignore_errors=True)
    setup = dict(fraction=frac, period_us=period_us, plan=plan, usage=usage_source(),
                 quota=quota_files(frac, period_us))
    with open(os.path.join(ROOT, "target/bench-budget.json"), "w") as f:
        json.dump(dict(setup=setup, rates=rates, runs={f"{n} {w}w": r for (n, w), r in results.items()},
                       latency=latency), f, indent=1)
    doc = render(args, setup, results, rates, latency)
    if not args.smoke:
        replace_section(doc, [BUDGET], first=True)
    print(doc)


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


def check_groups(groups, pids):
    """Each group holds its proxy — every thread of every process it started — and
    nothing else, under the quota set."""
    for key, g in groups.items():
        tree = descendants(pids[key])
        threads = {int(t) for p in tree for t in os.listdir(f"/proc/{p}/task")}
        if set(g.procs()) != set(tree) or not threads <= set(g.threads()):
            raise RuntimeError(f"cgroup {g.dirs[0]} holds {g.procs()}, the proxy is {tree}")
        print(f"cgroup {g.dirs[0]}: {g.quota_text()}; holds {NAMES[key[0]]} ({key[1]} worker"
              f"{'s' if key[1] > 1 else ''}): processes {sorted(tree)}, {len(threads)} threads",
              flush=True)


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
    """One run through the proxy in group `g`: the figure, and what bounded it."""
    m0, b0, s0 = machine_busy_s(), cpu_ticks(backend), g.sample()
    rep = bench(port, sc["mode"], seconds, sc["connections"], list(sc.get("extra", [])) + list(extra),
                cpus=None)
    d, b1, m1 = g.sample() - s0, cpu_ticks(backend), machine_busy_s()
    proxy_s, backend_s = d.usage_us / 1e6, (b1 - b0) / CLK
    # Whatever else kept the machine's CPUs busy (other processes, the host's steal).
    other_s = (m1 - m0) - proxy_s - rep["client_cpu_s"] - backend_s
    return dict(value=rep[sc["metric"]], rate=rep["requests_per_s"],
                proxy=proxy_s / (g.quota_us / g.period_us * seconds),
                throttled=d.throttled, periods=d.periods, client=rep["client_cpu_s"] / seconds,
                backend=backend_s / seconds, other=max(0.0, other_s / seconds),
                latency=rep["latency_us"], errors={k: v for k, v in rep["errors"].items() if v})


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


def run_rounds(groups, backend, rounds, seconds):
    """Interleaved: in each round, each scenario through sluice, HAProxy, nginx; the
    two-worker row in the same rounds."""
    order = [(name, 1) for name in AT_BUDGET] + [(name, 2) for name in TWO_WORKERS]
    results = {key: {p: [] for p in PROXIES} for key in order}
    for r in range(rounds):
        for name, w in order:
            sc = SCENARIOS[name]
            for p in PROXIES:
                m = measure(groups[(p, w)], backend, port_of(p, sc, w), sc, seconds)
                m["flag"] = elsewhere(m)
                results[(name, w)][p].append(m)
                flag = f"  <- NOT THE PROXY'S FIGURE: {', '.join(m['flag'])}" if m["flag"] else ""
                print(f"round {r + 1}/{rounds} {name:14} {p:7} {w}w {fmt(sc, m['value']):>9} "
                      f"{sc['unit']:6} {line(m)}{flag}", flush=True)
    return results


def run_latency(groups, backend, rates, runs, seconds):
    out = {name: {p: [] for p in PROXIES} for name in rates}
    for r in range(runs):
        for name, rate in rates.items():
            sc = SCENARIOS[name]
            for p in PROXIES:
                m = measure(groups[(p, 1)], backend, port_of(p, sc), sc, seconds, ["--rate", f"{rate:.0f}"])
                m["flag"] = [f"{pct(m['rate'] / rate)} of the rate"] if m["rate"] < RATE_HELD * rate else []
                out[name][p].append(m)
                lat = m["latency"]
                print(f"latency {r + 1}/{runs} {name:14} {p:7} at {rate:,.0f}/s: p50 {lat['p50']} "
                      f"p99 {lat['p99']} p99.9 {lat['p99_9']} µs  {line(m)}"
                      f"{'  <- ' + m['flag'][0] if m['flag'] else ''}", flush=True)
    return out


def counted(runs):
    """The runs a figure is the median of: those that measured the proxy, or all of
    them (and False) when none did."""
    good = [m for m in runs if not m["flag"]]
    return (good, True) if good else (runs, False)


def median_of(by_proxy, slowest=False):
    meds = {p: median([m["value"] for m in counted(runs)[0]]) for p, runs in by_proxy.items()}
    return min(meds.values()) if slowest else meds


def figure(sc, runs):
    """A table cell: the median of the runs at quota, and how many of the runs those were."""
    used, ok = counted(runs)
    text = fmt(sc, median([m["value"] for m in used]))
    if not ok:
        return f"*{text}, no run at quota*"
    return text if len(used) == len(runs) else f"{text} ({len(used)} of {len(runs)} runs)"


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


def render(args, setup, results=None, rates=None, latency=None):
    """The page's section; without results, its frame with every figure marked as not
    yet measured."""
    frac, period_us = setup["fraction"], setup["period_us"]
    rounds, seconds, lat_runs, lat_secs = setup["plan"]
    cmd = f"scripts/bench.sh --proxy-cpu {frac:g}"
    cmd += f" --cpu-period-ms {period_us / 1000:g}" if period_us != 100_000 else ""
    cmd += " --quick" if args.quick else " --smoke" if args.smoke else ""
    if results is None:
        head = (f"**Not yet measured in a full run.** To produce it, on a quiet machine: `{cmd}` "
                f"(about {minutes(setup['plan']):.0f} minutes).")
    else:
        head = f"Produced by `{cmd}` on {environment()}."
    two = f"{2 * frac:g}"
    return f"""{BUDGET} (the headline)

{head}

Each proxy runs with one worker — sluice `workers = 1`, HAProxy `nbthread 1`, nginx
`worker_processes 1` — pinned to CPU 0, in a cgroup of its own limited to {frac:g} of a CPU
({setup['quota']}:
{round(frac * period_us)} µs of CPU time in every {period_us} µs).
The proxy enters its group before it starts, so every thread and process it has (nginx's
master and worker) is in it. The nginx backend (one worker) and the load generator
(`sluice bench --threads 1`) are neither limited nor pinned. Held to the same budget,
each proxy should be the bottleneck — every run checks that it was (below) — so the
figures measure what each does with that CPU; without a limit ("the ceiling", below)
the load generator's core decides. Same proxy
configurations and scenarios as the ceiling (in "HTTP close" HAProxy and nginx do not
defer accepting). {rounds} interleaved rounds of {seconds} s (in each round, each
scenario through sluice, HAProxy, nginx; the two-worker row too); medians of the runs
in which the proxy was the bottleneck (below). "sluice / best other": sluice's figure
over the better of HAProxy's and nginx's (in italics when one of them comes from runs
none of which was at quota).

{throughput_table(frac, two, results)}

**Two workers at twice the budget**: sluice `workers = 2` (two shards, pinned to CPUs 0
and 1), HAProxy `nbthread 2`, nginx `worker_processes 2`, on CPUs 0 and 1 and limited to
{two} CPU together — how each scales across cores:

{scaling_table(frac, two, results)}

**Is the proxy the bottleneck?** Per run: the group's CPU time ({setup['usage']})
over its quota for the run's duration; the periods in which it was throttled (`cpu.stat`
`nr_throttled` of `nr_periods`, summed over the runs); the load generator's CPU time (its
rusage) and the backend's (`/proc/<pid>/stat`), each over one core; and the other load:
whatever else kept the machine's CPUs busy meanwhile (`/proc/stat`, the host's steal
included), in CPUs — near 0 on a quiet machine. Medians of the runs. A run is flagged —
its figure is not the proxy's — when the proxy used under {pct(AT_QUOTA)} of its quota, or
the client or the backend over {pct(BUSY)} of a core; the figures above are the medians of
the runs that were not flagged (with their count when some were).

{bottleneck_table(results)}

**Latency at a fixed rate**, at the budget (one worker, {frac:g} CPU): keep-alive requests
at half the slowest proxy's figure in the table above, {lat_runs} runs of {lat_secs} s
per proxy, interleaved. Median of the runs, and their range (min–max), in µs; latency
counts from when a request was due, so a late send is not hidden. A proxy that used its
quota early in a period waits for the next one: the tail shows it, as it would in a
container with the same CPU limit. A run that reached under {pct(RATE_HELD)} of its rate
is flagged.

{latency_table(rates, latency)}
"""


def ratio_best(meds, lower_better=False):
    others = [meds["haproxy"], meds["nginx"]]
    best = min(others) if lower_better else max(others)
    return f"{meds['sluice'] / best:.2f}" if best else "–"


def throughput_table(frac, two, results):
    rows = ["| scenario | sluice | HAProxy | nginx | sluice / best other |", "|---|---|---|---|---|"]
    keys = [(n, 1) for n in AT_BUDGET] + [(n, 2) for n in TWO_WORKERS]
    for name, w in keys:
        sc = SCENARIOS[name]
        label = f"{name} ({sc['unit']})" + (f", two workers at {two} CPU" if w == 2 else "")
        if results is None:
            rows.append(f"| {label} | {NOT_YET} | {NOT_YET} | {NOT_YET} | {NOT_YET} |")
            continue
        by_proxy = results[(name, w)]
        ratio = ratio_best(median_of(by_proxy))
        if not all(counted(runs)[1] for runs in by_proxy.values()):
            ratio = f"*{ratio}*"
        rows.append(f"| {label} | " + " | ".join(figure(sc, by_proxy[p]) for p in PROXIES)
                    + f" | {ratio} |")
    return "\n".join(rows)


def scaling_table(frac, two, results):
    rows = []
    for name in TWO_WORKERS:
        sc = SCENARIOS[name]
        rows += [f"| {name} ({sc['unit']}) | one worker, {frac:g} CPU | two workers, {two} CPU "
                 f"| two / one |", "|---|---|---|---|"]
        for p in PROXIES:
            if results is None:
                rows.append(f"| {NAMES[p]} | {NOT_YET} | {NOT_YET} | {NOT_YET} |")
                continue
            one, both = results[(name, 1)][p], results[(name, 2)][p]
            ratio = median_of({p: both})[p] / median_of({p: one})[p]
            rows.append(f"| {NAMES[p]} | {figure(sc, one)} | {figure(sc, both)} | {ratio:.2f} |")
    return "\n".join(rows)


def flagged(runs):
    bad = [m for m in runs if m["flag"]]
    text = f"{len(bad)} of {len(runs)}"
    return text + (f" ({bad[0]['flag'][0]})" if bad else "")


def bottleneck_table(results):
    rows = ["| scenario | proxy | proxy CPU / quota | throttled periods | client CPU | backend CPU "
            "| other load (CPU) | runs flagged |", "|---|---|---|---|---|---|---|---|"]
    if results is None:
        return "\n".join(rows + ["| every scenario above | each | *not yet measured in a full run* | | | | | |"])
    for name, w in results:
        label = name + (", two workers" if w == 2 else "")
        for p in PROXIES:
            runs = results[(name, w)][p]
            med = {k: median([m[k] for m in runs]) for k in ("proxy", "client", "backend", "other")}
            thr = f"{sum(m['throttled'] for m in runs)} of {sum(m['periods'] for m in runs)}"
            rows.append(f"| {label} | {NAMES[p]} | {pct(med['proxy'])} | {thr} | {pct(med['client'])} "
                        f"| {pct(med['backend'])} | {med['other']:.2f} | {flagged(runs)} |")
    return "\n".join(rows)


def latency_table(rates, latency):
    rows = ["| at a fixed rate | proxy | p50 (µs) | p99 (µs) | p99.9 (µs) | runs flagged |",
            "|---|---|---|---|---|---|"]
    pcts = ["p50", "p99", "p99_9"]
    if latency is None:
        return "\n".join(rows + [f"| {' and '.join(LATENCY)} | each | *not yet measured in a full run* | | | |"])
    for name in LATENCY:
        label = f"{name}, {rates[name]:,.0f} req/s"
        meds = {}
        for p in PROXIES:
            runs = latency[name][p]
            cells = []
            for q in pcts:
                xs = [m["latency"][q] for m in runs]
                meds.setdefault(q, {})[p] = median(xs)
                cells.append(f"{median(xs):,.0f} ({min(xs):,}–{max(xs):,})")
            rows.append(f"| {label} | {NAMES[p]} | " + " | ".join(cells) + f" | {flagged(runs)} |")
        rows.append(f"| {label} | sluice / best other (lower is better) | "
                    + " | ".join(ratio_best(meds[q], lower_better=True) for q in pcts) + " | |")
    return "\n".join(rows)
