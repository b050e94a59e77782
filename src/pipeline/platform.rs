//! `platform init` and `platform validate`: a device's platform written
//! from its rootfs; template and inventory files checked.

use std::path::{Path, PathBuf};

use crate::diag::Diagnostics;
use crate::error::{Error, RequestError};
use crate::platform::{self, InitOptions, LibsInventory, Location, PlatformError};
use crate::staging::StagedFile;

/// What `platform init` is asked for.
pub struct InitRequest {
    pub rootfs: PathBuf,
    pub name: String,
    pub manifest: Option<PathBuf>,
    pub pkgdata: Option<PathBuf>,
    /// A template name (found in `search_paths`, then
    /// `RDK_PLATFORM_SEARCHPATH`) whose values are kept.
    pub from: Option<String>,
    /// `-s` directories; each must exist.
    pub search_paths: Vec<PathBuf>,
    /// Where `<name>.json` and `<name>_libs.json` are written.
    pub output: PathBuf,
}

/// What `platform init` wrote.
pub struct Initialised {
    pub template: PathBuf,
    pub libs: PathBuf,
    pub libraries: usize,
}

/// Writes `<name>.json` and `<name>_libs.json` for the rootfs, each
/// atomically.
pub fn init(req: &InitRequest, diag: &dyn Diagnostics) -> Result<Initialised, Error> {
    super::check_search_paths(&req.search_paths)?;
    let search = platform::LoadOptions { search_paths: req.search_paths.clone(), ..Default::default() }.with_env_search_paths();
    let from = match &req.from {
        None => None,
        Some(name) => match platform::locate(name, &search.search_paths)? {
            Location::File(p) => Some(p),
            Location::Builtin(n) => return Err(RequestError::BuiltinBase { name: n.to_string() }.into()),
        },
    };
    let opts = InitOptions {
        rootfs: req.rootfs.clone(),
        name: req.name.clone(),
        manifest: req.manifest.clone(),
        pkgdata: req.pkgdata.clone(),
        from,
    };
    let (template, libs) = platform::init(&opts, diag)?;
    let template_path = req.output.join(format!("{}.json", req.name));
    let libs_path = req.output.join(format!("{}_libs.json", req.name));
    std::fs::create_dir_all(&req.output).map_err(|source| Error::Output { path: req.output.clone(), source })?;
    StagedFile::write(&template_path, pretty(&template).as_bytes())?;
    StagedFile::write(&libs_path, libs.to_json().as_bytes())?;
    Ok(Initialised { template: template_path, libs: libs_path, libraries: libs.libs.len() })
}

/// Checks one platform file: a template, or an inventory (`*_libs.json`).
pub fn validate_file(path: &Path, strict: bool, diag: &dyn Diagnostics) -> Result<(), PlatformError> {
    let is_libs = path.file_name().is_some_and(|n| n.to_string_lossy().ends_with("_libs.json"));
    if is_libs {
        LibsInventory::load_checked(path).map(|_| ())
    } else {
        platform::validate_file(path, strict, diag).map(|_| ())
    }
}

/// JSON with BundleGen's 4-space indentation and a final newline.
pub fn pretty<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing plain data into a Vec cannot fail.
    let _ = serde::Serialize::serialize(value, &mut ser);
    out.push(b'\n');
    String::from_utf8_lossy(&out).into_owned()
}
