//! The decisions: per library, then the glibc family as one unit, then the
//! device copies' own dependencies, until nothing changes.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::device::{Device, is_glibc_family, needs_glibc_private};
use super::walk::Reach;
use super::{Ctx, Evidence, MatchOptions, Mode, file_name, list};
use crate::diag::{Diagnostics, Warning};
use crate::elf::{DynSymbols, ElfInfo};
use crate::platform::{Exports, Platform};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not decided yet.
    Open,
    Device(String),
    Image(String),
    Missing(String),
    /// Removed from the image without a replacement.
    Remove(String),
}

/// One library of the container: an image copy, or a name only the device
/// can provide.
pub(super) struct Cand {
    pub soname: String,
    /// Real in-root path of the image's copy.
    pub image: Option<String>,
    pub image_info: Option<Arc<ElfInfo>>,
    /// An object whose class the library must have (for device lookups and
    /// placement).
    pub like: Option<Arc<ElfInfo>>,
    /// Canonical in-container paths the loader opens it by: where a device
    /// copy is mounted.
    pub dests: BTreeSet<String>,
    pub needed_by: BTreeSet<String>,
    /// Version → image objects needing it from this library.
    pub needs: BTreeMap<String, BTreeSet<String>>,
    pub family: bool,
    pub direct: bool,
    /// Why it must come from the device whatever the mode (GPU, Dobby).
    pub forced: Option<String>,
    /// The device copy considered (and mounted for `Verdict::Device`).
    pub device: Option<String>,
    /// For a device-only library pulled in as a dependency: the sonames of
    /// the device libraries that need it.
    pub added_for: BTreeSet<String>,
    pub verdict: Verdict,
    pub evidence: Option<Evidence>,
}

impl Cand {
    pub(super) fn new_named(soname: String) -> Cand {
        Cand {
            family: is_glibc_family(&soname),
            soname,
            image: None,
            image_info: None,
            like: None,
            dests: BTreeSet::new(),
            needed_by: BTreeSet::new(),
            needs: BTreeMap::new(),
            direct: true,
            forced: None,
            device: None,
            added_for: BTreeSet::new(),
            verdict: Verdict::Open,
            evidence: None,
        }
    }

    pub fn is_device(&self) -> bool {
        matches!(self.verdict, Verdict::Device(_))
    }

    /// Keeps the image copy (or reports the name missing) for `why`.
    fn demote(&mut self, why: String) {
        self.verdict = if self.image.is_some() {
            Verdict::Image(why)
        } else {
            Verdict::Missing(why)
        };
    }
}

pub(super) struct Decider<'d, 'r> {
    pub ctx: &'d mut Ctx<'r>,
    pub device: &'d Device<'d>,
    pub options: &'d MatchOptions,
    pub platform: &'d Platform,
    pub reach: &'d Reach,
    pub diag: &'d dyn Diagnostics,
    pub cands: Vec<Cand>,
    pub pruned: Vec<String>,
    warned: BTreeSet<(String, String)>,
    /// Dynamic symbols of image files, read when first needed.
    symbols: RefCell<HashMap<String, Option<Arc<DynSymbols>>>>,
    /// The first device library whose inventory `exports` did not decode,
    /// and why.
    bad_exports: RefCell<Option<(String, String)>>,
}

impl<'d, 'r> Decider<'d, 'r> {
    pub fn new(
        ctx: &'d mut Ctx<'r>,
        device: &'d Device<'d>,
        options: &'d MatchOptions,
        platform: &'d Platform,
        reach: &'d Reach,
        diag: &'d dyn Diagnostics,
    ) -> Self {
        Decider {
            ctx,
            device,
            options,
            platform,
            reach,
            diag,
            cands: Vec::new(),
            pruned: Vec::new(),
            warned: BTreeSet::new(),
            symbols: RefCell::new(HashMap::new()),
            bad_exports: RefCell::new(None),
        }
    }

    pub fn run(&mut self) {
        self.collect();
        self.gpu_libs();
        self.plugin_dependencies();
        for i in 0..self.cands.len() {
            self.decide(i);
        }
        let limit = self.cands.len() + self.device.len() + 8;
        for _ in 0..limit {
            let deps = self.deps_pass();
            let family = self.family_pass();
            if !deps && !family {
                break;
            }
        }
        self.drop_orphans();
    }

    /// The first device library whose `exports` did not decode, and why.
    pub fn bad_exports(&self) -> Option<(String, String)> {
        self.bad_exports.borrow().clone()
    }

    /// Everything the image side reached.
    pub fn reached(&self) -> BTreeSet<String> {
        let mut r = self.reach.roots.clone();
        r.extend(self.cands.iter().filter_map(|c| c.image.clone()));
        r
    }

    fn collect(&mut self) {
        for u in self.reach.uses.values() {
            let mut c = Cand::new_named(u.soname.clone());
            c.family |= is_glibc_family(file_name(&u.real)) || needs_glibc_private(&u.info);
            c.needs = self.needs_of(u.names.iter().chain([&u.soname]), Some(&u.real));
            c.image = Some(u.real.clone());
            c.image_info = Some(u.info.clone());
            c.like = Some(u.info.clone());
            c.dests = u.found.clone();
            c.needed_by = u.needed_by.clone();
            c.direct = u.direct;
            self.cands.push(c);
        }
        for (real, info) in &self.reach.kept {
            if self.reach.uses.contains_key(real) {
                continue;
            }
            let soname = info
                .soname
                .clone()
                .unwrap_or_else(|| file_name(real).to_owned());
            let mut c = Cand::new_named(soname.clone());
            c.family |= is_glibc_family(file_name(real)) || needs_glibc_private(info);
            c.needs = self.needs_of([&soname], Some(real));
            c.image = Some(real.clone());
            c.image_info = Some(info.clone());
            c.like = Some(info.clone());
            // Loaded by soname: the links named like it, or the file itself.
            let named: Vec<String> = self
                .ctx
                .with_links(real)
                .into_iter()
                .filter(|p| file_name(p) == soname)
                .collect();
            c.dests = if named.is_empty() {
                BTreeSet::from([real.clone()])
            } else {
                named.into_iter().collect()
            };
            match self.reach.named.get(real) {
                Some(files) => {
                    c.needed_by
                        .extend(files.iter().map(|f| format!("(named in {f})")));
                    c.evidence = Some(Evidence {
                        named_in: files.clone(),
                        ..Evidence::default()
                    });
                }
                None => {
                    c.needed_by
                        .insert("(kept: loaded by name at run time)".into());
                }
            }
            self.cands.push(c);
        }
        for a in self.reach.absent.values() {
            let mut c = Cand::new_named(a.name.clone());
            c.needs = self.needs_of([&a.name], None);
            c.like = Some(a.like.clone());
            c.dests = if a.interp_paths.is_empty() {
                BTreeSet::from([self.placement(Some(&a.like), &a.name, None)])
            } else {
                a.interp_paths.clone()
            };
            c.needed_by = a.needed_by.clone();
            c.direct = a.direct;
            self.cands.push(c);
        }
    }

    fn needs_of<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String>,
        own: Option<&String>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for name in names {
            for (v, by) in self.reach.version_needs.get(name).into_iter().flatten() {
                let by = by.iter().filter(|b| Some(*b) != own).cloned();
                out.entry(v.clone()).or_default().extend(by);
            }
        }
        out.retain(|_, by| !by.is_empty());
        out
    }

    /// Where the image's loader would find a library the image does not
    /// have: the first existing default directory for objects like `like`.
    /// `preferred` (the device's own path) wins when the image's loader
    /// searches its directory.
    fn placement(
        &self,
        like: Option<&Arc<ElfInfo>>,
        name: &str,
        preferred: Option<&str>,
    ) -> String {
        if let (Some(info), Some(pref)) = (like, preferred) {
            let dir = self.ctx.canonical(pref);
            let dir = dir
                .rsplit_once('/')
                .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
            let searched = self
                .ctx
                .loader
                .system_dirs(info)
                .iter()
                .any(|d| self.ctx.loader.resolve(d).is_ok_and(|real| real == dir));
            if searched {
                return self.ctx.canonical(&format!("{dir}/{name}"));
            }
        }
        let dirs = match like {
            Some(info) => self.ctx.loader.default_dirs(info),
            None => vec!["/lib".into(), "/usr/lib".into()],
        };
        for d in &dirs {
            if let Ok(real) = self.ctx.loader.resolve(d)
                && crate::rootfs::resolve_dir(self.ctx.root, &real).is_ok()
            {
                return self.ctx.canonical(&format!("{real}/{name}"));
            }
        }
        format!("{}/{name}", dirs.first().map_or("/usr/lib", String::as_str))
    }

    /// The image copy of `soname` the loader would find for an image object.
    pub(super) fn find_in_image(
        &mut self,
        soname: &str,
        near: Option<&String>,
    ) -> Option<(String, String)> {
        let (path, info) = match near.and_then(|p| self.ctx.loader.info(p)) {
            Some(x) => x,
            None => self.reach.reference.clone()?,
        };
        let found = self.ctx.loader.find(soname, &path, &info, &[])?;
        self.ctx
            .scan
            .files
            .contains_key(&found.real)
            .then(|| (found.real, self.ctx.canonical(&found.path)))
    }

    /// The decision for one library on its own.
    fn decide(&mut self, i: usize) {
        let Some(c) = self.cands.get(i) else { return };
        if c.verdict != Verdict::Open {
            return;
        }
        let (verdict, device, evidence) = self.judge(c);
        if let Some(c) = self.cands.get_mut(i) {
            c.verdict = verdict;
            let named_in = c.evidence.take().map(|e| e.named_in).unwrap_or_default();
            c.evidence = match evidence {
                Some(e) => Some(Evidence { named_in, ..e }),
                None if !named_in.is_empty() => Some(Evidence {
                    named_in,
                    ..Evidence::default()
                }),
                None => None,
            };
            if c.device.is_none() {
                c.device = device;
            }
        }
    }

    fn judge(&self, c: &Cand) -> (Verdict, Option<String>, Option<Evidence>) {
        let (verdict, device) = self.judge_copy(c);
        if let (Verdict::Device(_), Some(dev)) = (&verdict, &device)
            && self.options.mode == Mode::Normal
            && c.forced.is_none()
            && c.image.is_some()
            && !c.family
        {
            return self.judge_symbols(c, dev, verdict);
        }
        let evidence = (!c.needs.is_empty() && c.image.is_some()).then(|| Evidence {
            versions: c.needs.keys().cloned().collect(),
            ..Evidence::default()
        });
        (verdict, device, evidence)
    }

    /// `normal` mode, an image copy the device's would replace: when the
    /// image needs no symbol version from it, versions prove nothing, so
    /// every symbol the image's objects take from it must be among the
    /// device copy's recorded `exports`.
    fn judge_symbols(
        &self,
        c: &Cand,
        dev: &str,
        verdict: Verdict,
    ) -> (Verdict, Option<String>, Option<Evidence>) {
        let device = Some(dev.to_owned());
        if !c.needs.is_empty() {
            let evidence = Evidence {
                versions: c.needs.keys().cloned().collect(),
                ..Evidence::default()
            };
            return (verdict, device, Some(evidence));
        }
        let keep = |why: String, evidence: Option<Evidence>| {
            (Verdict::Image(why), device.clone(), evidence)
        };
        let exports = match self.device.get(dev).and_then(|e| e.exports.as_ref()).map(Exports::set) {
            Some(Ok(set)) => Some(set),
            Some(Err(message)) => {
                // Stops the plan (plan_with): the inventory is damaged.
                self.bad_exports
                    .borrow_mut()
                    .get_or_insert_with(|| (dev.to_owned(), message.to_owned()));
                return keep(format!("the inventory's exports for {dev} cannot be read: {message}"), None);
            }
            None => None,
        };
        let Some(exports) = exports else {
            return keep(
                format!(
                    "the image needs no symbol version from it, and the inventory records no exports for the device copy {dev} to compare symbols with (platform init records them; -m host takes the device copy anyway)"
                ),
                None,
            );
        };
        let Some(image) = c.image.as_deref() else {
            return (verdict, device, None);
        };
        let Some(own) = self.symbols_of(image) else {
            return keep(
                format!("the dynamic symbols of the image's copy {image} cannot be read"),
                None,
            );
        };
        let users: Vec<&String> = c
            .needed_by
            .iter()
            .filter(|u| *u != image && self.ctx.scan.files.contains_key(*u))
            .collect();
        let mut needed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut unreadable = Vec::new();
        let user_syms: Vec<(&String, Option<Arc<DynSymbols>>)> =
            users.iter().map(|u| (*u, self.symbols_of(u))).collect();
        for (user, syms) in &user_syms {
            let Some(syms) = syms else {
                unreadable.push(user.as_str());
                continue;
            };
            for name in syms.imports.iter().chain(&syms.weak_imports) {
                if own.exports.binary_search(name).is_ok() {
                    needed.entry(name).or_default().insert(user.as_str());
                }
            }
        }
        if !unreadable.is_empty() {
            return keep(
                format!(
                    "the dynamic symbols of {} cannot be read",
                    unreadable.join(", ")
                ),
                None,
            );
        }
        let whole = users.is_empty();
        if whole {
            // Loaded by name (dlopen): its users look symbols up by name,
            // so the device copy must export everything the image's does.
            for name in &own.exports {
                needed.entry(name).or_default();
            }
        }
        let missing: Vec<&str> = needed
            .keys()
            .copied()
            .filter(|n| !exports.contains(n))
            .collect();
        let evidence = Evidence {
            symbols: needed.keys().map(|s| (*s).to_owned()).collect(),
            missing: missing.iter().map(|s| (*s).to_owned()).collect(),
            ..Evidence::default()
        };
        if missing.is_empty() {
            let why = if whole {
                format!(
                    "no symbol versions to compare; nothing links it by name, and the device copy exports all {} symbols the image's copy does",
                    needed.len()
                )
            } else {
                format!(
                    "no symbol versions to compare; the device copy exports all {} symbols the image's objects use from it",
                    needed.len()
                )
            };
            return (Verdict::Device(why), device, Some(evidence));
        }
        let shown: Vec<String> = missing
            .iter()
            .take(5)
            .map(|n| {
                let by = needed.get(n).into_iter().flatten().take(2).copied();
                let by: Vec<&str> = by.collect();
                if by.is_empty() {
                    (*n).to_owned()
                } else {
                    format!("{n} (used by {})", by.join(", "))
                }
            })
            .collect();
        let more = if missing.len() > 5 {
            format!(" and {} more", missing.len() - 5)
        } else {
            String::new()
        };
        let why = format!(
            "the device copy {dev} does not export {}{more}; the image needs no symbol version from it, so its symbols decide (-m host takes the device copy anyway)",
            shown.join(", ")
        );
        keep(why, Some(evidence))
    }

    /// The dynamic symbols of an image file, read once.
    fn symbols_of(&self, path: &str) -> Option<Arc<DynSymbols>> {
        if let Some(s) = self.symbols.borrow().get(path) {
            return s.clone();
        }
        let full = self.ctx.root.join(path.trim_start_matches('/'));
        let read = crate::elf::read_symbols(&full).ok().flatten().map(Arc::new);
        self.symbols
            .borrow_mut()
            .insert(path.to_owned(), read.clone());
        read
    }

    fn judge_copy(&self, c: &Cand) -> (Verdict, Option<String>) {
        if let Some(why) = &c.forced {
            return (Verdict::Device(why.clone()), c.device.clone());
        }
        let keep = |why: String| {
            if c.image.is_some() {
                Verdict::Image(why)
            } else {
                Verdict::Missing(why)
            }
        };
        if self.options.no_dep_walking && !c.direct {
            let why = "not a direct dependency of a root and -n (no dependency walking) is set";
            return (keep(why.into()), None);
        }
        if let (Some(arch), Some(info)) = (self.ctx.arch, &c.image_info)
            && info.oci_arch() != arch
        {
            let why = format!(
                "different architecture: the image's copy is {}, the device is {arch}",
                info.oci_arch()
            );
            return (keep(why), None);
        }
        let Some(dev) = self.device.lookup(&c.soname, c.like.as_deref()) else {
            let why = match (self.device.present(), c.image.is_some()) {
                (false, true) => "no device library inventory (<platform>_libs.json)",
                (false, false) => "not in the image, and there is no device library inventory",
                (true, true) => "not on the device",
                (true, false) => "neither in the image nor on the device",
            };
            return (keep(why.into()), None);
        };
        let device = Some(dev.name.clone());
        if c.image.is_none() {
            return match self.options.mode {
                Mode::Image => (
                    keep(format!(
                        "not in the image; the device has {} but mode image takes nothing from it",
                        dev.name
                    )),
                    device,
                ),
                _ => (
                    Verdict::Device("not in the image; the device has it".into()),
                    device,
                ),
            };
        }
        match self.options.mode {
            Mode::Image => (
                keep("mode image keeps the image's libraries".into()),
                device,
            ),
            Mode::Host => (
                Verdict::Device("mode host: the device has it".into()),
                device,
            ),
            Mode::Normal => {
                let defined: BTreeSet<&String> = dev.apiversions.iter().collect();
                let lacking: Vec<(&String, &BTreeSet<String>)> = c
                    .needs
                    .iter()
                    .filter(|(v, _)| !defined.contains(v))
                    .collect();
                if lacking.is_empty() {
                    let why = if c.needs.is_empty() {
                        "the image needs no particular version of it".to_owned()
                    } else {
                        format!(
                            "the device copy defines every version the image needs ({})",
                            list(c.needs.keys())
                        )
                    };
                    return (Verdict::Device(why), device);
                }
                let what: Vec<String> = lacking
                    .iter()
                    .map(|(v, by)| format!("{v} (needed by {})", list(by.iter().take(3))))
                    .collect();
                let why = format!(
                    "the device copy {} does not define {}",
                    dev.name,
                    what.join(", ")
                );
                (keep(why), device)
            }
        }
    }

    /// Device copies need their own dependencies in the container: from the
    /// device, or an image copy defining every version the device's copy
    /// does. Returns whether anything changed.
    fn deps_pass(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.cands.len() {
            let Some(x) = self.cands.get(i) else { continue };
            if !x.is_device() {
                continue;
            }
            let Some(entry) = x.device.as_deref().and_then(|p| self.device.get(p)) else {
                continue;
            };
            let (x_soname, x_image, x_family) = (x.soname.clone(), x.image.clone(), x.family);
            let mut block = None;
            for dep in &entry.deps {
                let dep_so = file_name(dep).to_owned();
                if dep_so == x_soname {
                    continue;
                }
                let providers: Vec<usize> = (0..self.cands.len())
                    .filter(|&j| {
                        self.cands[j].soname == dep_so
                            && !matches!(self.cands[j].verdict, Verdict::Remove(_))
                    })
                    .collect();
                // Within the glibc family the unit rule decides.
                if x_family && providers.iter().any(|&j| self.cands[j].family) {
                    continue;
                }
                if let Some(&j) = providers.iter().find(|&&j| self.cands[j].is_device()) {
                    if !self.cands[j].added_for.is_empty() {
                        self.cands[j].added_for.insert(x_soname.clone());
                    }
                    continue;
                }
                if let Some(&j) = providers.first() {
                    let p = &self.cands[j];
                    match &p.verdict {
                        Verdict::Image(why) => {
                            let dev_defs = self
                                .device
                                .get(dep)
                                .map(|e| e.apiversions.clone())
                                .unwrap_or_default();
                            let img_defs = p.image_info.as_ref().map(|i| i.version_defs.clone());
                            let img_defs = img_defs.unwrap_or_default();
                            let lacking: Vec<&String> =
                                dev_defs.iter().filter(|v| !img_defs.contains(v)).collect();
                            if !lacking.is_empty() {
                                block = Some(format!(
                                    "it needs {dep_so}, whose image copy stays ({why}) and lacks {} that the device's copy defines",
                                    lacking
                                        .iter()
                                        .map(|s| s.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ));
                            }
                        }
                        Verdict::Missing(why) => {
                            block = Some(format!("it needs {dep_so}, which is missing: {why}"));
                        }
                        _ => {}
                    }
                } else if self.options.no_dep_walking {
                    block = Some(format!(
                        "it needs {dep_so}, which the image does not provide (-n: no dependency walking)"
                    ));
                } else {
                    self.add_dependency(&dep_so, dep, &x_soname, x_image.as_ref());
                    changed = true;
                }
                if block.is_some() {
                    break;
                }
            }
            let Some(block) = block else { continue };
            let Some(x) = self.cands.get_mut(i) else {
                continue;
            };
            if x.forced.is_some() {
                let key = (x.soname.clone(), block.clone());
                if self.warned.insert(key) {
                    self.diag.warning(Warning::new(
                        x.dests
                            .iter()
                            .next()
                            .cloned()
                            .unwrap_or_else(|| x.soname.clone()),
                        format!("the device copy {} is mounted, but {block}", entry.name),
                    ));
                }
            } else {
                x.demote(format!(
                    "the device copy {} cannot be used: {block}",
                    entry.name
                ));
                changed = true;
            }
        }
        changed
    }

    /// A dependency of a device copy that no image object needs: the
    /// image's copy where its loader would find it, or the device's.
    fn add_dependency(
        &mut self,
        soname: &str,
        dep_path: &str,
        for_soname: &str,
        near: Option<&String>,
    ) {
        let like = self.reach.reference.as_ref().map(|r| r.1.clone());
        let mut c = Cand::new_named(soname.to_owned());
        c.needed_by.insert(format!("(device {for_soname})"));
        c.like = near
            .and_then(|p| self.ctx.scan.files.get(p))
            .map(|i| Arc::new(i.clone()))
            .or(like);
        match self.find_in_image(soname, near) {
            Some((real, dest)) if !self.cands.iter().any(|c| c.image.as_ref() == Some(&real)) => {
                c.image_info = self.ctx.scan.files.get(&real).map(|i| Arc::new(i.clone()));
                c.image = Some(real);
                c.dests.insert(dest);
                let (verdict, device, evidence) = self.judge(&c);
                c.verdict = verdict;
                c.device = device;
                c.evidence = evidence;
            }
            _ => {
                c.dests
                    .insert(self.placement(c.like.as_ref(), soname, Some(dep_path)));
                c.device = Some(dep_path.to_owned());
                c.added_for.insert(for_soname.to_owned());
                c.verdict = Verdict::Device(format!("needed by the device copy of {for_soname}"));
            }
        }
        self.cands.push(c);
    }

    /// The glibc family moves as one unit: if any member the container
    /// needs cannot come from the device, none does.
    fn family_pass(&mut self) -> bool {
        let family: Vec<usize> = (0..self.cands.len())
            .filter(|&i| {
                self.cands[i].family && !matches!(self.cands[i].verdict, Verdict::Remove(_))
            })
            .collect();
        let on_device = family
            .iter()
            .filter(|&&i| self.cands[i].is_device())
            .count();
        if on_device == 0 || on_device == family.len() {
            return false;
        }
        let Some(&b) = family.iter().find(|&&i| !self.cands[i].is_device()) else {
            return false;
        };
        let blocker = &self.cands[b];
        let why = match &blocker.verdict {
            Verdict::Image(w) | Verdict::Missing(w) | Verdict::Device(w) | Verdict::Remove(w) => {
                w.clone()
            }
            Verdict::Open => String::new(),
        };
        let why = format!(
            "the glibc family moves as one unit and stays in the image because of {}: {why}",
            blocker.soname
        );
        let mut changed = false;
        for i in family {
            let c = &mut self.cands[i];
            if c.is_device() && c.forced.is_none() {
                c.demote(why.clone());
                changed = true;
            }
        }
        changed
    }

    /// Device-only dependencies whose every user went back to the image.
    fn drop_orphans(&mut self) {
        loop {
            let device: BTreeSet<String> = self
                .cands
                .iter()
                .filter(|c| c.is_device())
                .map(|c| c.soname.clone())
                .collect();
            let before = self.cands.len();
            self.cands.retain(|c| {
                c.image.is_some()
                    || c.added_for.is_empty()
                    || c.added_for.iter().any(|s| device.contains(s))
            });
            if self.cands.len() == before {
                break;
            }
        }
    }

    /// Device libraries mounted into the container whose dependencies the
    /// inventory does not give (no inventory, or no entry for the path):
    /// `(soname, device path)`, sorted.
    pub fn unknown_mounts(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .cands
            .iter()
            .filter(|c| c.is_device())
            .filter_map(|c| {
                let dev = c.device.as_ref()?;
                self.device
                    .get(dev)
                    .is_none()
                    .then(|| (c.soname.clone(), dev.clone()))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether the glibc family comes from the device.
    pub fn family_moved(&self) -> bool {
        let mut family = self
            .cands
            .iter()
            .filter(|c| c.family && !matches!(c.verdict, Verdict::Remove(_)))
            .peekable();
        family.peek().is_some() && family.all(Cand::is_device)
    }
}
