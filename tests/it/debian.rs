//! Real Debian rootfs content for end-to-end tests, and the external tools
//! (readelf, ldd, python3 jsonschema) used as oracles.
//!
//! Packages are fetched with `apt-get download` into
//! `target/debian-cache/<arch>/` (kept between runs) and unpacked with
//! `dpkg -x`. For arm64 the machine needs `dpkg --add-architecture arm64 &&
//! apt-get update` once. When a tool or the network is missing the test is
//! skipped with a message, except when `CI` is set: then it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Libraries and binaries of a small but real Debian 12 system: the C
/// library, a shell, curl with its whole dependency tree.
pub const PACKAGES: &[&str] = &[
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "zlib1g",
    "libzstd1",
    "dash",
    "curl",
    "libcurl4",
    "libnghttp2-14",
    "libidn2-0",
    "libunistring2",
    "librtmp1",
    "libgnutls30",
    "libhogweed6",
    "libnettle8",
    "libgmp10",
    "libp11-kit0",
    "libtasn1-6",
    "libffi8",
    "libssh2-1",
    "libssl3",
    "libpsl5",
    "libgssapi-krb5-2",
    "libkrb5-3",
    "libk5crypto3",
    "libcom-err2",
    "libkrb5support0",
    "libkeyutils1",
    "libldap-2.5-0",
    "libsasl2-2",
    "libbrotli1",
    "libselinux1",
    "libpcre2-8-0",
];

/// Skips (returns `None`) or, under `CI`, fails with `why`.
pub fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("required for this test under CI: {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

pub fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn cache_dir(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/debian-cache")
        .join(arch)
}

/// Unpacks the packages for `arch` (`amd64`, `arm64`) into a fresh temp dir.
pub fn rootfs(arch: &str) -> Option<tempfile::TempDir> {
    if !have("dpkg", "--version") || !have("apt-get", "--version") {
        return unavailable("dpkg and apt-get (Debian) to fetch real packages");
    }
    let cache = cache_dir(arch);
    std::fs::create_dir_all(&cache).expect("create cache dir");
    let wanted: Vec<String> = PACKAGES.iter().map(|p| format!("{p}:{arch}")).collect();
    let have_deb = |p: &str| {
        std::fs::read_dir(&cache)
            .map(|rd| {
                rd.filter_map(Result::ok).any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(&format!("{p}_")) && n.ends_with(&format!("_{arch}.deb"))
                })
            })
            .unwrap_or(false)
    };
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|w| !have_deb(w.split(':').next().unwrap_or("")))
        .collect();
    if !missing.is_empty() {
        let out = Command::new("apt-get")
            .arg("download")
            .args(&missing)
            .current_dir(&cache)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return unavailable(&format!(
                    "apt-get download for {arch} failed (for arm64 run `dpkg --add-architecture arm64 && apt-get update`): {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            Err(e) => return unavailable(&format!("apt-get: {e}")),
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&cache)
        .expect("cache")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    for deb in debs {
        let st = Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(dir.path())
            .status()
            .expect("dpkg -x");
        assert!(st.success(), "dpkg -x {}", deb.display());
    }
    Some(dir)
}

/// `readelf -dVW` facts of one file, as binutils reports them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Readelf {
    pub needed: Vec<String>,
    pub soname: Option<String>,
    pub runpath: Option<String>,
    pub rpath: Option<String>,
    /// Version definitions without the BASE entry, in order.
    pub verdefs: Vec<String>,
    /// Version needs per file.
    pub verneeds: Vec<(String, Vec<String>)>,
}

/// Runs `readelf -dVW` on many files at once; results in the same order.
pub fn readelf(files: &[PathBuf]) -> Vec<Readelf> {
    let mut all = Vec::new();
    for chunk in files.chunks(200) {
        let out = Command::new("readelf")
            .arg("-dVW")
            .args(chunk)
            .output()
            .expect("run readelf");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parsed = parse_readelf(&text, chunk.len() > 1);
        assert_eq!(parsed.len(), chunk.len(), "readelf output for {chunk:?}");
        all.append(&mut parsed);
    }
    all
}

fn bracket(line: &str) -> Option<String> {
    let start = line.find('[')?;
    let end = line.rfind(']')?;
    Some(line[start + 1..end].to_owned())
}

fn parse_readelf(text: &str, multi: bool) -> Vec<Readelf> {
    let mut out: Vec<Readelf> = Vec::new();
    if !multi {
        out.push(Readelf::default());
    }
    #[derive(PartialEq)]
    enum Sec {
        None,
        Def,
        Need,
    }
    let mut sec = Sec::None;
    for line in text.lines() {
        if multi && line.starts_with("File: ") {
            out.push(Readelf::default());
            sec = Sec::None;
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        let t = line.trim();
        if line.starts_with("Version definition section") {
            sec = Sec::Def;
        } else if line.starts_with("Version needs section") {
            sec = Sec::Need;
        } else if line.starts_with("Version symbols section") || line.starts_with("Dynamic section")
        {
            sec = Sec::None;
        }
        if t.contains("(NEEDED)") {
            cur.needed.extend(bracket(t));
        } else if t.contains("(SONAME)") {
            cur.soname = bracket(t);
        } else if t.contains("(RUNPATH)") {
            cur.runpath = bracket(t);
        } else if t.contains("(RPATH)") {
            cur.rpath = bracket(t);
        } else if sec == Sec::Def && t.contains("Rev:") && t.contains("Name:") {
            if !t.contains("Flags: BASE") {
                cur.verdefs
                    .extend(t.rsplit("Name: ").next().map(|s| s.trim().to_owned()));
            }
        } else if sec == Sec::Need && t.contains("Version:") && t.contains("File:") {
            let file = t
                .split("File: ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("");
            cur.verneeds.push((file.to_owned(), Vec::new()));
        } else if sec == Sec::Need && t.contains("Name:") && t.contains("Flags:") {
            let name = t
                .split("Name: ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("");
            if let Some(last) = cur.verneeds.last_mut() {
                last.1.push(name.to_owned());
            }
        }
    }
    out
}

/// Validates a JSON file against a JSON schema with Python's `jsonschema`.
/// Returns `None` when the validator is unavailable (and `CI` is not set).
pub fn validate_schema(schema: &Path, instance: &Path) -> Option<Result<(), String>> {
    let probe = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return unavailable("python3 with jsonschema (`pip install jsonschema`)");
    }
    let script = "import json,sys,jsonschema\n\
                  s=json.load(open(sys.argv[1]));i=json.load(open(sys.argv[2]))\n\
                  jsonschema.validators.validator_for(s)(s).validate(i)\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(schema)
        .arg(instance)
        .output()
        .expect("python3");
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference")
}
