//! Hostile-input cases 57, 59 and 60 (docs/security.md) through the real binary: where outputs may
//! go, broken metadata files, and device paths. Case 58 (a run killed or
//! out of space half-way) is tested in `faults.rs`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::builder::{Entry, Image, Layer, Layout, RunConfig};
use crate::elfstub::{Machine, Stub};
use crate::faults::{Snapshot, World, assert_failed, base_layer, bin, staged_in, stderr_of};

fn unpack(layout: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(["-q", "unpack"])
        .args(args)
        .arg(format!("oci:{}", layout.display()))
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run bundlegen unpack")
}

fn generate(w: &World, out: &Path, args: &[&str]) -> Output {
    w.command_to(&w.layout, out, args).stderr(Stdio::piped()).output().expect("run bundlegen generate")
}

/// A directory with one file, to tell whether anything changed in it.
fn occupied(dir: &Path) -> Snapshot {
    fs::create_dir_all(dir).expect("mkdir");
    fs::write(dir.join("keep"), b"previous").expect("write");
    Snapshot::of(&[dir])
}

// ---------------------------------------------------------------------------
// 57: an output that exists, is a symlink, or lies inside the input image
// ---------------------------------------------------------------------------

/// An existing non-empty output is refused (exit 1) unless `-y`/`--force`
/// asks to replace it; an empty directory is used.
#[test]
fn case_57_existing_output_needs_overwrite() {
    let w = World::new(vec![base_layer()]);
    let before = occupied(&w.out);
    let out = generate(&w, &w.out, &[]);
    assert_failed(out.status, &stderr_of(&out), 1, &["already exists and is not empty", "help: pass -y to replace it"]);
    assert!(!stderr_of(&out).contains("pass --force"), "generate has no --force");
    assert_eq!(Snapshot::of(&[&w.out]), before);
    let out = unpack(&w.layout, &w.out, &[]);
    assert_failed(out.status, &stderr_of(&out), 1, &["already exists and is not empty", "help: pass --force (-f) to replace it"]);
    assert!(!stderr_of(&out).contains("pass -y"), "unpack has no -y");
    assert_eq!(Snapshot::of(&[&w.out]), before);
    assert_eq!(staged_in(&w.parent), Vec::<String>::new());

    // The archive alone is replaced, as BundleGen's create_tgz does
    // (issue 11; see issue11_cli::issue11_existing_archive_is_replaced).

    // An empty directory is used; -y and --force replace.
    fs::remove_dir_all(&w.out).expect("rm");
    fs::create_dir(&w.out).expect("mkdir");
    let out = generate(&w, &w.out, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = generate(&w, &w.out, &["-y"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rootfs = w.root.join("rootfs");
    occupied(&rootfs);
    let out = unpack(&w.layout, &rootfs, &["--force"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(rootfs.join("usr/bin/app").is_file() && !rootfs.join("keep").exists());
}

/// A symlink at the output is never written through, even with `-y` or
/// `--force`, also when spelled with a trailing `/` or dangling; the
/// directory it points to is untouched and nothing is created at a dangling
/// target.
#[test]
fn case_57_symlinked_output_is_never_followed() {
    let w = World::new(vec![base_layer()]);
    let elsewhere = w.root.join("elsewhere");
    let before = occupied(&elsewhere);
    symlink(&elsewhere, &w.out).expect("symlink");
    let spelled_with_slash = format!("{}/", w.out.display());
    for out_path in [w.out.clone(), spelled_with_slash.clone().into()] {
        for args in [&[][..], &["-y"][..]] {
            let out = generate(&w, &out_path, args);
            assert_failed(out.status, &stderr_of(&out), 1, &["is a symbolic link; refusing to write through it"]);
        }
        for args in [&[][..], &["--force"][..]] {
            let out = unpack(&w.layout, &out_path, args);
            assert_failed(out.status, &stderr_of(&out), 1, &["is a symbolic link"]);
        }
    }
    assert_eq!(Snapshot::of(&[&elsewhere]), before);
    assert!(fs::symlink_metadata(&w.out).expect("link").file_type().is_symlink());
    assert!(!w.archive().exists());

    let dangling = w.root.join("nowhere");
    fs::remove_file(&w.out).expect("rm link");
    symlink(&dangling, &w.out).expect("symlink");
    let out = generate(&w, &w.out, &["-y"]);
    assert_failed(out.status, &stderr_of(&out), 1, &["is a symbolic link"]);
    let out = unpack(&w.layout, &w.out, &["--force"]);
    assert_failed(out.status, &stderr_of(&out), 1, &["is a symbolic link"]);
    assert!(!dangling.exists(), "nothing created through a dangling link");
    assert_eq!(staged_in(&w.parent), Vec::<String>::new());

    // Files named on the command line are replaced, not written through:
    // the archive (with -y) and the report.
    fs::remove_file(&w.out).expect("rm link");
    let target = w.root.join("precious");
    fs::write(&target, b"precious").expect("write");
    symlink(&target, w.archive()).expect("symlink");
    let report = w.parent.join("report.json");
    symlink(&target, &report).expect("symlink");
    let out = generate(&w, &w.out, &["-y", "--report", report.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(fs::read(&target).expect("target"), b"precious");
    assert!(!fs::symlink_metadata(w.archive()).expect("archive").file_type().is_symlink());
    assert!(!fs::symlink_metadata(&report).expect("report").file_type().is_symlink());
}

/// A symlink in a parent directory is followed as usual (a deploy
/// directory that is a link is legitimate); only the last component must
/// not be one.
#[test]
fn case_57_symlinked_parent_directory_is_followed() {
    let w = World::new(vec![base_layer()]);
    let via = w.root.join("deploy-link");
    symlink(&w.parent, &via).expect("symlink");
    let out = generate(&w, &via.join("bundle"), &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(w.out.join("config.json").is_file() && w.archive().is_file());
    assert_eq!(staged_in(&w.parent), Vec::<String>::new());
}

/// An output inside the image layout, or containing it, is refused (exit 1)
/// even with `-y`/`--force`, also when reached through a symlinked parent;
/// `--oci-output` may not be the input layout or the bundle.
#[test]
fn case_57_output_inside_the_image_is_refused() {
    let w = World::new(vec![base_layer()]);
    let image_before = Snapshot::of(&[&w.layout]);
    let via = w.root.join("image-link");
    symlink(&w.layout, &via).expect("symlink");
    for (out_path, relation) in [
        (w.layout.join("bundle"), "is inside the image layout"),
        (w.layout.join("blobs"), "is inside the image layout"),
        (w.layout.join("blobs/sha256"), "is inside the image layout"),
        (via.join("bundle"), "is inside the image layout"),
        (w.layout.clone(), "is inside the image layout"),
        (w.root.clone(), "contains the image layout"),
    ] {
        let out = generate(&w, &out_path, &["-y"]);
        assert_failed(out.status, &stderr_of(&out), 1, &[relation, "help: write the output outside the input"]);
        let out = unpack(&w.layout, &out_path, &["--force"]);
        assert_failed(out.status, &stderr_of(&out), 1, &[relation]);
    }
    assert_eq!(Snapshot::of(&[&w.layout]), image_before, "the image is untouched");

    let layout = w.layout.to_str().expect("utf-8");
    let out = generate(&w, &w.out, &["--oci-output", layout]);
    assert_failed(out.status, &stderr_of(&out), 1, &["is inside the image layout"]);
    let inside_bundle = w.out.join("oci");
    let out = generate(&w, &w.out, &["--oci-output", inside_bundle.to_str().expect("utf-8")]);
    assert_failed(out.status, &stderr_of(&out), 1, &["is inside the bundle directory"]);
    assert_eq!(Snapshot::of(&[&w.layout]), image_before);
    assert!(!w.out.exists());
}

// ---------------------------------------------------------------------------
// 59: malformed platform and app metadata
// ---------------------------------------------------------------------------

fn app(extra: Value) -> Value {
    let mut app = json!({
        "id": "com.example.case59", "type": "application/vnd.rdk-app.dac.native", "graphics": false,
        "network": {"type": "open"}, "storage": {}, "resources": {"ram": "64M"}, "features": [], "mounts": []
    });
    if let (Some(a), Some(e)) = (app.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    app
}

fn platform() -> Value {
    serde_json::from_str(include_str!("../../src/platform/builtin/qemux86-64.json")).expect("builtin JSON")
}

/// Writes `text` to `dir/name` and runs generate with it as the app
/// metadata (`-a`), platform (`-p`) or operator file.
fn with_file(w: &World, flag: &str, name: &str, text: &str, extra: &[&str]) -> Output {
    let path = w.root.join(name);
    fs::write(&path, text).expect("write");
    let mut cmd = Command::new(bin());
    cmd.args(["-q", "generate", "-u"]);
    if flag != "-p" {
        cmd.args(["-p", "qemux86-64"]);
    }
    if flag != "-a" {
        cmd.arg("-a").arg(&w.meta);
    }
    cmd.arg(flag).arg(&path).args(extra).arg(format!("oci:{}", w.layout.display())).arg(&w.out);
    cmd.stdin(Stdio::null()).output().expect("run")
}

/// Each broken app metadata, platform or operator file: exit 1, a message
/// naming the file, the key and the allowed form, nothing written.
#[test]
fn case_59_malformed_metadata_names_file_key_and_form() {
    let w = World::new(vec![base_layer()]);
    let size_form = "a number of bytes with an optional unit K, M, G or T";
    // (flag, file name, content, message fragments, extra arguments)
    type Case<'a> = (&'a str, &'a str, String, Vec<&'a str>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        ("-a", "app.json", "{\"id\": ".into(), vec!["app.json: not valid JSON", "line 1"], &[]),
        ("-a", "app.json", "[1, 2]".into(), vec!["app.json: the top level must be a JSON object"], &[]),
        ("-a", "app.json", app(json!({"colour": "blue"})).to_string(), vec!["app.json: colour: unknown key"], &["--strict"]),
        ("-a", "app.json", app(json!({"graphics": "yes"})).to_string(), vec!["app.json: graphics: invalid value", "expected a boolean"], &[]),
        ("-a", "app.json", app(json!({"resources": {"ram": "-5M"}})).to_string(), vec!["app.json: resources.ram: invalid value", "\"-5M\"", size_form], &[]),
        ("-a", "app.json", app(json!({"resources": {"ram": "10ZB"}})).to_string(), vec!["app.json: resources.ram: invalid value", "\"10ZB\"", size_form], &[]),
        ("-a", "app.json", app(json!({"resources": {"ram": -5}})).to_string(), vec!["app.json: resources.ram: invalid value", "cannot be negative", size_form], &[]),
        ("-a", "app.json", app(json!({"resources": {"ram": "99999999999T"}})).to_string(), vec!["app.json: resources.ram: invalid value", "too large", size_form], &[]),
        ("-a", "app.json", app(json!({"storage": {"temp": [{"size": "1e400", "path": "/tmp/x"}]}})).to_string(), vec!["app.json: storage.temp[0].size: invalid value", size_form], &[]),
        ("-a", "app.json", app(json!({"id": 7})).to_string(), vec!["app.json: id: invalid value", "expected a string"], &[]),
        ("-p", "dev.json", "{\"platformName\": ".into(), vec!["dev.json: not valid JSON"], &[]),
        ("-p", "dev.json", { let mut p = platform(); p["hardware"]["maxRam"] = json!("-5M"); p.to_string() }, vec!["dev.json: hardware.maxRam: invalid value", "\"-5M\"", size_form], &[]),
        ("-p", "dev.json", { let mut p = platform(); p["storage"]["persistent"]["maxSize"] = json!("10ZB"); p.to_string() }, vec!["dev.json: storage.persistent.maxSize: invalid value", "\"10ZB\"", size_form], &[]),
        ("-p", "dev.json", { let mut p = platform(); p["hardware"]["graphcis"] = json!(true); p.to_string() }, vec!["dev.json: hardware.graphcis: unknown key"], &["--strict"]),
        ("-p", "dev.json", { let mut p = platform(); p["network"]["options"] = json!("open"); p.to_string() }, vec!["dev.json: network.options: invalid value", "expected a sequence"], &[]),
        ("--operator", "operator.json", "{\"env\": [".into(), vec!["operator.json", "not valid JSON"], &[]),
        ("--operator", "operator.json", "{\"evn\": []}".into(), vec!["operator.json: evn: unknown key"], &["--strict"]),
        ("--operator", "operator.json", "{\"env\": [\"=x\"]}".into(), vec!["operator.json: env[0]", "NAME=VALUE"], &[]),
    ];
    for (flag, name, text, needles, extra) in &cases {
        let out = with_file(&w, flag, name, text, extra);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{flag} {text}: {stderr}");
        assert_failed(out.status, &stderr, 1, needles);
        assert!(!w.out.exists() && !w.archive().exists(), "{flag} {text}: nothing written");
        assert_eq!(staged_in(&w.parent), Vec::<String>::new(), "{flag} {text}");
    }
    // Without --strict, an unknown key is a warning naming file and key.
    let out = with_file(&w, "-a", "app.json", &app(json!({"colour": "blue"})).to_string(), &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("warning: ") && stderr_of(&out).contains("app.json: colour: unknown key"), "{}", stderr_of(&out));
}

/// The image's own `/appmetadata.json`, broken, is named as
/// `IMAGE:/appmetadata.json`.
#[test]
fn case_59_broken_appmetadata_in_the_image_is_named() {
    let w = World::new(vec![base_layer(), Layer::gz([Entry::file("appmetadata.json", "{\"id\": \"x\", \"resources\": {\"ram\": \"-5M\"}}")])]);
    let out = Command::new(bin())
        .args(["-q", "generate", "-u", "-p", "qemux86-64"])
        .arg(format!("oci:{}", w.layout.display()))
        .arg(&w.out)
        .output()
        .expect("run");
    let name = format!("{}:/appmetadata.json: resources.ram: invalid value", w.layout.display());
    assert_failed(out.status, &stderr_of(&out), 1, &[&name, "\"-5M\""]);
    assert!(!w.out.exists());
    assert_eq!(staged_in(&w.parent), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 60: device paths with `..` or relative, never resolved on the build host
// ---------------------------------------------------------------------------

/// An x86-64 image whose /usr/bin/app needs libfoo.so.1 (kept in the image
/// at /usr/lib), with its loader.
fn dynamic_image(dir: &Path) {
    const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
    let app = Stub::exe(Machine::X86_64, LOADER).needs(&["libfoo.so.1"]).build();
    let libfoo = Stub::lib(Machine::X86_64, "libfoo.so.1").build();
    let loader = Stub::lib(Machine::X86_64, "ld-linux-x86-64.so.2").build();
    let mut image = Image::new([Layer::gz([
        Entry::dir("usr/"),
        Entry::dir("usr/bin/"),
        Entry::dir("usr/lib/"),
        Entry::dir("lib64/"),
        Entry::file("usr/bin/app", app).with_mode(0o755),
        Entry::file("usr/lib/libfoo.so.1", libfoo),
        Entry::file(&LOADER[1..], loader).with_mode(0o755),
    ])]);
    image.run = RunConfig { entrypoint: Some(vec!["/usr/bin/app".into()]), ..RunConfig::default() };
    Layout::single(dir, image);
}

/// A platform directory `dev/` with `dev.json` (the built-in qemux86-64
/// edited by `edit`) and `dev_libs.json` listing `libs`.
fn platform_dir(root: &Path, edit: impl Fn(&mut Value), libs: Value) -> std::path::PathBuf {
    let dir = root.join("dev");
    fs::create_dir_all(&dir).expect("mkdir");
    let mut p = platform();
    edit(&mut p);
    fs::write(dir.join("dev.json"), p.to_string()).expect("write");
    fs::write(dir.join("dev_libs.json"), json!({ "libs": libs }).to_string()).expect("write");
    dir.join("dev.json")
}

fn lib_entry(name: &str, deps: &[&str]) -> Value {
    json!({"name": name, "apiversions": [], "deps": deps})
}

fn generate_for(w: &World, layout: &Path, platform: &Path, meta: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .args(["-q", "generate", "-u", "-m", "host", "-p"])
        .arg(platform)
        .arg("-a")
        .arg(meta)
        .args(extra)
        .arg(format!("oci:{}", layout.display()))
        .arg(&w.out)
        .output()
        .expect("run")
}

/// Relative paths and `..` in `_libs.json`, template mounts and GPU paths,
/// app metadata and operator mounts: exit 1 naming the file, the key and
/// the form.
#[test]
fn case_60_relative_and_dotdot_device_paths_are_refused() {
    let w = World::new(vec![base_layer()]);
    let layout = w.root.join("dynamic");
    dynamic_image(&layout);
    let good_lib = lib_entry("/usr/lib/libfoo.so.1", &[]);
    let form = "is not an absolute path without `..` components";
    // (_libs.json entries, template edit, key named, value quoted)
    type Case = (Value, Box<dyn Fn(&mut Value)>, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (json!([lib_entry("usr/lib/libfoo.so.1", &[])]), Box::new(|_| {}), "dev_libs.json: libs[0].name", "\"usr/lib/libfoo.so.1\""),
        (json!([lib_entry("/usr/lib/../../etc/libfoo.so.1", &[])]), Box::new(|_| {}), "dev_libs.json: libs[0].name", "/usr/lib/../../etc/libfoo.so.1"),
        (json!([lib_entry("/usr/lib/libfoo.so.1", &["libc.so.6"])]), Box::new(|_| {}), "dev_libs.json: libs[0].deps[0]", "\"libc.so.6\""),
        (
            json!([good_lib]),
            Box::new(|p| p["mounts"] = json!([{"source": "data/app", "destination": "/data", "type": "bind", "options": ["rbind"]}])),
            "dev.json: mounts[0].source",
            "\"data/app\"",
        ),
        (
            json!([good_lib]),
            Box::new(|p| p["mounts"] = json!([{"source": "/opt/../../etc", "destination": "/etc/x", "options": ["bind", "ro"]}])),
            "dev.json: mounts[0].source",
            "/opt/../../etc",
        ),
        (
            json!([good_lib]),
            Box::new(|p| p["mounts"] = json!([{"source": "/opt", "destination": "../escape", "type": "bind"}])),
            "dev.json: mounts[0].destination",
            "../escape",
        ),
        (
            json!([good_lib]),
            Box::new(|p| p["gpu"] = json!({"gfxLibs": [{"src": "../libEGL.so.1", "dst": "/usr/lib/libEGL.so.1"}]})),
            "dev.json: gpu.gfxLibs[0].src",
            "../libEGL.so.1",
        ),
        (
            json!([good_lib]),
            Box::new(|p| p["storage"]["persistent"]["storageDir"] = json!("opt/apps")),
            "dev.json: storage.persistent.storageDir",
            "opt/apps",
        ),
        (json!([good_lib]), Box::new(|p| p["dobby"]["pluginDependencies"] = json!(["/usr/lib/../lib/x.so"])), "dev.json: dobby.pluginDependencies[0]", "x.so"),
    ];
    for (libs, edit, key, value) in &cases {
        let plat = platform_dir(&w.root, edit, libs.clone());
        let out = generate_for(&w, &layout, &plat, &w.meta, &[]);
        let stderr = stderr_of(&out);
        assert_failed(out.status, &stderr, 1, &[key, value, form, "never looked up on the build machine"]);
        assert!(!w.out.exists(), "{key}");
        // `platform validate` agrees on templates.
        if key.starts_with("dev.json") {
            let v = Command::new(bin()).args(["platform", "validate"]).arg(&plat).output().expect("run");
            assert_failed(v.status, &stderr_of(&v), 1, &[key]);
        }
    }

    // Mounts in app metadata and operator files.
    let plat = platform_dir(&w.root, |_| {}, json!([good_lib]));
    let meta = w.root.join("app-mount.json");
    fs::write(&meta, app(json!({"mounts": [{"source": "relative/dir", "destination": "/data", "type": "bind"}]})).to_string()).expect("write");
    let out = generate_for(&w, &layout, &plat, &meta, &[]);
    assert_failed(out.status, &stderr_of(&out), 1, &["app-mount.json: mounts[0].source", "\"relative/dir\"", "absolute path without `..`"]);
    let operator = w.root.join("operator.json");
    fs::write(&operator, json!({"mounts": [{"source": "/srv/../..", "destination": "/srv", "options": ["rbind"]}]}).to_string()).expect("write");
    let out = generate_for(&w, &layout, &plat, &w.meta, &["--operator", operator.to_str().expect("utf-8")]);
    assert_failed(out.status, &stderr_of(&out), 1, &["operator.json: mounts[0].source", "/srv/../.."]);
    assert_eq!(staged_in(&w.parent), Vec::<String>::new());
}

/// Device paths are used as written: a library path and a mount source that
/// exist on the build machine as symlinks elsewhere end up in config.json
/// unchanged, and file system mounts keep their type names as sources.
#[test]
fn case_60_device_paths_are_never_resolved_on_the_build_host() {
    let w = World::new(vec![base_layer()]);
    let layout = w.root.join("dynamic");
    dynamic_image(&layout);
    // On this machine, these paths are symlinks to files that must not be
    // what the bundle mounts.
    let host = w.root.join("host/usr/lib");
    fs::create_dir_all(&host).expect("mkdir");
    let lib = host.join("libfoo.so.1");
    symlink("/etc/hostname", &lib).expect("symlink");
    let data = w.root.join("host/data");
    symlink("/etc", &data).expect("symlink");
    let lib_s = lib.to_str().expect("utf-8").to_owned();
    let data_s = data.to_str().expect("utf-8").to_owned();
    let plat = platform_dir(
        &w.root,
        |p| {
            p["mounts"]
                .as_array_mut()
                .expect("mounts")
                .push(json!({"source": data_s.clone(), "destination": "/data", "type": "bind", "options": ["rbind", "ro"]}));
        },
        json!([lib_entry(&lib_s, &[])]),
    );
    let out = generate_for(&w, &layout, &plat, &w.meta, &["--no-archive"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let config: Value = serde_json::from_slice(&fs::read(w.out.join("config.json")).expect("config")).expect("JSON");
    let mounts = config["mounts"].as_array().expect("mounts");
    let source_of = |dest: &str| mounts.iter().find(|m| m["destination"] == dest).map(|m| m["source"].clone());
    assert_eq!(source_of("/usr/lib/libfoo.so.1"), Some(json!(lib_s)), "the library is mounted from its device path: {mounts:?}");
    assert_eq!(source_of("/data"), Some(json!(data_s)));
    assert_eq!(source_of("/tmp"), Some(json!("tmpfs")));
    assert!(!w.out.join("rootfs/usr/lib/libfoo.so.1").exists(), "the image copy made way for the device's");
}
