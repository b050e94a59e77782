//! Bundle generation: from a flattened rootfs, a platform and app metadata
//! to `config.json` + `rootfs/` and its archive.

pub mod archive;
pub mod config;
pub mod shared_tree;
pub mod ocidir;
pub mod plugins;
pub mod validate;
pub mod prep;

/// A device file bind-mounted read-only into the container in place of the
/// image's own copy (a library the device already has, a GPU library).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct LibMount {
    /// Absolute path on the device.
    pub source: String,
    /// Absolute path inside the container.
    pub destination: String,
}
