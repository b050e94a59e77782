//! The `.ipk` of `-i`: an opkg package holding the bundle, in one of two
//! containers ([`IpkLayout`]).
//!
//! BundleGen writes the package as a gzip'd tar of `data.tar.gz`,
//! `control.tar.gz` and `debian-binary` (`2.0`, no newline), in that order;
//! its `data.tar.gz` is the bundle tarball (bundle contents at the archive
//! root: `config.json`, `rootfs/`), its `control.tar.gz` holds one file,
//! `control`, with `Package` (app id), `Version` (metadata version, default
//! 1.0.0), `Architecture` (platform arch + variant), `Description`,
//! `Priority` (default optional) and an empty `Depends`. Scripts written
//! for BundleGen unpack it with `tar xzf`; that is the default layout.
//!
//! [`IpkLayout::Ar`] writes the same members in the standard `ar`
//! container in Debian order (`debian-binary` with `2.0\n`,
//! `control.tar.gz`, `data.tar.gz`), which is what opkg-build writes and
//! what `ar` and dpkg-style tools read; opkg reads both containers.
//! Members are always gzip'd whatever [`ArchiveOptions::compression`] says:
//! opkg looks for those names. Everything is deterministic: member and
//! entry mtimes are `SOURCE_DATE_EPOCH` (0 when unset), owners 0.

use std::io::{Read, Seek, Write};
use std::path::Path;

use super::header::{self, Header, Kind};
use super::{
    ArchiveError, ArchiveInfo, ArchiveOptions, AtomicFile, Compression, Hashing, StagedArchive,
    pgzip,
};

/// The container of the package's three members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IpkLayout {
    /// BundleGen's: a gzip'd tar (`tar xzf` unpacks it).
    #[default]
    BundleGen,
    /// opkg-build's and Debian's: an `ar` archive (`ar x` unpacks it).
    Ar,
}

/// The fields of the ipk `control` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpkMeta {
    /// The app id.
    pub package: String,
    pub version: String,
    /// As BundleGen: the platform's `arch.arch` followed by `arch.variant`
    /// (`arm` + `v7` = `armv7`); see [`IpkMeta::architecture_of`].
    pub architecture: String,
    pub description: String,
    /// `optional` when `None`.
    pub priority: Option<String>,
}

impl IpkMeta {
    /// BundleGen's Architecture field: arch and variant run together
    /// (without BundleGen's `armNone` when there is no variant).
    pub fn architecture_of(arch: &str, variant: Option<&str>) -> String {
        format!("{arch}{}", variant.unwrap_or(""))
    }

    /// The `control` file.
    fn control(&self) -> Result<String, ArchiveError> {
        let word = |field: &'static str, value: &str| -> Result<(), ArchiveError> {
            let bad = |reason| {
                Err(ArchiveError::Control {
                    field,
                    value: value.to_owned(),
                    reason,
                })
            };
            if value.is_empty() {
                return bad("it is empty");
            }
            if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad("it must not contain spaces or control characters");
            }
            if field == "Package" && value.contains('_') {
                return bad(
                    "opkg package names cannot contain `_` (it separates name, version and architecture in file names)",
                );
            }
            Ok(())
        };
        let priority = self.priority.as_deref().unwrap_or("optional");
        word("Package", &self.package)?;
        word("Version", &self.version)?;
        word("Architecture", &self.architecture)?;
        word("Priority", priority)?;
        if self
            .description
            .chars()
            .any(|c| c.is_control() && c != '\n')
        {
            return Err(ArchiveError::Control {
                field: "Description",
                value: self.description.clone(),
                reason: "it must not contain control characters",
            });
        }
        // A multi-line description continues on lines starting with a
        // space; an empty line is written as " .".
        let mut lines = self.description.trim().lines();
        let mut description = lines.next().unwrap_or("").trim().to_owned();
        for line in lines {
            let line = line.trim_end();
            description.push_str(if line.trim().is_empty() {
                "\n ."
            } else {
                "\n "
            });
            description.push_str(line.trim_start());
        }
        if description.is_empty() {
            description = self.package.clone();
        }
        Ok(format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nDescription: {}\nPriority: {priority}\nDepends: \n",
            self.package, self.version, self.architecture, description
        ))
    }
}

/// Writes `bundle_dir` as an opkg package at `out`, atomically.
pub fn write_ipk(
    bundle_dir: &Path,
    out: &Path,
    meta: &IpkMeta,
    layout: IpkLayout,
    opts: &ArchiveOptions<'_>,
) -> Result<ArchiveInfo, ArchiveError> {
    stage_ipk(bundle_dir, out, meta, layout, opts)?.persist()
}

/// Writes the package of [`write_ipk`] to its temporary file only (see
/// [`super::stage_tar`]).
pub fn stage_ipk(
    bundle_dir: &Path,
    out: &Path,
    meta: &IpkMeta,
    layout: IpkLayout,
    opts: &ArchiveOptions<'_>,
) -> Result<StagedArchive, ArchiveError> {
    let control = meta.control()?;
    let werr = |source| ArchiveError::Write {
        path: out.to_owned(),
        source,
    };
    let epoch = opts.source_date_epoch.unwrap_or(0).max(0);
    let dest = AtomicFile::new(out, Some(bundle_dir))?;
    let parent = dest.path().parent().unwrap_or(Path::new("."));

    // data.tar.gz first, into an unnamed temporary file: its size goes in
    // the ar header.
    let data_file = tempfile::tempfile_in(parent).map_err(werr)?;
    let data_opts = ArchiveOptions {
        compression: Compression::Gzip,
        ..opts.clone()
    };
    let (mut data_file, data) =
        super::write_stream(bundle_dir, b"rootfs", &data_opts, data_file, out)?;
    data_file.rewind().map_err(werr)?;

    let control_gz = control_tar_gz(control.as_bytes(), epoch).map_err(werr)?;

    let file = dest.file().map_err(werr)?;
    let mut w = Hashing::new(std::io::BufWriter::new(file));
    match layout {
        IpkLayout::BundleGen => {
            // The members are compressed already: the fastest level.
            let mut gz = pgzip::ParGzWriter::new(&mut w, 1, opts.threads()).map_err(werr)?;
            tar_member(&mut gz, "data.tar.gz", epoch, data.size, &mut data_file).map_err(werr)?;
            tar_member(
                &mut gz,
                "control.tar.gz",
                epoch,
                control_gz.len() as u64,
                &mut &control_gz[..],
            )
            .map_err(werr)?;
            tar_member(&mut gz, "debian-binary", epoch, 3, &mut &b"2.0"[..]).map_err(werr)?;
            gz.write_all(&[0; 2 * header::BLOCK]).map_err(werr)?;
            gz.finish().map_err(werr)?;
        }
        IpkLayout::Ar => {
            w.write_all(b"!<arch>\n").map_err(werr)?;
            ar_member(
                &mut w,
                "debian-binary",
                epoch,
                b"2.0\n".len() as u64,
                &mut &b"2.0\n"[..],
            )
            .map_err(werr)?;
            ar_member(
                &mut w,
                "control.tar.gz",
                epoch,
                control_gz.len() as u64,
                &mut &control_gz[..],
            )
            .map_err(werr)?;
            ar_member(&mut w, "data.tar.gz", epoch, data.size, &mut data_file).map_err(werr)?;
        }
    }
    let (sha256, size, buffered) = w.finish();
    buffered.into_inner().map_err(|e| werr(e.into_error()))?;
    Ok(StagedArchive {
        file: dest,
        info: ArchiveInfo {
            path: out.to_owned(),
            size,
            sha256,
            ..data
        },
    })
}

/// `control.tar.gz`: the single file `control`, as BundleGen writes it.
fn control_tar_gz(control: &[u8], mtime: i64) -> std::io::Result<Vec<u8>> {
    let mut tar = Vec::new();
    let h = Header {
        path: b"control".to_vec(),
        kind: Kind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime,
        size: control.len() as u64,
        link: Vec::new(),
        dev_major: 0,
        dev_minor: 0,
        xattrs: Default::default(),
    };
    header::encode(&h, &mut tar).map_err(std::io::Error::other)?;
    tar.extend_from_slice(control);
    tar.resize(
        tar.len() + header::padding(control.len() as u64) + 2 * header::BLOCK,
        0,
    );
    let mut gz = pgzip::ParGzWriter::new(Vec::new(), 9, 1)?;
    gz.write_all(&tar)?;
    gz.finish()
}

/// One regular file of a tar stream: header, data, padding.
fn tar_member<W: Write, R: Read>(
    w: &mut W,
    name: &str,
    mtime: i64,
    size: u64,
    data: &mut R,
) -> std::io::Result<()> {
    let h = Header {
        path: name.as_bytes().to_vec(),
        kind: Kind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime,
        size,
        link: Vec::new(),
        dev_major: 0,
        dev_minor: 0,
        xattrs: Default::default(),
    };
    let mut head = Vec::new();
    header::encode(&h, &mut head).map_err(std::io::Error::other)?;
    w.write_all(&head)?;
    let copied = std::io::copy(&mut Read::take(&mut *data, size), w)?;
    if copied != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{name} is shorter than its {size} bytes"),
        ));
    }
    w.write_all(&vec![0; header::padding(size)])
}

/// One member of a common-format `ar` archive (names without the GNU `/`).
fn ar_member<W: Write, R: Read>(
    w: &mut W,
    name: &str,
    mtime: i64,
    size: u64,
    data: &mut R,
) -> std::io::Result<()> {
    let head = format!(
        "{name:<16}{mtime:<12}{:<6}{:<6}{:<8o}{size:<10}`\n",
        0, 0, 0o100644
    );
    debug_assert_eq!(head.len(), 60);
    w.write_all(head.as_bytes())?;
    let copied = std::io::copy(&mut Read::take(&mut *data, size), w)?;
    if copied != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{name} is shorter than its {size} bytes"),
        ));
    }
    if size % 2 == 1 {
        w.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> IpkMeta {
        IpkMeta {
            package: "com.rdk.demo".into(),
            version: "1.2.3".into(),
            architecture: IpkMeta::architecture_of("arm", Some("v7")),
            description: "Demo app\n\nsecond paragraph".into(),
            priority: None,
        }
    }

    #[test]
    fn control_has_bundlegen_fields() {
        let c = meta().control().unwrap();
        assert_eq!(
            c,
            "Package: com.rdk.demo\nVersion: 1.2.3\nArchitecture: armv7\nDescription: Demo app\n .\n second paragraph\nPriority: optional\nDepends: \n"
        );
    }

    #[test]
    fn control_rejects_injection() {
        let mut m = meta();
        m.version = "1.0\nDepends: evil".into();
        assert!(matches!(
            m.control(),
            Err(ArchiveError::Control {
                field: "Version",
                ..
            })
        ));
        let mut m = meta();
        m.package = "my_app".into();
        assert!(m.control().is_err());
    }

    #[test]
    fn ar_header_is_60_bytes() {
        let mut out = Vec::new();
        ar_member(&mut out, "debian-binary", 0, 4, &mut &b"2.0\n"[..]).unwrap();
        assert_eq!(out.len(), 64);
        assert_eq!(&out[..16], b"debian-binary   ");
        assert_eq!(&out[58..60], b"`\n");
    }
}
