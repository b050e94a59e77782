//! ELF analysis: what the dynamic loader needs to know about each file.
//!
//! Everything is read from the program headers and the dynamic segment
//! (`PT_DYNAMIC`), never from section headers: stripped files and files
//! whose section headers were removed (`sstrip`) are analysed like any
//! other. String and version tables are found through `DT_STRTAB`,
//! `DT_VERDEF` and `DT_VERNEED`, whose virtual addresses are mapped to file
//! offsets through the `PT_LOAD` segments.
//!
//! Reads are positioned (`pread`) and limited to the ranges needed: one read
//! of the 64-byte ELF header (a file whose first four bytes are not the ELF
//! magic is dropped right there), then the program headers, the
//! interpreter, the dynamic segment, the string table and the version
//! records. No file is read whole.
//!
//! [`scan`] walks a rootfs in parallel and returns results keyed and sorted by
//! the in-root absolute path, with symlinks recorded (never followed).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _};
use object::{Endianness, pod};
use rayon::prelude::*;

use crate::diag::{Diagnostics, Progress, Unit, Warning};

/// ELF class: the width of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Elf32,
    Elf64,
}

impl Class {
    pub fn bits(self) -> u32 {
        match self {
            Class::Elf32 => 32,
            Class::Elf64 => 64,
        }
    }
}

/// Byte order of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    Little,
    Big,
}

/// What kind of object the file is, as far as the loader is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `ET_EXEC`: a position-dependent executable.
    Exec,
    /// `ET_DYN` that is a position-independent executable (`DF_1_PIE`, or an
    /// interpreter without a soname).
    PieExec,
    /// `ET_DYN` that is a shared library (possibly also runnable, like libc).
    SharedLib,
    /// `ET_REL`: an object file or kernel module.
    Relocatable,
    /// `ET_CORE` or anything else.
    Other,
}

/// The loader-relevant facts of one ELF file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ElfInfo {
    pub class: Class,
    pub endian: Endian,
    /// Raw `e_machine`.
    pub machine: u16,
    /// Raw `e_flags` (ARM float ABI, MIPS ABI, RISC-V float ABI, ...).
    pub flags: u32,
    pub kind: Kind,
    /// `PT_INTERP`: the dynamic loader the file asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// `DT_NEEDED`, in file order.
    pub needed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soname: Option<String>,
    /// `DT_RUNPATH`, as written (colon-separated, unexpanded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runpath: Option<String>,
    /// `DT_RPATH`, as written (colon-separated, unexpanded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpath: Option<String>,
    /// `DF_1_NODEFLIB`: the default directories are not searched for this
    /// object's dependencies.
    pub nodeflib: bool,
    /// Version definitions (`DT_VERDEF`) in file order, without the base
    /// entry (the file's own name, flagged `BASE` by readelf).
    pub version_defs: Vec<String>,
    /// Version requirements (`DT_VERNEED`), per needed file, in file order.
    pub version_needs: Vec<VersionNeed>,
}

/// The versions one file requires from one of its dependencies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionNeed {
    pub file: String,
    pub versions: Vec<String>,
}

impl ElfInfo {
    /// A short architecture name as toolchains spell it (`aarch64`, `arm`,
    /// `x86_64`, `i386`, `riscv64`, `mips64el`, ...).
    pub fn arch_name(&self) -> &'static str {
        machine_name(self.machine, self.class, self.endian)
    }

    /// The OCI/Go architecture name (`arm64`, `arm`, `amd64`, `386`, ...).
    pub fn oci_arch(&self) -> &'static str {
        oci_arch(self.arch_name())
    }

    /// Whether a loader working for `self` would accept `other` as a
    /// dependency: same class, byte order and machine, and for 32-bit ARM no
    /// conflicting float ABI.
    pub fn compatible_with(&self, other: &ElfInfo) -> bool {
        if self.class != other.class || self.endian != other.endian || self.machine != other.machine {
            return false;
        }
        if self.machine == elf::EM_ARM.0 {
            let abi = |f: u32| f & (elf::EF_ARM_ABI_FLOAT_HARD | elf::EF_ARM_ABI_FLOAT_SOFT);
            let (a, b) = (abi(self.flags), abi(other.flags));
            return a == 0 || b == 0 || a == b;
        }
        true
    }

    pub fn is_shared_lib(&self) -> bool {
        self.kind == Kind::SharedLib
    }

    pub fn is_executable(&self) -> bool {
        matches!(self.kind, Kind::Exec | Kind::PieExec)
    }
}

/// Name of an `e_machine` value, refined by class and byte order.
pub fn machine_name(machine: u16, class: Class, endian: Endian) -> &'static str {
    let m = elf::Machine(machine);
    let big = endian == Endian::Big;
    let b64 = class == Class::Elf64;
    match m {
        elf::EM_AARCH64 if big => "aarch64_be",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_ARM if big => "armeb",
        elf::EM_ARM => "arm",
        elf::EM_X86_64 if b64 => "x86_64",
        elf::EM_X86_64 => "x32",
        elf::EM_386 => "i386",
        elf::EM_RISCV if b64 => "riscv64",
        elf::EM_RISCV => "riscv32",
        elf::EM_MIPS => match (b64, big) {
            (true, true) => "mips64",
            (true, false) => "mips64el",
            (false, true) => "mips",
            (false, false) => "mipsel",
        },
        elf::EM_PPC => "powerpc",
        elf::EM_PPC64 if big => "powerpc64",
        elf::EM_PPC64 => "powerpc64le",
        elf::EM_S390 => "s390x",
        elf::EM_LOONGARCH => "loongarch64",
        _ => "unknown",
    }
}

/// Maps a toolchain architecture name to the OCI/Go one.
pub fn oci_arch(arch: &str) -> &'static str {
    match arch {
        "aarch64" | "arm64" => "arm64",
        "aarch64_be" => "arm64be",
        "arm" | "armhf" | "armel" => "arm",
        "armeb" => "armbe",
        "x86_64" | "amd64" => "amd64",
        "x32" => "amd64p32",
        "i386" | "i486" | "i586" | "i686" | "x86" | "386" => "386",
        "riscv64" => "riscv64",
        "riscv32" => "riscv",
        "mips" => "mips",
        "mipsel" | "mipsle" => "mipsle",
        "mips64" => "mips64",
        "mips64el" | "mips64le" => "mips64le",
        "powerpc" | "ppc" => "ppc",
        "powerpc64" | "ppc64" => "ppc64",
        "powerpc64le" | "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        _ => "unknown",
    }
}

/// Why a file that starts like an ELF file could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: malformed ELF file: {what}")]
    Malformed { path: PathBuf, what: String },
}

/// Result of scanning a rootfs.
#[derive(Debug, Default, Clone)]
pub struct ElfScan {
    /// ELF files by in-root absolute path (`/usr/lib/libc.so.6`).
    pub files: BTreeMap<String, ElfInfo>,
    /// Symlinks by in-root absolute path, with their target as stored.
    pub symlinks: BTreeMap<String, String>,
    /// Regular files that are not ELF (or too short to be).
    pub other_files: usize,
}

/// Reads one file. `Ok(None)` when it is not an ELF file.
pub fn read(path: &Path) -> Result<Option<ElfInfo>, ElfError> {
    let file = File::open(path).map_err(|source| ElfError::Read { path: path.to_owned(), source })?;
    let src = Source { file: &file, path };
    let mut head = [0u8; 64];
    let n = src.read_prefix(&mut head)?;
    if n < 4 || head[..4] != elf::ELFMAG {
        return Ok(None);
    }
    match elf::FileClass(head[4]) {
        elf::ELFCLASS32 => parse::<elf::FileHeader32<Endianness>>(&src, &head[..n]).map(Some),
        elf::ELFCLASS64 => parse::<elf::FileHeader64<Endianness>>(&src, &head[..n]).map(Some),
        c => Err(src.malformed(format!("unknown ELF class {c}"))),
    }
}

/// Scans every regular file under `root` in parallel. Symlinks are recorded,
/// not followed; files that are not ELF are counted; malformed ELF files and
/// unreadable entries are reported as warnings and skipped.
pub fn scan(root: &Path, diag: &dyn Diagnostics) -> io::Result<ElfScan> {
    let mut files = Vec::new();
    let mut symlinks = BTreeMap::new();
    walk(root, root, &mut files, &mut symlinks, diag)?;
    diag.progress(Progress::Begin {
        step: "ELF scan".into(),
        total: Some(files.len() as u64),
        unit: Unit::Items,
    });
    let results: Vec<(String, Option<ElfInfo>)> = files
        .into_par_iter()
        .map(|(rel, full)| {
            let info = match read(&full) {
                Ok(info) => info,
                // Removed while we walked: nothing to analyse.
                Err(ElfError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
                Err(e) => {
                    diag.warning(Warning::new(rel.clone(), format!("skipped: {}", error_chain(&e))));
                    None
                }
            };
            (rel, info)
        })
        .collect();
    diag.progress(Progress::Advance(results.len() as u64));
    diag.progress(Progress::End);
    let mut scan = ElfScan { symlinks, ..ElfScan::default() };
    for (rel, info) in results {
        match info {
            Some(info) => {
                scan.files.insert(rel, info);
            }
            None => scan.other_files += 1,
        }
    }
    Ok(scan)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// In-root absolute path of `full` (`/` for the root itself).
pub(crate) fn in_root_path(root: &Path, full: &Path) -> String {
    let rel = full.strip_prefix(root).unwrap_or(full);
    format!("/{}", rel.to_string_lossy())
}

fn walk(
    root: &Path,
    dir: &Path,
    files: &mut Vec<(String, PathBuf)>,
    symlinks: &mut BTreeMap<String, String>,
    diag: &dyn Diagnostics,
) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if dir != root => {
            diag.warning(Warning::new(in_root_path(root, dir), format!("directory skipped: {e}")));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(ft) = entry.file_type() else { continue };
        let path = entry.path();
        if ft.is_dir() {
            walk(root, &path, files, symlinks, diag)?;
        } else if ft.is_symlink() {
            if let Ok(target) = std::fs::read_link(&path) {
                symlinks.insert(in_root_path(root, &path), target.to_string_lossy().into_owned());
            }
        } else if ft.is_file() {
            files.push((in_root_path(root, &path), path));
        }
    }
    Ok(())
}

/// Positioned reads of one open file.
struct Source<'a> {
    file: &'a File,
    path: &'a Path,
}

/// Refuse to read tables larger than this (a corrupt size, not a real file).
const MAX_TABLE: u64 = 64 << 20;

impl Source<'_> {
    fn read_prefix(&self, buf: &mut [u8]) -> Result<usize, ElfError> {
        let mut n = 0;
        while n < buf.len() {
            match self.file.read_at(&mut buf[n..], n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ElfError::Read { path: self.path.to_owned(), source }),
            }
        }
        Ok(n)
    }

    fn bytes(&self, offset: u64, len: u64, what: &str) -> Result<Vec<u8>, ElfError> {
        if len > MAX_TABLE {
            return Err(self.malformed(format!("{what} claims {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.malformed(format!("{what} at offset {offset:#x} runs past the end of the file"))
            } else {
                ElfError::Read { path: self.path.to_owned(), source: e }
            }
        })?;
        Ok(buf)
    }

    fn malformed(&self, what: impl Into<String>) -> ElfError {
        ElfError::Malformed { path: self.path.to_owned(), what: what.into() }
    }
}

/// The loadable segments, to map virtual addresses to file offsets.
struct LoadMap(Vec<(u64, u64, u64)>); // (vaddr, filesz, offset)

impl LoadMap {
    fn offset(&self, vaddr: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|(va, sz, _)| vaddr >= *va && vaddr - va < *sz)
            .map(|(va, _, off)| vaddr - va + off)
    }
}

fn parse<Elf: FileHeader<Endian = Endianness>>(src: &Source<'_>, head: &[u8]) -> Result<ElfInfo, ElfError> {
    let header = Elf::parse(head).map_err(|e| src.malformed(format!("bad ELF header: {e}")))?;
    let e = header.endian().map_err(|e| src.malformed(e.to_string()))?;
    let endian = if e == Endianness::Little { Endian::Little } else { Endian::Big };
    let class = if header.is_type_64() { Class::Elf64 } else { Class::Elf32 };
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
        info.kind = if e_type == elf::ET_REL { Kind::Relocatable } else { Kind::Other };
        return Ok(info);
    }
    if phentsize != std::mem::size_of::<Elf::ProgramHeader>() as u64 {
        return Err(src.malformed(format!("program header entry size {phentsize}")));
    }
    let ph_bytes = src.bytes(phoff, phnum * phentsize, "program header table")?;
    let (phdrs, _) = pod::slice_from_bytes::<Elf::ProgramHeader>(&ph_bytes, phnum as usize)
        .map_err(|_| src.malformed("program header table"))?;

    let mut loads = LoadMap(Vec::new());
    let mut dynamic = None;
    for ph in phdrs {
        let (off, size) = (ph.p_offset(e).into(), ph.p_filesz(e).into());
        match ph.p_type(e) {
            elf::PT_LOAD => loads.0.push((ph.p_vaddr(e).into(), size, off)),
            elf::PT_INTERP => {
                let raw = src.bytes(off, size, "PT_INTERP")?;
                info.interpreter = Some(c_string(&raw));
            }
            elf::PT_DYNAMIC => dynamic = Some((off, size)),
            _ => {}
        }
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
    let (dyns, _) =
        pod::slice_from_bytes::<Elf::Dyn>(&raw, count).map_err(|_| src.malformed("dynamic segment"))?;
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
    let uses_strings = !needed.is_empty() || soname.is_some() || runpath.is_some() || rpath.is_some();
    let uses_strings = uses_strings || verdef.is_some() || verneed.is_some();
    if !uses_strings {
        return Ok(flags1);
    }
    let (Some(strtab), Some(strsz)) = (strtab, strsz) else {
        return Err(src.malformed("dynamic segment has no DT_STRTAB/DT_STRSZ"));
    };
    let str_off = loads
        .offset(strtab)
        .ok_or_else(|| src.malformed(format!("DT_STRTAB {strtab:#x} is outside every PT_LOAD segment")))?;
    let strings = Strings { data: src.bytes(str_off, strsz, "DT_STRTAB")?, src };
    info.needed = needed.iter().map(|&o| strings.get(o)).collect::<Result<_, _>>()?;
    info.soname = soname.map(|o| strings.get(o)).transpose()?;
    info.runpath = runpath.map(|o| strings.get(o)).transpose()?;
    info.rpath = rpath.map(|o| strings.get(o)).transpose()?;
    if let Some(va) = verdef {
        let at = loads.offset(va).ok_or_else(|| src.malformed("DT_VERDEF outside every PT_LOAD"))?;
        info.version_defs = read_verdefs(src, e, at, verdefnum, &strings)?;
    }
    if let Some(va) = verneed {
        let at = loads.offset(va).ok_or_else(|| src.malformed("DT_VERNEED outside every PT_LOAD"))?;
        info.version_needs = read_verneeds(src, e, at, verneednum, &strings)?;
    }
    Ok(flags1)
}

struct Strings<'a> {
    data: Vec<u8>,
    src: &'a Source<'a>,
}

impl Strings<'_> {
    fn get(&self, offset: u64) -> Result<String, ElfError> {
        let tail = usize::try_from(offset).ok().and_then(|o| self.data.get(o..));
        let tail = tail.ok_or_else(|| self.src.malformed(format!("string offset {offset:#x} outside DT_STRTAB")))?;
        Ok(c_string(tail))
    }
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Reads a chain of fixed-size records with small positioned reads, keeping
/// one window so neighbouring records cost one read.
struct Window<'a> {
    src: &'a Source<'a>,
    start: u64,
    buf: Vec<u8>,
}

const WINDOW: u64 = 4096;

impl<'a> Window<'a> {
    fn new(src: &'a Source<'a>) -> Self {
        Window { src, start: 0, buf: Vec::new() }
    }

    fn get<T: pod::Pod>(&mut self, at: u64, what: &str) -> Result<T, ElfError> {
        let size = std::mem::size_of::<T>() as u64;
        let inside = at >= self.start && at + size <= self.start + self.buf.len() as u64;
        if !inside {
            // A short read near the end of the file is fine: keep what exists.
            let mut buf = vec![0u8; WINDOW as usize];
            let mut n = 0;
            while n < buf.len() {
                match self.src.file.read_at(&mut buf[n..], at + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(ElfError::Read { path: self.src.path.to_owned(), source }),
                }
            }
            buf.truncate(n);
            self.start = at;
            self.buf = buf;
        }
        let from = (at - self.start) as usize;
        let bytes = self.buf.get(from..).unwrap_or_default();
        pod::from_bytes::<T>(bytes)
            .map(|(v, _)| *v)
            .map_err(|_| self.src.malformed(format!("{what} at offset {at:#x} is truncated")))
    }
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
            let aux: elf::Verdaux<Endianness> = w.get(at + u64::from(vd.vd_aux.get(e)), "Verdaux")?;
            out.push(strings.get(u64::from(aux.vda_name.get(e)))?);
        }
        let next = u64::from(vd.vd_next.get(e));
        if next == 0 {
            break;
        }
        at += next;
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
        let mut need = VersionNeed { file: strings.get(u64::from(vn.vn_file.get(e)))?, versions: Vec::new() };
        let mut aux_at = at + u64::from(vn.vn_aux.get(e));
        for _ in 0..u64::from(vn.vn_cnt.get(e)).min(MAX_VERSIONS) {
            let vna: elf::Vernaux<Endianness> = w.get(aux_at, "Vernaux")?;
            need.versions.push(strings.get(u64::from(vna.vna_name.get(e)))?);
            let next = u64::from(vna.vna_next.get(e));
            if next == 0 {
                break;
            }
            aux_at += next;
        }
        out.push(need);
        let next = u64::from(vn.vn_next.get(e));
        if next == 0 {
            break;
        }
        at += next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names() {
        let n = |m: object::elf::Machine, c, e| machine_name(m.0, c, e);
        assert_eq!(n(elf::EM_AARCH64, Class::Elf64, Endian::Little), "aarch64");
        assert_eq!(n(elf::EM_ARM, Class::Elf32, Endian::Little), "arm");
        assert_eq!(n(elf::EM_X86_64, Class::Elf64, Endian::Little), "x86_64");
        assert_eq!(n(elf::EM_MIPS, Class::Elf32, Endian::Big), "mips");
        assert_eq!(n(elf::EM_RISCV, Class::Elf64, Endian::Little), "riscv64");
        assert_eq!(oci_arch("aarch64"), "arm64");
        assert_eq!(oci_arch("x86_64"), "amd64");
        assert_eq!(oci_arch("i386"), "386");
    }

    #[test]
    fn non_elf_is_none_and_short_files_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("script");
        std::fs::write(&p, "#!/bin/sh\necho hi\n").expect("write");
        assert!(matches!(read(&p), Ok(None)));
        let p = dir.path().join("tiny");
        std::fs::write(&p, b"\x7fEL").expect("write");
        assert!(matches!(read(&p), Ok(None)));
    }

    #[test]
    fn truncated_elf_is_malformed_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("broken");
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(&elf::ELFMAG);
        bytes[4] = elf::ELFCLASS64.0;
        bytes[5] = elf::ELFDATA2LSB.0;
        bytes[6] = 1;
        bytes[16] = 3; // ET_DYN
        bytes[18] = 62; // x86_64
        bytes[20] = 1;
        bytes[32] = 64; // e_phoff
        bytes[54] = 56; // e_phentsize
        bytes[56] = 4; // e_phnum, past the end of the file
        std::fs::write(&p, &bytes).expect("write");
        let err = read(&p).expect_err("truncated");
        assert!(err.to_string().contains("malformed"), "{err}");
    }
}
