//! What `sluice check` says about loaded certificates: what would make clients
//! refuse them now or soon, and what makes one never served. Loading refuses only
//! what cannot work at all (no key, a key that is not the certificate's); these are
//! findings, because an expired certificate still beats no listener.

use super::{unix_now, CertInfo, CertSet, ChainCert};
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;
use x509_parser::time::ASN1Time;

/// A certificate closer than this to its end is warned about: two weeks leaves time
/// to renew by hand when automation failed (ACME clients renew at 30 days left).
pub const EXPIRY_WARNING_DAYS: i64 = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A certificate of the chain is past its end.
    Expired,
    /// A certificate of the chain has not started yet (or this host's clock is
    /// behind).
    NotYetValid,
    /// A certificate of the chain ends within [`EXPIRY_WARNING_DAYS`].
    ExpiresSoon,
    /// A certificate is not followed by its issuer: clients that do not reorder
    /// chains refuse it.
    ChainOutOfOrder,
    /// The server certificate names no host: it can only be the default.
    NoName,
}

impl Check {
    pub fn severity(self) -> Severity {
        match self {
            Check::Expired | Check::NotYetValid | Check::ChainOutOfOrder => Severity::Error,
            Check::ExpiresSoon | Check::NoName => Severity::Warning,
        }
    }
}

/// One thing found about one certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    pub file: PathBuf,
    pub message: String,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        self.check.severity()
    }
}

/// `<file>: <message>`, the way `sluice check` prints config errors.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// Every finding about `set` at `now`, certificate by certificate in load order.
pub fn inspect(set: &CertSet, now: SystemTime) -> Vec<Finding> {
    let now = unix_now(now);
    let mut findings = Vec::new();
    for (i, cert) in set.certificates().iter().enumerate() {
        let mut add = |check, message| {
            findings.push(Finding {
                check,
                file: cert.file.clone(),
                message,
            })
        };
        for pos in 0..cert.chain.len() {
            if let Some((check, message)) = validity(cert, pos, now) {
                add(check, message);
            }
        }
        // The first break only: one misplaced certificate breaks two links.
        if let Some(pos) = cert.chain.iter().position(|c| !c.issued_by_next) {
            let message = format!(
                "the chain is out of order: {} is followed by {}, which did not issue it \
                 (list the server certificate first, then each issuer in turn)",
                which(cert, pos),
                which(cert, pos + 1)
            );
            add(Check::ChainOutOfOrder, message);
        }
        if cert.names.is_empty() {
            let served = match i {
                0 => "it is sent only as the default, to clients no other certificate matches",
                _ => "it is never sent: only the first certificate is the default",
            };
            let message = format!(
                "the certificate names no host (no DNS subject alternative name, \
                 no common name); {served}"
            );
            add(Check::NoName, message);
        }
    }
    findings
}

/// Whether the chain's certificate at `pos` is valid at `now`, or soon not.
fn validity(cert: &CertInfo, pos: usize, now: i64) -> Option<(Check, String)> {
    let ChainCert {
        not_before,
        not_after,
        ..
    } = cert.chain[pos];
    let this = which(cert, pos);
    if now < not_before {
        let message = format!("{this} is not valid before {}", date(not_before));
        return Some((Check::NotYetValid, message));
    }
    if now > not_after {
        let message = format!("{this} expired on {}", date(not_after));
        return Some((Check::Expired, message));
    }
    let days_left = (not_after - now) / 86_400;
    if days_left < EXPIRY_WARNING_DAYS {
        let message = format!(
            "{this} expires on {}, in {}",
            date(not_after),
            match days_left {
                0 => "less than a day".to_string(),
                1 => "1 day".to_string(),
                n => format!("{n} days"),
            }
        );
        return Some((Check::ExpiresSoon, message));
    }
    None
}

/// How a message names the chain's certificate at `pos`.
fn which(cert: &CertInfo, pos: usize) -> String {
    match pos {
        0 => "the certificate".to_string(),
        _ => format!(
            "certificate {} of the chain ({})",
            pos + 1,
            cert.chain[pos].subject
        ),
    }
}

/// `2026-03-01 12:00 UTC`.
fn date(unix_secs: i64) -> String {
    match ASN1Time::from_timestamp(unix_secs) {
        Ok(t) => {
            let t = t.to_datetime();
            format!(
                "{}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => format!("{unix_secs} (Unix time)"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{write, Ca};
    use super::super::{load, unix_now};
    use super::*;
    use std::path::Path;

    const DAY: i64 = 86_400;

    fn findings(dir: &Path, files: &[(&str, String)]) -> Vec<Finding> {
        findings_at(dir, files, SystemTime::now())
    }

    fn findings_at(dir: &Path, files: &[(&str, String)], now: SystemTime) -> Vec<Finding> {
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|(name, pem)| write(dir, name, pem))
            .collect();
        inspect(&load(&paths).unwrap(), now)
    }

    fn checks(found: &[Finding]) -> Vec<Check> {
        found.iter().map(|f| f.check).collect()
    }

    #[test]
    fn a_good_chain_has_no_finding() {
        let root = Ca::new("Root");
        let inter = root.intermediate("Intermediate");
        let leaf = inter.leaf(&["good.example"]);
        let dir = tempfile::tempdir().unwrap();
        let pem = format!("{}{}{}", leaf.cert_pem, inter.pem(), leaf.key_pem);
        assert_eq!(findings(dir.path(), &[("good.pem", pem)]), []);
    }

    #[test]
    fn chain_out_of_order_is_an_error_naming_the_file() {
        let root = Ca::new("Root");
        let inter = root.intermediate("Intermediate");
        let leaf = inter.leaf(&["order.example"]);
        let dir = tempfile::tempdir().unwrap();
        let pem = format!(
            "{}{}{}{}",
            leaf.cert_pem,
            root.pem(),
            inter.pem(),
            leaf.key_pem
        );
        let found = findings(dir.path(), &[("order.pem", pem)]);
        assert_eq!(checks(&found), [Check::ChainOutOfOrder]);
        assert_eq!(found[0].severity(), Severity::Error);
        assert_eq!(found[0].file, dir.path().join("order.pem"));
        let text = found[0].to_string();
        assert!(text.starts_with(&format!("{}: ", dir.path().join("order.pem").display())));
        assert!(text.contains("CN=Root"), "{text}");
    }

    #[test]
    fn validity_findings() {
        let ca = Ca::new("CA");
        let at = SystemTime::now();
        let now = unix_now(at);
        let dir = tempfile::tempdir().unwrap();
        let soon = ca.leaf_valid(&["soon.example"], now - DAY, now + 5 * DAY);
        let expired = ca.leaf_valid(&["old.example"], now - 10 * DAY, now - DAY);
        let future = ca.leaf_valid(&["new.example"], now + DAY, now + 90 * DAY);
        let fine = ca.leaf_valid(&["fine.example"], now - DAY, now + 15 * DAY);
        let found = findings_at(
            dir.path(),
            &[
                ("fine.pem", fine.pem()),
                ("soon.pem", soon.pem()),
                ("expired.pem", expired.pem()),
                ("future.pem", future.pem()),
            ],
            at,
        );
        let got: Vec<_> = found
            .iter()
            .map(|f| {
                (
                    f.file.file_name().unwrap().to_str().unwrap(),
                    f.check,
                    f.severity(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("soon.pem", Check::ExpiresSoon, Severity::Warning),
                ("expired.pem", Check::Expired, Severity::Error),
                ("future.pem", Check::NotYetValid, Severity::Error),
            ]
        );
        assert!(found[0].message.contains("in 5 days"), "{}", found[0]);
    }

    #[test]
    fn an_expiring_intermediate_is_found_too() {
        let root = Ca::new("Root");
        let inter = root.intermediate("Intermediate");
        let leaf = inter.leaf(&["a.example"]);
        let dir = tempfile::tempdir().unwrap();
        let pem = format!("{}{}{}", leaf.cert_pem, inter.pem(), leaf.key_pem);
        let paths = [write(dir.path(), "a.pem", &pem)];
        let set = load(&paths).unwrap();
        let not_after = set.certificates()[0].chain[1].not_after;
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((not_after - DAY) as u64);
        let found = inspect(&set, at);
        let inter_found = found.iter().find(|f| f.message.contains("CN=Intermediate"));
        assert_eq!(
            inter_found.map(|f| f.check),
            Some(Check::ExpiresSoon),
            "{found:?}"
        );
    }

    #[test]
    fn a_certificate_without_names_is_warned_about() {
        let ca = Ca::new("CA");
        let dir = tempfile::tempdir().unwrap();
        let found = findings(
            dir.path(),
            &[
                ("a.pem", ca.leaf(&[]).pem()),
                ("b.pem", ca.leaf(&["192.0.2.7"]).pem()),
            ],
        );
        assert_eq!(checks(&found), [Check::NoName, Check::NoName]);
        assert!(found[0].message.contains("default"), "{}", found[0]);
        assert!(found[1].message.contains("never sent"), "{}", found[1]);
    }
}
