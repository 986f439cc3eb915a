//! Certificates obtained and renewed from an ACME (RFC 8555) server, off the shards
//! and off the control thread: one thread ("sluice-acme") with a current-thread
//! tokio runtime of its own for instant-acme, one order at a time.
//!
//! For each vhost set (a service asking, see [`crate::config::vhost_sets`]) it looks
//! at the certificate in `state_dir`: none, one not carrying every name, or one past
//! two thirds of its lifetime is ordered; else it sleeps until that point. An issued
//! certificate is written into `state_dir/certs/`, which `[https] listen` reads
//! beside `[tls] certificates`, and the control thread is told: it builds the TLS
//! configuration again, as a reload does — new handshakes get the new certificate,
//! live connections keep theirs. A failure keeps whatever certificate is in use, is
//! logged with the vhosts and the challenge and counted, and is tried again after a
//! jittered back-off (`retry_initial_ms` doubling to `retry_max_ms`).
//!
//! A restart reads the certificates back (so it orders nothing new); an order a
//! restart cut short is simply placed again (the ACME server reuses the
//! authorizations it validated), and a certificate half written is never seen (see
//! [`store`]).

mod challenges;
mod client;
pub mod store;

pub use challenges::{AlpnResolver, Challenges, Pending, ACME_TLS_ALPN, HTTP01_PREFIX};

use crate::config::AcmeConfig;
use crate::stats::SharedCounter;
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What `/metrics` shows of ACME: orders by outcome, and when each set's
/// certificate ends.
#[derive(Debug, Default)]
pub struct AcmeStats {
    pub orders_ok: SharedCounter,
    pub orders_failed: SharedCounter,
    /// `(names joined by commas, not_after in Unix seconds)`, one per set held.
    /// Written by the ACME thread, read by the admin thread only.
    pub expiry: Mutex<Vec<(String, i64)>>,
}

impl AcmeStats {
    fn set_expiry(&self, names: &str, not_after: i64) {
        if let Ok(mut list) = self.expiry.lock() {
            match list.iter_mut().find(|(n, _)| n == names) {
                Some(e) => e.1 = not_after,
                None => list.push((names.to_owned(), not_after)),
            }
        }
    }
}

/// The running ACME thread: told of the vhost sets after each build.
#[derive(Debug)]
pub struct Handle {
    sets: Sender<Vec<Vec<String>>>,
}

impl Handle {
    /// The vhost sets the configuration now asks for (unchanged sets keep their
    /// schedule).
    pub fn follow(&self, sets: Vec<Vec<String>>) {
        let _ = self.sets.send(sets);
    }
}

/// Start the ACME thread (after making `state_dir` and reading `ca_bundle`: either
/// failing fails the start). `issued` is called after a certificate is written.
pub fn spawn(
    cfg: AcmeConfig,
    challenges: Arc<Challenges>,
    stats: Arc<AcmeStats>,
    issued: Box<dyn Fn() + Send>,
) -> Result<Handle, store::StoreError> {
    store::prepare(&cfg.state_dir)?;
    if let Some(pem) = &cfg.ca_bundle {
        store::check_root(pem)?;
    }
    let (tx, rx) = crossbeam::channel::unbounded();
    let worker = Worker {
        cfg,
        challenges,
        stats,
        issued,
        plans: Vec::new(),
        account: None,
        shared: None,
    };
    std::thread::Builder::new()
        .name("sluice-acme".into())
        .spawn(move || worker.run(rx))
        .map_err(|error| store::StoreError::Io {
            path: "(thread)".into(),
            error,
        })?;
    Ok(Handle { sets: tx })
}

/// One vhost set and when to look at it next.
struct Plan {
    names: Vec<String>,
    due: Instant,
    failures: u32,
    /// What the last look found (`None`: not looked at yet).
    seen: Option<Option<store::Held>>,
}

struct Worker {
    cfg: AcmeConfig,
    challenges: Arc<Challenges>,
    stats: Arc<AcmeStats>,
    issued: Box<dyn Fn() + Send>,
    plans: Vec<Plan>,
    account: Option<instant_acme::Account>,
    /// The shared HTTP-01 tokens last published (`None`: publish again).
    shared: Option<Vec<(String, String)>>,
}

/// How often the HTTP-01 tokens other hosts sharing `state_dir` wrote are read (a
/// validation is retried by the ACME server for longer than this), and how soon a
/// host that found another ordering looks again.
const SHARED_POLL: Duration = Duration::from_secs(1);

impl Worker {
    fn run(mut self, rx: Receiver<Vec<Vec<String>>>) {
        // instant-acme's HTTPS client builds its rustls config with the process
        // default provider: aws-lc-rs, as every other TLS config here.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return tracing::error!("ACME disabled: no runtime: {e}"),
        };
        loop {
            if self.cfg.challenge == crate::config::ChallengeKind::Http01 {
                self.share();
            }
            let now = Instant::now();
            for i in 0..self.plans.len() {
                if self.plans[i].due <= now {
                    self.look(i, &rt);
                }
            }
            let next = self.plans.iter().map(|p| p.due).min();
            let wait = next.map_or(SHARED_POLL, |d| d.saturating_duration_since(Instant::now()));
            match rx.recv_timeout(wait.min(SHARED_POLL)) {
                Ok(sets) => self.follow(sets),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Publish the HTTP-01 tokens in the shared directory when they changed.
    fn share(&mut self) {
        let tokens = store::shared_tokens(&self.cfg.state_dir);
        if self.shared.as_ref() == Some(&tokens) {
            return;
        }
        let mut pending = Pending::default();
        for (token, key_auth) in &tokens {
            pending.add_http(token, key_auth);
        }
        self.challenges.set(pending);
        self.shared = Some(tokens);
    }

    fn follow(&mut self, sets: Vec<Vec<String>>) {
        self.plans.retain(|p| sets.contains(&p.names));
        for names in sets {
            if !self.plans.iter().any(|p| p.names == names) {
                self.plans.push(Plan {
                    names,
                    due: Instant::now(),
                    failures: 0,
                    seen: None,
                });
            }
        }
    }

    /// Look at one set: schedule its renewal, or order it now.
    fn look(&mut self, i: usize, rt: &tokio::runtime::Runtime) {
        let names = self.plans[i].names.clone();
        if self.schedule(i, true) {
            return;
        }
        let lock = match store::lock_order(&self.cfg.state_dir) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                // Another host is ordering: its certificate is looked for soon.
                self.plans[i].due = Instant::now() + SHARED_POLL;
                return;
            }
            Err(e) => return self.failed(i, &client::OrderError::Store(e)),
        };
        // A host that held the lock until now may have just written it.
        if self.schedule(i, false) {
            return;
        }
        let set = names.join(",");
        let result = rt.block_on(bounded(ISSUE_TIMEOUT, &set, self.issue(&names)));
        drop(lock);
        self.shared = None;
        match result {
            Ok(()) => {
                self.stats.orders_ok.inc();
                self.plans[i].failures = 0;
                let challenge = self.cfg.challenge.as_str();
                tracing::info!(vhosts = %names.join(","), challenge, "certificate obtained");
                (self.issued)();
                // Told once: the look below must not take the new file for one
                // another host wrote.
                self.plans[i].seen = None;
                self.schedule(i, false);
            }
            Err(e) => self.failed(i, &e),
        }
    }

    /// Look at the certificate held for plan `i`: `true` when it is not due (the
    /// plan is scheduled at its renewal). One another host wrote is built in.
    fn schedule(&mut self, i: usize, say: bool) -> bool {
        let plan = &mut self.plans[i];
        let joined = plan.names.join(",");
        let held = store::held(&self.cfg.state_dir, &plan.names);
        let before = plan.seen.replace(held);
        if before.is_some_and(|b| b != held) && held.is_some() {
            (self.issued)();
        }
        let Some(held) = held else { return false };
        self.stats.set_expiry(&joined, held.not_after);
        let left = held.renew_at() - unix_now();
        if left > 0 {
            plan.due = Instant::now() + Duration::from_secs(left as u64);
            return true;
        }
        if say {
            tracing::info!(vhosts = %joined, "certificate due for renewal: ordering");
        }
        false
    }

    fn failed(&mut self, i: usize, e: &client::OrderError) {
        self.stats.orders_failed.inc();
        let p = &mut self.plans[i];
        p.failures += 1;
        let wait = backoff(&self.cfg, p.failures);
        p.due = Instant::now() + wait;
        tracing::error!(
            vhosts = %p.names.join(","),
            challenge = self.cfg.challenge.as_str(),
            retry_in_ms = wait.as_millis() as u64,
            "certificate not obtained (the one in use, if any, stays): {e}"
        );
    }

    async fn issue(&mut self, names: &[String]) -> Result<(), client::OrderError> {
        let account = match &self.account {
            Some(a) => a.clone(),
            None => {
                let a = client::account(&self.cfg).await?;
                self.account = Some(a.clone());
                a
            }
        };
        let pem = client::order(&account, names, &self.cfg, &self.challenges).await?;
        store::install(&self.cfg.state_dir, names, pem.as_bytes(), unix_now())?;
        Ok(())
    }
}

/// How long one issuance may take in all — the account, every request, the
/// polling — however slowly the ACME server answers (instant-acme bounds none of its
/// requests): shorter than [`store::LOCK_STALE`], so another host never takes over
/// the lock of an order still running, and the thread goes back to the other sets
/// and the shared tokens.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(240);

/// `issue` given at most `limit`: past it, dropped (its connections closed) and a
/// failure naming the vhosts.
async fn bounded(
    limit: Duration,
    names: &str,
    issue: impl std::future::Future<Output = Result<(), client::OrderError>>,
) -> Result<(), client::OrderError> {
    tokio::time::timeout(limit, issue)
        .await
        .unwrap_or_else(|_| {
            Err(client::OrderError::Server {
                names: names.to_owned(),
                error: format!("no answer within {} s", limit.as_secs()),
            })
        })
}

/// `retry_initial_ms` doubled per failure past the first, at most `retry_max_ms`,
/// then between three quarters and all of it, at random: hosts that failed together
/// do not retry together.
fn backoff(cfg: &AcmeConfig, failures: u32) -> Duration {
    let doubled = cfg
        .retry_initial_ms
        .saturating_mul(1u64 << failures.saturating_sub(1).min(30));
    let ms = doubled.min(cfg.retry_max_ms);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(ms - ms / 4 * (random % 1000) / 1000)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_bound_with_jitter_below() {
        let cfg = AcmeConfig {
            directory: String::new(),
            contact: Vec::new(),
            state_dir: "/nonexistent".into(),
            challenge: crate::config::ChallengeKind::Http01,
            ca_bundle: None,
            retry_initial_ms: 60_000,
            retry_max_ms: 3_600_000,
            all_vhosts: false,
        };
        for (failures, full) in [(1, 60_000), (2, 120_000), (3, 240_000), (20, 3_600_000)] {
            let ms = backoff(&cfg, failures).as_millis() as u64;
            assert!(ms <= full && ms >= full - full / 4, "{failures}: {ms}");
        }
    }

    #[test]
    fn an_issuance_the_server_never_answers_ends_as_a_failure() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let limit = Duration::from_millis(20);
        let hung = bounded(limit, "shop.example", std::future::pending());
        let e = rt.block_on(hung).unwrap_err().to_string();
        assert!(e.contains("shop.example") && e.contains("no answer"), "{e}");
        let done = bounded(limit, "shop.example", async { Ok(()) });
        assert!(rt.block_on(done).is_ok());
    }
}
