//! The hostile corpus (docs/security.md, "Hostile-input cases"), one test per case, each
//! run through the real binary: `bundlegen unpack ... oci:<layout> <tmp>/rootfs`.
//!
//! Every fixture lives in its own temp dir holding a canary tree `host/`,
//! the layout `layout/` and the output `rootfs/`. Each run snapshots the
//! whole temp dir except `rootfs/` before and after, with all metadata
//! (content, mode, owner, mtime, inode, link count, xattrs): nothing outside
//! `rootfs/` may change, no entry may appear there, and no temp dir may be
//! left beside `rootfs/`. Hostile symlinks point at the canary's absolute
//! path, so a write through them would hit it; where the expected behaviour
//! is in-root resolution, the test checks the file landed at
//! `rootfs/<canary path>/...`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::builder::*;
use crate::treeview::{Kind, Node, Tree, snapshot};

// ---------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------

struct Fx {
    tmp: tempfile::TempDir,
}

/// The OCI name of the architecture this test runs on, so images match the
/// default platform.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => panic!("no OCI name known for {other}"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// An image for the host architecture.
fn image(layers: impl IntoIterator<Item = Layer>) -> Image {
    Image::new(layers).platform(host_arch(), "linux", None)
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::Builder::new()
            .prefix("bg-hostile-")
            .tempdir()
            .expect("tempdir");
        let host = tmp.path().join("host");
        std::fs::create_dir_all(host.join("dir/sub")).unwrap();
        std::fs::create_dir_all(host.join("tmp")).unwrap();
        std::fs::write(host.join("passwd"), "root:x:0:0:host:/root:/bin/sh\n").unwrap();
        std::fs::write(host.join("dir/file"), "outside\n").unwrap();
        std::fs::write(host.join("dir/sub/deep"), "deep\n").unwrap();
        std::fs::write(host.join("keep"), "keep\n").unwrap();
        std::os::unix::fs::symlink("dir", host.join("link")).unwrap();
        set_mode(&host.join("passwd"), 0o600);
        Fx { tmp }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Absolute path of the canary tree, e.g. `/tmp/bg-hostile-XXXX/host`.
    fn host(&self) -> String {
        self.path()
            .join("host")
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }

    /// The canary path relative to `/`: where in-root resolution puts it.
    fn host_rel(&self) -> String {
        self.host().trim_start_matches('/').to_string()
    }

    fn layout_dir(&self) -> PathBuf {
        self.path().join("layout")
    }

    fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    fn layout(&self) -> Layout {
        Layout::create(&self.layout_dir())
    }

    /// Write `img` tagged `latest` as the only manifest; return `oci:<dir>`.
    fn single(&self, img: Image) -> String {
        Layout::single(&self.layout_dir(), img);
        self.oci()
    }

    fn oci(&self) -> String {
        format!("oci:{}", self.layout_dir().display())
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.layout_dir().join("blobs/sha256").join(hex)
    }

    /// Run the binary with `args`; check nothing outside `rootfs/` changed.
    fn run(&self, args: &[&str]) -> Output {
        let before = snapshot(self.path(), &["rootfs"]);
        let out = Command::new(env!("CARGO_BIN_EXE_bundlegen"))
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run bundlegen");
        let after = snapshot(self.path(), &["rootfs"]);
        if before != after {
            let b: Vec<String> = before.iter().map(describe).collect();
            let a: Vec<String> = after.iter().map(describe).collect();
            panic!(
                "bundlegen {args:?} changed things outside rootfs/\nbefore:\n{}\nafter:\n{}\nstderr:\n{}",
                b.join("\n"),
                a.join("\n"),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    fn unpack_args<'a>(
        &'a self,
        flags: &[&'a str],
        image: &'a str,
        rootfs: &'a str,
    ) -> Vec<&'a str> {
        let mut args = vec!["unpack"];
        args.extend_from_slice(flags);
        args.push(image);
        args.push(rootfs);
        args
    }

    /// Unpack `image` into `rootfs/`, expecting success; return the tree.
    fn ok(&self, flags: &[&str], image: &str) -> Tree {
        let rootfs = self.rootfs().to_str().unwrap().to_string();
        let out = self.run(&self.unpack_args(flags, image, &rootfs));
        assert!(
            out.status.code() == Some(0),
            "expected success, got {:?}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tree::scan(&self.rootfs())
    }

    /// Unpack `image`, expecting exit 1 with an `error:` line; return stderr.
    /// `rootfs/` must not exist afterwards.
    fn fail(&self, flags: &[&str], image: &str) -> String {
        let rootfs = self.rootfs().to_str().unwrap().to_string();
        let out = self.run(&self.unpack_args(flags, image, &rootfs));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "expected exit 1\nstderr:\n{stderr}"
        );
        assert!(
            stderr.contains("error: "),
            "no `error: ` line in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
        assert!(
            !self.rootfs().exists(),
            "rootfs/ left behind after a failure"
        );
        stderr
    }

    /// Everything in the rootfs with the canary prefix made readable.
    fn render(&self, tree: &Tree) -> String {
        tree.render()
            .replace(&self.host_rel(), "<HOST>")
            .replace(&self.host(), "/<HOST>")
    }

    /// `[HOSTREL parents...]` as `render` would list them: every proper
    /// ancestor of `<HOST>/x` that `render` prints, as implied 0755 dirs.
    fn host_parents(&self) -> String {
        let rel = self.host_rel();
        let mut s = String::new();
        let mut acc = String::new();
        for comp in rel.split('/') {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(comp);
            s.push_str(&format!("{acc} dir 0755\n"));
        }
        s.replace(&rel, "<HOST>")
    }
}

impl Drop for Fx {
    /// Without root, mode-0000 dirs from an image would stop the temp dir
    /// from being removed: open them up first.
    fn drop(&mut self) {
        fn open_up(dir: &Path) {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    open_up(&e.path());
                }
            }
        }
        if !is_root() {
            open_up(self.tmp.path());
        }
    }
}

fn describe(n: &Node) -> String {
    format!(
        "{} ino={} nlink={} mtime={}.{}",
        n.line(),
        n.ino,
        n.nlink,
        n.mtime,
        n.mtime_nsec
    )
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The descriptor digest and diff_id of a layer, as an error may name either.
fn layer_ids(l: &Layer) -> (String, String) {
    (
        digest_of(&l.blob_bytes()),
        l.diff_id.clone().unwrap_or_else(|| l.real_diff_id()),
    )
}

/// The error names the layer, by blob digest or diff_id (at least the
/// first 12 hex digits, as `docker` abbreviates them), and `needle`.
#[track_caller]
fn assert_names(stderr: &str, layer: &(String, String), needle: &str) {
    let short = |d: &str| d[..d.len().min("sha256:".len() + 12)].to_string();
    assert!(
        stderr.contains(&short(&layer.0)) || stderr.contains(&short(&layer.1)),
        "error does not name layer {} / {}:\n{stderr}",
        layer.0,
        layer.1
    );
    assert!(
        stderr.contains(needle),
        "error does not mention {needle:?}:\n{stderr}"
    );
}

#[track_caller]
fn assert_tree(fx: &Fx, tree: &Tree, expected: &str) {
    // Compare sorted lines: the placeholders change the sort order.
    let mut got: Vec<String> = fx.render(tree).lines().map(str::to_string).collect();
    got.sort();
    let got = got.iter().map(|l| format!("{l}\n")).collect::<String>();
    let mut want: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    want.sort();
    let want = want.iter().map(|l| format!("{l}\n")).collect::<String>();
    assert_eq!(got, want, "rootfs differs.\ngot:\n{got}\nwant:\n{want}");
}

fn no_whiteouts(tree: &Tree) {
    for n in &tree.nodes {
        assert!(
            !n.path.split('/').any(|c| c.starts_with(".wh.")),
            "marker in output: {}",
            n.path
        );
    }
}

// ---------------------------------------------------------------------------
// Paths and names
// ---------------------------------------------------------------------------

#[test]
fn case_01_dotdot_clamped() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::file("../../x", "one"),
        Entry::dir("a/"),
        Entry::file("a/../../y", "two"),
        // Relative to rootfs/ this is the canary; clamped it is rootfs/host.
        Entry::file("../host/passwd", "pwned"),
        Entry::file("./../a/../../z", "three"),
    ])]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        a dir 0755
        host dir 0755
        host/passwd file 0644 "pwned"
        x file 0644 "one"
        y file 0644 "two"
        z file 0644 "three"
        "#,
    );
}

#[test]
fn case_02_absolute_names() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::dir("/abs/"),
        Entry::file("/abs/x", "x"),
        Entry::file(&format!("{}/passwd", fx.host()), "pwned"),
    ])]));
    let tree = fx.ok(&[], &img);
    let want = format!(
        "abs dir 0755\nabs/x file 0644 \"x\"\n{}<HOST>/passwd file 0644 \"pwned\"\n",
        fx.host_parents()
    );
    assert_tree(&fx, &tree, &want);
}

#[test]
fn case_03_dot_entry_not_dir() {
    type MakeEntry = fn(&str) -> Entry;
    let bad: Vec<(&str, MakeEntry)> = vec![
        ("symlink .", |h| Entry::symlink(".", h)),
        ("symlink ./", |h| Entry::symlink("./", h)),
        ("file .", |_| Entry::file(".", "x")),
        ("file ./", |_| Entry::file("./", "x")),
        ("hardlink .", |_| Entry::hardlink(".", "a")),
        ("fifo .", |_| Entry::fifo(".")),
    ];
    for (what, make) in bad {
        let fx = Fx::new();
        let layer = Layer::gz([Entry::file("a", "a"), make(&fx.host())]);
        let ids = layer_ids(&layer);
        let img = fx.single(image([layer]));
        let stderr = fx.fail(&[], &img);
        assert_names(&stderr, &ids, ".");
        eprintln!("{what}: ok");
    }
    // A `./` directory entry is ordinary.
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::dir("./").with_mode(0o755),
        Entry::file("./a", "a"),
    ])]));
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "a file 0644 \"a\"");
}

#[test]
fn case_04_names() {
    // Embedded NUL in the ustar name: the name ends there.
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::file("x", "nul").with_name_bytes(b"good\0/../../evil"),
        Entry::dir("a/"),
        Entry::file("a//b", "slashes"),
        // Trailing slash on a regular file: a regular file `f`.
        Entry::file("f/", "trailing"),
        // GNU long name wins over the ustar name.
        Entry::dir("long/"),
        Entry::file("ustar-short", "gnu")
            .with_gnu_longname(format!("long/{}", "g".repeat(150)).as_bytes()),
        // PAX path wins over the ustar name.
        Entry::file("ustar-name", "pax").with_pax("path", "paxname"),
        // GNU long link name wins too.
        Entry::symlink("sl", "short-target")
            .with_gnu_longlink(format!("long/{}", "t".repeat(120)).as_bytes()),
        Entry::symlink("pl", "short-target").with_pax("linkpath", "pax-target"),
    ])]));
    let tree = fx.ok(&[], &img);
    let want = format!(
        r#"
        a dir 0755
        a/b file 0644 "slashes"
        f file 0644 "trailing"
        good file 0644 "nul"
        long dir 0755
        long/{} file 0644 "gnu"
        paxname file 0644 "pax"
        pl symlink 0777 -> pax-target
        sl symlink 0777 -> long/{}
        "#,
        "g".repeat(150),
        "t".repeat(120)
    );
    assert_tree(&fx, &tree, &want);

    // NUL inside a PAX path, an empty name, a path over the default
    // --max-path-len (4096).
    let long = format!("{}/x", "d".repeat(4200));
    let bad: Vec<(&str, Entry, &str)> = vec![
        (
            "NUL in PAX path",
            Entry::file("ok", "x").with_pax("path", b"a\0b"),
            "a",
        ),
        ("empty name", Entry::file("", "x"), "error"),
        (
            "PAX path over 4096",
            Entry::file("ok", "x").with_pax("path", &long),
            "ddddddddd",
        ),
    ];
    for (what, entry, needle) in bad {
        let fx = Fx::new();
        let layer = Layer::gz([Entry::file("first", "1"), entry]);
        let ids = layer_ids(&layer);
        let img = fx.single(image([layer]));
        let stderr = fx.fail(&[], &img);
        assert_names(&stderr, &ids, needle);
        eprintln!("{what}: ok");
    }
}

#[test]
fn case_05_duplicates_last_wins() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::file("f", "one"),
        Entry::file("f", "two").with_mode(0o600),
        Entry::dir("d/").with_mode(0o700),
        Entry::file("d/child", "c"),
        Entry::dir("d/").with_mode(0o750),
        Entry::file("x", "file first"),
        Entry::symlink("x", "f"),
        Entry::symlink("y", "f"),
        Entry::file("y", "file last"),
    ])]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        d dir 0750
        d/child file 0644 "c"
        f file 0600 "two"
        x symlink 0777 -> f
        y file 0644 "file last"
        "#,
    );
}

#[test]
fn case_06_pax_size_wins() {
    let fx = Fx::new();
    // ustar size 0, PAX size 1024: the data is a smuggled header that a
    // reader trusting the ustar field would extract as `smuggled`.
    let mut smuggled = Entry::file("smuggled", "evil").header().to_vec();
    smuggled.extend_from_slice(&[b'e'; 512]);
    let a = Tar::of([
        Entry::file("big", &smuggled)
            .with_size_field(0)
            .with_pax("size", "1024"),
        Entry::file("after1", "ok1"),
    ]);
    // ustar size 1024, PAX size 0: a reader trusting the ustar field would
    // swallow the next entry.
    let b = Tar::of([
        Entry::file("small", "")
            .with_size_field(1024)
            .with_pax("size", "0"),
        Entry::file("after2", "ok2"),
        Entry::file("after3", "ok3"),
    ]);
    let img = fx.single(image([
        Layer::new(a, Compression::Gzip),
        Layer::new(b, Compression::None),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        &format!(
            r#"
            after1 file 0644 "ok1"
            after2 file 0644 "ok2"
            after3 file 0644 "ok3"
            big file 0644 size=1024 sha256={}
            small file 0644 ""
            "#,
            &sha256_hex(&smuggled)[..12]
        ),
    );
}

#[test]
fn case_07_global_unknown_sparse() {
    let fx = Fx::new();
    let mut t = Tar::new();
    t.global(&[
        ("path", b"hijacked"),
        ("uid", b"1000"),
        ("comment", b"global"),
    ]);
    t.push(Entry::file("a", "a"));
    t.push(
        Entry::file("z", "zdata")
            .with_pax("comment", "x")
            .with_mode(0o640),
    );
    // Unknown typeflag 'Z': a regular file.
    t.push(Entry {
        typeflag: b'Z',
        ..Entry::file("unknown", "zz")
    });
    let img = fx.single(image([Layer::new(t.finish(), Compression::Gzip)]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        a file 0644 "a"
        unknown file 0644 "zz"
        z file 0640 "zdata"
        "#,
    );

    // GNU sparse: rejected.
    let fx = Fx::new();
    let sparse = Entry {
        typeflag: b'S',
        ..Entry::file("sparse", "data")
    }
    .with_magic(Magic::Gnu);
    let layer = Layer::gz([Entry::file("a", "a"), sparse]);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "sparse");
}

#[test]
fn case_08_trailing_garbage() {
    let fx = Fx::new();
    let mut t = Tar::new();
    t.push(Entry::file("a", "a"));
    let plain_garbage = t
        .finish()
        .garbage(b"GARBAGE after the end-of-archive blocks\n");
    let img = fx.single(image([
        Layer::new(plain_garbage, Compression::None),
        Layer::new(
            Tar::of([Entry::file("b", "b")]),
            Compression::GzipTrailingNuls(4096),
        ),
        Layer::new(Tar::of([Entry::file("c", "c")]), Compression::GzipMulti),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        "a file 0644 \"a\"\nb file 0644 \"b\"\nc file 0644 \"c\"",
    );

    // Garbage that makes the diff_id wrong is still caught.
    let fx = Fx::new();
    let clean = Tar::of([Entry::file("a", "a")]);
    let mut t = Tar::new();
    t.push(Entry::file("a", "a"));
    let dirty = t.finish().garbage(&[0x55; 700]);
    let layer = Layer::new(dirty, Compression::Gzip).with_diff_id(&digest_of(clean.bytes()));
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "sha256:");
}

#[test]
fn case_09_corrupt_streams() {
    let tar = Tar::of([
        Entry::file("a", "aaaaaaaaaaaaaaaa"),
        Entry::file("b", "b".repeat(5000)),
    ]);
    let gz = gzip(tar.bytes());
    let zs = zstd(tar.bytes());
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let cases: Vec<(&str, Layer)> = vec![
        (
            "truncated gzip",
            Layer::new(tar.clone(), Compression::Gzip).with_blob(gz[..gz.len() - 30].to_vec()),
        ),
        (
            "truncated zstd",
            Layer::new(tar.clone(), Compression::Zstd).with_blob(zs[..zs.len() - 30].to_vec()),
        ),
        (
            "bad gzip CRC",
            Layer::new(tar.clone(), Compression::Gzip).with_blob(bad_crc),
        ),
        (
            "diff_id mismatch",
            Layer::new(tar.clone(), Compression::Gzip).with_diff_id(&digest_of(b"something else")),
        ),
        (
            "size smaller than blob",
            Layer::new(tar.clone(), Compression::Gzip).with_descriptor("size", json!(gz.len() - 1)),
        ),
        (
            "size larger than blob",
            Layer::new(tar.clone(), Compression::Gzip).with_descriptor("size", json!(gz.len() + 1)),
        ),
    ];
    for (what, layer) in cases {
        let fx = Fx::new();
        let ids = layer_ids(&layer);
        let img = fx.single(image([layer]));
        let stderr = fx.fail(&[], &img);
        assert_names(&stderr, &ids, "");
        eprintln!("{what}: ok");
    }

    // Blob content does not hash to its digest (same size).
    let fx = Fx::new();
    let layer = Layer::new(tar.clone(), Compression::Gzip);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let mut corrupted = gz.clone();
    corrupted[20] ^= 0x01;
    std::fs::write(fx.blob_path(&ids.0), &corrupted).unwrap();
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "");
}

// ---------------------------------------------------------------------------
// Symlinks
// ---------------------------------------------------------------------------

#[test]
fn case_10_absolute_symlink_parent() {
    let fx = Fx::new();
    let h = fx.host();
    let img = fx.single(image([Layer::gz([
        Entry::symlink("evil", &format!("{h}/dir")),
        Entry::file("evil/pwned", "pwned"),
        Entry::file("evil/file", "overwritten?"),
    ])]));
    let tree = fx.ok(&[], &img);
    let want = format!(
        "{}<HOST>/dir dir 0755\n<HOST>/dir/file file 0644 \"overwritten?\"\n\
         <HOST>/dir/pwned file 0644 \"pwned\"\nevil symlink 0777 -> /<HOST>/dir\n",
        fx.host_parents()
    );
    assert_tree(&fx, &tree, &want);
}

#[test]
fn case_11_relative_escaping_symlink() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        // rootfs/../host/dir is the canary; in-root it is rootfs/host/dir.
        Entry::symlink("evil", "../host/dir"),
        Entry::file("evil/f", "f"),
        Entry::dir("sub/"),
        Entry::symlink("sub/up", "../../../../../../../x"),
        Entry::file("sub/up/g", "g"),
    ])]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        evil symlink 0777 -> ../host/dir
        host dir 0755
        host/dir dir 0755
        host/dir/f file 0644 "f"
        sub dir 0755
        sub/up symlink 0777 -> ../../../../../../../x
        x dir 0755
        x/g file 0644 "g"
        "#,
    );
}

#[test]
fn case_12_symlink_then_dir() {
    let fx = Fx::new();
    let h = fx.host();
    let img = fx.single(image([Layer::gz([
        Entry::symlink("foo", &h),
        Entry::dir("foo/").with_mode(0o700).with_mtime(12345),
        Entry::file("foo/f", "f"),
        Entry::file("foo/passwd", "pwned"),
    ])]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        foo dir 0700
        foo/f file 0644 "f"
        foo/passwd file 0644 "pwned"
        "#,
    );
    assert_eq!(tree.node("foo").mtime, 12345);
}

#[test]
fn case_13_symlink_loop() {
    let fx = Fx::new();
    let layer = Layer::gz([
        Entry::symlink("a", "b"),
        Entry::symlink("b", "a"),
        Entry::file("a/x", "x"),
    ]);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "a/x");
}

fn chain(n: usize, last: &str) -> Vec<Entry> {
    let mut v = vec![Entry::dir("d/")];
    for i in 0..n {
        let target = if i + 1 == n {
            last.to_string()
        } else {
            format!("l{}", i + 1)
        };
        v.push(Entry::symlink(&format!("l{i}"), &target));
    }
    v
}

#[test]
fn case_14_symlink_chain() {
    // 40 hops: resolvable, like the kernel.
    let fx = Fx::new();
    let mut entries = chain(40, "d");
    entries.push(Entry::file("l0/x", "x"));
    let img = fx.single(image([Layer::gz(entries)]));
    let tree = fx.ok(&[], &img);
    assert_eq!(tree.node("d/x").content_str(), "x");
    assert_eq!(tree.nodes.len(), 42, "{}", tree.render());

    // 41 hops: rejected.
    let fx = Fx::new();
    let mut entries = chain(41, "d");
    entries.push(Entry::file("l0/x", "x"));
    let layer = Layer::gz(entries);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "l0/x");
}

#[test]
fn case_15_file_over_symlink() {
    let fx = Fx::new();
    let h = fx.host();
    let img = fx.single(image([
        Layer::gz([
            Entry::symlink("f", &format!("{h}/passwd")),
            Entry::file("t", "target"),
            Entry::symlink("s", "t"),
        ]),
        Layer::gz([
            Entry::file("f", "new").with_mode(0o600),
            Entry::symlink("g", &format!("{h}/keep")),
            Entry::file("g", "new2"),
            Entry::file("s", "over"),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        f file 0600 "new"
        g file 0644 "new2"
        s file 0644 "over"
        t file 0644 "target"
        "#,
    );
}

#[test]
fn case_15b_file_over_hardlink() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::file("A", "original")]),
        Layer::gz([
            Entry::hardlink("B", "A"),
            Entry::file("B", "new").with_mode(0o600).with_mtime(12345),
            Entry::file("C", "orig-c"),
            Entry::hardlink("D", "C"),
            Entry::file("D", "new-d").with_mode(0o640),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        A file 0644 "original"
        B file 0600 "new"
        C file 0644 "orig-c"
        D file 0640 "new-d"
        "#,
    );
    assert_eq!(tree.node("A").mtime, MTIME);
    assert_eq!(tree.node("B").mtime, 12345);
    assert_ne!(tree.node("A").ino, tree.node("B").ino);

    // As the default user (root here): ownership applies to B only.
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::file("A", "original")]),
        Layer::gz([
            Entry::hardlink("B", "A"),
            Entry::file("B", "new").with_owner(1000, 1000),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    let a = tree.node("A");
    assert_eq!(
        ((a.uid, a.gid), a.nlink, a.content_str().as_str()),
        (crate::treeview::default_owner(), 1, "original")
    );
    if is_root() {
        assert_eq!((tree.node("B").uid, tree.node("B").gid), (1000, 1000));
    }
}

#[test]
fn case_16_symlink_override_path() {
    let fx = Fx::new();
    // A name unique to this run, so a write into the real /tmp is visible.
    let unique = format!(
        "bgc16-{}",
        fx.path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_start_matches("bg-hostile-")
    );
    let x = format!("foo/tmp/{unique}");
    let img = fx.single(image([Layer::gz([
        Entry::dir("foo/"),
        Entry::dir("foo/tmp/"),
        Entry::file(&x, "a"),
        Entry::symlink("foo", "/"),
        Entry::file(&x, "b"),
        Entry::dir("foo/"),
        Entry::file(&x, "c"),
    ])]));
    let tree = fx.ok(&[], &img);
    assert!(
        !Path::new("/tmp").join(&unique).exists(),
        "wrote into the host /tmp"
    );
    let want = format!(
        "foo dir 0755\nfoo/tmp dir 0755\nfoo/tmp/{unique} file 0644 \"c\"\ntmp dir 0755\ntmp/{unique} file 0644 \"b\"\n"
    );
    assert_tree(&fx, &tree, &want);
}

#[test]
fn case_17_dotdot_and_empty_symlink_names() {
    for (what, name) in [
        ("..", ".."),
        ("empty", ""),
        ("../", "../"),
        ("a/../..", "a/../.."),
    ] {
        let fx = Fx::new();
        let layer = Layer::gz([Entry::dir("a/"), Entry::symlink(name, &fx.host())]);
        let ids = layer_ids(&layer);
        let img = fx.single(image([layer]));
        let stderr = fx.fail(&[], &img);
        assert_names(&stderr, &ids, "");
        eprintln!("{what}: ok");
    }

    // `localetc/sub/..` is `localetc`, lexically: the symlink replaces the
    // dir, and a later file resolves through it, in-root.
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::dir("localetc/"),
        Entry::file("localetc/old", "old"),
        Entry::symlink("localetc/sub/..", &fx.host()),
        Entry::file("localetc/pwned", "pwned"),
    ])]));
    let tree = fx.ok(&[], &img);
    let want = format!(
        "{}<HOST>/pwned file 0644 \"pwned\"\nlocaletc symlink 0777 -> /<HOST>\n",
        fx.host_parents()
    );
    assert_tree(&fx, &tree, &want);
}

fn dirlink_image(fx: &Fx) -> String {
    fx.single(image([
        Layer::gz([
            Entry::dir("usr/"),
            Entry::dir("usr/sbin/"),
            Entry::file("usr/sbin/init", "init"),
            Entry::symlink("sbin", "usr/sbin"),
        ]),
        Layer::gz([Entry::dir("sbin/"), Entry::file("sbin/tool", "tool")]),
    ]))
}

#[test]
fn case_18_dirlink_replaced_or_kept() {
    let fx = Fx::new();
    let tree = fx.ok(&[], &dirlink_image(&fx));
    assert_tree(
        &fx,
        &tree,
        r#"
        sbin dir 0755
        sbin/tool file 0644 "tool"
        usr dir 0755
        usr/sbin dir 0755
        usr/sbin/init file 0644 "init"
        "#,
    );

    let fx = Fx::new();
    let tree = fx.ok(&["--keep-dirlinks"], &dirlink_image(&fx));
    assert_tree(
        &fx,
        &tree,
        r#"
        sbin symlink 0777 -> usr/sbin
        usr dir 0755
        usr/sbin dir 0755
        usr/sbin/init file 0644 "init"
        usr/sbin/tool file 0644 "tool"
        "#,
    );
}

#[test]
fn case_19_absolute_symlink_lower_layer() {
    let fx = Fx::new();
    let h = fx.host();
    let img = fx.single(image([
        Layer::gz([
            Entry::dir("usr/"),
            Entry::dir("usr/lib/"),
            Entry::symlink("lib", "/usr/lib"),
            Entry::symlink("lib2", &format!("{h}/dir")),
        ]),
        Layer::gz([
            Entry::file("lib/libx.so", "elf"),
            Entry::file("lib2/libx.so", "elf2"),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    let want = format!(
        "{}<HOST>/dir dir 0755\n<HOST>/dir/libx.so file 0644 \"elf2\"\nlib symlink 0777 -> /usr/lib\n\
         lib2 symlink 0777 -> /<HOST>/dir\nusr dir 0755\nusr/lib dir 0755\nusr/lib/libx.so file 0644 \"elf\"\n",
        fx.host_parents()
    );
    assert_tree(&fx, &tree, &want);
}

#[test]
fn case_20_file_parent_replaced_by_dir() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::file("file", "x"), Entry::symlink("link", "file")]),
        Layer::gz([Entry::file("file/child", "c")]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        file dir 0755
        file/child file 0644 "c"
        link symlink 0777 -> file
        "#,
    );
}

// ---------------------------------------------------------------------------
// Hardlinks
// ---------------------------------------------------------------------------

#[test]
fn case_21_hardlink_absolute_target() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::dir("etc/"),
        Entry::file("etc/passwd", "root"),
        Entry::hardlink("hl", "/etc/passwd"),
    ])]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        etc dir 0755
        etc/passwd file 0644 "root" link#0
        hl file 0644 "root" link#0
        "#,
    );

    // The canary's absolute path does not exist in-root: missing target.
    let fx = Fx::new();
    let layer = Layer::gz([Entry::hardlink("hl", &format!("{}/passwd", fx.host()))]);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "hl");
}

#[test]
fn case_22_hardlink_dotdot_target() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::dir("etc/"),
        Entry::file("etc/passwd", "root"),
        Entry::hardlink("hl", "../../../../etc/passwd"),
    ])]));
    let tree = fx.ok(&[], &img);
    assert_eq!(tree.node("hl").link_group, Some(0), "{}", tree.render());
    assert_eq!(tree.node("etc/passwd").link_group, Some(0));
    assert_eq!(tree.node("hl").content_str(), "root");

    // rootfs/../host/passwd is the canary; in-root it does not exist.
    let fx = Fx::new();
    let layer = Layer::gz([Entry::hardlink("hl", "../host/passwd")]);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "hl");
}

#[test]
fn case_23_hardlink_through_symlink_parent() {
    // In-root target exists: the link is made to it.
    let fx = Fx::new();
    let h = fx.host();
    let img = fx.single(image([Layer::gz([
        Entry::file(&format!("{h}/passwd"), "inroot"),
        Entry::symlink("e", &h),
        Entry::hardlink("hl", "e/passwd"),
    ])]));
    let tree = fx.ok(&[], &img);
    let want = format!(
        "{}<HOST>/passwd file 0644 \"inroot\" link#0\ne symlink 0777 -> /<HOST>\nhl file 0644 \"inroot\" link#0\n",
        fx.host_parents()
    );
    assert_tree(&fx, &tree, &want);

    // Only the host has it: missing in-root, rejected.
    let fx = Fx::new();
    let layer = Layer::gz([
        Entry::symlink("e", &fx.host()),
        Entry::hardlink("hl", "e/passwd"),
    ]);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "hl");
}

#[test]
fn case_24_hardlink_missing_or_later_target() {
    for (what, entries) in [
        (
            "missing",
            vec![Entry::file("a", "a"), Entry::hardlink("hl", "nothere")],
        ),
        (
            "later",
            vec![Entry::hardlink("hl", "later"), Entry::file("later", "x")],
        ),
    ] {
        let fx = Fx::new();
        let layer = Layer::gz(entries);
        let ids = layer_ids(&layer);
        let img = fx.single(image([layer]));
        let stderr = fx.fail(&[], &img);
        assert_names(&stderr, &ids, "hl");
        eprintln!("{what}: ok");
    }
}

#[test]
fn case_25_hardlink_to_symlink() {
    let fx = Fx::new();
    let h = fx.host();
    let img = fx.single(image([Layer::gz([
        Entry::symlink("s", &format!("{h}/passwd")),
        Entry::hardlink("hl", "s"),
        Entry::dir("d/"),
        Entry::symlink("d/rs", "../etc/x"),
        Entry::hardlink("hl2", "d/rs"),
    ])]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        d dir 0755
        d/rs symlink 0777 -> ../etc/x link#0
        hl symlink 0777 -> /<HOST>/passwd link#1
        hl2 symlink 0777 -> ../etc/x link#0
        s symlink 0777 -> /<HOST>/passwd link#1
        "#,
    );
    assert_eq!(tree.node("s").ino, tree.node("hl").ino);
    assert_eq!(tree.node("d/rs").ino, tree.node("hl2").ino);
}

#[test]
fn case_26_hardlink_to_symlink_then_chmod() {
    let fx = Fx::new();
    let h = fx.host();
    let img = fx.single(image([
        Layer::gz([
            Entry::symlink("s", &format!("{h}/passwd")),
            Entry::hardlink("hl", "s")
                .with_mode(0o666)
                .with_owner(1234, 1234)
                .with_mtime(5),
        ]),
        // A later layer re-lists the link: metadata again, same rule.
        Layer::gz([Entry::hardlink("hl", "s")
            .with_mode(0o4777)
            .with_owner(4321, 4321)]),
    ]));
    let tree = fx.ok(&[], &img);
    for p in ["s", "hl"] {
        let n = tree.node(p);
        assert_eq!(
            n.kind,
            Kind::Symlink(format!("{h}/passwd")),
            "{}",
            tree.render()
        );
        assert_eq!(n.link_group, Some(0), "{}", tree.render());
    }
    assert_eq!(tree.nodes.len(), 2, "{}", tree.render());
}

#[test]
fn case_27_hardlink_to_dir() {
    let fx = Fx::new();
    let layer = Layer::gz([Entry::dir("d/"), Entry::hardlink("hl", "d")]);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "hl");
}

#[test]
fn case_28_hardlink_survives_whiteout() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::file("orig", "data")]),
        Layer::gz([Entry::hardlink("hl", "orig")]),
        Layer::gz([Entry::whiteout("orig")]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "hl file 0644 \"data\"");
    assert_eq!(tree.node("hl").nlink, 1);
}

#[test]
fn case_29_aufs_metadata_skipped() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::dir("d/"), Entry::file("d/keep", "k")]),
        Layer::gz([
            Entry::dir(".wh..wh.plnk/"),
            Entry::file(".wh..wh.plnk/123.456", "plnk"),
            Entry::file(".wh..wh.aufs", ""),
            Entry::dir(".wh..wh.orph/"),
            Entry::file("d/.wh..wh.other", ""),
            Entry::file("a", "a"),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        a file 0644 "a"
        d dir 0755
        d/keep file 0644 "k"
        "#,
    );
}

// ---------------------------------------------------------------------------
// Whiteouts
// ---------------------------------------------------------------------------

fn whiteout_fails(lower: Vec<Entry>, upper: Vec<Entry>, needle: &str) {
    let fx = Fx::new();
    let up = Layer::gz(upper);
    let ids = layer_ids(&up);
    let img = fx.single(image([Layer::gz(lower), up]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, needle);
}

#[test]
fn case_30_empty_whiteout_name() {
    whiteout_fails(
        vec![Entry::dir("d/"), Entry::file("d/keep", "k")],
        vec![Entry::file("d/.wh.", "")],
        "d/.wh.",
    );
    whiteout_fails(
        vec![Entry::file("keep", "k")],
        vec![Entry::file(".wh.", "")],
        ".wh.",
    );
}

#[test]
fn case_31_whiteout_of_dot_or_dotdot() {
    for name in ["etc/.wh..", "etc/.wh..."] {
        whiteout_fails(
            vec![
                Entry::dir("etc/"),
                Entry::file("etc/passwd", "root"),
                Entry::file("top", "t"),
            ],
            vec![Entry::file(name, "")],
            name,
        );
    }
}

#[test]
fn case_32_whiteout_through_symlink_parent() {
    let fx = Fx::new();
    let h = fx.host();
    let img = fx.single(image([
        Layer::gz([
            Entry::symlink("l", &h),
            Entry::dir("inroot/"),
            Entry::file("inroot/keep", "k"),
            Entry::file("inroot/gone", "g"),
            Entry::symlink("l2", "/inroot"),
        ]),
        Layer::gz([
            Entry::whiteout("l/passwd"),
            Entry::whiteout("l/dir"),
            Entry::whiteout("l2/gone"),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        inroot dir 0755
        inroot/keep file 0644 "k"
        l symlink 0777 -> /<HOST>
        l2 symlink 0777 -> /inroot
        "#,
    );
}

#[test]
fn case_33_whiteout_same_layer_kept() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::file("lower", "l"), Entry::file("other", "o")]),
        Layer::gz([
            Entry::file("new", "n"),
            Entry::whiteout("new"),
            Entry::whiteout("lower"),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "new file 0644 \"n\"\nother file 0644 \"o\"");
}

#[test]
fn case_34_opaque_after_children() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([
            Entry::dir("d/"),
            Entry::file("d/old", "o"),
            Entry::dir("d/olddir/"),
        ]),
        Layer::gz([
            Entry::dir("d/"),
            Entry::file("d/new", "n"),
            Entry::opaque("d"),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "d dir 0755\nd/new file 0644 \"n\"");
}

#[test]
fn case_35_whiteout_of_nonexistent() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::dir("d/"), Entry::file("d/f", "f")]),
        Layer::gz([Entry::whiteout("nothere"), Entry::whiteout("d/nothere")]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "d dir 0755\nd/f file 0644 \"f\"");
}

#[test]
fn case_36_whiteout_dir_then_recreate() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([
            Entry::dir("dir/"),
            Entry::file("dir/old", "o"),
            Entry::dir("dir/sub/"),
        ]),
        Layer::gz([Entry::whiteout("dir")]),
        Layer::gz([Entry::file("dir/newfile", "n")]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "dir dir 0755\ndir/newfile file 0644 \"n\"");
}

#[test]
fn case_37_opaque_under_symlinked_dir() {
    let fx = Fx::new();
    let h = fx.host();
    let img = fx.single(image([
        Layer::gz([
            Entry::dir("real/"),
            Entry::file("real/old", "o"),
            Entry::symlink("link", "real"),
            Entry::file(&format!("{h}/dir/old"), "in-root old"),
            Entry::symlink("alink", &format!("{h}/dir")),
        ]),
        Layer::gz([
            Entry::opaque("link"),
            Entry::file("link/new", "n"),
            Entry::opaque("alink"),
            Entry::file("alink/new", "n2"),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    let want = format!(
        "{}<HOST>/dir dir 0755\n<HOST>/dir/new file 0644 \"n2\"\nalink symlink 0777 -> /<HOST>/dir\n\
         link symlink 0777 -> real\nreal dir 0755\nreal/new file 0644 \"n\"\n",
        fx.host_parents()
    );
    assert_tree(&fx, &tree, &want);
}

#[test]
fn case_38_no_markers_in_output() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::dir("a/"),
        Entry::whiteout("a/b"),
        Entry::opaque("a"),
        Entry::whiteout("c"),
        Entry::file("a/f", "f"),
        Entry::dir("e/"),
        Entry::opaque("e"),
    ])]));
    let tree = fx.ok(&[], &img);
    no_whiteouts(&tree);
    assert_tree(&fx, &tree, "a dir 0755\na/f file 0644 \"f\"\ne dir 0755");

    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::dir("a/"), Entry::file("a/x", "x")]),
        Layer::gz([
            Entry::opaque("a"),
            Entry::whiteout("a/x"),
            Entry::whiteout("zz"),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    no_whiteouts(&tree);
    assert_tree(&fx, &tree, "a dir 0755");
}

#[test]
fn case_39_whiteout_prefix_as_dir_name() {
    let fx = Fx::new();
    let layer = Layer::gz([Entry::dir(".wh.etc/"), Entry::file(".wh.etc/somefile", "x")]);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, ".wh.etc");

    let fx = Fx::new();
    let layer = Layer::gz([Entry::file("a/.wh.b/c", "x")]);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, ".wh.b");
}

// ---------------------------------------------------------------------------
// Types, metadata and resources
// ---------------------------------------------------------------------------

fn device_layer() -> Layer {
    Layer::gz([
        Entry::dir("dev/"),
        Entry::char_dev("dev/null", 1, 3),
        Entry::block_dev("dev/sda", 8, 0),
        Entry::char_dev("dev/big", 259, 300_000).with_mode(0o600),
    ])
}

#[test]
fn case_44_device_nodes() {
    let fx = Fx::new();
    let img = fx.single(image([device_layer()]));
    let tree = fx.ok(&[], &img);
    if is_root() {
        assert_tree(
            &fx,
            &tree,
            r#"
            dev dir 0755
            dev/big char 0600 259,300000
            dev/null char 0666 1,3
            dev/sda block 0660 8,0
            "#,
        );
    } else {
        // A non-root user gets the rootless behaviour by default.
        assert_eq!(tree.paths(), ["dev", "dev/big", "dev/null", "dev/sda"]);
        for p in ["dev/big", "dev/null", "dev/sda"] {
            let n = tree.node(p);
            assert_eq!((&n.kind, n.mode, n.size), (&Kind::File, 0, 0), "{p}");
        }
    }

    let fx = Fx::new();
    let img = fx.single(image([device_layer()]));
    let tree = fx.ok(&["--rootless"], &img);
    assert_eq!(tree.paths(), ["dev", "dev/big", "dev/null", "dev/sda"]);
    for p in ["dev/big", "dev/null", "dev/sda"] {
        let n = tree.node(p);
        assert_eq!(
            (&n.kind, n.mode, n.size),
            (&Kind::File, 0, 0),
            "{p}: {}",
            n.line()
        );
    }

    // Major/minor beyond 32 bits: base-256 in the header, or PAX.
    let huge = 1u64 << 32;
    let bad = vec![
        ("base-256 major", Entry::char_dev("dev/x", huge, 1)),
        ("base-256 minor", Entry::block_dev("dev/x", 1, huge + 5)),
        (
            "PAX major",
            Entry::char_dev("dev/x", 1, 1).with_pax("SCHILY.devmajor", huge.to_string()),
        ),
        (
            "PAX minor",
            Entry::char_dev("dev/x", 1, 1).with_pax("SCHILY.devminor", huge.to_string()),
        ),
    ];
    for (what, entry) in bad {
        for flags in [&[][..], &["--rootless"][..]] {
            let fx = Fx::new();
            let layer = Layer::gz([Entry::dir("dev/"), entry.clone()]);
            let ids = layer_ids(&layer);
            let img = fx.single(image([layer]));
            let stderr = fx.fail(flags, &img);
            assert_names(&stderr, &ids, "dev/x");
            eprintln!("{what} {flags:?}: ok");
        }
    }
}

#[test]
fn case_45_fifo_special_bits_and_mode_0000_dir() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::fifo("p").with_mode(0o640),
        Entry::file("suid", "s")
            .with_mode(0o4755)
            .with_owner(1000, 1000),
        Entry::file("sgid", "g")
            .with_mode(0o2755)
            .with_owner(1000, 1000),
        Entry::dir("sticky/")
            .with_mode(0o1777)
            .with_owner(1000, 1000),
        Entry::dir("locked/").with_mode(0o000),
        Entry::file("locked/child", "c").with_mode(0o000),
        Entry::dir("locked/sub/").with_mode(0o000),
        Entry::file("locked/sub/deep", "d"),
    ])]));
    let tree = fx.ok(&[], &img);
    // Without root the owner is recorded, not applied; the modes are the
    // same either way.
    let own = if is_root() { " 1000:1000" } else { "" };
    let want = format!(
        r#"
        locked dir 0000
        locked/child file 0000 "c"
        locked/sub dir 0000
        locked/sub/deep file 0644 "d"
        p fifo 0640
        sgid file 2755 "g"{own}
        sticky dir 1777{own}
        suid file 4755 "s"{own}
        "#
    );
    assert_tree(&fx, &tree, &want);
}

#[test]
fn case_46_xattrs() {
    // VFS_CAP_REVISION_2 with the effective bit, CAP_NET_BIND_SERVICE.
    let cap: Vec<u8> = vec![1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let entry = Entry::file("f", "f")
        .with_xattr("security.capability", &cap)
        .with_xattr("security.selinux", "system_u:object_r:bin_t:s0")
        .with_xattr("system.nfs4_acl", "acl")
        .with_xattr("trusted.overlay.opaque", "y")
        .with_xattr("trusted.overlay.redirect", "/etc")
        .with_xattr("user.overlay.opaque", "y")
        .with_xattr("user.rootlesscontainers", "uid: 5")
        .with_xattr("user.keep", "v");
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        entry.clone(),
        Entry::dir("d/").with_xattr("trusted.overlay.opaque", "y"),
    ])]));
    let tree = fx.ok(&[], &img);
    if is_root() {
        assert_tree(
            &fx,
            &tree,
            "d dir 0755\nf file 0644 \"f\" xattrs=security.capability,user.keep",
        );
        assert_eq!(tree.node("f").xattrs["security.capability"], cap);
        assert_eq!(tree.node("f").xattrs["user.keep"], b"v");
    }
    let n = tree.node("f");
    for dropped in [
        "security.selinux",
        "system.nfs4_acl",
        "trusted.overlay.opaque",
        "trusted.overlay.redirect",
        "user.overlay.opaque",
        "user.rootlesscontainers",
    ] {
        assert!(
            !n.xattrs.contains_key(dropped),
            "{dropped} kept: {}",
            n.line()
        );
    }
    assert!(
        tree.node("d").xattrs.is_empty(),
        "{}",
        tree.node("d").line()
    );

    // --rootless: privileged xattrs are recorded, not applied; the
    // unprivileged ones are, and the same names are dropped.
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([entry])]));
    let tree = fx.ok(&["--rootless"], &img);
    assert_tree(&fx, &tree, "f file 0644 \"f\" xattrs=user.keep");
}

#[test]
fn case_47_mtimes() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::dir("d/").with_mtime(1111),
        Entry::dir("d/e/").with_mtime(2222),
        Entry::file("d/e/f", "f").with_mtime(3333),
        Entry::file("d/a", "a").with_mtime(4444),
        Entry::file("zero", "z").with_mtime(0),
        Entry::file("neg", "n").with_mtime(-100),
        Entry::file("future", "f").with_mtime(4_102_444_800),
        Entry::file("badpax", "b")
            .with_mtime(1_234_567)
            .with_pax("mtime", "not-a-number"),
        Entry::file("paxwins", "p")
            .with_mtime(5)
            .with_pax("mtime", "1700000000"),
    ])]));
    let tree = fx.ok(&[], &img);
    let got: Vec<(&str, i64)> = tree
        .nodes
        .iter()
        .map(|n| (n.path.as_str(), n.mtime))
        .collect();
    assert_eq!(
        got,
        [
            ("badpax", 1_234_567),
            ("d", 1111),
            ("d/a", 4444),
            ("d/e", 2222),
            ("d/e/f", 3333),
            ("future", 4_102_444_800),
            ("neg", 0),
            ("paxwins", 1_700_000_000),
            ("zero", 0),
        ]
    );
}

#[test]
fn case_48_big_uid_gid() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([
        Entry::file("max", "m").with_owner((1 << 31) - 1, (1 << 31) - 1)
    ])]));
    let tree = fx.ok(&[], &img);
    if is_root() {
        assert_eq!(
            (tree.node("max").uid, tree.node("max").gid),
            (0x7fff_ffff, 0x7fff_ffff)
        );
    }
    let bad = vec![
        (
            "uid base-256",
            Entry::file("big", "x").with_owner(1 << 31, 0),
        ),
        (
            "gid base-256",
            Entry::file("big", "x").with_owner(0, 1 << 32),
        ),
        (
            "uid PAX",
            Entry::file("big", "x").with_pax("uid", "2147483648"),
        ),
        (
            "gid PAX",
            Entry::file("big", "x").with_pax("gid", "4294967295"),
        ),
    ];
    for (what, entry) in bad {
        for flags in [&[][..], &["--rootless"][..]] {
            let fx = Fx::new();
            let layer = Layer::gz([entry.clone()]);
            let ids = layer_ids(&layer);
            let img = fx.single(image([layer]));
            let stderr = fx.fail(flags, &img);
            assert_names(&stderr, &ids, "big");
            eprintln!("{what} {flags:?}: ok");
        }
    }
}

#[test]
fn case_49_limits() {
    let files = |n: usize| {
        (0..n)
            .map(|i| Entry::file(&format!("f{i}"), "x"))
            .collect::<Vec<_>>()
    };
    let cases: Vec<(&str, Vec<&str>, Layer, &str)> = vec![
        (
            "entries",
            vec!["--max-entries", "3"],
            Layer::gz(files(4)),
            "--max-entries",
        ),
        (
            "bytes",
            vec!["--max-bytes", "1000"],
            Layer::gz([Entry::file("big", vec![b'x'; 2000])]),
            "--max-bytes",
        ),
        (
            "path length",
            vec!["--max-path-len", "20"],
            Layer::gz([Entry::file(&"p".repeat(30), "x")]),
            "--max-path-len",
        ),
        (
            "link length",
            vec!["--max-link-len", "10"],
            Layer::gz([Entry::symlink("l", &"t".repeat(20))]),
            "--max-link-len",
        ),
        (
            "ratio",
            vec!["--max-ratio", "10"],
            Layer::new(
                Tar::of([Entry::file("zeros", vec![0u8; 65 << 20])]),
                Compression::Zstd,
            ),
            "--max-ratio",
        ),
    ];
    for (what, flags, layer, flag) in cases {
        let fx = Fx::new();
        let ids = layer_ids(&layer);
        let img = fx.single(image([layer]));
        let stderr = fx.fail(&flags, &img);
        assert_names(&stderr, &ids, flag);
        eprintln!("{what}: ok");
    }

    // Within the limits: 3 entries, short names, a 4 KiB tar stream
    // (--max-bytes counts the uncompressed stream, headers included).
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz(files(3))]));
    let flags = [
        "--max-entries",
        "3",
        "--max-path-len",
        "20",
        "--max-link-len",
        "10",
        "--max-bytes",
        "8K",
    ];
    let tree = fx.ok(&flags, &img);
    assert_eq!(tree.paths(), ["f0", "f1", "f2"]);

    // A PAX header over 1 MiB, a 60-hop symlink chain: default limits.
    let fx = Fx::new();
    let layer =
        Layer::gz([Entry::file("hugepax", "x").with_pax("comment", vec![b'c'; (1 << 20) + 100])]);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "");

    let fx = Fx::new();
    let mut entries = chain(60, "d");
    entries.push(Entry::file("l0/x", "x"));
    let layer = Layer::gz(entries);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, "l0/x");
}

#[test]
fn case_50_layer_count_and_empty_layers() {
    let many = |n: usize| -> Vec<Layer> {
        (0..n)
            .map(|i| Layer::plain([Entry::file(&format!("f{i:03}"), "x")]))
            .collect()
    };
    let fx = Fx::new();
    let img = fx.single(image(many(128)));
    let stderr = fx.fail(&[], &img);
    assert!(stderr.contains("--max-layers"), "{stderr}");

    let fx = Fx::new();
    let img = fx.single(image(many(127)));
    let tree = fx.ok(&[], &img);
    assert_eq!(tree.nodes.len(), 127);

    let fx = Fx::new();
    let img = fx.single(image(many(3)));
    let stderr = fx.fail(&["--max-layers", "2"], &img);
    assert!(stderr.contains("--max-layers"), "{stderr}");

    let fx = Fx::new();
    let img = fx.single(image(many(128)));
    let tree = fx.ok(&["--max-layers", "200"], &img);
    assert_eq!(tree.nodes.len(), 128);

    // Empty layers: a valid empty tar (plain and gzip) and a zero-byte blob.
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::new(Tar::new().finish(), Compression::None),
        Layer::gz([Entry::file("a", "a")]),
        Layer::new(Tar::new().finish(), Compression::Gzip),
        Layer::new(Tar::new(), Compression::None),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "a file 0644 \"a\"");
}

// ---------------------------------------------------------------------------
// Image layout / manifest
// ---------------------------------------------------------------------------

#[test]
fn case_51_bad_digests() {
    let good = Layer::gz([Entry::file("a", "a")]);
    let real = digest_of(&good.blob_bytes());
    let hex = real.trim_start_matches("sha256:").to_string();
    let bad_layer_digests = [
        "sha256:../../../evil".to_string(),
        "sha256:../../../host/passwd".to_string(),
        format!("sha256:{}", hex.to_uppercase()),
        format!("md5:{}", &hex[..32]),
        format!("sha999:{hex}"),
        format!("sha256:{}", &hex[..63]),
        "sha256:".to_string(),
        format!("sha256:/{}", &hex[1..]),
    ];
    for bad in &bad_layer_digests {
        let fx = Fx::new();
        std::fs::write(fx.path().join("evil"), good.blob_bytes()).unwrap();
        let img = fx.single(image([good.clone().with_descriptor("digest", json!(bad))]));
        let stderr = fx.fail(&[], &img);
        assert!(
            stderr.contains(bad.as_str()),
            "error does not name {bad}:\n{stderr}"
        );
        eprintln!("{bad}: ok");
    }

    // Descriptors are checked before any layer blob is opened: layer 0's
    // blob is a directory, which would fail differently if opened first.
    for bad in [
        format!("sha256:{}", hex.to_uppercase()),
        "sha256:../../../evil".to_string(),
    ] {
        let fx = Fx::new();
        let first = Layer::gz([Entry::file("first", "1")]);
        let first_digest = digest_of(&first.blob_bytes());
        let img = fx.single(image([
            first,
            good.clone().with_descriptor("digest", json!(bad)),
        ]));
        let p = fx.blob_path(&first_digest);
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        let stderr = fx.fail(&[], &img);
        assert!(
            stderr.contains(bad.as_str()),
            "error does not name {bad}:\n{stderr}"
        );
    }

    // The same for the manifest descriptor in index.json.
    for bad in ["sha256:../../../host/passwd", "SHA256:abc", "sha256:ABCDEF"] {
        let fx = Fx::new();
        let img = fx.single(image([good.clone()]).with_descriptor("digest", json!(bad)));
        let stderr = fx.fail(&[], &img);
        assert!(stderr.contains(bad), "error does not name {bad}:\n{stderr}");
    }
}

#[test]
fn case_52_bad_sizes() {
    let good = Layer::gz([Entry::file("a", "a")]);
    let len = good.blob_bytes().len() as i64;
    // Larger than the blob: the layer is named.
    let fx = Fx::new();
    let layer = good.clone().with_descriptor("size", json!(len + 100));
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    assert_names(&stderr, &ids, &(len + 100).to_string());
    // Not a size at all: rejected while reading the manifest.
    // Negative: the message says `size`; not an integer at all: a JSON
    // type error quoting the value is enough.
    for (size, needle) in [
        (json!(-1), "size"),
        (json!(i64::MIN), "size"),
        (json!(1.5), "1.5"),
        (json!("12"), "\"12\""),
    ] {
        let fx = Fx::new();
        let img = fx.single(image([good.clone().with_descriptor("size", size.clone())]));
        let stderr = fx.fail(&[], &img);
        assert!(
            stderr.contains(needle),
            "{size}: error does not mention {needle}:\n{stderr}"
        );
        eprintln!("{size}: ok");
    }
    // The manifest descriptor in index.json: negative, larger than the
    // blob (within any sane cap), absurd. The error names the manifest.
    for size in [json!(-1), json!(100_000), json!(1u64 << 40)] {
        let fx = Fx::new();
        let img = fx.single(image([good.clone()]).with_descriptor("size", size.clone()));
        let index: Value =
            serde_json::from_slice(&std::fs::read(fx.layout_dir().join("index.json")).unwrap())
                .unwrap();
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let stderr = fx.fail(&[], &img);
        // By digest, or by its place in index.json.
        assert!(
            stderr.contains(&digest[..19]) || stderr.contains("manifests[0]"),
            "{size}: error names neither {digest} nor manifests[0]:\n{stderr}"
        );
    }
}

fn tagged_image(fx: &Fx, layout: &Layout, arch: &str, variant: Option<&str>, file: &str) -> Value {
    let _ = fx;
    image([Layer::gz([Entry::file(file, file)])])
        .platform(arch, "linux", variant)
        .store(layout)
}

#[test]
fn case_53_index_selection() {
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    // index.json -> nested index (tagged) -> [attestation, unknown type,
    // first, second, arm64].
    let build = |fx: &Fx| {
        let l = fx.layout();
        let first = tagged_image(fx, &l, host_arch(), None, "first");
        let second = tagged_image(fx, &l, host_arch(), None, "second");
        let arm = tagged_image(
            fx,
            &l,
            other,
            if other == "arm64" { Some("v8") } else { None },
            "other",
        );
        let att = attestation(&l, first["digest"].as_str().unwrap());
        let unknown_blob = l.put_blob(b"{\"whatever\":1}");
        let unknown = json!({
            "mediaType": "application/vnd.example.unknown+json",
            "digest": unknown_blob,
            "size": 14,
            "platform": { "architecture": host_arch(), "os": "linux" },
        });
        let mut nested = l.put_index(vec![att, unknown, first, second, arm]);
        nested["annotations"] = json!({ REF_NAME: "latest" });
        l.write_index(vec![nested]);
    };
    let fx = Fx::new();
    build(&fx);
    // Several platforms and no --arch: the contract leaves the default
    // open; main refuses and lists them.
    let stderr = fx.fail(&[], &fx.oci());
    assert!(stderr.contains("--arch"), "{stderr}");

    // One real platform next to an attestation, an unknown media type and
    // a nested index: no flag needed.
    let fx = Fx::new();
    let l = fx.layout();
    let only = tagged_image(&fx, &l, host_arch(), None, "only");
    let att = attestation(&l, only["digest"].as_str().unwrap());
    let unknown_blob = l.put_blob(b"{}");
    let unknown = json!({
        "mediaType": "application/vnd.example.unknown+json",
        "digest": unknown_blob,
        "size": 2,
    });
    let mut nested = l.put_index(vec![att, unknown, only]);
    nested["annotations"] = json!({ REF_NAME: "latest" });
    l.write_index(vec![nested]);
    let tree = fx.ok(&[], &fx.oci());
    assert_tree(&fx, &tree, "only file 0644 \"only\"");

    let fx = Fx::new();
    build(&fx);
    let tree = fx.ok(&["--arch", host_arch()], &format!("{}:latest", fx.oci()));
    assert_tree(&fx, &tree, "first file 0644 \"first\"");

    for arch in if other == "arm64" {
        &["arm64", "aarch64"][..]
    } else {
        &["amd64", "x86_64"][..]
    } {
        let fx = Fx::new();
        build(&fx);
        let tree = fx.ok(&["--arch", arch], &fx.oci());
        assert_tree(&fx, &tree, "other file 0644 \"other\"");
    }

    // Plain layout path, oci:DIR:TAG with another tag, unknown tag.
    let fx = Fx::new();
    let l = fx.layout();
    let a = image([Layer::gz([Entry::file("a", "a")])])
        .tag("v1")
        .store(&l);
    let b = image([Layer::gz([Entry::file("b", "b")])])
        .tag("latest")
        .store(&l);
    l.write_index(vec![a, b]);
    let tree = fx.ok(&[], &format!("{}:v1", fx.oci()));
    assert_tree(&fx, &tree, "a file 0644 \"a\"");
    std::fs::remove_dir_all(fx.rootfs()).unwrap();
    let tree = fx.ok(&[], fx.layout_dir().to_str().unwrap());
    assert_tree(&fx, &tree, "b file 0644 \"b\"");
    std::fs::remove_dir_all(fx.rootfs()).unwrap();
    let stderr = fx.fail(&[], &format!("{}:nope", fx.oci()));
    assert!(stderr.contains("nope"), "{stderr}");

    // A single manifest without a `latest` tag is used when no tag is given.
    let fx = Fx::new();
    let l = fx.layout();
    let a = image([Layer::gz([Entry::file("a", "a")])])
        .tag("1.0")
        .store(&l);
    l.write_index(vec![a]);
    let tree = fx.ok(&[], &fx.oci());
    assert_tree(&fx, &tree, "a file 0644 \"a\"");

    // --variant and --os pick among otherwise equal platforms.
    let fx = Fx::new();
    let l = fx.layout();
    let v6 = tagged_image(&fx, &l, "arm", Some("v6"), "v6");
    let v7 = tagged_image(&fx, &l, "arm", Some("v7"), "v7");
    let win = image([Layer::gz([Entry::file("win", "win")])])
        .platform("arm", "windows", Some("v7"))
        .store(&l);
    let mut nested = l.put_index(vec![v6, win, v7]);
    nested["annotations"] = json!({ REF_NAME: "latest" });
    l.write_index(vec![nested]);
    let tree = fx.ok(
        &["--arch", "arm", "--variant", "v7", "--os", "linux"],
        &fx.oci(),
    );
    assert_tree(&fx, &tree, "v7 file 0644 \"v7\"");
    std::fs::remove_dir_all(fx.rootfs()).unwrap();
    let tree = fx.ok(
        &["--arch", "arm", "--variant", "v7", "--os", "windows"],
        &fx.oci(),
    );
    assert_tree(&fx, &tree, "win file 0644 \"win\"");
    std::fs::remove_dir_all(fx.rootfs()).unwrap();
    let tree = fx.ok(&["--arch", "arm", "--variant", "v6"], &fx.oci());
    assert_tree(&fx, &tree, "v6 file 0644 \"v6\"");

    // No matching platform, and an empty index.
    let fx = Fx::new();
    build(&fx);
    let stderr = fx.fail(&["--arch", "s390x"], &fx.oci());
    assert!(stderr.contains("s390x"), "{stderr}");

    let fx = Fx::new();
    fx.layout().write_index(vec![]);
    fx.fail(&[], &fx.oci());
}

#[test]
fn case_54_media_types() {
    // zstd content labelled gzip: sniffed, with a warning.
    let fx = Fx::new();
    let img = fx.single(image([Layer::new(
        Tar::of([Entry::file("z", "z")]),
        Compression::Zstd,
    )
    .with_media_type(mt::OCI_LAYER_GZIP)]));
    let rootfs = fx.rootfs().to_str().unwrap().to_string();
    let out = fx.run(&["unpack", &img, &rootfs]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning"),
        "no warning for a mislabelled layer:\n{stderr}"
    );
    assert_tree(&fx, &Tree::scan(&fx.rootfs()), "z file 0644 \"z\"");

    // A config media type in `layers`.
    let fx = Fx::new();
    let layer = Layer::gz([Entry::file("a", "a")]).with_media_type(mt::OCI_CONFIG);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&[], &img);
    // A manifest-level check: the layer may be named by its index.
    assert!(stderr.contains(mt::OCI_CONFIG), "{stderr}");
    assert!(
        stderr.contains(&ids.0[..19]) || stderr.contains("layers[0]"),
        "error does not name the layer:\n{stderr}"
    );

    // Non-distributable and Docker v2 media types.
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::file("a", "a")]).with_media_type(mt::OCI_LAYER_ND_GZIP),
        Layer::plain([Entry::file("b", "b")]).with_media_type(mt::OCI_LAYER_ND),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "a file 0644 \"a\"\nb file 0644 \"b\"");

    let fx = Fx::new();
    let img = fx.single(
        image([
            Layer::gz([Entry::file("a", "a")]),
            Layer::gz([Entry::file("b", "b")]).with_media_type(mt::DOCKER_FOREIGN_GZIP),
        ])
        .docker(),
    );
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "a file 0644 \"a\"\nb file 0644 \"b\"");
}

#[test]
fn case_55_config_rootfs() {
    let fx = Fx::new();
    let layer = Layer::gz([Entry::file("a", "a")]);
    let extra = layer.real_diff_id();
    let img = fx.single(image([layer]).with_config(move |c| {
        c["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push(json!(extra));
    }));
    let stderr = fx.fail(&[], &img);
    assert!(stderr.contains("diff_ids"), "{stderr}");

    let fx = Fx::new();
    let img = fx.single(
        image([
            Layer::gz([Entry::file("a", "a")]),
            Layer::gz([Entry::file("b", "b")]),
        ])
        .with_config(|c| {
            c["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
        }),
    );
    let stderr = fx.fail(&[], &img);
    assert!(stderr.contains("diff_ids"), "{stderr}");

    let fx = Fx::new();
    let img = fx.single(
        image([Layer::gz([Entry::file("a", "a")])]).with_config(|c| {
            c["rootfs"]["type"] = json!("snapshots");
        }),
    );
    let stderr = fx.fail(&[], &img);
    assert!(stderr.contains("snapshots"), "{stderr}");
}

// ---------------------------------------------------------------------------
// Output directory, atomicity, inspect
// ---------------------------------------------------------------------------

#[test]
fn force_refuses_then_overwrites() {
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([Entry::file("new", "n")])]));
    std::fs::create_dir(fx.rootfs()).unwrap();
    std::fs::write(fx.rootfs().join("old"), "o").unwrap();
    let rootfs = fx.rootfs().to_str().unwrap().to_string();
    let out = fx.run(&["unpack", &img, &rootfs]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--force"),
        "the error should suggest --force:\n{stderr}"
    );
    assert_tree(&fx, &Tree::scan(&fx.rootfs()), "old file 0644 \"o\"");

    let tree = fx.ok(&["--force"], &img);
    assert_tree(&fx, &tree, "new file 0644 \"n\"");

    // An existing empty dir is fine without --force.
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([Entry::file("new", "n")])]));
    std::fs::create_dir(fx.rootfs()).unwrap();
    let tree = fx.ok(&[], &img);
    assert_tree(&fx, &tree, "new file 0644 \"n\"");
}

#[test]
fn oci_archive_input() {
    let fx = Fx::new();
    let l = fx.layout();
    let a = image([Layer::gz([Entry::file("a", "a")])])
        .tag("v1")
        .store(&l);
    let b = image([Layer::gz([Entry::file("b", "b")])])
        .tag("latest")
        .store(&l);
    l.write_index(vec![a, b]);
    let archive = fx.path().join("image.tar");
    l.archive(&archive);
    let tree = fx.ok(&[], &format!("oci-archive:{}", archive.display()));
    assert_tree(&fx, &tree, "b file 0644 \"b\"");
    std::fs::remove_dir_all(fx.rootfs()).unwrap();
    let tree = fx.ok(&[], &format!("oci-archive:{}:v1", archive.display()));
    assert_tree(&fx, &tree, "a file 0644 \"a\"");
}

#[test]
fn failure_is_atomic() {
    // A failure in the second layer, after the first was written: no
    // rootfs/, no `.rootfs.bundlegen-*` (checked by `fail` and `run`).
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::file("a", "a")]),
        Layer::gz([Entry::file("b", "b"), Entry::hardlink("hl", "nothere")]),
    ]));
    fx.fail(&[], &img);

    // With --force over an existing rootfs, a failure leaves it as it was.
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([Entry::file("a", "a")]),
        Layer::gz([Entry::hardlink("hl", "nothere")]),
    ]));
    std::fs::create_dir(fx.rootfs()).unwrap();
    std::fs::write(fx.rootfs().join("old"), "o").unwrap();
    let rootfs = fx.rootfs().to_str().unwrap().to_string();
    let out = fx.run(&["unpack", "--force", &img, &rootfs]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_tree(&fx, &Tree::scan(&fx.rootfs()), "old file 0644 \"o\"");
}

#[test]
fn output_io_error_exits_3() {
    // ROOTFS under a regular file: the output cannot be created.
    let fx = Fx::new();
    let img = fx.single(image([Layer::gz([Entry::file("a", "a")])]));
    std::fs::write(fx.path().join("plainfile"), "x").unwrap();
    let rootfs = fx.path().join("plainfile/rootfs");
    let out = fx.run(&["unpack", &img, rootfs.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(stderr.contains("plainfile"), "{stderr}");
}

fn inspect_image(fx: &Fx) -> (String, Vec<Layer>) {
    let layers = vec![
        Layer::gz([Entry::file("a", "a")]),
        Layer::new(Tar::of([Entry::file("b", "b")]), Compression::Zstd),
    ];
    let mut img = image(layers.clone());
    img.run = RunConfig {
        entrypoint: Some(vec!["/bin/app".into(), "--serve".into()]),
        cmd: Some(vec!["--port".into(), "80".into()]),
        env: Some(vec!["PATH=/usr/bin:/bin".into(), "MODE=prod".into()]),
        user: Some("1000:1000".into()),
        working_dir: Some("/srv".into()),
    };
    let l = fx.layout();
    // Two tags for one manifest: listed twice, one ref.name each.
    let d = img.tag("latest").store(&l);
    let mut d2 = d.clone();
    d2["annotations"][REF_NAME] = json!("v2");
    l.write_index(vec![d, d2]);
    (fx.oci(), layers)
}

#[test]
fn inspect_json() {
    let fx = Fx::new();
    let (img, layers) = inspect_image(&fx);
    let out = fx.run(&["inspect", &img, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON");
    let index: Value =
        serde_json::from_slice(&std::fs::read(fx.layout_dir().join("index.json")).unwrap())
            .unwrap();
    let manifest_digest = index["manifests"][0]["digest"].clone();
    assert_eq!(v["manifestDigest"], manifest_digest);
    assert_eq!(v["platform"]["architecture"], json!(host_arch()));
    assert_eq!(v["platform"]["os"], json!("linux"));
    // No variant in the image: absent or null.
    assert!(v["platform"]["variant"].is_null(), "{}", v["platform"]);
    let mut tags: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["latest", "v2"]);
    let want_layers: Vec<Value> = layers
        .iter()
        .zip([mt::OCI_LAYER_GZIP, mt::OCI_LAYER_ZSTD])
        .map(|(l, m)| {
            json!({
                "mediaType": m,
                "digest": digest_of(&l.blob_bytes()),
                "size": l.blob_bytes().len(),
                "diffId": l.real_diff_id(),
            })
        })
        .collect();
    assert_eq!(v["layers"], json!(want_layers));
    assert_eq!(
        v["config"],
        json!({
            "Entrypoint": ["/bin/app", "--serve"],
            "Cmd": ["--port", "80"],
            "Env": ["PATH=/usr/bin:/bin", "MODE=prod"],
            "User": "1000:1000",
            "WorkingDir": "/srv",
        })
    );
    assert!(!fx.rootfs().exists());
}

#[test]
fn inspect_human() {
    let fx = Fx::new();
    let (img, layers) = inspect_image(&fx);
    let out = fx.run(&["inspect", &img]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        serde_json::from_str::<Value>(&stdout).is_err(),
        "human output is JSON:\n{stdout}"
    );
    for needle in [
        host_arch().to_string(),
        "v2".to_string(),
        "/bin/app".to_string(),
        "/srv".to_string(),
        digest_of(&layers[0].blob_bytes()),
        digest_of(&layers[1].blob_bytes()),
    ] {
        assert!(
            stdout.contains(&needle),
            "human output lacks {needle}:\n{stdout}"
        );
    }

    let fx = Fx::new();
    fx.layout().write_index(vec![]);
    let out = fx.run(&["inspect", &fx.oci(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
}

/// FORMATS.md §3: a merged-usr layer over a traditional base holds
/// `bin -> usr/bin` followed by `bin/.wh.*` in the same layer. The
/// whiteouts refer to the lower `bin/` directory (which the symlink
/// replaced); following the new symlink would delete `usr/bin` files.
#[test]
fn merged_usr_whiteouts_under_new_symlink_do_not_follow_it() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([
            Entry::dir("bin/"),
            Entry::file("bin/sh", "old sh"),
            Entry::file("bin/ls", "old ls"),
            Entry::dir("usr/"),
            Entry::dir("usr/bin/"),
            Entry::file("usr/bin/env", "env"),
        ]),
        Layer::gz([
            Entry::symlink("bin", "usr/bin"),
            Entry::whiteout("bin/ls"),
            Entry::whiteout("bin/env"),
            Entry::opaque("bin"),
            Entry::dir("usr/"),
            Entry::dir("usr/bin/"),
            Entry::file("usr/bin/sh", "new sh"),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        bin symlink 0777 -> usr/bin
        usr dir 0755
        usr/bin dir 0755
        usr/bin/env file 0644 "env"
        usr/bin/sh file 0644 "new sh"
        "#,
    );
}

// ---------------------------------------------------------------------------
// Directory metadata: recorded per path as entries arrive, applied by one
// walk of the finished tree.
// ---------------------------------------------------------------------------

#[test]
fn dir_metadata_last_record_wins_and_recreated_dirs_get_defaults() {
    let fx = Fx::new();
    let img = fx.single(image([
        Layer::gz([
            Entry::dir("a/").with_mode(0o700).with_mtime(100),
            Entry::dir("a/b/").with_mode(0o750).with_mtime(200),
            Entry::file("a/b/f", "f"),
            Entry::dir("ro/").with_mode(0o555).with_mtime(500),
            Entry::file("ro/x", "x"),
            Entry::dir("gone/").with_mode(0o711).with_mtime(600),
        ]),
        Layer::gz([
            // A later layer restates `a`: its record wins.
            Entry::dir("a/").with_mode(0o711).with_mtime(300),
            // `b` goes, then comes back as the implicit parent of `g`: a
            // new directory with default metadata and g's mtime.
            Entry::whiteout("a/b"),
            Entry::file("a/b/g", "g").with_mtime(400),
            // Writing into a read-only directory of a lower layer.
            Entry::file("ro/y", "y"),
            // Replaced by a file: no directory metadata is left to apply.
            Entry::file("gone", "now a file").with_mtime(700),
        ]),
    ]));
    let tree = fx.ok(&[], &img);
    assert_tree(
        &fx,
        &tree,
        r#"
        a dir 0711
        a/b dir 0755
        a/b/g file 0644 "g"
        gone file 0644 "now a file"
        ro dir 0555
        ro/x file 0644 "x"
        ro/y file 0644 "y"
        "#,
    );
    let mtimes: Vec<(&str, i64)> = ["a", "a/b", "ro", "gone"].iter().map(|p| (*p, tree.node(p).mtime)).collect();
    assert_eq!(mtimes, [("a", 300), ("a/b", 400), ("ro", 500), ("gone", 700)]);
}

#[test]
fn a_tree_deeper_than_the_soft_open_file_limit() {
    // 1,500 levels (a 3,000-byte path, under the default --max-path-len):
    // the final metadata walk holds a descriptor per level, more than a
    // soft limit of 1,024 allows; bundlegen raises it to the hard limit.
    let fx = Fx::new();
    let depth = 1500;
    let mut entries = Vec::new();
    let mut path = String::new();
    for i in 0..depth {
        path.push_str("d/");
        let mode = if i % 2 == 0 { 0o750 } else { 0o705 };
        // Names past 100 bytes go in a PAX `path` record, as real writers do.
        entries.push(Entry::dir(&path).with_mode(mode).with_mtime(1000 + i as i64).with_pax("path", &path));
    }
    let bottom = format!("{path}bottom");
    entries.push(Entry::file(&bottom, "deep").with_pax("path", &bottom));
    let img = fx.single(image([Layer::gz(entries)]));
    let rootfs = fx.rootfs();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bundlegen"));
    cmd.args(["unpack", &img, rootfs.to_str().unwrap()]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
            l.rlim_cur = 1024.min(l.rlim_max);
            if l.rlim_max < 4096 {
                l.rlim_max = 4096; // root may raise it; tests run as root in CI
            }
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
            Ok(())
        });
    }
    let out = cmd.output().expect("run bundlegen");
    assert!(out.status.success(), "stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    let mut dir = rootfs.clone();
    for i in 0..depth {
        dir.push("d");
        let st = std::fs::symlink_metadata(&dir).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(st.permissions().mode() & 0o7777, if i % 2 == 0 { 0o750 } else { 0o705 }, "level {i}");
        assert_eq!(st.mtime(), 1000 + i as i64, "level {i}");
    }
    assert_eq!(std::fs::read_to_string(dir.join("bottom")).unwrap(), "deep");
}

#[test]
fn bomb_in_one_file_stops_within_the_entry() {
    // One 192 MiB file of zeros (zstd: a few KiB). The ratio is checked as
    // the data streams, so the run stops just past the 64 MiB floor rather
    // than after writing the whole file.
    let fx = Fx::new();
    let layer = Layer::new(Tar::of([Entry::file("zeros", vec![0u8; 192 << 20])]), Compression::Zstd);
    let ids = layer_ids(&layer);
    let img = fx.single(image([layer]));
    let stderr = fx.fail(&["--max-ratio", "100"], &img);
    assert_names(&stderr, &ids, "--max-ratio");
    let expanded: u64 = stderr
        .split("expands ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `expands N bytes` in:\n{stderr}"));
    assert!((64 << 20..80 << 20).contains(&expanded), "stopped after {expanded} bytes:\n{stderr}");
}
