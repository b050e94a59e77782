//! `generate`: a request (what the command line or a caller asks for) →
//! one bundle, or one per platform. Everything between the arguments and
//! the stages is decided here: which inputs are read before the image is
//! opened, how each platform's image is picked from a multi-platform
//! index, BundleGen's `FILE_FORMAT_IPK`, `SOURCE_DATE_EPOCH`, where each
//! platform's bundle, archive, `--oci-output` and report go, and the
//! summary of a several-platform run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::appmeta::{self, AppMetadata};
use crate::bundle::archive::{Compression, IpkLayout};
use super::multi;
use super::stages::{self, ArchiveKind, GenerateOptions, Report};
use crate::diag::Diagnostics;
use crate::error::{Category, Error, RequestError};
use crate::image::{ImageRef, OpenImage, OpenOptions, ResolvedImage, Selector};
use crate::layers::FlattenOptions;
use crate::libmatch::MatchOptions;
use crate::operator::Operator;
use crate::platform::{self, LoadOptions, Platform};
use crate::runtime::Runtime;
use crate::staging::StagedFile;

/// Which archive to write beside the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveRequest {
    /// `--no-archive`.
    None,
    /// `-i`: an `.ipk`.
    Ipk(IpkLayout),
    /// A tarball with this compression, or an `.ipk` when BundleGen's
    /// `FILE_FORMAT_IPK` is set (click's boolean).
    Default { compression: Compression, ipk_layout: IpkLayout },
}

/// What to generate.
pub struct Request {
    /// The image reference (`oci:DIR[:TAG]`, `oci-archive:…`, skopeo's).
    pub image: String,
    /// Registry credentials (`-c`, `RDK_OCI_REGISTRY_CREDS`).
    pub creds: Option<String>,
    /// The bundle directory; with several platforms, the folder holding
    /// one per platform.
    pub outputdir: PathBuf,
    /// Platform template names, one or several.
    pub platforms: Vec<String>,
    /// `-s` directories (`RDK_PLATFORM_SEARCHPATH` is added here).
    pub search_paths: Vec<PathBuf>,
    /// `--platform-overlay` files.
    pub overlays: Vec<PathBuf>,
    /// `--operator`.
    pub operator: Option<PathBuf>,
    /// `-a`.
    pub app_metadata: Option<PathBuf>,
    /// `-x`.
    pub app_id: Option<String>,
    pub runtime: Runtime,
    /// `graphics` is the app's, set later.
    pub matching: MatchOptions,
    /// `-r`.
    pub create_mount_points: bool,
    pub strict_memory: bool,
    /// `-y`.
    pub overwrite: bool,
    pub archive: ArchiveRequest,
    /// Unknown keys in input files are errors.
    pub strict: bool,
    pub oci_output: Option<PathBuf>,
    /// `--report FILE`.
    pub report: Option<PathBuf>,
    /// Worker threads (0: one per CPU).
    pub threads: usize,
    pub flatten: FlattenOptions,
}

/// What a request gave.
pub enum Generated {
    /// One platform: its report and the path BundleGen's success line
    /// names (the archive, or the bundle directory without one).
    One { report: Box<Report>, done: PathBuf },
    /// Several platforms, in the request's order; the summary (and each
    /// platform's report) written when `--report` was given.
    Several(Vec<PlatformResult>),
}

/// One platform of a several-platform request.
pub struct PlatformResult {
    pub platform: String,
    pub outputdir: PathBuf,
    /// The path BundleGen's success line names.
    pub done: PathBuf,
    /// `OUTPUTDIR/<platform>.report.json`, with `--report`.
    pub report_file: Option<PathBuf>,
    /// An error is shared by every platform a shared step failed for.
    pub result: Result<Report, Arc<Error>>,
}

/// The summary of a several-platform run (`--report FILE`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryEntry<'a> {
    platform: &'a str,
    status: &'static str,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    archive: Option<Option<&'a Path>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<Option<&'a Path>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Vec<String>>,
}

/// BundleGen's exit code for a category.
pub fn exit_code(category: Category) -> u8 {
    match category {
        Category::BadInput => 1,
        Category::Incompatible => 2,
        Category::Failed => 3,
    }
}

/// The word a summary uses for an exit code.
pub fn status_of(code: u8) -> &'static str {
    match code {
        0 => "generated",
        1 => "bad input",
        2 => "incompatible",
        _ => "failed",
    }
}

/// Generates what `req` asks for. Every input is read before the image is
/// opened (which may mean a download).
pub fn generate(req: &Request, diag: &dyn Diagnostics) -> Result<Generated, Error> {
    super::check_search_paths(&req.search_paths)?;
    let ipk_env = match std::env::var("FILE_FORMAT_IPK") {
        Ok(v) => click_bool(&v).map_err(|reason| RequestError::Env { name: "FILE_FORMAT_IPK", value: v.clone(), reason })?,
        Err(_) => false,
    };
    if req.threads > 0 {
        // The ELF scan uses rayon's global pool.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(req.threads).build_global();
    }
    let operator = match &req.operator {
        Some(path) => Some(Operator::load(path, req.strict, diag)?),
        None => None,
    };
    let load = LoadOptions {
        search_paths: req.search_paths.clone(),
        overlays: req.overlays.clone(),
        overlay_values: operator.iter().filter_map(Operator::platform_overlay).collect(),
        strict: req.strict,
        load_libs: true,
    }
    .with_env_search_paths();
    let platforms = load_platforms(&req.platforms, &load, diag)?;
    if platforms.len() > 1 {
        check_platform_names(&platforms)?;
    }
    let app_metadata = match &req.app_metadata {
        Some(path) => Some(AppMetadata::load(path, req.strict, diag)?),
        None => None,
    };
    if let Some(id) = &req.app_id {
        appmeta::check_appid(id)?;
    }
    let archive = match req.archive {
        ArchiveRequest::None => ArchiveKind::None,
        ArchiveRequest::Ipk(layout) => ArchiveKind::Ipk(layout),
        ArchiveRequest::Default { ipk_layout, .. } if ipk_env => ArchiveKind::Ipk(ipk_layout),
        ArchiveRequest::Default { compression, .. } => ArchiveKind::Tar(compression),
    };
    let source_date_epoch = source_date_epoch()?;

    let reference = ImageRef::parse(&req.image)?;
    let source = OpenImage::open(&reference, &OpenOptions { creds: req.creds.clone(), temp_dir: None })?;
    let images = platforms.iter().map(|p| image_for(&source, &reference, p)).collect::<Result<Vec<_>, _>>()?;
    // --oci-output DIR: DIR/<platform> for each of several platforms.
    let several = platforms.len() > 1;
    let oci_outputs: Vec<Option<PathBuf>> = platforms
        .iter()
        .map(|p| req.oci_output.as_ref().map(|dir| if several { dir.join(&p.name) } else { dir.clone() }))
        .collect();
    let options = |platform, oci_output| GenerateOptions {
        platform,
        app_metadata: app_metadata.as_ref(),
        app_id: req.app_id.as_deref(),
        operator: operator.as_ref(),
        runtime: req.runtime,
        matching: req.matching.clone(),
        create_mount_points: req.create_mount_points,
        strict_memory: req.strict_memory,
        overwrite: req.overwrite,
        archive,
        strict: req.strict,
        oci_output,
        source_date_epoch,
        threads: req.threads,
        flatten: req.flatten.clone(),
    };
    if !several {
        let opts = options(&platforms[0], oci_outputs[0].as_deref());
        let report = stages::generate(&source, &images[0], &req.outputdir, &opts, diag)?;
        if let Some(path) = &req.report {
            write_report(path, &report)?;
        }
        let done = success_path(&req.outputdir, archive);
        free_in_background(platforms);
        return Ok(Generated::One { report: Box::new(report), done });
    }

    let targets: Vec<multi::Target<'_>> = platforms
        .iter()
        .zip(&images)
        .zip(&oci_outputs)
        .map(|((platform, image), oci)| multi::Target { image, outputdir: req.outputdir.join(&platform.name), opts: options(platform, oci.as_deref()) })
        .collect();
    let mut results = Vec::new();
    for outcome in multi::generate_all(&source, &targets, diag) {
        let report_file = match (&req.report, &outcome.result) {
            (Some(_), Ok(report)) => Some(write_report(&req.outputdir.join(format!("{}.report.json", outcome.platform)), report)?),
            _ => None,
        };
        results.push(PlatformResult {
            done: success_path(&outcome.outputdir, archive),
            platform: outcome.platform,
            outputdir: outcome.outputdir,
            report_file,
            result: outcome.result,
        });
    }
    if let Some(path) = &req.report {
        let entries: Vec<SummaryEntry<'_>> = results
            .iter()
            .map(|r| match &r.result {
                Ok(report) => SummaryEntry {
                    platform: &r.platform,
                    status: status_of(0),
                    exit_code: 0,
                    bundle: Some(&r.outputdir),
                    archive: Some(report.archive.as_ref().map(|a| a.path.as_path())),
                    report: Some(r.report_file.as_deref()),
                    error: None,
                },
                Err(e) => {
                    let code = exit_code(e.category());
                    SummaryEntry {
                        platform: &r.platform,
                        status: status_of(code),
                        exit_code: code,
                        bundle: None,
                        archive: None,
                        report: None,
                        error: Some(crate::diag::causes(e.as_ref()).collect()),
                    }
                }
            })
            .collect();
        write_report(path, &serde_json::json!({ "platforms": entries }))?;
    }
    drop(targets);
    free_in_background(platforms);
    Ok(Generated::Several(results))
}

/// Frees the platforms on a thread of their own: their inventories are
/// megabytes of small allocations, and neither the caller nor a process
/// about to exit needs to wait for that.
fn free_in_background(platforms: Vec<Platform>) {
    let spawned = std::thread::Builder::new().name("bundlegen-free".into()).spawn(move || drop(platforms));
    // Without a thread, the caller's thread frees them on return.
    drop(spawned);
}

/// Loads the platforms (a `_libs.json` is megabytes of JSON) on the worker
/// threads; warnings are shown in the request's order and loading stops
/// at the first platform that fails, as one after the other would.
fn load_platforms(names: &[String], load: &LoadOptions, diag: &dyn Diagnostics) -> Result<Vec<Platform>, Error> {
    use rayon::prelude::*;
    let loaded: Vec<_> = names
        .par_iter()
        .map(|name| {
            let buffered = crate::diag::Buffered::default();
            (platform::load(name, load, &buffered), buffered)
        })
        .collect();
    let mut platforms = Vec::with_capacity(names.len());
    for (result, buffered) in loaded {
        buffered.replay(diag);
        platforms.push(result?);
    }
    Ok(platforms)
}

/// The image for `platform`: its architecture picked from a multi-platform
/// image; a single-platform image of another architecture is resolved
/// anyway, so that the compatibility check reports it (exit 2), not "no
/// match".
fn image_for(source: &OpenImage, reference: &ImageRef, platform: &Platform) -> Result<ResolvedImage, Error> {
    let selector = Selector { tag: reference.tag().map(str::to_owned), arch: platform.oci_arch().map(str::to_owned), variant: None, os: None };
    match source.resolve(&selector) {
        Ok(image) => Ok(image),
        Err(first) => source.resolve(&Selector { arch: None, ..selector }).map_err(|_| first.into()),
    }
}

/// BundleGen's success line names the archive's absolute path (the
/// bundle directory's without one).
fn success_path(outputdir: &Path, archive: ArchiveKind) -> PathBuf {
    let done = stages::archive_path(outputdir, archive).unwrap_or_else(|| outputdir.to_owned());
    std::path::absolute(&done).unwrap_or(done)
}

fn write_report(path: &Path, value: &impl Serialize) -> Result<PathBuf, Error> {
    let mut json = serde_json::to_vec_pretty(value).map_err(|e| Error::Output { path: path.to_owned(), source: std::io::Error::other(e) })?;
    json.push(b'\n');
    StagedFile::write(path, &json)?;
    Ok(path.to_owned())
}


/// Several platforms: each name becomes a directory in OUTPUTDIR, so it
/// must be a plain file name, and given once.
fn check_platform_names(platforms: &[Platform]) -> Result<(), RequestError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in platforms {
        let name = p.name.as_str();
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
            return Err(RequestError::PlatformName { name: name.to_owned() });
        }
        if !seen.insert(name) {
            return Err(RequestError::PlatformTwice { name: name.to_owned() });
        }
    }
    Ok(())
}

/// A boolean from the environment as click 7 (BundleGen's) reads it: `1`,
/// `true`, `t`, `yes`, `y`, `on` and `0`, `false`, `f`, `no`, `n`, `off`
/// in any case; empty is unset (off).
fn click_bool(value: &str) -> Result<bool, &'static str> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "off" | "" => Ok(false),
        _ => Err("expected 1, true, yes, on or 0, false, no, off (or empty)"),
    }
}

/// `SOURCE_DATE_EPOCH` as reproducible-builds.org defines it.
fn source_date_epoch() -> Result<Option<i64>, RequestError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v.trim().parse::<i64>().map(Some).map_err(|_| RequestError::Env {
            name: "SOURCE_DATE_EPOCH",
            value: v.clone(),
            reason: "not a number of seconds since 1970",
        }),
        Err(_) => Ok(None),
    }
}
