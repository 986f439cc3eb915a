"""The comparison run of scripts/bench.sh (--proxy-cpu FRACTION --compare OLD): the sluice
just built against an earlier build, each with `io = "uring"` and with `io = "epoll"`,
each of the four in a cgroup of its own at the same CPU quota, interleaved in one run;
per scenario and event loop, new over old. HAProxy and nginx do not run."""

import hashlib, json, os, shutil, subprocess

from bench_cgroup import Group
from bench_common import (AT_QUOTA, BOTTLENECK_HEAD, BUSY, PORT_BASE, ROOT, SCENARIOS, SLUICE,
                          TARGET, Procs, backend_config, bottleneck_cells, check_free, check_group,
                          counted, environment, fmt, group_prefix, line, measure, median, pct,
                          quota_args, quota_files, remove_groups, replace_section, save,
                          scratch_dir, sluice_config, start_backend, start_sluice, usage_source)

COMPARED = ["L4 close", "L4 keepalive", "HTTP close", "HTTP keepalive", "L4 bulk"]
IOS = ["uring", "epoll"]
INSTANCES = [(build, io) for io in IOS for build in ("old", "new")]
# The order of the four instances in round r: ORDERS[r % 4], as indices into INSTANCES.
# Every four rounds each instance runs once in each place, so that a drift of the
# machine falls on all alike, and old and new of one event loop always run next to each
# other, old first in half the rounds, so that a round's new / old is of runs seconds apart.
ORDERS = [(0, 1, 2, 3), (3, 2, 1, 0), (1, 0, 3, 2), (2, 3, 0, 1)]
HELD = 0.97  # the acceptance criterion: new at least this fraction of old
PROXY_CPUS = "0"  # taskset list of every instance (one worker); client and backend: any CPU
SECTION = "## The shard core against the previous build"


def plan_of(args):
    """(rounds, seconds per run). Quick and full rounds are a multiple of four, the
    length of ORDERS."""
    return (1, 2) if args.smoke else (4, 2) if args.quick else (8, 6)


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def minutes(plan, names):
    rounds, seconds = plan
    return (rounds * len(names) * len(INSTANCES) * (seconds + 0.2) + 10) / 60


def scenarios_of(args):
    """The scenarios to run: those named with --scenario, else all of COMPARED."""
    names = args.scenario or COMPARED
    unknown = [n for n in names if n not in COMPARED]
    if unknown:
        raise SystemExit(f"--scenario: unknown {', '.join(map(repr, unknown))}; "
                         f"one of {', '.join(map(repr, COMPARED))}")
    return names


def listen_ports(i):
    """(L4, HTTP) ports of instance `i`: clear of the other modes' (base + 81, 1xx, 2xx)."""
    return PORT_BASE + 300 + i, PORT_BASE + 310 + i


def old_binary(args):
    """The --compare path, made absolute from where bench.sh was called."""
    path = os.path.join(os.environ.get("SLUICE_BENCH_CALLER_DIR", os.getcwd()), args.compare)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise SystemExit(f"--compare: {path} is not an executable file")
    return os.path.abspath(path)


def main(args):
    frac, period_us = quota_args(args)
    binaries = {"old": old_binary(args), "new": SLUICE}
    plan = rounds, seconds = plan_of(args)
    names = scenarios_of(args)
    print(f"new ({SLUICE}) against old ({binaries['old']}), io = uring and epoll: {frac} CPU "
          f"each, period {period_us} µs; {plural(rounds, 'round')} of {seconds} s; about "
          f"{minutes(plan, names):.0f} min", flush=True)
    check_free((), [p for i in range(len(INSTANCES)) for p in listen_ports(i)])
    procs, groups, pids = Procs(), {}, {}
    tmp = scratch_dir()
    try:
        backend = start_backend(procs, backend_config(tmp), None)
        for i, (build, io) in enumerate(INSTANCES):
            name = f"{build}-{io}"
            groups[(build, io)] = g = Group(f"{group_prefix()}-{name}")
            g.set_quota(frac, period_us)
            path = save(tmp, f"sluice-{name}.toml", sluice_config(*listen_ports(i), io=io))
            pids[(build, io)] = start_sluice(procs, binaries[build], path, listen_ports(i), PROXY_CPUS,
                                             g, os.path.join(tmp, f"sluice-{name}.log"))
        check_groups(groups, pids)
        results = run_rounds(groups, backend, names, rounds, seconds)
        check_groups(groups, pids)
    finally:
        procs.stop_all()
        remove_groups(groups)
        shutil.rmtree(tmp, ignore_errors=True)
    setup = dict(fraction=frac, period_us=period_us, plan=plan, usage=usage_source(),
                 quota=quota_files(frac, period_us), builds=describe(binaries, args.compare_label))
    with open(os.path.join(TARGET, "bench-compare.json"), "w") as f:
        json.dump(dict(setup=setup, runs={f"{n} {io}": r for (n, io), r in results.items()}), f, indent=1)
    doc = render(args, setup, results)
    if not (args.smoke or args.scenario):
        replace_section(doc, [SECTION])
    print(doc)


def check_groups(groups, pids):
    for (build, io), g in groups.items():
        check_group(g, pids[(build, io)], f"the {build} sluice, io = {io}")


def run_rounds(groups, backend, names, rounds, seconds):
    """In each round, each scenario through the four instances in that round's order."""
    results = {(name, io): {"old": [], "new": []} for name in names for io in IOS}
    for r in range(rounds):
        for name in names:
            sc = SCENARIOS[name]
            for i in ORDERS[r % len(ORDERS)]:
                build, io = INSTANCES[i]
                port = listen_ports(i)[1 if sc.get("http") else 0]
                m = measure(groups[(build, io)], backend, port, sc, seconds)
                results[(name, io)][build].append(m)
                flag = f"  <- NOT THE PROXY'S FIGURE: {', '.join(m['flag'])}" if m["flag"] else ""
                print(f"round {r + 1}/{rounds} {name:14} {build} {io:5} {fmt(sc, m['value']):>9} "
                      f"{sc['unit']:6} {line(m)}{flag}", flush=True)
    return results


def describe(binaries, label):
    """What each build is: a label (the old one's from --compare-label, the new one's
    from `git describe`), its `--version`, the start of its SHA-256."""
    def run(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    out = {}
    for build, path in binaries.items():
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        commit = label if build == "old" else run(["git", "-C", ROOT, "describe", "--always", "--dirty"])
        out[build] = dict(path=path, label=commit or "not given", version=run([path, "--version"]),
                          sha256=digest)
    return out


def ratio_cells(by_build):
    """new / old of the medians, and the range of the rounds' own new / old (rounds in
    which both ran at quota, or all when none did)."""
    old, new = by_build["old"], by_build["new"]
    med = {b: median([m["value"] for m in counted(runs)[0]]) for b, runs in by_build.items()}
    ratio = med["new"] / med["old"] if med["old"] else float("nan")
    pairs = [(o, n) for o, n in zip(old, new) if not (o["flag"] or n["flag"])] or list(zip(old, new))
    per = [n["value"] / o["value"] for o, n in pairs if o["value"]]
    ok = counted(old)[1] and counted(new)[1]
    held = ("yes" if ratio >= HELD else "**no**") if ok else "–"
    text = f"{ratio:.3f}" if ok else f"*{ratio:.3f}*"
    spread = f"{min(per):.3f}–{max(per):.3f} ({plural(len(per), 'round')})" if per else "–"
    return f"{text} | {spread} | {held}"


def cell(sc, runs):
    """Median of the runs at quota and their range (min–max), with their count when not all."""
    used, ok = counted(runs)
    xs = [m["value"] for m in used]
    text = f"{fmt(sc, median(xs))} ({fmt(sc, min(xs))}–{fmt(sc, max(xs))})"
    if not ok:
        return f"*{text}, no run at quota*"
    return text if len(used) == len(runs) else f"{text}, {len(used)} of {len(runs)} runs"


def comparison_table(results):
    rows = ["| scenario | io | old: median (min–max) | new: median (min–max) | new / old "
            "| new / old per round (min–max) | new ≥ 0.97 × old |", "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(n for n, _ in results):
        sc = SCENARIOS[name]
        for io in IOS:
            by_build = results[(name, io)]
            rows.append(f"| {name} ({sc['unit']}) | {io} | {cell(sc, by_build['old'])} "
                        f"| {cell(sc, by_build['new'])} | {ratio_cells(by_build)} |")
    return "\n".join(rows)


def bottleneck_table(results):
    rows = [f"| scenario | io | build | {BOTTLENECK_HEAD}", "|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(n for n, _ in results):
        for io in IOS:
            for build in ("old", "new"):
                rows.append(f"| {name} | {io} | {build} | {bottleneck_cells(results[(name, io)][build])}")
    return "\n".join(rows)


def render(args, setup, results):
    frac, period_us = setup["fraction"], setup["period_us"]
    rounds, seconds = setup["plan"]
    old, new = setup["builds"]["old"], setup["builds"]["new"]
    cmd = f"scripts/bench.sh --proxy-cpu {frac:g}"
    cmd += f" --cpu-period-ms {period_us / 1000:g}" if period_us != 100_000 else ""
    cmd += f" --compare {args.compare}"
    cmd += f" --compare-label '{args.compare_label}'" if args.compare_label else ""
    cmd += " --quick" if args.quick else " --smoke" if args.smoke else ""
    same = (" The two are the same file: this run measures the method's own noise."
            if old["sha256"] == new["sha256"] else "")
    runs = [m for by_build in results.values() for rs in by_build.values() for m in rs]
    bad = [m for m in runs if m["flag"]]
    verdict = (f"all {len(runs)} runs were bounded by the proxy" if not bad else
               f"{len(bad)} of {len(runs)} runs were not bounded by the proxy (below)")
    return f"""{SECTION}

Produced by `{cmd}` on {environment(proxies=False)}.

The acceptance of the shard core: at a fixed CPU budget, L4 and HTTP, close and
keep-alive, each within 3 % of the previous build or better, on both event loops.
Old: `{old['path']}` — {old['label']}; {old['version']}, SHA-256 {old['sha256']}….
New: the build of this tree — {new['label']}; {new['version']}, SHA-256 {new['sha256']}….{same}

Both builds run at once, each twice — `io = "uring"` and `io = "epoll"` in `[server]` —
with `workers = 1` and the configuration of the budget run above (an L4 and an HTTP
service to the same nginx backend), pinned to CPU 0, each of the four in a cgroup of its
own limited to {frac:g} of a CPU ({setup['quota']}). The load generator
(`sluice bench --threads 1`, the new build's) and the backend are neither limited nor
pinned. {plural(rounds, 'round')} of {seconds} s; in each round, each scenario through the four,
in an order that puts each in each place once every four rounds (a drift of the machine
falls on all alike) and old and new of one event loop next to each other, old first in
half the rounds. Figures: the median of the runs at quota and their range; new / old of
the medians; the range of the rounds' own new / old (of two runs seconds apart, at
quota both, or all rounds when none was), which tells whether a difference of 3 % is
above the noise: a new / old under 0.97 whose rounds reach 1 is not told apart from
noise, and a longer run on a quieter machine settles it.

{comparison_table(results)}

**Was each sluice the bottleneck?** {verdict}. As in the budget run: the group's CPU
time ({setup['usage']}) over its quota; throttled periods summed over the runs; client,
backend and other load as there. A run is flagged when the proxy used under
{pct(AT_QUOTA)} of its quota or the client or the backend over {pct(BUSY)} of a core.

{bottleneck_table(results)}
"""
