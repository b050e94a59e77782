//! A sorted, comparable description of a directory tree, for assertions.
//!
//! [`Tree::scan`] walks without following symlinks and records, per path:
//! type, permission bits, owner, mtime, size, content hash, symlink target,
//! device numbers, hardlink group and extended attributes. [`Tree::render`]
//! prints the fields tests usually compare as one line per path; the
//! individual [`Node`]s carry everything else.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::builder::sha256_hex;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(String),
    Char(u64, u64),
    Block(u64, u64),
    Fifo,
    Socket,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Path relative to the scanned root, `/`-separated.
    pub path: String,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub size: u64,
    /// Regular files: the whole content (tests use small files).
    pub content: Option<Vec<u8>>,
    pub ino: u64,
    pub nlink: u64,
    /// Index of the hardlink group among paths whose inode has nlink > 1,
    /// numbered by the first path (in sorted order) of each group.
    pub link_group: Option<usize>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    pub root: PathBuf,
    pub nodes: Vec<Node>,
}

fn major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

/// All extended attributes of `path`, not following symlinks.
pub fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    let mut names = vec![0u8; 65536];
    // SAFETY: `c` is a valid C string and `names` a writable buffer of the given length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
    {
        let cname = CString::new(name).expect("xattr name");
        let mut value = vec![0u8; 65536];
        // SAFETY: both pointers are valid for the given lengths.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if m >= 0 {
            value.truncate(m as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), value);
        }
    }
    out
}

impl Tree {
    /// Walk `root` (which must exist). The root itself is not listed.
    pub fn scan(root: &Path) -> Tree {
        let mut nodes = Vec::new();
        walk(root, root, &mut nodes);
        nodes.sort_by(|a, b| a.path.cmp(&b.path));
        let mut groups: BTreeMap<u64, usize> = BTreeMap::new();
        for n in &mut nodes {
            if n.nlink > 1 && !matches!(n.kind, Kind::Dir) {
                let next = groups.len();
                n.link_group = Some(*groups.entry(n.ino).or_insert(next));
            }
        }
        Tree {
            root: root.to_path_buf(),
            nodes,
        }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.path == path)
    }

    /// The node at `path`; panics with the whole tree when absent.
    pub fn node(&self, path: &str) -> &Node {
        self.get(path)
            .unwrap_or_else(|| panic!("{path} missing from:\n{}", self.render()))
    }

    pub fn paths(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.path.as_str()).collect()
    }

    /// One line per path: `path kind mode [details]`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            s.push_str(&n.line());
            s.push('\n');
        }
        s
    }
}

impl Node {
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    pub fn content_str(&self) -> String {
        String::from_utf8_lossy(self.content.as_deref().unwrap_or_default()).into_owned()
    }

    /// `etc/passwd file 0644 "root:x:0:0"`, `lib symlink 0777 -> usr/lib`, ...
    /// Owner appears when not the test's own (0:0 as root), the link group when the inode is shared,
    /// xattr names when there are any.
    pub fn line(&self) -> String {
        let mut s = format!("{} ", self.path);
        match &self.kind {
            Kind::File => s.push_str("file"),
            Kind::Dir => s.push_str("dir"),
            Kind::Symlink(_) => s.push_str("symlink"),
            Kind::Char(..) => s.push_str("char"),
            Kind::Block(..) => s.push_str("block"),
            Kind::Fifo => s.push_str("fifo"),
            Kind::Socket => s.push_str("socket"),
        }
        s.push_str(&format!(" {:04o}", self.mode));
        match &self.kind {
            Kind::Symlink(t) => s.push_str(&format!(" -> {t}")),
            Kind::Char(ma, mi) | Kind::Block(ma, mi) => s.push_str(&format!(" {ma},{mi}")),
            Kind::File => {
                let c = self.content.as_deref().unwrap_or_default();
                let printable = c.len() <= 40 && c.iter().all(|&b| (0x20..0x7f).contains(&b));
                if printable {
                    s.push_str(&format!(" {:?}", String::from_utf8_lossy(c)));
                } else {
                    s.push_str(&format!(
                        " size={} sha256={}",
                        c.len(),
                        &sha256_hex(c)[..12]
                    ));
                }
            }
            _ => {}
        }
        if (self.uid, self.gid) != default_owner() {
            s.push_str(&format!(" {}:{}", self.uid, self.gid));
        }
        if let Some(g) = self.link_group {
            s.push_str(&format!(" link#{g}"));
        }
        if !self.xattrs.is_empty() {
            let names: Vec<&str> = self.xattrs.keys().map(String::as_str).collect();
            s.push_str(&format!(" xattrs={}", names.join(",")));
        }
        s
    }
}

/// The owner files get when an extraction does not chown: the test's own.
pub fn default_owner() -> (u32, u32) {
    // SAFETY: no preconditions.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Run `f` with `path` opened up to its owner (mode | `extra`) when a
/// non-root test cannot otherwise read it (a mode-0000 dir or file from an
/// image), restoring the mode afterwards.
fn opened<T>(path: &Path, extra: u32, f: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    use std::os::unix::fs::PermissionsExt;
    match f() {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let mode = std::fs::symlink_metadata(path)?.mode() & 0o7777;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | extra))?;
            let r = f();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            r
        }
        r => r,
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Node>) {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<PathBuf> = opened(dir, 0o700, || {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    })
    .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    entries.sort();
    // Children of a dir without search permission need it for lstat.
    let dir_mode = std::fs::symlink_metadata(dir).expect("lstat").mode() & 0o7777;
    let search = entries.first().is_some_and(|p| {
        std::fs::symlink_metadata(p)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if search {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode | 0o700))
            .expect("chmod");
    }
    for p in entries {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).expect("readlink");
            Kind::Symlink(String::from_utf8_lossy(t.as_os_str().as_bytes()).into_owned())
        } else if ft.is_char_device() {
            Kind::Char(major(md.rdev()), minor(md.rdev()))
        } else if ft.is_block_device() {
            Kind::Block(major(md.rdev()), minor(md.rdev()))
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            Kind::File
        };
        let content = if kind == Kind::File {
            // A mode-0000 file is opened up when not root (the test owns it).
            Some(
                opened(&p, 0o400, || std::fs::read(&p))
                    .unwrap_or_else(|e| format!("<unreadable: {e}>").into_bytes()),
            )
        } else {
            None
        };
        let rel = p.strip_prefix(root).expect("under root");
        out.push(Node {
            path: String::from_utf8_lossy(rel.as_os_str().as_bytes()).into_owned(),
            kind: kind.clone(),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
            size: md.size(),
            content,
            ino: md.ino(),
            nlink: md.nlink(),
            link_group: None,
            xattrs: xattrs(&p),
        });
        if kind == Kind::Dir {
            walk(root, &p, out);
        }
    }
    if search {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))
            .expect("chmod back");
    }
}

/// Everything under `root` except the subtrees named in `skip` (relative
/// paths), with all metadata, for "nothing changed" comparisons. The root's
/// own metadata is not included: creating and removing siblings changes it.
pub fn snapshot(root: &Path, skip: &[&str]) -> Vec<Node> {
    let t = Tree::scan(root);
    t.nodes
        .into_iter()
        .filter(|n| {
            !skip
                .iter()
                .any(|s| n.path == *s || n.path.starts_with(&format!("{s}/")))
        })
        .collect()
}
