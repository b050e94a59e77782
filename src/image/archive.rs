//! `oci-archive:` support: a tar of an image layout, as image-oci deploys
//! `<image>-oci.tar`. Only the files a layout consists of are extracted, by
//! name, into a fresh directory; nothing in the archive can name a path
//! outside it.

use std::fs::{self, File};
use std::io;
use std::path::{Component, Path};

use super::ImageError;
use super::digest::Digest;

pub(super) fn extract(archive: &Path, dest: &Path) -> Result<(), ImageError> {
    let fail = |reason: String, source: Option<io::Error>| ImageError::Archive { path: archive.to_owned(), reason, source };
    let file = File::open(archive).map_err(|e| fail("cannot open it".into(), Some(e)))?;
    let mut tar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, file));
    fs::create_dir_all(dest.join("blobs/sha256")).map_err(|e| fail("cannot create the temporary layout".into(), Some(e)))?;
    let entries = tar.entries().map_err(|e| fail("it is not a tar archive".into(), Some(e)))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail("it is not a readable tar archive".into(), Some(e)))?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(|e| fail("an entry has an unreadable name".into(), Some(e)))?.into_owned();
        let parts: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        let relative = match parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["oci-layout"] => "oci-layout".to_owned(),
            ["index.json"] => "index.json".to_owned(),
            ["blobs", "sha256", hex] if Digest::parse(&format!("sha256:{hex}")).is_ok() => format!("blobs/sha256/{hex}"),
            // Other files (index.json backups, README) are not part of the layout.
            _ => continue,
        };
        if !kind.is_file() {
            return Err(fail(format!("`{}` is not a regular file in the archive", path.display()), None));
        }
        let target = dest.join(&relative);
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| fail(format!("cannot write `{relative}` (listed twice?)"), Some(e)))?;
        io::copy(&mut entry, &mut out).map_err(|e| fail(format!("cannot extract `{relative}`"), Some(e)))?;
    }
    Ok(())
}
