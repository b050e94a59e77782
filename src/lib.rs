//! bundlegen: turn OCI container images into device-specific OCI runtime
//! bundles (Dobby, crun, runc) at build time.
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! `image` (layout, tag/platform selection, digest-verified blobs)
//! → `layers` (flatten with container-runtime semantics, never writing
//! outside the target) → `elf` (parallel scan) → `libmatch` (decisions)
//! ← `platform` (device model, BundleGen-compatible) → `bundle`
//! (config.json, rootfs edits, atomic write, archives).
//!
//! The library never prints: it reports through [`diag::Diagnostics`].

pub mod appmeta;
pub mod bundle;
pub mod compat;
pub mod diag;
pub mod elf;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod input;
pub mod layers;
pub mod ldso;
pub mod libmatch;
pub mod operator;
pub mod platform;
pub mod rootfs;
pub mod runtime;
pub mod serve;
pub mod size;
pub mod staging;
