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
//! - [`deps`]: an image or rootfs → the loader model's view of its ELF files.

pub mod deps;
pub mod generate;
pub mod multi;
pub mod stages;
pub mod unpack;
