//! The library inventory `<name>_libs.json` in BundleGen's format.
//!
//! `libs[]` entries are `{name, apiversions, deps}`: the absolute in-root
//! path of a shared library (symlinks to libraries are listed under their
//! own path too), its ELF version definitions in file order, and its
//! `DT_NEEDED` entries resolved to in-root paths. Our extra keys, written
//! only when known: `package` and `version` (the Yocto package that ships
//! the library) and `unresolved` (needed names the loader would not find).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PlatformError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LibsInventory {
    pub libs: Vec<LibEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LibEntry {
    pub apiversions: Vec<String>,
    pub deps: Vec<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<String>,
}

impl LibsInventory {
    /// Reads an inventory file.
    pub fn load(path: &Path) -> Result<LibsInventory, PlatformError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlatformError::Read {
            path: path.to_owned(),
            source,
        })?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let inventory: LibsInventory =
            serde_path_to_error::deserialize(de).map_err(|e| PlatformError::Invalid {
                path: path.to_owned(),
                key: e.path().to_string(),
                source: e.into_inner(),
            })?;
        inventory.check_paths(path)?;
        Ok(inventory)
    }

    /// Every library and dependency is an absolute device path (see
    /// [`super::model::abs_path`]): it becomes a mount source and is matched
    /// against in-root paths, never looked up on the build machine.
    fn check_paths(&self, path: &Path) -> Result<(), PlatformError> {
        let bad = |key: String, value: &str| PlatformError::BadPath {
            path: path.to_owned(),
            key,
            value: value.to_owned(),
        };
        for (i, lib) in self.libs.iter().enumerate() {
            if !super::model::abs_path(&lib.name) {
                return Err(bad(format!("libs[{i}].name"), &lib.name));
            }
            if let Some((j, dep)) = lib
                .deps
                .iter()
                .enumerate()
                .find(|(_, d)| !super::model::abs_path(d))
            {
                return Err(bad(format!("libs[{i}].deps[{j}]"), dep));
            }
        }
        Ok(())
    }

    /// The entry for an in-root path.
    pub fn get(&self, name: &str) -> Option<&LibEntry> {
        self.libs
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.libs.get(i))
            .or_else(|| self.libs.iter().find(|l| l.name == name))
    }

    /// Serializes as BundleGen lays these files out (4-space indent,
    /// keys in alphabetical order as its generator writes them).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serializing plain data to a Vec cannot fail.
        let _ = self.serialize(&mut ser);
        out.push(b'\n');
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `<dir>/<stem>_libs.json` beside a template file, if it exists.
pub fn beside(template: &Path) -> Option<PathBuf> {
    let stem = template.file_stem()?.to_string_lossy();
    let p = template.with_file_name(format!("{stem}_libs.json"));
    p.is_file().then_some(p)
}
