use std::path::PathBuf;
use std::time::Instant;

use bundlegen::pipeline::unpack::{self, Request, Unpacked};
use clap::Args;

use super::Console;
use super::image_args::{FlattenArgs, ImageArgs};

#[derive(Debug, Args)]
pub struct UnpackArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    /// The rootfs directory to create; it appears only when complete
    #[arg(value_name = "ROOTFS")]
    pub rootfs: PathBuf,
    /// Replace ROOTFS if it exists and is not empty
    #[arg(short, long)]
    pub force: bool,
    /// Write ownership, device nodes and xattrs that could not be applied
    /// (see --rootless) to this JSON file
    #[arg(long, value_name = "FILE")]
    pub metadata_out: Option<PathBuf>,
    #[command(flatten)]
    pub flatten: FlattenArgs,
}

pub fn run(args: UnpackArgs, console: &Console) -> anyhow::Result<()> {
    let started = Instant::now();
    let request = Request {
        image: args.image.image.clone(),
        selector: args.image.selector(),
        rootfs: args.rootfs.clone(),
        overwrite: args.force,
        flatten: args.flatten.options(),
        metadata_out: args.metadata_out.clone(),
    };
    let Unpacked { image, flattened, metadata } =
        unpack::run(&request, console).map_err(|e| super::explain_vanished(&args.rootfs, e.into()))?;
    let s = &flattened.stats;
    console.note(&format!(
        "unpacked {} ({}, {} layers, {} entries, {} MiB) into {} in {:.2}s",
        image.name,
        image.platform,
        s.layers,
        s.entries,
        s.bytes >> 20,
        args.rootfs.display(),
        started.elapsed().as_secs_f64()
    ));
    if !flattened.recorded.is_empty() && metadata.is_none() {
        console.note(&format!(
            "note: ownership, device nodes or xattrs of {} entries could not be applied (not root); use --metadata-out FILE to save them",
            flattened.recorded.len()
        ));
    }
    Ok(())
}
