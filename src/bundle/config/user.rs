//! Who the container process runs as, and how ids map to the host.
//!
//! Sources, first match wins: the platform's `usersAndGroups.user`; without
//! a user namespace, the ids allocated from `usersAndGroups.appRange`; the
//! image's `User` (`name`, `uid`, `name:group`, `uid:gid`, ...) resolved
//! against the rootfs's `etc/passwd` and `etc/group`; `0:0`.
//!
//! With a user namespace, `appRange` gives the *host* ids instead: the
//! container's user is mapped to them one to one, unless the platform lists
//! `uidMap`/`gidMap` itself.

use std::io;
use std::path::Path;

use serde_json::{Value, json};

use super::{ConfigError, ConfigInputs};
use crate::diag::{Diagnostics, Warning};
use crate::platform::model::IdMap;
use crate::rootfs::Walker;

/// In-container ids of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone)]
pub(super) struct UserPlan {
    pub process: Ids,
    pub userns: bool,
    pub uid_mappings: Vec<IdMap>,
    pub gid_mappings: Vec<IdMap>,
    /// The ids on the host (through the mappings when there are any).
    pub host: (u32, u32),
}

impl UserPlan {
    pub fn process_json(&self) -> Value {
        json!({
            "uid": self.process.uid,
            "gid": self.process.gid,
            "additionalGids": self.process.additional_gids,
        })
    }
}

pub(super) fn plan(
    inp: &ConfigInputs<'_>,
    diag: &dyn Diagnostics,
) -> Result<UserPlan, ConfigError> {
    let spec = &inp.platform.spec;
    let ug = spec.users_and_groups.as_ref();
    let platform_user = ug.and_then(|u| u.user.as_ref()).map(|u| Ids {
        uid: u.uid,
        gid: u.gid,
        additional_gids: u.additional_gids.clone(),
    });
    let allocated = match ug.and_then(|u| u.app_range.as_ref()) {
        Some(r) => Some(
            r.ids_for(&inp.app.id, &Default::default(), &Default::default())
                .map_err(|e| ConfigError::AppIds {
                    platform: inp.platform.name.clone(),
                    source: e,
                })?,
        ),
        None => None,
    };
    let image_user = match inp.image.config.as_ref().and_then(|c| c.user.as_deref()) {
        Some(u) if !u.trim().is_empty() => Some(resolve_image_user(inp.rootfs, u.trim())?),
        _ => None,
    };
    let uid_map = ug.and_then(|u| u.uid_map.clone()).unwrap_or_default();
    let gid_map = ug.and_then(|u| u.gid_map.clone()).unwrap_or_default();
    let mut userns = !spec.disable_user_namespacing.unwrap_or(false);
    let have_maps = !uid_map.is_empty() || !gid_map.is_empty() || allocated.is_some();
    if userns && !have_maps {
        let what = if inp.runtime.adds_id_maps {
            format!("{} must add them when it starts the container", inp.runtime.title)
        } else {
            userns = false;
            format!("a {} bundle cannot leave them to Dobby: built without a user namespace", inp.runtime.name)
        };
        diag.warning(Warning::new(
            inp.platform.name.clone(),
            format!(
                "usersAndGroups: user namespaces are enabled but no uidMap/gidMap or appRange is given; {what}"
            ),
        ));
    }

    if !userns {
        let process = platform_user
            .or_else(|| {
                allocated.map(|a| Ids {
                    uid: a.uid,
                    gid: a.gid,
                    additional_gids: Vec::new(),
                })
            })
            .or(image_user)
            .unwrap_or(Ids {
                uid: 0,
                gid: 0,
                additional_gids: Vec::new(),
            });
        let host = (process.uid, process.gid);
        return Ok(UserPlan {
            process,
            userns,
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            host,
        });
    }

    let process = platform_user.or(image_user).unwrap_or(Ids {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
    });
    let (uid_mappings, gid_mappings) = match (uid_map.is_empty() && gid_map.is_empty(), allocated) {
        (true, Some(a)) => (
            vec![IdMap {
                container_id: process.uid,
                host_id: a.uid,
                size: 1,
            }],
            vec![IdMap {
                container_id: process.gid,
                host_id: a.gid,
                size: 1,
            }],
        ),
        _ => (uid_map, gid_map),
    };
    let host_uid = map_id(process.uid, &uid_mappings);
    let host_gid = map_id(process.gid, &gid_mappings);
    if have_maps {
        let mut unmapped = Vec::new();
        if host_uid.is_none() {
            unmapped.push(format!("uid {}", process.uid));
        }
        if host_gid.is_none() {
            unmapped.push(format!("gid {}", process.gid));
        }
        for g in &process.additional_gids {
            if map_id(*g, &gid_mappings).is_none() {
                unmapped.push(format!("additional gid {g}"));
            }
        }
        if !unmapped.is_empty() {
            diag.warning(Warning::new(
                inp.platform.name.clone(),
                format!(
                    "usersAndGroups: no uidMap/gidMap entry maps the container's {}; the runtime will refuse to start it",
                    unmapped.join(", ")
                ),
            ));
        }
    }
    let host = (
        host_uid.unwrap_or(process.uid),
        host_gid.unwrap_or(process.gid),
    );
    Ok(UserPlan {
        process,
        userns,
        uid_mappings,
        gid_mappings,
        host,
    })
}

/// The host id a container id maps to.
fn map_id(id: u32, maps: &[IdMap]) -> Option<u32> {
    maps.iter().find_map(|m| {
        let off = id.checked_sub(m.container_id)?;
        (off < m.size).then(|| m.host_id.checked_add(off)).flatten()
    })
}

/// Resolves an image `User` against the rootfs: `name`, `uid`, `name:group`,
/// `uid:gid`, `name:gid`, `uid:group`.
pub(super) fn resolve_image_user(rootfs: &Path, spec: &str) -> Result<Ids, ConfigError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let entry = passwd.as_deref().and_then(|p| {
        p.lines()
            .filter_map(parse_passwd)
            .find(|(name, uid, _)| *name == user || user.parse::<u32>().is_ok_and(|n| n == *uid))
    });
    let (uid, primary_gid) = match (user.parse::<u32>(), entry) {
        (_, Some((_, uid, gid))) => (uid, gid),
        (Ok(uid), None) => (uid, 0),
        (Err(_), None) => {
            return Err(ConfigError::UnknownUser {
                user: user.to_owned(),
                spec: spec.to_owned(),
                file: if passwd.is_some() {
                    "etc/passwd"
                } else {
                    "etc/passwd (missing)"
                },
            });
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let groups = read_in_root(rootfs, "etc/group")?;
                groups
                    .as_deref()
                    .and_then(|t| t.lines().filter_map(parse_group).find(|(n, _)| *n == g))
                    .map(|(_, gid)| gid)
                    .ok_or_else(|| ConfigError::UnknownGroup {
                        group: g.to_owned(),
                        spec: spec.to_owned(),
                        file: if groups.is_some() {
                            "etc/group"
                        } else {
                            "etc/group (missing)"
                        },
                    })?
            }
        },
    };
    Ok(Ids {
        uid,
        gid,
        additional_gids: Vec::new(),
    })
}

fn parse_passwd(line: &str) -> Option<(&str, u32, u32)> {
    let mut f = line.split(':');
    let name = f.next()?;
    if name.is_empty() || name.starts_with('#') {
        return None;
    }
    let _pw = f.next()?;
    Some((
        name,
        f.next()?.trim().parse().ok()?,
        f.next()?.trim().parse().ok()?,
    ))
}

fn parse_group(line: &str) -> Option<(&str, u32)> {
    let mut f = line.split(':');
    let name = f.next()?;
    if name.is_empty() || name.starts_with('#') {
        return None;
    }
    let _pw = f.next()?;
    Some((name, f.next()?.trim().parse().ok()?))
}

/// Reads a file of the rootfs, resolving symlinks *inside* it (an image's
/// `etc/passwd -> /usr/share/...` never reaches the build host's files).
/// `Ok(None)` when it does not exist.
pub(super) fn read_in_root(rootfs: &Path, rel: &str) -> Result<Option<String>, ConfigError> {
    let err = |source: io::Error| ConfigError::ReadRootfs {
        path: rootfs.join(rel),
        source,
    };
    let bytes = Walker::new(rootfs)
        .and_then(|mut w| w.read_file(rel.as_bytes(), MAX_ACCOUNT_FILE))
        .map_err(err)?;
    Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// `etc/passwd` and `etc/group` larger than this are refused.
const MAX_ACCOUNT_FILE: u64 = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs_with(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::write(etc.join("passwd"), passwd).expect("write");
        std::fs::write(etc.join("group"), group).expect("write");
        dir
    }

    #[test]
    fn user_forms_resolve() {
        let r = rootfs_with(
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
            "root:x:0:\napps:x:1001:\nvideo:x:44:app\n",
        );
        let ids = |s| resolve_image_user(r.path(), s).map(|i| (i.uid, i.gid));
        assert_eq!(ids("app").ok(), Some((1000, 1001)));
        assert_eq!(ids("1000").ok(), Some((1000, 1001)));
        assert_eq!(ids("app:video").ok(), Some((1000, 44)));
        assert_eq!(ids("1000:44").ok(), Some((1000, 44)));
        assert_eq!(ids("4242").ok(), Some((4242, 0)));
        let e = ids("nobody").expect_err("unknown user");
        assert!(e.to_string().contains("\"nobody\""), "{e}");
        let e = ids("app:audio").expect_err("unknown group");
        assert!(e.to_string().contains("\"audio\""), "{e}");
    }

    #[test]
    fn symlinked_passwd_stays_in_root() {
        let r = rootfs_with("", "");
        let p = r.path().join("etc/passwd");
        std::fs::remove_file(&p).expect("rm");
        std::fs::create_dir_all(r.path().join("usr/share")).expect("mkdir");
        std::fs::write(r.path().join("usr/share/passwd"), "svc:x:7:8::/:/bin/sh\n").expect("write");
        // Absolute target: resolved inside the rootfs, not on the host.
        std::os::unix::fs::symlink("/usr/share/passwd", &p).expect("symlink");
        let ids = resolve_image_user(r.path(), "svc").expect("resolved in root");
        assert_eq!((ids.uid, ids.gid), (7, 8));
        std::fs::remove_file(&p).expect("rm");
        std::os::unix::fs::symlink("/../../../../etc/passwd", &p).expect("symlink");
        assert!(resolve_image_user(r.path(), "root").is_err());
    }

    #[test]
    fn mapping_lookup() {
        let maps = [IdMap {
            container_id: 0,
            host_id: 30000,
            size: 10,
        }];
        assert_eq!(map_id(3, &maps), Some(30003));
        assert_eq!(map_id(10, &maps), None);
    }
}
