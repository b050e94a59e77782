//! Flattening image layers into a rootfs, as a container runtime would.
//!
//! Two threads form a pipeline: a reader verifies each layer blob's size
//! and digest while decompressing it, hashes the uncompressed stream for
//! its diff_id and parses the tar entries; the applier (the calling thread)
//! writes them into the rootfs. Between them is a bounded channel of entry
//! headers and data chunks, so memory stays bounded whatever the image size.
//! Layers are applied strictly in order; the reader runs ahead into the
//! next layer while the applier is still writing the previous one.
//!
//! Everything is written into an existing directory; [`crate::staging`]
//! makes the result appear atomically under its final name.

mod apply;
mod decompress;
pub mod tarstream;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;

use crate::diag::{Diagnostics, Progress, Unit, Warning};
use crate::image::digest::{Verified, mismatch_of};
use crate::image::spec::Compression;
use crate::image::{Digest, ImageError, Layer, OpenImage, ResolvedImage};
use crate::rootfs::Walker;
use apply::Applier;
use tarstream::{EntryHeader, Kind, TarError, TarReader};

pub use apply::display as display_path;

/// Limits that stop hostile or broken images. The defaults are far beyond
/// what real images use.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_layers: usize,
    pub max_entries: u64,
    /// Uncompressed bytes over all layers.
    pub max_bytes: u64,
    pub max_path_len: usize,
    pub max_link_len: usize,
    /// Uncompressed/compressed ratio of a layer, checked past 64 MiB.
    pub max_ratio: u64,
    /// Bytes of one PAX or GNU long-name record.
    pub max_record: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layers: 127,
            max_entries: 10_000_000,
            max_bytes: 128 << 30,
            max_path_len: 4096,
            max_link_len: 4096,
            max_ratio: 1000,
            max_record: 1 << 20,
        }
    }
}

const RATIO_CHECK_FLOOR: u64 = 64 << 20;

#[derive(Debug, Clone, Default)]
pub struct FlattenOptions {
    /// Keep a symlink to a directory when an upper layer has a directory
    /// entry of the same name (umoci's `--keep-dirlinks`).
    pub keep_dirlinks: bool,
    /// Behave as an unprivileged user even when root: no chown, no mknod;
    /// ownership, devices and privileged xattrs are recorded instead.
    pub rootless: bool,
    pub limits: Limits,
}

/// Which layer, for messages: `sha256:0123456789ab (2/5)`.
#[derive(Debug, Clone, Default)]
pub struct LayerId {
    pub index: usize,
    pub count: usize,
    pub digest: Option<Digest>,
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.digest {
            Some(d) => write!(f, "{} ({}/{})", d.short(), self.index + 1, self.count),
            None => write!(f, "{}/{}", self.index + 1, self.count),
        }
    }
}

/// Metadata that could not be applied to the files (not root, or the file
/// system refused), kept so that archives written later still carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecordedMeta {
    pub uid: u32,
    pub gid: u32,
    /// `(type 'c' or 'b', major, minor, mode)` of a device node written as
    /// an empty placeholder file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<(char, u32, u32, u32)>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub layers: usize,
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub whiteouts: u64,
    pub skipped: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
    /// Bytes of compressed layer blobs read.
    pub compressed_bytes: u64,
    /// In-root paths of symlinks to directories that a later layer's
    /// directory replaced (not with `keep_dirlinks`), `PATH -> TARGET`:
    /// what was reached through them is gone.
    pub replaced_dirlinks: Vec<String>,
}

/// The result of a flatten.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Flattened {
    pub stats: Stats,
    /// Per in-root path (relative, no leading slash).
    pub recorded: BTreeMap<PathBuf, RecordedMeta>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    #[error("layer {layer}: entry `{entry}`: {reason}")]
    Entry { layer: String, entry: String, reason: String },
    #[error("layer {layer}: entry `{entry}`: cannot {op}")]
    Write {
        layer: String,
        entry: String,
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer} is not a valid tar archive")]
    Tar {
        layer: String,
        #[source]
        source: TarError,
    },
    #[error("layer {layer} cannot be decompressed as {compression:?}; the blob is corrupt or truncated")]
    Decompress {
        layer: String,
        compression: Compression,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: its uncompressed content has digest {actual}, but the image config lists diff_id {expected}")]
    DiffId { layer: String, expected: Digest, actual: Digest },
    #[error("{limit} limit exceeded: {detail}\nhelp: if the image is legitimate, raise the limit with {flag}")]
    Limit { limit: &'static str, flag: &'static str, detail: String },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("cannot open the target directory {path}")]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FlattenError {
    /// True when the image is at fault (exit 1), false for failures of the
    /// machine (disk full, permissions: exit 3).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, FlattenError::Write { .. } | FlattenError::Target { .. })
    }
}

/// What travels from the reader thread to the applier.
enum Msg {
    Layer(LayerId),
    Entry(Box<EntryHeader>),
    /// Data of the preceding regular-file entry, in order.
    Data(Vec<u8>),
    Failed(FlattenError),
}

const CHUNK: usize = 256 << 10;
/// Messages travel in batches, flushed at this many messages or bytes, so
/// that the threads synchronise once per batch rather than once per entry.
const BATCH_MSGS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight: with a batch holding at most `BATCH_BYTES + CHUNK`,
/// this bounds buffered data to about 10 MiB.
const CHANNEL_DEPTH: usize = 8;

/// Collects messages into batches for the channel.
struct Batcher {
    tx: mpsc::SyncSender<Vec<Msg>>,
    batch: Vec<Msg>,
    bytes: usize,
}

impl Batcher {
    /// Queues a message; `false` when the applier has hung up.
    fn push(&mut self, msg: Msg) -> bool {
        self.bytes += match &msg {
            Msg::Data(d) => d.len(),
            Msg::Entry(h) => h.path.len() + 128,
            _ => 0,
        };
        self.batch.push(msg);
        if self.batch.len() >= BATCH_MSGS || self.bytes >= BATCH_BYTES {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        self.bytes = 0;
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_MSGS));
        self.tx.send(batch).is_ok()
    }
}

/// Applies the layers of `image` in order into `target`, an existing
/// directory (normally empty).
pub fn flatten(
    source: &OpenImage,
    image: &ResolvedImage,
    target: &Path,
    options: &FlattenOptions,
    diag: &dyn Diagnostics,
) -> Result<Flattened, FlattenError> {
    let limits = &options.limits;
    if image.layers.len() > limits.max_layers {
        return Err(FlattenError::Limit {
            limit: "layer count",
            flag: "--max-layers",
            detail: format!("image {} has {} layers, the limit is {}", image.name, image.layers.len(), limits.max_layers),
        });
    }
    let walker = Walker::new(target).map_err(|source| FlattenError::Target { path: target.to_owned(), source })?;
    let mut applier = Applier::new(walker, options, diag);
    let (tx, rx) = mpsc::sync_channel::<Vec<Msg>>(CHANNEL_DEPTH);
    let compressed = std::thread::scope(|scope| -> Result<u64, FlattenError> {
        let reader = scope.spawn(move || {
            let mut out = Batcher { tx, batch: Vec::with_capacity(BATCH_MSGS), bytes: 0 };
            let compressed = read_layers(source, image, options, diag, &mut out);
            out.flush();
            compressed
        });
        let applied = apply_stream(&mut applier, &rx);
        drop(rx); // Unblocks the reader if the applier stopped early.
        let compressed = reader.join().unwrap_or(0);
        applied.map(|()| compressed)
    })?;
    applier.finish()?;
    let mut stats = std::mem::take(&mut applier.stats);
    stats.layers = image.layers.len();
    stats.compressed_bytes = compressed;
    Ok(Flattened { stats, recorded: std::mem::take(&mut applier.recorded) })
}

fn apply_stream(applier: &mut Applier<'_>, rx: &mpsc::Receiver<Vec<Msg>>) -> Result<(), FlattenError> {
    let mut expect_data: Option<(Box<EntryHeader>, Option<apply::PendingFile>, u64)> = None;
    for msg in rx.iter().flatten() {
        match msg {
            Msg::Data(chunk) => {
                let Some((h, file, left)) = expect_data.as_mut() else { continue };
                if let Some(pending) = file.as_mut() {
                    pending.file.write_all(&chunk).map_err(|e| applier.write_err(h, "write its data", e))?;
                }
                *left -= chunk.len() as u64;
                if *left == 0 {
                    finish(applier, expect_data.take())?;
                }
            }
            Msg::Entry(h) => {
                let file = applier.entry(&h)?;
                if h.kind == Kind::File && h.size > 0 {
                    let size = h.size;
                    expect_data = Some((h, file, size));
                } else if let Some(f) = file {
                    applier.finish_file(&h, f)?;
                }
            }
            Msg::Layer(id) => applier.begin_layer(id),
            Msg::Failed(e) => return Err(e),
        }
    }
    Ok(())
}

fn finish(applier: &mut Applier<'_>, done: Option<(Box<EntryHeader>, Option<apply::PendingFile>, u64)>) -> Result<(), FlattenError> {
    if let Some((h, Some(f), _)) = done {
        applier.finish_file(&h, f)?;
    }
    Ok(())
}

/// The reader thread: returns the compressed bytes read.
fn read_layers(source: &OpenImage, image: &ResolvedImage, options: &FlattenOptions, diag: &dyn Diagnostics, tx: &mut Batcher) -> u64 {
    let mut totals = Totals::default();
    for layer in &image.layers {
        let id = LayerId { index: layer.index, count: image.layers.len(), digest: Some(layer.descriptor.digest.clone()) };
        if !tx.push(Msg::Layer(id.clone())) {
            break;
        }
        diag.progress(Progress::Begin { step: format!("layer {id}"), total: Some(layer.descriptor.size), unit: Unit::Bytes });
        let result = read_layer(source, layer, &id, options, diag, tx, &mut totals);
        diag.progress(Progress::End);
        match result {
            Ok(true) => {}
            Ok(false) => break, // The applier is gone.
            Err(e) => {
                tx.push(Msg::Failed(e));
                break;
            }
        }
    }
    totals.compressed
}

#[derive(Default)]
struct Totals {
    entries: u64,
    uncompressed: u64,
    compressed: u64,
}

/// Counts bytes passing through, shared with the loop that checks ratios.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Streams one layer into the channel. `Ok(false)` when the applier hung up.
fn read_layer(
    source: &OpenImage,
    layer: &Layer,
    id: &LayerId,
    options: &FlattenOptions,
    diag: &dyn Diagnostics,
    tx: &mut Batcher,
    totals: &mut Totals,
) -> Result<bool, FlattenError> {
    let mut blob = source.blob(&layer.descriptor, "layer")?.offloaded();
    let outcome = stream_layer(&mut blob, layer, id, options, diag, tx, totals);
    // Whatever happened, a blob that does not match its descriptor is the
    // first thing to report: read it to the end to find out.
    let drained = io::copy(&mut blob, &mut io::sink());
    totals.compressed += blob.bytes_read();
    if let Err(e) = drained
        && (mismatch_of(&e).is_some() || outcome.is_ok()) {
            return Err(source.read_error(&layer.descriptor, &format!("layer {id}"), e).into());
        }
    outcome
}

fn stream_layer(
    blob: &mut Verified<std::fs::File>,
    layer: &Layer,
    id: &LayerId,
    options: &FlattenOptions,
    diag: &dyn Diagnostics,
    tx: &mut Batcher,
    totals: &mut Totals,
) -> Result<bool, FlattenError> {
    let limits = &options.limits;
    let compressed = Rc::new(Cell::new(0u64));
    let counting = Counting { inner: blob, count: compressed.clone() };
    let peek = decompress::Peek::new(counting, 1 << 20);
    let (decoder, found) = decompress::decoder(peek).map_err(|source| corrupt(id, layer.compression, source))?;
    if found != layer.compression {
        diag.warning(Warning::new(
            format!("layer {id}"),
            format!(
                "media type `{}` says {:?} but the content is {:?}; reading it as {:?}",
                layer.descriptor.media_type, layer.compression, found, found
            ),
        ));
    }
    let hashed = Verified::hashing(decoder).offloaded();
    let mut tar = TarReader::new(io::BufReader::with_capacity(CHUNK, hashed), limits.max_record);
    let tar_err = |e: TarError| match e {
        TarError::Io(source) => corrupt(id, found, source),
        other => FlattenError::Tar { layer: id.to_string(), source: other },
    };
    let mut reported = 0u64;
    let layer_start = totals.uncompressed;
    while let Some(h) = tar.next_entry().map_err(tar_err)? {
        totals.entries += 1;
        if totals.entries > limits.max_entries {
            return Err(FlattenError::Limit {
                limit: "entry count",
                flag: "--max-entries",
                detail: format!("layer {id} brings the image past {} entries", limits.max_entries),
            });
        }
        let size = h.size;
        let is_file = h.kind == Kind::File;
        if !tx.push(Msg::Entry(Box::new(h))) {
            return Ok(false);
        }
        if is_file && size > 0 {
            let mut left = size;
            while left > 0 {
                let mut chunk = vec![0u8; left.min(CHUNK as u64) as usize];
                let mut filled = 0;
                while filled < chunk.len() {
                    filled += tar.read_data(&mut chunk[filled..]).map_err(tar_err)?;
                }
                left -= chunk.len() as u64;
                if !tx.push(Msg::Data(chunk)) {
                    return Ok(false);
                }
                // Within the entry too: one file of a bomb is the whole bomb.
                check_volume(limits, id, layer_start + tar.offset(), tar.offset(), compressed.get())?;
            }
        }
        totals.uncompressed = layer_start + tar.offset();
        check_volume(limits, id, totals.uncompressed, totals.uncompressed - layer_start, compressed.get())?;
        let c = compressed.get();
        if c - reported >= 1 << 20 {
            diag.progress(Progress::Advance(c - reported));
            reported = c;
        }
    }
    // Hash whatever follows the end-of-archive blocks, then check the diff_id.
    let mut rest = tar.into_inner();
    let mut trailing = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = rest.read(&mut buf).map_err(|source| corrupt(id, found, source))?;
        if n == 0 {
            break;
        }
        trailing += n as u64;
        check_volume(limits, id, totals.uncompressed + trailing, totals.uncompressed + trailing - layer_start, compressed.get())?;
    }
    totals.uncompressed += trailing;
    let (actual, _) = rest.into_inner().finish();
    if actual != layer.diff_id {
        return Err(FlattenError::DiffId { layer: id.to_string(), expected: layer.diff_id.clone(), actual });
    }
    diag.progress(Progress::Advance(compressed.get() - reported));
    Ok(true)
}

fn check_volume(limits: &Limits, id: &LayerId, total: u64, layer_bytes: u64, compressed: u64) -> Result<(), FlattenError> {
    if total > limits.max_bytes {
        return Err(FlattenError::Limit {
            limit: "uncompressed size",
            flag: "--max-bytes",
            detail: format!("layer {id} brings the image past {} uncompressed bytes", limits.max_bytes),
        });
    }
    if layer_bytes > RATIO_CHECK_FLOOR && layer_bytes / compressed.max(1) > limits.max_ratio {
        return Err(FlattenError::Limit {
            limit: "compression ratio",
            flag: "--max-ratio",
            detail: format!(
                "layer {id} expands {layer_bytes} bytes from {compressed} compressed bytes, over {}:1 (a decompression bomb?)",
                limits.max_ratio
            ),
        });
    }
    Ok(())
}

fn corrupt(id: &LayerId, compression: Compression, source: io::Error) -> FlattenError {
    FlattenError::Decompress { layer: id.to_string(), compression, source }
}

