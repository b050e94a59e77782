//! `bundlegen platform list|show|validate|init`.

use std::io::Write;
use std::path::PathBuf;

use bundlegen::diag::Diagnostics;
use bundlegen::pipeline::{self, platform::InitRequest};
use bundlegen::platform::{self, LoadOptions, PlatformError};
use clap::{Args, Subcommand};

use super::Failure;

#[derive(Debug, Args)]
pub struct PlatformArgs {
    #[command(subcommand)]
    pub command: PlatformCommand,
}

#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// List the platform templates in the search paths and the built-in ones.
    List {
        #[command(flatten)]
        search: SearchArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a platform's template, merged with its overlays, as JSON.
    Show {
        /// Platform name (exact template file name without .json) or path.
        name: String,
        #[command(flatten)]
        search: SearchArgs,
        /// Extra JSON files merged on top, in order (JSON Merge Patch).
        #[arg(long = "platform-overlay", value_name = "FILE")]
        overlays: Vec<PathBuf>,
        /// Unknown keys are errors instead of warnings.
        #[arg(long)]
        strict: bool,
    },
    /// Check template files (and `_libs.json` inventories) for errors.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Unknown keys are errors instead of warnings.
        #[arg(long)]
        strict: bool,
    },
    /// Create a template and its `_libs.json` inventory from a device rootfs.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Directory searched recursively for templates (repeatable; also
    /// RDK_PLATFORM_SEARCHPATH, colon-separated).
    #[arg(short = 's', long = "searchpath", value_name = "DIR")]
    pub searchpath: Vec<PathBuf>,
}

impl SearchArgs {
    fn options(&self) -> LoadOptions {
        LoadOptions {
            search_paths: self.searchpath.clone(),
            ..LoadOptions::default()
        }
        .with_env_search_paths()
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The device image's root filesystem.
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// Name of the new platform (platformName and file names).
    #[arg(long)]
    pub name: String,
    /// Yocto image manifest (`package arch version` lines).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Yocto PKGDATA_DIR, to record each library's package and version.
    #[arg(long, value_name = "DIR")]
    pub pkgdata: Option<PathBuf>,
    /// Template (name or path) whose device fields are kept.
    #[arg(long, value_name = "TEMPLATE")]
    pub from: Option<String>,
    #[command(flatten)]
    pub search: SearchArgs,
    /// Output directory for NAME.json and NAME_libs.json.
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
}

fn bad(e: PlatformError) -> Failure {
    Failure::BadInput(anyhow::Error::new(e))
}

pub fn run(args: &PlatformArgs, diag: &dyn Diagnostics) -> Result<(), Failure> {
    if let PlatformCommand::List { search, .. } | PlatformCommand::Show { search, .. } = &args.command {
        pipeline::check_search_paths(&search.searchpath).map_err(|e| Failure::from(bundlegen::error::Error::from(e)))?;
    }
    match &args.command {
        PlatformCommand::List { search, json } => list(&search.options(), *json),
        PlatformCommand::Show {
            name,
            search,
            overlays,
            strict,
        } => {
            let opts = LoadOptions {
                overlays: overlays.clone(),
                strict: *strict,
                ..search.options()
            };
            let p = platform::load(name, &opts, diag).map_err(bad)?;
            print_out(&pretty(&p.raw))
        }
        PlatformCommand::Validate { files, strict } => validate(files, *strict, diag),
        PlatformCommand::Init(a) => init(a, diag),
    }
}

fn list(opts: &LoadOptions, json: bool) -> Result<(), Failure> {
    let all = platform::list(&opts.search_paths);
    if json {
        return print_out(&pretty(&all));
    }
    let width = all.iter().map(|l| l.name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for l in &all {
        text.push_str(&format!("{:width$}  {}\n", l.name, l.source));
    }
    print_out(&text)
}

fn validate(files: &[PathBuf], strict: bool, diag: &dyn Diagnostics) -> Result<(), Failure> {
    let mut failed = 0;
    for f in files {
        match pipeline::platform::validate_file(f, strict, diag) {
            Ok(()) => println!("ok: {}", f.display()),
            Err(e) => {
                failed += 1;
                eprintln!("error: {:#}", anyhow::Error::new(e));
            }
        }
    }
    if failed > 0 {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "{failed} of {} files are invalid",
            files.len()
        )));
    }
    Ok(())
}

fn init(a: &InitArgs, diag: &dyn Diagnostics) -> Result<(), Failure> {
    let request = InitRequest {
        rootfs: a.rootfs.clone(),
        name: a.name.clone(),
        manifest: a.manifest.clone(),
        pkgdata: a.pkgdata.clone(),
        from: a.from.clone(),
        search_paths: a.search.searchpath.clone(),
        output: a.output.clone(),
    };
    let counted = CountRead::new(diag);
    let done = pipeline::platform::init(&request, &counted).map_err(Failure::from)?;
    eprintln!(
        "wrote {} and {} ({} libraries; {} files read under the loader's directories)",
        done.template.display(),
        done.libs.display(),
        done.libraries,
        counted.files.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

/// Passes diagnostics on and keeps the number of files `platform init`
/// read, which its summary line shows.
struct CountRead<'a> {
    inner: &'a dyn Diagnostics,
    files: std::sync::atomic::AtomicU64,
}

impl<'a> CountRead<'a> {
    fn new(inner: &'a dyn Diagnostics) -> Self {
        CountRead {
            inner,
            files: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Diagnostics for CountRead<'_> {
    fn warning(&self, w: bundlegen::diag::Warning) {
        self.inner.warning(w);
    }

    fn progress(&self, event: bundlegen::diag::Progress) {
        if let bundlegen::diag::Progress::Begin {
            step,
            total: Some(n),
            ..
        } = &event
            && step.starts_with(platform::init::READ_STEP)
        {
            self.files
                .fetch_add(*n, std::sync::atomic::Ordering::Relaxed);
        }
        self.inner.progress(event);
    }
}

pub(crate) use bundlegen::pipeline::platform::pretty;

pub(crate) fn print_out(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Processing(
            anyhow::Error::new(e).context("cannot write to stdout"),
        )),
    }
}
