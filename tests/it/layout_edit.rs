//! Hand-crafted layers for images that real tools build, and a small OCI
//! layout editor to append them.
//!
//! `umoci repack` only emits what its own diff finds (plain whiteouts, never
//! opaque markers, never a whiteout below a path the same layer made a
//! symlink). Images from other builders do contain those, so tests write such
//! layers with [`LayerBuilder`] and append them to a layout made by umoci with
//! [`Layout::append_layer`], which keeps every digest consistent: the blob
//! digest in the manifest, the diff_id in the config, the config digest in
//! the manifest, the manifest digest in `index.json`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Fixed mtime for crafted entries (2023-11-14), so layers are reproducible.
const MTIME: u64 = 1_700_000_000;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An uncompressed layer tar under construction.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
    /// First path written for each (dev, ino) copied from disk.
    seen: HashMap<(u64, u64), PathBuf>,
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Complete);
        LayerBuilder {
            tar,
            seen: HashMap::new(),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut h, path, &[][..])
            .expect("append dir to in-memory tar");
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar
            .append_data(&mut h, path, data)
            .expect("append file to in-memory tar");
        self
    }

    /// A regular file with a numeric owner.
    pub fn file_owned(
        &mut self,
        path: &str,
        mode: u32,
        owner: (u64, u64),
        data: &[u8],
    ) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        self.tar
            .append_data(&mut h, path, data)
            .expect("append file to in-memory tar");
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("append symlink to in-memory tar");
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("append hardlink to in-memory tar");
        self
    }

    /// A whiteout marker deleting `path` (`dir/.wh.name`).
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (format!("{parent}/"), name),
            None => (String::new(), path),
        };
        self.file(&format!("{parent}.wh.{name}"), 0o600, b"")
    }

    /// An opaque marker: `dir`'s lower-layer contents are hidden.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o600, b"")
    }

    /// Copy one entry (not recursively) from `root/rel` on disk, keeping type,
    /// permission bits, owner and contents; a second path of an inode already
    /// copied becomes a hardlink entry.
    pub fn copy_from(&mut self, root: &Path, rel: &Path) -> &mut Self {
        let full = root.join(rel);
        let meta = fs::symlink_metadata(&full)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", full.display()));
        let ft = meta.file_type();
        let mut h = Self::header(tar::EntryType::Regular, meta.mode() & 0o7777, 0);
        h.set_uid(meta.uid().into());
        h.set_gid(meta.gid().into());
        h.set_mtime(meta.mtime().max(0) as u64);
        let fail = |e: std::io::Error| -> ! { panic!("cannot add {} to tar: {e}", full.display()) };
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            self.tar
                .append_data(&mut h, rel, &[][..])
                .unwrap_or_else(|e| fail(e));
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).unwrap_or_else(|e| fail(e));
            h.set_entry_type(tar::EntryType::Symlink);
            self.tar
                .append_link(&mut h, rel, target)
                .unwrap_or_else(|e| fail(e));
        } else if let Some(first) = self.seen.get(&(meta.dev(), meta.ino())) {
            h.set_entry_type(tar::EntryType::Link);
            let first = first.clone();
            self.tar
                .append_link(&mut h, rel, first)
                .unwrap_or_else(|e| fail(e));
        } else if ft.is_file() {
            self.seen
                .insert((meta.dev(), meta.ino()), rel.to_path_buf());
            h.set_size(meta.len());
            let f = fs::File::open(&full).unwrap_or_else(|e| fail(e));
            self.tar
                .append_data(&mut h, rel, f)
                .unwrap_or_else(|e| fail(e));
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            self.tar
                .append_data(&mut h, rel, &[][..])
                .unwrap_or_else(|e| fail(e));
        } else {
            panic!("{}: unsupported file type for a test layer", full.display());
        }
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.tar.into_inner().expect("finish in-memory tar")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }

    fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).expect("gzip into memory");
                e.finish().expect("gzip into memory")
            }
        }
    }
}

fn sha256(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn open(dir: &Path) -> Layout {
        assert!(
            dir.join("index.json").is_file(),
            "{} is not an OCI layout (no index.json)",
            dir.display()
        );
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let (alg, hex) = digest
            .split_once(':')
            .unwrap_or_else(|| panic!("malformed digest {digest}"));
        self.dir.join("blobs").join(alg).join(hex)
    }

    pub fn read_json(&self, digest: &str) -> Value {
        let path = self.blob_path(digest);
        let bytes =
            fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{}: bad JSON: {e}", path.display()))
    }

    /// Store a blob, returning its descriptor fields (digest, size).
    pub fn write_blob(&self, data: &[u8]) -> (String, u64) {
        let digest = sha256(data);
        let path = self.blob_path(&digest);
        fs::create_dir_all(path.parent().expect("blob has a parent"))
            .unwrap_or_else(|e| panic!("cannot create blobs dir in {}: {e}", self.dir.display()));
        fs::write(&path, data).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        (digest, data.len() as u64)
    }

    pub fn index(&self) -> Value {
        let path = self.dir.join("index.json");
        let bytes =
            fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{}: bad JSON: {e}", path.display()))
    }

    fn write_index(&self, index: &Value) {
        let tmp = self.dir.join("index.json.tmp");
        fs::write(&tmp, serde_json::to_vec(index).expect("serialize index"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        fs::rename(&tmp, self.dir.join("index.json")).expect("replace index.json");
    }

    /// The index descriptor of the manifest tagged `tag`.
    pub fn descriptor(&self, tag: &str) -> Value {
        self.index()["manifests"]
            .as_array()
            .expect("index.json has manifests")
            .iter()
            .find(|d| d["annotations"][REF_NAME] == tag)
            .cloned()
            .unwrap_or_else(|| panic!("no tag {tag} in {}", self.dir.display()))
    }

    pub fn manifest(&self, tag: &str) -> Value {
        let desc = self.descriptor(tag);
        self.read_json(desc["digest"].as_str().expect("descriptor digest"))
    }

    pub fn config(&self, tag: &str) -> Value {
        let manifest = self.manifest(tag);
        self.read_json(
            manifest["config"]["digest"]
                .as_str()
                .expect("config digest"),
        )
    }

    /// The media types of the layers of `tag`, bottom first.
    pub fn layer_media_types(&self, tag: &str) -> Vec<String> {
        self.manifest(tag)["layers"]
            .as_array()
            .expect("manifest has layers")
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Tag `to` = image `from` plus one more layer on top (`layer` is the
    /// uncompressed tar). `from` stays as it was.
    pub fn append_layer(&self, from: &str, to: &str, layer: &[u8], compression: Compression) {
        let mut config = self.config(from);
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .expect("config has rootfs.diff_ids")
            .push(json!(sha256(layer)));
        let history = config
            .as_object_mut()
            .expect("config is an object")
            .entry("history")
            .or_insert_with(|| json!([]));
        history
            .as_array_mut()
            .expect("config history is an array")
            .push(json!({
                "created": "2023-11-14T22:13:20Z",
                "created_by": "bundlegen tests: layout_edit::append_layer",
            }));
        let (config_digest, config_size) =
            self.write_blob(&serde_json::to_vec(&config).expect("serialize config"));

        let blob = compression.compress(layer);
        let (layer_digest, layer_size) = self.write_blob(&blob);
        let mut manifest = self.manifest(from);
        manifest["config"]["digest"] = json!(config_digest);
        manifest["config"]["size"] = json!(config_size);
        manifest["layers"]
            .as_array_mut()
            .expect("manifest has layers")
            .push(json!({
                "mediaType": compression.media_type(),
                "digest": layer_digest,
                "size": layer_size,
            }));
        let (manifest_digest, manifest_size) =
            self.write_blob(&serde_json::to_vec(&manifest).expect("serialize manifest"));

        let mut desc = self.descriptor(from);
        desc["digest"] = json!(manifest_digest);
        desc["size"] = json!(manifest_size);
        desc["annotations"][REF_NAME] = json!(to);
        let mut index = self.index();
        let manifests = index["manifests"]
            .as_array_mut()
            .expect("index.json has manifests");
        manifests.retain(|d| d["annotations"][REF_NAME] != to);
        manifests.push(desc);
        self.write_index(&index);
    }
}
