//! `bundlegen generate`: BundleGen's command, flag for flag, plus ours.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::{Console, Failure};
use bundlegen::bundle::archive::{Compression, IpkLayout};
use bundlegen::appmeta::{AppMetadata, check_appid};
use bundlegen::runtime::{self, Runtime};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use bundlegen::bundle::generate::{self, ArchiveKind, GenerateOptions};
use bundlegen::bundle::multi;
use bundlegen::image::{ImageRef, OpenImage, OpenOptions, ResolvedImage, Selector};
use bundlegen::libmatch::{self, MatchOptions};
use bundlegen::operator::Operator;
use bundlegen::platform::{self, LoadOptions, Platform};

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
    super::check_search_paths(&args.searchpath)?;
    // BundleGen's `-i` also comes from FILE_FORMAT_IPK (click's envvar).
    let ipk_env = match std::env::var("FILE_FORMAT_IPK") {
        Ok(v) => click_bool(&v).map_err(|e| Failure::BadInput(anyhow::anyhow!("FILE_FORMAT_IPK={v:?}: {e}")))?,
        Err(_) => false,
    };
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
    let platforms = args
        .platform
        .iter()
        .map(|name| platform::load(name, &load, console).map_err(|e| Failure::BadInput(e.into())))
        .collect::<Result<Vec<_>, _>>()?;
    if platforms.len() > 1 {
        check_platform_names(&platforms)?;
    }
    // Every input is read before the image is opened (which may mean a
    // download): the app metadata file and the -x id.
    let app_metadata = match &args.appmetadata {
        Some(path) => Some(AppMetadata::load(path, args.strict, console).map_err(|e| Failure::from(bundlegen::error::Error::from(e)))?),
        None => None,
    };
    if let Some(id) = &args.appid {
        check_appid(id).map_err(|e| Failure::from(bundlegen::error::Error::from(e)))?;
    }

    let reference = ImageRef::parse(&args.image).map_err(|e| Failure::from(bundlegen::error::Error::from(e)))?;
    let source = OpenImage::open(&reference, &OpenOptions { creds: args.creds.clone(), temp_dir: None })
        .map_err(|e| Failure::from(bundlegen::error::Error::from(e)))?;
    // Pick each platform's architecture from a multi-platform image; a
    // single-platform image of another architecture is resolved anyway so
    // that the compatibility check reports it (exit 2), not "no match".
    let images = platforms
        .iter()
        .map(|platform| {
            let selector = Selector { tag: reference.tag().map(str::to_owned), arch: platform.oci_arch().map(str::to_owned), variant: None, os: None };
            match source.resolve(&selector) {
                Ok(image) => Ok(image),
                Err(first) => source
                    .resolve(&Selector { arch: None, ..selector })
                    .map_err(|_| Failure::from(bundlegen::error::Error::from(first))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;

    let archive = if args.no_archive {
        ArchiveKind::None
    } else if args.ipk || ipk_env {
        ArchiveKind::Ipk(match args.ipk_format {
            IpkFormat::Bundlegen => IpkLayout::BundleGen,
            IpkFormat::Ar => IpkLayout::Ar,
        })
    } else {
        ArchiveKind::Tar(match args.compression {
            ArchiveCompression::Gzip => Compression::Gzip,
            ArchiveCompression::Zstd => Compression::Zstd,
            ArchiveCompression::None => Compression::None,
        })
    };
    let source_date_epoch = source_date_epoch().map_err(Failure::BadInput)?;
    // --oci-output DIR: DIR/<platform> for each of several platforms.
    let oci_outputs: Vec<Option<PathBuf>> = platforms
        .iter()
        .map(|p| args.oci_output.as_ref().map(|dir| if platforms.len() > 1 { dir.join(&p.name) } else { dir.clone() }))
        .collect();
    let options = |platform, oci_output| GenerateOptions {
        platform,
        app_metadata: app_metadata.as_ref(),
        app_id: args.appid.as_deref(),
        operator: operator.as_ref(),
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
        archive,
        strict: args.strict,
        oci_output,
        source_date_epoch,
        threads: args.threads,
        flatten: args.flatten.options(),
    };
    if platforms.len() > 1 {
        return run_multi(&args, &source, &platforms, &images, &oci_outputs, archive, options, console, started);
    }
    let (platform, image) = (&platforms[0], &images[0]);
    let opts = options(platform, oci_outputs[0].as_deref());
    let report = generate::generate(&source, image, &args.outputdir, &opts, console).map_err(|e| vanished(&args.outputdir, e))?;
    if let Some(path) = &args.report {
        let mut json = serde_json::to_vec_pretty(&report).context("cannot encode the report").map_err(Failure::Processing)?;
        json.push(b'\n');
        bundlegen::staging::StagedFile::write(path, &json)
            .with_context(|| format!("cannot write the report {}", path.display()))
            .map_err(Failure::Processing)?;
    }
    console.note(&generated(&report, started));
    // BundleGen's last line, which scripts look for: the absolute path of
    // the archive (of the bundle directory with --no-archive).
    let done = generate::archive_path(&args.outputdir, archive).unwrap_or_else(|| args.outputdir.clone());
    let done = std::path::absolute(&done).unwrap_or(done);
    console.note(&format!("Successfully generated bundle at {}", done.display()));
    Ok(())
}

/// The line saying what was generated.
fn generated(report: &generate::Report, started: Instant) -> String {
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

/// Several platforms: each bundle is `OUTPUTDIR/<platform>`. Every
/// platform's result is shown; the exit status is the worst of them.
#[allow(clippy::too_many_arguments)]
fn run_multi<'a>(
    args: &GenerateArgs,
    source: &OpenImage,
    platforms: &'a [Platform],
    images: &'a [ResolvedImage],
    oci_outputs: &'a [Option<PathBuf>],
    archive: ArchiveKind,
    options: impl Fn(&'a Platform, Option<&'a Path>) -> GenerateOptions<'a>,
    console: &Console,
    started: Instant,
) -> Result<(), Failure> {
    let targets: Vec<multi::Target<'_>> = platforms
        .iter()
        .zip(images)
        .zip(oci_outputs)
        .map(|((platform, image), oci)| multi::Target { image, outputdir: args.outputdir.join(&platform.name), opts: options(platform, oci.as_deref()) })
        .collect();
    let outcomes = multi::generate_all(source, &targets, console);

    let mut summary = Vec::new();
    let mut worst: Option<Failure> = None;
    for outcome in outcomes {
        let name = outcome.platform.clone();
        let entry = match outcome.result {
            Ok(report) => {
                let report_file = match &args.report {
                    Some(_) => Some(write_report(&args.outputdir.join(format!("{name}.report.json")), &report)?),
                    None => None,
                };
                console.note(&format!("{name}: {}", generated(&report, started)));
                let done = generate::archive_path(&outcome.outputdir, archive).unwrap_or_else(|| outcome.outputdir.clone());
                let done = std::path::absolute(&done).unwrap_or(done);
                console.note(&format!("Successfully generated bundle at {}", done.display()));
                serde_json::json!({
                    "platform": name,
                    "status": "generated",
                    "exitCode": 0,
                    "bundle": outcome.outputdir,
                    "archive": report.archive.as_ref().map(|a| &a.path),
                    "report": report_file,
                })
            }
            Err(e) => {
                let failure = failure_of(e, &outcome.outputdir);
                let code = failure.exit_code();
                eprintln!("{name}: failed (exit {code}):");
                super::report(failure.error());
                let entry = serde_json::json!({
                    "platform": name,
                    "status": status_of(code),
                    "exitCode": code,
                    "error": failure.error().chain().map(ToString::to_string).collect::<Vec<_>>(),
                });
                if worst.as_ref().is_none_or(|w| w.exit_code() < code) {
                    worst = Some(failure);
                }
                entry
            }
        };
        summary.push(entry);
    }
    if let Some(path) = &args.report {
        write_report(path, &serde_json::json!({ "platforms": summary }))?;
    }
    let failed: Vec<String> = summary
        .iter()
        .filter(|e| e["exitCode"] != 0)
        .map(|e| format!("{} ({}, exit {})", e["platform"].as_str().unwrap_or_default(), e["status"].as_str().unwrap_or_default(), e["exitCode"]))
        .collect();
    console.note(&format!(
        "summary: {} of {} platforms generated{} in {:.2}s",
        summary.len() - failed.len(),
        summary.len(),
        if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join(", ")) },
        started.elapsed().as_secs_f64()
    ));
    match worst {
        None => Ok(()),
        Some(w) => {
            let message = anyhow::anyhow!("{} of {} platforms failed: {}", failed.len(), summary.len(), failed.join(", "));
            Err(match w {
                Failure::BadInput(_) => Failure::BadInput(message),
                Failure::Incompatible(_) => Failure::Incompatible(message),
                Failure::Processing(_) => Failure::Processing(message),
            })
        }
    }
}

fn status_of(code: u8) -> &'static str {
    match code {
        1 => "bad input",
        2 => "incompatible",
        _ => "failed",
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

fn write_report(path: &Path, value: &impl serde::Serialize) -> Result<PathBuf, Failure> {
    let mut json = serde_json::to_vec_pretty(value).context("cannot encode the report").map_err(Failure::Processing)?;
    json.push(b'\n');
    bundlegen::staging::StagedFile::write(path, &json)
        .with_context(|| format!("cannot write the report {}", path.display()))
        .map_err(Failure::Processing)?;
    Ok(path.to_owned())
}

/// Several platforms: each name becomes a directory in OUTPUTDIR, so it
/// must be a plain file name, and given once.
fn check_platform_names(platforms: &[Platform]) -> Result<(), Failure> {
    let mut seen = std::collections::BTreeSet::new();
    for p in platforms {
        let name = p.name.as_str();
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
            return Err(Failure::BadInput(anyhow::anyhow!(
                "platform {name:?}: the name cannot be a directory name in OUTPUTDIR\nhelp: give the template a plain name"
            )));
        }
        if !seen.insert(name) {
            return Err(Failure::BadInput(anyhow::anyhow!(
                "platform {name} is given twice\nhelp: name each platform once"
            )));
        }
    }
    Ok(())
}

/// A boolean from the environment as click 7 (BundleGen's) reads it: `1`,
/// `true`, `t`, `yes`, `y`, `on` and `0`, `false`, `f`, `no`, `n`, `off`
/// in any case; empty is unset (off).
fn click_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "off" | "" => Ok(false),
        _ => Err("expected 1, true, yes, on or 0, false, no, off (or empty)".into()),
    }
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
