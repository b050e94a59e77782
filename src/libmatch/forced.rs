//! Libraries that come from the device whatever the mode: the GPU
//! libraries of graphics apps (`gpu.gfxLibs`) and the Dobby plugin
//! dependencies the image does not have (`dobby.pluginDependencies`).

use std::sync::Arc;

use super::decide::{Cand, Decider};
use super::file_name;

impl Decider<'_, '_> {
    pub(super) fn gpu_libs(&mut self) {
        if !self.options.graphics {
            return;
        }
        let libs = self
            .platform
            .spec
            .gpu
            .as_ref()
            .and_then(|g| g.gfx_libs.clone());
        for lib in libs.unwrap_or_default() {
            let soname = file_name(&lib.dst).to_owned();
            let why = format!("GPU library (gpu.gfxLibs {} -> {})", lib.src, lib.dst);
            let dst = self.ctx.canonical(&lib.dst);
            let mut hit = false;
            for c in self.cands.iter_mut().filter(|c| c.soname == soname) {
                c.forced = Some(why.clone());
                c.device = Some(lib.src.clone());
                c.dests.insert(dst.clone());
                hit = true;
            }
            if hit {
                continue;
            }
            let mut c = Cand::new_named(soname);
            if let Ok(real) = self.ctx.loader.resolve(&lib.dst)
                && let Some(info) = self.ctx.scan.files.get(&real)
            {
                c.image_info = Some(Arc::new(info.clone()));
                c.image = Some(real);
            }
            c.like = self.reach.reference.as_ref().map(|r| r.1.clone());
            c.forced = Some(why);
            c.device = Some(lib.src.clone());
            c.dests.insert(dst);
            self.cands.push(c);
        }
    }

    pub(super) fn plugin_dependencies(&mut self) {
        let deps = self
            .platform
            .spec
            .dobby
            .as_ref()
            .and_then(|d| d.plugin_dependencies.clone());
        for path in deps.unwrap_or_default() {
            let soname = file_name(&path).to_owned();
            if self.cands.iter().any(|c| c.soname == soname) {
                continue;
            }
            let mut c = Cand::new_named(soname.clone());
            c.needed_by.insert("(dobby.pluginDependencies)".into());
            c.like = self.reach.reference.as_ref().map(|r| r.1.clone());
            if let Some((real, dest)) = self.find_in_image(&soname, None) {
                c.image_info = self.ctx.scan.files.get(&real).map(|i| Arc::new(i.clone()));
                c.image = Some(real);
                c.dests.insert(dest);
            } else {
                c.forced = Some(
                    "Dobby plugin dependency (dobby.pluginDependencies) that the image does not have".into(),
                );
                c.device = Some(path.clone());
                c.dests.insert(self.ctx.canonical(&path));
            }
            self.cands.push(c);
        }
    }
}
