//! `bundlegen generate`: BundleGen's command, flag for flag, plus ours.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::{Console, Failure};
use bundlegen::bundle::archive::{Compression, IpkLayout};
use bundlegen::runtime::{self, Runtime};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use bundlegen::pipeline::stages::Report;
use bundlegen::libmatch::{self, MatchOptions};
use bundlegen::pipeline;
use bundlegen::pipeline::generate::{ArchiveRequest, Generated, PlatformResult, Request, status_of};

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
pub enum IpkFormat {
    /// BundleGen's: a gzip'd tar of data.tar.gz, control.tar.gz and
    /// debian-binary (`tar xzf` unpacks it)
    Bundlegen,
    /// opkg-build's: the same members in an `ar` archive (`ar x` unpacks it)
    Ar,
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
    /// built-in: qemuarm64, qemux86-64), or a path to a template file.
    /// Repeat it (or give a comma-separated list) to generate for several
    /// platforms from one flattening of the image: each bundle is then
    /// OUTPUTDIR/<platform>, its archive OUTPUTDIR/<platform>.tar.gz
    #[arg(short, long, env = "RDK_PLATFORM", value_name = "NAME", required = true, value_delimiter = ',')]
    pub platform: Vec<String>,
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
    /// Plain OCI bundle for crun or runc: ociVersion 1.0.2, no DobbyInit, no
    /// rdkPlugins (BundleGen's flag; the same as --runtime crun)
    #[arg(short = 'u', long = "crun", conflicts_with = "runtime")]
    pub crun: bool,
    /// The runtime the bundle is for [default: dobby; -u: crun]
    #[arg(long = "runtime", value_name = "NAME",
          value_parser = PossibleValuesParser::new(runtime::names())
              .map(|name| runtime::by_name(&name).expect("a name runtime::names() lists")))]
    pub runtime: Option<Runtime>,
    /// Replace OUTPUTDIR if it exists and is not empty (an existing
    /// archive is replaced with or without -y, as BundleGen does)
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Write OUTPUTDIR.ipk (opkg package) instead of OUTPUTDIR.tar.gz;
    /// FILE_FORMAT_IPK=1 (or true, yes, on) in the environment does the
    /// same, unless --no-archive is given
    #[arg(short = 'i', long = "ipk", conflicts_with = "no_archive")]
    pub ipk: bool,
    /// Container of the .ipk: BundleGen's gzip'd tar, or opkg-build's ar
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "bundlegen")]
    pub ipk_format: IpkFormat,
    /// Registry credentials USER[:PASSWORD] for docker:// images
    #[arg(short = 'c', long = "creds", value_name = "CREDS", env = "RDK_OCI_REGISTRY_CREDS", hide_env_values = true)]
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
    /// Write a JSON report of every decision to FILE; with several
    /// platforms, each platform's report goes to OUTPUTDIR/<platform>.report.json
    /// and FILE gets the summary of every platform's result
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Always set the app's resources.ram as the memory limit and refuse
    /// (exit 2) an app above hardware.maxRam; default, as BundleGen: a
    /// limit only when the platform has maxRam, lowered to it with a warning
    #[arg(long)]
    pub strict_memory: bool,
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
    /// (DIR/<platform> for each of several platforms)
    #[arg(long, value_name = "DIR")]
    pub oci_output: Option<PathBuf>,
    /// Worker threads (default: one per core); the output does not depend on it
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub flatten: FlattenArgs,
}

pub fn run(args: GenerateArgs, console: &Console) -> Result<(), Failure> {
    let oci_output = args.oci_output.clone();
    run_generate(args, console).map_err(|f| {
        f.with_replace_help(|path| match &oci_output {
            Some(dir) if dir.as_path() == path => {
                "--oci-output replaces an OCI image layout only: remove the directory, or name another".into()
            }
            _ => "pass -y to replace it".into(),
        })
    })
}

fn run_generate(args: GenerateArgs, console: &Console) -> Result<(), Failure> {
    let started = Instant::now();
    let request = Request {
        image: args.image.clone(),
        creds: args.creds.clone(),
        outputdir: args.outputdir.clone(),
        platforms: args.platform.clone(),
        search_paths: args.searchpath.clone(),
        overlays: args.platform_overlay.clone(),
        operator: args.operator.clone(),
        app_metadata: args.appmetadata.clone(),
        app_id: args.appid.clone(),
        runtime: args.runtime.unwrap_or(if args.crun { runtime::CRUN } else { runtime::DOBBY }),
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
        strict_memory: args.strict_memory,
        overwrite: args.yes,
        archive: {
            let ipk_layout = match args.ipk_format {
                IpkFormat::Bundlegen => IpkLayout::BundleGen,
                IpkFormat::Ar => IpkLayout::Ar,
            };
            if args.no_archive {
                ArchiveRequest::None
            } else if args.ipk {
                ArchiveRequest::Ipk(ipk_layout)
            } else {
                let compression = match args.compression {
                    ArchiveCompression::Gzip => Compression::Gzip,
                    ArchiveCompression::Zstd => Compression::Zstd,
                    ArchiveCompression::None => Compression::None,
                };
                ArchiveRequest::Default { compression, ipk_layout }
            }
        },
        strict: args.strict,
        oci_output: args.oci_output.clone(),
        report: args.report.clone(),
        threads: args.threads,
        flatten: args.flatten.options(),
    };
    match pipeline::generate::generate(&request, console).map_err(|e| vanished(&args.outputdir, e))? {
        Generated::One { report, done } => {
            console.note(&generated(&report, started));
            // BundleGen's last line, which scripts look for.
            console.note(&format!("Successfully generated bundle at {}", done.display()));
            Ok(())
        }
        Generated::Several(results) => several(results, console, started),
    }
}

/// The line saying what was generated.
fn generated(report: &Report, started: Instant) -> String {
    format!(
        "generated {} for {} ({} mode): {} libraries from the device, {} files removed, rootfs {} MiB (image {} MiB){} in {:.2}s",
        report.app_id,
        report.platform,
        report.mode,
        report.libraries.mounts.len(),
        report.files.removed,
        report.bytes.bundle >> 20,
        report.bytes.image >> 20,
        report.archive.as_ref().map(|a| format!(", archive {} ({} KiB)", a.path.display(), a.size >> 10)).unwrap_or_default(),
        started.elapsed().as_secs_f64()
    )
}

/// Several platforms: every platform's result is shown; the exit status
/// is the worst of them.
fn several(results: Vec<PlatformResult>, console: &Console, started: Instant) -> Result<(), Failure> {
    let mut worst: Option<Failure> = None;
    let mut failed = Vec::new();
    let total = results.len();
    for r in results {
        match r.result {
            Ok(report) => {
                console.note(&format!("{}: {}", r.platform, generated(&report, started)));
                console.note(&format!("Successfully generated bundle at {}", r.done.display()));
            }
            Err(e) => {
                let failure = failure_of(e, &r.outputdir);
                let code = failure.exit_code();
                eprintln!("{}: failed (exit {code}):", r.platform);
                super::report(failure.error());
                failed.push(format!("{} ({}, exit {code})", r.platform, status_of(code)));
                if worst.as_ref().is_none_or(|w| w.exit_code() < code) {
                    worst = Some(failure);
                }
            }
        }
    }
    console.note(&format!(
        "summary: {} of {total} platforms generated{} in {:.2}s",
        total - failed.len(),
        if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join(", ")) },
        started.elapsed().as_secs_f64()
    ));
    match worst {
        None => Ok(()),
        Some(w) => {
            let message = anyhow::anyhow!("{} of {total} platforms failed: {}", failed.len(), failed.join(", "));
            Err(match w {
                Failure::BadInput(_) => Failure::BadInput(message),
                Failure::Incompatible(_) => Failure::Incompatible(message),
                Failure::Processing(_) => Failure::Processing(message),
            })
        }
    }
}

/// A platform's error as the single run would report it.
fn failure_of(e: std::sync::Arc<bundlegen::error::Error>, outputdir: &Path) -> Failure {
    use bundlegen::error::Category;
    let failure = match std::sync::Arc::try_unwrap(e) {
        Ok(e) => vanished(outputdir, e),
        // Shared by several platforms (a shared step failed).
        Err(shared) => match shared.category() {
            Category::BadInput => Failure::BadInput(anyhow::Error::new(shared)),
            Category::Incompatible => Failure::Incompatible(anyhow::Error::new(shared)),
            Category::Failed => Failure::Processing(anyhow::Error::new(shared)),
        },
    };
    failure.with_replace_help(|_| "pass -y to replace it".into())
}

/// A failure, explained when the output's directory is gone.
fn vanished(outputdir: &std::path::Path, e: bundlegen::error::Error) -> Failure {
    match Failure::from(e) {
        Failure::Processing(e) => Failure::Processing(super::explain_vanished(outputdir, e)),
        other => other,
    }
}
