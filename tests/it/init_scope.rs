//! `platform init` reads what the device's loader can load and what the
//! template names, not the whole rootfs (issue #12): on a stub rootfs with
//! libraries in temporary, home and vendor folders, through the real binary.

use std::path::Path;
use std::process::Command;

use crate::elfstub::{Machine, Stub};

/// A truncated ELF header: reading it fails with a warning.
fn broken_elf(path: &Path) {
    let mut bytes = vec![0u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2; // 64-bit
    bytes[5] = 1; // little-endian
    bytes[6] = 1;
    bytes[16] = 3; // ET_DYN
    bytes[18] = 62; // x86_64
    bytes[20] = 1;
    bytes[32] = 64; // e_phoff
    bytes[54] = 56; // e_phentsize
    bytes[56] = 4; // e_phnum, past the end of the file
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

fn rootfs(root: &Path) {
    let m = Machine::X86_64;
    Stub::exe(m, "/lib64/ld-linux-x86-64.so.2")
        .needs(&["libc.so.6"])
        .write(&root.join("bin/sh"));
    Stub::lib(m, "ld-linux-x86-64.so.2").write(&root.join("lib64/ld-linux-x86-64.so.2"));
    Stub::lib(m, "libc.so.6").write(&root.join("lib/x86_64-linux-gnu/libc.so.6"));
    // A plugin folder below a loader directory: listed, as BundleGen does.
    Stub::lib(m, "libgstfoo.so")
        .needs(&["libc.so.6"])
        .write(&root.join("usr/lib/gstreamer-1.0/libgstfoo.so"));
    // Read (its name says library) but not ELF: a linker script.
    std::fs::write(root.join("usr/lib/libtext.so"), "GROUP ( libc.so.6 )\n").expect("write");
    // Malformed, in a loader directory and also reachable through a
    // symlinked alias of that directory: one warning.
    broken_elf(&root.join("usr/lib/x86_64-linux-gnu/libbroken.so.1"));
    std::os::unix::fs::symlink("x86_64-linux-gnu", root.join("usr/lib/alias")).expect("symlink");
    // Outside what the loader searches: never read.
    Stub::lib(m, "libvendor.so.1").write(&root.join("opt/vendor/lib/libvendor.so.1"));
    Stub::lib(m, "libhome.so.1").write(&root.join("home/dev/lib/libhome.so.1"));
    broken_elf(&root.join("tmp/build/libtmp.so.1"));
    broken_elf(&root.join("home/dev/src/libbad.so"));
}

fn init(root: &Path, out: &Path) -> (Vec<String>, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_bundlegen"))
        .args(["platform", "init", "--name", "box", "--rootfs"])
        .arg(root)
        .arg("-o")
        .arg(out)
        .env("CI", "1") // plain progress lines, no bar
        .output()
        .expect("run bundlegen");
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    let libs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("box_libs.json")).expect("inventory"),
    )
    .expect("json");
    let names = libs["libs"]
        .as_array()
        .expect("libs")
        .iter()
        .map(|l| l["name"].as_str().expect("name").to_owned())
        .collect();
    (names, stderr)
}

#[test]
fn init_reads_only_the_loader_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    rootfs(&root);
    let (names, stderr) = init(&root, &dir.path().join("out"));
    assert_eq!(
        names,
        [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/gstreamer-1.0/libgstfoo.so",
        ],
        "{stderr}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("warning: /usr/lib/x86_64-linux-gnu/libbroken.so.1: skipped: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("read the libraries under /lib, /lib64, /usr/lib"),
        "{stderr}"
    );
    // libc, the loader, the plugin, the linker script, the broken file.
    assert!(
        stderr.contains("(3 libraries; 5 files read under the loader's directories)"),
        "{stderr}"
    );
    for outside in ["/opt/vendor", "/home/dev", "/tmp/build"] {
        assert!(!stderr.contains(outside), "{outside} in {stderr}");
    }
}

#[test]
fn init_follows_ld_so_conf_includes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    rootfs(&root);
    std::fs::create_dir_all(root.join("etc/ld.so.conf.d")).expect("mkdir");
    std::fs::write(
        root.join("etc/ld.so.conf"),
        "include /etc/ld.so.conf.d/*.conf\n",
    )
    .expect("write");
    std::fs::write(
        root.join("etc/ld.so.conf.d/vendor.conf"),
        "/opt/vendor/lib\n",
    )
    .expect("write");
    let (names, stderr) = init(&root, &dir.path().join("out"));
    assert!(
        names.iter().any(|n| n == "/opt/vendor/lib/libvendor.so.1"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("/home/")), "{names:?}");
    assert!(
        stderr.contains("(4 libraries; 6 files read under the loader's directories)"),
        "{stderr}"
    );
}
