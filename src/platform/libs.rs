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

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PlatformError;
use crate::diag::Silent;
use crate::input::{self, InputKind};

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
    /// The dynamic symbols the library defines, encoded by
    /// [`ExportSet::encode`]; `None` when not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exports: Option<String>,
}

impl LibEntry {
    /// The decoded `exports`, if recorded. [`LibsInventory::load`] has
    /// checked that it decodes.
    pub fn export_set(&self) -> Option<ExportSet> {
        self.exports
            .as_deref()
            .and_then(|t| ExportSet::decode(t).ok())
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
    pub fn decode(text: &str) -> Result<ExportSet, String> {
        let body = text.strip_prefix(EXPORTS_PREFIX).ok_or_else(|| {
            format!("expected a symbol set starting with {EXPORTS_PREFIX:?} (written by bundlegen platform init)")
        })?;
        let mut bytes = Vec::with_capacity(body.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in body.bytes() {
            let v = BASE64_VALUE[usize::from(c)];
            if v == 0xff {
                return Err(format!("{:?} is not a base64 character", char::from(c)));
            }
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                bytes.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        let mut hashes = Vec::new();
        let (mut prev, mut d, mut shift) = (0u64, 0u64, 0u32);
        for (i, &b) in bytes.iter().enumerate() {
            if shift > 63 || (shift == 63 && b & 0x7e != 0) {
                return Err(format!("number too large at byte {i}"));
            }
            d |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                if d == 0 && !hashes.is_empty() {
                    return Err(format!("repeated symbol at byte {i}"));
                }
                prev = prev
                    .checked_add(d)
                    .ok_or_else(|| format!("hash overflows at byte {i}"))?;
                hashes.push(prev);
                (d, shift) = (0, 0);
            }
        }
        if shift != 0 {
            return Err("truncated: the last number is incomplete".into());
        }
        Ok(ExportSet { hashes })
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
        let inventory: LibsInventory = input::load(InputKind::Platform, path, false, &Silent)?;
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
            if let Some(text) = &lib.exports
                && let Err(message) = ExportSet::decode(text)
            {
                return Err(PlatformError::Init {
                    path: path.to_owned(),
                    message: format!(
                        "libs[{i}].exports: {message}\nhelp: write the inventory again with bundlegen platform init, or remove the key"
                    ),
                });
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

    /// The entry for an in-root path.
    pub fn get(&self, name: &str) -> Option<&LibEntry> {
        self.libs
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.libs.get(i))
            .or_else(|| self.libs.iter().find(|l| l.name == name))
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
    fn the_hash_is_the_first_eight_bytes_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea 414140de5dae2223 ...
        assert_eq!(symbol_hash("abc"), 0xba78_16bf_8f01_cfea);
    }

    #[test]
    fn bad_export_sets_are_refused_with_the_reason() {
        for (text, what) in [
            ("abc", "starting with"),
            ("sha256-64:a*b", "base64"),
            ("sha256-64:gA", "truncated"),
            ("sha256-64:////////////////", "too large"),
        ] {
            let err = ExportSet::decode(text).expect_err(text);
            assert!(err.contains(what), "{text}: {err}");
        }
    }
}
