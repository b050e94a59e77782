//! `bundlegen validate`: re-check an existing bundle.

use std::path::PathBuf;

use clap::Args;

use super::{Console, Failure};
use bundlegen::bundle::validate;
use bundlegen::platform::{self, LoadOptions};

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
    let platform = match &args.platform {
        Some(name) => {
            let load = LoadOptions { search_paths: args.searchpath.clone(), load_libs: true, ..LoadOptions::default() }.with_env_search_paths();
            Some(platform::load(name, &load, console).map_err(|e| Failure::BadInput(e.into()))?)
        }
        None => None,
    };
    let result = validate::validate(&args.bundle, platform.as_ref(), console).map_err(|e| Failure::from(bundlegen::error::Error::from(e)))?;
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
