//! `bundlegen platform list|show|validate|init`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bundlegen::diag::Diagnostics;
use bundlegen::platform::{self, InitOptions, LibsInventory, LoadOptions, Location, PlatformError};
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
        super::check_search_paths(&search.searchpath)?;
    }
    if let PlatformCommand::Init(a) = &args.command {
        super::check_search_paths(&a.search.searchpath)?;
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
        let is_libs = f
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("_libs.json"));
        let result = if is_libs {
            LibsInventory::load(f).map(|_| ())
        } else {
            platform::validate_file(f, strict, diag).map(|_| ())
        };
        match result {
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
    let from = match &a.from {
        None => None,
        Some(name) => {
            match platform::locate(name, &a.search.options().search_paths).map_err(bad)? {
                Location::File(p) => Some(p),
                Location::Builtin(n) => {
                    return Err(Failure::BadInput(anyhow::anyhow!(
                        "--from {n}: built-in platforms cannot be used as a base\nhelp: pass a template file"
                    )));
                }
            }
        }
    };
    let opts = InitOptions {
        rootfs: a.rootfs.clone(),
        name: a.name.clone(),
        manifest: a.manifest.clone(),
        pkgdata: a.pkgdata.clone(),
        from,
    };
    let counted = CountRead::new(diag);
    let (template, libs) = platform::init(&opts, &counted).map_err(bad)?;
    let json_path = a.output.join(format!("{}.json", a.name));
    let libs_path = a.output.join(format!("{}_libs.json", a.name));
    write_atomic(&json_path, &pretty(&template)).map_err(Failure::Processing)?;
    write_atomic(&libs_path, &libs.to_json()).map_err(Failure::Processing)?;
    eprintln!(
        "wrote {} and {} ({} libraries; {} files read under the loader's directories)",
        json_path.display(),
        libs_path.display(),
        libs.libs.len(),
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

/// JSON with BundleGen's 4-space indentation and a final newline.
pub(crate) fn pretty<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing plain data into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    out.push(b'\n');
    String::from_utf8_lossy(&out).into_owned()
}

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

/// Writes beside the destination, then renames over it.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .with_context(|| format!("cannot set permissions on {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
