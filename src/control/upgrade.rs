//! Hot binary upgrade: a running sluice hands every listening socket — each shard's
//! `SO_REUSEPORT` socket of each address, and the admin port's — to its successor
//! over a Unix channel (`io/fdpass.rs`), and drains only once the successor says it
//! serves.
//!
//! The successor receives the same sockets, not new ones joined to the group: a
//! listening socket whose last descriptor closes resets the connections in its queue,
//! while one handed over keeps its queue, which the successor's accepts empty. The
//! old process stops accepting and closes its copies; nothing queued is lost.
//!
//! The exchange, one JSON message per packet ([`Message`]):
//!
//! 1. the successor (`sluice run --upgrade`) connects to the channel of the running
//!    process (its owner only: mode 0600, and the peer's user checked);
//! 2. the running one sends `hello` (its pid and its anycast verdicts), a `listener`
//!    message per address with its sockets, `admin` with the admin port's socket,
//!    then `end`;
//! 3. the successor starts as usual, adopting those sockets instead of binding, and
//!    sends `ready` — or `failed` with its reason, or closes the channel by exiting;
//! 4. on `ready` the old process drains (its sockets stay open for the successor:
//!    they are not shut down as on SIGTERM); once none of its shards accepts any
//!    more it sends `stopped`, and the successor re-arms its accepts (see
//!    `Published::rearm_accepts`: a wake-up the old process took and did not act on
//!    must not leave a connection waiting). It exits when drained; the channel stays
//!    open until then, so its end tells the successor that the old process is gone.
//!
//! Each side takes part only with a process of its own user (or root). A send of
//! the handover waits at most [`SEND_TIMEOUT`] for room in the successor's queue.
//!
//! Anything but `ready` leaves the old process serving as it was, with the reason in
//! its log.
//!
//! The anycast verdicts (which VIPs the old process announces) let the successor
//! start those VIPs announced, so that the route does not flap (`anycast/`); on
//! `ready`, the old process's board keeps them as they were while it drains. Fields
//! are added to the messages, never required: each has a default, and unknown
//! fields are ignored, so either side may be the older binary — a successor given no
//! verdicts starts every VIP withdrawn, as before they were handed over.

use super::listeners::{HandedOver, ListenKey};
use crate::anycast::Verdict;
use crate::io::fdpass::{Channel, ChannelListener};
use crate::stats::processes::Processes;
use serde::{Deserialize, Serialize};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long the running process waits for its successor to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one message of the handover may wait for room in the successor's
/// queue: a peer that connects and does not read must not hold the control thread
/// (which hands the sockets over, and also reloads and stops the process).
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the process at the other end of `ch` may take part in an upgrade with
/// this one: the same user, or root. Its pid.
fn trusted_peer(ch: &Channel) -> Result<u32, String> {
    let (pid, uid) = ch
        .peer()
        .map_err(|e| format!("cannot identify the peer: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if uid != me && uid != 0 {
        return Err(format!(
            "refused: process {pid} runs as user {}, not as {} (run the upgrade as that \
             user, or send the running process SIGUSR2)",
            user_name(uid),
            user_name(me)
        ));
    }
    Ok(pid)
}

/// A user's name and id, as a log says it.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => format!("{} ({uid})", u.name),
        _ => uid.to_string(),
    }
}

/// What the other process said, fit for one log line: its lines joined, other
/// control characters dropped (it cannot write lines of its own into this log).
fn one_line(text: &str) -> String {
    text.lines()
        .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Message {
    Hello {
        pid: u32,
        /// Every anycast VIP the old process judged, announced or not.
        #[serde(default)]
        anycast: Vec<Verdict>,
        /// Every backend address the operator set to drain or maint by hand.
        #[serde(default)]
        by_hand: Vec<ByHand>,
        /// The other processes still serving: one an earlier upgrade replaced and
        /// that still drains.
        #[serde(default)]
        others: Vec<u32>,
    },
    Listener {
        key: ListenKey,
        http: bool,
    },
    Admin,
    End,
    Ready {
        pid: u32,
    },
    Failed {
        reason: String,
    },
    /// The old process's shards no longer accept (sent after `ready`).
    Stopped,
}

/// A backend address and what the operator set it to on the admin port (`drain` or
/// `maint`), carried across an upgrade as a reload keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByHand {
    pub addr: std::net::SocketAddr,
    pub state: String,
}

fn send(ch: &Channel, m: &Message, fds: &[std::os::fd::BorrowedFd]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(m).map_err(std::io::Error::other)?;
    ch.send(&bytes, fds)
}

/// The next message and its descriptors; the channel's end is an error.
fn recv(ch: &Channel) -> std::io::Result<(Message, Vec<std::os::fd::OwnedFd>)> {
    let (bytes, fds) = ch.recv()?;
    if bytes.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the channel closed",
        ));
    }
    let m = serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok((m, fds))
}

/// Listen for a successor at `path`; each connection is handed to `on_connect` (the
/// control thread does the handover, since it holds the sockets).
pub fn listen(path: &Path, on_connect: impl Fn(Channel) + Send + 'static) -> std::io::Result<()> {
    let listener = ChannelListener::bind(path)?;
    std::thread::Builder::new()
        .name("sluice-upgrade".into())
        .spawn(move || loop {
            match listener.accept() {
                Ok(ch) => on_connect(ch),
                Err(e) => {
                    tracing::error!(error = %e, "upgrade channel: accept failed");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        })?;
    Ok(())
}

/// The `hello` with the anycast verdicts and the states set by hand, or without them
/// when they do not fit in one message (thousands of VIPs or backends): the
/// successor then starts the VIPs withdrawn and every backend as its checks say.
fn hello(anycast: &[Verdict], by_hand: &[ByHand]) -> Message {
    let pid = std::process::id();
    let m = Message::Hello {
        pid,
        anycast: anycast.to_vec(),
        by_hand: by_hand.to_vec(),
        others: Vec::new(),
    };
    let len = serde_json::to_vec(&m).map_or(usize::MAX, |b| b.len());
    if len <= crate::io::fdpass::MAX_MESSAGE {
        return m;
    }
    tracing::warn!(
        vips = anycast.len(),
        backends = by_hand.len(),
        "upgrade: too many anycast verdicts and states set by hand for one message; the \
         successor starts its VIPs withdrawn and its backends as their checks say"
    );
    Message::Hello {
        pid,
        anycast: Vec::new(),
        by_hand: Vec::new(),
        others: Vec::new(),
    }
}

/// Before a process that is not a successor takes the channel at `path`: if a
/// process listens there (another sluice started with the same `--pidfile` or
/// `--upgrade-socket`), taking the path would leave that one without upgrades and
/// hand its sockets to this one's successors. So this start fails, and the other
/// process is told why (as a successor that failed), keeping its sockets. A socket
/// file nobody listens on (a process that was killed) is no obstacle.
pub fn refuse_if_taken(path: &Path) -> anyhow::Result<()> {
    let Ok(ch) = Channel::connect(path) else {
        return Ok(());
    };
    let (pid, uid) = ch.peer().unwrap_or((0, u32::MAX));
    let me = nix::unistd::geteuid().as_raw();
    if uid != me && uid != 0 {
        // Not a sluice of this user: told nothing (not even this process's id).
        anyhow::bail!(
            "the upgrade channel {}: a process of user {} (pid {pid}) listens there: put \
             the channel where only {} may write (a --pidfile or --upgrade-socket in a \
             directory of its own, such as /run/sluice/)",
            path.display(),
            user_name(uid),
            user_name(me)
        );
    }
    let why = format!(
        "the upgrade channel {}: process {pid} (user {uid}) listens there already: give \
         this process a --pidfile or --upgrade-socket of its own, or replace that one with \
         --upgrade",
        path.display()
    );
    let told = format!(
        "process {} was started with this process's upgrade channel and left it alone",
        std::process::id()
    );
    let _ = ch.set_write_timeout(Some(SEND_TIMEOUT));
    let _ = ch.set_read_timeout(Some(SEND_TIMEOUT));
    if send(&ch, &Message::Failed { reason: told }, &[]).is_ok() {
        // What it sends (and the descriptors) is dropped; its end of the exchange
        // finishes before the channel closes, so it reads the reason.
        while let Ok((m, _)) = recv(&ch) {
            if matches!(m, Message::End) {
                break;
            }
        }
    }
    anyhow::bail!(why)
}

/// The old side: send every socket, and the anycast verdicts, to the successor on
/// `ch`. Returns its pid.
pub fn hand_over(
    ch: &Channel,
    sockets: &super::listeners::Sockets,
    admin: Option<&TcpListener>,
    anycast: &[Verdict],
    by_hand: &[ByHand],
    others: &[u32],
) -> Result<u32, String> {
    let pid = trusted_peer(ch)?;
    ch.set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(|e| format!("cannot set up the channel to process {pid}: {e}"))?;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock => format!(
            "process {pid} did not take the sockets (no room in its queue for {} s)",
            SEND_TIMEOUT.as_secs()
        ),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => format!(
            "process {pid} closed the channel before it took the sockets (its own log says \
             why: a successor takes them only from a process of its own user)"
        ),
        _ => format!("cannot send the sockets to process {pid}: {e}"),
    };
    let mut greeting = hello(anycast, by_hand);
    if let Message::Hello { others: o, .. } = &mut greeting {
        o.extend(others.iter().filter(|&&p| p != std::process::id()));
    }
    send(ch, &greeting, &[]).map_err(io)?;
    for (key, http, l) in sockets.handover() {
        let fds: Vec<_> = l.sockets.iter().map(AsFd::as_fd).collect();
        for part in fds.chunks(crate::io::fdpass::MAX_FDS) {
            let m = Message::Listener {
                key: key.clone(),
                http,
            };
            send(ch, &m, part).map_err(io)?;
        }
    }
    if let Some(a) = admin {
        send(ch, &Message::Admin, &[a.as_fd()]).map_err(io)?;
    }
    send(ch, &Message::End, &[]).map_err(io)?;
    Ok(pid)
}

/// The old side, after [`hand_over`]: wait (on a thread of its own, at most
/// [`READY_TIMEOUT`]) for the successor's verdict.
pub fn await_ready(ch: &Channel, successor: u32) -> Result<(), String> {
    ch.set_read_timeout(Some(READY_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let verdict = match recv(ch) {
        Ok((Message::Ready { pid }, _)) if pid == successor => Ok(()),
        // Only the process holding the channel may say it serves.
        Ok((Message::Ready { pid }, _)) => Err(format!("said process {pid} is ready")),
        Ok((Message::Failed { reason }, _)) => {
            Err(format!("failed to start: {}", one_line(&reason)))
        }
        Ok((other, _)) => Err(one_line(&format!("sent {other:?} instead of ready"))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err("exited before it was ready".to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let why = format!("was not ready within {} s", READY_TIMEOUT.as_secs());
            // Told, so that a successor ready just too late exits rather than serve
            // beside this process, which keeps serving.
            let m = Message::Failed {
                reason: format!("the successor {why}; the running process keeps serving"),
            };
            let _ = send(ch, &m, &[]);
            Err(why)
        }
        Err(e) => Err(e.to_string()),
    };
    let _ = ch.set_read_timeout(None);
    verdict
}

/// What a successor received from the process it replaces.
#[derive(Debug)]
pub struct Inheritance {
    pub channel: Channel,
    pub old_pid: u32,
    pub listeners: Vec<HandedOver>,
    pub admin: Option<TcpListener>,
    /// The old process's anycast verdicts (none from a binary that sends none).
    pub anycast: Vec<Verdict>,
    /// The backends it had set to drain or maint by hand.
    pub by_hand: Vec<ByHand>,
    /// Other processes still serving (draining an earlier upgrade).
    pub others: Vec<u32>,
}

/// The successor's side: connect to the running process at `path` and take its
/// sockets.
pub fn receive(path: &Path) -> anyhow::Result<Inheritance> {
    let channel = Channel::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "--upgrade: cannot reach the running sluice at {}: {e}",
            path.display()
        )
    })?;
    // The sockets are taken only from a process of this user (or root): whoever
    // could put another socket at the path (a directory others may write to) must
    // not be able to hand this process listeners, nor learn that it is ready.
    trusted_peer(&channel).map_err(|e| anyhow::anyhow!("--upgrade: {}: {e}", path.display()))?;
    channel.set_read_timeout(Some(READY_TIMEOUT))?;
    let (old_pid, anycast, by_hand, others) = match recv(&channel)? {
        (
            Message::Hello {
                pid,
                anycast,
                by_hand,
                others,
            },
            _,
        ) => (pid, anycast, by_hand, others),
        (other, _) => anyhow::bail!("--upgrade: expected hello, got {other:?}"),
    };
    let mut listeners: Vec<HandedOver> = Vec::new();
    let mut admin = None;
    loop {
        match recv(&channel)? {
            (Message::Listener { key, http }, fds) => {
                let socks = fds.into_iter().map(TcpListener::from);
                match listeners.iter_mut().find(|(k, ..)| *k == key) {
                    Some((_, _, list)) => list.extend(socks),
                    None => listeners.push((key, http, socks.collect())),
                }
            }
            (Message::Admin, mut fds) => admin = fds.pop().map(TcpListener::from),
            (Message::End, _) => break,
            (other, _) => anyhow::bail!("--upgrade: unexpected {other:?}"),
        }
    }
    channel.set_read_timeout(None)?;
    let sockets: usize = listeners.iter().map(|(_, _, l)| l.len()).sum();
    tracing::info!(
        old_pid,
        addresses = listeners.len(),
        sockets,
        admin = admin.is_some(),
        anycast_announced = anycast.iter().filter(|v| v.announce).count(),
        set_by_hand = by_hand.len(),
        "upgrade: listening sockets received"
    );
    Ok(Inheritance {
        channel,
        old_pid,
        listeners,
        admin,
        anycast,
        by_hand,
        others,
    })
}

/// The old side, draining after `ready`: its shards no longer accept.
pub fn stopped(ch: &Channel) {
    if let Err(e) = send(ch, &Message::Stopped, &[]) {
        tracing::warn!(error = %e, "upgrade: cannot tell the successor that accepting stopped");
    }
}

/// The successor's side, started: tell the old process, and watch the channel: when
/// the old process stopped accepting, `on_stopped`; at its exit, it no longer serves.
pub fn ready(
    channel: Channel,
    old_pid: u32,
    processes: Arc<Processes>,
    on_stopped: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    let told = send(
        &channel,
        &Message::Ready {
            pid: std::process::id(),
        },
        &[],
    );
    if let Err(e) = told {
        // Either it gave up waiting (and said so before closing: it keeps serving,
        // so this one must not), or it died (killed, crashed) while this one
        // started: then this process holds the sockets, and exiting would leave
        // nobody to accept.
        if let Some(reason) = gave_up(&channel) {
            return Err(std::io::Error::other(format!(
                "the previous process gave up the upgrade: {reason}"
            )));
        }
        tracing::warn!(
            old_pid,
            error = %e,
            "upgrade: the previous process is gone; this process serves alone"
        );
        processes.remove(old_pid);
        on_stopped();
        return Ok(());
    }
    std::thread::Builder::new()
        .name("sluice-upgrade".into())
        .spawn(move || {
            // Then the end of the channel is the old process's exit.
            loop {
                match recv(&channel) {
                    Ok((Message::Stopped, _)) => {
                        tracing::info!(old_pid, "upgrade: the previous process stopped accepting");
                        on_stopped();
                    }
                    Ok((other, _)) => tracing::warn!(?other, "upgrade: unexpected message"),
                    Err(_) => break,
                }
            }
            processes.remove(old_pid);
            tracing::info!(old_pid, "upgrade: the previous process exited");
        })?;
    Ok(())
}

/// What the old process said before it closed the channel, if it gave up on this
/// successor (`failed`); `None` when it closed it without a word (it died).
fn gave_up(channel: &Channel) -> Option<String> {
    let _ = channel.set_read_timeout(Some(Duration::from_millis(100)));
    loop {
        match recv(channel) {
            Ok((Message::Failed { reason }, _)) => return Some(reason),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// The successor's side, failed: say why, so the old process logs it.
pub fn failed(channel: &Channel, reason: &str) {
    // Within one message, whatever the number of errors.
    let mut end = reason.len().min(crate::io::fdpass::MAX_MESSAGE / 4);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let m = Message::Failed {
        reason: reason[..end].to_owned(),
    };
    if let Err(e) = send(channel, &m, &[]) {
        tracing::debug!(error = %e, "upgrade: cannot report the failure");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anycast::tests::report;
    use crate::anycast::Board;

    /// What the successor receives of the anycast verdicts of an old process with one
    /// VIP announced and one withdrawn.
    #[test]
    fn the_anycast_verdicts_cross_the_channel_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let listener = ChannelListener::bind(&path).unwrap();
        let board = Board::default();
        board.set(vec![
            report("web", "192.0.2.10:80", true),
            report("db", "192.0.2.11:5432", false),
        ]);
        let verdicts = board.verdicts();
        let sent = verdicts.clone();
        let old = std::thread::spawn(move || {
            let ch = listener.accept().unwrap();
            let sockets = super::super::listeners::Sockets::new(1);
            let pid = hand_over(&ch, &sockets, None, &sent, &[], &[]).unwrap();
            assert_eq!(pid, std::process::id());
            ch
        });
        let inherited = receive(&path).unwrap();
        let _ch = old.join().unwrap();
        assert_eq!(inherited.old_pid, std::process::id());
        assert!(inherited.listeners.is_empty() && inherited.admin.is_none());
        assert_eq!(inherited.anycast, verdicts);
        let announced: Vec<_> = inherited.anycast.iter().map(|v| v.announce).collect();
        assert_eq!(announced, [true, false]);
    }

    /// Either side may be the older binary: a `hello` without verdicts is read as
    /// none, and one with them reads as the `hello` of a binary that knows none.
    #[test]
    fn a_hello_is_understood_with_or_without_verdicts() {
        let bare: Message = serde_json::from_str(r#"{"kind":"hello","pid":7}"#).unwrap();
        assert!(
            matches!(bare, Message::Hello { pid: 7, ref anycast, ref by_hand, .. } if anycast.is_empty() && by_hand.is_empty())
        );
        let by_hand = [ByHand {
            addr: "192.0.2.20:8080".parse().unwrap(),
            state: "maint".into(),
        }];
        let full = serde_json::to_string(&hello(
            &[Verdict {
                service: "web".into(),
                listen: "192.0.2.10:80".parse().unwrap(),
                announce: true,
            }],
            &by_hand,
        ))
        .unwrap();
        let Message::Hello { by_hand: read, .. } = serde_json::from_str(&full).unwrap() else {
            panic!("not a hello")
        };
        assert_eq!(read, by_hand);
        assert!(full.contains(r#""announce":true"#), "{full}");
        #[derive(Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        enum Older {
            Hello { pid: u32 },
        }
        let Older::Hello { pid } = serde_json::from_str(&full).unwrap();
        assert_eq!(pid, std::process::id());
    }

    /// Verdicts too many for one message are left out, not the upgrade.
    #[test]
    fn verdicts_that_do_not_fit_are_left_out() {
        let many: Vec<Verdict> = (0..4000u32)
            .map(|i| Verdict {
                service: format!("service-with-a-long-name-{i}"),
                listen: std::net::SocketAddr::from(([192, 0, 2, 1], (i % 60000) as u16)),
                announce: true,
            })
            .collect();
        let Message::Hello { anycast, .. } = hello(&many, &[]) else {
            panic!("not a hello")
        };
        assert!(anycast.is_empty());
        let Message::Hello { anycast, .. } = hello(&many[..10], &[]) else {
            panic!("not a hello")
        };
        assert_eq!(anycast.len(), 10);
    }
}
