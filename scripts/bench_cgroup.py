#!/usr/bin/env python3
"""CPU-limited cgroups for the fixed-budget benchmark (scripts/bench.sh --proxy-cpu).

cgroup v2 (`cpu.max`, `cpu.stat` usage_usec) where a v2 hierarchy offers the cpu
controller, else v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`, `cpuacct.usage` from the
cpuacct hierarchy, co-mounted with cpu or not). Groups are created directly under the
controller's mount and named `<prefix>-<instance>`; `cleanup PREFIX` (what bench.sh's
trap runs) stops whatever is left in them and removes them.

    python3 scripts/bench_cgroup.py cleanup sluice-bench-1234
    python3 scripts/bench_cgroup.py limit-thread sluice-bench-1234-a 0.3 TID
"""

import os, signal, sys, time


def _mounts():
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, path, fstype, opts = line.split()[:4]
            yield path.replace("\\040", " "), fstype, opts.split(",")


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def hierarchy():
    """(version, cpu mount, cpuacct mount or None) of the machine's cpu controller."""
    mounts = list(_mounts())
    for path, fstype, _ in mounts:
        if fstype == "cgroup2":
            try:
                if "cpu" in _read(os.path.join(path, "cgroup.controllers")).split():
                    return 2, path, None
            except OSError:
                pass
    cpu = next((p for p, t, o in mounts if t == "cgroup" and "cpu" in o), None)
    acct = next((p for p, t, o in mounts if t == "cgroup" and "cpuacct" in o), None)
    if cpu is None:
        raise RuntimeError("no cgroup hierarchy with the cpu controller is mounted")
    return 1, cpu, acct


class Sample:
    """Cumulative counters of a group at one instant."""

    def __init__(self, usage_us, periods, throttled, throttled_us):
        self.usage_us, self.periods = usage_us, periods
        self.throttled, self.throttled_us = throttled, throttled_us

    def __sub__(self, o):
        return Sample(self.usage_us - o.usage_us, self.periods - o.periods,
                      self.throttled - o.throttled, self.throttled_us - o.throttled_us)


class Group:
    """One CPU-limited group; `dirs[0]` holds the cpu controller."""

    def __init__(self, name):
        self.name = name
        self.version, cpu, acct = hierarchy()
        self.dirs = [os.path.join(cpu, name)]
        if self.version == 1 and acct is not None and acct != cpu:
            self.dirs.append(os.path.join(acct, name))
        if self.version == 2:
            control = os.path.join(cpu, "cgroup.subtree_control")
            if "cpu" not in _read(control).split():
                _write(control, "+cpu")
        for d in self.dirs:
            os.mkdir(d)
        self.quota_us = self.period_us = None

    def set_quota(self, cpus, period_us=100_000):
        """At most `cpus` CPUs' worth of time (0.35: 35 ms in every 100 ms period)."""
        quota = max(1000, round(cpus * period_us))
        if self.version == 2:
            _write(self._f("cpu.max"), f"{quota} {period_us}")
        else:
            _write(self._f("cpu.cfs_period_us"), str(period_us))
            _write(self._f("cpu.cfs_quota_us"), str(quota))
        self.quota_us, self.period_us = quota, period_us

    def quota_text(self):
        if self.version == 2:
            return f"cpu.max {_read(self._f('cpu.max')).strip()}"
        return (f"cpu.cfs_quota_us {_read(self._f('cpu.cfs_quota_us')).strip()} / "
                f"cpu.cfs_period_us {_read(self._f('cpu.cfs_period_us')).strip()}")

    def join(self):
        """Move the calling process into the group (a child's pre-exec hook: every
        thread and process the proxy ever starts is then in the group too)."""
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), str(os.getpid()))

    def move(self, pid):
        """Move a running process, all its threads, into the group."""
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def move_thread(self, tid):
        """Move one thread of a process into the group, its other threads staying
        where they are (cgroup v1's `tasks`; v2 would need a threaded subtree)."""
        if self.version != 1:
            raise RuntimeError("moving a single thread needs cgroup v1 here")
        for d in self.dirs:
            _write(os.path.join(d, "tasks"), str(tid))

    def procs(self):
        return [int(x) for x in _read(self._f("cgroup.procs")).split()]

    def threads(self):
        name = "cgroup.threads" if self.version == 2 else "tasks"
        return [int(x) for x in _read(self._f(name)).split()]

    def sample(self):
        stat = dict(l.split() for l in _read(self._f("cpu.stat")).splitlines() if l.strip())
        periods, throttled = int(stat.get("nr_periods", 0)), int(stat.get("nr_throttled", 0))
        if self.version == 2:
            return Sample(int(stat["usage_usec"]), periods, throttled, int(stat.get("throttled_usec", 0)))
        acct = self.dirs[-1]
        if not os.path.exists(os.path.join(acct, "cpuacct.usage")):
            raise RuntimeError("cgroup v1 without cpuacct: no per-group CPU usage")
        usage_ns = int(_read(os.path.join(acct, "cpuacct.usage")))
        return Sample(usage_ns / 1000, periods, throttled, int(stat.get("throttled_time", 0)) / 1000)

    def remove(self, timeout=5.0):
        """Remove the group; whatever still runs in it is stopped first (only processes
        this benchmark put there)."""
        _stop(self.dirs[0], timeout)
        for d in self.dirs:
            _rmdir(d, timeout)

    def _f(self, name):
        return os.path.join(self.dirs[0], name)


def _stop(d, timeout):
    try:
        pids = [int(x) for x in _read(os.path.join(d, "cgroup.procs")).split()]
    except OSError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.time() + timeout / 2
        while time.time() < end and _read(os.path.join(d, "cgroup.procs")).split():
            time.sleep(0.05)
        pids = [int(x) for x in _read(os.path.join(d, "cgroup.procs")).split()]
        if not pids:
            return


def _rmdir(d, timeout):
    end = time.time() + timeout
    while True:
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.05)  # a task that just exited can linger for a moment


def cleanup(prefix):
    """Remove every group named `<prefix>-…`, stopping what runs in it."""
    try:
        version, cpu, acct = hierarchy()
    except RuntimeError:
        return []
    removed = []
    for root in dict.fromkeys(p for p in (cpu, acct) if p):
        for name in sorted(os.listdir(root)):
            d = os.path.join(root, name)
            if name.startswith(prefix + "-") and os.path.isdir(d):
                _stop(d, 5.0)
                _rmdir(d, 5.0)
                removed.append(d)
    return removed


if __name__ == "__main__":
    usage = ("usage: bench_cgroup.py cleanup sluice-bench-<id>\n"
             "       bench_cgroup.py limit-thread sluice-bench-<id>-<name> CPUS TID")
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "cleanup" and args[1].startswith("sluice-bench-"):
        for d in cleanup(args[1]):
            print(f"removed cgroup {d}", file=sys.stderr)
    elif len(args) == 4 and args[0] == "limit-thread" and args[1].startswith("sluice-bench-"):
        g = Group(args[1])
        g.set_quota(float(args[2]))
        g.move_thread(int(args[3]))
        print(g.quota_text())
    else:
        sys.exit(usage)
