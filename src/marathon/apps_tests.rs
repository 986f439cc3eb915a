//! Tests of the Marathon translation, on the recorded fixtures and shapes derived
//! from them.

use super::*;
use serde_json::json;

fn opts(group: &str) -> Options {
    Options {
        group: group.into(),
        bind_address: "0.0.0.0".parse().unwrap(),
        vip_network: ("127.11.0.0".parse().unwrap(), 16),
        health_check: true,
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/marathon/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).unwrap()
}

fn run(body: &[u8], group: &str) -> Translation {
    translate(body, &opts(group), &mut HealthMemory::new()).unwrap()
}

/// `name listen mode balance [backends]`, draining backends marked `~`, those kept in
/// maintenance by a blue/green deploy `!`.
fn dump(t: &Translation) -> Vec<String> {
    t.services
        .iter()
        .map(|s| {
            let b: Vec<String> = s
                .backends
                .iter()
                .map(|b| {
                    format!(
                        "{}{}",
                        b.addr,
                        match b.state {
                            TaskState::Draining => "~",
                            TaskState::Maint => "!",
                            TaskState::Serving => "",
                        }
                    )
                })
                .collect();
            format!(
                "{} {} {:?} {:?} [{}]",
                s.name,
                s.listen,
                s.mode,
                s.balance,
                b.join(" ")
            )
        })
        .collect()
}

#[test]
fn bridge_apps_before_marathon_1_5() {
    // container.docker.portMappings, BRIDGE, tasks without `state`; the MESOS_HTTP
    // health check on port index 0 makes it http. The two colours of deployment group
    // `nginx` are one service on the group's HAPROXY_0_PORT, named by the group: the
    // older (green) deploy's tasks in id order, then blue's. Blue has one healthy task
    // and no NEW_INSTANCES label (a target of one), so one green task is kept in
    // maintenance, the first by id — the one Marathon-LB's own test of this fixture
    // writes `disabled`.
    let t = run(&fixture("zdd_apps.json"), "external");
    assert_eq!(
        dump(&t),
        ["nginx_10000 0.0.0.0:10000 Http Roundrobin [10.0.6.25:31184! 10.0.6.25:16916 10.0.6.25:23336 10.0.1.147:25724]"]
    );
    assert!(run(&fixture("zdd_apps.json"), "internal")
        .services
        .is_empty());
}

#[test]
fn documented_app_shapes() {
    // GET /v2/apps/{id} example: docker portMappings with a service port, the
    // legacy `ipAddress` (IP-per-task: tasks are reached at their own address on
    // the container port) and an HTTP health check (http mode; a task serves once
    // a check passed).
    let mut app: Value = serde_json::from_slice(&fixture("app.json")).unwrap();
    app["tasks"] = json!([{"id": "foo.1", "host": "10.0.0.9", "ports": [31000],
                           "ipAddresses": [{"ipAddress": "9.1.1.1", "protocol": "IPv4"}],
                           "healthCheckResults": [{"alive": true}]}]);
    let body = json!({"apps": [app]}).to_string();
    assert_eq!(
        dump(&run(body.as_bytes(), "*")),
        ["foo_10019 0.0.0.0:10019 Http Roundrobin [9.1.1.1:80]"]
    );
    // GET /v2/apps example: legacy `ports`, no tasks yet: the services listen with no
    // backend.
    let t = run(&fixture("app_list.json"), "*");
    assert_eq!(
        dump(&t),
        [
            "myapp_10013 0.0.0.0:10013 Tcp Roundrobin []",
            "myapp_10015 0.0.0.0:10015 Tcp Roundrobin []"
        ]
    );
    // Neither has HAPROXY_GROUP: the default group serves neither.
    assert!(run(&fixture("app_list.json"), "external")
        .services
        .is_empty());
}

#[test]
fn marathon_1_5_shape() {
    // networks container/bridge with container.portMappings: host ports, not the
    // container addresses the tasks also list.
    let t = run(&fixture("zdd_app_blue_marathon1.5.json"), "*");
    assert_eq!(
        dump(&t),
        ["nginx_10000 0.0.0.0:10000 Http Roundrobin [10.0.6.25:16916 10.0.6.25:31184 10.0.6.25:23336]"]
    );
}

fn app2(tasks: Value) -> Vec<u8> {
    json!({"apps": [{
        "id": "/dcos-101/app2",
        "labels": {"HAPROXY_GROUP": "external"},
        "networks": [{"mode": "container", "name": "dcos"}],
        "container": {"type": "MESOS", "portMappings": [
            {"containerPort": 80, "servicePort": 10101, "labels": {"VIP_0": "/dcos-101/app2:10000"}}
        ]},
        "healthChecks": [{"protocol": "TCP", "portIndex": 0}],
        "tasks": tasks,
    }]})
    .to_string()
    .into_bytes()
}

fn task(id: &str, ip: &str, state: &str, alive: Option<bool>) -> Value {
    let mut t = json!({"id": id, "host": "10.0.0.1", "ports": [31000], "state": state,
                       "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"}]});
    if let Some(a) = alive {
        t["healthCheckResults"] = json!([{"alive": a}]);
    }
    t
}

#[test]
fn ip_per_task_and_named_vip() {
    let body = app2(json!([task("a.1", "9.0.0.1", "TASK_RUNNING", Some(true))]));
    let t = run(&body, "external");
    assert_eq!(
        dump(&t),
        ["dcos-101_app2_10101 0.0.0.0:10101 Tcp Roundrobin [9.0.0.1:80]"]
    );
    assert_eq!(t.vips.len(), 1);
    let (vip, backends) = &t.vips[0];
    assert_eq!(vip.name, "/dcos-101/app2");
    assert_eq!(
        vip.dns.as_deref(),
        Some("dcos-101app2.marathon.l4lb.thisdcos.directory")
    );
    assert_eq!(vip.listen.port(), 10000);
    assert_eq!(
        vip.listen.ip(),
        IpAddr::V4(vip_address(
            "/dcos-101/app2",
            ("127.11.0.0".parse().unwrap(), 16)
        ))
    );
    assert_eq!(backends[0].addr, "9.0.0.1:80".parse().unwrap());
}

#[test]
fn task_states_and_health() {
    let tasks = json!([
        task("a.1", "9.0.0.1", "TASK_RUNNING", Some(true)),
        task("a.2", "9.0.0.2", "TASK_KILLING", Some(true)),
        task("a.3", "9.0.0.3", "TASK_UNREACHABLE", Some(true)),
        task("a.4", "9.0.0.4", "TASK_RUNNING", Some(false)),
        task("a.5", "9.0.0.5", "TASK_RUNNING", None),
        task("a.6", "9.0.0.6", "TASK_STAGING", None),
        task("a.7", "9.0.0.7", "TASK_LOST", Some(true)),
    ]);
    let mut health = HealthMemory::new();
    let t = translate(&app2(tasks), &opts("external"), &mut health).unwrap();
    // Running and alive serve; killing drains; unreachable and lost keep serving;
    // failing and never-checked tasks wait; staging is not up yet.
    assert_eq!(
        dump(&t),
        ["dcos-101_app2_10101 0.0.0.0:10101 Tcp Roundrobin [9.0.0.1:80 9.0.0.2:80~ 9.0.0.3:80 9.0.0.7:80]"]
    );
    // Results missing on the next refresh: the last known result stands.
    let t = translate(
        &app2(json!([task("a.1", "9.0.0.1", "TASK_RUNNING", None)])),
        &opts("external"),
        &mut health,
    )
    .unwrap();
    assert_eq!(t.services[0].backends.len(), 1);
    // Without health checking every running task serves.
    let mut o = opts("external");
    o.health_check = false;
    let t = translate(
        &app2(json!([task("a.4", "9.0.0.4", "TASK_RUNNING", Some(false))])),
        &o,
        &mut HealthMemory::new(),
    )
    .unwrap();
    assert_eq!(t.services[0].backends.len(), 1);
}

#[test]
fn labels_per_port() {
    let body = json!({"apps": [{
        "id": "/shop/web",
        "labels": {
            "HAPROXY_GROUP": "internal",
            "HAPROXY_0_GROUP": "external",
            "HAPROXY_0_VHOST": "shop.example, www.shop.example",
            "HAPROXY_0_PATH": "/cart",
            "HAPROXY_0_STICKY": "true",
            "HAPROXY_0_REDIRECT_TO_HTTPS": "true",
            "HAPROXY_1_GROUP": "external",
            "HAPROXY_1_PATH": "no leading slash",
            "HAPROXY_1_BALANCE": "source",
            "HAPROXY_1_BIND_ADDR": "127.0.0.5",
            "HAPROXY_2_MODE": "http",
            "HAPROXY_2_BALANCE": "leastconn",
            "HAPROXY_2_PORT": "18080",
        },
        "portDefinitions": [{"port": 10000}, {"port": 10001}, {"port": 10002}],
        "tasks": [{"id": "w.1", "host": "10.1.1.1", "ports": [31001, 31002, 31003]}],
    }, {
        "id": "/legacy",
        "labels": {"HAPROXY_GROUP": "external"},
        "ports": [10005],
        "tasks": [{"id": "l.1", "host": "10.1.1.2", "ports": [32000], "state": "TASK_RUNNING"}],
    }]})
    .to_string();
    let t = run(body.as_bytes(), "external");
    assert_eq!(
        dump(&t),
        [
            "shop_web_10000 0.0.0.0:10000 Http Roundrobin [10.1.1.1:31001]",
            "legacy_10005 0.0.0.0:10005 Tcp Roundrobin [10.1.1.2:32000]",
            "shop_web_10001 127.0.0.5:10001 Tcp Maglev [10.1.1.1:31002]",
        ]
    );
    assert_eq!(t.services[0].vhosts, ["shop.example", "www.shop.example"]);
    assert_eq!(t.services[0].path.as_deref(), Some("/cart"));
    assert!(t.services[0].sticky && t.services[0].redirect_to_https);
    assert_eq!(t.services[2].path, None, "an invalid path is ignored");
    assert!(!t.services[2].sticky && !t.services[2].redirect_to_https);
    assert_eq!(t.services[2].hash, HashKey::Source);
    // Port 2 is in the app-wide group only.
    let t = run(body.as_bytes(), "internal");
    assert_eq!(
        dump(&t),
        ["shop_web_18080 0.0.0.0:18080 Http Leastconn [10.1.1.1:31003]"]
    );
}

#[test]
fn bad_bodies_are_errors() {
    let mut h = HealthMemory::new();
    let o = opts("*");
    assert!(matches!(
        translate(b"<html>502</html>", &o, &mut h),
        Err(AppsError::Json(_))
    ));
    let full = fixture("zdd_apps.json");
    assert!(matches!(
        translate(&full[..full.len() / 2], &o, &mut h),
        Err(AppsError::Json(_))
    ));
    assert_eq!(
        translate(b"{\"message\": \"x\"}", &o, &mut h),
        Err(AppsError::Shape)
    );
    assert_eq!(
        translate(b"{\"apps\": []}", &o, &mut h),
        Ok(Translation::default())
    );
}

#[test]
fn thousand_real_apps_with_synthetic_tasks() {
    let mut v: Value = serde_json::from_slice(&fixture("apps_1000_real.json")).unwrap();
    let apps = v["apps"].as_array_mut().unwrap();
    let mut expected = 0;
    for (i, app) in apps.iter_mut().enumerate() {
        let ports = port_entries(app).len();
        expected += port_entries(app)
            .iter()
            .filter(|(p, _)| p.is_some())
            .count();
        let tasks: Vec<Value> = (0..10)
            .map(|k| json!({"id": format!("t{i}.{k}"), "host": format!("10.2.{}.{}", i % 250, k + 1),
                            "ports": (0..ports).map(|p| 31000 + p).collect::<Vec<_>>(), "state": "TASK_RUNNING"}))
            .collect();
        app["tasks"] = Value::Array(tasks);
        app["healthChecks"] = json!([]);
    }
    let body = serde_json::to_vec(&v).unwrap();
    let t = run(&body, "*");
    assert_eq!(t.services.len(), expected);
    assert!(
        expected > 900,
        "most of the real apps have a service port: {expected}"
    );
    assert!(t.services.iter().all(|s| s.backends.len() == 10));
}

#[test]
fn vip_addresses_stay_inside_the_network() {
    let net = ("127.11.0.0".parse().unwrap(), 16);
    for name in ["/a", "/dcos-101/app2", "/x/y/z", ""] {
        let a = vip_address(name, net);
        assert_eq!(a, vip_address(name, net), "deterministic");
        let o = a.octets();
        assert_eq!((o[0], o[1]), (127, 11));
        assert!(
            a != "127.11.0.0".parse::<Ipv4Addr>().unwrap()
                && a != "127.11.255.255".parse::<Ipv4Addr>().unwrap()
        );
    }
}

/// `HAPROXY_{n}_SSL_CERT` adds certificates to `[https] listen` (Marathon-LB adds them
/// to its :443 `bind`); `HAPROXY_{n}_BIND_OPTIONS` with `ssl` terminates TLS on the
/// service's own port with its `crt` files; other bind options are not TLS.
#[test]
fn tls_labels() {
    let body = json!({"apps": [{
        "id": "/shop",
        "labels": {
            "HAPROXY_GROUP": "external",
            "HAPROXY_0_VHOST": "shop.example",
            "HAPROXY_0_SSL_CERT": "/etc/ssl/shop.pem, /etc/ssl/www.pem",
            "HAPROXY_1_MODE": "http",
            "HAPROXY_1_BIND_OPTIONS": "ssl crt /etc/ssl/own.pem crt /etc/ssl/more/ alpn http/1.1",
            "HAPROXY_2_BIND_OPTIONS": "ciphers AES128+EECDH no-sslv3",
        },
        "portDefinitions": [{"port": 10000}, {"port": 10001}, {"port": 10002}],
        "tasks": [{"id": "s.1", "host": "10.1.1.1", "ports": [31001, 31002, 31003]}],
    }, {
        "id": "/blog",
        "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "blog.example",
                   "HAPROXY_0_SSL_CERT": "/etc/ssl/www.pem"},
        "portDefinitions": [{"port": 10010}],
        "tasks": [{"id": "b.1", "host": "10.1.1.2", "ports": [32000]}],
    }]})
    .to_string();
    let t = run(body.as_bytes(), "external");
    let p = |s: &str| std::path::PathBuf::from(s);
    assert_eq!(
        t.services[0].ssl_certs,
        [p("/etc/ssl/shop.pem"), p("/etc/ssl/www.pem")]
    );
    assert_eq!(
        t.services[1].bind_tls.as_deref(),
        Some(&[p("/etc/ssl/own.pem"), p("/etc/ssl/more/")][..])
    );
    assert_eq!(t.services[2].bind_tls, None);
    assert_eq!(
        t.ssl_certs(),
        [p("/etc/ssl/shop.pem"), p("/etc/ssl/www.pem")],
        "each certificate once, in the order first named"
    );
}

/// The recorded bodies' HTTP health checks (`path` "/", every 3 s, 15 s timeout, 10
/// failures tolerated) become HTTP checks of the same port, in both Marathon shapes.
#[test]
fn marathon_health_checks_become_active_checks() {
    for body in ["zdd_apps.json", "zdd_app_blue_marathon1.5.json"] {
        let t = run(&fixture(body), "*");
        assert!(!t.services.is_empty(), "{body}");
        for s in &t.services {
            let h = s
                .health
                .as_ref()
                .unwrap_or_else(|| panic!("{body}: {}", s.name));
            assert_eq!(h.kind, crate::config::CheckKind::Http, "{body}");
            assert_eq!((h.method.as_str(), h.path.as_str()), ("GET", "/"));
            assert_eq!((h.interval_ms, h.timeout_ms), (3_000, 15_000));
            assert_eq!((h.rise, h.fall), (2, 11), "maxConsecutiveFailures + 1");
            assert_eq!(s.mode, AppMode::Http, "an HTTP check makes an HTTP service");
        }
    }
}

/// `HAPROXY_{n}_BACKEND_SERVER_OPTIONS` with `send-proxy` or `send-proxy-v2` makes the
/// service send a PROXY header to its backends (the last one named wins, as in
/// HAProxy); other server options send none.
#[test]
fn send_proxy_labels() {
    use crate::config::SendProxy;
    let body = json!({"apps": [{
        "id": "/db",
        "labels": {
            "HAPROXY_GROUP": "external",
            "HAPROXY_0_BACKEND_SERVER_OPTIONS": "  check inter 2s send-proxy-v2",
            "HAPROXY_1_BACKEND_SERVER_OPTIONS": "send-proxy check",
            "HAPROXY_2_BACKEND_SERVER_OPTIONS": "send-proxy send-proxy-v2 send-proxy",
            "HAPROXY_3_BACKEND_SERVER_OPTIONS": "check maxconn 100",
        },
        "portDefinitions": [{"port": 10000}, {"port": 10001}, {"port": 10002}, {"port": 10003}],
        "tasks": [{"id": "d.1", "host": "10.1.1.1", "ports": [31001, 31002, 31003, 31004]}],
    }]})
    .to_string();
    let t = run(body.as_bytes(), "external");
    let sent: Vec<_> = t.services.iter().map(|s| s.send_proxy).collect();
    assert_eq!(
        sent,
        [
            Some(SendProxy::V2),
            Some(SendProxy::V1),
            Some(SendProxy::V1),
            None
        ]
    );
}

/// A check's `Host` is the first vhost only when it is a host name: a label carrying a
/// line break or a space would put a header of its own into every check, or fail it.
#[test]
fn a_vhost_that_is_no_host_name_leaves_the_check_on_the_address() {
    let with_vhost = |vhost: &str| {
        json!({"apps": [{
            "id": "/web",
            "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": vhost},
            "portDefinitions": [{"port": 10000}],
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0}],
            "tasks": [task("web.1", "9.0.0.1", "TASK_RUNNING", Some(true))],
        }]})
        .to_string()
        .into_bytes()
    };
    let host = |vhost: &str| {
        let t = run(&with_vhost(vhost), "external");
        let h = t.services[0].health.as_ref().expect("checked");
        h.host.clone()
    };
    assert_eq!(host("web.example"), Some("web.example".to_owned()));
    assert_eq!(host("web.example\r\nX-Injected: 1"), None);
    assert_eq!(host("web example"), None);
}

/// The recorded pre-1.5 blue/green pair, with blue (the newer deploy) given `blue`
/// healthy tasks (ports 25001…) of which the first `sick` fail their checks, and
/// labels and instance counts set as `zdd.py` leaves them mid-deploy.
fn deploy(green_instances: usize, blue: usize, sick: usize, new_label: Option<&str>) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("zdd_apps.json")).unwrap();
    let apps = v["apps"].as_array_mut().unwrap();
    let green = &mut apps[0];
    green["tasks"]
        .as_array_mut()
        .unwrap()
        .truncate(green_instances);
    green["instances"] = json!(green_instances);
    let blue_app = &mut apps[1];
    let template = blue_app["tasks"][0].clone();
    blue_app["instances"] = json!(blue);
    blue_app["labels"]["HAPROXY_DEPLOYMENT_TARGET_INSTANCES"] = json!("3");
    if let Some(n) = new_label {
        blue_app["labels"]["HAPROXY_DEPLOYMENT_NEW_INSTANCES"] = json!(n);
    }
    blue_app["tasks"] = (0..blue)
        .map(|i| {
            let mut t = template.clone();
            t["id"] = json!(format!("nginx-blue.{i}"));
            t["ports"] = json!([25001 + i]);
            t["healthCheckResults"][0]["alive"] = json!(i >= sick);
            t
        })
        .collect();
    v.to_string().into_bytes()
}

#[test]
fn blue_green_steps_keep_old_tasks_in_maintenance() {
    let maint = |body: Vec<u8>| -> Vec<String> {
        let t = run(&body, "external");
        assert_eq!(t.services.len(), 1);
        assert_eq!(t.services[0].name, "nginx_10000");
        t.services[0]
            .backends
            .iter()
            .filter(|b| b.state == TaskState::Maint)
            .map(|b| b.addr.to_string())
            .collect()
    };
    // Green (old, 3 tasks) and blue (new) with zdd.py's NEW_INSTANCES=0 and a target
    // of 3: one healthy blue task → one green task out, first by id (0dbabba6: 31184).
    assert_eq!(maint(deploy(3, 1, 0, Some("0"))), ["10.0.6.25:31184"]);
    // Two healthy blue tasks, three green: 2 + 3 - 3 = 2 may go.
    assert_eq!(
        maint(deploy(3, 2, 0, Some("0"))),
        ["10.0.6.25:31184", "10.0.6.25:16916"]
    );
    // Blue's tasks that fail their checks are not counted (nor served).
    assert_eq!(maint(deploy(3, 2, 1, Some("0"))), ["10.0.6.25:31184"]);
    assert!(maint(deploy(3, 1, 1, Some("0"))).is_empty());
    // After two green tasks were killed: 1 green, 2 blue → 2 + 1 - 3 = 0 may go…
    assert!(maint(deploy(1, 2, 0, Some("0"))).is_empty());
    // …and once blue is at its target, every green task left goes.
    assert_eq!(maint(deploy(1, 3, 0, Some("0"))), ["10.0.6.25:16916"]);
    // Without NEW_INSTANCES the target is one (the recorded fixture's case).
    assert_eq!(
        maint(deploy(3, 3, 0, None)),
        ["10.0.6.25:31184", "10.0.6.25:16916", "10.0.6.25:23336"]
    );
}

#[test]
fn hybrid_deploys_take_the_colour_scaled_last_as_new() {
    // NEW_INSTANCES=2: blue is newer by its STARTED_AT, but green was scaled last,
    // so green is the new colour: blue's task goes into maintenance (green has three
    // healthy tasks, target 3: 3 + 1 - 3 = 1).
    let mut v: Value = serde_json::from_slice(&deploy(3, 1, 0, Some("2"))).unwrap();
    v["apps"][0]["labels"]["HAPROXY_DEPLOYMENT_TARGET_INSTANCES"] = json!("3");
    v["apps"][0]["labels"]["HAPROXY_DEPLOYMENT_NEW_INSTANCES"] = json!("2");
    v["apps"][0]["versionInfo"]["lastScalingAt"] = json!("2016-02-01T23:00:00.000Z");
    let t = run(v.to_string().as_bytes(), "external");
    let b: Vec<_> = t.services[0]
        .backends
        .iter()
        .map(|b| (b.addr.to_string(), b.state))
        .collect();
    assert_eq!(b[0], ("10.0.1.147:25001".to_owned(), TaskState::Maint));
    assert!(b[1..].iter().all(|(_, s)| *s == TaskState::Serving));
    // Scaled last by blue: blue is new again, one green task out.
    v["apps"][1]["versionInfo"]["lastScalingAt"] = json!("2016-02-01T23:30:00.000Z");
    let t = run(v.to_string().as_bytes(), "external");
    let out: Vec<_> = t.services[0]
        .backends
        .iter()
        .filter(|b| b.state == TaskState::Maint)
        .map(|b| b.addr.to_string())
        .collect();
    assert_eq!(out, ["10.0.6.25:31184"]);
}

#[test]
fn server_names_as_marathon_lb_writes_them() {
    // Reached at the agent's address: `<ip>_<port>`.
    let t = run(&fixture("zdd_apps.json"), "external");
    assert_eq!(t.services[0].backends[0].name, "10_0_6_25_31184");
    // IP-per-task: the agent, then the task's address (zdd.py's `host_ip_port`).
    let mut app: Value = serde_json::from_slice(&fixture("app.json")).unwrap();
    app["tasks"] = json!([{"id": "foo.1", "host": "10.0.0.9", "ports": [31000],
                           "ipAddresses": [{"ipAddress": "9.1.1.1", "protocol": "IPv4"}],
                           "healthCheckResults": [{"alive": true}]}]);
    let body = json!({"apps": [app]}).to_string();
    let t = run(body.as_bytes(), "*");
    assert_eq!(t.services[0].backends[0].name, "10_0_0_9_9_1_1_1_80");
    // An agent known by name: its name, then the address it resolves to.
    let addr: SocketAddr = "127.0.0.1:31000".parse().unwrap();
    assert_eq!(
        task_server_name(Some("agent-1.example"), addr),
        "agent-1_example_127_0_0_1_31000"
    );
    assert_eq!(task_server_name(Some("127.0.0.1"), addr), "127_0_0_1_31000");
    assert_eq!(task_server_name(None, addr), "127_0_0_1_31000");
    // An agent's name is Marathon's text: nothing but letters, digits, `-` and `_`
    // comes out of it (no comma, line break or quote for the stats CSV).
    assert_eq!(
        task_server_name(Some("a,b\n'c\"d é"), addr),
        "a_b__c_d___127_0_0_1_31000"
    );
    let v6: SocketAddr = "[fe80::1]:31000".parse().unwrap();
    assert_eq!(task_server_name(None, v6), "fe80__1_31000");
}

/// A deployment group or an app id giving a service name HAProxy refuses is left out,
/// said why (Marathon-LB's HAProxy would not load it); so is a VIP whose name has
/// such characters. The stats CSV `zdd.py` reads is split by commas and lines: a
/// comma or a line break in a name could forge another app's rows there.
#[test]
fn names_haproxy_refuses_are_left_out() {
    let body = json!({"apps": [{
        "id": "/web-blue",
        "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_PORT": "10000",
                   "HAPROXY_DEPLOYMENT_GROUP": "web,evil\nfoo_1,bar"},
        "portDefinitions": [{"port": 10001, "labels": {"VIP_0": "/web:10001"}}],
        "tasks": [{"id": "w.1", "host": "10.1.1.1", "ports": [31001]}],
    }, {
        "id": "/a b",
        "labels": {"HAPROXY_GROUP": "external"},
        "portDefinitions": [{"port": 10002, "labels": {"VIP_0": "/x,y:10002"}}],
        "tasks": [{"id": "a.1", "host": "10.1.1.2", "ports": [31002]}],
    }, {
        "id": "/shop/fine.v2",
        "labels": {"HAPROXY_GROUP": "external"},
        "portDefinitions": [{"port": 10003}],
        "tasks": [{"id": "f.1", "host": "10.1.1.3", "ports": [31003]}],
    }]})
    .to_string();
    let t = run(body.as_bytes(), "external");
    assert_eq!(
        dump(&t),
        ["shop_fine.v2_10003 0.0.0.0:10003 Tcp Roundrobin [10.1.1.3:31003]"]
    );
    let rule = "may hold only letters, digits, '-', '_', '.' and ':' (as HAProxy's proxy names)";
    assert_eq!(
        t.left_out,
        [
            r#""VIP_0" "/x,y:10002" (app "/a b"): a VIP name may hold only letters, digits, '-', '_', '.', ':' and '/'"#.to_owned(),
            format!(r#""a b_10002" (from app id "/a b"): a service name {rule}"#),
            format!(
                r#""web,evil\nfoo_1,bar_10000" (from HAPROXY_DEPLOYMENT_GROUP "web,evil\nfoo_1,bar"): a service name {rule}"#
            ),
        ]
    );
    // A VIP is named by its label, not the app: the group's stays.
    let vips: Vec<&str> = t.vips.iter().map(|(v, _)| v.name.as_str()).collect();
    assert_eq!(vips, ["/web"]);
}

/// `HAPROXY_{n}_AUTH` and `HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL` restrict who
/// reaches port `n`: sluice has neither, so the port is left out rather than served
/// open. Labels sluice does not follow are listed once per app and label, for the
/// ports this instance serves (its group) and the app as a whole; `zdd.py`'s
/// bookkeeping labels are not among them.
#[test]
fn access_control_labels_leave_their_port_out_and_unknown_labels_are_listed() {
    let body = json!({"apps": [{
        "id": "/secure",
        "labels": {
            "HAPROXY_GROUP": "external",
            "HAPROXY_0_AUTH": "realm:user:$6$salt$hash",
            "HAPROXY_1_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8",
            "HAPROXY_2_FRONTEND_HEAD": "frontend {backend}\n  bind {bindAddr}:{servicePort}\n",
            "HAPROXY_2_HTTP_BACKEND_PROXYPASS_PATH": "/api",
            "HAPROXY_3_GROUP": "internal",
            "HAPROXY_3_BACKEND_HEAD": "backend {backend}\n  balance first\n",
            "HAPROXY_BACKEND_HEAD": "backend {backend}\n",
            "HAPROXY_DEPLOYMENT_COLOUR": "blue",
            "HAPROXY_APP_ID": "secure",
        },
        "portDefinitions": [{"port": 10000}, {"port": 10001}, {"port": 10002}, {"port": 10003}],
        "tasks": [{"id": "s.1", "host": "10.1.1.1", "ports": [31000, 31001, 31002, 31003]}],
    }, {
        "id": "/elsewhere",
        "labels": {"HAPROXY_GROUP": "internal", "HAPROXY_0_AUTH": "r:u:p",
                   "HAPROXY_0_FRONTEND_HEAD": "x"},
        "portDefinitions": [{"port": 10004}],
        "tasks": [{"id": "e.1", "host": "10.1.1.2", "ports": [31004]}],
    }]})
    .to_string();
    let ignored = |t: &Translation| -> Vec<String> {
        t.ignored
            .iter()
            .map(|l| format!("{} {}", l.app_id, l.label))
            .collect()
    };
    let refused = |name: &str, app: &str, label: &str, what: &str| {
        format!(
            "{name} (app {app}): {label} ({what}) is not supported: left out rather than \
             served without it"
        )
    };
    let t = run(body.as_bytes(), "external");
    assert_eq!(
        dump(&t),
        ["secure_10002 0.0.0.0:10002 Tcp Roundrobin [10.1.1.1:31002]"]
    );
    assert_eq!(
        t.left_out,
        [
            refused(
                "secure_10000",
                "/secure",
                "HAPROXY_0_AUTH",
                "basic authentication"
            ),
            refused(
                "secure_10001",
                "/secure",
                "HAPROXY_1_BACKEND_NETWORK_ALLOWED_ACL",
                "source address restriction"
            ),
        ]
    );
    assert_eq!(
        ignored(&t),
        [
            "/secure HAPROXY_2_FRONTEND_HEAD",
            "/secure HAPROXY_2_HTTP_BACKEND_PROXYPASS_PATH",
            "/secure HAPROXY_BACKEND_HEAD",
        ]
    );
    // The other group's instance: its own ports, its own reports.
    let t = run(body.as_bytes(), "internal");
    assert_eq!(
        dump(&t),
        ["secure_10003 0.0.0.0:10003 Tcp Roundrobin [10.1.1.1:31003]"]
    );
    assert_eq!(
        t.left_out,
        [refused(
            "elsewhere_10004",
            "/elsewhere",
            "HAPROXY_0_AUTH",
            "basic authentication"
        )]
    );
    assert_eq!(
        ignored(&t),
        [
            "/elsewhere HAPROXY_0_FRONTEND_HEAD",
            "/secure HAPROXY_3_BACKEND_HEAD",
            "/secure HAPROXY_BACKEND_HEAD",
        ]
    );
    // The recorded blue/green apps carry zdd.py's labels only.
    let t = run(&fixture("zdd_apps.json"), "external");
    assert!(t.ignored.is_empty() && t.left_out.is_empty(), "{t:?}");
}
