//! The typed platform template: BundleGen's keys plus our documented
//! extensions (`display`, `rdk.services`, `usersAndGroups.appRange`,
//! `pathMappings`, `dropCapabilities`).
//!
//! Every field is optional here so that overlay files (which hold only a
//! few keys) parse with the same types; the keys BundleGen's schema
//! requires are checked on the merged result ([`super::parse::check_required`]).
//! Keys not listed here are reported as unknown (see `docs/platforms.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::size::Size;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdk: Option<Rdk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envvar: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<Vec<ResourceLimit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<Root>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_user_namespacing: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_and_groups: Option<UsersAndGroups>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apparmor_profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<Seccomp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Top-level in BundleGen's schema (also accepted under `logging`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journald_options: Option<JournaldOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dobby: Option<Dobby>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<Ipc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minidump: Option<Minidump>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oomcrash: Option<Oomcrash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tarball: Option<Tarball>,
    /// Extra Dobby plugins passed through to `rdkPlugins` as written
    /// (`{required, dependsOn, data}` per plugin).
    #[serde(rename = "rdkPlugins", skip_serializing_if = "Option::is_none")]
    pub rdk_plugins: Option<BTreeMap<String, PluginEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    // ---- extensions (docs/platforms.md) ----
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<Display>,
    /// Standard container path → where this device keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_mappings: Option<BTreeMap<String, String>>,
    /// Capabilities removed from whatever set the bundle would get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_capabilities: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Arch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rdk {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_features: Option<Vec<String>>,
    /// Extension: RDK services the device offers to apps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hardware {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graphics: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ram: Option<Size>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent: Option<PersistentStorage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp: Option<TempStorage>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistentStorage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_size: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_size: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TempStorage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_size: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_size: Option<Size>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_mounts: Option<Vec<Mount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envvar: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devs: Option<Vec<GpuDevice>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gfx_libs: Option<Vec<GfxLib>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub westeros: Option<Westeros>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wayland_display: Option<String>,
}

/// An OCI mount as templates write it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub destination: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Mount {
    /// Whether the source is a path on the device (a bind mount) rather
    /// than a file system type such as `tmpfs` or `proc`.
    pub fn is_bind(&self) -> bool {
        self.kind.as_deref() == Some("bind")
            || self.options.iter().any(|o| o == "bind" || o == "rbind")
    }

    /// The first path of the mount that is not an [`abs_path`]: the
    /// destination, or the source of a bind mount; as (field, value).
    pub fn bad_path(&self) -> Option<(&'static str, &str)> {
        if !abs_path(&self.destination) {
            return Some(("destination", &self.destination));
        }
        match self.source.as_deref() {
            Some(s) if self.is_bind() && !abs_path(s) => Some(("source", s)),
            _ => None,
        }
    }
}

/// The form every path a platform, app metadata or operator file names
/// must have, quoted in errors.
pub const ABS_PATH_FORM: &str =
    "an absolute path without `..` components, e.g. \"/usr/lib/libEGL.so.1\"";

/// Whether `p` is a path of [`ABS_PATH_FORM`]. Device paths are used as
/// written (as mount sources, library paths, device nodes) and never looked
/// up on the build machine, so they must mean the same thing on the device
/// whatever its current directory and its symlinks (above a `..`). `{id}`
/// is allowed: it is replaced by the app id, which cannot be `..`.
pub fn abs_path(p: &str) -> bool {
    p.starts_with('/') && !p.contains('\0') && (!p.contains("..") || !p.split('/').any(|c| c == ".."))
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuDevice {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    pub major: u32,
    pub minor: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct GfxLib {
    pub src: String,
    pub dst: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Westeros {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_socket: Option<String>,
}

/// One rdkPlugin entry as `config.json` holds it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginEntry {
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default = "empty_object")]
    pub data: Value,
}

fn yes() -> bool {
    true
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ResourceLimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Root {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersAndGroups {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid_map: Option<Vec<IdMap>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid_map: Option<Vec<IdMap>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Extension: per-app uid/gid allocation (see [`super::appids`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_range: Option<super::appids::AppRange>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdMap {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

/// Seccomp as the OCI runtime spec writes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<Vec<Syscall>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Syscall {
    pub names: Vec<String>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<SyscallArg>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallArg {
    pub index: u32,
    pub value: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_two: Option<u64>,
    pub op: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogMode {
    File,
    Journald,
    Devnull,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Logging {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<LogMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<String>,
    /// Maximum log size (file sink): a size string or a byte count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journald_options: Option<JournaldOptions>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JournaldOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dobby {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_dependencies: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dobby_init_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate_compliant_config: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_launcher_executable_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_launcher_parameters_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Ipc {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Minidump {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Oomcrash {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tarball {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_ownership_same_as_user: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_mask: Option<FileMask>,
}

/// `tarball.fileMask`: an octal permission mask such as `"770"` (`0o`
/// prefix allowed), at most `777`, written back as three octal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMask(pub u32);

impl std::str::FromStr for FileMask {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        u32::from_str_radix(text.trim().trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .map(FileMask)
            .ok_or_else(|| format!("{text:?} is not an octal permission mask such as \"770\""))
    }
}

impl<'de> Deserialize<'de> for FileMask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for FileMask {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:03o}", self.0))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Network {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Display {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolutions: Vec<Resolution>,
}

/// A display mode written `"1920x1080"` or `"1920x1080@60"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
    pub refresh_hz: Option<u32>,
}

impl std::fmt::Display for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)?;
        match self.refresh_hz {
            Some(hz) => write!(f, "@{hz}"),
            None => Ok(()),
        }
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid resolution {s:?}: expected WIDTHxHEIGHT or WIDTHxHEIGHT@HZ, e.g. \"1920x1080@60\""
            )
        };
        let (mode, hz) = match s.split_once('@') {
            Some((m, hz)) => (m, Some(hz.parse::<u32>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let (w, h) = mode.split_once('x').ok_or_else(bad)?;
        let (width, height) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
        if width == 0 || height == 0 {
            return Err(bad());
        }
        Ok(Resolution {
            width,
            height,
            refresh_hz: hz,
        })
    }
}

impl<'de> Deserialize<'de> for Resolution {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Resolution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Dobby's rule for rdkPlugins keys: `[a-z]+`.
pub(crate) fn is_plugin_name(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase())
}

/// The runtime-spec form of an rlimit: `RLIMIT_[A-Z]+`, soft ≤ hard.
pub(crate) fn check_rlimit(r: &ResourceLimit) -> Result<(), String> {
    let ok = r
        .kind
        .strip_prefix("RLIMIT_")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_uppercase()));
    if !ok {
        return Err(format!(
            "type {:?} is not an rlimit name like \"RLIMIT_NOFILE\"",
            r.kind
        ));
    }
    if r.soft > r.hard {
        return Err(format!(
            "{}: soft limit {} is above the hard limit {}",
            r.kind, r.soft, r.hard
        ));
    }
    Ok(())
}
