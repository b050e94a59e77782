//! `generate` for several platforms from one image (`-p A -p B`): the
//! image is flattened, its app metadata read, its ELF files scanned and
//! library matching's model of it built ([`crate::libmatch::ImageModel`]: loader
//! model, symlinks, the search for library names) once per resolved
//! manifest (platforms of one architecture share it), then each platform
//! works on its own hard-linked copy of that rootfs
//! ([`shared_tree::Tree`], surveyed once) and writes what a single-platform run writes,
//! byte for byte. Library matching reads the shared rootfs (the same
//! content as the copy); what writes (the removals, the preparation, the
//! archive) works on the platform's copy.
//!
//! Each platform succeeds or fails on its own: an incompatible platform,
//! or an output that already exists, stops that platform only. A failure
//! of the shared part (a broken layer, bad app metadata) fails every
//! platform that needed it, with the same error.
//!
//! The shared part is done once; then the platforms that share it run on
//! the worker threads (`--threads`, one per CPU by default), so at most
//! that many platforms are in memory at once. Their outputs do not depend
//! on which ran first (each writes only its own staging directory), and
//! their warnings are held and shown in the order the platforms were
//! given. An archive's compression runs on its own threads as before.

use std::path::PathBuf;
use std::sync::Arc;

use super::stages::{self as generate, Analysed, GenerateOptions, Report};
use crate::bundle::shared_tree;
use rayon::prelude::*;

use crate::diag::{Buffered, Diagnostics, Progress, Tee, Warning};
use crate::error::Error;
use crate::image::{OpenImage, ResolvedImage};
use crate::layers;
use crate::staging::Staging;

/// One platform to generate for.
pub struct Target<'a> {
    /// The image resolved for this platform's architecture.
    pub image: &'a ResolvedImage,
    /// The bundle directory (`OUTPUTDIR/<platform>` on the command line).
    pub outputdir: PathBuf,
    /// The options; `flatten`, `app_metadata`, `app_id` and `strict` must
    /// be the same for every target, as they shape the shared part.
    pub opts: GenerateOptions<'a>,
}

/// What became of one target.
#[derive(Debug)]
pub struct Outcome {
    pub platform: String,
    pub outputdir: PathBuf,
    /// The error is shared by every platform a shared step failed for.
    pub result: Result<Report, Arc<Error>>,
}

/// Where the shared rootfs is built: a hidden, locked staging directory
/// in the first target's output folder (the same file system as every
/// bundle's staging directory, so that hard links work), removed at the end.
const SHARED_NAME: &str = "flattened";

/// Generates every target; the outcomes are in the targets' order.
pub fn generate_all(
    source: &OpenImage,
    targets: &[Target<'_>],
    diag: &dyn Diagnostics,
) -> Vec<Outcome> {
    let prefixed: Vec<Prefixed<'_>> = targets
        .iter()
        .map(|t| Prefixed {
            inner: diag,
            platform: &t.opts.platform.name,
        })
        .collect();
    let mut results: Vec<Option<Result<Report, Arc<Error>>>> =
        targets.iter().map(|_| None).collect();
    // Per target, what the single run does before flattening: checks, and
    // claiming the output directory.
    let mut pending: Vec<(usize, Tee<'_>, Staging)> = Vec::new();
    for (i, (target, diag)) in targets.iter().zip(&prefixed).enumerate() {
        let tee = Tee::new(diag);
        let claimed =
            generate::check_inputs(source, target.image, &target.outputdir, &target.opts, &tee)
                .and_then(|()| Ok(Staging::new(&target.outputdir, target.opts.overwrite)?));
        match claimed {
            Ok(staging) => pending.push((i, tee, staging)),
            Err(e) => results[i] = Some(Err(Arc::new(e))),
        }
    }
    // One shared part per resolved manifest, in the order of first use.
    while !pending.is_empty() {
        let digest = targets[pending[0].0].image.manifest_digest.clone();
        let (group, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(i, ..)| targets[*i].image.manifest_digest == digest);
        pending = rest;
        let first = &targets[group[0].0];
        match analyse(source, first, diag) {
            Err(e) => {
                let e = Arc::new(e);
                for (i, ..) in group {
                    results[i] = Some(Err(e.clone()));
                }
            }
            Ok(shared) => {
                // The platforms of a group run on the worker threads; each
                // holds its warnings until all are done, then they are shown
                // in the targets' order.
                let done: Vec<_> = group
                    .into_par_iter()
                    .map(|(i, tee, staging)| {
                        let buffered = Buffered::default();
                        let tee = Tee { inner: &buffered, record: tee.record };
                        let result = platform(&targets[i], &shared, tee, staging);
                        (i, result, buffered)
                    })
                    .collect();
                for (i, result, buffered) in done {
                    buffered.replay(&prefixed[i]);
                    results[i] = Some(result.map_err(Arc::new));
                }
            }
        }
    }
    targets
        .iter()
        .zip(results)
        .map(|(t, result)| Outcome {
            platform: t.opts.platform.name.clone(),
            outputdir: t.outputdir.clone(),
            result: result.unwrap_or_else(|| {
                Err(Arc::new(Error::Output {
                    path: t.outputdir.clone(),
                    source: std::io::Error::other("not generated"),
                }))
            }),
        })
        .collect()
}

/// The shared part: the flattened rootfs, the app and the ELF scan, and
/// the warnings they gave, split where the single run checks the app
/// against the platform.
struct Shared {
    _staging: Staging,
    rootfs: PathBuf,
    flattened: layers::Flattened,
    app: crate::appmeta::AppMetadata,
    scan: crate::elf::ElfScan,
    /// Library matching's model of the image (it reads `rootfs`).
    model: crate::libmatch::ImageModel,
    /// `rootfs` as each platform's copy is made from it.
    tree: shared_tree::Tree,
    warnings_before_check: Vec<Warning>,
    warnings_after_check: Vec<Warning>,
}

fn analyse(
    source: &OpenImage,
    first: &Target<'_>,
    diag: &dyn Diagnostics,
) -> Result<Shared, Error> {
    let parent = first
        .outputdir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let staging = Staging::new(&parent.join(SHARED_NAME), true)?;
    let rootfs = staging.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|source| Error::Output {
        path: rootfs.clone(),
        source,
    })?;
    let tee = Tee::new(diag);
    let flattened = layers::flatten(source, first.image, &rootfs, &first.opts.flatten, &tee)?;
    let app = generate::load_app(
        &rootfs,
        first.image,
        first.opts.app_metadata.cloned(),
        &first.opts,
        &tee,
    )?;
    let before = tee.record.warnings().len();
    let scan = generate::scan_elf(&rootfs, &tee)?;
    let model = crate::libmatch::ImageModel::new(&rootfs, &scan);
    let tree = shared_tree::Tree::survey(&rootfs).map_err(|(path, source)| Error::Output { path, source })?;
    let mut warnings_before_check = tee.record.warnings();
    let warnings_after_check = warnings_before_check.split_off(before);
    Ok(Shared {
        _staging: staging,
        rootfs,
        flattened,
        app,
        scan,
        model,
        tree,
        warnings_before_check,
        warnings_after_check,
    })
}

/// One platform's part, as the single run does it after flattening.
fn platform(
    target: &Target<'_>,
    shared: &Shared,
    tee: Tee<'_>,
    staging: Staging,
) -> Result<Report, Error> {
    let opts = &target.opts;
    for w in &shared.warnings_before_check {
        tee.record.warning(w.clone());
    }
    let memory = generate::check_app(opts.platform, target.image, &shared.app, opts, &tee)?;
    for w in &shared.warnings_after_check {
        tee.record.warning(w.clone());
    }
    let rootfs = staging.path().join("rootfs");
    shared
        .tree
        .link(&shared.rootfs, &rootfs)
        .map_err(|(path, source)| Error::Output { path, source })?;
    let analysed = Analysed {
        flattened: &shared.flattened,
        app: &shared.app,
        scan: &shared.scan,
        model: Some(&shared.model),
    };
    generate::finish(
        target.image,
        &analysed,
        staging,
        &target.outputdir,
        memory,
        opts,
        tee,
    )
}

/// Shows a platform's own warnings with its name in front.
struct Prefixed<'a> {
    inner: &'a dyn Diagnostics,
    platform: &'a str,
}

impl Diagnostics for Prefixed<'_> {
    fn warning(&self, warning: Warning) {
        self.inner.warning(Warning {
            subject: format!("{}: {}", self.platform, warning.subject),
            ..warning
        });
    }
    fn progress(&self, event: Progress) {
        self.inner.progress(event);
    }
}
