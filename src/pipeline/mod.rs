//! The commands' drivers: the only place that sequences stages and holds
//! the policy between them. The command line (`cli/`) parses arguments,
//! calls one function here and maps its error to an exit code; the stages
//! themselves (`layers`, `elf`, `libmatch`, `compat`, `bundle`, …) know
//! nothing of each other's order.
//!
//! - [`generate`]: a request → one bundle, or one per platform (the policy:
//!   inputs read before the image is opened, the image picked per platform,
//!   environment variables, output names, reports);
//! - [`stages`]: one platform's stages, in order;
//! - [`multi`]: several platforms from one flattening of the image;
//! - [`unpack`]: an image → a flattened rootfs directory;
//! - [`deps`]: an image or rootfs → the loader model's view of its ELF files;
//! - [`inspect`], [`validate`], [`platform`]: the other commands' work.

pub mod deps;
pub mod generate;
pub mod inspect;
pub mod multi;
pub mod platform;
pub mod stages;
pub mod unpack;
pub mod validate;

use std::path::PathBuf;

use crate::error::RequestError;

/// Each `-s` directory must exist: a mistyped one would otherwise be
/// searched silently and the platform reported missing, or found elsewhere.
pub fn check_search_paths(dirs: &[PathBuf]) -> Result<(), RequestError> {
    match dirs.iter().find(|d| !d.is_dir()) {
        Some(dir) => Err(RequestError::SearchPath { dir: dir.clone(), exists: dir.exists() }),
        None => Ok(()),
    }
}
