//! The command line: `sluice run | check | demo | help`.

use crate::config::{self, IoKind};
use crate::control::{self, Source};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "A TCP/HTTP load balancer for edge hosts: per-core shards, Maglev consistent hashing"
)]
pub struct Cli {
    /// Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the balancer. Without --config, uses ./sluice.toml, then /etc/sluice/sluice.toml.
    Run {
        /// The config file (TOML). Default: ./sluice.toml, then /etc/sluice/sluice.toml.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write this process's id to PATH once it serves (replaced atomically);
        /// removed at exit unless a successor wrote its own.
        #[arg(long, value_name = "PATH")]
        pidfile: Option<PathBuf>,
        /// The Unix socket through which a successor takes the listening sockets
        /// (mode 0600). Default with --pidfile: the pidfile's path with the
        /// extension `.upgrade`; without either, no hot upgrade.
        #[arg(long, value_name = "PATH")]
        upgrade_socket: Option<PathBuf>,
        /// Take over from the sluice running at the upgrade socket: receive its
        /// listening sockets, start, then let it drain. Should this process fail to
        /// start, the running one keeps serving. (SIGUSR2 to the running process does
        /// the same with the binary now at its path.)
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file and print the effective configuration.
    Check {
        /// The config file (TOML). Default: ./sluice.toml, then /etc/sluice/sluice.toml.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Start three demo HTTP backends, an L4 VIP balancing over them (--listen), the same
    /// three behind the shared HTTP listener by Host (--http) and over TLS with a
    /// self-signed certificate (--https), and the admin port with stats and metrics
    /// (--admin, 127.0.0.1:9090); needs nothing else.
    Demo {
        /// Where the demo VIP listens.
        #[arg(long, default_value = "127.0.0.1:10000")]
        listen: std::net::SocketAddr,
        /// Where the demo's admin port (stats, metrics) listens.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: std::net::SocketAddr,
        /// Where the demo's shared HTTP listener (routing by Host) listens.
        #[arg(long, default_value = "127.0.0.1:10080")]
        http: std::net::SocketAddr,
        /// Where the demo's shared HTTPS listener (the same routes, TLS terminated with
        /// a generated self-signed certificate) listens.
        #[arg(long, default_value = "127.0.0.1:10443")]
        https: std::net::SocketAddr,
        /// I/O backend for the shards.
        #[arg(long, value_enum, default_value_t = IoArg::Auto)]
        io: IoArg,
    },
    /// Load generator: HTTP/1.1 requests against a target, with latency percentiles.
    Bench(crate::bench::BenchArgs),
    /// Drive a BGP speaker as an ExaBGP API process: print `announce route P next-hop
    /// self` / `withdraw route P next-hop self` as the anycast VIPs of the admin port's
    /// /v1/anycast change; withdraw everything and exit when it stops answering for
    /// `[anycast] admin_timeout_ms`.
    Announce(AnnounceArgs),
}

#[derive(clap::Args, Debug)]
pub struct AnnounceArgs {
    /// The admin port's URL.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// How often to ask it, in ms.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// A file holding `[admin] token`, when the admin port needs it.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IoArg {
    Auto,
    Uring,
    Epoll,
}

impl From<IoArg> for IoKind {
    fn from(a: IoArg) -> IoKind {
        match a {
            IoArg::Auto => IoKind::Auto,
            IoArg::Uring => IoKind::Uring,
            IoArg::Epoll => IoKind::Epoll,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run {
            config,
            pidfile,
            upgrade_socket,
            upgrade,
        } => run(config, pidfile, upgrade_socket, upgrade),
        Command::Check { config } => return check(config),
        Command::Demo {
            listen,
            admin,
            http,
            https,
            io,
        } => crate::demo::run(listen, admin, http, https, io.into()),
        Command::Bench(args) => bench(&args),
        Command::Announce(args) => announce(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One error per line (a config's errors are several), each marked as ours.
            for line in format!("{e:#}").lines() {
                eprintln!("sluice: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The config file to use: the one given, else the first default that exists.
fn resolve(config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = config {
        return Ok(p);
    }
    match config::find_default() {
        Some(p) => {
            tracing::info!(config = %p.display(), "no --config given, using the default file");
            Ok(p)
        }
        None => anyhow::bail!(
            "no config file: none of {} exists; pass --config FILE (or try `sluice demo`)",
            config::DEFAULT_PATHS.join(", ")
        ),
    }
}

fn announce(args: &AnnounceArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    crate::anycast::announce::run(&crate::anycast::announce::Settings {
        admin: args.admin.clone(),
        interval: std::time::Duration::from_millis(args.interval_ms.max(10)),
        token,
    })
}

fn run(
    config: Option<PathBuf>,
    pidfile: Option<PathBuf>,
    upgrade_socket: Option<PathBuf>,
    upgrade: bool,
) -> anyhow::Result<()> {
    let path = resolve(config)?;
    let channel = upgrade_socket.or_else(|| pidfile.as_ref().map(|p| p.with_extension("upgrade")));
    if upgrade && channel.is_none() {
        anyhow::bail!("--upgrade needs the running process's --pidfile or --upgrade-socket");
    }
    let lifecycle = control::Lifecycle {
        successor: channel.as_ref().and_then(|_| successor()),
        channel,
        upgrade,
    };
    tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), upgrade, "starting");
    // Written before the start, put in place after it: a pidfile that cannot be
    // written fails the start before a process being replaced hears of it.
    let pending = pidfile.as_deref().map(Pidfile::write).transpose()?;
    let running = match control::start(Source::File(path), lifecycle) {
        Ok(r) => r,
        Err(e) => {
            if let Some(p) = pending {
                let _ = std::fs::remove_file(p.tmp);
            }
            return Err(e);
        }
    };
    if let Some(p) = pending {
        p.commit()?;
    }
    let served = running.serve_until_signalled();
    if let Some(p) = &pidfile {
        remove_pidfile(p);
    }
    served
}

/// What SIGUSR2 starts: this binary at the path it was started from (the new one,
/// once a package replaced it) with this process's arguments and `--upgrade`.
fn successor() -> Option<(PathBuf, Vec<std::ffi::OsString>)> {
    let exe = std::env::current_exe().ok()?;
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    if !args.iter().any(|a| a == "--upgrade") {
        args.push("--upgrade".into());
    }
    Some((exe, args))
}

/// This process's id written beside the pidfile, to be renamed over it: a reader
/// sees the old id or the new one, never a part.
struct Pidfile {
    tmp: PathBuf,
    path: PathBuf,
}

impl Pidfile {
    fn write(path: &Path) -> anyhow::Result<Pidfile> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp.{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        write_new(&tmp, format!("{}\n", std::process::id()).as_bytes())
            .map_err(|e| anyhow::anyhow!("--pidfile {}: {e}", path.display()))?;
        Ok(Pidfile {
            tmp,
            path: path.to_owned(),
        })
    }

    fn commit(self) -> anyhow::Result<()> {
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| anyhow::anyhow!("--pidfile {}: {e}", self.path.display()))
    }
}

/// Write `bytes` to a file created at `path` (mode 0644), never through what is
/// already there: whatever is at the path (a file left by a process that had this
/// id, or a symbolic link someone who may write to the directory put there, to have
/// another file overwritten) is removed, not followed.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(bytes)
}

/// Remove `path` if it still names this process (a successor's stays).
fn remove_pidfile(path: &Path) {
    let ours =
        std::fs::read_to_string(path).is_ok_and(|s| s.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

fn check(config: Option<PathBuf>) -> ExitCode {
    let path = match resolve(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    check_file(&path)
}

fn check_file(path: &Path) -> ExitCode {
    match config::load_with_warnings(path) {
        Ok((cfg, warnings)) => {
            for w in warnings {
                eprintln!("{w}");
            }
            let (errors, warnings) = crate::tls::check(&cfg);
            for w in warnings {
                eprintln!("{w}");
            }
            if !errors.is_empty() {
                for e in errors {
                    eprintln!("sluice: {e}");
                }
                return ExitCode::FAILURE;
            }
            println!(
                "# {}: valid, {} service(s)",
                path.display(),
                cfg.services.len()
            );
            print!("{}", cfg.to_toml());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("sluice: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &crate::bench::BenchArgs) -> anyhow::Result<()> {
    let report = crate::bench::run(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", crate::bench::render(&report));
    }
    // A run in which nothing completed measured nothing: a script must not read its
    // zeros as a result.
    if report.requests == 0 {
        anyhow::bail!(
            "no request completed against {} (see the errors above)",
            report.target
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pidfile_is_written_beside_what_is_at_its_path_never_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let pidfile = dir.path().join("sluice.pid");
        let mut tmp = pidfile.as_os_str().to_owned();
        tmp.push(format!(".tmp.{}", std::process::id()));
        // Planted by someone who may write to the directory: a link to another
        // file, and a stale file of a process that had this id.
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        Pidfile::write(&pidfile).unwrap().commit().unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let id = format!("{}\n", std::process::id());
        assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), id);
        assert!(!std::fs::symlink_metadata(&pidfile).unwrap().is_symlink());
        // The pidfile itself a link: replaced, not followed.
        std::fs::remove_file(&pidfile).unwrap();
        std::os::unix::fs::symlink(&victim, &pidfile).unwrap();
        std::fs::write(&tmp, "4242\n").unwrap();
        Pidfile::write(&pidfile).unwrap().commit().unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), id);
        // Removed at exit while it names this process; a successor's stays.
        std::fs::write(&pidfile, "1\n").unwrap();
        remove_pidfile(&pidfile);
        assert!(pidfile.exists());
        std::fs::write(&pidfile, &id).unwrap();
        remove_pidfile(&pidfile);
        assert!(!pidfile.exists());
    }
}
