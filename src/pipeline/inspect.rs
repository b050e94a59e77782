//! `inspect`: an image's platform, tags, layers and run configuration.

use crate::error::Error;
use crate::image::{self, ResolvedImage, Selector};

/// The image picked, and every tag of its layout (sorted, once each).
pub struct Inspection {
    pub image: ResolvedImage,
    pub tags: Vec<String>,
}

pub fn inspect(reference: &str, selector: Selector) -> Result<Inspection, Error> {
    let (source, image) = image::open_and_resolve(reference, selector, None)?;
    let mut tags: Vec<String> = source.manifests()?.into_iter().filter_map(|c| c.tag).collect();
    tags.sort();
    tags.dedup();
    Ok(Inspection { image, tags })
}
