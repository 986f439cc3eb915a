//! `sluice check`: exit codes, the effective config, and exact error positions.

mod common;

use common::{sluice_check as check, BIN};
use std::process::Command;

/// Every one of `lines` is a line of `out` (leading indentation aside).
fn assert_prints<S: AsRef<str>>(out: &str, lines: impl IntoIterator<Item = S>) {
    for line in lines {
        let line = line.as_ref();
        assert!(
            out.lines().any(|l| l.trim() == line),
            "missing {line:?} in:\n{out}"
        );
    }
}

/// The effective config `check` printed (after its first line) is itself a valid
/// config, which prints the same.
fn assert_reprints(out: &str) {
    let body: String = out.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let (code, again, err) = check(&body);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        again.lines().skip(1).collect::<Vec<_>>(),
        body.lines().collect::<Vec<_>>()
    );
}

fn errors(text: &str) -> Vec<String> {
    let (code, stdout, stderr) = check(text);
    assert_eq!(code, 1, "invalid config must exit 1; stdout: {stdout}");
    stderr
        .lines()
        .map(|l| {
            l.strip_prefix("sluice: ")
                .unwrap_or_else(|| panic!("errors are marked as sluice's: {l}"))
                .to_owned()
        })
        .collect()
}

#[test]
fn valid_file_prints_the_effective_config() {
    let (code, out, err) = check(
        "[server]\nworkers = 2\n\n[[service]]\nname = \"app2\"\nlisten = \"127.0.0.1:10000\"\n\
         backends = [\"127.0.0.1:9002\", { addr = \"127.0.0.1:9001\", weight = 3 }]\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_prints(
        &out,
        [
            "workers = 2",
            "io = \"auto\"",
            "max_connections = 100000",
            "balance = \"maglev\"",
            "hash = \"tuple\"",
            "table_size = 65537",
            "{ addr = \"127.0.0.1:9001\", weight = 3 },",
            "{ addr = \"127.0.0.1:9002\", weight = 1 },",
        ],
    );
    // The effective config is itself a valid config that prints the same.
    assert_reprints(&out);
}

#[test]
fn wrong_type_is_located() {
    assert_eq!(
        errors("[server]\nworkers = \"two\"\n"),
        ["FILE:2:11: invalid type: string \"two\", expected an integer"]
    );
    let e = errors("[[service]]\nname = \"a\"\nlisten = 10000\nbackends = [\"127.0.0.1:1\"]\n");
    assert_eq!(
        e,
        ["FILE:3:10: invalid type: integer `10000`, expected a string"]
    );
}

/// A service written `[service]` instead of `[[service]]`: said so, at that line.
#[test]
fn a_single_service_table_is_named() {
    let text = "[server]\nworkers = 1\n\n  [service]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:9\"]\n";
    assert_eq!(
        errors(text),
        ["FILE:4:3: [service] is one table: each service is an entry of an array of tables, written [[service]]"]
    );
}

#[test]
fn unknown_keys_are_located() {
    let e = errors("[server]\nworkers = 2\ncolour = \"blue\"\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("FILE:3:1: unknown field `colour`"),
        "{e:?}"
    );
    let e = errors(
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n\
         backends = [{ addr = \"127.0.0.1:2\", wieght = 3 }]\n",
    );
    assert_eq!(
        e,
        ["FILE:4:13: unknown field `wieght`, expected `addr` or `weight`"]
    );
    let e = errors("[sever]\nworkers = 2\n");
    assert!(e[0].starts_with("FILE:1:2: unknown field `sever`"), "{e:?}");
}

#[test]
fn semantic_errors_are_all_reported_with_positions() {
    let text = "\
[[service]]
name = \"a\"
listen = \"127.0.0.1:10000\"
table_size = 65536
backends = [\"127.0.0.1:9001\"]

[[service]]
name = \"b\"
listen = \"127.0.0.1:10000\"
backends = []

[[service]]
name = \"c\"
listen = \"localhost:10001\"
backends = [\"127.0.0.1:9001\", { addr = \"127.0.0.1:9002\", weight = 0 }, \"nope\", \"127.0.0.1:9001\"]
";
    assert_eq!(
        errors(text),
        [
            "FILE:4:14: table_size must be prime, got 65536 (65537 is a good choice)",
            "FILE:9:10: duplicate listen address 127.0.0.1:10000, first at 3:10 (service \"a\")",
            "FILE:10:12: backends must not be empty",
            "FILE:14:10: listen must be IPv4:port or [IPv6]:port, got \"localhost:10001\"",
            "FILE:15:31: backend weight must be between 1 and 1000, got 0",
            "FILE:15:72: backend address must be IPv4:port or [IPv6]:port, got \"nope\"",
            "FILE:15:80: duplicate backend 127.0.0.1:9001",
        ]
    );
}

/// A service name takes the characters HAProxy takes in a proxy name: tools written
/// for Marathon-LB read names from the stats CSV, where a comma or a line break
/// would split a row or forge one.
#[test]
fn service_names_take_haproxy_characters_only() {
    let svc = |name: &str| {
        format!(
            "[[service]]\nname = {name}\nlisten = \"127.0.0.1:10000\"\n\
             backends = [\"127.0.0.1:9001\"]\n"
        )
    };
    let rule = "may hold only letters, digits, '-', '_', '.' and ':' (as HAProxy's proxy names)";
    assert_eq!(
        errors(&svc(r#""web,evil\nfoo_1,bar""#)),
        [format!(
            r#"FILE:2:8: service name "web,evil\nfoo_1,bar" {rule}"#
        )]
    );
    for bad in [
        r#""a b""#,
        r#""a/b""#,
        r#""it's""#,
        r#""a\"b""#,
        r#""caf\u00e9""#,
        r#""a\rb""#,
    ] {
        let e = errors(&svc(bad));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(
            e[0].starts_with("FILE:2:8: service name ") && e[0].ends_with(rule),
            "{e:?}"
        );
    }
    let (code, _, err) = check(&svc(r#""Web-1_shop.example:v2""#));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn bad_enum_value_and_syntax_are_located() {
    let e = errors("[server]\nio = \"kqueue\"\n");
    assert_eq!(
        e,
        ["FILE:2:6: unknown variant `kqueue`, expected one of `auto`, `uring`, `epoll`"]
    );
    let e = errors("[server\nworkers = 1\n");
    assert_eq!(e, ["FILE:1:8: unclosed table, expected `]`"]);
    let e = errors("[[service]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\n");
    assert_eq!(
        e,
        ["FILE:2:8: a tcp service needs listen (or sni, on [https] listen)"]
    );
}

#[test]
fn missing_file_and_no_default() {
    let out = Command::new(BIN)
        .args(["check", "--config", "/nonexistent/sluice.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("/nonexistent/sluice.toml: cannot read"),
        "{err}"
    );
    // `run` without --config in a directory without sluice.toml names where it looked.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("./sluice.toml") && err.contains("/etc/sluice/sluice.toml"),
        "{err}"
    );
}

#[test]
fn default_file_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nbackends = [\"127.0.0.1:2\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("config=./sluice.toml"),
        "says which file it used: {err}"
    );
}

#[test]
fn example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sluice.example.toml");
    let out = Command::new(BIN)
        .args(["check", "--config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_and_version() {
    let v = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8(v.stdout).unwrap().starts_with("sluice "));
    for args in [
        &["help"][..],
        &["run", "--help"],
        &["check", "--help"],
        &["demo", "--help"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8(out.stdout).unwrap().contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn marathon_section() {
    let (code, out, err) = check("[marathon]\nurls = [\"http://127.0.0.1:8080\", \"http://127.0.0.2:8080/\"]\ngroup = \"*\"\n");
    assert_eq!(code, 0, "{err}");
    assert_prints(
        &out,
        [
            "urls = [\"http://127.0.0.1:8080\", \"http://127.0.0.2:8080\"]",
            "group = \"*\"",
            "poll_interval_ms = 1000",
            "events = true",
            "events_silence_ms = 30000",
            "bind_address = \"0.0.0.0\"",
            "vip_cidr = \"127.11.0.0/16\"",
            "health_check = true",
            "drain_timeout_ms = 30000",
        ],
    );
    assert_eq!(
        errors("[marathon]\nurls = [\"127.0.0.1:8080\"]\nvip_cidr = \"10.0.0.0/33\"\nbind_address = \"any\"\n"),
        [
            "FILE:2:9: marathon url must be http://host:port or https://…, got \"127.0.0.1:8080\"",
            "FILE:3:12: vip_cidr must be an IPv4 network like 127.11.0.0/16 (prefix 8 to 30), got \"10.0.0.0/33\"",
            "FILE:4:16: bind_address must be an IP address, got \"any\"",
        ]
    );
    let e = errors("[marathon]\nurl = \"http://x\"\n");
    assert!(e[0].starts_with("FILE:2:1: unknown field `url`"), "{e:?}");
}

#[test]
fn http_settings_are_checked() {
    let e = errors(
        "[http]\nlisten = \"127.0.0.1:8080\"\nmax_header_bytes = 10\n\n\
         [[service]]\nname = \"tcp\"\nlisten = \"127.0.0.1:10000\"\nvhosts = [\"a.example\"]\n\
         sticky = true\nbackends = [\"127.0.0.1:1\"]\n\n\
         [[service]]\nname = \"web\"\nmode = \"http\"\nhash = \"header:\"\n\
         vhosts = [\"bad host\"]\nbackends = [\"127.0.0.1:1\"]\n\n\
         [[service]]\nname = \"lost\"\nmode = \"http\"\nbackends = [\"127.0.0.1:1\"]\n\n\
         [[service]]\nname = \"dup\"\nmode = \"http\"\nlisten = \"127.0.0.1:8080\"\n\
         path_prefix = \"api\"\nbackends = [\"127.0.0.1:1\"]\n",
    );
    assert_eq!(
        e,
        [
            "FILE:3:20: max_header_bytes must be between 256 and 1048576, got 10",
            "FILE:8:11: vhosts needs mode = \"http\"",
            "FILE:9:10: sticky needs mode = \"http\"",
            "FILE:15:8: unknown hash \"header:\", expected `source`, `tuple`, `header:NAME` or `cookie:NAME`",
            "FILE:16:11: vhost must be a host name or *.domain, got \"bad host\"",
            "FILE:20:8: an http service needs listen, vhosts or path_prefix",
            "FILE:27:10: duplicate listen address 127.0.0.1:8080, first at 2:10 ([http] listen)",
            "FILE:28:15: path_prefix must start with / and hold no spaces, got \"api\"",
        ]
    );
}

#[test]
fn http_effective_config_round_trips() {
    let (code, out, err) = check(
        "[http]\nlisten = \"127.0.0.1:8080\"\n\n[[service]]\nname = \"web\"\nmode = \"http\"\n\
         vhosts = [\"Web.Example\"]\nhash = \"cookie:session\"\nbalance = \"maglev\"\n\
         sticky = true\nbackends = [\"127.0.0.1:9001\"]\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_prints(
        &out,
        [
            "listen = \"127.0.0.1:8080\"",
            "max_header_bytes = 16384",
            "hash = \"cookie:session\"",
            "vhosts = [\"web.example\"]",
            "sticky_cookie = \"mesosphere_server_id\"",
        ],
    );
    assert_reprints(&out);
}

#[test]
fn admin_off_loopback_warns_and_exits_0() {
    let (code, out, err) = check("[admin]\nlisten = \"0.0.0.0:9090\"\n");
    assert_eq!(code, 0, "a warning is not an error: {err}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "FILE:2:10: warning: admin listen 0.0.0.0:9090 is not a loopback address: whoever \
          reaches it reads the statistics and can trigger Marathon re-fetches; keep it on \
          loopback or set [admin] token"
        ]
    );
    assert!(
        out.contains("# token not set: every page is open to whoever reaches listen"),
        "{out}"
    );
    let (_, _, err) = check(
        "[admin]\nlisten = \"10.1.2.3:9090\"\ntoken = \"0123456789abcdef0123456789abcdef\"\n",
    );
    assert!(
        err.starts_with("FILE:2:10: warning: admin listen 10.1.2.3:9090 is not a loopback address: the token crosses the network in clear text"),
        "{err}"
    );
    for quiet in ["127.0.0.1:9090", "127.3.2.1:0", "[::1]:9090"] {
        let (code, _, err) = check(&format!("[admin]\nlisten = \"{quiet}\"\n"));
        assert_eq!((code, err.as_str()), (0, ""), "{quiet}");
    }
}

#[test]
fn admin_token_is_checked_and_never_echoed() {
    let (code, out, err) =
        check("[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"s3cret-0123456789abcdef\"\n");
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        out.contains("\n[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"********\"\n"),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "{out}");
    let (code, _, err) = check("[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"short\"\n");
    assert_eq!(code, 0);
    assert!(
        err.starts_with("FILE:3:9: warning: admin token is only 5 characters"),
        "{err}"
    );
    assert_eq!(
        errors("[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"two words\"\n"),
        ["FILE:3:9: admin token must be 1 to 512 characters of A-Z a-z 0-9 - . _ ~ + / (then = padding), as a bearer token is written"]
    );
    assert_eq!(
        errors("[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"\"\n").len(),
        1
    );
}

/// The admin port, the shared HTTP listener and the services may not take one port on
/// one address: the same address, or a wildcard and a specific one of the same family.
/// Each conflict is reported where it is written second, naming the first.
#[test]
fn listen_addresses_may_not_overlap() {
    let text = "\
[admin]
listen = \"127.0.0.1:8080\"

[http]
listen = \"0.0.0.0:8080\"

[[service]]
name = \"a\"
listen = \"127.0.0.1:9090\"
backends = [\"127.0.0.1:1\"]

[[service]]
name = \"b\"
listen = \"0.0.0.0:9090\"
backends = [\"127.0.0.1:1\"]

[[service]]
name = \"v6\"
listen = \"[::]:9090\"
backends = [\"127.0.0.1:1\"]

[[service]]
name = \"elsewhere\"
listen = \"127.0.0.2:8080\"
backends = [\"127.0.0.1:1\"]
";
    assert_eq!(
        errors(text),
        [
            "FILE:5:10: listen address 0.0.0.0:8080 overlaps 127.0.0.1:8080 at 2:10 ([admin] listen): a wildcard address takes port 8080 on every address",
            "FILE:14:10: listen address 0.0.0.0:9090 overlaps 127.0.0.1:9090 at 9:10 (service \"a\"): a wildcard address takes port 9090 on every address",
            "FILE:24:10: listen address 127.0.0.2:8080 overlaps 0.0.0.0:8080 at 5:10 ([http] listen): a wildcard address takes port 8080 on every address",
        ]
    );
    // The admin port on a service's address, written after it.
    let text =
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:9090\"\nbackends = [\"127.0.0.1:1\"]\n\n\
                [admin]\nlisten = \"127.0.0.1:9090\"\n";
    assert_eq!(
        errors(text),
        ["FILE:7:10: duplicate listen address 127.0.0.1:9090, first at 3:10 (service \"a\")"]
    );
    // Port 0 is a fresh port for each.
    let (code, _, err) = check(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"0.0.0.0:0\"\n\
         [[service]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:1\"]\n",
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn http_services_nothing_can_reach_are_errors() {
    let svc = |name: &str, vhost: &str| {
        format!(
            "\n[[service]]\nname = \"{name}\"\nmode = \"http\"\nvhosts = [\"{vhost}\"]\n\
             backends = [\"127.0.0.1:1\"]\n"
        )
    };
    assert_eq!(
        errors(&svc("web", "web.example")),
        [
            "FILE:3:8: service \"web\" has no listen of its own and [http] listen is not set: \
          nothing reaches it (set [http] listen, or listen)"
        ]
    );
    let text = "[http]\nlisten = \"127.0.0.1:8080\"\n".to_owned()
        + &svc("web", "web.example")
        + &svc("copy", "WEB.example");
    assert_eq!(
        errors(&text),
        [
            "FILE:11:8: vhost \"web.example\" already routed to service \"web\" at 5:8: \
          this service would never get those requests"
        ]
    );
}

#[test]
fn marathon_files_must_be_readable_and_auth_settings_one_way() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let missing = dir.path().join("missing");
    let text = format!("[marathon]\ntoken_file = \"{}\"\n", missing.display());
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "FILE:2:14: cannot read marathon token_file {}: No such file",
            missing.display()
        )),
        "{e:?}"
    );
    let (code, _, err) = check(&format!(
        "[marathon]\ntoken_file = \"{}\"\n",
        token.display()
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        errors(&format!(
            "[marathon]\nusername = \"ops\"\npassword = \"pw\"\ntoken_file = \"{}\"\n",
            token.display()
        )),
        [
            "FILE:2:12: marathon username is not used with token_file (a DC/OS token is sent \
             instead): keep one of the two",
            "FILE:3:12: marathon password is not used with token_file (a DC/OS token is sent \
             instead): keep one of the two",
        ]
    );
    assert_eq!(
        errors("[marathon]\npassword = \"pw\"\n"),
        ["FILE:2:12: marathon password needs username"]
    );
}

#[test]
fn hash_without_maglev_is_an_error() {
    let svc = |mode: &str, balance: &str, hash: &str| {
        format!(
            "[[service]]\nname = \"s\"\nmode = \"{mode}\"\nlisten = \"127.0.0.1:10000\"\n\
             {balance}hash = \"{hash}\"\nbackends = [\"127.0.0.1:1\"]\n"
        )
    };
    assert_eq!(
        errors(&svc("http", "", "cookie:session")),
        [
            "FILE:5:8: hash needs balance = \"maglev\": roundrobin (the default in http mode) \
          does not hash, so hash would be ignored"
        ]
    );
    assert_eq!(
        errors(&svc("tcp", "balance = \"leastconn\"\n", "source")),
        [
            "FILE:6:8: hash needs balance = \"maglev\": leastconn does not hash, so hash would \
          be ignored"
        ]
    );
    let (code, out, err) = check(&svc("tcp", "", "source"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hash = \"source\""), "{out}");
    // The effective config of a service that does not hash names no hash.
    let (code, out, err) = check(&svc("http", "balance = \"maglev\"\n", "source").replace(
        "balance = \"maglev\"\nhash = \"source\"\n",
        "balance = \"roundrobin\"\n",
    ));
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("hash ="), "{out}");
}

#[test]
fn table_size_below_the_backends_is_located_at_table_size() {
    let svc = |table: &str| {
        format!(
            "[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:10000\"\n{table}\
             backends = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n"
        )
    };
    assert_eq!(
        errors(&svc("table_size = 2\n")),
        ["FILE:4:14: table_size 2 is smaller than the number of backends (3)"]
    );
}

/// `[https]`, `[tls]` and a service's TLS keys: what is refused, where.
#[test]
fn tls_settings_are_checked_with_positions() {
    let text = "\
[https]
listen = \"127.0.0.1:8443\"
[tls]
min_version = \"1.1\"
alpn = [\"h2\"]
[[service]]
name = \"db\"
listen = \"127.0.0.1:5432\"
tls = true
backends = [\"127.0.0.1:1\"]
[[service]]
name = \"web\"
mode = \"http\"
vhosts = [\"shop.example\"]
tls = true
sni = [\"x.example\"]
backends = [\"127.0.0.1:2\"]
[[service]]
name = \"pass\"
sni = [\"db.example\", \"*.db.example\", \"bad name\"]
backends = [\"127.0.0.1:3\"]
[[service]]
name = \"pass2\"
listen = \"127.0.0.1:5433\"
certificates = [\"/x.pem\"]
backends = [\"127.0.0.1:4\"]
";
    assert_eq!(
        errors(text),
        [
            "FILE:4:15: min_version must be \"1.2\" or \"1.3\", got \"1.1\"",
            "FILE:5:9: alpn may name http/1.1 and http/1.0 (sluice speaks HTTP/1.x to clients), got \"h2\"",
            "FILE:9:7: tls = true terminates TLS for an http service; a tcp service forwards TLS untouched (on its own listen, or by sni on [https] listen)",
            "FILE:15:7: tls = true is for a service's own listen; vhosts are served over TLS on [https] listen",
            "FILE:16:7: sni is for a tcp service without a listen of its own: it takes the TLS connections of [https] listen that name its servers",
            "FILE:20:38: sni names a server: a host name (db.example) or *. and one (*.db.example), got \"bad name\"",
            "FILE:25:16: certificates go with tls = true",
        ]
    );
    // A name two services claim: the first keeps it.
    let text = "[https]\nlisten = \"127.0.0.1:8443\"\n\
                [[service]]\nname = \"a\"\nsni = [\"db.example\"]\nbackends = [\"127.0.0.1:3\"]\n\
                [[service]]\nname = \"b\"\nsni = [\"*.x\", \"db.example\"]\nbackends = [\"127.0.0.1:4\"]\n";
    assert_eq!(
        errors(text),
        ["FILE:8:8: sni \"db.example\" already passed to service \"a\" at 4:8"]
    );
    // A tcp service routed by sni needs [https] listen.
    let text = "[[service]]\nname = \"p\"\nsni = [\"db.example\"]\nbackends = [\"127.0.0.1:3\"]\n";
    assert_eq!(
        errors(text),
        ["FILE:2:8: service \"p\" is routed by sni on [https] listen, which is not set: nothing reaches it"]
    );
}

/// A valid TLS configuration prints back as itself; `certificates` may be one string
/// of comma-separated paths, as Marathon-LB's `--ssl-certs` takes them.
#[test]
fn tls_settings_print_back_as_themselves() {
    let pki = common::tls::Pki::new();
    let a = pki.write_leaf("a.pem", &["a.example"]);
    let own = pki.write_leaf("own.pem", &["own.example"]);
    let dir = pki.dir.path().join("more");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&a, dir.join("b.pem")).unwrap();
    let (a, own, dir) = (a.display(), own.display(), dir.display());
    let (code, out, err) = check(&format!(
        "[https]\nlisten = \"127.0.0.1:8443\"\n[tls]\ncertificates = \"{a}, {dir}\"\n\
         [[service]]\nname = \"own\"\nmode = \"http\"\nlisten = \"127.0.0.1:9443\"\ntls = true\n\
         certificates = [\"{own}\"]\nbackends = [\"127.0.0.1:1\"]\n\
         [[service]]\nname = \"pass\"\nsni = [\"DB.example\"]\nbackends = [\"127.0.0.1:2\"]\n",
    ));
    assert_eq!(code, 0, "{err}");
    assert_prints(
        &out,
        [
            "listen = \"127.0.0.1:8443\"".to_owned(),
            format!("certificates = [\"{a}\", \"{dir}\"]"),
            "min_version = \"1.2\"".to_owned(),
            "alpn = [\"http/1.1\"]".to_owned(),
            "tls = true".to_owned(),
            format!("certificates = [\"{own}\"]"),
            "sni = [\"db.example\"]".to_owned(),
        ],
    );
    assert_reprints(&out);
}

/// `[service.health]`: printed with every default filled in, and its errors at their
/// place in the file.
#[test]
fn health_checks_are_printed_and_their_errors_located() {
    let service = "[[service]]\nname = \"web\"\nmode = \"http\"\nlisten = \"127.0.0.1:10080\"\n\
                   vhosts = [\"web.example\"]\nbackends = [\"127.0.0.1:9001\"]\n";
    let (code, out, err) = check(&format!(
        "{service}[service.health]\nkind = \"http\"\npath = \"/health\"\n"
    ));
    assert_eq!(code, 0, "{err}");
    let printed = out.split("[service.health]").nth(1).expect("printed");
    assert_prints(
        printed,
        [
            "kind = \"http\"",
            "method = \"GET\"",
            "path = \"/health\"",
            "host = \"web.example\"",
            "expect = \"200-399\"",
            "interval_ms = 2000",
            "timeout_ms = 1000",
            "rise = 2",
            "fall = 3",
            "slowstart_ms = 0",
        ],
    );
    assert_eq!(
        errors(&format!(
            "{service}[service.health]\nkind = \"http\"\nexpect = \"2xx\"\nrise = 0\n"
        )),
        [
            "FILE:9:10: health expect must be a status or a range like \"200-399\" (100 to 599), got \"2xx\"",
            "FILE:10:8: health rise must be between 1 and 100, got 0",
        ]
    );
}

/// A certificate that cannot be used is found only when `check` reads it: the error
/// names the file and is located at the `certificates` key that names it.
#[test]
fn unusable_certificates_are_located_at_their_key() {
    let text = "\
[https]
listen = \"127.0.0.1:8443\"
[tls]
certificates = [\"/nonexistent/shared/\"]
[[service]]
name = \"web\"
mode = \"http\"
vhosts = [\"web.example\"]
backends = [\"127.0.0.1:1\"]
[[service]]
name = \"own\"
mode = \"http\"
listen = \"127.0.0.1:9443\"
tls = true
certificates = [\"/nonexistent/own.pem\"]
backends = [\"127.0.0.1:2\"]
";
    assert_eq!(
        errors(text),
        [
            "FILE:4:16: [tls] certificates: /nonexistent/shared/: cannot be read: No such file or directory (os error 2)",
            "FILE:15:16: service \"own\" certificates: /nonexistent/own.pem: cannot be read: No such file or directory (os error 2)",
        ]
    );
}

/// `redirect_to_https` without `[https] listen` sends clients to port 443, which this
/// sluice does not serve: a warning, not an error (something else may serve 443).
#[test]
fn redirect_to_https_without_https_listen_warns() {
    let service = "[[service]]\nname = \"web\"\nmode = \"http\"\nvhosts = [\"web.example\"]\n\
                   redirect_to_https = true\nbackends = [\"127.0.0.1:1\"]\n";
    let (code, _, err) = check(&format!("[http]\nlisten = \"127.0.0.1:8080\"\n{service}"));
    assert_eq!(code, 0, "a warning is not an error: {err}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "FILE:7:21: warning: redirect_to_https sends clients to https://HOST/ on port 443, \
          and [https] listen is not set: this sluice does not serve it"
        ]
    );
    let (code, _, err) = check(&format!(
        "[http]\nlisten = \"127.0.0.1:8080\"\n[https]\nlisten = \"127.0.0.1:8443\"\n{service}"
    ));
    assert_eq!((code, err.as_str()), (0, "warning: no certificate configured: TLS would be served with a generated self-signed certificate that no client trusts; set [tls] certificates\n"));
}

/// `[acme]` without `[tls] certificates`: the self-signed certificate is served only
/// until the first one is obtained, and `check` says that; a wildcard vhost ACME
/// cannot prove is refused at its place.
#[test]
fn acme_is_checked_and_its_first_certificate_awaited() {
    let head = "[http]\nlisten = \"127.0.0.1:8080\"\n[https]\nlisten = \"127.0.0.1:8443\"\n\
                acme = true\n[acme]\ndirectory = \"https://acme.example/dir\"\n\
                state_dir = \"/var/lib/sluice/acme\"\n";
    let service = |vhost: &str| {
        format!(
            "[[service]]\nname = \"shop\"\nmode = \"http\"\nvhosts = [\"{vhost}\"]\n\
             backends = [\"127.0.0.1:1\"]\n"
        )
    };
    let (code, _, err) = check(&format!("{head}{}", service("shop.example")));
    assert_eq!(
        (code, err.as_str()),
        (
            0,
            "warning: [tls] certificates is empty: until [acme] obtains the first certificate, \
             [https] listen serves a generated self-signed one\n"
        )
    );
    let (code, _, err) = check(&format!("{head}{}", service("*.shop.example")));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("sluice: FILE:12:11: ACME cannot prove a wildcard vhost (*.shop.example)"),
        "{err}"
    );
}

#[test]
fn acme_ca_bundle_must_hold_a_certificate_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("root.json");
    std::fs::write(&not_pem, "{}\n").unwrap();
    let text = |bundle: &std::path::Path| {
        format!(
            "[http]\nlisten = \"127.0.0.1:80\"\n[https]\nlisten = \"127.0.0.1:443\"\n\
             [acme]\ndirectory = \"https://acme.example/dir\"\nstate_dir = \"{}\"\n\
             ca_bundle = \"{}\"\n",
            dir.path().display(),
            bundle.display()
        )
    };
    let e = errors(&text(&missing));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "FILE:8:13: [acme] ca_bundle: {}: No such file",
            missing.display()
        )),
        "{e:?}"
    );
    assert_eq!(
        errors(&text(&not_pem)),
        [format!(
            "FILE:8:13: [acme] ca_bundle: {}: holds no PEM certificate to trust",
            not_pem.display()
        )]
    );
}
