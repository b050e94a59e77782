//! The stages of one platform's bundle: one image, one platform, one app →
//! a bundle directory (`config.json` + `rootfs/`) and its archive.
//!
//! In order ([`generate`]): check the inputs (`-x`, the image's
//! architecture against the platform's, outputs overlapping the input);
//! claim the output (a locked staging directory beside it); flatten the
//! image into `staging/rootfs`; read the app metadata (the caller's, or
//! `/appmetadata.json` from the image, which is then removed); check the
//! app against the platform; scan the rootfs's ELF files. Then
//! ([`finish`], which a several-platform run calls once per platform on a
//! copy of the shared rootfs): plan library matching; check that the
//! entrypoint runs; apply the plan (remove the libraries the device
//! provides); build `config.json`; prepare the rootfs (mount points,
//! `/etc/localtime`, D-Bus); write the archive from the staging directory;
//! rename the bundle, then the archive, into place; write the OCI image of
//! the final rootfs if asked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::archive::{self, ArchiveInfo, ArchiveOptions, Compression};
use crate::bundle::config::{self, ConfigInputs};
use crate::bundle::{ocidir, prep};
use crate::runtime::Runtime;
use crate::appmeta::AppMetadata;
use crate::compat;
use crate::diag::{Diagnostics, Progress, Tee, Unit, Warning};
use crate::elf;
use crate::error::Error;
use crate::image::{OpenImage, ResolvedImage};
use crate::layers::{self, FlattenOptions};
use crate::libmatch::{self, MatchOptions};
use crate::operator::Operator;
use crate::platform::Platform;
use crate::staging::{self, Staging};

/// The app metadata file BundleGen reads from the image when `-a` is not
/// given.
const IMAGE_APPMETADATA: &str = "appmetadata.json";
/// App metadata larger than this is refused.
const MAX_APPMETADATA: u64 = 1 << 20;

/// What to write besides the bundle directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar(Compression),
    Ipk(archive::IpkLayout),
    None,
}

pub struct GenerateOptions<'a> {
    pub platform: &'a Platform,
    /// `-a`, read by the caller before it opens the image
    /// ([`AppMetadata::load`]); `None` reads `/appmetadata.json` from the
    /// image.
    pub app_metadata: Option<&'a AppMetadata>,
    /// `-x`
    pub app_id: Option<&'a str>,
    pub operator: Option<&'a Operator>,
    /// `--runtime` (`-u`: crun).
    pub runtime: Runtime,
    pub matching: MatchOptions,
    /// `-r`
    pub create_mount_points: bool,
    /// `--strict-memory` (the operator's `strictMemory` also turns it on).
    pub strict_memory: bool,
    /// `-y`
    pub overwrite: bool,
    pub archive: ArchiveKind,
    pub strict: bool,
    /// `--oci-output DIR`
    pub oci_output: Option<&'a Path>,
    pub source_date_epoch: Option<i64>,
    /// Worker threads for compression (0: one per CPU).
    pub threads: usize,
    pub flatten: FlattenOptions,
}

/// What `generate` did, for `--report` and the summary line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub app_id: String,
    pub platform: String,
    pub image: ImageSummary,
    /// The runtime the bundle is for (`dobby`, `crun`, `runc`).
    pub mode: &'static str,
    pub bundle: PathBuf,
    pub entrypoint: compat::EntrypointInfo,
    pub libraries: libmatch::MatchPlan,
    pub bytes: Bytes,
    pub files: Files,
    pub rootfs_changes: prep::PrepReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci_output: Option<String>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSummary {
    pub name: String,
    pub manifest: String,
    pub platform: String,
    pub layers: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bytes {
    /// Regular-file bytes of the flattened image.
    pub image: u64,
    /// Removed by library matching and pruning.
    pub removed: u64,
    /// What is left in the bundle's rootfs.
    pub bundle: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Files {
    pub image: u64,
    pub removed: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSummary {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl From<&ArchiveInfo> for ArchiveSummary {
    fn from(a: &ArchiveInfo) -> Self {
        ArchiveSummary { path: a.path.clone(), size: a.size, sha256: a.sha256.to_string() }
    }
}

/// The archive path BundleGen uses: `OUTPUTDIR.tar.gz` (or `.ipk`).
pub fn archive_path(outputdir: &Path, kind: ArchiveKind) -> Option<PathBuf> {
    let ext = match kind {
        ArchiveKind::Tar(c) => c.extension(),
        ArchiveKind::Ipk(_) => "ipk",
        ArchiveKind::None => return None,
    };
    let mut name = outputdir.file_name()?.to_os_string();
    name.push(".");
    name.push(ext);
    Some(outputdir.with_file_name(name))
}

pub fn generate(
    source: &OpenImage,
    image: &ResolvedImage,
    outputdir: &Path,
    opts: &GenerateOptions<'_>,
    diag: &dyn Diagnostics,
) -> Result<Report, Error> {
    let diag = Tee::new(diag);
    // Inputs are read before the image is touched: a wrong `-x` or `-a`
    // file fails in a moment, not after every layer is flattened.
    check_inputs(source, image, outputdir, opts, &diag)?;
    let staging = Staging::new(outputdir, opts.overwrite)?;
    let rootfs = staging.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|source| Error::Output { path: rootfs.clone(), source })?;
    let flattened = layers::flatten(source, image, &rootfs, &opts.flatten, &diag)?;
    let app = load_app(&rootfs, image, opts.app_metadata.cloned(), opts, &diag)?;
    let memory = check_app(opts.platform, image, &app, opts, &diag)?;
    let scan = scan_elf(&rootfs, &diag)?;
    let analysed = Analysed { flattened: &flattened, app: &app, scan: &scan, model: None };
    finish(image, &analysed, staging, outputdir, memory, opts, diag)
}

/// What every platform shares: the flattened image (with
/// `/appmetadata.json` removed), the app metadata and the ELF scan.
pub(crate) struct Analysed<'a> {
    pub flattened: &'a layers::Flattened,
    pub app: &'a AppMetadata,
    pub scan: &'a elf::ElfScan,
    /// Library matching's model of the image, when several platforms
    /// share it (`None`: built for this platform from its rootfs).
    pub model: Option<&'a libmatch::ImageModel>,
}

/// The checks `generate` makes before flattening: `-x`, the image's
/// architecture against the platform's, and outputs that would overlap
/// the input.
pub(crate) fn check_inputs(
    source: &OpenImage,
    image: &ResolvedImage,
    outputdir: &Path,
    opts: &GenerateOptions<'_>,
    diag: &dyn Diagnostics,
) -> Result<(), Error> {
    if let Some(id) = opts.app_id {
        crate::appmeta::check_appid(id)?;
    }
    compat::check_arch(opts.platform, image, diag)?;
    staging::refuse_overlap(outputdir, &source.dir, "the image layout")?;
    if let Some(dir) = opts.oci_output {
        staging::refuse_overlap(dir, &source.dir, "the image layout")?;
        staging::refuse_overlap(dir, outputdir, "the bundle directory")?;
        // Refused now, not after the bundle is in place: only an OCI
        // layout (or an empty directory) is replaced (ocidir::write).
        let occupied = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
        if occupied && !dir.join("oci-layout").is_file() {
            return Err(staging::StagingError::Exists { path: dir.to_owned() }.into());
        }
    }
    Ok(())
}

/// The app against the platform (and its memory, with `--strict-memory`);
/// the image was checked by [`check_inputs`]. (`_image` is unused: kept so
/// that the callers stay as they are.)
pub(crate) fn check_app(
    platform: &Platform,
    _image: &ResolvedImage,
    app: &AppMetadata,
    opts: &GenerateOptions<'_>,
    diag: &dyn Diagnostics,
) -> Result<config::MemoryLimit, Error> {
    compat::check_platform(platform, app, diag)?;
    if opts.strict_memory || opts.operator.is_some_and(|o| o.strict_memory) {
        compat::check_ram(platform, app)?;
        Ok(config::MemoryLimit::Strict)
    } else {
        Ok(config::MemoryLimit::BundleGen)
    }
}

pub(crate) fn scan_elf(rootfs: &Path, diag: &dyn Diagnostics) -> Result<elf::ElfScan, Error> {
    diag.progress(Progress::Begin { step: "analysing ELF files".into(), total: None, unit: Unit::Items });
    let scan = elf::scan(rootfs, diag).map_err(|source| Error::Scan { path: rootfs.to_owned(), source })?;
    diag.progress(Progress::End);
    Ok(scan)
}

/// The platform's part, from an analysed rootfs at `staging/rootfs` that
/// this platform owns: library matching, the entrypoint check, config.json,
/// rootfs preparation, the archive, and the rename into place.
pub(crate) fn finish(
    image: &ResolvedImage,
    analysed: &Analysed<'_>,
    staging: Staging,
    outputdir: &Path,
    memory: config::MemoryLimit,
    opts: &GenerateOptions<'_>,
    diag: Tee<'_>,
) -> Result<Report, Error> {
    let Analysed { flattened, app, scan, model } = *analysed;
    let platform = opts.platform;
    let rootfs = staging.path().join("rootfs");
    let command = command_of(image);
    let matching = matching_options(app, opts);
    let entry = entrypoint(&rootfs, image);
    let plan = match model {
        Some(model) => libmatch::plan_with(model, &rootfs, scan, platform, platform.libs.as_ref(), entry.as_ref(), &matching, &diag)?,
        None => libmatch::plan(&rootfs, scan, platform, platform.libs.as_ref(), entry.as_ref(), &matching, &diag)?,
    };
    let entrypoint = compat::check_entrypoint(&rootfs, &command, path_env(image).as_deref(), platform, scan, &plan, platform.libs.as_ref())
        .map_err(|e| match &flattened.stats.replaced_dirlinks {
            links if !links.is_empty() && !e.is_bad_input() && !e.is_failure() => {
                compat::Incompatible::AfterReplacedDirlinks { inner: Box::new(e), links: links.clone() }
            }
            _ => e,
        })?;
    let removed = libmatch::apply(&rootfs, &plan)?;

    let built = config::build(
        &ConfigInputs {
            image: &image.config,
            platform,
            app,
            operator: opts.operator,
            runtime: opts.runtime,
            lib_mounts: &plan.mounts,
            rootfs: &rootfs,
            create_mount_points: opts.create_mount_points,
            memory,
        },
        &diag,
    )?;
    let prep_report = prep::prepare(
        &rootfs,
        &prep::PrepOptions {
            localtime_plugin: built.plugins.contains("localtime"),
            mount_points: built
                .mount_points
                .iter()
                .map(|m| (m.path.clone(), m.kind == config::MountPointKind::Dir))
                .collect(),
            dbus: built.plugins.contains("ipc"),
        },
    )?;
    let mut json = serde_json::to_vec_pretty(&built.config).map_err(|e| Error::Output {
        path: staging.path().join("config.json"),
        source: std::io::Error::other(e),
    })?;
    json.push(b'\n');
    let config_path = staging.path().join("config.json");
    std::fs::write(&config_path, json).map_err(|source| Error::Output { path: config_path, source })?;
    let bundle_bytes = flattened.stats.bytes.saturating_sub(removed.bytes_removed);

    // The archive is written from the staging directory before anything is
    // renamed, so a failure there (disk full) leaves the previous bundle
    // and archive as they were; then both are renamed into place.
    let archive_opts = archive_options(platform, &built, &flattened.recorded, opts);
    let staged_archive = match (opts.archive, archive_path(outputdir, opts.archive)) {
        (ArchiveKind::Tar(_), Some(out)) => Some(archive::stage_tar(staging.path(), &out, &archive_opts)?),
        (ArchiveKind::Ipk(layout), Some(out)) => {
            let arch = platform.spec.arch.as_ref();
            let meta = archive::IpkMeta {
                package: app.id.clone(),
                version: app.version.clone().unwrap_or_else(|| "1.0.0".into()),
                architecture: archive::IpkMeta::architecture_of(
                    arch.and_then(|a| a.arch.as_deref()).unwrap_or("all"),
                    arch.and_then(|a| a.variant.as_deref()),
                ),
                description: app.description.clone().unwrap_or_else(|| app.id.clone()),
                priority: app.priority.clone(),
            };
            Some(archive::stage_ipk(staging.path(), &out, &meta, layout, &archive_opts)?)
        }
        _ => None,
    };
    staging.commit()?;
    let archive = staged_archive.map(archive::StagedArchive::persist).transpose()?;
    let oci_output = match opts.oci_output {
        Some(dir) => {
            let tag = app.version.clone().unwrap_or_else(|| "latest".into());
            let layer_opts = ArchiveOptions { owner: None, file_mask: None, ..archive_opts.clone() };
            let digest = ocidir::write(&outputdir.join("rootfs"), &image.config, dir, &tag, &layer_opts)?;
            Some(format!("{}:{tag} ({digest})", dir.display()))
        }
        None => None,
    };

    Ok(Report {
        app_id: app.id.clone(),
        platform: platform.name.clone(),
        image: ImageSummary {
            name: image.name.clone(),
            manifest: image.manifest_digest.to_string(),
            platform: image.platform.to_string(),
            layers: image.layers.len(),
        },
        mode: opts.runtime.name,
        bundle: outputdir.to_owned(),
        entrypoint,
        libraries: plan,
        bytes: Bytes { image: flattened.stats.bytes, removed: removed.bytes_removed, bundle: bundle_bytes },
        files: Files { image: flattened.stats.files, removed: removed.files_removed },
        rootfs_changes: prep_report,
        archive: archive.as_ref().map(ArchiveSummary::from),
        oci_output,
        warnings: diag.record.warnings(),
    })
}

/// The app metadata of `-a` (`given`, already read), or from the image
/// (then removed from the bundle), with `-x` applied.
pub(crate) fn load_app(
    rootfs: &Path,
    image: &ResolvedImage,
    given: Option<AppMetadata>,
    opts: &GenerateOptions<'_>,
    diag: &dyn Diagnostics,
) -> Result<AppMetadata, Error> {
    let in_image = rootfs.join(IMAGE_APPMETADATA);
    let app = match given {
        Some(app) => app,
        None => {
            // Read inside the rootfs: a symlink there never reaches the host.
            let bytes = crate::rootfs::Walker::new(rootfs)
                .and_then(|mut w| w.read_file(IMAGE_APPMETADATA.as_bytes(), MAX_APPMETADATA))
                .map_err(|source| crate::appmeta::AppMetaError::from(crate::input::LoadError::Read {
                    kind: crate::input::InputKind::AppMetadata,
                    path: in_image.clone(),
                    source,
                }))?
                .ok_or_else(|| Error::NoAppMetadata { image: image.name.clone() })?;
            let name = format!("{}:/{IMAGE_APPMETADATA}", image.name);
            AppMetadata::parse(&bytes, &name, opts.strict, diag)?
        }
    };
    // BundleGen removes the image's copy from the bundle in either case.
    // Unlinked through the root's descriptor: a symlink there is removed,
    // never followed.
    let removed = crate::rootfs::Walker::new(rootfs).and_then(|w| {
        crate::rootfs::unlink_at(w.root().raw(), &crate::rootfs::cstr(IMAGE_APPMETADATA.as_bytes())?, 0)
    });
    match removed {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(source) => return Err(Error::Output { path: in_image, source }),
    }
    match opts.app_id {
        Some(id) => Ok(app.with_id(id)?),
        None => Ok(app),
    }
}

/// Library matching's options for this app.
pub(crate) fn matching_options(app: &AppMetadata, opts: &GenerateOptions<'_>) -> MatchOptions {
    MatchOptions { graphics: app.graphics, ..opts.matching.clone() }
}

/// The entrypoint located in `rootfs` with the image's PATH, as the
/// entrypoint check and the container do.
pub(crate) fn entrypoint(rootfs: &Path, image: &ResolvedImage) -> Option<libmatch::Entrypoint> {
    let command = command_of(image);
    command.first().map(|c| compat::entrypoint_roots(rootfs, c, path_env(image).as_deref()))
}

/// Entrypoint followed by Cmd, as runtimes join them.
fn command_of(image: &ResolvedImage) -> Vec<String> {
    let cfg = image.config.config.clone().unwrap_or_default();
    cfg.entrypoint.into_iter().flatten().chain(cfg.cmd.into_iter().flatten()).collect()
}

fn path_env(image: &ResolvedImage) -> Option<String> {
    let cfg = image.config.config.as_ref()?;
    cfg.env.iter().flatten().find_map(|e| e.strip_prefix("PATH=").map(str::to_owned))
}

fn archive_options<'a>(
    platform: &Platform,
    built: &config::BuiltConfig,
    recorded: &'a BTreeMap<PathBuf, layers::RecordedMeta>,
    opts: &GenerateOptions<'_>,
) -> ArchiveOptions<'a> {
    let tarball = platform.spec.tarball.as_ref();
    let compression = match opts.archive {
        ArchiveKind::Tar(c) => c,
        _ => Compression::Gzip,
    };
    ArchiveOptions {
        compression,
        level: None,
        source_date_epoch: opts.source_date_epoch,
        threads: opts.threads,
        owner: tarball.and_then(|t| t.file_ownership_same_as_user).unwrap_or(false).then_some(built.user),
        file_mask: tarball.and_then(|t| t.file_mask).map(|m| m.0),
        recorded,
        rootless: opts.flatten.rootless,
    }
}
