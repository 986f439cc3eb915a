//! `state_dir`: the ACME account (`account.json`) and the certificates obtained
//! (`certs/NAME.pem`, chain then key, named by the set's first vhost). Every file is
//! written whole or not at all — a temporary dot-file (which the certificate loader
//! skips), synced, renamed over the old one — and readable by its owner only: a
//! restart, or a crash mid-write, finds the old file or the new one, never half.
//!
//! Several edge hosts may share the directory (NFS, a shared volume): a host reads
//! the certificates another obtained as its own, at start and whenever the files
//! change; only a host that finds none (or one due) orders, and only while it holds
//! `order.lock`; the HTTP-01 tokens of its order are written to `http-01/`, where
//! every host sharing the directory finds them (within a second) and answers.

use crate::tls::certs;
use instant_acme::AccountCredentials;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why the state directory could not be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: holds no PEM certificate to trust", path.display())]
    NoRoot { path: PathBuf },
    #[error("{}: not an ACME account this version wrote: {error}", path.display())]
    Account {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("the ACME server's HTTP-01 token {token:?} is not base64url (RFC 8555, section 8.3): refused, nothing written")]
    BadToken { token: String },
    #[error("{names}: the certificate the ACME server issued is refused (the one in use stays): {reason}")]
    Issued { names: String, reason: String },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Where the certificates are: a directory `[https] listen` reads as HAProxy's
/// `crt <dir>`, beside `[tls] certificates`.
pub fn certs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("certs")
}

/// The file of the certificate for `names` (never empty).
pub fn cert_file(state_dir: &Path, names: &[String]) -> PathBuf {
    certs_dir(state_dir).join(format!("{}.pem", names[0]))
}

/// Whether `dir` holds a certificate file yet (before the first order it does not,
/// and an empty directory is not a certificate list).
pub fn has_certificates(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && name.ends_with(".pem")
        })
    })
}

/// Make `state_dir`, its `certs/` and `http-01/` (owner only), and remove what a
/// write or an order cut short by a crash or a restart left.
pub fn prepare(state_dir: &Path) -> Result<(), StoreError> {
    let certs = certs_dir(state_dir);
    let tokens = tokens_dir(state_dir);
    for dir in [&certs, &tokens] {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_at(dir))?;
    }
    release_own_lock(state_dir);
    for dir in [state_dir, &certs, &tokens] {
        for e in fs::read_dir(dir).map_err(io_at(dir))?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // A token older than any order is one an order cut short left.
            let stale_token = dir == tokens.as_path() && is_older(&e.path(), LOCK_STALE);
            if (name.starts_with('.') && name.ends_with(".tmp")) || stale_token {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

fn is_older(path: &Path, age: std::time::Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|a| a > age))
}

/// Write `bytes` to `path` atomically, mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = write_tmp(path, bytes)?;
    commit(&tmp, path)
}

/// `bytes` in `path`'s temporary dot-file (`.NAME.tmp`, beside it), synced: made
/// anew, owner only — a file left there before (its mode, a link) is removed, not
/// reused.
fn write_tmp(path: &Path, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_at(&tmp)(e)),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written {
        // A full disk: no half file left behind.
        let _ = fs::remove_file(&tmp);
        return Err(io_at(&tmp)(e));
    }
    Ok(tmp)
}

/// Rename the synced `tmp` over `path`, and sync the directory.
fn commit(tmp: &Path, path: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::rename(tmp, path).map_err(io_at(path))?;
    // The rename itself is durable once the directory is synced.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// `ca_bundle` is readable and starts with a PEM certificate (the one the ACME
/// client trusts).
pub fn check_root(path: &Path) -> Result<(), StoreError> {
    let text = fs::read_to_string(path).map_err(io_at(path))?;
    if text.contains("-----BEGIN CERTIFICATE-----") {
        return Ok(());
    }
    Err(StoreError::NoRoot {
        path: path.to_path_buf(),
    })
}

fn account_file(state_dir: &Path) -> PathBuf {
    state_dir.join("account.json")
}

/// The account made before, if any.
pub fn load_account(state_dir: &Path) -> Result<Option<AccountCredentials>, StoreError> {
    let path = account_file(state_dir);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StoreError::Account { path, error }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(StoreError::Io { path, error }),
    }
}

/// The directory URL the account in `state_dir` was made with, if there is one
/// that says: an account (and its certificates) belongs to one ACME server.
pub fn account_directory(state_dir: &Path) -> Option<String> {
    let bytes = fs::read(account_file(state_dir)).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("directory")?.as_str().map(str::to_owned)
}

pub fn save_account(state_dir: &Path, creds: &AccountCredentials) -> Result<(), StoreError> {
    let path = account_file(state_dir);
    let json = serde_json::to_vec_pretty(creds).map_err(|error| StoreError::Account {
        path: path.clone(),
        error,
    })?;
    write_atomic(&path, &json)
}

/// A certificate held for a set: its validity, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub not_before: i64,
    pub not_after: i64,
}

impl Held {
    /// When to renew: two thirds into its lifetime (a 90-day certificate at day 60,
    /// Let's Encrypt's advice), so a month of failures still ends in time.
    pub fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// The certificate in `state_dir` for `names`, when its file loads and it carries
/// every name of the set.
pub fn held(state_dir: &Path, names: &[String]) -> Option<Held> {
    let path = cert_file(state_dir, names);
    if !path.exists() {
        return None;
    }
    match carried(&path, names) {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!("{e}; ordering a new certificate");
            None
        }
    }
}

/// The certificate file at `path` loaded: its validity when its first certificate
/// carries every one of `names`, `None` when it does not.
fn carried(path: &Path, names: &[String]) -> Result<Option<Held>, certs::CertError> {
    let set = certs::load(std::slice::from_ref(&path.to_path_buf()))?;
    let Some(c) = set.certificates().first() else {
        return Ok(None);
    };
    Ok(names
        .iter()
        .all(|n| c.names().iter().any(|m| m.eq_ignore_ascii_case(n)))
        .then(|| Held {
            not_before: c.not_before_unix(),
            not_after: c.not_after_unix(),
        }))
}

/// Write the certificate the ACME server issued for `names` (chain, then the key)
/// to `certs/`, once it is fit to serve at `now` (Unix seconds): it loads as any
/// certificate file (PEM, the key its first certificate's), that certificate
/// carries every name, and it is neither expired nor due for renewal already.
/// Anything else is refused and nothing is written: one bad file fails the load of
/// the whole certificate directory (at the next start too), and one due at once
/// would be ordered again at once, without end.
pub fn install(
    state_dir: &Path,
    names: &[String],
    pem: &[u8],
    now: i64,
) -> Result<Held, StoreError> {
    let path = cert_file(state_dir, names);
    let tmp = write_tmp(&path, pem)?;
    let fit = match carried(&tmp, names) {
        Err(e) => Err(e.to_string()),
        Ok(None) => Err(format!(
            "it does not carry every one of {}",
            names.join(",")
        )),
        Ok(Some(h)) if h.not_after <= now => Err(format!("it expired (at {})", h.not_after)),
        Ok(Some(h)) if h.renew_at() <= now => Err(format!(
            "it is due for renewal already (valid from {} to {})",
            h.not_before, h.not_after
        )),
        Ok(Some(h)) => Ok(h),
    };
    match fit {
        Ok(held) => commit(&tmp, &path).map(|()| held),
        Err(reason) => {
            let _ = fs::remove_file(&tmp);
            Err(StoreError::Issued {
                names: names.join(","),
                reason,
            })
        }
    }
}

/// `state_dir/http-01/`: the key authorizations of the HTTP-01 challenges pending,
/// one file per token, so that a validation reaching any host sharing `state_dir`
/// is answered, whichever host placed the order.
pub fn tokens_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("http-01")
}

/// Tokens are base64url (RFC 8555, section 8.1): anything else in the directory is
/// not one.
fn is_token(s: &str) -> bool {
    (1..=MAX_TOKEN_BYTES).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

const MAX_TOKEN_BYTES: usize = 128;
/// Tokens read from the shared directory, at most: a few orders' worth.
const MAX_SHARED_TOKENS: usize = 64;
/// Entries of the shared directory looked at each second, at most (junk included):
/// the read is bounded however much the directory holds.
const MAX_SHARED_ENTRIES: usize = 1024;

/// A key authorization: the token, a dot, the account key's thumbprint (base64url;
/// RFC 8555, section 8.1). Nothing else is served from the shared directory.
fn is_key_authorization(token: &str, key_auth: &str) -> bool {
    key_auth.len() <= 2 * MAX_TOKEN_BYTES
        && key_auth
            .strip_prefix(token)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(is_token)
}

/// `token` is one sluice may serve and name a file after: the ACME server's word
/// is not trusted with a path (`../certs/x.pem`, `/etc/…`).
fn check_token(token: &str) -> Result<(), StoreError> {
    if is_token(token) {
        return Ok(());
    }
    Err(StoreError::BadToken {
        token: token.chars().take(2 * MAX_TOKEN_BYTES).collect(),
    })
}

pub fn share_token(state_dir: &Path, token: &str, key_auth: &str) -> Result<(), StoreError> {
    check_token(token)?;
    write_atomic(&tokens_dir(state_dir).join(token), key_auth.as_bytes())
}

pub fn unshare_token(state_dir: &Path, token: &str) {
    if is_token(token) {
        let _ = fs::remove_file(tokens_dir(state_dir).join(token));
    }
}

/// The contents of the regular file `path` when it holds at most `max` bytes of
/// UTF-8 (no more is read).
fn read_small(path: &Path, max: usize) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(max as u64 + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() <= max).then_some(text)
}

/// The tokens pending in the shared directory, with their key authorizations, in
/// name order (so that an unchanged directory reads the same); regular files only
/// (a FIFO would block the read), each read only as far as a key authorization
/// goes.
pub fn shared_tokens(state_dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(tokens_dir(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .take(MAX_SHARED_ENTRIES)
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let token = e.file_name().into_string().ok().filter(|t| is_token(t))?;
            let key_auth = read_small(&e.path(), 2 * MAX_TOKEN_BYTES)?;
            is_key_authorization(&token, &key_auth).then_some((token, key_auth))
        })
        .collect();
    out.sort();
    out.truncate(MAX_SHARED_TOKENS);
    out
}

/// The right to order, among the hosts sharing `state_dir`: `order.lock`, made
/// exclusively and removed when dropped. A lock older than [`LOCK_STALE`] is a
/// crashed host's, and taken over; at start a host removes the one it left itself.
#[derive(Debug)]
pub struct OrderLock {
    path: PathBuf,
}

impl Drop for OrderLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Longer than an order may take (polling included).
pub const LOCK_STALE: std::time::Duration = std::time::Duration::from_secs(300);

fn lock_file(state_dir: &Path) -> PathBuf {
    state_dir.join("order.lock")
}

/// This host's name, written in the lock.
fn host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Take the lock; `Ok(None)` while another host holds it.
pub fn lock_order(state_dir: &Path) -> Result<Option<OrderLock>, StoreError> {
    let path = lock_file(state_dir);
    if is_older(&path, LOCK_STALE) {
        tracing::warn!(file = %path.display(), "an order lock older than 5 minutes: taken over");
        let _ = fs::remove_file(&path);
    }
    let made = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match made {
        Ok(mut f) => {
            let _ = writeln!(f, "{} {}", host(), std::process::id());
            Ok(Some(OrderLock { path }))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(error) => Err(StoreError::Io { path, error }),
    }
}

/// At start: the lock this host left when it stopped mid-order is removed (the
/// order is placed again).
fn release_own_lock(state_dir: &Path) {
    let path = lock_file(state_dir);
    let mine = fs::read_to_string(&path)
        .is_ok_and(|s| s.split_whitespace().next() == Some(host().as_str()));
    if mine {
        let _ = fs::remove_file(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_accounts_directory_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(account_directory(dir.path()), None);
        let json = r#"{"id": "x", "key_pkcs8": "y", "directory": "https://a.example/dir"}"#;
        fs::write(account_file(dir.path()), json).unwrap();
        assert_eq!(
            account_directory(dir.path()).as_deref(),
            Some("https://a.example/dir")
        );
    }

    #[test]
    fn an_atomic_write_leaves_one_file_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        let stale = certs_dir(dir.path()).join(".a.pem.tmp");
        fs::write(&stale, b"half").unwrap();
        prepare(dir.path()).unwrap();
        assert!(!stale.exists(), "a write cut short is removed");
        let names = vec!["a.example".to_string()];
        let path = cert_file(dir.path(), &names);
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(has_certificates(&certs_dir(dir.path())));
        assert!(held(dir.path(), &names).is_none(), "not a certificate");
    }

    #[test]
    fn one_host_orders_at_a_time_and_tokens_are_shared() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        let lock = lock_order(dir.path()).unwrap().expect("free");
        assert!(lock_order(dir.path()).unwrap().is_none(), "held");
        drop(lock);
        let again = lock_order(dir.path()).unwrap().expect("released");
        // A restart of this host finds its own lock and removes it.
        std::mem::forget(again);
        prepare(dir.path()).unwrap();
        assert!(lock_order(dir.path()).unwrap().is_some());
        share_token(dir.path(), "tok_1-A", "tok_1-A.thumb").unwrap();
        fs::write(tokens_dir(dir.path()).join("not a token"), "x").unwrap();
        fs::write(tokens_dir(dir.path()).join("other"), "unrelated").unwrap();
        let shared = shared_tokens(dir.path());
        assert_eq!(
            shared,
            vec![("tok_1-A".to_string(), "tok_1-A.thumb".to_string())]
        );
        unshare_token(dir.path(), "tok_1-A");
        assert!(shared_tokens(dir.path()).is_empty());
        // A token an order cut short left is removed at the next start; a fresh one
        // (another host's order in progress) stays.
        share_token(dir.path(), "old", "old.thumb").unwrap();
        share_token(dir.path(), "new", "new.thumb").unwrap();
        let old = File::options()
            .write(true)
            .open(tokens_dir(dir.path()).join("old"))
            .unwrap();
        let past = std::time::SystemTime::now() - LOCK_STALE * 2;
        old.set_modified(past).unwrap();
        prepare(dir.path()).unwrap();
        let left: Vec<String> = shared_tokens(dir.path()).into_iter().map(|t| t.0).collect();
        assert_eq!(left, ["new"]);
    }

    #[test]
    fn a_token_that_is_not_base64url_names_no_file_and_removes_none() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        prepare(&state).unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"keep").unwrap();
        fs::write(state.join("account.json"), b"{}").unwrap();
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let abs = outside.display().to_string();
        for token in [
            "../account.json",
            "../../outside",
            abs.as_str(),
            "a/b",
            "",
            ".hidden",
            "..",
            "tok%2e",
            "t\u{f6}k",
            "tok\0",
            long.as_str(),
        ] {
            let e = share_token(&state, token, &format!("{token}.thumb")).unwrap_err();
            assert!(matches!(e, StoreError::BadToken { .. }), "{token:?}: {e}");
            unshare_token(&state, token);
        }
        assert_eq!(fs::read(&outside).unwrap(), b"keep");
        assert_eq!(fs::read(state.join("account.json")).unwrap(), b"{}");
        assert_eq!(fs::read_dir(tokens_dir(&state)).unwrap().count(), 0);
    }

    #[test]
    fn shared_tokens_are_read_bounded_and_only_as_key_authorizations() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        let tokens = tokens_dir(dir.path());
        share_token(dir.path(), "good", "good.thumb_-1").unwrap();
        // Served to anyone as the body: a token, a dot, a thumbprint, nothing more.
        fs::write(tokens.join("junk"), "junk.thumb\r\n<script>").unwrap();
        fs::write(tokens.join("nodot"), "nodotthumb").unwrap();
        // A huge file is not read whole (a sparse gigabyte).
        let big = File::create(tokens.join("big")).unwrap();
        big.set_len(1 << 30).unwrap();
        // A FIFO would block the read for ever.
        let made = std::process::Command::new("mkfifo")
            .arg(tokens.join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        // A link to a file elsewhere is not followed.
        fs::write(dir.path().join("elsewhere"), "linked.thumb").unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), tokens.join("linked")).unwrap();
        assert_eq!(
            shared_tokens(dir.path()),
            vec![("good".to_string(), "good.thumb_-1".to_string())]
        );
        // More tokens than an order has: the first by name, the same every read.
        for i in 0..MAX_SHARED_TOKENS + 10 {
            let t = format!("t{i:03}");
            share_token(dir.path(), &t, &format!("{t}.x")).unwrap();
        }
        let read = shared_tokens(dir.path());
        assert_eq!(read.len(), MAX_SHARED_TOKENS);
        assert_eq!(read[0].0, "good");
        assert_eq!(read, shared_tokens(dir.path()));
    }

    #[test]
    fn an_issued_certificate_is_written_only_when_fit_to_serve() {
        use crate::tls::certs::testkit::Ca;
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        let names = vec!["shop.example".to_string(), "www.shop.example".to_string()];
        let ca = Ca::new("ACME test CA");
        let now = unix_now_for_tests();
        let day = 86_400;
        let good = ca.leaf_valid(
            &["shop.example", "www.shop.example"],
            now - day,
            now + 89 * day,
        );
        let other = ca.leaf_valid(&["shop.example", "evil.example"], now - day, now + 89 * day);
        let expired = ca.leaf_valid(
            &["shop.example", "www.shop.example"],
            now - 90 * day,
            now - day,
        );
        let due = ca.leaf_valid(
            &["shop.example", "www.shop.example"],
            now - 80 * day,
            now + 10 * day,
        );
        let refused = [
            ("not PEM".to_string(), "PEM"),
            (String::new(), "PEM"),
            (good.cert_pem.clone(), "key"),
            (
                format!("{}{}", good.cert_pem, other.key_pem),
                "does not match",
            ),
            (
                other.pem(),
                "does not carry every one of shop.example,www.shop.example",
            ),
            (expired.pem(), "expired"),
            (due.pem(), "due for renewal already"),
        ];
        for (pem, why) in refused {
            let e = install(dir.path(), &names, pem.as_bytes(), now).unwrap_err();
            let e = e.to_string();
            assert!(e.starts_with("shop.example,www.shop.example: "), "{e}");
            assert!(e.contains(why), "{why}: {e}");
            let left: Vec<_> = fs::read_dir(certs_dir(dir.path())).unwrap().collect();
            assert!(
                left.is_empty(),
                "{why}: nothing written, nothing left: {left:?}"
            );
        }
        let held = install(dir.path(), &names, good.pem().as_bytes(), now).unwrap();
        assert_eq!(held.not_after, now + 89 * day);
        assert_eq!(super::held(dir.path(), &names), Some(held));
        // A refused one later keeps the one in use.
        assert!(install(dir.path(), &names, b"garbage", now).is_err());
        assert_eq!(super::held(dir.path(), &names), Some(held));
        assert_eq!(fs::read_dir(certs_dir(dir.path())).unwrap().count(), 1);
    }

    fn unix_now_for_tests() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn a_temporary_file_left_before_is_made_anew_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("account.json");
        let tmp = dir.path().join(".account.json.tmp");
        fs::write(&tmp, b"left by someone").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"secret").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!tmp.exists());
    }

    #[test]
    fn a_ca_bundle_without_a_certificate_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.pem");
        fs::write(&path, "not pem").unwrap();
        let e = check_root(&path).unwrap_err().to_string();
        assert!(
            e.contains("root.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        assert!(check_root(&dir.path().join("missing.pem")).is_err());
    }

    #[test]
    fn renewal_is_due_two_thirds_into_the_lifetime() {
        let h = Held {
            not_before: 1_000,
            not_after: 1_000 + 90 * 86_400,
        };
        assert_eq!(h.renew_at(), 1_000 + 60 * 86_400);
    }
}
