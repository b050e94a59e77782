//! Atomic output: results are built in a hidden directory beside their
//! final name and renamed into place only when complete, so that a failed
//! or killed run never leaves a partial result under the final name and a
//! previous result stays intact until the new one replaces it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("{path} already exists and is not empty\nhelp: pass --force (or -y) to replace it")]
    Exists { path: PathBuf },
    #[error("{path} is a symbolic link; refusing to write through it\nhelp: name the real directory instead")]
    Symlink { path: PathBuf },
    #[error("{path} has no file name to write to")]
    NoName { path: PathBuf },
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A directory being built for `dest`.
#[derive(Debug)]
pub struct Staging {
    dest: PathBuf,
    temp: PathBuf,
    done: bool,
}

impl Staging {
    /// Prepares to write `dest`. An existing empty directory is replaced;
    /// anything else at `dest` only when `overwrite` is set. `dest` must
    /// not be a symlink.
    pub fn new(dest: &Path, overwrite: bool) -> Result<Staging, StagingError> {
        let name = dest.file_name().ok_or_else(|| StagingError::NoName { path: dest.to_owned() })?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        match fs::symlink_metadata(dest) {
            Ok(m) if m.file_type().is_symlink() => return Err(StagingError::Symlink { path: dest.to_owned() }),
            Ok(m) if m.is_dir() => {
                let empty = fs::read_dir(dest)
                    .map_err(|source| StagingError::Io { op: "read", path: dest.to_owned(), source })?
                    .next()
                    .is_none();
                if !empty && !overwrite {
                    return Err(StagingError::Exists { path: dest.to_owned() });
                }
            }
            Ok(_) if !overwrite => return Err(StagingError::Exists { path: dest.to_owned() }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StagingError::Io { op: "inspect", path: dest.to_owned(), source }),
        }
        fs::create_dir_all(&parent).map_err(|source| StagingError::Io { op: "create", path: parent.clone(), source })?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".bundlegen-");
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .map_err(|source| StagingError::Io { op: "create a temporary directory in", path: parent.clone(), source })?
            .keep();
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o755))
            .map_err(|source| StagingError::Io { op: "set permissions on", path: temp.clone(), source })?;
        Ok(Staging { dest: dest.to_owned(), temp, done: false })
    }

    /// Where to build the result.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Moves the result to its final name, replacing what was there.
    pub fn commit(mut self) -> Result<(), StagingError> {
        let io_err = |op, path: &Path, source| StagingError::Io { op, path: path.to_owned(), source };
        match fs::symlink_metadata(&self.dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(&self.temp, &self.dest).map_err(|e| io_err("rename into place", &self.dest, e))?;
            }
            Err(e) => return Err(io_err("inspect", &self.dest, e)),
            Ok(m) if m.file_type().is_symlink() => return Err(StagingError::Symlink { path: self.dest.clone() }),
            Ok(_) => {
                // Swap atomically, then delete the old result (now at temp).
                if exchange(&self.temp, &self.dest).is_err() {
                    let old = self.temp.with_extension("old");
                    fs::rename(&self.dest, &old).map_err(|e| io_err("move aside", &self.dest, e))?;
                    if let Err(e) = fs::rename(&self.temp, &self.dest) {
                        let _ = fs::rename(&old, &self.dest);
                        return Err(io_err("rename into place", &self.dest, e));
                    }
                    fs::rename(&old, &self.temp).map_err(|e| io_err("clean up", &old, e))?;
                }
            }
        }
        self.done = true;
        // Remove the previous result, now at the temporary name, if any.
        remove_tree(&self.temp).map_err(|e| io_err("remove the previous result at", &self.temp, e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = remove_tree(&self.temp);
        }
    }
}

fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Removes a tree that may contain mode-0000 directories (not root).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = crate::rootfs::cstr(path.file_name().map(|n| n.as_bytes()).unwrap_or(b"."))?;
    let dir = fs::File::open(parent)?;
    use std::os::fd::AsRawFd;
    crate::rootfs::remove_all_at(dir.as_raw_fd(), &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_empty_and_symlinks_and_replaces_atomically() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("old"), b"1").unwrap();
        assert!(matches!(Staging::new(&dest, false), Err(StagingError::Exists { .. })));
        std::os::unix::fs::symlink(&dest, t.path().join("link")).unwrap();
        assert!(matches!(Staging::new(&t.path().join("link"), true), Err(StagingError::Symlink { .. })));

        let s = Staging::new(&dest, true).unwrap();
        fs::write(s.path().join("new"), b"2").unwrap();
        // Until commit, the old result is intact.
        assert!(dest.join("old").exists());
        s.commit().unwrap();
        assert!(dest.join("new").exists() && !dest.join("old").exists());
        let left: Vec<_> = fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "only out and link remain: {left:?}");
    }

    #[test]
    fn dropped_staging_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let s = Staging::new(&t.path().join("x"), false).unwrap();
        fs::create_dir(s.path().join("d")).unwrap();
        drop(s);
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    }
}
