use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
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
    let (source, image) = args.image.open(None)?;
    let options = args.flatten.options();
    let done = bundlegen::pipeline::unpack::unpack(&source, &image, &args.rootfs, args.force, &options, console)
        .map_err(|e| super::explain_vanished(&args.rootfs, e.into()))?;
    let s = &done.stats;
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
    if !done.recorded.is_empty() {
        match &args.metadata_out {
            Some(path) => {
                let json = serde_json::to_vec_pretty(&done.recorded).context("cannot encode the recorded metadata")?;
                bundlegen::staging::StagedFile::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
            }
            None => console.note(&format!(
                "note: ownership, device nodes or xattrs of {} entries could not be applied (not root); use --metadata-out FILE to save them",
                done.recorded.len()
            )),
        }
    }
    Ok(())
}
