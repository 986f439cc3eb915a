//! Anycast VIPs over real BGP: a router namespace running BIRD 2 with ECMP (`merge
//! paths on`), two edge namespaces each running sluice and ExaBGP driven by `sluice
//! announce`, the VIP on each edge's loopback and the backends inside each edge.
//! Every assertion polls the router's kernel table (`ip -n ROUTER route show VIP`)
//! against a deadline. `anycast_upgrade` hot-upgrades one edge under a client and
//! checks that nothing about the route moves: the edge's admin port, its announcer's
//! commands, the router's next hops.
//!
//! Needs root (network namespaces), `ip`, `bird` (BIRD 2), `exabgp` and `python3`.
//! Without them the test is skipped with a message, unless `CI` or
//! `SLUICE_ANYCAST_REQUIRED` is set: then it fails (`.ci/run` installs them).

mod common;
use common::{Sluice, BIN};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VIP: &str = "192.0.2.10";
/// The router's side of each edge's link, and each edge's.
const RTR_ADDR: [&str; 2] = ["10.99.0.1", "10.99.0.5"];
const EDGE_ADDR: [&str; 2] = ["10.99.0.2", "10.99.0.6"];
/// The client's addresses, on the router's loopback: 10.98.0.1 to .16. The router's
/// ECMP hashes addresses (and ports), and a connection from a given source address
/// follows the next hop it chose before, so one client's connections spread over
/// both edges only from several addresses.
const CLIENTS: u8 = 16;
const ADMIN_TIMEOUT_MS: u64 = 1000;
/// Long enough for any convergence seen here (tens of ms) many times over.
const CONVERGE: Duration = Duration::from_secs(20);

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

fn ok(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the test can run here; `false` (with a message) where it may be skipped.
fn runnable(io: &str) -> bool {
    let required = ["CI", "SLUICE_ANYCAST_REQUIRED"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    let missing: Vec<&str> = ["ip", "bird", "birdc", "exabgp", "python3"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .unwrap()
                .status
                .success()
        })
        .collect();
    let probe = format!("sap{}{io}", std::process::id());
    let netns = sh(&["ip", "netns", "add", &probe]).status.success();
    if netns {
        let _ = sh(&["ip", "netns", "del", &probe]);
    }
    let why = if !missing.is_empty() {
        format!(
            "missing {} (Debian: apt-get install iproute2 bird2 exabgp python3)",
            missing.join(", ")
        )
    } else if !netns {
        "network namespaces cannot be created here (needs root or CAP_SYS_ADMIN and CAP_NET_ADMIN)"
            .to_owned()
    } else {
        return true;
    };
    assert!(
        !required,
        "the anycast test must run here (CI or SLUICE_ANYCAST_REQUIRED is set): {why}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: the anycast test: {why}");
    false
}

/// Three namespaces and what runs in them; all removed on drop.
struct Lab {
    ns: [String; 3],
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Lab {
    fn rtr(&self) -> &str {
        &self.ns[0]
    }

    fn edge(&self, i: usize) -> &str {
        &self.ns[1 + i]
    }

    fn new(tag: &str) -> Lab {
        let p = format!("sa{}{tag}", std::process::id() % 100_000);
        let ns = [format!("{p}r"), format!("{p}a"), format!("{p}b")];
        let lab = Lab {
            ns,
            dir: tempfile::tempdir().unwrap(),
            children: Vec::new(),
        };
        for n in &lab.ns {
            ok(&["ip", "netns", "add", n]);
            ok(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        let rtr = lab.rtr();
        for i in 0..2 {
            let (r, e) = (format!("{p}r{i}"), format!("{p}e{i}"));
            let edge = lab.edge(i);
            ok(&[
                "ip", "link", "add", &r, "netns", rtr, "type", "veth", "peer", "name", &e, "netns",
                edge,
            ]);
            ok(&[
                "ip",
                "-n",
                rtr,
                "addr",
                "add",
                &format!("{}/30", RTR_ADDR[i]),
                "dev",
                &r,
            ]);
            ok(&[
                "ip",
                "-n",
                edge,
                "addr",
                "add",
                &format!("{}/30", EDGE_ADDR[i]),
                "dev",
                &e,
            ]);
            ok(&["ip", "-n", rtr, "link", "set", &r, "up"]);
            ok(&["ip", "-n", edge, "link", "set", &e, "up"]);
            ok(&[
                "ip",
                "-n",
                edge,
                "addr",
                "add",
                &format!("{VIP}/32"),
                "dev",
                "lo",
            ]);
            ok(&[
                "ip",
                "-n",
                edge,
                "route",
                "add",
                "default",
                "via",
                RTR_ADDR[i],
            ]);
        }
        for c in 1..=CLIENTS {
            let addr = format!("10.98.0.{c}/32");
            ok(&["ip", "-n", rtr, "addr", "add", &addr, "dev", "lo"]);
        }
        // Hash flows by ports too, so that one client's connections spread over both
        // edges (the default hashes addresses only).
        ok(&[
            "ip",
            "netns",
            "exec",
            rtr,
            "sysctl",
            "-qw",
            "net.ipv4.fib_multipath_hash_policy=1",
        ]);
        lab
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn spawn(&mut self, ns: &str, args: &[&str], log: &str) {
        let log = std::fs::File::create(self.path(log)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// BIRD 2 on the router: eBGP with both edges, ECMP into the kernel.
    fn router(&mut self) {
        let timers = "hold time 3; keepalive time 1; connect delay time 1; connect retry time 1; \
                      error wait time 1, 2;";
        let mut conf = format!(
            "router id {};\nprotocol device {{ }}\n\
             protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n",
            RTR_ADDR[0]
        );
        for i in 0..2 {
            conf += &format!(
                "protocol bgp e{i} {{ local {} as 65000; neighbor {} as {}; \
                 ipv4 {{ import all; export none; }}; {timers} }}\n",
                RTR_ADDR[i],
                EDGE_ADDR[i],
                65001 + i
            );
        }
        std::fs::write(self.path("rtr.conf"), conf).unwrap();
        let (c, s) = (self.path("rtr.conf"), self.path("rtr.ctl"));
        let rtr = self.rtr().to_owned();
        self.spawn(&rtr, &["bird", "-f", "-c", &c, "-s", &s], "bird.log");
    }

    /// Backends of edge `i`: two HTTP servers on its loopback answering its name.
    fn backends(&mut self, i: usize) {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/anycast/backend.py");
        let script = script.display().to_string();
        let (edge, name) = (self.edge(i).to_owned(), format!("edge{}", i + 1));
        for port in ["8081", "8082"] {
            let args = ["python3", &script, "127.0.0.1", port, &name];
            self.spawn(&edge, &args, &format!("backend{i}-{port}.log"));
        }
    }

    /// Stop edge `i`'s backends.
    fn stop_backends(&mut self, i: usize) {
        let name = format!("edge{}", i + 1);
        let mut kept = Vec::new();
        for mut c in self.children.drain(..) {
            // The process `ip netns exec` became: python3 backend.py ADDR PORT NAME.
            let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", c.id()))
                .unwrap_or_default()
                .replace('\0', " ");
            if cmdline.contains("backend.py") && cmdline.trim_end().ends_with(&name) {
                let _ = c.kill();
                let _ = c.wait();
            } else {
                kept.push(c);
            }
        }
        self.children = kept;
    }

    /// sluice on edge `i`, its VIP an anycast TCP service over the two backends.
    fn sluice(&self, i: usize, io: &str) -> Sluice {
        self.sluice_args(i, io, &[])
    }

    /// [`Lab::sluice`] with more arguments to `run` (`{dir}`: its directory).
    fn sluice_args(&self, i: usize, io: &str, args: &[&str]) -> Sluice {
        let config = format!(
            "[server]\nworkers = 2\nio = \"{io}\"\nshutdown_grace_ms = 5000\n\
             [admin]\nlisten = \"127.0.0.1:9090\"\n\
             [anycast]\nrise = 2\nfall = 2\ninterval_ms = 100\nadmin_timeout_ms = {ADMIN_TIMEOUT_MS}\n\
             [[service]]\nname = \"web\"\nlisten = \"{VIP}:80\"\nanycast = true\n\
             backends = [\"127.0.0.1:8081\", \"127.0.0.1:8082\"]\n\
             [service.health]\ninterval_ms = 100\nrise = 1\nfall = 2\n"
        );
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.edge(i), BIN]);
        Sluice::start_cmd_args(&config, cmd, args)
    }

    /// ExaBGP on edge `i`, peering with the router, `sluice announce` its API process;
    /// the commands it gives ExaBGP are copied to `announce{i}.log`.
    fn exabgp(&mut self, i: usize) {
        let script = self.path(&format!("announce{i}.sh"));
        let copy = self.path(&format!("announce{i}.log"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n'{BIN}' announce --admin http://127.0.0.1:9090 --interval-ms 100 \
                 | tee -a '{copy}'\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let conf = format!(
            "process announce {{ run {script}; encoder text; }}\n\
             neighbor {rtr} {{ router-id {me}; local-address {me}; local-as {asn}; peer-as 65000; \
             hold-time 3; api {{ processes [ announce ]; }} }}\n",
            rtr = RTR_ADDR[i],
            me = EDGE_ADDR[i],
            asn = 65001 + i
        );
        let path = self.path(&format!("exabgp{i}.conf"));
        std::fs::write(&path, conf).unwrap();
        let edge = self.edge(i).to_owned();
        let args = [
            "env",
            "exabgp.daemon.user=root",
            "exabgp.api.cli=false",
            "exabgp.log.destination=stderr",
            "exabgp",
            &path,
        ];
        self.spawn(&edge, &args, &format!("exabgp{i}.log"));
    }

    /// The router's route to the VIP, as the kernel has it.
    fn route(&self) -> String {
        route_in(self.rtr())
    }

    /// The next hops of the router's route to the VIP (empty: no route).
    fn next_hops(&self) -> Vec<String> {
        next_hops_of(&self.route())
    }

    /// Poll the router's table until its next hops are `want`; panics with the logs
    /// after `within`. Returns how long it took.
    fn wait_hops(&self, want: &[&str], within: Duration, what: &str) -> Duration {
        let start = Instant::now();
        loop {
            if self.next_hops() == want {
                return start.elapsed();
            }
            if start.elapsed() > within {
                self.dump();
                panic!(
                    "{what}: the router's route is still {:?}, not via {want:?}",
                    self.route()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn dump(&self) {
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- {name}");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// The route to the VIP in namespace `ns`.
fn route_in(ns: &str) -> String {
    let out = sh(&["ip", "-n", ns, "route", "show", VIP]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The next hops of `route`, sorted.
fn next_hops_of(route: &str) -> Vec<String> {
    let mut hops: Vec<String> = route
        .split_whitespace()
        .zip(route.split_whitespace().skip(1))
        .filter(|(w, _)| *w == "via")
        .map(|(_, a)| a.to_owned())
        .collect();
    hops.sort();
    hops
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // What the processes started left behind (ExaBGP's API processes): by id.
        for n in &self.ns {
            let pids = sh(&["ip", "netns", "pids", n]);
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = sh(&["kill", "-9", pid]);
            }
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

/// The client loop in the router's namespace, stopped by closing its stdin, and the
/// lines it prints.
fn client(lab: &Lab) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = fixture(lab.rtr(), "client.py");
    cmd.args([VIP, "80"])
        .args((1..=CLIENTS).map(|c| format!("10.98.0.{c}")));
    piped(cmd)
}

/// `python3 tests/fixtures/anycast/SCRIPT` in namespace `ns`.
fn fixture(ns: &str, script: &str) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/anycast")
        .join(script);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "python3"]).arg(script);
    cmd
}

/// Start `cmd` with its stdin a pipe (closing it stops the fixtures) and its stdout
/// read line by line.
fn piped(mut cmd: Command) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Wait until the client's connections reached both edges.
fn reach_both(lines: &std::sync::mpsc::Receiver<String>) {
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let line = lines
            .recv_timeout(CONVERGE)
            .expect("the client reaches both edges");
        if let Some(edge) = line.strip_prefix("answered ") {
            seen.insert(edge.to_owned());
        }
    }
}

/// Stop the client and read its report; asserts that no connection failed and that
/// both edges answered.
fn client_report(mut c: Child, lines: &std::sync::mpsc::Receiver<String>) -> serde_json::Value {
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success(), "the client ran to its end");
    let last = lines.recv_timeout(CONVERGE).expect("the client's report");
    let report: serde_json::Value = serde_json::from_str(&last).unwrap();
    eprintln!("client: {report}");
    assert_eq!(
        report["failures"],
        serde_json::json!([]),
        "failed connections: {report}"
    );
    for edge in ["edge1", "edge2"] {
        assert!(
            report["answers"][edge].as_u64().unwrap_or(0) > 0,
            "{edge} answered none: {report}"
        );
    }
    report
}

fn anycast(io: &str) {
    if !runnable(io) {
        return;
    }
    let both = [EDGE_ADDR[0], EDGE_ADDR[1]];
    let mut lab = Lab::new(&io[..1]);
    lab.router();
    let mut sluices = Vec::new();
    for i in 0..2 {
        lab.backends(i);
        sluices.push(lab.sluice(i, io));
        lab.exabgp(i);
    }
    // 1. Both edges healthy: the VIP with two next hops.
    lab.wait_hops(&both, CONVERGE, "both edges announce");

    // 2. Every backend of edge 1 down: its route alone withdrawn; back: ECMP again.
    lab.stop_backends(0);
    lab.wait_hops(
        &[EDGE_ADDR[1]],
        CONVERGE,
        "edge 1 without backends withdraws",
    );
    lab.backends(0);
    lab.wait_hops(&both, CONVERGE, "edge 1 with backends again announces");

    // 3. SIGTERM on edge 2 under a client opening connection after connection: the
    // route goes before the listener does, and no connection fails.
    let (c, lines) = client(&lab);
    reach_both(&lines);
    let edge2 = &mut sluices[1];
    edge2.signal("TERM");
    lab.wait_hops(&[EDGE_ADDR[0]], CONVERGE, "edge 2 withdraws on SIGTERM");
    assert_eq!(
        edge2.count_log(|l| l.contains("stopping: no new connections")),
        0,
        "edge 2 stopped accepting before its route was withdrawn"
    );
    let status = edge2.wait_exit();
    assert!(
        status.success(),
        "edge 2 exits 0 after its drain: {status:?}"
    );
    client_report(c, &lines);

    // 4. SIGKILL on edge 1: `sluice announce` withdraws within admin_timeout_ms (plus
    // a second for polling, BGP and BIRD).
    sluices[0].signal("KILL");
    let took = lab.wait_hops(
        &[],
        Duration::from_millis(ADMIN_TIMEOUT_MS + 1000),
        "edge 1's route withdrawn after its sluice was killed",
    );
    eprintln!("withdrawn {took:?} after SIGKILL");
}

/// The router's route to the VIP, sampled until `stop`: the samples taken, and the
/// routes seen that were not via both edges.
fn watch_route(
    rtr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut samples, mut other) = (0, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let route = route_in(&rtr);
            if next_hops_of(&route) != EDGE_ADDR {
                other.push(route);
            }
            samples += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        (samples, other)
    })
}

/// A hot upgrade of edge 1 (SIGUSR2) while both edges announce the VIP and a client
/// opens connection after connection: first one that fails to start, then one that
/// takes over. Throughout, edge 1's admin port answers `/v1/anycast` and never says
/// withdrawn, its `sluice announce` gives ExaBGP no command at all, the router keeps
/// both next hops, and no connection fails; the old process exits.
fn anycast_upgrade(io: &str) {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    if !runnable(io) {
        return;
    }
    let mut lab = Lab::new(&format!("u{}", &io[..1]));
    lab.router();
    let mut sluices = Vec::new();
    for i in 0..2 {
        lab.backends(i);
        let args: &[&str] = if i == 0 {
            &["--pidfile", "{dir}/sluice.pid"]
        } else {
            &[]
        };
        sluices.push(lab.sluice_args(i, io, args));
        lab.exabgp(i);
    }
    lab.wait_hops(&EDGE_ADDR, CONVERGE, "both edges announce");
    let old = &mut sluices[0];
    old.wait_log("the upgrade channel", |l| {
        l.contains("upgrade channel listening")
    });
    let announcer = lab.path("announce0.log");
    let told = || std::fs::read_to_string(&announcer).unwrap_or_default();
    let before = told();
    assert!(
        before.ends_with(&format!("announce route {VIP}/32 next-hop self\n")),
        "{before}"
    );
    let announced = |s: &Sluice| s.count_log(|l| l.contains("anycast VIP: announce "));
    assert_eq!(announced(old), 1);

    let mut poller = fixture(lab.edge(0), "poll.py");
    poller.arg("http://127.0.0.1:9090/v1/anycast");
    let (mut poll, polls) = piped(poller);
    // Polling before anything happens.
    let mut answers = vec![polls
        .recv_timeout(CONVERGE)
        .expect("the poller's first line")];
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let route = watch_route(lab.rtr().to_owned(), std::sync::Arc::clone(&stop));
    let (c, lines) = client(&lab);
    reach_both(&lines);

    // 1. A successor that cannot start (its configuration is wrong): the old process
    // goes on as it was.
    let good = std::fs::read_to_string(&old.config).unwrap();
    std::fs::write(
        &old.config,
        good.replace("[[service]]", "[[service]]\nnope = 1"),
    )
    .unwrap();
    old.signal("USR2");
    let why = old.wait_log("the failed upgrade", |l| l.contains("upgrade failed"));
    assert!(why.contains("keeps serving"), "{why}");
    std::fs::write(&old.config, &good).unwrap();

    // 2. The upgrade.
    let pidfile = old.dir.path().join("sluice.pid");
    let old_pid = old.child.id();
    old.signal("USR2");
    // The successor logs to the same stderr.
    old.wait_log("the successor serves", |l| {
        l.contains("the successor serves")
    });
    let new_pid = common::wait_for("the successor's pidfile", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|&p| p != old_pid)
    });
    let status = old.wait_exit();
    assert!(
        status.success(),
        "the old process exits 0 after its drain: {status:?}"
    );
    // The successor's answers too, for a while after the old process is gone.
    let during = answers.len() + polls.try_iter().map(|l| answers.push(l)).count();
    for _ in 0..50 {
        answers.push(polls.recv_timeout(CONVERGE).expect("the poller's lines"));
    }
    drop(poll.stdin.take());
    assert!(poll.wait().unwrap().success());
    answers.extend(polls.iter().take_while(|l| l != "end"));
    stop.store(true, Relaxed);
    let (samples, other_routes) = route.join().unwrap();
    let report = client_report(c, &lines);

    let mut said = 0;
    for a in &answers {
        let body = a
            .strip_prefix("answer ")
            .unwrap_or_else(|| panic!("edge 1's admin port did not answer: {a}"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v[0]["prefix"], format!("{VIP}/32"), "{body}");
        assert_eq!(v[0]["announce"], true, "edge 1 said withdrawn: {body}");
        said += 1;
    }
    eprintln!(
        "{said} answers from edge 1's admin port ({during} until the old process exited), \
         {samples} samples of the route; old pid {old_pid}, new pid {new_pid}"
    );
    let after = told();
    assert_eq!(
        &after[before.len()..],
        "",
        "edge 1's announcer told ExaBGP something during the upgrade"
    );
    assert!(
        other_routes.is_empty(),
        "the route was not via both edges {} times of {samples}: {:?}",
        other_routes.len(),
        &other_routes[..other_routes.len().min(5)]
    );
    assert_eq!(report["route_changes"], 0, "the router's routes changed");
    assert_eq!(announced(old), 1, "the successor announced anew");
    let kept = old
        .log_lines()
        .into_iter()
        .find(|l| l.contains("kept announced"));
    assert!(
        kept.as_ref()
            .is_some_and(|l| l.contains(&format!("{VIP}/32"))),
        "the successor kept the VIP announced: {kept:?}"
    );
}

/// `GET path` on the admin port: (status line, body).
fn admin_get(admin: std::net::SocketAddr, path: &str) -> (String, String) {
    use std::io::Read;
    let mut s = common::connect(admin);
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// Without namespaces or a router: `sluice announce` against one sluice on loopback,
/// through start, announcement and SIGTERM (withdrawn while still accepting, then
/// drained); the announcer withdraws and exits once the admin port is gone.
fn announce_on_loopback(io: &str) {
    use std::io::BufRead;
    let backend = common::Backend::named("a");
    let config = format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n\
         [anycast]\nrise = 2\nfall = 2\ninterval_ms = 50\nadmin_timeout_ms = 500\n\
         [[service]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nanycast = true\n\
         backends = [\"{}\"]\n[service.health]\ninterval_ms = 100\n",
        common::server(io, ""),
        backend.addr
    );
    let mut sluice = Sluice::start(&config);
    let (admin, web) = (sluice.admin(), sluice.addr("web"));
    let mut announcer = Command::new(BIN)
        .args([
            "announce",
            "--admin",
            &format!("http://{admin}"),
            "--interval-ms",
            "50",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let out = std::io::BufReader::new(announcer.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        lines
            .recv_timeout(common::PATIENCE)
            .expect("a line from the announcer")
    };
    let (announce, withdraw) = (
        "announce route 127.0.0.1/32 next-hop self",
        "withdraw route 127.0.0.1/32 next-hop self",
    );
    // The whole state at the first answer (withdrawn until `rise` checks passed, or
    // announced already), then the announcement.
    let first = next();
    if first != announce {
        assert_eq!(first, withdraw);
        assert_eq!(next(), announce);
    }
    let (status, body) = admin_get(admin, "/v1/anycast");
    assert!(status.contains(" 200 "), "{status}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["prefix"], "127.0.0.1/32");
    assert_eq!(v[0]["service"], "web");
    assert_eq!(v[0]["announce"], true);
    assert_eq!(v[0]["reason"], "1 of 1 backends up");
    let (_, metrics) = admin_get(admin, "/metrics");
    assert!(
        metrics.contains("sluice_anycast_announced{prefix=\"127.0.0.1/32\",service=\"web\"} 1"),
        "{metrics}"
    );

    sluice.signal("TERM");
    assert_eq!(next(), withdraw);
    // Withdrawn, and still accepting: the drain has not begun.
    assert_eq!(common::fetch(web).unwrap(), "a");
    let (status, _) = admin_get(admin, "/_haproxy_health_check");
    assert!(status.contains(" 503 "), "{status}");
    let (_, body) = admin_get(admin, "/v1/anycast");
    assert!(
        body.contains("shutting down: withdrawn before draining"),
        "{body}"
    );
    assert_eq!(
        sluice.count_log(|l| l.contains("stopping: no new connections")),
        0,
        "the drain began before the grace ended"
    );
    assert!(sluice.wait_exit().success());
    let status = common::wait_for("the announcer to exit", || announcer.try_wait().unwrap());
    assert!(
        !status.success(),
        "the announcer exits with an error once sluice is gone"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut announcer.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("every route withdrawn"), "{err}");
}

/// A stand-in for the admin port: its first `good` answers announce `prefix`, then
/// every answer is `bad` (a whole HTTP response).
fn fake_admin(prefix: &'static str, good: usize, bad: String) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, c) in l.incoming().enumerate() {
            let Ok(mut c) = c else { return };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let answer = if n < good {
                let body = format!(
                    "[{{\"prefix\":\"{prefix}\",\"service\":\"web\",\"listen\":\"x\",\
                     \"announce\":true,\"reason\":\"ok\",\"admin_timeout_ms\":300}}]"
                );
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                bad.clone()
            };
            let _ = c.write_all(answer.as_bytes());
        }
    });
    addr
}

/// A child killed when the test ends, passing or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sluice announce` withdraws, and exits, when the admin URL answers anything but
/// the page: an error status, a body that is not the page, or a redirect — which is
/// not followed, whatever the place it points to would say.
#[test]
fn announce_withdraws_when_the_answer_is_not_the_page() {
    use std::io::BufRead;
    let elsewhere = fake_admin("198.51.100.1/32", usize::MAX, String::new());
    let ok = |status: &str, extra: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    for bad in [
        ok(
            "302 Found",
            &format!("Location: http://{elsewhere}/v1/anycast\r\n"),
            "",
        ),
        ok("500 Internal Server Error", "", "[]"),
        ok("200 OK", "", "<html>not it</html>"),
        ok("200 OK", "", "[{\"prefix\":1}]"),
    ] {
        let admin = fake_admin("192.0.2.10/32", 2, bad.clone());
        let mut announcer = Command::new(BIN)
            .args(["announce", "--admin", &format!("http://{admin}")])
            .args(["--interval-ms", "50"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(announcer.stdout.take().unwrap());
        let mut announcer = Reaped(announcer);
        let status = common::wait_for("the announcer to exit", || announcer.0.try_wait().unwrap());
        let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
        assert_eq!(
            lines,
            [
                "announce route 192.0.2.10/32 next-hop self",
                "withdraw route 192.0.2.10/32 next-hop self"
            ],
            "{bad:?}"
        );
        assert!(!status.success(), "{bad:?}");
    }
}

both_io!(anycast, anycast_upgrade, announce_on_loopback);
