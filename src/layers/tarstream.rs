//! A streaming tar reader for layer blobs.
//!
//! The `tar` crate's reader buffers PAX and GNU long-name records in memory
//! without a bound and hands the caller its interpretation of a few corner
//! cases; a layer applier needs the opposite: bounded memory for hostile
//! input, Go `archive/tar` semantics (which every container runtime uses),
//! and every header field. So this module parses the 512-byte blocks
//! itself: the format is small and fully specified by POSIX pax and GNU tar.
//!
//! Semantics, matching Go's `archive/tar` reader:
//! - ustar, GNU and PAX headers; PAX `path`, `linkpath`, `size`, `uid`,
//!   `gid`, `mtime`, `SCHILY.xattr.*`, `SCHILY.devmajor/devminor` override the
//!   header; the PAX size decides where the next header is.
//! - header-only types (links, devices, dirs, fifos) carry no data whatever
//!   their size field says.
//! - a PAX global header is read and ignored; GNU sparse files, multi-volume
//!   and old-GNU long names are refused; other unknown type flags are
//!   returned as regular files with [`EntryHeader::unknown_type`] set.
//! - the archive ends at the first all-zero block; what follows is left for
//!   the caller to drain and hash.

use std::io::{self, Read};

const BLOCK: usize = 512;

/// What the reader refuses.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("tar stream is corrupt or truncated")]
    Io(#[source] io::Error),
    #[error("tar header at offset {offset} is invalid: {reason}")]
    Header { offset: u64, reason: String },
    #[error("{what} record at offset {offset} is {size} bytes; the limit is {limit} (--max-pax-size)")]
    RecordTooLarge { what: &'static str, offset: u64, size: u64, limit: u64 },
    #[error("entry `{path}` uses {what}, which bundlegen does not support")]
    Unsupported { path: String, what: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// One entry's header, with PAX and GNU extensions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch; may be negative.
    pub mtime: i64,
    /// Bytes of data that follow (0 for header-only types).
    pub size: u64,
    pub devmajor: u64,
    pub devminor: u64,
    /// Extended attributes from `SCHILY.xattr.*`, in archive order.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Set when the type flag was not one POSIX defines.
    pub unknown_type: Option<u8>,
    /// Set when a PAX `mtime` could not be parsed (the ustar one is used).
    pub bad_pax_mtime: bool,
    /// Offset of the entry's (first) header in the uncompressed stream.
    pub offset: u64,
}

pub struct TarReader<R> {
    inner: R,
    /// Bytes consumed from `inner` so far.
    offset: u64,
    /// Data bytes of the current entry not read yet, then padding.
    remaining: u64,
    padding: u64,
    max_record: u64,
    ended: bool,
}

#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Vec<(String, Vec<u8>)>,
    have_pax: bool,
    have_long_name: bool,
    have_long_link: bool,
}

impl<R: Read> TarReader<R> {
    /// `max_record` bounds PAX and GNU long-name records.
    pub fn new(inner: R, max_record: u64) -> Self {
        TarReader { inner, offset: 0, remaining: 0, padding: 0, max_record, ended: false }
    }

    /// The underlying reader, positioned after the end-of-archive block once
    /// `next` returned `None`.
    pub fn into_inner(self) -> R {
        self.inner
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next entry's header, skipping any unread data of the
    /// previous one.
    pub fn next_entry(&mut self) -> Result<Option<EntryHeader>, TarError> {
        if self.ended {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pending = Pending::default();
        loop {
            let start = self.offset;
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? {
                // EOF without an end-of-archive block: Go accepts it.
                if pending.have_pax || pending.have_long_name || pending.have_long_link {
                    return Err(self.header_err(start, "extension header is not followed by an entry"));
                }
                self.ended = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                if pending.have_pax || pending.have_long_name || pending.have_long_link {
                    return Err(self.header_err(start, "extension header is followed by the end of the archive"));
                }
                self.ended = true;
                return Ok(None);
            }
            verify_checksum(&block).map_err(|r| self.header_err(start, &r))?;
            let flag = block[156];
            let size = parse_number(&block[124..136]).map_err(|r| self.header_err(start, &format!("size: {r}")))?;
            let size = u64::try_from(size).map_err(|_| self.header_err(start, "negative size"))?;
            match flag {
                b'x' | b'g' | b'L' | b'K' => {
                    let what = match flag {
                        b'x' => "PAX header",
                        b'g' => "PAX global header",
                        b'L' => "GNU long name",
                        _ => "GNU long link",
                    };
                    if size > self.max_record {
                        return Err(TarError::RecordTooLarge { what, offset: start, size, limit: self.max_record });
                    }
                    let data = self.read_record(size)?;
                    match flag {
                        b'x' => {
                            if pending.have_pax {
                                return Err(self.header_err(start, "two PAX headers for one entry"));
                            }
                            pending.have_pax = true;
                            pending.pax = parse_pax(&data).map_err(|r| self.header_err(start, &r))?;
                        }
                        b'g' => {
                            // Validated, then ignored (as Go's reader leaves it to the caller).
                            parse_pax(&data).map_err(|r| self.header_err(start, &r))?;
                        }
                        b'L' => {
                            if pending.have_long_name {
                                return Err(self.header_err(start, "two GNU long names for one entry"));
                            }
                            pending.have_long_name = true;
                            pending.path = Some(cut_nul(&data).to_vec());
                        }
                        _ => {
                            if pending.have_long_link {
                                return Err(self.header_err(start, "two GNU long links for one entry"));
                            }
                            pending.have_long_link = true;
                            pending.link = Some(cut_nul(&data).to_vec());
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let header = self.finish_header(&block, start, size, pending)?;
            self.remaining = header.size;
            self.padding = pad(header.size);
            return Ok(Some(header));
        }
    }

    fn finish_header(&self, block: &[u8; BLOCK], start: u64, size: u64, pending: Pending) -> Result<EntryHeader, TarError> {
        let err = |r: &str| self.header_err(start, r);
        let is_ustar = &block[257..263] == b"ustar\0";
        let mut name = cut_nul(&block[0..100]).to_vec();
        if is_ustar {
            let prefix = cut_nul(&block[345..500]);
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(&name);
                name = full;
            }
        }
        let flag = block[156];
        let mut path = pending.path.unwrap_or(name);
        let mut link = pending.link.unwrap_or_else(|| cut_nul(&block[157..257]).to_vec());
        let num = |range: std::ops::Range<usize>, field: &str| -> Result<i64, TarError> {
            parse_number(&block[range]).map_err(|r| err(&format!("{field}: {r}")))
        };
        let mode = num(100..108, "mode")?;
        let mut uid = u64::try_from(num(108..116, "uid")?).map_err(|_| err("negative uid"))?;
        let mut gid = u64::try_from(num(116..124, "gid")?).map_err(|_| err("negative gid"))?;
        let mut mtime = num(136..148, "mtime")?;
        let (mut devmajor, mut devminor) = (0, 0);
        if matches!(flag, b'3' | b'4') {
            devmajor = u64::try_from(num(329..337, "devmajor")?).map_err(|_| err("negative devmajor"))?;
            devminor = u64::try_from(num(337..345, "devminor")?).map_err(|_| err("negative devminor"))?;
        }
        let mut size = size;
        let mut xattrs = Vec::new();
        let mut bad_pax_mtime = false;
        for (key, value) in pending.pax {
            let text = || String::from_utf8_lossy(&value).into_owned();
            let decimal = |field: &str| -> Result<u64, TarError> {
                text().parse::<u64>().map_err(|_| err(&format!("PAX {field} `{}` is not a decimal number", text())))
            };
            match key.as_str() {
                "path" => {
                    if value.contains(&0) {
                        return Err(err("PAX path contains a NUL byte"));
                    }
                    path = value;
                }
                "linkpath" => {
                    if value.contains(&0) {
                        return Err(err("PAX linkpath contains a NUL byte"));
                    }
                    link = value;
                }
                "size" => size = decimal("size")?,
                "uid" => uid = decimal("uid")?,
                "gid" => gid = decimal("gid")?,
                "SCHILY.devmajor" => devmajor = decimal("SCHILY.devmajor")?,
                "SCHILY.devminor" => devminor = decimal("SCHILY.devminor")?,
                "mtime" => match parse_pax_time(&text()) {
                    Some(t) => mtime = t,
                    None => bad_pax_mtime = true,
                },
                k if k.starts_with("SCHILY.xattr.") => {
                    xattrs.push((k["SCHILY.xattr.".len()..].to_owned(), value));
                }
                k if k.starts_with("GNU.sparse.") => {
                    return Err(TarError::Unsupported {
                        path: String::from_utf8_lossy(&path).into_owned(),
                        what: "a GNU sparse file (PAX format)".into(),
                    });
                }
                // atime, ctime, uname, gname, comment, charset, hdrcharset,
                // LIBARCHIVE.* and vendor keys carry nothing we apply.
                _ => {}
            }
        }
        let mut unknown_type = None;
        let kind = match flag {
            b'0' | b'7' => Kind::File,
            0 => {
                if path.ends_with(b"/") {
                    Kind::Dir
                } else {
                    Kind::File
                }
            }
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' | b'D' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'S' | b'M' | b'N' | b'V' => {
                let what = match flag {
                    b'S' => "a GNU sparse file",
                    b'M' => "a GNU multi-volume continuation",
                    b'N' => "an old GNU long-name entry",
                    _ => "a GNU volume header",
                };
                return Err(TarError::Unsupported {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    what: what.into(),
                });
            }
            other => {
                unknown_type = Some(other);
                Kind::File
            }
        };
        if !matches!(kind, Kind::File) {
            size = 0;
        }
        Ok(EntryHeader {
            path,
            link,
            kind,
            mode: (mode & 0o7777) as u32,
            uid,
            gid,
            mtime,
            size,
            devmajor,
            devminor,
            xattrs,
            unknown_type,
            bad_pax_mtime,
            offset: start,
        })
    }

    /// Reads up to `buf.len()` bytes of the current entry's data; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want]).map_err(TarError::Io)?;
        if n == 0 {
            return Err(TarError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "entry data is truncated")));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let n = self.remaining + self.padding;
        if n > 0 {
            let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(TarError::Io)?;
            self.offset += copied;
            if copied < n {
                return Err(TarError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "entry data is truncated")));
            }
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    fn read_record(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        let mut data = vec![0u8; size as usize];
        self.inner.read_exact(&mut data).map_err(TarError::Io)?;
        self.offset += size;
        self.padding = pad(size);
        self.remaining = 0;
        self.skip_rest()?;
        Ok(data)
    }

    /// Reads a whole block; `false` on a clean EOF before its first byte.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(TarError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "tar header is truncated")));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        self.offset += BLOCK as u64;
        Ok(true)
    }

    fn header_err(&self, offset: u64, reason: &str) -> TarError {
        TarError::Header { offset, reason: reason.to_owned() }
    }
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn cut_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

fn verify_checksum(block: &[u8; BLOCK]) -> Result<(), String> {
    let stored = parse_number(&block[148..156]).map_err(|r| format!("checksum: {r}"))?;
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || stored == signed {
        Ok(())
    } else {
        Err(format!("checksum {stored} does not match the header ({unsigned}); the archive is corrupt"))
    }
}

/// Parses a numeric header field: NUL/space-terminated octal, or GNU
/// base-256 when the top bit of the first byte is set.
pub(crate) fn parse_number(field: &[u8]) -> Result<i64, String> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0 {
            // GNU base-256, two's complement (as Go's archive/tar reads it).
            let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &b) in field.iter().enumerate() {
                let mut c = b ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 != 0 {
                    return Err("base-256 number overflows".into());
                }
                x = (x << 8) | u64::from(c);
            }
            if x >> 63 != 0 {
                return Err("base-256 number overflows".into());
            }
            let v = x as i64;
            return Ok(if inv == 0xff { !v } else { v });
        }
    let text = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != b' ' && b != 0)
        .collect::<Vec<u8>>();
    if text.is_empty() {
        return Ok(0);
    }
    let mut v: i64 = 0;
    for b in &text {
        if !(b'0'..=b'7').contains(b) {
            return Err(format!("`{}` is not an octal number", String::from_utf8_lossy(field).trim_end_matches('\0')));
        }
        v = v.checked_mul(8).and_then(|v| v.checked_add(i64::from(b - b'0'))).ok_or("octal number overflows")?;
    }
    Ok(v)
}

/// Parses PAX records `"<len> <key>=<value>\n"`.
fn parse_pax(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        // Trailing NUL padding is tolerated (some writers pad the record).
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let space = data.iter().position(|&b| b == b' ').ok_or("PAX record has no length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record length is not a number")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("PAX record length does not match its content".into());
        }
        let record = &data[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or("PAX record has no `=`")?;
        let key = std::str::from_utf8(&record[..eq]).map_err(|_| "PAX key is not UTF-8")?.to_owned();
        out.push((key, record[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

/// PAX times are decimal seconds with an optional fraction; `None` for
/// anything else (NaN, exponents, overflow).
fn parse_pax_time(s: &str) -> Option<i64> {
    let whole = s.split_once('.').map_or(s, |(w, frac)| if frac.bytes().all(|b| b.is_ascii_digit()) { w } else { "x" });
    let (neg, digits) = match whole.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, whole),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, flag: u8, size: u64) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..107].copy_from_slice(b"0000644");
        b[108..115].copy_from_slice(b"0000000");
        b[116..123].copy_from_slice(b"0000000");
        let s = format!("{size:011o}");
        b[124..135].copy_from_slice(s.as_bytes());
        b[136..147].copy_from_slice(b"00000000001");
        b[156] = flag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b
    }

    fn archive(parts: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, flag, data) in parts {
            out.extend_from_slice(&header(name, *flag, data.len() as u64));
            out.extend_from_slice(data);
            out.resize(out.len() + pad(data.len() as u64) as usize, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn pax(records: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while body.len() + len.to_string().len() != len {
                len = body.len() + len.to_string().len();
            }
            out.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        out
    }

    #[test]
    fn reads_files_and_data() {
        let data = archive(&[("a/", b'5', b""), ("a/f", b'0', b"hello")]);
        let mut r = TarReader::new(&data[..], 1 << 20);
        let d = r.next_entry().unwrap().unwrap();
        assert_eq!((d.path.as_slice(), d.kind), (&b"a/"[..], Kind::Dir));
        let f = r.next_entry().unwrap().unwrap();
        assert_eq!(f.size, 5);
        let mut buf = [0u8; 16];
        let n = r.read_data(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn pax_size_wins_and_stream_stays_in_sync() {
        let p = pax(&[("size", "3")]);
        let mut data = archive(&[("././@PaxHeader", b'x', &p)]);
        data.truncate(data.len() - 1024);
        // ustar says 0 bytes, PAX says 3: the 3 bytes are data.
        data.extend_from_slice(&header("f", b'0', 0));
        data.extend_from_slice(b"abc");
        data.resize(data.len() + 509, 0);
        data.extend_from_slice(&archive(&[("g", b'0', b"next")]));
        let mut r = TarReader::new(&data[..], 1 << 20);
        let f = r.next_entry().unwrap().unwrap();
        assert_eq!((f.path.as_slice(), f.size), (&b"f"[..], 3));
        let g = r.next_entry().unwrap().unwrap();
        assert_eq!(g.path, b"g");
    }

    #[test]
    fn header_only_types_have_no_data() {
        let data = archive(&[("l", b'2', b""), ("x", b'0', b"")]);
        let mut r = TarReader::new(&data[..], 1 << 20);
        assert_eq!(r.next_entry().unwrap().unwrap().kind, Kind::Symlink);
        assert_eq!(r.next_entry().unwrap().unwrap().path, b"x");
    }

    #[test]
    fn bad_checksum_is_refused() {
        let mut data = archive(&[("f", b'0', b"")]);
        data[0] = b'g';
        assert!(matches!(TarReader::new(&data[..], 1 << 20).next_entry(), Err(TarError::Header { .. })));
    }

    #[test]
    fn oversized_pax_is_refused() {
        let p = pax(&[("comment", &"x".repeat(2000))]);
        let data = archive(&[("p", b'x', &p), ("f", b'0', b"")]);
        assert!(matches!(TarReader::new(&data[..], 1024).next_entry(), Err(TarError::RecordTooLarge { .. })));
    }

    #[test]
    fn sparse_is_refused() {
        let data = archive(&[("s", b'S', b"")]);
        assert!(matches!(TarReader::new(&data[..], 1 << 20).next_entry(), Err(TarError::Unsupported { .. })));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"0000644\0").unwrap(), 0o644);
        assert_eq!(parse_number(b"  17 \0").unwrap(), 0o17);
        assert_eq!(parse_number(b"\0\0\0").unwrap(), 0);
        assert_eq!(parse_number(&[0x80, 0, 0, 0, 0, 0, 0x01, 0x00]).unwrap(), 256);
        assert_eq!(parse_number(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(), -1);
        assert!(parse_number(b"09").is_err());
        assert_eq!(parse_pax_time("1700000000.123"), Some(1700000000));
        assert_eq!(parse_pax_time("-5"), Some(-5));
        assert_eq!(parse_pax_time("nan"), None);
        assert_eq!(parse_pax_time("1e999"), None);
    }

    #[test]
    fn pax_records_parse() {
        let p = pax(&[("path", "long/name"), ("SCHILY.xattr.user.a", "v")]);
        let recs = parse_pax(&p).unwrap();
        assert_eq!(recs[0], ("path".to_owned(), b"long/name".to_vec()));
        assert_eq!(recs[1], ("SCHILY.xattr.user.a".to_owned(), b"v".to_vec()));
    }
}
