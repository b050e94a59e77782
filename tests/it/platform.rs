//! Platform templates: BundleGen's real templates, merging, errors,
//! built-ins, and `platform init` checked against readelf and the schemas.

use std::path::{Path, PathBuf};
use std::process::Command;

use bundlegen::diag::{Collected, Silent};
use bundlegen::input::LoadError;
use bundlegen::platform::{self, InitOptions, LoadOptions, PlatformError};
use serde_json::{Value, json};

use crate::debian;
use crate::elfstub::{Machine, Stub};

fn templates_dir() -> PathBuf {
    debian::reference_dir().join("bundlegen/templates")
}

fn schema(name: &str) -> PathBuf {
    debian::reference_dir().join("bundlegen/schema").join(name)
}

fn template_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["generic", "lgi"] {
        let rd = std::fs::read_dir(templates_dir().join(sub)).expect("reference templates");
        out.extend(rd.filter_map(Result::ok).map(|e| e.path()));
    }
    out.sort();
    out
}

#[test]
fn every_bundlegen_template_loads_and_validates() {
    let all = template_files();
    let templates: Vec<&PathBuf> = all
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with("_libs.json"))
        .collect();
    assert!(templates.len() >= 14, "{templates:?}");
    let diag = Collected::default();
    let opts = LoadOptions {
        load_libs: true,
        ..LoadOptions::default()
    };
    for t in &templates {
        platform::validate_file(t, false, &diag).unwrap_or_else(|e| panic!("{e:#}"));
        let p = platform::load_file(t, &opts, &diag).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(p.spec.platform_name.is_some());
        let has_libs_file = all
            .iter()
            .any(|f| f.file_name() == p.libs_path.as_ref().and_then(|l| l.file_name()));
        assert_eq!(p.libs.is_some(), has_libs_file, "{}", t.display());
    }
    // The only keys BundleGen does not read are two test leftovers.
    let warnings: Vec<String> = diag.warnings().iter().map(|w| w.to_string()).collect();
    let unknown: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("unknown key"))
        .collect();
    assert_eq!(unknown.len(), 4, "{warnings:#?}"); // validate + load, two keys each
    assert!(
        unknown
            .iter()
            .all(|w| w.contains("rpi3_reference_vc4_dunfell_test.json"))
    );
    assert!(
        unknown
            .iter()
            .any(|w| w.contains(": storage.persistent.size: unknown key"))
    );
    assert!(
        unknown
            .iter()
            .any(|w| w.contains(": storage.persistent.path: unknown key"))
    );
    // Strict mode turns that into an error naming file and key.
    let test_tpl = templates_dir().join("generic/rpi3_reference_vc4_dunfell_test.json");
    let err = platform::validate_file(&test_tpl, true, &Silent).expect_err("strict");
    assert!(
        err.to_string()
            .ends_with("storage.persistent.size: unknown key"),
        "{err}"
    );
    // Sizes are binary multiples, as BundleGen computes them.
    let p = platform::load_file(&test_tpl, &LoadOptions::default(), &Silent).expect("load");
    assert_eq!(
        p.spec.hardware.and_then(|h| h.max_ram).map(|s| s.bytes()),
        Some(120 << 20)
    );
}

#[test]
fn libs_inventories_load() {
    for f in template_files()
        .iter()
        .filter(|p| p.to_string_lossy().ends_with("_libs.json"))
    {
        let inv = platform::LibsInventory::load(f).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!inv.libs.is_empty());
    }
}

#[test]
fn lookup_is_by_exact_name_recursively() {
    let opts = LoadOptions {
        search_paths: vec![templates_dir()],
        load_libs: true,
        ..LoadOptions::default()
    };
    // BundleGen matches by substring: "rpi3_reference" would also hit rpi3_reference_dunfell.
    let p = platform::load("rpi3_reference", &opts, &Silent).expect("found");
    assert_eq!(
        p.sources,
        [templates_dir().join("generic/rpi3_reference.json")]
    );
    assert_eq!(
        p.libs_path,
        Some(templates_dir().join("generic/rpi3_reference_libs.json"))
    );
    let p = platform::load("7218c_reference", &opts, &Silent).expect("found in lgi/");
    assert_eq!(p.oci_arch(), Some("arm"));
    let err = platform::load("rpi3", &opts, &Silent).expect_err("no substring match");
    let msg = err.to_string();
    assert!(msg.contains("platform \"rpi3\" not found"), "{msg}");
    assert!(
        msg.contains("help: available platforms:") && msg.contains("qemuarm64"),
        "{msg}"
    );
}

#[test]
fn builtins_load_and_match_bundlegens_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in platform::builtin_names() {
        let p = platform::load(name, &LoadOptions::default(), &Silent).expect("builtin");
        assert!(p.is_builtin());
        assert_eq!(p.spec.platform_name.as_deref(), Some(name));
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_string(&p.raw).expect("json")).expect("write");
        if let Some(result) = debian::validate_schema(&schema("platformSchema.json"), &file) {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    let arm = platform::load("qemuarm64", &LoadOptions::default(), &Silent).expect("builtin");
    assert_eq!(arm.oci_arch(), Some("arm64"));
}

fn write_json(path: &Path, v: &Value) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json")).expect("write");
}

fn minimal() -> Value {
    json!({"platformName": "dev", "os": "linux", "arch": {"arch": "arm", "variant": "v7"},
           "rdk": {"version": "2024Q1", "supportedFeatures": ["a"]}, "hardware": {"graphics": false},
           "network": {"options": ["nat"]}, "envvar": ["A=1"], "mounts": [{"destination": "/x"}]})
}

#[test]
fn files_merge_in_documented_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_json(&d.join("dev.json"), &minimal());
    write_json(
        &d.join("dev.d/20-later.json"),
        &json!({"hardware": {"maxRam": "256M"}, "envvar": ["B=2"]}),
    );
    write_json(
        &d.join("dev.d/10-first.json"),
        &json!({"hardware": {"graphics": true, "maxRam": "128M"}}),
    );
    write_json(
        &d.join("overlay.json"),
        &json!({"mounts": null, "rdk": {"services": ["org.rdk.Network"]}}),
    );
    let opts = LoadOptions {
        search_paths: vec![d.to_owned()],
        overlays: vec![d.join("overlay.json")],
        overlay_values: vec![(
            "operator.json".into(),
            json!({"envvar": ["C=3"], "dropCapabilities": ["CAP_NET_RAW"]}),
        )],
        ..LoadOptions::default()
    };
    let p = platform::load("dev", &opts, &Silent).expect("merged");
    let names: Vec<String> = p
        .sources
        .iter()
        .map(|s| {
            s.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        names,
        [
            "dev.json",
            "10-first.json",
            "20-later.json",
            "overlay.json",
            "operator.json"
        ]
    );
    let hw = p.spec.hardware.clone().expect("hardware");
    assert_eq!(hw.graphics, Some(true)); // objects merge key by key
    assert_eq!(hw.max_ram.map(|s| s.bytes()), Some(256 << 20)); // later file wins
    assert_eq!(p.spec.envvar.as_deref(), Some(&["C=3".to_owned()][..])); // arrays replace
    assert!(p.spec.mounts.is_none()); // null deletes
    let rdk = p.spec.rdk.clone().expect("rdk");
    assert_eq!(rdk.version.as_deref(), Some("2024Q1"));
    assert_eq!(
        rdk.services.as_deref(),
        Some(&["org.rdk.Network".to_owned()][..])
    );
    assert_eq!(
        p.spec.drop_capabilities.as_deref(),
        Some(&["CAP_NET_RAW".to_owned()][..])
    );
}

#[test]
fn extensions_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut v = minimal();
    v["display"] = json!({"resolutions": ["1920x1080@60", "1280x720"]});
    v["pathMappings"] = json!({"/usr/share/fonts": "/usr/share/fonts/device"});
    v["usersAndGroups"] = json!({"appRange": {"uids": "30000-30099", "gids": 30000}});
    write_json(&dir.path().join("ext.json"), &v);
    let diag = Collected::default();
    let spec = platform::validate_file(&dir.path().join("ext.json"), true, &diag).expect("valid");
    let res = spec.display.expect("display").resolutions;
    assert_eq!(res[0].to_string(), "1920x1080@60");
    assert_eq!(
        (res[1].width, res[1].height, res[1].refresh_hz),
        (1280, 720, None)
    );
    let range = spec
        .users_and_groups
        .and_then(|u| u.app_range)
        .expect("appRange");
    let ids = range
        .ids_for("com.example.app", &Default::default(), &Default::default())
        .expect("ids");
    assert!((30000..=30099).contains(&ids.uid));
    assert_eq!(ids.gid, 30000);
    assert_eq!(spec.path_mappings.expect("mappings").len(), 1);
}

fn error_for(v: &Value) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("rpi3.json");
    write_json(&f, v);
    let err = platform::validate_file(&f, false, &Silent).expect_err("invalid");
    let msg = format!("{:#}", anyhow::Error::new(err));
    msg.replace(&dir.path().display().to_string(), "DIR")
}

#[test]
fn each_error_names_file_key_and_allowed_form() {
    let mut v = minimal();
    v["gpu"] = json!({"gfxLibs": [], "devs": [{"type": "c", "path": "/dev/x", "major": "226", "minor": 0}]});
    let msg = error_for(&v);
    assert!(
        msg.starts_with(
            "DIR/rpi3.json: gpu.devs[0].major: invalid value: invalid type: string \"226\""
        ),
        "{msg}"
    );

    let mut v = minimal();
    v["hardware"]["maxRam"] = json!("-5M");
    let msg = error_for(&v);
    assert!(
        msg.contains("rpi3.json: hardware.maxRam: invalid value: invalid size \"-5M\""),
        "{msg}"
    );
    assert!(msg.contains("K, M, G or T"), "{msg}");

    let mut v = minimal();
    v["storage"] = json!({"persistent": {"storageDir": "/d", "maxSize": "10ZB"}});
    let msg = error_for(&v);
    assert!(
        msg.contains(
            "storage.persistent.maxSize: invalid value: invalid size \"10ZB\": unknown unit"
        ),
        "{msg}"
    );

    let mut v = minimal();
    v["logging"] = json!({"mode": "syslog"});
    let msg = error_for(&v);
    assert!(
        msg.contains("logging.mode: invalid value: unknown variant `syslog`, expected one of"),
        "{msg}"
    );

    let mut v = minimal();
    v["logging"] = json!({"mode": "file"});
    assert!(error_for(&v).contains("rpi3.json: logging.logDir: required key missing"));

    let mut v = minimal();
    v.as_object_mut().expect("object").remove("network");
    assert!(error_for(&v).contains("rpi3.json: network: required key missing"));

    let mut v = minimal();
    v["usersAndGroups"] = json!({"appRange": {"uids": "99-10", "gids": "1"}});
    assert!(
        error_for(&v)
            .contains("usersAndGroups.appRange.uids: invalid value: invalid id range \"99-10\"")
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("broken.json");
    std::fs::write(&f, "{ \"platformName\": ").expect("write");
    let err = platform::validate_file(&f, false, &Silent).expect_err("syntax");
    assert!(matches!(err, PlatformError::Load(LoadError::Json { .. })), "{err}");
    std::fs::write(&f, "[1]").expect("write");
    assert!(matches!(
        platform::validate_file(&f, false, &Silent),
        Err(PlatformError::Load(LoadError::NotObject { .. }))
    ));
}

#[test]
fn ambiguous_names_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_json(&dir.path().join("a/dev.json"), &minimal());
    write_json(&dir.path().join("b/dev.json"), &minimal());
    let opts = LoadOptions {
        search_paths: vec![dir.path().to_owned()],
        ..LoadOptions::default()
    };
    let err = platform::load("dev", &opts, &Silent).expect_err("ambiguous");
    assert!(
        matches!(err, PlatformError::Ambiguous { ref candidates, .. } if candidates.len() == 2),
        "{err}"
    );
}

#[test]
fn cli_uses_env_search_path_and_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_bundlegen");
    let out = Command::new(bin)
        .args(["platform", "show", "rpi4_64_reference_bb_kirkstone"])
        .env("RDK_PLATFORM_SEARCHPATH", templates_dir())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["arch"]["arch"], "aarch64");
    let out = Command::new(bin)
        .args(["platform", "show", "nope"])
        .env_remove("RDK_PLATFORM_SEARCHPATH")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("help: available platforms: qemuarm64, qemux86-64")
    );
}

/// Loading leaves `exports` to first use; `platform validate` decodes
/// every one and names the damaged entry.
#[test]
fn platform_validate_decodes_every_exports_entry() {
    let bin = env!("CARGO_BIN_EXE_bundlegen");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = platform::ExportSet::from_names(["f"]).encode();
    let libs = |second: &str| {
        json!({"libs": [
            {"apiversions": [], "deps": [], "name": "/lib/a.so.1", "exports": good},
            {"apiversions": [], "deps": [], "name": "/lib/b.so.1", "exports": second},
        ]})
        .to_string()
    };
    let file = dir.path().join("dev_libs.json");
    std::fs::write(&file, libs(&good)).expect("write");
    let out = Command::new(bin).args(["platform", "validate"]).arg(&file).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&file, libs("sha256-64:gQgQg")).expect("write");
    let out = Command::new(bin).args(["platform", "validate"]).arg(&file).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in ["dev_libs.json", "libs[1].exports", "truncated", "bundlegen platform init"] {
        assert!(stderr.contains(part), "{part:?} in {stderr}");
    }
}

/// `platform init` on a stub rootfs with Yocto package data.
#[test]
fn init_records_packages_from_pkgdata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    let m = Machine::Arm;
    Stub::exe(m, "/lib/ld-linux-armhf.so.3")
        .needs(&["libc.so.6"])
        .write(&root.join("bin/sh"));
    let mut libc = Stub::lib(m, "libc.so.6").needs(&["ld-linux-armhf.so.3"]);
    libc.verdefs = vec!["GLIBC_2.4".into(), "GLIBC_2.34".into()];
    libc.write(&root.join("lib/libc.so.6"));
    Stub::lib(m, "ld-linux-armhf.so.3").write(&root.join("lib/ld-linux-armhf.so.3"));
    Stub::lib(m, "libz.so.1")
        .needs(&["libc.so.6", "libmissing.so.9"])
        .write(&root.join("usr/lib/libz.so.1.3"));
    std::os::unix::fs::symlink("libz.so.1.3", root.join("usr/lib/libz.so.1")).expect("symlink");
    let pkgdata = dir.path().join("pkgdata");
    std::fs::create_dir_all(pkgdata.join("shlibs2")).expect("mkdir");
    std::fs::create_dir_all(pkgdata.join("runtime")).expect("mkdir");
    std::fs::write(
        pkgdata.join("shlibs2/libz1.list"),
        "libz.so.1:/usr/lib:1.3\n",
    )
    .expect("write");
    std::fs::write(
        pkgdata.join("runtime/glibc"),
        "PKGV:glibc: 2.39\nFILES_INFO:glibc: {\"/lib/libc.so.6\": 100}\n",
    )
    .expect("write");
    let manifest = dir.path().join("image.manifest");
    std::fs::write(
        &manifest,
        "glibc armv7vet2hf-neon 2.39+git0+abc\nlibz1 armv7vet2hf-neon 1.3.1\n",
    )
    .expect("write");
    let opts = InitOptions {
        rootfs: root.clone(),
        name: "mybox".into(),
        manifest: Some(manifest),
        pkgdata: Some(pkgdata),
        from: Some(templates_dir().join("generic/rpi3_reference.json")),
    };
    let (tpl, libs) = platform::init(&opts, &Silent).expect("init");
    assert_eq!(tpl["platformName"], "mybox");
    assert_eq!(tpl["arch"], json!({"arch": "arm", "variant": "v7"}));
    let from: Value = serde_json::from_str(
        &std::fs::read_to_string(templates_dir().join("generic/rpi3_reference.json"))
            .expect("read"),
    )
    .expect("json");
    // Device fields kept from --from, except the GPU libraries this stub
    // rootfs lacks (issue 11: never mount what the device does not have).
    let mut gpu = from["gpu"].clone();
    gpu["gfxLibs"] = json!([]);
    assert_eq!(tpl["gpu"], gpu);
    assert_eq!(tpl["rdk"], from["rdk"]);
    let names: Vec<&str> = libs.libs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "/lib/ld-linux-armhf.so.3",
            "/lib/libc.so.6",
            "/usr/lib/libz.so.1",
            "/usr/lib/libz.so.1.3"
        ]
    );
    let libc = libs.get("/lib/libc.so.6").expect("libc");
    assert_eq!(libc.apiversions, ["GLIBC_2.4", "GLIBC_2.34"]);
    assert_eq!(libc.deps, ["/lib/ld-linux-armhf.so.3"]);
    assert_eq!(
        (libc.package.as_deref(), libc.version.as_deref()),
        (Some("glibc"), Some("2.39+git0+abc"))
    );
    let z = libs.get("/usr/lib/libz.so.1.3").expect("libz");
    assert_eq!(
        (z.package.as_deref(), z.version.as_deref()),
        (Some("libz1"), Some("1.3.1"))
    );
    assert_eq!(z.deps, ["/lib/libc.so.6"]);
    assert_eq!(z.unresolved, ["libmissing.so.9"]);
}

/// `platform init` on real Debian content: inventory facts equal readelf's.
fn init_matches_readelf(arch: &str, loader: &str) {
    let Some(root) = debian::rootfs(arch) else {
        return;
    };
    if !debian::have("readelf", "--version") {
        debian::unavailable::<()>("readelf (binutils)");
        return;
    }
    let opts = InitOptions {
        rootfs: root.path().to_owned(),
        name: format!("deb-{arch}"),
        manifest: None,
        pkgdata: None,
        from: None,
    };
    let (tpl, libs) = platform::init(&opts, &Silent).expect("init");
    assert_eq!(tpl["arch"]["arch"], arch);
    assert!(libs.libs.len() > 40, "{}", libs.libs.len());
    assert!(
        libs.libs.windows(2).all(|w| w[0].name < w[1].name),
        "sorted"
    );
    assert!(
        libs.libs.iter().any(|l| l.name.ends_with(loader)),
        "{loader}"
    );
    let files: Vec<PathBuf> = libs
        .libs
        .iter()
        .map(|l| root.path().join(l.name.trim_start_matches('/')))
        .collect();
    let facts = debian::readelf(&files);
    for (lib, re) in libs.libs.iter().zip(&facts) {
        assert_eq!(
            lib.apiversions, re.verdefs,
            "{} version definitions",
            lib.name
        );
        let dep_names: Vec<&str> = lib
            .deps
            .iter()
            .map(|d| d.rsplit('/').next().unwrap_or(""))
            .collect();
        let mut covered: Vec<&str> = dep_names.clone();
        covered.extend(lib.unresolved.iter().map(String::as_str));
        covered.sort_unstable();
        let mut needed: Vec<&str> = re.needed.iter().map(String::as_str).collect();
        needed.sort_unstable();
        assert_eq!(covered, needed, "{} DT_NEEDED", lib.name);
        for d in &lib.deps {
            assert!(
                libs.get(d).is_some(),
                "{}: dep {d} is itself in the inventory",
                lib.name
            );
        }
    }
    // Exports are recorded on the entries named like the library's soname
    // (where library matching looks) and hold exactly readelf's exports.
    let mut with_exports = 0;
    for (lib, re) in libs.libs.iter().zip(&facts) {
        let file = lib.name.rsplit('/').next().unwrap_or("");
        let by_soname = re.soname.as_deref().is_none_or(|so| so == file);
        assert_eq!(
            lib.exports.is_some(),
            by_soname,
            "{}: exports recorded",
            lib.name
        );
        let Some(set) = lib.exports.as_ref().map(|e| e.set().expect("decodes")) else {
            continue;
        };
        let path = root.path().join(lib.name.trim_start_matches('/'));
        let theirs = crate::elf_symbols::readelf_symbols(&path).exports;
        let expected =
            bundlegen::platform::ExportSet::from_names(theirs.iter().map(String::as_str));
        assert_eq!(set, &expected, "{} exports", lib.name);
        with_exports += 1;
    }
    let libc = libs
        .libs
        .iter()
        .find(|l| l.name.ends_with("/libc.so.6"))
        .expect("libc");
    let libc_set = libc.exports.as_ref().expect("libc exports").set().expect("decodes");
    assert!(libc_set.contains("malloc") && !libc_set.contains("no_such_symbol"));
    assert!(with_exports > 20, "{with_exports}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (tpl_file, libs_file) = (dir.path().join("p.json"), dir.path().join("p_libs.json"));
    std::fs::write(&tpl_file, serde_json::to_string(&tpl).expect("json")).expect("write");
    std::fs::write(&libs_file, libs.to_json()).expect("write");
    for (schema_name, file) in [
        ("platformSchema.json", &tpl_file),
        ("platform_libsSchema.json", &libs_file),
    ] {
        if let Some(r) = debian::validate_schema(&schema(schema_name), file) {
            r.unwrap_or_else(|e| panic!("{schema_name}: {e}"));
        }
    }
    // The result is a platform our own loader accepts.
    platform::validate_file(&tpl_file, true, &Silent).expect("valid template");
}

#[test]
fn init_on_debian_amd64_matches_readelf_and_schema() {
    init_matches_readelf("amd64", "/ld-linux-x86-64.so.2");
}

#[test]
fn init_on_debian_arm64_matches_readelf_and_schema() {
    init_matches_readelf("arm64", "/ld-linux-aarch64.so.1");
}

/// Issue 13: values the bundle stage used to check late (`tarball.fileMask`
/// when the archive was written, `resourceLimits` and `rdkPlugins` when
/// config.json was built) fail when the template loads, naming the file and
/// the key; a good mask is typed once.
#[test]
fn template_values_are_checked_when_the_template_loads() {
    let mut v = minimal();
    v["tarball"] = json!({"fileMask": "999"});
    assert_eq!(
        error_for(&v),
        "DIR/rpi3.json: tarball.fileMask: invalid value: \"999\" is not an octal permission mask such as \"770\""
    );
    let mut v = minimal();
    v["resourceLimits"] = json!([{"type": "RLIMIT_NPROC", "hard": 10, "soft": 20}]);
    assert_eq!(
        error_for(&v),
        "DIR/rpi3.json: resourceLimits[0]: RLIMIT_NPROC: soft limit 20 is above the hard limit 10"
    );
    let mut v = minimal();
    v["rdkPlugins"] = json!({"MyCorp": {"data": {}}});
    assert!(
        error_for(&v).starts_with("DIR/rpi3.json: rdkPlugins.MyCorp: plugin names are lower-case"),
        "{}",
        error_for(&v)
    );
    let mut v = minimal();
    v["rdkPlugins"] = json!({"mycorp": {"require": true}});
    assert!(
        error_for(&v).starts_with("DIR/rpi3.json: rdkPlugins.mycorp.require: invalid value: unknown field `require`"),
        "{}",
        error_for(&v)
    );
    let mut v = minimal();
    v["tarball"] = json!({"fileMask": "0o750"});
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("rpi3.json");
    write_json(&f, &v);
    let spec = platform::validate_file(&f, true, &Silent).expect("valid");
    assert_eq!(spec.tarball.and_then(|t| t.file_mask).map(|m| m.0), Some(0o750));
}
