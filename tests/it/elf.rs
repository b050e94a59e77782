//! ELF analysis and loader model, checked against binutils' readelf and
//! glibc's ldd.

use std::collections::{BTreeSet, VecDeque};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use bundlegen::diag::{Collected, Silent};
use bundlegen::elf::{self, Class, Kind};
use bundlegen::ldso::Loader;

use crate::debian;
use crate::elfstub::{Machine, Stub};

fn full_stub(machine: Machine) -> Stub {
    let mut s = Stub::lib(machine, "libdemo.so.1").needs(&["libc.so.6", "libm.so.6"]);
    s.runpath = Some("$ORIGIN/../lib:/opt/x".into());
    s.rpath = Some("/opt/old".into());
    s.verdefs = vec!["DEMO_1.0".into(), "DEMO_1.1".into()];
    s.verneeds = vec![
        (
            "libc.so.6".into(),
            vec!["GLIBC_2.17".into(), "GLIBC_2.34".into()],
        ),
        ("libm.so.6".into(), vec!["GLIBC_2.29".into()]),
    ];
    s
}

#[test]
fn stubs_for_every_machine_match_readelf_with_and_without_section_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (machine, arch, class) in [
        (Machine::Aarch64, "aarch64", Class::Elf64),
        (Machine::Arm, "arm", Class::Elf32),
        (Machine::X86_64, "x86_64", Class::Elf64),
    ] {
        let with = dir.path().join(format!("{arch}-sections.so"));
        let stripped = dir.path().join(format!("{arch}-stripped.so"));
        let mut s = full_stub(machine);
        s.write(&with);
        s.strip_sections = true;
        s.write(&stripped);

        let a = elf::read(&with).expect("parse").expect("is ELF");
        let b = elf::read(&stripped).expect("parse").expect("is ELF");
        assert_eq!(a, b, "{arch}: section headers must not matter");
        assert_eq!(a.arch_name(), arch);
        assert_eq!(a.class, class);
        assert_eq!(a.kind, Kind::SharedLib);

        if !debian::have("readelf", "--version") {
            debian::unavailable::<()>("readelf (binutils)");
            continue;
        }
        let re = debian::readelf(std::slice::from_ref(&with));
        let re = &re[0];
        assert_eq!(a.needed, re.needed, "{arch}");
        assert_eq!(a.soname, re.soname, "{arch}");
        assert_eq!(a.runpath, re.runpath, "{arch}");
        assert_eq!(a.rpath, re.rpath, "{arch}");
        assert_eq!(a.version_defs, re.verdefs, "{arch}");
        let needs: Vec<(String, Vec<String>)> = a
            .version_needs
            .iter()
            .map(|n| (n.file.clone(), n.versions.clone()))
            .collect();
        assert_eq!(needs, re.verneeds, "{arch}");
        // readelf reads the dynamic segment of the stripped file too.
        let re_stripped = debian::readelf(std::slice::from_ref(&stripped));
        assert_eq!(b.needed, re_stripped[0].needed, "{arch} stripped");
        assert_eq!(b.soname, re_stripped[0].soname, "{arch} stripped");
    }
}

#[test]
fn executables_and_pie_are_told_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pie = dir.path().join("pie");
    Stub::exe(Machine::Aarch64, "/lib/ld-linux-aarch64.so.1")
        .needs(&["libc.so.6"])
        .write(&pie);
    let info = elf::read(&pie).expect("parse").expect("ELF");
    assert_eq!(info.kind, Kind::PieExec);
    assert_eq!(
        info.interpreter.as_deref(),
        Some("/lib/ld-linux-aarch64.so.1")
    );
    let exec = dir.path().join("exec");
    Stub {
        e_type: 2,
        flags_1: 0,
        ..Stub::exe(Machine::Arm, "/lib/ld-linux-armhf.so.3")
    }
    .write(&exec);
    assert_eq!(
        elf::read(&exec).expect("parse").expect("ELF").kind,
        Kind::Exec
    );
}

#[test]
fn scan_is_sorted_records_symlinks_and_skips_other_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    Stub::lib(Machine::X86_64, "libz.so.1").write(&r.join("usr/lib/libz.so.1.2.13"));
    Stub::lib(Machine::X86_64, "libc.so.6").write(&r.join("lib/libc.so.6"));
    symlink("libz.so.1.2.13", r.join("usr/lib/libz.so.1")).expect("symlink");
    std::fs::write(r.join("usr/lib/README"), "not elf").expect("write");
    let diag = Collected::default();
    let scan = elf::scan(r, &diag).expect("scan");
    let keys: Vec<&String> = scan.files.keys().collect();
    assert_eq!(keys, ["/lib/libc.so.6", "/usr/lib/libz.so.1.2.13"]);
    assert_eq!(
        scan.symlinks.get("/usr/lib/libz.so.1").map(String::as_str),
        Some("libz.so.1.2.13")
    );
    assert_eq!(scan.other_files, 1);
    assert!(diag.warnings().is_empty());
}

/// A rootfs with RPATH/RUNPATH, $ORIGIN, ld.so.conf and a wrong-class decoy.
fn loader_rootfs(r: &Path) {
    let m = Machine::Aarch64;
    let mut exe = Stub::exe(m, "/lib/ld-linux-aarch64.so.1").needs(&[
        "libapp.so",
        "libc.so.6",
        "libgone.so.3",
    ]);
    exe.rpath = Some("$ORIGIN/../private".into());
    exe.write(&r.join("opt/app/bin/app"));
    // libapp: no RUNPATH, so the executable's RPATH is inherited for its deps.
    Stub::lib(m, "libapp.so")
        .needs(&["libhelper.so.2"])
        .write(&r.join("opt/app/private/libapp.so"));
    Stub::lib(m, "libhelper.so.2")
        .needs(&["libc.so.6"])
        .write(&r.join("opt/app/private/libhelper.so.2"));
    // libfancy has RUNPATH: the inherited RPATH no longer applies to it.
    let mut fancy = Stub::lib(m, "libfancy.so.1").needs(&["libhelper.so.2", "libconf.so.1"]);
    fancy.runpath = Some("/opt/fancy/$LIB".into());
    fancy.write(&r.join("opt/app/private/libfancy.so.1"));
    Stub::lib(m, "libconf.so.1").write(&r.join("opt/conf/libconf.so.1"));
    Stub::lib(m, "libc.so.6")
        .needs(&["ld-linux-aarch64.so.1"])
        .write(&r.join("usr/lib/libc.so.6"));
    Stub::lib(m, "ld-linux-aarch64.so.1").write(&r.join("usr/lib/ld-linux-aarch64.so.1"));
    symlink("usr/lib", r.join("lib")).expect("symlink");
    // A 32-bit ARM libc earlier in the search order must be skipped.
    Stub::lib(Machine::Arm, "libc.so.6").write(&r.join("lib/aarch64-linux-gnu/libc.so.6"));
    std::fs::create_dir_all(r.join("etc/ld.so.conf.d")).expect("mkdir");
    std::fs::write(
        r.join("etc/ld.so.conf"),
        "include /etc/ld.so.conf.d/*.conf\n",
    )
    .expect("write");
    std::fs::write(r.join("etc/ld.so.conf.d/conf.conf"), "/opt/conf\n").expect("write");
}

#[test]
fn closure_follows_glibc_search_rules_inside_the_rootfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    loader_rootfs(r);
    let mut loader = Loader::new(r, &Silent);
    let c = loader.closure("/opt/app/bin/app").expect("closure");
    let got: Vec<(&str, &str)> = c
        .libs
        .iter()
        .map(|l| (l.name.as_str(), l.found.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("libapp.so", "/opt/app/bin/../private/libapp.so"),
            ("libc.so.6", "/lib/libc.so.6"),
            ("libhelper.so.2", "/opt/app/bin/../private/libhelper.so.2"),
        ]
    );
    assert_eq!(c.libs[1].found.real, "/usr/lib/libc.so.6");
    assert_eq!(
        c.libs[1].needed_by,
        ["/opt/app/bin/app", "/opt/app/private/libhelper.so.2"]
    );
    assert_eq!(c.missing.len(), 1);
    assert_eq!(c.missing[0].name, "libgone.so.3");
    assert_eq!(
        c.interpreter_found.as_ref().map(|f| f.real.as_str()),
        Some("/usr/lib/ld-linux-aarch64.so.1")
    );

    // An object with RUNPATH does not inherit RPATH; ld.so.conf directories still apply.
    let deps = loader
        .resolve_needed("/opt/app/private/libfancy.so.1")
        .expect("resolve");
    assert_eq!(deps[0].0, "libhelper.so.2");
    assert!(
        deps[0].1.is_none(),
        "RUNPATH objects do not inherit RPATH: {deps:?}"
    );
    assert_eq!(
        deps[1].1.as_ref().map(|f| f.path.as_str()),
        Some("/opt/conf/libconf.so.1")
    );
}

// ---- end to end: real Debian binaries ----

/// Sets of real paths (`ldd` on the host vs our model with root `/`).
#[test]
fn deps_matches_ldd_for_host_binaries() {
    if !debian::have("ldd", "--version") {
        debian::unavailable::<()>("ldd (glibc)");
        return;
    }
    let candidates = [
        "/usr/bin/curl",
        "/usr/bin/git",
        "/usr/bin/ssh",
        "/usr/bin/python3",
        "/bin/bash",
        "/usr/bin/tar",
    ];
    let mut checked = 0;
    for bin in candidates.iter().filter(|b| Path::new(b).exists()) {
        let out = Command::new("ldd").arg(bin).output().expect("ldd");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut expected = BTreeSet::new();
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("linux-vdso") {
                continue;
            }
            let path = match t.split_once(" => ") {
                Some((_, rest)) => rest.split(" (").next().unwrap_or(""),
                None => t.split(" (").next().unwrap_or(""),
            };
            assert!(
                !path.contains("not found"),
                "host ldd reports a missing library for {bin}: {t}"
            );
            expected.insert(std::fs::canonicalize(path).expect("ldd path exists"));
        }
        let mut loader = Loader::new(Path::new("/"), &Silent);
        let c = loader.closure(bin).expect("closure");
        assert!(c.missing.is_empty(), "{bin}: {:?}", c.missing);
        let mut ours: BTreeSet<PathBuf> = c
            .libs
            .iter()
            .map(|l| PathBuf::from(&l.found.real))
            .collect();
        ours.extend(c.interpreter_found.iter().map(|f| PathBuf::from(&f.real)));
        let ours: BTreeSet<PathBuf> = ours
            .iter()
            .map(|p| std::fs::canonicalize(p).expect("exists"))
            .collect();
        assert_eq!(ours, expected, "{bin}");
        checked += 1;
    }
    assert!(checked > 0, "no host binary to compare with ldd");
}

/// Breadth-first resolution from readelf's NEEDED lists, searching the
/// Debian arm64 directories in order: an independent oracle.
fn readelf_closure(root: &Path, bin: &str, dirs: &[&str]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([root.join(bin.trim_start_matches('/'))]);
    while let Some(file) = queue.pop_front() {
        for need in &debian::readelf(std::slice::from_ref(&file))[0].needed {
            let Some(found) = dirs
                .iter()
                .map(|d| format!("{d}/{need}"))
                .find(|p| root.join(p.trim_start_matches('/')).exists())
            else {
                panic!(
                    "{need} (needed by {}) not in the Debian rootfs",
                    file.display()
                );
            };
            if seen.insert(found.clone()) {
                queue.push_back(root.join(found.trim_start_matches('/')));
            }
        }
    }
    seen
}

#[test]
fn deps_matches_readelf_resolution_for_debian_arm64() {
    let Some(root) = debian::rootfs("arm64") else {
        return;
    };
    if !debian::have("readelf", "--version") {
        debian::unavailable::<()>("readelf (binutils)");
        return;
    }
    let r = root.path();
    let dirs = [
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib",
        "/usr/lib",
    ];
    for bin in ["/usr/bin/curl", "/bin/dash"] {
        let expected = readelf_closure(r, bin, &dirs);
        let mut loader = Loader::new(r, &Silent);
        let c = loader.closure(bin).expect("closure");
        assert!(c.missing.is_empty(), "{bin}: {:?}", c.missing);
        let interp = c.interpreter_found.as_ref().map(|f| f.path.clone());
        let mut ours: BTreeSet<String> = c.libs.iter().map(|l| l.found.path.clone()).collect();
        // ld-linux is found by readelf's search as a library; we keep it as the interpreter.
        if let Some(i) = interp {
            assert_eq!(i, "/lib/ld-linux-aarch64.so.1");
            let as_lib = expected
                .iter()
                .find(|p| p.ends_with("/ld-linux-aarch64.so.1"))
                .cloned();
            ours.extend(as_lib);
        }
        assert_eq!(ours, expected, "{bin}");
        assert!(c.libs.iter().any(|l| l.name == "libc.so.6"));
    }
}
