//! Library matching and compatibility checks on rootfs fixtures built from
//! ELF stubs, plus one real-content test on this machine's own curl.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use bundlegen::diag::Silent;
use bundlegen::elf;
use bundlegen::libmatch::{self, Action, MatchOptions, MatchPlan, Mode};
use bundlegen::platform::{ExportSet, LibEntry, LibsInventory, Platform, PlatformSpec};
use serde_json::json;

use crate::elfstub::{Machine, Stub};

pub(crate) const LD: &str = "/lib/ld-linux-aarch64.so.1";

pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    /// Outside the rootfs: must never change.
    canary: PathBuf,
}

pub(crate) fn vs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) fn lib(
    root: &Path,
    path: &str,
    soname: &str,
    needed: &[&str],
    defs: &[&str],
    verneeds: &[(&str, &[&str])],
) {
    lib_syms(root, path, soname, needed, defs, verneeds, (&[], &[]));
}

/// [`lib`] with dynamic symbols: (exports, imports).
pub(crate) fn lib_syms(
    root: &Path,
    path: &str,
    soname: &str,
    needed: &[&str],
    defs: &[&str],
    verneeds: &[(&str, &[&str])],
    (exports, imports): (&[&str], &[&str]),
) {
    let mut s = Stub::lib(Machine::Aarch64, soname)
        .needs(needed)
        .exports(exports)
        .imports(imports);
    s.verdefs = vs(defs);
    s.verneeds = verneeds
        .iter()
        .map(|(f, v)| ((*f).to_owned(), vs(v)))
        .collect();
    s.write(&root.join(path.trim_start_matches('/')));
}

pub(crate) fn exe(
    root: &Path,
    machine: Machine,
    path: &str,
    needed: &[&str],
    verneeds: &[(&str, &[&str])],
) {
    exe_syms(root, machine, path, needed, verneeds, &[]);
}

/// [`exe`] importing `imports`.
pub(crate) fn exe_syms(
    root: &Path,
    machine: Machine,
    path: &str,
    needed: &[&str],
    verneeds: &[(&str, &[&str])],
    imports: &[&str],
) {
    let interp = match machine {
        Machine::X86_64 => "/lib64/ld-linux-x86-64.so.2",
        _ => LD,
    };
    let mut s = Stub::exe(machine, interp).needs(needed).imports(imports);
    s.verneeds = verneeds
        .iter()
        .map(|(f, v)| ((*f).to_owned(), vs(v)))
        .collect();
    let p = root.join(path.trim_start_matches('/'));
    s.write(&p);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

pub(crate) fn link(root: &Path, path: &str, target: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    symlink(target, p).expect("symlink");
}

/// A small aarch64 image: glibc in /lib, libz with its links, libfoo
/// needing libbar, an unused library, libgcc_s, and /usr/bin/app.
pub(crate) fn image(libc_defs: &[&str], app_glibc: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    let canary = dir.path().join("canary");
    std::fs::create_dir_all(&canary).expect("mkdir");
    std::fs::write(canary.join("libcanary.so.1"), b"host file").expect("write");
    let r = root.as_path();
    let private: &[(&str, &[&str])] = &[("libc.so.6", &["GLIBC_2.17", "GLIBC_PRIVATE"])];
    lib(
        r,
        LD,
        "ld-linux-aarch64.so.1",
        &[],
        &["GLIBC_2.17", "GLIBC_PRIVATE"],
        &[],
    );
    let ld_private: &[(&str, &[&str])] = &[("ld-linux-aarch64.so.1", &["GLIBC_PRIVATE"])];
    lib(
        r,
        "/lib/libc.so.6",
        "libc.so.6",
        &["ld-linux-aarch64.so.1"],
        libc_defs,
        ld_private,
    );
    lib(
        r,
        "/lib/libm.so.6",
        "libm.so.6",
        &["libc.so.6"],
        &["GLIBC_2.17"],
        private,
    );
    lib(
        r,
        "/lib/libnss_files.so.2",
        "libnss_files.so.2",
        &["libc.so.6"],
        &[],
        private,
    );
    lib(
        r,
        "/lib/libanl.so.1",
        "libanl.so.1",
        &["libc.so.6"],
        &["GLIBC_2.17"],
        private,
    );
    lib(
        r,
        "/usr/lib/libz.so.1.2.13",
        "libz.so.1",
        &["libc.so.6"],
        &["ZLIB_1.2.0", "ZLIB_1.2.9"],
        &[],
    );
    link(r, "/usr/lib/libz.so.1", "libz.so.1.2.13");
    link(r, "/usr/lib/libz.so", "libz.so.1");
    // libfoo uses libbar without symbol versions: its symbols decide.
    lib_syms(
        r,
        "/usr/lib/libfoo.so.1",
        "libfoo.so.1",
        &["libbar.so.2", "libc.so.6"],
        &["FOO_1.0", "FOO_1.1"],
        &[],
        (&["foo_run"], &["bar_open", "bar_close", "malloc"]),
    );
    lib_syms(
        r,
        "/usr/lib/libbar.so.2",
        "libbar.so.2",
        &["libc.so.6"],
        &["BAR_2"],
        &[],
        (&["bar_open", "bar_close", "bar_debug"], &["malloc"]),
    );
    lib(
        r,
        "/usr/lib/libunused.so.3",
        "libunused.so.3",
        &["libc.so.6"],
        &[],
        &[],
    );
    lib(
        r,
        "/usr/lib/libgcc_s.so.1",
        "libgcc_s.so.1",
        &["libc.so.6"],
        &["GCC_3.0"],
        &[],
    );
    // An absolute symlink to the canary's host path: inside the rootfs it
    // means <root><canary>/libcanary.so.1, never the host file.
    let in_root_canary = format!("{}/libcanary.so.1", canary.display());
    lib_syms(
        r,
        &in_root_canary,
        "libcanary.so.1",
        &["libc.so.6"],
        &[],
        &[],
        (&["canary_sing"], &[]),
    );
    link(r, "/usr/lib/libcanary.so.1", &in_root_canary);
    exe_syms(
        r,
        Machine::Aarch64,
        "/usr/bin/app",
        &[
            "libz.so.1",
            "libfoo.so.1",
            "libcanary.so.1",
            "libm.so.6",
            "libc.so.6",
        ],
        &[
            ("libz.so.1", &["ZLIB_1.2.9"]),
            ("libfoo.so.1", &["FOO_1.1"]),
            ("libc.so.6", &["GLIBC_2.17", app_glibc]),
        ],
        &["canary_sing", "foo_run", "malloc", "deflate"],
    );
    Fixture {
        _dir: dir,
        root,
        canary,
    }
}

fn entry(name: &str, defs: &[&str], deps: &[&str]) -> LibEntry {
    LibEntry {
        apiversions: vs(defs),
        deps: vs(deps),
        name: name.to_owned(),
        package: None,
        version: None,
        unresolved: Vec::new(),
        exports: None,
    }
}

/// An entry with recorded exports, as `platform init` writes them.
fn entry_exports(name: &str, deps: &[&str], exports: &[&str]) -> LibEntry {
    LibEntry {
        exports: Some(ExportSet::from_names(exports.iter().copied()).into()),
        ..entry(name, &[], deps)
    }
}

/// The device: glibc 2.35, libz, a libfoo without FOO_1.1, libbar, libcanary.
fn device() -> LibsInventory {
    let glibc = ["GLIBC_2.17", "GLIBC_2.34", "GLIBC_2.35", "GLIBC_PRIVATE"];
    let mut libs = vec![
        entry(LD, &glibc, &[]),
        entry("/lib/libc.so.6", &glibc, &[LD]),
        entry("/lib/libm.so.6", &glibc, &["/lib/libc.so.6"]),
        entry(
            "/lib/libnss_files.so.2",
            &["GLIBC_PRIVATE"],
            &["/lib/libc.so.6"],
        ),
        entry("/lib/libanl.so.1", &["GLIBC_2.17"], &["/lib/libc.so.6"]),
        entry(
            "/usr/lib/libz.so.1",
            &["ZLIB_1.2.0", "ZLIB_1.2.9", "ZLIB_1.2.12"],
            &["/lib/libc.so.6"],
        ),
        entry(
            "/usr/lib/libfoo.so.1",
            &["FOO_1.0"],
            &["/usr/lib/libbar.so.2", "/lib/libc.so.6"],
        ),
        LibEntry {
            apiversions: vs(&["BAR_2"]),
            ..entry_exports(
                "/usr/lib/libbar.so.2",
                &["/lib/libc.so.6", "/usr/lib/libextra.so.7"],
                &["bar_close", "bar_open", "bar_new"],
            )
        },
        entry("/usr/lib/libextra.so.7", &[], &["/lib/libc.so.6"]),
        entry_exports(
            "/usr/lib/libcanary.so.1",
            &["/lib/libc.so.6"],
            &["canary_sing", "canary_fly"],
        ),
        entry("/usr/lib/mali/libEGL.so.1", &[], &["/lib/libc.so.6"]),
    ];
    libs.sort_by(|a, b| a.name.cmp(&b.name));
    LibsInventory { libs }
}

pub(crate) fn platform(extra: serde_json::Value) -> Platform {
    let mut raw = json!({
        "platformName": "testboard", "os": "linux",
        "arch": {"arch": "aarch64", "variant": "v8"},
        "rdk": {"version": "2024Q3", "supportedFeatures": ["DeviceInfo"]},
        "hardware": {"graphics": true, "maxRam": "256M"},
        "network": {"options": ["nat", "open"]},
        "storage": {"persistent": {"storageDir": "/data", "maxSize": "100M", "maxTotalSize": "150M"}},
        "gpu": {"gfxLibs": [{"src": "/usr/lib/mali/libEGL.so.1", "dst": "/usr/lib/libEGL.so.1"}]},
        "display": {"resolutions": ["1920x1080@60", "1280x720"]}
    });
    bundlegen::platform::merge_patch(&mut raw, &extra);
    let spec: PlatformSpec = serde_json::from_value(raw.clone()).expect("spec");
    Platform {
        name: "testboard".into(),
        spec,
        raw,
        sources: Vec::new(),
        libs: Some(device()),
        libs_path: None,
    }
}

pub(crate) fn run(fx: &Fixture, p: &Platform, options: &MatchOptions) -> MatchPlan {
    let scan = elf::scan(&fx.root, &Silent).expect("scan");
    libmatch::plan(
        &fx.root,
        &scan,
        p,
        None,
        Some(&bundlegen::compat::entrypoint_roots(&fx.root, "/usr/bin/app", None)),
        options,
        &Silent,
    )
    .expect("plan")
}

pub(crate) fn action(plan: &MatchPlan, soname: &str) -> (Action, String) {
    let d = plan
        .decision(soname)
        .unwrap_or_else(|| panic!("no decision for {soname}: {plan:#?}"));
    (d.action, d.reason.clone())
}

fn mounted(plan: &MatchPlan, source: &str, destination: &str) -> bool {
    plan.mounts
        .iter()
        .any(|m| m.source == source && m.destination == destination)
}

#[test]
fn covering_device_copy_is_mounted_and_the_image_copy_and_its_links_go() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    let plan = run(&fx, &platform(json!({})), &MatchOptions::default());
    assert_eq!(action(&plan, "libz.so.1").0, Action::FromDevice);
    assert!(
        mounted(&plan, "/usr/lib/libz.so.1", "/usr/lib/libz.so.1"),
        "{:#?}",
        plan.mounts
    );
    for p in [
        "/usr/lib/libz.so.1.2.13",
        "/usr/lib/libz.so.1",
        "/usr/lib/libz.so",
    ] {
        assert!(
            plan.remove.contains(&p.to_owned()),
            "{p} not removed: {:#?}",
            plan.remove
        );
    }
    let stats = libmatch::apply(&fx.root, &plan).expect("apply");
    assert!(
        stats.files_removed >= 3 && stats.bytes_removed > 0,
        "{stats:?}"
    );
    assert!(!fx.root.join("usr/lib/libz.so.1.2.13").exists());
    assert!(std::fs::symlink_metadata(fx.root.join("usr/lib/libz.so")).is_err());
    // Deterministic.
    let again = run(
        &image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34"),
        &platform(json!({})),
        &MatchOptions::default(),
    );
    let names = |p: &MatchPlan| {
        p.decisions
            .iter()
            .map(|d| (d.soname.clone(), d.action))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&plan), names(&again));
}

#[test]
fn device_copy_lacking_a_needed_version_is_not_taken_and_the_reason_says_which() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    let plan = run(&fx, &platform(json!({})), &MatchOptions::default());
    let (a, why) = action(&plan, "libfoo.so.1");
    assert_eq!(a, Action::KeepImage);
    assert!(
        why.contains("FOO_1.1") && why.contains("/usr/bin/app"),
        "{why}"
    );
    assert!(!plan.remove.iter().any(|p| p.contains("libfoo")));
    // libbar has no versioned users: it comes from the device, with the
    // device-only libextra it needs.
    assert_eq!(action(&plan, "libbar.so.2").0, Action::FromDevice);
    assert_eq!(action(&plan, "libextra.so.7").0, Action::FromDevice);
    assert!(
        mounted(&plan, "/usr/lib/libextra.so.7", "/usr/lib/libextra.so.7"),
        "{:#?}",
        plan.mounts
    );
}

#[test]
fn glibc_family_moves_as_one_unit_with_the_loader_at_pt_interp() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    let plan = run(&fx, &platform(json!({})), &MatchOptions::default());
    for so in [
        "libc.so.6",
        "libm.so.6",
        "ld-linux-aarch64.so.1",
        "libnss_files.so.2",
    ] {
        assert_eq!(action(&plan, so).0, Action::FromDevice, "{so}: {plan:#?}");
    }
    assert!(mounted(&plan, LD, LD));
    assert!(mounted(&plan, "/lib/libc.so.6", "/lib/libc.so.6"));
    // Not reached and not kept: pruned rather than left mismatched.
    assert_eq!(action(&plan, "libanl.so.1").0, Action::Pruned);

    // With --no-prune the unreached glibc member is replaced too.
    let options = MatchOptions {
        prune: false,
        ..MatchOptions::default()
    };
    let plan = run(&fx, &platform(json!({})), &options);
    assert_eq!(action(&plan, "libanl.so.1").0, Action::FromDevice);
}

#[test]
fn glibc_family_stays_together_when_the_device_lacks_a_version() {
    // The app needs GLIBC_2.36; the device's glibc is 2.35.
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34", "GLIBC_2.36"], "GLIBC_2.36");
    let plan = run(&fx, &platform(json!({})), &MatchOptions::default());
    let (a, why) = action(&plan, "libc.so.6");
    assert_eq!(a, Action::KeepImage);
    assert!(why.contains("GLIBC_2.36"), "{why}");
    for so in ["libm.so.6", "ld-linux-aarch64.so.1", "libnss_files.so.2"] {
        let (a, why) = action(&plan, so);
        assert_eq!(a, Action::KeepImage, "{so}");
        assert!(
            why.contains("glibc family") && why.contains("libc.so.6"),
            "{so}: {why}"
        );
    }
    // The device's libz needs the device's libc versions (GLIBC_2.35),
    // which the image's libc lacks: it stays in the image too.
    let (a, why) = action(&plan, "libz.so.1");
    assert_eq!(a, Action::KeepImage);
    assert!(why.contains("GLIBC_2.35"), "{why}");
    assert!(!plan.mounts.iter().any(|m| m.destination == LD));
}

#[test]
fn newer_image_glibc_lets_device_libraries_in() {
    let defs = [
        "GLIBC_2.17",
        "GLIBC_2.34",
        "GLIBC_2.35",
        "GLIBC_2.36",
        "GLIBC_PRIVATE",
    ];
    let fx = image(&defs, "GLIBC_2.36");
    let plan = run(&fx, &platform(json!({})), &MatchOptions::default());
    assert_eq!(action(&plan, "libc.so.6").0, Action::KeepImage);
    assert_eq!(action(&plan, "libz.so.1").0, Action::FromDevice);
}

#[test]
fn mode_image_keeps_everything_but_gpu_libraries() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    lib(
        &fx.root,
        "/usr/lib/libEGL.so.1.0.0",
        "libEGL.so.1",
        &["libc.so.6"],
        &[],
        &[],
    );
    link(&fx.root, "/usr/lib/libEGL.so.1", "libEGL.so.1.0.0");
    exe(
        &fx.root,
        Machine::Aarch64,
        "/usr/bin/gl",
        &["libEGL.so.1", "libc.so.6"],
        &[],
    );
    let options = MatchOptions {
        mode: Mode::Image,
        graphics: true,
        ..MatchOptions::default()
    };
    let plan = run(&fx, &platform(json!({})), &options);
    for so in ["libz.so.1", "libc.so.6", "libbar.so.2"] {
        let (a, why) = action(&plan, so);
        assert_eq!(a, Action::KeepImage, "{so}");
        assert!(
            why.contains("mode image") || why.contains("glibc family"),
            "{so}: {why}"
        );
    }
    let (a, why) = action(&plan, "libEGL.so.1");
    assert_eq!(a, Action::FromDevice);
    assert!(why.contains("gpu.gfxLibs"), "{why}");
    assert!(mounted(
        &plan,
        "/usr/lib/mali/libEGL.so.1",
        "/usr/lib/libEGL.so.1"
    ));
    assert!(plan.remove.contains(&"/usr/lib/libEGL.so.1.0.0".to_owned()));

    // Without graphics the image keeps its own (the device lists none at that name).
    let options = MatchOptions {
        graphics: false,
        ..options
    };
    let plan = run(&fx, &platform(json!({})), &options);
    assert_eq!(action(&plan, "libEGL.so.1").0, Action::KeepImage);
}

#[test]
fn mode_host_takes_the_device_copy_whatever_the_versions() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    let options = MatchOptions {
        mode: Mode::Host,
        ..MatchOptions::default()
    };
    let plan = run(&fx, &platform(json!({})), &options);
    let (a, why) = action(&plan, "libfoo.so.1");
    assert_eq!(a, Action::FromDevice);
    assert!(why.contains("mode host"), "{why}");
}

#[test]
fn no_dep_walking_matches_only_direct_needs() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    let options = MatchOptions {
        no_dep_walking: true,
        ..MatchOptions::default()
    };
    let plan = run(&fx, &platform(json!({})), &options);
    let (a, why) = action(&plan, "libbar.so.2");
    assert_eq!(a, Action::KeepImage);
    assert!(why.contains("-n"), "{why}");
    assert_eq!(action(&plan, "libz.so.1").0, Action::FromDevice);
    assert!(plan.decision("libextra.so.7").is_none());
}

#[test]
fn pruning_honours_default_and_user_keep_patterns() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    let plan = run(&fx, &platform(json!({})), &MatchOptions::default());
    assert_eq!(
        plan.pruned,
        vec![
            "/lib/libanl.so.1".to_owned(),
            "/usr/lib/libunused.so.3".to_owned()
        ]
    );
    assert!(
        !plan.remove.iter().any(|p| p.contains("libgcc_s")),
        "libgcc_s is kept by default"
    );
    assert!(
        plan.decision("libgcc_s.so.1")
            .is_some_and(|d| d.action != Action::Pruned)
    );

    let options = MatchOptions {
        keep: vec!["libunused.so*".into()],
        ..MatchOptions::default()
    };
    let plan = run(&fx, &platform(json!({})), &options);
    assert_eq!(plan.pruned, vec!["/lib/libanl.so.1".to_owned()]);

    let options = MatchOptions {
        prune: false,
        ..MatchOptions::default()
    };
    let plan = run(&fx, &platform(json!({})), &options);
    assert!(plan.pruned.is_empty());

    let bad = MatchOptions {
        keep: vec!["lib[".into()],
        ..MatchOptions::default()
    };
    let scan = elf::scan(&fx.root, &Silent).expect("scan");
    let err = libmatch::plan(
        &fx.root,
        &scan,
        &platform(json!({})),
        None,
        None,
        &bad,
        &Silent,
    )
    .expect_err("bad glob");
    assert!(err.to_string().contains("lib["), "{err}");
}

#[test]
fn absolute_symlinks_are_resolved_in_the_rootfs_never_on_the_host() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    // A second trap: an absolute symlink to a directory on the host.
    link(
        &fx.root,
        "/usr/lib/hostdir",
        &fx.canary.display().to_string(),
    );
    let plan = run(&fx, &platform(json!({})), &MatchOptions::default());
    assert_eq!(action(&plan, "libcanary.so.1").0, Action::FromDevice);
    let in_root = format!("{}/libcanary.so.1", fx.canary.display());
    assert!(plan.remove.contains(&in_root), "{:#?}", plan.remove);
    libmatch::apply(&fx.root, &plan).expect("apply");
    assert_eq!(
        std::fs::read(fx.canary.join("libcanary.so.1")).expect("canary"),
        b"host file"
    );
    assert!(!fx.root.join(in_root.trim_start_matches('/')).exists());
    // Removing through the directory symlink stays in the rootfs too.
    let trap = MatchPlan {
        remove: vec!["/usr/lib/hostdir/libcanary.so.1".into()],
        ..MatchPlan::default()
    };
    libmatch::apply(&fx.root, &trap).expect("apply");
    assert_eq!(
        std::fs::read(fx.canary.join("libcanary.so.1")).expect("canary"),
        b"host file"
    );
}

/// The platform with the device's libbar replaced by `bar`.
fn with_device_libbar(bar: LibEntry) -> Platform {
    let mut p = platform(json!({}));
    let libs = p.libs.as_mut().expect("inventory");
    let i = libs
        .libs
        .iter()
        .position(|l| l.name == "/usr/lib/libbar.so.2")
        .expect("libbar");
    libs.libs[i] = bar;
    p
}

#[test]
fn issue_11_unversioned_library_whose_device_copy_lacks_a_needed_symbol_stays_in_the_image() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    // The device's libbar (same soname, no symbol versioning in use) lacks
    // bar_close, which the image's libfoo calls.
    let p = with_device_libbar(entry_exports(
        "/usr/lib/libbar.so.2",
        &["/lib/libc.so.6"],
        &["bar_open", "bar_new"],
    ));
    let plan = run(&fx, &p, &MatchOptions::default());
    let d = plan.decision("libbar.so.2").expect("libbar decided");
    assert_eq!(d.action, Action::KeepImage, "{}", d.reason);
    assert!(
        d.reason.contains("bar_close") && d.reason.contains("/usr/lib/libfoo.so.1"),
        "{}",
        d.reason
    );
    let ev = d.evidence.as_ref().expect("evidence");
    assert_eq!(ev.symbols, vs(&["bar_close", "bar_open"]));
    assert_eq!(ev.missing, vs(&["bar_close"]));
    assert!(!plan.mounts.iter().any(|m| m.source.contains("libbar")));
    assert!(!plan.remove.iter().any(|r| r.contains("libbar")));

    // -m host takes it anyway.
    let host = MatchOptions {
        mode: Mode::Host,
        ..MatchOptions::default()
    };
    assert_eq!(
        action(&run(&fx, &p, &host), "libbar.so.2").0,
        Action::FromDevice
    );

    // With the symbol it is replaced, and the report says on what evidence.
    let plan = run(&fx, &platform(json!({})), &MatchOptions::default());
    let d = plan.decision("libbar.so.2").expect("libbar decided");
    assert_eq!(d.action, Action::FromDevice, "{}", d.reason);
    assert!(d.reason.contains("exports all 2 symbols"), "{}", d.reason);
    let ev = d.evidence.as_ref().expect("evidence");
    assert_eq!(ev.symbols, vs(&["bar_close", "bar_open"]));
    assert!(ev.missing.is_empty());
    let report = serde_json::to_value(d).expect("json");
    assert_eq!(
        report["evidence"]["symbols"],
        json!(["bar_close", "bar_open"])
    );
    // Versioned replacements name the versions instead.
    let z = plan.decision("libz.so.1").expect("libz");
    assert_eq!(z.action, Action::FromDevice);
    assert_eq!(
        z.evidence.as_ref().expect("evidence").versions,
        vs(&["ZLIB_1.2.9"])
    );
}

#[test]
fn a_damaged_exports_entry_stops_the_plan_naming_its_key() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    // The inventory is read without decoding exports; libbar's, used to
    // judge its symbols, is damaged.
    let mut bar = entry("/usr/lib/libbar.so.2", &[], &["/lib/libc.so.6"]);
    bar.exports = Some(serde_json::from_value(json!("sha256-64:a*b")).expect("any string reads"));
    let mut p = with_device_libbar(bar);
    p.libs_path = Some(PathBuf::from("/platforms/testboard_libs.json"));
    let index = p.libs.as_ref().and_then(|l| l.index_of("/usr/lib/libbar.so.2")).expect("libbar");
    let scan = elf::scan(&fx.root, &Silent).expect("scan");
    let entry = bundlegen::compat::entrypoint_roots(&fx.root, "/usr/bin/app", None);
    let err = libmatch::plan(&fx.root, &scan, &p, None, Some(&entry), &MatchOptions::default(), &Silent)
        .expect_err("damaged exports");
    assert!(err.is_bad_input());
    let text = err.to_string();
    for part in [
        "/platforms/testboard_libs.json",
        &format!("libs[{index}].exports"),
        "/usr/lib/libbar.so.2",
        "'*' is not a base64 character",
        "write the inventory again with bundlegen platform init",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    // An undamaged inventory plans.
    run(&fx, &platform(json!({})), &MatchOptions::default());
}

#[test]
fn issue_11_without_recorded_exports_an_unversioned_library_stays_unless_mode_host() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    // A BundleGen inventory: no exports key.
    let p = with_device_libbar(LibEntry {
        apiversions: vs(&["BAR_2"]),
        ..entry("/usr/lib/libbar.so.2", &[], &["/lib/libc.so.6"])
    });
    let plan = run(&fx, &p, &MatchOptions::default());
    let (a, why) = action(&plan, "libbar.so.2");
    assert_eq!(a, Action::KeepImage);
    assert!(
        why.contains("records no exports") && why.contains("-m host"),
        "{why}"
    );
    let host = MatchOptions {
        mode: Mode::Host,
        ..MatchOptions::default()
    };
    let (a, why) = action(&run(&fx, &p, &host), "libbar.so.2");
    assert_eq!(a, Action::FromDevice, "{why}");
    // Versioned libraries are unaffected: libz still comes from the device.
    assert_eq!(action(&plan, "libz.so.1").0, Action::FromDevice);
}

#[test]
fn issue_11_a_library_loaded_by_name_needs_every_export_on_the_device() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    // A keep pattern protects libplug (loaded with dlopen, no DT_NEEDED user).
    lib_syms(
        &fx.root,
        "/usr/lib/libplug.so.1",
        "libplug.so.1",
        &["libc.so.6"],
        &[],
        &[],
        (&["plug_init", "plug_run"], &[]),
    );
    let keep = MatchOptions {
        keep: vec!["libplug.so*".into()],
        ..MatchOptions::default()
    };
    let mut p = platform(json!({}));
    let libs = p.libs.as_mut().expect("inventory");
    libs.libs.push(entry_exports(
        "/usr/lib/libplug.so.1",
        &["/lib/libc.so.6"],
        &["plug_init"],
    ));
    libs.libs.sort_by(|a, b| a.name.cmp(&b.name));
    let plan = run(&fx, &p, &keep);
    let d = plan.decision("libplug.so.1").expect("decided");
    assert_eq!(d.action, Action::KeepImage, "{}", d.reason);
    assert_eq!(
        d.evidence.as_ref().expect("evidence").missing,
        vs(&["plug_run"])
    );
}

/// Appends `text` to an existing file (read-only data after the segments:
/// the file stays a valid ELF object).
fn append(root: &Path, path: &str, text: &[u8]) {
    use std::io::Write;
    let p = root.join(path.trim_start_matches('/'));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    f.write_all(text).expect("append");
}

fn write(root: &Path, path: &str, text: &[u8]) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

#[test]
fn issue_11_gpu_libraries_with_unknown_dependencies_stop_pruning() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    // libm and librt: nothing in the image links them, but the device's GPU
    // libraries (mounted for a graphics app) may.
    lib(
        &fx.root,
        "/lib/librt.so.1",
        "librt.so.1",
        &["libc.so.6"],
        &["GLIBC_2.17"],
        &[],
    );
    let graphics = MatchOptions {
        graphics: true,
        ..MatchOptions::default()
    };
    // Like Comcast's xi6 template: no inventory at all.
    let mut p = platform(json!({}));
    p.libs = None;
    let plan = run(&fx, &p, &graphics);
    assert!(plan.pruned.is_empty(), "{:#?}", plan.pruned);
    assert!(
        !plan
            .remove
            .iter()
            .any(|r| r.contains("librt") || r.contains("libunused"))
    );
    for so in ["librt.so.1", "libunused.so.3", "libanl.so.1"] {
        let (a, why) = action(&plan, so);
        assert_eq!(a, Action::KeepImage, "{so}");
        assert!(
            why.contains("libEGL.so.1 (/usr/lib/mali/libEGL.so.1)")
                && why.contains("without an inventory entry"),
            "{so}: {why}"
        );
    }
    let (a, _) = action(&plan, "libEGL.so.1");
    assert_eq!(a, Action::FromDevice);

    // An inventory that does not list the GPU library: the same.
    let mut p = platform(json!({}));
    p.libs
        .as_mut()
        .expect("inventory")
        .libs
        .retain(|l| !l.name.contains("mali"));
    assert!(run(&fx, &p, &graphics).pruned.is_empty());

    // Its dependencies known (the inventory lists them): unreached libraries
    // go, and each says why.
    let plan = run(&fx, &platform(json!({})), &graphics);
    assert!(
        plan.pruned.contains(&"/usr/lib/libunused.so.3".to_owned()),
        "{:#?}",
        plan.pruned
    );
    let (a, why) = action(&plan, "libunused.so.3");
    assert_eq!(a, Action::Pruned);
    assert!(why.contains("no file of the image names it"), "{why}");
    // Without graphics nothing is mounted from the GPU: pruning as usual.
    let mut p = platform(json!({}));
    p.libs = None;
    assert!(!run(&fx, &p, &MatchOptions::default()).pruned.is_empty());
}

#[test]
fn issue_11_libraries_named_anywhere_in_the_image_are_kept_with_the_reason() {
    let fx = image(&["GLIBC_2.17", "GLIBC_2.34"], "GLIBC_2.34");
    let r = fx.root.as_path();
    // SDL's Wayland backend dlopens libwayland-cursor.so.0, which needs
    // libwayland-client.so.0 (nothing else links either).
    lib(
        r,
        "/usr/lib/libSDL2-2.0.so.0",
        "libSDL2-2.0.so.0",
        &["libc.so.6"],
        &[],
        &[],
    );
    append(
        r,
        "/usr/lib/libSDL2-2.0.so.0",
        b"\0libwayland-cursor.so.0\0libwayland-egl.so.1\0",
    );
    exe(
        r,
        Machine::Aarch64,
        "/usr/bin/game",
        &["libSDL2-2.0.so.0", "libc.so.6"],
        &[],
    );
    lib(
        r,
        "/usr/lib/libwayland-cursor.so.0.22.0",
        "libwayland-cursor.so.0",
        &["libwayland-client.so.0", "libc.so.6"],
        &[],
        &[],
    );
    link(
        r,
        "/usr/lib/libwayland-cursor.so.0",
        "libwayland-cursor.so.0.22.0",
    );
    lib(
        r,
        "/usr/lib/libwayland-client.so.0",
        "libwayland-client.so.0",
        &["libc.so.6"],
        &[],
        &[],
    );
    // A script preloads another; a symlink outside the loader directories
    // points at a third.
    lib(
        r,
        "/usr/lib/libpreload.so.1",
        "libpreload.so.1",
        &["libc.so.6"],
        &[],
        &[],
    );
    write(
        r,
        "/usr/bin/start.sh",
        b"#!/bin/sh\nLD_PRELOAD=/usr/lib/libpreload.so.1 exec /usr/bin/app\n",
    );
    lib(
        r,
        "/usr/lib/libbyopath.so.2",
        "libbyopath.so.2",
        &["libc.so.6"],
        &[],
        &[],
    );
    link(
        r,
        "/opt/app/lib/libbyopath.so.2",
        "/usr/lib/libbyopath.so.2",
    );
    // Plugin folders are modules: never pruned, and what they need stays.
    lib(
        r,
        "/usr/lib/gstreamer-1.0/libgstfoo.so",
        "",
        &["libgstdep.so.1", "libc.so.6"],
        &[],
        &[],
    );
    lib(
        r,
        "/usr/lib/libgstdep.so.1",
        "libgstdep.so.1",
        &["libc.so.6"],
        &[],
        &[],
    );
    // Package databases and the loader cache list every library: they do
    // not count, and libunused still goes.
    write(
        r,
        "/var/lib/dpkg/info/libunused3.list",
        b"/usr/lib/libunused.so.3\n",
    );
    write(
        r,
        "/etc/ld.so.cache",
        b"ld.so-1.7.0\0libunused.so.3\0/usr/lib/libunused.so.3\0",
    );

    let plan = run(&fx, &platform(json!({})), &MatchOptions::default());
    let d = plan.decision("libwayland-cursor.so.0").expect("decided");
    assert_eq!(d.action, Action::KeepImage, "{}", d.reason);
    let ev = d.evidence.as_ref().expect("evidence");
    assert_eq!(ev.named_in, vs(&["/usr/lib/libSDL2-2.0.so.0"]));
    assert!(
        d.needed_by
            .contains(&"(named in /usr/lib/libSDL2-2.0.so.0)".to_owned())
    );
    // What it needs stays too (it is a root like a kept library).
    let client = plan.decision("libwayland-client.so.0").expect("decided");
    assert_ne!(client.action, Action::Pruned, "{}", client.reason);
    assert!(
        client
            .needed_by
            .contains(&"/usr/lib/libwayland-cursor.so.0.22.0".to_owned()),
        "{:?}",
        client.needed_by
    );
    let pre = plan.decision("libpreload.so.1").expect("decided");
    assert_eq!(
        pre.evidence.as_ref().expect("evidence").named_in,
        vs(&["/usr/bin/start.sh"])
    );
    let by_path = plan.decision("libbyopath.so.2").expect("decided");
    assert_ne!(by_path.action, Action::Pruned);
    assert_eq!(
        by_path.evidence.as_ref().expect("evidence").named_in,
        vs(&["/opt/app/lib/libbyopath.so.2"])
    );
    assert_ne!(action(&plan, "libgstdep.so.1").0, Action::Pruned);
    assert_eq!(
        plan.pruned,
        vs(&["/lib/libanl.so.1", "/usr/lib/libunused.so.3"]),
        "only what nothing names goes"
    );
    for p in &plan.pruned {
        let d = plan
            .decisions
            .iter()
            .find(|d| d.image_path.as_ref() == Some(p))
            .expect("a decision per pruned file");
        assert!(
            d.reason.contains("no file of the image names it"),
            "{}",
            d.reason
        );
    }
    let pruning = plan;

    // --no-prune: every unreached library has a decision saying so.
    let plan = run(
        &fx,
        &platform(json!({})),
        &MatchOptions {
            prune: false,
            ..MatchOptions::default()
        },
    );
    assert!(plan.pruned.is_empty());
    let (a, why) = action(&plan, "libunused.so.3");
    assert_eq!(a, Action::KeepImage);
    assert!(why.contains("--no-prune"), "{why}");

    libmatch::apply(&fx.root, &pruning).expect("apply");
    assert!(r.join("usr/lib/libwayland-cursor.so.0.22.0").exists());
    assert!(!r.join("usr/lib/libunused.so.3").exists());
}
