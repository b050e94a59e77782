//! `bundlegen deps`: ldd for another architecture, checked against
//! binutils' `readelf -d` on Debian's arm64 packages.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::debian::{self, Arch};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bundlegen")
}

/// `NEEDED` entries as binutils reads them.
fn readelf_needed(file: &Path) -> Vec<String> {
    let out = Command::new("aarch64-linux-gnu-readelf").arg("-d").arg(file).output().expect("run aarch64-linux-gnu-readelf (binutils-aarch64-linux-gnu)");
    assert!(out.status.success(), "readelf {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_owned()))
        .collect()
}

#[test]
fn deps_follows_an_arm64_program_like_ldd() {
    let root = debian::tree(&debian::BASE, Arch::Arm64);
    let out = Command::new(bin()).arg("deps").arg(&root).arg("/bin/ls").output().expect("run deps");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "deps: {}", String::from_utf8_lossy(&out.stderr));
    let needed = readelf_needed(&root.join("bin/ls"));
    assert!(needed.len() >= 2, "{needed:?}");
    for name in needed.iter().filter(|n| !n.starts_with("ld-linux")) {
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{name} => "))).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        let path = line.split(" => ").nth(1).expect("a path");
        assert!(root.join(path.trim_start_matches('/')).is_file(), "{name} => {path} is not in the rootfs");
    }
    assert_eq!(text.lines().last().map(str::trim), Some("/lib/ld-linux-aarch64.so.1"), "the interpreter last:\n{text}");
}

#[test]
fn deps_survey_names_what_the_loader_does_not_find() {
    let full = debian::tree(&debian::BASE, Arch::Arm64);
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path();
    let multiarch = "lib/aarch64-linux-gnu";
    fs::create_dir_all(root.join(multiarch)).expect("mkdir");
    fs::create_dir_all(root.join("bin")).expect("mkdir");
    for f in ["bin/ls", "lib/aarch64-linux-gnu/libc.so.6", "lib/aarch64-linux-gnu/libselinux.so.1", "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"] {
        fs::copy(full.join(f), root.join(f)).expect("copy");
    }
    std::os::unix::fs::symlink("aarch64-linux-gnu/ld-linux-aarch64.so.1", root.join("lib/ld-linux-aarch64.so.1")).expect("symlink");
    // libpcre2-8.so.0, which libselinux needs, is left out.
    assert!(readelf_needed(&root.join("lib/aarch64-linux-gnu/libselinux.so.1")).contains(&"libpcre2-8.so.0".to_owned()));

    let out = Command::new(bin()).arg("deps").arg(root).arg("--json").output().expect("run deps");
    assert!(out.status.success(), "deps: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["missing"], serde_json::json!(["/lib/aarch64-linux-gnu/libselinux.so.1: libpcre2-8.so.0 => not found"]), "{v}");
    let ls = &v["files"]["/bin/ls"];
    assert_eq!(ls["arch"], "aarch64", "{ls}");
    let names: Vec<&str> = ls["needed"].as_array().expect("needed").iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names, readelf_needed(&root.join("bin/ls")), "DT_NEEDED in file order");

    let out = Command::new(bin()).arg("deps").arg(root).output().expect("run deps");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("{} ELF files with dependencies, 1 unresolved\n", v["files"].as_object().expect("files").len())), "{text}");

    let out = Command::new(bin()).arg("deps").arg(root).arg("/bin/nothing").output().expect("run deps");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/bin/nothing"), "{stderr}");
}
