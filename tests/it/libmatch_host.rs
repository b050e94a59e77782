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
        Some(curl),
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
