//! A model of glibc's dynamic loader search, run against a rootfs on disk.
//!
//! Nothing is executed and the host's own libraries are never looked at:
//! every path is resolved inside the rootfs by the rootfs resolver
//! ([`crate::rootfs::resolve`], through a [`Memo`]), with absolute symlink
//! targets taken relative to the rootfs and `..` clamped at its top. For each `DT_NEEDED` entry the search order is the one `ld.so`
//! documents:
//!
//! 1. a name containing `/` is used as an (in-root) path;
//! 2. if the requesting object has no `DT_RUNPATH`: the `DT_RPATH` of the
//!    requester, then of the object that loaded it, and so on up to the
//!    executable (an object's `DT_RPATH` counts only when that object has no
//!    `DT_RUNPATH`);
//! 3. `LD_LIBRARY_PATH` is not used (the device sets none for apps);
//! 4. the requester's `DT_RUNPATH` (not inherited);
//! 5. the directories of `/etc/ld.so.conf` and its `include`s, in file order
//!    (standing in for `ld.so.cache`, which `ldconfig` builds from them);
//! 6. unless the requester is `DF_1_NODEFLIB`: the multiarch directories of
//!    the machine (`/lib/aarch64-linux-gnu`, `/usr/lib/aarch64-linux-gnu`),
//!    then for 64-bit objects `/lib64` and `/usr/lib64`, then `/lib` and
//!    `/usr/lib`.
//!
//! `$ORIGIN` is the directory of the requesting object (for the executable,
//! after resolving symlinks), `$LIB` is `lib64` for 64-bit and `lib` for
//! 32-bit objects, or `lib/<triplet>` when the rootfs has a multiarch layout
//! (Debian's configuration), and `$PLATFORM` is the `AT_PLATFORM` string of
//! the machine (`x86_64`, `i686`, `aarch64`, `v7l`, ...). A candidate file is
//! accepted only if it is an ELF file of the requester's class, byte order
//! and machine (and ARM float ABI); others are skipped, as `ld.so` does.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::Diagnostics;
use crate::elf::{self, Class, ElfInfo, ElfScan};

mod conf;
mod memo;
use conf::read_conf;
pub use memo::Memo;

/// `include` nesting allowed in `ld.so.conf`.
const MAX_CONF_DEPTH: usize = 16;

fn components(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/').filter(|c| !c.is_empty()).map(str::to_owned)
}

fn host_path(root: &Path, comps: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(comps);
    p
}

/// Joins an in-root directory and a file name.
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Where a library was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// The path the loader opened (`/lib/x86_64-linux-gnu/libc.so.6`).
    pub path: String,
    /// The same with every symlink resolved in the rootfs.
    pub real: String,
}

/// One object of a dependency closure, in load order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Loaded {
    /// The `DT_NEEDED` name that first brought it in.
    pub name: String,
    #[serde(flatten)]
    pub found: Found,
    /// Real in-root paths of the objects that need it, sorted.
    pub needed_by: Vec<String>,
}

/// A `DT_NEEDED` entry that no search directory satisfies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Missing {
    pub name: String,
    pub needed_by: Vec<String>,
}

/// The dependency closure of one object, as `ld.so` would load it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Closure {
    /// The object itself (in-root path as given).
    pub object: String,
    /// `PT_INTERP` as written, and where it is in the rootfs if it exists.
    pub interpreter: Option<String>,
    pub interpreter_found: Option<Found>,
    /// Libraries in breadth-first load order (the interpreter not included).
    pub libs: Vec<Loaded>,
    /// Unresolved names, sorted.
    pub missing: Vec<Missing>,
}

/// Why a closure could not be computed at all.
#[derive(Debug, thiserror::Error)]
pub enum LdsoError {
    #[error("{path}: not found in the rootfs {root}")]
    NotFound {
        path: String,
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not an ELF file")]
    NotElf { path: String },
    #[error("{path}: cannot analyse")]
    Elf {
        path: String,
        #[source]
        source: elf::ElfError,
    },
}

/// The loader model for one rootfs: its configuration, a cache of the
/// ELF facts of every file it looked at and a memo of the paths it
/// resolved. The rootfs must not change while the model is in use.
#[derive(Clone)]
pub struct Loader {
    root: PathBuf,
    conf_dirs: Vec<String>,
    cache: HashMap<String, Option<Arc<ElfInfo>>>,
    resolved: Memo,
}

impl Loader {
    /// Reads `/etc/ld.so.conf` (and its includes) from the rootfs. Problems in
    /// it are reported as warnings; a missing file is normal.
    pub fn new(root: &Path, diag: &dyn Diagnostics) -> Loader {
        let mut conf_dirs = Vec::new();
        read_conf(root, "/etc/ld.so.conf", 0, &mut conf_dirs, diag);
        let mut seen = BTreeSet::new();
        conf_dirs.retain(|d| seen.insert(d.clone()));
        Loader {
            root: root.to_path_buf(),
            conf_dirs,
            cache: HashMap::new(),
            resolved: Memo::new(root),
        }
    }

    /// Seeds the cache from a scan of the same rootfs, so no file is read twice.
    pub fn with_scan(mut self, scan: &ElfScan) -> Loader {
        for (path, info) in &scan.files {
            self.cache
                .insert(path.clone(), Some(Arc::new(info.clone())));
        }
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The model of a copy of its rootfs at `root`: the same tree (hard
    /// links, the same directories and symlinks) in another place, so
    /// everything learnt stays true and the files are read from there.
    pub fn moved_to(mut self, root: &Path) -> Loader {
        self.root = root.to_path_buf();
        self.resolved.move_to(root);
        self
    }

    /// [`crate::rootfs::resolve`] in this model's rootfs, each path
    /// resolved once.
    pub fn resolve(&self, path: &str) -> io::Result<String> {
        self.resolved.resolve(path)
    }

    /// The `ld.so.conf` directories, in order, as written (in-root).
    pub fn conf_dirs(&self) -> &[String] {
        &self.conf_dirs
    }

    /// ELF facts of the file at an in-root path (symlinks resolved), or
    /// `None` if it does not exist or is not a readable ELF file.
    pub fn info(&mut self, path: &str) -> Option<(String, Arc<ElfInfo>)> {
        let real = self.resolve(path).ok()?;
        if let Some(hit) = self.cache.get(&real) {
            return hit.clone().map(|i| (real, i));
        }
        let host = host_path(&self.root, &components(&real).collect::<Vec<_>>());
        let info = match std::fs::metadata(&host) {
            Ok(m) if m.is_file() => elf::read(&host).ok().flatten().map(Arc::new),
            _ => None,
        };
        self.cache.insert(real.clone(), info.clone());
        info.map(|i| (real, i))
    }

    /// The default directories for objects like `obj` (multiarch, lib64, lib).
    pub fn default_dirs(&self, obj: &ElfInfo) -> Vec<String> {
        let mut dirs = Vec::new();
        for t in triplets(obj) {
            dirs.push(format!("/lib/{t}"));
            dirs.push(format!("/usr/lib/{t}"));
        }
        if obj.class == Class::Elf64 {
            dirs.extend(["/lib64".to_owned(), "/usr/lib64".to_owned()]);
        }
        dirs.extend(["/lib".to_owned(), "/usr/lib".to_owned()]);
        dirs
    }

    /// Every directory the loader searches for objects like `obj` when no
    /// RPATH/RUNPATH applies: `ld.so.conf` directories then defaults.
    pub fn system_dirs(&self, obj: &ElfInfo) -> Vec<String> {
        let mut dirs = self.conf_dirs.clone();
        for d in self.default_dirs(obj) {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }

    /// Expands `$ORIGIN`, `$LIB` and `$PLATFORM` (also `${...}`) in one
    /// RPATH/RUNPATH list; `origin` is the requester's directory.
    pub fn expand_path_list(&self, list: &str, origin: &str, obj: &ElfInfo) -> Vec<String> {
        let lib = self.lib_token(obj);
        let platform = platform_token(obj);
        list.split(':')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let mut out = s.to_owned();
                for (token, value) in [
                    ("ORIGIN", origin),
                    ("LIB", lib.as_str()),
                    ("PLATFORM", platform),
                ] {
                    out = out
                        .replace(&format!("${{{token}}}"), value)
                        .replace(&format!("${token}"), value);
                }
                out
            })
            .collect()
    }

    fn lib_token(&self, obj: &ElfInfo) -> String {
        for t in triplets(obj) {
            if crate::rootfs::resolve_dir(&self.root, &format!("/lib/{t}")).is_ok() {
                return format!("lib/{t}");
            }
        }
        if obj.class == Class::Elf64 {
            "lib64".into()
        } else {
            "lib".into()
        }
    }

    /// Finds `name` for `requester` (found at in-root `requester_path`),
    /// loaded through `chain` (its loaders, nearest first, up to the
    /// executable), each given as (in-root path, facts).
    pub fn find(
        &mut self,
        name: &str,
        requester_path: &str,
        requester: &ElfInfo,
        chain: &[(String, Arc<ElfInfo>)],
    ) -> Option<Found> {
        if name.contains('/') {
            return self.accept(name, requester);
        }
        let mut dirs: Vec<String> = Vec::new();
        if requester.runpath.is_none() {
            let objects = std::iter::once((requester_path, requester))
                .chain(chain.iter().map(|(p, i)| (p.as_str(), i.as_ref())));
            for (path, obj) in objects {
                if let (Some(rpath), None) = (&obj.rpath, &obj.runpath) {
                    dirs.extend(self.expand_path_list(rpath, parent(path), obj));
                }
            }
        }
        if let Some(runpath) = &requester.runpath {
            dirs.extend(self.expand_path_list(runpath, parent(requester_path), requester));
        }
        if requester.nodeflib {
            dirs.extend(self.conf_dirs.iter().cloned());
        } else {
            dirs.extend(self.system_dirs(requester));
        }
        let mut tried = BTreeSet::new();
        for dir in dirs {
            if !dir.starts_with('/') || !tried.insert(dir.clone()) {
                continue; // relative entries depend on the cwd: ld.so's behaviour is not portable
            }
            if let Some(found) = self.accept(&join(&dir, name), requester) {
                return Some(found);
            }
        }
        None
    }

    fn accept(&mut self, path: &str, requester: &ElfInfo) -> Option<Found> {
        let (real, info) = self.info(path)?;
        requester.compatible_with(&info).then(|| Found {
            path: path.to_owned(),
            real,
        })
    }

    /// Resolves each `DT_NEEDED` of the object at `path` on its own (no
    /// loading chain), in file order.
    pub fn resolve_needed(
        &mut self,
        path: &str,
    ) -> Result<Vec<(String, Option<Found>)>, LdsoError> {
        let (_, info) = self.object(path)?;
        let origin_path = path.to_owned();
        Ok(info
            .needed
            .iter()
            .map(|n| (n.clone(), self.find(n, &origin_path, &info, &[])))
            .collect())
    }

    fn object(&mut self, path: &str) -> Result<(String, Arc<ElfInfo>), LdsoError> {
        let real = self.resolve(path).map_err(|source| LdsoError::NotFound {
            path: path.to_owned(),
            root: self.root.clone(),
            source,
        })?;
        if let Some((real, info)) = self.info(&real) {
            return Ok((real, info));
        }
        let host = host_path(&self.root, &components(&real).collect::<Vec<_>>());
        match elf::read(&host) {
            Err(source) => Err(LdsoError::Elf {
                path: path.to_owned(),
                source,
            }),
            Ok(_) => Err(LdsoError::NotElf {
                path: path.to_owned(),
            }),
        }
    }

    /// The breadth-first dependency closure of the object at `path`, with
    /// who needs what and what is missing. Deterministic: the order follows
    /// `DT_NEEDED` order, lists are sorted.
    pub fn closure(&mut self, path: &str) -> Result<Closure, LdsoError> {
        let (real, info) = self.object(path)?;
        let interpreter = info.interpreter.clone();
        // The executable's $ORIGIN is its resolved location.
        let exe_path = if info.is_executable() {
            real.clone()
        } else {
            path.to_owned()
        };
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut by_real: HashMap<String, usize> = HashMap::new();
        let mut libs: Vec<Loaded> = Vec::new();
        let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut needed_by: Vec<BTreeSet<String>> = Vec::new();

        let interpreter_found = match &info.interpreter {
            Some(interp) => self.accept(interp, &info),
            None => None,
        };
        // The interpreter is already loaded when the object's needs are
        // searched: a need for its soname or path is satisfied by it.
        if let (Some(found), Some(interp)) = (&interpreter_found, &info.interpreter) {
            by_name.insert(interp.clone(), usize::MAX);
            by_real.insert(found.real.clone(), usize::MAX);
            if let Some((_, i)) = self.info(&found.real)
                && let Some(so) = &i.soname
            {
                by_name.insert(so.clone(), usize::MAX);
            }
        }
        by_real.insert(real.clone(), usize::MAX - 1);
        if let Some(so) = &info.soname {
            by_name.insert(so.clone(), usize::MAX - 1);
        }

        // Queue of (path as found, real path, facts, loading chain nearest
        // first). `$ORIGIN` uses the path as found; reports use real paths.
        type Chain = Vec<(String, Arc<ElfInfo>)>;
        let mut queue: VecDeque<(String, String, Arc<ElfInfo>, Chain)> = VecDeque::new();
        queue.push_back((exe_path.clone(), real.clone(), info, Vec::new()));
        while let Some((obj_path, obj_real, obj, chain)) = queue.pop_front() {
            for name in &obj.needed {
                if let Some(&idx) = by_name.get(name) {
                    if let Some(set) = needed_by.get_mut(idx) {
                        set.insert(obj_real.clone());
                    }
                    continue;
                }
                let Some(found) = self.find(name, &obj_path, &obj, &chain) else {
                    missing
                        .entry(name.clone())
                        .or_default()
                        .insert(obj_real.clone());
                    continue;
                };
                if let Some(&idx) = by_real.get(&found.real) {
                    by_name.insert(name.clone(), idx);
                    if let Some(set) = needed_by.get_mut(idx) {
                        set.insert(obj_real.clone());
                    }
                    continue;
                }
                let idx = libs.len();
                let Some((_, lib_info)) = self.info(&found.real) else {
                    continue;
                };
                by_name.insert(name.clone(), idx);
                if let Some(so) = &lib_info.soname {
                    by_name.entry(so.clone()).or_insert(idx);
                }
                by_real.insert(found.real.clone(), idx);
                needed_by.push(BTreeSet::from([obj_real.clone()]));
                libs.push(Loaded {
                    name: name.clone(),
                    found: found.clone(),
                    needed_by: Vec::new(),
                });
                let mut next_chain = vec![(obj_path.clone(), obj.clone())];
                next_chain.extend(chain.iter().cloned());
                queue.push_back((found.path.clone(), found.real.clone(), lib_info, next_chain));
            }
        }
        for (lib, set) in libs.iter_mut().zip(needed_by) {
            lib.needed_by = set.into_iter().collect();
        }
        Ok(Closure {
            object: path.to_owned(),
            interpreter,
            interpreter_found,
            libs,
            missing: missing
                .into_iter()
                .map(|(name, by)| Missing {
                    name,
                    needed_by: by.into_iter().collect(),
                })
                .collect(),
        })
    }
}

/// Multiarch triplets (Debian) for objects like `obj`.
pub fn triplets(obj: &ElfInfo) -> Vec<&'static str> {
    match obj.arch_name() {
        "x86_64" => vec!["x86_64-linux-gnu"],
        "x32" => vec!["x86_64-linux-gnux32"],
        "i386" => vec!["i386-linux-gnu"],
        "aarch64" => vec!["aarch64-linux-gnu"],
        "arm" if obj.flags & object::elf::EF_ARM_ABI_FLOAT_HARD != 0 => vec!["arm-linux-gnueabihf"],
        "arm" if obj.flags & object::elf::EF_ARM_ABI_FLOAT_SOFT != 0 => vec!["arm-linux-gnueabi"],
        "arm" => vec!["arm-linux-gnueabihf", "arm-linux-gnueabi"],
        "riscv64" => vec!["riscv64-linux-gnu"],
        "mips" => vec!["mips-linux-gnu"],
        "mipsel" => vec!["mipsel-linux-gnu"],
        "mips64el" => vec!["mips64el-linux-gnuabi64"],
        "powerpc" => vec!["powerpc-linux-gnu"],
        "powerpc64" => vec!["powerpc64-linux-gnu"],
        "powerpc64le" => vec!["powerpc64le-linux-gnu"],
        "s390x" => vec!["s390x-linux-gnu"],
        "loongarch64" => vec!["loongarch64-linux-gnu"],
        _ => vec![],
    }
}

/// `AT_PLATFORM` as the kernel reports it for the machine.
fn platform_token(obj: &ElfInfo) -> &'static str {
    match obj.arch_name() {
        "i386" => "i686",
        "arm" => "v7l",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_loader_resolves_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/lib")).expect("mkdir");
        std::fs::write(r.join("usr/lib/libc.so.6"), b"x").expect("write");
        symlink("usr/lib", r.join("lib")).expect("symlink");
        symlink("/usr/lib/libc.so.6", r.join("usr/lib/abs")).expect("symlink");
        symlink("../../../../../usr/lib/libc.so.6", r.join("usr/lib/up")).expect("symlink");
        symlink("loop2", r.join("loop1")).expect("symlink");
        symlink("loop1", r.join("loop2")).expect("symlink");
        let loader = Loader::new(r, &crate::diag::Silent);
        assert_eq!(
            loader.resolve("/lib/libc.so.6").expect("ok"),
            "/usr/lib/libc.so.6"
        );
        assert_eq!(
            loader.resolve("/lib/abs").expect("ok"),
            "/usr/lib/libc.so.6"
        );
        assert_eq!(
            loader.resolve("/lib/up").expect("ok"),
            "/usr/lib/libc.so.6"
        );
        assert_eq!(
            loader.resolve("/../../lib/./libc.so.6").expect("ok"),
            "/usr/lib/libc.so.6"
        );
        assert_eq!(loader.resolve("/").expect("ok"), "/");
        assert!(loader.resolve("/lib/missing").is_err());
        assert!(loader.resolve("/loop1").is_err());
    }

    #[test]
    fn ld_so_conf_includes_are_globbed_in_root_and_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        std::fs::create_dir_all(r.join("etc/ld.so.conf.d")).expect("mkdir");
        std::fs::write(
            r.join("etc/ld.so.conf"),
            "# comment\n/opt/first\ninclude /etc/ld.so.conf.d/*.conf\n",
        )
        .expect("write");
        std::fs::write(r.join("etc/ld.so.conf.d/b.conf"), "/opt/b1:/opt/b2\n").expect("write");
        std::fs::write(
            r.join("etc/ld.so.conf.d/a.conf"),
            "/opt/a # trailing comment\ninclude sub.inc\n",
        )
        .expect("write");
        std::fs::write(r.join("etc/ld.so.conf.d/sub.inc"), "/opt/sub=ELF\n").expect("write");
        std::fs::write(r.join("etc/ld.so.conf.d/skip.txt"), "/opt/never\n").expect("write");
        let loader = Loader::new(r, &crate::diag::Silent);
        assert_eq!(
            loader.conf_dirs(),
            ["/opt/first", "/opt/a", "/opt/sub", "/opt/b1", "/opt/b2"]
        );
    }

    #[test]
    fn lib_token_looks_for_multiarch_inside_the_root_only() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("usr/lib")).expect("mkdir");
        // The test binary stands for an object of the build machine's arch.
        let info = elf::read(Path::new("/proc/self/exe")).expect("read").expect("elf");
        let triplet = triplets(&info)[0];
        let plain = if info.class == Class::Elf64 { "lib64" } else { "lib" };
        // `/lib` is an absolute link to a host directory that has the
        // multiarch folder: inside the root it leads nowhere.
        std::fs::create_dir_all(t.path().join("outside").join(triplet)).expect("mkdir");
        symlink(t.path().join("outside"), r.join("lib")).expect("symlink");
        assert_eq!(Loader::new(&r, &crate::diag::Silent).lib_token(&info), plain);
        std::fs::remove_file(r.join("lib")).expect("rm");
        symlink("/usr/lib", r.join("lib")).expect("symlink");
        std::fs::create_dir(r.join("usr/lib").join(triplet)).expect("mkdir");
        assert_eq!(Loader::new(&r, &crate::diag::Silent).lib_token(&info), format!("lib/{triplet}"));
    }
}
