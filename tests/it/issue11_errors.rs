//! Issue 11, item 6: errors that pointed the wrong way. Each case runs the
//! command and checks the message, the exit code and what was (not)
//! written. (The output-exists help per command is in
//! `cases_57_60::case_57_existing_output_needs_overwrite`.)

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::builder::{Entry, Image, Layer, Layout, RunConfig};
use crate::elfstub::{Machine, Stub};
use crate::faults::{World, assert_failed, base_layer, bin, stderr_of};

const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run bundlegen")
}

/// `generate -u -p qemux86-64 ARGS IMAGE OUT` (no `-a`).
fn generate(image: &str, out: &Path, args: &[&str]) -> Output {
    run(Command::new(bin()).args(["generate", "-u", "-p", "qemux86-64"]).args(args).arg(image).arg(out))
}

/// App metadata problems and a bad `-x` are reported before the image is
/// opened: here the image does not even exist, and the error is the
/// metadata's.
#[test]
fn issue11_app_metadata_is_checked_before_the_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.json");
    crate::faults::app_metadata(&good, json!({}));
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        fs::write(&p, text).expect("write");
        p
    };
    let bad_json = write("bad.json", "{\"id\": ");
    let unknown = write("unknown.json", &{
        let mut v: Value = serde_json::from_slice(&fs::read(&good).expect("read")).expect("json");
        v["colour"] = json!("red");
        v.to_string()
    });
    let wrong_type = write("type.json", &{
        let mut v: Value = serde_json::from_slice(&fs::read(&good).expect("read")).expect("json");
        v["graphics"] = json!("yes");
        v.to_string()
    });
    let image = format!("oci:{}", dir.path().join("no-such-image").display());
    let out = dir.path().join("out");
    let missing = dir.path().join("missing.json");
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (vec!["-a".into(), missing.display().to_string()], vec![missing.display().to_string()]),
        (vec!["-a".into(), bad_json.display().to_string()], vec!["bad.json".into(), "not valid JSON".into()]),
        (vec!["--strict".into(), "-a".into(), unknown.display().to_string()], vec!["unknown.json".into(), "colour".into()]),
        (vec!["-a".into(), wrong_type.display().to_string()], vec!["type.json".into(), "graphics".into()]),
        (vec!["-a".into(), good.display().to_string(), "-x".into(), "../evil".into()], vec!["--appid".into(), "../evil".into()]),
        // Without -a the id is still checked first.
        (vec!["-x".into(), "a b".into()], vec!["--appid".into(), "\"a b\"".into()]),
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = generate(&image, &out, &args);
        let stderr = stderr_of(&o);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_failed(o.status, &stderr, 1, &needles);
        assert!(!stderr.contains("no-such-image"), "{args:?}: the image must not be looked at first:\n{stderr}");
        assert!(!out.exists());
    }
    // The control: good metadata gets as far as the image.
    let o = generate(&image, &out, &["-a", good.to_str().expect("utf-8")]);
    assert_failed(o.status, &stderr_of(&o), 1, &["no-such-image"]);
}

/// A layer whose directory replaces a lower layer's `lib64 -> usr/lib64`
/// takes the loader away: the error says so and names --keep-dirlinks,
/// which then builds the bundle.
#[test]
fn issue11_replaced_dirlink_names_keep_dirlinks() {
    let w = World::new(vec![base_layer()]);
    let layout = w.root.join("dirlink-image");
    let lower = Layer::gz([
        Entry::dir("usr/"),
        Entry::dir("usr/bin/"),
        Entry::dir("usr/lib64/"),
        Entry::file("usr/lib64/ld-linux-x86-64.so.2", Stub::lib(Machine::X86_64, "ld-linux-x86-64.so.2").build()).with_mode(0o755),
        Entry::symlink("lib64", "usr/lib64"),
        Entry::file("usr/bin/app", Stub::exe(Machine::X86_64, LOADER).build()).with_mode(0o755),
    ]);
    let upper = Layer::gz([Entry::dir("lib64/"), Entry::file("lib64/extra.conf", b"x")]);
    let mut image = Image::new(vec![lower, upper]);
    image.run = RunConfig { entrypoint: Some(vec!["/usr/bin/app".into()]), ..RunConfig::default() };
    Layout::single(&layout, image);
    let out = w.command_for(&layout, &[]).stderr(Stdio::piped()).output().expect("run");
    let stderr = stderr_of(&out);
    assert_failed(out.status, &stderr, 2, &[LOADER, "replaced the directory symlink lib64 -> usr/lib64", "help: pass --keep-dirlinks"]);
    w.assert_nothing_written();
    let out = w.command_for(&layout, &["--keep-dirlinks"]).stderr(Stdio::piped()).output().expect("run");
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// A `-s` directory that does not exist is an error naming it, for
/// `generate` and the `platform` commands.
#[test]
fn issue11_missing_search_directory_is_an_error() {
    let w = World::new(vec![base_layer()]);
    let nowhere = w.root.join("templatse");
    let s = nowhere.to_str().expect("utf-8");
    let out = w.command(&["-s", s]).stderr(Stdio::piped()).output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 1, &[&format!("-s {s}: the template search directory does not exist")]);
    w.assert_nothing_written();
    for args in [vec!["platform", "list", "-s", s], vec!["platform", "show", "qemux86-64", "-s", s]] {
        let out = run(Command::new(bin()).args(&args));
        assert_failed(out.status, &stderr_of(&out), 1, &["does not exist"]);
    }
    // A file is not a directory either.
    let out = w.command(&["-s", w.meta.to_str().expect("utf-8")]).stderr(Stdio::piped()).output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 1, &["is not a directory"]);
}

/// `-y` never replaces a regular file given as the output directory.
#[test]
fn issue11_yes_does_not_replace_a_file_with_the_bundle() {
    let w = World::new(vec![base_layer()]);
    fs::write(&w.out, b"not a bundle").expect("write");
    let out = w.command(&["-y"]).stderr(Stdio::piped()).output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 1, &["exists and is not a directory"]);
    assert_eq!(fs::read(&w.out).expect("file intact"), b"not a bundle");
    assert!(!w.archive().exists());
    assert_eq!(w.staged(), Vec::<String>::new());
}

/// A device rootfs with a loader, a shell and one GPU library.
fn device_rootfs(root: &Path) {
    Stub::lib(Machine::X86_64, "ld-linux-x86-64.so.2").write(&root.join("lib64/ld-linux-x86-64.so.2"));
    Stub::exe(Machine::X86_64, LOADER).write(&root.join("bin/sh"));
    Stub::lib(Machine::X86_64, "libGLESv2.so.2").write(&root.join("usr/lib/libGLESv2.so.2"));
}

/// `platform init --name` is a file name inside `-o`, never a path.
#[test]
fn issue11_platform_init_name_stays_inside_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    device_rootfs(&root);
    let out_dir = dir.path().join("out");
    for name in ["../x", "a/b", "..", ""] {
        let o = run(Command::new(bin()).args(["platform", "init", "--rootfs"]).arg(&root).args(["--name", name, "-o"]).arg(&out_dir));
        assert_failed(o.status, &stderr_of(&o), 1, &["--name", "is not a platform name", "help: choose the directory with -o"]);
    }
    assert!(!dir.path().join("x.json").exists() && !dir.path().join("x_libs.json").exists());
    assert!(!out_dir.exists(), "nothing written");
    let o = run(Command::new(bin()).args(["platform", "init", "--rootfs"]).arg(&root).args(["--name", "dev", "-o"]).arg(&out_dir));
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(out_dir.join("dev.json").is_file() && out_dir.join("dev_libs.json").is_file());
}

/// `platform init --from TEMPLATE` drops the template's library mounts the
/// new rootfs lacks (with a warning), keeps the ones it has and non-library
/// sources (sockets, runtime directories).
#[test]
fn issue11_platform_init_from_drops_missing_library_mounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    device_rootfs(&root);
    let from = dir.path().join("board.json");
    let template = json!({
        "platformName": "board", "os": "linux", "arch": {"arch": "amd64"},
        "rdk": {"version": "1", "supportedFeatures": []},
        "hardware": {"graphics": true}, "network": {"options": ["open"]},
        "gpu": {
            "gfxLibs": [
                {"src": "/usr/lib/libEGL.so.1", "dst": "/usr/lib/libEGL.so.1"},
                {"src": "/usr/lib/libGLESv2.so.2", "dst": "/usr/lib/libGLESv2.so.2"}
            ],
            "extraMounts": [
                {"source": "/tmp/nxserver_ipc", "destination": "/tmp/nxserver_ipc", "type": "bind", "options": ["bind", "ro"]},
                {"source": "/usr/lib/libnxpl.so", "destination": "/usr/lib/libnxpl.so", "type": "bind", "options": ["bind", "ro"]}
            ]
        },
        "mounts": [{"source": "/usr/lib/libwesteros_gl.so.0", "destination": "/usr/lib/libwesteros_gl.so.0", "type": "bind", "options": ["rbind", "ro"]}],
        "dobby": {"pluginDependencies": ["/usr/lib/libGLESv2.so.2", "/usr/lib/libdbus-1.so.3"]}
    });
    fs::write(&from, template.to_string()).expect("write template");
    let out_dir = dir.path().join("out");
    let o = run(Command::new(bin()).args(["platform", "init", "--rootfs"]).arg(&root).args(["--name", "dev", "--from"]).arg(&from).arg("-o").arg(&out_dir));
    assert!(o.status.success(), "{}", stderr_of(&o));
    let stderr = stderr_of(&o);
    for gone in ["/usr/lib/libEGL.so.1", "/usr/lib/libnxpl.so", "/usr/lib/libwesteros_gl.so.0", "/usr/lib/libdbus-1.so.3"] {
        assert!(stderr.contains(gone), "a warning names {gone}:\n{stderr}");
    }
    let p: Value = serde_json::from_slice(&fs::read(out_dir.join("dev.json")).expect("template")).expect("json");
    assert_eq!(p["gpu"]["gfxLibs"], json!([{"src": "/usr/lib/libGLESv2.so.2", "dst": "/usr/lib/libGLESv2.so.2"}]));
    assert_eq!(p["gpu"]["extraMounts"].as_array().map(Vec::len), Some(1), "the socket stays: {}", p["gpu"]);
    assert_eq!(p["gpu"]["extraMounts"][0]["source"], "/tmp/nxserver_ipc");
    assert_eq!(p["mounts"], json!([]));
    assert_eq!(p["dobby"]["pluginDependencies"], json!(["/usr/lib/libGLESv2.so.2"]));
}

/// `--oci-output` over a directory that is not an OCI layout: the help
/// does not suggest -y, which would not help.
#[test]
fn issue11_oci_output_exists_help() {
    let w = World::new(vec![base_layer()]);
    let oci = w.root.join("oci-out");
    fs::create_dir(&oci).expect("mkdir");
    fs::write(oci.join("keep"), b"x").expect("write");
    let out = w.command(&["-y", "--oci-output", oci.to_str().expect("utf-8")]).stderr(Stdio::piped()).output().expect("run");
    let stderr = stderr_of(&out);
    assert_failed(out.status, &stderr, 1, &["oci-out already exists and is not empty", "--oci-output replaces an OCI image layout only"]);
    assert!(!stderr.contains("pass -y"), "{stderr}");
}
