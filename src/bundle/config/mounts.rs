//! `mounts`: the standard set, then the platform's, the app's, the GPU's,
//! libraries, temporary storage and the operator's, in that order.
//!
//! Mount option extensions (removed from what is written):
//! - `X-mount.mkdir`: the mount point is a directory (with `-r`);
//! - `X-mount.no`: not mounted; only its mount point is created;
//! - `X-dobby.optional`: mounted by Dobby's storage plugin only when the
//!   source exists (`rdkPlugins.storage.data.dynamic`); for a runtime
//!   without `rdkPlugins` (crun, runc),
//!   as in BundleGen's, an ordinary mount in its place (a plain OCI runtime
//!   has no optional mounts).
//!
//! `{id}` in a source is the app id; `pathMappings` rewrite the host side
//! of bind mounts to where this device keeps a standard path.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ConfigError, ConfigInputs, MountPoint, MountPointKind};
use crate::diag::{Diagnostics, Warning};
use crate::platform::model::Mount;

pub(super) const MKDIR: &str = "X-mount.mkdir";
pub(super) const NO_MOUNT: &str = "X-mount.no";
pub(super) const OPTIONAL: &str = "X-dobby.optional";

/// Options of a read-only library (or DobbyInit) bind mount.
pub(super) const LIB_OPTIONS: [&str; 4] = ["rbind", "nosuid", "nodev", "ro"];

/// A mount on its way into `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OciMount {
    pub destination: String,
    pub kind: Option<String>,
    pub source: Option<String>,
    pub options: Vec<String>,
    /// The mount point is a directory (non-bind mounts, `X-mount.mkdir`,
    /// known directories); otherwise a file.
    pub dir: bool,
}

impl OciMount {
    pub fn bind(source: &str, destination: &str, options: &[&str], dir: bool) -> Self {
        OciMount {
            destination: destination.to_owned(),
            kind: Some("bind".into()),
            source: Some(source.to_owned()),
            options: options.iter().map(|s| (*s).to_owned()).collect(),
            dir,
        }
    }

    fn fs(kind: &str, source: &str, destination: &str, options: &[&str]) -> Self {
        OciMount {
            destination: destination.to_owned(),
            kind: Some(kind.to_owned()),
            source: Some(source.to_owned()),
            options: options.iter().map(|s| (*s).to_owned()).collect(),
            dir: true,
        }
    }

    pub fn is_bind(&self) -> bool {
        self.kind.as_deref() == Some("bind")
            || self.options.iter().any(|o| o == "bind" || o == "rbind")
    }

    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("destination".into(), json!(self.destination));
        if let Some(k) = &self.kind {
            m.insert("type".into(), json!(k));
        }
        if let Some(s) = &self.source {
            m.insert("source".into(), json!(s));
        }
        if !self.options.is_empty() {
            m.insert("options".into(), json!(self.options));
        }
        Value::Object(m)
    }
}

/// The mounts collected so far.
#[derive(Debug, Default)]
pub(super) struct Mounts {
    pub list: Vec<OciMount>,
    /// `X-dobby.optional` mounts, the option removed (a runtime with
    /// `rdkPlugins`).
    pub optional: Vec<OciMount>,
    /// Destinations of `X-dobby.optional` mounts kept as ordinary mounts
    /// (a runtime without them).
    pub made_plain: Vec<String>,
    /// Mount points to create whatever `-r` says (`X-mount.no`).
    pub points: Vec<MountPoint>,
}

impl Mounts {
    /// Adds a mount written in a template, app metadata or operator file:
    /// checks it, substitutes `{id}`, applies `pathMappings`, handles the
    /// `X-` options. `key` names it in messages (`mounts[2]`).
    pub fn add_declared(
        &mut self,
        m: &Mount,
        key: &str,
        inp: &ConfigInputs<'_>,
    ) -> Result<(), ConfigError> {
        if !crate::platform::model::abs_path(&m.destination) {
            return Err(ConfigError::Invalid {
                subject: key.to_owned(),
                message: format!(
                    "destination {:?} is not an absolute container path",
                    m.destination
                ),
            });
        }
        let mut options = Vec::new();
        let (mut mkdir, mut no_mount, mut optional) = (false, false, false);
        for o in &m.options {
            match o.as_str() {
                MKDIR => mkdir = true,
                NO_MOUNT => no_mount = true,
                OPTIONAL => optional = true,
                _ => options.push(o.clone()),
            }
        }
        if no_mount {
            self.points.push(MountPoint {
                path: m.destination.clone(),
                kind: if mkdir {
                    MountPointKind::Dir
                } else {
                    MountPointKind::File
                },
            });
            return Ok(());
        }
        let mut om = OciMount {
            destination: m.destination.clone(),
            kind: m.kind.clone(),
            source: m.source.as_ref().map(|s| s.replace("{id}", &inp.app.id)),
            options,
            dir: mkdir,
        };
        if om.is_bind() {
            om.source = om.source.map(|s| map_path(&s, inp));
            if om.source.is_none() {
                return Err(ConfigError::Invalid {
                    subject: key.to_owned(),
                    message: "a bind mount needs a source".into(),
                });
            }
        } else {
            om.dir = true;
        }
        if optional && inp.runtime.rdk_plugins {
            self.optional.push(om);
        } else if optional {
            self.made_plain.push(om.destination.clone());
            self.push(om);
        } else {
            self.push(om);
        }
        Ok(())
    }

    /// Adds a mount, skipping an exact duplicate.
    pub fn push(&mut self, m: OciMount) {
        if !self.list.contains(&m) {
            self.list.push(m);
        }
    }

    /// Adds a read-only library bind mount; a second mount of another file
    /// at the same destination is dropped with a warning.
    pub fn push_lib(&mut self, source: &str, destination: &str, diag: &dyn Diagnostics) {
        if let Some(old) = self
            .list
            .iter()
            .find(|o| o.destination == destination && o.is_bind())
        {
            if old.source.as_deref() != Some(source) {
                diag.warning(Warning::new(
                    destination.to_owned(),
                    format!(
                        "bind-mounted from {} already; {source} is not mounted there",
                        old.source.as_deref().unwrap_or("?")
                    ),
                ));
            }
            return;
        }
        self.push(OciMount::bind(source, destination, &LIB_OPTIONS, false));
    }

    /// The mount points `-r` creates: every destination, sorted, a
    /// directory winning over a file at the same path.
    pub fn all_points(&self) -> Vec<MountPoint> {
        let mut by_path: BTreeMap<&str, MountPointKind> = BTreeMap::new();
        for m in &self.list {
            let kind = if m.dir {
                MountPointKind::Dir
            } else {
                MountPointKind::File
            };
            let e = by_path.entry(&m.destination).or_insert(kind);
            if kind == MountPointKind::Dir {
                *e = kind;
            }
        }
        by_path
            .into_iter()
            .map(|(path, kind)| MountPoint {
                path: path.to_owned(),
                kind,
            })
            .collect()
    }
}

/// Rewrites a host path by the platform's `pathMappings` (longest matching
/// prefix, whole components only).
pub(super) fn map_path(path: &str, inp: &ConfigInputs<'_>) -> String {
    let Some(maps) = inp.platform.spec.path_mappings.as_ref() else {
        return path.to_owned();
    };
    let best = maps
        .iter()
        .filter(|(from, _)| {
            let from = from.trim_end_matches('/');
            path == from
                || path
                    .strip_prefix(from)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|(from, _)| from.trim_end_matches('/').len());
    match best {
        Some((from, to)) => {
            let rest = &path[from.trim_end_matches('/').len()..];
            format!("{}{rest}", to.trim_end_matches('/'))
        }
        None => path.to_owned(),
    }
}

/// The mounts every container gets (umoci's defaults, as BundleGen's
/// bundles have them). With a user namespace `/sys` is a bind mount (sysfs
/// cannot be mounted there) and `/dev/pts` has no `gid=5`.
pub(super) fn standard(inp: &ConfigInputs<'_>, userns: bool, open_network: bool) -> Vec<OciMount> {
    let mut v = vec![
        OciMount::fs("proc", "proc", "/proc", &["nosuid", "noexec", "nodev"]),
        OciMount::fs(
            "tmpfs",
            "tmpfs",
            "/dev",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
    ];
    let mut pts = OciMount::fs(
        "devpts",
        "devpts",
        "/dev/pts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ],
    );
    if !userns {
        pts.options.push("gid=5".into());
    }
    v.push(pts);
    v.push(OciMount::fs(
        "tmpfs",
        "shm",
        "/dev/shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ));
    v.push(OciMount::fs(
        "mqueue",
        "mqueue",
        "/dev/mqueue",
        &["nosuid", "noexec", "nodev"],
    ));
    if userns {
        let sys = map_path("/sys", inp);
        v.push(OciMount::bind(
            &sys,
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
            true,
        ));
    } else {
        v.push(OciMount::fs(
            "sysfs",
            "sysfs",
            "/sys",
            &["nosuid", "noexec", "nodev", "ro"],
        ));
        v.push(OciMount::fs(
            "cgroup",
            "cgroup",
            "/sys/fs/cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ));
    }
    if open_network {
        // Host networking: the host's resolver configuration, in both
        // modes. Dobby's networking plugin adds this mount itself only for
        // `nat` and `none` (NetworkingPlugin::postInstallation, and only
        // without dnsmasq, which writes its own file); an `open` container
        // gets nothing from it. Every restricting flag is set so that a
        // locked flag of the source mount is never cleared inside a user
        // namespace.
        let src = map_path("/etc/resolv.conf", inp);
        v.push(OciMount::bind(
            &src,
            "/etc/resolv.conf",
            &["rbind", "nosuid", "nodev", "noexec", "ro"],
            false,
        ));
    }
    v
}

/// A tmpfs for temporary storage, owned by the container's user.
pub(super) fn tmpfs(destination: &str, size: u64, uid: u32, gid: u32) -> OciMount {
    let mut m = OciMount::fs(
        "tmpfs",
        "tmpfs",
        destination,
        &["nosuid", "strictatime", "mode=755"],
    );
    m.options.push(format!("size={size}"));
    if uid != 0 {
        m.options.push(format!("uid={uid}"));
    }
    if gid != 0 {
        m.options.push(format!("gid={gid}"));
    }
    m
}

/// Mount flags (`sys/mount.h`) for Dobby's storage plugin, which takes
/// flags and a data string instead of mount options: returns the flags and
/// the options that are not flags.
pub(super) fn flags_and_data(options: &[String]) -> (i64, Vec<String>) {
    let mut flags = 0i64;
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= 1,
            "nosuid" => flags |= 2,
            "nodev" => flags |= 4,
            "noexec" => flags |= 8,
            "bind" => flags |= 4096,
            "rbind" => flags |= 4096 | 16384,
            "rw" | "suid" | "dev" | "exec" | "defaults" => {}
            _ => data.push(o.clone()),
        }
    }
    (flags, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_sys_mount_h() {
        let o: Vec<String> = ["rbind", "rw", "nosuid", "mode=755"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            flags_and_data(&o),
            (4096 | 16384 | 2, vec!["mode=755".to_string()])
        );
    }

    #[test]
    fn points_prefer_directories() {
        let mut m = Mounts::default();
        m.push(OciMount::bind("/a", "/x", &["rbind"], false));
        m.push(OciMount::bind("/b", "/x", &["rbind"], true));
        m.push(OciMount::fs("tmpfs", "tmpfs", "/a", &[]));
        let pts = m.all_points();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].path, "/a");
        assert_eq!(pts[1].kind, MountPointKind::Dir);
    }
}
