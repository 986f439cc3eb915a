//! `sluice announce`: an ExaBGP API process. It polls the admin port's `/v1/anycast`
//! and prints `announce route P next-hop self` / `withdraw route P next-hop self` when
//! a prefix's verdict changes — the whole state at its first answer, so a restarted
//! announcer (or ExaBGP) re-learns every route — and withdraws everything and exits
//! when the admin port has not answered for the VIPs' `admin_timeout_ms`.
//!
//! A prefix is announced only while every anycast service listening on it says so:
//! the route attracts all of its ports.

use super::Report;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// What the speaker was told, by prefix: announced or withdrawn.
#[derive(Debug, Default)]
pub struct Routes {
    told: BTreeMap<String, bool>,
}

/// One ExaBGP API command.
pub fn line(prefix: &str, announce: bool) -> String {
    let verb = if announce { "announce" } else { "withdraw" };
    format!("{verb} route {prefix} next-hop self")
}

impl Routes {
    /// The commands that bring the speaker to `reports`: every prefix the first time
    /// it is seen, then only changes; a prefix no longer reported is withdrawn and
    /// forgotten.
    pub fn update(&mut self, reports: &[Report]) -> Vec<String> {
        let mut wanted: BTreeMap<&str, bool> = BTreeMap::new();
        for r in reports {
            *wanted.entry(r.prefix.as_str()).or_insert(true) &= r.announce;
        }
        let mut out = Vec::new();
        for (&prefix, &announce) in &wanted {
            if self.told.get(prefix) != Some(&announce) {
                out.push(line(prefix, announce));
                self.told.insert(prefix.to_owned(), announce);
            }
        }
        let gone: Vec<String> = self
            .told
            .keys()
            .filter(|p| !wanted.contains_key(p.as_str()))
            .cloned()
            .collect();
        for prefix in gone {
            if self.told.remove(&prefix) == Some(true) {
                out.push(line(&prefix, false));
            }
        }
        out
    }

    /// Withdraw every prefix announced.
    pub fn withdraw_all(&mut self) -> Vec<String> {
        let out = self
            .told
            .iter()
            .filter(|(_, &a)| a)
            .map(|(p, _)| line(p, false))
            .collect();
        self.told.clear();
        out
    }
}

/// `sluice announce`'s settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The admin port's base URL, `http://127.0.0.1:9090`.
    pub admin: String,
    pub interval: Duration,
    /// `[admin] token`, when the admin port needs it.
    pub token: Option<String>,
}

/// Used until the first answer says otherwise.
const DEFAULT_ADMIN_TIMEOUT_MS: u64 = 3000;

/// Run until the admin port stops answering (after it answered once): then withdraw
/// everything and return an error saying so. Writing to a closed stdout (ExaBGP gone)
/// returns too.
pub fn run(s: &Settings) -> anyhow::Result<()> {
    // ExaBGP acknowledges each command on our stdin ("done"): read and drop it, so its
    // writes never block.
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(|| std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink()))?;
    let url = format!("{}/v1/anycast", s.admin.trim_end_matches('/'));
    // No redirect is followed: the admin port never sends one, so a redirect is
    // something else answering at the URL, and what it points to must not decide
    // which routes this host attracts.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(s.interval.max(Duration::from_millis(500))))
        .max_redirects(0)
        .build()
        .into();
    let mut routes = Routes::default();
    let mut last_answer: Option<Instant> = None;
    let mut timeout = Duration::from_millis(DEFAULT_ADMIN_TIMEOUT_MS);
    let mut failing = false;
    loop {
        match fetch(&agent, &url, s.token.as_deref()) {
            Ok(reports) => {
                if failing {
                    tracing::info!(%url, "the admin port answers again");
                    failing = false;
                }
                last_answer = Some(Instant::now());
                if let Some(r) = reports.first() {
                    timeout = admin_timeout(r.admin_timeout_ms);
                }
                emit(&routes.update(&reports))?;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(%url, error = %e, "the admin port does not answer");
                    failing = true;
                }
                if last_answer.is_some_and(|t| t.elapsed() >= timeout) {
                    emit(&routes.withdraw_all())?;
                    anyhow::bail!(
                        "{url} has not answered for {} ms: every route withdrawn",
                        timeout.as_millis()
                    );
                }
            }
        }
        std::thread::sleep(s.interval);
    }
}

/// The answer's `admin_timeout_ms` within what `[anycast]` accepts (100 ms to an
/// hour): an answer cannot keep the routes for ever once the page stops answering.
fn admin_timeout(ms: u64) -> Duration {
    Duration::from_millis(ms.clamp(100, 3_600_000))
}

fn fetch(agent: &ureq::Agent, url: &str, token: Option<&str>) -> anyhow::Result<Vec<Report>> {
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut answer = req.call()?;
    if answer.status() != 200 {
        let to = answer.headers().get("location");
        anyhow::bail!(
            "answered {} (not the admin port's page{})",
            answer.status(),
            to.and_then(|l| l.to_str().ok())
                .map(|l| format!(", redirect to {l}"))
                .unwrap_or_default()
        );
    }
    let body = answer
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()?;
    Ok(serde_json::from_str(&body)?)
}

/// Write the commands, one per line, and flush: ExaBGP reads lines as they come.
fn emit(lines: &[String]) -> anyhow::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
        tracing::info!(command = %l, "sent to the BGP speaker");
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(prefix: &str, service: &str, announce: bool) -> Report {
        Report {
            prefix: prefix.into(),
            service: service.into(),
            listen: String::new(),
            announce,
            reason: String::new(),
            admin_timeout_ms: 3000,
        }
    }

    const A: &str = "192.0.2.10/32";
    const B: &str = "192.0.2.11/32";

    #[test]
    fn the_first_answer_gives_the_whole_state_then_only_changes() {
        let mut routes = Routes::default();
        assert_eq!(
            routes.update(&[r(A, "web", true), r(B, "db", false)]),
            [
                "announce route 192.0.2.10/32 next-hop self",
                "withdraw route 192.0.2.11/32 next-hop self"
            ]
        );
        assert!(routes
            .update(&[r(A, "web", true), r(B, "db", false)])
            .is_empty());
        assert_eq!(
            routes.update(&[r(A, "web", false), r(B, "db", false)]),
            ["withdraw route 192.0.2.10/32 next-hop self"]
        );
        assert_eq!(
            routes.update(&[r(A, "web", false), r(B, "db", true)]),
            ["announce route 192.0.2.11/32 next-hop self"]
        );
    }

    #[test]
    fn a_prefix_is_announced_only_while_every_service_on_it_says_so() {
        let mut routes = Routes::default();
        assert_eq!(
            routes.update(&[r(A, "web", true), r(A, "web-tls", false)]),
            ["withdraw route 192.0.2.10/32 next-hop self"]
        );
        assert_eq!(
            routes.update(&[r(A, "web", true), r(A, "web-tls", true)]),
            ["announce route 192.0.2.10/32 next-hop self"]
        );
    }

    #[test]
    fn an_answers_admin_timeout_is_held_to_what_the_config_accepts() {
        assert_eq!(admin_timeout(3000), Duration::from_secs(3));
        assert_eq!(admin_timeout(0), Duration::from_millis(100));
        assert_eq!(admin_timeout(u64::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn a_prefix_gone_is_withdrawn_and_all_can_be_withdrawn() {
        let mut routes = Routes::default();
        routes.update(&[r(A, "web", true), r(B, "db", true)]);
        assert_eq!(
            routes.update(&[r(A, "web", true)]),
            ["withdraw route 192.0.2.11/32 next-hop self"]
        );
        assert_eq!(
            routes.withdraw_all(),
            ["withdraw route 192.0.2.10/32 next-hop self"]
        );
        // Told again from the start: a restarted speaker learns everything.
        assert_eq!(
            routes.update(&[r(A, "web", true)]),
            ["announce route 192.0.2.10/32 next-hop self"]
        );
    }
}
