//! Which TCP service takes a TLS connection of `[https] listen` untouched, by the
//! server name its ClientHello asks for: exact names first, then `*.` wildcards of
//! one label (as certificates match).

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct SniRoutes {
    exact: HashMap<String, usize>,
    /// `*.db.example` is kept as `db.example`.
    wildcard: HashMap<String, usize>,
}

impl SniRoutes {
    /// From `(service index, its sni names)`, names lower-case; a name listed twice
    /// goes to the first service (the config refuses that).
    pub fn build<'a>(services: impl IntoIterator<Item = (usize, &'a [String])>) -> SniRoutes {
        let mut r = SniRoutes::default();
        for (i, names) in services {
            for n in names {
                match n.strip_prefix("*.") {
                    Some(parent) => r.wildcard.entry(parent.to_owned()).or_insert(i),
                    None => r.exact.entry(n.clone()).or_insert(i),
                };
            }
        }
        r
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The service for `name` (any case).
    pub fn route(&self, name: &str) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(&i) = self.exact.get(name) {
            return Some(i);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_win_over_wildcards_which_cover_one_label() {
        let a = vec!["db.example".to_owned(), "*.db.example".to_owned()];
        let b = vec!["x.db.example".to_owned()];
        let r = SniRoutes::build([(0, a.as_slice()), (1, b.as_slice())]);
        assert_eq!(r.route("db.example"), Some(0));
        assert_eq!(r.route("DB.Example"), Some(0));
        assert_eq!(r.route("x.db.example"), Some(1));
        assert_eq!(r.route("y.db.example"), Some(0));
        assert_eq!(r.route("a.y.db.example"), None);
        assert_eq!(r.route("example"), None);
        assert_eq!(r.route(""), None);
        assert!(SniRoutes::default().route("db.example").is_none());
    }
}
