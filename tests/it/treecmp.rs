//! Compare two root filesystem trees as a container would see them.
//!
//! What counts: the set of paths, each path's file type, its permission bits
//! (including setuid, setgid and sticky), symlink targets, regular file
//! contents, device numbers, and which paths share an inode (hardlink groups:
//! the partition of non-directory paths into inodes must be the same on both
//! sides). What does not count: ownership (`umoci unpack --rootless` drops
//! it), timestamps, and the mode of the tree's root directory itself.
//!
//! Nothing is ever followed: every path is examined with `lstat`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How many differences a failed assertion prints.
const SHOWN: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Dir => "directory",
            Kind::File => "regular file",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::CharDevice => "char device",
            Kind::BlockDevice => "block device",
        })
    }
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    /// Permission bits with setuid/setgid/sticky (`st_mode & 0o7777`).
    perm: u32,
    size: u64,
    rdev: u64,
    target: Option<PathBuf>,
    inode: (u64, u64),
}

/// One tree, walked once: every path below the root, sorted.
pub struct Tree {
    root: PathBuf,
    nodes: BTreeMap<PathBuf, Node>,
    /// For non-directories sharing an inode with another path of this tree:
    /// the sorted group of paths.
    links: HashMap<PathBuf, Vec<PathBuf>>,
}

impl Tree {
    pub fn scan(root: &Path) -> io::Result<Tree> {
        let mut nodes = BTreeMap::new();
        walk(root, Path::new(""), &mut nodes)?;
        let mut by_inode: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
        for (path, node) in &nodes {
            if node.kind != Kind::Dir {
                by_inode.entry(node.inode).or_default().push(path.clone());
            }
        }
        let mut links = HashMap::new();
        for group in by_inode.into_values().filter(|g| g.len() > 1) {
            // `nodes` is sorted, so every group already is.
            for path in &group {
                links.insert(path.clone(), group.clone());
            }
        }
        Ok(Tree {
            root: root.to_path_buf(),
            nodes,
            links,
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    fn group(&self, path: &Path) -> Vec<PathBuf> {
        self.links
            .get(path)
            .cloned()
            .unwrap_or_else(|| vec![path.to_path_buf()])
    }
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) -> io::Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let full = root.join(&rel);
        let meta = fs::symlink_metadata(&full)?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_char_device() {
            Kind::CharDevice
        } else {
            Kind::BlockDevice
        };
        let target = if kind == Kind::Symlink {
            Some(fs::read_link(&full)?)
        } else {
            None
        };
        out.insert(
            rel.clone(),
            Node {
                kind,
                perm: meta.mode() & 0o7777,
                size: meta.len(),
                rdev: meta.rdev(),
                target,
                inode: (meta.dev(), meta.ino()),
            },
        );
        if kind == Kind::Dir {
            walk(root, &rel, out)?;
        }
    }
    Ok(())
}

/// One way in which the right tree differs from the left one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    OnlyLeft(PathBuf, Kind),
    OnlyRight(PathBuf, Kind),
    Kind(PathBuf, Kind, Kind),
    Perm(PathBuf, u32, u32),
    Target(PathBuf, PathBuf, PathBuf),
    Content(PathBuf, String),
    Device(PathBuf, u64, u64),
    Hardlinks(PathBuf, Vec<PathBuf>, Vec<PathBuf>),
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
    format!("{{{}}}", names.join(", "))
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::OnlyLeft(p, k) => write!(f, "- {}: {k} only on the left", p.display()),
            Difference::OnlyRight(p, k) => write!(f, "+ {}: {k} only on the right", p.display()),
            Difference::Kind(p, l, r) => write!(f, "~ {}: {l} vs {r}", p.display()),
            Difference::Perm(p, l, r) => write!(f, "~ {}: mode {l:04o} vs {r:04o}", p.display()),
            Difference::Target(p, l, r) => write!(
                f,
                "~ {}: symlink -> {} vs -> {}",
                p.display(),
                l.display(),
                r.display()
            ),
            Difference::Content(p, what) => {
                write!(f, "~ {}: contents differ ({what})", p.display())
            }
            Difference::Device(p, l, r) => write!(f, "~ {}: rdev {l:#x} vs {r:#x}", p.display()),
            Difference::Hardlinks(p, l, r) => write!(
                f,
                "~ {}: hardlink group {} vs {}",
                p.display(),
                list(l),
                list(r)
            ),
        }
    }
}

/// Every difference between `left` and `right`, in path order.
pub fn differences(left: &Tree, right: &Tree) -> io::Result<Vec<Difference>> {
    let mut out = Vec::new();
    let mut reported_groups = BTreeSet::new();
    let paths: BTreeSet<&PathBuf> = left.nodes.keys().chain(right.nodes.keys()).collect();
    for path in paths {
        let (l, r) = match (left.nodes.get(path), right.nodes.get(path)) {
            (Some(l), Some(r)) => (l, r),
            (Some(l), None) => {
                out.push(Difference::OnlyLeft(path.clone(), l.kind));
                continue;
            }
            (None, Some(r)) => {
                out.push(Difference::OnlyRight(path.clone(), r.kind));
                continue;
            }
            (None, None) => unreachable!("path comes from one of the trees"),
        };
        if l.kind != r.kind {
            out.push(Difference::Kind(path.clone(), l.kind, r.kind));
            continue;
        }
        // Symlink permission bits are meaningless (always 0777 on Linux).
        if l.perm != r.perm && l.kind != Kind::Symlink {
            out.push(Difference::Perm(path.clone(), l.perm, r.perm));
        }
        match l.kind {
            Kind::Symlink if l.target != r.target => out.push(Difference::Target(
                path.clone(),
                l.target.clone().unwrap_or_default(),
                r.target.clone().unwrap_or_default(),
            )),
            Kind::File => {
                if let Some(what) = content_difference(left, right, path, l, r)? {
                    out.push(Difference::Content(path.clone(), what));
                }
            }
            Kind::CharDevice | Kind::BlockDevice if l.rdev != r.rdev => {
                out.push(Difference::Device(path.clone(), l.rdev, r.rdev));
            }
            _ => {}
        }
        if l.kind != Kind::Dir {
            let (lg, rg) = (left.group(path), right.group(path));
            // Report each split or merged group once, under its first path.
            let key = if lg.len() > 1 { lg.clone() } else { rg.clone() };
            if lg != rg && reported_groups.insert(key) {
                out.push(Difference::Hardlinks(path.clone(), lg, rg));
            }
        }
    }
    Ok(out)
}

fn content_difference(
    left: &Tree,
    right: &Tree,
    path: &Path,
    l: &Node,
    r: &Node,
) -> io::Result<Option<String>> {
    if l.size != r.size {
        return Ok(Some(format!("{} vs {} bytes", l.size, r.size)));
    }
    let mut a = File::open(left.root.join(path))?;
    let mut b = File::open(right.root.join(path))?;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut a, &mut ba)?;
        let m = read_full(&mut b, &mut bb)?;
        if let Some(i) = ba[..n.min(m)]
            .iter()
            .zip(&bb[..m.min(n)])
            .position(|(x, y)| x != y)
        {
            return Ok(Some(format!("first at byte {}", offset + i as u64)));
        }
        if n != m {
            return Ok(Some(format!(
                "one side ends at byte {}",
                offset + n.min(m) as u64
            )));
        }
        if n == 0 {
            return Ok(None);
        }
        offset += n as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A readable report: both roots, the number of differences, the first few.
pub fn report(left: &Tree, right: &Tree, diffs: &[Difference]) -> String {
    let mut s = format!(
        "trees differ in {} place(s)\n  left:  {} ({} paths)\n  right: {} ({} paths)\n",
        diffs.len(),
        left.root.display(),
        left.len(),
        right.root.display(),
        right.len()
    );
    for d in diffs.iter().take(SHOWN) {
        s.push_str("  ");
        s.push_str(&d.to_string());
        s.push('\n');
    }
    if diffs.len() > SHOWN {
        s.push_str(&format!("  ... and {} more\n", diffs.len() - SHOWN));
    }
    s
}

/// Scan both trees and return their differences (panics if a tree cannot be read).
pub fn compare(left: &Path, right: &Path) -> (Tree, Tree, Vec<Difference>) {
    let l = Tree::scan(left).unwrap_or_else(|e| panic!("cannot scan {}: {e}", left.display()));
    let r = Tree::scan(right).unwrap_or_else(|e| panic!("cannot scan {}: {e}", right.display()));
    let diffs = differences(&l, &r).unwrap_or_else(|e| {
        panic!(
            "cannot compare {} with {}: {e}",
            left.display(),
            right.display()
        )
    });
    (l, r, diffs)
}

/// Panic with a readable diff unless `expected` and `actual` are the same tree.
#[track_caller]
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (l, r, diffs) = compare(expected, actual);
    assert!(
        l.len() > 0,
        "expected tree {} is empty: the fixture is broken",
        expected.display()
    );
    if !diffs.is_empty() {
        panic!("{}", report(&l, &r, &diffs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for root in [&a, &b] {
            fs::create_dir_all(root.join("d")).unwrap();
            fs::set_permissions(root.join("d"), fs::Permissions::from_mode(0o755)).unwrap();
            fs::write(root.join("d/f"), b"same").unwrap();
            fs::hard_link(root.join("d/f"), root.join("d/g")).unwrap();
            symlink("f", root.join("d/l")).unwrap();
        }
        (t, a, b)
    }

    #[test]
    fn treecmp_equal_trees_have_no_differences() {
        let (_t, a, b) = setup();
        assert_same_tree(&a, &b);
    }

    #[test]
    fn treecmp_reports_each_kind_of_difference() {
        let (_t, a, b) = setup();
        fs::write(b.join("d/extra"), b"x").unwrap();
        fs::set_permissions(b.join("d"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::remove_file(b.join("d/l")).unwrap();
        symlink("g", b.join("d/l")).unwrap();
        // Break the hardlink: same contents, separate inode.
        fs::remove_file(b.join("d/g")).unwrap();
        fs::write(b.join("d/g"), b"same").unwrap();
        let (l, r, diffs) = compare(&a, &b);
        let text = report(&l, &r, &diffs);
        assert!(
            diffs.contains(&Difference::OnlyRight("d/extra".into(), Kind::File)),
            "{text}"
        );
        assert!(
            diffs.contains(&Difference::Perm("d".into(), 0o755, 0o1777)),
            "{text}"
        );
        assert!(
            diffs.contains(&Difference::Target("d/l".into(), "f".into(), "g".into())),
            "{text}"
        );
        assert!(
            diffs
                .iter()
                .any(|d| matches!(d, Difference::Hardlinks(p, ..) if p == Path::new("d/f"))),
            "{text}"
        );
        assert_eq!(diffs.len(), 4, "{text}");
    }

    #[test]
    fn treecmp_reports_content_and_type_changes() {
        let (_t, a, b) = setup();
        fs::remove_file(b.join("d/l")).unwrap();
        fs::create_dir(b.join("d/l")).unwrap();
        fs::write(a.join("d/f"), b"samf").unwrap();
        fs::write(b.join("d/f"), b"same").unwrap();
        let (_, _, diffs) = compare(&a, &b);
        assert_eq!(
            diffs,
            vec![
                Difference::Content("d/f".into(), "first at byte 3".into()),
                // d/g is the same inode as d/f.
                Difference::Content("d/g".into(), "first at byte 3".into()),
                Difference::Kind("d/l".into(), Kind::Symlink, Kind::Dir),
            ]
        );
    }
}
