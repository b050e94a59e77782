//! Real Debian content for end-to-end tests, downloaded once and cached,
//! and the external tools (readelf, python3 jsonschema) other tests use as
//! oracles.
//!
//! A [`PackageSet`] is fetched with `apt-get download` for one architecture
//! and unpacked with `dpkg -x` into a directory tree. Debian 12 packages
//! still ship the traditional layout (`/bin`, `/sbin`, `/lib` are real
//! directories; merging into `/usr` happens at install time), which is what
//! the merged-usr fixture needs as its lower layer.
//!
//! The cache lives in `<target dir>/debian-cache` (found from the test
//! binary's own path, so it works with and without `CARGO_TARGET_DIR`);
//! `BUNDLEGEN_TEST_CACHE` overrides it. Entries are built in a temporary
//! directory and renamed into place, so a present entry is complete. An
//! exclusive `flock` on `<cache>/.lock` serialises builders, both the
//! parallel test threads of one run and concurrent runs.

use std::collections::BTreeSet;
use std::env;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::layout_edit::LayerBuilder;

/// Bump when the way entries are built changes, so stale caches are ignored.
const CACHE_FORMAT: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The name Debian and the OCI image config both use.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Debian's multiarch directory below `/lib` and `/usr/lib`.
    pub fn multiarch(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu",
            Arch::Arm64 => "aarch64-linux-gnu",
        }
    }
}

pub struct PackageSet {
    pub name: &'static str,
    pub packages: &'static [&'static str],
}

/// A small system, about 8 MB of `.deb`s per architecture: libc, shells,
/// coreutils, perl-base (hardlinked `perl`/`perl5.36.0`), gzip (hardlinked
/// `gunzip`/`uncompress`), tzdata (thousands of small files and symlinks),
/// base-files (sticky `/tmp`, mode 0700 `/root`, absolute symlinks).
pub const BASE: PackageSet = PackageSet {
    name: "base",
    packages: &[
        "base-files",
        "base-passwd",
        "bash",
        "coreutils",
        "dash",
        "gzip",
        "libc6",
        "libpcre2-8-0",
        "libselinux1",
        "perl-base",
        "tzdata",
    ],
};

/// What a second layer adds, about 3 MB per architecture: setuid (`passwd`,
/// `chfn`) and setgid (`chage`, `expiry`) programs, more binaries.
pub const EXTRA: PackageSet = PackageSet {
    name: "extra",
    packages: &["grep", "login", "mount", "passwd", "sed"],
};

/// The cache directory (created on first use).
pub fn cache_dir() -> PathBuf {
    let dir = match env::var_os("BUNDLEGEN_TEST_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // The test binary is <target>/<profile>/deps/it-<hash>.
            let exe = env::current_exe().expect("path of the test binary");
            let target = exe
                .ancestors()
                .nth(3)
                .expect("test binary lives in <target>/<profile>/deps");
            target.join("debian-cache")
        }
    };
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Holds the cache lock until dropped.
struct CacheLock(File);

impl CacheLock {
    fn acquire(cache: &Path) -> CacheLock {
        let path = cache.join(".lock");
        let file =
            File::create(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        CacheLock(file)
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(CACHE_FORMAT);
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Run a command, panicking with its output if it fails.
#[track_caller]
pub fn run(cmd: &mut Command) -> String {
    eprintln!("$ {cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cp -a src/. dest/`: contents, modes, owners, hardlinks, symlinks.
pub fn copy_tree(src: &Path, dest: &Path) {
    fs::create_dir_all(dest).unwrap_or_else(|e| panic!("cannot create {}: {e}", dest.display()));
    run(Command::new("cp").arg("-a").arg(src.join(".")).arg(dest));
}

fn apt_has(spec: &str) -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", spec])
        .output()
        .ok()?;
    (out.status.success() && !out.stdout.is_empty())
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Make `apt-get download <pkg>:<arch>` possible: add the foreign
/// architecture and refresh the package lists, only when needed.
fn ensure_apt(arch: Arch) {
    let probe = format!("libc6:{}", arch.name());
    if apt_has(&probe).is_some() {
        return;
    }
    let native = run(Command::new("dpkg").arg("--print-architecture"));
    let foreign = run(Command::new("dpkg").arg("--print-foreign-architectures"));
    let known = native.trim() == arch.name() || foreign.lines().any(|l| l.trim() == arch.name());
    if !known {
        run(Command::new("dpkg").args(["--add-architecture", arch.name()]));
    }
    run(Command::new("apt-get").args(["update", "-q"]));
    assert!(
        apt_has(&probe).is_some(),
        "apt cannot find {probe} even after `apt-get update`\n\
         help: this needs a Debian 12 host (as root) with a reachable mirror"
    );
}

/// `pkg:arch`, or plain `pkg` for an `Architecture: all` package.
fn qualify(pkg: &str, arch: Arch) -> String {
    let spec = format!("{pkg}:{}", arch.name());
    if apt_has(&spec).is_some() {
        return spec;
    }
    match apt_has(pkg) {
        Some(info) if info.lines().any(|l| l.trim() == "Architecture: all") => pkg.to_owned(),
        _ => panic!("package {spec} is not available from apt"),
    }
}

/// The unpacked tree of `set` for `arch` (downloaded on first use).
pub fn tree(set: &PackageSet, arch: Arch) -> PathBuf {
    let cache = cache_dir();
    let name = format!(
        "{}-{}-{}",
        set.name,
        arch.name(),
        key(&[&set.packages.join(" ")])
    );
    let done = cache.join(&name);
    if done.is_dir() {
        return done.join("root");
    }
    let _lock = CacheLock::acquire(&cache);
    if done.is_dir() {
        return done.join("root");
    }
    ensure_apt(arch);
    let tmp = cache.join(format!(".tmp-{name}"));
    let _ = fs::remove_dir_all(&tmp);
    let debs = tmp.join("debs");
    let root = tmp.join("root");
    fs::create_dir_all(&debs).expect("create download dir");
    fs::create_dir_all(&root).expect("create unpack dir");
    let specs: Vec<String> = set.packages.iter().map(|p| qualify(p, arch)).collect();
    run(Command::new("apt-get")
        .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
        .args(&specs)
        .current_dir(&debs));
    let mut files: Vec<PathBuf> = fs::read_dir(&debs)
        .expect("list downloads")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        specs.len(),
        "expected one .deb per package in {}",
        debs.display()
    );
    for deb in &files {
        run(Command::new("dpkg").arg("-x").arg(deb).arg(&root));
    }
    fs::rename(&tmp, &done)
        .unwrap_or_else(|e| panic!("cannot rename {} into place: {e}", tmp.display()));
    done.join("root")
}

/// A merged-usr system laid over a traditional one, as two layers.
pub struct MergedUsr {
    /// The traditional tree (`/bin`, `/sbin`, `/lib`... are directories).
    pub lower: PathBuf,
    /// The upper layer, an uncompressed tar: `bin -> usr/bin` (and `sbin`,
    /// `lib`, `lib64` when present), each followed by whiteouts `bin/.wh.<name>`
    /// for every name the lower `bin/` held, then the moved files under `usr/`.
    pub upper: PathBuf,
    /// What a container runtime shows for lower + upper.
    pub expected: PathBuf,
}

/// The top-level directories Debian's usrmerge turns into symlinks.
const MERGED_DIRS: &[&str] = &["bin", "lib", "lib64", "sbin"];

/// Build (once) the merged-usr-over-traditional fixture for `arch` from
/// [`BASE`].
///
/// This is the layer pair meta-virtualization's multi-layer image-oci writes
/// when a merged-usr layer sits on a traditional base: the upper layer turns
/// `bin` into a symlink and, in the same layer, carries whiteouts below
/// `bin/`. A runtime applies those to the lower layer's `bin/` (already
/// replaced by the symlink) and must never follow the new symlink: following
/// it would delete `usr/lib/<multiarch>` and more from the lower layer.
pub fn merged_usr(arch: Arch) -> MergedUsr {
    let lower = tree(&BASE, arch);
    let cache = cache_dir();
    let name = format!(
        "merged-usr-{}-{}",
        arch.name(),
        key(&[&BASE.packages.join(" "), "merged-usr-2"])
    );
    let done = cache.join(&name);
    let result = |dir: &Path| MergedUsr {
        lower: lower.clone(),
        upper: dir.join("upper.tar"),
        expected: dir.join("expected"),
    };
    if done.is_dir() {
        return result(&done);
    }
    let _lock = CacheLock::acquire(&cache);
    if done.is_dir() {
        return result(&done);
    }
    let tmp = cache.join(format!(".tmp-{name}"));
    let _ = fs::remove_dir_all(&tmp);
    let expected = tmp.join("expected");
    copy_tree(&lower, &expected);

    let mut layer = LayerBuilder::new();
    let mut merged = Vec::new();
    for dir in MERGED_DIRS {
        let top = expected.join(dir);
        if !fs::symlink_metadata(&top).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let usr_dir = expected.join("usr").join(dir);
        move_into(&top, &usr_dir);
        fs::remove_dir(&top).unwrap_or_else(|e| panic!("cannot remove {}: {e}", top.display()));
        symlink(format!("usr/{dir}"), &top).expect("create merged-usr symlink");

        layer.symlink(dir, &format!("usr/{dir}"));
        for name in sorted_names(&lower.join(dir)) {
            layer.whiteout(&format!("{dir}/{name}"));
        }
        merged.push(*dir);
    }
    assert!(
        merged.contains(&"bin"),
        "{} has no /bin directory",
        lower.display()
    );

    // The rest of the layer: everything below usr/<dir> the lower layer
    // lacks, with the directories leading to it.
    let mut added = BTreeSet::new();
    for dir in &merged {
        collect_added(&expected, &lower, &Path::new("usr").join(dir), &mut added);
    }
    for path in &added {
        layer.copy_from(&expected, path);
    }
    fs::write(tmp.join("upper.tar"), layer.finish()).expect("write upper layer");
    fs::rename(&tmp, &done)
        .unwrap_or_else(|e| panic!("cannot rename {} into place: {e}", tmp.display()));
    result(&done)
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Move the contents of `src` into `dst`, merging directories present in
/// both. Two non-directories with one name are a fixture error.
fn move_into(src: &Path, dst: &Path) {
    if !dst.exists() {
        fs::create_dir_all(dst).expect("create usr dir");
        let mode = fs::metadata(src).expect("stat dir").permissions();
        fs::set_permissions(dst, mode).expect("chmod usr dir");
    }
    for name in sorted_names(src) {
        let (from, to) = (src.join(&name), dst.join(&name));
        match (fs::symlink_metadata(&from), fs::symlink_metadata(&to)) {
            (_, Err(_)) => fs::rename(&from, &to).expect("move into usr"),
            (Ok(a), Ok(b)) if a.is_dir() && b.is_dir() => {
                move_into(&from, &to);
                fs::remove_dir(&from).expect("remove merged dir");
            }
            _ => panic!(
                "usrmerge conflict: both {} and {} exist",
                from.display(),
                to.display()
            ),
        }
    }
}

/// Paths below `root/rel` that `lower` lacks, plus their parent directories
/// (from `usr` down), in tar order.
fn collect_added(root: &Path, lower: &Path, rel: &Path, out: &mut BTreeSet<PathBuf>) {
    let full = root.join(rel);
    let is_dir = fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir());
    if fs::symlink_metadata(lower.join(rel)).is_err() {
        for ancestor in rel.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            out.insert(ancestor.to_path_buf());
        }
    }
    if is_dir {
        for name in sorted_names(&full) {
            collect_added(root, lower, &rel.join(name), out);
        }
    }
}

// ---------------------------------------------------------------------------
// For the ELF and platform tests: a throwaway copy of a cached tree, and the
// external tools used as oracles there (readelf, python3 jsonschema). These
// skip with a message when a tool is missing, except under `CI`.
// ---------------------------------------------------------------------------

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

const LIBS: PackageSet = PackageSet {
    name: "libs",
    packages: PACKAGES,
};

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

/// A fresh copy of [`PACKAGES`] unpacked for `arch` (`amd64`, `arm64`),
/// which the caller may modify.
pub fn rootfs(arch: &str) -> Option<tempfile::TempDir> {
    if !have("dpkg", "--version") || !have("apt-get", "--version") {
        return unavailable("dpkg and apt-get (Debian) to fetch real packages");
    }
    let arch = match arch {
        "amd64" => Arch::Amd64,
        "arm64" => Arch::Arm64,
        other => panic!("no Debian fixture for architecture {other}"),
    };
    let cached = tree(&LIBS, arch);
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&cached, dir.path());
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

/// Third-party reference data copied into the repository with its licences
/// and origin (`tests/data/NOTICE`).
pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}
