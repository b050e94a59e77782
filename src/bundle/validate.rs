//! `validate`: re-checks an existing bundle directory against the schemas a
//! runtime parses it with, and its rootfs against a platform (entrypoint,
//! libraries), without changing anything.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::compat;
use crate::diag::Diagnostics;
use crate::elf;
use crate::libmatch::MatchPlan;
use crate::platform::Platform;

/// The schema files compiled into the binary, by folder.
const DOBBY: &[(&str, &str)] = &[
    ("dobby_schema.json", include_str!("../../schemas/dobby/dobby_schema.json")),
    ("defs-plugins.json", include_str!("../../schemas/dobby/defs-plugins.json")),
    ("defs.json", include_str!("../../schemas/dobby/defs.json")),
    ("defs-linux.json", include_str!("../../schemas/dobby/defs-linux.json")),
    ("defs-vm.json", include_str!("../../schemas/dobby/defs-vm.json")),
    ("defs-windows.json", include_str!("../../schemas/dobby/defs-windows.json")),
    ("defs-zos.json", include_str!("../../schemas/dobby/defs-zos.json")),
    ("config-linux.json", include_str!("../../schemas/dobby/config-linux.json")),
    ("config-solaris.json", include_str!("../../schemas/dobby/config-solaris.json")),
    ("config-vm.json", include_str!("../../schemas/dobby/config-vm.json")),
    ("config-windows.json", include_str!("../../schemas/dobby/config-windows.json")),
    ("config-zos.json", include_str!("../../schemas/dobby/config-zos.json")),
];

const OCI_1_0_2: &[(&str, &str)] = &[
    ("config-schema.json", include_str!("../../schemas/runtime-spec-1.0.2/config-schema.json")),
    ("defs.json", include_str!("../../schemas/runtime-spec-1.0.2/defs.json")),
    ("defs-linux.json", include_str!("../../schemas/runtime-spec-1.0.2/defs-linux.json")),
    ("defs-vm.json", include_str!("../../schemas/runtime-spec-1.0.2/defs-vm.json")),
    ("defs-windows.json", include_str!("../../schemas/runtime-spec-1.0.2/defs-windows.json")),
    ("config-linux.json", include_str!("../../schemas/runtime-spec-1.0.2/config-linux.json")),
    ("config-solaris.json", include_str!("../../schemas/runtime-spec-1.0.2/config-solaris.json")),
    ("config-vm.json", include_str!("../../schemas/runtime-spec-1.0.2/config-vm.json")),
    ("config-windows.json", include_str!("../../schemas/runtime-spec-1.0.2/config-windows.json")),
];

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the embedded schema {name} does not compile: {reason}")]
    Schema { name: &'static str, reason: String },
    #[error("{path} does not match the {schema} schema:\n{}", .problems.join("\n"))]
    Invalid { path: PathBuf, schema: &'static str, problems: Vec<String> },
    #[error("{path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    /// The entrypoint does not run on the platform (`-p`).
    #[error(transparent)]
    Entrypoint(#[from] compat::Incompatible),
}

/// What a valid bundle looks like.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Validated {
    /// `dobby` or `oci-1.0.2`.
    pub schema: &'static str,
    pub entrypoint: Option<compat::EntrypointInfo>,
}

/// Resolves the schemas' relative `$ref`s (`defs.json#/...`) to the embedded
/// files, never to the network or the file system.
struct Embedded(&'static [(&'static str, &'static str)]);

impl jsonschema::Retrieve for Embedded {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.path().as_str().rsplit('/').next().unwrap_or_default();
        let text = self
            .0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| format!("no embedded schema named {name:?} ({uri})"))?;
        Ok(serde_json::from_str(text)?)
    }
}

/// Checks `config.json` against Dobby's schema (ociVersion `1.0.2-dobby` or
/// with `rdkPlugins`) or OCI runtime-spec 1.0.2 (otherwise).
pub fn check_config(path: &Path, config: &Value) -> Result<&'static str, ValidateError> {
    let dobby = config.get("ociVersion").and_then(Value::as_str) == Some("1.0.2-dobby") || config.get("rdkPlugins").is_some();
    let (files, top, label): (&'static [(&str, &str)], &str, &'static str) =
        if dobby { (DOBBY, "dobby_schema.json", "dobby") } else { (OCI_1_0_2, "config-schema.json", "oci-1.0.2") };
    let text = files.iter().find(|(n, _)| *n == top).map(|(_, t)| *t).unwrap_or("{}");
    let schema: Value = serde_json::from_str(text).map_err(|e| ValidateError::Schema { name: label, reason: e.to_string() })?;
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_base_uri(format!("json-schema:///{label}/{top}"))
        .with_retriever(Embedded(files))
        .build(&schema)
        .map_err(|e| ValidateError::Schema { name: label, reason: e.to_string() })?;
    let mut problems: Vec<String> = validator
        .iter_errors(config)
        .map(|e| format!("  {}: {}", if e.instance_path().as_str().is_empty() { "/" } else { e.instance_path().as_str() }, e))
        .collect();
    if let Some(version) = config.get("ociVersion").and_then(Value::as_str)
        && (version == "1.0.2-dev" || !version.starts_with("1.0")) {
            problems.push(format!("  /ociVersion: {version:?}: Dobby and older crun need 1.0.2 or 1.0.2-dobby"));
        }
    if let Some(plugins) = config.get("rdkPlugins").and_then(Value::as_object) {
        for (name, plugin) in plugins {
            for dep in plugin.get("dependsOn").and_then(Value::as_array).into_iter().flatten() {
                if dep.as_str().is_none_or(|d| !plugins.contains_key(d)) {
                    problems.push(format!("  /rdkPlugins/{name}/dependsOn: {dep} is not a plugin of this bundle"));
                }
            }
        }
    }
    problems.sort();
    if problems.is_empty() {
        Ok(label)
    } else {
        Err(ValidateError::Invalid { path: path.to_owned(), schema: label, problems })
    }
}

/// The parts of a bundle's `config.json` that [`validate`] reads, once the
/// config passed its schema; other keys are ignored.
#[derive(Debug, Default, Deserialize)]
struct ConfigView {
    root: Option<RootView>,
    process: Option<ProcessView>,
    #[serde(default)]
    mounts: Vec<MountView>,
}

#[derive(Debug, Deserialize)]
struct RootView {
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ProcessView {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct MountView {
    destination: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Checks a bundle directory: the config against its schema and, with a
/// platform, that the entrypoint runs on it with the bundle's libraries and
/// the device's (the bind mounts in the config).
pub fn validate(bundle: &Path, platform: Option<&Platform>, diag: &dyn Diagnostics) -> Result<Validated, ValidateError> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|source| ValidateError::Read { path: path.clone(), source })?;
    let config: Value = serde_json::from_slice(&bytes).map_err(|source| ValidateError::Json { path: path.clone(), source })?;
    let schema = check_config(&path, &config)?;
    let config = ConfigView::deserialize(&config).map_err(|source| ValidateError::Json { path: path.clone(), source })?;
    // An absolute root.path is where the device keeps the rootfs (a
    // loopback image, say); the bundle ships it as `rootfs/`.
    let root = config.root.and_then(|r| r.path).unwrap_or_else(|| "rootfs".into());
    let rootfs = if root.starts_with('/') { bundle.join("rootfs") } else { bundle.join(&root) };
    if !rootfs.is_dir() {
        return Err(ValidateError::Bundle { path: rootfs, reason: "root.path is not a directory".into() }.into());
    }
    let Some(platform) = platform else {
        return Ok(Validated { schema, entrypoint: None });
    };
    let process = config.process.unwrap_or_default();
    let mut args = process.args;
    // DobbyInit comes from the device; the app's command follows it.
    let dobby_init = config.mounts.iter().any(|m| m.destination.as_deref() == args.first().map(String::as_str));
    if dobby_init && args.len() > 1 {
        args.remove(0);
    }
    let env_path = process.env.iter().find_map(|e| e.strip_prefix("PATH=").map(str::to_owned));
    let scan = elf::scan(&rootfs, diag).map_err(|source| ValidateError::Read { path: rootfs.clone(), source })?;
    // The bind mounts stand for the libraries the device provides.
    let mut plan = MatchPlan::default();
    for m in config.mounts {
        let (Some(source), Some(destination)) = (m.source, m.destination) else {
            continue;
        };
        if m.kind.as_deref() == Some("bind") && destination.contains(".so") {
            plan.mounts.push(super::LibMount { source, destination });
        }
    }
    let info = compat::check_entrypoint(&rootfs, &args, env_path.as_deref(), platform, &scan, &plan, platform.libs.as_ref())?;
    Ok(Validated { schema, entrypoint: Some(info) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embedded_schemas_accept_a_minimal_config_and_refuse_a_broken_one() {
        let good = json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["/bin/sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}});
        assert_eq!(check_config(Path::new("config.json"), &good).unwrap(), "oci-1.0.2");
        let bad = json!({"ociVersion": "1.0.2", "process": {"args": "not a list", "cwd": "/", "user": {"uid": 0, "gid": 0}}});
        let err = check_config(Path::new("config.json"), &bad).unwrap_err().to_string();
        assert!(err.contains("/process/args"), "{err}");
        let dobby = json!({"ociVersion": "1.0.2-dobby", "rdkPlugins": {"logging": {"required": true, "dependsOn": ["storage"], "data": {"sink": "devnull"}}}});
        let err = check_config(Path::new("config.json"), &dobby).unwrap_err().to_string();
        assert!(err.contains("dependsOn"), "{err}");
    }
}
