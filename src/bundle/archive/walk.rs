//! Reading a directory tree into sorted archive entries without following
//! any symlink, and resolving the metadata each entry carries: ownership
//! (from the file when root, from the flattener's record otherwise),
//! device placeholders, xattrs, clamped mtimes, hardlinks.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use super::header::{Header, Kind};
use super::{ArchiveError, ArchiveOptions};
use crate::layers::RecordedMeta;
use crate::rootfs::{self, cstr};

/// One entry to write, in archive order.
pub struct Entry {
    pub header: Header,
    /// Path of the file relative to the archived directory (regular files
    /// with data only).
    pub source: Option<Vec<u8>>,
}

/// What to archive and how names map.
pub struct Source<'a> {
    pub dir: &'a Path,
    /// The part of the tree that `recorded` describes (`b"rootfs"`), or
    /// empty for the whole tree.
    pub recorded_under: &'a [u8],
    /// Whether ownership on disk is real (root, or pseudo's fake root).
    pub privileged: bool,
}

/// Directories made searchable for the walk (not root), restored on drop.
pub struct Restore {
    root: OwnedFd,
    dirs: Vec<(CString, u32)>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        for (path, mode) in self.dirs.iter().rev() {
            unsafe { libc::fchmodat(self.root.as_raw_fd(), path.as_ptr(), *mode, 0) };
        }
    }
}

pub fn collect(
    src: &Source<'_>,
    opts: &ArchiveOptions<'_>,
) -> Result<(Vec<Entry>, Restore), ArchiveError> {
    let read_err = |op: &'static str, rel: &[u8]| {
        let path = src.dir.join(bytes_path(rel));
        move |source: io::Error| ArchiveError::Read { op, path, source }
    };
    let root = rootfs::open_dir(
        libc::AT_FDCWD,
        &cstr(src.dir.as_os_str().as_encoded_bytes()).map_err(read_err("open", b""))?,
    )
    .map_err(read_err("open the directory", b""))?;
    let restore_root = unsafe { OwnedFd::from_raw_fd(libc::dup(root.as_raw_fd())) };
    let mut restore = Restore {
        root: restore_root,
        dirs: Vec::new(),
    };
    let mut entries = Vec::new();
    // (directory fd, its path relative to the archived dir)
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = vec![(root, Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        let names = crate::rootfs::list_at(dir.as_raw_fd(), c".").map_err(read_err("list", &rel))?;
        for name in names {
            let child = join(&rel, name.to_bytes());
            let st =
                rootfs::lstat_at(dir.as_raw_fd(), &name).map_err(read_err("inspect", &child))?;
            let header = describe(src, opts, dir.as_raw_fd(), &name, &child, &st)?;
            let is_dir = header.kind == Kind::Dir;
            let source = (header.kind == Kind::File && header.size > 0).then(|| child.clone());
            entries.push((
                Entry { header, source },
                (st.st_dev, st.st_ino, st.st_nlink),
            ));
            if is_dir {
                let fd = match rootfs::open_dir(dir.as_raw_fd(), &name) {
                    Err(e) if e.raw_os_error() == Some(libc::EACCES) && !src.privileged => {
                        // Not root: a mode-0000 directory must be made
                        // searchable to be read; its mode is put back.
                        let c = cstr(&child).map_err(read_err("open", &child))?;
                        let rc = unsafe {
                            libc::fchmodat(
                                dir.as_raw_fd(),
                                name.as_ptr(),
                                (st.st_mode & 0o7777) | 0o700,
                                0,
                            )
                        };
                        if rc != 0 {
                            return Err(read_err("make readable", &child)(
                                io::Error::last_os_error(),
                            ));
                        }
                        restore.dirs.push((c, st.st_mode & 0o7777));
                        rootfs::open_dir(dir.as_raw_fd(), &name)
                    }
                    other => other,
                }
                .map_err(read_err("open the directory", &child))?;
                stack.push((fd, child));
            }
        }
    }
    entries.sort_by(|a, b| a.0.header.path.cmp(&b.0.header.path));
    // Hardlinks: the first path in archive order carries the data.
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (mut e, (dev, ino, nlink)) in entries {
        if e.header.kind != Kind::Dir && nlink > 1 {
            match first.get(&(dev, ino)) {
                Some(target) => {
                    e.header.kind = Kind::Hardlink;
                    e.header.link = target.clone();
                    e.header.size = 0;
                    e.header.dev_major = 0;
                    e.header.dev_minor = 0;
                    e.source = None;
                }
                None => {
                    first.insert((dev, ino), e.header.path.clone());
                }
            }
        }
        out.push(e);
    }
    Ok((out, restore))
}

fn describe(
    src: &Source<'_>,
    opts: &ArchiveOptions<'_>,
    dir: RawFd,
    name: &CStr,
    rel: &[u8],
    st: &libc::stat,
) -> Result<Header, ArchiveError> {
    let path = || src.dir.join(bytes_path(rel));
    let recorded = recorded_for(opts.recorded, src.recorded_under, rel);
    let fmt = st.st_mode & libc::S_IFMT;
    let mut kind = match fmt {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFCHR => Kind::Char,
        libc::S_IFBLK => Kind::Block,
        libc::S_IFIFO => Kind::Fifo,
        _ => {
            return Err(ArchiveError::Unsupported {
                path: path(),
                what: "a socket (sockets cannot be archived; remove it from the bundle)",
            });
        }
    };
    let mut mode = st.st_mode & 0o7777;
    let mut size = if kind == Kind::File {
        st.st_size as u64
    } else {
        0
    };
    let (mut dev_major, mut dev_minor) = if matches!(kind, Kind::Char | Kind::Block) {
        (libc::major(st.st_rdev), libc::minor(st.st_rdev))
    } else {
        (0, 0)
    };
    // Ownership: the file's when it is real, unless the file is root's and
    // the flattener recorded the owner it could not apply (rootless mode).
    let disk = (st.st_uid, st.st_gid);
    let (mut uid, mut gid) = match (src.privileged, recorded) {
        (true, Some(r)) if disk == (0, 0) => (r.uid, r.gid),
        (true, _) => disk,
        (false, Some(r)) => (r.uid, r.gid),
        (false, None) => (0, 0),
    };
    if let Some(r) = recorded
        && let (Kind::File, Some((t, major, minor, m))) = (kind, r.device)
    {
        kind = if t == 'b' { Kind::Block } else { Kind::Char };
        mode = m & 0o7777;
        size = 0;
        dev_major = major;
        dev_minor = minor;
    }
    let link = if kind == Kind::Symlink {
        rootfs::read_link_at(dir, name).map_err(|source| ArchiveError::Read {
            op: "read the symlink",
            path: path(),
            source,
        })?
    } else {
        Vec::new()
    };
    let mut xattrs = if matches!(kind, Kind::File | Kind::Dir) {
        read_xattrs(dir, name, kind == Kind::Dir).map_err(|source| ArchiveError::Read {
            op: "read the xattrs of",
            path: path(),
            source,
        })?
    } else {
        BTreeMap::new()
    };
    if let Some(r) = recorded {
        xattrs.extend(
            r.xattrs
                .iter()
                .filter(|(k, _)| keep_xattr(k))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    if let Some(mask) = opts.file_mask {
        mode = (mode & 0o7000) | (mode & 0o777 & mask);
    }
    if let Some((u, g)) = opts.owner {
        (uid, gid) = (u, g);
    }
    let mut mtime = st.st_mtime;
    if let Some(epoch) = opts.source_date_epoch {
        mtime = mtime.min(epoch);
    }
    Ok(Header {
        path: rel.to_vec(),
        kind,
        mode,
        uid,
        gid,
        mtime,
        size,
        link,
        dev_major,
        dev_minor,
        xattrs,
    })
}

fn recorded_for<'m>(
    map: &'m BTreeMap<PathBuf, RecordedMeta>,
    under: &[u8],
    rel: &[u8],
) -> Option<&'m RecordedMeta> {
    if map.is_empty() {
        return None;
    }
    let key = if under.is_empty() {
        rel
    } else {
        rel.strip_prefix(under)?.strip_prefix(b"/")?
    };
    map.get(bytes_path(key))
}

/// Xattrs that describe the file rather than the build host: not SELinux
/// labels of the build machine, ACLs, overlayfs internals or rootless
/// ownership emulation.
fn keep_xattr(key: &str) -> bool {
    !(key == "security.selinux"
        || key.starts_with("system.")
        || key.starts_with("trusted.overlay.")
        || key.starts_with("user.overlay.")
        || key == "user.rootlesscontainers")
}

fn read_xattrs(dir: RawFd, name: &CStr, is_dir: bool) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let flags = libc::O_RDONLY
        | libc::O_NOFOLLOW
        | libc::O_CLOEXEC
        | libc::O_NONBLOCK
        | if is_dir { libc::O_DIRECTORY } else { 0 };
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        // An unreadable file (not root): its xattrs are in the record.
        return if e.raw_os_error() == Some(libc::EACCES) {
            Ok(BTreeMap::new())
        } else {
            Err(e)
        };
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let names =
        match rootfs::fxattr(|buf, len| unsafe { libc::flistxattr(fd.as_raw_fd(), buf.cast(), len) }) {
            Ok(n) => n,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e),
        };
    let mut out = BTreeMap::new();
    for key in names.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let Ok(k) = std::str::from_utf8(key) else {
            continue;
        };
        if !keep_xattr(k) {
            continue;
        }
        let ck = cstr(key)?;
        match rootfs::fxattr(|buf, len| unsafe {
            libc::fgetxattr(fd.as_raw_fd(), ck.as_ptr(), buf.cast(), len)
        }) {
            Ok(v) => {
                out.insert(k.to_owned(), v);
            }
            // Removed meanwhile, or not readable by us.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENODATA | libc::EPERM | libc::EACCES)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}




pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

pub fn bytes_path(b: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_lookup_strips_the_prefix() {
        let mut m = BTreeMap::new();
        m.insert(
            PathBuf::from("usr/bin/x"),
            RecordedMeta {
                uid: 5,
                ..Default::default()
            },
        );
        assert_eq!(
            recorded_for(&m, b"rootfs", b"rootfs/usr/bin/x").map(|r| r.uid),
            Some(5)
        );
        assert!(recorded_for(&m, b"rootfs", b"rootfsx/usr/bin/x").is_none());
        assert!(recorded_for(&m, b"rootfs", b"usr/bin/x").is_none());
        assert_eq!(recorded_for(&m, b"", b"usr/bin/x").map(|r| r.uid), Some(5));
    }

    #[test]
    fn host_xattrs_are_dropped() {
        assert!(keep_xattr("security.capability"));
        assert!(keep_xattr("user.mime_type"));
        assert!(!keep_xattr("security.selinux"));
        assert!(!keep_xattr("system.posix_acl_access"));
        assert!(!keep_xattr("trusted.overlay.opaque"));
    }
}
