//! Random layer stacks for the property test against umoci
//! (`prop_umoci.rs`).
//!
//! A [`Stack`] is 1–5 layers of tar entries over a small name space (six
//! names, three levels), so that layers keep hitting each other's paths:
//! regular files (empty, short, a few over 256 KiB; setuid, setgid, sticky
//! and mode-0 files), directories of various modes, symlinks (relative,
//! absolute, escaping, dangling, to directories, chains), hardlinks (within
//! the layer and to lower layers' inodes, to symlinks, by absolute names),
//! FIFOs, whiteouts and opaque markers (before and after the same layer's
//! own entries, at the root, through symlinks), every type replaced by
//! every type within and across layers, empty layers, `./` names and paths
//! over 100 bytes (PAX records).
//!
//! Generation is driven by a seeded PRNG and keeps a [`Model`] of the tree
//! (`stackgen/model.rs`) to pick meaningful targets and to stay off shapes
//! the two tools are known to treat differently. Most entries come with
//! their parent directories first, as tar writers emit them; some layers
//! leave parents out, so that entries go through lower symlinks or create
//! missing directories.

mod model;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::builder::{Compression, Entry, Image, Layer, Tar};
use model::{Applied, Model, Node, comps, join, split, under};

/// SplitMix64: tiny, seedable, good enough to drive a generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Index into `weights`, chosen in proportion to them.
    pub fn weighted(&mut self, weights: &[usize]) -> usize {
        let mut n = self.below(weights.iter().sum());
        for (i, &w) in weights.iter().enumerate() {
            if n < w {
                return i;
            }
            n -= w;
        }
        unreachable!("below() stays under the sum")
    }
}

/// The seed of case `i` of a run seeded with `base`: case 0 uses `base`
/// itself, so any case replays alone with its own seed.
pub fn case_seed(base: u64, i: usize) -> u64 {
    base.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Two of the long name take a path past the 100 bytes of a ustar name
/// field: such entries carry PAX `path` (and `linkpath`) records.
const LONG: &str = "f-is-a-long-name-so-that-two-take-a-path-past-100-bytes";
const NAMES: &[&str] = &["a", "b", "c", "d", "e", LONG];
const MAX_DEPTH: usize = 3;
const FILE_MODES: &[u32] = &[
    0o644, 0o644, 0o755, 0o600, 0o640, 0o400, 0o000, 0o777, 0o4755, 0o2755, 0o6711, 0o1644, 0o4000,
    0o2644,
];
const DIR_MODES: &[u32] = &[
    0o755, 0o755, 0o755, 0o700, 0o750, 0o711, 0o1777, 0o2755, 0o3775, 0o555, 0o500, 0o000, 0o4755,
    0o777,
];
/// Directory modes a non-root test can still walk and clean up.
const DIR_MODES_UNPRIVILEGED: &[u32] = &[0o755, 0o700, 0o750, 0o1777, 0o2755, 0o777, 0o3775];
/// File modes a non-root test can still read to compare contents.
const FILE_MODES_UNPRIVILEGED: &[u32] =
    &[0o644, 0o755, 0o600, 0o400, 0o4755, 0o2755, 0o6711, 0o1644];
const FIFO_MODES: &[u32] = &[0o644, 0o600, 0o666, 0o620];

/// One tar entry of a generated layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Dir {
        path: String,
        mode: u32,
    },
    /// `data` is `text` repeated `repeat` times (compact to print).
    File {
        path: String,
        mode: u32,
        text: String,
        repeat: usize,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// `mode` is what the header says; neither tool applies it.
    Hardlink {
        path: String,
        target: String,
        mode: u32,
    },
    Fifo {
        path: String,
        mode: u32,
    },
    /// `dir/.wh.name` for `path` = `dir/name`.
    Whiteout {
        path: String,
    },
    /// `dir/.wh..wh..opq`; `dir` empty for the root.
    Opaque {
        dir: String,
    },
}

impl Op {
    pub fn entry(&self) -> Entry {
        let e = match self {
            Op::Dir { path, mode } => Entry::dir(&format!("{path}/")).with_mode(*mode),
            Op::File {
                path,
                mode,
                text,
                repeat,
            } => Entry::file(path, text.repeat(*repeat)).with_mode(*mode),
            Op::Symlink { path, target } => Entry::symlink(path, target),
            Op::Hardlink { path, target, mode } => Entry::hardlink(path, target).with_mode(*mode),
            Op::Fifo { path, mode } => Entry::fifo(path).with_mode(*mode),
            Op::Whiteout { path } => Entry::whiteout(path),
            Op::Opaque { dir } if dir.is_empty() => Entry::file(".wh..wh..opq", b""),
            Op::Opaque { dir } => Entry::opaque(dir),
        };
        let (name, link) = (e.name.clone(), e.linkname.clone());
        let e = if name.len() > 100 {
            e.with_pax("path", name)
        } else {
            e
        };
        if link.len() > 100 {
            e.with_pax("linkpath", link)
        } else {
            e
        }
    }

    /// The entry as `builder` code, to paste into a regression test.
    pub fn rust(&self) -> String {
        let e = self.entry();
        let mut code = match self {
            Op::Dir { path, mode } => {
                format!("Entry::dir({:?}).with_mode({mode:#o})", format!("{path}/"))
            }
            Op::File {
                path,
                mode,
                text,
                repeat,
            } => {
                let data = if *repeat == 1 {
                    format!("{text:?}")
                } else {
                    format!("{text:?}.repeat({repeat})")
                };
                format!("Entry::file({path:?}, {data}).with_mode({mode:#o})")
            }
            Op::Symlink { path, target } => format!("Entry::symlink({path:?}, {target:?})"),
            Op::Hardlink { path, target, mode } => {
                format!("Entry::hardlink({path:?}, {target:?}).with_mode({mode:#o})")
            }
            Op::Fifo { path, mode } => format!("Entry::fifo({path:?}).with_mode({mode:#o})"),
            Op::Whiteout { path } => format!("Entry::whiteout({path:?})"),
            Op::Opaque { dir } if dir.is_empty() => "Entry::file(\".wh..wh..opq\", b\"\")".into(),
            Op::Opaque { dir } => format!("Entry::opaque({dir:?})"),
        };
        for (key, value) in &e.pax {
            let (key, value) = (String::from_utf8_lossy(key), String::from_utf8_lossy(value));
            code.push_str(&format!(".with_pax({key:?}, {value:?})"));
        }
        code
    }

    /// The same entry under `./name` (and a hardlink to `./target`), as
    /// `tar -C dir -cf - .` writes them.
    fn dot_slash(&mut self) {
        match self {
            Op::Dir { path, .. }
            | Op::File { path, .. }
            | Op::Symlink { path, .. }
            | Op::Fifo { path, .. }
            | Op::Whiteout { path } => *path = format!("./{path}"),
            Op::Hardlink { path, target, .. } => {
                *path = format!("./{path}");
                *target = format!("./{}", target.trim_start_matches('/'));
            }
            Op::Opaque { dir } if dir.is_empty() => *dir = ".".into(),
            Op::Opaque { dir } => *dir = format!("./{dir}"),
        }
    }

    fn is_marker(&self) -> bool {
        matches!(self, Op::Whiteout { .. } | Op::Opaque { .. })
    }
}

#[derive(Clone, Debug)]
pub struct LayerSpec {
    pub ops: Vec<Op>,
    pub compression: Compression,
}

/// A generated image: its layers, bottom first.
#[derive(Clone, Debug)]
pub struct Stack {
    pub seed: u64,
    pub layers: Vec<LayerSpec>,
    /// What the generator exercised, for the run's coverage summary.
    pub features: BTreeSet<String>,
}

impl Stack {
    pub fn image(&self) -> Image {
        Image::new(
            self.layers
                .iter()
                .map(|l| Layer::new(Tar::of(l.ops.iter().map(Op::entry)), l.compression)),
        )
    }

    pub fn entries(&self) -> usize {
        self.layers.iter().map(|l| l.ops.len()).sum()
    }

    /// The layers as `builder` code.
    pub fn rust(&self) -> String {
        let mut s = String::new();
        for l in &self.layers {
            let ctor = if l.compression == Compression::None {
                "plain"
            } else {
                "gz"
            };
            let _ = writeln!(s, "Layer::{ctor}([");
            for op in &l.ops {
                let _ = writeln!(s, "    {},", op.rust());
            }
            s.push_str("]),\n");
        }
        s
    }

    /// Whether every entry is one the generator could have written (the
    /// shrinker keeps to those).
    pub fn valid(&self) -> bool {
        let mut model = Model::default();
        for (i, l) in self.layers.iter().enumerate() {
            model.begin_layer(i);
            if !l.ops.iter().all(|op| model.apply(op).is_ok()) {
                return false;
            }
        }
        true
    }

    /// The stack umoci 0.4.7 must be given to produce the runtime-correct
    /// tree, or `None` when that is this stack itself.
    ///
    /// A whiteout or opaque marker whose directory path goes through a
    /// symlink written by the *same* layer is a no-op for a runtime (the
    /// symlink replaced the lower directory the marker refers to: the
    /// merged-usr layers of meta-virtualization's image-oci) and for
    /// bundlegen; umoci follows the new symlink and deletes in its target.
    /// Such markers are dropped from umoci's copy, as image-oci's own
    /// workaround does.
    pub fn for_umoci(&self) -> Option<Stack> {
        let mut model = Model::default();
        let mut out = self.clone();
        let mut dropped = false;
        for (i, l) in self.layers.iter().enumerate() {
            model.begin_layer(i);
            let mut kept = Vec::with_capacity(l.ops.len());
            for op in &l.ops {
                // Invalid ops (possible while shrinking) are kept as they are.
                let refused = matches!(model.apply(op), Ok(Applied { refused: true, .. }));
                if refused {
                    dropped = true;
                } else {
                    kept.push(op.clone());
                }
            }
            out.layers[i].ops = kept;
        }
        dropped.then_some(out)
    }
}

// ---------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------

struct Gen {
    rng: Rng,
    model: Model,
    features: BTreeSet<String>,
    counter: usize,
    privileged: bool,
}

/// Generates the stack for `seed`. `privileged`: the test runs as root
/// (directories without owner rwx are only generated then).
pub fn generate(seed: u64, privileged: bool) -> Stack {
    let mut g = Gen {
        rng: Rng::new(seed),
        model: Model::default(),
        features: BTreeSet::new(),
        counter: 0,
        privileged,
    };
    let nlayers = 1 + g.rng.below(5);
    let mut layers = Vec::with_capacity(nlayers);
    for l in 0..nlayers {
        g.model.begin_layer(l);
        // How often parents come first, as tar writers emit them.
        let explicit = *g.rng.pick(&[100, 95, 95, 90, 60, 20]);
        let n = if l == 0 {
            4 + g.rng.below(12)
        } else if g.rng.chance(3) {
            0
        } else {
            1 + g.rng.below(12)
        };
        let mut ops = Vec::new();
        for _ in 0..n {
            if l > 0 && g.rng.chance(6) {
                g.merged_usr(&mut ops);
            } else {
                g.one(&mut ops, explicit);
            }
        }
        if ops.is_empty() {
            g.features.insert("empty layer".into());
        } else if g.rng.chance(15) {
            // The model saw the plain names; `./` changes nothing.
            ops.iter_mut().for_each(Op::dot_slash);
            g.features.insert("entry names starting with ./".into());
        }
        if ops.iter().any(|op| !op.entry().pax.is_empty()) {
            g.features.insert("PAX path or linkpath record".into());
        }
        let compression = if g.rng.chance(50) {
            Compression::Gzip
        } else {
            Compression::None
        };
        layers.push(LayerSpec { ops, compression });
    }
    Stack {
        seed,
        layers,
        features: g.features,
    }
}

impl Gen {
    /// Applies `op` to a copy of the model and keeps it if it is valid.
    fn try_push(&mut self, ops: &mut Vec<Op>, op: Op) -> bool {
        let mut m = self.model.clone();
        match m.apply(&op) {
            Ok(a) => {
                self.model = m;
                self.features.extend(a.features);
                ops.push(op);
                true
            }
            Err(_) => false,
        }
    }

    fn dir_mode(&mut self) -> u32 {
        if self.privileged {
            *self.rng.pick(DIR_MODES)
        } else {
            *self.rng.pick(DIR_MODES_UNPRIVILEGED)
        }
    }

    fn file_mode(&mut self) -> u32 {
        if self.privileged {
            *self.rng.pick(FILE_MODES)
        } else {
            *self.rng.pick(FILE_MODES_UNPRIVILEGED)
        }
    }

    fn random_path(&mut self) -> String {
        let depth = 1 + self.rng.below(MAX_DEPTH);
        (0..depth)
            .map(|_| *self.rng.pick(NAMES))
            .collect::<Vec<_>>()
            .join("/")
    }

    fn existing(&mut self, filter: impl Fn(&Node) -> bool) -> Option<String> {
        let all: Vec<&String> = self
            .model
            .nodes
            .iter()
            .filter(|(_, n)| filter(n))
            .map(|(k, _)| k)
            .collect();
        if all.is_empty() {
            None
        } else {
            Some(all[self.rng.below(all.len())].clone())
        }
    }

    /// A path for a new entry: often an existing one (a replacement or a
    /// change), often a new name in an existing directory, otherwise any.
    fn path(&mut self) -> String {
        match self.rng.below(20) {
            0..=8 => self.existing(|_| true),
            // Below a symlink: through it, or replacing it with a directory
            // when the parents come first.
            9 | 10 => self.existing(|n| matches!(n, Node::Symlink(_))).map(|l| {
                let name = *self.rng.pick(NAMES);
                join(&l, name)
            }),
            11..=13 => self
                .existing(|n| matches!(n, Node::Dir { .. }))
                .filter(|d| d.matches('/').count() + 1 < MAX_DEPTH)
                .map(|d| {
                    let name = *self.rng.pick(NAMES);
                    join(&d, name)
                }),
            _ => None,
        }
        .unwrap_or_else(|| self.random_path())
    }

    /// A symlink that resolves to a directory, and that directory.
    fn dir_symlink(&mut self) -> Option<(String, String)> {
        let mut found = Vec::new();
        for (path, node) in &self.model.nodes {
            if let Node::Symlink(_) = node {
                let mut m = self.model.clone();
                if let Ok(w) = m.walk(&comps(path), false, false) {
                    found.push((path.clone(), w.phys));
                }
            }
        }
        if found.is_empty() {
            None
        } else {
            Some(found.swap_remove(self.rng.below(found.len())))
        }
    }

    /// Directory entries for the parents of `path`, top down, as a tar
    /// writer emits them (each directory once per layer).
    fn parents(&mut self, ops: &mut Vec<Op>, path: &str) {
        let c = comps(path);
        for i in 1..c.len() {
            let p = c[..i].join("/");
            let mode = match self.model.nodes.get(&p) {
                Some(Node::Dir { .. }) if self.model.written.contains(&p) => continue,
                Some(Node::Dir { mode }) if !self.rng.chance(10) => *mode,
                _ => self.dir_mode(),
            };
            self.try_push(ops, Op::Dir { path: p, mode });
        }
    }

    fn file_op(&mut self, path: String) -> Op {
        self.counter += 1;
        let text = format!("{}:{path}#{}\n", self.model.layer + 1, self.counter);
        let (text, repeat) = match self.rng.below(20) {
            0..=4 => (String::new(), 1),
            5..=16 => (text, 1),
            17 | 18 => (text, 2 + self.rng.below(400)),
            _ => (text, (300 << 10) / 12),
        };
        Op::File {
            path,
            mode: self.file_mode(),
            text,
            repeat,
        }
    }

    fn symlink_target(&mut self, link: &str) -> String {
        let depth = link.matches('/').count();
        let up = |n: usize| "../".repeat(n);
        match self.rng.below(16) {
            // To an existing directory or other node, relative or absolute.
            0..=6 => {
                let want_dir = self.rng.chance(60);
                let t = self
                    .existing(|n| matches!(n, Node::Dir { .. }) == want_dir)
                    .unwrap_or_else(|| self.random_path());
                if self.rng.chance(50) {
                    format!("/{t}")
                } else {
                    format!("{}{t}", up(depth))
                }
            }
            // Anywhere, often dangling.
            7 | 8 => {
                let t = self.random_path();
                if self.rng.chance(50) {
                    format!("/{t}")
                } else {
                    format!("{}{t}", up(depth))
                }
            }
            // A sibling.
            9 | 10 => self.rng.pick(NAMES).to_string(),
            // Escaping the root: clamped by both tools.
            11 => format!(
                "{}{}",
                up(depth + 1 + self.rng.below(3)),
                self.random_path()
            ),
            // The directory itself, its parent, the root.
            12 => self.rng.pick(&[".", "..", "/", "./"]).to_string(),
            // Another symlink: chains, and loops nobody walks through.
            _ => self
                .existing(|n| matches!(n, Node::Symlink(_)))
                .map(|t| format!("/{t}"))
                .unwrap_or_else(|| self.rng.pick(NAMES).to_string()),
        }
    }

    fn one(&mut self, ops: &mut Vec<Op>, explicit: usize) {
        let kind = self.rng.weighted(&[28, 14, 16, 12, 4, 16, 8, 1]);
        let mut path = self.path();
        let mut parents = self.rng.chance(explicit);
        // Markers through a lower symlink to a directory (no parent
        // entries, which would replace the symlink).
        let mut through = None;
        if matches!(kind, 5 | 6)
            && self.rng.chance(35)
            && let Some((link, dir)) = self.dir_symlink()
        {
            let children = self.model.children(&dir);
            let name = match children.is_empty() {
                true => self.rng.pick(NAMES).to_string(),
                false => split(&children[self.rng.below(children.len())])
                    .1
                    .to_owned(),
            };
            path = join(&link, &name);
            through = Some(link);
            parents = false;
        }
        if parents && kind != 6 {
            self.parents(ops, &path);
        }
        let op = match kind {
            0 => self.file_op(path),
            1 => Op::Dir {
                mode: self.dir_mode(),
                path,
            },
            2 => Op::Symlink {
                target: self.symlink_target(&path),
                path,
            },
            3 => {
                let Some(mut t) = self.existing(|n| !matches!(n, Node::Dir { .. })) else {
                    return;
                };
                // Now and then named through a symlink to its directory.
                if self.rng.chance(50)
                    && let Some((link, dir)) = self.dir_symlink()
                {
                    let children: Vec<String> = self
                        .model
                        .children(&dir)
                        .into_iter()
                        .filter(|c| !matches!(self.model.nodes.get(c), Some(Node::Dir { .. })))
                        .collect();
                    if !children.is_empty() {
                        let c = &children[self.rng.below(children.len())];
                        t = join(&link, split(c).1);
                    }
                }
                let target = match self.rng.below(10) {
                    0 => format!("/{t}"),
                    1 => format!("./{t}"),
                    _ => t,
                };
                Op::Hardlink {
                    path,
                    target,
                    mode: self.file_mode(),
                }
            }
            4 => Op::Fifo {
                path,
                mode: *self.rng.pick(FIFO_MODES),
            },
            5 => Op::Whiteout { path },
            6 => {
                let dir = through
                    .or_else(|| self.existing(|n| matches!(n, Node::Dir { .. })))
                    .unwrap_or(path);
                if parents {
                    self.parents(ops, &format!("{dir}/x"));
                }
                Op::Opaque { dir }
            }
            _ if self.rng.chance(30) => Op::Opaque { dir: String::new() },
            _ => Op::Whiteout { path },
        };
        // Now and then, whiteout first and then the new entry, or the
        // other way round: both orders must give the same tree.
        if !op.is_marker() && self.rng.chance(8) {
            let p = match &op {
                Op::Dir { path, .. }
                | Op::File { path, .. }
                | Op::Symlink { path, .. }
                | Op::Hardlink { path, .. }
                | Op::Fifo { path, .. } => path.clone(),
                _ => unreachable!(),
            };
            if self.rng.chance(50) {
                self.try_push(ops, Op::Whiteout { path: p });
                self.try_push(ops, op);
            } else {
                self.try_push(ops, op);
                self.try_push(ops, Op::Whiteout { path: p });
            }
            return;
        }
        self.try_push(ops, op);
    }

    /// The merged-usr shape: a lower directory becomes a symlink, and the
    /// same layer then has whiteouts (and maybe an opaque marker) for the
    /// lower directory's children below the symlink's name.
    fn merged_usr(&mut self, ops: &mut Vec<Op>) {
        let Some(dir) = self.existing(|n| matches!(n, Node::Dir { .. })) else {
            return;
        };
        if self.model.written.contains(&dir) {
            return;
        }
        let children = self.model.children(&dir);
        let target = self
            .existing(|n| matches!(n, Node::Dir { .. }))
            .filter(|t| !under(t, &dir))
            .unwrap_or_else(|| "usr".into());
        let depth = dir.matches('/').count();
        let target = if self.rng.chance(50) {
            format!("/{target}")
        } else {
            format!("{}{target}", "../".repeat(depth))
        };
        self.parents(ops, &dir);
        if !self.try_push(
            ops,
            Op::Symlink {
                path: dir.clone(),
                target,
            },
        ) {
            return;
        }
        for c in children {
            if self.rng.chance(70) {
                self.try_push(ops, Op::Whiteout { path: c });
            }
        }
        if self.rng.chance(30) {
            self.try_push(ops, Op::Opaque { dir });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stackgen_is_reproducible() {
        for seed in [0, 1, 0xdead_beef] {
            let (a, b) = (generate(seed, true), generate(seed, true));
            assert_eq!(a.rust(), b.rust());
            assert!(a.entries() > 0);
        }
    }

    #[test]
    fn stackgen_long_paths_use_pax_records() {
        let long = format!("{LONG}/{LONG}");
        let mut op = Op::Symlink {
            path: long.clone(),
            target: format!("/{long}"),
        };
        op.dot_slash();
        let e = op.entry();
        let path = format!("./{long}");
        assert_eq!(
            e.pax,
            [
                ("path".into(), path.clone().into()),
                ("linkpath".into(), format!("/{long}").into())
            ]
        );
        assert!(
            op.rust()
                .contains(&format!(".with_pax(\"path\", {path:?})")),
            "{}",
            op.rust()
        );
    }
}
