//! Compatibility checks: the entrypoint in the final rootfs and the
//! platform against the image and the app metadata.

use std::os::unix::fs::PermissionsExt;

use bundlegen::appmeta::AppMetadata;
use bundlegen::compat::{self, Incompatible};
use bundlegen::error::{self, Category};
use bundlegen::diag::{Collected, Silent};
use bundlegen::elf;
use bundlegen::libmatch::{self, MatchOptions};
use serde_json::json;

use crate::elfstub::Machine;
use crate::libmatch::{LD, exe, image, platform, run, vs};

#[test]
fn entrypoint_in_the_other_bin_directory_names_both_paths() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    exe(
        &fx.root,
        Machine::Aarch64,
        "/usr/sbin/init",
        &["libc.so.6"],
        &[],
    );
    let p = platform(json!({}));
    let scan = elf::scan(&fx.root, &Silent).expect("scan");
    let plan = run(&fx, &p, &MatchOptions::default());
    let err =
        compat::check_entrypoint(&fx.root, &vs(&["/sbin/init"]), None, &p, &scan, &plan, None)
            .expect_err("missing");
    assert_eq!(
        err.to_string(),
        "entrypoint /sbin/init does not exist in the rootfs; /usr/sbin/init does: \
         set OCI_IMAGE_ENTRYPOINT to it, or add a /sbin -> usr/sbin link"
    );
    assert!(matches!(err, Incompatible::EntrypointMissing { .. }));
    let ok = compat::check_entrypoint(
        &fx.root,
        &vs(&["/usr/sbin/init"]),
        None,
        &p,
        &scan,
        &plan,
        None,
    )
    .expect("present");
    assert_eq!(ok.arch, "arm64");
    assert_eq!(ok.interpreter.as_deref(), Some(LD));
    // A bare name goes through PATH.
    let ok = compat::check_entrypoint(&fx.root, &vs(&["app"]), None, &p, &scan, &plan, None)
        .expect("in PATH");
    assert_eq!(ok.located.path, "/usr/bin/app");
    assert!(ok.libraries.contains(&"libz.so.1".to_owned()));
}

#[test]
fn script_entrypoints_are_checked_through_their_interpreter() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    exe(&fx.root, Machine::Aarch64, "/bin/sh", &["libc.so.6"], &[]);
    let script = fx.root.join("usr/bin/start.sh");
    std::fs::write(&script, "#!/bin/sh -e\nexec app\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let p = platform(json!({}));
    let scan = elf::scan(&fx.root, &Silent).expect("scan");
    let plan = run(&fx, &p, &MatchOptions::default());
    let ok = compat::check_entrypoint(
        &fx.root,
        &vs(&["/usr/bin/start.sh"]),
        None,
        &p,
        &scan,
        &plan,
        None,
    )
    .expect("script");
    assert_eq!(ok.located.scripts, vs(&["/usr/bin/start.sh"]));
    assert_eq!(ok.located.elf, vs(&["/bin/sh"]));

    std::fs::write(&script, "#!/bin/bash\n").expect("write");
    let err = compat::check_entrypoint(
        &fx.root,
        &vs(&["/usr/bin/start.sh"]),
        None,
        &p,
        &scan,
        &plan,
        None,
    )
    .expect_err("no bash");
    assert!(matches!(err, Incompatible::Script { .. }), "{err}");
    let chain = format!("{:?}", anyhow_chain(&err));
    assert!(chain.contains("/bin/bash"), "{chain}");

    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = compat::check_entrypoint(
        &fx.root,
        &vs(&["/usr/bin/start.sh"]),
        None,
        &p,
        &scan,
        &plan,
        None,
    )
    .expect_err("not executable");
    assert!(matches!(err, Incompatible::NotExecutable { .. }), "{err}");
}

fn anyhow_chain(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push(c.to_string());
        cur = c.source();
    }
    out
}

#[test]
fn entrypoint_of_the_wrong_architecture_or_missing_libraries_is_refused() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    exe(
        &fx.root,
        Machine::X86_64,
        "/usr/bin/x86app",
        &["libc.so.6"],
        &[],
    );
    exe(
        &fx.root,
        Machine::Aarch64,
        "/usr/bin/broken",
        &["libmissing.so.9"],
        &[],
    );
    let p = platform(json!({}));
    let scan = elf::scan(&fx.root, &Silent).expect("scan");
    let plan = run(&fx, &p, &MatchOptions::default());
    let err = compat::check_entrypoint(
        &fx.root,
        &vs(&["/usr/bin/x86app"]),
        None,
        &p,
        &scan,
        &plan,
        None,
    )
    .expect_err("wrong arch");
    assert!(
        err.to_string().contains("x86_64") && err.to_string().contains("arm64"),
        "{err}"
    );
    let err = compat::check_entrypoint(
        &fx.root,
        &vs(&["/usr/bin/broken"]),
        None,
        &p,
        &scan,
        &plan,
        None,
    )
    .expect_err("missing lib");
    assert!(err.to_string().contains("libmissing.so.9"), "{err}");
    // After apply, the libraries taken from the device are provided by mounts.
    libmatch::apply(&fx.root, &plan).expect("apply");
    let scan = elf::scan(&fx.root, &Silent).expect("scan");
    compat::check_entrypoint(
        &fx.root,
        &vs(&["/usr/bin/app"]),
        None,
        &p,
        &scan,
        &plan,
        None,
    )
    .expect("after apply");
}

fn resolved(arch: &str, variant: Option<&str>) -> bundlegen::image::ResolvedImage {
    use bundlegen::image::{Digest, spec};
    let digest = Digest::parse(&format!("sha256:{}", "0".repeat(64))).expect("digest");
    let config: spec::ImageConfig = serde_json::from_value(
        json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
    )
    .expect("config");
    bundlegen::image::ResolvedImage {
        name: "test".into(),
        manifest_digest: digest.clone(),
        manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        tag: None,
        platform: spec::Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(str::to_owned),
        },
        config,
        config_digest: digest,
        config_bytes: Vec::new(),
        layers: Vec::new(),
    }
}

/// App metadata from JSON, as `generate -a` reads it.
fn app_metadata(v: &serde_json::Value) -> Result<AppMetadata, bundlegen::error::AppMetaError> {
    AppMetadata::parse(v.to_string().as_bytes(), "app.json", false, &Silent)
}

#[test]
fn platform_checks_name_the_cause() {
    let p = platform(json!({}));
    let app = json!({"id": "com.x", "type": "application/vnd.rdk-app.dac.native",
        "graphics": true, "network": {"type": "open"},
        "resources": {"ram": "128M"}, "features": ["DeviceInfo"],
        "storage": {"persistent": [{"size": "60M", "path": "/home/private"}], "temp": [{"size": "10M", "path": "/tmp"}]},
        "display": {"resolution": "1920x1080"}, "rdk": {"minVersion": "2024Q1"}});
    let with = |patch: serde_json::Value| {
        let mut a = app.clone();
        bundlegen::platform::merge_patch(&mut a, &patch);
        app_metadata(&a).expect("valid app metadata")
    };
    let diag = Collected::default();
    compat::check_arch(&p, &resolved("arm64", Some("v8")), &diag).expect("same architecture");
    compat::check_platform(&p, &with(json!({})), &diag).expect("compatible");
    let fails = |patch: serde_json::Value| {
        compat::check_platform(&p, &with(patch), &Silent)
            .expect_err("incompatible")
            .to_string()
    };
    let arch_fails = |img: &bundlegen::image::ResolvedImage| {
        compat::check_arch(&p, img, &Silent)
            .expect_err("incompatible")
            .to_string()
    };
    let arm64 = resolved("arm64", None);
    compat::check_arch(&p, &arm64, &Silent).expect("same architecture");
    assert!(arch_fails(&resolved("amd64", None)).contains("amd64"));
    assert!(arch_fails(&resolved("arm", Some("v7"))).contains("arm"));
    assert!(fails(json!({"features": ["Netflix"]})).contains("Netflix"));
    assert!(fails(json!({"network": {"type": "private"}})).contains("private"));
    // RAM above maxRam is capped by default (as BundleGen) and refused
    // only by the strict memory policy.
    let big = with(json!({"resources": {"ram": "512M"}}));
    compat::check_platform(&p, &big, &Silent).expect("capped, not refused");
    let err = compat::check_ram(&p, &big).expect_err("strict memory");
    assert!(err.to_string().contains("512M"), "{err}");
    compat::check_ram(&p, &with(json!({}))).expect("within maxRam");
    assert!(fails(json!({"storage": {"persistent": [{"size": "120M", "path": "/p"}]}})).contains("maxSize"));
    let two = json!({"storage": {"persistent": [{"size": "80M", "path": "/a"}, {"size": "80M", "path": "/b"}]}});
    assert!(fails(two).contains("maxTotalSize"));
    assert!(fails(json!({"display": {"resolution": "3840x2160"}})).contains("3840x2160"));
    assert!(fails(json!({"rdk": {"minVersion": "2025Q1"}})).contains("2025Q1"));
    let no_gfx = platform(json!({"hardware": {"graphics": false}}));
    let err = compat::check_platform(&no_gfx, &with(json!({})), &Silent).expect_err("no graphics");
    assert!(matches!(err, Incompatible::Graphics));
    // A bad value is bad input (exit 1), refused when the metadata is read.
    let mut bad = app.clone();
    bad["resources"]["ram"] = json!("lots");
    let err = bundlegen::error::Error::from(app_metadata(&bad).expect_err("bad"));
    assert!(
        err.category() == Category::BadInput && error::chain(&err).contains("resources.ram"),
        "{err}"
    );
    bad["resources"]["ram"] = json!("128M");
    bad["display"]["resolution"] = json!("wide");
    let err = bundlegen::error::Error::from(app_metadata(&bad).expect_err("bad"));
    assert!(
        err.category() == Category::BadInput
            && error::chain(&err).contains("display.resolution: invalid value: invalid resolution \"wide\""),
        "{}",
        error::chain(&err)
    );
    // A 32-bit ARM platform refuses arm64 images and newer ARM variants.
    let arm = platform(json!({"arch": {"arch": "arm", "variant": "v7"}}));
    assert!(compat::check_arch(&arm, &resolved("arm", Some("v7")), &Silent).is_ok());
    assert!(compat::check_arch(&arm, &resolved("arm", Some("v8")), &Silent).is_err());
    assert!(compat::check_arch(&arm, &arm64, &Silent).is_err());
}
