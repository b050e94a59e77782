//! Dynamic symbol tables (`bundlegen::elf::read_symbols`), checked against
//! binutils' `readelf --dyn-syms` on real Debian libraries (arm64) and this
//! machine's own, with and without section headers.

use std::path::{Path, PathBuf};
use std::process::Command;

use bundlegen::elf::{self, DynSymbols};

use crate::debian;
use crate::elfstub::{Machine, Stub};

/// What `readelf --dyn-syms -W` says, split the way `read_symbols` does:
/// defined global/weak/unique default-or-protected symbols other than
/// sections and files, undefined global ones, undefined weak ones.
pub(crate) fn readelf_symbols(path: &Path) -> DynSymbols {
    let out = Command::new("readelf")
        .args(["--dyn-syms", "-W"])
        .arg(path)
        .output()
        .expect("run readelf");
    assert!(out.status.success(), "readelf {}", path.display());
    let mut s = DynSymbols::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Num: Value Size Type Bind Vis Ndx Name [(version index)]
        if f.len() < 8 || !f[0].ends_with(':') || f[0] == "Num:" {
            continue;
        }
        let (kind, bind, vis, ndx) = (f[3], f[4], f[5], f[6]);
        let name = f[7].split('@').next().unwrap_or_default().to_owned();
        if name.is_empty() {
            continue;
        }
        let list = match (ndx, bind) {
            ("UND", "GLOBAL") => &mut s.imports,
            ("UND", "WEAK") => &mut s.weak_imports,
            ("UND", _) => continue,
            (_, "GLOBAL" | "WEAK" | "UNIQUE")
                if matches!(vis, "DEFAULT" | "PROTECTED")
                    && !matches!(kind, "SECTION" | "FILE") =>
            {
                &mut s.exports
            }
            _ => continue,
        };
        list.push(name);
    }
    for l in [&mut s.exports, &mut s.imports, &mut s.weak_imports] {
        l.sort();
        l.dedup();
    }
    s
}

/// A copy of `path` with the section header table unreferenced (`e_shoff`,
/// `e_shnum`, `e_shstrndx` zeroed), as `sstrip` leaves files.
fn without_section_headers(path: &Path, dest: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let is_64 = bytes[4] == 2;
    let (shoff, shnum) = if is_64 {
        (0x28..0x30, 0x3c..0x40)
    } else {
        (0x20..0x24, 0x30..0x34)
    };
    bytes[shoff].fill(0);
    bytes[shnum].fill(0);
    std::fs::write(dest, bytes).expect("write");
}

fn check_against_readelf(files: &[PathBuf], scratch: &Path) -> usize {
    let mut checked = 0;
    for file in files {
        let Ok(Some(ours)) = elf::read_symbols(file) else {
            panic!("{}: not read", file.display());
        };
        let theirs = readelf_symbols(file);
        assert_eq!(ours, theirs, "{}", file.display());
        let stripped = scratch.join("stripped");
        without_section_headers(file, &stripped);
        let again = elf::read_symbols(&stripped).expect("read").expect("ELF");
        assert_eq!(
            ours,
            again,
            "{}: section headers must not matter",
            file.display()
        );
        checked += ours.exports.len() + ours.imports.len();
    }
    checked
}

#[test]
fn real_debian_arm64_libraries_match_readelf() {
    if !debian::have("readelf", "--version") {
        debian::unavailable::<()>("readelf (binutils)");
        return;
    }
    let Some(root) = debian::rootfs("arm64") else {
        return;
    };
    let lib = root.path().join("lib/aarch64-linux-gnu");
    // Every ELF file of the fixture: executables without exports (whose
    // DT_GNU_HASH sizes nothing), libraries, the loader.
    let scan = elf::scan(root.path(), &bundlegen::diag::Silent).expect("scan");
    let files: Vec<PathBuf> = scan
        .files
        .keys()
        .map(|p| root.path().join(p.trim_start_matches('/')))
        .collect();
    assert!(
        files.len() >= 10,
        "the Debian fixture has ELF files: {files:?}"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let n = check_against_readelf(&files, scratch.path());
    assert!(n > 2000, "libc alone exports thousands of symbols, got {n}");
    let libc = elf::read_symbols(&lib.join("libc.so.6"))
        .expect("read")
        .expect("ELF");
    for name in ["malloc", "printf", "memcpy", "GLIBC_2.17"] {
        assert!(
            libc.exports.binary_search(&name.to_owned()).is_ok(),
            "libc exports {name}"
        );
    }
}

#[test]
fn this_machines_libraries_match_readelf() {
    if !debian::have("readelf", "--version") {
        debian::unavailable::<()>("readelf (binutils)");
        return;
    }
    let candidates = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/bin/ls",
    ];
    let files: Vec<PathBuf> = candidates
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    if files.is_empty() {
        debian::unavailable::<()>("an x86_64 Debian machine's libraries");
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    check_against_readelf(&files, scratch.path());
}

#[test]
fn stub_symbols_through_dt_hash_for_every_machine() {
    let dir = tempfile::tempdir().expect("tempdir");
    for machine in [Machine::Aarch64, Machine::Arm, Machine::X86_64] {
        let mut s = Stub::lib(machine, "libdemo.so.1")
            .needs(&["libc.so.6"])
            .exports(&["demo_open", "demo_close", "demo_open"])
            .imports(&["malloc", "free"]);
        let p = dir.path().join(format!("{machine:?}.so"));
        s.write(&p);
        let syms = elf::read_symbols(&p).expect("read").expect("ELF");
        assert_eq!(syms.exports, ["demo_close", "demo_open"], "{machine:?}");
        assert_eq!(syms.imports, ["free", "malloc"], "{machine:?}");
        assert!(syms.weak_imports.is_empty());
        s.strip_sections = true;
        s.write(&p);
        assert_eq!(elf::read_symbols(&p).expect("read").expect("ELF"), syms);
    }
    // No symbol table: empty lists; not ELF: None.
    let p = dir.path().join("plain.so");
    Stub::lib(Machine::Aarch64, "libplain.so.1").write(&p);
    assert_eq!(
        elf::read_symbols(&p).expect("read"),
        Some(DynSymbols::default())
    );
    std::fs::write(&p, "#!/bin/sh\n").expect("write");
    assert_eq!(elf::read_symbols(&p).expect("read"), None);
}

#[test]
fn corrupt_symbol_counts_are_errors_not_huge_allocations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad.so");
    let s = Stub::lib(Machine::X86_64, "libbad.so.1").exports(&["f"]);
    let mut bytes = s.build();
    // The DT_HASH nchain: find the hash table (nbucket 1, nchain 2, bucket 1).
    let pat = [1u8, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0];
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat)
        .expect("hash table");
    bytes[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&p, &bytes).expect("write");
    let err = elf::read_symbols(&p).expect_err("corrupt");
    assert!(err.to_string().contains("bad.so"), "{err}");
    assert!(err.to_string().contains("malformed"), "{err}");
}
