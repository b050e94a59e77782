//! Flattening checked against `umoci unpack --rootless` and against
//! cases it found.

use std::env;
use std::fs;
use std::path::Path;

use bundlegen::diag::Silent;
use bundlegen::image::{ImageRef, OpenImage, OpenOptions, Selector};
use bundlegen::layers::{self, FlattenOptions};

use crate::builder::Layout;
use crate::debian;

/// A scratch directory under the target dir, removed on drop unless
/// `BUNDLEGEN_TEST_KEEP` is set.
fn scratch() -> tempfile::TempDir {
    let base = debian::cache_dir().with_file_name("prop-tmp");
    fs::create_dir_all(&base).expect("create prop scratch base");
    tempfile::Builder::new()
        .prefix("prop-")
        .disable_cleanup(env::var_os("BUNDLEGEN_TEST_KEEP").is_some())
        .tempdir_in(&base)
        .expect("create prop scratch dir")
}

/// bundlegen's flatten of `layout:tag` into a new directory `dest`.
fn ours(layout: &Path, tag: &str, dest: &Path) -> Result<(), String> {
    let reference = ImageRef::Layout { dir: layout.to_owned(), tag: Some(tag.to_owned()) };
    let source = OpenImage::open(&reference, &OpenOptions::default()).map_err(|e| anyhow_like(&e))?;
    let image = source
        .resolve(&Selector { tag: Some(tag.to_owned()), ..Selector::default() })
        .map_err(|e| anyhow_like(&e))?;
    fs::create_dir(dest).map_err(|e| format!("create {}: {e}", dest.display()))?;
    layers::flatten(&source, &image, dest, &FlattenOptions::default(), &Silent)
        .map(|_| ())
        .map_err(|e| anyhow_like(&e))
}

/// The error and its causes on one line, as the binary prints them.
fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Issue #6, found by this property test: a whiteout or opaque marker that
/// came *after* the same layer's entry for a lower directory left that
/// directory's lower children in place (the directory counted as the
/// layer's own, so nothing below it was looked at), while the same markers
/// *before* the entry removed them. The OCI image-spec applies whiteouts to
/// lower-layer resources whatever the order; umoci 0.4.7 and containerd
/// remove them in both orders.
#[test]
fn issue6_marker_after_same_layer_dir_hides_its_lower_children() {
    use crate::builder::{Entry, Image, Layer};
    use crate::treeview::Tree;
    let lower = || {
        Layer::plain([
            Entry::dir("d/"),
            Entry::dir("d/b/"),
            Entry::file("d/b/old", "old"),
            Entry::dir("d/b/sub/"),
            Entry::file("d/b/sub/deep", "deep"),
            Entry::file("d/keep", "keep"),
        ])
    };
    let whiteout_after = [
        Entry::dir("d/"),
        Entry::dir("d/b/").with_mode(0o750),
        Entry::dir("d/b/sub/"),
        Entry::file("d/b/new", "new"),
        Entry::whiteout("d/b"),
    ];
    let whiteout_before = [
        Entry::dir("d/"),
        Entry::whiteout("d/b"),
        Entry::dir("d/b/").with_mode(0o750),
        Entry::dir("d/b/sub/"),
        Entry::file("d/b/new", "new"),
    ];
    let opaque_after = [
        Entry::dir("d/"),
        Entry::dir("d/b/").with_mode(0o750),
        Entry::dir("d/b/sub/"),
        Entry::file("d/b/new", "new"),
        Entry::opaque("d"),
    ];
    let opaque_before = [
        Entry::dir("d/"),
        Entry::opaque("d"),
        Entry::dir("d/b/").with_mode(0o750),
        Entry::dir("d/b/sub/"),
        Entry::file("d/b/new", "new"),
    ];
    let kept = "d dir 0755\nd/b dir 0750\nd/b/new file 0644 \"new\"\nd/b/sub dir 0755\n";
    let cases = [
        ("whiteout after", whiteout_after, format!("{kept}d/keep file 0644 \"keep\"\n")),
        ("whiteout before", whiteout_before, format!("{kept}d/keep file 0644 \"keep\"\n")),
        ("opaque after", opaque_after, kept.to_owned()),
        ("opaque before", opaque_before, kept.to_owned()),
    ];
    let dir = scratch();
    for (i, (what, upper, expected)) in cases.into_iter().enumerate() {
        let layout = dir.path().join(format!("layout{i}"));
        Layout::single(&layout, Image::new([lower(), Layer::plain(upper)]));
        let rootfs = dir.path().join(format!("rootfs{i}"));
        ours(&layout, "latest", &rootfs).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(Tree::scan(&rootfs).render(), expected, "{what}");
    }
}
