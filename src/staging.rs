//! Atomic output: results are built in a hidden directory (or file) beside
//! their final name and renamed into place only when complete, so that a
//! failed or killed run never leaves a partial result under the final name
//! and a previous result stays intact until the new one replaces it.
//!
//! Everything staged for a destination `D` is named `.D.bundlegen-XXXXXX`
//! (six random letters or digits) in `D`'s directory: a directory for a
//! bundle, rootfs or OCI layout ([`Staging`]), a file for an archive or a
//! report ([`StagedFile`]). While its run is alive, a staged entry is held
//! under an exclusive `flock(2)`; the kernel drops the lock when the process
//! ends, however it ends. Each new run for `D` removes the `.D.bundlegen-*`
//! entries whose lock it can take: the leftovers of runs killed by a signal
//! or by a power cut, never the work of a run still alive.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("{path} already exists and is not empty\nhelp: pass --force (or -y) to replace it")]
    Exists { path: PathBuf },
    #[error("{path} is a symbolic link; refusing to write through it\nhelp: name the real directory instead")]
    Symlink { path: PathBuf },
    #[error("{path} has no file name to write to")]
    NoName { path: PathBuf },
    #[error("the output {path} {relation} {what} {other}\nhelp: write the output outside the input")]
    Overlap {
        path: PathBuf,
        /// "is inside" or "contains".
        relation: &'static str,
        /// What `other` is: "the image layout", "the bundle directory".
        what: &'static str,
        other: PathBuf,
    },
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Between the destination's name and the random part of a staged name.
const MARK: &str = ".bundlegen-";
/// Random characters in a staged name.
const RANDOM_LEN: usize = 6;
/// Suffix of a previous result moved aside where `RENAME_EXCHANGE` is not
/// available.
const OLD: &str = ".old";
/// Attempts at creating a staged entry that no other run is sweeping.
const ATTEMPTS: usize = 8;

/// A directory being built for `dest`.
#[derive(Debug)]
pub struct Staging {
    dest: PathBuf,
    temp: PathBuf,
    overwrite: bool,
    /// Holds the run's lock on `temp` (see the module documentation).
    _lock: File,
    done: bool,
}

impl Staging {
    /// Prepares to write `dest`. An existing empty directory is replaced;
    /// anything else at `dest` only when `overwrite` is set. `dest` must
    /// not be a symlink. Leftovers of killed runs for `dest` are removed.
    pub fn new(dest: &Path, overwrite: bool) -> Result<Staging, StagingError> {
        let (parent, name, dest) = split(dest)?;
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.file_type().is_symlink() => return Err(StagingError::Symlink { path: dest }),
            Ok(m) if m.is_dir() => {
                let empty = fs::read_dir(&dest)
                    .map_err(|source| StagingError::Io { op: "read", path: dest.clone(), source })?
                    .next()
                    .is_none();
                if !empty && !overwrite {
                    return Err(StagingError::Exists { path: dest });
                }
            }
            Ok(_) if !overwrite => return Err(StagingError::Exists { path: dest }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StagingError::Io { op: "inspect", path: dest, source }),
        }
        fs::create_dir_all(&parent).map_err(|source| StagingError::Io { op: "create", path: parent.clone(), source })?;
        sweep(&parent, &name);
        let (temp, lock) = create_locked(&parent, &name, |b| {
            let dir = b.tempdir_in(&parent)?.keep();
            let lock = File::open(&dir)?;
            Ok((dir.clone(), dir, lock))
        })?;
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o755))
            .map_err(|source| StagingError::Io { op: "set permissions on", path: temp.clone(), source })?;
        Ok(Staging { dest, temp, overwrite, _lock: lock, done: false })
    }

    /// Where to build the result.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Moves the result to its final name. Without `overwrite`, only a
    /// missing or empty directory is replaced, also if one appeared since
    /// [`Staging::new`] (another run for the same destination).
    pub fn commit(mut self) -> Result<(), StagingError> {
        let io_err = |op, path: &Path, source| StagingError::Io { op, path: path.to_owned(), source };
        match fs::symlink_metadata(&self.dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(&self.temp, &self.dest).map_err(|e| io_err("rename into place", &self.dest, e))?;
                self.done = true;
            }
            Err(e) => return Err(io_err("inspect", &self.dest, e)),
            Ok(m) if m.file_type().is_symlink() => return Err(StagingError::Symlink { path: self.dest.clone() }),
            Ok(_) if !self.overwrite => {
                // rename(2) replaces an empty directory and nothing else.
                fs::rename(&self.temp, &self.dest).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOTEMPTY | libc::EEXIST | libc::ENOTDIR | libc::EISDIR) => {
                        StagingError::Exists { path: self.dest.clone() }
                    }
                    _ => io_err("rename into place", &self.dest, e),
                })?;
                self.done = true;
            }
            Ok(_) => {
                // The previous result is locked before it moves to a staged
                // name, so that no other run's sweep deletes it meanwhile.
                let _previous = lock_path(&self.dest);
                // Swap atomically, then delete the old result (now at temp).
                if exchange(&self.temp, &self.dest).is_err() {
                    let mut old = self.temp.clone().into_os_string();
                    old.push(OLD);
                    let old = PathBuf::from(old);
                    fs::rename(&self.dest, &old).map_err(|e| io_err("move aside", &self.dest, e))?;
                    if let Err(e) = fs::rename(&self.temp, &self.dest) {
                        let _ = fs::rename(&old, &self.dest);
                        return Err(io_err("rename into place", &self.dest, e));
                    }
                    fs::rename(&old, &self.temp).map_err(|e| io_err("clean up", &old, e))?;
                }
                self.done = true;
                remove_tree(&self.temp).map_err(|e| io_err("remove the previous result at", &self.temp, e))?;
            }
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = remove_tree(&self.temp);
        }
    }
}

/// A file written beside its final name and renamed over it when complete:
/// a symlink at the final name is replaced, never followed. Dropped without
/// [`StagedFile::persist`], the file is removed.
#[derive(Debug)]
pub struct StagedFile {
    /// Also holds the run's lock: the lock belongs to the open file.
    temp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl StagedFile {
    /// Creates the hidden file for `dest` (whose directory must exist) and
    /// removes the leftovers of killed runs for `dest`.
    pub fn new(dest: &Path) -> Result<StagedFile, StagingError> {
        let (parent, name, dest) = split(dest)?;
        sweep(&parent, &name);
        let (temp, _) = create_locked(&parent, &name, |b| {
            let file = b.tempfile_in(&parent)?;
            let lock = file.as_file().try_clone()?;
            Ok((file.path().to_owned(), file, lock))
        })?;
        Ok(StagedFile { temp, dest })
    }

    /// The open file, to write the content into.
    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// Where the content is written until [`StagedFile::persist`].
    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Makes the file mode 0644, syncs it and renames it over `dest`.
    pub fn persist(self) -> Result<(), StagingError> {
        let io_err = |op, source| StagingError::Io { op, path: self.dest.clone(), source };
        let f = self.temp.as_file();
        f.set_permissions(fs::Permissions::from_mode(0o644)).map_err(|e| io_err("set permissions on", e))?;
        f.sync_all().map_err(|e| io_err("write", e))?;
        let dest = self.dest.clone();
        self.temp
            .persist(&dest)
            .map_err(|e| StagingError::Io { op: "rename into place", path: dest, source: e.error })?;
        Ok(())
    }

    /// Writes `bytes` to `dest` atomically.
    pub fn write(dest: &Path, bytes: &[u8]) -> Result<(), StagingError> {
        use std::io::Write;
        let staged = StagedFile::new(dest)?;
        staged
            .file()
            .write_all(bytes)
            .map_err(|source| StagingError::Io { op: "write", path: staged.dest.clone(), source })?;
        staged.persist()
    }
}

/// Refuses an output `dest` that lies inside `input` or contains it (an
/// image layout being read, a bundle being archived): writing there would
/// change the input, and replacing it would destroy it. Paths are compared
/// after resolving symlinks in the existing part of each (`input` need not
/// exist yet: a bundle directory about to be written).
pub fn refuse_overlap(dest: &Path, input: &Path, what: &'static str) -> Result<(), StagingError> {
    let input_real = resolve_existing(input);
    let (parent, name, _) = split(dest)?;
    let dest_real = resolve_existing(&parent).join(name);
    let relation = if dest_real.starts_with(&input_real) {
        "is inside"
    } else if input_real.starts_with(&dest_real) {
        "contains"
    } else {
        return Ok(());
    };
    Err(StagingError::Overlap { path: dest.to_owned(), relation, what, other: input.to_owned() })
}

/// `path` made absolute, with symlinks resolved as far as it exists and
/// `.`/`..` applied lexically beyond.
fn resolve_existing(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut real = PathBuf::new();
    let mut exists = true;
    for comp in abs.components() {
        match comp {
            Component::ParentDir if !exists => {
                real.pop();
            }
            Component::CurDir => {}
            c => {
                real.push(c);
                if exists {
                    match real.canonicalize() {
                        Ok(r) => real = r,
                        Err(_) => exists = false,
                    }
                }
            }
        }
    }
    real
}

/// The directory, file name and cleaned path of a destination: a trailing
/// `/` or `/.` is dropped so that a symlink at the last component is seen
/// as one (`lstat("link/")` would follow it).
fn split(dest: &Path) -> Result<(PathBuf, OsString, PathBuf), StagingError> {
    let name = dest.file_name().ok_or_else(|| StagingError::NoName { path: dest.to_owned() })?.to_owned();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let clean = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(&name),
        _ if dest.is_absolute() => dest.to_owned(),
        _ => PathBuf::from(&name),
    };
    Ok((parent, name, clean))
}

/// `.NAME.bundlegen-`
fn staged_prefix(name: &OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(MARK);
    prefix
}

/// Whether `entry` is an entry staged for `name`: the prefix, six random
/// characters, optionally [`OLD`].
fn is_staged_for(entry: &[u8], prefix: &[u8]) -> bool {
    let Some(rest) = entry.strip_prefix(prefix) else { return false };
    let rest = rest.strip_suffix(OLD.as_bytes()).unwrap_or(rest);
    rest.len() == RANDOM_LEN && rest.iter().all(u8::is_ascii_alphanumeric)
}

/// Creates a staged entry with `make` (given a builder set up with the
/// staged name; it returns the entry's path, the value to keep and the
/// open file to lock) and locks it. A new entry that a concurrent sweep
/// locked (or already removed) before this run could is left to it, and
/// another one is made.
fn create_locked<T>(
    parent: &Path,
    name: &OsStr,
    make: impl Fn(&tempfile::Builder) -> io::Result<(PathBuf, T, File)>,
) -> Result<(T, File), StagingError> {
    let prefix = staged_prefix(name);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).rand_bytes(RANDOM_LEN);
    let op = "create a temporary entry in";
    for _ in 0..ATTEMPTS {
        let (path, made, lock) = make(&builder).map_err(|source| StagingError::Io { op, path: parent.to_owned(), source })?;
        if try_lock(&lock).map_err(|source| StagingError::Io { op: "lock", path: path.clone(), source })? && same_file(&lock, &path) {
            return Ok((made, lock));
        }
    }
    Err(StagingError::Io { op, path: parent.to_owned(), source: io::Error::from(io::ErrorKind::AlreadyExists) })
}

/// Removes the entries staged for `name` in `parent` that no live run holds.
/// Best effort: what cannot be inspected or removed is left alone.
pub fn sweep(parent: &Path, name: &OsStr) -> usize {
    let prefix = staged_prefix(name);
    let Ok(entries) = fs::read_dir(parent) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !is_staged_for(entry.file_name().as_bytes(), prefix.as_bytes()) {
            continue;
        }
        let path = entry.path();
        if let Ok(Some(_lock)) = lock_path(&path)
            && remove_tree(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Opens `path` (a directory or regular file, never through a symlink) and
/// takes its lock without waiting: `None` when another process holds it.
fn lock_path(path: &Path) -> io::Result<Option<File>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_dir() && !kind.is_file() {
        return Ok(None);
    }
    Ok(if try_lock(&file)? && same_file(&file, path) { Some(file) } else { None })
}

/// `flock(LOCK_EX | LOCK_NB)`: false when another open file holds the lock.
fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// Whether the open `file` is still what `path` names (not removed or
/// replaced since it was opened).
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.nlink() > 0 && a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
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
    crate::rootfs::remove_all_at(dir.as_raw_fd(), &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn refuses_non_empty_and_symlinks_and_replaces_atomically() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("old"), b"1").unwrap();
        assert!(matches!(Staging::new(&dest, false), Err(StagingError::Exists { .. })));
        std::os::unix::fs::symlink(&dest, t.path().join("link")).unwrap();
        assert!(matches!(Staging::new(&t.path().join("link"), true), Err(StagingError::Symlink { .. })));
        // A trailing slash would make lstat follow the link.
        assert!(matches!(Staging::new(&t.path().join("link/"), true), Err(StagingError::Symlink { .. })));
        assert!(matches!(Staging::new(&t.path().join("link/."), true), Err(StagingError::Symlink { .. })));

        let s = Staging::new(&dest, true).unwrap();
        fs::write(s.path().join("new"), b"2").unwrap();
        // Until commit, the old result is intact.
        assert!(dest.join("old").exists());
        s.commit().unwrap();
        assert!(dest.join("new").exists() && !dest.join("old").exists());
        assert_eq!(names(t.path()), ["link", "out"]);
    }

    #[test]
    fn dropped_staging_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let s = Staging::new(&t.path().join("x"), false).unwrap();
        fs::create_dir(s.path().join("d")).unwrap();
        drop(s);
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_without_overwrite_keeps_what_appeared_meanwhile() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        let s = Staging::new(&dest, false).unwrap();
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("theirs"), b"1").unwrap();
        assert!(matches!(s.commit(), Err(StagingError::Exists { .. })));
        assert_eq!(names(&dest), ["theirs"]);
        assert_eq!(names(t.path()), ["out"], "the staging directory is removed");
        // An empty directory is replaced.
        fs::remove_file(dest.join("theirs")).unwrap();
        let s = Staging::new(&dest, false).unwrap();
        fs::write(s.path().join("ours"), b"2").unwrap();
        s.commit().unwrap();
        assert_eq!(names(&dest), ["ours"]);
    }

    #[test]
    fn sweep_removes_only_what_no_live_run_holds() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("app");
        // Leftovers of killed runs: a staged directory, an archive, a
        // previous result moved aside; and entries that are not ours.
        for d in [".app.bundlegen-Ab3dE9", ".app.bundlegen-zzzzzz.old"] {
            fs::create_dir_all(t.path().join(d).join("rootfs/usr")).unwrap();
        }
        fs::write(t.path().join(".app.tar.gz.bundlegen-q1w2e3"), b"partial").unwrap();
        for keep in [".app.bundlegen-toolong1", ".app.bundlegen-", ".other.bundlegen-Ab3dE9", "app.bundlegen-Ab3dE9"] {
            fs::write(t.path().join(keep), b"not ours").unwrap();
        }
        // A live run for the same destination.
        let live = Staging::new(&dest, false).unwrap();
        let live_name = live.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(!t.path().join(".app.bundlegen-Ab3dE9").exists(), "swept by the new run");
        assert!(!t.path().join(".app.bundlegen-zzzzzz.old").exists());
        assert!(t.path().join(".app.tar.gz.bundlegen-q1w2e3").exists(), "another destination's");
        // A second run sweeps again but leaves the live one alone.
        let second = Staging::new(&dest, false).unwrap();
        assert!(live.path().is_dir(), "{live_name} belongs to a live run");
        let archive = StagedFile::new(&t.path().join("app.tar.gz")).unwrap();
        assert!(!t.path().join(".app.tar.gz.bundlegen-q1w2e3").exists());
        assert_eq!(sweep(t.path(), OsStr::new("app")), 0, "both runs are alive");
        assert_eq!(sweep(t.path(), OsStr::new("app.tar.gz")), 0);
        assert!(archive.path().exists());
        drop(second);
        std::mem::forget(live); // As a killed run would: the lock goes with the file.
        // The forgotten run's lock is still held by this process's open
        // file; a lock taken through a new open file still conflicts.
        assert_eq!(sweep(t.path(), OsStr::new("app")), 0);
        assert!(t.path().join(&live_name).is_dir());
        drop(archive);
        let mut expected = vec![".app.bundlegen-", ".app.bundlegen-toolong1", ".other.bundlegen-Ab3dE9", "app.bundlegen-Ab3dE9", live_name.as_str()];
        expected.sort();
        assert_eq!(names(t.path()), expected);
    }

    #[test]
    fn staged_file_replaces_a_symlink_without_following_it() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        fs::write(&target, b"keep").unwrap();
        let link = t.path().join("report.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        StagedFile::write(&link, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&link).unwrap(), b"new");
        assert_eq!(fs::metadata(&link).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(names(t.path()), ["report.json", "target"]);
        // Dropped without persist: nothing is left.
        drop(StagedFile::new(&t.path().join("x")).unwrap());
        assert_eq!(names(t.path()), ["report.json", "target"]);
    }

    #[test]
    fn overlap_with_the_input_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let image = t.path().join("image");
        fs::create_dir_all(image.join("blobs")).unwrap();
        std::os::unix::fs::symlink(&image, t.path().join("via-link")).unwrap();
        let inside = |p: &Path| matches!(refuse_overlap(p, &image, "the image layout"), Err(StagingError::Overlap { relation: "is inside", .. }));
        assert!(inside(&image.join("out")));
        assert!(inside(&image.join("blobs")));
        assert!(inside(&image.join("new/deeper/out")));
        assert!(inside(&t.path().join("via-link/out")));
        assert!(inside(&t.path().join("x/../image/out")));
        assert!(inside(&image), "the image itself");
        assert!(matches!(refuse_overlap(t.path(), &image, "the image layout"), Err(StagingError::Overlap { relation: "contains", .. })));
        assert!(refuse_overlap(&t.path().join("image-out"), &image, "the image layout").is_ok());
        assert!(refuse_overlap(&t.path().join("out"), &t.path().join("missing"), "the image layout").is_ok());
        let msg = refuse_overlap(&image.join("out"), &image, "the image layout").unwrap_err().to_string();
        assert!(msg.contains("is inside the image layout") && msg.contains("help:"), "{msg}");
    }
}
