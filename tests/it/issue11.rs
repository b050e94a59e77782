//! Issue 11 (drop-in for real), items 1 and 4: what BundleGen users rely
//! on at run time. DNS for `open` networking in Dobby mode, checked against
//! Dobby's own rule for adding `/etc/resolv.conf`; the memory limit as
//! BundleGen sets it, and the strict policy behind `--strict-memory` and the
//! operator's `strictMemory`.

use std::fs;
use std::path::Path;

use bundlegen::appmeta::AppMetadata;
use bundlegen::bundle::config::{self, ConfigInputs, MemoryLimit};
use bundlegen::runtime::{self, Runtime};
use bundlegen::diag::Collected;
use bundlegen::image::spec::{ContainerConfig, ImageConfig};
use bundlegen::operator::Operator;
use bundlegen::platform::{self, LoadOptions, Platform};
use serde_json::{Value, json};

use crate::faults::{World, assert_failed, base_layer, stderr_of};

fn image() -> ImageConfig {
    ImageConfig {
        architecture: "arm".into(),
        os: "linux".into(),
        config: Some(ContainerConfig {
            entrypoint: Some(vec!["/usr/bin/app".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn platform_with(dir: &Path, patch: Value) -> Platform {
    let mut p = json!({
        "platformName": "dev", "os": "linux", "arch": {"arch": "arm", "variant": "v7"},
        "rdk": {"version": "2024Q3", "supportedFeatures": []},
        "hardware": {"graphics": false, "maxRam": "64M"},
        "network": {"options": ["nat", "open", "none"]},
        "disableUserNamespacing": true,
    });
    platform::merge_patch(&mut p, &patch);
    let path = dir.join("dev.json");
    fs::write(&path, serde_json::to_vec(&p).expect("json")).expect("write platform");
    platform::load_file(&path, &LoadOptions::default(), &Collected::default()).expect("platform")
}

fn app_with(patch: Value) -> AppMetadata {
    let mut a = json!({
        "id": "com.example.dns", "type": "application/vnd.rdk-app.dac.native",
        "graphics": false, "network": {"type": "open"}, "storage": {},
        "resources": {"ram": "32M"}, "features": [], "mounts": []
    });
    platform::merge_patch(&mut a, &patch);
    let text = serde_json::to_vec(&a).expect("json");
    AppMetadata::parse(&text, "app.json", true, &Collected::default()).expect("app metadata")
}

/// `config.json` and the warnings.
fn build(
    platform: &Platform,
    app: &AppMetadata,
    mode: Runtime,
    memory: MemoryLimit,
) -> (Value, Vec<String>) {
    let rootfs = tempfile::tempdir().expect("tempdir");
    let diag = Collected::default();
    let image = image();
    let built = config::build(
        &ConfigInputs {
            image: &image,
            platform,
            app,
            operator: None,
            runtime: mode,
            lib_mounts: &[],
            rootfs: rootfs.path(),
            create_mount_points: false,
            memory,
        },
        &diag,
    )
    .expect("config");
    (
        built.config,
        diag.warnings().iter().map(ToString::to_string).collect(),
    )
}

fn resolv_mounts(config: &Value) -> Vec<&Value> {
    config["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter(|m| m["destination"] == "/etc/resolv.conf")
        .collect()
}

/// What Dobby does to a bundle's `/etc/resolv.conf` when it starts it,
/// encoded from rdkcentral/Dobby `rdkPlugins/Networking/source/
/// NetworkingPlugin.cpp` (develop, dfae6f5): `NetworkingPlugin::
/// postInstallation` calls `NetworkSetup::addResolvMount` (NetworkSetup.cpp:
/// a read-only bind of the host's file, skipped when the config already has
/// a mount with that source and destination) when the network type is not
/// `open` and `dnsmasq` is off; with `dnsmasq` on, `DnsmasqSetup::set`
/// (createRuntime, for every type but `none`) writes the rootfs's own
/// `/etc/resolv.conf` naming the bridge instead. The type and `dnsmasq` are
/// read from the config's `rdkPlugins.networking.data`, as the plugin does;
/// an unknown type is `none`. Returns how the container's
/// `/etc/resolv.conf` is provided: the number of bind mounts of it once
/// Dobby is done, and whether dnsmasq wrote one.
fn as_dobby_starts_it(config: &Value) -> (usize, bool) {
    let data = &config["rdkPlugins"]["networking"]["data"];
    let kind = match data["type"].as_str() {
        Some("nat") => "nat",
        Some("open") => "open",
        _ => "none",
    };
    let dnsmasq = data["dnsmasq"].as_bool().unwrap_or(false);
    let mut mounts = resolv_mounts(config).len();
    let present = resolv_mounts(config)
        .iter()
        .any(|m| m["source"] == "/etc/resolv.conf");
    if kind != "open" && !dnsmasq && !present {
        mounts += 1;
    }
    (mounts, kind != "none" && kind != "open" && dnsmasq)
}

/// Issue 11, acceptance 1: for every network type and dnsmasq setting a
/// Dobby-mode bundle ends up, once Dobby has added its own, with exactly
/// one source of `/etc/resolv.conf` when the app has a network, and an
/// `open` app gets the host's file read-only from the bundle itself.
#[test]
fn issue11_resolv_conf_as_dobby_decides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let platform = platform_with(dir.path(), json!({}));
    for kind in ["open", "nat", "none"] {
        for dnsmasq in [false, true] {
            let app = app_with(json!({"network": {"type": kind, "dnsmasq": dnsmasq}}));
            let (config, _) = build(&platform, &app, runtime::DOBBY, MemoryLimit::BundleGen);
            let ours = resolv_mounts(&config);
            let (mounts, from_dnsmasq) = as_dobby_starts_it(&config);
            let case = format!("network {kind}, dnsmasq {dnsmasq}");
            match kind {
                "open" => {
                    assert_eq!(ours.len(), 1, "{case}: the bundle binds the host's file");
                    let m = ours[0];
                    assert_eq!(m["source"], "/etc/resolv.conf", "{case}");
                    assert_eq!(m["type"], "bind", "{case}");
                    let options: Vec<&str> = m["options"]
                        .as_array()
                        .expect("options")
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    assert!(
                        options.contains(&"ro") && options.contains(&"rbind"),
                        "{case}: {options:?}"
                    );
                    assert_eq!((mounts, from_dnsmasq), (1, false), "{case}");
                }
                // Dobby adds the mount, or dnsmasq writes the file: a mount
                // from the bundle would hide dnsmasq's file.
                "nat" => {
                    assert!(ours.is_empty(), "{case}: Dobby provides it");
                    assert_eq!(
                        (mounts, from_dnsmasq),
                        if dnsmasq { (0, true) } else { (1, false) },
                        "{case}"
                    );
                }
                _ => {
                    assert!(ours.is_empty(), "{case}: Dobby decides");
                    assert!(mounts <= 1 && !from_dnsmasq, "{case}");
                }
            }
        }
    }
    // A crun bundle has no Dobby: the host's file for `open` only (a
    // private network namespace has no route to the host's resolver).
    for (kind, want) in [("open", 1), ("nat", 0), ("none", 0)] {
        let app = app_with(json!({"network": {"type": kind}}));
        let (config, _) = build(&platform, &app, runtime::CRUN, MemoryLimit::BundleGen);
        assert_eq!(resolv_mounts(&config).len(), want, "crun, network {kind}");
    }
}

fn memory_limit(config: &Value) -> Option<u64> {
    config["linux"]["resources"]
        .get("memory")
        .map(|m| m["limit"].as_u64().expect("limit is a number"))
}

/// Issue 11, acceptance 4: BundleGen's memory limit by default (only with
/// `hardware.maxRam`, lowered to it with a warning), the strict policy on
/// request (always the app's RAM).
#[test]
fn issue11_memory_limit_follows_bundlegen_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = app_with(json!({"resources": {"ram": "32M"}}));
    let big = app_with(json!({"resources": {"ram": "1G"}}));
    let capped = platform_with(dir.path(), json!({}));
    let unlimited = platform_with(dir.path(), json!({"hardware": {"maxRam": null}}));
    assert!(
        unlimited
            .spec
            .hardware
            .as_ref()
            .and_then(|h| h.max_ram)
            .is_none(),
        "the patch removed maxRam"
    );

    for mode in [runtime::DOBBY, runtime::CRUN] {
        let (c, w) = build(&capped, &small, mode, MemoryLimit::BundleGen);
        assert_eq!(
            memory_limit(&c),
            Some(32 << 20),
            "{mode:?}: the app's RAM under maxRam"
        );
        assert!(w.iter().all(|w| !w.contains("maxRam")), "{w:?}");

        let (c, w) = build(&capped, &big, mode, MemoryLimit::BundleGen);
        assert_eq!(
            memory_limit(&c),
            Some(64 << 20),
            "{mode:?}: lowered to maxRam"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("above hardware.maxRam 64M: limited to 64M")),
            "{w:?}"
        );

        let (c, _) = build(&unlimited, &big, mode, MemoryLimit::BundleGen);
        assert_eq!(
            memory_limit(&c),
            None,
            "{mode:?}: no maxRam, no limit (BundleGen)"
        );
        assert!(
            c["linux"]["resources"]["devices"].is_array(),
            "the device rules stay"
        );

        let (c, _) = build(&unlimited, &big, mode, MemoryLimit::Strict);
        assert_eq!(
            memory_limit(&c),
            Some(1 << 30),
            "{mode:?}: strict: always the app's RAM"
        );
    }
}

/// The whole command: above the built-in qemux86-64's maxRam (512M) the
/// default run succeeds with the limit lowered and a warning; the flag and
/// the operator file make it exit 2 with nothing written.
#[test]
fn issue11_strict_memory_flag_and_operator() {
    let w = World::with(
        vec![base_layer()],
        None,
        json!({"resources": {"ram": "1G"}}),
    );
    let out = w
        .command(&[])
        .arg("--report")
        .arg(w.root.join("report.json"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let config: Value =
        serde_json::from_slice(&fs::read(w.out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(memory_limit(&config), Some(512 << 20));
    let report = fs::read_to_string(w.root.join("report.json")).expect("report");
    assert!(
        report.contains("limited to 512M"),
        "the warning is in the report"
    );
    fs::remove_dir_all(&w.out).expect("rm bundle");
    fs::remove_file(w.archive()).expect("rm archive");

    let out = w.command(&["--strict-memory"]).output().expect("run");
    assert_failed(
        out.status,
        &stderr_of(&out),
        2,
        &["1G of RAM (resources.ram)", "512M (hardware.maxRam)"],
    );
    w.assert_nothing_written();

    let op = w.root.join("operator.json");
    fs::write(&op, br#"{"strictMemory": true}"#).expect("write operator");
    let out = w
        .command(&["--strict"])
        .arg("--operator")
        .arg(&op)
        .output()
        .expect("run");
    assert_failed(out.status, &stderr_of(&out), 2, &["1G of RAM"]);
    w.assert_nothing_written();
    let parsed = Operator::load(&op, true, &Collected::default()).expect("operator");
    assert!(parsed.strict_memory);
}
