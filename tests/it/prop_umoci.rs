//! Property test: random layer stacks (see `stackgen.rs`), applied by
//! bundlegen (the library's `layers::flatten`) and by
//! `umoci unpack --rootless`, must give the same tree: paths, types,
//! permission bits, symlink targets, contents, hardlink groups
//! (`treecmp`).
//!
//! Worker threads (two to four) each take 16 stacks at a time, store them
//! as tags of one layout, and run umoci and bundlegen on one tag after the
//! other. A failing stack is shrunk (layers, then entries, then file data
//! and modes dropped while the disagreement stays the same kind) and
//! printed as `builder` code, with the seed to replay it alone.
//!
//! Where umoci 0.4.7 departs from runtime semantics, umoci is given the
//! equivalent stack instead of the generated one; see
//! [`Stack::for_umoci`] and the "Property test" section of
//! `docs/flattening.md`.
//!
//! Environment: `BUNDLEGEN_PROP_SEED` (decimal or `0x` hex) replays a run,
//! `BUNDLEGEN_PROP_CASES` sets the number of stacks (default
//! [`DEFAULT_CASES`]), `BUNDLEGEN_TEST_KEEP=1` keeps the scratch directory
//! (under `<target>/prop-tmp`). Without umoci the test passes with a notice,
//! except when `CI` is set.

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bundlegen::diag::Silent;
use bundlegen::image::{ImageRef, OpenImage, OpenOptions, Selector};
use bundlegen::layers::{self, FlattenOptions};

use crate::builder::Layout;
use crate::debian;
use crate::e2e_umoci::have;
use crate::stackgen::{self, Stack, case_seed};
use crate::treecmp;

pub const DEFAULT_CASES: usize = 300;
/// Stacks per layout: umoci and bundlegen read the whole `index.json` for
/// every image, so one layout for a whole run would make that quadratic.
const STACKS_PER_LAYOUT: usize = 16;
/// Failing stacks shrunk and printed (the rest are only counted).
const SHOWN_FAILURES: usize = 3;
/// Time allowed for shrinking one failing stack.
const SHRINK_BUDGET: Duration = Duration::from_secs(60);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn env_number(name: &str) -> Option<u64> {
    let v = env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v}: not a number: {e}")))
}

fn random_seed() -> u64 {
    let mut s = 0u64;
    // SAFETY: the buffer is valid for 8 bytes.
    let n = unsafe { libc::getrandom((&raw mut s).cast(), 8, 0) };
    assert_eq!(n, 8, "getrandom");
    s
}

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

/// How one stack came out.
#[derive(Debug)]
enum Outcome {
    Same,
    Differ(String),
    UmociFailed(String),
    OursFailed(String),
    BothFailed(String, String),
}

impl Outcome {
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Same => "same tree",
            Outcome::Differ(_) => "trees differ",
            Outcome::UmociFailed(_) => "umoci failed, bundlegen did not",
            Outcome::OursFailed(_) => "bundlegen failed, umoci did not",
            Outcome::BothFailed(..) => "both failed (the generator made an invalid stack)",
        }
    }

    /// One line: the kind and the first difference or the error's end.
    fn summary(&self) -> String {
        let detail = self.detail();
        let line = match self {
            Outcome::Differ(_) => detail
                .lines()
                .find(|l| ["  - ", "  + ", "  ~ "].iter().any(|p| l.starts_with(p)))
                .unwrap_or_default()
                .trim()
                .to_owned(),
            _ => {
                let chars: Vec<char> = detail.chars().collect();
                chars[chars.len().saturating_sub(160)..].iter().collect()
            }
        };
        format!("{}: {line}", self.kind())
    }

    fn detail(&self) -> String {
        match self {
            Outcome::Same => String::new(),
            Outcome::Differ(r) => format!("umoci (left) vs bundlegen (right): {r}"),
            Outcome::UmociFailed(e) => format!("umoci: {e}"),
            Outcome::OursFailed(e) => format!("bundlegen: {e}"),
            Outcome::BothFailed(u, o) => format!("umoci: {u}\nbundlegen: {o}"),
        }
    }
}

/// `umoci unpack --rootless` of `layout:tag` into `bundle` (umask 022, so
/// the directories umoci creates for missing parents get 0755 as
/// bundlegen's do).
fn umoci(layout: &Path, tag: &str, bundle: &Path) -> Result<PathBuf, String> {
    let out = Command::new("sh")
        .args([
            "-c",
            "umask 022 && exec umoci unpack --rootless --image \"$0\" \"$1\"",
        ])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .output()
        .map_err(|e| format!("cannot run umoci: {e}"))?;
    if out.status.success() {
        Ok(bundle.join("rootfs"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// bundlegen's flatten of `layout:tag` into a new directory `dest`.
fn ours(layout: &Path, tag: &str, dest: &Path) -> Result<(), String> {
    let reference = ImageRef::Layout {
        dir: layout.to_owned(),
        tag: Some(tag.to_owned()),
    };
    let source =
        OpenImage::open(&reference, &OpenOptions::default()).map_err(|e| anyhow_like(&e))?;
    let image = source
        .resolve(&Selector {
            tag: Some(tag.to_owned()),
            ..Selector::default()
        })
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

/// Time spent in each phase, summed over the workers.
#[derive(Default)]
struct Phases {
    store: AtomicU64,
    umoci: AtomicU64,
    ours: AtomicU64,
    compare: AtomicU64,
    cleanup: AtomicU64,
}

impl Phases {
    /// Adds the time since `*t` to `phase` and restarts `*t`.
    fn lap(phase: &AtomicU64, t: &mut Instant) {
        phase.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        *t = Instant::now();
    }

    fn show(phase: &AtomicU64) -> String {
        format!("{:.1}s", phase.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// Runs both tools on one stack of `layout` and compares; `work` is
/// removed afterwards.
fn check(layout: &Path, tag: &str, umoci_tag: &str, work: &Path, phases: &Phases) -> Outcome {
    let mut t = Instant::now();
    fs::create_dir_all(work).expect("create work dir");
    let theirs = umoci(layout, umoci_tag, &work.join("umoci"));
    Phases::lap(&phases.umoci, &mut t);
    let mine = work.join("ours");
    let ours = ours(layout, tag, &mine);
    Phases::lap(&phases.ours, &mut t);
    let outcome = match (theirs, ours) {
        (Ok(rootfs), Ok(())) => {
            let (l, r, diffs) = treecmp::compare(&rootfs, &mine);
            if diffs.is_empty() {
                Outcome::Same
            } else {
                Outcome::Differ(treecmp::report(&l, &r, &diffs))
            }
        }
        (Err(u), Ok(())) => Outcome::UmociFailed(u),
        (Ok(_), Err(o)) => Outcome::OursFailed(o),
        (Err(u), Err(o)) => Outcome::BothFailed(u, o),
    };
    Phases::lap(&phases.compare, &mut t);
    if env::var_os("BUNDLEGEN_TEST_KEEP").is_none() {
        let _ = fs::remove_dir_all(work);
    }
    Phases::lap(&phases.cleanup, &mut t);
    outcome
}

/// Stores the stacks as tags `s<first>`, `s<first + 1>`, ... (and
/// `sN-umoci` when umoci needs the equivalent stack); returns umoci's tag
/// per stack.
fn store(layout_dir: &Path, first: usize, stacks: &[Stack]) -> Vec<String> {
    let layout = Layout::create(layout_dir);
    let mut descriptors = Vec::new();
    let mut umoci_tags = Vec::new();
    for (i, stack) in stacks.iter().enumerate() {
        let tag = format!("s{}", first + i);
        descriptors.push(stack.image().tag(&tag).store(&layout));
        match stack.for_umoci() {
            Some(equivalent) => {
                let utag = format!("{tag}-umoci");
                descriptors.push(equivalent.image().tag(&utag).store(&layout));
                umoci_tags.push(utag);
            }
            None => umoci_tags.push(tag),
        }
    }
    layout.write_index(descriptors);
    umoci_tags
}

/// Checks one stack in a layout of its own (for shrinking and replays).
fn check_alone(stack: &Stack, dir: &Path) -> Outcome {
    let _ = fs::remove_dir_all(dir);
    let umoci_tags = store(&dir.join("layout"), 0, std::slice::from_ref(stack));
    let outcome = check(
        &dir.join("layout"),
        "s0",
        &umoci_tags[0],
        &dir.join("work"),
        &Phases::default(),
    );
    if env::var_os("BUNDLEGEN_TEST_KEEP").is_none() {
        let _ = fs::remove_dir_all(dir);
    }
    outcome
}

/// Greedy shrinking: drop layers, then single entries, then make file data
/// empty and modes plain, as long as the outcome stays of the same kind.
fn shrink(stack: &Stack, kind: &str, dir: &Path) -> (Stack, usize) {
    let start = Instant::now();
    let mut best = stack.clone();
    let mut tries = 0;
    let still = |s: &Stack, tries: &mut usize| {
        if !s.valid() {
            return false;
        }
        *tries += 1;
        check_alone(s, dir).kind() == kind
    };
    loop {
        let mut progress = false;
        let mut candidates: Vec<Stack> = Vec::new();
        for l in 0..best.layers.len() {
            if best.layers.len() > 1 {
                let mut s = best.clone();
                s.layers.remove(l);
                candidates.push(s);
            }
        }
        for l in 0..best.layers.len() {
            for e in 0..best.layers[l].ops.len() {
                let mut s = best.clone();
                s.layers[l].ops.remove(e);
                candidates.push(s);
            }
        }
        for l in 0..best.layers.len() {
            for e in 0..best.layers[l].ops.len() {
                let mut s = best.clone();
                if simplify(&mut s.layers[l].ops[e]) {
                    candidates.push(s);
                }
            }
        }
        for c in candidates {
            if start.elapsed() > SHRINK_BUDGET {
                return (best, tries);
            }
            if still(&c, &mut tries) {
                best = c;
                progress = true;
                break;
            }
        }
        if !progress {
            return (best, tries);
        }
    }
}

/// One step towards a plainer entry; false when it is as plain as it gets.
fn simplify(op: &mut stackgen::Op) -> bool {
    use stackgen::Op;
    match op {
        Op::File { text, repeat, .. } if *repeat > 1 || !text.is_empty() => {
            if *repeat > 1 {
                *repeat = 1;
            } else {
                text.clear();
            }
            true
        }
        Op::File { mode, .. } | Op::Hardlink { mode, .. } | Op::Fifo { mode, .. }
            if *mode != 0o644 =>
        {
            *mode = 0o644;
            true
        }
        Op::Dir { mode, .. } if *mode != 0o755 => {
            *mode = 0o755;
            true
        }
        _ => false,
    }
}

#[test]
fn prop_umoci_random_layer_stacks() {
    if !have(&["umoci"]) {
        return;
    }
    let seed = env_number("BUNDLEGEN_PROP_SEED").unwrap_or_else(random_seed);
    let cases = env_number("BUNDLEGEN_PROP_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    eprintln!(
        "prop: {cases} stacks from seed {seed:#018x} (replay: BUNDLEGEN_PROP_SEED={seed:#x} BUNDLEGEN_PROP_CASES={cases})"
    );
    let started = Instant::now();
    let dir = scratch();
    let phases = Phases::default();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Stack, String, Outcome)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let chunk = next.fetch_add(1, Ordering::Relaxed);
                    let first = chunk * STACKS_PER_LAYOUT;
                    if first >= cases {
                        break;
                    }
                    let mut t = Instant::now();
                    let stacks: Vec<Stack> = (first..cases.min(first + STACKS_PER_LAYOUT))
                        .map(|i| stackgen::generate(case_seed(seed, i), is_root()))
                        .collect();
                    let layout = dir.path().join(format!("layout{chunk}"));
                    let umoci_tags = store(&layout, first, &stacks);
                    Phases::lap(&phases.store, &mut t);
                    for (k, (stack, utag)) in stacks.into_iter().zip(umoci_tags).enumerate() {
                        let i = first + k;
                        let work = dir.path().join(format!("w{i}"));
                        let o = check(&layout, &format!("s{i}"), &utag, &work, &phases);
                        results
                            .lock()
                            .expect("results lock")
                            .push((i, stack, utag, o));
                    }
                    t = Instant::now();
                    if env::var_os("BUNDLEGEN_TEST_KEEP").is_none() {
                        let _ = fs::remove_dir_all(&layout);
                    }
                    Phases::lap(&phases.cleanup, &mut t);
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(i, ..)| *i);
    let elapsed = started.elapsed();

    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut features: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, stack, _, o) in &results {
        *by_kind.entry(o.kind()).or_default() += 1;
        for f in &stack.features {
            *features.entry(f.as_str()).or_default() += 1;
        }
    }
    let entries: usize = results.iter().map(|(_, s, ..)| s.entries()).sum();
    let layers: usize = results.iter().map(|(_, s, ..)| s.layers.len()).sum();
    let equivalent = results
        .iter()
        .filter(|(_, _, t, _)| t.ends_with("-umoci"))
        .count();
    eprintln!(
        "prop: {cases} stacks, {layers} layers, {entries} entries in {:.1}s, {:.1} stacks/s, {workers} workers",
        elapsed.as_secs_f64(),
        cases as f64 / elapsed.as_secs_f64()
    );
    eprintln!(
        "prop: time over all workers: generate and store {}, umoci {}, bundlegen {}, compare {}, clean up {}",
        Phases::show(&phases.store),
        Phases::show(&phases.umoci),
        Phases::show(&phases.ours),
        Phases::show(&phases.compare),
        Phases::show(&phases.cleanup),
    );
    eprintln!("prop: umoci given the runtime-equivalent stack for {equivalent} stacks");
    for (k, n) in &by_kind {
        eprintln!("prop: {n:5} {k}");
    }
    eprintln!("prop: stacks exercising each feature:");
    for (f, n) in &features {
        eprintln!("  {n:5} {f}");
    }

    let failures: Vec<_> = results
        .iter()
        .filter(|(.., o)| !matches!(o, Outcome::Same))
        .collect();
    if failures.is_empty() {
        return;
    }
    for (i, stack, _, o) in &failures {
        eprintln!("prop: stack {i} (seed {:#x}): {}", stack.seed, o.summary());
    }
    let mut text = String::new();
    for (i, stack, _, o) in failures.iter().take(SHOWN_FAILURES) {
        let (small, tries) = shrink(stack, o.kind(), &dir.path().join(format!("shrink{i}")));
        let small_outcome = check_alone(&small, &dir.path().join(format!("final{i}")));
        text.push_str(&format!(
            "\n=== stack {i}: {}\nreplay: BUNDLEGEN_PROP_SEED={:#x} BUNDLEGEN_PROP_CASES=1\n{}\n--- shrunk in {tries} tries to:\n{}{}\n",
            o.kind(),
            stack.seed,
            o.detail(),
            small.rust(),
            small_outcome.detail(),
        ));
        if let Some(eq) = small.for_umoci() {
            text.push_str(&format!("--- umoci was given instead:\n{}", eq.rust()));
        }
    }
    panic!(
        "{} of {cases} stacks disagree (seed {seed:#x}); the first {} shrunk:{text}",
        failures.len(),
        failures.len().min(SHOWN_FAILURES)
    );
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
        (
            "whiteout after",
            whiteout_after,
            format!("{kept}d/keep file 0644 \"keep\"\n"),
        ),
        (
            "whiteout before",
            whiteout_before,
            format!("{kept}d/keep file 0644 \"keep\"\n"),
        ),
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
