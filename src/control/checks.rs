//! What a configuration asks of the process: the settings only a restart applies, and
//! the descriptors `max_connections` needs.

use crate::config::Config;

/// The settings of `cfg` that differ from those in force and that only a restart
/// applies, by key.
pub(super) fn restart_only_changes(
    server: &crate::config::ServerConfig,
    admin: &crate::config::AdminConfig,
    marathon: Option<&crate::config::MarathonConfig>,
    cfg: &Config,
) -> Vec<String> {
    let mut changed = Vec::new();
    let mut differ = |key: &str, differs: bool| {
        if differs {
            changed.push(key.to_owned());
        }
    };
    let new = &cfg.server;
    differ(
        "[server] workers",
        new.effective_workers() != server.effective_workers(),
    );
    differ("[server] io", new.io != server.io);
    differ(
        "[server] max_connections",
        new.max_connections != server.max_connections,
    );
    differ("[admin] listen", cfg.admin.listen != admin.listen);
    differ("[admin] token", cfg.admin.token != admin.token);
    match (marathon, &cfg.marathon) {
        (Some(was), Some(now)) => {
            differ("[marathon] urls", now.urls != was.urls);
            differ("[marathon] group", now.group != was.group);
            differ(
                "[marathon] poll_interval_ms",
                now.poll_interval_ms != was.poll_interval_ms,
            );
            differ("[marathon] events", now.events != was.events);
            differ(
                "[marathon] events_silence_ms",
                now.events_silence_ms != was.events_silence_ms,
            );
            differ(
                "[marathon] bind_address",
                now.bind_address != was.bind_address,
            );
            differ("[marathon] vip_cidr", now.vip_cidr != was.vip_cidr);
            differ(
                "[marathon] health_check",
                now.health_check != was.health_check,
            );
            differ(
                "[marathon] drain_timeout_ms",
                now.drain_timeout_ms != was.drain_timeout_ms,
            );
            differ("[marathon] username", now.username != was.username);
            differ("[marathon] password", now.password != was.password);
            differ(
                "[marathon] credentials_file",
                now.credentials_file != was.credentials_file,
            );
            differ("[marathon] token_file", now.token_file != was.token_file);
        }
        (was, now) => differ("[marathon]", was.is_some() != now.is_some()),
    }
    changed
}

/// Descriptors kept apart from the connections' for the rest: rings, epoll and
/// event descriptors, splice pipes in use, the admin port's and Marathon's sockets.
const SPARE_DESCRIPTORS: u64 = 256;

/// About what `max_connections` needs open at once: two descriptors per connection
/// (client and backend), the listening sockets (one per shard for each address), and
/// [`SPARE_DESCRIPTORS`].
fn descriptors_needed(cfg: &Config, workers: usize) -> u64 {
    let addrs = cfg.services.iter().filter(|s| s.listen.is_some()).count()
        + usize::from(cfg.http.listen.is_some());
    2 * u64::from(cfg.server.max_connections) + (addrs * workers) as u64 + SPARE_DESCRIPTORS
}

/// Raise the soft descriptor limit to the hard one, and say so when even that is short
/// of what `max_connections` needs: past it, accepts fail and pause, and clients wait.
pub(super) fn check_descriptors(cfg: &Config, workers: usize) {
    let need = descriptors_needed(cfg, workers);
    match crate::io::sys::raise_nofile_limit() {
        Ok(limit) if limit < need => tracing::warn!(
            limit,
            need,
            max_connections = cfg.server.max_connections,
            "the descriptor limit (RLIMIT_NOFILE, raised to its hard limit) is below what \
             max_connections needs: raise the hard limit (LimitNOFILE= in systemd, ulimit -Hn) \
             or lower max_connections"
        ),
        Ok(limit) => tracing::debug!(limit, need, "descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_names_exactly_the_restart_only_keys_it_changed() {
        let parse = |text: &str| crate::config::parse(text).expect("valid config");
        let was = parse(
            "[server]\nworkers = 2\nmax_connections = 10\n[admin]\nlisten = \"127.0.0.1:9090\"\n\
             [marathon]\ngroup = \"a\"\n",
        );
        let changes = |text: &str| {
            restart_only_changes(&was.server, &was.admin, was.marathon.as_ref(), &parse(text))
        };
        let same = "[server]\nworkers = 2\nmax_connections = 10\nidle_timeout_ms = 5\n\
                    [admin]\nlisten = \"127.0.0.1:9090\"\n[marathon]\ngroup = \"a\"\n";
        assert!(
            changes(same).is_empty(),
            "reloadable settings are not named"
        );
        assert_eq!(
            changes(
                &same
                    .replace("max_connections = 10", "max_connections = 11")
                    .replace("group = \"a\"", "group = \"b\"")
            ),
            ["[server] max_connections", "[marathon] group"]
        );
        assert_eq!(
            changes("[server]\nworkers = 2\nmax_connections = 10\n"),
            ["[admin] listen", "[marathon]"]
        );
    }

    #[test]
    fn descriptors_needed_counts_connections_twice_and_listeners_per_shard() {
        let cfg = crate::config::parse(
            "[server]\nmax_connections = 1000\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [[service]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nbackends = [\"127.0.0.1:9\"]\n",
        )
        .expect("valid config");
        assert_eq!(
            descriptors_needed(&cfg, 4),
            2000 + 2 * 4 + SPARE_DESCRIPTORS
        );
    }
}
