//! The bundle store: committing an archive under its final name, and the
//! record that lets a redelivered request be answered without redoing it.
//!
//! A request is committed in two steps, each atomic: first a record
//! `<store>/.bundlegen-serve/requests/<sha256 of the uuid>.json` naming the
//! request (its uuid and the digest of its message) and the bundle path,
//! then the archive is moved to that path without replacing anything there.
//! A worker killed between the two leaves a record whose bundle does not
//! exist, which counts as not committed; killed after both, before its ack,
//! the redelivered request finds the record and its bundle and is answered
//! from them.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::staging::StagedFile;

/// The store's hidden directory of request records.
const RECORDS: &str = ".bundlegen-serve/requests";
/// A record larger than this is not one of ours.
const MAX_RECORD: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} already exists\nhelp: send another output_filename, or remove the old bundle")]
    Exists { path: PathBuf },
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> StoreError + 'p {
        move |source| StoreError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// Identifies a request across deliveries: its uuid and the SHA-256 of its
/// message body (the same uuid with another body is another request).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub uuid: String,
    pub body: String,
}

impl RequestKey {
    pub fn new(uuid: &str, body: &[u8]) -> RequestKey {
        RequestKey {
            uuid: uuid.to_owned(),
            body: hex(&Sha256::digest(body)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    uuid: String,
    request_sha256: String,
    bundle_path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) the store directory and its records directory.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let records = dir.join(RECORDS);
        fs::create_dir_all(&records).map_err(StoreError::io("create", &records))?;
        Ok(Store {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record_path(&self, key: &RequestKey) -> PathBuf {
        self.dir.join(RECORDS).join(format!(
            "{}.json",
            hex(&Sha256::digest(key.uuid.as_bytes()))
        ))
    }

    /// The bundle already committed for this request, if it still exists.
    pub fn committed(&self, key: &RequestKey) -> Option<PathBuf> {
        use std::io::Read;
        let mut bytes = Vec::new();
        fs::File::open(self.record_path(key))
            .ok()?
            .take(MAX_RECORD)
            .read_to_end(&mut bytes)
            .ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        let same = record.uuid == key.uuid && record.request_sha256 == key.body;
        (same && fs::symlink_metadata(&record.bundle_path).is_ok_and(|m| m.is_file()))
            .then_some(record.bundle_path)
    }

    /// Moves `archive` to `dest` (which must not exist) after recording it
    /// for `key`. `archive` may be on another file system: it is then
    /// copied beside `dest` first.
    pub fn commit(&self, key: &RequestKey, archive: &Path, dest: &Path) -> Result<(), StoreError> {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(StoreError::Exists {
                path: dest.to_owned(),
            });
        }
        let record_path = self.record_path(key);
        let record = Record {
            uuid: key.uuid.clone(),
            request_sha256: key.body.clone(),
            bundle_path: dest.to_owned(),
        };
        let mut json = serde_json::to_vec_pretty(&record).map_err(|e| StoreError::Io {
            op: "encode",
            path: record_path.clone(),
            source: io::Error::other(e),
        })?;
        json.push(b'\n');
        StagedFile::write(&record_path, &json).map_err(|e| StoreError::Io {
            op: "write",
            path: record_path.clone(),
            source: io::Error::other(e),
        })?;
        let moved = move_noreplace(archive, dest);
        if moved.is_err() {
            let _ = fs::remove_file(&record_path);
        }
        moved?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename durable before the request is acknowledged.
            fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(StoreError::io("sync", parent))?;
        }
        Ok(())
    }

    /// Removes records older than `age` (their requests are long answered).
    pub fn forget_older_than(&self, age: std::time::Duration) -> usize {
        let dir = self.dir.join(RECORDS);
        let Ok(entries) = fs::read_dir(&dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|e| e > age);
            if old
                && entry.file_name().as_bytes().ends_with(b".json")
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}

/// Renames `from` to `to` unless `to` exists; across file systems, copies
/// into a hidden staged file beside `to` and links that to `to`. Never
/// leaves a partial file under `to`.
fn move_noreplace(from: &Path, to: &Path) -> Result<(), StoreError> {
    match rename_noreplace(from, to) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(StoreError::Exists {
                path: to.to_owned(),
            });
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
        Err(e) => {
            return Err(StoreError::Io {
                op: "move the bundle to",
                path: to.to_owned(),
                source: e,
            });
        }
    }
    let staged = StagedFile::new(to).map_err(|e| StoreError::Io {
        op: "stage",
        path: to.to_owned(),
        source: io::Error::other(e),
    })?;
    let mut src = fs::File::open(from).map_err(StoreError::io("read", from))?;
    io::copy(&mut src, &mut staged.file()).map_err(StoreError::io("copy the bundle to", to))?;
    use std::os::unix::fs::PermissionsExt;
    staged
        .file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(StoreError::io("set permissions on", to))?;
    staged
        .file()
        .sync_all()
        .map_err(StoreError::io("write", to))?;
    // A hard link never replaces an existing file; the staged name is
    // removed when `staged` is dropped.
    match fs::hard_link(staged.path(), to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::Exists {
            path: to.to_owned(),
        }),
        Err(e) => Err(StoreError::Io {
            op: "link the bundle to",
            path: to.to_owned(),
            source: e,
        }),
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let a = CString::new(from.as_os_str().as_bytes())?;
    let b = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        // A file system without RENAME_NOREPLACE: link, then unlink.
        fs::hard_link(from, to)?;
        let _ = fs::remove_file(from);
        return Ok(());
    }
    Err(e)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_records_and_refuses_to_replace() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store")).unwrap();
        let key = RequestKey::new("u1", b"body");
        let archive = t.path().join("a.tar.gz");
        fs::write(&archive, b"bundle").unwrap();
        let dest = store.dir().join("app.tar.gz");
        assert_eq!(store.committed(&key), None);
        store.commit(&key, &archive, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"bundle");
        assert_eq!(store.committed(&key), Some(dest.clone()));
        // Same uuid, other body: another request.
        assert_eq!(store.committed(&RequestKey::new("u1", b"other")), None);
        fs::write(&archive, b"second").unwrap();
        assert!(matches!(
            store.commit(&RequestKey::new("u2", b"b"), &archive, &dest),
            Err(StoreError::Exists { .. })
        ));
        assert_eq!(fs::read(&dest).unwrap(), b"bundle");
        // A record whose bundle is gone is not a commit.
        fs::remove_file(&dest).unwrap();
        assert_eq!(store.committed(&key), None);
    }
}
