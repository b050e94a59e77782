//! The library's errors, one enum per stage, gathered here so that callers
//! can classify any of them.

use std::path::PathBuf;

pub use crate::appmeta::AppMetaError;
pub use crate::bundle::archive::ArchiveError;
pub use crate::bundle::config::ConfigError;
pub use crate::bundle::ocidir::OciDirError;
pub use crate::bundle::prep::PrepError;
pub use crate::bundle::validate::ValidateError;
pub use crate::compat::Incompatible;
pub use crate::operator::OperatorError;
pub use crate::image::ImageError;
pub use crate::layers::FlattenError;
pub use crate::libmatch::LibMatchError;
pub use crate::platform::PlatformError;
pub use crate::staging::StagingError;

/// A request that cannot be carried out as given: its own values, before
/// any input file is read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("-s {}: the template search directory {}\nhelp: pass the directory holding the platform templates", dir.display(), if *exists { "is not a directory" } else { "does not exist" })]
    SearchPath { dir: PathBuf, exists: bool },
    #[error("{name}={value:?}: {reason}")]
    Env { name: &'static str, value: String, reason: &'static str },
    #[error("platform {name:?}: the name cannot be a directory name in OUTPUTDIR\nhelp: give the template a plain name")]
    PlatformName { name: String },
    #[error("platform {name} is given twice\nhelp: name each platform once")]
    PlatformTwice { name: String },
    #[error("--from {name}: built-in platforms cannot be used as a base\nhelp: pass a template file")]
    BuiltinBase { name: String },
}

/// How a failure should be reported, following BundleGen's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// The image, platform, metadata or command line is wrong (exit 1).
    BadInput,
    /// The app cannot run on the platform (exit 2).
    Incompatible,
    /// The machine failed us: I/O errors, disk full (exit 3).
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Flatten(#[from] FlattenError),
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    LibMatch(#[from] LibMatchError),
    #[error(transparent)]
    Incompatible(#[from] Incompatible),
    #[error(transparent)]
    AppMeta(#[from] AppMetaError),
    #[error(transparent)]
    Operator(#[from] OperatorError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Prep(#[from] PrepError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    OciDir(#[from] OciDirError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("image {image} has no /appmetadata.json and no app metadata file was given\nhelp: pass one with -a FILE")]
    NoAppMetadata { image: String },
    #[error("cannot write {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the ELF files under {path}")]
    Scan {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn category(&self) -> Category {
        match self {
            Error::Image(ImageError::Temp { .. }) => Category::Failed,
            Error::Image(_) => Category::BadInput,
            Error::Flatten(e) if e.is_bad_input() => Category::BadInput,
            Error::Flatten(_) => Category::Failed,
            Error::Staging(StagingError::Io { .. }) => Category::Failed,
            Error::Staging(_) => Category::BadInput,
            Error::Platform(_) => Category::BadInput,
            Error::Request(_) => Category::BadInput,
            Error::LibMatch(e) if e.is_bad_input() => Category::BadInput,
            Error::LibMatch(_) => Category::Failed,
            Error::Incompatible(e) if e.is_bad_input() => Category::BadInput,
            Error::Incompatible(e) if e.is_failure() => Category::Failed,
            Error::Incompatible(_) => Category::Incompatible,
            Error::AppMeta(_) | Error::Operator(_) | Error::NoAppMetadata { .. } => Category::BadInput,
            Error::Config(ConfigError::ReadRootfs { .. }) => Category::Failed,
            Error::Config(_) => Category::BadInput,
            Error::Prep(PrepError::MountPoint { .. }) => Category::BadInput,
            Error::Prep(_) => Category::Failed,
            Error::Archive(ArchiveError::Level { .. } | ArchiveError::Control { .. } | ArchiveError::OutputInsideInput { .. }) => {
                Category::BadInput
            }
            Error::Validate(ValidateError::Read { .. }) => Category::Failed,
            Error::Validate(ValidateError::Entrypoint(e)) if e.is_failure() => Category::Failed,
            Error::Validate(ValidateError::Entrypoint(e)) if !e.is_bad_input() => Category::Incompatible,
            Error::Validate(_) => Category::BadInput,
            Error::Archive(_) | Error::OciDir(_) | Error::Output { .. } | Error::Scan { .. } => Category::Failed,
        }
    }
}

pub use crate::diag::chain;
