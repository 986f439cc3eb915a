"""The fixed-CPU-budget run of scripts/bench.sh (--proxy-cpu FRACTION): each proxy in a
cgroup of its own with the same CPU quota, so that the proxy, not the load generator's
core, bounds the figures; every run shows whether it did."""

import json, os, shutil, sys

from bench_cgroup import Group
from bench_common import (AT_QUOTA, BOTTLENECK_HEAD, BUSY, NAMES, PROXIES, SCENARIOS,
                          TARGET, Procs, backend_config, bottleneck_cells, check_free,
                          check_group, configs, counted, environment, figure, flagged, fmt,
                          group_prefix, line, measure, median, pct, port_of, quota_args,
                          quota_files, remove_groups, replace_section, scratch_dir,
                          start_backend, start_proxies, usage_source)

AT_BUDGET = ["L4 close", "L4 keepalive", "L4 bulk", "HTTP close", "HTTP keepalive"]
TWO_WORKERS = ["HTTP keepalive"]  # the scaling row: also run at two workers, twice the budget
LATENCY = ["L4 keepalive", "HTTP keepalive"]  # at half the slowest proxy's capacity
RATE_HELD = 0.97  # a fixed-rate run that reached less of its rate is flagged
PROXY_CPUS = {1: "0", 2: "0,1"}  # taskset lists by workers; client and backend: any CPU
BUDGET = "## At a fixed CPU budget: sluice, HAProxy, nginx"
NOT_YET = "*not yet measured*"


def plan_of(args):
    """(rounds, seconds per run, latency runs, seconds per latency run)."""
    return (1, 2, 1, 3) if args.smoke else (3, 2, 3, 3) if args.quick else (5, 8, 5, 10)


def minutes(plan):
    rounds, seconds, lat_runs, lat_secs = plan
    runs = rounds * (len(AT_BUDGET) + len(TWO_WORKERS)) * len(PROXIES)
    lat = lat_runs * len(LATENCY) * len(PROXIES)
    return (runs * (seconds + 0.2) + lat * (lat_secs + 0.2) + 10) / 60


def main(args):
    frac, period_us = quota_args(args)
    if (os.cpu_count() or 1) < 2:
        sys.exit("--proxy-cpu needs two CPUs (the two-worker row)")
    plan = plan_of(args)
    rounds, seconds, lat_runs, lat_secs = plan
    prefix = group_prefix()
    print(f"fixed CPU budget: {frac} CPU per proxy worker, period {period_us} µs; "
          f"{rounds} rounds of {seconds} s; about {minutes(plan):.0f} min", flush=True)
    check_free((1, 2))
    procs, groups = Procs(), {}
    tmp = scratch_dir()
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
    with open(os.path.join(TARGET, "bench-budget.json"), "w") as f:
        json.dump(dict(setup=setup, rates=rates, runs={f"{n} {w}w": r for (n, w), r in results.items()},
                       latency=latency), f, indent=1)
    doc = render(args, setup, results, rates, latency)
    if not args.smoke:
        replace_section(doc, [BUDGET], first=True)
    print(doc)


def check_groups(groups, pids):
    for (p, w), g in groups.items():
        check_group(g, pids[(p, w)], f"{NAMES[p]} ({w} worker{'s' if w > 1 else ''})")


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


def median_of(by_proxy, slowest=False):
    meds = {p: median([m["value"] for m in counted(runs)[0]]) for p, runs in by_proxy.items()}
    return min(meds.values()) if slowest else meds


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


def bottleneck_table(results):
    rows = [f"| scenario | proxy | {BOTTLENECK_HEAD}", "|---|---|---|---|---|---|---|---|"]
    if results is None:
        return "\n".join(rows + ["| every scenario above | each | *not yet measured in a full run* | | | | | |"])
    for name, w in results:
        label = name + (", two workers" if w == 2 else "")
        for p in PROXIES:
            rows.append(f"| {label} | {NAMES[p]} | {bottleneck_cells(results[(name, w)][p])}")
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
