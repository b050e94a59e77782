//! `unpack`: an image's layers flattened into a new rootfs directory,
//! which appears only once complete (see [`crate::staging`]).

use std::path::Path;

use crate::diag::Diagnostics;
use crate::error::Error;
use crate::image::{OpenImage, ResolvedImage};
use crate::layers::{self, FlattenOptions, Flattened};
use crate::staging::{self, Staging};

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
