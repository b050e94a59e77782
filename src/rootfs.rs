//! File-system access confined to a root directory.
//!
//! Everything that writes into a rootfs goes through a [`Walker`]: paths are
//! resolved one component at a time from a directory file descriptor,
//! symlinks are read and followed *inside* the root (an absolute target
//! starts again at the root, `..` stops at the root), and the final
//! component is never followed. This is how a container runtime resolves
//! paths in a container, and it is what keeps a hostile image from writing,
//! deleting or chmod-ing anything outside the root.
//!
//! All calls go through libc (not raw syscalls) so that pseudo, Yocto's
//! fakeroot, sees and records ownership and device nodes.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

/// Linux's limit on symlinks followed in one path resolution.
pub const MAX_SYMLINK_HOPS: usize = 40;

/// A directory reached by a walk: its descriptor and its physical path
/// inside the root (no symlinks), as components.
#[derive(Clone)]
pub struct Dir {
    pub fd: Rc<OwnedFd>,
    pub phys: Vec<Vec<u8>>,
}

impl Dir {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The physical in-root path of `name` inside this directory, as
    /// `a/b/name` (no leading slash; empty for the root itself).
    pub fn child_path(&self, name: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(64);
        for c in &self.phys {
            p.extend_from_slice(c);
            p.push(b'/');
        }
        p.extend_from_slice(name);
        p
    }
}

/// Resolves paths inside a root, caching the chain of real directories of
/// the last walk (tar entries come grouped by directory, so most walks only
/// look at their last component).
pub struct Walker {
    root: Rc<OwnedFd>,
    /// Names and descriptors of the directories of the last walk that went
    /// through no symlink, from the root down.
    cache: Vec<(Vec<u8>, Rc<OwnedFd>)>,
    /// Directories created by walks, with their physical paths, drained by
    /// the caller (to give them deterministic metadata).
    created: Vec<Vec<u8>>,
}

/// Decides, from its physical in-root path, whether a symlink may be followed.
pub type Refuse<'a> = &'a dyn Fn(&[u8]) -> bool;

/// What a walk does with missing or non-directory components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Fail with `ENOENT`/`ENOTDIR`.
    Fail,
    /// Create missing directories (mode 0755) and replace a non-directory
    /// component with a directory, as `mkdir -p` in a container runtime's
    /// layer applier does.
    Create,
}

impl Walker {
    pub fn new(root: &Path) -> io::Result<Walker> {
        let c = cstr(root.as_os_str().as_encoded_bytes())?;
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Walker { root: Rc::new(unsafe { OwnedFd::from_raw_fd(fd) }), cache: Vec::new(), created: Vec::new() })
    }

    pub fn root(&self) -> Dir {
        Dir { fd: self.root.clone(), phys: Vec::new() }
    }

    /// Forgets cached directories. Must be called after anything that
    /// removes or renames an entry in the root.
    pub fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// Directories created since the last call, as physical in-root paths.
    pub fn take_created(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.created)
    }

    /// Resolves the directory at `components` (already split, no empty
    /// parts), following symlinks inside the root. A symlink whose physical
    /// in-root path `refuse` accepts is not followed: the walk fails with
    /// `ENOENT` there.
    pub fn dir(&mut self, components: &[&[u8]], missing: Missing, refuse: Option<Refuse<'_>>) -> io::Result<Dir> {
        // Reuse the cached prefix of real directories.
        let shared = self
            .cache
            .iter()
            .zip(components)
            .take_while(|((name, _), comp)| name.as_slice() == **comp)
            .count();
        let mut stack: Vec<(Vec<u8>, Rc<OwnedFd>)> = self.cache[..shared].to_vec();
        let mut pending: Vec<Vec<u8>> = components[shared..].iter().rev().map(|c| c.to_vec()).collect();
        let mut hops = 0;
        let mut through_symlink = false;
        while let Some(comp) = pending.pop() {
            match comp.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let parent = stack.last().map(|(_, fd)| fd.clone()).unwrap_or_else(|| self.root.clone());
            let name = cstr(&comp)?;
            match lstat_at(parent.as_raw_fd(), &name) {
                Ok(st) if is_dir(&st) => {
                    let fd = open_path_dir(parent.as_raw_fd(), &name)?;
                    stack.push((comp, Rc::new(fd)));
                }
                Ok(st) if is_symlink(&st) => {
                    if let Some(refuse) = refuse {
                        let mut phys = Vec::new();
                        for (n, _) in &stack {
                            phys.extend_from_slice(n);
                            phys.push(b'/');
                        }
                        phys.extend_from_slice(&comp);
                        if refuse(&phys) {
                            self.cache.truncate(shared);
                            return Err(io::Error::from_raw_os_error(libc::ENOENT));
                        }
                    }
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    through_symlink = true;
                    let target = read_link_at(parent.as_raw_fd(), &name)?;
                    if target.first() == Some(&b'/') {
                        stack.clear();
                    }
                    pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                }
                Ok(_) if missing == Missing::Create => {
                    unlink_at(parent.as_raw_fd(), &name, 0)?;
                    self.cache.clear();
                    stack.push((comp.clone(), Rc::new(self.make_dir(&parent, &stack, &name, &comp)?)));
                }
                Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && missing == Missing::Create => {
                    let fd = self.make_dir(&parent, &stack, &name, &comp)?;
                    stack.push((comp, Rc::new(fd)));
                }
                Err(e) => return Err(e),
            }
        }
        let phys: Vec<Vec<u8>> = stack.iter().map(|(n, _)| n.clone()).collect();
        let fd = stack.last().map(|(_, fd)| fd.clone()).unwrap_or_else(|| self.root.clone());
        if !through_symlink {
            self.cache = stack;
        } else {
            // Keep only the part that was walked without symlinks.
            self.cache.truncate(shared);
        }
        Ok(Dir { fd, phys })
    }

    fn make_dir(&mut self, parent: &Rc<OwnedFd>, stack: &[(Vec<u8>, Rc<OwnedFd>)], name: &CStr, comp: &[u8]) -> io::Result<OwnedFd> {
        if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut path = Vec::new();
        for (n, _) in stack {
            path.extend_from_slice(n);
            path.push(b'/');
        }
        path.extend_from_slice(comp);
        self.created.push(path);
        open_path_dir(parent.as_raw_fd(), name)
    }

    /// Resolves `components` without following any symlink at all; used to
    /// revisit paths recorded earlier by physical path.
    pub fn dir_strict(&self, components: &[&[u8]]) -> io::Result<Dir> {
        let mut fd = self.root.clone();
        let mut phys = Vec::with_capacity(components.len());
        for comp in components {
            let name = cstr(comp)?;
            fd = Rc::new(open_path_dir(fd.as_raw_fd(), &name)?);
            phys.push(comp.to_vec());
        }
        Ok(Dir { fd, phys })
    }
}

impl Walker {
    /// Reads the regular file at `path` (in-root, `/`-separated), following
    /// symlinks inside the root, also in the last component. `Ok(None)`
    /// when nothing is there; an error when it is larger than `limit`.
    pub fn read_file(&mut self, path: &[u8], limit: u64) -> io::Result<Option<Vec<u8>>> {
        let mut comps: Vec<Vec<u8>> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).map(<[u8]>::to_vec).collect();
        for _ in 0..MAX_SYMLINK_HOPS {
            let Some(name) = comps.pop() else { return Ok(None) };
            let parent: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
            let dir = match self.dir(&parent, Missing::Fail, None) {
                Ok(d) => d,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return Ok(None),
                Err(e) => return Err(e),
            };
            let cname = cstr(&name)?;
            let st = match lstat_at(dir.raw(), &cname) {
                Ok(st) => st,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
                Err(e) => return Err(e),
            };
            if is_symlink(&st) {
                let target = read_link_at(dir.raw(), &cname)?;
                comps = if target.first() == Some(&b'/') { Vec::new() } else { dir.phys.clone() };
                for c in target.split(|&b| b == b'/') {
                    match c {
                        b"" | b"." => {}
                        b".." => {
                            comps.pop();
                        }
                        c => comps.push(c.to_vec()),
                    }
                }
                continue;
            }
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
            }
            let fd = unsafe { libc::openat(dir.raw(), cname.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes)?;
            if bytes.len() as u64 > limit {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("larger than {limit} bytes")));
            }
            return Ok(Some(bytes));
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }
}

pub fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

pub fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    if unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { st.assume_init() })
}

pub fn open_path_dir(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::openat(dir, name.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory below `dir` for reading (not through a symlink).
pub fn open_dir(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Calls a size-then-fill xattr function until the buffer is large enough.
pub fn fxattr(mut f: impl FnMut(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let n = f(std::ptr::null_mut(), 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; n as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let m = f(buf.as_mut_ptr(), buf.len());
        if m >= 0 {
            buf.truncate(m as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

pub fn read_link_at(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        if buf.len() >= 1 << 16 {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        buf.resize(buf.len() * 4, 0);
    }
}

pub fn unlink_at(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    if unsafe { libc::unlinkat(dir, name.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Names in a directory (without `.` and `..`), sorted.
pub fn list_at(dir: RawFd, name: &CStr) -> io::Result<Vec<CString>> {
    let mut fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EACCES) {
            return Err(err);
        }
        // A mode-0000 directory when not root: make it readable first.
        if unsafe { libc::fchmodat(dir, name.as_ptr(), 0o700, 0) } != 0 {
            return Err(err);
        }
        fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let stream = unsafe { libc::fdopendir(fd) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        unsafe { libc::close(fd) };
        return Err(err);
    }
    let mut names = Vec::new();
    loop {
        // readdir reports errors only through errno.
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir(stream) };
        if ent.is_null() {
            let errno = unsafe { *libc::__errno_location() };
            unsafe { libc::closedir(stream) };
            if errno != 0 {
                return Err(io::Error::from_raw_os_error(errno));
            }
            break;
        }
        let n = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Removes `name` in `dir` and, for a directory, everything below it,
/// without following symlinks.
pub fn remove_all_at(dir: RawFd, name: &CStr) -> io::Result<()> {
    let st = match lstat_at(dir, name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if !is_dir(&st) {
        return unlink_at(dir, name, 0);
    }
    let children = list_at(dir, name)?;
    if !children.is_empty() {
        let sub = open_path_dir(dir, name)?;
        for child in &children {
            remove_all_at(sub.as_raw_fd(), child)?;
        }
    }
    unlink_at(dir, name, libc::AT_REMOVEDIR)
}

pub fn geteuid_is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn walks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("../../../../../etc", root.join("esc")).unwrap();
        let mut w = Walker::new(&root).unwrap();
        let d = w.dir(&[b"lib", b"x"], Missing::Create, None).unwrap();
        assert_eq!(d.phys, vec![b"usr".to_vec(), b"lib".to_vec(), b"x".to_vec()]);
        assert!(root.join("usr/lib/x").is_dir());
        let d = w.dir(&[b"esc"], Missing::Create, None).unwrap();
        assert_eq!(d.phys, vec![b"etc".to_vec()]);
        assert!(root.join("etc").is_dir());
    }

    #[test]
    fn read_file_follows_symlinks_inside_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("usr/share")).unwrap();
        std::fs::write(root.join("usr/share/passwd"), b"in-root").unwrap();
        std::fs::write(t.path().join("passwd"), b"host").unwrap();
        std::fs::create_dir(root.join("etc")).unwrap();
        symlink("/usr/share/passwd", root.join("etc/passwd")).unwrap();
        symlink("../../../passwd", root.join("etc/escape")).unwrap();
        let mut w = Walker::new(&root).unwrap();
        assert_eq!(w.read_file(b"etc/passwd", 100).unwrap().as_deref(), Some(&b"in-root"[..]));
        // ../../../passwd clamps at the root: /passwd, which does not exist.
        assert_eq!(w.read_file(b"etc/escape", 100).unwrap(), None);
        assert!(w.read_file(b"etc/passwd", 3).is_err(), "over the limit");
        assert!(w.read_file(b"etc", 100).is_err(), "a directory is not a file");
    }

    #[test]
    fn loops_fail_with_eloop() {
        let t = tempfile::tempdir().unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let mut w = Walker::new(t.path()).unwrap();
        let err = w.dir(&[b"a", b"x"], Missing::Create, None).err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn create_replaces_a_file_component() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        let mut w = Walker::new(t.path()).unwrap();
        assert_eq!(w.dir(&[b"f"], Missing::Fail, None).err().unwrap().raw_os_error(), Some(libc::ENOTDIR));
        w.dir(&[b"f", b"g"], Missing::Create, None).unwrap();
        assert!(t.path().join("f/g").is_dir());
    }
}
