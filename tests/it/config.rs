//! `config.json` generation: every sample app on every reference platform
//! validates against Dobby's schema (Dobby mode) and the runtime-spec 1.0.2
//! schema (crun mode), with Python `jsonschema` as the oracle; snapshots of
//! small configs; and the behaviours that differ from BundleGen.

use std::path::{Path, PathBuf};
use std::process::Command;

use bundlegen::appmeta::AppMetadata;
use bundlegen::bundle::LibMount;
use bundlegen::bundle::config::{
    self, BuiltConfig, ConfigError, ConfigInputs, MountPointKind,
};
use bundlegen::diag::Collected;
use bundlegen::runtime::{self, Runtime};
use bundlegen::image::spec::{ContainerConfig, ImageConfig};
use bundlegen::operator::Operator;
use bundlegen::platform::{self, LoadOptions, Platform};
use serde_json::{Value, json};

/// Third-party reference data (BundleGen templates, schemas and sample app
/// metadata; Dobby and OCI schemas), copied with its licences: see
/// `tests/data/NOTICE`.
fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn image(entrypoint: &[&str], cmd: &[&str], user: Option<&str>) -> ImageConfig {
    let v = |s: &[&str]| (!s.is_empty()).then(|| s.iter().map(|s| (*s).to_owned()).collect());
    ImageConfig {
        architecture: "arm".into(),
        os: "linux".into(),
        config: Some(ContainerConfig {
            user: user.map(str::to_owned),
            env: Some(vec!["PATH=/usr/bin:/bin".into(), "LANG=C".into()]),
            entrypoint: v(entrypoint),
            cmd: v(cmd),
            working_dir: Some("/home".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        dir.path().join("etc/group"),
        "root:x:0:\napp:x:1000:\nvideo:x:44:\n",
    )
    .expect("group");
    dir
}

fn app(path: &Path) -> AppMetadata {
    AppMetadata::load(path, false, &Collected::default()).expect("sample app metadata")
}

fn app_json(v: Value) -> AppMetadata {
    let text = serde_json::to_vec(&v).expect("json");
    AppMetadata::parse(&text, "app.json", true, &Collected::default()).expect("app metadata")
}

/// A platform written to a temporary file and loaded like any template.
fn platform_json(dir: &Path, name: &str, v: Value) -> Platform {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
    platform::load_file(&path, &LoadOptions::default(), &Collected::default()).expect("platform")
}

fn small_platform() -> Value {
    json!({
        "platformName": "small", "os": "linux", "arch": {"arch": "arm", "variant": "v7"},
        "rdk": {"version": "2024Q3", "supportedFeatures": []},
        "hardware": {"graphics": false, "maxRam": "64M"},
        "storage": {"persistent": {"storageDir": "/opt/dac/", "minSize": "1M"}},
        "network": {"options": ["nat", "open", "private"]},
        "mounts": [
            {"source": "/tmp/{id}", "destination": "/tmp/sock", "type": "bind", "options": ["rbind", "rw", "X-dobby.optional"]},
            {"destination": "/tmp/westeros", "options": ["X-mount.no"]},
            {"source": "/usr/share/fonts", "destination": "/usr/share/fonts", "type": "bind", "options": ["rbind", "ro", "X-mount.mkdir"]}
        ],
        "pathMappings": {"/usr/share/fonts": "/opt/fonts"},
        "envvar": ["LANG=en_GB.UTF-8", "XDG_RUNTIME_DIR=/tmp"],
        "resourceLimits": [{"type": "RLIMIT_NPROC", "hard": 300, "soft": 300}],
        "disableUserNamespacing": true,
        "logging": {"mode": "file", "logDir": "/var/log/"},
        "dobby": {"pluginDir": "/usr/lib/plugins/dobby"}
    })
}

fn small_app() -> Value {
    json!({
        "id": "com.example.small", "type": "application/vnd.rdk-app.dac.native",
        "graphics": false, "network": {"type": "nat", "dnsmasq": true},
        "storage": {"persistent": [{"size": "512K", "path": "/home/private"}],
                    "temp": [{"size": "1M", "path": "/tmp/scratch"}]},
        "resources": {"ram": "32M"}
    })
}

struct Build<'a> {
    image: ImageConfig,
    platform: &'a Platform,
    app: &'a AppMetadata,
    operator: Option<&'a Operator>,
    libs: Vec<LibMount>,
    rootfs: &'a Path,
    create_mount_points: bool,
}

impl Build<'_> {
    fn run(&self, mode: Runtime) -> Result<(BuiltConfig, Vec<String>), ConfigError> {
        let diag = Collected::default();
        let inputs = ConfigInputs {
            image: &self.image,
            platform: self.platform,
            app: self.app,
            operator: self.operator,
            runtime: mode,
            lib_mounts: &self.libs,
            rootfs: self.rootfs,
            create_mount_points: self.create_mount_points,
            memory: config::MemoryLimit::BundleGen,
        };
        let built = config::build(&inputs, &diag)?;
        Ok((
            built,
            diag.warnings().iter().map(ToString::to_string).collect(),
        ))
    }
}

fn build<'a>(platform: &'a Platform, app: &'a AppMetadata, rootfs: &'a Path) -> Build<'a> {
    Build {
        image: image(&["/usr/bin/app"], &["--name", "a b"], None),
        platform,
        app,
        operator: None,
        libs: vec![LibMount {
            source: "/usr/lib/libz.so.1".into(),
            destination: "/usr/lib/libz.so.1".into(),
        }],
        rootfs,
        create_mount_points: false,
    }
}

fn mounts_at<'v>(config: &'v Value, dest: &str) -> Vec<&'v Value> {
    config["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["destination"] == dest)
        .collect()
}

// ---- schema validation with Python jsonschema -------------------------------

const VALIDATOR: &str = r#"
import json, os, sys
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

def strict(node, name):
    # Dobby's parser drops fields its schema does not list: refuse them.
    if isinstance(node, dict):
        if name != "RdkPlugins" and "properties" in node and "additionalProperties" not in node \
                and "patternProperties" not in node:
            node["additionalProperties"] = False
        for k, v in node.items():
            strict(v, k)
    elif isinstance(node, list):
        for v in node:
            strict(v, name)

def registry(dirs, make_strict):
    resources = []
    for d in dirs:
        for f in sorted(os.listdir(d)):
            if f.endswith(".json"):
                with open(os.path.join(d, f)) as fh:
                    doc = json.load(fh)
                if make_strict:
                    strict(doc, "")
                resources.append((f, Resource.from_contents(doc, default_specification=DRAFT4)))
    return Registry().with_resources(resources)

kind, root, files = sys.argv[1], sys.argv[2], sys.argv[3:]
if kind == "dobby":
    dirs = [os.path.join(root, "dobby"), os.path.join(root, "dobby/runtime-spec-a3c33d66")]
    top = "dobby_schema.json"
else:
    dirs = [os.path.join(root, "oci/runtime-spec-1.0.2")]
    top = "config-schema.json"
reg = registry(dirs, kind == "dobby")
schema = reg.contents(top)
failed = 0
for f in files:
    with open(f) as fh:
        inst = json.load(fh)
    errors = sorted(Draft4Validator(schema, registry=reg).iter_errors(inst), key=lambda e: list(e.path))
    for e in errors[:5]:
        print(f"{f}: {'/'.join(map(str, e.path))}: {e.message}")
    failed += bool(errors)
print(f"{len(files) - failed}/{len(files)} valid")
sys.exit(1 if failed else 0)
"#;

/// Validates config files with Python `jsonschema`; `None` when it is not
/// installed and `CI` is not set (the test then reports and skips).
pub(crate) fn validate(kind: &str, files: &[PathBuf]) -> Option<()> {
    let probe = Command::new("python3")
        .args(["-c", "import jsonschema, referencing"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with jsonschema is required in CI: pip install jsonschema"
        );
        eprintln!("skipped: python3 jsonschema not installed (pip install jsonschema)");
        return None;
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(VALIDATOR)
        .arg(kind)
        .arg(reference())
        .args(files)
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{kind} schema validation failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

pub(crate) fn templates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in ["generic", "lgi"] {
        let dir = reference().join("bundlegen/templates").join(d);
        for e in std::fs::read_dir(&dir).expect("templates").flatten() {
            let p = e.path();
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if n.ends_with(".json") && !n.ends_with("_libs.json") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn every_sample_on_every_reference_platform_validates() {
    let out = tempfile::tempdir().expect("tempdir");
    let root = rootfs();
    let mut samples: Vec<PathBuf> =
        std::fs::read_dir(reference().join("bundlegen/sample_app_metadata"))
            .expect("samples")
            .flatten()
            .map(|e| e.path())
            .collect();
    samples.sort();
    let (mut dobby, mut crun, mut skipped) = (Vec::new(), Vec::new(), 0);
    for t in templates() {
        let p = platform::load_file(&t, &LoadOptions::default(), &Collected::default())
            .unwrap_or_else(|e| panic!("{}: {e:#}", t.display()));
        for s in &samples {
            let a = app(s);
            // Compatibility is decided by src/compat.rs; here we skip only the
            // pairs BundleGen itself refuses: an app that needs graphics on a
            // platform without, or features the platform does not list.
            let gfx = p
                .spec
                .hardware
                .as_ref()
                .and_then(|h| h.graphics)
                .unwrap_or(false);
            let features = p
                .spec
                .rdk
                .as_ref()
                .and_then(|r| r.supported_features.clone())
                .unwrap_or_default();
            if (a.graphics && !gfx) || a.features.iter().any(|f| !features.contains(f)) {
                skipped += 1;
                continue;
            }
            let b = build(&p, &a, root.path());
            for (mode, list, tag) in [
                (runtime::DOBBY, &mut dobby, "dobby"),
                (runtime::CRUN, &mut crun, "crun"),
            ] {
                let (built, _) = b
                    .run(mode)
                    .unwrap_or_else(|e| panic!("{} × {}: {e:#}", t.display(), s.display()));
                let version = built.config["ociVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(version == "1.0.2" || version == "1.0.2-dobby", "{version}");
                let file = out.path().join(format!("{}-{}-{tag}.json", p.name, a.id));
                std::fs::write(
                    &file,
                    serde_json::to_vec_pretty(&built.config).expect("json"),
                )
                .expect("write");
                list.push(file);
            }
        }
    }
    assert!(
        dobby.len() >= 20,
        "only {} pairs built ({skipped} skipped)",
        dobby.len()
    );
    validate("dobby", &dobby);
    validate("oci", &crun);
}

#[test]
fn small_configs_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = rootfs();
    let p = platform_json(dir.path(), "small", small_platform());
    let a = app_json(small_app());
    let b = build(&p, &a, root.path());
    let (dobby, _) = b.run(runtime::DOBBY).expect("dobby");
    insta::assert_json_snapshot!("small_dobby", dobby.config);
    let (crun, warnings) = b.run(runtime::CRUN).expect("crun");
    insta::assert_json_snapshot!("small_crun", crun.config);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("persistent storage needs Dobby")),
        "{warnings:?}"
    );
    let files: Vec<PathBuf> = [("d", &dobby), ("c", &crun)]
        .iter()
        .map(|(n, c)| {
            let f = dir.path().join(format!("{n}.json"));
            std::fs::write(&f, serde_json::to_vec(&c.config).expect("json")).expect("write");
            f
        })
        .collect();
    validate("dobby", &files[..1]);
    validate("oci", &files[1..]);
}

#[test]
fn dobby_extensions_and_fixes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = rootfs();
    let p = platform_json(dir.path(), "small", small_platform());
    let a = app_json(small_app());
    let mut b = build(&p, &a, root.path());
    b.create_mount_points = true;
    let (built, _) = b.run(runtime::DOBBY).expect("dobby");
    let c = &built.config;
    assert_eq!(c["ociVersion"], "1.0.2-dobby");
    // Arguments are never re-split.
    assert_eq!(
        c["process"]["args"],
        json!(["/usr/libexec/DobbyInit", "/usr/bin/app", "--name", "a b"])
    );
    // X-dobby.optional: into the storage plugin, with the flags Dobby needs.
    assert!(mounts_at(c, "/tmp/sock").is_empty());
    assert_eq!(
        c["rdkPlugins"]["storage"]["data"]["dynamic"],
        json!([{"destination": "/tmp/sock", "flags": 4096 | 16384, "source": "/tmp/com.example.small"}])
    );
    // X-mount.no: no mount, a mount point; X-mount.mkdir: removed, a directory.
    assert!(mounts_at(c, "/tmp/westeros").is_empty());
    let fonts = mounts_at(c, "/usr/share/fonts");
    assert_eq!(fonts[0]["source"], "/opt/fonts", "pathMappings");
    assert_eq!(fonts[0]["options"], json!(["rbind", "ro"]));
    let point = |p: &str| {
        built
            .mount_points
            .iter()
            .find(|m| m.path == p)
            .map(|m| m.kind)
    };
    assert_eq!(point("/tmp/westeros"), Some(MountPointKind::File));
    assert_eq!(point("/usr/share/fonts"), Some(MountPointKind::Dir));
    assert_eq!(point("/usr/libexec/DobbyInit"), Some(MountPointKind::File));
    assert_eq!(point("/home/private"), Some(MountPointKind::Dir));
    // Persistent storage raised to the platform's minimum, image name stable.
    let lo = &c["rdkPlugins"]["storage"]["data"]["loopback"][0];
    assert_eq!(lo["imgsize"], 1 << 20);
    assert_eq!(
        lo["source"],
        "/opt/dac/com.example.small/23e959658f5082a89c6db72c842271a117887b8658ab703f60eaba650b3d5f20.img"
    );
    // Later env wins, in the first one's place.
    let env: Vec<&str> = c["process"]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        env,
        [
            "PATH=/usr/bin:/bin",
            "LANG=en_GB.UTF-8",
            "XDG_RUNTIME_DIR=/tmp"
        ]
    );
    assert_eq!(c["linux"]["resources"]["memory"]["limit"], 32 << 20);
    assert_eq!(
        c["rdkPlugins"]["logging"]["data"]["fileOptions"],
        json!({"limit": -1, "path": "/var/log/com.example.small.log"})
    );
    assert_eq!(c["hostname"], "com.example.small");
    // Keys are sorted everywhere.
    let text = serde_json::to_string(c).expect("json");
    assert_eq!(
        text,
        serde_json::to_string(&config::sorted(c.clone())).expect("json")
    );
    assert!(text.find("\"hostname\"") < text.find("\"linux\""));
}

#[test]
fn compliant_config_has_launcher_hooks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = rootfs();
    let mut pv = small_platform();
    pv["dobby"] =
        json!({"generateCompliantConfig": true, "hookLauncherParametersPath": "/opt/dac/{id}/"});
    let p = platform_json(dir.path(), "compliant", pv.clone());
    let a = app_json(small_app());
    let (built, _) = build(&p, &a, root.path()).run(runtime::DOBBY).expect("dobby");
    let c = &built.config;
    assert_eq!(c["ociVersion"], "1.0.2");
    for hook in ["createRuntime", "createContainer", "poststart", "poststop"] {
        assert_eq!(
            c["hooks"][hook],
            json!([{"path": "/usr/bin/DobbyPluginLauncher",
                    "args": ["DobbyPluginLauncher", "-h", hook, "-c", "/opt/dac/com.example.small/config.json"]}])
        );
    }
    pv["dobby"] = json!({"generateCompliantConfig": true});
    let p = platform_json(dir.path(), "nohooks", pv);
    let e = build(&p, &a, root.path())
        .run(runtime::DOBBY)
        .expect_err("missing parameters path");
    assert!(
        e.to_string().contains("dobby.hookLauncherParametersPath"),
        "{e}"
    );
}

#[test]
fn crun_bundle_has_no_dobby_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = rootfs();
    let p = platform_json(dir.path(), "small", small_platform());
    let a = app_json(small_app());
    let (built, warnings) = build(&p, &a, root.path()).run(runtime::CRUN).expect("crun");
    let c = &built.config;
    assert_eq!(c["ociVersion"], "1.0.2");
    assert!(c.get("rdkPlugins").is_none() && c.get("hooks").is_none());
    assert_eq!(c["process"]["args"][0], "/usr/bin/app");
    assert!(mounts_at(c, "/usr/libexec/DobbyInit").is_empty());
    // Issue 11: kept as an ordinary mount, as BundleGen's crun bundle does.
    let sock = mounts_at(c, "/tmp/sock");
    assert_eq!(sock.len(), 1, "optional mounts become plain mounts");
    assert_eq!(sock[0]["source"], "/tmp/com.example.small");
    assert_eq!(sock[0]["options"], json!(["rbind", "rw"]));
    assert!(
        warnings.iter().any(|w| w.contains("X-dobby.optional")),
        "{warnings:?}"
    );
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert!(
        ns.contains(&"network"),
        "nat app gets its own network namespace: {ns:?}"
    );
}

#[test]
fn users_from_image_platform_and_app_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = rootfs();
    let a = app_json(small_app());
    let p = platform_json(dir.path(), "small", small_platform());
    let mut b = build(&p, &a, root.path());
    b.image = image(&["/usr/bin/app"], &[], Some("app:video"));
    let (built, _) = b.run(runtime::DOBBY).expect("image user");
    assert_eq!(
        built.config["process"]["user"],
        json!({"uid": 1000, "gid": 44, "additionalGids": []})
    );
    assert_eq!(built.user, (1000, 44));
    assert!(built.config["process"]["env"].is_array());
    b.image = image(&["/usr/bin/app"], &[], Some("ghost"));
    let e = b.run(runtime::DOBBY).expect_err("unknown user");
    assert!(
        e.to_string().contains("\"ghost\"") && e.to_string().contains("etc/passwd"),
        "{e}"
    );

    // appRange without a user namespace: the allocated ids run the app.
    let mut pv = small_platform();
    pv["usersAndGroups"] = json!({"appRange": {"uids": "30000-30099", "gids": "30000"}});
    let p = platform_json(dir.path(), "range", pv.clone());
    let (built, _) = build(&p, &a, root.path()).run(runtime::DOBBY).expect("range");
    let uid = built.config["process"]["user"]["uid"]
        .as_u64()
        .expect("uid");
    assert!((30000..30100).contains(&uid));
    assert_eq!(built.config["process"]["user"]["gid"], 30000);
    // With a user namespace: container root mapped to the allocated ids.
    pv["disableUserNamespacing"] = json!(false);
    let p = platform_json(dir.path(), "rangens", pv);
    let (built, _) = build(&p, &a, root.path())
        .run(runtime::CRUN)
        .expect("range userns");
    let c = &built.config;
    assert_eq!(c["process"]["user"]["uid"], 0);
    assert_eq!(
        c["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": uid, "size": 1}])
    );
    assert_eq!(built.user, (uid as u32, 30000));
    assert!(
        mounts_at(c, "/sys")[0]["type"] == "bind",
        "sysfs cannot be mounted in a user namespace"
    );
}

#[test]
fn no_command_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = rootfs();
    let p = platform_json(dir.path(), "small", small_platform());
    let a = app_json(small_app());
    let mut b = build(&p, &a, root.path());
    b.image = image(&[], &[], None);
    let e = b.run(runtime::DOBBY).expect_err("nothing to run");
    assert!(matches!(e, ConfigError::NoCommand), "{e}");
}

#[test]
fn operator_comes_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = rootfs();
    let p = platform_json(dir.path(), "small", small_platform());
    let a = app_json(small_app());
    let op_path = dir.path().join("operator.json");
    std::fs::write(
        &op_path,
        r#"{"env": ["LANG=C.UTF-8", "FLEET=1"], "dropCapabilities": ["CAP_NET_RAW"],
            "rlimits": [{"type": "RLIMIT_NPROC", "hard": 100, "soft": 50}],
            "mounts": [{"source": "/etc/fleet", "destination": "/etc/fleet", "type": "bind", "options": ["rbind", "ro"]}],
            "rdkPlugins": {"httpproxy": {"required": false, "dependsOn": ["networking", "nothere"], "data": {}}}}"#,
    )
    .expect("write");
    let op = Operator::load(&op_path, true, &Collected::default()).expect("operator");
    let mut b = build(&p, &a, root.path());
    b.operator = Some(&op);
    let (built, warnings) = b.run(runtime::DOBBY).expect("dobby");
    let c = &built.config;
    let env: Vec<&str> = c["process"]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"LANG=C.UTF-8") && env.contains(&"FLEET=1"),
        "{env:?}"
    );
    let caps = &c["process"]["capabilities"]["bounding"];
    assert!(
        !caps
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v == "CAP_NET_RAW"),
        "{caps}"
    );
    assert!(
        c["process"]["rlimits"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["type"] == "RLIMIT_NPROC" && r["hard"] == 100)
    );
    assert_eq!(mounts_at(c, "/etc/fleet").len(), 1);
    assert_eq!(
        c["rdkPlugins"]["httpproxy"]["dependsOn"],
        json!(["networking"])
    );
    assert!(
        warnings.iter().any(|w| w.contains("nothere")),
        "{warnings:?}"
    );
}

#[test]
fn string_booleans_in_network_become_booleans() {
    let sample = reference().join("bundlegen/sample_app_metadata/flutter_reference.json");
    let diag = Collected::default();
    let a = AppMetadata::load(&sample, true, &diag).expect("flutter sample");
    assert_eq!(a.network.dnsmasq, Some(true));
    let w: Vec<String> = diag.warnings().iter().map(ToString::to_string).collect();
    assert!(w.iter().any(|w| w.contains("network.dnsmasq")), "{w:?}");
}
