//! OCI image layouts built in code, for tests.
//!
//! Hostile layers cannot be produced with a well-behaved tar writer, so the
//! tar side writes every 512-byte header itself: any name bytes, any
//! typeflag, sizes that disagree with the data, PAX and GNU extension
//! records, garbage after the end-of-archive blocks. The layout side writes
//! `oci-layout`, `index.json` and `blobs/sha256/*`, and lets a test replace
//! any descriptor field (digest, size, media type) after the real values
//! have been computed, so broken references can be expressed too.

#![allow(dead_code)] // Not every test uses every knob.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A fixed mtime for entries that do not ask for one (2020-09-13).
pub const MTIME: i64 = 1_600_000_000;

pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

// ---------------------------------------------------------------------------
// Tar entries
// ---------------------------------------------------------------------------

/// Which magic/version the header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magic {
    /// POSIX `ustar\0` + `00`.
    Ustar,
    /// GNU `ustar ` + ` \0`.
    Gnu,
    /// Old V7 header: both fields left zero.
    V7,
}

/// One tar member, described field by field. Build with the constructors
/// ([`Entry::file`], [`Entry::dir`], ...) and adjust with the `with_*`
/// methods.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Raw bytes of the ustar `name` field (truncated at 100 bytes).
    pub name: Vec<u8>,
    /// Raw bytes of the ustar `prefix` field (truncated at 155 bytes).
    pub prefix: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub linkname: Vec<u8>,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub devmajor: u64,
    pub devminor: u64,
    pub magic: Magic,
    /// The data that follows the header, padded to 512 bytes on write.
    pub data: Vec<u8>,
    /// Value written in the ustar `size` field; `None` = `data.len()`.
    pub size_field: Option<u64>,
    /// PAX records (key, value) emitted in an `x` header before this entry.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// A GNU `L` (long name) record before this entry; the NUL is added.
    pub gnu_longname: Option<Vec<u8>>,
    /// A GNU `K` (long link name) record before this entry.
    pub gnu_longlink: Option<Vec<u8>>,
    /// Raw byte patches applied to the header before the checksum.
    pub patches: Vec<(usize, Vec<u8>)>,
}

impl Entry {
    fn base(name: &str, typeflag: u8, mode: u32) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            prefix: Vec::new(),
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            linkname: Vec::new(),
            uname: Vec::new(),
            gname: Vec::new(),
            devmajor: 0,
            devminor: 0,
            magic: Magic::Ustar,
            data: Vec::new(),
            size_field: None,
            pax: Vec::new(),
            gnu_longname: None,
            gnu_longlink: None,
            patches: Vec::new(),
        }
    }

    /// A regular file (`0`), mode 0644.
    pub fn file(name: &str, data: impl AsRef<[u8]>) -> Entry {
        Entry {
            data: data.as_ref().to_vec(),
            ..Entry::base(name, b'0', 0o644)
        }
    }

    /// A directory (`5`), mode 0755. A trailing `/` is not added: pass it
    /// in `name` when the test wants one.
    pub fn dir(name: &str) -> Entry {
        Entry::base(name, b'5', 0o755)
    }

    /// A symbolic link (`2`), mode 0777.
    pub fn symlink(name: &str, target: &str) -> Entry {
        Entry {
            linkname: target.as_bytes().to_vec(),
            ..Entry::base(name, b'2', 0o777)
        }
    }

    /// A hard link (`1`) to `target`, mode 0644.
    pub fn hardlink(name: &str, target: &str) -> Entry {
        Entry {
            linkname: target.as_bytes().to_vec(),
            ..Entry::base(name, b'1', 0o644)
        }
    }

    /// A character device (`3`), mode 0666.
    pub fn char_dev(name: &str, major: u64, minor: u64) -> Entry {
        Entry {
            devmajor: major,
            devminor: minor,
            ..Entry::base(name, b'3', 0o666)
        }
    }

    /// A block device (`4`), mode 0660.
    pub fn block_dev(name: &str, major: u64, minor: u64) -> Entry {
        Entry {
            devmajor: major,
            devminor: minor,
            ..Entry::base(name, b'4', 0o660)
        }
    }

    /// A FIFO (`6`), mode 0644.
    pub fn fifo(name: &str) -> Entry {
        Entry::base(name, b'6', 0o644)
    }

    /// A whiteout for `dir/name`: an empty regular file `dir/.wh.name`.
    pub fn whiteout(path: &str) -> Entry {
        let (dir, base) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        Entry::file(&format!("{dir}.wh.{base}"), b"")
    }

    /// An opaque marker for `dir`: `dir/.wh..wh..opq`.
    pub fn opaque(dir: &str) -> Entry {
        let dir = dir.trim_end_matches('/');
        Entry::file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    /// An entry with an arbitrary typeflag and raw name bytes.
    pub fn raw(name: &[u8], typeflag: u8) -> Entry {
        Entry {
            name: name.to_vec(),
            ..Entry::base("", typeflag, 0o644)
        }
    }

    pub fn with_mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    pub fn with_owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn with_mtime(mut self, mtime: i64) -> Entry {
        self.mtime = mtime;
        self
    }

    pub fn with_name_bytes(mut self, name: &[u8]) -> Entry {
        self.name = name.to_vec();
        self
    }

    pub fn with_prefix(mut self, prefix: &[u8]) -> Entry {
        self.prefix = prefix.to_vec();
        self
    }

    pub fn with_magic(mut self, magic: Magic) -> Entry {
        self.magic = magic;
        self
    }

    /// Write `size` in the ustar size field whatever the data length is.
    pub fn with_size_field(mut self, size: u64) -> Entry {
        self.size_field = Some(size);
        self
    }

    /// Add a PAX record for this entry.
    pub fn with_pax(mut self, key: &str, value: impl AsRef<[u8]>) -> Entry {
        self.pax
            .push((key.as_bytes().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Add an extended attribute through a `SCHILY.xattr.` PAX record.
    pub fn with_xattr(self, key: &str, value: impl AsRef<[u8]>) -> Entry {
        self.with_pax(&format!("SCHILY.xattr.{key}"), value)
    }

    pub fn with_gnu_longname(mut self, name: &[u8]) -> Entry {
        self.gnu_longname = Some(name.to_vec());
        self
    }

    pub fn with_gnu_longlink(mut self, name: &[u8]) -> Entry {
        self.gnu_longlink = Some(name.to_vec());
        self
    }

    /// Overwrite header bytes at `offset` (applied before the checksum).
    pub fn with_patch(mut self, offset: usize, bytes: &[u8]) -> Entry {
        self.patches.push((offset, bytes.to_vec()));
        self
    }

    /// The 512-byte header of this entry alone (no extension records).
    pub fn header(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        put_bytes(&mut h[0..100], &self.name);
        put_num(&mut h[100..108], self.mode as i64);
        put_num(&mut h[108..116], self.uid as i64);
        put_num(&mut h[116..124], self.gid as i64);
        let size = self.size_field.unwrap_or(self.data.len() as u64);
        put_num(&mut h[124..136], size as i64);
        put_num(&mut h[136..148], self.mtime);
        h[156] = self.typeflag;
        put_bytes(&mut h[157..257], &self.linkname);
        match self.magic {
            Magic::Ustar => {
                h[257..263].copy_from_slice(b"ustar\0");
                h[263..265].copy_from_slice(b"00");
            }
            Magic::Gnu => {
                h[257..263].copy_from_slice(b"ustar ");
                h[263..265].copy_from_slice(b" \0");
            }
            Magic::V7 => {}
        }
        put_bytes(&mut h[265..297], &self.uname);
        put_bytes(&mut h[297..329], &self.gname);
        if self.magic != Magic::V7 {
            put_unum(&mut h[329..337], self.devmajor);
            put_unum(&mut h[337..345], self.devminor);
            put_bytes(&mut h[345..500], &self.prefix);
        }
        for (offset, bytes) in &self.patches {
            h[*offset..*offset + bytes.len()].copy_from_slice(bytes);
        }
        set_checksum(&mut h);
        h
    }
}

fn put_bytes(field: &mut [u8], bytes: &[u8]) {
    let n = bytes.len().min(field.len());
    field[..n].copy_from_slice(&bytes[..n]);
}

/// Octal with a NUL terminator when it fits, base-256 otherwise (GNU),
/// two's complement base-256 for negative values.
fn put_num(field: &mut [u8], value: i64) {
    let digits = field.len() - 1;
    if value >= 0 && (value as u128) < 8u128.pow(digits as u32) {
        let s = format!("{:0width$o}", value, width = digits);
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    } else {
        let bytes = (value as i128).to_be_bytes();
        let n = field.len();
        field.copy_from_slice(&bytes[16 - n..]);
        if value < 0 {
            field[0] = 0xff;
        } else {
            field[0] = 0x80;
        }
    }
}

fn put_unum(field: &mut [u8], value: u64) {
    put_num(field, value as i64);
    if value > i64::MAX as u64 {
        // Not representable as i64: base-256 by hand.
        let bytes = value.to_be_bytes();
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&bytes);
    }
}

fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// Encode PAX records: `"<len> <key>=<value>\n"`, len counting itself.
pub fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len.to_string().len() + body != len {
            len = len.to_string().len() + body;
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

fn pad512(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// A tar stream under construction.
#[derive(Clone, Debug, Default)]
pub struct Tar {
    bytes: Vec<u8>,
    finished: bool,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// A tar with `entries`, finished with the two zero blocks.
    pub fn of(entries: impl IntoIterator<Item = Entry>) -> Tar {
        let mut t = Tar::new();
        for e in entries {
            t.push(e);
        }
        t.finish()
    }

    /// Append one entry with its extension records.
    pub fn push(&mut self, e: Entry) -> &mut Tar {
        if let Some(name) = &e.gnu_longname {
            self.gnu_record(b'L', name);
        }
        if let Some(name) = &e.gnu_longlink {
            self.gnu_record(b'K', name);
        }
        if !e.pax.is_empty() {
            let mut paxname = b"PaxHeaders.0/".to_vec();
            paxname.extend_from_slice(&e.name[..e.name.len().min(80)]);
            self.pax_header(b'x', &paxname, &pax_records(&e.pax));
        }
        self.bytes.extend_from_slice(&e.header());
        self.bytes.extend_from_slice(&e.data);
        pad512(&mut self.bytes);
        self
    }

    /// Append a PAX global header (`g`) with `records`.
    pub fn global(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let recs: Vec<_> = records
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
            .collect();
        self.pax_header(b'g', b"GlobalHead.0.0", &pax_records(&recs));
        self
    }

    /// Append a PAX `x` header with an arbitrary (already encoded) body.
    pub fn pax_header(&mut self, typeflag: u8, name: &[u8], body: &[u8]) -> &mut Tar {
        let e = Entry {
            data: body.to_vec(),
            ..Entry::raw(name, typeflag)
        };
        self.bytes.extend_from_slice(&e.header());
        self.bytes.extend_from_slice(body);
        pad512(&mut self.bytes);
        self
    }

    fn gnu_record(&mut self, typeflag: u8, name: &[u8]) {
        let mut data = name.to_vec();
        data.push(0);
        let e = Entry {
            data,
            ..Entry::raw(b"././@LongLink", typeflag)
        }
        .with_magic(Magic::Gnu);
        self.bytes.extend_from_slice(&e.header());
        self.bytes.extend_from_slice(&e.data);
        pad512(&mut self.bytes);
    }

    /// Append raw bytes (not padded).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Tar {
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// Append the two zero end-of-archive blocks.
    pub fn finish(&mut self) -> Tar {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.finished = true;
        self.clone()
    }

    /// Bytes after the end-of-archive blocks.
    pub fn garbage(&mut self, bytes: &[u8]) -> Tar {
        assert!(self.finished, "garbage goes after finish()");
        self.bytes.extend_from_slice(bytes);
        self.clone()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

// ---------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

/// Two gzip members, split at `data.len() / 2`.
pub fn gzip_multi(data: &[u8]) -> Vec<u8> {
    let (a, b) = data.split_at(data.len() / 2);
    let mut out = gzip(a);
    out.extend_from_slice(&gzip(b));
    out
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd to memory")
}

/// How a layer's tar is stored in its blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    /// Two concatenated gzip members.
    GzipMulti,
    /// A gzip stream followed by `n` NUL bytes.
    GzipTrailingNuls(usize),
    Zstd,
}

impl Compression {
    pub fn apply(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => gzip(tar),
            Compression::GzipMulti => gzip_multi(tar),
            Compression::GzipTrailingNuls(n) => {
                let mut v = gzip(tar);
                v.resize(v.len() + n, 0);
                v
            }
            Compression::Zstd => zstd(tar),
        }
    }
}

// ---------------------------------------------------------------------------
// Media types
// ---------------------------------------------------------------------------

pub mod mt {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_ND_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_LAYER_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}

/// Which family of media types an image uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Oci,
    Docker,
}

// ---------------------------------------------------------------------------
// Layers, images, layouts
// ---------------------------------------------------------------------------

/// One layer: its tar, how it is compressed, and any lies its descriptor or
/// the config tells about it.
#[derive(Clone, Debug)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub compression: Compression,
    /// `None`: the media type matching `compression` and the image style.
    pub media_type: Option<String>,
    /// Replace the compressed blob bytes entirely (e.g. truncated streams).
    pub blob: Option<Vec<u8>>,
    /// Replace the diff_id written in the config.
    pub diff_id: Option<String>,
    /// Fields replaced in the layer descriptor after it was computed
    /// (`digest`, `size`, ...).
    pub descriptor_patch: Vec<(String, Value)>,
}

impl Layer {
    pub fn new(tar: Tar, compression: Compression) -> Layer {
        Layer {
            tar: tar.into_bytes(),
            compression,
            media_type: None,
            blob: None,
            diff_id: None,
            descriptor_patch: Vec::new(),
        }
    }

    /// A gzip layer, the common case.
    pub fn gz(entries: impl IntoIterator<Item = Entry>) -> Layer {
        Layer::new(Tar::of(entries), Compression::Gzip)
    }

    pub fn plain(entries: impl IntoIterator<Item = Entry>) -> Layer {
        Layer::new(Tar::of(entries), Compression::None)
    }

    pub fn with_media_type(mut self, media_type: &str) -> Layer {
        self.media_type = Some(media_type.to_string());
        self
    }

    pub fn with_blob(mut self, blob: Vec<u8>) -> Layer {
        self.blob = Some(blob);
        self
    }

    pub fn with_diff_id(mut self, diff_id: &str) -> Layer {
        self.diff_id = Some(diff_id.to_string());
        self
    }

    pub fn with_descriptor(mut self, key: &str, value: Value) -> Layer {
        self.descriptor_patch.push((key.to_string(), value));
        self
    }

    pub fn blob_bytes(&self) -> Vec<u8> {
        self.blob
            .clone()
            .unwrap_or_else(|| self.compression.apply(&self.tar))
    }

    pub fn real_diff_id(&self) -> String {
        digest_of(&self.tar)
    }

    fn default_media_type(&self, style: Style) -> &'static str {
        match (style, self.compression) {
            (Style::Oci, Compression::None) => mt::OCI_LAYER,
            (Style::Oci, Compression::Zstd) => mt::OCI_LAYER_ZSTD,
            (Style::Oci, _) => mt::OCI_LAYER_GZIP,
            // Docker v2 has no plain/zstd layer types in common use; the
            // gzip one is what docker save writes for both.
            (Style::Docker, _) => mt::DOCKER_LAYER_GZIP,
        }
    }
}

/// The runtime settings of an image config.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
}

/// A function that edits a JSON document before it is stored.
pub type JsonHook = Box<dyn Fn(&mut Value)>;

/// One image: layers, config, platform, and hooks to corrupt the JSON.
pub struct Image {
    pub layers: Vec<Layer>,
    pub style: Style,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub run: RunConfig,
    /// Replaces the config's `rootfs.diff_ids` when set.
    pub diff_ids: Option<Vec<String>>,
    /// Called on the config JSON before it is stored.
    pub config_hook: Option<JsonHook>,
    /// Called on the manifest JSON before it is stored.
    pub manifest_hook: Option<JsonHook>,
    /// Fields replaced in the manifest descriptor (as listed in an index).
    pub descriptor_patch: Vec<(String, Value)>,
    /// Annotations on the manifest descriptor (e.g. the tag).
    pub annotations: Vec<(String, String)>,
    /// Write the platform into the manifest descriptor.
    pub platform_in_index: bool,
}

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

impl Image {
    pub fn new(layers: impl IntoIterator<Item = Layer>) -> Image {
        Image {
            layers: layers.into_iter().collect(),
            style: Style::Oci,
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            run: RunConfig::default(),
            diff_ids: None,
            config_hook: None,
            manifest_hook: None,
            descriptor_patch: Vec::new(),
            annotations: Vec::new(),
            platform_in_index: true,
        }
    }

    pub fn tag(mut self, tag: &str) -> Image {
        self.annotations.push((REF_NAME.into(), tag.into()));
        self
    }

    pub fn platform(mut self, arch: &str, os: &str, variant: Option<&str>) -> Image {
        self.architecture = arch.into();
        self.os = os.into();
        self.variant = variant.map(str::to_string);
        self
    }

    pub fn docker(mut self) -> Image {
        self.style = Style::Docker;
        self
    }

    pub fn with_config(mut self, hook: impl Fn(&mut Value) + 'static) -> Image {
        self.config_hook = Some(Box::new(hook));
        self
    }

    pub fn with_manifest(mut self, hook: impl Fn(&mut Value) + 'static) -> Image {
        self.manifest_hook = Some(Box::new(hook));
        self
    }

    pub fn with_descriptor(mut self, key: &str, value: Value) -> Image {
        self.descriptor_patch.push((key.to_string(), value));
        self
    }

    fn platform_json(&self) -> Value {
        let mut p = json!({ "architecture": self.architecture, "os": self.os });
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }

    /// Store config, layers and manifest; return the manifest descriptor.
    pub fn store(&self, layout: &Layout) -> Value {
        let (manifest_mt, config_mt) = match self.style {
            Style::Oci => (mt::OCI_MANIFEST, mt::OCI_CONFIG),
            Style::Docker => (mt::DOCKER_MANIFEST, mt::DOCKER_CONFIG),
        };
        let mut layer_descs = Vec::new();
        for layer in &self.layers {
            let blob = layer.blob_bytes();
            let digest = layout.put_blob(&blob);
            let mut d = json!({
                "mediaType": layer.media_type.clone()
                    .unwrap_or_else(|| layer.default_media_type(self.style).to_string()),
                "digest": digest,
                "size": blob.len(),
            });
            for (k, v) in &layer.descriptor_patch {
                d[k] = v.clone();
            }
            layer_descs.push(d);
        }
        let diff_ids: Vec<String> = match &self.diff_ids {
            Some(ids) => ids.clone(),
            None => self
                .layers
                .iter()
                .map(|l| l.diff_id.clone().unwrap_or_else(|| l.real_diff_id()))
                .collect(),
        };
        let mut cfg = serde_json::Map::new();
        if let Some(v) = &self.run.entrypoint {
            cfg.insert("Entrypoint".into(), json!(v));
        }
        if let Some(v) = &self.run.cmd {
            cfg.insert("Cmd".into(), json!(v));
        }
        if let Some(v) = &self.run.env {
            cfg.insert("Env".into(), json!(v));
        }
        if let Some(v) = &self.run.user {
            cfg.insert("User".into(), json!(v));
        }
        if let Some(v) = &self.run.working_dir {
            cfg.insert("WorkingDir".into(), json!(v));
        }
        let mut config = json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": cfg,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        if let Some(v) = &self.variant {
            config["variant"] = json!(v);
        }
        if let Some(hook) = &self.config_hook {
            hook(&mut config);
        }
        let config_bytes = serde_json::to_vec(&config).expect("config JSON");
        let config_digest = layout.put_blob(&config_bytes);
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_mt,
            "config": { "mediaType": config_mt, "digest": config_digest, "size": config_bytes.len() },
            "layers": layer_descs,
        });
        if let Some(hook) = &self.manifest_hook {
            hook(&mut manifest);
        }
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest JSON");
        let manifest_digest = layout.put_blob(&manifest_bytes);
        let mut desc = json!({
            "mediaType": manifest_mt,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
        });
        if self.platform_in_index {
            desc["platform"] = self.platform_json();
        }
        if !self.annotations.is_empty() {
            let mut a = serde_json::Map::new();
            for (k, v) in &self.annotations {
                a.insert(k.clone(), json!(v));
            }
            desc["annotations"] = Value::Object(a);
        }
        for (k, v) in &self.descriptor_patch {
            desc[k] = v.clone();
        }
        desc
    }
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    /// Create `dir` with `oci-layout` and an empty `blobs/sha256`.
    pub fn create(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout dirs");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// Store a blob under its sha256 and return its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> String {
        let hex = sha256_hex(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).expect("write blob");
        format!("sha256:{hex}")
    }

    /// Store a nested index listing `manifests`; return its descriptor.
    pub fn put_index(&self, manifests: Vec<Value>) -> Value {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": mt::OCI_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).expect("index JSON");
        let digest = self.put_blob(&bytes);
        json!({ "mediaType": mt::OCI_INDEX, "digest": digest, "size": bytes.len() })
    }

    /// Write the top-level `index.json` listing `manifests`.
    pub fn write_index(&self, manifests: Vec<Value>) {
        self.write_index_json(&json!({
            "schemaVersion": 2,
            "mediaType": mt::OCI_INDEX,
            "manifests": manifests,
        }));
    }

    pub fn write_index_json(&self, index: &Value) {
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec_pretty(index).expect("JSON"),
        )
        .expect("write index.json");
    }

    /// The common case: one image, tagged `latest`.
    pub fn single(dir: &Path, image: Image) -> Layout {
        let layout = Layout::create(dir);
        let d = image.tag("latest").store(&layout);
        layout.write_index(vec![d]);
        layout
    }
}

impl Layout {
    /// Pack the layout directory into an `oci-archive` tar at `path`.
    pub fn archive(&self, path: &Path) {
        let file = std::fs::File::create(path).expect("create archive");
        let mut b = tar::Builder::new(file);
        b.mode(tar::HeaderMode::Deterministic);
        b.append_dir_all(".", &self.dir).expect("archive layout");
        b.into_inner()
            .expect("finish archive")
            .flush()
            .expect("flush archive");
    }
}

/// A valid attestation manifest (`unknown/unknown`), as BuildKit writes them.
pub fn attestation(layout: &Layout, subject: &str) -> Value {
    let statement = br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#;
    let layer = layout.put_blob(statement);
    let config = layout.put_blob(b"{}");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2 },
        "layers": [{ "mediaType": "application/vnd.in-toto+json", "digest": layer, "size": statement.len() }],
    });
    let bytes = serde_json::to_vec(&manifest).expect("JSON");
    let digest = layout.put_blob(&bytes);
    json!({
        "mediaType": mt::OCI_MANIFEST,
        "digest": digest,
        "size": bytes.len(),
        "platform": { "architecture": "unknown", "os": "unknown" },
        "annotations": {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": subject,
        },
    })
}

// ---------------------------------------------------------------------------
// Self-checks: the builder's output, read back by independent readers.
// ---------------------------------------------------------------------------

#[test]
fn builder_tar_reads_back() {
    use std::io::Read;
    let long = format!("long/{}", "g".repeat(150));
    let tar = Tar::of([
        Entry::file("a", "alpha"),
        Entry::file("ustar", "pax")
            .with_pax("path", "paxname")
            .with_xattr("user.k", "v"),
        Entry::file("short", "gnu").with_gnu_longname(long.as_bytes()),
        Entry::file("small", "")
            .with_size_field(1024)
            .with_pax("size", "0"),
        Entry::symlink("sl", "short").with_pax("linkpath", "pax-target"),
        Entry::char_dev("c", 1, 3),
    ]);
    let mut archive = tar::Archive::new(tar.bytes());
    let mut got = Vec::new();
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        let link = e
            .link_name()
            .expect("link")
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = String::new();
        e.read_to_string(&mut data).expect("data");
        got.push((path, link, data));
    }
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        [
            (s("a"), None, s("alpha")),
            (s("paxname"), None, s("pax")),
            (long.clone(), None, s("gnu")),
            (s("small"), None, s("")),
            (s("sl"), Some(s("pax-target")), s("")),
            (s("c"), None, s("")),
        ]
    );
}

#[test]
fn builder_numbers_and_checksum() {
    let h = Entry::file("n", "")
        .with_owner(1 << 31, 7)
        .with_mtime(-100)
        .header();
    // uid needs base-256; gid is octal; mtime negative is two's complement.
    assert_eq!(h[108], 0x80);
    assert_eq!(&h[108 + 4..116], &[0x80, 0, 0, 0]);
    assert_eq!(&h[116..124], b"0000007\0");
    assert_eq!(h[136], 0xff);
    assert_eq!(&h[144..148], &(-100i32).to_be_bytes());
    let t = tar::Header::from_byte_slice(&h);
    assert_eq!(t.gid().unwrap(), 7);
    assert_eq!(t.uid().unwrap(), 1 << 31);
    assert_eq!(t.cksum().unwrap(), {
        let mut c = h;
        c[148..156].copy_from_slice(b"        ");
        c.iter().map(|&b| b as u32).sum::<u32>()
    });
}

#[test]
fn builder_compression_round_trips() {
    use std::io::Read;
    let tar = Tar::of([Entry::file("a", vec![b'a'; 5000])]);
    for c in [Compression::Gzip, Compression::GzipMulti] {
        let blob = c.apply(tar.bytes());
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, tar.bytes(), "{c:?}");
    }
    // flate2's MultiGzDecoder rejects the NULs as a bad next member: the
    // flattener must handle them itself.
    let nuls = Compression::GzipTrailingNuls(100).apply(tar.bytes());
    let (gz, tail) = nuls.split_at(nuls.len() - 100);
    assert!(tail.iter().all(|&b| b == 0));
    assert_eq!(gz, gzip(tar.bytes()));
    let multi = Compression::GzipMulti.apply(tar.bytes());
    let mut first = Vec::new();
    flate2::read::GzDecoder::new(&multi[..])
        .read_to_end(&mut first)
        .expect("member 1");
    assert!(
        first.len() < tar.bytes().len(),
        "GzipMulti wrote a single member"
    );
    let z = Compression::Zstd.apply(tar.bytes());
    assert_eq!(zstd::decode_all(&z[..]).expect("unzstd"), tar.bytes());
}

#[test]
fn builder_pax_record_lengths() {
    // The length prefix counts itself, including when it gains a digit.
    for n in [0usize, 1, 90, 91, 92, 93, 994, 995, 996, 1000] {
        let rec = pax_records(&[(b"k".to_vec(), vec![b'v'; n])]);
        let sp = rec.iter().position(|&b| b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&rec[..sp]).unwrap().parse().unwrap();
        assert_eq!(len, rec.len(), "value length {n}");
    }
}
