//! Content digests: validated before any file is opened, verified while
//! streaming.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 lowercase hex>` digest. Other algorithms are
/// refused: OCI layouts written by Yocto, umoci, skopeo and buildkit all use
/// sha256, and refusing early keeps path characters out of blob paths.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses and validates a digest string such as found in a descriptor.
    pub fn parse(s: &str) -> Result<Digest, String> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(format!("`{s}` is not a digest: expected `sha256:<64 hex digits>`"));
        };
        if alg != "sha256" {
            return Err(format!(
                "digest `{}` uses algorithm `{alg}`; only sha256 is supported",
                truncate(s)
            ));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!(
                "digest `{}` is malformed: expected 64 lowercase hex digits after `sha256:`",
                truncate(s)
            ));
        }
        Ok(Digest { hex: hex.to_owned() })
    }

    pub fn from_sha256(bytes: &[u8]) -> Digest {
        Digest { hex: hex(bytes) }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_sha256(&Sha256::digest(data))
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A short form for messages: `sha256:0123456789ab`.
    pub fn short(&self) -> String {
        format!("sha256:{}", &self.hex[..12])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn truncate(s: &str) -> String {
    if s.len() > 80 {
        let cut = (0..=80).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s.to_owned()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Why a blob failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("blob is larger than the {expected} bytes its descriptor declares")]
    TooLong { expected: u64 },
    #[error("blob has {actual} bytes but its descriptor declares {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("blob content has digest {actual}, not the {expected} its descriptor declares")]
    Digest { expected: Digest, actual: Digest },
}

/// Where a [`Verified`] reader's bytes are hashed.
enum Hasher {
    Inline(Sha256),
    /// On a thread of its own, so that hashing a large layer runs beside
    /// decompression instead of after it; chunks travel over a bounded
    /// channel (at most 8 in flight).
    Thread {
        tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
        handle: Option<std::thread::JoinHandle<Sha256>>,
    },
}

impl Hasher {
    fn thread() -> Hasher {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let handle = std::thread::spawn(move || {
            let mut h = Sha256::new();
            for chunk in rx {
                h.update(&chunk);
            }
            h
        });
        Hasher::Thread { tx: Some(tx), handle: Some(handle) }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Inline(h) => h.update(data),
            Hasher::Thread { tx, .. } => {
                // A send fails only if the thread is gone, which `digest`
                // then reports as an empty digest mismatch.
                if let Some(tx) = tx {
                    let _ = tx.send(data.to_vec());
                }
            }
        }
    }

    /// Ends the thread, if any, and waits for it: also when the reader is
    /// dropped mid-stream (a layer that fails to parse), so that no thread
    /// outlives it.
    fn stop(&mut self) -> Option<Sha256> {
        match self {
            Hasher::Inline(_) => None,
            Hasher::Thread { tx, handle } => {
                drop(tx.take());
                handle.take().and_then(|h| h.join().ok())
            }
        }
    }

    /// The digest of everything so far; for a thread, ends it.
    fn digest(&mut self) -> Digest {
        match self {
            Hasher::Inline(h) => Digest::from_sha256(&h.clone().finalize()),
            Hasher::Thread { .. } => {
                let h = self.stop().unwrap_or_default();
                let d = Digest::from_sha256(&h.clone().finalize());
                *self = Hasher::Inline(h);
                d
            }
        }
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A reader that hashes and counts what passes through it and, at end of
/// stream, fails with [`Mismatch`] (as an `io::ErrorKind::InvalidData` error)
/// when the size or digest differ from what was expected.
pub struct Verified<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
    expected_size: Option<u64>,
    expected: Option<Digest>,
    done: bool,
}

impl<R: Read> Verified<R> {
    /// Verifies both size and digest.
    pub fn new(inner: R, expected: Digest, expected_size: u64) -> Self {
        Verified { inner, hasher: Hasher::Inline(Sha256::new()), read: 0, expected_size: Some(expected_size), expected: Some(expected), done: false }
    }

    /// Only hashes and counts; use [`Verified::finish`] to read the result.
    pub fn hashing(inner: R) -> Self {
        Verified { inner, hasher: Hasher::Inline(Sha256::new()), read: 0, expected_size: None, expected: None, done: false }
    }

    /// Hashes on a separate thread (for large streams read by a busy thread).
    pub fn offloaded(mut self) -> Self {
        if self.read == 0 {
            self.hasher = Hasher::thread();
        }
        self
    }

    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The digest of everything read so far.
    pub fn finish(mut self) -> (Digest, u64) {
        (self.hasher.digest(), self.read)
    }

    fn check_end(&mut self) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if let Some(expected) = self.expected_size
            && self.read != expected {
                return Err(invalid(Mismatch::Size { expected, actual: self.read }));
            }
        if let Some(expected) = &self.expected {
            let actual = self.hasher.digest();
            if &actual != expected {
                return Err(invalid(Mismatch::Digest { expected: expected.clone(), actual }));
            }
        }
        Ok(())
    }
}

fn invalid(m: Mismatch) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m)
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.check_end()?;
            return Ok(0);
        }
        self.read += n as u64;
        if let Some(expected) = self.expected_size
            && self.read > expected {
                return Err(invalid(Mismatch::TooLong { expected }));
            }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Finds a [`Mismatch`] inside an I/O error produced by [`Verified`].
pub fn mismatch_of(e: &io::Error) -> Option<&Mismatch> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Mismatch>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_lowercase_sha256() {
        let ok = format!("sha256:{}", "a".repeat(64));
        assert!(Digest::parse(&ok).is_ok());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse("sha256:../../x").is_err());
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128))).is_err());
        assert!(Digest::parse(&format!("sha256:{}", "a".repeat(63))).is_err());
        assert!(Digest::parse("nocolon").is_err());
    }

    #[test]
    fn verified_reader_checks_size_and_digest() {
        let data = b"hello world";
        let good = Digest::of(data);
        let mut out = Vec::new();
        Verified::new(&data[..], good.clone(), 11).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);

        let err = Verified::new(&data[..], good.clone(), 12).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(mismatch_of(&err), Some(&Mismatch::Size { expected: 12, actual: 11 }));

        let err = Verified::new(&data[..], good.clone(), 5).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(mismatch_of(&err), Some(&Mismatch::TooLong { expected: 5 }));

        let err = Verified::new(&b"hello worle"[..], good.clone(), 11).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(mismatch_of(&err), Some(Mismatch::Digest { .. })));

        // The same on a hashing thread.
        let mut out = Vec::new();
        Verified::new(&data[..], good.clone(), 11).offloaded().read_to_end(&mut out).unwrap();
        let err = Verified::new(&b"hello worle"[..], good, 11).offloaded().read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(mismatch_of(&err), Some(Mismatch::Digest { .. })));
        let (d, n) = Verified::hashing(&data[..]).offloaded().finish();
        assert_eq!((d, n), (Digest::from_sha256(&Sha256::digest(b"")), 0));
        let mut v = Verified::hashing(&data[..]).offloaded();
        v.read_to_end(&mut Vec::new()).unwrap();
        assert_eq!(v.finish().0, Digest::of(data));
    }

    #[test]
    fn known_sha256() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
