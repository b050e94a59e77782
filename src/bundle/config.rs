//! The bundle's `config.json`, as BundleGen writes it for Dobby (or a plain
//! OCI config for crun/runc), without BundleGen's defects.
//!
//! What goes where is listed in `docs/formats.md` ("config.json"). The
//! result is a `serde_json::Value` whose object keys are sorted at every
//! level, so the file is byte-for-byte reproducible.

mod mounts;
mod process;
mod user;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::appmeta::AppMetadata;
use crate::bundle::LibMount;
use crate::diag::{Diagnostics, Warning};
use crate::image::spec::ImageConfig;
use crate::operator::Operator;
use crate::platform::Platform;
use crate::runtime::Runtime;
use mounts::{Mounts, OciMount};

/// Default DobbyInit location on the device.
pub const DOBBY_INIT: &str = "/usr/libexec/DobbyInit";
/// Default DobbyPluginLauncher location (compliant configs).
pub const PLUGIN_LAUNCHER: &str = "/usr/bin/DobbyPluginLauncher";
/// BundleGen's capabilities when the platform lists none.
pub const DEFAULT_CAPS: [&str; 9] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
];

pub struct ConfigInputs<'a> {
    pub image: &'a ImageConfig,
    pub platform: &'a Platform,
    pub app: &'a AppMetadata,
    pub operator: Option<&'a Operator>,
    /// The runtime the bundle is for: what it provides beyond the OCI spec.
    pub runtime: Runtime,
    pub lib_mounts: &'a [LibMount],
    /// The flattened rootfs, to read `etc/passwd` and `etc/group`.
    pub rootfs: &'a Path,
    /// `-r`: every mount destination is a mount point to create.
    pub create_mount_points: bool,
    pub memory: MemoryLimit,
}

/// How `linux.resources.memory.limit` is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MemoryLimit {
    /// BundleGen's: only when the platform has `hardware.maxRam`, from the
    /// app's `resources.ram` lowered to `maxRam` with a warning.
    #[default]
    BundleGen,
    /// Always the app's `resources.ram`; an app above `maxRam` is refused
    /// before (`compat::check_ram`).
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountPointKind {
    Dir,
    File,
}

/// A path to create in the rootfs before the bundle is used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct MountPoint {
    /// Absolute container path.
    pub path: String,
    pub kind: MountPointKind,
}

#[derive(Debug, Clone)]
pub struct BuiltConfig {
    /// The `config.json` document, keys sorted at every level.
    pub config: Value,
    /// Destinations to create in the rootfs, sorted by path.
    pub mount_points: Vec<MountPoint>,
    /// Host uid and gid the container's process runs as (through the id
    /// mappings with a user namespace): the owner for
    /// `tarball.fileOwnershipSameAsUser`.
    pub user: (u32, u32),
    /// The names under `rdkPlugins` (none for crun), for rootfs
    /// preparation (`localtime`, `ipc`).
    pub plugins: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the image config has neither Entrypoint nor Cmd: nothing to run\n\
         help: set OCI_IMAGE_ENTRYPOINT or OCI_IMAGE_CMD in the image recipe"
    )]
    NoCommand,
    #[error("image user {spec:?}: no user {user:?} in the rootfs's {file}")]
    UnknownUser {
        user: String,
        spec: String,
        file: &'static str,
    },
    #[error("image user {spec:?}: no group {group:?} in the rootfs's {file}")]
    UnknownGroup {
        group: String,
        spec: String,
        file: &'static str,
    },
    #[error("cannot read {path}")]
    ReadRootfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("platform {platform}: cannot allocate the app's ids")]
    AppIds {
        platform: String,
        #[source]
        source: crate::platform::appids::RangeFull,
    },
    #[error("platform {platform}: {key}: required key missing; {hint}")]
    MissingPlatformKey {
        platform: String,
        key: &'static str,
        hint: &'static str,
    },
    #[error("{subject}: {message}")]
    Invalid { subject: String, message: String },
}

/// Builds `config.json` for one app on one platform.
pub fn build(inp: &ConfigInputs<'_>, diag: &dyn Diagnostics) -> Result<BuiltConfig, ConfigError> {
    let spec = &inp.platform.spec;
    let graphics = inp.app.graphics
        && spec
            .hardware
            .as_ref()
            .and_then(|h| h.graphics)
            .unwrap_or(false);
    if inp.app.graphics && !graphics {
        diag.warning(Warning::new(
            inp.platform.name.clone(),
            "the app needs graphics but the platform has none: no GPU devices, libraries or settings",
        ));
    }
    let dobby = spec.dobby.clone().unwrap_or_default();
    let dobby_init = dobby
        .dobby_init_path
        .clone()
        .unwrap_or_else(|| DOBBY_INIT.into());
    let users = user::plan(inp, diag)?;

    // process
    let mut args = Vec::new();
    if inp.runtime.init {
        args.push(dobby_init.clone());
    }
    let cfg = inp.image.config.clone().unwrap_or_default();
    let command: Vec<String> = cfg
        .entrypoint
        .iter()
        .flatten()
        .chain(cfg.cmd.iter().flatten())
        .cloned()
        .collect();
    if command.is_empty() {
        return Err(ConfigError::NoCommand);
    }
    args.extend(command);
    let env = process::environment(inp, graphics, cfg.env.as_deref().unwrap_or_default());
    let cwd = match cfg.working_dir.as_deref().map(str::trim) {
        None | Some("") => "/".to_owned(),
        Some(d) if d.starts_with('/') => d.to_owned(),
        Some(d) => {
            diag.warning(Warning::new(
                "image config WorkingDir",
                format!("{d:?} is relative; using \"/{d}\""),
            ));
            format!("/{d}")
        }
    };
    let caps = process::capabilities(inp, diag)?;
    let mut process = json!({
        "args": args,
        "cwd": cwd,
        "env": env,
        "terminal": false,
        "user": users.process_json(),
        "noNewPrivileges": true,
        "rlimits": process::rlimits(inp),
        "capabilities": {
            "ambient": caps, "bounding": caps, "effective": caps, "inheritable": caps, "permitted": caps,
        },
    });
    if let Some(p) = spec.apparmor_profile.as_deref().filter(|p| !p.is_empty()) {
        process["apparmorProfile"] = json!(p);
    }

    // mounts
    let network_open = inp.app.network.kind == "open";
    let mut m = Mounts::default();
    for sm in mounts::standard(inp, users.userns, network_open) {
        m.push(sm);
    }
    if inp.runtime.init {
        let src = mounts::map_path(&dobby_init, inp);
        m.push(OciMount::bind(
            &src,
            &dobby_init,
            &mounts::LIB_OPTIONS,
            false,
        ));
    }
    for (i, pm) in spec.mounts.iter().flatten().enumerate() {
        m.add_declared(pm, &format!("{}: mounts[{i}]", inp.platform.name), inp)?;
    }
    for (i, am) in inp.app.mounts.iter().enumerate() {
        m.add_declared(
            am,
            &format!("{}: mounts[{i}]", inp.app.source.display()),
            inp,
        )?;
    }
    let gpu = spec.gpu.clone().unwrap_or_default();
    if graphics {
        for (i, gm) in gpu.extra_mounts.iter().flatten().enumerate() {
            m.add_declared(
                gm,
                &format!("{}: gpu.extraMounts[{i}]", inp.platform.name),
                inp,
            )?;
        }
        for lib in gpu.gfx_libs.iter().flatten() {
            m.push_lib(&mounts::map_path(&lib.src, inp), &lib.dst, diag);
        }
        if let Some(sock) = gpu.westeros.as_ref().and_then(|w| w.host_socket.as_deref()) {
            let src = mounts::map_path(sock, inp);
            m.push(OciMount::bind(
                &src,
                "/tmp/westeros",
                &["rbind", "nosuid", "nodev"],
                false,
            ));
        }
    }
    if inp.runtime.rdk_plugins
        && let Some(dir) = dobby.plugin_dir.as_deref()
    {
        let src = mounts::map_path(dir, inp);
        m.push(OciMount::bind(&src, dir, &mounts::LIB_OPTIONS, true));
    }
    for lib in inp.lib_mounts {
        m.push_lib(&lib.source, &lib.destination, diag);
    }
    let (cuid, cgid) = (users.process.uid, users.process.gid);
    let mut points = std::mem::take(&mut m.points);
    for t in &inp.app.storage.temp {
        m.push(mounts::tmpfs(&t.path, t.size.bytes(), cuid, cgid));
        points.push(MountPoint {
            path: t.path.clone(),
            kind: MountPointKind::Dir,
        });
    }
    if !inp.runtime.rdk_plugins {
        for p in &inp.app.storage.persistent {
            diag.warning(Warning::new(
                format!("{}: storage.persistent", inp.app.source.display()),
                format!(
                    "{}: persistent storage needs Dobby's storage plugin; a {} bundle gets a {} tmpfs there (not kept across restarts)",
                    p.path, inp.runtime.name, p.size
                ),
            ));
            m.push(mounts::tmpfs(&p.path, p.size.bytes(), cuid, cgid));
        }
    }
    if let Some(op) = inp.operator {
        for (i, om) in op.mounts.iter().enumerate() {
            m.add_declared(om, &format!("{}: mounts[{i}]", op.source.display()), inp)?;
        }
    }
    for destination in m.made_plain.drain(..) {
        diag.warning(Warning::new(
            destination,
            format!("X-dobby.optional: a {} bundle has no optional mounts (Dobby's storage plugin), so this is an ordinary mount, as in BundleGen's: the container does not start on a device without its source", inp.runtime.name),
        ));
    }
    for p in &inp.app.storage.persistent {
        points.push(MountPoint {
            path: p.path.clone(),
            kind: MountPointKind::Dir,
        });
    }
    if inp.create_mount_points {
        points.extend(m.all_points());
    }

    // linux
    let linux = linux_section(inp, &users, graphics, &gpu, diag)?;

    // rdkPlugins, ociVersion, hooks
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {
            "path": spec.root.as_ref().and_then(|r| r.path.as_deref()).map_or("rootfs".into(), |p| p.replace("{id}", &inp.app.id)),
            "readonly": spec.root.as_ref().and_then(|r| r.readonly).unwrap_or(false),
        },
        "hostname": spec.hostname.as_deref().map_or(inp.app.id.clone(), |h| h.replace("{id}", &inp.app.id)),
    });
    let mut plugin_names = BTreeSet::new();
    if inp.runtime.rdk_plugins {
        let dynamic = m.optional.iter().map(dynamic_mount).collect();
        let plugins = super::plugins::build(inp, graphics, dynamic, diag)?;
        plugin_names.extend(plugins.keys().cloned());
        let compliant = dobby.generate_compliant_config.unwrap_or(false);
        if !compliant {
            config["ociVersion"] = json!("1.0.2-dobby");
        } else if !plugins.is_empty() {
            config["hooks"] = launcher_hooks(inp, &dobby)?;
        }
        if plugins.contains_key("logging") {
            config["annotations"] = json!({
                "run.oci.hooks.stderr": "/dev/stderr",
                "run.oci.hooks.stdout": "/dev/stdout",
            });
        }
        config["rdkPlugins"] = json!(plugins);
    }
    config["mounts"] = Value::Array(m.list.iter().map(OciMount::to_json).collect());
    config["linux"] = linux;

    points.sort();
    points.dedup_by(|a, b| a.path == b.path);
    Ok(BuiltConfig {
        config: sorted(config),
        mount_points: points,
        user: users.host,
        plugins: plugin_names,
    })
}

/// An `X-dobby.optional` mount as Dobby's storage plugin takes it: flags
/// and a data string instead of options (BundleGen writes the OCI mount,
/// which lacks the `flags` Dobby's schema requires).
fn dynamic_mount(m: &OciMount) -> Value {
    let (flags, data) = mounts::flags_and_data(&m.options);
    let mut v = json!({
        "destination": m.destination,
        "source": m.source.clone().unwrap_or_default(),
        "flags": flags,
    });
    if !data.is_empty() {
        v["options"] = json!(data);
    }
    v
}

fn linux_section(
    inp: &ConfigInputs<'_>,
    users: &user::UserPlan,
    graphics: bool,
    gpu: &crate::platform::model::Gpu,
    diag: &dyn Diagnostics,
) -> Result<Value, ConfigError> {
    let spec = &inp.platform.spec;
    let mut devices = Vec::new();
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    if graphics {
        for d in gpu.devs.iter().flatten() {
            let mut dev =
                json!({"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor});
            if let Some(mode) = d.file_mode {
                dev["fileMode"] = json!(mode);
            }
            if let Some(uid) = d.uid {
                dev["uid"] = json!(uid);
            }
            if let Some(gid) = d.gid {
                dev["gid"] = json!(gid);
            }
            devices.push(dev);
            let access = d.access.clone().unwrap_or_else(|| "rw".into());
            rules.push(json!({"allow": true, "type": d.kind, "major": d.major, "minor": d.minor, "access": access}));
        }
    }
    let app_ram = inp.app.resources.ram.bytes();
    let limit = match spec.hardware.as_ref().and_then(|h| h.max_ram) {
        Some(max) if app_ram > max.bytes() => {
            diag.warning(Warning::new(
                inp.platform.name.clone(),
                format!(
                    "the app asks for {} of RAM, above hardware.maxRam {max}: limited to {max}",
                    inp.app.resources.ram
                ),
            ));
            Some(max.bytes())
        }
        Some(_) => Some(app_ram),
        None if inp.memory == MemoryLimit::Strict => Some(app_ram),
        None => None,
    };
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    // Dobby's networking plugin sets up the network namespace itself; a
    // bundle for another runtime is isolated unless the app asks for the
    // host network.
    let netns = !inp.runtime.network_plugin && inp.app.network.kind != "open";
    if !inp.runtime.network_plugin && inp.app.network.kind == "nat" {
        diag.warning(Warning::new(
            format!("{}: network.type", inp.app.source.display()),
            format!("\"nat\" needs Dobby's networking plugin: a {} bundle gets a network namespace with loopback only", inp.runtime.name),
        ));
    }
    if netns {
        namespaces.push(json!({"type": "network"}));
    }
    if users.userns {
        namespaces.push(json!({"type": "user"}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "devices": devices,
        "resources": {"devices": rules},
        "maskedPaths": ["/proc/kcore", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    });
    if let Some(limit) = limit {
        linux["resources"]["memory"] = json!({"limit": limit});
    }
    if users.userns && !users.uid_mappings.is_empty() {
        linux["uidMappings"] = json!(users.uid_mappings);
    }
    if users.userns && !users.gid_mappings.is_empty() {
        linux["gidMappings"] = json!(users.gid_mappings);
    }
    if let Some(sc) = &spec.seccomp
        && sc.default_action.is_some()
    {
        linux["seccomp"] = json!(sc);
    }
    Ok(linux)
}

/// The four DobbyPluginLauncher hooks of a compliant (`1.0.2`) config.
fn launcher_hooks(
    inp: &ConfigInputs<'_>,
    dobby: &crate::platform::model::Dobby,
) -> Result<Value, ConfigError> {
    let exe = dobby
        .hook_launcher_executable_path
        .clone()
        .unwrap_or_else(|| PLUGIN_LAUNCHER.into());
    let params = dobby.hook_launcher_parameters_path.as_deref().ok_or(ConfigError::MissingPlatformKey {
        platform: inp.platform.name.clone(),
        key: "dobby.hookLauncherParametersPath",
        hint: "dobby.generateCompliantConfig needs the device directory holding the bundle's config.json, e.g. \"/opt/dac_apps/{id}\"",
    })?;
    let mut params = params.replace("{id}", &inp.app.id);
    if !params.ends_with("/config.json") && params != "config.json" {
        params = format!("{}/config.json", params.trim_end_matches('/'));
    }
    let hook =
        |h: &str| json!([{"path": exe, "args": ["DobbyPluginLauncher", "-h", h, "-c", params]}]);
    Ok(json!({
        "createRuntime": hook("createRuntime"),
        "createContainer": hook("createContainer"),
        "poststart": hook("poststart"),
        "poststop": hook("poststop"),
    }))
}

/// The same JSON with object keys sorted at every level.
pub fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
