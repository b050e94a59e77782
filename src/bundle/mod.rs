//! Bundle generation: from a flattened rootfs, a platform and app metadata
//! to `config.json` + `rootfs/` and its archive.

pub mod archive;
pub mod config;
pub mod shared_tree;
pub mod ocidir;
pub mod plugins;
pub mod validate;
pub mod prep;

/// Library matching's output, which `config.json`'s mounts take.
pub use crate::libmatch::LibMount;
