//! End-to-end: `bundlegen unpack` against tools nobody here wrote.
//!
//! Images are built in the test from real Debian packages with `umoci`
//! (`init`, `new`, `unpack --rootless`, edit the rootfs, `repack`), plus
//! hand-crafted layers for what umoci never emits (opaque markers, whiteouts
//! below a fresh symlink), then converted with `skopeo`. The oracle is
//! `umoci unpack --rootless`; where umoci 0.4.7 is known to be wrong the test
//! asserts the runtime-correct tree instead and says why.
//!
//! These tests need umoci, skopeo, apt-get and dpkg. Without them they print
//! a notice and pass, except when `CI` is set: then they fail. Set
//! `BUNDLEGEN_TEST_KEEP=1` to keep each test's scratch directory (images,
//! both unpacked trees) under `<target>/e2e-tmp`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::debian::{self, Arch, copy_tree, run};
use crate::layout_edit::{Compression, LayerBuilder, Layout};
use crate::treecmp;

/// Whether every tool in `tools` is on PATH. A missing tool fails the test
/// under CI; elsewhere it prints a notice and the caller returns early.
#[track_caller]
pub(crate) fn have(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t} >/dev/null")])
                .status()
                .map(|s| !s.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = format!(
        "missing tools: {}\nhelp: run .ci/run, or `apt-get install umoci skopeo` on Debian 12",
        missing.join(", ")
    );
    if env::var_os("CI").is_some() {
        panic!("CI is set and this end-to-end test cannot run: {what}");
    }
    eprintln!("notice: skipping end-to-end test: {what}");
    false
}

const DEBIAN_TOOLS: &[&str] = &["umoci", "apt-get", "apt-cache", "dpkg", "cp"];

/// A scratch directory under the target dir (not /tmp), removed on drop
/// unless `BUNDLEGEN_TEST_KEEP` is set (to look at a failing test's images
/// and trees).
fn scratch() -> tempfile::TempDir {
    let base = debian::cache_dir().with_file_name("e2e-tmp");
    fs::create_dir_all(&base).expect("create e2e scratch base");
    let dir = tempfile::Builder::new()
        .prefix("e2e-")
        .disable_cleanup(env::var_os("BUNDLEGEN_TEST_KEEP").is_some())
        .tempdir_in(&base)
        .expect("create e2e scratch dir");
    eprintln!("scratch dir: {}", dir.path().display());
    dir
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `bundlegen unpack [extra] IMAGE DEST`, which must succeed. As root it
/// runs in its default (owner-preserving) mode, otherwise with --rootless.
fn bundlegen_unpack(image: &str, dest: &Path, extra: &[&str]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bundlegen"));
    cmd.arg("unpack");
    if !is_root() && !extra.contains(&"--rootless") {
        cmd.arg("--rootless");
    }
    cmd.args(extra).arg(image).arg(dest);
    run(&mut cmd);
}

/// `umoci unpack --rootless`; returns the bundle's rootfs.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
    bundle.join("rootfs")
}

fn oci_ref(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

/// An image under construction with umoci: a layout plus an unpacked
/// bundle whose rootfs the test edits between commits.
struct UmociImage {
    layout: PathBuf,
    bundle: PathBuf,
}

impl UmociImage {
    /// An empty image for `arch` (tag `base`, no layers) unpacked for editing.
    fn new(dir: &Path, arch: Arch) -> UmociImage {
        let layout = dir.join("image");
        let bundle = dir.join("work-bundle");
        run(Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout));
        run(Command::new("umoci")
            .args(["new", "--image"])
            .arg(format!("{}:base", layout.display())));
        run(Command::new("umoci")
            .args(["config", "--image"])
            .arg(format!("{}:base", layout.display()))
            .args(["--os", "linux", "--architecture", arch.name()]));
        umoci_unpack(&layout, "base", &bundle);
        UmociImage { layout, bundle }
    }

    fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Run a shell script inside the rootfs.
    fn edit(&self, script: &str) {
        run(Command::new("sh")
            .args(["-euxc", script])
            .current_dir(self.rootfs()));
    }

    /// `umoci repack` the rootfs as a new layer on top of the last commit.
    fn commit(&self, tag: &str) {
        run(Command::new("umoci")
            .args(["repack", "--refresh-bundle", "--image"])
            .arg(format!("{}:{tag}", self.layout.display()))
            .arg(&self.bundle));
    }

    fn layout(&self) -> Layout {
        Layout::open(&self.layout)
    }
}

/// Edits for a second layer, on paths from [`debian::EXTRA`]: deletions of
/// files and directories, type changes in every direction, mode changes
/// (setuid, setgid, sticky), a new hardlink to a lower-layer file, a pair of
/// new hardlinks, an absolute symlink, a fifo, awkward and long names.
const SECOND_LAYER: &str = r#"
rm usr/bin/rgrep
rm -r usr/share/doc/mount
rm etc/login.defs && ln -s pam.d/login etc/login.defs
rm usr/sbin/vigr && printf 'now a file\n' > usr/sbin/vigr
rm -r usr/share/doc/login && printf 'was a dir\n' > usr/share/doc/login
rm etc/default/useradd && mkdir etc/default/useradd && printf 'inside\n' > etc/default/useradd/conf
chmod 4750 usr/bin/chsh
chmod 2755 usr/share/doc/passwd
chmod 1777 usr/share/bash-completion
chmod 0700 usr/share/doc/grep
ln bin/grep usr/bin/grep-hardlink
mkdir -p opt/pair && printf 'pair\n' > opt/pair/a && ln opt/pair/a opt/pair/b && chmod 0604 opt/pair/a
ln -s /etc/pam.d/login etc/absolute-link
ln -s ../../../../../../etc/passwd usr/share/escaping-link
mkfifo -m 0620 etc/fifo
printf 'space\n' > 'etc/with space'
printf 'unicode\n' > 'etc/ünïcödé'
long=opt/a-rather-long-directory-name-for-ustar/another-rather-long-directory-name
mkdir -p "$long" && printf 'long\n' > "$long/and-a-file-name-that-takes-the-path-well-past-one-hundred-bytes.txt"
"#;

/// Edits for a third layer: directories deleted and recreated with new
/// contents (umoci writes a whiteout per old entry), a deletion of something
/// the previous layer added, a path deleted earlier coming back as a symlink.
const THIRD_LAYER: &str = r#"
rm -r etc/pam.d && mkdir etc/pam.d && printf 'only me\n' > etc/pam.d/only-this
rm -r usr/share/doc/grep && mkdir -m 0751 usr/share/doc/grep && printf 'new\n' > usr/share/doc/grep/NEW
rm 'etc/with space'
ln -s grep usr/share/doc/mount
rm opt/pair/b
"#;

/// Owner of `opt/crafted/owned`: umoci's rootless repack writes every
/// entry as 0:0, so only the crafted layer can check ownership.
const CRAFTED_OWNER: (u64, u64) = (1234, 42);

/// A fourth layer umoci cannot write: an opaque directory, a whiteout then
/// a re-add of one name, a whiteout of a path that never existed, an opaque
/// marker in a directory new in this layer, hardlinks within the layer and
/// to a lower layer's file.
fn crafted_layer() -> Vec<u8> {
    let mut l = LayerBuilder::new();
    l.dir("etc/", 0o755)
        .whiteout("etc/login.defs")
        .file("etc/login.defs", 0o640, b"re-added after a whiteout\n")
        .whiteout("etc/no-such-file")
        .dir("opt/", 0o755)
        .dir("opt/crafted/", 0o750)
        .file("opt/crafted/a", 0o4755, b"crafted\n")
        .hardlink("opt/crafted/b", "opt/crafted/a")
        .file_owned("opt/crafted/owned", 0o2750, CRAFTED_OWNER, b"owned\n")
        .dir("srv/", 0o755)
        .dir("srv/fresh/", 0o755)
        .opaque("srv/fresh")
        .file("srv/fresh/file", 0o644, b"fresh\n")
        .dir("usr/", 0o755)
        .dir("usr/bin/", 0o755)
        .hardlink("usr/bin/grep-lower-link", "bin/grep")
        .dir("usr/share/", 0o755)
        .dir("usr/share/doc/", 0o755)
        .opaque("usr/share/doc")
        .file("usr/share/doc/README", 0o644, b"everything else is gone\n");
    l.finish()
}

/// Spot checks on an unpack of [`four_layer_image`], independent of umoci:
/// should umoci and bundlegen ever agree on a wrong tree, these still fail.
fn assert_four_layer_semantics(root: &Path, owners_applied: bool) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = |p: &str| {
        fs::symlink_metadata(root.join(p))
            .unwrap_or_else(|e| panic!("{p} in {}: {e}", root.display()))
    };
    let gone = |p: &str| {
        assert!(
            fs::symlink_metadata(root.join(p)).is_err(),
            "{p} should be deleted"
        )
    };
    // Opaque directory: only this layer's entry is left.
    let doc: Vec<_> = fs::read_dir(root.join("usr/share/doc"))
        .expect("usr/share/doc")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    assert_eq!(doc, ["README"], "opaque usr/share/doc");
    assert!(meta("srv/fresh/file").is_file());
    // Whiteouts, and a whiteout followed by a re-add in the same layer.
    gone("usr/bin/rgrep");
    gone("etc/with space");
    gone("opt/pair/b");
    gone("etc/no-such-file");
    assert_eq!(
        fs::read(root.join("etc/login.defs")).expect("etc/login.defs"),
        b"re-added after a whiteout\n"
    );
    assert!(meta("etc/pam.d/only-this").is_file());
    assert_eq!(
        fs::read_dir(root.join("etc/pam.d"))
            .expect("etc/pam.d")
            .count(),
        1
    );
    // Hardlinks: within a layer, across layers, to a lower layer's file.
    let grep = meta("bin/grep").ino();
    assert_eq!(meta("usr/bin/grep-hardlink").ino(), grep);
    assert_eq!(meta("usr/bin/grep-lower-link").ino(), grep);
    assert_eq!(meta("opt/crafted/b").ino(), meta("opt/crafted/a").ino());
    // Special modes and types.
    assert_eq!(meta("opt/crafted/a").mode() & 0o7777, 0o4755);
    assert_eq!(meta("usr/bin/chsh").mode() & 0o7777, 0o4750);
    assert_eq!(meta("usr/share/bash-completion").mode() & 0o7777, 0o1777);
    assert!(meta("etc/fifo").file_type().is_fifo());
    // Ownership: applied as root, left to the caller's ids with --rootless.
    let owned = meta("opt/crafted/owned");
    let expected = if owners_applied {
        CRAFTED_OWNER
    } else {
        // SAFETY: geteuid/getegid have no preconditions.
        unsafe { (libc::geteuid().into(), libc::getegid().into()) }
    };
    assert_eq!(
        (owned.uid().into(), owned.gid().into()),
        expected,
        "owner of opt/crafted/owned"
    );
    assert_eq!(owned.mode() & 0o7777, 0o2750, "setgid survives the chown");
    assert_eq!(
        fs::read_link(root.join("etc/absolute-link")).expect("etc/absolute-link"),
        Path::new("/etc/pam.d/login")
    );
}

/// Build a four-layer image: layer 1 is the tree `first`; layer 2 is
/// `second_extra` (if any) copied in, [`SECOND_LAYER`] and `more_second`;
/// layer 3 is [`THIRD_LAYER`] and `more_third`; layer 4 is
/// [`crafted_layer`]. Tags `l1` to `l4` name each stage.
fn four_layer_image(
    dir: &Path,
    arch: Arch,
    first: &Path,
    second_extra: Option<&Path>,
    more_second: &str,
    more_third: &str,
) -> UmociImage {
    let img = UmociImage::new(dir, arch);
    copy_tree(first, &img.rootfs());
    img.commit("l1");
    if let Some(extra) = second_extra {
        copy_tree(extra, &img.rootfs());
    }
    img.edit(SECOND_LAYER);
    img.edit(more_second);
    img.commit("l2");
    img.edit(THIRD_LAYER);
    img.edit(more_third);
    img.commit("l3");
    img.layout()
        .append_layer("l3", "l4", &crafted_layer(), Compression::Gzip);
    img
}

/// Edits on paths from [`debian::BASE`].
const BASE_SECOND: &str = r#"
rm -r usr/share/zoneinfo/America
rm usr/bin/perl5.36.0
chmod 0750 usr/bin/perl
rm -r usr/share/zoneinfo/Asia && printf 'not a dir\n' > usr/share/zoneinfo/Asia
rm etc/os-release && printf 'PRETTY_NAME=test\n' > etc/os-release
rm etc/issue && mkdir etc/issue && printf 'net\n' > etc/issue/net
ln bin/dash bin/dash-again
"#;

const BASE_THIRD: &str = r#"
rm -r usr/share/zoneinfo/Europe && mkdir usr/share/zoneinfo/Europe && printf 'TZif?\n' > usr/share/zoneinfo/Europe/Berlin
ln -s Europe usr/share/zoneinfo/America
chmod 3755 var/tmp
"#;

/// Build the four-layer Debian image for `arch` and check bundlegen's
/// unpack of it against umoci's. Returns the image for more checks (None
/// when the tools are missing outside CI).
fn debian_multilayer(arch: Arch, extra_flags: &[&str]) -> Option<(tempfile::TempDir, UmociImage)> {
    if !have(DEBIAN_TOOLS) {
        return None;
    }
    let base = debian::tree(&debian::BASE, arch);
    let extra = debian::tree(&debian::EXTRA, arch);
    let w = scratch();
    let img = four_layer_image(w.path(), arch, &base, Some(&extra), BASE_SECOND, BASE_THIRD);
    assert_eq!(
        img.layout().manifest("l4")["layers"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert_eq!(img.layout().config("l4")["architecture"], arch.name());

    let oracle = umoci_unpack(&img.layout, "l4", &w.path().join("umoci"));
    let ours = w.path().join("ours");
    bundlegen_unpack(&oci_ref(&img.layout, "l4"), &ours, extra_flags);
    treecmp::assert_same_tree(&oracle, &ours);
    let owners_applied = is_root() && !extra_flags.contains(&"--rootless");
    assert_four_layer_semantics(&ours, owners_applied);
    Some((w, img))
}

#[test]
fn e2e_debian_multilayer_amd64_matches_umoci() {
    let Some((w, img)) = debian_multilayer(Arch::Amd64, &[]) else {
        return;
    };
    // An intermediate tag of the same layout: only its own layers count.
    let oracle = umoci_unpack(&img.layout, "l2", &w.path().join("umoci-l2"));
    let ours = w.path().join("ours-l2");
    bundlegen_unpack(&oci_ref(&img.layout, "l2"), &ours, &[]);
    treecmp::assert_same_tree(&oracle, &ours);
}

#[test]
fn e2e_debian_multilayer_arm64_rootless_matches_umoci() {
    // umoci's index has no platform: bundlegen takes it from the config,
    // and accepts the kernel's name for the architecture.
    let Some((w, img)) = debian_multilayer(Arch::Arm64, &["--rootless", "--arch", "aarch64"])
    else {
        return;
    };
    let wrong = w.path().join("wrong-arch");
    let out = Command::new(env!("CARGO_BIN_EXE_bundlegen"))
        .args(["unpack", "--arch", "amd64"])
        .arg(oci_ref(&img.layout, "l4"))
        .arg(&wrong)
        .output()
        .expect("run bundlegen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an amd64 request on an arm64 image is bad input: {stderr}"
    );
    assert!(
        stderr.contains("linux/arm64"),
        "the error lists the image's platform: {stderr}"
    );
    assert!(!wrong.exists(), "a failed unpack leaves no rootfs behind");
}

/// The layer pair meta-virtualization's multi-layer image-oci writes for a
/// merged-usr layer on a traditional base: `bin -> usr/bin` and, in the same
/// layer, `bin/.wh.<name>` for every lower `bin/` entry (likewise `sbin`,
/// `lib`, `lib64`).
///
/// A runtime replaces the lower `bin/` directory with the symlink and never
/// resolves a whiteout through it. umoci 0.4.7 does resolve it: its whiteout
/// for `lib/<multiarch>` deletes `usr/lib/<multiarch>` from the lower layer,
/// so its output is not the oracle here; the expected tree is the merged-usr
/// system itself (lower tree with /bin, /sbin, /lib moved below /usr).
fn merged_usr_over_traditional(arch: Arch, compression: Compression) {
    if !have(DEBIAN_TOOLS) {
        return;
    }
    let fixture = debian::merged_usr(arch);
    let w = scratch();
    let img = UmociImage::new(w.path(), arch);
    copy_tree(&fixture.lower, &img.rootfs());
    img.commit("traditional");
    let upper = fs::read(&fixture.upper).expect("read merged-usr upper layer");
    img.layout()
        .append_layer("traditional", "merged", &upper, compression);

    let ours = w.path().join("ours");
    bundlegen_unpack(&oci_ref(&img.layout, "merged"), &ours, &[]);
    treecmp::assert_same_tree(&fixture.expected, &ours);

    // Record what umoci does with the same image, for the comment above.
    let bundle = w.path().join("umoci");
    let out = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:merged", img.layout.display()))
        .arg(&bundle)
        .output()
        .expect("run umoci");
    if !out.status.success() {
        eprintln!(
            "note: umoci 0.4.7 rejects the merged-usr image: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    } else {
        let (l, r, diffs) = treecmp::compare(&fixture.expected, &bundle.join("rootfs"));
        if diffs.is_empty() {
            eprintln!("note: umoci unpacked the merged-usr image correctly");
        } else {
            eprintln!(
                "note: umoci vs runtime-correct: {}",
                treecmp::report(&l, &r, &diffs)
            );
        }
    }
    // The multiarch libraries of the lower /usr/lib survive the whiteout of
    // lib/<multiarch>, and the moved ones are reachable through the symlink.
    let lib = ours.join("usr/lib").join(arch.multiarch());
    assert!(
        lib.join("libpcre2-8.so.0").exists(),
        "{} lost lower files",
        lib.display()
    );
    assert!(
        ours.join("lib")
            .join(arch.multiarch())
            .join("libc.so.6")
            .exists()
    );
    assert_eq!(
        fs::read_link(ours.join("bin")).expect("bin is a symlink"),
        Path::new("usr/bin")
    );
}

#[test]
fn e2e_merged_usr_over_traditional_amd64() {
    merged_usr_over_traditional(Arch::Amd64, Compression::Gzip);
}

#[test]
fn e2e_merged_usr_over_traditional_arm64_uncompressed() {
    merged_usr_over_traditional(Arch::Arm64, Compression::None);
}

/// A small four-layer amd64 image (tag `latest`) and umoci's unpack of it,
/// for the conversion tests.
struct Small {
    dir: tempfile::TempDir,
    img: UmociImage,
    oracle: PathBuf,
}

fn small_image() -> Small {
    let extra = debian::tree(&debian::EXTRA, Arch::Amd64);
    let dir = scratch();
    let img = four_layer_image(dir.path(), Arch::Amd64, &extra, None, "", "");
    img.layout()
        .append_layer("l3", "latest", &crafted_layer(), Compression::Gzip);
    let oracle = umoci_unpack(&img.layout, "latest", &dir.path().join("umoci"));
    assert_four_layer_semantics(&oracle, false);
    Small { dir, img, oracle }
}

fn skopeo_copy(args: &[&str], from: &str, to: &str) {
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .args(args)
        .args([from, to]));
}

#[test]
fn e2e_skopeo_zstd_layers_match_umoci() {
    if !have(&[DEBIAN_TOOLS, &["skopeo"]].concat()) {
        return;
    }
    let s = small_image();
    let zstd = s.dir.path().join("zstd");
    skopeo_copy(
        &["--dest-compress-format", "zstd"],
        &oci_ref(&s.img.layout, "latest"),
        &oci_ref(&zstd, "v1"),
    );
    let types = Layout::open(&zstd).layer_media_types("v1");
    assert_eq!(types.len(), 4);
    assert!(
        types.iter().all(|t| t.ends_with("+zstd")),
        "skopeo did not recompress with zstd: {types:?}"
    );
    let inspect = run(Command::new(env!("CARGO_BIN_EXE_bundlegen"))
        .args(["inspect", "--json"])
        .arg(oci_ref(&zstd, "v1")));
    let inspect: serde_json::Value =
        serde_json::from_str(&inspect).expect("inspect --json prints JSON");
    assert_eq!(inspect["platform"]["architecture"], "amd64");
    let layers = inspect["layers"].as_array().expect("inspect lists layers");
    assert_eq!(layers.len(), 4);
    assert!(
        layers.iter().all(|l| l["mediaType"] == types[0]),
        "{inspect:#}"
    );
    let ours = s.dir.path().join("ours");
    bundlegen_unpack(&oci_ref(&zstd, "v1"), &ours, &[]);
    treecmp::assert_same_tree(&s.oracle, &ours);
}

#[test]
fn e2e_skopeo_docker_archive_to_oci_matches_umoci() {
    if !have(&[DEBIAN_TOOLS, &["skopeo"]].concat()) {
        return;
    }
    let s = small_image();
    let archive = s.dir.path().join("docker.tar");
    skopeo_copy(
        &[],
        &oci_ref(&s.img.layout, "latest"),
        &format!("docker-archive:{}:bundlegen/e2e:v1", archive.display()),
    );
    let converted = s.dir.path().join("converted");
    skopeo_copy(
        &[],
        &format!("docker-archive:{}", archive.display()),
        &oci_ref(&converted, "latest"),
    );
    // docker-archive stores uncompressed layers; skopeo keeps them so.
    let types = Layout::open(&converted).layer_media_types("latest");
    assert_eq!(types.len(), 4, "{types:?}");
    // A plain layout path: its only image is tagged latest.
    let ours = s.dir.path().join("ours");
    bundlegen_unpack(&converted.display().to_string(), &ours, &[]);
    treecmp::assert_same_tree(&s.oracle, &ours);
}

/// Yocto's image-oci deploys `<image>-oci.tar`, made with
/// `cd <layout> && tar -cf ../<image>-oci.tar .` (entries named `./...`).
#[test]
fn e2e_oci_archive_yocto_style_matches_umoci() {
    if !have(DEBIAN_TOOLS) {
        return;
    }
    let s = small_image();
    let archive = s.dir.path().join("container-image-oci.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .current_dir(&s.img.layout));
    let ours = s.dir.path().join("ours");
    bundlegen_unpack(
        &format!("oci-archive:{}:latest", archive.display()),
        &ours,
        &[],
    );
    treecmp::assert_same_tree(&s.oracle, &ours);
    // The tag defaults to latest.
    let ours = s.dir.path().join("ours-default-tag");
    bundlegen_unpack(&format!("oci-archive:{}", archive.display()), &ours, &[]);
    treecmp::assert_same_tree(&s.oracle, &ours);
}

#[test]
fn e2e_oci_archive_from_skopeo_matches_umoci() {
    if !have(&[DEBIAN_TOOLS, &["skopeo"]].concat()) {
        return;
    }
    let s = small_image();
    let archive = s.dir.path().join("skopeo-oci.tar");
    skopeo_copy(
        &[],
        &oci_ref(&s.img.layout, "latest"),
        &format!("oci-archive:{}:v2", archive.display()),
    );
    let ours = s.dir.path().join("ours");
    bundlegen_unpack(&format!("oci-archive:{}:v2", archive.display()), &ours, &[]);
    treecmp::assert_same_tree(&s.oracle, &ours);
}
