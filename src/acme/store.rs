//! `state_dir`: the ACME account (`account.json`) and the certificates obtained
//! (`certs/NAME.pem`, chain then key, named by the set's first vhost). Every file is
//! written whole or not at all — a temporary dot-file (which the certificate loader
//! skips), synced, renamed over the old one — and readable by its owner only: a
//! restart, or a crash mid-write, finds the old file or the new one, never half.
//!
//! Several edge hosts may share the directory (NFS, a synced volume): a host reads
//! the certificates another obtained as its own, at start and whenever the files
//! change, so only a host that finds none (or one due) orders.

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
    #[error("{}: not an ACME account this version wrote: {error}", path.display())]
    Account {
        path: PathBuf,
        error: serde_json::Error,
    },
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

/// Make `state_dir` and its `certs/` (owner only), and remove what a write cut
/// short by a crash left.
pub fn prepare(state_dir: &Path) -> Result<(), StoreError> {
    let certs = certs_dir(state_dir);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&certs)
        .map_err(io_at(&certs))?;
    for dir in [state_dir, &certs] {
        for e in fs::read_dir(dir).map_err(io_at(dir))?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Write `bytes` to `path` atomically, mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    f.write_all(bytes).map_err(io_at(&tmp))?;
    f.sync_all().map_err(io_at(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_at(path))?;
    // The rename itself is durable once the directory is synced.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
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
    let set = match certs::load(std::slice::from_ref(&path)) {
        Ok(set) => set,
        Err(e) => {
            tracing::warn!("{e}; ordering a new certificate");
            return None;
        }
    };
    let c = set.certificates().first()?;
    names
        .iter()
        .all(|n| c.names().iter().any(|m| m.eq_ignore_ascii_case(n)))
        .then(|| Held {
            not_before: c.not_before_unix(),
            not_after: c.not_after_unix(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
    fn renewal_is_due_two_thirds_into_the_lifetime() {
        let h = Held {
            not_before: 1_000,
            not_after: 1_000 + 90 * 86_400,
        };
        assert_eq!(h.renew_at(), 1_000 + 60 * 86_400);
    }
}
