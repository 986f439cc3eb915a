//! ACME end to end, on both I/O backends, against a real ACME server: pebble, with
//! pebble-challtestsrv as its DNS, validating for real against sluice's `[http]`
//! (HTTP-01) and `[https]` (TLS-ALPN-01) listeners on loopback. Then curl, trusting
//! pebble's root alone, checks the certificate served for the vhost.

mod common;

use common::acme::{curl_trusting, free_port, Pebble};
use common::http::{raw, status, HttpServer};
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

both_io!(
    http01_first_issuance_then_a_restart_orders_nothing,
    tls_alpn01_first_issuance,
    a_challenge_the_server_cannot_reach_names_the_vhost_and_the_challenge,
    pebble_unavailable_keeps_the_certificate_and_retries_with_backoff,
    renewal_at_two_thirds_of_the_lifetime_fails_no_request,
    two_hosts_sharing_state_dir_order_once_and_either_answers,
    https_acme_obtains_a_certificate_for_a_marathon_apps_vhost,
    http01_answers_a_get_or_head_of_a_pending_token_exactly_and_nothing_else,
);

/// sluice's ports, chosen before pebble's config names them.
struct Ports {
    http: u16,
    https: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            http: free_port(),
            https: free_port(),
        }
    }

    fn https(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.https))
    }
}

fn config(
    io: &str,
    ports: &Ports,
    pebble: &Pebble,
    state: &Path,
    challenge: &str,
    backend: SocketAddr,
) -> String {
    server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &format!("[http]\nlisten = \"127.0.0.1:{}\"\n", ports.http)
        + &format!("[https]\nlisten = \"127.0.0.1:{}\"\nacme = true\n", ports.https)
        + &format!(
            "[acme]\ndirectory = {:?}\ncontact = [\"mailto:ops@shop.example\"]\nstate_dir = {:?}\n\
             challenge = \"{challenge}\"\nca_bundle = {:?}\nretry_initial_ms = 300\nretry_max_ms = 2000\n",
            pebble.directory,
            state.display().to_string(),
            pebble.listener_ca.display().to_string(),
        )
        + &format!(
            "[[service]]\nname = \"shop\"\nmode = \"http\"\nvhosts = [\"shop.example\"]\nbackends = [\"{backend}\"]\n"
        )
}

/// What a test runs: pebble validating on sluice's ports, and sluice.
struct Setup {
    pebble: Pebble,
    lb: Sluice,
    ports: Ports,
}

/// Start pebble, then sluice on the ports pebble validates (chosen before either
/// starts). A port another process took meanwhile makes sluice exit: both start
/// again on new ports (twice at most). With `reachable` false, pebble validates
/// HTTP-01 on a port where nothing listens. `edit` changes the config written.
fn start(
    io: &str,
    validity_secs: Option<u64>,
    challenge: &str,
    reachable: bool,
    state: &Path,
    backend: SocketAddr,
    edit: impl Fn(String) -> String,
) -> Setup {
    for attempt in 0.. {
        let ports = Ports::new();
        let http = if reachable { ports.http } else { free_port() };
        let pebble = Pebble::start(http, ports.https, validity_secs);
        let cfg = edit(config(io, &ports, &pebble, state, challenge, backend));
        match Sluice::try_start(&cfg) {
            Ok(lb) => return Setup { pebble, lb, ports },
            Err(log) if attempt < 2 && log.contains("address already in use") => continue,
            Err(log) => panic!("sluice exited: {log}"),
        }
    }
    unreachable!()
}

fn orders(lb: &Sluice, result: &str) -> f64 {
    metric_where(
        lb.admin(),
        "sluice_acme_orders_total",
        &format!("result=\"{result}\""),
    )
}

/// Wait until curl, trusting pebble's root alone, is served by the shop backend.
fn trusted(root: &Path, addr: SocketAddr) {
    wait_for("the ACME certificate to be served", || {
        let (ok, body, _) = curl_trusting(root, addr, "shop.example");
        (ok && body == "shop").then_some(())
    });
}

/// HTTP-01: pebble asks sluice's `[http]` listener for the token; the certificate is
/// obtained, written to `state_dir` (0600) and served without a restart; its expiry
/// is on `/metrics`; a token not pending falls through to routing (404). A restart
/// serves the certificate from `state_dir` and places no order.
fn http01_first_issuance_then_a_restart_orders_nothing(io: &str) {
    let state = tempfile::tempdir().unwrap();
    let shop = HttpServer::start("shop");
    let Setup { pebble, lb, ports } =
        start(io, None, "http-01", true, state.path(), shop.addr, |c| c);
    let root = pebble.root();
    trusted(&root, ports.https());
    lb.wait_log("obtained", |l| {
        l.contains("certificate obtained") && l.contains("shop.example") && l.contains("http-01")
    });
    assert_eq!(orders(&lb, "success"), 1.0);
    assert_eq!(orders(&lb, "failure"), 0.0);
    let expiry = metric_where(
        lb.admin(),
        "sluice_acme_certificate_expiry_seconds",
        "names=\"shop.example\"",
    );
    assert!(expiry > 1.7e9, "expiry gauge: {expiry}");
    let file = state.path().join("certs/shop.example.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // A token that is not pending is routed like any path: no service has it.
    let http = SocketAddr::from(([127, 0, 0, 1], ports.http));
    let stray = raw(
        http,
        b"GET /.well-known/acme-challenge/nothing HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&stray), 404, "{stray}");
    let first = std::fs::read(&file).unwrap();
    drop(lb);

    // No validation is needed now: ports the OS chooses (the ones pebble knows may
    // have been taken by another test since).
    let anywhere = Ports { http: 0, https: 0 };
    let lb = Sluice::start(&config(
        io,
        &anywhere,
        &pebble,
        state.path(),
        "http-01",
        shop.addr,
    ));
    trusted(&root, lb.https());
    // The certificate due in years stays; nothing is ordered.
    assert_eq!(orders(&lb, "success"), 0.0);
    assert_eq!(std::fs::read(&file).unwrap(), first);
    assert_eq!(lb.count_log(|l| l.contains("ordering")), 0);
}

/// TLS-ALPN-01: pebble connects to sluice's `[https]` listener offering only
/// `acme-tls/1` and gets the challenge certificate; the issued one is then served.
fn tls_alpn01_first_issuance(io: &str) {
    let state = tempfile::tempdir().unwrap();
    let shop = HttpServer::start("shop");
    let Setup { pebble, lb, ports } = start(
        io,
        None,
        "tls-alpn-01",
        true,
        state.path(),
        shop.addr,
        |c| c,
    );
    trusted(&pebble.root(), ports.https());
    lb.wait_log("obtained", |l| {
        l.contains("certificate obtained") && l.contains("tls-alpn-01")
    });
    assert_eq!(orders(&lb, "success"), 1.0);
    // With nothing pending, a validation-like hello gets no certificate at all (not
    // the served one), counted as such; other clients are served as before.
    let refused = || metric_where(lb.admin(), "sluice_tls_failures_total", "no_certificate");
    let before = refused();
    let out = common::tls::s_client(
        ports.https(),
        &["-servername", "shop.example", "-alpn", "acme-tls/1"],
        "",
    );
    assert!(!out.contains("BEGIN CERTIFICATE"), "{out}");
    wait_for("the refusal counted", || (refused() > before).then_some(()));
    let (ok, body, err) = curl_trusting(&pebble.root(), ports.https(), "shop.example");
    assert!(ok && body == "shop", "{err}");
}

/// pebble validates HTTP-01 on a port where nothing listens: the order fails with an
/// error naming the vhost and the challenge, counted, and is retried (back-off).
fn a_challenge_the_server_cannot_reach_names_the_vhost_and_the_challenge(io: &str) {
    let state = tempfile::tempdir().unwrap();
    let shop = HttpServer::start("shop");
    let Setup {
        lb,
        pebble: _pebble, // running until the test ends
        ..
    } = start(io, None, "http-01", false, state.path(), shop.addr, |c| c);
    let line = lb.wait_log("the failed validation", |l| {
        l.contains("certificate not obtained")
    });
    assert!(
        line.contains("the http-01 challenge for shop.example failed"),
        "{line}"
    );
    wait_for("a retry after the back-off", || {
        (orders(&lb, "failure") >= 2.0).then_some(())
    });
    assert_eq!(orders(&lb, "success"), 0.0);
    assert!(!state.path().join("certs/shop.example.pem").exists());
}

/// pebble stops while a certificate is due for renewal: every renewal fails, is
/// counted and retried after a growing wait, and the certificate in use keeps being
/// served (it is still valid).
fn pebble_unavailable_keeps_the_certificate_and_retries_with_backoff(io: &str) {
    let state = tempfile::tempdir().unwrap();
    let shop = HttpServer::start("shop");
    // Renewal due 10 s in; valid 5 s past that.
    let Setup {
        mut pebble,
        lb,
        ports,
    } = start(
        io,
        Some(15),
        "http-01",
        true,
        state.path(),
        shop.addr,
        |c| c,
    );
    let root = pebble.root();
    trusted(&root, ports.https());
    let file = state.path().join("certs/shop.example.pem");
    let issued = std::fs::read(&file).unwrap();
    pebble.stop();
    wait_for("renewals to fail and be retried", || {
        (orders(&lb, "failure") >= 2.0).then_some(())
    });
    let line = lb.wait_log("the failure", |l| l.contains("certificate not obtained"));
    assert!(
        line.contains("shop.example") && line.contains("retry_in_ms"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        issued,
        "the certificate in use stays"
    );
    let (ok, body, err) = curl_trusting(&root, ports.https(), "shop.example");
    assert!(ok && body == "shop", "{err}");
}

/// Certificates valid 30 s are renewed 20 s in, while a client loops over HTTPS:
/// every request succeeds, and after the renewal the new certificate is served. (The
/// 10 s left cover the order — 1.5 s of it for hosts sharing `state_dir` to read the
/// token — and the control thread's next tick, with room for a loaded machine.)
fn renewal_at_two_thirds_of_the_lifetime_fails_no_request(io: &str) {
    let state = tempfile::tempdir().unwrap();
    let shop = HttpServer::start("shop");
    let Setup { pebble, lb, ports } = start(
        io,
        Some(30),
        "http-01",
        true,
        state.path(),
        shop.addr,
        |c| c,
    );
    let root = pebble.root();
    trusted(&root, ports.https());
    let file = state.path().join("certs/shop.example.pem");
    let first = std::fs::read(&file).unwrap();
    let mut requests = 0;
    // Due 20 s in: the wait is bounded by the lifetime, not the usual patience.
    wait_for_within("a renewal served", Duration::from_secs(30), || {
        let (ok, body, err) = curl_trusting(&root, ports.https(), "shop.example");
        assert!(ok && body == "shop", "request {requests} failed: {err}");
        requests += 1;
        (orders(&lb, "success") >= 2.0 && std::fs::read(&file).unwrap() != first).then_some(())
    });
    lb.wait_log("the renewal", |l| l.contains("due for renewal"));
    // The new certificate is the one served: loaded within the control thread's tick.
    let renewed = common::tls::s_client(
        ports.https(),
        &[
            "-servername",
            "shop.example",
            "-CAfile",
            &root.display().to_string(),
        ],
        "",
    );
    assert!(renewed.contains("Verify return code: 0"), "{renewed}");
    assert!(requests > 1);
    assert_eq!(orders(&lb, "failure"), 0.0);
}

/// Two edge hosts share `state_dir`, and pebble validates HTTP-01 on the second
/// host's port only. pebble is down when they start (each fails once); the first
/// host retries first (the second waits far longer), takes the order lock and
/// orders: the second answers the validation from the tokens shared in `state_dir`.
/// One certificate is ordered in all, and both serve it.
fn two_hosts_sharing_state_dir_order_once_and_either_answers(io: &str) {
    // The hosts listen on ports of their own choosing, which pebble is then told.
    let mut pebble = Pebble::prepare(0, 0, None);
    let anywhere = Ports { http: 0, https: 0 };
    let state = tempfile::tempdir().unwrap();
    let shop = HttpServer::start("shop");
    let cfg_a = config(io, &anywhere, &pebble, state.path(), "http-01", shop.addr);
    let cfg_b = config(io, &anywhere, &pebble, state.path(), "http-01", shop.addr)
        .replace("retry_initial_ms = 300", "retry_initial_ms = 60000")
        .replace("retry_max_ms = 2000", "retry_max_ms = 60000");
    let host_b = Sluice::start(&cfg_b);
    let host_a = Sluice::start(&cfg_a);
    for host in [&host_a, &host_b] {
        wait_for("pebble unavailable", || {
            (orders(host, "failure") == 1.0).then_some(())
        });
    }
    pebble.validate_on(host_b.http().port(), host_b.https().port());
    pebble.run();
    let root = pebble.root();
    trusted(&root, host_a.https());
    trusted(&root, host_b.https());
    host_a.wait_log("obtained", |l| l.contains("certificate obtained"));
    assert_eq!(orders(&host_a, "success"), 1.0);
    assert_eq!(orders(&host_b, "success"), 0.0);
    assert_eq!(orders(&host_b, "failure"), 1.0, "no retry yet");
}

/// `[https] acme = true` and no service in the file: a Marathon app labelled
/// `HAPROXY_0_VHOST=shop.example` gets its certificate once Marathon reports it.
fn https_acme_obtains_a_certificate_for_a_marathon_apps_vhost(io: &str) {
    use common::marathon::{apps_body, Answer, Marathon, Task};
    let state = tempfile::tempdir().unwrap();
    let shop = HttpServer::start("shop");
    let task = Task {
        id: "shop.1",
        backend: shop.addr,
        state: "TASK_RUNNING",
        alive: true,
    };
    let body = apps_body("/shop", "external", free_port(), "", &[task]);
    let mut apps: serde_json::Value = serde_json::from_str(&body).unwrap();
    let app = &mut apps["apps"][0];
    app["labels"] =
        serde_json::json!({"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "shop.example"});
    app["container"]["portMappings"][0]["labels"] = serde_json::json!({});
    let marathon = Marathon::start(Answer::Apps(apps.to_string()));
    let no_service = |file: String| {
        file[..file.find("[[service]]").unwrap()].to_string()
            + &format!(
                "[marathon]\nurls = [\"{}\"]\ngroup = \"external\"\npoll_interval_ms = 100\n\
                 bind_address = \"127.0.0.1\"\n",
                marathon.url()
            )
    };
    let Setup { pebble, lb, ports } = start(
        io,
        None,
        "http-01",
        true,
        state.path(),
        shop.addr,
        no_service,
    );
    trusted(&pebble.root(), ports.https());
    lb.wait_log("obtained", |l| {
        l.contains("certificate obtained") && l.contains("shop.example")
    });
    assert_eq!(orders(&lb, "success"), 1.0);
}

/// HTTP-01 as an attacker asks it, no ACME server needed: a token pending in the
/// shared `state_dir/http-01/` (as another host's order leaves it) is answered to a
/// GET or a HEAD (its head alone) of exactly its path, a query aside, pipelined or
/// not, HTTP/1.0 or 1.1, whatever the Host; every near miss — another method, a
/// prefix, a longer token, dot-segments, encodings, a doubled slash, a path into
/// `state_dir`, a file there that is not a key authorization — is routed as any path
/// (404 here, the shop backend for its vhost). Withdrawn, it is answered no more.
fn http01_answers_a_get_or_head_of_a_pending_token_exactly_and_nothing_else(io: &str) {
    let state = tempfile::tempdir().unwrap();
    let shop = HttpServer::start("shop");
    // An ACME server that refuses: the order fails once and waits ten minutes.
    let cfg = server(io, "")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
        + "[https]\nlisten = \"127.0.0.1:0\"\nacme = true\n"
        + &format!(
            "[acme]\ndirectory = \"https://127.0.0.1:1/dir\"\nstate_dir = {:?}\n\
             retry_initial_ms = 600000\nretry_max_ms = 600000\n",
            state.path().display().to_string()
        )
        + &format!(
            "[[service]]\nname = \"shop\"\nmode = \"http\"\nvhosts = [\"shop.example\"]\nbackends = [\"{}\"]\n",
            shop.addr
        );
    // Made before sluice makes it, so that the test may write there at once.
    let tokens = state.path().join("http-01");
    std::fs::create_dir(&tokens).unwrap();
    let lb = Sluice::start(&cfg);
    std::fs::write(tokens.join("tok_A-1"), "tok_A-1.thumb").unwrap();
    std::fs::write(tokens.join("junk"), "junk.thumb\r\nX-Injected: 1").unwrap();
    std::fs::write(state.path().join("account.json"), "{\"secret\":1}").unwrap();
    let get = |target: &str, host: &str| {
        raw(
            lb.http(),
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let path = "/.well-known/acme-challenge/tok_A-1";
    wait_for("the shared token to be answered", || {
        (status(&get(path, "any.example")) == 200).then_some(())
    });
    let ok = get(path, "any.example");
    assert!(ok.ends_with("\r\n\r\ntok_A-1.thumb"), "{ok}");
    assert!(ok.contains("Content-Length: 13\r\n"), "{ok}");
    for (target, host) in [
        (format!("{path}?x=1"), "any.example"),
        (path.to_string(), "shop.example"),
        (format!("http://other.example{path}"), "shop.example"),
    ] {
        let r = get(&target, host);
        assert!(
            r.ends_with("tok_A-1.thumb") && status(&r) == 200,
            "{target}: {r}"
        );
    }
    let old = raw(lb.http(), format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
    assert!(
        old.ends_with("tok_A-1.thumb") && status(&old) == 200,
        "{old}"
    );
    // HEAD: the head alone, Content-Length as for GET.
    let head = raw(
        lb.http(),
        format!("HEAD {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status(&head), 200, "{head}");
    assert!(
        head.ends_with("Content-Length: 13\r\nConnection: close\r\n\r\n"),
        "{head}"
    );
    // Pipelined behind a routed request.
    let both = raw(
        lb.http(),
        format!(
            "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\nGET {path} HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status(&both), 200, "{both}");
    assert!(both.ends_with("\r\n\r\ntok_A-1.thumb"), "{both}");
    // Other methods are routed.
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = raw(
            lb.http(),
            format!("{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(status(&r), 404, "{method}: {r}");
        assert!(!r.contains("thumb"), "{method}: {r}");
    }
    let long = format!("/.well-known/acme-challenge/{}", "A".repeat(6000));
    let misses = [
        "/.well-known/acme-challenge/tok_A-",
        "/.well-known/acme-challenge/tok_A-1x",
        "/.well-known/acme-challenge/tok_A-1/",
        "/.well-known/acme-challenge/tok_A-1%00",
        "/.well-known/acme-challenge/tok_A%2d1",
        "/.well-known/acme-challenge/",
        "/.well-known/acme-challenge",
        "/.well-known/acme-challenge/./tok_A-1",
        "/.well-known/acme-challenge/../acme-challenge/tok_A-1",
        "/.well-known/%61cme-challenge/tok_A-1",
        "//.well-known/acme-challenge/tok_A-1",
        "/.well-known//acme-challenge/tok_A-1",
        "/.WELL-KNOWN/acme-challenge/tok_A-1",
        "/.well-known/acme-challenge/TOK_A-1",
        "/.well-known/acme-challenge/..%2faccount.json",
        "/.well-known/acme-challenge/../../account.json",
        "/.well-known/acme-challenge/junk",
        "/.well-known/acme-challenge/t\u{f6}k",
        long.as_str(),
    ];
    for target in misses {
        let r = get(target, "any.example");
        assert_ne!(status(&r), 200, "{target}: {r}");
        assert!(
            !r.contains("thumb") && !r.contains("secret"),
            "{target}: {r}"
        );
    }
    // For the shop's vhost a miss is the shop's to answer.
    let shop_miss = get("/.well-known/acme-challenge/tok_A-", "shop.example");
    assert_eq!(status(&shop_miss), 200, "{shop_miss}");
    assert!(shop_miss.ends_with("shop"), "{shop_miss}");
    // Withdrawn: routed again within a second.
    std::fs::remove_file(tokens.join("tok_A-1")).unwrap();
    wait_for("the withdrawn token to be routed", || {
        (status(&get(path, "any.example")) == 404).then_some(())
    });
}
