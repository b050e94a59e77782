//! Reading one platform file, checking it key by key, and merging files.

use std::path::Path;

use serde_json::Value;

use super::PlatformError;
use super::model::{LogMode, Mount, PlatformSpec, abs_path, check_rlimit, is_plugin_name};
use crate::diag::Diagnostics;
use crate::input::{self, InputKind};

/// Checks one file (a whole template or an overlay fragment) against the
/// typed model: wrong types and bad sizes are errors naming the key path;
/// unknown keys are warnings (errors when `strict`).
pub(super) fn check_fragment(
    path: &Path,
    value: &Value,
    strict: bool,
    diag: &dyn Diagnostics,
) -> Result<PlatformSpec, PlatformError> {
    let spec: PlatformSpec = input::typed(InputKind::Platform, path, value, strict, diag)?;
    check_paths(path, &spec)?;
    check_values(path, &spec)?;
    Ok(spec)
}

/// What the types cannot say: rlimit names and order, plugin names. (The
/// tarball's `fileMask` is checked by its type, [`super::model::FileMask`].)
fn check_values(path: &Path, spec: &PlatformSpec) -> Result<(), PlatformError> {
    let bad = |key: String, message: String| PlatformError::BadValue {
        path: path.to_owned(),
        key,
        message,
    };
    for (i, r) in spec.resource_limits.iter().flatten().enumerate() {
        check_rlimit(r).map_err(|m| bad(format!("resourceLimits[{i}]"), m))?;
    }
    for name in spec.rdk_plugins.iter().flat_map(|p| p.keys()) {
        if !is_plugin_name(name) {
            return Err(bad(
                format!("rdkPlugins.{name}"),
                "plugin names are lower-case letters only ([a-z]+), as Dobby requires".into(),
            ));
        }
    }
    Ok(())
}

/// Every device path the template names is an [`abs_path`]: mount sources
/// and destinations, GPU libraries and devices, Dobby's files, storage and
/// log directories, path mappings.
fn check_paths(path: &Path, spec: &PlatformSpec) -> Result<(), PlatformError> {
    let bad = |key: String, value: &str| PlatformError::BadPath {
        path: path.to_owned(),
        key,
        value: value.to_owned(),
    };
    let check = |key: &dyn Fn() -> String, value: Option<&String>| match value {
        Some(v) if !abs_path(v) => Err(bad(key(), v)),
        _ => Ok(()),
    };
    let mounts = |key: &str, list: Option<&Vec<Mount>>| {
        for (i, m) in list.into_iter().flatten().enumerate() {
            if let Some((field, value)) = m.bad_path() {
                return Err(bad(format!("{key}[{i}].{field}"), value));
            }
        }
        Ok(())
    };
    mounts("mounts", spec.mounts.as_ref())?;
    if let Some(gpu) = &spec.gpu {
        mounts("gpu.extraMounts", gpu.extra_mounts.as_ref())?;
        for (i, lib) in gpu.gfx_libs.iter().flatten().enumerate() {
            check(&|| format!("gpu.gfxLibs[{i}].src"), Some(&lib.src))?;
            check(&|| format!("gpu.gfxLibs[{i}].dst"), Some(&lib.dst))?;
        }
        for (i, dev) in gpu.devs.iter().flatten().enumerate() {
            check(&|| format!("gpu.devs[{i}].path"), Some(&dev.path))?;
        }
        check(
            &|| "gpu.westeros.hostSocket".into(),
            gpu.westeros.as_ref().and_then(|w| w.host_socket.as_ref()),
        )?;
    }
    let persistent = spec.storage.as_ref().and_then(|s| s.persistent.as_ref());
    check(
        &|| "storage.persistent.storageDir".into(),
        persistent.and_then(|p| p.storage_dir.as_ref()),
    )?;
    check(
        &|| "logging.logDir".into(),
        spec.logging.as_ref().and_then(|l| l.log_dir.as_ref()),
    )?;
    if let Some(d) = &spec.dobby {
        check(&|| "dobby.pluginDir".into(), d.plugin_dir.as_ref())?;
        check(&|| "dobby.dobbyInitPath".into(), d.dobby_init_path.as_ref())?;
        check(
            &|| "dobby.hookLauncherExecutablePath".into(),
            d.hook_launcher_executable_path.as_ref(),
        )?;
        check(
            &|| "dobby.hookLauncherParametersPath".into(),
            d.hook_launcher_parameters_path.as_ref(),
        )?;
        for (i, dep) in d.plugin_dependencies.iter().flatten().enumerate() {
            check(&|| format!("dobby.pluginDependencies[{i}]"), Some(dep))?;
        }
    }
    check(
        &|| "minidump.destinationPath".into(),
        spec.minidump
            .as_ref()
            .and_then(|m| m.destination_path.as_ref()),
    )?;
    check(
        &|| "oomcrash.path".into(),
        spec.oomcrash.as_ref().and_then(|o| o.path.as_ref()),
    )?;
    for (from, to) in spec.path_mappings.iter().flatten() {
        check(&|| format!("pathMappings.{from}"), Some(from))?;
        check(&|| format!("pathMappings.{from}"), Some(to))?;
    }
    Ok(())
}

/// Applies `patch` to `base` as an RFC 7386 JSON Merge Patch: objects merge
/// key by key, recursively; `null` removes a key; anything else (arrays
/// included) replaces the old value.
pub fn merge_patch(base: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *base = patch.clone();
        return;
    };
    if !base.is_object() {
        *base = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(base_map) = base {
        for (key, pv) in patch_map {
            if pv.is_null() {
                base_map.remove(key);
            } else {
                merge_patch(base_map.entry(key.clone()).or_insert(Value::Null), pv);
            }
        }
    }
}

/// The keys BundleGen's schema requires, checked on the merged platform.
pub(super) fn check_required(path: &Path, spec: &PlatformSpec) -> Result<(), PlatformError> {
    let missing = |key: &str, hint: &str| PlatformError::MissingKey {
        path: path.to_owned(),
        key: key.to_owned(),
        hint: hint.to_owned(),
    };
    if spec.platform_name.is_none() {
        return Err(missing("platformName", "a string naming the device"));
    }
    if spec.os.is_none() {
        return Err(missing("os", "\"linux\""));
    }
    match &spec.arch {
        None => {
            return Err(missing(
                "arch",
                "an object like {\"arch\": \"arm\", \"variant\": \"v7\"}",
            ));
        }
        Some(a) if a.arch.is_none() => {
            return Err(missing("arch.arch", "\"arm\", \"arm64\", \"amd64\", ..."));
        }
        _ => {}
    }
    match &spec.rdk {
        None => {
            return Err(missing(
                "rdk",
                "an object with version and supportedFeatures",
            ));
        }
        Some(r) if r.version.is_none() => {
            return Err(missing("rdk.version", "a string like \"2024Q3\""));
        }
        Some(r) if r.supported_features.is_none() => {
            return Err(missing(
                "rdk.supportedFeatures",
                "a list of strings (may be empty)",
            ));
        }
        _ => {}
    }
    match &spec.hardware {
        None => return Err(missing("hardware", "an object with at least graphics")),
        Some(h) if h.graphics.is_none() => {
            return Err(missing("hardware.graphics", "true or false"));
        }
        _ => {}
    }
    match &spec.network {
        None => {
            return Err(missing(
                "network",
                "an object like {\"options\": [\"nat\", \"open\", \"private\"]}",
            ));
        }
        Some(n) if n.options.is_none() => {
            return Err(missing("network.options", "a list of network modes"));
        }
        _ => {}
    }
    if let Some(gpu) = &spec.gpu
        && gpu.gfx_libs.is_none()
    {
        return Err(missing(
            "gpu.gfxLibs",
            "a list of {src, dst} (may be empty)",
        ));
    }
    if let Some(p) = spec.storage.as_ref().and_then(|s| s.persistent.as_ref())
        && p.storage_dir.is_none()
    {
        return Err(missing(
            "storage.persistent.storageDir",
            "the host directory for app storage images",
        ));
    }
    if let Some(l) = &spec.logging {
        match (l.mode, &l.log_dir) {
            (None, _) => {
                return Err(missing(
                    "logging.mode",
                    "\"file\", \"journald\" or \"devnull\"",
                ));
            }
            (Some(LogMode::File), None) => {
                return Err(missing(
                    "logging.logDir",
                    "the host directory for log files (mode \"file\")",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": 1});
        merge_patch(
            &mut base,
            &json!({"a": {"c": [3], "n": true}, "d": null, "f": {"g": 1}}),
        );
        assert_eq!(
            base,
            json!({"a": {"b": 1, "c": [3], "n": true}, "e": 1, "f": {"g": 1}})
        );
    }

    #[test]
    fn unknown_key_paths_are_precise() {
        let v = json!({"gpu": {"devs": [{"type": "c", "path": "/dev/x", "major": 1, "minor": 2, "acess": "rw"}],
                               "gfxLibs": []},
                       "hardwre": {}});
        let diag = crate::diag::Collected::default();
        check_fragment(Path::new("rpi3.json"), &v, false, &diag).expect("only warnings");
        let w: Vec<String> = diag.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("rpi3.json: gpu.devs[0].acess: unknown key"),
            "{w:?}"
        );
        assert!(w[1].starts_with("rpi3.json: hardwre: unknown key"), "{w:?}");
        let err = check_fragment(Path::new("rpi3.json"), &v, true, &diag).expect_err("strict");
        assert_eq!(err.to_string(), "rpi3.json: gpu.devs[0].acess: unknown key");
    }
}
