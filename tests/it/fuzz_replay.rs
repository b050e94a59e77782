//! Replays saved fuzz inputs through the entry points the cargo-fuzz targets
//! call (`bundlegen::fuzzing`, see `fuzz/` and docs/security.md): every file
//! under `tests/fuzz-regressions/<target>/` (minimized findings, named after
//! what they found) and the committed seed corpus `fuzz/seeds/<target>/`.
//!
//! An input may be rejected with an error; it must not panic. The layer
//! entry points also check, with a snapshot before and after, that nothing
//! outside the rootfs changed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use bundlegen::fuzzing;
use bundlegen::image::spec::Compression;

const TARGETS: &[&str] = &[
    "image_json",
    "layer_tar",
    "layer_gzip",
    "layer_zstd",
    "elf",
    "platform",
    "appmeta",
];

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        root.join("tests/fuzz-regressions").join(target),
        root.join("fuzz/seeds").join(target),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd {
            let p = e.expect("read_dir entry").path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Runs every saved input of `target`; fails listing the inputs that panicked.
fn replay(target: &str, run: impl Fn(&[u8], &Path) -> String) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no seeds or regression inputs for fuzz target {target}"
    );
    let scratch = tempfile::Builder::new()
        .prefix("bg-fuzz-replay-")
        .tempdir()
        .expect("tempdir");
    let failed: Vec<String> = files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).expect("read a fuzz input");
            match catch_unwind(AssertUnwindSafe(|| run(&data, scratch.path()))) {
                Ok(outcome) => {
                    // Shown with --nocapture: what each saved input exercises.
                    println!("{target} {}:\n{outcome}", f.display());
                    false
                }
                Err(_) => true,
            }
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "fuzz target {target}: these inputs panic:\n{}",
        failed.join("\n")
    );
    // Every run directory was removed again.
    let left: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("list scratch")
        .collect();
    assert!(
        left.is_empty(),
        "fuzz target {target} left files in its scratch directory: {left:?}"
    );
}

#[test]
fn regression_dirs_name_targets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd {
        let name = e
            .expect("read_dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            TARGETS.contains(&name.as_str()) || name == "README.md",
            "tests/fuzz-regressions/{name} is not a fuzz target (known: {TARGETS:?})"
        );
    }
}

#[test]
fn image_json() {
    replay("image_json", fuzzing::image_json);
}

#[test]
fn layer_tar() {
    replay("layer_tar", |d, s| fuzzing::layer(d, Compression::None, s));
}

#[test]
fn layer_gzip() {
    replay("layer_gzip", |d, s| fuzzing::layer(d, Compression::Gzip, s));
}

#[test]
fn layer_zstd() {
    replay("layer_zstd", |d, s| fuzzing::layer(d, Compression::Zstd, s));
}

#[test]
fn elf() {
    replay("elf", fuzzing::elf);
}

#[test]
fn platform() {
    replay("platform", fuzzing::platform);
}

#[test]
fn appmeta() {
    replay("appmeta", |d, _| fuzzing::appmeta(d));
}
