//! The library's errors, one enum per stage, gathered here so that callers
//! can classify any of them.

pub use crate::image::ImageError;
pub use crate::layers::FlattenError;
pub use crate::platform::PlatformError;
pub use crate::staging::StagingError;

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
        }
    }
}
