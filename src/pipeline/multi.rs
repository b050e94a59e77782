//! `generate` for several platforms from one image (`-p A -p B`): the
//! image is flattened, its app metadata read, its ELF files scanned and
//! library matching's model of it built ([`crate::libmatch::ImageModel`]:
//! loader model, symlinks, the dependency walk and the search for library
//! names) once per resolved manifest (platforms of one architecture share
//! it). Then each platform that passes its check gets its own rootfs:
//! hard-linked copies of the shared one ([`shared_tree::Tree`], surveyed
//! once), made on the worker threads, and the last platform takes the
//! shared rootfs itself once the copies are made. Each platform then
//! writes what a single-platform run writes, byte for byte, reading and
//! changing only its own rootfs.
//!
//! Each platform succeeds or fails on its own: an incompatible platform,
//! or an output that already exists, stops that platform only. A failure
//! of the shared part (a broken layer, bad app metadata) fails every
//! platform that needed it, with the same error.
//!
//! The platforms that share a rootfs run on the worker threads
//! (`--threads`, one per CPU by default), so at most that many platforms
//! are in memory at once. Their outputs do not depend on which ran first
//! (each writes only its own staging directory), and their warnings are
//! held and shown in the order the platforms were given. An archive's
//! compression runs on its own threads as before.

use std::path::PathBuf;
use std::sync::Arc;

use super::stages::{self as generate, Analysed, GenerateOptions, Report};
use crate::bundle::{config, shared_tree};
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
                // Each platform holds its warnings until all are done; they
                // are then shown in the targets' order.
                let buffers: Vec<Buffered> = group.iter().map(|_| Buffered::default()).collect();
                let mut runs: Vec<Run<'_>> = group
                    .into_iter()
                    .zip(&buffers)
                    .map(|((i, tee, staging), buffered)| {
                        let tee = Tee { inner: buffered, record: tee.record };
                        let checked = check(&targets[i], &shared, &tee);
                        Run { i, tee, staging, checked }
                    })
                    .collect();
                copy(&shared, &mut runs);
                // The platforms' own steps, on the worker threads.
                let done: Vec<_> = runs
                    .into_par_iter()
                    .map(|run| {
                        let result = run
                            .checked
                            .and_then(|memory| platform(&targets[run.i], &shared, run.tee, run.staging, memory));
                        (run.i, result)
                    })
                    .collect();
                drop(shared);
                for ((i, result), buffered) in done.into_iter().zip(buffers) {
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
    /// `rootfs` as each platform's copy is made from it (the last
    /// platform takes `rootfs` itself).
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
    let entry = generate::entrypoint(&rootfs, first.image);
    let matching = generate::matching_options(&app, &first.opts);
    // The plans then start from the walk done here (an error in it is the
    // plans' to report), while the tree is read for the copies.
    let (_, tree) = rayon::join(
        || model.prepare(&scan, first.opts.platform.oci_arch(), entry.as_ref(), &matching),
        || shared_tree::Tree::survey(&rootfs),
    );
    let tree = tree.map_err(|(path, source)| Error::Output { path, source })?;
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

/// One platform of a group, between its steps.
struct Run<'a> {
    /// The target's index.
    i: usize,
    tee: Tee<'a>,
    staging: Staging,
    /// The memory limit its check gave, or why it stopped.
    checked: Result<config::MemoryLimit, Error>,
}

/// The app against one platform, with the shared part's warnings recorded
/// for its report where the single run gives them.
fn check(target: &Target<'_>, shared: &Shared, tee: &Tee<'_>) -> Result<config::MemoryLimit, Error> {
    for w in &shared.warnings_before_check {
        tee.record.warning(w.clone());
    }
    let memory = generate::check_app(target.opts.platform, target.image, &shared.app, &target.opts, tee)?;
    for w in &shared.warnings_after_check {
        tee.record.warning(w.clone());
    }
    Ok(memory)
}

/// Gives each platform that passed its check its rootfs at
/// `staging/rootfs`: hard-linked copies of the shared rootfs (on the
/// worker threads) for all but the last, which then takes the shared
/// rootfs itself, no longer needed, instead of a copy. A copy that fails
/// stops its platform.
fn copy(shared: &Shared, runs: &mut [Run<'_>]) {
    let taker = runs.iter().rposition(|r| r.checked.is_ok());
    let copy_failed = |run: &mut Run<'_>, (path, source)| run.checked = Err(Error::Output { path, source });
    runs.par_iter_mut()
        .enumerate()
        .filter(|(k, run)| Some(*k) != taker && run.checked.is_ok())
        .for_each(|(_, run)| {
            if let Err(e) = shared.tree.link(&shared.rootfs, &run.staging.path().join("rootfs")) {
                copy_failed(run, e);
            }
        });
    if let Some(run) = taker.map(|k| &mut runs[k]) {
        if let Err(e) = shared.tree.take(&shared.rootfs, &run.staging.path().join("rootfs")) {
            copy_failed(run, e);
        }
    }
}

/// One platform's part, as the single run does it after flattening, on
/// its own rootfs.
fn platform(
    target: &Target<'_>,
    shared: &Shared,
    tee: Tee<'_>,
    staging: Staging,
    memory: config::MemoryLimit,
) -> Result<Report, Error> {
    let analysed = Analysed {
        flattened: &shared.flattened,
        app: &shared.app,
        scan: &shared.scan,
        model: Some(&shared.model),
    };
    generate::finish(target.image, &analysed, staging, &target.outputdir, memory, &target.opts, tee)
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
