//! The operator configuration: policy applied on top of every platform.
//!
//! A JSON file owned by whoever builds bundles for a fleet (not by the app
//! or the device): environment variables every container gets, extra
//! mounts, capabilities never granted, resource limits, extra Dobby
//! rdkPlugins, and optionally a platform overlay. Its keys:
//!
//! ```json
//! {
//!   "env": ["TZ=UTC"],
//!   "mounts": [{"source": "/etc/fleet", "destination": "/etc/fleet", "type": "bind", "options": ["rbind", "ro"]}],
//!   "dropCapabilities": ["CAP_NET_RAW"],
//!   "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024}],
//!   "rdkPlugins": {"httpproxy": {"required": false, "data": {}}},
//!   "platform": {"logging": {"mode": "journald"}},
//!   "strictMemory": true
//! }
//! ```
//!
//! How each applies is documented in `docs/formats.md` ("Operator
//! configuration"): the operator comes last and wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diag::Diagnostics;
use crate::input::{self, InputKind, LoadError};
use crate::platform::model::{Mount, ResourceLimit};
use crate::platform::model::{check_rlimit, is_plugin_name};
pub use crate::platform::model::PluginEntry;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Reading, parsing or typing the file (see [`crate::input`]).
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path}: {key}: {message}")]
    BadValue {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// A loaded operator configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operator {
    /// Where it was read from, for messages.
    #[serde(skip)]
    pub source: PathBuf,
    /// `NAME=VALUE` entries added to every container, replacing a variable
    /// of the same name from the image, the platform or the GPU settings.
    #[serde(default)]
    pub env: Vec<String>,
    /// Mounts added after all others.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Capabilities removed from whatever set the container would get.
    #[serde(default)]
    pub drop_capabilities: Vec<String>,
    /// Process rlimits; each replaces a limit of the same type.
    #[serde(default)]
    pub rlimits: Vec<ResourceLimit>,
    /// Extra Dobby rdkPlugins (Dobby mode only); each replaces a plugin of
    /// the same name.
    #[serde(default)]
    pub rdk_plugins: BTreeMap<String, PluginEntry>,
    /// A platform overlay (RFC 7386 merge patch) applied last when the
    /// platform is loaded; see [`Operator::platform_overlay`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
    /// The strict memory policy of `--strict-memory`: the app's RAM is
    /// always the hard limit and an app above `hardware.maxRam` is refused
    /// (exit 2), where BundleGen lowers it to `maxRam`.
    #[serde(default)]
    pub strict_memory: bool,
}

impl Operator {
    pub fn load(path: &Path, strict: bool, diag: &dyn Diagnostics) -> Result<Self, OperatorError> {
        let bytes = input::read(InputKind::Operator, path)?;
        Self::parse(&bytes, path, strict, diag)
    }

    /// Checks an operator configuration held in memory; `path` names it.
    pub fn parse(
        bytes: &[u8],
        path: &Path,
        strict: bool,
        diag: &dyn Diagnostics,
    ) -> Result<Self, OperatorError> {
        let mut op: Operator = input::from_bytes(InputKind::Operator, path, bytes, strict, diag)?;
        op.source = path.to_owned();
        op.check()?;
        Ok(op)
    }

    fn check(&self) -> Result<(), OperatorError> {
        let bad = |key: String, message: String| OperatorError::BadValue {
            path: self.source.clone(),
            key,
            message,
        };
        for (i, e) in self.env.iter().enumerate() {
            if e.split_once('=').is_none_or(|(n, _)| n.is_empty()) {
                return Err(bad(format!("env[{i}]"), format!("{e:?} is not NAME=VALUE")));
            }
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if let Some((field, value)) = m.bad_path() {
                return Err(bad(
                    format!("mounts[{i}].{field}"),
                    format!("{value:?} is not {}", crate::platform::model::ABS_PATH_FORM),
                ));
            }
        }
        for (i, c) in self.drop_capabilities.iter().enumerate() {
            if !is_cap_name(c) {
                return Err(bad(
                    format!("dropCapabilities[{i}]"),
                    format!("{c:?} is not a capability name like \"CAP_NET_RAW\""),
                ));
            }
        }
        for (i, r) in self.rlimits.iter().enumerate() {
            check_rlimit(r).map_err(|m| bad(format!("rlimits[{i}]"), m))?;
        }
        for name in self.rdk_plugins.keys() {
            if !is_plugin_name(name) {
                return Err(bad(
                    format!("rdkPlugins.{name}"),
                    "plugin names are lower-case letters only ([a-z]+), as Dobby requires".into(),
                ));
            }
        }
        if let Some(p) = &self.platform
            && !p.is_object()
        {
            return Err(bad(
                "platform".into(),
                "must be a JSON object (a platform overlay)".into(),
            ));
        }
        Ok(())
    }

    /// The platform overlay as `platform::LoadOptions::overlay_values` wants
    /// it: merged after the template, its `.d` files and overlay files.
    pub fn platform_overlay(&self) -> Option<(String, Value)> {
        let p = self.platform.as_ref()?;
        Some((format!("{}#platform", self.source.display()), p.clone()))
    }
}

/// `CAP_` followed by upper-case letters, digits and underscores.
pub(crate) fn is_cap_name(c: &str) -> bool {
    c.strip_prefix("CAP_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Collected;

    fn parse(text: &str, strict: bool) -> Result<Operator, OperatorError> {
        Operator::parse(
            text.as_bytes(),
            Path::new("op.json"),
            strict,
            &Collected::default(),
        )
    }

    #[test]
    fn full_file_parses() {
        let op = parse(
            r#"{"env": ["TZ=UTC"], "dropCapabilities": ["CAP_NET_RAW"],
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024}],
                "rdkPlugins": {"httpproxy": {"data": {"ignoreProxy": []}}},
                "platform": {"hostname": "x"}, "strictMemory": true}"#,
            true,
        )
        .expect("valid");
        assert_eq!(op.env, ["TZ=UTC"]);
        assert!(op.strict_memory);
        let p = &op.rdk_plugins["httpproxy"];
        assert!(p.required && p.depends_on.is_empty());
        let (label, v) = op.platform_overlay().expect("overlay");
        assert_eq!(label, "op.json#platform");
        assert_eq!(v["hostname"], "x");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse(r#"{"env": ["NOEQUALS"]}"#, false).expect_err("env");
        assert_eq!(
            e.to_string(),
            "op.json: env[0]: \"NOEQUALS\" is not NAME=VALUE"
        );
        let e = parse(r#"{"rdkPlugins": {"Http": {}}}"#, false).expect_err("name");
        assert!(
            e.to_string().starts_with("op.json: rdkPlugins.Http: "),
            "{e}"
        );
        let e = parse(
            r#"{"rlimits": [{"type": "NOFILE", "hard": 1, "soft": 1}]}"#,
            false,
        )
        .expect_err("rlimit");
        assert!(e.to_string().starts_with("op.json: rlimits[0]: "), "{e}");
        let e = parse(r#"{"dropCaps": []}"#, true).expect_err("unknown");
        assert!(
            e.to_string().starts_with("op.json: dropCaps: unknown key"),
            "{e}"
        );
    }
}
