//! Issue 15: `generate` for several platforms in one call (`-p A -p B`,
//! or `-p A,B`). The image is flattened and analysed once and each
//! platform gets its own hard-linked copy of that rootfs; what each
//! platform gets must be what a separate single-platform run writes, byte
//! for byte (config.json, the rootfs tree with every file's metadata and
//! hard links, the archive), and an incompatible platform must not stop
//! the others.
//!
//! The platforms differ where a shared tree could leak from one to another:
//! `devA` takes libfoo from the device (`-m host`), so its rootfs loses the
//! file that `devB` keeps; each has its own mount point (`-r`) created in
//! its rootfs; both replace the image's `/etc/resolv.conf` symlink by a file.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::builder::{sha256_hex, Entry, Image, Layer, Layout, RunConfig};
use crate::elfstub::{Machine, Stub};
use crate::faults::{app_metadata, bin, staged_in, stderr_of};

const SOURCE_DATE_EPOCH: i64 = 1_700_000_000;
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// An x86-64 app needing libfoo.so.1 (in the image), a hard-linked pair
/// of files, a resolv.conf symlink, a directory with an old mtime, xattrs.
fn image(dir: &Path) {
    let app = Stub::exe(Machine::X86_64, LOADER)
        .needs(&["libfoo.so.1"])
        .build();
    let libfoo = Stub::lib(Machine::X86_64, "libfoo.so.1").build();
    let loader = Stub::lib(Machine::X86_64, "ld-linux-x86-64.so.2").build();
    let mut image = Image::new([
        Layer::gz([
            Entry::dir("usr/").with_mtime(1_000_000),
            Entry::dir("usr/bin/"),
            Entry::dir("usr/lib/").with_mode(0o750),
            Entry::dir("lib64/"),
            Entry::dir("etc/"),
            Entry::file("usr/bin/app", app)
                .with_mode(0o755)
                .with_xattr("user.origin", "layer1"),
            Entry::file("usr/lib/libfoo.so.1", libfoo),
            Entry::file(&LOADER[1..], loader).with_mode(0o755),
            Entry::file("etc/hosts.real", "127.0.0.1 localhost\n"),
            Entry::symlink("etc/resolv.conf", "hosts.real"),
        ]),
        Layer::gz([
            Entry::dir("usr/share/")
                .with_mtime(1_200_000)
                .with_xattr("user.dir", "shared"),
            Entry::file("usr/share/a", "same inode\n").with_mtime(1_300_000),
            Entry::hardlink("usr/share/b", "usr/share/a"),
            Entry::file("usr/share/c", "alone\n").with_owner(1000, 1000),
        ]),
    ]);
    image.run = RunConfig {
        entrypoint: Some(vec!["/usr/bin/app".into()]),
        ..RunConfig::default()
    };
    Layout::single(dir, image);
}

/// A template named `name` (the built-in qemux86-64 edited) with its
/// `_libs.json` listing `libs`, in `dir`.
fn template(dir: &Path, name: &str, mount: &str, libs: &[&str], edit: impl Fn(&mut Value)) {
    let mut p: Value =
        serde_json::from_str(include_str!("../../src/platform/builtin/qemux86-64.json"))
            .expect("builtin JSON");
    p["platformName"] = json!(name);
    p["mounts"] = json!([{"source": "/data", "destination": mount, "type": "bind", "options": ["rbind", "ro"]}]);
    edit(&mut p);
    fs::write(dir.join(format!("{name}.json")), p.to_string()).expect("write template");
    let libs: Vec<Value> = libs
        .iter()
        .map(|l| json!({"name": l, "apiversions": [], "deps": []}))
        .collect();
    fs::write(
        dir.join(format!("{name}_libs.json")),
        json!({ "libs": libs }).to_string(),
    )
    .expect("write libs");
}

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    layout: PathBuf,
    platforms: PathBuf,
    meta: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("bundlegen-multi-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_owned();
        let layout = root.join("image");
        image(&layout);
        let platforms = root.join("platforms");
        fs::create_dir(&platforms).expect("mkdir");
        template(
            &platforms,
            "devA",
            "/mnt/a",
            &["/usr/lib/libfoo.so.1"],
            |_| {},
        );
        template(&platforms, "devB", "/mnt/b", &[], |_| {});
        // Same architecture, but its maxRam is below the app's 64M: found
        // incompatible after flattening (--strict-memory).
        template(&platforms, "small", "/mnt/s", &[], |p| {
            p["hardware"]["maxRam"] = json!("32M")
        });
        let meta = root.join("app.json");
        app_metadata(&meta, json!({}));
        World {
            _dir: dir,
            root,
            layout,
            platforms,
            meta,
        }
    }

    /// `bundlegen -q generate -r -m host --strict-memory -s PLATFORMS -a
    /// META ARGS oci:LAYOUT OUT`.
    fn generate(&self, args: &[&str], out: &Path) -> Output {
        Command::new(bin())
            .args(["generate", "-r", "-m", "host", "--strict-memory", "-s"])
            .arg(&self.platforms)
            .arg("-a")
            .arg(&self.meta)
            .args(args)
            .arg(format!("oci:{}", self.layout.display()))
            .arg(out)
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
            .env_remove("RDK_PLATFORM")
            .env_remove("FILE_FORMAT_IPK")
            .stdin(Stdio::null())
            .output()
            .expect("run bundlegen")
    }
}

/// Every entry of a tree: type, mode, owner, mtime, xattrs, content digest
/// or link target, and which other paths share its inode (hard links
/// inside the tree). Equal listings mean identical trees.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let m = fs::symlink_metadata(&path).expect("lstat");
            let what = if m.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&path).expect("readlink").display())
            } else {
                inodes.entry(m.ino()).or_default().push(rel.clone());
                format!("file {}", sha256_hex(&fs::read(&path).expect("read")))
            };
            let mut xattrs: Vec<String> = xattr_names(&path);
            xattrs.sort();
            // Files made during a run (config.json, mount points) carry the
            // time of the run, so two single runs differ there too: times
            // are compared as the archive records them, clamped to
            // SOURCE_DATE_EPOCH. Directories' times change whenever an entry
            // is added or removed, and are compared through the archives.
            let mtime = if m.is_dir() {
                String::new()
            } else {
                format!(" mtime {}", m.mtime().min(SOURCE_DATE_EPOCH))
            };
            out.insert(
                rel,
                format!(
                    "{what} mode {:o} owner {}:{}{mtime} xattrs {xattrs:?}",
                    m.mode(),
                    m.uid(),
                    m.gid()
                ),
            );
        }
    }
    for paths in inodes.values().filter(|p| p.len() > 1) {
        for p in paths {
            let others: Vec<&String> = paths.iter().filter(|o| *o != p).collect();
            out.entry(p.clone())
                .and_modify(|v| v.push_str(&format!(" linked to {others:?}")));
        }
    }
    out
}

/// The names and values of a path's extended attributes (`getfattr` is
/// not installed everywhere; the syscalls are).
fn xattr_names(path: &Path) -> Vec<String> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let mut buf = vec![0u8; 4096];
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    buf.truncate(n as usize);
    buf.split(|&b| b == 0)
        .filter(|k| !k.is_empty())
        .map(|k| {
            let key = std::ffi::CString::new(k).expect("key");
            let mut v = vec![0u8; 4096];
            let m = unsafe {
                libc::lgetxattr(c.as_ptr(), key.as_ptr(), v.as_mut_ptr().cast(), v.len())
            };
            v.truncate(m.max(0) as usize);
            format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(&v)
            )
        })
        .collect()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        stderr_of(out)
    );
}

/// Acceptance 1: each platform's bundle and archive from one `-p A -p B`
/// run equal, byte for byte, those of separate `-p A` and `-p B` runs;
/// the platforms really differ (so a leak between their trees would show).
#[test]
fn issue15_each_platform_is_byte_identical_to_its_single_run() {
    let w = World::new();
    let multi = w.root.join("multi");
    let summary = w.root.join("summary.json");
    let run = w.generate(
        &[
            "-p",
            "devA",
            "-p",
            "devB",
            "--report",
            summary.to_str().expect("utf-8"),
        ],
        &multi,
    );
    ok(&run, "the two-platform run");
    let stderr = stderr_of(&run);
    for name in ["devA", "devB"] {
        let single = w.root.join("single").join(name);
        ok(
            &w.generate(&["-p", name], &single),
            &format!("the {name} run"),
        );
        let bundle = multi.join(name);
        assert_eq!(
            fs::read(bundle.join("config.json")).expect("multi config.json"),
            fs::read(single.join("config.json")).expect("single config.json"),
            "{name}: config.json"
        );
        assert_eq!(tree(&bundle), tree(&single), "{name}: the bundle tree");
        let archive = multi.join(format!("{name}.tar.gz"));
        assert!(
            fs::read(&archive).expect("multi archive")
                == fs::read(single.with_extension("tar.gz")).expect("single archive"),
            "{name}: {} differs from the single run's archive",
            archive.display()
        );
        assert!(
            stderr.contains(&format!(
                "Successfully generated bundle at {}",
                fs::canonicalize(&archive).expect("abs").display()
            )),
            "{stderr}"
        );
        // The per-platform report, as the single run would write it with
        // --report, beside the bundle.
        let report: Value = serde_json::from_slice(
            &fs::read(multi.join(format!("{name}.report.json"))).expect("report"),
        )
        .expect("JSON");
        assert_eq!(report["platform"], name);
    }
    // The platforms differ where the shared tree could leak: libfoo comes
    // from devA's device (an empty mount point is left in its place, -r),
    // devB keeps the image's; each has its own mount point.
    let libfoo =
        |name: &str| fs::read(multi.join(name).join("rootfs/usr/lib/libfoo.so.1")).expect("libfoo");
    assert!(libfoo("devA").is_empty());
    assert!(libfoo("devB").starts_with(b"\x7fELF"));
    assert!(multi.join("devA/rootfs/mnt/a").exists() && !multi.join("devA/rootfs/mnt/b").exists());
    assert!(multi.join("devB/rootfs/mnt/b").exists() && !multi.join("devB/rootfs/mnt/a").exists());
    for name in ["devA", "devB"] {
        let resolv = multi.join(name).join("rootfs/etc/resolv.conf");
        assert!(
            fs::symlink_metadata(&resolv).expect("lstat").is_file(),
            "{name}: resolv.conf is a file"
        );
        assert_eq!(
            fs::read_to_string(&resolv).expect("read"),
            "127.0.0.1 localhost\n"
        );
    }
    // The image's own hard link is one in each bundle, and in each archive.
    for name in ["devA", "devB"] {
        let listing = Command::new("tar")
            .arg("-tvzf")
            .arg(multi.join(format!("{name}.tar.gz")))
            .output()
            .expect("tar");
        let listing = String::from_utf8_lossy(&listing.stdout);
        let links: Vec<&str> = listing.lines().filter(|l| l.starts_with('h')).collect();
        assert_eq!(links.len(), 1, "{name}: one hard link entry:\n{listing}");
        assert!(
            links[0].contains("rootfs/usr/share/b link to rootfs/usr/share/a"),
            "{}",
            links[0]
        );
    }
    // Nothing else in the output folder: no shared tree left behind.
    let mut names: Vec<String> = fs::read_dir(&multi)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "devA",
            "devA.report.json",
            "devA.tar.gz",
            "devB",
            "devB.report.json",
            "devB.tar.gz"
        ]
    );
    assert_eq!(staged_in(&multi), Vec::<String>::new());
    let summary: Value =
        serde_json::from_slice(&fs::read(&summary).expect("summary")).expect("JSON");
    let results: Vec<(&str, &str, i64)> = summary["platforms"]
        .as_array()
        .expect("platforms")
        .iter()
        .map(|p| {
            (
                p["platform"].as_str().unwrap_or(""),
                p["status"].as_str().unwrap_or(""),
                p["exitCode"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        results,
        [("devA", "generated", 0), ("devB", "generated", 0)]
    );

    // The list form, without archives: the same bundles.
    let listed = w.root.join("listed");
    ok(
        &w.generate(&["-p", "devB,devA", "--no-archive"], &listed),
        "the -p devB,devA run",
    );
    for name in ["devA", "devB"] {
        assert_eq!(
            tree(&listed.join(name)),
            tree(&multi.join(name)),
            "{name}: -p A,B --no-archive"
        );
    }
    assert!(!listed.join("devA.tar.gz").exists());
}

/// Platforms are loaded and generated on several threads; their warnings
/// still come in the order the platforms were given, every time.
#[test]
fn issue15_warnings_come_in_the_order_of_the_platforms() {
    let w = World::new();
    let names = ["w1", "w2", "w3", "w4", "w5", "w6"];
    for name in names {
        // An unknown key (a warning when the template loads) and a maxRam
        // below the app's 64M (a warning while its config is built).
        template(&w.platforms, name, "/mnt/w", &[], |p| {
            p["hardware"]["maxRam"] = json!("32M");
            p["xUnknown"] = json!(1);
        });
    }
    let list = names.join(",");
    let run = |out: &str| {
        let out = Command::new(bin())
            .args(["generate", "--no-archive", "-s"])
            .arg(&w.platforms)
            .arg("-a")
            .arg(&w.meta)
            .args(["-j", "2", "-p", &list])
            .arg(format!("oci:{}", w.layout.display()))
            .arg(w.root.join(out))
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
            .env_remove("RDK_PLATFORM")
            .stdin(Stdio::null())
            .output()
            .expect("run bundlegen");
        ok(&out, "the six-platform run");
        stderr_of(&out)
            .lines()
            .filter(|l| l.contains("xUnknown") || l.contains("maxRam"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let first = run("one");
    let loads: Vec<usize> = names
        .iter()
        .map(|n| first.iter().position(|l| l.contains(&format!("{n}.json")) && l.contains("xUnknown")).unwrap_or_else(|| panic!("{n}: unknown key warning in {first:#?}")))
        .collect();
    let rams: Vec<usize> = names
        .iter()
        .map(|n| first.iter().position(|l| l.contains(&format!("{n}: {n}")) && l.contains("maxRam")).unwrap_or_else(|| panic!("{n}: maxRam warning in {first:#?}")))
        .collect();
    assert!(loads.is_sorted() && rams.is_sorted(), "{first:#?}");
    assert!(loads.iter().max() < rams.iter().min(), "{first:#?}");
    for again in ["two", "three"] {
        assert_eq!(run(again), first);
    }
}

/// Acceptance 2: among several platforms, one of another architecture
/// (found before flattening) and one whose maxRam the app exceeds (found
/// after): the others are written as a single run writes them, each
/// failure is reported, the summary lists every platform, and the exit
/// status is 2.
#[test]
fn issue15_incompatible_platforms_do_not_stop_the_others() {
    let w = World::new();
    let multi = w.root.join("multi");
    let summary = w.root.join("summary.json");
    let run = w.generate(
        &[
            "-p",
            "qemuarm64",
            "-p",
            "devA",
            "-p",
            "small",
            "-p",
            "devB",
            "--report",
            summary.to_str().expect("utf-8"),
        ],
        &multi,
    );
    let stderr = stderr_of(&run);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    for name in ["devA", "devB"] {
        let single = w.root.join("single").join(name);
        ok(
            &w.generate(&["-p", name], &single),
            &format!("the {name} run"),
        );
        assert_eq!(
            tree(&multi.join(name)),
            tree(&single),
            "{name}: the bundle tree"
        );
        assert!(
            fs::read(multi.join(format!("{name}.tar.gz"))).expect("archive")
                == fs::read(single.with_extension("tar.gz")).expect("archive")
        );
    }
    for name in ["qemuarm64", "small"] {
        assert!(
            !multi.join(name).exists() && !multi.join(format!("{name}.tar.gz")).exists(),
            "{name}: nothing written"
        );
        assert!(
            stderr.contains(&format!("{name}: failed (exit 2)")),
            "{name} reported:\n{stderr}"
        );
    }
    assert!(stderr.contains("summary: 2 of 4 platforms generated; failed: qemuarm64 (incompatible, exit 2), small (incompatible, exit 2)"), "{stderr}");
    assert!(
        stderr.contains("error: 2 of 4 platforms failed"),
        "{stderr}"
    );
    // Each failure says why, as the single run does.
    for name in ["qemuarm64", "small"] {
        let single = w.generate(&["-p", name], &w.root.join("single").join(name));
        assert_eq!(single.status.code(), Some(2), "{name} alone");
        let reason = stderr_of(&single)
            .lines()
            .find(|l| l.starts_with("error: "))
            .expect("error line")
            .to_owned();
        assert!(stderr.contains(&reason), "{name}: {reason:?} in:\n{stderr}");
    }
    let summary: Value =
        serde_json::from_slice(&fs::read(&summary).expect("summary")).expect("JSON");
    let results: Vec<(&str, &str, i64)> = summary["platforms"]
        .as_array()
        .expect("platforms")
        .iter()
        .map(|p| {
            (
                p["platform"].as_str().unwrap_or(""),
                p["status"].as_str().unwrap_or(""),
                p["exitCode"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("qemuarm64", "incompatible", 2),
            ("devA", "generated", 0),
            ("small", "incompatible", 2),
            ("devB", "generated", 0)
        ]
    );
    assert_eq!(staged_in(&multi), Vec::<String>::new());
}

/// A platform named twice would write one directory twice: refused before
/// anything is read (exit 1).
#[test]
fn issue15_a_platform_given_twice_is_refused() {
    let w = World::new();
    let out = w.root.join("multi");
    let run = w.generate(&["-p", "devA,devB", "-p", "devA"], &out);
    assert_eq!(run.status.code(), Some(1), "{}", stderr_of(&run));
    assert!(
        stderr_of(&run).contains("platform devA is given twice"),
        "{}",
        stderr_of(&run)
    );
    assert!(!out.exists());
}
