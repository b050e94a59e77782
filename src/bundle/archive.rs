//! Deterministic archives of a bundle: `OUTPUTDIR.tar.gz` (or `.tar.zst`,
//! `.tar`), the `.ipk` of `-i`, and the layer of `--oci-output`.
//!
//! The same input directory gives byte-identical archives whatever the
//! number of threads and whether bundlegen ran as root:
//!
//! - entries are sorted by path (byte order); names are relative to the
//!   bundle (`config.json`, `rootfs/...`), with no entry for the bundle
//!   directory itself (as BundleGen's tarball);
//! - POSIX ustar headers with PAX extended headers where ustar falls short,
//!   numeric owners only (no user or group names), no atime/ctime;
//! - mtimes later than `SOURCE_DATE_EPOCH` are clamped to it (without it,
//!   the files' own mtimes, which are already deterministic for a
//!   deterministic input);
//! - ownership is the file's when bundlegen runs as root (or under pseudo),
//!   otherwise what the flattener recorded ([`RecordedMeta`]), else `0:0`;
//!   device placeholders recorded by a non-root flatten are written as
//!   device entries, so a rootless build archives the same as a root one;
//! - xattrs travel as `SCHILY.xattr.*` PAX records (`security.capability`
//!   above all); host-specific ones (SELinux labels, ACLs, overlayfs) never;
//! - hardlinked files are tar hardlinks to the first path in archive order.
//!
//! Compression: gzip is compressed in parallel in fixed 512 KiB chunks
//! (see [`pgzip`]) into one ordinary gzip member; level 6 by default.
//! BundleGen uses level 9, which on a large bundle takes minutes for about
//! 1 % smaller output. zstd uses libzstd's multithreaded mode with at least
//! one worker, whose output does not depend on the worker count.
//!
//! Memory stays bounded: file data is streamed; only the list of entries
//! (metadata) is held.

mod header;
mod ipk;
mod pgzip;
mod walk;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::image::Digest;
use crate::layers::RecordedMeta;
use crate::rootfs::{self, Missing, Walker, cstr};
use crate::staging::{StagedFile, StagingError};

pub use ipk::{IpkLayout, IpkMeta, stage_ipk, write_ipk};

/// How the tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// The level used when none is given.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Gzip => 6,
            Compression::Zstd => 3,
            Compression::None => 0,
        }
    }

    fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Compression::Gzip => 0..=9,
            Compression::Zstd => 1..=19,
            Compression::None => 0..=0,
        }
    }

    /// `tar.gz`, `tar.zst` or `tar`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
            Compression::None => "tar",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ArchiveOptions<'a> {
    pub compression: Compression,
    /// Compression level; `None` for [`Compression::default_level`].
    pub level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: no entry is newer than this.
    pub source_date_epoch: Option<i64>,
    /// Compression threads; 0 means one per available CPU. The output does
    /// not depend on it.
    pub threads: usize,
    /// `tarball.fileOwnershipSameAsUser`: every entry owned by this
    /// `(uid, gid)` (the container user's), in the archive only.
    pub owner: Option<(u32, u32)>,
    /// `tarball.fileMask` as BundleGen applies it: the permission bits
    /// (`0o777`) of every entry are ANDed with it, so `0o770` removes all
    /// rights of others. Set-id and sticky bits are kept.
    pub file_mask: Option<u32>,
    /// What the flattener could not apply, by rootfs-relative path; in the
    /// archive these paths are under `rootfs/`.
    pub recorded: &'a BTreeMap<PathBuf, RecordedMeta>,
    /// The rootfs was flattened rootless (`FlattenOptions::rootless`): the
    /// owners on disk mean nothing even when running as root.
    pub rootless: bool,
}

impl<'a> ArchiveOptions<'a> {
    /// gzip at the default level, file mtimes, all CPUs.
    pub fn new(recorded: &'a BTreeMap<PathBuf, RecordedMeta>) -> Self {
        ArchiveOptions {
            compression: Compression::Gzip,
            level: None,
            source_date_epoch: None,
            threads: 0,
            owner: None,
            file_mask: None,
            recorded,
            rootless: false,
        }
    }

    pub(crate) fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        }
    }

    fn level(&self) -> Result<i32, ArchiveError> {
        let level = self.level.unwrap_or(self.compression.default_level());
        let range = self.compression.levels();
        if !range.contains(&level) {
            return Err(ArchiveError::Level {
                compression: self.compression,
                level,
                min: *range.start(),
                max: *range.end(),
            });
        }
        Ok(level)
    }
}

/// A written archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub path: PathBuf,
    /// Bytes of the (compressed) file.
    pub size: u64,
    /// Digest of the file.
    pub sha256: Digest,
    /// Digest of the uncompressed tar stream (an OCI layer's diff_id; for
    /// an ipk, that of its data.tar).
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    /// Entries in the tar stream.
    pub entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot {op} {path}")]
    Read {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot write the archive {path}\nhelp: check free space and permissions in its directory"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} changed while it was being archived\nhelp: make sure nothing else writes into the bundle, then run again"
    )]
    Changed { path: PathBuf },
    #[error("{path} is {what}")]
    Unsupported { path: PathBuf, what: &'static str },
    #[error("{path}: {reason}")]
    Entry { path: PathBuf, reason: String },
    #[error(
        "the archive {out} would be written inside the directory it archives ({dir})\nhelp: write it beside the bundle directory"
    )]
    OutputInsideInput { out: PathBuf, dir: PathBuf },
    #[error("{compression:?} level {level} is out of range; use {min} to {max}")]
    Level {
        compression: Compression,
        level: i32,
        min: i32,
        max: i32,
    },
    #[error("ipk control field `{field}` = {value:?} is not valid: {reason}")]
    Control {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Writes `bundle_dir` (`config.json`, `rootfs/`) as one archive at `out`,
/// atomically: the data goes to a temporary file beside `out`, renamed over
/// it at the end. A symlink at `out` is replaced, never followed.
pub fn write_tar(
    bundle_dir: &Path,
    out: &Path,
    opts: &ArchiveOptions<'_>,
) -> Result<ArchiveInfo, ArchiveError> {
    stage_tar(bundle_dir, out, opts)?.persist()
}

/// Writes the archive of [`write_tar`] to its temporary file only; it
/// replaces `out` when [`StagedArchive::persist`] is called, and is removed
/// if that never happens. This lets a caller put the bundle directory and
/// its archive in place one right after the other, once both are complete.
pub fn stage_tar(
    bundle_dir: &Path,
    out: &Path,
    opts: &ArchiveOptions<'_>,
) -> Result<StagedArchive, ArchiveError> {
    stage_dir(bundle_dir, b"rootfs", out, opts)
}

/// A complete archive at its temporary name.
pub struct StagedArchive {
    file: AtomicFile,
    info: ArchiveInfo,
}

impl StagedArchive {
    /// Renames the archive over its final name.
    pub fn persist(self) -> Result<ArchiveInfo, ArchiveError> {
        self.file.persist()?;
        Ok(self.info)
    }
}

/// Archives `dir`, where `recorded_under` names the subtree `recorded`
/// describes (empty: all of it), atomically to `out`.
pub(crate) fn write_dir(
    dir: &Path,
    recorded_under: &[u8],
    out: &Path,
    opts: &ArchiveOptions<'_>,
) -> Result<ArchiveInfo, ArchiveError> {
    stage_dir(dir, recorded_under, out, opts)?.persist()
}

fn stage_dir(
    dir: &Path,
    recorded_under: &[u8],
    out: &Path,
    opts: &ArchiveOptions<'_>,
) -> Result<StagedArchive, ArchiveError> {
    let temp = AtomicFile::new(out, Some(dir))?;
    let file = temp.file().map_err(|source| ArchiveError::Write {
        path: out.to_owned(),
        source,
    })?;
    let (written, mut info) = write_stream(dir, recorded_under, opts, file, out)?;
    info.path = out.to_owned();
    drop(written);
    Ok(StagedArchive { file: temp, info })
}

/// Streams the archive of `dir` into `w`; `out` names it in messages.
pub(crate) fn write_stream<W: Write>(
    dir: &Path,
    recorded_under: &[u8],
    opts: &ArchiveOptions<'_>,
    w: W,
    out: &Path,
) -> Result<(W, ArchiveInfo), ArchiveError> {
    let level = opts.level()?;
    let src = walk::Source {
        dir,
        recorded_under,
        privileged: !opts.rootless && rootfs::geteuid_is_root(),
    };
    let (entries, restore) = walk::collect(&src, opts)?;
    let werr = |source| ArchiveError::Write {
        path: out.to_owned(),
        source,
    };
    let hashed = Hashing::new(BufWriter::with_capacity(1 << 20, w));
    let compressor =
        Compressor::new(opts.compression, level, opts.threads(), hashed).map_err(werr)?;
    let mut tar = Hashing::new(compressor);
    let count = entries.len() as u64;
    write_entries(&src, &entries, &mut tar, out)?;
    drop(restore);
    let (diff_id, uncompressed_size, compressor) = tar.finish();
    let hashed = compressor.finish().map_err(werr)?;
    let (sha256, size, buffered) = hashed.finish();
    let inner = buffered.into_inner().map_err(|e| werr(e.into_error()))?;
    Ok((
        inner,
        ArchiveInfo {
            path: out.to_owned(),
            size,
            sha256,
            diff_id,
            uncompressed_size,
            entries: count,
        },
    ))
}

fn write_entries<W: Write>(
    src: &walk::Source<'_>,
    entries: &[walk::Entry],
    w: &mut W,
    out: &Path,
) -> Result<(), ArchiveError> {
    let werr = |source| ArchiveError::Write {
        path: out.to_owned(),
        source,
    };
    let mut walker = Walker::new(src.dir).map_err(|source| ArchiveError::Read {
        op: "open",
        path: src.dir.to_owned(),
        source,
    })?;
    let mut head = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 256 << 10];
    for e in entries {
        head.clear();
        header::encode(&e.header, &mut head).map_err(|reason| ArchiveError::Entry {
            path: src.dir.join(walk::bytes_path(&e.header.path)),
            reason,
        })?;
        w.write_all(&head).map_err(werr)?;
        if let Some(rel) = &e.source {
            copy_file(&mut walker, src, rel, e.header.size, &mut buf, w, out)?;
            w.write_all(&[0u8; header::BLOCK][..header::padding(e.header.size)])
                .map_err(werr)?;
        }
    }
    // End of archive: two zero blocks.
    w.write_all(&[0u8; 2 * header::BLOCK]).map_err(werr)
}

/// Copies exactly `size` bytes of the regular file at `rel`, opened without
/// following any symlink.
fn copy_file<W: Write>(
    walker: &mut Walker,
    src: &walk::Source<'_>,
    rel: &[u8],
    size: u64,
    buf: &mut [u8],
    w: &mut W,
    out: &Path,
) -> Result<(), ArchiveError> {
    let path = || src.dir.join(walk::bytes_path(rel));
    let rerr = |op| {
        move |source| ArchiveError::Read {
            op,
            path: path(),
            source,
        }
    };
    let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&b""[..], rel),
    };
    let comps: Vec<&[u8]> = parent
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let refuse_all: &dyn Fn(&[u8]) -> bool = &|_| true;
    let dir = walker
        .dir(&comps, Missing::Fail, Some(refuse_all))
        .map_err(rerr("open the directory of"))?;
    let cname = cstr(name).map_err(rerr("open"))?;
    let open = || unsafe {
        libc::openat(
            dir.raw(),
            cname.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    let mut fd = open();
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) && !src.privileged
    {
        // Not root: a file without read permission (mode 0000, /etc/shadow)
        // is made readable for the time it takes to open it.
        let st = rootfs::lstat_at(dir.raw(), &cname).map_err(rerr("inspect"))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG
            && unsafe {
                libc::fchmodat(dir.raw(), cname.as_ptr(), (st.st_mode & 0o7777) | 0o400, 0)
            } == 0
        {
            fd = open();
            unsafe { libc::fchmodat(dir.raw(), cname.as_ptr(), st.st_mode & 0o7777, 0) };
        }
    }
    if fd < 0 {
        return Err(rerr("open")(io::Error::last_os_error()));
    }
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    if unsafe { libc::fstat(file.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(rerr("inspect")(io::Error::last_os_error()));
    }
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size as u64 != size {
        return Err(ArchiveError::Changed { path: path() });
    }
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => return Err(ArchiveError::Changed { path: path() }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(rerr("read")(e)),
        };
        w.write_all(&buf[..n])
            .map_err(|source| ArchiveError::Write {
                path: out.to_owned(),
                source,
            })?;
        left -= n as u64;
    }
    Ok(())
}

/// Passes bytes through, hashing and counting them.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> (Digest, u64, W) {
        (
            Digest::from_sha256(&self.hasher.finalize()),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Compressor<W: Write> {
    Gzip(pgzip::ParGzWriter<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write> Compressor<W> {
    fn new(compression: Compression, level: i32, threads: usize, w: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => {
                Compressor::Gzip(pgzip::ParGzWriter::new(w, level as u32, threads)?)
            }
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, level)?;
                // Always at least one worker: libzstd's multithreaded output
                // does not depend on the worker count, but differs from its
                // single-threaded mode.
                e.multithread(threads.max(1) as u32)?;
                e.include_checksum(true)?;
                Compressor::Zstd(e)
            }
            Compression::None => Compressor::None(w),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(z) => z.finish(),
            Compressor::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(g) => g.write(data),
            Compressor::Zstd(z) => z.write(data),
            Compressor::None(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Never flush a compressor mid-stream: it would change the output.
        Ok(())
    }
}

/// The archive file, staged beside its final name (see
/// [`crate::staging::StagedFile`]).
pub(crate) struct AtomicFile {
    staged: StagedFile,
}

impl AtomicFile {
    /// `input`, when given, is a directory `dest` must not be inside.
    pub(crate) fn new(dest: &Path, input: Option<&Path>) -> Result<AtomicFile, ArchiveError> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Some(input) = input
            && let (Ok(p), Ok(i)) = (parent.canonicalize(), input.canonicalize())
            && p.starts_with(&i)
        {
            return Err(ArchiveError::OutputInsideInput {
                out: dest.to_owned(),
                dir: input.to_owned(),
            });
        }
        let staged = StagedFile::new(dest).map_err(|e| staging_error(dest, e))?;
        Ok(AtomicFile { staged })
    }

    pub(crate) fn file(&self) -> io::Result<File> {
        self.staged.file().try_clone()
    }

    pub(crate) fn path(&self) -> &Path {
        self.staged.path()
    }

    pub(crate) fn persist(self) -> Result<(), ArchiveError> {
        let dest = self.staged.dest().to_owned();
        self.staged.persist().map_err(|e| staging_error(&dest, e))
    }
}

/// A staging failure as the archive's write error, keeping the I/O cause.
fn staging_error(dest: &Path, e: StagingError) -> ArchiveError {
    let source = match e {
        StagingError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    };
    ArchiveError::Write {
        path: dest.to_owned(),
        source,
    }
}
