//! The names a certificate serves, and the tables that find a certificate for a
//! server name without allocating.
//!
//! Names are the DNS subject alternative names; the subject common names count only
//! when there is no DNS name (RFC 6125 §6.4.4, and what browsers do; HAProxy indexes
//! every CN as well, which would serve a certificate for a name no browser accepts
//! it for). A wildcard `*.example.com` covers exactly one label: `a.example.com`,
//! not `a.b.example.com`, not `example.com` (RFC 6125 §6.4.3).

use super::ChainCert;
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The longest server name looked up: a DNS name is at most 253 bytes.
const MAX_NAME: usize = 253;

/// Parses a chain (server certificate first): the server certificate's names, and
/// for each certificate what the checks need. The error says what is wrong.
pub(super) fn parse_chain(
    chain: &[CertificateDer<'_>],
) -> Result<(Vec<String>, Vec<ChainCert>), String> {
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(i, der)| match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => Ok(cert),
            Err(e) => Err(format!("certificate {} of {}: {e}", i + 1, chain.len())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let names = served_names(&parsed[0])?;
    let facts = parsed
        .iter()
        .enumerate()
        .map(|(i, cert)| ChainCert {
            subject: cert.subject().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            issued_by_next: parsed.get(i + 1).map_or(true, |next| {
                cert.issuer().as_raw() == next.subject().as_raw()
            }),
        })
        .collect();
    Ok((names, facts))
}

/// The names `cert` serves, lower-cased, each once, in the certificate's order.
fn served_names(cert: &X509Certificate<'_>) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        let name = name.to_ascii_lowercase();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    };
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("subject alternative names: {e}"))?;
    let mut dns = 0;
    for name in san.iter().flat_map(|san| &san.value.general_names) {
        if let GeneralName::DNSName(name) = name {
            add(name);
            dns += 1;
        }
    }
    if dns == 0 {
        for cn in cert.subject().iter_common_name() {
            if let Ok(name) = cn.as_str() {
                add(name);
            }
        }
    }
    Ok(names)
}

/// Server name → certificate index, built at load. The first certificate to claim a
/// name keeps it.
#[derive(Debug, Default)]
pub(super) struct Lookup {
    /// Every certificate carrying the name, in load order (an ECDSA and an RSA
    /// certificate may share one: the client's signature schemes choose).
    exact: HashMap<Box<str>, Vec<usize>>,
    /// `*.example.com` is filed under `example.com`: a name's parent is looked up.
    wildcard: HashMap<Box<str>, Vec<usize>>,
}

impl Lookup {
    /// `names` yields each certificate's names, in load order. A name with a `*`
    /// anywhere but a whole first label matches nothing (no client sends one).
    pub(super) fn build<'a>(names: impl Iterator<Item = &'a [String]>) -> Lookup {
        let mut lookup = Lookup::default();
        for (i, list) in names.enumerate() {
            for name in list {
                let (table, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut lookup.wildcard, parent),
                    None => (&mut lookup.exact, name.as_str()),
                };
                if !key.is_empty() && !key.contains('*') {
                    let all = table.entry(key.into()).or_default();
                    if all.last() != Some(&i) {
                        all.push(i);
                    }
                }
            }
        }
        lookup
    }

    /// The first certificate for `server_name` (see [`Self::find_all`]).
    #[cfg(test)]
    fn find(&self, server_name: &str) -> Option<usize> {
        self.find_all(server_name).map(|all| all[0])
    }

    /// The certificates for `server_name`, in load order: exact matches, else
    /// wildcards one label up. Case and one trailing dot do not matter (rustls
    /// lower-cases SNI already; other callers may not).
    pub(super) fn find_all(&self, server_name: &str) -> Option<&[usize]> {
        let name = server_name.strip_suffix('.').unwrap_or(server_name);
        let mut buf = [0u8; MAX_NAME];
        let lower = buf.get_mut(..name.len())?;
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII lower-casing keeps UTF-8 valid; a name that is not ASCII matches
        // nothing anyway, since certificates carry A-labels.
        let name = std::str::from_utf8(lower).ok()?;
        if let Some(all) = self.exact.get(name) {
            return Some(all);
        }
        match name.split_once('.')? {
            ("", _) => None,
            (_, parent) => self.wildcard.get(parent).map(Vec::as_slice),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Ca;
    use super::*;

    fn lookup(certs: &[&[&str]]) -> Lookup {
        let owned: Vec<Vec<String>> = certs
            .iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect();
        Lookup::build(owned.iter().map(Vec::as_slice))
    }

    #[test]
    fn exact_beats_wildcard_whatever_the_order() {
        let l = lookup(&[&["*.example.com"], &["www.example.com"]]);
        assert_eq!(l.find("www.example.com"), Some(1));
        assert_eq!(l.find("api.example.com"), Some(0));
    }

    #[test]
    fn wildcard_covers_one_label_only() {
        let l = lookup(&[&["*.example.com"]]);
        assert_eq!(l.find("a.example.com"), Some(0));
        assert_eq!(l.find("a.b.example.com"), None);
        assert_eq!(l.find("example.com"), None);
        assert_eq!(l.find("com"), None);
        assert_eq!(l.find(".example.com"), None);
    }

    #[test]
    fn lookup_ignores_case_and_a_trailing_dot() {
        let l = lookup(&[&["www.example.com"], &["*.example.org"]]);
        assert_eq!(l.find("WWW.Example.COM"), Some(0));
        assert_eq!(l.find("www.example.com."), Some(0));
        assert_eq!(l.find("A.EXAMPLE.ORG"), Some(1));
    }

    #[test]
    fn first_certificate_keeps_a_name() {
        let l = lookup(&[&["a.example"], &["a.example", "b.example"]]);
        assert_eq!(l.find("a.example"), Some(0));
        assert_eq!(l.find("b.example"), Some(1));
    }

    #[test]
    fn odd_wildcards_and_long_names_match_nothing() {
        let l = lookup(&[&["w*.example.com", "*", "*.", "*.*.example.com"]]);
        assert!(l.exact.is_empty() && l.wildcard.is_empty());
        assert_eq!(l.find("www.example.com"), None);
        assert_eq!(l.find(&"a".repeat(MAX_NAME + 1)), None);
    }

    #[test]
    fn common_name_counts_only_without_dns_names() {
        let ca = Ca::new("names CA");
        let with_san = ca.leaf_with_cn(&["www.example.com"], "Other.Example.com");
        let names = served_names(&parse(&with_san.der)).unwrap();
        assert_eq!(names, ["www.example.com"]);

        let cn_only = ca.leaf_with_cn(&[], "Legacy.Example.COM");
        let names = served_names(&parse(&cn_only.der)).unwrap();
        assert_eq!(names, ["legacy.example.com"]);

        let ip_only = ca.leaf_with_cn(&["192.0.2.1"], "ip.example.com");
        let names = served_names(&parse(&ip_only.der)).unwrap();
        assert_eq!(names, ["ip.example.com"], "an IP address is not a DNS name");
    }

    #[test]
    fn names_are_lower_cased_once() {
        let ca = Ca::new("names CA");
        let leaf = ca.leaf(&["WWW.Example.com", "www.example.com", "*.Example.com"]);
        let names = served_names(&parse(&leaf.der)).unwrap();
        assert_eq!(names, ["www.example.com", "*.example.com"]);
    }

    fn parse<'a>(der: &'a CertificateDer<'_>) -> X509Certificate<'a> {
        x509_parser::parse_x509_certificate(der).unwrap().1
    }
}
