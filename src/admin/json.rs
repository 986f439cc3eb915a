//! `/_haproxy_getconfig` (the effective services), `/v1/vips` (named VIPs) and
//! `/haproxy?stats;json` (the stats page's figures), as JSON.

use crate::snapshot::{Service, Snapshot};
use serde_json::{json, Value};

fn backends(svc: &Service) -> Vec<Value> {
    svc.backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "addr": b.addr.to_string(),
                "draining": svc.draining[i],
                // Kept in maintenance by a blue/green deploy (then also draining).
                "maint": svc.maint[i],
            })
        })
        .collect()
}

pub fn config(snap: &Snapshot) -> String {
    let services: Vec<Value> = snap
        .services
        .iter()
        .map(|s| {
            json!({
                "name": s.config.name,
                "mode": match s.config.mode {
                    crate::config::Mode::Tcp => "tcp",
                    crate::config::Mode::Http => "http",
                },
                "listen": s.local.map(|l| l.to_string()),
                "balance": format!("{:?}", s.config.balance).to_lowercase(),
                "hash": format!("{:?}", s.config.hash).to_lowercase(),
                "table_size": s.config.table_size,
                "backends": backends(s),
            })
        })
        .collect();
    json!({"generation": snap.generation, "services": services}).to_string()
}

/// `/haproxy?stats;json`: the stats page's figures.
pub fn stats(stats: &super::figures::Stats) -> String {
    serde_json::to_string(stats).unwrap_or_else(|e| json!({"error": e.to_string()}).to_string())
}

/// Named VIP services are called `vip:<name>:<port>`.
pub fn vips(snap: &Snapshot) -> String {
    let vips: Vec<Value> = snap
        .services
        .iter()
        .filter_map(|s| {
            let rest = s.config.name.strip_prefix("vip:")?;
            let (name, _) = rest.rsplit_once(':')?;
            let dns = name
                .starts_with('/')
                .then(|| format!("{}.marathon.l4lb.thisdcos.directory", name.replace('/', "")));
            Some(json!({
                "vip": format!("{name}:{}", s.local.map_or(0, |l| l.port())),
                "address": s.local.map(|l| l.to_string()),
                "dns": dns,
                "backends": backends(s),
            }))
        })
        .collect();
    Value::Array(vips).to_string()
}

/// `/_haproxy_getpids`: a JSON list with a space after each comma. Marathon-LB's page
/// printed `pidof haproxy` and `zdd.py` counts its whitespace-separated words (more
/// than one: a reload in progress), so the list must count the same that way.
pub fn pids(pids: &[u32]) -> String {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    format!("[{}]\n", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_json_and_count_as_zdd_counts_them() {
        for list in [vec![], vec![7], vec![7, 4012]] {
            let body = pids(&list);
            let parsed: Vec<u32> = serde_json::from_str(&body).expect("JSON");
            assert_eq!(parsed, list);
            // zdd.py: more than one whitespace-separated word means a reload runs.
            assert_eq!(body.split_whitespace().count(), list.len().max(1));
        }
    }
}
