//! HTTP services the shared listener could never reach: one routed by vhosts or a
//! path prefix alone while `[http] listen` is not set, and one whose (vhost, path
//! prefix) another service listed before it already takes — the router sends every
//! such request to the first.

use super::parse::ConfigError;
use super::{Mode, ServiceConfig};
use std::collections::HashMap;
use std::ops::Range;

/// A place on the shared listener: a vhost (`None`: any host) and a path prefix.
type Route<'a> = (Option<&'a str>, &'a str);

/// Errors for the services of `services` (each with the span it is reported at) that
/// the shared HTTP listener cannot reach; `shared` tells whether `[http] listen` is set.
pub fn unreachable(
    services: &[(&ServiceConfig, Range<usize>)],
    shared: bool,
    text: &str,
) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    // (vhost, or None for any host; path prefix) → the first service routed there.
    let mut routes: HashMap<Route, (&str, &Range<usize>)> = HashMap::new();
    for (svc, span) in services {
        if svc.mode != Mode::Http {
            continue;
        }
        if svc.listen.is_none() && !shared {
            let msg = format!(
                "service {:?} has no listen of its own and [http] listen is not set: \
                 nothing reaches it (set [http] listen, or listen)",
                svc.name
            );
            errs.push(ConfigError::at(span.clone(), msg));
        }
        let prefix = svc.http.path_prefix.as_deref().unwrap_or("");
        let keys: Vec<Option<&str>> = if svc.http.vhosts.is_empty() {
            // A service with neither is reached on its own port only.
            if prefix.is_empty() {
                continue;
            }
            vec![None]
        } else {
            svc.http.vhosts.iter().map(|v| Some(v.as_str())).collect()
        };
        for key in keys {
            let first = *routes.entry((key, prefix)).or_insert((&svc.name, span));
            if std::ptr::eq(first.1, span) {
                continue;
            }
            let at = ConfigError::at(first.1.clone(), "").locate(text);
            let host = key.map_or_else(|| "any host".to_owned(), |v| format!("vhost {v:?}"));
            let path = if prefix.is_empty() {
                String::new()
            } else {
                format!(" and path_prefix {prefix:?}")
            };
            let msg = format!(
                "{host}{path} already routed to service {:?} at {}:{}: this service would \
                 never get those requests",
                first.0, at.line, at.column
            );
            errs.push(ConfigError::at(span.clone(), msg));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn messages(text: &str) -> Vec<String> {
        parse(text)
            .expect_err("invalid")
            .into_iter()
            .map(|e| {
                let at = e.locate(text);
                format!("{}:{}: {}", at.line, at.column, e.message)
            })
            .collect()
    }

    #[test]
    fn an_http_service_without_any_listener_is_an_error() {
        let text = "[[service]]\nname = \"web\"\nmode = \"http\"\nvhosts = [\"a.example\"]\n\
                    backends = [\"127.0.0.1:9\"]\n";
        assert_eq!(
            messages(text),
            [
                "2:8: service \"web\" has no listen of its own and [http] listen is not set: \
              nothing reaches it (set [http] listen, or listen)"
            ]
        );
        assert!(parse(&format!("[http]\nlisten = \"127.0.0.1:80\"\n{text}")).is_ok());
    }

    #[test]
    fn a_route_taken_before_is_an_error_naming_the_first() {
        let svc = |name: &str, route: &str| {
            format!(
                "[[service]]\nname = \"{name}\"\nmode = \"http\"\n{route}\nbackends = [\"127.0.0.1:9\"]\n"
            )
        };
        let text = "[http]\nlisten = \"127.0.0.1:80\"\n".to_owned()
            + &svc("a", "vhosts = [\"A.example\"]\npath_prefix = \"/x\"")
            + &svc(
                "b",
                "vhosts = [\"b.example\", \"a.EXAMPLE\"]\npath_prefix = \"/x\"",
            )
            + &svc("c", "path_prefix = \"/y\"")
            + &svc("d", "path_prefix = \"/y\"");
        assert_eq!(
            messages(&text),
            [
                "10:8: vhost \"a.example\" and path_prefix \"/x\" already routed to service \"a\" \
                 at 4:8: this service would never get those requests",
                "21:8: any host and path_prefix \"/y\" already routed to service \"c\" at 16:8: \
                 this service would never get those requests",
            ]
        );
        // Another prefix, or another host, is another route.
        let apart = "[http]\nlisten = \"127.0.0.1:80\"\n".to_owned()
            + &svc("a", "vhosts = [\"a.example\"]\npath_prefix = \"/x\"")
            + &svc("b", "vhosts = [\"a.example\"]")
            + &svc("c", "vhosts = [\"*.a.example\"]\npath_prefix = \"/x\"");
        assert!(parse(&apart).is_ok());
    }
}
