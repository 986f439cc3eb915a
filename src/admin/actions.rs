//! The stats page's admin actions, as HAProxy's stats page posts them (`stats admin`):
//! a form `b=<backend>&s=<server>&action=<ready|drain|maint>` (`s` may repeat) sent
//! with `POST` to the stats URI, answered `303 See Other` back to the page with
//! `;st=DONE`, `PART`, `NONE` or `ERRP`. A server is named as the CSV names it
//! (`127_0_0_1_9001`) or by its address (`127.0.0.1:9001`).
//!
//! The state is the backend address's ([`crate::health::Admin`]): a backend two
//! services name is taken out of both, as a failed check takes it out of both. It
//! lasts across reloads and Marathon updates while some service names the address,
//! until set back with `ready`.

use crate::health::Admin;
use crate::snapshot::Snapshot;

/// HAProxy's `st=` results, with the page they redirect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every server named was set.
    Done,
    /// Some were, some were not found.
    Part,
    /// None was found.
    None,
    /// The form is not one this understands (no backend, no server, unknown action).
    Errp,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Done => "DONE",
            Outcome::Part => "PART",
            Outcome::None => "NONE",
            Outcome::Errp => "ERRP",
        }
    }

    /// The `Location` header line back to the stats page.
    pub fn location(self) -> &'static str {
        match self {
            Outcome::Done => "Location: /haproxy?stats;st=DONE\r\n",
            Outcome::Part => "Location: /haproxy?stats;st=PART\r\n",
            Outcome::None => "Location: /haproxy?stats;st=NONE\r\n",
            Outcome::Errp => "Location: /haproxy?stats;st=ERRP\r\n",
        }
    }
}

/// The most servers one form may name.
const MAX_SERVERS: usize = 256;

/// Apply the form `body` to the backends of `snap`: the outcome, and a line for the
/// person or script that sent it.
pub fn apply(snap: &Snapshot, body: &[u8]) -> (Outcome, String) {
    let form = match Form::parse(body) {
        Ok(f) => f,
        Err(why) => return (Outcome::Errp, format!("{why}\n")),
    };
    let Some(svc) = snap.services.iter().find(|s| s.config.name == form.backend) else {
        return (Outcome::None, format!("no backend {:?}\n", form.backend));
    };
    let mut set = Vec::new();
    let mut missing = Vec::new();
    for name in &form.servers {
        let found = svc
            .backends
            .iter()
            .zip(svc.svnames.iter())
            .find(|(b, n)| b.addr.to_string() == *name || &***n == name.as_str())
            .map(|(b, _)| b);
        match found {
            Some(b) => {
                b.health.set_admin(form.action);
                tracing::info!(
                    service = %svc.config.name,
                    backend = %b.addr,
                    "admin port: backend set to {}",
                    form.action.word()
                );
                set.push(b.addr.to_string());
            }
            None => missing.push(name.as_str()),
        }
    }
    let outcome = match (set.is_empty(), missing.is_empty()) {
        (false, true) => Outcome::Done,
        (false, false) => Outcome::Part,
        (true, _) => Outcome::None,
    };
    let mut line = format!(
        "{}: {} set to {}",
        outcome.word(),
        set.len(),
        form.action.word()
    );
    if !missing.is_empty() {
        line.push_str(&format!(
            "; not in {}: {}",
            form.backend,
            missing.join(", ")
        ));
    }
    line.push('\n');
    (outcome, line)
}

/// What the form asks.
#[derive(Debug, PartialEq, Eq)]
struct Form {
    backend: String,
    servers: Vec<String>,
    action: Admin,
}

impl Form {
    fn parse(body: &[u8]) -> Result<Form, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8")?;
        let (mut backend, mut servers, mut action) = (None, Vec::new(), None);
        for pair in text.trim_end().split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = super::query::decode(value);
            match key {
                "b" => backend = Some(value),
                "s" if servers.len() < MAX_SERVERS => servers.push(value),
                "s" => return Err(format!("at most {MAX_SERVERS} servers in one form")),
                "action" => action = Some(value),
                _ => {}
            }
        }
        let action = match action.as_deref() {
            Some("ready") => Admin::Ready,
            Some("drain") => Admin::Drain,
            Some("maint") => Admin::Maint,
            Some(other) => {
                return Err(format!(
                    "action {other:?} is not one of ready, drain, maint"
                ))
            }
            None => return Err("the form names no action".into()),
        };
        let backend = backend
            .filter(|b| !b.is_empty())
            .ok_or("the form names no backend (b=)")?;
        if servers.is_empty() {
            return Err("the form names no server (s=)".into());
        }
        Ok(Form {
            backend,
            servers,
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_page_form_parses_as_haproxy_posts_it() {
        let f =
            Form::parse(b"s=127_0_0_1_9001&s=127.0.0.1%3A9002&action=maint&b=web").expect("valid");
        assert_eq!(f.backend, "web");
        assert_eq!(f.servers, ["127_0_0_1_9001", "127.0.0.1:9002"]);
        assert_eq!(f.action, Admin::Maint);
        assert_eq!(
            Form::parse(b"b=web&s=x&action=ready\r\n").map(|f| f.action),
            Ok(Admin::Ready)
        );
    }

    #[test]
    fn a_form_missing_a_part_or_asking_an_unknown_action_is_refused() {
        for (body, why) in [
            (&b"s=x&action=maint"[..], "no backend"),
            (b"b=web&action=maint", "no server"),
            (b"b=web&s=x", "no action"),
            (b"b=web&s=x&action=shutdown", "not one of"),
            (b"b=web&s=x&action=maint&b=", "no backend"),
            (b"b=web&s=\xff&action=maint", "UTF-8"),
        ] {
            let err = Form::parse(body).expect_err("refused");
            assert!(err.contains(why), "{err}");
        }
        let many = "s=x&".repeat(MAX_SERVERS + 1) + "b=web&action=maint";
        assert!(Form::parse(many.as_bytes()).is_err());
    }
}
