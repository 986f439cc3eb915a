//! The fingerprint that tells the control thread when to read certificates again:
//! polled once a second, it must cost little and must see every change [`load`]
//! would see, and only those.
//!
//! [`load`]: super::load

use super::load::{key_beside, list_dir, Listing};
use super::MAX_DIR_FILES;
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A value that changes when a certificate file of `paths`, or a `.key` beside one,
/// is added, removed or modified: each path, size, modification and change times
/// (nanoseconds; the change time catches a copy that kept the old modification
/// time) and inode, hashed. Cheap enough to poll once a second: a directory listing
/// and three `stat` calls per certificate file (listing, file, `.key`), nothing
/// read. A missing path counts as a state (its return changes the value); a
/// directory of more than [`MAX_DIR_FILES`] entries is an error. Comparable within
/// one process only.
pub fn fingerprint(paths: &[PathBuf]) -> io::Result<u64> {
    let mut h = DefaultHasher::new();
    for path in paths {
        let files = match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => list_dir(path).map_err(|e| match e {
                Listing::Io(e) => e,
                Listing::TooMany => io::Error::other(format!(
                    "{}: the directory holds more than {MAX_DIR_FILES} files",
                    path.display()
                )),
            })?,
            _ => vec![path.clone()],
        };
        path.hash(&mut h);
        files.len().hash(&mut h);
        for file in &files {
            stamp(&mut h, file)?;
            stamp(&mut h, &key_beside(file))?;
        }
    }
    Ok(h.finish())
}

fn stamp(h: &mut DefaultHasher, path: &Path) -> io::Result<()> {
    path.hash(h);
    match fs::metadata(path) {
        Ok(m) => (
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino(),
            m.dev(),
        )
            .hash(h),
        Err(e) if e.kind() == io::ErrorKind::NotFound => u64::MAX.hash(h),
        Err(e) => return Err(e),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{write, Ca};
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn fingerprint_follows_certificate_files_only() {
        let ca = Ca::new("fp CA");
        let pem = ca.leaf(&["a.example"]).pem();
        let dir = tempfile::tempdir().unwrap();
        let paths = [dir.path().to_path_buf()];
        let a = write(dir.path(), "a.pem", &pem);
        let fp = || fingerprint(&paths).unwrap();
        let mut last = fp();
        // Whether the fingerprint moved since the last step.
        let mut moved = || {
            let now = fp();
            std::mem::replace(&mut last, now) != now
        };
        assert!(!moved(), "nothing changed");

        let later = SystemTime::now() + Duration::from_secs(3600);
        let file = fs::File::options().write(true).open(&a).unwrap();
        file.set_modified(later).unwrap();
        assert!(moved(), "touch");
        let tmp = write(dir.path(), ".a.pem.tmp", &pem);
        assert!(!moved(), "a dot-file is not a certificate");
        fs::rename(&tmp, &a).unwrap();
        assert!(moved(), "replace by rename");
        write(dir.path(), "b.pem", &pem);
        assert!(moved(), "add");
        write(dir.path(), "b.pem.key", "key");
        assert!(moved(), "add a key beside one");
        fs::remove_file(dir.path().join("b.pem")).unwrap();
        assert!(moved(), "remove");
        write(dir.path(), "a.ocsp", "x");
        write(dir.path(), "c.key", "x");
        assert!(!moved(), "extra files of no certificate");
        fs::remove_file(&a).unwrap();
        assert!(moved(), "remove the last");
    }

    #[test]
    fn fingerprint_of_a_file_path_sees_it_vanish_and_return() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("site.pem");
        let paths = [file.clone()];
        let absent = fingerprint(&paths).unwrap();
        fs::write(&file, "x").unwrap();
        let present = fingerprint(&paths).unwrap();
        assert_ne!(absent, present);
        fs::write(key_beside(&file), "k").unwrap();
        assert_ne!(fingerprint(&paths).unwrap(), present);
    }
}
