//! Carrying out a plan's removals, inside the rootfs only.
//!
//! Each path is reached through [`crate::rootfs::Walker`]: directories are
//! resolved one component at a time from a descriptor, symlinks are
//! followed *inside* the rootfs (an absolute target starts again at the
//! rootfs), and the last component is unlinked, never followed. A symlink
//! in the image pointing at `/usr/lib/libfoo.so.1` therefore removes the
//! symlink itself, never the build machine's file (BundleGen's
//! `os.path.realpath` does the latter).

use std::path::Path;

use super::{LibMatchError, MatchPlan};
use crate::rootfs::{Missing, Walker, cstr, is_dir, lstat_at, unlink_at};

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyStats {
    /// Sizes of the regular files removed.
    pub bytes_removed: u64,
    /// Files and symlinks removed.
    pub files_removed: u64,
}

/// Removes `plan.remove` from the rootfs. Entries already gone are skipped;
/// a directory is an error (plans only name files and symlinks).
pub fn apply(rootfs: &Path, plan: &MatchPlan) -> Result<ApplyStats, LibMatchError> {
    let mut walker = Walker::new(rootfs).map_err(|source| LibMatchError::Root {
        path: rootfs.to_owned(),
        source,
    })?;
    let mut stats = ApplyStats::default();
    let remove_err = |path: &str, source| LibMatchError::Remove {
        path: path.to_owned(),
        root: rootfs.to_owned(),
        source,
    };
    for path in &plan.remove {
        let comps: Vec<&[u8]> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::as_bytes)
            .collect();
        let Some((name, dirs)) = comps.split_last() else {
            return Err(LibMatchError::BadPath { path: path.clone() });
        };
        if *name == b".." || dirs.contains(&&b".."[..]) {
            return Err(LibMatchError::BadPath { path: path.clone() });
        }
        let dir = match walker.dir(dirs, Missing::Fail, None) {
            Ok(d) => d,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(remove_err(path, e)),
        };
        let c_name = cstr(name).map_err(|e| remove_err(path, e))?;
        let st = match lstat_at(dir.raw(), &c_name) {
            Ok(st) => st,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(remove_err(path, e)),
        };
        if is_dir(&st) {
            return Err(LibMatchError::IsDirectory {
                path: path.clone(),
                root: rootfs.to_owned(),
            });
        }
        unlink_at(dir.raw(), &c_name, 0).map_err(|e| remove_err(path, e))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            stats.bytes_removed += u64::try_from(st.st_size).unwrap_or(0);
        }
        stats.files_removed += 1;
    }
    Ok(stats)
}

fn gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}
