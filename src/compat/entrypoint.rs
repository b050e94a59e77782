//! `process.args[0]`: does it resolve inside the final rootfs to something
//! the device can execute?

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DEFAULT_PATH, Incompatible};
use crate::diag::Silent;
use crate::elf::{self, ElfInfo, ElfScan};
use crate::ldso::Loader;
use crate::rootfs::{self, Resolved};
use crate::libmatch::{Action, MatchPlan};
use crate::platform::{LibsInventory, Platform};

/// Directories where an entrypoint found missing is looked for under the
/// same file name (the merged-usr mix-up of multi-layer images).
const BIN_DIRS: &[&str] = &[
    "/sbin",
    "/usr/sbin",
    "/bin",
    "/usr/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
];

/// The kernel follows at most this many `#!` interpreters.
const MAX_SCRIPTS: usize = 4;

/// Where a command resolves in a rootfs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Located {
    /// The in-root path as found (through `PATH` for a bare name).
    pub path: String,
    /// The same with symlinks resolved in the rootfs.
    pub real: String,
    /// `#!` scripts run on the way, outermost first (real paths).
    pub scripts: Vec<String>,
    /// ELF files the kernel executes: the entrypoint itself, or the
    /// interpreters of its scripts (`env`, then what `env` runs).
    pub elf: Vec<String>,
}

/// What [`check_entrypoint`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EntrypointInfo {
    #[serde(flatten)]
    pub located: Located,
    /// Architecture of the executed ELF file (OCI spelling).
    pub arch: String,
    /// `PT_INTERP` of the executed ELF file; `None` when static.
    pub interpreter: Option<String>,
    /// Sonames it loads, in load order.
    pub libraries: Vec<String>,
}

/// The entrypoint as library matching takes it: the ELF files executed to
/// run `command` (found as [`locate_command`] finds it), or why it cannot
/// be located.
pub fn entrypoint_roots(root: &Path, command: &str, env_path: Option<&str>) -> crate::libmatch::Entrypoint {
    crate::libmatch::Entrypoint {
        command: command.to_owned(),
        elf: locate_command(root, command, env_path).map(|l| l.elf).map_err(|e| e.to_string()),
    }
}

/// Resolves `arg0` in the rootfs as `execvp` in the container would: a
/// name with `/` is a path (relative to `/`), a bare name is looked up in
/// `env_path` (default [`DEFAULT_PATH`]). Scripts are followed to their
/// interpreters. Symlinks are resolved inside the rootfs.
pub fn locate_command(
    root: &Path,
    arg0: &str,
    env_path: Option<&str>,
) -> Result<Located, Incompatible> {
    locate(root, arg0, env_path, 0)
}

fn locate(
    root: &Path,
    arg0: &str,
    env_path: Option<&str>,
    depth: usize,
) -> Result<Located, Incompatible> {
    let (path, found) = find(root, arg0, env_path)?;
    let real = found.path();
    let host = host(root, &real);
    let st = found.stat().map_err(|source| Incompatible::Read {
        path: real.clone(),
        source,
    })?;
    if found.is_dir() {
        return Err(Incompatible::IsDirectory { path });
    }
    let mode = st.st_mode;
    if mode & 0o111 == 0 {
        return Err(Incompatible::NotExecutable {
            path,
            mode: mode & 0o7777,
        });
    }
    if elf::read(&host).ok().flatten().is_some() {
        return Ok(Located {
            path,
            real: real.clone(),
            scripts: Vec::new(),
            elf: vec![real],
        });
    }
    let Some((interp, arg)) = found.open_file().and_then(shebang).map_err(|source| Incompatible::Read {
        path: real.clone(),
        source,
    })?
    else {
        return Err(Incompatible::NotRunnable { path });
    };
    if depth + 1 >= MAX_SCRIPTS {
        return Err(Incompatible::TooManyInterpreters { path });
    }
    let wrap = |source| Incompatible::Script {
        script: path.clone(),
        source: Box::new(source),
    };
    let mut inner = locate(root, &interp, env_path, depth + 1).map_err(wrap)?;
    // `#!/usr/bin/env python3`: env runs python3 through PATH.
    if inner.real.rsplit('/').next() == Some("env")
        && let Some(prog) = arg.filter(|a| !a.starts_with('-'))
    {
        let target = locate(root, &prog, env_path, depth + 1).map_err(wrap)?;
        inner.scripts.extend(target.scripts);
        inner.elf.extend(target.elf);
    }
    let mut scripts = vec![real.clone()];
    scripts.extend(inner.scripts);
    Ok(Located {
        path,
        real,
        scripts,
        elf: inner.elf,
    })
}

/// `(path as found, what it resolves to)` of a command.
fn find(root: &Path, arg0: &str, env_path: Option<&str>) -> Result<(String, Resolved), Incompatible> {
    if arg0.contains('/') {
        let path = if arg0.starts_with('/') {
            arg0.to_owned()
        } else {
            format!("/{arg0}")
        };
        return match existing_file(root, &path) {
            Some(real) => Ok((path, real)),
            None => {
                let (alternatives, hint) = alternatives(root, &path);
                Err(Incompatible::EntrypointMissing {
                    path,
                    alternatives,
                    hint,
                })
            }
        };
    }
    let search = env_path.unwrap_or(DEFAULT_PATH);
    for dir in search.split(':') {
        let dir = if dir.is_empty() { "/" } else { dir };
        let path = format!("{}/{arg0}", dir.trim_end_matches('/'));
        if let Some(found) = existing_file(root, &path)
            && found.stat().is_ok_and(|st| st.st_mode & 0o111 != 0)
        {
            return Ok((path, found));
        }
    }
    let (alternatives, _) = alternatives(root, &format!("/{arg0}"));
    Err(Incompatible::NotInPath {
        name: arg0.to_owned(),
        path: search.to_owned(),
        alternatives,
        hint: "use the full path in the entrypoint, or add its directory to PATH".into(),
    })
}

/// What `path` resolves to inside the rootfs, when something is there.
fn existing_file(root: &Path, path: &str) -> Option<Resolved> {
    rootfs::Walker::new(root).ok()?.resolve(path.as_bytes()).ok()
}

fn host(root: &Path, real: &str) -> PathBuf {
    root.join(real.trim_start_matches('/'))
}

/// Files with the same name in the standard bin directories, and what to
/// do about the first one.
fn alternatives(root: &Path, missing: &str) -> (Vec<String>, String) {
    let name = missing.rsplit('/').next().unwrap_or(missing);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dir in BIN_DIRS {
        let cand = format!("{dir}/{name}");
        if cand == missing {
            continue;
        }
        if let Some(found) = existing_file(root, &cand)
            && seen.insert(found.path())
        {
            out.push(cand);
        }
    }
    let Some(first) = out.first() else {
        return (out, String::new());
    };
    let missing_dir = parent(missing);
    let first_dir = parent(first);
    let link = if rootfs::resolve(root, missing_dir).is_err() {
        let target = if parent(missing_dir) == "/" {
            first_dir.trim_start_matches('/').to_owned()
        } else {
            first_dir.to_owned()
        };
        format!("{missing_dir} -> {target}")
    } else {
        format!("{missing} -> {first}")
    };
    let hint = format!("set OCI_IMAGE_ENTRYPOINT to it, or add a {link} link");
    (out, hint)
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The interpreter and its optional argument from a `#!` line.
fn shebang(mut f: std::fs::File) -> std::io::Result<Option<(String, Option<String>)>> {
    let mut buf = [0u8; 256];
    let n = f.read(&mut buf)?;
    let head = &buf[..n];
    let Some(rest) = head.strip_prefix(b"#!") else {
        return Ok(None);
    };
    let line = rest.split(|&b| b == b'\n').next().unwrap_or(rest);
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, Some(a.trim().to_owned()).filter(|a| !a.is_empty())),
        None => (line, None),
    };
    if interp.is_empty() {
        return Ok(None);
    }
    Ok(Some((interp.to_owned(), arg)))
}

/// Checks `args[0]` in the final rootfs: it exists (in-root symlinks, or
/// `PATH` for a bare name), is executable, is ELF code for the platform's
/// machine (or a script whose interpreter is), and every library it loads
/// comes from the bundle or the device according to `plan`.
pub fn check_entrypoint(
    rootfs: &Path,
    args: &[String],
    env_path: Option<&str>,
    platform: &Platform,
    scan: &ElfScan,
    plan: &MatchPlan,
    inventory: Option<&LibsInventory>,
) -> Result<EntrypointInfo, Incompatible> {
    let arg0 = args.first().ok_or(Incompatible::NoEntrypoint)?;
    let located = locate_command(rootfs, arg0, env_path)?;
    let mut loader = Loader::new(rootfs, &Silent).with_scan(scan);
    let mut result = None;
    for path in &located.elf {
        let Some((_, info)) = loader.info(path) else {
            return Err(Incompatible::NotRunnable { path: path.clone() });
        };
        if let Some(p) = platform.oci_arch()
            && info.oci_arch() != p
        {
            return Err(Incompatible::EntrypointArch {
                path: path.clone(),
                elf_arch: format!("{} ({}-bit)", info.arch_name(), info.class.bits()),
                platform: platform.name.clone(),
                platform_arch: p.to_owned(),
            });
        }
        result = Some(libraries(
            &mut loader,
            path,
            &info,
            plan,
            inventory,
        )?);
    }
    let (arch, interpreter, libraries) = result.ok_or(Incompatible::NotRunnable {
        path: located.path.clone(),
    })?;
    Ok(EntrypointInfo {
        located,
        arch,
        interpreter,
        libraries,
    })
}

type Libs = (String, Option<String>, Vec<String>);

/// What the ELF file at `path` loads, checked against the plan.
fn libraries(
    loader: &mut Loader,
    path: &str,
    info: &ElfInfo,
    plan: &MatchPlan,
    inventory: Option<&LibsInventory>,
) -> Result<Libs, Incompatible> {
    let closure = loader.closure(path).map_err(|e| Incompatible::Read {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let removed: BTreeSet<&String> = plan.remove.iter().collect();
    let mounted: BTreeSet<&str> = plan
        .mounts
        .iter()
        .map(|m| m.destination.rsplit('/').next().unwrap_or(""))
        .collect();
    let mount_dests: BTreeSet<String> = plan.mounts.iter().map(|m| m.destination.clone()).collect();
    let mut problems = Vec::new();
    if let Some(interp) = &info.interpreter {
        let canon = rootfs::canonical_with(|d| loader.resolve(d), interp);
        let present = closure
            .interpreter_found
            .as_ref()
            .is_some_and(|f| !removed.contains(&f.real));
        if !present && !mount_dests.contains(&canon) && !mount_dests.contains(interp) {
            return Err(Incompatible::MissingInterpreter {
                path: path.to_owned(),
                interpreter: interp.clone(),
            });
        }
    }
    let mut names = Vec::new();
    for lib in &closure.libs {
        names.push(lib.name.clone());
        if removed.contains(&lib.found.real) && !mounted.contains(lib.name.as_str()) {
            problems.push(format!(
                "{} ({} is removed by the plan)",
                lib.name, lib.found.real
            ));
        }
    }
    for m in &closure.missing {
        names.push(m.name.clone());
        if mounted.contains(m.name.as_str()) {
            continue;
        }
        let why = plan
            .decisions
            .iter()
            .find(|d| d.soname == m.name && d.action == Action::Missing)
            .map(|d| d.reason.clone())
            .unwrap_or_else(|| {
                match inventory.map(|inv| {
                    inv.libs
                        .iter()
                        .any(|l| l.name.ends_with(&format!("/{}", m.name)))
                }) {
                    Some(true) => "the device has it but the plan does not mount it".into(),
                    _ => "not in the image, not on the device".into(),
                }
            });
        problems.push(format!("{} ({why})", m.name));
    }
    if !problems.is_empty() {
        return Err(Incompatible::MissingLibraries {
            path: path.to_owned(),
            libs: problems,
        });
    }
    Ok((info.oci_arch().to_owned(), info.interpreter.clone(), names))
}
