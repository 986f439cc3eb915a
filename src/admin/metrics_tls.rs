//! `/metrics`: TLS (handshakes, failures, passthrough, the certificates in use), ACME
//! (orders, the certificates it keeps) and the PROXY protocol, per shard.

use super::metrics::{esc, Family};
use crate::snapshot::Snapshot;
use crate::stats::{PerShard, ShardCounters};

pub(super) fn families(
    snap: &Snapshot,
    shards: &PerShard<ShardCounters>,
    acme: &crate::acme::AcmeStats,
) -> Vec<Family> {
    let mut tls = Vec::from(tls_families(shards));
    let mut expiry = Family::new(
        "sluice_tls_certificate_not_after_seconds",
        "gauge",
        "When each certificate in use ends (Unix time), by file and first name.",
    );
    for c in snap.certificates.iter() {
        let l = format!("file=\"{}\",name=\"{}\"", esc(&c.file), esc(&c.name));
        expiry.samples.push((l, c.not_after_unix));
    }
    tls.push(expiry);
    tls.extend(acme_families(acme));
    tls.extend(proxy_families(shards));
    tls
}

/// TLS on each shard: handshakes (full, resumed), their versions, failures by reason,
/// connections passed through by SNI.
fn tls_families(shards: &PerShard<ShardCounters>) -> [Family; 4] {
    let mut hs = Family::new(
        "sluice_tls_handshakes_total",
        "counter",
        "Completed TLS handshakes, full or resumed (a session ticket).",
    );
    let mut versions = Family::new(
        "sluice_tls_handshake_versions_total",
        "counter",
        "Completed TLS handshakes by negotiated version.",
    );
    let mut failures = Family::new(
        "sluice_tls_failures_total",
        "counter",
        "TLS connections that failed before their handshake finished, by reason.",
    );
    let mut passthrough = Family::new(
        "sluice_tls_passthrough_total",
        "counter",
        "TLS connections of [https] listen passed through untouched by SNI.",
    );
    for (i, c) in shards.iter().enumerate() {
        let t = &c.tls;
        for (k, kind) in ["full", "resumed"].iter().enumerate() {
            let l = format!("shard=\"{i}\",kind=\"{kind}\"");
            hs.samples.push((l, t.handshakes[k].get() as i64));
        }
        for (k, v) in ["1.2", "1.3"].iter().enumerate() {
            let l = format!("shard=\"{i}\",version=\"{v}\"");
            versions.samples.push((l, t.versions[k].get() as i64));
        }
        for f in crate::stats::TlsFailure::ALL {
            let l = format!("shard=\"{i}\",reason=\"{}\"", f.name());
            failures
                .samples
                .push((l, t.failures[f as usize].get() as i64));
        }
        let l = format!("shard=\"{i}\"");
        passthrough.samples.push((l, t.passthrough.get() as i64));
    }
    [hs, versions, failures, passthrough]
}

/// PROXY protocol headers received on each shard: accepted by version, refused by
/// reason.
fn proxy_families(shards: &PerShard<ShardCounters>) -> [Family; 2] {
    let mut headers = Family::new(
        "sluice_proxy_protocol_headers_total",
        "counter",
        "PROXY protocol headers accepted on accept_proxy listeners, by version.",
    );
    let mut errors = Family::new(
        "sluice_proxy_protocol_errors_total",
        "counter",
        "Connections to accept_proxy listeners closed for their PROXY header, by reason.",
    );
    for (i, c) in shards.iter().enumerate() {
        let p = &c.proxy;
        for (k, v) in ["1", "2"].iter().enumerate() {
            let l = format!("shard=\"{i}\",version=\"{v}\"");
            headers.samples.push((l, p.headers[k].get() as i64));
        }
        for f in crate::stats::proxy::ProxyFailure::all() {
            let l = format!("shard=\"{i}\",reason=\"{}\"", f.name());
            errors.samples.push((l, p.failures[f.index()].get() as i64));
        }
    }
    [headers, errors]
}

/// ACME: orders by outcome, and when each vhost set's certificate ends.
fn acme_families(acme: &crate::acme::AcmeStats) -> [Family; 2] {
    let mut orders = Family::new(
        "sluice_acme_orders_total",
        "counter",
        "ACME orders by result: success (a certificate written) or failure (the one in use stays).",
    );
    orders
        .samples
        .push(("result=\"success\"".into(), acme.orders_ok.get() as i64));
    orders
        .samples
        .push(("result=\"failure\"".into(), acme.orders_failed.get() as i64));
    let mut expiry = Family::new(
        "sluice_acme_certificate_expiry_seconds",
        "gauge",
        "When the certificate ACME obtained for each vhost set ends (Unix time).",
    );
    if let Ok(list) = acme.expiry.lock() {
        for (names, not_after) in list.iter() {
            let l = format!("names=\"{}\"", esc(names));
            expiry.samples.push((l, *not_after));
        }
    }
    [orders, expiry]
}
