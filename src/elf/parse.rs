//! Byte-level reading of one ELF file through its program headers, with
//! positioned reads of only the ranges needed (see the parent module).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _};
use object::{Endianness, pod};

use super::{Class, ElfError, ElfInfo, Endian, Kind, VersionNeed};

pub fn read(path: &Path) -> Result<Option<ElfInfo>, ElfError> {
    by_class(
        path,
        parse::<elf::FileHeader32<Endianness>>,
        parse::<elf::FileHeader64<Endianness>>,
    )
}

/// A reader of one ELF file, given its first bytes (up to 64).
pub(super) type ClassReader<T> = fn(&Source<'_>, &[u8]) -> Result<T, ElfError>;

/// Opens `path` and hands it to the reader for its ELF class: `Ok(None)`
/// when it is not an ELF file.
pub(super) fn by_class<T>(
    path: &Path,
    class32: ClassReader<T>,
    class64: ClassReader<T>,
) -> Result<Option<T>, ElfError> {
    let file = File::open(path).map_err(|source| ElfError::Read {
        path: path.to_owned(),
        source,
    })?;
    let src = Source { file: &file, path };
    let mut head = [0u8; 64];
    let n = src.read_prefix(&mut head)?;
    if n < 4 || head[..4] != elf::ELFMAG {
        return Ok(None);
    }
    match elf::FileClass(head[4]) {
        elf::ELFCLASS32 => class32(&src, &head[..n]).map(Some),
        elf::ELFCLASS64 => class64(&src, &head[..n]).map(Some),
        c => Err(src.malformed(format!("unknown ELF class {c}"))),
    }
}

/// Positioned reads of one open file.
pub(super) struct Source<'a> {
    pub file: &'a File,
    pub path: &'a Path,
}

/// Refuse to read tables larger than this (a corrupt size, not a real file).
pub(super) const MAX_TABLE: u64 = 64 << 20;

impl Source<'_> {
    pub fn read_prefix(&self, buf: &mut [u8]) -> Result<usize, ElfError> {
        let mut n = 0;
        while n < buf.len() {
            match self.file.read_at(&mut buf[n..], n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ElfError::Read {
                        path: self.path.to_owned(),
                        source,
                    });
                }
            }
        }
        Ok(n)
    }

    pub fn bytes(&self, offset: u64, len: u64, what: &str) -> Result<Vec<u8>, ElfError> {
        if len > MAX_TABLE {
            return Err(self.malformed(format!("{what} claims {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.malformed(format!(
                    "{what} at offset {offset:#x} runs past the end of the file"
                ))
            } else {
                ElfError::Read {
                    path: self.path.to_owned(),
                    source: e,
                }
            }
        })?;
        Ok(buf)
    }

    pub fn malformed(&self, what: impl Into<String>) -> ElfError {
        ElfError::Malformed {
            path: self.path.to_owned(),
            what: what.into(),
        }
    }
}

/// The loadable segments, to map virtual addresses to file offsets.
pub(super) struct LoadMap(Vec<(u64, u64, u64)>); // (vaddr, filesz, offset)

impl LoadMap {
    pub fn offset(&self, vaddr: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|(va, sz, _)| vaddr >= *va && vaddr - va < *sz)
            .and_then(|(va, _, off)| (vaddr - va).checked_add(*off))
    }
}

fn parse<Elf: FileHeader<Endian = Endianness>>(
    src: &Source<'_>,
    head: &[u8],
) -> Result<ElfInfo, ElfError> {
    let header = Elf::parse(head).map_err(|e| src.malformed(format!("bad ELF header: {e}")))?;
    let e = header.endian().map_err(|e| src.malformed(e.to_string()))?;
    let endian = if e == Endianness::Little {
        Endian::Little
    } else {
        Endian::Big
    };
    let class = if header.is_type_64() {
        Class::Elf64
    } else {
        Class::Elf32
    };
    let phoff: u64 = header.e_phoff(e).into();
    let phnum = u64::from(header.e_phnum(e));
    let phentsize = u64::from(header.e_phentsize(e));
    let mut info = ElfInfo {
        class,
        endian,
        machine: header.e_machine(e).0,
        flags: header.e_flags(e).0,
        kind: Kind::Other,
        interpreter: None,
        needed: Vec::new(),
        soname: None,
        runpath: None,
        rpath: None,
        nodeflib: false,
        version_defs: Vec::new(),
        version_needs: Vec::new(),
    };
    let e_type = header.e_type(e);
    if phnum == 0 || phoff == 0 {
        info.kind = if e_type == elf::ET_REL {
            Kind::Relocatable
        } else {
            Kind::Other
        };
        return Ok(info);
    }
    if phentsize != std::mem::size_of::<Elf::ProgramHeader>() as u64 {
        return Err(src.malformed(format!("program header entry size {phentsize}")));
    }
    let seg = segments::<Elf>(src, e, phoff, phnum)?;
    let (loads, dynamic) = (seg.loads, seg.dynamic);
    if let Some((off, size)) = seg.interp {
        let raw = src.bytes(off, size, "PT_INTERP")?;
        info.interpreter = Some(c_string(&raw));
    }
    let mut flags1 = 0u64;
    if let Some((off, size)) = dynamic {
        flags1 = read_dynamic::<Elf>(src, e, &loads, off, size, &mut info)?;
    }
    info.nodeflib = flags1 & elf::DF_1_NODEFLIB.0 != 0;
    info.kind = match e_type {
        elf::ET_EXEC => Kind::Exec,
        elf::ET_DYN if flags1 & elf::DF_1_PIE.0 != 0 => Kind::PieExec,
        elf::ET_DYN if info.interpreter.is_some() && info.soname.is_none() => Kind::PieExec,
        elf::ET_DYN => Kind::SharedLib,
        elf::ET_REL => Kind::Relocatable,
        _ => Kind::Other,
    };
    Ok(info)
}

/// Where the segments the loader cares about are.
pub(super) struct Segments {
    pub loads: LoadMap,
    /// `PT_DYNAMIC`: (offset, size).
    pub dynamic: Option<(u64, u64)>,
    /// `PT_INTERP`: (offset, size).
    pub interp: Option<(u64, u64)>,
}

/// Reads the program header table (`phnum` entries at `phoff`).
pub(super) fn segments<Elf: FileHeader<Endian = Endianness>>(
    src: &Source<'_>,
    e: Endianness,
    phoff: u64,
    phnum: u64,
) -> Result<Segments, ElfError> {
    let phentsize = std::mem::size_of::<Elf::ProgramHeader>() as u64;
    let ph_bytes = src.bytes(phoff, phnum * phentsize, "program header table")?;
    let (phdrs, _) = pod::slice_from_bytes::<Elf::ProgramHeader>(&ph_bytes, phnum as usize)
        .map_err(|_| src.malformed("program header table"))?;
    let mut seg = Segments {
        loads: LoadMap(Vec::new()),
        dynamic: None,
        interp: None,
    };
    for ph in phdrs {
        let (off, size) = (ph.p_offset(e).into(), ph.p_filesz(e).into());
        match ph.p_type(e) {
            elf::PT_LOAD => seg.loads.0.push((ph.p_vaddr(e).into(), size, off)),
            elf::PT_INTERP => seg.interp = Some((off, size)),
            elf::PT_DYNAMIC => seg.dynamic = Some((off, size)),
            _ => {}
        }
    }
    Ok(seg)
}

/// Reads the dynamic segment and the tables it points to; returns `DT_FLAGS_1`.
fn read_dynamic<Elf: FileHeader<Endian = Endianness>>(
    src: &Source<'_>,
    e: Endianness,
    loads: &LoadMap,
    off: u64,
    size: u64,
    info: &mut ElfInfo,
) -> Result<u64, ElfError> {
    let raw = src.bytes(off, size, "PT_DYNAMIC")?;
    let count = raw.len() / std::mem::size_of::<Elf::Dyn>();
    let (dyns, _) = pod::slice_from_bytes::<Elf::Dyn>(&raw, count)
        .map_err(|_| src.malformed("dynamic segment"))?;
    let (mut strtab, mut strsz) = (None, None);
    let (mut verdef, mut verdefnum, mut verneed, mut verneednum) = (None, 0, None, 0);
    let (mut needed, mut soname, mut runpath, mut rpath) = (Vec::new(), None, None, None);
    let mut flags1 = 0;
    for d in dyns {
        let val = d.val(e);
        match d.tag(e) {
            elf::DT_NULL => break,
            elf::DT_STRTAB => strtab = Some(val),
            elf::DT_STRSZ => strsz = Some(val),
            elf::DT_NEEDED => needed.push(val),
            elf::DT_SONAME => soname = Some(val),
            elf::DT_RUNPATH => runpath = Some(val),
            elf::DT_RPATH => rpath = Some(val),
            elf::DT_VERDEF => verdef = Some(val),
            elf::DT_VERDEFNUM => verdefnum = val,
            elf::DT_VERNEED => verneed = Some(val),
            elf::DT_VERNEEDNUM => verneednum = val,
            elf::DT_FLAGS_1 => flags1 = val,
            _ => {}
        }
    }
    let uses_strings =
        !needed.is_empty() || soname.is_some() || runpath.is_some() || rpath.is_some();
    let uses_strings = uses_strings || verdef.is_some() || verneed.is_some();
    if !uses_strings {
        return Ok(flags1);
    }
    let (Some(strtab), Some(strsz)) = (strtab, strsz) else {
        return Err(src.malformed("dynamic segment has no DT_STRTAB/DT_STRSZ"));
    };
    let str_off = loads.offset(strtab).ok_or_else(|| {
        src.malformed(format!(
            "DT_STRTAB {strtab:#x} is outside every PT_LOAD segment"
        ))
    })?;
    let strings = Strings {
        data: src.bytes(str_off, strsz, "DT_STRTAB")?,
        src,
    };
    info.needed = needed
        .iter()
        .map(|&o| strings.get(o))
        .collect::<Result<_, _>>()?;
    info.soname = soname.map(|o| strings.get(o)).transpose()?;
    info.runpath = runpath.map(|o| strings.get(o)).transpose()?;
    info.rpath = rpath.map(|o| strings.get(o)).transpose()?;
    if let Some(va) = verdef {
        let at = loads
            .offset(va)
            .ok_or_else(|| src.malformed("DT_VERDEF outside every PT_LOAD"))?;
        info.version_defs = read_verdefs(src, e, at, verdefnum, &strings)?;
    }
    if let Some(va) = verneed {
        let at = loads
            .offset(va)
            .ok_or_else(|| src.malformed("DT_VERNEED outside every PT_LOAD"))?;
        info.version_needs = read_verneeds(src, e, at, verneednum, &strings)?;
    }
    Ok(flags1)
}

pub(super) struct Strings<'a> {
    pub data: Vec<u8>,
    pub src: &'a Source<'a>,
}

impl Strings<'_> {
    pub fn get(&self, offset: u64) -> Result<String, ElfError> {
        let tail = usize::try_from(offset)
            .ok()
            .and_then(|o| self.data.get(o..));
        let tail = tail.ok_or_else(|| {
            self.src
                .malformed(format!("string offset {offset:#x} outside DT_STRTAB"))
        })?;
        Ok(c_string(tail))
    }
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Reads a chain of fixed-size records with small positioned reads, keeping
/// one window so neighbouring records cost one read.
pub(super) struct Window<'a> {
    src: &'a Source<'a>,
    start: u64,
    buf: Vec<u8>,
}

const WINDOW: u64 = 4096;

impl<'a> Window<'a> {
    pub fn new(src: &'a Source<'a>) -> Self {
        Window {
            src,
            start: 0,
            buf: Vec::new(),
        }
    }

    pub fn get<T: pod::Pod>(&mut self, at: u64, what: &str) -> Result<T, ElfError> {
        let size = std::mem::size_of::<T>() as u64;
        let end = at.checked_add(size).ok_or_else(|| {
            self.src
                .malformed(format!("{what} at offset {at:#x} is past any file"))
        })?;
        let inside = at >= self.start && end <= self.start + self.buf.len() as u64;
        if !inside {
            // A short read near the end of the file is fine: keep what exists.
            let mut buf = vec![0u8; WINDOW as usize];
            let mut n = 0;
            while n < buf.len() {
                match self.src.file.read_at(&mut buf[n..], at + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(ElfError::Read {
                            path: self.src.path.to_owned(),
                            source,
                        });
                    }
                }
            }
            buf.truncate(n);
            self.start = at;
            self.buf = buf;
        }
        let from = (at - self.start) as usize;
        let bytes = self.buf.get(from..).unwrap_or_default();
        pod::from_bytes::<T>(bytes).map(|(v, _)| *v).map_err(|_| {
            self.src
                .malformed(format!("{what} at offset {at:#x} is truncated"))
        })
    }
}

/// The offset of the next record of a chain; a corrupt file may make it
/// overflow.
fn advance(src: &Source<'_>, at: u64, delta: u32, what: &str) -> Result<u64, ElfError> {
    at.checked_add(u64::from(delta))
        .ok_or_else(|| src.malformed(format!("{what} offset overflows")))
}

/// Version records are chained by relative offsets; a corrupt file could
/// loop, so the walk is bounded by the declared count and this hard limit.
const MAX_VERSIONS: u64 = 4096;

fn read_verdefs(
    src: &Source<'_>,
    e: Endianness,
    mut at: u64,
    count: u64,
    strings: &Strings<'_>,
) -> Result<Vec<String>, ElfError> {
    let mut w = Window::new(src);
    let mut out = Vec::new();
    for _ in 0..count.min(MAX_VERSIONS) {
        let vd: elf::Verdef<Endianness> = w.get(at, "Verdef")?;
        if vd.vd_cnt.get(e) > 0 && !vd.vd_flags.get(e).contains(elf::VER_FLG_BASE) {
            // The first aux entry names the version; later ones name parents.
            let aux: elf::Verdaux<Endianness> =
                w.get(advance(src, at, vd.vd_aux.get(e), "Verdaux")?, "Verdaux")?;
            out.push(strings.get(u64::from(aux.vda_name.get(e)))?);
        }
        let next = vd.vd_next.get(e);
        if next == 0 {
            break;
        }
        at = advance(src, at, next, "Verdef")?;
    }
    Ok(out)
}

fn read_verneeds(
    src: &Source<'_>,
    e: Endianness,
    mut at: u64,
    count: u64,
    strings: &Strings<'_>,
) -> Result<Vec<VersionNeed>, ElfError> {
    let mut w = Window::new(src);
    let mut out = Vec::new();
    for _ in 0..count.min(MAX_VERSIONS) {
        let vn: elf::Verneed<Endianness> = w.get(at, "Verneed")?;
        let mut need = VersionNeed {
            file: strings.get(u64::from(vn.vn_file.get(e)))?,
            versions: Vec::new(),
        };
        let mut aux_at = advance(src, at, vn.vn_aux.get(e), "Vernaux")?;
        for _ in 0..u64::from(vn.vn_cnt.get(e)).min(MAX_VERSIONS) {
            let vna: elf::Vernaux<Endianness> = w.get(aux_at, "Vernaux")?;
            need.versions
                .push(strings.get(u64::from(vna.vna_name.get(e)))?);
            let next = vna.vna_next.get(e);
            if next == 0 {
                break;
            }
            aux_at = advance(src, aux_at, next, "Vernaux")?;
        }
        out.push(need);
        let next = vn.vn_next.get(e);
        if next == 0 {
            break;
        }
        at = advance(src, at, next, "Verneed")?;
    }
    Ok(out)
}
