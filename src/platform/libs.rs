//! The library inventory `<name>_libs.json` in BundleGen's format.
//!
//! `libs[]` entries are `{name, apiversions, deps}`: the absolute in-root
//! path of a shared library (symlinks to libraries are listed under their
//! own path too), its ELF version definitions in file order, and its
//! `DT_NEEDED` entries resolved to in-root paths. Our extra keys, written
//! only when known: `package` and `version` (the Yocto package that ships
//! the library), `unresolved` (needed names the loader would not find) and
//! `exports` (the dynamic symbols it defines, as an [`ExportSet`]).
//! BundleGen's schema (`platform_libsSchema.json`) allows extra keys in
//! `libs[]` entries and its library matching reads only `name`,
//! `apiversions` and `deps`, so these files stay loadable by BundleGen.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::PlatformError;
use crate::input::{self, FileBytes, InputKind};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LibsInventory {
    pub libs: Vec<LibEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LibEntry {
    pub apiversions: Vec<String>,
    pub deps: Vec<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<String>,
    /// The dynamic symbols the library defines; `None` when not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exports: Option<Exports>,
}

/// What is wrong with an entry's `exports`, and what to do.
pub fn bad_exports_message(key: &str, message: &str) -> String {
    format!("{key}: {message}\nhelp: write the inventory again with bundlegen platform init, or remove the key")
}

/// An inventory entry's `exports`: [`ExportSet::encode`]'s text, decoded
/// the first time it is asked for. An inventory holds megabytes of these
/// and one app asks for a few, so they are not decoded when the inventory
/// is read: a damaged one is an error when it is used ([`Exports::set`]),
/// and `bundlegen platform validate` checks them all. Read by
/// [`LibsInventory::load`], the text is not copied either: it stays in
/// the mapped file, which the entries share.
#[derive(Debug, Clone)]
pub struct Exports {
    text: Text,
    set: OnceLock<Result<ExportSet, String>>,
}

#[derive(Debug, Clone)]
enum Text {
    Owned(Box<str>),
    /// `file[start..start + len]`, checked as UTF-8 when it was parsed.
    InFile { file: Arc<FileBytes>, start: usize, len: usize },
}

thread_local! {
    /// The inventory file [`LibsInventory::load`] is parsing on this
    /// thread: an `exports` string found in it is kept as a range of it.
    static PARSING: RefCell<Option<Arc<FileBytes>>> = const { RefCell::new(None) };
}

impl Exports {
    /// The decoded set, or what is wrong with the text.
    pub fn set(&self) -> Result<&ExportSet, &str> {
        self.set
            .get_or_init(|| ExportSet::decode(self.text()))
            .as_ref()
            .map_err(String::as_str)
    }

    pub fn text(&self) -> &str {
        match &self.text {
            Text::Owned(text) => text,
            // Valid when parsed; the file does not change (FileBytes).
            Text::InFile { file, start, len } => std::str::from_utf8(&file[*start..*start + *len]).unwrap_or(""),
        }
    }

    fn owned(text: &str) -> Exports {
        Exports { text: Text::Owned(text.into()), set: OnceLock::new() }
    }

    /// `text` as a range of the file being parsed, when it lies in it.
    fn in_parsed_file(text: &str) -> Option<Exports> {
        PARSING.with_borrow(|file| {
            let file = file.as_ref()?;
            let start = (text.as_ptr() as usize).checked_sub(file.as_ptr() as usize)?;
            (start + text.len() <= file.len()).then(|| Exports {
                text: Text::InFile { file: file.clone(), start, len: text.len() },
                set: OnceLock::new(),
            })
        })
    }
}

impl From<ExportSet> for Exports {
    fn from(set: ExportSet) -> Self {
        Exports { text: Text::Owned(set.encode().into()), set: OnceLock::from(Ok(set)) }
    }
}

impl PartialEq for Exports {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Eq for Exports {}

impl Serialize for Exports {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text())
    }
}

impl<'de> Deserialize<'de> for Exports {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Exports;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Exports, E> {
                Ok(Exports::in_parsed_file(text).unwrap_or_else(|| Exports::owned(text)))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Exports, E> {
                Ok(Exports::owned(text))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A set of symbol names in a compact, deterministic text form, for the
/// `exports` key of inventory entries.
///
/// Each name is hashed to the first 8 bytes of its SHA-256 digest read as
/// a big-endian number; the distinct hashes are sorted, each is replaced by
/// its difference from the previous one (the first from 0), each difference
/// written as an unsigned LEB128 number, and the bytes encoded in standard
/// base64 without padding, after the prefix `sha256-64:`. A library's set
/// costs about 11 characters per symbol whatever the length of the names
/// (C++ names are often longer than 50). A name is in the set when its hash
/// is; two different names share a hash with a probability of about 2^-64
/// per pair, far below any other failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSet {
    hashes: Vec<u64>,
}

const EXPORTS_PREFIX: &str = "sha256-64:";
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Each byte's base64 value, or 0xff for a byte that is not base64.
const BASE64_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 64 {
        t[BASE64[i] as usize] = i as u8;
        i += 1;
    }
    t
};

impl ExportSet {
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> ExportSet {
        let mut hashes: Vec<u64> = names.into_iter().map(symbol_hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        ExportSet { hashes }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.hashes.binary_search(&symbol_hash(name)).is_ok()
    }

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(self.hashes.len() * 8);
        let mut prev = 0u64;
        for &h in &self.hashes {
            let mut d = h - prev;
            prev = h;
            loop {
                let low = (d & 0x7f) as u8;
                d >>= 7;
                if d == 0 {
                    bytes.push(low);
                    break;
                }
                bytes.push(low | 0x80);
            }
        }
        let mut out = String::with_capacity(EXPORTS_PREFIX.len() + bytes.len() * 4 / 3 + 4);
        out.push_str(EXPORTS_PREFIX);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(BASE64[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            }
        }
        out
    }

    /// Parses [`ExportSet::encode`]'s form; the error says what is wrong.
    ///
    /// One pass: each group of four base64 characters gives three bytes,
    /// which go straight into the LEB128 reader (inventories hold
    /// megabytes of these, read once per platform).
    pub fn decode(text: &str) -> Result<ExportSet, String> {
        let body = text.strip_prefix(EXPORTS_PREFIX).ok_or_else(|| {
            format!("expected a symbol set starting with {EXPORTS_PREFIX:?} (written by bundlegen platform init)")
        })?;
        let body = body.as_bytes();
        let bad = |group: &[u8]| {
            let c = group.iter().find(|&&c| BASE64_VALUE[usize::from(c)] == 0xff);
            format!("{:?} is not a base64 character", char::from(*c.unwrap_or(&b'?')))
        };
        // A difference of two sorted 64-bit hashes takes about 8 bytes.
        let mut leb = Leb128::with_capacity(body.len() * 3 / 4 / 8 + 1);
        let mut groups = body.chunks_exact(4);
        for g in &mut groups {
            let v = [
                BASE64_VALUE[usize::from(g[0])],
                BASE64_VALUE[usize::from(g[1])],
                BASE64_VALUE[usize::from(g[2])],
                BASE64_VALUE[usize::from(g[3])],
            ];
            if (v[0] | v[1] | v[2] | v[3]) & 0xc0 != 0 {
                return Err(bad(g));
            }
            let n = (u32::from(v[0]) << 18) | (u32::from(v[1]) << 12) | (u32::from(v[2]) << 6) | u32::from(v[3]);
            leb.push((n >> 16) as u8)?;
            leb.push((n >> 8) as u8)?;
            leb.push(n as u8)?;
        }
        // encode ends with two or three characters for one or two bytes.
        let tail = groups.remainder();
        if !tail.is_empty() {
            if tail.iter().any(|&c| BASE64_VALUE[usize::from(c)] == 0xff) {
                return Err(bad(tail));
            }
            if tail.len() == 1 {
                return Err("truncated: a lone base64 character at the end".into());
            }
            let mut n = 0u32;
            for &c in tail {
                n = (n << 6) | u32::from(BASE64_VALUE[usize::from(c)]);
            }
            n <<= 6 * (4 - tail.len() as u32);
            leb.push((n >> 16) as u8)?;
            if tail.len() == 3 {
                leb.push((n >> 8) as u8)?;
            }
        }
        leb.finish()
    }
}

/// Reads the sorted hashes back from their LEB128 differences.
struct Leb128 {
    hashes: Vec<u64>,
    prev: u64,
    d: u64,
    shift: u32,
    /// Bytes read so far, for the error messages.
    at: usize,
}

impl Leb128 {
    fn with_capacity(n: usize) -> Self {
        Leb128 { hashes: Vec::with_capacity(n), prev: 0, d: 0, shift: 0, at: 0 }
    }

    #[inline(always)]
    fn push(&mut self, b: u8) -> Result<(), String> {
        let i = self.at;
        self.at += 1;
        if self.shift > 63 || (self.shift == 63 && b & 0x7e != 0) {
            return Err(format!("number too large at byte {i}"));
        }
        self.d |= u64::from(b & 0x7f) << self.shift;
        self.shift += 7;
        if b & 0x80 == 0 {
            if self.d == 0 && !self.hashes.is_empty() {
                return Err(format!("repeated symbol at byte {i}"));
            }
            self.prev = self
                .prev
                .checked_add(self.d)
                .ok_or_else(|| format!("hash overflows at byte {i}"))?;
            self.hashes.push(self.prev);
            (self.d, self.shift) = (0, 0);
        }
        Ok(())
    }

    fn finish(self) -> Result<ExportSet, String> {
        if self.shift != 0 {
            return Err("truncated: the last number is incomplete".into());
        }
        Ok(ExportSet { hashes: self.hashes })
    }
}

/// The 64-bit hash of a symbol name used by [`ExportSet`].
pub fn symbol_hash(name: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl LibsInventory {
    /// Reads an inventory file.
    pub fn load(path: &Path) -> Result<LibsInventory, PlatformError> {
        // Extra keys are allowed, as in BundleGen's schema: ignored unseen.
        let file = Arc::new(input::map(InputKind::Platform, path)?);
        // The entries' `exports` keep ranges of `file` (Exports).
        let previous = PARSING.replace(Some(file.clone()));
        let parsed = input::from_bytes_lenient(InputKind::Platform, path, &file);
        PARSING.set(previous);
        let inventory: LibsInventory = parsed?;
        inventory.check_paths(path)?;
        Ok(inventory)
    }

    /// Every library and dependency is an absolute device path (see
    /// [`super::model::abs_path`]): it becomes a mount source and is matched
    /// against in-root paths, never looked up on the build machine.
    fn check_paths(&self, path: &Path) -> Result<(), PlatformError> {
        let bad = |key: String, value: &str| PlatformError::BadPath {
            path: path.to_owned(),
            key,
            value: value.to_owned(),
        };
        for (i, lib) in self.libs.iter().enumerate() {
            if !super::model::abs_path(&lib.name) {
                return Err(bad(format!("libs[{i}].name"), &lib.name));
            }
            if let Some((j, dep)) = lib
                .deps
                .iter()
                .enumerate()
                .find(|(_, d)| !super::model::abs_path(d))
            {
                return Err(bad(format!("libs[{i}].deps[{j}]"), dep));
            }
        }
        Ok(())
    }

    /// Decodes every entry's `exports` (loading leaves them to first use):
    /// the first that does not decode, as `libs[i].exports` and why.
    pub fn check_exports(&self) -> Result<(), (String, String)> {
        for (i, lib) in self.libs.iter().enumerate() {
            if let Some(Err(message)) = lib.exports.as_ref().map(Exports::set) {
                return Err((format!("libs[{i}].exports"), message.to_owned()));
            }
        }
        Ok(())
    }

    /// Reads an inventory and decodes every `exports` (`platform validate`).
    pub fn load_checked(path: &Path) -> Result<LibsInventory, PlatformError> {
        let inventory = LibsInventory::load(path)?;
        inventory.check_exports().map_err(|(key, message)| PlatformError::Init {
            path: path.to_owned(),
            message: bad_exports_message(&key, &message),
        })?;
        Ok(inventory)
    }

    /// The index of the entry for an in-root path: a binary search (the
    /// files are written sorted), then a scan for hand-written ones.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.libs
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .or_else(|| self.libs.iter().position(|l| l.name == name))
    }

    /// The entry for an in-root path.
    pub fn get(&self, name: &str) -> Option<&LibEntry> {
        self.index_of(name).and_then(|i| self.libs.get(i))
    }

    /// Serializes as BundleGen lays these files out (4-space indent,
    /// keys in alphabetical order as its generator writes them).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serializing plain data to a Vec cannot fail.
        let _ = self.serialize(&mut ser);
        out.push(b'\n');
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `<dir>/<stem>_libs.json` beside a template file, if it exists.
pub fn beside(template: &Path) -> Option<PathBuf> {
    let stem = template.file_stem()?.to_string_lossy();
    let p = template.with_file_name(format!("{stem}_libs.json"));
    p.is_file().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_sets_round_trip_and_answer_membership() {
        let names = ["malloc", "free", "_ZN7QString4sizeEv", "free", ""];
        let set = ExportSet::from_names(names);
        assert_eq!(set.len(), 4);
        let text = set.encode();
        assert!(text.starts_with("sha256-64:"), "{text}");
        let back = ExportSet::decode(&text).expect("decodes");
        assert_eq!(back, set);
        for n in names {
            assert!(back.contains(n), "{n}");
        }
        assert!(!back.contains("calloc"));
        // Order and repetition of the input do not change the text.
        let again = ExportSet::from_names(["", "free", "_ZN7QString4sizeEv", "malloc"]);
        assert_eq!(again.encode(), text);
        assert_eq!(
            ExportSet::decode("sha256-64:").expect("empty"),
            ExportSet::default()
        );
    }

    #[test]
    fn sets_of_every_size_round_trip() {
        // Encoded lengths end on every base64 remainder (0, 2 and 3).
        let names: Vec<String> = (0..64).map(|i| format!("sym{i}")).collect();
        let mut tails = std::collections::BTreeSet::new();
        for n in 0..names.len() {
            let set = ExportSet::from_names(names[..n].iter().map(String::as_str));
            let text = set.encode();
            tails.insert((text.len() - EXPORTS_PREFIX.len()) % 4);
            assert_eq!(ExportSet::decode(&text).expect("decodes"), set, "{n} names");
        }
        assert_eq!(tails.into_iter().collect::<Vec<_>>(), [0, 2, 3]);
    }

    #[test]
    fn the_hash_is_the_first_eight_bytes_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea 414140de5dae2223 ...
        assert_eq!(symbol_hash("abc"), 0xba78_16bf_8f01_cfea);
    }

    #[test]
    fn an_inventory_keeps_its_export_sets_through_a_write_and_a_read() {
        let set = ExportSet::from_names(["malloc", "free"]);
        let inv = LibsInventory {
            libs: vec![LibEntry {
                apiversions: vec!["GLIBC_2.2.5".into()],
                deps: vec![],
                name: "/lib/libc.so.6".into(),
                package: None,
                version: None,
                unresolved: vec![],
                exports: Some(set.clone().into()),
            }],
        };
        let json = inv.to_json();
        assert!(json.contains(&format!("\"exports\": \"{}\"", set.encode())), "{json}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p_libs.json");
        std::fs::write(&path, &json).expect("write");
        let back = LibsInventory::load(&path).expect("loads");
        assert_eq!(back, inv);
        let exports = back.libs[0].exports.as_ref().expect("exports");
        assert_eq!(exports.set(), Ok(&set));
        assert!(back.check_exports().is_ok());
    }

    #[test]
    fn a_bad_export_set_is_found_with_its_key_when_used_or_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p_libs.json");
        // Unknown keys stay allowed (BundleGen's schema).
        let text = r#"{"libs": [
            {"apiversions": [], "deps": [], "name": "/lib/a.so", "exports": "sha256-64:", "x": 1},
            {"apiversions": [], "deps": [], "name": "/lib/b.so", "exports": "sha256-64:a*b"}]}"#;
        std::fs::write(&path, text).expect("write");
        let inv = LibsInventory::load(&path).expect("decoded when used");
        assert_eq!(inv.index_of("/lib/b.so"), Some(1));
        let b = inv.get("/lib/b.so").and_then(|l| l.exports.as_ref()).expect("b");
        assert_eq!(b.set(), Err("'*' is not a base64 character"));
        let (key, message) = inv.check_exports().expect_err("b is bad");
        assert_eq!(key, "libs[1].exports");
        assert!(message.contains("base64"), "{message}");
    }

    #[test]
    fn bad_export_sets_are_refused_with_the_reason() {
        for (text, what) in [
            ("abc", "starting with"),
            ("sha256-64:a*b", "base64"),
            ("sha256-64:gA", "truncated"),
            ("sha256-64:gQgQg", "lone base64 character"),
            ("sha256-64:////////////////", "too large"),
        ] {
            let err = ExportSet::decode(text).expect_err(text);
            assert!(err.contains(what), "{text}: {err}");
        }
    }
}
