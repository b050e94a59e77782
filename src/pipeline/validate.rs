//! `validate`: a bundle re-checked, its config against its schema and,
//! with a platform, its entrypoint against that platform.

use std::path::{Path, PathBuf};

use crate::bundle::validate::{self, Validated};
use crate::diag::Diagnostics;
use crate::error::Error;
use crate::platform::{self, LoadOptions, Platform};

/// Checks the bundle at `bundle`; `platform`, a template name looked up in
/// `search_paths` (and `RDK_PLATFORM_SEARCHPATH`), with its inventory.
pub fn validate(bundle: &Path, platform: Option<&str>, search_paths: &[PathBuf], diag: &dyn Diagnostics) -> Result<(Validated, Option<Platform>), Error> {
    let platform = match platform {
        Some(name) => {
            let load = LoadOptions { search_paths: search_paths.to_vec(), load_libs: true, ..LoadOptions::default() }.with_env_search_paths();
            Some(platform::load(name, &load, diag)?)
        }
        None => None,
    };
    let validated = validate::validate(bundle, platform.as_ref(), diag)?;
    Ok((validated, platform))
}
