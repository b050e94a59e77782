//! The command line: argument parsing and exit codes live here and in
//! `main.rs` only.

mod console;
mod image_args;
mod inspect;
mod unpack;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bundlegen::error::Category;
pub use console::Console;

const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  bad input: invalid or hostile image, platform, metadata or arguments
  2  the app is not compatible with the platform
  3  processing failed (I/O error, disk full, permissions)";

#[derive(Debug, Parser)]
#[command(name = "bundlegen", version, about = "Turn OCI images into device-specific OCI runtime bundles (Dobby, crun, runc) at build time", after_help = EXIT_CODES)]
pub struct Cli {
    /// Print only warnings and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Flatten an image's layers into a rootfs directory, as a container
    /// runtime would
    #[command(after_help = EXIT_CODES)]
    Unpack(unpack::UnpackArgs),
    /// Show an image's platform, tags, layers and run configuration
    #[command(after_help = EXIT_CODES)]
    Inspect(inspect::InspectArgs),
}

pub fn run(cli: Cli) -> ExitCode {
    let console = Console::new(cli.quiet);
    let result = match cli.command {
        Command::Unpack(args) => unpack::run(args, &console),
        Command::Inspect(args) => inspect::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Prints an error and its causes, each once.
fn report(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    let category = e
        .chain()
        .find_map(|c| c.downcast_ref::<bundlegen::error::Error>().map(|e| e.category()))
        .unwrap_or(Category::Failed);
    match category {
        Category::BadInput => 1,
        Category::Incompatible => 2,
        Category::Failed => 3,
    }
}
