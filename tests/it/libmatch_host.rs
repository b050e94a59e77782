//! Library matching on real content: this machine's curl and its `ldd`
//! closure as the image, a device inventory made by `platform init` from
//! the same files.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use bundlegen::compat;
use bundlegen::diag::{Collected, Silent};
use bundlegen::elf;
use bundlegen::libmatch::{self, Action, MatchOptions};
use bundlegen::platform::{Platform, PlatformSpec};

use crate::libmatch::{action, vs};

// ---- real content: this machine's curl ----

/// Copies `host` into `root` at the same path, recreating every symlink met
/// on the way (same target text), as a package manager would lay it out.
fn copy_from_host(root: &Path, host: &Path, depth: usize) {
    assert!(depth < 40, "symlink loop at {}", host.display());
    let mut so_far = PathBuf::from("/");
    let comps: Vec<_> = host.components().skip(1).collect();
    for (i, c) in comps.iter().enumerate() {
        so_far.push(c);
        let inside = root.join(so_far.strip_prefix("/").expect("absolute"));
        let meta = std::fs::symlink_metadata(&so_far).expect("host path exists");
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&so_far).expect("readlink");
            if std::fs::symlink_metadata(&inside).is_err() {
                std::fs::create_dir_all(inside.parent().expect("parent")).expect("mkdir");
                symlink(&target, &inside).expect("symlink");
            }
            let resolved = if target.is_absolute() {
                target
            } else {
                so_far.parent().expect("parent").join(target)
            };
            let mut rest = resolved;
            for c in &comps[i + 1..] {
                rest.push(c);
            }
            return copy_from_host(root, &normalize(&rest), depth + 1);
        } else if meta.is_dir() {
            std::fs::create_dir_all(&inside).expect("mkdir");
        } else if !inside.exists() {
            std::fs::copy(&so_far, &inside).expect("copy");
        }
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn ldd_closure(bin: &str) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut paths = vec![PathBuf::from(bin)];
    for line in text.lines() {
        let t = line.trim();
        let path = match t.split_once(" => ") {
            Some((_, rest)) => rest.split(" (").next().unwrap_or(""),
            None => t.split(" (").next().unwrap_or(""),
        };
        if path.starts_with('/') {
            paths.push(PathBuf::from(path));
        }
    }
    paths
}

/// The image side: this machine's curl and its closure; the device side:
/// the same files plus `device_extra`, described by `platform init`.
fn curl_image_and_device(
    dir: &Path,
    device_extra: impl FnOnce(&Path),
) -> Option<(PathBuf, Platform)> {
    let curl = "/usr/bin/curl";
    if !Path::new(curl).exists() || !crate::debian::have("ldd", "--version") {
        return crate::debian::unavailable("/usr/bin/curl and ldd");
    }
    let files = ldd_closure(curl);
    let (image_root, device_root) = (dir.join("image"), dir.join("device"));
    for f in &files {
        copy_from_host(&image_root, f, 0);
        copy_from_host(&device_root, f, 0);
    }
    device_extra(&device_root);
    let opts = bundlegen::platform::InitOptions {
        rootfs: device_root.clone(),
        name: "thisbox".into(),
        manifest: None,
        pkgdata: None,
        from: None,
    };
    let (template, inventory) = bundlegen::platform::init(&opts, &Silent).expect("init");
    let spec: PlatformSpec = serde_json::from_value(template.clone()).expect("spec");
    let p = Platform {
        name: "thisbox".into(),
        spec,
        raw: template,
        sources: Vec::new(),
        libs: Some(inventory),
        libs_path: None,
    };
    Some((image_root, p))
}

#[test]
fn issue_11_real_libzstd_whose_device_copy_lacks_a_symbol_libcurl_uses_stays_in_the_image() {
    let curl = "/usr/bin/curl";
    let dir = tempfile::tempdir().expect("tempdir");
    let zstd = "/lib/x86_64-linux-gnu/libzstd.so.1";
    let curl_lib = "/lib/x86_64-linux-gnu/libcurl.so.4";
    if !Path::new(zstd).exists() || !Path::new(curl_lib).exists() {
        crate::debian::unavailable::<()>("this machine's libzstd.so.1 and libcurl.so.4");
        return;
    }
    let real = elf::read_symbols(Path::new(zstd))
        .expect("read")
        .expect("ELF");
    let used = elf::read_symbols(Path::new(curl_lib))
        .expect("read")
        .expect("ELF");
    let used: Vec<&String> = used
        .imports
        .iter()
        .filter(|n| real.exports.binary_search(n).is_ok())
        .collect();
    assert!(!used.is_empty(), "libcurl uses libzstd's symbols");
    let dropped = used[0].clone();
    // The device's libzstd.so.1 (an older or trimmed build, unversioned like
    // Debian's) exports everything but one symbol libcurl calls.
    let Some((image_root, p)) = curl_image_and_device(dir.path(), |device| {
        let keep: Vec<&str> = real
            .exports
            .iter()
            .filter(|n| **n != dropped)
            .map(String::as_str)
            .collect();
        let path = device.join("usr/lib/x86_64-linux-gnu/libzstd.so.1");
        let _ = std::fs::remove_file(&path);
        crate::elfstub::Stub::lib(crate::elfstub::Machine::X86_64, "libzstd.so.1")
            .exports(&keep)
            .write(&path);
    }) else {
        return;
    };
    let scan = elf::scan(&image_root, &Silent).expect("scan");
    let plan = libmatch::plan(
        &image_root,
        &scan,
        &p,
        None,
        Some(&bundlegen::compat::entrypoint_roots(&image_root, curl, None)),
        &MatchOptions::default(),
        &Silent,
    )
    .expect("plan");
    let d = plan.decision("libzstd.so.1").expect("libzstd decided");
    assert_eq!(d.action, Action::KeepImage, "{}", d.reason);
    assert!(d.reason.contains(&dropped), "{}", d.reason);
    let ev = d.evidence.as_ref().expect("evidence");
    assert_eq!(ev.missing, vec![dropped.clone()]);
    assert_eq!(ev.symbols.len(), used.len(), "{:?}", ev.symbols);
    // The other unversioned libraries are the same files on both sides:
    // replaced, each on the evidence of its symbols.
    for so in ["libnghttp2.so.14", "libpsl.so.5", "libbrotlidec.so.1"] {
        let Some(d) = plan.decision(so) else { continue };
        assert_eq!(d.action, Action::FromDevice, "{so}: {}", d.reason);
        let ev = d.evidence.as_ref().expect("evidence");
        assert!(
            !ev.symbols.is_empty() && ev.missing.is_empty(),
            "{so}: {ev:?}"
        );
    }
}

#[test]
fn real_curl_takes_glibc_and_matching_libraries_from_a_device_built_from_this_machine() {
    let curl = "/usr/bin/curl";
    if !Path::new(curl).exists() || !crate::debian::have("ldd", "--version") {
        crate::debian::unavailable::<()>("/usr/bin/curl and ldd");
        return;
    }
    let files = ldd_closure(curl);
    let dir = tempfile::tempdir().expect("tempdir");
    let (image_root, device_root) = (dir.path().join("image"), dir.path().join("device"));
    for f in &files {
        copy_from_host(&image_root, f, 0);
        copy_from_host(&device_root, f, 0);
    }
    // The device also has an NSS module the image lacks; the image has an
    // unused library the device lacks.
    copy_from_host(
        &device_root,
        Path::new("/lib/x86_64-linux-gnu/libnss_files.so.2"),
        0,
    );
    let opts = bundlegen::platform::InitOptions {
        rootfs: device_root.clone(),
        name: "thisbox".into(),
        manifest: None,
        pkgdata: None,
        from: None,
    };
    let (template, inventory) = bundlegen::platform::init(&opts, &Silent).expect("init");
    let spec: PlatformSpec = serde_json::from_value(template.clone()).expect("spec");
    assert_eq!(
        spec.arch.as_ref().and_then(|a| a.arch.as_deref()),
        Some("amd64")
    );
    let p = Platform {
        name: "thisbox".into(),
        spec,
        raw: template,
        sources: Vec::new(),
        libs: Some(inventory),
        libs_path: None,
    };
    let scan = elf::scan(&image_root, &Silent).expect("scan");
    let diag = Collected::default();
    let plan = libmatch::plan(
        &image_root,
        &scan,
        &p,
        None,
        Some(&bundlegen::compat::entrypoint_roots(&image_root, curl, None)),
        &MatchOptions::default(),
        &diag,
    )
    .expect("plan");
    for so in ["libc.so.6", "ld-linux-x86-64.so.2", "libresolv.so.2"] {
        let (a, why) = action(&plan, so);
        assert_eq!(a, Action::FromDevice, "{so}: {why}");
    }
    // Same files on both sides: everything comes from the device.
    for d in &plan.decisions {
        assert_eq!(d.action, Action::FromDevice, "{}: {}", d.soname, d.reason);
    }
    assert!(
        plan.mounts
            .iter()
            .any(|m| m.destination == "/lib64/ld-linux-x86-64.so.2"
                || m.destination == "/usr/lib64/ld-linux-x86-64.so.2"),
        "the loader is mounted at PT_INTERP: {:#?}",
        plan.mounts
    );
    assert!(
        plan.decision("libcurl.so.4")
            .is_some_and(|d| d.needed_by.contains(&curl.to_owned()))
    );
    libmatch::apply(&image_root, &plan).expect("apply");
    assert!(
        !image_root
            .join("usr/lib/x86_64-linux-gnu/libc.so.6")
            .exists()
    );
    assert!(image_root.join("usr/bin/curl").exists());
    let scan = elf::scan(&image_root, &Silent).expect("scan");
    let info = compat::check_entrypoint(&image_root, &vs(&[curl]), None, &p, &scan, &plan, None)
        .expect("curl runs with the device's libraries");
    assert!(
        info.libraries.contains(&"libcurl.so.4".to_owned()),
        "{:?}",
        info.libraries
    );
    assert!(diag.warnings().is_empty(), "{:?}", diag.warnings());
}
