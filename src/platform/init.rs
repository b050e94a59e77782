//! `platform init`: a platform template and library inventory from a device
//! rootfs.
//!
//! The architecture comes from the rootfs's own ELF files: the dynamic
//! loader `/bin/sh` asks for (or `/bin/sh` itself when static, or any
//! `ld-linux*`/`ld-musl*` in the library directories). Other fields come
//! from `--from` (an existing template) or defaults. The inventory lists
//! every shared library (files and symlinks to them) under the loader's
//! directories, recursively, for the rootfs's machine, with version
//! definitions, resolved `DT_NEEDED` paths and exported symbols; with Yocto
//! package data each entry also names its package and version.
//!
//! Only the loader's directories and the template's libraries are read,
//! never the whole rootfs ([`scope`]): `--rootfs /` on a development machine
//! takes seconds.

mod scope;

pub use scope::READ_STEP;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::libs::{LibEntry, LibsInventory};
use super::{PlatformError, parse};
use crate::diag::{Diagnostics, Warning};
use crate::elf::{self, ElfInfo, Kind};
use crate::ldso::Loader;
use crate::rootfs;

/// Inputs of [`init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub rootfs: PathBuf,
    /// `platformName` of the new template.
    pub name: String,
    /// Yocto image manifest (`package arch version` per line).
    pub manifest: Option<PathBuf>,
    /// Yocto `PKGDATA_DIR` (`shlibs2/*.list`, `runtime/*`).
    pub pkgdata: Option<PathBuf>,
    /// A template whose fields (other than name, os, arch) are kept.
    pub from: Option<PathBuf>,
}

/// Builds the template JSON and the inventory for a rootfs.
pub fn init(
    opts: &InitOptions,
    diag: &dyn Diagnostics,
) -> Result<(Value, LibsInventory), PlatformError> {
    let root = &opts.rootfs;
    check_name(&opts.name)?;
    if !root.is_dir() {
        let source = std::io::Error::from(std::io::ErrorKind::NotFound);
        return Err(PlatformError::Read {
            path: root.clone(),
            source,
        });
    }
    let once = scope::Once::new(diag);
    let diag: &dyn Diagnostics = &once;
    let mut loader = Loader::new(root, diag);
    let (ref_path, reference) =
        reference_object(&mut loader, root, diag).ok_or_else(|| PlatformError::Init {
            path: root.clone(),
            message:
                "cannot tell the architecture: no /bin/sh, dynamic loader or shared library found; \
                  pass the rootfs of the device image"
                    .into(),
        })?;

    let platform = template(opts, root, &reference, &ref_path, diag)?;
    let dirs = scope::loader_dirs(&loader, &reference);
    let scan =
        scope::read(root, &dirs, &scope::template_files(&platform), diag).map_err(|source| {
            PlatformError::Read {
                path: root.clone(),
                source,
            }
        })?;
    let mut loader = loader.with_scan(&scan);
    let mut libs = inventory(&mut loader, &scan, &reference);
    record_exports(root, &mut loader, &mut libs, diag);
    if opts.manifest.is_some() || opts.pkgdata.is_some() {
        let pkgs = Packages::load(opts.manifest.as_deref(), opts.pkgdata.as_deref())?;
        if opts.pkgdata.is_none() {
            diag.warning(Warning::new(
                "--manifest",
                "without --pkgdata, files cannot be attributed to packages; pass PKGDATA_DIR too",
            ));
        }
        for lib in &mut libs.libs {
            let soname = loader.info(&lib.name).and_then(|(_, i)| i.soname.clone());
            if let Some((pkg, ver)) = pkgs.lookup(&lib.name, soname.as_deref()) {
                lib.package = Some(pkg);
                lib.version = ver;
            }
        }
    }
    Ok((platform, libs))
}

/// The ELF file that tells the rootfs's architecture.
fn reference_object(
    loader: &mut Loader,
    root: &Path,
    diag: &dyn Diagnostics,
) -> Option<(String, Arc<ElfInfo>)> {
    for sh in ["/bin/sh", "/usr/bin/sh", "/sbin/init", "/bin/busybox"] {
        if let Some((real, info)) = loader.info(sh) {
            if let Some(interp) = &info.interpreter
                && let Some(found) = loader.info(interp)
            {
                return Some(found);
            }
            return Some((real, info));
        }
    }
    let scan = scope::loader_candidates(root, diag).ok()?;
    scan.files
        .iter()
        .find(|(p, i)| {
            let file = p.rsplit('/').next().unwrap_or("");
            i.kind == Kind::SharedLib
                && (file.starts_with("ld-linux") || file.starts_with("ld-musl"))
        })
        .map(|(p, i)| (p.clone(), Arc::new(i.clone())))
}

fn template(
    opts: &InitOptions,
    root: &Path,
    reference: &ElfInfo,
    ref_path: &str,
    diag: &dyn Diagnostics,
) -> Result<Value, PlatformError> {
    let arch = reference.oci_arch();
    let variant = match reference.arch_name() {
        "aarch64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    };
    let mut platform = match &opts.from {
        Some(from) => {
            let bytes = crate::input::read(crate::input::InputKind::Platform, from)?;
            let mut v = crate::input::parse(from, &bytes)?;
            parse::check_fragment(from, &v, false, diag)?;
            drop_missing_libraries(&mut v, from, root, diag);
            v
        }
        None => default_template(root),
    };
    let mut arch_obj = json!({ "arch": arch });
    if let Some(from_arch) = platform.pointer("/arch/arch").and_then(Value::as_str) {
        let from_variant = platform.pointer("/arch/variant").and_then(Value::as_str);
        if elf::oci_arch(from_arch) != arch {
            diag.warning(Warning::new(
                ref_path,
                format!(
                    "the rootfs is {arch} ({}), --from said {from_arch:?}: using {arch}",
                    reference.arch_name()
                ),
            ));
        } else if let Some(v) = from_variant {
            arch_obj["variant"] = json!(v);
        }
    }
    if arch_obj.get("variant").is_none()
        && let Some(v) = variant
    {
        arch_obj["variant"] = json!(v);
    }
    parse::merge_patch(
        &mut platform,
        &json!({ "platformName": opts.name, "os": "linux", "arch": arch_obj }),
    );
    Ok(platform)
}

/// The new platform's name becomes file names (`NAME.json`,
/// `NAME_libs.json`) in the output directory: one plain file name.
fn check_name(name: &str) -> Result<(), PlatformError> {
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']);
    if bad {
        return Err(PlatformError::Init {
            path: PathBuf::from("--name"),
            message: format!(
                "{name:?} is not a platform name: it becomes the file names NAME.json and NAME_libs.json in the output directory, so it cannot be empty, `.`, `..` or contain `/`\nhelp: choose the directory with -o"
            ),
        });
    }
    Ok(())
}

/// Device libraries that `--from`'s template bind-mounts (`gpu.gfxLibs`,
/// `dobby.pluginDependencies`, and `.so` sources of `mounts` and
/// `gpu.extraMounts`) and that the new rootfs lacks are dropped with a
/// warning: a bundle would otherwise bind-mount files the device does not
/// have. Other mount sources (sockets, runtime directories) are kept.
fn drop_missing_libraries(platform: &mut Value, from: &Path, root: &Path, diag: &dyn Diagnostics) {
    let missing = |path: Option<&str>| path.is_some_and(|p| p.starts_with('/') && rootfs::resolve(root, p).is_err());
    let is_lib = |path: Option<&str>| path.is_some_and(|p| p.rsplit('/').next().unwrap_or("").contains(".so"));
    let rules: [(&str, &str, bool); 4] = [
        ("/gpu/gfxLibs", "/src", false),
        ("/dobby/pluginDependencies", "", false),
        ("/mounts", "/source", true),
        ("/gpu/extraMounts", "/source", true),
    ];
    for (list, field, libs_only) in rules {
        let Some(items) = platform.pointer_mut(list).and_then(Value::as_array_mut) else { continue };
        let mut dropped = Vec::new();
        items.retain(|item| {
            let path = if field.is_empty() { item.as_str() } else { item.pointer(field).and_then(Value::as_str) };
            let drop = missing(path) && (!libs_only || is_lib(path));
            if drop {
                dropped.push(path.unwrap_or_default().to_owned());
            }
            !drop
        });
        if !dropped.is_empty() {
            let key = list.trim_start_matches('/').replace('/', ".");
            diag.warning(Warning::new(
                from.display().to_string(),
                format!("{key}: dropped {}: not in the rootfs {}", dropped.join(", "), root.display()),
            ));
        }
    }
}

fn default_template(root: &Path) -> Value {
    let version = os_release_version(root).unwrap_or_else(|| "unknown".into());
    json!({
        "platformName": "",
        "os": "linux",
        "arch": {},
        "rdk": { "version": version, "supportedFeatures": [] },
        "hardware": { "graphics": false },
        "mounts": [],
        "network": { "options": ["nat", "open", "private"] },
        "envvar": [],
        "resourceLimits": [ { "type": "RLIMIT_NPROC", "hard": 300, "soft": 300 } ],
        "disableUserNamespacing": true,
        "dobby": { "pluginDir": "/usr/lib/plugins/dobby", "pluginDependencies": [],
                   "dobbyInitPath": "/usr/libexec/DobbyInit" },
        "logging": { "mode": "file", "logDir": "/var/log" }
    })
}

/// `/etc/os-release` is a few lines; anything larger is not one.
const MAX_OS_RELEASE: u64 = 1 << 20;

fn os_release_version(root: &Path) -> Option<String> {
    let bytes = rootfs::Walker::new(root).ok()?.read_file(b"/etc/os-release", MAX_OS_RELEASE).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim_matches('"').to_owned())
}

/// The inventory: the shared libraries among the files `scan` read (the
/// loader's directories and the template's libraries, see [`scope`]).
fn inventory(loader: &mut Loader, scan: &elf::ElfScan, reference: &ElfInfo) -> LibsInventory {
    let root = loader.root().to_path_buf();
    let candidates: BTreeSet<&String> = scan.files.keys().chain(scan.symlinks.keys()).collect();
    let mut libs: BTreeMap<String, LibEntry> = BTreeMap::new();
    for path in candidates {
        let file = path.rsplit('/').next().unwrap_or("");
        if !file.contains(".so") {
            continue;
        }
        let Some((_, info)) = loader.info(path) else {
            continue;
        };
        if info.kind != Kind::SharedLib || !reference.compatible_with(&info) {
            continue;
        }
        let mut deps = Vec::new();
        let mut unresolved = Vec::new();
        for need in &info.needed {
            match loader.find(need, path, &info, &[]) {
                Some(found) => deps.push(rootfs::canonical(&root, &found.path)),
                None => unresolved.push(need.clone()),
            }
        }
        let name = rootfs::canonical(&root, path);
        libs.insert(
            name.clone(),
            LibEntry {
                apiversions: info.version_defs.clone(),
                deps,
                name,
                package: None,
                version: None,
                unresolved,
                exports: None,
            },
        );
    }
    LibsInventory {
        libs: libs.into_values().collect(),
    }
}

/// Adds the exported symbols (`exports`, see [`super::libs::ExportSet`])
/// to the entries a library is looked up by: those named like its soname
/// (`libz.so.1`, usually a symlink), or every entry of a library without
/// one. Each file is read once, in parallel. A file whose symbol table
/// cannot be read gets none and a warning: library matching then keeps the
/// image's copy of unversioned libraries.
fn record_exports(
    root: &Path,
    loader: &mut Loader,
    libs: &mut LibsInventory,
    diag: &dyn Diagnostics,
) {
    use rayon::prelude::*;
    let real: Vec<Option<String>> = libs
        .libs
        .iter()
        .map(|l| {
            let (real, info) = loader.info(&l.name)?;
            let file = l.name.rsplit('/').next().unwrap_or("");
            info.soname
                .as_deref()
                .is_none_or(|so| so == file)
                .then_some(real)
        })
        .collect();
    let files: BTreeSet<&String> = real.iter().flatten().collect();
    let sets: BTreeMap<&String, Option<super::libs::ExportSet>> = files
        .into_par_iter()
        .map(|f| {
            let full = root.join(f.trim_start_matches('/'));
            let set = match elf::read_symbols(&full) {
                Ok(Some(syms)) => Some(super::libs::ExportSet::from_names(
                    syms.exports.iter().map(String::as_str),
                )),
                Ok(None) => None,
                Err(e) => {
                    diag.warning(Warning::new(
                        f.as_str(),
                        format!("exports not recorded: {e}"),
                    ));
                    None
                }
            };
            (f, set)
        })
        .collect();
    for (lib, real) in libs.libs.iter_mut().zip(&real) {
        lib.exports = real.as_ref().and_then(|r| sets.get(r).cloned().flatten()).map(Into::into);
    }
}

/// Package facts from a Yocto build.
#[derive(Default)]
struct Packages {
    /// package → version (image manifest)
    manifest: HashMap<String, String>,
    /// (soname, libdir) → (package, version) from `shlibs2/*.list`
    shlibs: HashMap<(String, String), (String, String)>,
    /// in-root file path → package, from `runtime/<pkg>` FILES_INFO
    files: HashMap<String, String>,
    /// package → version from `runtime/<pkg>` PKGV
    runtime_versions: HashMap<String, String>,
}

impl Packages {
    fn load(manifest: Option<&Path>, pkgdata: Option<&Path>) -> Result<Packages, PlatformError> {
        let mut p = Packages::default();
        if let Some(m) = manifest {
            let text = std::fs::read_to_string(m).map_err(|source| PlatformError::Read {
                path: m.to_owned(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let f: Vec<&str> = line.split_whitespace().collect();
                match f.as_slice() {
                    [] => {}
                    [pkg, _arch, ver] => {
                        p.manifest.insert((*pkg).to_owned(), (*ver).to_owned());
                    }
                    _ => {
                        return Err(PlatformError::Line {
                            path: m.to_owned(),
                            line: i + 1,
                            message: format!("expected \"package arch version\", got {line:?}"),
                        });
                    }
                }
            }
        }
        if let Some(dir) = pkgdata {
            p.load_shlibs(&dir.join("shlibs2"))?;
            p.load_runtime(&dir.join("runtime"))?;
        }
        Ok(p)
    }

    fn load_shlibs(&mut self, dir: &Path) -> Result<(), PlatformError> {
        for (pkg, path) in sorted_files(dir, ".list")? {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| PlatformError::Read { path, source })?;
            for line in text.lines() {
                let mut f = line.splitn(3, ':');
                if let (Some(soname), Some(libdir), Some(ver)) = (f.next(), f.next(), f.next()) {
                    let key = (soname.to_owned(), libdir.trim_end_matches('/').to_owned());
                    self.shlibs.insert(key, (pkg.clone(), ver.to_owned()));
                }
            }
        }
        Ok(())
    }

    fn load_runtime(&mut self, dir: &Path) -> Result<(), PlatformError> {
        for (pkg, path) in sorted_files(dir, "")? {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines() {
                // `FILES_INFO:<pkg>: {json}` (older releases: `FILES_INFO_<pkg>:`).
                let Some((key, value)) = line.split_once(": ") else {
                    continue;
                };
                if key.starts_with("FILES_INFO") {
                    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(value) {
                        for file in map.keys() {
                            self.files.insert(file.clone(), pkg.clone());
                        }
                    }
                } else if key == format!("PKGV:{pkg}") || key == format!("PKGV_{pkg}") {
                    self.runtime_versions
                        .insert(pkg.clone(), value.trim().to_owned());
                }
            }
        }
        Ok(())
    }

    fn lookup(&self, path: &str, soname: Option<&str>) -> Option<(String, Option<String>)> {
        let version = |pkg: &str, fallback: Option<&String>| {
            self.manifest
                .get(pkg)
                .or(fallback)
                .or_else(|| self.runtime_versions.get(pkg))
                .cloned()
        };
        if let Some(pkg) = self.files.get(path) {
            return Some((pkg.clone(), version(pkg, None)));
        }
        let (dir, file) = path.rsplit_once('/')?;
        for name in [Some(file), soname].into_iter().flatten() {
            if let Some((pkg, ver)) = self.shlibs.get(&(name.to_owned(), dir.to_owned())) {
                return Some((pkg.clone(), version(pkg, Some(ver))));
            }
        }
        None
    }
}

/// `(stem, path)` of the files in `dir` ending with `suffix`, sorted; a
/// missing directory is empty.
fn sorted_files(dir: &Path, suffix: &str) -> Result<Vec<(String, PathBuf)>, PlatformError> {
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
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(suffix)?.to_owned();
            Some((stem, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}
