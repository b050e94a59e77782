//! Encoding of tar headers: POSIX ustar with PAX extended headers for what
//! ustar cannot hold (long names and link targets, large numbers, negative
//! times, xattrs). Numeric owners only, no user or group names, no atime or
//! ctime: two runs over the same tree give the same bytes.

use std::collections::BTreeMap;

pub const BLOCK: usize = 512;

/// The entry types bundlegen writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// Everything a header says about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name in the archive, without a trailing `/` (added for
    /// directories here).
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission and set-id/sticky bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// Data bytes following the header (regular files only).
    pub size: u64,
    /// Target of a symlink or hardlink.
    pub link: Vec<u8>,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// The largest value of an octal field of `digits` digits.
const fn max_octal(digits: u32) -> u64 {
    (1u64 << (3 * digits)) - 1
}

/// Appends the header blocks for `h` (a PAX extended header first when
/// needed) to `out`. Fails only for device numbers no format can hold.
pub fn encode(h: &Header, out: &mut Vec<u8>) -> Result<(), String> {
    let mut name = h.path.clone();
    if h.kind == Kind::Dir {
        name.push(b'/');
    }
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    let split = split_ustar(&name);
    if split.is_none() {
        pax.push(("path", name.clone()));
    }
    if h.link.len() > 100 {
        pax.push(("linkpath", h.link.clone()));
    }
    if h.size > max_octal(11) {
        pax.push(("size", h.size.to_string().into_bytes()));
    }
    if h.mtime < 0 || h.mtime as u64 > max_octal(11) {
        pax.push(("mtime", h.mtime.to_string().into_bytes()));
    }
    if u64::from(h.uid) > max_octal(7) {
        pax.push(("uid", h.uid.to_string().into_bytes()));
    }
    if u64::from(h.gid) > max_octal(7) {
        pax.push(("gid", h.gid.to_string().into_bytes()));
    }
    if u64::from(h.dev_major) > max_octal(7) || u64::from(h.dev_minor) > max_octal(7) {
        return Err(format!(
            "device number {}:{} does not fit a tar header",
            h.dev_major, h.dev_minor
        ));
    }
    let binary = pax
        .iter()
        .any(|(k, v)| (*k == "path" || *k == "linkpath") && std::str::from_utf8(v).is_err());
    if binary {
        // PAX says path values are UTF-8 unless declared otherwise.
        pax.insert(0, ("hdrcharset", b"BINARY".to_vec()));
    }
    let xattr_keys: Vec<String> = h
        .xattrs
        .keys()
        .map(|k| format!("SCHILY.xattr.{k}"))
        .collect();
    for (key, value) in xattr_keys.iter().zip(h.xattrs.values()) {
        pax.push((key.as_str(), value.clone()));
    }
    if !pax.is_empty() {
        let mut records = Vec::new();
        for (k, v) in &pax {
            records.extend_from_slice(&record(k, v));
        }
        let ext = Ustar {
            name: b"././@PaxHeader",
            prefix: b"",
            flag: b'x',
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: records.len() as u64,
            mtime: h.mtime.clamp(0, max_octal(11) as i64) as u64,
            link: b"",
            dev: (0, 0),
        };
        ext.write(out);
        out.extend_from_slice(&records);
        pad(out);
    }
    let (prefix, base) = split.unwrap_or((&[][..], truncate(&name, 100)));
    Ustar {
        name: base,
        prefix,
        flag: h.kind.flag(),
        mode: h.mode & 0o7777,
        uid: u64::from(h.uid).min(max_octal(7)),
        gid: u64::from(h.gid).min(max_octal(7)),
        size: if h.kind == Kind::File {
            h.size.min(max_octal(11))
        } else {
            0
        },
        mtime: h.mtime.clamp(0, max_octal(11) as i64) as u64,
        link: truncate(&h.link, 100),
        dev: if matches!(h.kind, Kind::Char | Kind::Block) {
            (h.dev_major, h.dev_minor)
        } else {
            (0, 0)
        },
    }
    .write(out);
    Ok(())
}

/// Zero bytes that complete the data of an entry of `size` bytes to a block.
pub fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

fn pad(out: &mut Vec<u8>) {
    let n = padding(out.len() as u64);
    out.resize(out.len() + n, 0);
}

fn truncate(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

/// Splits a name into ustar `prefix` (≤ 155 bytes) and `name` (≤ 100
/// bytes) at a `/`, or `None` when it cannot be split.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    if name.len() > 256 {
        return None;
    }
    // The prefix should be as long as possible, the name part non-empty.
    let limit = name.len().min(156);
    let pos = name[..limit].iter().rposition(|&b| b == b'/')?;
    let (prefix, rest) = (&name[..pos], &name[pos + 1..]);
    (!rest.is_empty() && rest.len() <= 100 && prefix.len() <= 155).then_some((prefix, rest))
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the
/// whole record including its own digits.
fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(len.to_string().as_bytes());
    r.push(b' ');
    r.extend_from_slice(key.as_bytes());
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

struct Ustar<'a> {
    name: &'a [u8],
    prefix: &'a [u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &'a [u8],
    dev: (u32, u32),
}

impl Ustar<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; BLOCK];
        b[..self.name.len()].copy_from_slice(self.name);
        octal(&mut b[100..108], u64::from(self.mode));
        octal(&mut b[108..116], self.uid);
        octal(&mut b[116..124], self.gid);
        octal(&mut b[124..136], self.size);
        octal(&mut b[136..148], self.mtime);
        b[148..156].fill(b' ');
        b[156] = self.flag;
        b[157..157 + self.link.len()].copy_from_slice(self.link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        // uname (265..297) and gname (297..329) stay empty: numeric owners.
        if matches!(self.flag, b'3' | b'4') {
            octal(&mut b[329..337], u64::from(self.dev.0));
            octal(&mut b[337..345], u64::from(self.dev.1));
        }
        b[345..345 + self.prefix.len()].copy_from_slice(self.prefix);
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        // Six digits, NUL, space: the form GNU tar writes.
        let digits = format!("{sum:06o}");
        b[148..154].copy_from_slice(digits.as_bytes());
        b[154] = 0;
        b[155] = b' ';
        out.extend_from_slice(&b);
    }
}

/// Zero-padded octal digits filling the field but its last byte (NUL).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &[u8]) -> Header {
        Header {
            path: path.to_vec(),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            size: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: BTreeMap::new(),
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(record("path", b"a"), b"9 path=a\n");
        // 99 bytes besides the length: two digits make 101, which needs
        // three.
        let r = record("path", &[b'x'; 92]);
        assert_eq!(r.len(), 102);
        assert!(r.starts_with(b"102 "));
    }

    #[test]
    fn ustar_split_and_pax_fallback() {
        let long = [b"d".repeat(120), b"/".to_vec(), b"f".repeat(50)].concat();
        assert_eq!(
            split_ustar(&long).map(|(p, n)| (p.len(), n.len())),
            Some((120, 50))
        );
        assert_eq!(split_ustar(&b"x".repeat(101)), None);
        let mut out = Vec::new();
        encode(&header(&b"x".repeat(300)), &mut out).unwrap();
        assert_eq!(
            out.len(),
            3 * BLOCK,
            "PAX header, its records, the ustar header"
        );
        assert_eq!(out[156], b'x');
    }

    #[test]
    fn checksum_is_valid() {
        let mut out = Vec::new();
        encode(&header(b"etc/passwd"), &mut out).unwrap();
        let mut b = out.clone();
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        let stored = u32::from_str_radix(std::str::from_utf8(&out[148..154]).unwrap(), 8).unwrap();
        assert_eq!(sum, stored);
    }

    #[test]
    fn negative_mtime_and_large_ids_go_to_pax() {
        let mut h = header(b"f");
        h.mtime = -5;
        h.uid = 1 << 30;
        let mut out = Vec::new();
        encode(&h, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out[BLOCK..2 * BLOCK]);
        assert!(
            text.contains("mtime=-5\n") && text.contains("uid=1073741824\n"),
            "{text}"
        );
    }
}
