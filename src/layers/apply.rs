//! Applying one tar entry at a time to a rootfs, with the semantics of a
//! container runtime's layer applier (OCI image-spec "Applying Changesets").
//!
//! Paths are resolved inside the root by [`Walker`]; the final component is
//! never followed. Directory metadata is applied at the end, deepest first,
//! so that writing children neither changes a directory's mtime afterwards
//! nor fails on a read-only or mode-0000 directory.
//!
//! Memory does not grow with file sizes, and per entry only by fixed-size
//! records: an 8-byte hash for each path of the current layer (for
//! whiteouts) and a 40-byte record for each directory (its metadata, keyed
//! by a 128-bit hash of its path, applied by one walk of the tree at the end).

use std::collections::{BTreeMap, HashSet};
use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::rc::Rc;

use super::tarstream::{EntryHeader, Kind};
use super::{FlattenError, FlattenOptions, LayerId, RecordedMeta, Stats};
use crate::diag::{Diagnostics, Warning};
use crate::rootfs::{self, Dir, Missing, Walker, cstr, lstat_at};

/// The latest time we write: 9999-12-31T23:59:59Z.
const MAX_MTIME: i64 = 253_402_300_799;
const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT: &[u8] = b".wh.";
const AUFS_META: &[u8] = b".wh..wh.";

#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// A regular file being written; the caller streams its data into `file`
/// and hands it back to [`Applier::finish_file`].
pub(super) struct PendingFile {
    pub file: File,
    path: Vec<u8>,
}

pub(super) struct Applier<'a> {
    walker: Walker,
    options: &'a FlattenOptions,
    diag: &'a dyn Diagnostics,
    /// Apply ownership and create device nodes (root, or pseudo's fake root).
    privileged: bool,
    layer: LayerId,
    /// Physical paths written by the current layer (64-bit hashes): a
    /// whiteout or opaque marker never removes what its own layer added.
    layer_paths: HashSet<u64, FixedState>,
    /// Directory metadata by [`dir_key`], in the order the entries came:
    /// the last record of a path wins.
    dir_meta: Vec<([u64; 2], DirMeta)>,
    pub recorded: BTreeMap<PathBuf, RecordedMeta>,
    pub stats: Stats,
    xattr_unsupported_warned: bool,
    mknod_denied_warned: bool,
    /// The owner new files get (our fsuid/fsgid), to skip needless chowns.
    creator: (u32, u32),
    /// The process umask, to skip needless chmods.
    umask: u32,
}

/// A hasher with fixed keys: the set is private and only ever holds paths,
/// so collision attacks are not a concern and determinism is welcome.
#[derive(Default, Clone, Copy)]
struct FixedState(u64);

impl BuildHasher for FixedState {
    type Hasher = std::hash::DefaultHasher;
    fn build_hasher(&self) -> Self::Hasher {
        let mut h = std::hash::DefaultHasher::new();
        h.write_u64(self.0);
        h
    }
}

/// The key of a path in the current layer's set. A collision could only
/// make a whiteout spare a lower path: at a million paths in a layer that is
/// a one-in-10^13 chance per whiteout.
fn path_key(path: &[u8]) -> u64 {
    let mut a = FixedState(0x5eed_0001).build_hasher();
    a.write(path);
    a.finish()
}

/// The key of a directory's metadata: 128 bits, so that no two directories
/// of any real tree share one.
fn dir_key(path: &[u8]) -> [u64; 2] {
    let mut b = FixedState(0x5eed_0002).build_hasher();
    b.write(path);
    [path_key(path), b.finish()]
}

fn to_pathbuf(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.to_vec()))
}

/// Splits an archive path into components, dropping empty and `.` parts
/// and resolving `..` lexically, clamped at the root (as `filepath.Clean`
/// on a rooted path does).
pub(crate) fn clean(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

impl<'a> Applier<'a> {
    pub fn new(walker: Walker, options: &'a FlattenOptions, diag: &'a dyn Diagnostics) -> Self {
        Applier {
            walker,
            options,
            diag,
            privileged: !options.rootless && rootfs::geteuid_is_root(),
            layer: LayerId::default(),
            layer_paths: HashSet::with_hasher(FixedState(0)),
            dir_meta: Vec::new(),
            recorded: BTreeMap::new(),
            stats: Stats::default(),
            xattr_unsupported_warned: false,
            mknod_denied_warned: false,
            creator: unsafe { (libc::geteuid(), libc::getegid()) },
            umask: current_umask(),
        }
    }

    pub fn begin_layer(&mut self, layer: LayerId) {
        self.layer = layer;
        self.layer_paths.clear();
        self.layer_paths.shrink_to(1 << 16);
    }

    fn invalid(&self, h: &EntryHeader, reason: impl Into<String>) -> FlattenError {
        FlattenError::Entry { layer: self.layer.to_string(), entry: display(&h.path), reason: reason.into() }
    }

    pub(super) fn write_err(&self, h: &EntryHeader, op: &str, e: io::Error) -> FlattenError {
        // Failures caused by the archive's names are bad input, not I/O.
        match e.raw_os_error() {
            Some(libc::ELOOP) => self.invalid(h, format!("cannot {op}: too many levels of symbolic links (a symlink loop, or a chain over {} links)", rootfs::MAX_SYMLINK_HOPS)),
            Some(libc::ENAMETOOLONG) => self.invalid(h, format!("cannot {op}: a name is too long")),
            _ => FlattenError::Write { layer: self.layer.to_string(), entry: display(&h.path), op: op.to_owned(), source: e },
        }
    }

    /// Applies one entry. For a regular file, returns the file to stream
    /// the entry's data into.
    pub fn entry(&mut self, h: &EntryHeader) -> Result<Option<PendingFile>, FlattenError> {
        self.stats.entries += 1;
        let limits = &self.options.limits;
        if h.path.len() > limits.max_path_len {
            let shown = display(&h.path[..h.path.len().min(200)]);
            return Err(FlattenError::Limit {
                limit: "path length",
                flag: "--max-path-len",
                detail: format!("layer {}: entry `{shown}…` has a {}-byte path, the limit is {}", self.layer, h.path.len(), limits.max_path_len),
            });
        }
        if h.path.is_empty() {
            return Err(self.invalid(h, "the entry has an empty name"));
        }
        if h.uid >= 1 << 31 || h.gid >= 1 << 31 {
            return Err(self.invalid(h, format!("owner {}:{} is out of range (ids must be below 2^31)", h.uid, h.gid)));
        }
        if let Some(t) = h.unknown_type {
            self.diag.warning(Warning::new(
                format!("layer {} entry {}", self.layer, display(&h.path)),
                format!("unknown tar type flag {:?}; extracted as a regular file", t as char),
            ));
        }
        if h.bad_pax_mtime {
            self.diag.warning(Warning::new(
                format!("layer {} entry {}", self.layer, display(&h.path)),
                "PAX mtime is not a number; the ustar mtime is used",
            ));
        }
        let comps = clean(&h.path);
        let Some((&name, parent)) = comps.split_last() else {
            if h.kind == Kind::Dir {
                return Ok(None); // `./`: the root itself; its metadata is not taken from layers.
            }
            return Err(self.invalid(h, "the entry names the root directory but is not a directory"));
        };
        if comps.iter().any(|c| c.starts_with(AUFS_META)) && name != OPAQUE {
            self.stats.skipped += 1; // AUFS hardlink and metadata dirs: not content.
            return Ok(None);
        }
        if parent.iter().any(|c| c.starts_with(WHITEOUT)) {
            return Err(self.invalid(h, "a directory name starts with `.wh.`, the whiteout prefix; only the last path component may be a whiteout"));
        }
        if name == OPAQUE {
            self.stats.whiteouts += 1;
            return self.opaque(h, parent).map(|()| None);
        }
        if let Some(target) = name.strip_prefix(WHITEOUT) {
            if target.is_empty() || target == b"." || target == b".." {
                return Err(self.invalid(h, "a whiteout must name a file; `.wh.`, `.wh..` and `.wh...` are invalid"));
            }
            self.stats.whiteouts += 1;
            return self.whiteout(h, parent, target).map(|()| None);
        }
        let dir = self.walker.dir(parent, Missing::Create, None).map_err(|e| self.write_err(h, "create its parent directory", e))?;
        self.note_created_dirs(h);
        let path = dir.child_path(name);
        self.layer_paths.insert(path_key(&path));
        let cname = cstr(name).map_err(|e| self.write_err(h, "use its name", e))?;
        match h.kind {
            Kind::Dir => self.put_dir(h, &dir, &cname, &path).map(|()| None),
            Kind::File => self.put_file(h, &dir, &cname, &path).map(Some),
            Kind::Symlink => self.put_symlink(h, &dir, &cname, &path).map(|()| None),
            Kind::Hardlink => self.put_hardlink(h, &dir, &cname, &path).map(|()| None),
            Kind::Char | Kind::Block | Kind::Fifo => self.put_node(h, &dir, &cname, &path).map(|()| None),
        }
    }

    /// Directories the walk created for this entry get the entry's mtime
    /// (deterministic) and default metadata, unless a later entry says more.
    fn note_created_dirs(&mut self, h: &EntryHeader) {
        for p in self.walker.take_created() {
            self.dir_meta.push((dir_key(&p), DirMeta { mode: 0o755, uid: 0, gid: 0, mtime: clamp_mtime(h.mtime) }));
            self.recorded.remove(&to_pathbuf(&p));
        }
    }

    /// Whether a symlink at this physical path was written by the current
    /// layer: whiteouts below it refer to the lower layer's directory of
    /// that name, which the symlink already replaced (merged-usr layers put
    /// `bin -> usr/bin` and then `bin/.wh.*` in one layer).
    fn same_layer(&self, path: &[u8]) -> bool {
        self.layer_paths.contains(&path_key(path))
    }

    fn whiteout(&mut self, h: &EntryHeader, parent: &[&[u8]], target: &[u8]) -> Result<(), FlattenError> {
        let layer_paths = &self.layer_paths;
        let skip = |p: &[u8]| layer_paths.contains(&path_key(p));
        let dir = match self.walker.dir(parent, Missing::Fail, Some(&skip)) {
            Ok(d) => d,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return Ok(()),
            Err(e) => return Err(self.write_err(h, "resolve the whiteout's directory", e)),
        };
        self.remove_lower(&dir, target).map_err(|e| self.write_err(h, "apply the whiteout", e))
    }

    fn opaque(&mut self, h: &EntryHeader, parent: &[&[u8]]) -> Result<(), FlattenError> {
        let layer_paths = &self.layer_paths;
        let skip = |p: &[u8]| layer_paths.contains(&path_key(p));
        let dir = match self.walker.dir(parent, Missing::Create, Some(&skip)) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(self.write_err(h, "resolve the opaque directory", e)),
        };
        self.note_created_dirs(h);
        let here = c".";
        let children = rootfs::list_at(dir.raw(), here).map_err(|e| self.write_err(h, "list the opaque directory", e))?;
        for child in children {
            self.remove_lower(&dir, child.to_bytes()).map_err(|e| self.write_err(h, "apply the opaque marker", e))?;
        }
        let own = dir.phys.join(&b'/');
        self.layer_paths.insert(path_key(&own));
        Ok(())
    }

    /// Removes what lower layers put at `name` in `dir`: an entry the
    /// current layer wrote stays, but lower-layer children of a directory it
    /// wrote do not (the whiteout hides the lower directory whole, whether
    /// it comes before or after the layer's `dir/` entry).
    fn remove_lower(&mut self, dir: &Dir, name: &[u8]) -> io::Result<()> {
        let path = dir.child_path(name);
        let ours = self.same_layer(&path);
        let cname = cstr(name)?;
        let st = match lstat_at(dir.raw(), &cname) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        if rootfs::is_dir(&st) {
            let children = rootfs::list_at(dir.raw(), &cname)?;
            let mut phys = dir.phys.clone();
            phys.push(name.to_vec());
            let sub = Dir { fd: Rc::new(rootfs::open_path_dir(dir.raw(), &cname)?), phys };
            for child in &children {
                self.remove_lower(&sub, child.to_bytes())?;
            }
            if ours || !rootfs::list_at(dir.raw(), &cname)?.is_empty() {
                return Ok(());
            }
            self.walker.invalidate();
            rootfs::unlink_at(dir.raw(), &cname, libc::AT_REMOVEDIR)?;
        } else if ours {
            return Ok(());
        } else {
            self.walker.invalidate();
            rootfs::unlink_at(dir.raw(), &cname, 0)?;
        }
        self.forget(&path);
        Ok(())
    }

    /// Drops recorded ownership for `path` and everything below it.
    /// (Directory metadata needs no forgetting: a directory made again at
    /// the same path gets a newer record, and [`Applier::finish`] only
    /// visits directories that exist.)
    fn forget(&mut self, path: &[u8]) {
        if self.recorded.is_empty() {
            return;
        }
        let path = to_pathbuf(path);
        self.recorded.remove(&path);
        let below: Vec<PathBuf> = self
            .recorded
            .range::<std::path::Path, _>((std::ops::Bound::Excluded(path.as_path()), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&path))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.recorded.remove(&k);
        }
    }

    /// Makes room for a new non-directory entry at `name`.
    fn clear_slot(&mut self, dir: &Dir, name: &CStr, path: &[u8]) -> io::Result<()> {
        self.walker.invalidate();
        rootfs::remove_all_at(dir.raw(), name)?;
        self.forget(path);
        Ok(())
    }

    fn put_dir(&mut self, h: &EntryHeader, dir: &Dir, name: &CStr, path: &[u8]) -> Result<(), FlattenError> {
        match lstat_at(dir.raw(), name) {
            Ok(st) if rootfs::is_dir(&st) => {}
            Ok(st) if rootfs::is_symlink(&st) && self.options.keep_dirlinks && self.symlink_is_dir(dir, name) => {
                return Ok(()); // --keep-dirlinks: the symlink stays, entries go through it.
            }
            Ok(_) => {
                self.walker.invalidate();
                rootfs::unlink_at(dir.raw(), name, 0).map_err(|e| self.write_err(h, "replace the existing entry", e))?;
                self.forget(path);
                mkdir(dir.raw(), name).map_err(|e| self.write_err(h, "create the directory", e))?;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                mkdir(dir.raw(), name).map_err(|e| self.write_err(h, "create the directory", e))?;
            }
            Err(e) => return Err(self.write_err(h, "inspect the existing entry", e)),
        }
        self.stats.dirs += 1;
        if !h.xattrs.is_empty() {
            let fd = open_at(dir.raw(), name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                .map_err(|e| self.write_err(h, "open the directory", e))?;
            self.set_xattrs(h, fd.as_raw_fd(), path)?;
        }
        let (uid, gid) = self.owner(h, path);
        self.dir_meta.push((dir_key(path), DirMeta { mode: h.mode, uid, gid, mtime: clamp_mtime(h.mtime) }));
        Ok(())
    }

    fn symlink_is_dir(&mut self, dir: &Dir, name: &CStr) -> bool {
        let mut comps: Vec<&[u8]> = dir.phys.iter().map(Vec::as_slice).collect();
        comps.push(name.to_bytes());
        self.walker.dir(&comps, Missing::Fail, None).is_ok()
    }

    /// The owner to apply now, or `(0, 0)` with the real one recorded.
    fn owner(&mut self, h: &EntryHeader, path: &[u8]) -> (u32, u32) {
        let (uid, gid) = (h.uid as u32, h.gid as u32);
        if !self.privileged && (uid != 0 || gid != 0) {
            let r = self.recorded.entry(to_pathbuf(path)).or_default();
            r.uid = uid;
            r.gid = gid;
        }
        (uid, gid)
    }

    fn put_file(&mut self, h: &EntryHeader, dir: &Dir, name: &CStr, path: &[u8]) -> Result<PendingFile, FlattenError> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        // Created with its permission bits (the umask may take some away;
        // finish_file puts them back). The descriptor is writable whatever
        // the mode says.
        let create_mode = (h.mode & 0o777) as libc::mode_t;
        let fd = match open_at(dir.raw(), name, flags, create_mode) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // Never write through what is there (a hardlink's shared
                // inode, a symlink): unlink it and make a new inode.
                self.clear_slot(dir, name, path).map_err(|e| self.write_err(h, "replace the existing entry", e))?;
                open_at(dir.raw(), name, flags, create_mode)
            }
            other => other,
        }
        .map_err(|e| self.write_err(h, "create the file", e))?;
        self.stats.files += 1;
        self.stats.bytes += h.size;
        Ok(PendingFile { file: File::from(fd), path: path.to_vec() })
    }

    /// Applies owner, mode, xattrs and mtime once the data is written:
    /// writing clears setuid/setgid bits (without CAP_FSETID) and the
    /// `security.capability` xattr (always).
    pub fn finish_file(&mut self, h: &EntryHeader, f: PendingFile) -> Result<(), FlattenError> {
        let fd = f.file.as_raw_fd();
        let (uid, gid) = self.owner(h, &f.path);
        let chown = self.privileged && (uid, gid) != self.creator;
        if chown {
            // chown before chmod: chown clears setuid/setgid bits.
            cvt(unsafe { libc::fchown(fd, uid, gid) }).map_err(|e| self.write_err(h, "set the owner", e))?;
        }
        if chown || h.mode & 0o7000 != 0 || (h.mode & 0o777) & self.umask != 0 {
            cvt(unsafe { libc::fchmod(fd, h.mode) }).map_err(|e| self.write_err(h, "set the mode", e))?;
        }
        if !h.xattrs.is_empty() {
            self.set_xattrs(h, fd, &f.path)?;
        }
        let t = timespecs(h.mtime);
        cvt(unsafe { libc::futimens(fd, t.as_ptr()) }).map_err(|e| self.write_err(h, "set the mtime", e))
    }

    fn put_symlink(&mut self, h: &EntryHeader, dir: &Dir, name: &CStr, path: &[u8]) -> Result<(), FlattenError> {
        if h.link.len() > self.options.limits.max_link_len {
            return Err(FlattenError::Limit {
                limit: "symlink target length",
                flag: "--max-link-len",
                detail: format!("layer {}: entry `{}` has a {}-byte target, the limit is {}", self.layer, display(&h.path), h.link.len(), self.options.limits.max_link_len),
            });
        }
        let target = cstr(&h.link).map_err(|e| self.write_err(h, "use the symlink target", e))?;
        let link = || cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.raw(), name.as_ptr()) });
        match link() {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.clear_slot(dir, name, path).map_err(|e| self.write_err(h, "replace the existing entry", e))?;
                link()
            }
            other => other,
        }
        .map_err(|e| self.write_err(h, "create the symlink", e))?;
        self.stats.symlinks += 1;
        let (uid, gid) = self.owner(h, path);
        if self.privileged {
            cvt(unsafe { libc::fchownat(dir.raw(), name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
                .map_err(|e| self.write_err(h, "set the owner", e))?;
        }
        set_times(dir.raw(), name, h.mtime).map_err(|e| self.write_err(h, "set the mtime", e))
    }

    fn put_hardlink(&mut self, h: &EntryHeader, dir: &Dir, name: &CStr, path: &[u8]) -> Result<(), FlattenError> {
        let target = clean(&h.link);
        let Some((&tname, tparent)) = target.split_last() else {
            return Err(self.invalid(h, "the hardlink points at the root directory"));
        };
        let missing = |this: &Self| this.invalid(h, format!("hardlink target `{}` does not exist (it must come earlier in this layer or from a lower layer)", display(&h.link)));
        let tdir = match self.walker.dir(tparent, Missing::Fail, None) {
            Ok(d) => d,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return Err(missing(self)),
            Err(e) => return Err(self.write_err(h, "resolve the hardlink target", e)),
        };
        let ctname = cstr(tname).map_err(|e| self.write_err(h, "use the hardlink target", e))?;
        match lstat_at(tdir.raw(), &ctname) {
            Ok(st) if rootfs::is_dir(&st) => return Err(self.invalid(h, format!("hardlink target `{}` is a directory", display(&h.link)))),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(missing(self)),
            Err(e) => return Err(self.write_err(h, "inspect the hardlink target", e)),
        }
        if tdir.child_path(tname) == path {
            return Ok(()); // A link to itself: nothing to do.
        }
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        let link = || cvt(unsafe { libc::linkat(tdir.raw(), ctname.as_ptr(), dir.raw(), name.as_ptr(), 0) });
        match link() {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.clear_slot(dir, name, path).map_err(|e| self.write_err(h, "replace the existing entry", e))?;
                link()
            }
            other => other,
        }
        .map_err(|e| self.write_err(h, "create the hardlink", e))?;
        self.stats.hardlinks += 1;
        // The header's mode, owner and times are not applied: they would
        // change the shared inode.
        if let Some(r) = self.recorded.get(&to_pathbuf(&tdir.child_path(tname))).cloned() {
            self.recorded.insert(to_pathbuf(path), r);
        }
        Ok(())
    }

    fn put_node(&mut self, h: &EntryHeader, dir: &Dir, name: &CStr, path: &[u8]) -> Result<(), FlattenError> {
        let is_dev = matches!(h.kind, Kind::Char | Kind::Block);
        if is_dev && (h.devmajor > u64::from(u32::MAX) || h.devminor > u64::from(u32::MAX)) {
            return Err(self.invalid(h, format!("device number {}:{} is out of range", h.devmajor, h.devminor)));
        }
        let kind_bits = match h.kind {
            Kind::Char => libc::S_IFCHR,
            Kind::Block => libc::S_IFBLK,
            _ => libc::S_IFIFO,
        };
        let dev = if is_dev { libc::makedev(h.devmajor as u32, h.devminor as u32) } else { 0 };
        let (uid, gid) = self.owner(h, path);
        let mut placeholder = is_dev && !self.privileged;
        if !placeholder {
            let make = || cvt(unsafe { libc::mknodat(dir.raw(), name.as_ptr(), kind_bits | (h.mode & 0o7777), dev) });
            let made = match make() {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.clear_slot(dir, name, path).map_err(|e| self.write_err(h, "replace the existing entry", e))?;
                    make()
                }
                other => other,
            };
            match made {
                Ok(()) => {}
                Err(e) if is_dev && e.raw_os_error() == Some(libc::EPERM) => {
                    if !self.mknod_denied_warned {
                        self.mknod_denied_warned = true;
                        self.diag.warning(Warning::new(
                            format!("layer {} entry {}", self.layer, display(&h.path)),
                            "creating device nodes is not permitted here; they are recorded and written as empty placeholder files",
                        ));
                    }
                    placeholder = true;
                }
                Err(e) => return Err(self.write_err(h, "create the node", e)),
            }
        }
        if placeholder {
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            let fd = match open_at(dir.raw(), name, flags, 0) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.clear_slot(dir, name, path).map_err(|e| self.write_err(h, "replace the existing entry", e))?;
                    open_at(dir.raw(), name, flags, 0)
                }
                other => other,
            }
            .map_err(|e| self.write_err(h, "create the device placeholder", e))?;
            drop(fd);
            let r = self.recorded.entry(to_pathbuf(path)).or_default();
            r.uid = uid;
            r.gid = gid;
            r.device = Some((if h.kind == Kind::Char { 'c' } else { 'b' }, h.devmajor as u32, h.devminor as u32, h.mode));
            self.stats.devices += 1;
            return set_times(dir.raw(), name, h.mtime).map_err(|e| self.write_err(h, "set the mtime", e));
        }
        self.stats.devices += u64::from(is_dev);
        if self.privileged {
            cvt(unsafe { libc::fchownat(dir.raw(), name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
                .map_err(|e| self.write_err(h, "set the owner", e))?;
        }
        // The node was just created by us and is not a symlink.
        cvt(unsafe { libc::fchmodat(dir.raw(), name.as_ptr(), h.mode, 0) }).map_err(|e| self.write_err(h, "set the mode", e))?;
        set_times(dir.raw(), name, h.mtime).map_err(|e| self.write_err(h, "set the mtime", e))
    }

    fn set_xattrs(&mut self, h: &EntryHeader, fd: RawFd, path: &[u8]) -> Result<(), FlattenError> {
        for (key, value) in &h.xattrs {
            let k = key.as_str();
            if k == "security.selinux" || k == "system.nfs4_acl" || k.starts_with("trusted.overlay.") || k.starts_with("user.overlay.") {
                continue; // Host-specific or overlayfs-internal: never carried into a rootfs.
            }
            if k == "user.rootlesscontainers" {
                self.diag.warning(Warning::new(
                    format!("layer {} entry {}", self.layer, display(&h.path)),
                    "dropped the user.rootlesscontainers xattr (rootless ownership emulation from the image builder)",
                ));
                continue;
            }
            let privileged_key = k.starts_with("security.") || k.starts_with("trusted.");
            if privileged_key && !self.privileged {
                self.recorded.entry(to_pathbuf(path)).or_default().xattrs.insert(key.clone(), value.clone());
                continue;
            }
            let ckey = cstr(key.as_bytes()).map_err(|e| self.write_err(h, "use an xattr name", e))?;
            let rc = unsafe { libc::fsetxattr(fd, ckey.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ENOTSUP) | Some(libc::EPERM) | Some(libc::EACCES) => {
                        self.recorded.entry(to_pathbuf(path)).or_default().xattrs.insert(key.clone(), value.clone());
                        if !self.xattr_unsupported_warned {
                            self.xattr_unsupported_warned = true;
                            self.diag.warning(Warning::new(
                                format!("layer {} entry {}", self.layer, display(&h.path)),
                                format!("cannot set xattr `{k}` here ({e}); xattrs that cannot be set are recorded for the archive"),
                            ));
                        }
                    }
                    _ => return Err(self.write_err(h, &format!("set xattr `{k}`"), e)),
                }
            }
        }
        Ok(())
    }

    /// Applies directory metadata, deepest first. Called once after the
    /// last layer.
    ///
    /// One walk over the directories of the tree (no symlink followed): each
    /// gets the last metadata recorded for its path, after its children.
    /// Memory: a directory stream of 4 KiB per level of depth.
    pub fn finish(&mut self) -> Result<(), FlattenError> {
        let mut metas = std::mem::take(&mut self.dir_meta);
        // Newest first, then a stable sort: the first of each key wins.
        metas.reverse();
        metas.sort_by_key(|(k, _)| *k);
        metas.dedup_by_key(|(k, _)| *k);
        metas.shrink_to_fit();

        let fail = |path: &[u8], op: &str, e: io::Error| FlattenError::Write {
            layer: "(all)".into(),
            entry: if path.is_empty() { "/".into() } else { display(path) },
            op: op.into(),
            source: e,
        };
        let root = open_at(self.walker.root().raw(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(|e| fail(b"", "open the root", e))?;
        let mut path: Vec<u8> = Vec::new();
        // Per level: the length of the directory's path and its stream.
        let mut stack = vec![(0usize, DirStream::new(root))];
        while let Some((len, stream)) = stack.last_mut() {
            path.truncate(*len);
            if let Some(name) = stream.next_dir().map_err(|e| fail(&path, "read the directory", e))? {
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(name.to_bytes());
                let fd = open_at(stream.fd.as_raw_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                    .map_err(|e| fail(&path, "open the directory", e))?;
                stack.push((path.len(), DirStream::new(fd)));
                continue;
            }
            let Some((_, done)) = stack.pop() else { break };
            if stack.is_empty() {
                break; // The root's metadata is not taken from layers.
            }
            let Ok(i) = metas.binary_search_by_key(&dir_key(&path), |(k, _)| *k) else { continue };
            let meta = metas[i].1;
            let fd = done.fd.as_raw_fd();
            if self.privileged {
                cvt(unsafe { libc::fchown(fd, meta.uid, meta.gid) }).map_err(|e| fail(&path, "set the owner of", e))?;
            }
            cvt(unsafe { libc::fchmod(fd, meta.mode) }).map_err(|e| fail(&path, "set the mode of", e))?;
            let t = timespecs(meta.mtime);
            cvt(unsafe { libc::futimens(fd, t.as_ptr()) }).map_err(|e| fail(&path, "set the mtime of", e))?;
        }
        Ok(())
    }
}

/// The subdirectories of an open directory, read with `getdents64` through
/// a small buffer, so that a walk holds 4 KiB per level however wide the
/// directories are.
struct DirStream {
    fd: OwnedFd,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl DirStream {
    fn new(fd: OwnedFd) -> DirStream {
        DirStream { fd, buf: vec![0; 4096], pos: 0, end: 0 }
    }

    /// The next subdirectory's name (never `.` or `..`; symlinks are not
    /// directories here).
    fn next_dir(&mut self) -> io::Result<Option<CString>> {
        loop {
            if self.pos >= self.end {
                let n = unsafe { libc::syscall(libc::SYS_getdents64, self.fd.as_raw_fd(), self.buf.as_mut_ptr(), self.buf.len()) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                if n == 0 {
                    return Ok(None);
                }
                self.pos = 0;
                self.end = n as usize;
            }
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            let rec = &self.buf[self.pos..self.end];
            let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed getdents64 record");
            if rec.len() < 20 {
                return Err(bad());
            }
            let reclen = usize::from(u16::from_ne_bytes([rec[16], rec[17]]));
            if reclen < 20 || reclen > rec.len() {
                return Err(bad());
            }
            let dtype = rec[18];
            let name = CStr::from_bytes_until_nul(&rec[19..reclen]).map_err(|_| bad())?;
            self.pos += reclen;
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let is_dir = match dtype {
                libc::DT_DIR => true,
                libc::DT_UNKNOWN => lstat_at(self.fd.as_raw_fd(), name).is_ok_and(|st| rootfs::is_dir(&st)),
                _ => false,
            };
            if is_dir {
                return Ok(Some(name.to_owned()));
            }
        }
    }
}

pub fn display(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn current_umask() -> u32 {
    // umask can only be read by setting it; set it straight back.
    let old = unsafe { libc::umask(0o022) };
    unsafe { libc::umask(old) };
    old as u32
}

fn clamp_mtime(t: i64) -> i64 {
    t.clamp(0, MAX_MTIME)
}

fn timespecs(mtime: i64) -> [libc::timespec; 2] {
    let t = libc::timespec { tv_sec: clamp_mtime(mtime) as libc::time_t, tv_nsec: 0 };
    [t, t]
}

fn set_times(dir: RawFd, name: &CStr, mtime: i64) -> io::Result<()> {
    let t = timespecs(mtime);
    cvt(unsafe { libc::utimensat(dir, name.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

fn mkdir(dir: RawFd, name: &CStr) -> io::Result<()> {
    cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), 0o755) })
}

fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_clamps_at_root() {
        assert_eq!(clean(b"../../x"), vec![&b"x"[..]]);
        assert_eq!(clean(b"a/../../x"), vec![&b"x"[..]]);
        assert_eq!(clean(b"/abs//x/"), vec![&b"abs"[..], &b"x"[..]]);
        assert_eq!(clean(b"./"), Vec::<&[u8]>::new());
        assert_eq!(clean(b"localetc/sub/.."), vec![&b"localetc"[..]]);
    }

    #[test]
    fn path_keys_differ() {
        assert_ne!(path_key(b"a/b"), path_key(b"a/c"));
        assert_eq!(path_key(b"a/b"), path_key(b"a/b"));
    }
}
