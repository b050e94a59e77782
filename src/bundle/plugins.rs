//! `rdkPlugins`: the Dobby plugins a bundle asks for (Dobby mode only).
//!
//! Every entry is `{required, dependsOn, data}` under a lower-case name
//! (`[a-z]+`), and `dependsOn` only names plugins of the same config. The
//! data follow Dobby's `defs-plugins.json`; where BundleGen writes something
//! Dobby's parser rejects (a string `"true"` for a boolean, a dynamic mount
//! without `flags`), we write what Dobby accepts.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bundle::config::{ConfigError, ConfigInputs};
use crate::diag::{Diagnostics, Warning};
use crate::operator::PluginEntry;
use crate::platform::model::LogMode;

/// Mount flags of a persistent storage image: `MS_NOSUID|MS_NODEV|MS_NOEXEC`.
pub const LOOPBACK_FLAGS: i64 = 14;
/// Dobby reads `imgsize` and the GPU `memory` as 32-bit signed integers.
const INT32_MAX: u64 = i32::MAX as u64;

/// The plugins for this app on this platform, by name.
pub(crate) fn build(
    inp: &ConfigInputs<'_>,
    graphics: bool,
    dynamic: Vec<Value>,
    diag: &dyn Diagnostics,
) -> Result<BTreeMap<String, PluginEntry>, ConfigError> {
    let spec = &inp.platform.spec;
    let app = inp.app;
    let mut out: BTreeMap<String, PluginEntry> = BTreeMap::new();
    let mut add = |name: &str, depends_on: &[&str], data: Value| {
        out.insert(
            name.to_owned(),
            PluginEntry {
                required: true,
                depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
                data,
            },
        );
    };

    let network = serde_json::to_value(&app.network).unwrap_or_else(|_| json!({}));
    add("networking", &[], network);

    let storage = storage(inp, dynamic, diag)?;
    if let Some(data) = storage {
        add("storage", &[], data);
    }

    if let Some(l) = &spec.logging {
        let data = match l.mode {
            Some(LogMode::File) => {
                let dir = l.log_dir.as_deref().unwrap_or("/var/log");
                let limit = l
                    .limit
                    .map_or(-1, |s| i64::try_from(s.bytes()).unwrap_or(i64::MAX));
                json!({
                    "sink": "file",
                    "fileOptions": {"path": format!("{}/{}.log", dir.trim_end_matches('/'), app.id), "limit": limit},
                })
            }
            Some(LogMode::Journald) => {
                let prio = l
                    .journald_options
                    .as_ref()
                    .or(spec.journald_options.as_ref())
                    .and_then(|j| j.priority.clone());
                match prio {
                    Some(p) => json!({"sink": "journald", "journaldOptions": {"priority": p}}),
                    None => json!({"sink": "journald"}),
                }
            }
            Some(LogMode::Devnull) | None => json!({"sink": "devnull"}),
        };
        add("logging", &[], data);
    }

    if graphics {
        let dynamic_devs: Vec<&str> = spec
            .gpu
            .iter()
            .flat_map(|g| g.devs.iter().flatten())
            .filter(|d| d.dynamic == Some(true))
            .map(|d| d.path.as_str())
            .collect();
        if !dynamic_devs.is_empty() {
            add("devicemapper", &[], json!({"devices": dynamic_devs}));
        }
    }

    let enabled = |e: Option<crate::appmeta::Enable>| e.is_some_and(|e| e.enable);
    let missing = |what: &str, key: &str| {
        diag.warning(Warning::new(
            inp.platform.name.clone(),
            format!("the app enables {what} but the platform has no {key}: plugin not added"),
        ));
    };
    if enabled(app.ipc) {
        match &spec.ipc {
            Some(ipc) => add("ipc", &[], json!(ipc)),
            None => missing("ipc", "ipc section"),
        }
    }
    if enabled(app.minidump) {
        match spec
            .minidump
            .as_ref()
            .and_then(|m| m.destination_path.as_deref())
        {
            Some(p) => add("minidump", &[], json!({"destinationPath": p})),
            None => missing("minidump", "minidump.destinationPath"),
        }
    }
    if enabled(app.oomcrash) {
        match spec.oomcrash.as_ref().and_then(|o| o.path.as_deref()) {
            Some(p) => add("oomcrash", &[], json!({"path": p})),
            None => missing("oomcrash", "oomcrash.path"),
        }
    }
    if let Some(t) = &app.thunder {
        add("thunder", &["networking"], json!(t));
    }
    if let Some(gpu) = app.resources.gpu {
        if gpu.bytes() > INT32_MAX {
            return Err(ConfigError::Invalid {
                subject: format!("{}: resources.gpu", app.source.display()),
                message: format!(
                    "{gpu} is more than Dobby's gpu plugin can hold (2147483647 bytes)"
                ),
            });
        }
        add("gpu", &[], json!({"memory": gpu.bytes()}));
    }

    // Checked when the platform was loaded (names, entries).
    for (name, entry) in spec.rdk_plugins.iter().flatten() {
        out.insert(name.clone(), entry.clone());
    }
    if let Some(op) = inp.operator {
        for (name, entry) in &op.rdk_plugins {
            out.insert(name.clone(), entry.clone());
        }
    }

    let names: Vec<String> = out.keys().cloned().collect();
    for (name, entry) in out.iter_mut() {
        entry.depends_on.retain(|d| {
            let present = names.contains(d);
            if !present {
                diag.warning(Warning::new(
                    format!("rdkPlugins.{name}.dependsOn"),
                    format!("{d:?} is not in this config: dependency dropped"),
                ));
            }
            present
        });
    }
    Ok(out)
}

/// The storage plugin: a loopback image per persistent storage entry
/// (`<storageDir>/<id>/<sha256(path)>.img`, so that an upgraded bundle finds
/// the same image) and the dynamic (`X-dobby.optional`) mounts.
fn storage(
    inp: &ConfigInputs<'_>,
    dynamic: Vec<Value>,
    diag: &dyn Diagnostics,
) -> Result<Option<Value>, ConfigError> {
    let app = inp.app;
    let mut data = serde_json::Map::new();
    if !app.storage.persistent.is_empty() {
        let p = inp
            .platform
            .spec
            .storage
            .as_ref()
            .and_then(|s| s.persistent.as_ref());
        let dir = p.and_then(|p| p.storage_dir.as_deref()).ok_or(ConfigError::MissingPlatformKey {
            platform: inp.platform.name.clone(),
            key: "storage.persistent.storageDir",
            hint: "the app asks for persistent storage; the platform must say where images live",
        })?;
        let fstype = p
            .and_then(|p| p.fstype.clone())
            .unwrap_or_else(|| "ext4".into());
        let min = p.and_then(|p| p.min_size);
        let mut loops = Vec::new();
        for (i, e) in app.storage.persistent.iter().enumerate() {
            let mut size = e.size;
            if let Some(min) = min.filter(|m| *m > size) {
                diag.warning(Warning::new(
                    format!("{}: storage.persistent[{i}].size", app.source.display()),
                    format!("{size} is below the platform's minimum {min}: using {min}"),
                ));
                size = min;
            }
            if size.bytes() > INT32_MAX {
                return Err(ConfigError::Invalid {
                    subject: format!("{}: storage.persistent[{i}].size", app.source.display()),
                    message: format!("{size} is more than Dobby's storage plugin can hold (2047M)"),
                });
            }
            let name = hex(&Sha256::digest(e.path.as_bytes()));
            loops.push(json!({
                "destination": e.path,
                "flags": LOOPBACK_FLAGS,
                "fstype": fstype,
                "source": format!("{}/{}/{name}.img", dir.trim_end_matches('/'), app.id),
                "imgsize": size.bytes(),
            }));
        }
        data.insert("loopback".into(), Value::Array(loops));
    }
    if !dynamic.is_empty() {
        data.insert("dynamic".into(), Value::Array(dynamic));
    }
    Ok((!data.is_empty()).then_some(Value::Object(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_image_name_is_bundlegens() {
        // BundleGen's unit tests: /home/private → 23e95965...5f20.img
        assert_eq!(
            hex(&Sha256::digest(b"/home/private")),
            "23e959658f5082a89c6db72c842271a117887b8658ab703f60eaba650b3d5f20"
        );
    }
}
