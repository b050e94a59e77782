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
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
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

    /// Resolves the directory at `components` (already split), following
    /// symlinks inside the root. A symlink whose physical in-root path
    /// `refuse` accepts is not followed: the walk fails with `ENOENT` there.
    pub fn dir(&mut self, components: &[&[u8]], missing: Missing, refuse: Option<Refuse<'_>>) -> io::Result<Dir> {
        match self.walk(components, false, missing, refuse)? {
            Resolved::Dir(dir) => Ok(dir),
            Resolved::Entry { .. } => unreachable!("a walk for a directory ends on a directory"),
        }
    }

    /// Resolves the in-root path `path` (`/`-separated, absolute or not,
    /// both meaning the same), following symlinks inside the root, in the
    /// last component too. Fails with `ENOENT` when a component is missing,
    /// `ENOTDIR` when a non-directory is used as one and `ELOOP` after
    /// [`MAX_SYMLINK_HOPS`] symlinks.
    pub fn resolve(&mut self, path: &[u8]) -> io::Result<Resolved> {
        let components: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
        self.walk(&components, true, Missing::Fail, None)
    }

    /// The one resolution loop. Components are taken one at a time from a
    /// directory descriptor: a directory is opened (`O_PATH|O_NOFOLLOW`), a
    /// symlink is read (`readlinkat`) and its target's components put in
    /// front of the rest (an absolute target starts again at the root), `..`
    /// pops to the physical parent and stops at the root. With `leaf`, a
    /// last component that is neither a directory nor a symlink ends the
    /// walk as an [`Resolved::Entry`]; without it, it is `ENOTDIR` (or, with
    /// [`Missing::Create`], replaced by a directory).
    fn walk(&mut self, components: &[&[u8]], leaf: bool, missing: Missing, refuse: Option<Refuse<'_>>) -> io::Result<Resolved> {
        // Reuse the cached prefix of real directories.
        let shared = self
            .cache
            .iter()
            .zip(components)
            .take_while(|((name, _), comp)| name.as_slice() == **comp)
            .count();
        let mut stack: Vec<(Vec<u8>, Rc<OwnedFd>)> = self.cache[..shared].to_vec();
        // Empty components (`a//b`, a trailing `/`) are dropped here, so that
        // "nothing pending" means "this is the last component".
        let mut pending: Vec<Vec<u8>> = components[shared..].iter().rev().filter(|c| !c.is_empty()).map(|c| c.to_vec()).collect();
        let mut hops = 0;
        let mut through_symlink = false;
        let mut entry = None;
        while let Some(comp) = pending.pop() {
            match comp.as_slice() {
                b"." => continue,
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
                    pending.extend(target.split(|&b| b == b'/').rev().filter(|c| !c.is_empty()).map(<[u8]>::to_vec));
                }
                Ok(_) if leaf && pending.is_empty() => {
                    entry = Some(comp);
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
        let dir = Dir { fd, phys };
        Ok(match entry {
            Some(name) => Resolved::Entry { dir, name },
            None => Resolved::Dir(dir),
        })
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
        let file = match self.resolve(path) {
            Ok(found) => found.open_file()?,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("larger than {limit} bytes")));
        }
        Ok(Some(bytes))
    }
}

/// Where a [`Walker::resolve`] ended: no symlink is left in it.
pub enum Resolved {
    /// A directory.
    Dir(Dir),
    /// Something else (a regular file, a device, a socket ...): the
    /// directory it is in and its name there.
    Entry { dir: Dir, name: Vec<u8> },
}

impl Resolved {
    /// The physical in-root path, absolute (`/usr/lib/libc.so.6`, `/`).
    pub fn path(&self) -> String {
        let phys = match self {
            Resolved::Dir(dir) => {
                let mut p = Vec::new();
                for c in &dir.phys {
                    p.push(b'/');
                    p.extend_from_slice(c);
                }
                p
            }
            Resolved::Entry { dir, name } => {
                let mut p = dir.child_path(name);
                p.insert(0, b'/');
                p
            }
        };
        if phys.is_empty() {
            return "/".into();
        }
        String::from_utf8_lossy(&phys).into_owned()
    }

    pub fn is_dir(&self) -> bool {
        matches!(self, Resolved::Dir(_))
    }

    /// `lstat` of what was reached (never a symlink).
    pub fn stat(&self) -> io::Result<libc::stat> {
        match self {
            Resolved::Dir(dir) => fstat(dir.raw()),
            Resolved::Entry { dir, name } => lstat_at(dir.raw(), &cstr(name)?),
        }
    }

    /// Opens the regular file reached for reading (`O_NOFOLLOW`, relative
    /// to its directory's descriptor); `InvalidInput` for anything else.
    pub fn open_file(&self) -> io::Result<std::fs::File> {
        let not_a_file = || io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        let Resolved::Entry { dir, name } = self else { return Err(not_a_file()) };
        let cname = cstr(name)?;
        if lstat_at(dir.raw(), &cname)?.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(not_a_file());
        }
        let fd = unsafe { libc::openat(dir.raw(), cname.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The names in the directory reached (without `.` and `..`), sorted;
    /// `ENOTDIR` for anything else.
    pub fn list(&self) -> io::Result<Vec<CString>> {
        match self {
            Resolved::Dir(dir) => read_dir_fd(open_dir(dir.raw(), c".")?),
            Resolved::Entry { .. } => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        }
    }
}

/// [`Walker::resolve`] for one path of the root `root`, as an in-root real
/// path: every symlink is followed within the root (absolute targets start
/// again at the root), `..` never climbs above it. `NotFound` when a
/// component does not exist, `NotADirectory` when a non-directory is used
/// as one, and an error naming the path after [`MAX_SYMLINK_HOPS`] links.
pub fn resolve(root: &Path, path: &str) -> io::Result<String> {
    match Walker::new(root)?.resolve(path.as_bytes()) {
        Ok(found) => Ok(found.path()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(io::Error::other(format!(
            "more than {MAX_SYMLINK_HOPS} symlinks while resolving {path} in the rootfs"
        ))),
        Err(e) => Err(e),
    }
}

/// [`resolve`] for a path that must be a directory: `ENOTDIR` when it
/// resolves to anything else.
pub fn resolve_dir(root: &Path, path: &str) -> io::Result<String> {
    let found = Walker::new(root)?.resolve(path.as_bytes())?;
    if !found.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok(found.path())
}

/// `path` with its directory resolved in the root and its file name kept
/// (`/lib/x86_64-linux-gnu/libc.so.6` on a merged-usr rootfs is
/// `/usr/lib/x86_64-linux-gnu/libc.so.6`): the name under which the
/// loader model, library matching and inventories know a library. `path`
/// itself when its directory does not resolve.
pub fn canonical(root: &Path, path: &str) -> String {
    canonical_with(|dir| resolve(root, dir), path)
}

/// [`canonical`] with the directory resolved by `resolve`, a [`resolve`]
/// of the same root (the loader model's memo of it).
pub fn canonical_with(resolve: impl Fn(&str) -> io::Result<String>, path: &str) -> String {
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    let dir = if dir.is_empty() { "/" } else { dir };
    match resolve(dir) {
        Ok(d) if d == "/" => format!("/{file}"),
        Ok(d) => format!("{d}/{file}"),
        Err(_) => path.to_owned(),
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

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
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
    read_dir_fd(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Names in the directory open as `fd` (without `.` and `..`), sorted.
fn read_dir_fd(fd: OwnedFd) -> io::Result<Vec<CString>> {
    let fd = fd.into_raw_fd();
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

    /// A root with every hostile shape the resolver must handle, and a
    /// host file beside it that no resolution may reach.
    fn hostile_root() -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("secret"), b"host").unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(r.join("usr/lib/x86_64-linux-gnu/libc.so.6"), b"libc").unwrap();
        std::fs::write(r.join("usr/lib/file"), b"file").unwrap();
        std::fs::write(r.join("secret"), b"in-root").unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/usr/lib/x86_64-linux-gnu/libc.so.6", r.join("usr/lib/abs")).unwrap();
        symlink("../../../../../../usr/lib", r.join("usr/lib/up")).unwrap();
        symlink("../../../../secret", r.join("usr/lib/escape")).unwrap();
        symlink(t.path().join("secret"), r.join("usr/lib/host")).unwrap();
        symlink("/../../etc/../usr/./lib/", r.join("usr/lib/absup")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        symlink("self", r.join("self")).unwrap();
        symlink("/nowhere/libz.so.1", r.join("usr/lib/dangling")).unwrap();
        symlink("file", r.join("usr/lib/tofile")).unwrap();
        symlink(".", r.join("dot")).unwrap();
        symlink("..", r.join("usr/dotdot")).unwrap();
        // c0 -> c1 -> ... -> c45 -> usr: resolving cK follows 46 - K links.
        for i in 0..45 {
            symlink(format!("c{}", i + 1), r.join(format!("c{i}"))).unwrap();
        }
        symlink("usr", r.join("c45")).unwrap();
        (t, r)
    }

    #[test]
    fn resolve_follows_symlinks_inside_the_root_only() {
        let (_t, r) = hostile_root();
        let ok = |p: &str| resolve(&r, p).unwrap_or_else(|e| panic!("{p}: {e}"));
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        assert_eq!(ok("/"), "/");
        assert_eq!(ok(""), "/");
        assert_eq!(ok(".."), "/");
        assert_eq!(ok("/lib/x86_64-linux-gnu/libc.so.6"), libc, "a symlinked directory in the middle");
        assert_eq!(ok("lib/x86_64-linux-gnu/libc.so.6"), libc, "relative means from the root");
        assert_eq!(ok("/lib/abs"), libc, "an absolute target starts again at the root");
        assert_eq!(ok("/lib/up/x86_64-linux-gnu/libc.so.6"), libc, "`..` stops at the root");
        assert_eq!(ok("/lib/up/up/up/abs"), libc);
        assert_eq!(ok("/../../../lib/./x86_64-linux-gnu//libc.so.6"), libc);
        assert_eq!(ok("/lib/x86_64-linux-gnu/../../../../lib/abs"), libc);
        assert_eq!(ok("/dot/dot/dot/lib/abs"), libc);
        assert_eq!(ok("/usr/dotdot/usr/dotdot/lib/abs"), libc);
        assert_eq!(ok("/lib/tofile"), "/usr/lib/file");
        assert_eq!(resolve_dir(&r, "/lib/up").unwrap(), "/usr/lib");
        assert_eq!(resolve_dir(&r, "/lib/tofile").unwrap_err().kind(), io::ErrorKind::NotADirectory);
        // An escape lands on the root's own file, never the host's.
        assert_eq!(ok("/lib/escape"), "/secret");
        let mut w = Walker::new(&r).unwrap();
        assert_eq!(w.read_file(b"lib/escape", 100).unwrap().as_deref(), Some(&b"in-root"[..]));
        // An absolute link to the host's file names an in-root path that
        // does not exist.
        let e = resolve(&r, "/lib/host").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(w.read_file(b"lib/host", 100).unwrap(), None);
        for (bad, kind) in [
            ("/lib/dangling", io::ErrorKind::NotFound),
            // `etc/..` needs an `etc`, as in the kernel.
            ("/lib/absup/abs", io::ErrorKind::NotFound),
            ("/lib/dangling/x", io::ErrorKind::NotFound),
            ("/lib/missing", io::ErrorKind::NotFound),
            ("/lib/missing/x", io::ErrorKind::NotFound),
            ("/lib/file/x", io::ErrorKind::NotADirectory),
            ("/lib/tofile/x", io::ErrorKind::NotADirectory),
            ("/lib/file/..", io::ErrorKind::NotADirectory),
            ("/lib/file/.", io::ErrorKind::NotADirectory),
        ] {
            assert_eq!(resolve(&r, bad).unwrap_err().kind(), kind, "{bad}");
        }
        // A trailing slash is an empty component: ignored, as before.
        assert_eq!(ok("/lib/file/"), "/usr/lib/file");
    }

    #[test]
    fn resolve_gives_up_after_40_symlinks() {
        let (_t, r) = hostile_root();
        for bad in ["/loop1", "/loop1/x", "/self", "/c0/lib/file", "/c5/lib/file", "/c6/lib/abs"] {
            let e = resolve(&r, bad).unwrap_err();
            assert!(e.to_string().contains("more than 40 symlinks while resolving"), "{bad}: {e}");
            let e = Walker::new(&r).unwrap().resolve(bad.as_bytes()).err().unwrap();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{bad}");
        }
        // c6 takes 40 links to reach usr, then lib/file none: just allowed.
        assert_eq!(resolve(&r, "/c6/lib/file").unwrap(), "/usr/lib/file");
        // c7 takes 39, leaving one for lib/abs; c6 would need 41.
        assert_eq!(resolve(&r, "/c7/lib/abs").unwrap(), "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(resolve(&r, "/c10/lib/up/up/abs").unwrap(), "/usr/lib/x86_64-linux-gnu/libc.so.6");
        // The flattener's directory walks share the budget.
        let mut w = Walker::new(&r).unwrap();
        assert!(w.dir(&[b"c6"], Missing::Fail, None).is_ok());
        assert_eq!(w.dir(&[b"c5"], Missing::Fail, None).err().unwrap().raw_os_error(), Some(libc::ELOOP));
        assert_eq!(w.read_file(b"c5/lib/file", 100).err().unwrap().raw_os_error(), Some(libc::ELOOP));
        assert_eq!(w.read_file(b"c6/lib/file", 100).unwrap().as_deref(), Some(&b"file"[..]));
    }

    #[test]
    fn resolved_entries_open_through_their_directory() {
        let (_t, r) = hostile_root();
        let mut w = Walker::new(&r).unwrap();
        let found = w.resolve(b"/lib/abs").unwrap();
        assert!(!found.is_dir());
        assert_eq!(found.path(), "/usr/lib/x86_64-linux-gnu/libc.so.6");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut found.open_file().unwrap(), &mut text).unwrap();
        assert_eq!(text, "libc");
        assert_eq!(found.stat().unwrap().st_size, 4);
        let dir = w.resolve(b"/lib/up/").unwrap();
        assert!(dir.is_dir());
        assert_eq!(dir.path(), "/usr/lib");
        let names: Vec<String> = dir.list().unwrap().iter().map(|n| n.to_string_lossy().into_owned()).collect();
        assert!(names.contains(&"x86_64-linux-gnu".to_owned()) && names.contains(&"file".to_owned()), "{names:?}");
        assert!(names.windows(2).all(|p| p[0] < p[1]), "sorted: {names:?}");
        assert!(dir.open_file().is_err(), "a directory is not a file");
        assert!(found.list().is_err(), "a file is not a directory");
    }

    #[test]
    fn canonical_resolves_the_directory_only() {
        let (_t, r) = hostile_root();
        assert_eq!(canonical(&r, "/lib/x86_64-linux-gnu/libc.so.6"), "/usr/lib/x86_64-linux-gnu/libc.so.6");
        // The file name is kept, even when it is a symlink.
        assert_eq!(canonical(&r, "/lib/up/abs"), "/usr/lib/abs");
        assert_eq!(canonical(&r, "/nowhere/x.so"), "/nowhere/x.so");
        assert_eq!(canonical(&r, "/x.so"), "/x.so");
        assert_eq!(canonical(&r, "/loop1/x.so"), "/loop1/x.so");
    }
}
