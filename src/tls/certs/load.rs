//! Reading certificate files the way HAProxy reads `crt <file|dir>` (HAProxy 2.2+,
//! default `ssl-load-extra-files`).
//!
//! - A directory contributes every regular file in it (links followed, as HAProxy's
//!   `stat` does: Kubernetes mounts secrets as links), in byte order of the names,
//!   except dot-files and the names HAProxy reserves for extra files: `*.key`,
//!   `*.ocsp`, `*.issuer`, `*.sctl`.
//! - A file holds a chain, server certificate first, and usually its key (PKCS#8,
//!   PKCS#1 RSA or SEC1 EC; the first one in the file). Without a key, the key is
//!   read from `<file>.key` — `site.pem.key`, the name appended, not replaced
//!   (HAProxy replaces `.crt` only under `ssl-load-extra-del-ext`, which sluice does
//!   not offer).

use super::{certify, CertError, CertSet};
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Entries read from one directory at most (all entries, skipped ones too): a
/// mistaken path such as `/etc` fails at once instead of being walked every second.
pub const MAX_DIR_FILES: usize = 10_000;

/// The largest certificate or key file read. A chain is a few KiB; this leaves room
/// for one with a whole CA bundle appended and refuses a log file named by mistake.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Extensions of the extra files HAProxy keeps beside a certificate, never loaded as
/// certificates themselves.
const EXTRA_FILES: [&[u8]; 4] = [b"key", b"ocsp", b"issuer", b"sctl"];

/// Loads every certificate of `paths` (files or directories), in order: the first
/// certificate of the first path is the default. Any bad file fails the whole load
/// with an error naming it, so a reload keeps the set in use rather than lose names.
pub fn load(paths: &[PathBuf]) -> Result<CertSet, CertError> {
    if paths.is_empty() {
        return Err(CertError::NoPaths);
    }
    let mut entries = Vec::new();
    for path in paths {
        for file in cert_files(path)? {
            entries.push(load_file(file)?);
        }
    }
    Ok(CertSet::new(entries))
}

/// The certificate files `path` stands for: itself, or a directory's files.
fn cert_files(path: &Path) -> Result<Vec<PathBuf>, CertError> {
    let meta = fs::metadata(path).map_err(|error| CertError::Unreadable {
        path: path.to_path_buf(),
        error,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let files = list_dir(path).map_err(|e| match e {
        Listing::Io(error) => CertError::Unreadable {
            path: path.to_path_buf(),
            error,
        },
        Listing::TooMany => CertError::TooManyFiles {
            path: path.to_path_buf(),
        },
    })?;
    if files.is_empty() {
        return Err(CertError::EmptyDirectory {
            path: path.to_path_buf(),
        });
    }
    Ok(files)
}

pub(super) enum Listing {
    Io(io::Error),
    TooMany,
}

/// A directory's certificate files, in byte order of their names. A link that leads
/// nowhere stays in the list, so that loading it names the problem (HAProxy fails on
/// it too); directories and other non-files are passed over.
pub(super) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, Listing> {
    let mut names: Vec<OsString> = Vec::new();
    for (n, entry) in fs::read_dir(dir).map_err(Listing::Io)?.enumerate() {
        if n >= MAX_DIR_FILES {
            return Err(Listing::TooMany);
        }
        let name = entry.map_err(Listing::Io)?.file_name();
        if is_extra_or_hidden(name.as_bytes()) {
            continue;
        }
        if fs::metadata(dir.join(&name)).is_ok_and(|m| !m.is_file()) {
            continue;
        }
        names.push(name);
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// Whether a directory entry is not a certificate file for HAProxy: a dot-file or
/// an extra file.
fn is_extra_or_hidden(name: &[u8]) -> bool {
    if name.starts_with(b".") {
        return true;
    }
    match name.iter().rposition(|&b| b == b'.') {
        Some(dot) => EXTRA_FILES.contains(&&name[dot + 1..]),
        None => false,
    }
}

/// `<file>.key`: where a key is read from when the file holds none.
pub(super) fn key_beside(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".key");
    PathBuf::from(name)
}

type Entry = (std::sync::Arc<rustls::sign::CertifiedKey>, super::CertInfo);

/// One certificate file, with its key from inside it or from beside it.
fn load_file(file: PathBuf) -> Result<Entry, CertError> {
    let pem = read_pem(&file)?;
    if pem.certs.is_empty() {
        return Err(CertError::NoCertificate { path: file });
    }
    let key = match pem.key {
        Some(key) => key,
        None if pem.encrypted => return Err(CertError::EncryptedKey { path: file }),
        None => read_key_beside(&file)?,
    };
    certify(file, pem.certs, key)
}

fn read_key_beside(file: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let key_file = key_beside(file);
    if let Err(e) = fs::metadata(&key_file) {
        if e.kind() == io::ErrorKind::NotFound {
            return Err(CertError::MissingKey {
                path: file.to_path_buf(),
                key_file,
            });
        }
    }
    let pem = read_pem(&key_file)?;
    match pem.key {
        Some(key) => Ok(key),
        None if pem.encrypted => Err(CertError::EncryptedKey { path: key_file }),
        None => Err(CertError::NoKey { path: key_file }),
    }
}

/// What a PEM file holds that sluice uses.
struct Pem {
    certs: Vec<CertificateDer<'static>>,
    key: Option<PrivateKeyDer<'static>>,
    /// An encrypted key is present (skipped as a section, or unreadable as PEM): said
    /// apart, since "no key" would send someone looking for a missing one.
    encrypted: bool,
}

fn read_pem(path: &Path) -> Result<Pem, CertError> {
    let bytes = read_bounded(path)?;
    let encrypted = contains(&bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(&bytes, b"Proc-Type: 4,ENCRYPTED");
    let not_pem = |reason| CertError::NotPem {
        path: path.to_path_buf(),
        reason,
    };
    let mut pem = Pem {
        certs: Vec::new(),
        key: None,
        encrypted,
    };
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        let (kind, der) = match section {
            Ok(section) => section,
            Err(_) if encrypted => return Err(CertError::EncryptedKey { path: path.into() }),
            Err(e) => return Err(not_pem(pem_error(&e))),
        };
        let key: PrivateKeyDer<'static> = match kind {
            SectionKind::Certificate => {
                pem.certs.push(CertificateDer::from(der));
                continue;
            }
            SectionKind::PrivateKey => PrivatePkcs8KeyDer::from(der).into(),
            SectionKind::RsaPrivateKey => PrivatePkcs1KeyDer::from(der).into(),
            SectionKind::EcPrivateKey => PrivateSec1KeyDer::from(der).into(),
            _ => continue,
        };
        pem.key.get_or_insert(key);
    }
    if !contains(&bytes, b"-----BEGIN ") {
        return Err(not_pem("no PEM section found"));
    }
    Ok(pem)
}

/// The file's bytes, refusing more than [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, CertError> {
    let unreadable = |error| CertError::Unreadable {
        path: path.to_path_buf(),
        error,
    };
    let file = fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(CertError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// A PEM syntax error in words (rustls-pki-types prints the offending line's bytes
/// as numbers, and that line may belong to a key).
fn pem_error(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "the file cannot be parsed",
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{write, Ca};
    use super::*;

    fn names(set: &CertSet) -> Vec<(String, Vec<String>)> {
        let file = |c: &super::super::CertInfo| {
            let name = c.file().file_name().unwrap().to_string_lossy();
            name.into_owned()
        };
        let certs = set.certificates().iter();
        certs.map(|c| (file(c), c.names().to_vec())).collect()
    }

    #[test]
    fn directory_loads_in_name_order_and_skips_extra_files() {
        let ca = Ca::new("load CA");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.pem", &ca.leaf(&["b.example"]).pem());
        write(dir.path(), "a.pem", &ca.leaf(&["a.example"]).pem());
        write(dir.path(), "C.pem", &ca.leaf(&["c.example"]).pem());
        for skipped in ["x.ocsp", "x.issuer", "x.sctl", "x.key", ".hidden.pem"] {
            write(dir.path(), skipped, "not a certificate");
        }
        fs::create_dir(dir.path().join("sub.pem")).unwrap();
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        let got = names(&set);
        let want = [
            ("C.pem", "c.example"),
            ("a.pem", "a.example"),
            ("b.pem", "b.example"),
        ];
        assert_eq!(got.len(), want.len());
        for ((file, names), (want_file, want_name)) in got.iter().zip(want) {
            assert_eq!(
                (file.as_str(), names.as_slice()),
                (want_file, &[want_name.to_string()][..])
            );
        }
        assert_eq!(set.index_for(None), 0, "the first file is the default");
        assert_eq!(set.index_for(Some("nowhere.example")), 0);
        assert_eq!(set.index_for(Some("b.example")), 2);
    }

    #[test]
    fn paths_keep_their_order_and_links_are_followed() {
        let ca = Ca::new("load CA");
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        fs::create_dir(&certs).unwrap();
        let real = write(dir.path(), "real.pem", &ca.leaf(&["link.example"]).pem());
        std::os::unix::fs::symlink(&real, certs.join("a.pem")).unwrap();
        let z = write(dir.path(), "z.pem", &ca.leaf(&["z.example"]).pem());
        let set = load(&[z, certs]).unwrap();
        let got: Vec<_> = names(&set).into_iter().map(|(f, _)| f).collect();
        assert_eq!(got, ["z.pem", "a.pem"]);
    }

    #[test]
    fn key_is_read_from_beside_a_file_without_one() {
        let ca = Ca::new("load CA");
        let leaf = ca.leaf(&["split.example"]);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "site.pem", &leaf.cert_pem);
        write(dir.path(), "site.pem.key", &leaf.key_pem);
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(
            names(&set).len(),
            1,
            "site.pem.key is not a certificate file"
        );
        assert_eq!(set.certificates()[0].names(), ["split.example"]);
    }

    #[test]
    fn key_in_the_file_wins_over_one_beside_it() {
        let ca = Ca::new("load CA");
        let leaf = ca.leaf(&["inline.example"]);
        let dir = tempfile::tempdir().unwrap();
        let pem = write(dir.path(), "site.pem", &leaf.pem());
        write(dir.path(), "site.pem.key", "garbage, never read");
        load(&[pem]).unwrap();
    }

    #[test]
    fn missing_key_names_both_files() {
        let ca = Ca::new("load CA");
        let dir = tempfile::tempdir().unwrap();
        let pem = write(dir.path(), "site.pem", &ca.leaf(&["a.example"]).cert_pem);
        let err = load(std::slice::from_ref(&pem)).unwrap_err();
        assert!(matches!(&err, CertError::MissingKey { path, .. } if *path == pem));
        let text = err.to_string();
        assert!(text.starts_with(&format!("{}: ", pem.display())), "{text}");
        assert!(text.contains("site.pem.key"), "{text}");

        let key = write(
            dir.path(),
            "site.pem.key",
            &ca.leaf(&["a.example"]).cert_pem,
        );
        let err = load(&[pem]).unwrap_err();
        assert!(
            matches!(&err, CertError::NoKey { path } if *path == key),
            "{err}"
        );
    }

    #[test]
    fn mismatched_key_is_refused_naming_the_file() {
        let ca = Ca::new("load CA");
        let (a, b) = (ca.leaf(&["a.example"]), ca.leaf(&["b.example"]));
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1-good.pem", &a.pem());
        let bad = write(
            dir.path(),
            "2-bad.pem",
            &format!("{}{}", a.cert_pem, b.key_pem),
        );
        let err = load(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(matches!(&err, CertError::KeyMismatch { path } if *path == bad));
        let want = format!(
            "{}: the private key does not match the certificate",
            bad.display()
        );
        assert_eq!(err.to_string(), want);
    }

    /// A chain pasted CA first: the key is the second certificate's, and the error
    /// says to put the server certificate first rather than "does not match".
    #[test]
    fn a_chain_out_of_order_is_named_as_such() {
        let ca = Ca::new("load CA");
        let (leaf, other) = (ca.leaf(&["a.example"]), ca.leaf(&["b.example"]));
        let dir = tempfile::tempdir().unwrap();
        let pem = format!("{}{}{}", other.cert_pem, leaf.cert_pem, leaf.key_pem);
        let bad = write(dir.path(), "a.pem", &pem);
        let err = load(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(
            matches!(&err, CertError::LeafNotFirst { path, position: 2 } if *path == bad),
            "{err}"
        );
        assert!(err.to_string().contains("put the server certificate first"));
    }

    type IsKind = fn(&CertError) -> bool;

    #[test]
    fn bad_files_are_errors_that_name_them() {
        let ca = Ca::new("load CA");
        let leaf = ca.leaf(&["a.example"]);
        let dir = tempfile::tempdir().unwrap();
        let p = |name, text: &str| write(dir.path(), name, text);
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n\
                         -----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let cases: Vec<(PathBuf, IsKind)> = vec![
            (p("text.pem", "hello\n"), |e| {
                matches!(e, CertError::NotPem { .. })
            }),
            (p("key-only.pem", &leaf.key_pem), |e| {
                matches!(e, CertError::NoCertificate { .. })
            }),
            (
                p("cut.pem", &leaf.cert_pem[..leaf.cert_pem.len() - 30]),
                |e| matches!(e, CertError::NotPem { .. }),
            ),
            (
                p("enc.pem", &format!("{}{encrypted}", leaf.cert_pem)),
                |e| matches!(e, CertError::EncryptedKey { .. }),
            ),
            (
                p("legacy.pem", &format!("{}{legacy}", leaf.cert_pem)),
                |e| matches!(e, CertError::EncryptedKey { .. }),
            ),
            (dir.path().join("absent.pem"), |e| {
                matches!(e, CertError::Unreadable { .. })
            }),
        ];
        for (path, kind) in cases {
            let err = load(std::slice::from_ref(&path)).unwrap_err();
            assert!(kind(&err), "{}: {err:?}", path.display());
            let text = err.to_string();
            assert!(text.starts_with(&format!("{}: ", path.display())), "{text}");
        }
    }

    #[test]
    fn one_bad_file_fails_the_whole_directory() {
        let ca = Ca::new("load CA");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.pem", &ca.leaf(&["a.example"]).pem());
        let bad = write(dir.path(), "b.pem", "not PEM");
        let err = load(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(matches!(&err, CertError::NotPem { path, .. } if *path == bad));
    }

    #[test]
    fn empty_directory_and_no_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".hidden", "x");
        write(dir.path(), "a.pem.key", "x");
        let err = load(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(matches!(&err, CertError::EmptyDirectory { path } if path == dir.path()));
        assert!(matches!(load(&[]), Err(CertError::NoPaths)));
    }

    #[test]
    fn oversized_file_and_crowded_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = write(
            dir.path(),
            "big.pem",
            &"x".repeat(MAX_FILE_BYTES as usize + 1),
        );
        assert!(matches!(load(&[big]), Err(CertError::TooLarge { .. })));

        let crowded = dir.path().join("crowded");
        fs::create_dir(&crowded).unwrap();
        for i in 0..=MAX_DIR_FILES {
            fs::File::create(crowded.join(format!(".{i}"))).unwrap();
        }
        let err = load(std::slice::from_ref(&crowded)).unwrap_err();
        assert!(matches!(err, CertError::TooManyFiles { .. }), "{err}");
        assert!(super::super::fingerprint(&[crowded]).is_err());
    }

    #[test]
    fn extra_and_hidden_names() {
        for name in [
            "a.key",
            "a.pem.key",
            "a.ocsp",
            "a.issuer",
            "a.sctl",
            ".a.pem",
            "..data",
        ] {
            assert!(is_extra_or_hidden(name.as_bytes()), "{name}");
        }
        for name in ["a.pem", "a.crt", "key", "a.keys", "a", "a.key.pem"] {
            assert!(!is_extra_or_hidden(name.as_bytes()), "{name}");
        }
    }
}
