//! `sluice check` and the PROXY protocol keys: the effective configuration prints
//! them, and every mistake is reported at its file, line and column.

mod common;

use common::sluice_check as check;

#[test]
fn the_effective_config_prints_the_proxy_keys() {
    let (code, out, err) = check(
        "[http]\nlisten = \"127.0.0.1:8080\"\naccept_proxy = true\n\
         proxy_trusted = [\"10.0.0.0/8\", \"192.168.1.7\", \"2001:db8::/32\"]\n\n\
         [https]\nlisten = \"127.0.0.1:8443\"\naccept_proxy = true\nproxy_trusted = [\"0.0.0.0/0\"]\n\n\
         [[service]]\nname = \"db\"\nlisten = \"127.0.0.1:5432\"\naccept_proxy = true\n\
         proxy_trusted = [\"10.1.0.0/16\"]\nsend_proxy = \"v2\"\nbackends = [\"127.0.0.1:9001\"]\n\n\
         [[service]]\nname = \"web\"\nmode = \"http\"\nvhosts = [\"web.example\"]\n\
         send_proxy = \"v1\"\nbackends = [\"127.0.0.1:9002\"]\n",
    );
    assert_eq!(code, 0, "{err}");
    for line in [
        "proxy_trusted = [\"10.0.0.0/8\", \"192.168.1.7/32\", \"2001:db8::/32\"]",
        "proxy_trusted = [\"0.0.0.0/0\"]",
        "proxy_trusted = [\"10.1.0.0/16\"]",
        "send_proxy = \"v2\"",
        "send_proxy = \"v1\"",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    assert_eq!(out.matches("accept_proxy = true").count(), 3, "{out}");
    // What it prints parses back to the same.
    let (code, again, err) = check(&out);
    assert_eq!(code, 0, "{err}");
    let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&again), body(&out), "the first line names the file");
}

#[test]
fn proxy_key_errors_are_located() {
    let text = "\
[http]
accept_proxy = true
proxy_trusted = [\"10.0.0.0/8\"]

[https]
listen = \"127.0.0.1:8443\"
accept_proxy = true

[[service]]
name = \"a\"
listen = \"127.0.0.1:10000\"
accept_proxy = true
proxy_trusted = [\"10.0.0.1/8\", \"10.0.0.0/33\", \"nope\"]
send_proxy = \"v3\"
backends = [\"127.0.0.1:9001\"]

[[service]]
name = \"b\"
mode = \"http\"
vhosts = [\"b.example\"]
accept_proxy = true
proxy_trusted = [\"10.0.0.0/8\"]
backends = [\"127.0.0.1:9001\"]

[[service]]
name = \"c\"
listen = \"127.0.0.1:10001\"
proxy_trusted = []
backends = [\"127.0.0.1:9001\"]
";
    let (code, out, err) = check(text);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = err
        .lines()
        .map(|l| l.strip_prefix("sluice: ").unwrap_or(l))
        .collect();
    assert_eq!(
        errors,
        [
            "FILE:2:16: accept_proxy needs [http] listen",
            "FILE:7:16: accept_proxy needs proxy_trusted: the sources allowed to send a PROXY \
             header (connections from anywhere else are closed)",
            "FILE:13:18: \"10.0.0.1/8\" has address bits set past its /8: write 10.0.0.0/8",
            "FILE:13:32: prefix length must be 0 to 32, got \"10.0.0.0/33\"",
            "FILE:13:47: proxy_trusted entries are CIDRs (10.0.0.0/8, 2001:db8::/32) or \
             addresses, got \"nope\"",
            "FILE:14:14: send_proxy must be \"v1\" (HAProxy's send-proxy) or \"v2\" \
             (send-proxy-v2), got \"v3\"",
            "FILE:21:16: accept_proxy needs listen: a service without one is reached through \
             [http] or [https] listen, whose accept_proxy applies",
            "FILE:28:17: proxy_trusted needs accept_proxy = true",
        ]
    );
}
