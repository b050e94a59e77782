//! Rootfs preparation for Dobby (security cases 40–43).
//!
//! Dobby's plugins write into the rootfs from the host, as root, through
//! ordinary paths (`<rootfs>/etc/resolv.conf`, `<rootfs>/var/run/dbus`, mount
//! points): a symlink there is followed *on the host*. So:
//!
//! - `etc/resolv.conf`, `etc/hosts`, `etc/services` that are symlinks become
//!   regular files (the content of the in-root target when that is a
//!   regular file, else empty);
//! - `etc/localtime` is removed when the localtime plugin is on (it creates
//!   it and fails with EEXIST otherwise);
//! - `var/run/dbus` (IPC plugin) is a real directory;
//! - mount points of `-r` are created inside the rootfs.
//!
//! Directories on these paths may be symlinks in the image (`var/run ->
//! /run`, `etc -> /usr/etc`, `var/run -> ../run`). An absolute or escaping
//! link would send the host outside the rootfs; turning it into a real,
//! empty directory would break the image. Each symlink met on these paths
//! is therefore rewritten into the *relative* link that reaches the same
//! in-root directory (`var/run -> ../run`): followed in the container it
//! means what it meant; followed on the host it stays inside the rootfs.
//! The final components (the files, `dbus`, a mount point) are never
//! symlinks afterwards. Nothing outside the rootfs is ever read or written:
//! every access goes through [`Walker`] and descriptor-relative calls.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::rootfs::{self, Dir, MAX_SYMLINK_HOPS, Missing, Walker, cstr};

#[derive(Debug, Clone, Default)]
pub struct PrepOptions {
    /// Dobby's localtime plugin is enabled: remove `etc/localtime`.
    pub localtime_plugin: bool,
    /// Mount destinations to create (`-r`): absolute in-container path and
    /// whether it is a directory (else an empty file).
    pub mount_points: Vec<(String, bool)>,
    /// The IPC plugin needs `var/run/dbus`.
    pub dbus: bool,
}

/// What was changed, as in-container paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrepReport {
    /// Symlinks replaced by regular files.
    pub files_replaced: Vec<String>,
    pub removed: Vec<String>,
    /// Symlinks rewritten as `(path, old target, new target)`.
    pub links_rewritten: Vec<(String, String, String)>,
    /// Directories and files created.
    pub created: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error("cannot {op} {path} in the rootfs {rootfs}")]
    Io {
        op: &'static str,
        path: String,
        rootfs: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mount point {path}: {reason}")]
    MountPoint { path: String, reason: String },
}

/// The files Dobby's plugins write from the host.
const DOBBY_FILES: [&str; 3] = ["resolv.conf", "hosts", "services"];

pub fn prepare(rootfs: &Path, opts: &PrepOptions) -> Result<PrepReport, PrepError> {
    let walker = Walker::new(rootfs).map_err(|source| PrepError::Io {
        op: "open",
        path: "/".into(),
        rootfs: rootfs.to_owned(),
        source,
    })?;
    let mut p = Prep {
        rootfs,
        walker,
        report: PrepReport::default(),
    };
    for m in &opts.mount_points {
        if !m.0.starts_with('/') || m.0.contains('\0') {
            return Err(PrepError::MountPoint {
                path: m.0.clone(),
                reason: "a mount destination must be an absolute path".into(),
            });
        }
    }
    // etc itself only matters when something in it is touched.
    let etc_exists = rootfs::lstat_at(p.walker.root().raw(), c"etc").is_ok();
    if etc_exists {
        let etc = p.safe_dir(&[b"etc"], 0, "/etc")?;
        for name in DOBBY_FILES {
            p.make_regular(&etc, name)?;
        }
        if opts.localtime_plugin {
            let name = c"localtime";
            if rootfs::lstat_at(etc.raw(), name).is_ok() {
                rootfs::remove_all_at(etc.raw(), name)
                    .map_err(p.err("remove", "/etc/localtime"))?;
                p.walker.invalidate();
                p.report.removed.push("/etc/localtime".into());
            }
        }
    }
    if opts.dbus {
        p.mount_point("/var/run/dbus", true)?;
    }
    for (path, is_dir) in &opts.mount_points {
        p.mount_point(path, *is_dir)?;
    }
    Ok(p.report)
}

struct Prep<'a> {
    rootfs: &'a Path,
    walker: Walker,
    report: PrepReport,
}

impl Prep<'_> {
    fn err(&self, op: &'static str, path: &str) -> impl FnOnce(io::Error) -> PrepError + use<> {
        let (path, rootfs) = (path.to_owned(), self.rootfs.to_owned());
        move |source| PrepError::Io {
            op,
            path,
            rootfs,
            source,
        }
    }

    /// Resolves the directory `comps` in-root, creating what is missing,
    /// and rewrites each symlink on the way (and on the way of its target)
    /// into the relative link the host can follow without leaving the
    /// rootfs. Returns the directory, reached without any symlink.
    fn safe_dir(&mut self, comps: &[&[u8]], depth: usize, shown: &str) -> Result<Dir, PrepError> {
        let phys = self.safe_phys(comps, depth, shown)?;
        let refs: Vec<&[u8]> = phys.iter().map(Vec::as_slice).collect();
        self.walker
            .dir_strict(&refs)
            .map_err(self.err("open", shown))
    }

    fn safe_phys(
        &mut self,
        comps: &[&[u8]],
        depth: usize,
        shown: &str,
    ) -> Result<Vec<Vec<u8>>, PrepError> {
        if depth > MAX_SYMLINK_HOPS {
            return Err(self.err("resolve", shown)(io::Error::from_raw_os_error(
                libc::ELOOP,
            )));
        }
        let mut phys: Vec<Vec<u8>> = Vec::new();
        for comp in comps {
            match *comp {
                b"" | b"." => continue,
                b".." => {
                    phys.pop();
                    continue;
                }
                _ => {}
            }
            let refs: Vec<&[u8]> = phys.iter().map(Vec::as_slice).collect();
            let parent = self
                .walker
                .dir_strict(&refs)
                .map_err(self.err("open", shown))?;
            let name = cstr(comp).map_err(self.err("use", shown))?;
            match rootfs::lstat_at(parent.raw(), &name) {
                Ok(st) if rootfs::is_dir(&st) => phys.push(comp.to_vec()),
                Ok(st) if rootfs::is_symlink(&st) => {
                    let link = rootfs::read_link_at(parent.raw(), &name)
                        .map_err(self.err("read the symlink", shown))?;
                    let mut target: Vec<&[u8]> = if link.first() == Some(&b'/') {
                        Vec::new()
                    } else {
                        refs.clone()
                    };
                    target.extend(link.split(|&b| b == b'/'));
                    let resolved = self.safe_phys(&target, depth + 1, shown)?;
                    let rel = relative(&phys, &resolved);
                    if rel != link {
                        let at = display(&parent.child_path(comp));
                        let parent = self
                            .walker
                            .dir_strict(&refs)
                            .map_err(self.err("open", &at))?;
                        rootfs::unlink_at(parent.raw(), &name, 0)
                            .map_err(self.err("replace the symlink", &at))?;
                        let c = cstr(&rel).map_err(self.err("use", &at))?;
                        if unsafe { libc::symlinkat(c.as_ptr(), parent.raw(), name.as_ptr()) } != 0
                        {
                            return Err(self.err("rewrite the symlink", &at)(
                                io::Error::last_os_error(),
                            ));
                        }
                        self.walker.invalidate();
                        self.report.links_rewritten.push((
                            at,
                            String::from_utf8_lossy(&link).into_owned(),
                            String::from_utf8_lossy(&rel).into_owned(),
                        ));
                    }
                    phys = resolved;
                }
                Ok(_) | Err(_) => {
                    // Missing, or a non-directory in the way: create it as
                    // a container runtime's `mkdir -p` would.
                    let mut path = refs.clone();
                    path.push(comp);
                    let dir = self
                        .walker
                        .dir(&path, Missing::Create, None)
                        .map_err(self.err("create", shown))?;
                    for created in self.walker.take_created() {
                        self.report.created.push(display(&created));
                    }
                    phys = dir.phys;
                }
            }
        }
        Ok(phys)
    }

    /// Replaces a symlink `etc/<name>` by a regular file with the content
    /// of its in-root target (empty when that is not a regular file).
    fn make_regular(&mut self, etc: &Dir, name: &str) -> Result<(), PrepError> {
        let shown = format!("/etc/{name}");
        let cname = cstr(name.as_bytes()).map_err(self.err("use", &shown))?;
        match rootfs::lstat_at(etc.raw(), &cname) {
            Ok(st) if rootfs::is_symlink(&st) => {}
            _ => return Ok(()),
        }
        let content = self.open_in_root(etc, &cname, &shown)?;
        rootfs::unlink_at(etc.raw(), &cname, 0).map_err(self.err("replace", &shown))?;
        self.walker.invalidate();
        let fd = unsafe {
            libc::openat(
                etc.raw(),
                cname.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            return Err(self.err("create", &shown)(io::Error::last_os_error()));
        }
        let mut out = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if let Some(mut src) = content {
            io::copy(&mut src, &mut out).map_err(self.err("copy the target of", &shown))?;
        }
        self.report.files_replaced.push(shown);
        Ok(())
    }

    /// Follows the symlink `name` in `dir` inside the root; the target file
    /// opened for reading when it is a regular file. A target that is
    /// missing, a directory or anything else gives `None`; a symlink loop
    /// (or a chain over [`MAX_SYMLINK_HOPS`]) is an error.
    fn open_in_root(
        &mut self,
        dir: &Dir,
        name: &CStr,
        shown: &str,
    ) -> Result<Option<File>, PrepError> {
        let found = match self.walker.resolve(&dir.child_path(name.to_bytes())) {
            Ok(found) => found,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(self.err("resolve", shown)(e));
            }
            Err(_) => return Ok(None),
        };
        match found.open_file() {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(None),
            Err(e) => Err(self.err("read the target of", shown)(e)),
        }
    }

    /// Creates a mount point inside the rootfs (case 43): parents resolved
    /// in-root and made host-safe; a symlink as the last component is
    /// rewritten too and its in-root target created.
    fn mount_point(&mut self, path: &str, is_dir: bool) -> Result<(), PrepError> {
        let comps: Vec<&[u8]> = path
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        if comps.is_empty() || comps.last() == Some(&&b".."[..]) {
            return Err(PrepError::MountPoint {
                path: path.into(),
                reason: "it names the root or a parent directory".into(),
            });
        }
        if is_dir {
            self.safe_dir(&comps, 0, path)?;
            return Ok(());
        }
        let (last, parents) = comps.split_last().ok_or_else(|| PrepError::MountPoint {
            path: path.into(),
            reason: "empty path".into(),
        })?;
        let mut dir = self.safe_dir(parents, 0, path)?;
        let mut name = cstr(last).map_err(self.err("use", path))?;
        for _ in 0..MAX_SYMLINK_HOPS {
            match rootfs::lstat_at(dir.raw(), &name) {
                Ok(st) if rootfs::is_symlink(&st) => {
                    // Make the link host-safe and continue at its target.
                    let link = rootfs::read_link_at(dir.raw(), &name)
                        .map_err(self.err("read the symlink", path))?;
                    let base = dir.phys.clone();
                    let mut target: Vec<&[u8]> = if link.first() == Some(&b'/') {
                        Vec::new()
                    } else {
                        base.iter().map(Vec::as_slice).collect()
                    };
                    target.extend(
                        link.split(|&b| b == b'/')
                            .filter(|c| !c.is_empty() && *c != b"."),
                    );
                    let Some((tlast, tparents)) = target.split_last().filter(|(l, _)| **l != b"..")
                    else {
                        return Err(PrepError::MountPoint {
                            path: path.into(),
                            reason: "it is a symlink to a directory, but the mount needs a file"
                                .into(),
                        });
                    };
                    let tdir = self.safe_dir(tparents, 1, path)?;
                    let mut rel_to = tdir.phys.clone();
                    rel_to.push(tlast.to_vec());
                    let rel = relative(&dir.phys, &rel_to);
                    if rel != link {
                        rootfs::unlink_at(dir.raw(), &name, 0)
                            .map_err(self.err("replace the symlink", path))?;
                        let c = cstr(&rel).map_err(self.err("use", path))?;
                        if unsafe { libc::symlinkat(c.as_ptr(), dir.raw(), name.as_ptr()) } != 0 {
                            return Err(self.err("rewrite the symlink", path)(
                                io::Error::last_os_error(),
                            ));
                        }
                        self.walker.invalidate();
                        let at = display(&dir.child_path(name.to_bytes()));
                        self.report.links_rewritten.push((
                            at,
                            String::from_utf8_lossy(&link).into_owned(),
                            String::from_utf8_lossy(&rel).into_owned(),
                        ));
                    }
                    dir = tdir;
                    name = cstr(tlast).map_err(self.err("use", path))?;
                }
                Ok(st) if rootfs::is_dir(&st) => {
                    return Err(PrepError::MountPoint {
                        path: path.into(),
                        reason: "it exists as a directory, but the mount needs a file".into(),
                    });
                }
                Ok(_) => return Ok(()),
                Err(_) => {
                    let fd = unsafe {
                        libc::openat(
                            dir.raw(),
                            name.as_ptr(),
                            libc::O_WRONLY
                                | libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_NOFOLLOW
                                | libc::O_CLOEXEC,
                            0o644,
                        )
                    };
                    if fd < 0 {
                        return Err(self.err("create", path)(io::Error::last_os_error()));
                    }
                    unsafe { libc::close(fd) };
                    self.report
                        .created
                        .push(display(&dir.child_path(name.to_bytes())));
                    return Ok(());
                }
            }
        }
        Err(self.err("resolve", path)(io::Error::from_raw_os_error(
            libc::ELOOP,
        )))
    }
}

/// The relative link from directory `from` to `to` (both physical in-root
/// paths), e.g. `var` → `run` gives `../run`.
fn relative(from: &[Vec<u8>], to: &[Vec<u8>]) -> Vec<u8> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&[u8]> = vec![b".."; from.len() - common];
    parts.extend(to[common..].iter().map(Vec::as_slice));
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

fn display(phys: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(phys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Vec<u8>> {
        s.split('/')
            .filter(|c| !c.is_empty())
            .map(|c| c.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn relative_links() {
        assert_eq!(relative(&p("var"), &p("run")), b"../run");
        assert_eq!(relative(&p(""), &p("usr/etc")), b"usr/etc");
        assert_eq!(relative(&p("a/b"), &p("a/b")), b".");
        assert_eq!(relative(&p("a/b/c"), &p("a/x")), b"../../x");
    }

    #[test]
    fn symlinked_etc_files_take_their_in_root_target() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("hosts"), b"host file").unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("run/systemd")).unwrap();
        std::fs::write(r.join("run/systemd/resolv.conf"), b"nameserver 10.0.0.1\n").unwrap();
        symlink("../../run", r.join("var")).unwrap();
        // Through a symlinked directory, out of reach of `..`.
        symlink("../../../var/systemd/resolv.conf", r.join("etc/resolv.conf")).unwrap();
        // Absolute, to the host's file: no such in-root file.
        symlink(t.path().join("hosts"), r.join("etc/hosts")).unwrap();
        symlink("/run", r.join("etc/services")).unwrap();
        let report = prepare(&r, &PrepOptions::default()).unwrap();
        assert_eq!(report.files_replaced, ["/etc/resolv.conf", "/etc/hosts", "/etc/services"]);
        assert_eq!(std::fs::read(r.join("etc/resolv.conf")).unwrap(), b"nameserver 10.0.0.1\n");
        assert_eq!(std::fs::read(r.join("etc/hosts")).unwrap(), b"");
        assert_eq!(std::fs::read(r.join("etc/services")).unwrap(), b"", "a directory gives an empty file");
        assert_eq!(std::fs::read(t.path().join("hosts")).unwrap(), b"host file");

        // A loop is refused, naming the file.
        std::fs::remove_file(r.join("etc/hosts")).unwrap();
        symlink("hosts", r.join("etc/hosts")).unwrap();
        let err = prepare(&r, &PrepOptions::default()).unwrap_err();
        assert!(err.to_string().contains("resolve /etc/hosts"), "{err}");
    }
}
