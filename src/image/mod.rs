//! Reading OCI images: references, image layouts, tag and platform
//! selection, and digest-verified blobs.
//!
//! `ImageRef::parse` understands the references BundleGen and skopeo users
//! write; `OpenImage::open` makes any of them a local OCI image layout
//! (extracting an `oci-archive:` tar, or asking skopeo for other transports);
//! `OpenImage::resolve` picks one manifest and returns a [`ResolvedImage`]
//! whose every descriptor was validated and whose config and manifest were
//! verified against their digests.

mod archive;
pub mod digest;
pub mod spec;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use digest::Digest;
use digest::{Mismatch, Verified, mismatch_of};
use spec::{ANNOTATION_REF_NAME, Compression, ImageConfig, Index, Manifest, Platform, RawDescriptor};

/// JSON documents (index, manifest, config) larger than this are refused.
const MAX_JSON_BYTES: u64 = 16 << 20;
/// Nested indexes deeper than this are refused (loops are impossible with
/// content addressing, but depth is still bounded).
const MAX_INDEX_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image reference `{reference}` is not valid: {reason}")]
    Reference { reference: String, reason: String },
    #[error("{path} is not an OCI image layout: cannot read `{file}`")]
    NotALayout {
        path: PathBuf,
        file: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{what} is not valid JSON for its type")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: {reason}")]
    Descriptor { what: String, reason: String },
    #[error("cannot read blob {digest} ({what}) at {path}")]
    Blob {
        what: String,
        digest: Digest,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} ({what}) does not match its descriptor")]
    BlobMismatch {
        what: String,
        digest: Digest,
        #[source]
        source: Mismatch,
    },
    #[error("{what} is larger than {limit} bytes; refusing to read it")]
    TooLarge { what: String, limit: u64 },
    #[error("no image in {layout} matches {wanted}\nhelp: {available}")]
    NoMatch { layout: String, wanted: String, available: String },
    #[error("image config {digest}: {reason}")]
    Config { digest: Digest, reason: String },
    #[error("cannot unpack OCI archive {path}: {reason}")]
    Archive {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    #[error("skopeo could not copy `{reference}` to a local layout: {stderr}\nhelp: is skopeo installed, and are the credentials (-c or RDK_OCI_REGISTRY_CREDS) right?")]
    Skopeo { reference: String, stderr: String },
    #[error("cannot create a temporary directory for {reference}")]
    Temp {
        reference: String,
        #[source]
        source: io::Error,
    },
}

/// An image reference as users write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:DIR[:TAG]` or a plain layout directory (also image-oci's
    /// `<image>-latest-oci` symlink in the deploy dir).
    Layout { dir: PathBuf, tag: Option<String> },
    /// `oci-archive:FILE[:TAG]`: a tar of an image layout (image-oci's
    /// `-oci.tar`).
    Archive { file: PathBuf, tag: Option<String> },
    /// Any other containers/image transport (`docker://`, `docker-archive:`,
    /// `dir:` …), copied to a temporary layout with skopeo.
    Skopeo { reference: String },
}

const SKOPEO_TRANSPORTS: &[&str] =
    &["docker://", "docker-archive:", "docker-daemon:", "dir:", "containers-storage:", "sif:", "ostree:"];

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, ImageError> {
        let bad = |reason: &str| ImageError::Reference { reference: s.to_owned(), reason: reason.to_owned() };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let split = |rest: &str| -> (PathBuf, Option<String>) {
            // As skopeo does: the path ends at the first ':'.
            match rest.split_once(':') {
                Some((p, t)) if !t.is_empty() => (PathBuf::from(p), Some(t.to_owned())),
                Some((p, _)) => (PathBuf::from(p), None),
                None => (PathBuf::from(rest), None),
            }
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split(rest);
            if dir.as_os_str().is_empty() {
                return Err(bad("no directory after `oci:`"));
            }
            return Ok(ImageRef::Layout { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = split(rest);
            if file.as_os_str().is_empty() {
                return Err(bad("no file after `oci-archive:`"));
            }
            return Ok(ImageRef::Archive { file, tag });
        }
        if SKOPEO_TRANSPORTS.iter().any(|t| s.starts_with(t)) {
            return Ok(ImageRef::Skopeo { reference: s.to_owned() });
        }
        Ok(ImageRef::Layout { dir: PathBuf::from(s), tag: None })
    }

    pub fn tag(&self) -> Option<&str> {
        match self {
            ImageRef::Layout { tag, .. } | ImageRef::Archive { tag, .. } => tag.as_deref(),
            ImageRef::Skopeo { .. } => None,
        }
    }
}

/// Which manifest to pick from a layout.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// `org.opencontainers.image.ref.name`; `None` means `latest`, or the
    /// only image when the layout holds just one.
    pub tag: Option<String>,
    /// GOARCH name or an alias (`aarch64`, `x86_64`).
    pub arch: Option<String>,
    pub variant: Option<String>,
    pub os: Option<String>,
}

/// An image layout on disk, possibly a temporary one made from an archive
/// or by skopeo (kept alive by `_temp`).
pub struct OpenImage {
    pub dir: PathBuf,
    /// How the user named the image, for messages.
    pub name: String,
    /// The tag from the reference (`oci:DIR:TAG`).
    pub tag: Option<String>,
    _temp: Option<tempfile::TempDir>,
}

/// Options for opening images from transports other than a local layout.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// `USER[:PASSWORD]` for registries, passed to skopeo.
    pub creds: Option<String>,
    /// Where temporary layouts go (default: the system temp dir).
    pub temp_dir: Option<PathBuf>,
}

/// Opens the image `reference` names (`oci:DIR[:TAG]`, a layout
/// directory, `oci-archive:FILE[:TAG]`, a skopeo transport) and picks the
/// image `selector` asks for; the reference's tag, if any, is the
/// selector's.
pub fn open_and_resolve(
    reference: &str,
    selector: Selector,
    creds: Option<String>,
) -> Result<(OpenImage, ResolvedImage), ImageError> {
    let reference = ImageRef::parse(reference)?;
    let open = OpenImage::open(&reference, &OpenOptions { creds, temp_dir: None })?;
    let resolved = open.resolve(&Selector { tag: reference.tag().map(str::to_owned), ..selector })?;
    Ok((open, resolved))
}

impl OpenImage {
    pub fn open(reference: &ImageRef, options: &OpenOptions) -> Result<OpenImage, ImageError> {
        match reference {
            ImageRef::Layout { dir, tag } => {
                check_layout(dir)?;
                Ok(OpenImage { dir: dir.clone(), name: dir.display().to_string(), tag: tag.clone(), _temp: None })
            }
            ImageRef::Archive { file, tag } => {
                let temp = temp_dir(options, &file.display().to_string())?;
                archive::extract(file, temp.path())?;
                check_layout(temp.path())?;
                Ok(OpenImage {
                    dir: temp.path().to_owned(),
                    name: format!("oci-archive:{}", file.display()),
                    tag: tag.clone(),
                    _temp: Some(temp),
                })
            }
            ImageRef::Skopeo { reference } => {
                let temp = temp_dir(options, reference)?;
                skopeo_copy(reference, temp.path(), options.creds.as_deref())?;
                Ok(OpenImage {
                    dir: temp.path().to_owned(),
                    name: reference.clone(),
                    tag: Some("latest".into()),
                    _temp: Some(temp),
                })
            }
        }
    }

    /// Reads and verifies a small JSON blob (manifest, index, config).
    fn json_blob<T: serde::de::DeserializeOwned>(&self, d: &Descriptor, what: &str) -> Result<(T, Vec<u8>), ImageError> {
        if d.size > MAX_JSON_BYTES {
            return Err(ImageError::TooLarge { what: format!("{what} {}", d.digest), limit: MAX_JSON_BYTES });
        }
        let mut bytes = Vec::with_capacity(d.size as usize);
        self.blob(d, what)?.read_to_end(&mut bytes).map_err(|e| self.read_error(d, what, e))?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|source| ImageError::Json { what: format!("{what} {}", d.digest), source })?;
        Ok((value, bytes))
    }

    /// Opens a blob for streaming; the reader fails at its end if the size
    /// or digest differ from the descriptor's.
    pub fn blob(&self, d: &Descriptor, what: &str) -> Result<Verified<File>, ImageError> {
        let path = self.blob_path(&d.digest);
        let file = open_regular(&path).map_err(|source| ImageError::Blob {
            what: what.to_owned(),
            digest: d.digest.clone(),
            path: path.clone(),
            source,
        })?;
        Ok(Verified::new(file, d.digest.clone(), d.size))
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Turns an error from reading a verified blob into the right variant.
    pub fn read_error(&self, d: &Descriptor, what: &str, e: io::Error) -> ImageError {
        match mismatch_of(&e) {
            Some(m) => ImageError::BlobMismatch { what: what.to_owned(), digest: d.digest.clone(), source: m.clone() },
            None => ImageError::Blob { what: what.to_owned(), digest: d.digest.clone(), path: self.blob_path(&d.digest), source: e },
        }
    }

    /// Lists every image manifest reachable from `index.json`, following
    /// nested indexes, in document order.
    pub fn manifests(&self) -> Result<Vec<Candidate>, ImageError> {
        let path = self.dir.join("index.json");
        let bytes = read_capped(&path, MAX_JSON_BYTES).map_err(|source| ImageError::NotALayout {
            path: self.dir.clone(),
            file: "index.json",
            source,
        })?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|source| ImageError::Json { what: path.display().to_string(), source })?;
        let mut out = Vec::new();
        self.collect(&index, "index.json", None, 0, &mut out)?;
        Ok(out)
    }

    fn collect(
        &self,
        index: &Index,
        where_: &str,
        inherited_tag: Option<&str>,
        depth: usize,
        out: &mut Vec<Candidate>,
    ) -> Result<(), ImageError> {
        for (i, raw) in index.manifests.iter().enumerate() {
            let what = format!("{where_} manifests[{i}]");
            let d = Descriptor::validate(raw, &what)?;
            let tag = raw.annotations.get(ANNOTATION_REF_NAME).map(String::as_str).or(inherited_tag);
            if spec::is_index(&d.media_type) {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(ImageError::Descriptor { what, reason: format!("indexes nested deeper than {MAX_INDEX_DEPTH}") });
                }
                let (nested, _): (Index, _) = self.json_blob(&d, "nested index")?;
                self.collect(&nested, &format!("index {}", d.digest.short()), tag, depth + 1, out)?;
            } else if spec::is_manifest(&d.media_type) || d.media_type.is_empty() {
                out.push(Candidate { descriptor: d, platform: raw.platform.clone(), tag: tag.map(str::to_owned) });
            }
            // Other media types (artifacts, signatures) are not images: skip.
        }
        Ok(())
    }

    /// Picks one manifest and reads it and its config.
    pub fn resolve(&self, selector: &Selector) -> Result<ResolvedImage, ImageError> {
        let candidates = self.manifests()?;
        let tag = selector.tag.clone().or_else(|| self.tag.clone());
        let images: Vec<&Candidate> = candidates.iter().filter(|c| !c.is_attestation()).collect();
        if images.is_empty() {
            return Err(ImageError::NoMatch {
                layout: self.name.clone(),
                wanted: "any image".into(),
                available: "the layout's index.json lists no image manifests".into(),
            });
        }
        let tagged: Vec<&Candidate> = match &tag {
            Some(t) => images.iter().copied().filter(|c| c.tag.as_deref() == Some(t)).collect(),
            None => {
                let latest: Vec<&Candidate> = images.iter().copied().filter(|c| c.tag.as_deref() == Some("latest")).collect();
                if !latest.is_empty() { latest } else { distinct_tag_group(&images) }
            }
        };
        if tagged.is_empty() {
            return Err(ImageError::NoMatch {
                layout: self.name.clone(),
                wanted: format!("tag `{}`", tag.as_deref().unwrap_or("latest")),
                available: format!("tags in this layout: {}", list_tags(&images)),
            });
        }
        // Platform: from the descriptor, or from the config when absent.
        let mut loaded = Vec::with_capacity(tagged.len());
        for c in tagged {
            let resolved = self.load(c)?;
            loaded.push(resolved);
        }
        let wanted_arch = selector.arch.as_deref().map(spec::normalize_arch);
        let matching: Vec<ResolvedImage> = loaded
            .iter()
            .filter(|r| {
                wanted_arch.is_none_or(|a| spec::normalize_arch(&r.platform.architecture) == a)
                    && selector.os.as_deref().is_none_or(|o| r.platform.os == o)
                    && selector.variant.as_deref().is_none_or(|v| r.platform.variant.as_deref() == Some(v))
            })
            .cloned()
            .collect();
        let platforms = || {
            let mut p: Vec<String> = loaded.iter().map(|r| r.platform.to_string()).collect();
            p.dedup();
            format!("platforms in this image: {}; choose one with --arch/--variant/--os", p.join(", "))
        };
        match matching.len() {
            0 => Err(ImageError::NoMatch {
                layout: self.name.clone(),
                wanted: format!(
                    "platform {}{}{}",
                    selector.os.as_deref().unwrap_or("*"),
                    selector.arch.as_deref().map(|a| format!("/{a}")).unwrap_or_default(),
                    selector.variant.as_deref().map(|v| format!("/{v}")).unwrap_or_default()
                ),
                available: platforms(),
            }),
            1 => Ok(matching.into_iter().next().expect("one element")),
            _ if selector.arch.is_none() && distinct_platforms(&matching) > 1 => Err(ImageError::NoMatch {
                layout: self.name.clone(),
                wanted: "a single platform (this image has several)".into(),
                available: platforms(),
            }),
            // Several manifests for the same platform: the first one wins.
            _ => Ok(matching.into_iter().next().expect("non-empty")),
        }
    }

    fn load(&self, c: &Candidate) -> Result<ResolvedImage, ImageError> {
        let d = &c.descriptor;
        let (manifest, _): (Manifest, _) = self.json_blob(d, "manifest")?;
        let config_d = Descriptor::validate(&manifest.config, &format!("manifest {} config", d.digest.short()))?;
        let (config, config_bytes): (ImageConfig, _) = self.json_blob(&config_d, "image config")?;
        if config.rootfs.kind != "layers" {
            return Err(ImageError::Config {
                digest: config_d.digest,
                reason: format!("rootfs.type is `{}`, expected `layers`", config.rootfs.kind),
            });
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Config {
                digest: config_d.digest,
                reason: format!(
                    "rootfs.diff_ids has {} entries but manifest {} lists {} layers",
                    config.rootfs.diff_ids.len(),
                    d.digest.short(),
                    manifest.layers.len()
                ),
            });
        }
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (i, raw) in manifest.layers.iter().enumerate() {
            let what = format!("manifest {} layers[{i}]", d.digest.short());
            let descriptor = Descriptor::validate(raw, &what)?;
            let Some(compression) = spec::layer_compression(&descriptor.media_type) else {
                return Err(ImageError::Descriptor {
                    what,
                    reason: format!("media type `{}` is not a layer media type", descriptor.media_type),
                });
            };
            let diff_id = Digest::parse(&config.rootfs.diff_ids[i]).map_err(|reason| ImageError::Config {
                digest: config_d.digest.clone(),
                reason: format!("rootfs.diff_ids[{i}]: {reason}"),
            })?;
            layers.push(Layer { index: i, descriptor, compression, diff_id });
        }
        let platform = match &c.platform {
            Some(p) if !p.architecture.is_empty() => p.clone(),
            _ => Platform { architecture: config.architecture.clone(), os: config.os.clone(), variant: config.variant.clone() },
        };
        Ok(ResolvedImage {
            name: self.name.clone(),
            manifest_digest: d.digest.clone(),
            manifest_media_type: d.media_type.clone(),
            tag: c.tag.clone(),
            platform,
            config,
            config_digest: config_d.digest,
            config_bytes,
            layers,
        })
    }
}

fn distinct_platforms(images: &[ResolvedImage]) -> usize {
    let mut p: Vec<String> = images.iter().map(|r| r.platform.to_string()).collect();
    p.sort();
    p.dedup();
    p.len()
}

/// Without a tag and without `latest`: the untagged images, or the images
/// of the only tag, are the candidates; several tags are ambiguous.
fn distinct_tag_group<'a>(images: &[&'a Candidate]) -> Vec<&'a Candidate> {
    let mut tags: Vec<Option<&str>> = images.iter().map(|c| c.tag.as_deref()).collect();
    tags.sort();
    tags.dedup();
    if tags.len() == 1 { images.to_vec() } else { Vec::new() }
}

fn list_tags(images: &[&Candidate]) -> String {
    let mut tags: Vec<&str> = images.iter().filter_map(|c| c.tag.as_deref()).collect();
    tags.sort();
    tags.dedup();
    if tags.is_empty() { "(none: the manifests carry no org.opencontainers.image.ref.name)".into() } else { tags.join(", ") }
}

/// A validated descriptor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

impl Descriptor {
    pub fn validate(raw: &RawDescriptor, what: &str) -> Result<Descriptor, ImageError> {
        let digest = Digest::parse(&raw.digest)
            .map_err(|reason| ImageError::Descriptor { what: what.to_owned(), reason })?;
        let size = u64::try_from(raw.size).map_err(|_| ImageError::Descriptor {
            what: what.to_owned(),
            reason: format!("size is {}, a negative number", raw.size),
        })?;
        Ok(Descriptor { media_type: raw.media_type.clone(), digest, size })
    }
}

/// A manifest listed in the layout.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub descriptor: Descriptor,
    pub platform: Option<Platform>,
    pub tag: Option<String>,
}

impl Candidate {
    /// BuildKit attestation manifests are listed as platform unknown/unknown.
    fn is_attestation(&self) -> bool {
        self.platform.as_ref().is_some_and(|p| p.architecture == "unknown" && p.os == "unknown")
    }
}

/// One layer of a resolved image.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    pub index: usize,
    #[serde(flatten)]
    pub descriptor: Descriptor,
    /// The compression the media type declares (the content is sniffed too).
    pub compression: Compression,
    pub diff_id: Digest,
}

/// A manifest chosen from a layout, with its verified config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub name: String,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub tag: Option<String>,
    pub platform: Platform,
    pub config: ImageConfig,
    pub config_digest: Digest,
    /// The config exactly as stored (its digest is `config_digest`).
    pub config_bytes: Vec<u8>,
    pub layers: Vec<Layer>,
}

fn check_layout(dir: &Path) -> Result<(), ImageError> {
    let layout = dir.join("oci-layout");
    let bytes = read_capped(&layout, 64 << 10)
        .map_err(|source| ImageError::NotALayout { path: dir.to_owned(), file: "oci-layout", source })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|source| ImageError::Json { what: layout.display().to_string(), source })?;
    if v.get("imageLayoutVersion").and_then(|v| v.as_str()).is_none() {
        return Err(ImageError::Descriptor {
            what: layout.display().to_string(),
            reason: "has no string `imageLayoutVersion`".into(),
        });
    }
    Ok(())
}

/// Opens a file that must be a regular file (not a FIFO or device that
/// would block or never end). The open itself does not wait: opening a
/// FIFO for reading blocks until a writer appears, so it is opened
/// non-blocking and the flag cleared once the file is known to be regular.
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    use std::os::fd::AsRawFd;
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("larger than {cap} bytes")));
    }
    Ok(bytes)
}

fn temp_dir(options: &OpenOptions, reference: &str) -> Result<tempfile::TempDir, ImageError> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("bundlegen-image-");
        b
    };
    let result = match &options.temp_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    };
    result.map_err(|source| ImageError::Temp { reference: reference.to_owned(), source })
}

fn skopeo_copy(reference: &str, dest: &Path, creds: Option<&str>) -> Result<(), ImageError> {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.arg("copy").arg("--quiet");
    if let Some(c) = creds {
        cmd.arg("--src-creds").arg(c);
    }
    cmd.arg(reference).arg(format!("oci:{}:latest", dest.display()));
    let output = cmd.output().map_err(|e| ImageError::Skopeo { reference: reference.to_owned(), stderr: e.to_string() })?;
    if !output.status.success() {
        return Err(ImageError::Skopeo {
            reference: reference.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            ImageRef::parse("oci:/deploy/app-oci:v1").unwrap(),
            ImageRef::Layout { dir: "/deploy/app-oci".into(), tag: Some("v1".into()) }
        );
        assert_eq!(ImageRef::parse("oci:dir").unwrap(), ImageRef::Layout { dir: "dir".into(), tag: None });
        assert_eq!(ImageRef::parse("some/dir").unwrap(), ImageRef::Layout { dir: "some/dir".into(), tag: None });
        assert_eq!(
            ImageRef::parse("oci-archive:app-oci.tar:latest").unwrap(),
            ImageRef::Archive { file: "app-oci.tar".into(), tag: Some("latest".into()) }
        );
        assert!(matches!(ImageRef::parse("docker://busybox").unwrap(), ImageRef::Skopeo { .. }));
        assert!(ImageRef::parse("oci:").is_err());
        assert!(ImageRef::parse("").is_err());
    }
}
