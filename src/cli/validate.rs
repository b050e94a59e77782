//! `bundlegen validate`: re-check an existing bundle.

use std::path::PathBuf;

use clap::Args;

use super::{Console, Failure};
use bundlegen::pipeline;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The bundle directory (config.json + rootfs/)
    #[arg(value_name = "BUNDLE_DIR")]
    pub bundle: PathBuf,
    /// Also check that the entrypoint runs on this platform with the
    /// bundle's and the device's libraries
    #[arg(short, long, env = "RDK_PLATFORM", value_name = "NAME")]
    pub platform: Option<String>,
    /// Directory searched (recursively) for platform templates; repeatable
    #[arg(short = 's', long = "searchpath", value_name = "DIR")]
    pub searchpath: Vec<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ValidateArgs, console: &Console) -> Result<(), Failure> {
    let (result, platform) = pipeline::validate::validate(&args.bundle, args.platform.as_deref(), &args.searchpath, console).map_err(Failure::from)?;
    if args.json {
        let text = serde_json::to_string_pretty(&result).map_err(|e| Failure::Processing(e.into()))?;
        println!("{text}");
    } else {
        let entry = result
            .entrypoint
            .as_ref()
            .map(|e| format!("; entrypoint {} ({}) runs on {}", e.located.real, e.arch, platform.as_ref().map(|p| p.name.as_str()).unwrap_or("")))
            .unwrap_or_default();
        println!("{}: valid ({} schema){entry}", args.bundle.display(), result.schema);
    }
    Ok(())
}
