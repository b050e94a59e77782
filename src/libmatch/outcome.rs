//! From decisions to the plan: pruning, the rest of the glibc family,
//! mounts and removals.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::decide::{Cand, Decider, Verdict};
use super::device::is_glibc_family;
use super::walk::in_loader_dir;
use super::{Action, Decision, Evidence, MatchPlan, file_name, sorted};
use super::LibMount;
use crate::diag::Warning;

impl Decider<'_, '_> {
    /// Decides the libraries nothing reached (`unreached`): pruned, or kept
    /// with the reason; and, when the glibc family comes from the device,
    /// replaces the image's other glibc files.
    pub fn finish(&mut self, unreached: Vec<String>) {
        let unknown = self.unknown_mounts();
        let keep_all = if !self.options.prune {
            Some("nothing links it; kept because pruning is off (--no-prune)".to_owned())
        } else if !unknown.is_empty() {
            let what: Vec<String> = unknown
                .iter()
                .map(|(so, dev)| format!("{so} ({dev})"))
                .collect();
            Some(format!(
                "nothing in the image links it, but it is not pruned: the device {} {} mounted without an inventory entry, so {} dependencies are unknown and could include any library",
                if what.len() == 1 {
                    "library"
                } else {
                    "libraries"
                },
                if what.len() == 1 {
                    format!("{} is", what.join(", "))
                } else {
                    format!("{} are", what.join(", "))
                },
                if what.len() == 1 { "its" } else { "their" },
            ))
        } else {
            None
        };
        // glibc files first when nothing is pruned: they follow the family.
        if keep_all.is_some() && self.family_moved() {
            self.rest_of_family();
        }
        for path in unreached {
            if self.cands.iter().any(|c| c.image.as_ref() == Some(&path)) {
                continue;
            }
            let Some(info) = self.ctx.scan.files.get(&path) else {
                continue;
            };
            let soname = info
                .soname
                .clone()
                .unwrap_or_else(|| file_name(&path).to_owned());
            let mut c = Cand::new_image(soname, path.clone(), Arc::new(info.clone()));
            if let Some(files) = self.reach.named.get(&path) {
                c.verdict = Verdict::Image(format!(
                    "named in {}: loaded by name at run time",
                    super::list(files.iter().take(3))
                ));
                c.evidence = Some(Evidence {
                    named_in: files.clone(),
                    ..Evidence::default()
                });
            } else if let Some(why) = &keep_all {
                c.verdict = Verdict::Image(why.clone());
            } else {
                c.verdict = Verdict::Remove(
                    "nothing links it (DT_NEEDED), no file of the image names it and no keep pattern protects it".into(),
                );
                self.pruned.push(path);
            }
            self.cands.push(c);
        }
        if keep_all.is_none() && self.family_moved() {
            self.rest_of_family();
        }
    }

    /// glibc files nothing reached (and that were not pruned) must match the
    /// device's libc too: the device's copy replaces each, or it goes.
    fn rest_of_family(&mut self) {
        let mut dirs = std::collections::HashMap::new();
        let files: Vec<(String, Arc<crate::elf::ElfInfo>)> = self
            .ctx
            .scan
            .files
            .iter()
            .filter(|(p, i)| {
                let named = is_glibc_family(file_name(p))
                    || i.soname.as_deref().is_some_and(is_glibc_family);
                named && in_loader_dir(self.ctx, &mut dirs, p, i)
            })
            .map(|(p, i)| (p.clone(), Arc::new(i.clone())))
            .collect();
        for (path, info) in files {
            if self.cands.iter().any(|c| c.image.as_ref() == Some(&path)) {
                continue;
            }
            let soname = info
                .soname
                .clone()
                .unwrap_or_else(|| file_name(&path).to_owned());
            let mut c = Cand::new_image(soname.clone(), path.clone(), info.clone());
            c.dests.insert(path.clone());
            match self.device.lookup(&soname, Some(&info)) {
                Some(dev) => {
                    c.device = Some(dev.name.clone());
                    c.verdict = Verdict::Device("the glibc family comes from the device".into());
                }
                None => {
                    c.verdict = Verdict::Remove(format!(
                        "the glibc family comes from the device, which has no {soname}: the image's copy would not match its libc"
                    ));
                }
            }
            self.cands.push(c);
        }
    }

    pub fn into_plan(self) -> MatchPlan {
        let mut mounts: BTreeMap<String, String> = BTreeMap::new();
        let mut remove = Vec::new();
        let mut decisions = Vec::new();
        for c in &self.cands {
            let (action, reason) = match &c.verdict {
                Verdict::Device(w) => (Action::FromDevice, w.clone()),
                Verdict::Image(w) => (Action::KeepImage, w.clone()),
                Verdict::Missing(w) => (Action::Missing, w.clone()),
                Verdict::Remove(w) => (Action::Pruned, w.clone()),
                Verdict::Open => (Action::KeepImage, "not decided".into()),
            };
            if action == Action::FromDevice {
                let Some(src) = &c.device else { continue };
                for dst in &c.dests {
                    match mounts.get(dst) {
                        Some(other) if other != src => self.diag.warning(Warning::new(
                            dst,
                            format!(
                                "both {other} and {src} would be mounted here; keeping {other}"
                            ),
                        )),
                        _ => {
                            mounts.insert(dst.clone(), src.clone());
                        }
                    }
                }
            }
            if matches!(action, Action::FromDevice | Action::Pruned)
                && let Some(real) = &c.image
            {
                remove.extend(self.ctx.with_links(real));
            }
            if action == Action::Missing {
                self.diag.warning(Warning::new(
                    &c.soname,
                    format!(
                        "needed by {} but missing: {reason}",
                        super::list(c.needed_by.iter().take(3))
                    ),
                ));
            }
            decisions.push(Decision {
                soname: c.soname.clone(),
                image_path: c.image.clone(),
                device_path: c.device.clone(),
                action,
                reason,
                needed_by: c.needed_by.iter().cloned().collect(),
                evidence: c.evidence.clone(),
            });
        }
        let remove = sorted(remove);
        decisions.sort_by(|a, b| (&a.soname, &a.image_path).cmp(&(&b.soname, &b.image_path)));
        MatchPlan {
            mounts: mounts
                .into_iter()
                .map(|(destination, source)| LibMount {
                    source,
                    destination,
                })
                .collect(),
            remove,
            decisions,
            pruned: sorted(self.pruned),
        }
    }
}

impl Cand {
    pub(super) fn new_image(soname: String, real: String, info: Arc<crate::elf::ElfInfo>) -> Cand {
        let mut c = Cand::new_named(soname);
        c.family |= is_glibc_family(file_name(&real));
        c.image = Some(real);
        c.like = Some(info.clone());
        c.image_info = Some(info);
        c
    }
}
