//! The commands' drivers: the only place that sequences stages and holds
//! the policy between them. The command line (`cli/`) parses arguments,
//! calls one function here and maps its error to an exit code.
//!
//! - [`generate`]: a request → one bundle, or one per platform;
//! - [`unpack`]: an image → a flattened rootfs directory;
//! - [`deps`]: an image or rootfs → the loader model's view of its ELF files.

pub mod deps;
pub mod generate;
pub mod unpack;
