//! The Debian package's metadata and the systemd unit agree with each other and with
//! the repository: every file they name exists, and the unit runs what the package
//! installs, as the user its postinst creates, with the pidfile where the unit lets
//! it write.

use std::path::Path;

mod common;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deb() -> toml::Table {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// `(source, destination)` of each asset, the destination absolute.
fn assets(deb: &toml::Table) -> Vec<(String, String)> {
    deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
            let dest = if dest.ends_with('/') {
                format!(
                    "/{dest}{}",
                    Path::new(src).file_name().unwrap().to_str().unwrap()
                )
            } else {
                format!("/{dest}")
            };
            (src.to_owned(), dest)
        })
        .collect()
}

/// The values of `key=` in the unit file, in order.
fn unit(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join("packaging/sluice.service")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_package_names_files_that_exist() {
    let deb = deb();
    for (src, _) in assets(&deb) {
        // The binary is built by `cargo deb` itself.
        if !src.starts_with("target/") {
            assert!(root().join(&src).is_file(), "asset {src} is missing");
        }
    }
    let dests: Vec<String> = assets(&deb).into_iter().map(|(_, d)| d).collect();
    for conf in deb["conf-files"].as_array().unwrap() {
        let conf = conf.as_str().unwrap();
        assert!(
            dests.iter().any(|d| d == conf),
            "conffile {conf} is not installed"
        );
    }
    let scripts = root().join(deb["maintainer-scripts"].as_str().unwrap());
    let postinst = scripts.join("postinst");
    assert!(postinst.is_file());
    let mode = std::os::unix::fs::PermissionsExt::mode(&postinst.metadata().unwrap().permissions());
    assert!(mode & 0o111 != 0, "postinst is executable");
    let units = deb["systemd-units"].as_table().unwrap();
    let dir = root().join(units["unit-scripts"].as_str().unwrap());
    let name = units["unit-name"].as_str().unwrap();
    assert!(dir.join(format!("{name}.service")).is_file());
    // An upgrade hands over; it never restarts (a restart drops connections).
    assert_eq!(units["restart-after-upgrade"].as_bool(), Some(false));
    assert_eq!(units["stop-on-upgrade"].as_bool(), Some(false));
}

#[test]
fn the_unit_runs_what_the_package_installs() {
    let dests: Vec<String> = assets(&deb()).into_iter().map(|(_, d)| d).collect();
    let start = unit("ExecStart");
    assert_eq!(start.len(), 1);
    let args: Vec<&str> = start[0].split_whitespace().collect();
    assert!(
        dests.iter().any(|d| d == args[0]),
        "{} is installed",
        args[0]
    );
    let after = |flag: &str| {
        let at = args
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("{flag}"));
        args[at + 1]
    };
    assert!(dests.iter().any(|d| d == after("--config")));
    let pidfile = Path::new(after("--pidfile"));
    assert_eq!(
        pidfile.parent().unwrap(),
        Path::new("/run").join(&unit("RuntimeDirectory")[0]),
        "the pidfile (and the upgrade channel beside it) is where the unit lets sluice write"
    );
    assert_eq!(unit("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(unit("Type"), ["notify"]);
    assert_eq!(
        unit("NotifyAccess"),
        ["all"],
        "the successor of an upgrade notifies"
    );
    assert!(unit("AmbientCapabilities")[0].contains("CAP_NET_BIND_SERVICE"));
    // Under ProtectSystem=strict only the unit's own directories are writable: the
    // ACME state_dir the example config suggests must be one of them.
    assert_eq!(unit("ProtectSystem"), ["strict"]);
    let example = std::fs::read_to_string(root().join("config/sluice.example.toml")).unwrap();
    let state_dir = example
        .lines()
        .find_map(|l| l.strip_prefix("# state_dir = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the example names an ACME state_dir");
    let writable = Path::new("/var/lib").join(&unit("StateDirectory")[0]);
    assert!(
        Path::new(state_dir).starts_with(&writable),
        "{state_dir} is under the unit's StateDirectory"
    );
    let nofile: u64 = unit("LimitNOFILE")[0].parse().unwrap();
    assert!(
        nofile > 2 * 100_000 + 256,
        "enough for the default max_connections"
    );
    let user = &unit("User")[0];
    let postinst = std::fs::read_to_string(root().join("packaging/debian/postinst")).unwrap();
    assert!(postinst.contains(&format!(
        "--group --no-create-home --home /nonexistent {user}"
    )));
    // cargo-deb replaces every occurrence of the token: once, on a line of its own.
    let token: Vec<&str> = postinst
        .lines()
        .filter(|l| l.contains("#DEBHELPER#"))
        .collect();
    assert_eq!(token, ["#DEBHELPER#"]);
}

#[test]
fn the_packaged_config_is_valid() {
    let (code, _, stderr) = common::sluice_check(
        &std::fs::read_to_string(root().join("config/sluice.example.toml")).unwrap(),
    );
    assert_eq!(code, 0, "{stderr}");
}
