//! Command-line layer (minimal: only the `platform` and `deps` subcommands
//! of this branch; the full CLI lives on the main branch).
//!
//! Exit codes: 0 success, 1 bad input or configuration, 3 processing failed.

pub mod deps;
pub mod platform;

use std::process::ExitCode;

use bundlegen::diag::{Diagnostics, Warning};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bundlegen",
    version,
    about = "Turn OCI images into device-specific OCI runtime bundles",
    after_help = "Exit codes: 0 success, 1 bad input or configuration, 3 processing failed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, validate and create device platform templates.
    Platform(platform::PlatformArgs),
    /// List the shared libraries a binary needs, for any architecture, without running it.
    Deps(deps::DepsArgs),
}

/// A failed command, classified for the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad input or configuration (exit code 1).
    BadInput(anyhow::Error),
    /// Processing failed (exit code 3).
    Processing(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::BadInput(_) => 1,
            Failure::Processing(_) => 3,
        }
    }

    fn error(&self) -> &anyhow::Error {
        match self {
            Failure::BadInput(e) | Failure::Processing(e) => e,
        }
    }
}

/// Renders warnings on stderr.
pub struct Stderr;

impl Diagnostics for Stderr {
    fn warning(&self, warning: Warning) {
        eprintln!("warning: {warning}");
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let diag = Stderr;
    let result = match &cli.command {
        Command::Platform(args) => platform::run(args, &diag),
        Command::Deps(args) => deps::run(args, &diag),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error());
            ExitCode::from(failure.exit_code())
        }
    }
}
