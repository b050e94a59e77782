//! `bundlegen generate` end to end: images with real Debian content, a
//! platform made by `platform init` from this machine, bundles run by runc;
//! Dobby-mode bundles for every reference template against Dobby's schema;
//! determinism of config.json and the archive.
//!
//! These tests need umoci, runc and python3 with jsonschema; they fail when
//! one is missing and `CI` is set.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::builder::{Entry, Image, Layer, Layout, RunConfig};
use crate::debian::{self, Arch, PackageSet};
use crate::elfstub::{Machine, Stub};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bundlegen")
}

/// An app whose executable needs libraries a Debian 12 machine rarely has
/// (GSL's libgsl, libgslcblas) and the glibc family it has.
const GSL: PackageSet = PackageSet { name: "app-gsl", packages: &["gsl-bin", "libgsl27", "libgslcblas0"] };
/// `gsl-randist SEED N flat A B`: N uniform deviates, the same for a seed.
const GSL_CMD: &[&str] = &["0", "2", "flat", "0", "1"];

fn tools_present(tools: &[(&str, &str)]) -> bool {
    for (tool, arg) in tools {
        if !debian::have(tool, arg) {
            return debian::unavailable::<()>(&format!("{tool} is not installed")).is_some();
        }
    }
    true
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn umoci(args: &[&str]) {
    run(Command::new("umoci").args(args));
}

/// Builds `layout:latest` with one layer per tree, in order.
fn image_from_trees(layout: &Path, trees: &[&Path], entrypoint: &[&str], cmd: &[&str]) {
    let l = layout.to_str().expect("utf-8 path");
    let image = format!("{l}:latest");
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &image]);
    for tree in trees {
        let bundle = layout.with_extension("bundle");
        umoci(&["unpack", "--rootless", "--image", &image, bundle.to_str().expect("utf-8")]);
        debian::copy_tree(tree, &bundle.join("rootfs"));
        umoci(&["repack", "--image", &image, bundle.to_str().expect("utf-8")]);
        fs::remove_dir_all(&bundle).expect("remove umoci bundle");
    }
    let mut args = vec!["config".to_owned(), "--image".to_owned(), image.clone()];
    for e in entrypoint {
        args.push(format!("--config.entrypoint={e}"));
    }
    for c in cmd {
        args.push(format!("--config.cmd={c}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    umoci(&args);
}

/// The platform of this machine, made once by `platform init --rootfs /`.
fn host_platform() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("bundlegen-hostplat-").tempdir().expect("tempdir").keep();
        run(Command::new(bin()).args(["-q", "platform", "init", "--rootfs", "/", "--name", "testhost", "-o"]).arg(&dir));
        dir
    })
}

fn app_metadata(dir: &Path, id: &str) -> PathBuf {
    let path = dir.join(format!("{id}.json"));
    let app = json!({
        "id": id, "type": "application/vnd.rdk-app.dac.native", "graphics": false,
        "network": {"type": "open"}, "storage": {}, "resources": {"ram": "128M"},
        "features": [], "mounts": []
    });
    fs::write(&path, serde_json::to_vec_pretty(&app).expect("json")).expect("write app metadata");
    path
}

fn generate(args: &[&str], image: &Path, out: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("generate").args(args).arg(format!("oci:{}", image.display())).arg(out);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("run bundlegen generate")
}

fn runc(bundle: &Path, id: &str) -> Output {
    let out = Command::new("runc").args(["run", "--bundle"]).arg(bundle).arg(id).output().expect("run runc");
    let _ = Command::new("runc").args(["delete", "--force", id]).output();
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))).expect("JSON")
}

fn files_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                stack.push(p);
            } else if e.file_name() == name {
                found.push(p);
            }
        }
    }
    found
}

/// Whether this machine's loader finds `soname` (the device side).
fn host_has(soname: &str) -> bool {
    let out = Command::new("ldconfig").arg("-p").output().expect("ldconfig -p");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim_start().starts_with(&format!("{soname} ")))
}

/// Issue 4, acceptance 1: a multi-layer image with real Debian content and
/// an app needing several libraries, bundled for this machine, runs under
/// runc; the glibc family is bind-mounted from the machine and gone from
/// the bundle, libraries the machine lacks stay in the bundle.
#[test]
fn runc_runs_gsl_with_glibc_from_the_device() {
    if !tools_present(&[("umoci", "--version"), ("runc", "--version")]) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = debian::tree(&debian::BASE, Arch::Amd64);
    let app = debian::tree(&GSL, Arch::Amd64);
    let layout = t.path().join("image");
    image_from_trees(&layout, &[&base, &app], &["/usr/bin/gsl-randist"], GSL_CMD);
    let meta = app_metadata(t.path(), "com.example.gsl");
    let out = t.path().join("bundle");
    let report = t.path().join("report.json");
    let plat = host_platform();
    let result = generate(
        &["-u", "-p", "testhost", "-s", plat.to_str().expect("utf-8"), "-a", meta.to_str().expect("utf-8"), "--report", report.to_str().expect("utf-8")],
        &layout,
        &out,
        &[],
    );
    assert!(result.status.success(), "generate failed:\n{}", String::from_utf8_lossy(&result.stderr));

    let config = read_json(&out.join("config.json"));
    assert_eq!(config["ociVersion"], "1.0.2");
    assert_eq!(config["process"]["args"], json!(["/usr/bin/gsl-randist", "0", "2", "flat", "0", "1"]));
    let mounts = config["mounts"].as_array().expect("mounts");
    let libc_mount = mounts
        .iter()
        .find(|m| m["destination"].as_str().is_some_and(|d| d.ends_with("/libc.so.6")))
        .expect("libc.so.6 is bind-mounted from the device");
    let source = libc_mount["source"].as_str().expect("source");
    assert!(Path::new(source).exists(), "{source} exists on the device");
    assert!(libc_mount["options"].as_array().expect("options").contains(&json!("ro")));
    let rootfs = out.join("rootfs");
    for glibc in ["libc.so.6", "libm.so.6"] {
        let left = files_named(&rootfs, glibc);
        assert!(left.is_empty(), "{glibc} left in the bundle: {left:?}");
    }
    let report = read_json(&report);
    let decisions = report["libraries"]["decisions"].as_array().expect("decisions");
    for soname in ["libgsl.so.27", "libgslcblas.so.0"] {
        let d = decisions.iter().find(|d| d["soname"] == soname).unwrap_or_else(|| panic!("no decision for {soname}"));
        if host_has(soname) {
            assert_eq!(d["action"], "from-device", "{soname}: {d}");
        } else {
            assert_eq!(d["action"], "keep-image", "{soname}: {d}");
            assert!(!files_named(&rootfs, soname).is_empty(), "{soname} must stay in the bundle");
        }
    }
    crate::config::validate("oci", &[out.join("config.json")]);
    let checked = Command::new(bin()).args(["validate", "-p", "testhost", "-s"]).arg(plat).arg(&out).output().expect("run validate");
    assert!(checked.status.success(), "validate: {}", String::from_utf8_lossy(&checked.stderr));

    // Last: runc creates the bind-mount destinations in the rootfs.
    let ran = runc(&out, "bundlegen-test-gsl");
    assert!(ran.status.success(), "runc failed:\n{}", String::from_utf8_lossy(&ran.stderr));
    let numbers: Vec<f64> = String::from_utf8_lossy(&ran.stdout).lines().map(|l| l.trim().parse().expect("a number per line")).collect();
    assert_eq!(numbers.len(), 2, "two deviates");
    assert!(numbers.iter().all(|n| (0.0..1.0).contains(n)), "uniform in [0, 1): {numbers:?}");
}

/// Issue 4, acceptance 3: a merged-usr layer over a traditional base, with
/// entrypoint `/sbin/init` reaching `usr/sbin/init` through the new
/// `sbin -> usr/sbin` link, runs under runc.
#[test]
fn merged_usr_image_with_sbin_init_runs() {
    if !tools_present(&[("umoci", "--version"), ("runc", "--version")]) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let fixture = debian::merged_usr(Arch::Amd64);
    let layout = t.path().join("image");
    image_from_trees(&layout, &[&fixture.lower], &["/sbin/init"], &[]);
    let lt = crate::layout_edit::Layout::open(&layout);
    lt.append_layer("latest", "latest", &fs::read(&fixture.upper).expect("upper layer"), crate::layout_edit::Compression::Gzip);
    let mut init = crate::layout_edit::LayerBuilder::new();
    init.file("usr/sbin/init", 0o755, b"#!/bin/sh\necho init-ok\n");
    lt.append_layer("latest", "latest", &init.finish(), crate::layout_edit::Compression::Gzip);

    let meta = app_metadata(t.path(), "com.example.init");
    let out = t.path().join("bundle");
    let plat = host_platform();
    let result = generate(&["-u", "-p", "testhost", "-s", plat.to_str().expect("utf-8"), "-a", meta.to_str().expect("utf-8")], &layout, &out, &[]);
    assert!(result.status.success(), "generate failed:\n{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(fs::read_link(out.join("rootfs/sbin")).expect("sbin is a link"), Path::new("usr/sbin"));
    let ran = runc(&out, "bundlegen-test-init");
    assert!(ran.status.success(), "runc failed:\n{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "init-ok");
}

/// Issue 13: `--runtime` names the runtime. `runc` gets the plain OCI
/// bundle `-u` (crun) gets, byte for byte apart from the report's runtime,
/// and runc runs it; `dobby` is the default; `-u` with `--runtime` and an
/// unknown runtime are usage errors (exit 1) listing the runtimes.
#[test]
fn runtime_flag_selects_the_runtime_profile() {
    if !tools_present(&[("umoci", "--version"), ("runc", "--version")]) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = debian::tree(&debian::BASE, Arch::Amd64);
    let mut hello = crate::layout_edit::LayerBuilder::new();
    hello.file("usr/bin/hello.sh", 0o755, b"#!/bin/sh\necho runtime-ok\n");
    let layout = t.path().join("image");
    image_from_trees(&layout, &[&base], &["/usr/bin/hello.sh"], &[]);
    crate::layout_edit::Layout::open(&layout).append_layer("latest", "latest", &hello.finish(), crate::layout_edit::Compression::Gzip);
    let meta = app_metadata(t.path(), "com.example.runtime");
    let meta = meta.to_str().expect("utf-8");
    let plat = host_platform();
    let plat = plat.to_str().expect("utf-8");
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let run = |name: &str, flags: &[&str]| {
        let out = t.path().join(name);
        let report = t.path().join(format!("{name}.json"));
        let mut args = vec!["-p", "testhost", "-s", plat, "-a", meta, "--no-archive", "--report", report.to_str().expect("utf-8")];
        args.extend(flags);
        let result = generate(&args, &layout, &out, &epoch);
        assert!(result.status.success(), "{name}: {}", String::from_utf8_lossy(&result.stderr));
        (fs::read(out.join("config.json")).expect("config.json"), read_json(&report)["mode"].clone(), out)
    };
    let (crun, crun_mode, _) = run("crun", &["-u"]);
    let (runc_config, runc_mode, runc_bundle) = run("runc", &["--runtime", "runc"]);
    let (dobby, dobby_mode, _) = run("dobby", &["--runtime", "dobby"]);
    let (default, default_mode, _) = run("default", &[]);
    assert_eq!((crun_mode, runc_mode), (json!("crun"), json!("runc")));
    assert_eq!(runc_config, crun, "runc and crun take the same bundle");
    assert_eq!((dobby_mode, default_mode), (json!("dobby"), json!("dobby")));
    assert_eq!(dobby, default, "dobby is the default");
    let dobby: Value = serde_json::from_slice(&dobby).expect("json");
    assert!(dobby.get("rdkPlugins").is_some() && dobby["ociVersion"] == "1.0.2-dobby", "{dobby}");
    let plain: Value = serde_json::from_slice(&runc_config).expect("json");
    assert!(plain.get("rdkPlugins").is_none() && plain["ociVersion"] == "1.0.2", "{plain}");
    let ran = runc(&runc_bundle, "bundlegen-test-runtime");
    assert!(ran.status.success(), "runc failed:\n{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "runtime-ok");

    for (flags, wanted) in [(&["-u", "--runtime", "runc"][..], "cannot be used with"), (&["--runtime", "youki"][..], "[possible values: dobby, crun, runc]")] {
        let out = t.path().join("refused");
        let mut args = vec!["-p", "testhost", "-s", plat, "-a", meta];
        args.extend(flags);
        let result = generate(&args, &layout, &out, &[]);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(wanted), "{flags:?}: {stderr}");
        assert!(!out.exists(), "{flags:?}: nothing written");
    }
}

/// Issue 4, acceptance 3: the entrypoint exists only under another path:
/// exit 2, both paths named.
#[test]
fn entrypoint_under_another_path_exits_2_naming_both() {
    if !tools_present(&[("umoci", "--version")]) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = debian::tree(&debian::BASE, Arch::Amd64);
    let extra = t.path().join("extra");
    fs::create_dir_all(extra.join("usr/sbin")).expect("mkdir");
    fs::write(extra.join("usr/sbin/init"), "#!/bin/sh\necho init\n").expect("write init");
    std::os::unix::fs::PermissionsExt::set_mode(&mut fs::metadata(extra.join("usr/sbin/init")).expect("meta").permissions(), 0o755);
    let layout = t.path().join("image");
    image_from_trees(&layout, &[&base, &extra], &["/sbin/init"], &[]);
    let meta = app_metadata(t.path(), "com.example.init");
    let out = t.path().join("bundle");
    let result = generate(&["-u", "-p", "qemux86-64", "-a", meta.to_str().expect("utf-8")], &layout, &out, &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("/sbin/init") && stderr.contains("/usr/sbin/init"), "both paths named:\n{stderr}");
    assert!(!out.exists(), "no bundle is left under the final name");
}

/// Issue 4, acceptance 4: two runs, and runs with 1 and 2 worker threads,
/// give byte-identical config.json and archives.
#[test]
fn generate_is_deterministic_across_runs_and_threads() {
    if !tools_present(&[("umoci", "--version")]) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = debian::tree(&debian::BASE, Arch::Amd64);
    let app = debian::tree(&GSL, Arch::Amd64);
    let layout = t.path().join("image");
    image_from_trees(&layout, &[&base, &app], &["/usr/bin/gsl-randist"], GSL_CMD);
    let meta = app_metadata(t.path(), "com.example.gsl");
    let mut outputs = Vec::new();
    for (i, threads) in ["1", "2", "2", "1"].iter().enumerate() {
        let out = t.path().join(format!("bundle{i}"));
        let result = generate(
            &["-p", "qemux86-64", "-a", meta.to_str().expect("utf-8"), "-j", threads],
            &layout,
            &out,
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        );
        assert!(result.status.success(), "generate failed:\n{}", String::from_utf8_lossy(&result.stderr));
        let config = fs::read(out.join("config.json")).expect("config.json");
        let archive = fs::read(t.path().join(format!("bundle{i}.tar.gz"))).expect("archive");
        outputs.push((config, archive));
    }
    for (i, o) in outputs.iter().enumerate().skip(1) {
        assert!(o.0 == outputs[0].0, "config.json of run {i} differs from run 0");
        assert!(o.1 == outputs[0].1, "archive of run {i} differs from run 0");
    }
    // The archive is a valid gzip'd tar whose newest entry is SOURCE_DATE_EPOCH.
    let listing = run(Command::new("tar").args(["--full-time", "-tvzf"]).arg(t.path().join("bundle0.tar.gz")));
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(text.contains("config.json") && text.contains("rootfs/usr/bin/gsl-randist"), "{text}");
    assert!(text.lines().all(|l| !l.contains(" 2024-") && !l.contains(" 2025-") && !l.contains(" 2026-")), "mtimes clamped:\n{text}");
}

fn machine_of(arch: &str) -> (Machine, &'static str) {
    match arch {
        "arm" => (Machine::Arm, "arm"),
        "aarch64" | "arm64" => (Machine::Aarch64, "arm64"),
        _ => (Machine::X86_64, "amd64"),
    }
}

/// Issue 4, acceptance 2: Dobby-mode bundles for each sample app on each
/// reference template validate against Dobby's schema where the pair is
/// compatible; incompatible pairs exit 2 with a message.
#[test]
fn dobby_bundles_for_every_sample_on_every_template() {
    let reference = debian::reference_dir();
    let samples: Vec<PathBuf> = ["helloworld.json", "flutter_reference.json"]
        .iter()
        .map(|s| reference.join("bundlegen/sample_app_metadata").join(s))
        .collect();
    let t = tempfile::tempdir().expect("tempdir");
    let mut configs = Vec::new();
    let mut incompatible = 0;
    for template in crate::config::templates() {
        let text = read_json(&template);
        let arch = text["arch"]["arch"].as_str().unwrap_or("amd64");
        let variant = text["arch"]["variant"].as_str();
        let (machine, oci_arch) = machine_of(arch);
        // A static executable for the platform's machine as the entrypoint.
        let stub = Stub { e_type: 2, interp: None, soname: None, ..Stub::lib(machine, "") }.build();
        let layout_dir = t.path().join(format!("img-{oci_arch}-{}", variant.unwrap_or("")));
        if !layout_dir.exists() {
            let image = Image::new([Layer::gz([Entry::dir("usr/"), Entry::dir("usr/bin/"), Entry::file("usr/bin/app", stub).with_mode(0o755)])])
                .platform(oci_arch, "linux", variant.map(|v| if oci_arch == "arm64" { "v8" } else { v }))
                .tag("latest");
            let mut image = image;
            image.run = RunConfig { entrypoint: Some(vec!["/usr/bin/app".into()]), ..RunConfig::default() };
            let layout = Layout::create(&layout_dir);
            let d = image.store(&layout);
            layout.write_index(vec![d]);
        }
        for sample in &samples {
            let name = format!(
                "{}-{}",
                template.file_stem().and_then(|s| s.to_str()).unwrap_or("t"),
                sample.file_stem().and_then(|s| s.to_str()).unwrap_or("s")
            );
            let out = t.path().join(&name);
            let result = Command::new(bin())
                .args(["generate", "-q", "--no-archive", "-p"])
                .arg(&template)
                .arg("-a")
                .arg(sample)
                .arg(format!("oci:{}", layout_dir.display()))
                .arg(&out)
                .output()
                .expect("run bundlegen");
            let stderr = String::from_utf8_lossy(&result.stderr);
            match result.status.code() {
                Some(0) => {
                    let config = read_json(&out.join("config.json"));
                    assert_eq!(config["ociVersion"].as_str().map(|v| v == "1.0.2-dobby" || v == "1.0.2"), Some(true), "{name}");
                    assert_eq!(config["process"]["args"][0], "/usr/libexec/DobbyInit", "{name}");
                    configs.push(out.join("config.json"));
                }
                Some(2) => {
                    assert!(stderr.contains("error:"), "{name}: exit 2 needs a message:\n{stderr}");
                    assert!(!out.exists(), "{name}: no bundle for an incompatible pair");
                    incompatible += 1;
                }
                other => panic!("{name}: exit {other:?}:\n{stderr}"),
            }
        }
    }
    assert!(configs.len() >= 10, "most pairs are compatible ({} were, {incompatible} were not)", configs.len());
    crate::config::validate("dobby", &configs);

    // `bundlegen validate` agrees with Python's jsonschema, and catches a
    // broken config.
    for config in &configs {
        let bundle = config.parent().expect("bundle dir");
        let out = Command::new(bin()).arg("validate").arg(bundle).output().expect("run validate");
        assert!(out.status.success(), "validate {}: {}", bundle.display(), String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid (dobby schema)"));
    }
    let broken = configs[0].parent().expect("bundle dir");
    let mut config = read_json(&configs[0]);
    config["process"]["args"] = json!("/usr/bin/app --flag");
    fs::write(&configs[0], serde_json::to_vec(&config).expect("json")).expect("write");
    let out = Command::new(bin()).arg("validate").arg(broken).output().expect("run validate");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/process/args"), "{}", String::from_utf8_lossy(&out.stderr));
}
