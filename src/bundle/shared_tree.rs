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

use std::ffi::CStr;
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
/// non-directory hard-linked to its source. On error, `dst` is left for
/// the caller's staging directory to remove; the error names the entry.
pub fn link(src: &Path, dst: &Path) -> Result<LinkStats, (PathBuf, io::Error)> {
    let at = |p: &Path| {
        let p = p.to_owned();
        move |e| (p, e)
    };
    let (sparent, sname) = split(src).map_err(at(src))?;
    let (dparent, dname) = split(dst).map_err(at(dst))?;
    let sp = rootfs::open_dir(libc::AT_FDCWD, &sparent).map_err(at(src))?;
    let dp = rootfs::open_dir(libc::AT_FDCWD, &dparent).map_err(at(dst))?;
    let mut stats = LinkStats::default();
    let privileged = unsafe { libc::geteuid() } == 0;
    let mut walk = Walk {
        privileged,
        stats: &mut stats,
        path: dst.to_owned(),
    };
    walk.dir(sp.as_raw_fd(), dp.as_raw_fd(), &sname, &dname)?;
    Ok(stats)
}

struct Walk<'a> {
    privileged: bool,
    stats: &'a mut LinkStats,
    /// The destination path being made, for errors.
    path: PathBuf,
}

impl Walk<'_> {
    fn err(&self) -> impl FnOnce(io::Error) -> (PathBuf, io::Error) + use<> {
        let path = self.path.clone();
        move |e| (path, e)
    }

    /// Makes `dparent/dname` from the directory `sparent/sname`.
    fn dir(
        &mut self,
        sparent: RawFd,
        dparent: RawFd,
        sname: &CStr,
        dname: &CStr,
    ) -> Result<(), (PathBuf, io::Error)> {
        let st = rootfs::lstat_at(sparent, sname).map_err(self.err())?;
        let mode = st.st_mode & 0o7777;
        // Not root, a mode-0000 directory is made readable to be listed
        // (list_at) and searched; its mode is put back when done.
        let names = rootfs::list_at(sparent, sname).map_err(self.err())?;
        let changed = rootfs::lstat_at(sparent, sname)
            .map_err(self.err())?
            .st_mode
            & 0o7777
            != mode;
        let result = self.fill(sparent, dparent, sname, dname, &st, &names);
        if changed {
            unsafe { libc::fchmodat(sparent, sname.as_ptr(), mode, 0) };
        }
        result
    }

    fn fill(
        &mut self,
        sparent: RawFd,
        dparent: RawFd,
        sname: &CStr,
        dname: &CStr,
        st: &libc::stat,
        names: &[std::ffi::CString],
    ) -> Result<(), (PathBuf, io::Error)> {
        if unsafe { libc::mkdirat(dparent, dname.as_ptr(), 0o700) } != 0 {
            return Err(self.err()(io::Error::last_os_error()));
        }
        self.stats.dirs += 1;
        let sdir = rootfs::open_dir(sparent, sname).map_err(self.err())?;
        let ddir = rootfs::open_dir(dparent, dname).map_err(self.err())?;
        for name in names {
            self.path.push(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()),
            );
            let child = rootfs::lstat_at(sdir.as_raw_fd(), name).map_err(self.err())?;
            if rootfs::is_dir(&child) {
                self.dir(sdir.as_raw_fd(), ddir.as_raw_fd(), name, name)?;
            } else {
                let rc = unsafe {
                    libc::linkat(
                        sdir.as_raw_fd(),
                        name.as_ptr(),
                        ddir.as_raw_fd(),
                        name.as_ptr(),
                        0,
                    )
                };
                if rc != 0 {
                    return Err(self.err()(io::Error::last_os_error()));
                }
                self.stats.links += 1;
            }
            self.path.pop();
        }
        copy_xattrs(sdir.as_raw_fd(), ddir.as_raw_fd()).map_err(self.err())?;
        let fd = ddir.as_raw_fd();
        if self.privileged && unsafe { libc::fchown(fd, st.st_uid, st.st_gid) } != 0 {
            return Err(self.err()(io::Error::last_os_error()));
        }
        // After chown, which may clear set-id bits.
        if unsafe { libc::fchmod(fd, st.st_mode & 0o7777) } != 0 {
            return Err(self.err()(io::Error::last_os_error()));
        }
        let times = [
            libc::timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec,
            },
            libc::timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec,
            },
        ];
        if unsafe { libc::futimens(fd, times.as_ptr()) } != 0 {
            return Err(self.err()(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Copies every extended attribute of directory `src` to `dst`.
fn copy_xattrs(src: RawFd, dst: RawFd) -> io::Result<()> {
    let names = match rootfs::fxattr(|buf, len| unsafe { libc::flistxattr(src, buf.cast(), len) }) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for key in names.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let key = cstr(key)?;
        let value = match rootfs::fxattr(|buf, len| unsafe {
            libc::fgetxattr(src, key.as_ptr(), buf.cast(), len)
        }) {
            Ok(v) => v,
            // Removed meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        if unsafe { libc::fsetxattr(dst, key.as_ptr(), value.as_ptr().cast(), value.len(), 0) } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
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
}
