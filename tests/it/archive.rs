//! Archives, ipk, OCI output and Dobby rootfs preparation, checked with
//! real tools (GNU tar, gzip, zstd, ar, umoci, skopeo).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use bundlegen::bundle::archive::{self, ArchiveOptions, Compression, IpkLayout, IpkMeta};
use bundlegen::bundle::{ocidir, prep};
use bundlegen::image::spec::ImageConfig;
use bundlegen::layers::RecordedMeta;

const SDE: i64 = 1_600_000_000;
/// security.capability v2 granting cap_net_raw (bit 13).
const CAP: [u8; 20] = [
    0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Whether `tool` can be run; a missing tool fails the test under CI.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required under CI but is not installed"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn setxattr(path: &Path, key: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let k = CString::new(key).unwrap();
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {key} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn mknod(path: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let rc = unsafe { libc::mknod(p.as_ptr(), kind | 0o620, libc::makedev(major, minor)) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    fs::set_permissions(path, fs::Permissions::from_mode(0o620)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if i % 3 == 0 {
                (x >> 24) as u8
            } else {
                b"rootfs"[i % 6]
            }
        })
        .collect()
}

/// The parts of a bundle every variant shares (no ownership, devices or
/// privileged xattrs).
fn common_bundle(b: &Path) {
    let r = b.join("rootfs");
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    fs::create_dir_all(r.join("etc")).unwrap();
    fs::write(b.join("config.json"), br#"{"ociVersion":"1.0.2-dobby"}"#).unwrap();
    fs::write(r.join("usr/bin/app"), noise(3 << 20, 7)).unwrap();
    fs::set_permissions(r.join("usr/bin/app"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(r.join("etc/passwd"), b"root:x:0:0::/:/bin/sh\n").unwrap();
    fs::hard_link(r.join("etc/passwd"), r.join("etc/passwd-")).unwrap();
    fs::write(r.join("etc/shadow"), b"root:*:1::::::\n").unwrap();
    fs::set_permissions(r.join("etc/shadow"), fs::Permissions::from_mode(0o000)).unwrap();
    symlink("/usr/bin", r.join("bin")).unwrap();
    let deep = r.join(format!("{}/{}", "d".repeat(120), "e".repeat(120)));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f".repeat(90)), b"deep").unwrap();
    symlink("t".repeat(150), r.join("longlink")).unwrap();
    let fifo = CString::new(r.join("fifo").as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
}

/// A bundle as a root flatten leaves it: real owners, device nodes, caps.
fn root_bundle(b: &Path) {
    common_bundle(b);
    let r = b.join("rootfs");
    mknod(&r.join("null"), libc::S_IFCHR, 1, 3);
    chown(&r.join("null"), 0, 5);
    chown(&r.join("usr/bin/app"), 1000, 1000);
    fs::set_permissions(r.join("usr/bin/app"), fs::Permissions::from_mode(0o4755)).unwrap();
    chown(&r.join("bin"), 1000, 1000);
    setxattr(&r.join("usr/bin/app"), "security.capability", &CAP);
}

/// The same bundle as a non-root flatten leaves it: files owned by the
/// builder (here root, as the test runs as root), placeholders, and the
/// record of what could not be applied.
fn rootless_bundle(b: &Path) -> BTreeMap<PathBuf, RecordedMeta> {
    common_bundle(b);
    let r = b.join("rootfs");
    fs::write(r.join("null"), b"").unwrap();
    fs::set_permissions(r.join("null"), fs::Permissions::from_mode(0o000)).unwrap();
    let mut rec = BTreeMap::new();
    rec.insert(
        PathBuf::from("null"),
        RecordedMeta {
            uid: 0,
            gid: 5,
            device: Some(('c', 1, 3, 0o620)),
            xattrs: BTreeMap::new(),
        },
    );
    let mut caps = BTreeMap::new();
    caps.insert("security.capability".to_owned(), CAP.to_vec());
    rec.insert(
        PathBuf::from("usr/bin/app"),
        RecordedMeta {
            uid: 1000,
            gid: 1000,
            device: None,
            xattrs: caps,
        },
    );
    rec.insert(
        PathBuf::from("bin"),
        RecordedMeta {
            uid: 1000,
            gid: 1000,
            device: None,
            xattrs: BTreeMap::new(),
        },
    );
    rec
}

fn opts(
    recorded: &BTreeMap<PathBuf, RecordedMeta>,
    compression: Compression,
    threads: usize,
) -> ArchiveOptions<'_> {
    ArchiveOptions {
        compression,
        threads,
        source_date_epoch: Some(SDE),
        ..ArchiveOptions::new(recorded)
    }
}

#[test]
fn gnu_tar_reads_every_entry_type() {
    if !is_root() || !have("tar") || !have("gzip") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("bundle");
    root_bundle(&b);
    let none = BTreeMap::new();
    let out = t.path().join("bundle.tar.gz");
    let info = archive::write_tar(&b, &out, &opts(&none, Compression::Gzip, 2)).unwrap();
    assert_eq!(info.size, fs::metadata(&out).unwrap().len());
    run(Command::new("gzip").arg("-t").arg(&out));
    let list = run(Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--full-time",
            "-tvvf",
        ])
        .arg(&out));
    let names: Vec<&str> = list
        .lines()
        .filter(|l| !l.starts_with("  x:"))
        .map(|l| l.split_whitespace().nth(5).unwrap_or(""))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries in byte order:\n{list}");
    assert!(
        names[0] == "config.json" && names.contains(&"rootfs/"),
        "{list}"
    );
    let line = |name: &str| {
        let l = list
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{list}"));
        l.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert!(
        line("rootfs/usr/bin/app").starts_with("-rwsr-xr-x* 1000/1000"),
        "{list}"
    );
    assert!(list.contains("  x: 20 security.capability"), "{list}");
    assert!(
        line("rootfs/null").starts_with("crw--w---- 0/5") && line("rootfs/null").contains(" 1,3 "),
        "{list}"
    );
    assert!(line("rootfs/fifo").starts_with("prw-------"), "{list}");
    assert!(
        line("rootfs/etc/passwd-").contains("link to rootfs/etc/passwd"),
        "{list}"
    );
    assert!(
        line("rootfs/bin -").contains("-> /usr/bin") && line("rootfs/bin -").contains("1000/1000"),
        "{list}"
    );
    assert!(line("rootfs/longlink").contains(&"t".repeat(150)), "{list}");
    assert!(
        list.contains(&format!(
            "{}/{}/{}",
            "d".repeat(120),
            "e".repeat(120),
            "f".repeat(90)
        )),
        "{list}"
    );
    assert!(
        line("rootfs/etc/shadow").starts_with("----------"),
        "{list}"
    );
    // Everything was newer than SOURCE_DATE_EPOCH: all clamped.
    assert!(
        list.lines()
            .filter(|l| !l.starts_with("  x:"))
            .all(|l| l.contains("2020-09-13 12:26:40")),
        "{list}"
    );
    // Content survives.
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(&out)
        .arg("-C")
        .arg(&x));
    assert_eq!(
        fs::read(x.join("rootfs/usr/bin/app")).unwrap(),
        fs::read(b.join("rootfs/usr/bin/app")).unwrap()
    );
}

#[test]
fn identical_for_any_thread_count_and_run() {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("bundle");
    common_bundle(&b);
    let none = BTreeMap::new();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let mut digests = Vec::new();
        for (i, threads) in [1, 2, 4, 2].into_iter().enumerate() {
            let out = t.path().join(format!("o{i}.{}", compression.extension()));
            digests.push(
                archive::write_tar(&b, &out, &opts(&none, compression, threads))
                    .unwrap()
                    .sha256,
            );
        }
        assert!(
            digests.windows(2).all(|w| w[0] == w[1]),
            "{compression:?}: {digests:?}"
        );
    }
    if have("zstd") {
        run(Command::new("zstd")
            .arg("-tq")
            .arg(t.path().join("o0.tar.zst")));
    }
}

#[test]
fn rootless_record_gives_the_same_archive_as_root() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    root_bundle(&a);
    let rec = rootless_bundle(&b);
    let none = BTreeMap::new();
    let ra = archive::write_tar(
        &a,
        &t.path().join("a.tar"),
        &opts(&none, Compression::None, 1),
    )
    .unwrap();
    // As root over a tree flattened rootless, and as a non-root run would.
    let rb = archive::write_tar(
        &b,
        &t.path().join("b.tar"),
        &opts(&rec, Compression::None, 1),
    )
    .unwrap();
    let rc = archive::write_tar(
        &b,
        &t.path().join("c.tar"),
        &ArchiveOptions {
            rootless: true,
            ..opts(&rec, Compression::None, 1)
        },
    )
    .unwrap();
    if ra.sha256 != rb.sha256 && have("tar") {
        let la = run(Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-tvvf"])
            .arg(t.path().join("a.tar")));
        let lb = run(Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-tvvf"])
            .arg(t.path().join("b.tar")));
        panic!("root:\n{la}\nrootless:\n{lb}");
    }
    assert_eq!(ra.sha256, rb.sha256);
    assert_eq!(rb.sha256, rc.sha256);
}

#[test]
fn owner_and_mask_and_epoch() {
    if !have("tar") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("bundle");
    fs::create_dir_all(b.join("rootfs")).unwrap();
    fs::write(b.join("rootfs/old"), b"o").unwrap();
    fs::write(b.join("rootfs/new"), b"n").unwrap();
    let old = CString::new(b.join("rootfs/old").as_os_str().as_encoded_bytes()).unwrap();
    let times = [libc::timespec {
        tv_sec: 1_000_000_000,
        tv_nsec: 0,
    }; 2];
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, old.as_ptr(), times.as_ptr(), 0) },
        0
    );
    let none = BTreeMap::new();
    let o = ArchiveOptions {
        owner: Some((700, 701)),
        file_mask: Some(0o770),
        ..opts(&none, Compression::Gzip, 1)
    };
    let out = t.path().join("b.tar.gz");
    archive::write_tar(&b, &out, &o).unwrap();
    let list = run(Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvzf"])
        .arg(&out));
    let line = |n: &str| {
        list.lines()
            .find(|l| l.ends_with(n))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        line("rootfs/old").starts_with("-rw-r----- 700/701")
            && line("rootfs/old").contains("2001-09-09 01:46:40"),
        "{list}"
    );
    assert!(line("rootfs/new").contains("2020-09-13 12:26:40"), "{list}");
    // Writing into the archived directory is refused.
    assert!(matches!(
        archive::write_tar(&b, &b.join("x.tar.gz"), &o),
        Err(archive::ArchiveError::OutputInsideInput { .. })
    ));
}

/// Issue 11: BundleGen's ipk (a gzip'd tar, unpacked by `tar xzf`) by
/// default and opkg-build's `ar` on request, with the same members.
#[test]
fn ipk_layouts_unpack_with_tar_and_ar() {
    if !have("ar") || !have("tar") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("bundle");
    common_bundle(&b);
    let none = BTreeMap::new();
    let meta = IpkMeta {
        package: "com.rdk.demo".into(),
        version: "1.0.0".into(),
        architecture: IpkMeta::architecture_of("arm", Some("v7")),
        description: "demo".into(),
        priority: None,
    };
    for (layout, list, unpack, debian_binary) in [
        (IpkLayout::BundleGen, ["tar", "-tzf"], ["tar", "-xzf"], &b"2.0"[..]),
        (IpkLayout::Ar, ["ar", "t"], ["ar", "x"], &b"2.0\n"[..]),
    ] {
        let dir = t.path().join(format!("{layout:?}"));
        fs::create_dir(&dir).unwrap();
        let out = t.path().join(format!("{layout:?}.ipk"));
        let one = archive::write_ipk(&b, &out, &meta, layout, &opts(&none, Compression::Gzip, 1)).unwrap();
        let members = run(Command::new(list[0]).arg(list[1]).arg(&out));
        let want = match layout {
            // BundleGen's order (utils.py create_ipk)
            IpkLayout::BundleGen => "data.tar.gz\ncontrol.tar.gz\ndebian-binary\n",
            IpkLayout::Ar => "debian-binary\ncontrol.tar.gz\ndata.tar.gz\n",
        };
        assert_eq!(members, want, "{layout:?}");
        run(Command::new(unpack[0]).arg(unpack[1]).arg(&out).current_dir(&dir));
        assert_eq!(fs::read(dir.join("debian-binary")).unwrap(), debian_binary, "{layout:?}");
        let control = run(Command::new("tar")
            .args(["-xzOf", "control.tar.gz", "control"])
            .current_dir(&dir));
        assert!(
            control.starts_with("Package: com.rdk.demo\nVersion: 1.0.0\nArchitecture: armv7\n"),
            "{control}"
        );
        let data = run(Command::new("tar")
            .args(["-tzf", "data.tar.gz"])
            .current_dir(&dir));
        assert!(data.starts_with("config.json\nrootfs/\n"), "{data}");
        // The bundle unpacks from data.tar.gz byte for byte.
        run(Command::new("tar").args(["-xzf", "data.tar.gz"]).current_dir(&dir));
        assert_eq!(fs::read(dir.join("rootfs/etc/passwd")).unwrap(), fs::read(b.join("rootfs/etc/passwd")).unwrap());
        let two = archive::write_ipk(&b, &out, &meta, layout, &opts(&none, Compression::Gzip, 4)).unwrap();
        assert_eq!(one.sha256, two.sha256, "{layout:?}: same bytes for any thread count");
    }
}

#[test]
fn oci_output_reads_back_with_skopeo_and_umoci() {
    if !have("skopeo") || !have("umoci") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("rootfs");
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    fs::write(r.join("usr/bin/app"), noise(1 << 20, 3)).unwrap();
    symlink("usr/bin", r.join("bin")).unwrap();
    let config: ImageConfig = serde_json::from_str(
        r#"{"architecture":"arm64","os":"linux","config":{"Cmd":["/bin/app"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]},"history":[{"created_by":"a"},{"created_by":"b"}]}"#,
    )
    .unwrap();
    let none = BTreeMap::new();
    let out = t.path().join("oci");
    let manifest =
        ocidir::write(&r, &config, &out, "app", &opts(&none, Compression::Gzip, 2)).unwrap();
    let again =
        ocidir::write(&r, &config, &out, "app", &opts(&none, Compression::Gzip, 1)).unwrap();
    assert_eq!(
        manifest, again,
        "deterministic, and an existing layout is replaced"
    );
    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:app", out.display())));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Digest"], manifest.to_string());
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1));
    let unpacked = t.path().join("unpacked");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:app", out.display()))
        .arg(&unpacked));
    assert_eq!(
        fs::read(unpacked.join("rootfs/bin/app")).unwrap(),
        fs::read(r.join("usr/bin/app")).unwrap()
    );
    // Anything that is not an OCI layout is not replaced.
    fs::create_dir_all(t.path().join("other/x")).unwrap();
    assert!(
        ocidir::write(
            &r,
            &config,
            &t.path().join("other"),
            "app",
            &opts(&none, Compression::Gzip, 1)
        )
        .is_err()
    );
}

/// A rootfs inside `t/root`, with a canary directory and file beside it.
fn prep_fixture(t: &Path) -> (PathBuf, PathBuf) {
    let r = t.join("root");
    let canary = t.join("host");
    fs::create_dir_all(canary.join("run")).unwrap();
    fs::write(canary.join("hosts"), b"canary").unwrap();
    fs::create_dir_all(r.join("etc")).unwrap();
    (r, canary)
}

fn tree(p: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.push((e.path(), Vec::new()));
            out.extend(tree(&e.path()));
        } else {
            out.push((e.path(), fs::read(e.path()).unwrap_or_default()));
        }
    }
    out.sort();
    out
}

#[test]
fn prep_case_40_etc_files_become_regular() {
    let t = tempfile::tempdir().unwrap();
    let (r, canary) = prep_fixture(t.path());
    let before = tree(&canary);
    // Absolute, escaping, in-root, and dangling links.
    symlink(canary.join("hosts"), r.join("etc/hosts")).unwrap();
    symlink("../../../../host/hosts", r.join("etc/services")).unwrap();
    fs::create_dir_all(r.join("run/systemd")).unwrap();
    fs::write(r.join("run/systemd/resolv.conf"), b"nameserver 10.0.0.1\n").unwrap();
    symlink("/run/systemd/resolv.conf", r.join("etc/resolv.conf")).unwrap();
    let report = prep::prepare(&r, &prep::PrepOptions::default()).unwrap();
    assert_eq!(report.files_replaced.len(), 3, "{report:?}");
    for f in ["hosts", "services", "resolv.conf"] {
        assert!(
            fs::symlink_metadata(r.join("etc").join(f))
                .unwrap()
                .is_file(),
            "{f}"
        );
    }
    // The absolute link resolved in-root (to nothing there): empty.
    assert_eq!(fs::read(r.join("etc/hosts")).unwrap(), b"");
    assert_eq!(
        fs::read(r.join("etc/resolv.conf")).unwrap(),
        b"nameserver 10.0.0.1\n"
    );
    assert_eq!(tree(&canary), before, "nothing outside the rootfs changed");
}

#[test]
fn prep_case_41_localtime_removed() {
    let t = tempfile::tempdir().unwrap();
    let (r, canary) = prep_fixture(t.path());
    symlink(canary.join("hosts"), r.join("etc/localtime")).unwrap();
    prep::prepare(
        &r,
        &prep::PrepOptions {
            localtime_plugin: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(fs::symlink_metadata(r.join("etc/localtime")).is_err());
    assert_eq!(fs::read(canary.join("hosts")).unwrap(), b"canary");
}

#[test]
fn prep_case_42_var_run_and_etc_links_made_host_safe() {
    let t = tempfile::tempdir().unwrap();
    let (r, canary) = prep_fixture(t.path());
    let before = tree(&canary);
    fs::create_dir_all(r.join("var")).unwrap();
    symlink(canary.join("run"), r.join("var/run")).unwrap();
    fs::remove_dir(r.join("etc")).unwrap();
    fs::create_dir_all(r.join("usr/etc")).unwrap();
    symlink("/usr/etc", r.join("etc")).unwrap();
    symlink(canary.join("hosts"), r.join("usr/etc/hosts")).unwrap();
    let report = prep::prepare(
        &r,
        &prep::PrepOptions {
            dbus: true,
            ..Default::default()
        },
    )
    .unwrap();
    // Followed on the host, the links now stay inside the rootfs.
    assert_eq!(fs::read_link(r.join("etc")).unwrap(), Path::new("usr/etc"));
    assert!(
        fs::read_link(r.join("var/run")).unwrap().is_relative(),
        "{report:?}"
    );
    assert!(
        fs::symlink_metadata(r.join("var/run/dbus"))
            .unwrap()
            .is_dir()
    );
    assert!(
        fs::canonicalize(r.join("var/run/dbus"))
            .unwrap()
            .starts_with(fs::canonicalize(&r).unwrap())
    );
    assert!(
        fs::symlink_metadata(r.join("usr/etc/hosts"))
            .unwrap()
            .is_file()
    );
    assert_eq!(tree(&canary), before, "nothing outside the rootfs changed");
}

#[test]
fn prep_case_43_mount_points_created_inside() {
    let t = tempfile::tempdir().unwrap();
    let (r, canary) = prep_fixture(t.path());
    let before = tree(&canary);
    symlink(&canary, r.join("data")).unwrap();
    symlink(canary.join("newfile"), r.join("etc/mounted")).unwrap();
    let mounts = vec![
        ("/data/cache".to_owned(), true),
        ("/etc/mounted".to_owned(), false),
        ("/opt/x/../y".to_owned(), true),
    ];
    prep::prepare(
        &r,
        &prep::PrepOptions {
            mount_points: mounts,
            ..Default::default()
        },
    )
    .unwrap();
    let root = fs::canonicalize(&r).unwrap();
    let cache = fs::canonicalize(r.join("data/cache")).unwrap();
    assert!(
        cache.starts_with(&root) && cache.is_dir(),
        "{}",
        cache.display()
    );
    let mounted = fs::canonicalize(r.join("etc/mounted")).unwrap();
    assert!(
        mounted.starts_with(&root) && mounted.is_file(),
        "{}",
        mounted.display()
    );
    assert!(r.join("opt/y").is_dir());
    assert_eq!(tree(&canary), before, "nothing outside the rootfs changed");
    assert!(!canary.join("newfile").exists() && !canary.join("cache").exists());
}
