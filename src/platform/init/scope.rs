//! What `platform init` reads: the files the device's dynamic loader can
//! load and the files the template names, never the whole rootfs.
//!
//! A device image's rootfs is small, but `--rootfs /` on a development
//! machine is a whole host (hundreds of thousands of files, temporary and
//! home folders, other checkouts). Only these are read:
//!
//! - the executables that tell the architecture (`/bin/sh`, `/sbin/init`,
//!   ...), one by one, through the loader model;
//! - the loader's directories for that architecture: those of
//!   `/etc/ld.so.conf` and its `include`s, then the multiarch, `lib64` and
//!   `lib` defaults, each walked recursively (BundleGen's inventories list
//!   plugin folders such as `/usr/lib/gstreamer-1.0` too);
//! - the libraries the template names (`gpu.gfxLibs[].src`).
//!
//! Walks stay on the file system of the rootfs (like `find -xdev`, so
//! `/proc`, `/sys` and other mounts are never entered), do not follow
//! symlinked directories, and read only files whose names contain `.so`
//! (what the inventory lists). Libraries needed from elsewhere are read
//! one by one when the loader model resolves them.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;

use crate::diag::{Diagnostics, Progress, Warning};
use crate::elf::{self, ElfInfo, ElfScan};
use crate::ldso::Loader;
use crate::rootfs;

/// How the progress step under which `platform init` reads the library
/// files starts (the directories follow); its `total` is the number of
/// files read.
pub const READ_STEP: &str = "read the libraries under";

/// Directories searched for a dynamic loader when no executable tells the
/// architecture: the defaults of every architecture, and one level below
/// `/lib` and `/usr/lib` (the multiarch folders).
const LOADER_SEARCH: [&str; 4] = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"];

/// The loader's directories for objects like `reference`, resolved inside
/// the rootfs, each once, without the ones inside another (walked with it).
pub(super) fn loader_dirs(loader: &Loader, reference: &ElfInfo) -> Vec<String> {
    let root = loader.root();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for d in loader.system_dirs(reference) {
        if let Ok(real) = rootfs::resolve_dir(root, &d) {
            dirs.insert(real);
        }
    }
    let mut outer: Vec<String> = Vec::new();
    for d in dirs {
        if !outer.iter().any(|o| within(&d, o)) {
            outer.push(d);
        }
    }
    outer
}

/// The in-root paths of the libraries the template names.
pub(super) fn template_files(platform: &Value) -> Vec<String> {
    let mut files: Vec<String> = platform
        .pointer("/gpu/gfxLibs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|lib| lib.get("src").and_then(Value::as_str))
        .filter(|src| src.starts_with('/'))
        .map(str::to_owned)
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Reads the ELF facts of every `.so` file under `dirs` (recursively) and
/// of `files`, in parallel.
pub(super) fn read(
    root: &Path,
    dirs: &[String],
    files: &[String],
    diag: &dyn Diagnostics,
) -> io::Result<ElfScan> {
    let device = std::fs::metadata(root)?.dev();
    let mut found = Found::default();
    for dir in dirs {
        walk(root, dir, device, true, &mut found, diag);
    }
    for f in files {
        if let Ok(found_file) = rootfs::Walker::new(root).and_then(|mut w| w.resolve(f.as_bytes()))
            && found_file.stat().is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
        {
            found.files.insert(found_file.path());
        }
    }
    let step = format!("{READ_STEP} {}", dirs.join(", "));
    Ok(read_all(root, found, step, diag))
}

/// The `ld-linux*`/`ld-musl*` files in the default directories of every
/// architecture, for a rootfs with no `/bin/sh`.
pub(super) fn loader_candidates(root: &Path, diag: &dyn Diagnostics) -> io::Result<ElfScan> {
    let device = std::fs::metadata(root)?.dev();
    let mut found = Found::default();
    for dir in LOADER_SEARCH {
        let Ok(real) = rootfs::resolve(root, dir) else {
            continue;
        };
        walk(root, &real, device, false, &mut found, diag);
        if let Ok(rd) = std::fs::read_dir(host(root, &real)) {
            let mut subdirs: Vec<String> = rd
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| join(&real, &e.file_name().to_string_lossy()))
                .collect();
            subdirs.sort();
            for sub in subdirs {
                walk(root, &sub, device, false, &mut found, diag);
            }
        }
    }
    found.files.retain(|p| {
        let name = p.rsplit('/').next().unwrap_or("");
        name.starts_with("ld-linux") || name.starts_with("ld-musl")
    });
    found.symlinks.clear();
    Ok(read_all(
        root,
        found,
        "look for a dynamic loader".into(),
        diag,
    ))
}

#[derive(Default)]
struct Found {
    files: BTreeSet<String>,
    symlinks: BTreeMap<String, String>,
}

/// Records the `.so` files and symlinks under the in-root directory `dir`,
/// in sorted order; with `recursive`, the directories below it on the same
/// file system too.
fn walk(
    root: &Path,
    dir: &str,
    device: u64,
    recursive: bool,
    found: &mut Found,
    diag: &dyn Diagnostics,
) {
    let rd = match std::fs::read_dir(host(root, dir)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            diag.warning(Warning::new(dir, format!("directory skipped: {e}")));
            return;
        }
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(ft) = entry.file_type() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = join(dir, &name);
        if ft.is_dir() {
            let same_fs = entry.metadata().is_ok_and(|m| m.dev() == device);
            if recursive && same_fs {
                walk(root, &path, device, recursive, found, diag);
            }
        } else if !name.contains(".so") && !name.starts_with("ld-") {
            continue;
        } else if ft.is_symlink() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                found
                    .symlinks
                    .insert(path, target.to_string_lossy().into_owned());
            }
        } else if ft.is_file() {
            found.files.insert(path);
        }
    }
}

fn read_all(root: &Path, found: Found, step: String, diag: &dyn Diagnostics) -> ElfScan {
    let files = found
        .files
        .into_iter()
        .map(|path| {
            let full = host(root, &path);
            (path, full)
        })
        .collect();
    elf::read_files(files, found.symlinks, step, diag)
}

/// Passes each distinct warning on once: a file reached along two paths
/// (a directory and its symlinked alias) is reported once.
pub(super) struct Once<'a> {
    inner: &'a dyn Diagnostics,
    seen: Mutex<BTreeSet<(String, String)>>,
}

impl<'a> Once<'a> {
    pub(super) fn new(inner: &'a dyn Diagnostics) -> Self {
        Once {
            inner,
            seen: Mutex::new(BTreeSet::new()),
        }
    }
}

impl Diagnostics for Once<'_> {
    fn warning(&self, w: Warning) {
        let first = self
            .seen
            .lock()
            .map(|mut s| s.insert((w.subject.clone(), w.message.clone())))
            .unwrap_or(true);
        if first {
            self.inner.warning(w);
        }
    }

    fn progress(&self, event: Progress) {
        self.inner.progress(event);
    }
}

/// Whether in-root path `p` is `dir` or below it.
fn within(p: &str, dir: &str) -> bool {
    dir == "/" || p == dir || p.starts_with(&format!("{dir}/"))
}

fn host(root: &Path, in_root: &str) -> std::path::PathBuf {
    root.join(in_root.trim_start_matches('/'))
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_directories_are_walked_once() {
        assert!(within("/usr/lib/x86_64-linux-gnu", "/usr/lib"));
        assert!(within("/usr/lib", "/usr/lib"));
        assert!(!within("/usr/lib64", "/usr/lib"));
        assert!(within("/anything", "/"));
    }

    #[test]
    fn template_names_gfx_libraries() {
        let tpl = serde_json::json!({ "gpu": { "gfxLibs": [
            { "src": "/usr/lib/libEGL.so.1", "dst": "/usr/lib/libEGL.so.1" },
            { "src": "relative.so", "dst": "/x" },
            { "src": "/usr/lib/libEGL.so.1", "dst": "/y" }
        ] } });
        assert_eq!(template_files(&tpl), ["/usr/lib/libEGL.so.1"]);
    }
}
