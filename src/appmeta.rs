//! BundleGen app metadata: what an app needs from the device.
//!
//! The file is BundleGen's `appmetadata.json` (schema
//! `appMetadataSchema.json`): `id type graphics network storage resources`
//! are required, the rest optional. It is read key by key into typed
//! fields, like platform templates: a key we do not know is a warning
//! naming the file and the key path (an error with `strict`), a value of the
//! wrong type or a bad size is an error naming the file, the key and the
//! allowed form. See `docs/formats.md`.

mod network;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diag::Diagnostics;
use crate::input::{self, InputKind, LoadError};
use crate::platform::model::{ABS_PATH_FORM, Mount, Resolution, abs_path};
use crate::size::Size;
pub use network::{InterContainer, MulticastForwarding, Network, PortForwarding, PortRule};

/// The longest app id: it becomes the container hostname (`HOST_NAME_MAX`).
pub const MAX_ID_LEN: usize = 64;

/// The form an app id must have, quoted in errors.
pub const ID_FORM: &str = "1 to 64 ASCII letters, digits, '.', '_', '-' or '+', \
     starting with a letter or digit (e.g. \"com.example.app\")";

#[derive(Debug, thiserror::Error)]
pub enum AppMetaError {
    /// Reading, parsing or typing the file (see [`crate::input`]).
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path}: {key}: required key missing; expected {hint}")]
    MissingKey {
        path: PathBuf,
        key: String,
        hint: &'static str,
    },
    #[error("{path}: {key}: invalid app id {id:?}: {reason}; expected {ID_FORM}")]
    BadId {
        path: PathBuf,
        key: &'static str,
        id: String,
        reason: &'static str,
    },
    #[error("{path}: {key}: {message}")]
    BadValue {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// A validated app metadata file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppMetadata {
    /// Where it was read from (for messages): a path, or the name given to
    /// [`AppMetadata::parse`].
    #[serde(skip)]
    pub source: PathBuf,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    pub graphics: bool,
    pub network: Network,
    pub storage: Storage,
    pub resources: Resources,
    pub features: Vec<String>,
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thunder: Option<Thunder>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<Enable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minidump: Option<Enable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oomcrash: Option<Enable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdk: Option<AppRdk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<AppDisplay>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Storage {
    #[serde(default)]
    pub persistent: Vec<StorageEntry>,
    #[serde(default)]
    pub temp: Vec<StorageEntry>,
}

/// One persistent (loopback image) or temporary (tmpfs) storage area.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct StorageEntry {
    pub size: Size,
    /// Absolute path inside the container.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Resources {
    pub ram: Size,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Size>,
}

/// The Thunder (WPEFramework) plugin settings, passed to Dobby as they are.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Thunder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_limit: Option<u32>,
}

/// `ipc`, `minidump`, `oomcrash`: `{"enable": true}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Enable {
    #[serde(default)]
    pub enable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Capabilities {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

/// The file as written: every key optional, so that a missing one is
/// reported by name instead of as a serde error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    version: Option<String>,
    description: Option<String>,
    priority: Option<String>,
    graphics: Option<bool>,
    network: Option<Network>,
    storage: Option<Storage>,
    resources: Option<Resources>,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    mounts: Vec<Mount>,
    thunder: Option<Thunder>,
    ipc: Option<Enable>,
    minidump: Option<Enable>,
    oomcrash: Option<Enable>,
    capabilities: Option<Capabilities>,
    rdk: Option<AppRdk>,
    display: Option<AppDisplay>,
}

/// Our extension: the RDK version the app needs (checked by `compat`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRdk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
}

/// Our extension: the display mode the app needs (`WxH[@Hz]`), checked
/// against the platform's `display.resolutions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AppDisplay {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

impl AppMetadata {
    /// Reads and checks the app metadata file at `path`.
    pub fn load(path: &Path, strict: bool, diag: &dyn Diagnostics) -> Result<Self, AppMetaError> {
        let bytes = input::read(InputKind::AppMetadata, path)?;
        Self::parse(&bytes, &path.display().to_string(), strict, diag)
    }

    /// Checks app metadata held in memory (e.g. `/appmetadata.json` read
    /// from the image); `source_name` names it in messages.
    pub fn parse(
        bytes: &[u8],
        source_name: &str,
        strict: bool,
        diag: &dyn Diagnostics,
    ) -> Result<Self, AppMetaError> {
        let path = PathBuf::from(source_name);
        let value = input::parse(&path, bytes)?;
        network::warn_string_booleans(&path, &value, diag);
        let raw: Raw = input::typed(InputKind::AppMetadata, &path, &value, strict, diag)?;
        Self::from_raw(path, raw)
    }

    fn from_raw(path: PathBuf, raw: Raw) -> Result<Self, AppMetaError> {
        let missing = |key: &str, hint: &'static str| AppMetaError::MissingKey {
            path: path.clone(),
            key: key.to_owned(),
            hint,
        };
        let id = raw
            .id
            .ok_or_else(|| missing("id", "the app id, e.g. \"com.example.app\""))?;
        check_id(&id).map_err(|reason| AppMetaError::BadId {
            path: path.clone(),
            key: "id",
            id: id.clone(),
            reason,
        })?;
        let meta = AppMetadata {
            id,
            kind: raw.kind.ok_or_else(|| {
                missing(
                    "type",
                    "the app type, e.g. \"application/vnd.rdk-app.dac.native\"",
                )
            })?,
            version: raw.version,
            description: raw.description,
            priority: raw.priority,
            graphics: raw
                .graphics
                .ok_or_else(|| missing("graphics", "true or false"))?,
            network: raw.network.ok_or_else(|| {
                missing(
                    "network",
                    "an object like {\"type\": \"open\"} (nat, open or private)",
                )
            })?,
            storage: raw.storage.ok_or_else(|| {
                missing(
                    "storage",
                    "an object with optional persistent and temp lists (may be {})",
                )
            })?,
            resources: raw
                .resources
                .ok_or_else(|| missing("resources", "an object like {\"ram\": \"128M\"}"))?,
            features: raw.features,
            mounts: raw.mounts,
            thunder: raw.thunder,
            ipc: raw.ipc,
            minidump: raw.minidump,
            oomcrash: raw.oomcrash,
            capabilities: raw.capabilities,
            rdk: raw.rdk,
            display: raw.display,
            source: path,
        };
        meta.check_paths()?;
        Ok(meta)
    }

    /// Container paths must be absolute: they become mount destinations.
    fn check_paths(&self) -> Result<(), AppMetaError> {
        let bad = |key: String, p: &str| AppMetaError::BadValue {
            path: self.source.clone(),
            key,
            message: format!(
                "{p:?} is not an absolute container path; write it as \"/home/private\""
            ),
        };
        let lists = [
            ("persistent", &self.storage.persistent),
            ("temp", &self.storage.temp),
        ];
        for (which, list) in lists {
            for (i, e) in list.iter().enumerate() {
                if !abs_path(&e.path) {
                    return Err(bad(format!("storage.{which}[{i}].path"), &e.path));
                }
            }
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if let Some((field, value)) = m.bad_path() {
                return Err(AppMetaError::BadValue {
                    path: self.source.clone(),
                    key: format!("mounts[{i}].{field}"),
                    message: format!("{value:?} is not {ABS_PATH_FORM}"),
                });
            }
        }
        Ok(())
    }

    /// The same metadata with its id replaced (`-x/--appid`).
    pub fn with_id(mut self, id: &str) -> Result<Self, AppMetaError> {
        check_appid(id)?;
        self.id = id.to_owned();
        Ok(self)
    }
}

/// Checks the id of `-x/--appid` ([`check_id`]), as an error naming it.
pub fn check_appid(id: &str) -> Result<(), AppMetaError> {
    check_id(id).map_err(|reason| AppMetaError::BadId {
        path: PathBuf::from("--appid"),
        key: "id",
        id: id.to_owned(),
        reason,
    })
}

/// Checks an app id: it becomes a path component (storage, logs), a
/// hostname and part of file names, so only a safe subset is allowed.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return Err("it is longer than 64 characters");
    }
    if id.contains('/') {
        return Err("it contains '/'");
    }
    if id.chars().any(char::is_whitespace) {
        return Err("it contains whitespace");
    }
    if id == "." || id == ".." {
        return Err("it is a relative path component");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    {
        return Err("it contains a character outside letters, digits, '.', '_', '-' and '+'");
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it does not start with a letter or digit");
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Collected;

    const HELLO: &str = r#"{"id": "com.docker.helloworld", "type": "application/vnd.rdk-app.dac.native",
        "graphics": false, "network": {"type": "open"},
        "storage": {"persistent": [{"size": "60M", "path": "/home/private"}],
                    "temp": [{"size": "10M", "path": "/var/volatile"}]},
        "resources": {"ram": "5M"}, "features": [], "mounts": []}"#;

    fn parse(text: &str, strict: bool) -> (Result<AppMetadata, AppMetaError>, Vec<String>) {
        let diag = Collected::default();
        let r = AppMetadata::parse(text.as_bytes(), "app.json", strict, &diag);
        (r, diag.warnings().iter().map(ToString::to_string).collect())
    }

    #[test]
    fn sample_parses_with_sizes() {
        let (m, w) = parse(HELLO, true);
        let m = m.expect("valid");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(m.id, "com.docker.helloworld");
        assert_eq!(m.resources.ram, Size(5 << 20));
        assert_eq!(m.storage.persistent[0].size, Size(60 << 20));
        assert_eq!(m.network.kind, "open");
    }

    #[test]
    fn unknown_keys_warn_or_fail() {
        let text = HELLO.replace("\"features\"", "\"featurs\"");
        let (m, w) = parse(&text, false);
        assert!(m.is_ok());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("app.json: featurs: unknown key"), "{w:?}");
        let (m, _) = parse(&text, true);
        let e = m.expect_err("strict");
        assert_eq!(
            e.to_string(),
            "app.json: featurs: unknown key (remove it, or check its spelling against docs/formats.md)"
        );
    }

    #[test]
    fn bad_size_names_key_and_form() {
        let text = HELLO.replace("\"10M\"", "\"10ZB\"");
        let e = parse(&text, false).0.expect_err("bad size");
        assert_eq!(
            e.to_string(),
            "app.json: storage.temp[0].size: invalid value"
        );
        let cause = std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(cause.contains("K, M, G or T"), "{cause}");
    }

    #[test]
    fn missing_required_key() {
        let text = HELLO.replace("\"resources\": {\"ram\": \"5M\"},", "");
        let e = parse(&text, false).0.expect_err("missing");
        assert!(
            e.to_string()
                .starts_with("app.json: resources: required key missing"),
            "{e}"
        );
    }

    #[test]
    fn ids_are_checked() {
        for bad in [
            "",
            "a/b",
            "..",
            "a b",
            ".hidden",
            &"x".repeat(65),
            "tab\tid",
            "é",
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        for good in ["com.rdk.flutter", "wayland-egl-test", "A1", "app_2+x"] {
            assert_eq!(check_id(good), Ok(()), "{good:?}");
        }
        let m = parse(HELLO, false).0.expect("valid");
        let e = m.clone().with_id("../evil").expect_err("bad override");
        assert!(
            e.to_string().starts_with("--appid: id: invalid app id"),
            "{e}"
        );
        assert_eq!(
            m.with_id("com.other").map(|m| m.id).ok().as_deref(),
            Some("com.other")
        );
    }

    #[test]
    fn relative_container_paths_are_refused() {
        let text = HELLO.replace("\"/var/volatile\"", "\"var/volatile\"");
        let e = parse(&text, false).0.expect_err("relative");
        assert!(
            e.to_string()
                .starts_with("app.json: storage.temp[0].path: "),
            "{e}"
        );
    }
}
