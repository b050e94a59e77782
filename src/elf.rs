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
use std::io;
use std::path::{Path, PathBuf};

use object::elf;
use rayon::prelude::*;

use crate::diag::{Diagnostics, Progress, Unit, Warning};

mod parse;
mod symbols;

pub use symbols::{DynSymbols, read_symbols};

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
        if self.class != other.class || self.endian != other.endian || self.machine != other.machine
        {
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

/// Scans every regular file under `root` in parallel. Symlinks are recorded,
/// not followed; files that are not ELF are counted; malformed ELF files and
/// unreadable entries are reported as warnings and skipped. Like `find
/// -xdev`, directories on another file system than `root` (`/proc`, `/sys`
/// and `/dev` when `root` is a live system's `/`) are not entered.
pub fn scan(root: &Path, diag: &dyn Diagnostics) -> io::Result<ElfScan> {
    let mut files = Vec::new();
    let mut symlinks = BTreeMap::new();
    let device = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(root)?);
    walk(root, root, device, &mut files, &mut symlinks, diag)?;
    Ok(read_files(files, symlinks, "ELF scan".into(), diag))
}

/// Reads the given regular files (in-root path, full path) in parallel into
/// an [`ElfScan`] with `symlinks`, reporting progress as `step`. Files that
/// are not ELF are counted; a file removed meanwhile is skipped; a malformed
/// or unreadable one is a warning and skipped.
pub fn read_files(
    files: Vec<(String, PathBuf)>,
    symlinks: BTreeMap<String, String>,
    step: String,
    diag: &dyn Diagnostics,
) -> ElfScan {
    diag.progress(Progress::Begin {
        step,
        total: Some(files.len() as u64),
        unit: Unit::Items,
    });
    let results: Vec<(String, Option<ElfInfo>)> = files
        .into_par_iter()
        .map(|(rel, full)| {
            let info = match read(&full) {
                Ok(info) => info,
                // Removed while we walked: nothing to analyse.
                Err(ElfError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    None
                }
                Err(e) => {
                    diag.warning(Warning::new(
                        rel.clone(),
                        format!("skipped: {}", crate::diag::chain(&e)),
                    ));
                    None
                }
            };
            (rel, info)
        })
        .collect();
    diag.progress(Progress::Advance(results.len() as u64));
    diag.progress(Progress::End);
    let mut scan = ElfScan {
        symlinks,
        ..ElfScan::default()
    };
    for (rel, info) in results {
        match info {
            Some(info) => {
                scan.files.insert(rel, info);
            }
            None => scan.other_files += 1,
        }
    }
    scan
}

/// Every regular file under `root` (in-root path, full path), sorted, with
/// the same walk as [`scan`]: symlinks not followed, other file systems
/// not entered.
pub(crate) fn regular_files(
    root: &Path,
    diag: &dyn Diagnostics,
) -> io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut symlinks = BTreeMap::new();
    let device = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(root)?);
    walk(root, root, device, &mut files, &mut symlinks, diag)?;
    Ok(files)
}

/// In-root absolute path of `full` (`/` for the root itself).
pub(crate) fn in_root_path(root: &Path, full: &Path) -> String {
    let rel = full.strip_prefix(root).unwrap_or(full);
    format!("/{}", rel.to_string_lossy())
}

fn walk(
    root: &Path,
    dir: &Path,
    device: u64,
    files: &mut Vec<(String, PathBuf)>,
    symlinks: &mut BTreeMap<String, String>,
    diag: &dyn Diagnostics,
) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if dir != root => {
            diag.warning(Warning::new(
                in_root_path(root, dir),
                format!("directory skipped: {e}"),
            ));
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
            let same_fs = entry
                .metadata()
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::dev(&m) == device);
            if same_fs {
                walk(root, &path, device, files, symlinks, diag)?;
            }
        } else if ft.is_symlink() {
            if let Ok(target) = std::fs::read_link(&path) {
                symlinks.insert(
                    in_root_path(root, &path),
                    target.to_string_lossy().into_owned(),
                );
            }
        } else if ft.is_file() {
            files.push((in_root_path(root, &path), path));
        }
    }
    Ok(())
}

/// Reads one file. `Ok(None)` when it is not an ELF file.
pub fn read(path: &Path) -> Result<Option<ElfInfo>, ElfError> {
    parse::read(path)
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
