//! What `/haproxy?stats…` asks for. HAProxy's forms (`;csv`, `;norefresh`) and the
//! page's own settings, separated by `;` or `&` (or a second `?`, as people type it): `refresh=N` (seconds, 0 for off),
//! `filter=TEXT` (services whose name contains it), `expand` (every service with its
//! servers, however many), `json`.

/// Seconds between refreshes when the URL does not say.
pub const DEFAULT_REFRESH_S: u32 = 2;
/// The longest refresh period accepted: an hour.
const MAX_REFRESH_S: u32 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Csv,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub format: Format,
    pub refresh_s: u32,
    /// Lower case; empty for every service.
    pub filter: String,
    pub expand: bool,
}

/// `None` when `path` is not a stats page.
pub fn parse(path: &str) -> Option<StatsQuery> {
    let query = path.strip_prefix("/haproxy?")?;
    let mut parts = query.split([';', '&', '?']);
    // `stats=` is what the page's filter form sends.
    if !matches!(parts.next(), Some("stats" | "stats=")) {
        return None;
    }
    let mut q = StatsQuery {
        format: Format::Html,
        refresh_s: DEFAULT_REFRESH_S,
        filter: String::new(),
        expand: false,
    };
    for part in parts {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        match key {
            "csv" => q.format = Format::Csv,
            "json" => q.format = Format::Json,
            "norefresh" => q.refresh_s = 0,
            "refresh" => {
                q.refresh_s = value
                    .parse()
                    .map_or(q.refresh_s, |s: u32| s.min(MAX_REFRESH_S))
            }
            "filter" => q.filter = decode(value).trim().to_lowercase(),
            "expand" => q.expand = value != "0",
            // HAProxy's others (`;up`, `;no-maint`) change nothing here.
            _ => {}
        }
    }
    Some(q)
}

/// The URL of the page `q` describes.
pub fn link(q: &StatsQuery) -> String {
    let mut url = String::from("/haproxy?stats");
    match q.format {
        Format::Html => {}
        Format::Csv => url.push_str(";csv"),
        Format::Json => url.push_str(";json"),
    }
    if q.refresh_s != DEFAULT_REFRESH_S {
        url.push_str(&format!("&refresh={}", q.refresh_s));
    }
    if !q.filter.is_empty() {
        url.push_str("&filter=");
        for b in q.filter.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if q.expand {
        url.push_str("&expand");
    }
    url
}

/// A query value: `+` is a space, `%XX` a byte; what is not UTF-8 is replaced.
pub(super) fn decode(v: &str) -> String {
    let hex = |c: u8| char::from(c).to_digit(16);
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = match b.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, b[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_forms_and_the_page_settings() {
        let q = |p: &str| parse(p).unwrap();
        assert_eq!(q("/haproxy?stats").format, Format::Html);
        assert_eq!(q("/haproxy?stats").refresh_s, DEFAULT_REFRESH_S);
        assert_eq!(q("/haproxy?stats;csv").format, Format::Csv);
        assert_eq!(q("/haproxy?stats;csv;norefresh").format, Format::Csv);
        assert_eq!(q("/haproxy?stats;json").format, Format::Json);
        assert_eq!(q("/haproxy?stats;norefresh").refresh_s, 0);
        assert_eq!(q("/haproxy?stats&refresh=0").refresh_s, 0);
        assert_eq!(q("/haproxy?stats&refresh=10").refresh_s, 10);
        assert_eq!(q("/haproxy?stats?refresh=5").refresh_s, 5);
        assert_eq!(q("/haproxy?stats;refresh=99999").refresh_s, 3600);
        assert_eq!(q("/haproxy?stats&refresh=x").refresh_s, DEFAULT_REFRESH_S);
        let f = q("/haproxy?stats=&filter=Web%2Dapp+1&refresh=5");
        assert_eq!((f.filter.as_str(), f.refresh_s), ("web-app 1", 5));
        assert!(q("/haproxy?stats&expand").expand);
        assert!(!q("/haproxy?stats&expand=0").expand);
        assert_eq!(parse("/haproxy?statistics"), None);
        assert_eq!(parse("/metrics"), None);
    }

    #[test]
    fn links_read_back_as_what_they_say() {
        let q = StatsQuery {
            format: Format::Html,
            refresh_s: 0,
            filter: "web app/1&x".into(),
            expand: true,
        };
        let url = link(&q);
        assert_eq!(
            url,
            "/haproxy?stats&refresh=0&filter=web%20app%2F1%26x&expand"
        );
        assert_eq!(parse(&url), Some(q));
    }

    #[test]
    fn bad_escapes_stay_as_they_are() {
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%41%42"), "AB");
        assert_eq!(decode("%ff"), "\u{fffd}");
    }
}
