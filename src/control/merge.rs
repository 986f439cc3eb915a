//! Static services plus Marathon's, into one service list: what the registry builds.

use crate::config::{
    BackendConfig, HttpOptions, Mode, ServiceConfig, ServiceTls, DEFAULT_TABLE_SIZE,
};
use crate::marathon::apps::{AppMode, TaskBackend, TaskState, Translation};
use std::collections::HashSet;

/// The services for `static_services` and a Marathon translation. The second list
/// names what is left out: first what the translation left out (a name HAProxy would
/// refuse, access control sluice does not have), then each service whose listen
/// address or name is already taken (static services come first, then Marathon's in
/// address order, then VIPs).
pub fn merge(
    static_services: &[ServiceConfig],
    t: &Translation,
) -> (Vec<ServiceConfig>, Vec<String>) {
    let mut out: Vec<ServiceConfig> = static_services.to_vec();
    let mut conflicts = t.left_out.clone();
    let mut listens: HashSet<_> = out.iter().filter_map(|s| s.listen).collect();
    let mut names: HashSet<_> = out.iter().map(|s| s.name.clone()).collect();
    let mut push = |svc: ServiceConfig, out: &mut Vec<ServiceConfig>| {
        let listen = svc.listen.expect("Marathon services have a port");
        if listens.contains(&listen) || names.contains(&svc.name) {
            conflicts.push(format!(
                "{} on {listen}: address or name already taken",
                svc.name
            ));
            return;
        }
        listens.insert(listen);
        names.insert(svc.name.clone());
        out.push(svc);
    };
    for s in &t.services {
        let mode = match s.mode {
            AppMode::Http => Mode::Http,
            AppMode::Tcp => Mode::Tcp,
        };
        let svc = ServiceConfig {
            name: s.name.clone(),
            mode,
            listen: Some(s.listen),
            balance: s.balance,
            hash: s.hash,
            table_size: DEFAULT_TABLE_SIZE,
            backends: backend_list(&s.backends),
            draining: in_state(&s.backends, TaskState::Draining),
            maint: in_state(&s.backends, TaskState::Maint),
            server_names: server_names(&s.backends),
            http: HttpOptions {
                vhosts: s.vhosts.clone(),
                path_prefix: s.path.clone(),
                sticky: s.sticky,
                redirect_to_https: s.redirect_to_https,
                ..HttpOptions::default()
            },
            // TLS terminates on HTTP ports only: a TCP port's TLS passes through.
            tls: ServiceTls {
                terminate: s.bind_tls.is_some() && mode == Mode::Http,
                certificates: s.bind_tls.clone().unwrap_or_default(),
                sni: Vec::new(),
                acme: false,
            },
            health: s.health.clone(),
            proxy: crate::config::ServiceProxy {
                accept: Default::default(),
                send: s.send_proxy,
            },
            anycast: false,
        };
        push(svc, &mut out);
    }
    for (vip, backends) in &t.vips {
        let label = if vip.name.is_empty() {
            vip.listen.to_string()
        } else {
            vip.name.clone()
        };
        let svc = ServiceConfig {
            name: format!("vip:{label}:{}", vip.listen.port()),
            mode: Mode::Tcp,
            listen: Some(vip.listen),
            balance: crate::config::Balance::Maglev,
            hash: crate::config::HashKey::Tuple,
            table_size: DEFAULT_TABLE_SIZE,
            backends: backend_list(backends),
            draining: in_state(backends, TaskState::Draining),
            maint: in_state(backends, TaskState::Maint),
            server_names: server_names(backends),
            http: HttpOptions::default(),
            tls: ServiceTls::default(),
            health: None,
            proxy: Default::default(),
            anycast: false,
        };
        push(svc, &mut out);
    }
    (out, conflicts)
}

/// Every task's address, once.
fn backend_list(tasks: &[TaskBackend]) -> Vec<BackendConfig> {
    let mut seen = HashSet::new();
    tasks
        .iter()
        .filter(|t| seen.insert(t.addr))
        .map(|t| BackendConfig {
            addr: t.addr,
            weight: 1,
        })
        .collect()
}

/// The tasks whose server name is not the one their address gives, once each.
fn server_names(tasks: &[TaskBackend]) -> Vec<(std::net::SocketAddr, String)> {
    let mut seen = HashSet::new();
    tasks
        .iter()
        .filter(|t| seen.insert(t.addr) && t.name != crate::snapshot::server_name(t.addr))
        .map(|t| (t.addr, t.name.clone()))
        .collect()
}

/// Tasks being killed (`Draining`) or kept in maintenance by a blue/green deploy
/// (`Maint`): in the table (so the others keep their slots) but given no new
/// connection; established ones continue.
fn in_state(tasks: &[TaskBackend], state: TaskState) -> Vec<std::net::SocketAddr> {
    tasks
        .iter()
        .filter(|t| t.state == state)
        .map(|t| t.addr)
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::marathon::apps::{translate, HealthMemory, Options};

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/marathon/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    /// What the translation left out is reported as left out, before any conflict.
    #[test]
    fn what_the_translation_left_out_is_reported_with_the_conflicts() {
        let body = serde_json::json!({"apps": [{
            "id": "/locked",
            "labels": {"HAPROXY_0_AUTH": "realm:user:hash"},
            "portDefinitions": [{"port": 10000}],
            "tasks": [{"id": "l.1", "host": "10.0.0.1", "ports": [31000]}],
        }, {
            "id": "/taken",
            "portDefinitions": [{"port": 10001}],
            "tasks": [{"id": "t.1", "host": "10.0.0.2", "ports": [31001]}],
        }]})
        .to_string();
        let opts = Options {
            group: "*".into(),
            bind_address: "127.0.0.1".parse().unwrap(),
            vip_network: ("127.11.0.0".parse().unwrap(), 16),
            health_check: true,
        };
        let t = translate(body.as_bytes(), &opts, &mut HealthMemory::new()).unwrap();
        let file = crate::config::parse(
            "[[service]]\nname = \"static\"\nlisten = \"127.0.0.1:10001\"\n\
             backends = [\"127.0.0.1:9\"]\n",
        )
        .unwrap();
        let (services, left_out) = super::merge(&file.services, &t);
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["static"]);
        assert_eq!(
            left_out,
            [
                "locked_10000 (app /locked): HAPROXY_0_AUTH (basic authentication) is not \
                 supported: left out rather than served without it",
                "taken_10001 on 127.0.0.1:10001: address or name already taken",
            ]
        );
    }

    /// The recorded blue/green pair: one service, the old colour's first task by id
    /// kept in maintenance (not draining: no deadline), every server named by its
    /// address (BRIDGE tasks on agents known by address).
    #[test]
    fn a_deployment_group_is_one_service_with_its_maintenance() {
        let opts = Options {
            group: "external".into(),
            bind_address: "0.0.0.0".parse().unwrap(),
            vip_network: ("127.11.0.0".parse().unwrap(), 16),
            health_check: true,
        };
        let t = translate(&fixture("zdd_apps.json"), &opts, &mut HealthMemory::new()).unwrap();
        let (services, conflicts) = super::merge(&[], &t);
        assert!(conflicts.is_empty());
        assert_eq!(services.len(), 1);
        let s = &services[0];
        assert_eq!(s.name, "nginx_10000");
        assert_eq!(s.backends.len(), 4);
        assert_eq!(s.maint, ["10.0.6.25:31184".parse().unwrap()]);
        assert!(s.draining.is_empty());
        assert!(s.server_names.is_empty());
        // IP-per-task: named `<host>_<ip>_<port>`.
        let mut app: serde_json::Value = serde_json::from_slice(&fixture("app.json")).unwrap();
        app["tasks"] = serde_json::json!([{"id": "foo.1", "host": "10.0.0.9", "ports": [31000],
            "ipAddresses": [{"ipAddress": "9.1.1.1", "protocol": "IPv4"}],
            "healthCheckResults": [{"alive": true}]}]);
        let body = serde_json::json!({ "apps": [app] }).to_string();
        let opts = Options {
            group: "*".into(),
            ..opts
        };
        let t = translate(body.as_bytes(), &opts, &mut HealthMemory::new()).unwrap();
        let (services, _) = super::merge(&[], &t);
        assert_eq!(
            services[0].server_names,
            [(
                "9.1.1.1:80".parse().unwrap(),
                "10_0_0_9_9_1_1_1_80".to_owned()
            )]
        );
    }
}
