//! `bundlegen deps`: `ldd` for any architecture, without running anything.
//! The target is a rootfs directory or an image, flattened (rootless) into
//! a temporary directory first; then either one file's dependency closure,
//! or every ELF file's `DT_NEEDED` entries resolved by the loader model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diag::Diagnostics;
use crate::elf;
use crate::error::Error;
use crate::image::{self, Selector};
use crate::layers::{self, FlattenOptions};
use crate::ldso::{Closure, LdsoError, Loader};

/// What `deps` found.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Deps {
    /// One file's closure (a path was given).
    One(Closure),
    /// Every ELF file with dependencies (no path given).
    All(Survey),
}

/// Every ELF file of a rootfs with dependencies, and the names the loader
/// model does not find.
#[derive(Debug, Serialize)]
pub struct Survey {
    /// In-root path → its architecture and `DT_NEEDED` entries.
    pub files: BTreeMap<String, Needs>,
    /// `PATH: NAME => not found`, in file order.
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Needs {
    pub arch: &'static str,
    pub needed: Vec<Needed>,
}

#[derive(Debug, Serialize)]
pub struct Needed {
    pub name: String,
    /// Where the loader finds it (the path it opens), if it does.
    pub path: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error(transparent)]
    Open(#[from] Error),
    #[error("cannot create a temporary directory to flatten the image into")]
    Temp(#[source] std::io::Error),
    #[error("cannot scan {}", path.display())]
    Scan {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file asked about cannot be analysed (missing, not ELF).
    #[error(transparent)]
    Object(LdsoError),
    /// A file the scan found could not be analysed.
    #[error(transparent)]
    Survey(LdsoError),
}

/// `target` (a rootfs directory, or an image with `arch` picked from a
/// multi-platform one); `path`, an in-root file to follow, or every file.
pub fn deps(target: &str, arch: Option<&str>, path: Option<&str>, diag: &dyn Diagnostics) -> Result<Deps, DepsError> {
    let given = Path::new(target);
    let is_rootfs = given.is_dir() && !given.join("oci-layout").exists() && !target.starts_with("oci:");
    let _unpacked;
    let root = if is_rootfs {
        given.to_owned()
    } else {
        let selector = Selector { arch: arch.map(str::to_owned), ..Selector::default() };
        let (source, resolved) = image::open_and_resolve(target, selector, None).map_err(Error::from)?;
        let temp = tempfile::Builder::new().prefix("bundlegen-deps-").tempdir().map_err(DepsError::Temp)?;
        let options = FlattenOptions { rootless: true, ..Default::default() };
        layers::flatten(&source, &resolved, temp.path(), &options, diag).map_err(Error::from)?;
        let root = temp.path().to_owned();
        _unpacked = temp;
        root
    };
    match path {
        Some(path) => Loader::new(&root, diag).closure(path).map(Deps::One).map_err(DepsError::Object),
        None => survey(&root, diag).map(Deps::All),
    }
}

/// Every ELF file of `root` with dependencies, resolved by the loader model.
pub fn survey(root: &Path, diag: &dyn Diagnostics) -> Result<Survey, DepsError> {
    let scan = elf::scan(root, diag).map_err(|source| DepsError::Scan { path: root.to_owned(), source })?;
    let mut loader = Loader::new(root, diag).with_scan(&scan);
    let mut files = BTreeMap::new();
    let mut missing = Vec::new();
    for (path, info) in &scan.files {
        if info.needed.is_empty() {
            continue;
        }
        let resolved = loader.resolve_needed(path).map_err(DepsError::Survey)?;
        let needed = resolved
            .into_iter()
            .map(|(name, found)| {
                if found.is_none() {
                    missing.push(format!("{path}: {name} => not found"));
                }
                Needed { name, path: found.map(|f| f.path) }
            })
            .collect();
        files.insert(path.clone(), Needs { arch: info.arch_name(), needed });
    }
    Ok(Survey { files, missing })
}

impl DepsError {
    /// The exit code's category: a target that cannot be read or a file
    /// that cannot be analysed is bad input.
    pub fn category(&self) -> crate::error::Category {
        use crate::error::Category;
        match self {
            DepsError::Open(e) => e.category(),
            DepsError::Scan { .. } | DepsError::Object(_) => Category::BadInput,
            DepsError::Temp(_) | DepsError::Survey(_) => Category::Failed,
        }
    }
}
