//! The device platform model, compatible with BundleGen's platform templates.
//!
//! A platform is a template `<name>.json` (read unchanged: every template
//! BundleGen ships loads) plus, beside it, the library inventory
//! `<name>_libs.json`. Templates are found by **exact** file name in the
//! search paths (recursively), or given as a path; `qemuarm64` and
//! `qemux86-64` are built in. A platform may be split into several files,
//! merged in this order as RFC 7386 JSON Merge Patches (objects merge
//! recursively, arrays and scalars replace, `null` deletes):
//!
//! 1. the template;
//! 2. `<name>.d/*.json` beside it, in file-name order;
//! 3. overlay files given by the caller (`--platform-overlay`), in order;
//! 4. overlay values given by the caller (the operator configuration).
//!
//! Every file is checked on its own, so errors and warnings name the file
//! and the JSON key path; the keys BundleGen requires are checked on the
//! merged result. See `docs/platforms.md`.

pub mod appids;
pub mod init;
pub mod libs;
pub mod model;
pub(crate) mod parse;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::diag::{Diagnostics, Silent};
use crate::input::{self, InputKind, LoadError};
pub use init::{InitOptions, init};
pub use libs::{ExportSet, Exports, LibEntry, LibsInventory, symbol_hash};
pub use model::PlatformSpec;
pub use parse::merge_patch;

/// Environment variable holding extra search paths (colon-separated).
pub const SEARCHPATH_ENV: &str = "RDK_PLATFORM_SEARCHPATH";

/// Built-in platforms: device properties only, no library inventory.
const BUILTIN: &[(&str, &str)] = &[
    ("qemuarm64", include_str!("builtin/qemuarm64.json")),
    ("qemux86-64", include_str!("builtin/qemux86-64.json")),
];

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading, parsing or typing one file (see [`crate::input`]).
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path}: {key}: {message}")]
    BadValue {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "{path}: {key}: {value:?} is not {}\nhelp: device paths are used as written, never looked up on the build machine",
        model::ABS_PATH_FORM
    )]
    BadPath {
        path: PathBuf,
        key: String,
        value: String,
    },
    #[error("{path}: {key}: required key missing; expected {hint}")]
    MissingKey {
        path: PathBuf,
        key: String,
        hint: String,
    },
    #[error("platform {name:?} not found in {searched}\nhelp: available platforms: {}", available.join(", "))]
    NotFound {
        name: String,
        searched: String,
        available: Vec<String>,
    },
    #[error("platform {name:?} is ambiguous: {}\nhelp: pass the template's path instead of its name", candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<PathBuf>,
    },
    #[error("{path}: {message}")]
    Init { path: PathBuf, message: String },
    #[error("{path}: line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where to look for templates and what to merge on top.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub search_paths: Vec<PathBuf>,
    /// Overlay files merged after the template and its `.d` directory.
    pub overlays: Vec<PathBuf>,
    /// Overlay values merged last (label, JSON object), e.g. the operator file.
    pub overlay_values: Vec<(String, Value)>,
    /// Unknown keys are errors instead of warnings.
    pub strict: bool,
    /// Also read `<name>_libs.json` beside the template.
    pub load_libs: bool,
}

impl LoadOptions {
    /// Search paths given on the command line, then those of
    /// `RDK_PLATFORM_SEARCHPATH` (colon-separated).
    pub fn with_env_search_paths(mut self) -> Self {
        if let Some(v) = std::env::var_os(SEARCHPATH_ENV) {
            self.search_paths
                .extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
        self
    }
}

/// A loaded, merged and checked platform.
#[derive(Debug, Clone)]
pub struct Platform {
    /// The template's file stem (`rpi3_reference`), or the built-in name.
    pub name: String,
    pub spec: PlatformSpec,
    /// The merged JSON, unknown keys included, key order preserved.
    pub raw: Value,
    /// The files merged, in order (`builtin:qemuarm64` for a built-in).
    pub sources: Vec<PathBuf>,
    pub libs: Option<LibsInventory>,
    pub libs_path: Option<PathBuf>,
}

impl Platform {
    /// The architecture in OCI/Go spelling (`aarch64` in a template gives `arm64`).
    pub fn oci_arch(&self) -> Option<&'static str> {
        let arch = self.spec.arch.as_ref()?.arch.as_deref()?;
        Some(crate::elf::oci_arch(arch))
    }

    pub fn is_builtin(&self) -> bool {
        self.libs_path.is_none()
            && self
                .sources
                .first()
                .is_some_and(|p| p.to_string_lossy().starts_with("builtin:"))
    }
}

/// Where a template was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Builtin(&'static str),
}

/// One entry of [`list`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    pub name: String,
    /// The template path, or `builtin`.
    pub source: String,
}

/// Finds a template by exact name (or path).
pub fn locate(name: &str, search_paths: &[PathBuf]) -> Result<Location, PlatformError> {
    let as_path = Path::new(name);
    if name.contains('/') || name.ends_with(".json") {
        if as_path.is_file() {
            return Ok(Location::File(as_path.to_owned()));
        }
        if name.contains('/') {
            let source = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(PlatformError::Read {
                path: as_path.to_owned(),
                source,
            });
        }
    }
    let file_name = format!("{name}.json");
    for dir in search_paths {
        let mut hits = Vec::new();
        for t in templates_in(dir) {
            if t.file_name()
                .is_some_and(|f| f.to_string_lossy() == file_name)
            {
                hits.push(t);
            }
        }
        match hits.len() {
            0 => {}
            1 => return Ok(Location::File(hits.remove(0))),
            _ => {
                return Err(PlatformError::Ambiguous {
                    name: name.to_owned(),
                    candidates: hits,
                });
            }
        }
    }
    if let Some((n, _)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        return Ok(Location::Builtin(n));
    }
    let searched = if search_paths.is_empty() {
        format!(
            "the built-in platforms (no search path given; use --searchpath or {SEARCHPATH_ENV})"
        )
    } else {
        search_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut available: Vec<String> = list(search_paths).into_iter().map(|l| l.name).collect();
    available.dedup();
    Err(PlatformError::NotFound {
        name: name.to_owned(),
        searched,
        available,
    })
}

/// Every template in the search paths (sorted by name, then path) and the built-ins.
pub fn list(search_paths: &[PathBuf]) -> Vec<Listed> {
    let mut out: Vec<Listed> = Vec::new();
    for dir in search_paths {
        for t in templates_in(dir) {
            let name = t
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Listed {
                name,
                source: t.display().to_string(),
            });
        }
    }
    out.extend(BUILTIN.iter().map(|(n, _)| Listed {
        name: (*n).to_owned(),
        source: "builtin".into(),
    }));
    out.sort_by(|a, b| (&a.name, &a.source).cmp(&(&b.name, &b.source)));
    out
}

/// Template files under `dir`, recursively, sorted; `_libs.json` files and
/// `<name>.d` overlay directories are not templates.
fn templates_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.is_dir() {
            if !name.ends_with(".d") {
                out.extend(templates_in(&p));
            }
        } else if name.ends_with(".json") && !name.ends_with("_libs.json") {
            out.push(p);
        }
    }
    out
}

/// Finds and loads a platform by name or path, merging its overlays.
pub fn load(
    name: &str,
    opts: &LoadOptions,
    diag: &dyn Diagnostics,
) -> Result<Platform, PlatformError> {
    match locate(name, &opts.search_paths)? {
        Location::File(path) => load_file(&path, opts, diag),
        Location::Builtin(n) => {
            let text = BUILTIN
                .iter()
                .find(|(b, _)| *b == n)
                .map(|(_, t)| *t)
                .unwrap_or("{}");
            let label = PathBuf::from(format!("builtin:{n}"));
            let overlays = opts.overlays.clone();
            build(n.to_owned(), label, text.as_bytes(), overlays, opts, diag)
        }
    }
}

/// Loads the template at `path`, merging `<stem>.d/*.json` and the overlays.
pub fn load_file(
    path: &Path,
    opts: &LoadOptions,
    diag: &dyn Diagnostics,
) -> Result<Platform, PlatformError> {
    let text = input::read(InputKind::Platform, path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut overlays = dot_d_files(&path.with_file_name(format!("{stem}.d")))?;
    overlays.extend(opts.overlays.iter().cloned());
    let mut p = build(stem, path.to_owned(), &text, overlays, opts, diag)?;
    if opts.load_libs
        && let Some(libs_path) = libs::beside(path)
    {
        p.libs = Some(LibsInventory::load(&libs_path)?);
        p.libs_path = Some(libs_path);
    }
    Ok(p)
}

fn dot_d_files(dir: &Path) -> Result<Vec<PathBuf>, PlatformError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PlatformError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn build(
    name: String,
    base_path: PathBuf,
    text: &[u8],
    overlays: Vec<PathBuf>,
    opts: &LoadOptions,
    diag: &dyn Diagnostics,
) -> Result<Platform, PlatformError> {
    let mut merged = input::parse(&base_path, text)?;
    parse::check_fragment(&base_path, &merged, opts.strict, diag)?;
    let mut sources = vec![base_path.clone()];
    for o in overlays {
        let v = input::parse(&o, &input::read(InputKind::Platform, &o)?)?;
        parse::check_fragment(&o, &v, opts.strict, diag)?;
        merge_patch(&mut merged, &v);
        sources.push(o);
    }
    for (label, v) in &opts.overlay_values {
        let label = PathBuf::from(label);
        if !v.is_object() {
            return Err(LoadError::NotObject { path: label }.into());
        }
        parse::check_fragment(&label, v, opts.strict, diag)?;
        merge_patch(&mut merged, v);
        sources.push(label);
    }
    // Each part was checked: the merge of checked parts only fails on a
    // required key, which is reported against the template.
    let spec = parse::check_fragment(&base_path, &merged, false, &Silent)?;
    parse::check_required(&base_path, &spec)?;
    Ok(Platform {
        name,
        spec,
        raw: merged,
        sources,
        libs: None,
        libs_path: None,
    })
}

/// Checks one template file on its own (no overlays): syntax, types, sizes,
/// required keys, and unknown keys (warnings, or errors when `strict`).
pub fn validate_file(
    path: &Path,
    strict: bool,
    diag: &dyn Diagnostics,
) -> Result<PlatformSpec, PlatformError> {
    let v = input::parse(path, &input::read(InputKind::Platform, path)?)?;
    let spec = parse::check_fragment(path, &v, strict, diag)?;
    parse::check_required(path, &spec)?;
    Ok(spec)
}

/// The names of the built-in platforms.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}
