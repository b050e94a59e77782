//! `bundlegen generate`: BundleGen's command, flag for flag, plus ours.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::{Console, Failure};
use bundlegen::bundle::archive::Compression;
use bundlegen::bundle::config::Mode;
use bundlegen::bundle::generate::{self, ArchiveKind, GenerateOptions};
use bundlegen::image::{ImageRef, OpenImage, OpenOptions, Selector};
use bundlegen::libmatch::{self, MatchOptions};
use bundlegen::operator::Operator;
use bundlegen::platform::{self, LoadOptions};

use super::image_args::FlattenArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LibMatchingMode {
    /// Take a device library when it provides every symbol version the
    /// bundle needs
    Normal,
    /// Always keep the image's libraries (GPU libraries still come from the device)
    Image,
    /// Take the device's library whenever it has the same soname
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveCompression {
    Gzip,
    Zstd,
    None,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The image: `oci:DIR[:TAG]`, a layout directory (image-oci's
    /// `<image>-latest-oci`), `oci-archive:FILE[:TAG]`, or a skopeo
    /// transport (`docker://…`)
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The bundle directory to write; the archive goes beside it as
    /// OUTPUTDIR.tar.gz (or .ipk)
    #[arg(value_name = "OUTPUTDIR")]
    pub outputdir: PathBuf,
    /// Platform template name (exact match in the search paths, or a
    /// built-in: qemuarm64, qemux86-64), or a path to a template file
    #[arg(short, long, env = "RDK_PLATFORM", value_name = "NAME")]
    pub platform: String,
    /// Directory searched (recursively) for platform templates; repeatable
    #[arg(short = 's', long = "searchpath", value_name = "DIR")]
    pub searchpath: Vec<PathBuf>,
    /// More platform files merged over the template, in order
    #[arg(long, value_name = "FILE")]
    pub platform_overlay: Vec<PathBuf>,
    /// App metadata file; default: /appmetadata.json in the image (removed
    /// from the bundle)
    #[arg(short = 'a', long = "appmetadata", value_name = "FILE")]
    pub appmetadata: Option<PathBuf>,
    /// Use this app id instead of the metadata's `id`
    #[arg(short = 'x', long = "appid", value_name = "ID")]
    pub appid: Option<String>,
    /// Library matching policy
    #[arg(short = 'm', long = "libmatchingmode", value_enum, default_value = "normal")]
    pub libmatchingmode: LibMatchingMode,
    /// Match only the libraries the executables need directly
    #[arg(short = 'n', long = "nodepwalking")]
    pub nodepwalking: bool,
    /// Create every mount destination in the rootfs (for read-only rootfs)
    #[arg(short = 'r', long = "createmountpoints")]
    pub createmountpoints: bool,
    /// Plain OCI bundle for crun or runc: ociVersion 1.0.2, no DobbyInit, no rdkPlugins
    #[arg(short = 'u', long = "crun")]
    pub crun: bool,
    /// Replace OUTPUTDIR (and its archive) if they exist
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Write OUTPUTDIR.ipk (opkg package) instead of OUTPUTDIR.tar.gz
    #[arg(short = 'i', long = "ipk", conflicts_with = "no_archive")]
    pub ipk: bool,
    /// Registry credentials USER[:PASSWORD] for docker:// images
    #[arg(short = 'c', long = "creds", value_name = "CREDS")]
    pub creds: Option<String>,
    /// Operator configuration applied over the platform
    #[arg(long, value_name = "FILE")]
    pub operator: Option<PathBuf>,
    /// Archive compression (gzip and zstd use every core)
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: ArchiveCompression,
    /// Write only the bundle directory
    #[arg(long)]
    pub no_archive: bool,
    /// Write a JSON report of every decision to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Unknown keys in platform, app metadata and operator files are errors
    #[arg(long)]
    pub strict: bool,
    /// Libraries to keep in the bundle although nothing links them (dlopen);
    /// glob over in-root paths, repeatable
    #[arg(long, value_name = "GLOB")]
    pub keep: Vec<String>,
    /// Do not remove libraries that nothing in the bundle reaches
    #[arg(long)]
    pub no_prune: bool,
    /// Also write the final rootfs as a single-layer OCI image layout
    #[arg(long, value_name = "DIR")]
    pub oci_output: Option<PathBuf>,
    /// Worker threads (default: one per core); the output does not depend on it
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub flatten: FlattenArgs,
}

pub fn run(args: GenerateArgs, console: &Console) -> Result<(), Failure> {
    let started = Instant::now();
    if args.threads > 0 {
        // The ELF scan uses rayon's global pool.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build_global();
    }
    let load = LoadOptions {
        search_paths: args.searchpath.clone(),
        overlays: args.platform_overlay.clone(),
        overlay_values: Vec::new(),
        strict: args.strict,
        load_libs: true,
    }
    .with_env_search_paths();
    let operator = match &args.operator {
        Some(path) => Some(Operator::load(path, args.strict, console).map_err(|e| Failure::BadInput(e.into()))?),
        None => None,
    };
    let load = LoadOptions { overlay_values: operator.iter().filter_map(Operator::platform_overlay).collect(), ..load };
    let platform = platform::load(&args.platform, &load, console).map_err(|e| Failure::BadInput(e.into()))?;

    let reference = ImageRef::parse(&args.image).map_err(|e| Failure::from(bundlegen::error::Error::from(e)))?;
    let source = OpenImage::open(&reference, &OpenOptions { creds: args.creds.clone(), temp_dir: None })
        .map_err(|e| Failure::from(bundlegen::error::Error::from(e)))?;
    // Pick the platform's architecture from a multi-platform image; a
    // single-platform image of another architecture is resolved anyway so
    // that the compatibility check reports it (exit 2), not "no match".
    let selector = Selector { tag: reference.tag().map(str::to_owned), arch: platform.oci_arch().map(str::to_owned), variant: None, os: None };
    let image = match source.resolve(&selector) {
        Ok(image) => image,
        Err(first) => source
            .resolve(&Selector { arch: None, ..selector })
            .map_err(|_| Failure::from(bundlegen::error::Error::from(first)))?,
    };

    let archive = if args.no_archive {
        ArchiveKind::None
    } else if args.ipk {
        ArchiveKind::Ipk
    } else {
        ArchiveKind::Tar(match args.compression {
            ArchiveCompression::Gzip => Compression::Gzip,
            ArchiveCompression::Zstd => Compression::Zstd,
            ArchiveCompression::None => Compression::None,
        })
    };
    let source_date_epoch = source_date_epoch().map_err(Failure::BadInput)?;
    let opts = GenerateOptions {
        platform: &platform,
        app_metadata: args.appmetadata.as_deref(),
        app_id: args.appid.as_deref(),
        operator: operator.as_ref(),
        mode: if args.crun { Mode::Crun } else { Mode::Dobby },
        matching: MatchOptions {
            mode: match args.libmatchingmode {
                LibMatchingMode::Normal => libmatch::Mode::Normal,
                LibMatchingMode::Image => libmatch::Mode::Image,
                LibMatchingMode::Host => libmatch::Mode::Host,
            },
            no_dep_walking: args.nodepwalking,
            keep: args.keep.clone(),
            prune: !args.no_prune,
            graphics: false,
        },
        create_mount_points: args.createmountpoints,
        overwrite: args.yes,
        archive,
        strict: args.strict,
        oci_output: args.oci_output.as_deref(),
        source_date_epoch,
        threads: args.threads,
        flatten: args.flatten.options(),
    };
    if !args.yes
        && let Some(out) = generate::archive_path(&args.outputdir, archive)
            && std::fs::symlink_metadata(&out).is_ok() {
                return Err(Failure::BadInput(anyhow::anyhow!(
                    "{} already exists\nhelp: pass -y to replace it",
                    out.display()
                )));
            }
    let report = generate::generate(&source, &image, &args.outputdir, &opts, console).map_err(|e| vanished(&args.outputdir, e))?;
    if let Some(path) = &args.report {
        let mut json = serde_json::to_vec_pretty(&report).context("cannot encode the report").map_err(Failure::Processing)?;
        json.push(b'\n');
        bundlegen::staging::StagedFile::write(path, &json)
            .with_context(|| format!("cannot write the report {}", path.display()))
            .map_err(Failure::Processing)?;
    }
    let from_device = report.libraries.mounts.len();
    console.note(&format!(
        "generated {} for {} ({} mode): {} libraries from the device, {} files removed, rootfs {} MiB (image {} MiB){} in {:.2}s",
        report.app_id,
        report.platform,
        report.mode,
        from_device,
        report.files.removed,
        report.bytes.bundle >> 20,
        report.bytes.image >> 20,
        report.archive.as_ref().map(|a| format!(", archive {} ({} KiB)", a.path.display(), a.size >> 10)).unwrap_or_default(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A failure, explained when the output's directory is gone.
fn vanished(outputdir: &std::path::Path, e: bundlegen::error::Error) -> Failure {
    match Failure::from(e) {
        Failure::Processing(e) => Failure::Processing(super::explain_vanished(outputdir, e)),
        other => other,
    }
}

/// `SOURCE_DATE_EPOCH` as reproducible-builds.org defines it.
fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")),
        Err(_) => Ok(None),
    }
}
