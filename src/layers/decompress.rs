//! Layer decompression: the media type says what to expect, the content's
//! magic bytes decide (as containerd does), gzip may have several members
//! and trailing NUL padding.

use std::io::{self, BufRead, Read};

use crate::image::spec::Compression;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A buffered reader that can peek a few bytes ahead across refills.
pub struct Peek<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
}

impl<R: Read> Peek<R> {
    pub fn new(inner: R, capacity: usize) -> Self {
        Peek { inner, buf: vec![0; capacity.max(16)].into_boxed_slice(), pos: 0, len: 0 }
    }

    /// Up to `n` bytes ahead (fewer only at end of stream).
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.len - self.pos < n {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
            while self.len < n {
                let got = self.inner.read(&mut self.buf[self.len..])?;
                if got == 0 {
                    break;
                }
                self.len += got;
            }
        }
        let end = self.len.min(self.pos + n);
        Ok(&self.buf[self.pos..end])
    }
}

impl<R: Read> Read for Peek<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.len && out.len() >= self.buf.len() {
            return self.inner.read(out);
        }
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Peek<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = self.inner.read(&mut self.buf)?;
        }
        Ok(&self.buf[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }
}

/// Detects the compression from the content's first bytes.
pub fn sniff<R: Read>(r: &mut Peek<R>) -> io::Result<Compression> {
    let head = r.peek(4)?;
    Ok(if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// Decodes gzip member after member; after the last member, bytes that do
/// not start another member (NUL padding written by some tools) are read
/// and dropped, so that the blob digest still covers them.
pub struct MultiGz<R: Read> {
    state: Option<flate2::bufread::GzDecoder<Peek<R>>>,
    tail: Option<Peek<R>>,
    /// Number of bytes dropped after the last member.
    pub trailing: u64,
}

impl<R: Read> MultiGz<R> {
    pub fn new(inner: Peek<R>) -> Self {
        MultiGz { state: Some(flate2::bufread::GzDecoder::new(inner)), tail: None, trailing: 0 }
    }
}

impl<R: Read> Read for MultiGz<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.state.as_mut() else {
                if let Some(tail) = self.tail.as_mut() {
                    self.trailing += io::copy(tail, &mut io::sink())?;
                    self.tail = None;
                }
                return Ok(0);
            };
            let n = decoder.read(out)?;
            if n > 0 || out.is_empty() {
                return Ok(n);
            }
            // End of a member: another one, or the end.
            let mut inner = self.state.take().expect("decoder present").into_inner();
            let next = inner.peek(2)?;
            if next.is_empty() {
                return Ok(0);
            }
            if next == GZIP_MAGIC {
                self.state = Some(flate2::bufread::GzDecoder::new(inner));
            } else {
                self.tail = Some(inner);
            }
        }
    }
}

/// Wraps `r` in the decoder its content needs.
pub fn decoder<'a, R: Read + 'a>(mut r: Peek<R>) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
    let found = sniff(&mut r)?;
    let reader: Box<dyn Read + 'a> = match found {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(MultiGz::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    };
    Ok((reader, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(bytes: &[u8], cap: usize) -> (Vec<u8>, Compression) {
        let (mut d, c) = decoder(Peek::new(bytes, cap)).unwrap();
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        (out, c)
    }

    #[test]
    fn multi_member_gzip_with_trailing_nuls() {
        let mut blob = gz(b"hello ");
        blob.extend(gz(b"world"));
        blob.extend([0u8; 100]);
        for cap in [16, 17, 33, 1 << 16] {
            assert_eq!(decode(&blob, cap), (b"hello world".to_vec(), Compression::Gzip));
        }
    }

    #[test]
    fn zstd_and_plain_are_sniffed() {
        let z = zstd::encode_all(&b"zzz"[..], 3).unwrap();
        assert_eq!(decode(&z, 64), (b"zzz".to_vec(), Compression::Zstd));
        assert_eq!(decode(b"plain", 64), (b"plain".to_vec(), Compression::None));
        assert_eq!(decode(b"", 64), (Vec::new(), Compression::None));
    }

    #[test]
    fn truncated_gzip_fails() {
        let blob = gz(&[7u8; 10000]);
        let (mut d, _) = decoder(Peek::new(&blob[..blob.len() - 5], 64)).unwrap();
        assert!(d.read_to_end(&mut Vec::new()).is_err());
    }
}
