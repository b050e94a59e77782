//! A memo over in-root path resolution.
//!
//! Library matching asks for the same paths thousands of times (every
//! gconv module looks up `libc.so.6` through every search directory), and
//! each answer is a `statx` per component. While the rootfs is only read,
//! the answer for a path cannot change, so it is computed once: [`Memo`]
//! sits on top of a resolver ([`crate::rootfs::resolve`]) and keeps
//! each path's result, the error included, keyed by the path as asked.
//!
//! The key is the whole path, not a prefix: the resolver's symlink budget
//! counts every link followed for the path, so a prefix's answer cannot be
//! reused for a longer path without changing which paths exceed it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An `io::Error` kept so that the same error can be handed out again.
#[derive(Debug, Clone)]
enum Failure {
    Os(i32),
    Kind(io::ErrorKind),
    Message(io::ErrorKind, String),
}

impl Failure {
    fn of(e: &io::Error) -> Failure {
        if let Some(code) = e.raw_os_error() {
            Failure::Os(code)
        } else if e.get_ref().is_some() {
            Failure::Message(e.kind(), e.to_string())
        } else {
            Failure::Kind(e.kind())
        }
    }

    fn error(&self) -> io::Error {
        match self {
            Failure::Os(code) => io::Error::from_raw_os_error(*code),
            Failure::Kind(kind) => io::Error::from(*kind),
            Failure::Message(kind, message) => io::Error::new(*kind, message.clone()),
        }
    }
}

type Resolve = fn(&Path, &str) -> io::Result<String>;

/// Remembers what each in-root path resolves to in one rootfs. Valid only
/// while nothing writes the rootfs.
pub struct Memo {
    root: PathBuf,
    resolve: Resolve,
    seen: Mutex<HashMap<String, Result<String, Failure>>>,
}

impl Memo {
    /// A memo over [`crate::rootfs::resolve`] for `root`.
    pub fn new(root: &Path) -> Memo {
        Memo::over(root, crate::rootfs::resolve)
    }

    /// A memo over another resolver with the same contract.
    pub fn over(root: &Path, resolve: Resolve) -> Memo {
        Memo {
            root: root.to_path_buf(),
            resolve,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves in a copy of the rootfs at `root` from now on: the answers
    /// so far, in-root paths, are the copy's too.
    pub fn move_to(&mut self, root: &Path) {
        self.root = root.to_path_buf();
    }

    /// What the resolver answers for `path`, asking it only the first time.
    pub fn resolve(&self, path: &str) -> io::Result<String> {
        if let Some(hit) = self.lock().get(path) {
            return hit.clone().map_err(|f| f.error());
        }
        let result = (self.resolve)(&self.root, path);
        let kept = match &result {
            Ok(real) => Ok(real.clone()),
            Err(e) => Err(Failure::of(e)),
        };
        self.lock().insert(path.to_owned(), kept);
        result
    }

    /// Paths asked so far (for tests and measurements).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Result<String, Failure>>> {
        // A panic while holding the lock cannot leave a half-written entry.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clone for Memo {
    fn clone(&self) -> Memo {
        Memo {
            root: self.root.clone(),
            resolve: self.resolve,
            seen: Mutex::new(self.lock().clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::resolve;
    use std::os::unix::fs::symlink;

    /// Hostile shapes: loops, `..` escapes, absolute links, dangling links,
    /// a file used as a directory, a chain just under and just over the
    /// symlink budget.
    fn hostile_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).expect("mkdir");
        std::fs::write(r.join("usr/lib/x86_64-linux-gnu/libc.so.6"), b"x").expect("write");
        std::fs::write(r.join("usr/lib/file"), b"x").expect("write");
        symlink("usr/lib", r.join("lib")).expect("symlink");
        symlink("/usr/lib/x86_64-linux-gnu/libc.so.6", r.join("usr/lib/abs")).expect("symlink");
        symlink("../../../../../../usr/lib", r.join("usr/lib/up")).expect("symlink");
        symlink("/../../etc/../usr/./lib/", r.join("usr/lib/absup")).expect("symlink");
        symlink("loop2", r.join("loop1")).expect("symlink");
        symlink("loop1", r.join("loop2")).expect("symlink");
        symlink("self", r.join("self")).expect("symlink");
        symlink("/nowhere/libz.so.1", r.join("usr/lib/dangling")).expect("symlink");
        symlink("file", r.join("usr/lib/tofile")).expect("symlink");
        symlink(".", r.join("dot")).expect("symlink");
        symlink("..", r.join("usr/dotdot")).expect("symlink");
        // c0 -> c1 -> ... -> c45 -> usr: resolving cK takes 46 - K links.
        for i in 0..45 {
            symlink(format!("c{}", i + 1), r.join(format!("c{i}"))).expect("symlink");
        }
        symlink("usr", r.join("c45")).expect("symlink");
        dir
    }

    const PATHS: &[&str] = &[
        "/",
        "",
        ".",
        "..",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libc.so.6",
        "/lib/abs",
        "/lib/up/x86_64-linux-gnu/libc.so.6",
        "/lib/up/up/up/abs",
        "/lib/absup/abs",
        "/../../../lib/./x86_64-linux-gnu//libc.so.6",
        "/lib/x86_64-linux-gnu/../../../../lib/abs",
        "/loop1",
        "/loop1/x",
        "/self",
        "/lib/dangling",
        "/lib/dangling/x",
        "/lib/missing",
        "/lib/missing/x",
        "/lib/file/x",
        "/lib/tofile/x",
        "/lib/tofile",
        "/lib/file/..",
        "/dot/dot/dot/lib/abs",
        "/usr/dotdot/usr/dotdot/lib/abs",
        "/c0/lib/file",
        "/c5/lib/file",
        "/c6/lib/file",
        "/c6/lib/abs",
        "/c7/lib/abs",
        "/c10/lib/up/up/abs",
    ];

    fn same(a: &io::Result<String>, b: &io::Result<String>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => {
                a.kind() == b.kind()
                    && a.raw_os_error() == b.raw_os_error()
                    && a.to_string() == b.to_string()
            }
            _ => false,
        }
    }

    #[test]
    fn memo_resolves_exactly_like_the_resolver_on_hostile_links() {
        let dir = hostile_root();
        let r = dir.path();
        let memo = Memo::new(r);
        // Twice over, in both orders: the second answers come from the memo.
        for round in 0..2 {
            let order: Vec<&str> = if round == 0 {
                PATHS.to_vec()
            } else {
                PATHS.iter().rev().copied().collect()
            };
            for path in order {
                let direct = resolve(r, path);
                let memoized = memo.resolve(path);
                assert!(
                    same(&direct, &memoized),
                    "{path:?}: {direct:?} against {memoized:?}"
                );
            }
        }
        assert_eq!(memo.len(), PATHS.len());
        // The shapes do what they are meant to (the test is not vacuous).
        let ok = |p: &str| memo.resolve(p).expect(p);
        assert_eq!(ok("/lib/up/up/up/abs"), "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(ok("/c6/lib/file"), "/usr/lib/file");
        assert_eq!(ok("/usr/dotdot/usr/dotdot/lib/abs"), "/usr/lib/x86_64-linux-gnu/libc.so.6");
        for bad in ["/loop1", "/self", "/c5/lib/file", "/c0/lib/file", "/c6/lib/abs"] {
            let e = memo.resolve(bad).expect_err(bad);
            assert!(e.to_string().contains("more than 40 symlinks"), "{bad}: {e}");
        }
        for (bad, kind) in [
            ("/lib/dangling", io::ErrorKind::NotFound),
            ("/lib/missing/x", io::ErrorKind::NotFound),
            ("/lib/file/x", io::ErrorKind::NotADirectory),
            ("/lib/tofile/x", io::ErrorKind::NotADirectory),
        ] {
            assert_eq!(memo.resolve(bad).expect_err(bad).kind(), kind, "{bad}");
        }
    }

    #[test]
    fn a_memo_answers_from_memory_once_filled() {
        let dir = hostile_root();
        let r = dir.path();
        let memo = Memo::new(r);
        let before: Vec<io::Result<String>> = PATHS.iter().map(|p| memo.resolve(p)).collect();
        // The rootfs changes under the memo: its answers stay those it gave.
        std::fs::remove_file(r.join("lib")).expect("rm");
        std::fs::remove_file(r.join("loop1")).expect("rm");
        let clone = memo.clone();
        for (path, first) in PATHS.iter().zip(&before) {
            assert!(same(first, &memo.resolve(path)), "{path}");
            assert!(same(first, &clone.resolve(path)), "{path}");
        }
        assert!(resolve(r, "/lib/abs").is_err());
        assert_eq!(memo.resolve("/lib/abs").expect("kept"), "/usr/lib/x86_64-linux-gnu/libc.so.6");
    }
}
