//! `unpack`: an image's layers flattened into a new rootfs directory,
//! which appears only once complete (see [`crate::staging`]).

use std::path::{Path, PathBuf};

use crate::diag::Diagnostics;
use crate::error::Error;
use crate::image::{self, OpenImage, ResolvedImage, Selector};
use crate::layers::{self, FlattenOptions, Flattened};
use crate::staging::{self, StagedFile, Staging};

/// Flattens `image` into `dest`, which may not overlap the image layout;
/// an existing non-empty `dest` is replaced only with `overwrite`.
pub fn unpack(
    source: &OpenImage,
    image: &ResolvedImage,
    dest: &Path,
    overwrite: bool,
    options: &FlattenOptions,
    diag: &dyn Diagnostics,
) -> Result<Flattened, Error> {
    staging::refuse_overlap(dest, &source.dir, "the image layout")?;
    let staging = Staging::new(dest, overwrite)?;
    let flattened = layers::flatten(source, image, staging.path(), options, diag)?;
    staging.commit()?;
    Ok(flattened)
}

/// What `bundlegen unpack` is asked for.
pub struct Request {
    pub image: String,
    pub selector: Selector,
    pub rootfs: PathBuf,
    /// `-f`: replace an existing non-empty rootfs.
    pub overwrite: bool,
    pub flatten: FlattenOptions,
    /// Where to write the ownership, devices and xattrs that could not be
    /// applied (rootless), if any.
    pub metadata_out: Option<PathBuf>,
}

/// What it did.
pub struct Unpacked {
    pub image: ResolvedImage,
    pub flattened: Flattened,
    /// `metadata_out`, when something was recorded and written there.
    pub metadata: Option<PathBuf>,
}

/// Opens the image, flattens it into the new rootfs directory, and writes
/// what could not be applied to `metadata_out`.
pub fn run(req: &Request, diag: &dyn Diagnostics) -> Result<Unpacked, Error> {
    let (source, image) = image::open_and_resolve(&req.image, req.selector.clone(), None)?;
    let flattened = unpack(&source, &image, &req.rootfs, req.overwrite, &req.flatten, diag)?;
    let metadata = match &req.metadata_out {
        Some(path) if !flattened.recorded.is_empty() => {
            let json = serde_json::to_vec_pretty(&flattened.recorded).map_err(|e| Error::Output { path: path.clone(), source: std::io::Error::other(e) })?;
            StagedFile::write(path, &json)?;
            Some(path.clone())
        }
        _ => None,
    };
    Ok(Unpacked { image, flattened, metadata })
}
