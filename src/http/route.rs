//! Request routing on the shared HTTP listener: by Host (exact, then `*.domain`
//! wildcards, longest first), then by the longest matching path prefix among that
//! host's services; services with a path prefix and no vhost match any Host last.
//! Built on the control thread; a lookup allocates nothing.

use std::collections::HashMap;

/// Services of one host, longest path prefix first: `(prefix, service index)`.
type Prefixes = Vec<(Box<[u8]>, usize)>;

#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Box<[u8]>, Prefixes>,
    /// `(".domain", services)`, longest suffix first.
    wildcard: Vec<(Box<[u8]>, Prefixes)>,
    /// Services routed by path alone.
    any: Prefixes,
}

/// Longest host name looked up (DNS names are at most 253 bytes).
const MAX_HOST: usize = 255;

impl Router {
    /// `services` yields each HTTP service's index, vhosts and path prefix.
    pub fn build<'a>(
        services: impl IntoIterator<Item = (usize, &'a [String], Option<&'a str>)>,
    ) -> Router {
        let mut r = Router::default();
        let mut wild: HashMap<Box<[u8]>, Prefixes> = HashMap::new();
        for (i, vhosts, prefix) in services {
            let p: Box<[u8]> = prefix.unwrap_or("").as_bytes().into();
            if vhosts.is_empty() {
                if !p.is_empty() {
                    r.any.push((p.clone(), i));
                }
                continue;
            }
            for v in vhosts {
                let v = v.to_ascii_lowercase();
                match v.strip_prefix('*') {
                    Some(suffix) => wild.entry(suffix.as_bytes().into()).or_default(),
                    None => r.exact.entry(v.as_bytes().into()).or_default(),
                }
                .push((p.clone(), i));
            }
        }
        r.wildcard = wild.into_iter().collect();
        r.wildcard
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        for list in r
            .exact
            .values_mut()
            .chain(r.wildcard.iter_mut().map(|(_, l)| l))
            .chain(std::iter::once(&mut r.any))
        {
            // Longest prefix first; among equals, the service listed first.
            list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        }
        r
    }

    /// The service for a request to `host` (port already removed) and `path`.
    pub fn route(&self, host: &[u8], path: &[u8]) -> Option<usize> {
        let mut buf = [0u8; MAX_HOST];
        let host = host.strip_suffix(b".").unwrap_or(host);
        let lower = buf.get_mut(..host.len())?;
        lower.copy_from_slice(host);
        lower.make_ascii_lowercase();
        let by_prefix = |list: &Prefixes| {
            list.iter()
                .find(|(p, _)| path.starts_with(p))
                .map(|&(_, i)| i)
        };
        if let Some(i) = self.exact.get(&*lower).and_then(by_prefix) {
            return Some(i);
        }
        let wild = self.wildcard.iter().find_map(|(suffix, list)| {
            (lower.len() > suffix.len() && lower.ends_with(suffix))
                .then(|| by_prefix(list))
                .flatten()
        });
        wild.or_else(|| by_prefix(&self.any))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (web, wild, api, other, path_only) = (
            s(&["web.example"]),
            s(&["*.web.example"]),
            s(&["web.example"]),
            s(&["Other.Example"]),
            s(&[]),
        );
        Router::build([
            (0, web.as_slice(), None),
            (1, wild.as_slice(), None),
            (2, api.as_slice(), Some("/api")),
            (3, other.as_slice(), Some("/x")),
            (4, path_only.as_slice(), Some("/static")),
        ])
    }

    #[test]
    fn host_then_longest_prefix() {
        let r = router();
        assert_eq!(r.route(b"web.example", b"/"), Some(0));
        assert_eq!(r.route(b"WEB.example", b"/api/v1"), Some(2));
        assert_eq!(r.route(b"web.example.", b"/api"), Some(2));
        assert_eq!(r.route(b"a.web.example", b"/api"), Some(1));
        assert_eq!(r.route(b"a.b.web.example", b"/"), Some(1));
        assert_eq!(r.route(b"other.example", b"/x/1"), Some(3));
        // The host matches but no prefix does: fall through to path-only services.
        assert_eq!(r.route(b"other.example", b"/static/a"), Some(4));
        assert_eq!(r.route(b"other.example", b"/y"), None);
        assert_eq!(r.route(b"nothing.example", b"/static"), Some(4));
        assert_eq!(r.route(b"nothing.example", b"/"), None);
        assert_eq!(r.route(b"xweb.example", b"/"), None);
        assert_eq!(r.route(&[b'a'; 300], b"/"), None);
    }
}
