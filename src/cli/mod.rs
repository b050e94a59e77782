//! The command line: argument parsing and exit codes live here and in
//! `main.rs` only.

mod completions;
mod console;
mod deps;
mod generate;
mod image_args;
mod inspect;
mod platform;
mod serve;
mod unpack;
mod validate;

use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

use bundlegen::error::Category;
pub use console::Console;

const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  bad input: invalid or hostile image, platform, metadata or arguments, or
     an output that exists, is a symlink or overlaps the image
  2  the app is not compatible with the platform
  3  processing failed (I/O error, disk full, read-only or vanished output
     directory, permissions)
A failed run leaves no partial output and a previous one intact; the hidden
.NAME.bundlegen-* entries of a killed run are removed by the next run.";

#[derive(Debug, Parser)]
#[command(name = "bundlegen", version, about = "Turn OCI images into device-specific OCI runtime bundles (Dobby, crun, runc) at build time", after_help = EXIT_CODES)]
pub struct Cli {
    /// Print only warnings and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Accepted for BundleGen's scripts (`bundlegen -vv generate ...`):
    /// bundlegen prints the same at every level
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a device bundle (config.json + rootfs/ + archive) from an image
    /// for a platform: BundleGen's `generate`
    #[command(after_help = EXIT_CODES)]
    Generate(Box<generate::GenerateArgs>),
    /// Flatten an image's layers into a rootfs directory, as a container
    /// runtime would
    #[command(after_help = EXIT_CODES)]
    Unpack(unpack::UnpackArgs),
    /// Re-check an existing bundle: config.json against the Dobby or OCI
    /// schema, and with -p its entrypoint and libraries against a platform
    #[command(after_help = EXIT_CODES)]
    Validate(validate::ValidateArgs),
    /// Show an image's platform, tags, layers and run configuration
    #[command(after_help = EXIT_CODES)]
    Inspect(inspect::InspectArgs),
    /// Inspect, validate and create device platform templates
    #[command(after_help = EXIT_CODES)]
    Platform(platform::PlatformArgs),
    /// List the shared libraries a binary needs, for any architecture,
    /// without running it
    #[command(after_help = EXIT_CODES)]
    Deps(deps::DepsArgs),
    /// Work for BundleGen's RabbitMQ front-end: consume generation requests
    /// from the `bundlegen-requests` queue and answer them
    #[command(after_help = format!("{}\n\n{EXIT_CODES}", serve::SETTINGS))]
    Serve(serve::ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(completions::CompletionsArgs),
    /// Print the man page of bundlegen or of one subcommand, or write them
    /// all into a directory
    Man(completions::ManArgs),
}

/// A failed command, classified for the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad input or configuration (exit code 1).
    BadInput(anyhow::Error),
    /// The app cannot run on the platform (exit code 2).
    Incompatible(anyhow::Error),
    /// Processing failed (exit code 3).
    Processing(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::BadInput(_) => 1,
            Failure::Incompatible(_) => 2,
            Failure::Processing(_) => 3,
        }
    }

    fn error(&self) -> &anyhow::Error {
        match self {
            Failure::BadInput(e) | Failure::Incompatible(e) | Failure::Processing(e) => e,
        }
    }
}

impl Failure {
    /// Adds the `help:` line naming the option that replaces an existing
    /// output, which only the command knows: `help(path)` for the path of
    /// an "already exists" error.
    fn with_replace_help(self, help: impl FnOnce(&std::path::Path) -> String) -> Failure {
        let add = |e: anyhow::Error| match existing_output(&e) {
            Some(path) => {
                let help = help(&path);
                anyhow::anyhow!("{e}\nhelp: {help}")
            }
            None => e,
        };
        match self {
            Failure::BadInput(e) => Failure::BadInput(add(e)),
            other => other,
        }
    }
}

/// The path of an "already exists" output error anywhere in `e`.
fn existing_output(e: &anyhow::Error) -> Option<std::path::PathBuf> {
    use bundlegen::bundle::ocidir::OciDirError;
    use bundlegen::error::{Error, StagingError};
    e.chain().find_map(|c| {
        let staging = c.downcast_ref::<StagingError>().or(match c.downcast_ref::<Error>() {
            Some(Error::Staging(s) | Error::OciDir(OciDirError::Staging(s))) => Some(s),
            _ => None,
        });
        match staging {
            Some(StagingError::Exists { path }) => Some(path.clone()),
            _ => None,
        }
    })
}

/// Classifies an error by the library error inside it, if any.
impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        let category = e.chain().find_map(|c| c.downcast_ref::<bundlegen::error::Error>().map(|e| e.category()));
        match category {
            Some(Category::BadInput) => Failure::BadInput(e),
            Some(Category::Incompatible) => Failure::Incompatible(e),
            Some(Category::Failed) | None => Failure::Processing(e),
        }
    }
}

impl From<bundlegen::error::Error> for Failure {
    fn from(e: bundlegen::error::Error) -> Self {
        Failure::from(anyhow::Error::new(e))
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let console = Console::new(cli.quiet);
    let result = match cli.command {
        Command::Generate(args) => generate::run(*args, &console),
        Command::Unpack(args) => unpack::run(args, &console)
            .map_err(Failure::from)
            .map_err(|f| f.with_replace_help(|_| "pass --force (-f) to replace it".into())),
        Command::Validate(args) => validate::run(args, &console),
        Command::Inspect(args) => inspect::run(args).map_err(Failure::from),
        Command::Platform(args) => platform::run(&args, &console),
        Command::Deps(args) => deps::run(&args, &console),
        Command::Serve(args) => serve::run(args, cli.verbose > 0),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            report(failure.error());
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Adds the explanation when `output`'s directory no longer exists: it was
/// removed while bundlegen was writing into it, which the I/O error alone
/// (a missing file in a staging directory) does not make plain.
fn explain_vanished(output: &std::path::Path, e: anyhow::Error) -> anyhow::Error {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if std::fs::symlink_metadata(parent).is_ok() {
        return e;
    }
    e.context(format!(
        "the output directory {} was removed while bundlegen was writing into it\nhelp: make sure nothing else deletes it during the build",
        parent.display()
    ))
}

/// Prints an error and its causes, each once, and what to do about a full
/// or read-only file system when the error does not say it already.
fn report(e: &anyhow::Error) {
    let message = e.to_string();
    eprintln!("error: {message}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if !message.contains("\nhelp: ")
        && let Some(help) = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>().and_then(io_help))
    {
        eprintln!("help: {help}");
    }
}

/// Advice for the I/O failures a build machine runs into.
fn io_help(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Some("the file system is full: free space on it, or write the output elsewhere"),
        ErrorKind::ReadOnlyFilesystem => Some("the file system is read-only: write the output elsewhere"),
        _ => None,
    }
}
