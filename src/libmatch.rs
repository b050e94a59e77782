//! Library matching: which shared libraries of the image the container takes
//! from the device instead, and which unused ones it drops.
//!
//! BundleGen looks only at the GPU libraries and Dobby's plugin
//! dependencies. We look at the app itself: the roots are the entrypoint,
//! every ELF executable of the image, every shared object the loader cannot
//! reach by name (plugins and modules, which are `dlopen`ed by path), the
//! libraries the keep patterns protect and those another file of the image
//! names (`dlopen`ed by name). Their dependency closures are
//! computed with the image's own loader model ([`crate::ldso`]), then each
//! library found is matched against the device inventory (`_libs.json`):
//!
//! - **normal**: the device copy is taken when it has the same soname, fits
//!   the architecture and its version definitions cover every symbol
//!   version that the image's objects need from that library (or, when
//!   they need none, its recorded exports cover every symbol they use);
//! - **host**: the device copy is taken whenever the soname exists there;
//! - **image**: nothing is taken from the device except the GPU libraries
//!   (and Dobby plugin dependencies the image does not have).
//!
//! The glibc family (libc, libm, libpthread, the loader, the NSS modules of
//! glibc, ...) moves as one unit. A device library is taken only if its own
//! dependencies are satisfied in the container (device copies, or image
//! copies that define every version the device copy does); otherwise it
//! stays in the image. A library taken from the device is bind-mounted where
//! the image's loader looks for it and the image's copy and its symlinks are
//! removed. Unreached libraries are pruned unless a mounted device library's
//! dependencies are unknown. See `docs/libmatch.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::diag::{Collected, Diagnostics, Warning};
use crate::elf::ElfScan;
use crate::ldso::Loader;
use crate::rootfs;
use crate::platform::{LibsInventory, Platform};

mod apply;
mod decide;
mod device;
mod forced;
mod named;
mod outcome;
mod prune;
mod walk;

pub use apply::{ApplyStats, apply};
pub use device::{is_glibc_family, is_loader_name};
pub use named::NOT_SEARCHED;
pub use prune::DEFAULT_KEEP;

/// BundleGen's `-m/--libmatchingmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Take the device copy when it provides every version the image needs.
    #[default]
    Normal,
    /// Keep the image's libraries (GPU libraries still come from the device).
    Image,
    /// Take the device copy whenever the device has the soname.
    Host,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "normal" => Ok(Mode::Normal),
            "image" => Ok(Mode::Image),
            "host" => Ok(Mode::Host),
            _ => Err(format!(
                "invalid library matching mode {s:?}: expected normal, image or host"
            )),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Normal => "normal",
            Mode::Image => "image",
            Mode::Host => "host",
        })
    }
}

/// How to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchOptions {
    pub mode: Mode,
    /// `-n`: match only the direct needs of the roots; no transitive walk on
    /// the image side, and device copies whose dependencies the image does
    /// not provide are not taken.
    pub no_dep_walking: bool,
    /// `--keep` globs, added to [`DEFAULT_KEEP`]: libraries that are
    /// `dlopen`ed by name and must survive pruning (they are also roots). A
    /// pattern without `/` matches file names, one with `/` in-root paths.
    pub keep: Vec<String>,
    /// Remove unreached libraries from the loader directories (`false` with
    /// `--no-prune`).
    pub prune: bool,
    /// The app uses graphics: `gpu.gfxLibs` come from the device.
    pub graphics: bool,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            mode: Mode::Normal,
            no_dep_walking: false,
            keep: Vec::new(),
            prune: true,
            graphics: false,
        }
    }
}

/// What happens to one library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The device copy is bind-mounted; the image's copy (if any) is removed.
    FromDevice,
    /// The image's copy stays.
    KeepImage,
    /// Nothing reaches it: removed from the image.
    Pruned,
    /// Needed, but neither the image nor (usable) the device has it.
    Missing,
}

/// One library and why it ends up where it does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub soname: String,
    /// The image's copy (in-root path, symlinks resolved).
    pub image_path: Option<String>,
    /// The device's copy: mounted (`FromDevice`) or considered.
    pub device_path: Option<String>,
    pub action: Action,
    pub reason: String,
    /// In-root paths of the objects that need it, sorted.
    pub needed_by: Vec<String>,
    /// What the decision rests on, when it compared the two copies or kept
    /// a library from pruning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// The facts behind a decision, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// Symbol versions the image's objects need from the library.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// Symbols the image's objects take from the library (for a library
    /// nothing links by `DT_NEEDED`: every symbol the image's copy exports),
    /// looked up in the device copy's `exports`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
    /// Of `symbols`, those the device copy does not export.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Files of the image that name the library (kept from pruning: loaded
    /// by name at run time).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub named_in: Vec<String>,
}

/// The outcome of [`plan`]; everything sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MatchPlan {
    /// Device files to bind-mount read-only into the container.
    pub mounts: Vec<LibMount>,
    /// In-root paths to delete (files and the symlinks that lead to them),
    /// with their directories resolved in the rootfs; [`apply`] removes them.
    pub remove: Vec<String>,
    /// One per library considered, sorted by soname then image path.
    pub decisions: Vec<Decision>,
    /// In-root paths of the libraries pruned (also in `remove`).
    pub pruned: Vec<String>,
}

impl MatchPlan {
    /// The decision for a soname (the first one if the image has several copies).
    pub fn decision(&self, soname: &str) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.soname == soname)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LibMatchError {
    #[error("keep pattern {pattern:?} is not a valid glob")]
    KeepPattern {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("cannot open the rootfs {path}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove {path} from the rootfs {root}")]
    Remove {
        path: String,
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} in the rootfs {root} is a directory; only files and symlinks are removed")]
    IsDirectory { path: String, root: PathBuf },
    #[error("{path}: not a file path inside the rootfs")]
    BadPath { path: String },
    #[error("{}: {library}: {}", file.as_ref().map_or_else(|| "the library inventory".to_owned(), |f| f.display().to_string()), crate::platform::libs::bad_exports_message(key, message))]
    Exports {
        file: Option<PathBuf>,
        key: String,
        library: String,
        message: String,
    },
}

impl LibMatchError {
    /// Whether the inputs are at fault (exit code 1) rather than the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            LibMatchError::KeepPattern { .. }
                | LibMatchError::BadPath { .. }
                | LibMatchError::IsDirectory { .. }
                | LibMatchError::Exports { .. }
        )
    }
}

/// A device file bind-mounted read-only into the container in place of the
/// image's own copy (a library the device already has, a GPU library).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct LibMount {
    /// Absolute path on the device.
    pub source: String,
    /// Absolute path inside the container.
    pub destination: String,
}

/// The app's entrypoint as the caller located it in the rootfs (see
/// `compat::entrypoint_roots`): the ELF files the kernel executes to run it
/// (the program, or the interpreters of its scripts), or why it could not
/// be located. Those files are roots of the dependency walk; an entrypoint
/// that cannot be located is only a warning here (the entrypoint check
/// refuses the app).
#[derive(Debug, Clone)]
pub struct Entrypoint {
    /// The command as written (`argv[0]`).
    pub command: String,
    pub elf: Result<Vec<String>, String>,
}

/// Decides, for the flattened rootfs at `rootfs` (scanned as `scan`), which
/// libraries come from the device and which are pruned. Reads the rootfs,
/// never writes it: [`apply`] does the removals. `inventory` defaults to
/// the platform's own `_libs.json`.
pub fn plan(
    rootfs: &Path,
    scan: &ElfScan,
    platform: &Platform,
    inventory: Option<&LibsInventory>,
    entrypoint: Option<&Entrypoint>,
    options: &MatchOptions,
    diag: &dyn Diagnostics,
) -> Result<MatchPlan, LibMatchError> {
    // plan_with checks the root before anything is read from the model.
    let model = ImageModel::new(rootfs, scan);
    plan_with(&model, rootfs, scan, platform, inventory, entrypoint, options, diag)
}

/// [`plan`] against a model of the image built once ([`ImageModel::new`])
/// and shared by every platform it is planned for. Reads `rootfs`: the
/// model's rootfs, or a copy of it (hard links, the same directories and
/// symlinks; see `bundle::shared_tree`) that does not change while the
/// plan is made. Reports the same warnings as [`plan`] does.
pub fn plan_with(
    model: &ImageModel,
    rootfs: &Path,
    scan: &ElfScan,
    platform: &Platform,
    inventory: Option<&LibsInventory>,
    entrypoint: Option<&Entrypoint>,
    options: &MatchOptions,
    diag: &dyn Diagnostics,
) -> Result<MatchPlan, LibMatchError> {
    check_root(rootfs)?;
    let keep = prune::KeepSet::new(&options.keep)?;
    for w in &model.loader_warnings {
        diag.warning(w.clone());
    }
    let mut ctx = Ctx {
        root: rootfs,
        scan,
        loader: model.loader().moved_to(rootfs),
        links: &model.links,
        arch: platform.oci_arch(),
    };
    let inventory = inventory.or(platform.libs.as_ref());
    let device = device::Device::new(inventory);
    let search = options.prune && !gpu_needs_unknown(platform, options, inventory);
    let reach = model.walk(&mut ctx, &keep, &options.keep, search, entrypoint, diag);
    let mut d = decide::Decider::new(&mut ctx, &device, options, platform, &reach, diag);
    d.run();
    if let Some((library, message)) = d.bad_exports() {
        let from_platform = inventory.is_some_and(|i| platform.libs.as_ref().is_some_and(|p| std::ptr::eq(i, p)));
        return Err(LibMatchError::Exports {
            file: if from_platform { platform.libs_path.clone() } else { None },
            key: match inventory.and_then(|i| i.index_of(&library)) {
                Some(i) => format!("libs[{i}].exports"),
                None => format!("exports of {library}"),
            },
            library,
            message,
        });
    }
    let reached = d.reached();
    let unreached = prune::prunable(d.ctx, &keep, &reached);
    d.finish(unreached);
    let plan = d.into_plan();
    model.keep_loader(ctx.loader);
    Ok(plan)
}

fn check_root(rootfs: &Path) -> Result<(), LibMatchError> {
    if rootfs.is_dir() {
        return Ok(());
    }
    Err(LibMatchError::Root {
        path: rootfs.to_owned(),
        source: io::Error::from(io::ErrorKind::NotFound),
    })
}

/// What library matching learns from the image alone, whatever the
/// platform: the loader model (with the ELF facts and path resolutions it
/// gathered), the symlinks to each library, and the files of the image
/// that name libraries. Built once per image and handed to [`plan_with`]
/// for each platform; warnings found while building it are kept and
/// given again to each plan, so each platform reports what a plan of its
/// own would.
pub struct ImageModel {
    root: PathBuf,
    loader: Mutex<Loader>,
    loader_warnings: Vec<Warning>,
    links: BTreeMap<String, Vec<String>>,
    /// Name searches done: the candidates, what names them, the warnings.
    named: Mutex<Vec<NamedSearch>>,
    /// Dependency walks done (the same for every platform of one
    /// architecture with the same keep patterns and entrypoint).
    reaches: Mutex<Vec<ReachMemo>>,
}

struct ReachMemo {
    arch: Option<String>,
    keep: Vec<String>,
    named: BTreeMap<String, Vec<String>>,
    entrypoint: Option<(String, Result<Vec<String>, String>)>,
    reach: walk::Reach,
    warnings: Vec<Warning>,
}

struct NamedSearch {
    candidates: Vec<String>,
    found: BTreeMap<String, Vec<String>>,
    warnings: Vec<Warning>,
}

impl ImageModel {
    /// The model of the rootfs at `rootfs`, scanned as `scan`. Nothing may
    /// write the rootfs while the model is used.
    pub fn new(rootfs: &Path, scan: &ElfScan) -> ImageModel {
        let record = Collected::default();
        let loader = Loader::new(rootfs, &record).with_scan(scan);
        let links = links_by_target(&loader, scan);
        ImageModel {
            root: rootfs.to_owned(),
            loader: Mutex::new(loader),
            loader_warnings: record.warnings(),
            links,
            named: Mutex::new(Vec::new()),
            reaches: Mutex::new(Vec::new()),
        }
    }

    /// The rootfs the model reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A copy of the loader model with everything learnt so far.
    fn loader(&self) -> Loader {
        lock(&self.loader).clone()
    }

    /// Keeps a loader model that learnt more (it started as a copy of ours).
    fn keep_loader(&self, loader: Loader) {
        *lock(&self.loader) = loader;
    }

    /// What [`plan_with`] does first for every platform of architecture
    /// `arch`: the dependency walk and, when unreached libraries are
    /// pruned, the search for library names; done ahead of the platforms
    /// that share the model, so that those running in parallel find it done
    /// instead of each waiting for the one doing it. Its warnings are kept
    /// for the plans, which report them.
    pub fn prepare(
        &self,
        scan: &ElfScan,
        arch: Option<&'static str>,
        entrypoint: Option<&Entrypoint>,
        options: &MatchOptions,
    ) -> Result<(), LibMatchError> {
        check_root(&self.root)?;
        let keep = prune::KeepSet::new(&options.keep)?;
        let mut ctx = Ctx { root: &self.root, scan, loader: self.loader(), links: &self.links, arch };
        self.walk(&mut ctx, &keep, &options.keep, options.prune, entrypoint, &Collected::default());
        self.keep_loader(ctx.loader);
        Ok(())
    }

    /// The dependency walk from the roots, and with `search`, again with
    /// the libraries that files of the image name as roots too (nothing
    /// links them, but they may be loaded by name).
    fn walk(
        &self,
        ctx: &mut Ctx<'_>,
        keep: &prune::KeepSet,
        patterns: &[String],
        search: bool,
        entrypoint: Option<&Entrypoint>,
        diag: &dyn Diagnostics,
    ) -> walk::Reach {
        let reach = self.reach(ctx, keep, patterns, &BTreeMap::new(), entrypoint, diag);
        if !search {
            return reach;
        }
        let mut reached = reach.roots.clone();
        reached.extend(reach.uses.keys().cloned());
        let candidates = prune::prunable(ctx, keep, &reached);
        let named = self.named(ctx, candidates, diag);
        if named.is_empty() {
            return reach;
        }
        self.reach(ctx, keep, patterns, &named, entrypoint, diag)
    }

    /// [`walk::reach`], walked once per architecture, keep patterns, names
    /// and entrypoint; its warnings are given again each time.
    fn reach(
        &self,
        ctx: &mut Ctx<'_>,
        keep: &prune::KeepSet,
        patterns: &[String],
        named: &BTreeMap<String, Vec<String>>,
        entrypoint: Option<&Entrypoint>,
        diag: &dyn Diagnostics,
    ) -> walk::Reach {
        let arch = ctx.arch.map(str::to_owned);
        let entry = entrypoint.map(|e| (e.command.clone(), e.elf.clone()));
        let same = |m: &ReachMemo| m.arch == arch && m.keep == patterns && &m.named == named && m.entrypoint == entry;
        let memo = lock(&self.reaches).iter().find(|m| same(m)).map(|m| (m.reach.clone(), m.warnings.clone()));
        let (reach, warnings) = match memo {
            Some(found) => found,
            None => {
                let record = Collected::default();
                let reach = walk::reach(ctx, keep, named, entrypoint, &record);
                let warnings = record.warnings();
                let mut memos = lock(&self.reaches);
                if !memos.iter().any(same) {
                    memos.push(ReachMemo {
                        arch,
                        keep: patterns.to_vec(),
                        named: named.clone(),
                        entrypoint: entry,
                        reach: reach.clone(),
                        warnings: warnings.clone(),
                    });
                }
                (reach, warnings)
            }
        };
        for w in warnings {
            diag.warning(w);
        }
        reach
    }

    /// [`named::find`] for `candidates`, searched once per set of candidates.
    fn named(
        &self,
        ctx: &Ctx<'_>,
        candidates: Vec<String>,
        diag: &dyn Diagnostics,
    ) -> BTreeMap<String, Vec<String>> {
        let mut done = lock(&self.named);
        let search = match done.iter().position(|s| s.candidates == candidates) {
            Some(i) => &done[i],
            None => {
                let record = Collected::default();
                let found = named::find(ctx, &candidates, &record);
                done.push(NamedSearch {
                    candidates,
                    found,
                    warnings: record.warnings(),
                });
                &done[done.len() - 1]
            }
        };
        for w in &search.warnings {
            diag.warning(w.clone());
        }
        search.found.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a GPU library of a graphics app is mounted without an inventory
/// entry (its dependencies unknown): then nothing is pruned, so the search
/// for library names is not needed.
fn gpu_needs_unknown(
    platform: &Platform,
    options: &MatchOptions,
    inventory: Option<&LibsInventory>,
) -> bool {
    let gfx = platform.spec.gpu.as_ref().and_then(|g| g.gfx_libs.as_ref());
    options.graphics
        && gfx.is_some_and(|libs| {
            libs.iter()
                .any(|l| inventory.is_none_or(|inv| inv.get(&l.src).is_none()))
        })
}

/// What the stages share: the rootfs, its scan and loader model.
pub(crate) struct Ctx<'a> {
    pub root: &'a Path,
    pub scan: &'a ElfScan,
    pub loader: Loader,
    /// Real in-root path → the symlinks (in-root paths) that resolve to it.
    pub links: &'a BTreeMap<String, Vec<String>>,
    /// The platform's architecture in OCI spelling, when known.
    pub arch: Option<&'static str>,
}

impl Ctx<'_> {
    /// `path` with its directory resolved in the rootfs and its file name
    /// kept (`/lib/x86_64-linux-gnu/libc.so.6` on a merged-usr rootfs is
    /// `/usr/lib/x86_64-linux-gnu/libc.so.6`).
    pub fn canonical(&self, path: &str) -> String {
        rootfs::canonical_with(|dir| self.loader.resolve(dir), path)
    }

    /// The image file and every symlink that leads to it.
    pub fn with_links(&self, real: &str) -> Vec<String> {
        let mut out = vec![real.to_owned()];
        if let Some(l) = self.links.get(real) {
            out.extend(l.iter().cloned());
        }
        out
    }
}

pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Every symlink of the scan that resolves, inside the rootfs, to a file of
/// the scan. Absolute targets are taken relative to the rootfs, so a link
/// to `/usr/lib/libz.so.1` never designates the build machine's file.
fn links_by_target(loader: &Loader, scan: &ElfScan) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for link in scan.symlinks.keys() {
        if let Ok(real) = loader.resolve(link)
            && scan.files.contains_key(&real)
        {
            out.entry(real).or_default().push(link.clone());
        }
    }
    out
}

/// `a, b, c` of a set, for messages.
pub(crate) fn list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    items
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sorted, deduplicated.
pub(crate) fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
    v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for m in ["normal", "image", "host"] {
            let mode: Mode = m.parse().expect("valid");
            assert_eq!(mode.to_string(), m);
        }
        let err = "hostx".parse::<Mode>().expect_err("invalid");
        assert!(err.contains("normal, image or host"), "{err}");
    }

    #[test]
    fn file_names() {
        // `canonical` is tested with the resolver (`rootfs::tests`).
        assert_eq!(file_name("/a/b/libz.so.1"), "libz.so.1");
    }
}
