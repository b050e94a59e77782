//! Each platform's own rootfs, made cheaply from the one flattened and
//! analysed for all of them (`generate -p A -p B`).
//!
//! [`link`] rebuilds the directory tree and hard-links every other entry
//! (files, symlinks, device nodes, fifos) into it. That costs one inode per
//! directory and one directory entry per file, whatever the files' sizes.
//! It is safe because no platform step ever writes into an existing file
//! or changes its metadata: library matching and rootfs preparation unlink
//! entries, replace symlinks by new files (`O_EXCL`) and create directories
//! and empty files, all of which change this tree's directories only.
//! Directories, which the steps do change, are new in each tree. Reflinks
//! would buy nothing more here: a reflinked file is a new inode, which
//! would also break the image's own hard links apart.
//!
//! Hard links the image has (two paths, one inode) stay links in the new
//! tree, between the same paths; the archive writer looks for links
//! between the paths of the tree it archives, so the extra links to the
//! shared tree never show in an archive.
//!
//! Directories get the source's mode, owner (when root), extended
//! attributes and times, the times last, once their entries are in place.
//! The source is read once ([`Tree::survey`]); each copy is then only
//! `mkdirat`, `linkat` and the directory's metadata ([`Tree::link`]),
//! and copies can be made by several threads at once. The last platform
//! takes the source itself ([`Tree::take`]) once the other copies are made.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use crate::rootfs::{self, cstr};

/// What [`link`] made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub dirs: u64,
    pub links: u64,
}

/// Rebuilds the tree at `src` as `dst` (which must not exist), with every
/// non-directory hard-linked to its source: [`Tree::survey`] then
/// [`Tree::link`]. On error, `dst` is left for the caller's staging
/// directory to remove; the error names the entry.
pub fn link(src: &Path, dst: &Path) -> Result<LinkStats, (PathBuf, io::Error)> {
    Tree::survey(src)?.link(src, dst)
}

/// A tree's directories (with what each copy gives them) and entries, read
/// once: every platform's copy is made from it with no more reads of the
/// source than the links themselves.
#[derive(Debug)]
pub struct Tree {
    root: Dir,
    /// The directories the survey opened up (not root), below the top
    /// (empty for the top itself), parents first, with their own modes.
    opened: Vec<(Vec<u8>, u32)>,
}

#[derive(Debug)]
struct Dir {
    mode: u32,
    uid: u32,
    gid: u32,
    times: [(i64, i64); 2],
    xattrs: Vec<(CString, Vec<u8>)>,
    entries: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Dir(CString, Dir),
    Other(CString),
}

impl Tree {
    /// Reads the tree at `src`. Not root, a directory that its owner
    /// cannot read, write and search is opened up (`u+rwx`) for good, so
    /// that copies can be linked from it, by several threads at once: the
    /// source is a private staging tree; its recorded mode is what each
    /// copy gets.
    pub fn survey(src: &Path) -> Result<Tree, (PathBuf, io::Error)> {
        Tree::survey_as(src, unsafe { libc::geteuid() } == 0)
    }

    /// [`Tree::survey`], opening up directories unless `privileged`.
    fn survey_as(src: &Path, privileged: bool) -> Result<Tree, (PathBuf, io::Error)> {
        let at = |e| (src.to_owned(), e);
        let (parent, name) = split(src).map_err(at)?;
        let p = rootfs::open_dir(libc::AT_FDCWD, &parent).map_err(at)?;
        let mut at = Survey { privileged, path: src.to_owned(), rel: Vec::new(), opened: Vec::new() };
        let root = at.dir(p.as_raw_fd(), &name)?;
        Ok(Tree { root, opened: at.opened })
    }

    /// Moves the surveyed tree `src` to `dst` (a path that does not exist,
    /// on the same file system), as it was surveyed: the directories the
    /// survey opened up get their own modes back. For the last platform,
    /// once every other copy is made: the tree is not needed any more, so
    /// it is neither copied nor removed.
    pub fn take(&self, src: &Path, dst: &Path) -> Result<(), (PathBuf, io::Error)> {
        std::fs::rename(src, dst).map_err(|e| (dst.to_owned(), e))?;
        let droot = rootfs::open_dir(libc::AT_FDCWD, &cstr(dst.as_os_str().as_encoded_bytes()).map_err(|e| (dst.to_owned(), e))?)
            .map_err(|e| (dst.to_owned(), e))?;
        // Children first: a parent's own mode may forbid reaching them.
        for (rel, mode) in self.opened.iter().rev() {
            let path = below(dst, rel);
            let here = cstr(if rel.is_empty() { b"." } else { rel }).map_err(|e| (path.clone(), e))?;
            if unsafe { libc::fchmodat(droot.as_raw_fd(), here.as_ptr(), *mode, 0) } != 0 {
                return Err((path, io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// Makes `dst` (which must not exist) from `src`, the tree surveyed.
    /// Below the two top directories, everything is named by its path
    /// relative to them (`mkdirat`, `linkat`, `fchownat`, `fchmodat`,
    /// `utimensat`): no directory is opened but those with extended
    /// attributes. The paths cannot meet a symlink: the directories of
    /// `dst` are all made here, and `src` is the private shared tree,
    /// surveyed as it is while no platform writes it.
    pub fn link(&self, src: &Path, dst: &Path) -> Result<LinkStats, (PathBuf, io::Error)> {
        let at = |p: &Path| {
            let p = p.to_owned();
            move |e| (p, e)
        };
        let (dparent, dname) = split(dst).map_err(at(dst))?;
        let sroot = rootfs::open_dir(libc::AT_FDCWD, &cstr(src.as_os_str().as_encoded_bytes()).map_err(at(src))?).map_err(at(src))?;
        let dp = rootfs::open_dir(libc::AT_FDCWD, &dparent).map_err(at(dst))?;
        if unsafe { libc::mkdirat(dp.as_raw_fd(), dname.as_ptr(), 0o700) } != 0 {
            return Err(at(dst)(io::Error::last_os_error()));
        }
        let droot = rootfs::open_dir(dp.as_raw_fd(), &dname).map_err(at(dst))?;
        let mut stats = LinkStats { dirs: 1, links: 0 };
        let mut walk = Walk {
            privileged: unsafe { libc::geteuid() } == 0,
            stats: &mut stats,
            dst,
            sroot: sroot.as_raw_fd(),
            droot: droot.as_raw_fd(),
            rel: Vec::new(),
        };
        walk.entries(&self.root)?;
        walk.metadata(&self.root)?;
        Ok(stats)
    }
}

/// Where [`Tree::survey`] is.
struct Survey {
    privileged: bool,
    /// The directory being read, for errors.
    path: PathBuf,
    /// Its path below the top (empty at the top).
    rel: Vec<u8>,
    opened: Vec<(Vec<u8>, u32)>,
}

impl Survey {
    fn err(&self) -> impl FnOnce(io::Error) -> (PathBuf, io::Error) + use<> {
        let path = self.path.clone();
        move |e| (path, e)
    }

    /// Reads the directory `name` of `parent`, which is `self.path`.
    fn dir(&mut self, parent: RawFd, name: &CStr) -> Result<Dir, (PathBuf, io::Error)> {
        let st = rootfs::lstat_at(parent, name).map_err(self.err())?;
        if !self.privileged && st.st_mode & 0o700 != 0o700 {
            let mode = (st.st_mode & 0o7777) | 0o700;
            if unsafe { libc::fchmodat(parent, name.as_ptr(), mode, 0) } != 0 {
                return Err(self.err()(io::Error::last_os_error()));
            }
            self.opened.push((self.rel.clone(), st.st_mode & 0o7777));
        }
        let names = rootfs::list_at(parent, name).map_err(self.err())?;
        let fd = rootfs::open_dir(parent, name).map_err(self.err())?;
        let xattrs = read_xattrs(fd.as_raw_fd()).map_err(self.err())?;
        let mut entries = Vec::with_capacity(names.len());
        for child in names {
            let name = child.to_bytes();
            self.path.push(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name));
            let top = self.rel.len();
            if top > 0 {
                self.rel.push(b'/');
            }
            self.rel.extend_from_slice(name);
            let cst = rootfs::lstat_at(fd.as_raw_fd(), &child).map_err(self.err())?;
            if rootfs::is_dir(&cst) {
                let dir = self.dir(fd.as_raw_fd(), &child)?;
                entries.push(Node::Dir(child, dir));
            } else {
                entries.push(Node::Other(child));
            }
            self.rel.truncate(top);
            self.path.pop();
        }
        Ok(Dir {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            times: [(st.st_atime, st.st_atime_nsec), (st.st_mtime, st.st_mtime_nsec)],
            xattrs,
            entries,
        })
    }
}

struct Walk<'a> {
    privileged: bool,
    stats: &'a mut LinkStats,
    /// The copy's top directory, for errors (with `rel`).
    dst: &'a Path,
    /// The top directories of the source and of the copy.
    sroot: RawFd,
    droot: RawFd,
    /// The current directory's path below them (empty at the top).
    rel: Vec<u8>,
}

impl Walk<'_> {
    fn err(&self) -> impl FnOnce(io::Error) -> (PathBuf, io::Error) + use<> {
        let path = below(self.dst, &self.rel);
        move |e| (path, e)
    }

    /// `rel` (`.` at the top) as a C string.
    fn here(&self) -> Result<CString, (PathBuf, io::Error)> {
        cstr(if self.rel.is_empty() { b"." } else { &self.rel }).map_err(self.err())
    }

    fn push(&mut self, name: &CStr) {
        if !self.rel.is_empty() {
            self.rel.push(b'/');
        }
        self.rel.extend_from_slice(name.to_bytes());
    }

    fn pop(&mut self, name: &CStr) {
        let keep = self.rel.len() - name.to_bytes().len();
        self.rel.truncate(keep.saturating_sub(1));
    }

    /// Makes the entries of the directory `rel`, surveyed as `dir`.
    fn entries(&mut self, dir: &Dir) -> Result<(), (PathBuf, io::Error)> {
        for node in &dir.entries {
            let name = match node {
                Node::Dir(name, _) | Node::Other(name) => name,
            };
            self.push(name);
            let here = self.here()?;
            match node {
                Node::Dir(_, sub) => {
                    if unsafe { libc::mkdirat(self.droot, here.as_ptr(), 0o700) } != 0 {
                        return Err(self.err()(io::Error::last_os_error()));
                    }
                    self.stats.dirs += 1;
                    self.entries(sub)?;
                    self.metadata(sub)?;
                }
                Node::Other(_) => {
                    let rc = unsafe { libc::linkat(self.sroot, here.as_ptr(), self.droot, here.as_ptr(), 0) };
                    if rc != 0 {
                        return Err(self.err()(io::Error::last_os_error()));
                    }
                    self.stats.links += 1;
                }
            }
            self.pop(name);
        }
        Ok(())
    }

    /// Gives the directory `rel` of the copy its source's extended
    /// attributes, owner (when root), mode and times, the times last.
    fn metadata(&mut self, dir: &Dir) -> Result<(), (PathBuf, io::Error)> {
        let here = self.here()?;
        if !dir.xattrs.is_empty() {
            let fd = rootfs::open_dir(self.droot, &here).map_err(self.err())?;
            for (key, value) in &dir.xattrs {
                if unsafe { libc::fsetxattr(fd.as_raw_fd(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) } != 0 {
                    return Err(self.err()(io::Error::last_os_error()));
                }
            }
        }
        if self.privileged && unsafe { libc::fchownat(self.droot, here.as_ptr(), dir.uid, dir.gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            return Err(self.err()(io::Error::last_os_error()));
        }
        // After chown, which may clear set-id bits.
        if unsafe { libc::fchmodat(self.droot, here.as_ptr(), dir.mode, 0) } != 0 {
            return Err(self.err()(io::Error::last_os_error()));
        }
        let times = dir.times.map(|(tv_sec, tv_nsec)| libc::timespec { tv_sec, tv_nsec });
        if unsafe { libc::utimensat(self.droot, here.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            return Err(self.err()(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Every extended attribute of the directory open as `fd`.
fn read_xattrs(fd: RawFd) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let names = match rootfs::fxattr(|buf, len| unsafe { libc::flistxattr(fd, buf.cast(), len) }) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for key in names.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let key = cstr(key)?;
        let value = match rootfs::fxattr(|buf, len| unsafe {
            libc::fgetxattr(fd, key.as_ptr(), buf.cast(), len)
        }) {
            Ok(v) => v,
            // Removed meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        out.push((key, value));
    }
    Ok(out)
}

/// The path `rel` (empty: the top itself) below the top directory `top`.
fn below(top: &Path, rel: &[u8]) -> PathBuf {
    match rel {
        [] => top.to_owned(),
        rel => top.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rel)),
    }
}

/// A path's parent directory and last component.
fn split(path: &Path) -> io::Result<(std::ffi::CString, std::ffi::CString)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((
        cstr(parent.as_os_str().as_encoded_bytes())?,
        cstr(name.as_encoded_bytes())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn links_files_and_keeps_directory_metadata() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::write(src.join("a/f"), b"data").unwrap();
        std::fs::hard_link(src.join("a/f"), src.join("a/b/g")).unwrap();
        std::os::unix::fs::symlink("../f", src.join("a/b/l")).unwrap();
        std::fs::set_permissions(
            src.join("a/b"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1750),
        )
        .unwrap();
        let old = std::fs::FileTimes::new()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000));
        std::fs::File::open(src.join("a"))
            .unwrap()
            .set_times(old)
            .unwrap();

        let dst = t.path().join("dst");
        let stats = link(&src, &dst).unwrap();
        assert_eq!(stats, LinkStats { dirs: 3, links: 3 });
        let (f, g) = (
            std::fs::metadata(dst.join("a/f")).unwrap(),
            std::fs::metadata(dst.join("a/b/g")).unwrap(),
        );
        assert_eq!(f.ino(), std::fs::metadata(src.join("a/f")).unwrap().ino());
        assert_eq!(f.ino(), g.ino(), "the image's own hard link stays one");
        assert_eq!(
            std::fs::read_link(dst.join("a/b/l")).unwrap(),
            Path::new("../f")
        );
        let b = std::fs::symlink_metadata(dst.join("a/b")).unwrap();
        assert_eq!(b.mode() & 0o7777, 0o1750);
        assert_ne!(
            b.ino(),
            std::fs::symlink_metadata(src.join("a/b")).unwrap().ino()
        );
        assert_eq!(std::fs::metadata(dst.join("a")).unwrap().mtime(), 1_000_000);
        // A change in one tree's directory does not reach the other.
        std::fs::remove_file(dst.join("a/f")).unwrap();
        assert!(src.join("a/f").exists());
        assert!(matches!(link(&src, &dst), Err((p, _)) if p == dst));
    }

    #[test]
    fn the_tree_taken_is_as_surveyed_and_copies_made_before_stay() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("ro/deep")).unwrap();
        std::fs::write(src.join("ro/deep/f"), b"x").unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
        set(&src.join("ro/deep"), 0o500);
        set(&src.join("ro"), 0o555);
        // As a user would: the survey opens the two directories up.
        let tree = Tree::survey_as(&src, false).unwrap();
        assert_eq!(tree.opened.len(), 2);
        assert_eq!(mode(&src.join("ro/deep")), 0o700);
        let copy = t.path().join("copy");
        tree.link(&src, &copy).unwrap();
        let taken = t.path().join("taken");
        tree.take(&src, &taken).unwrap();
        assert!(!src.exists());
        // Both trees have the modes the source had, and the same file.
        for root in [&copy, &taken] {
            assert_eq!((mode(&root.join("ro")), mode(&root.join("ro/deep"))), (0o555, 0o500), "{}", root.display());
            assert_eq!(std::fs::read(root.join("ro/deep/f")).unwrap(), b"x");
        }
        assert_eq!(
            std::fs::metadata(copy.join("ro/deep/f")).unwrap().ino(),
            std::fs::metadata(taken.join("ro/deep/f")).unwrap().ino()
        );
        set(&taken.join("ro"), 0o755);
        set(&copy.join("ro"), 0o755);
    }

    #[test]
    fn one_survey_makes_copies_on_several_threads() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        for i in 0..20 {
            let d = src.join(format!("d{i}/e"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("f"), format!("{i}")).unwrap();
        }
        std::fs::set_permissions(src.join("d3"), std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
        let tree = Tree::survey(&src).unwrap();
        std::thread::scope(|s| {
            for k in 0..4 {
                let (tree, src, dst) = (&tree, &src, t.path().join(format!("dst{k}")));
                s.spawn(move || {
                    assert_eq!(tree.link(src, &dst).unwrap(), LinkStats { dirs: 41, links: 20 });
                    assert_eq!(std::fs::read_to_string(dst.join("d7/e/f")).unwrap(), "7");
                    let m = std::fs::symlink_metadata(dst.join("d3")).unwrap().mode() & 0o7777;
                    assert_eq!(m, 0o500);
                });
            }
        });
    }
}
