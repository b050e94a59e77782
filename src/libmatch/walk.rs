//! The image side: the roots and what the image's loader loads for them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::prune::KeepSet;
use super::{Ctx, Entrypoint, file_name};
use crate::diag::{Diagnostics, Warning};
use crate::elf::{Class, ElfInfo, Kind};

/// One image library the loader loads for some root.
#[derive(Clone)]
pub(super) struct Use {
    pub real: String,
    pub soname: String,
    pub info: Arc<ElfInfo>,
    /// Canonical paths the loader opens it by (a `DT_NEEDED` search hit or
    /// a `PT_INTERP`).
    pub found: BTreeSet<String>,
    /// The `DT_NEEDED` names (and loader file names) it is loaded by.
    pub names: BTreeSet<String>,
    pub needed_by: BTreeSet<String>,
    /// Needed by a root itself.
    pub direct: bool,
}

/// A needed name the image does not have.
#[derive(Clone)]
pub(super) struct Absent {
    pub name: String,
    pub needed_by: BTreeSet<String>,
    pub direct: bool,
    /// An object needing it: its class tells where the library would go.
    pub like: Arc<ElfInfo>,
    /// For a missing `PT_INTERP`: the paths asked for.
    pub interp_paths: BTreeSet<String>,
}

#[derive(Clone)]
pub(super) struct Reach {
    /// Real in-root paths of the roots.
    pub roots: BTreeSet<String>,
    pub uses: BTreeMap<String, Use>,
    pub absent: BTreeMap<String, Absent>,
    /// Version name → objects needing it, per needed file name.
    pub version_needs: HashMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// An ELF object of the image's main architecture (for lookups).
    pub reference: Option<(String, Arc<ElfInfo>)>,
    /// Libraries in loader directories that keep patterns protect or that
    /// files of the image name.
    pub kept: BTreeMap<String, Arc<ElfInfo>>,
    /// Of `kept`, those named by files of the image: the files.
    pub named: BTreeMap<String, Vec<String>>,
}

/// Collects the roots and walks their dependency closures.
pub(super) fn reach(
    ctx: &mut Ctx<'_>,
    keep: &KeepSet,
    named: &BTreeMap<String, Vec<String>>,
    entrypoint: Option<&Entrypoint>,
    diag: &dyn Diagnostics,
) -> Reach {
    let (roots, kept) = roots(ctx, keep, named, entrypoint, diag);
    let mut uses: BTreeMap<String, Use> = BTreeMap::new();
    let mut absent: BTreeMap<String, Absent> = BTreeMap::new();
    let mut reference = None;
    for root in &roots {
        let closure = match ctx.loader.closure(root) {
            Ok(c) => c,
            Err(e) => {
                diag.warning(Warning::new(root, format!("not analysed: {e}")));
                continue;
            }
        };
        let Some((_, root_info)) = ctx.loader.info(root) else {
            continue;
        };
        if reference.is_none() && root_info.is_executable() {
            reference = Some((root.clone(), root_info.clone()));
        }
        for lib in &closure.libs {
            let Some((real, info)) = ctx.loader.info(&lib.found.real) else {
                continue;
            };
            let found = ctx.canonical(&lib.found.path);
            let u = uses.entry(real.clone()).or_insert_with(|| Use {
                soname: info.soname.clone().unwrap_or_else(|| lib.name.clone()),
                real,
                info,
                found: BTreeSet::new(),
                names: BTreeSet::new(),
                needed_by: BTreeSet::new(),
                direct: false,
            });
            u.found.insert(found);
            u.names.insert(lib.name.clone());
            u.needed_by.extend(lib.needed_by.iter().cloned());
            u.direct |= lib.needed_by.iter().any(|n| roots.contains(n));
        }
        for m in &closure.missing {
            let a = absent.entry(m.name.clone()).or_insert_with(|| Absent {
                name: m.name.clone(),
                needed_by: BTreeSet::new(),
                direct: false,
                like: root_info.clone(),
                interp_paths: BTreeSet::new(),
            });
            a.needed_by.extend(m.needed_by.iter().cloned());
            a.direct |= m.needed_by.iter().any(|n| roots.contains(n));
        }
        if let Some(interp) = &closure.interpreter {
            let name = file_name(interp).to_owned();
            match &closure.interpreter_found {
                Some(found) => {
                    let Some((real, info)) = ctx.loader.info(&found.real) else {
                        continue;
                    };
                    let canon = ctx.canonical(interp);
                    let u = uses.entry(real.clone()).or_insert_with(|| Use {
                        soname: info.soname.clone().unwrap_or_else(|| name.clone()),
                        real,
                        info,
                        found: BTreeSet::new(),
                        names: BTreeSet::new(),
                        needed_by: BTreeSet::new(),
                        direct: false,
                    });
                    u.found.insert(canon);
                    u.names.insert(name);
                    u.needed_by.insert(root.clone());
                    u.direct = true;
                }
                None => {
                    let a = absent.entry(name.clone()).or_insert_with(|| Absent {
                        name,
                        needed_by: BTreeSet::new(),
                        direct: true,
                        like: root_info.clone(),
                        interp_paths: BTreeSet::new(),
                    });
                    a.needed_by.insert(root.clone());
                    a.direct = true;
                    a.interp_paths.insert(ctx.canonical(interp));
                }
            }
        }
    }
    // The loader satisfies needs for its soname without a search, so the
    // closure does not list who needs it: find them by name.
    let mut objects: Vec<(String, Arc<ElfInfo>)> = Vec::new();
    for path in roots.iter().chain(uses.keys()) {
        if let Some((real, info)) = ctx.loader.info(path) {
            objects.push((real, info));
        }
    }
    let mut version_needs: HashMap<String, BTreeMap<String, BTreeSet<String>>> = HashMap::new();
    for (path, info) in &objects {
        for vn in &info.version_needs {
            let per = version_needs.entry(vn.file.clone()).or_default();
            for v in &vn.versions {
                per.entry(v.clone()).or_default().insert(path.clone());
            }
        }
    }
    for u in uses.values_mut() {
        let names: Vec<String> = u.names.iter().cloned().chain([u.soname.clone()]).collect();
        for (path, info) in &objects {
            if *path != u.real && info.needed.iter().any(|n| names.contains(n)) {
                u.needed_by.insert(path.clone());
            }
        }
    }
    Reach {
        roots,
        uses,
        absent,
        version_needs,
        reference,
        kept,
        named: named.clone(),
    }
}

/// The objects whose needs must be met: the entrypoint, every executable,
/// every shared object outside the loader directories (modules loaded by
/// path) and every kept library (keep patterns, and `named`: named by a
/// file of the image). Objects of another architecture than the
/// platform's are left out.
fn roots(
    ctx: &mut Ctx<'_>,
    keep: &KeepSet,
    named: &BTreeMap<String, Vec<String>>,
    entrypoint: Option<&Entrypoint>,
    diag: &dyn Diagnostics,
) -> (BTreeSet<String>, BTreeMap<String, Arc<ElfInfo>>) {
    let mut roots = BTreeSet::new();
    let mut kept = BTreeMap::new();
    if let Some(ep) = entrypoint {
        match &ep.elf {
            Ok(elf) => roots.extend(elf.iter().cloned()),
            Err(e) => diag.warning(Warning::new(ep.command.as_str(), format!("entrypoint not analysed: {e}"))),
        }
    }
    let mut dirs: HashMap<(Class, u16), BTreeSet<String>> = HashMap::new();
    for (path, info) in &ctx.scan.files {
        if let Some(arch) = ctx.arch
            && info.oci_arch() != arch
        {
            continue;
        }
        let is_root = match info.kind {
            Kind::Exec | Kind::PieExec => true,
            Kind::SharedLib if !in_loader_dir(ctx, &mut dirs, path, info) => true,
            Kind::SharedLib
                if named.contains_key(path) || keep.protects(path, &ctx.with_links(path)) =>
            {
                kept.insert(path.clone(), Arc::new(info.clone()));
                true
            }
            _ => false,
        };
        if is_root {
            roots.insert(path.clone());
        }
    }
    (roots, kept)
}

/// Whether the file's own directory is one the loader searches by name for
/// objects of its kind.
pub(super) fn in_loader_dir(
    ctx: &Ctx<'_>,
    cache: &mut HashMap<(Class, u16), BTreeSet<String>>,
    path: &str,
    info: &ElfInfo,
) -> bool {
    let dirs = cache.entry((info.class, info.machine)).or_insert_with(|| {
        ctx.loader
            .system_dirs(info)
            .iter()
            .filter_map(|d| ctx.loader.resolve(d).ok())
            .collect()
    });
    let dir = match path.rsplit_once('/') {
        Some(("", _)) | None => "/".to_owned(),
        Some((d, _)) => d.to_owned(),
    };
    dirs.contains(&dir)
}
