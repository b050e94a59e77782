//! Entry points for the cargo-fuzz targets in `fuzz/` and for the replay
//! test `tests/it/fuzz_replay.rs`, so that a saved fuzz input is replayed
//! through exactly the code the fuzzer ran. Not a stable API.
//!
//! Every entry point takes arbitrary bytes and a scratch directory (a
//! per-process directory, on tmpfs when fuzzing). Errors are expected for
//! garbage: they are rendered (so that their `Display` runs too) into the
//! returned outcome, one line per step, which the replay test shows. An
//! entry point panics only when bundlegen panics or breaks an invariant the
//! harness checks, such as writing outside the rootfs.
//!
//! Input formats (documented here because the saved inputs depend on them):
//!
//! - [`image_json`]: documents separated by NUL bytes. The first is the
//!   layout's `index.json`, the others become blobs. In document *i*, the
//!   tokens `@dN` and `@sN` (N a digit, N > i) are replaced by the digest
//!   (`sha256:…`) and size of document N, so the fuzzer can build an index
//!   that points at a manifest that points at a config without computing
//!   hashes.
//! - [`layer`]: one flags byte (bit 0: `keep_dirlinks`, bit 1: `rootless`),
//!   then up to [`MAX_LAYERS`] layer blobs separated by [`LAYER_SEPARATOR`].
//! - [`platform`]: NUL-separated documents: the template, its `_libs.json`,
//!   then files of its `.d` directory.
//! - [`elf`], [`appmeta`]: the file itself.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::diag::Silent;
use crate::image::spec::Compression;
use crate::image::{Digest, ImageRef, OpenImage, OpenOptions, Selector};
use crate::layers::{FlattenOptions, Limits};

/// Separates layer blobs in a [`layer`] input.
pub const LAYER_SEPARATOR: &[u8] = b"--bundlegen-layer--";
/// Layers in one [`layer`] input; further separators stay in the last blob.
pub const MAX_LAYERS: usize = 8;
/// Documents in one [`image_json`] or [`platform`] input.
const MAX_DOCS: usize = 10;

/// The per-process scratch directory the fuzz targets use:
/// `$BUNDLEGEN_FUZZ_TMPDIR`, else `/mnt/ram` when it exists (tmpfs), else
/// the system temp dir, plus `bundlegen-fuzz-<pid>`. It is never removed by
/// the process (libFuzzer exits without unwinding); `scripts/fuzz` cleans
/// it up. Each input works in a fresh directory below it that is removed.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = match std::env::var_os("BUNDLEGEN_FUZZ_TMPDIR") {
            Some(d) => PathBuf::from(d),
            None if Path::new("/mnt/ram").is_dir() => PathBuf::from("/mnt/ram"),
            None => std::env::temp_dir(),
        };
        let dir = base.join(format!("bundlegen-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the fuzz scratch directory");
        dir
    })
}

/// A fresh directory for one input, removed when dropped.
struct RunDir(tempfile::TempDir);

impl RunDir {
    fn new(scratch: &Path) -> RunDir {
        RunDir(
            tempfile::Builder::new()
                .prefix("run-")
                .tempdir_in(scratch)
                .expect("cannot create a run directory"),
        )
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create_dir_all in the run directory");
    }
    std::fs::write(path, data).expect("write in the run directory");
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Replaces `@dN`/`@sN` tokens that refer to later documents.
fn substitute(doc: &[u8], index: usize, digests: &[(Digest, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len());
    let mut i = 0;
    while i < doc.len() {
        if doc[i] == b'@'
            && i + 2 < doc.len()
            && matches!(doc[i + 1], b'd' | b's')
            && doc[i + 2].is_ascii_digit()
        {
            let n = usize::from(doc[i + 2] - b'0');
            if n > index && n < digests.len() {
                let (digest, size) = &digests[n];
                let text = if doc[i + 1] == b'd' {
                    digest.to_string()
                } else {
                    size.to_string()
                };
                out.extend_from_slice(text.as_bytes());
                i += 3;
                continue;
            }
        }
        out.push(doc[i]);
        i += 1;
    }
    out
}

/// Index, manifest and config parsing and validation: writes a layout from
/// the input, lists its manifests and resolves it with a few selectors, as
/// `bundlegen inspect`/`unpack` do before reading layers.
pub fn image_json(data: &[u8], scratch: &Path) -> String {
    let docs: Vec<&[u8]> = data.splitn(MAX_DOCS, |&b| b == 0).collect();
    let mut resolved_docs: Vec<Vec<u8>> = vec![Vec::new(); docs.len()];
    let mut digests: Vec<(Digest, usize)> = vec![(Digest::of(b""), 0); docs.len()];
    for i in (0..docs.len()).rev() {
        let doc = substitute(docs[i], i, &digests);
        digests[i] = (Digest::of(&doc), doc.len());
        resolved_docs[i] = doc;
    }
    let run = RunDir::new(scratch);
    let layout = run.path().join("layout");
    write(&layout.join("oci-layout"), OCI_LAYOUT);
    write(&layout.join("index.json"), &resolved_docs[0]);
    for (doc, (digest, _)) in resolved_docs.iter().zip(&digests).skip(1) {
        write(&layout.join("blobs/sha256").join(digest.hex()), doc);
    }
    let reference = ImageRef::Layout {
        dir: layout,
        tag: None,
    };
    let image = match OpenImage::open(&reference, &OpenOptions::default()) {
        Ok(image) => image,
        Err(e) => panic!(
            "the harness wrote a layout that does not open: {}",
            crate::error::chain(&e)
        ),
    };
    let mut outcome = match image.manifests() {
        Ok(list) => format!("manifests: {}\n", list.len()),
        Err(e) => format!("manifests: error: {}\n", crate::error::chain(&e)),
    };
    let selectors = [
        Selector::default(),
        Selector {
            tag: Some("latest".into()),
            arch: Some("aarch64".into()),
            variant: Some("v8".into()),
            os: Some("linux".into()),
        },
    ];
    for selector in &selectors {
        match image.resolve(selector) {
            Ok(resolved) => {
                // What `inspect --json` and the config writer use.
                let _ = serde_json::to_string(&resolved.layers);
                let _ = serde_json::to_vec(&resolved.config);
                outcome += &format!(
                    "resolve: {} with {} layers\n",
                    resolved.platform,
                    resolved.layers.len()
                );
            }
            Err(e) => outcome += &format!("resolve: error: {}\n", crate::error::chain(&e)),
        }
    }
    outcome
}

/// Limits small enough that a decompression bomb is cut within a few
/// megabytes.
fn fuzz_limits() -> Limits {
    Limits {
        max_layers: MAX_LAYERS,
        max_entries: 4096,
        max_bytes: 8 << 20,
        max_path_len: 4096,
        max_link_len: 4096,
        max_ratio: 1000,
        max_record: 256 << 10,
    }
}

fn layer_media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// The diff_id bundlegen will compute for a blob, so that a layer that
/// decompresses fine is accepted and the whole flatten (directory metadata
/// at the end included) runs. Decoded independently with flate2 and zstd,
/// up to the size limit; when this decoder disagrees, the flatten merely
/// ends in a diff_id error.
fn expected_diff_id(blob: &[u8], cap: u64) -> Digest {
    let mut out = Vec::new();
    let reader: Box<dyn Read + '_> = if blob.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(blob))
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        match zstd::stream::read::Decoder::new(blob) {
            Ok(d) => Box::new(d),
            Err(_) => return Digest::of(b""),
        }
    } else {
        return Digest::of(blob);
    };
    let _ = reader.take(cap + 1).read_to_end(&mut out);
    Digest::of(&out)
}

/// What a path outside the rootfs looked like, to prove nothing changed.
#[derive(Debug, PartialEq, Eq)]
struct Snap {
    kind: u32,
    ino: u64,
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    content: Option<Vec<u8>>,
    listing: Option<Vec<std::ffi::OsString>>,
}

/// Snapshots `root` recursively without following symlinks. Below `skip`
/// (the rootfs) only the directory's identity is recorded.
fn snapshot(root: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, Snap>) {
    let meta = std::fs::symlink_metadata(root).expect("lstat outside the rootfs");
    let is_skipped = root == skip;
    let mut snap = Snap {
        kind: meta.mode() & libc::S_IFMT,
        ino: meta.ino(),
        mode: meta.mode(),
        nlink: meta.nlink(),
        uid: meta.uid(),
        gid: meta.gid(),
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        content: None,
        listing: None,
    };
    if is_skipped {
        // Its own metadata legitimately changes; it must stay the same directory.
        snap = Snap {
            mode: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: (0, 0),
            ctime: (0, 0),
            ..snap
        };
    } else if meta.file_type().is_file() {
        snap.content = Some(std::fs::read(root).expect("read outside the rootfs"));
    } else if meta.file_type().is_dir() {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(root)
            .expect("list outside the rootfs")
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort();
        for n in &names {
            snapshot(&root.join(n), skip, out);
        }
        snap.listing = Some(names);
    }
    out.insert(root.to_owned(), snap);
}

/// Layer application: the input's blobs become the layers of an image that
/// is flattened by [`crate::layers::flatten`] into `box/rootfs` of a fresh
/// run directory, beside canary files at `box/canary` and `canary` (one and
/// two `..` up) and the image layout itself. Afterwards everything outside
/// `box/rootfs` must be exactly as before: same inodes, modes, owners, link
/// counts, times, contents and directory listings.
pub fn layer(data: &[u8], compression: Compression, scratch: &Path) -> String {
    let Some((&flags, rest)) = data.split_first() else {
        return "empty input".into();
    };
    let blobs = split_layers(rest);
    let limits = fuzz_limits();
    let run = RunDir::new(scratch);
    let top = run.path();
    let layout = top.join("layout");
    let rootfs = top.join("box/rootfs");
    std::fs::create_dir_all(&rootfs).expect("create the rootfs");
    write(&top.join("canary"), b"outside the rootfs, two levels up\n");
    write(
        &top.join("box/canary"),
        b"outside the rootfs, one level up\n",
    );
    write(&layout.join("oci-layout"), OCI_LAYOUT);

    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for blob in &blobs {
        let digest = Digest::of(blob);
        write(&layout.join("blobs/sha256").join(digest.hex()), blob);
        layers.push(serde_json::json!({
            "mediaType": layer_media_type(compression),
            "digest": digest.to_string(),
            "size": blob.len(),
        }));
        diff_ids.push(expected_diff_id(blob, limits.max_bytes).to_string());
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("serialize the config");
    let config_digest = Digest::of(&config);
    write(
        &layout.join("blobs/sha256").join(config_digest.hex()),
        &config,
    );
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .expect("serialize the manifest");
    let manifest_digest = Digest::of(&manifest);
    write(
        &layout.join("blobs/sha256").join(manifest_digest.hex()),
        &manifest,
    );
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.to_string(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    write(
        &layout.join("index.json"),
        &serde_json::to_vec(&index).expect("serialize the index"),
    );

    let reference = ImageRef::Layout {
        dir: layout,
        tag: None,
    };
    let source = match OpenImage::open(&reference, &OpenOptions::default()) {
        Ok(s) => s,
        Err(e) => panic!(
            "the harness wrote a layout that does not open: {}",
            crate::error::chain(&e)
        ),
    };
    let image = match source.resolve(&Selector::default()) {
        Ok(i) => i,
        Err(e) => panic!(
            "the harness wrote an image that does not resolve: {}",
            crate::error::chain(&e)
        ),
    };

    let mut before = BTreeMap::new();
    snapshot(top, &rootfs, &mut before);
    let options = FlattenOptions {
        keep_dirlinks: flags & 1 != 0,
        rootless: flags & 2 != 0,
        limits,
    };
    let outcome = match crate::layers::flatten(&source, &image, &rootfs, &options, &Silent) {
        Ok(f) => format!(
            "flatten: {} layers, {} entries\n",
            f.stats.layers, f.stats.entries
        ),
        Err(e) => format!("flatten: error: {}\n", crate::error::chain(&e)),
    };
    let mut after = BTreeMap::new();
    snapshot(top, &rootfs, &mut after);
    if before != after {
        let changed: Vec<String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| format!("{}: {:?} -> {:?}", k.display(), before.get(k), after.get(k)))
            .collect();
        panic!(
            "flattening changed something outside the rootfs:\n{}",
            changed.join("\n")
        );
    }
    outcome
}

fn split_layers(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < MAX_LAYERS {
        match find(rest, LAYER_SEPARATOR) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + LAYER_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// Byte-by-byte: a `memcmp` per position would go through libFuzzer's
/// comparison hooks and cost a fifth of the layer targets' time.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    (0..haystack.len().saturating_sub(rest.len())).find(|&i| {
        haystack[i] == first
            && haystack[i + 1..i + needle.len()]
                .iter()
                .zip(rest)
                .all(|(a, b)| a == b)
    })
}

/// ELF parsing: the input is written to a file and read by
/// [`crate::elf::read`], as the rootfs scan does for every file.
pub fn elf(data: &[u8], scratch: &Path) -> String {
    let mut file = tempfile::Builder::new()
        .prefix("elf-")
        .tempfile_in(scratch)
        .expect("create the ELF file");
    io::Write::write_all(&mut file, data).expect("write the ELF file");
    match crate::elf::read(file.path()) {
        Ok(Some(info)) => {
            let _ = (info.oci_arch(), info.is_shared_lib(), info.is_executable());
            assert!(
                info.compatible_with(&info),
                "an ELF file is not compatible with itself: {info:?}"
            );
            format!(
                "elf: {} {:?}, {} needed\n",
                info.arch_name(),
                info.kind,
                info.needed.len()
            )
        }
        Ok(None) => "elf: not an ELF file\n".into(),
        Err(e) => format!("elf: error: {}\n", crate::error::chain(&e)),
    }
}

/// Platform template parsing: the template, its `_libs.json` and `.d`
/// overlays are loaded as `generate -p` loads them, then the template is
/// validated alone in strict mode as `platform validate --strict` does.
pub fn platform(data: &[u8], scratch: &Path) -> String {
    let docs: Vec<&[u8]> = data.splitn(MAX_DOCS, |&b| b == 0).collect();
    let run = RunDir::new(scratch);
    let template = run.path().join("fuzz.json");
    write(&template, docs[0]);
    if let Some(libs) = docs.get(1) {
        write(&run.path().join("fuzz_libs.json"), libs);
    }
    for (i, doc) in docs.iter().enumerate().skip(2) {
        write(&run.path().join(format!("fuzz.d/{i:02}.json")), doc);
    }
    let opts = crate::platform::LoadOptions {
        load_libs: true,
        ..Default::default()
    };
    let mut outcome = match crate::platform::load_file(&template, &opts, &Silent) {
        Ok(p) => {
            let _ = serde_json::to_string(&p.spec);
            if let Some(libs) = &p.libs {
                let _ = libs.get("/usr/lib/libc.so.6");
                let _ = libs.to_json();
            }
            let libs = p.libs.as_ref().map_or(0, |l| l.libs.len());
            format!(
                "load: {:?}, {} sources, {libs} libs\n",
                p.oci_arch(),
                p.sources.len()
            )
        }
        Err(e) => format!("load: error: {}\n", crate::error::chain(&e)),
    };
    outcome += &match crate::platform::validate_file(&template, true, &Silent) {
        Ok(_) => "validate --strict: ok\n".into(),
        Err(e) => format!("validate --strict: error: {}\n", crate::error::chain(&e)),
    };
    outcome
}

/// App metadata parsing, lenient and strict, as `generate -a` and
/// `/appmetadata.json` in an image are read.
pub fn appmeta(data: &[u8]) -> String {
    let mut outcome = String::new();
    for strict in [false, true] {
        outcome += &match crate::appmeta::AppMetadata::parse(
            data,
            "fuzz/appmetadata.json",
            strict,
            &Silent,
        ) {
            Ok(meta) => {
                let _ = serde_json::to_string(&meta);
                let id = meta.id.clone();
                let _ = meta.with_id("com.example.fuzz");
                format!("parse (strict {strict}): {id}\n")
            }
            Err(e) => format!("parse (strict {strict}): error: {}\n", crate::error::chain(&e)),
        };
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_split_on_the_separator() {
        let sep = LAYER_SEPARATOR;
        assert_eq!(split_layers(b"abc"), vec![&b"abc"[..]]);
        assert_eq!(
            split_layers(&[b"a".as_slice(), sep, b"", sep, b"c"].concat()),
            vec![&b"a"[..], b"", b"c"]
        );
        assert_eq!(split_layers(&[sep, b"x"].concat()), vec![&b""[..], b"x"]);
        assert_eq!(
            split_layers(&sep[..sep.len() - 1]),
            vec![&sep[..sep.len() - 1]]
        );
        let many = [sep; MAX_LAYERS + 2].concat();
        let split = split_layers(&many);
        assert_eq!(split.len(), MAX_LAYERS);
        assert_eq!(split[MAX_LAYERS - 1], &[sep; 3].concat()[..]);
    }

    #[test]
    fn placeholders_name_later_documents_only() {
        let digests = vec![
            (Digest::of(b"0"), 1),
            (Digest::of(b"one"), 3),
            (Digest::of(b"two"), 42),
        ];
        let out = substitute(
            br#"{"digest":"@d2","size":@s2,"self":"@d0","x":"@d9","y":"@q1"}"#,
            0,
            &digests,
        );
        let expected = format!(
            r#"{{"digest":"{}","size":42,"self":"@d0","x":"@d9","y":"@q1"}}"#,
            digests[2].0
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        assert_eq!(substitute(b"@d1 @s", 1, &digests), b"@d1 @s");
    }
}
