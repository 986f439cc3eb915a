//! An app's Marathon health check → sluice's active check of that service port, the
//! way Marathon-LB derives HAProxy's `option httpchk` and server `check` options.
//! Pure: JSON and labels in, a [`HealthCheck`] out.
//!
//! - The first of the app's `healthChecks` whose `portIndex` is the service port's
//!   index (a check naming neither `portIndex` nor `port` is Marathon's index 0), or
//!   whose `port` is the service port.
//! - `HTTP`, `MESOS_HTTP` → an HTTP check (`GET` its `path`, default `/`) of an HTTP
//!   service, a TCP check of a TCP one (Marathon-LB writes `option httpchk` in HTTP
//!   mode only); `TCP`, `MESOS_TCP` → a TCP check; any other protocol (`COMMAND`,
//!   `HTTPS`, …) gives no check, as in Marathon-LB.
//! - `intervalSeconds` → the interval, `timeoutSeconds` → the timeout,
//!   `maxConsecutiveFailures + 1` → `fall` (Marathon-LB's `healthCheckFalls`), with
//!   Marathon's defaults (60 s, 20 s, 3) for the fields left out; `rise` is HAProxy's 2.
//! - Marathon-LB's labels override that, in HAProxy's words, with its placeholders
//!   (`{healthCheckPath}`, `{healthCheckIntervalSeconds}`, …) filled in:
//!   `HAPROXY_{n}_BACKEND_HTTP_HEALTHCHECK_OPTIONS` / `…_TCP_…` (`option httpchk
//!   [METHOD] URI`, `timeout check T`, `http-check expect status N`) and
//!   `HAPROXY_{n}_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS` / `…_TCP_…` (`check`,
//!   `inter T`, `rise N`, `fall N`, `slowstart T`). A server-options label without
//!   `check` turns the check off, as the server line HAProxy gets would have none.
//!   Other words (`port`, `fastinter`, …) are ignored.

use crate::config::{CheckKind, HealthCheck};
use serde_json::Value;

/// Marathon's defaults for a health check's fields.
const MARATHON_INTERVAL_S: u64 = 60;
const MARATHON_TIMEOUT_S: u64 = 20;
const MARATHON_MAX_FAILURES: u64 = 3;
/// The longest interval or timeout taken from Marathon, as from a file.
const HOUR_S: u64 = 3600;

/// The check of service port `n` (service port `service_port`) of `app`, an HTTP
/// service when `http`.
pub fn derive(
    app: &Value,
    labels: &Value,
    n: usize,
    service_port: Option<u16>,
    http: bool,
) -> Option<HealthCheck> {
    let hc = first_check(app, n, service_port)?;
    let kind = match hc.get("protocol").and_then(Value::as_str).unwrap_or("HTTP") {
        "HTTP" | "MESOS_HTTP" if http => CheckKind::Http,
        "HTTP" | "MESOS_HTTP" => CheckKind::Tcp,
        "TCP" | "MESOS_TCP" => CheckKind::Tcp,
        _ => return None,
    };
    // Bounded as a file's `[service.health]` is: Marathon's numbers are anyone's.
    let secs = |k: &str, d: u64| hc.get(k).and_then(Value::as_u64).unwrap_or(d).min(HOUR_S);
    let interval_s = secs("intervalSeconds", MARATHON_INTERVAL_S);
    let timeout_s = secs("timeoutSeconds", MARATHON_TIMEOUT_S);
    let max_failures = secs("maxConsecutiveFailures", MARATHON_MAX_FAILURES).min(98);
    let path = hc
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| crate::config::is_check_path(p))
        .unwrap_or("/");
    let mut check = HealthCheck::new(kind);
    check.path = path.to_owned();
    check.interval_ms = (interval_s * 1000).clamp(100, 3_600_000);
    check.timeout_ms = (timeout_s * 1000).clamp(1, 3_600_000);
    check.fall = (max_failures + 1) as u32;
    let fill = |template: &str| {
        template
            .replace("{healthCheckPath}", path)
            .replace("{healthCheckIntervalSeconds}", &interval_s.to_string())
            .replace("{healthCheckTimeoutSeconds}", &timeout_s.to_string())
            .replace("{healthCheckFalls}", &(max_failures + 1).to_string())
            .replace(
                "{healthCheckMaxConsecutiveFailures}",
                &max_failures.to_string(),
            )
            .replace("{healthCheckPortOptions}", "")
    };
    let label = |k: &str| {
        labels
            .get(format!("HAPROXY_{n}_{k}"))
            .and_then(Value::as_str)
    };
    let (backend, server) = match kind {
        CheckKind::Http => (
            "BACKEND_HTTP_HEALTHCHECK_OPTIONS",
            "BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS",
        ),
        CheckKind::Tcp => (
            "BACKEND_TCP_HEALTHCHECK_OPTIONS",
            "BACKEND_SERVER_TCP_HEALTHCHECK_OPTIONS",
        ),
    };
    if let Some(t) = label(backend) {
        backend_options(&fill(t), &mut check);
    }
    if let Some(t) = label(server) {
        if !server_options(&fill(t), &mut check) {
            return None;
        }
    }
    Some(check)
}

/// The first check for service port `n`.
fn first_check(app: &Value, n: usize, service_port: Option<u16>) -> Option<&Value> {
    app.get("healthChecks")?.as_array()?.iter().find(|hc| {
        let index = hc.get("portIndex").and_then(Value::as_u64);
        let port = hc.get("port").and_then(Value::as_u64);
        match (index, port) {
            (Some(i), _) => i == n as u64,
            (None, Some(p)) => service_port.is_some_and(|s| u64::from(s) == p),
            (None, None) => n == 0,
        }
    })
}

/// `option httpchk [METHOD] URI [VERSION]`, `timeout check T`,
/// `http-check expect status N`.
fn backend_options(text: &str, check: &mut HealthCheck) {
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["option", "httpchk", uri] => check.path = (*uri).to_owned(),
            ["option", "httpchk", method, uri, ..] => {
                check.method = (*method).to_owned();
                check.path = (*uri).to_owned();
            }
            ["timeout", "check", t] => {
                if let Some(ms) = haproxy_ms(t) {
                    check.timeout_ms = ms.clamp(1, 3_600_000);
                }
            }
            ["http-check", "expect", "status", code] => {
                if let Some(range) = crate::config::parse_expect(code) {
                    check.expect = range;
                }
            }
            _ => {}
        }
    }
    if !crate::config::is_check_path(&check.path) {
        check.path = "/".into();
    }
    if !crate::config::is_check_method(&check.method) {
        check.method = "GET".into();
    }
}

/// `check inter T rise N fall N slowstart T`; false when `check` is absent.
fn server_options(text: &str, check: &mut HealthCheck) -> bool {
    let w: Vec<&str> = text.split_whitespace().collect();
    let mut checked = false;
    for (i, word) in w.iter().enumerate() {
        let next = w.get(i + 1).copied().unwrap_or("");
        let count = || next.parse::<u32>().ok().filter(|n| (1..100).contains(n));
        match *word {
            "check" => checked = true,
            "inter" => {
                if let Some(ms) = haproxy_ms(next) {
                    check.interval_ms = ms.clamp(100, 3_600_000);
                }
            }
            "slowstart" => {
                if let Some(ms) = haproxy_ms(next) {
                    check.slowstart_ms = ms.min(3_600_000);
                }
            }
            "rise" => check.rise = count().unwrap_or(check.rise),
            "fall" => check.fall = count().unwrap_or(check.fall),
            _ => {}
        }
    }
    checked
}

/// An HAProxy time: a number of ms, or with a unit (`us`, `ms`, `s`, `m`, `h`, `d`).
fn haproxy_ms(t: &str) -> Option<u64> {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = t[..digits].parse().ok()?;
    let ms = match &t[digits..] {
        "" | "ms" => n,
        "us" => n / 1000,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(checks: Value) -> Value {
        json!({ "id": "/web", "healthChecks": checks })
    }

    #[test]
    fn an_http_check_becomes_httpchk_with_marathon_lbs_falls() {
        let a = app(json!([{
            "path": "/health", "protocol": "MESOS_HTTP", "portIndex": 0,
            "intervalSeconds": 3, "timeoutSeconds": 15, "maxConsecutiveFailures": 10
        }]));
        let c = derive(&a, &Value::Null, 0, Some(10000), true).expect("checked");
        assert_eq!(c.kind, CheckKind::Http);
        assert_eq!((c.method.as_str(), c.path.as_str()), ("GET", "/health"));
        assert_eq!((c.interval_ms, c.timeout_ms), (3_000, 15_000));
        assert_eq!((c.rise, c.fall), (2, 11));
        assert!(
            derive(&a, &Value::Null, 1, Some(10001), true).is_none(),
            "port 1 has none"
        );
        let tcp = derive(&a, &Value::Null, 0, Some(10000), false).expect("checked");
        assert_eq!(
            (tcp.kind, tcp.fall),
            (CheckKind::Tcp, 11),
            "a TCP service: L4"
        );
    }

    #[test]
    fn port_index_or_port_selects_the_service_port_and_command_checks_give_none() {
        let a = app(json!([
            {"protocol": "COMMAND", "command": {"value": "true"}},
            {"protocol": "TCP", "portIndex": 1, "maxConsecutiveFailures": 0},
            {"protocol": "HTTP", "port": 10002}
        ]));
        assert!(
            derive(&a, &Value::Null, 0, Some(10000), true).is_none(),
            "COMMAND"
        );
        let tcp = derive(&a, &Value::Null, 1, Some(10001), true).expect("index 1");
        assert_eq!((tcp.kind, tcp.fall), (CheckKind::Tcp, 1));
        assert_eq!(
            (tcp.interval_ms, tcp.timeout_ms),
            (60_000, 20_000),
            "Marathon's defaults"
        );
        let http = derive(&a, &Value::Null, 2, Some(10002), true).expect("port 10002");
        assert_eq!(http.kind, CheckKind::Http);
    }

    /// A path from the app or from a label that a request line cannot carry as it is
    /// (a DEL, a byte past ASCII, a space or a CR/LF) falls back to `/`, by the file's
    /// rule.
    #[test]
    fn paths_a_request_line_cannot_carry_fall_back_to_the_root() {
        for bad in ["/a\u{7f}b", "/caf\u{e9}", "/a b", "/a\r\nX: y", "relative"] {
            let a = app(json!([{"protocol": "HTTP", "path": bad}]));
            let c = derive(&a, &Value::Null, 0, Some(10000), true).expect("checked");
            assert_eq!(c.path, "/", "app path {bad:?}");
            let labels = json!({
                "HAPROXY_0_BACKEND_HTTP_HEALTHCHECK_OPTIONS": format!("  option httpchk GET {bad}\n")
            });
            let a = app(json!([{"protocol": "HTTP", "path": "/ok"}]));
            let c = derive(&a, &labels, 0, Some(10000), true).expect("checked");
            assert!(
                crate::config::is_check_path(&c.path),
                "label path {bad:?}: {:?}",
                c.path
            );
        }
    }

    #[test]
    fn marathon_lb_labels_override_in_haproxys_words() {
        let a = app(
            json!([{"protocol": "HTTP", "path": "/ping", "intervalSeconds": 5,
                             "maxConsecutiveFailures": 2}]),
        );
        let labels = json!({
            "HAPROXY_0_BACKEND_HTTP_HEALTHCHECK_OPTIONS":
                "  option  httpchk HEAD {healthCheckPath}/deep\n  timeout check 750ms\n  http-check expect status 204\n",
            "HAPROXY_0_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS":
                "  check inter {healthCheckIntervalSeconds}s fall {healthCheckFalls} rise 4 slowstart 30s{healthCheckPortOptions}\n"
        });
        let c = derive(&a, &labels, 0, Some(10000), true).expect("checked");
        assert_eq!((c.method.as_str(), c.path.as_str()), ("HEAD", "/ping/deep"));
        assert_eq!((c.timeout_ms, c.expect), (750, (204, 204)));
        assert_eq!((c.interval_ms, c.fall, c.rise), (5_000, 3, 4));
        assert_eq!(c.slowstart_ms, 30_000);
        let off = json!({"HAPROXY_0_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS": ""});
        assert!(
            derive(&a, &off, 0, Some(10000), true).is_none(),
            "no `check`: not checked"
        );
    }

    /// Numbers from Marathon are bounded as a file's are: no overflow, fall at most 99.
    #[test]
    fn huge_numbers_from_marathon_are_bounded() {
        let a = app(json!([{
            "path": "/health", "protocol": "HTTP", "portIndex": 0,
            "intervalSeconds": u64::MAX / 10, "timeoutSeconds": u64::MAX,
            "maxConsecutiveFailures": u64::MAX
        }]));
        let labels = json!({
            "HAPROXY_0_BACKEND_SERVER_HTTP_HEALTHCHECK_OPTIONS":
                "  check inter {healthCheckIntervalSeconds}s fall {healthCheckFalls}\n"
        });
        for l in [Value::Null, labels] {
            let c = derive(&a, &l, 0, Some(10000), true).expect("checked");
            assert_eq!((c.interval_ms, c.timeout_ms), (3_600_000, 3_600_000));
            assert_eq!(c.fall, 99);
        }
    }

    #[test]
    fn haproxy_times() {
        assert_eq!(haproxy_ms("2000"), Some(2000));
        assert_eq!(haproxy_ms("2s"), Some(2000));
        assert_eq!(haproxy_ms("1m"), Some(60_000));
        assert_eq!(haproxy_ms("500ms"), Some(500));
        assert_eq!(haproxy_ms("fast"), None);
        assert_eq!(haproxy_ms("3x"), None);
    }
}
