//! A model of the tree a stack builds, for the generator: which paths
//! exist with which type, which paths the current layer wrote, and symlink
//! resolution inside the root as both tools do it (absolute targets restart
//! at the root, `..` stops at it, 40 hops at most). It decides which
//! entries are valid, what a whiteout or opaque marker removes, and which
//! markers umoci must not be given ([`Applied::refused`]); it is not an
//! oracle.

use std::collections::{BTreeMap, BTreeSet};

use super::Op;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Node {
    Dir { mode: u32 },
    File,
    Symlink(String),
    Fifo,
}

impl Node {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Dir { .. } => "dir",
            Node::File => "file",
            Node::Symlink(_) => "symlink",
            Node::Fifo => "fifo",
        }
    }
}

/// Why a walk stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Missing,
    NotDir,
    Loop,
    /// A symlink the current layer wrote (whiteouts do not follow those).
    Refused,
    /// A missing directory to create in a setgid directory: the kernel
    /// gives it the setgid bit, umoci keeps it, bundlegen sets 0755.
    SetgidParent,
    /// `..` after a missing component: bundlegen creates the component
    /// then steps out of it, umoci cleans the path lexically first. The
    /// generator never writes such symlink targets.
    DotDotAfterMissing,
}

pub(super) struct Walked {
    /// Physical in-root path, `a/b`, empty for the root.
    pub phys: String,
    /// Physical paths of the symlinks followed.
    pub via: Vec<String>,
    /// Directories created.
    created: usize,
}

/// What applying an op did, for coverage and for
/// [`Stack::for_umoci`](super::Stack::for_umoci).
#[derive(Default)]
pub(super) struct Applied {
    /// A marker under a symlink the same layer wrote: a no-op for
    /// bundlegen and a runtime, which umoci would follow.
    pub refused: bool,
    pub features: Vec<String>,
}

pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

pub(super) fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

pub(super) fn comps(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// Whether `path` is `dir` or below it (everything is below the root, `""`).
pub(super) fn under(path: &str, dir: &str) -> bool {
    path == dir || dir.is_empty() || path.starts_with(&format!("{dir}/"))
}

/// The tree as both tools should leave it, as far as generation needs:
/// types, directory modes, and which paths the current layer wrote.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub(super) nodes: BTreeMap<String, Node>,
    /// Physical paths written by the current layer (entries, and opaque
    /// directories), as bundlegen tracks them.
    pub(super) written: BTreeSet<String>,
    /// Directories the current layer marked opaque without a `dir/` entry.
    opaque_only: BTreeSet<String>,
    pub(super) layer: usize,
}

impl Model {
    pub(super) fn begin_layer(&mut self, layer: usize) {
        self.layer = layer;
        self.written.clear();
        self.opaque_only.clear();
    }

    fn remove_tree(&mut self, p: &str) {
        self.nodes.retain(|k, _| !under(k, p));
    }

    pub(super) fn children(&self, dir: &str) -> Vec<String> {
        self.nodes
            .keys()
            .filter(|k| split(k).0 == dir)
            .cloned()
            .collect()
    }

    /// Resolves a directory path in-root, as `rootfs::Walker` and
    /// securejoin do. With `create`, missing directories are made
    /// (`mkdir -p` of a layer applier). With `refuse`, symlinks the current layer wrote stop the
    /// walk.
    pub(super) fn walk(
        &mut self,
        path: &[&str],
        create: bool,
        refuse: bool,
    ) -> Result<Walked, Stop> {
        let mut stack: Vec<String> = Vec::new();
        let mut pending: Vec<String> = path.iter().rev().map(|c| c.to_string()).collect();
        let mut w = Walked {
            phys: String::new(),
            via: Vec::new(),
            created: 0,
        };
        let mut hops = 0;
        let mut missing = false;
        while let Some(c) = pending.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." if missing => return Err(Stop::DotDotAfterMissing),
                ".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let p = join(&stack.join("/"), &c);
            match self.nodes.get(&p).cloned() {
                Some(Node::Dir { .. }) => stack.push(c),
                Some(Node::Symlink(target)) => {
                    if refuse && self.written.contains(&p) {
                        return Err(Stop::Refused);
                    }
                    hops += 1;
                    if hops > 40 {
                        return Err(Stop::Loop);
                    }
                    w.via.push(p);
                    if target.starts_with('/') {
                        stack.clear();
                    }
                    pending.extend(target.split('/').rev().map(str::to_owned));
                }
                // bundlegen would replace the non-directory by a directory;
                // umoci 0.4.7 fails (`mkdir: not a directory`).
                Some(_) => return Err(Stop::NotDir),
                None if create && !missing && self.setgid(&stack.join("/")) => {
                    return Err(Stop::SetgidParent);
                }
                None if create => {
                    self.nodes.insert(p, Node::Dir { mode: 0o755 });
                    w.created += 1;
                    missing = true;
                    stack.push(c);
                }
                None => return Err(Stop::Missing),
            }
        }
        w.phys = stack.join("/");
        Ok(w)
    }

    fn setgid(&self, dir: &str) -> bool {
        matches!(self.nodes.get(dir), Some(Node::Dir { mode }) if mode & 0o2000 != 0)
    }

    /// Removes what lower layers put at `p`, keeping what this layer wrote
    /// (and, in a directory this layer wrote, removing the lower children).
    fn remove_lower(&mut self, p: &str) {
        let Some(node) = self.nodes.get(p).cloned() else {
            return;
        };
        if let Node::Dir { .. } = node {
            for child in self.children(p) {
                self.remove_lower(&child);
            }
            if !self.written.contains(p) && self.children(p).is_empty() {
                self.nodes.remove(p);
            }
        } else if !self.written.contains(p) {
            self.nodes.remove(p);
        }
    }

    /// Applies one entry as both tools would; an error for entries the
    /// generator must not write (invalid, or treated differently).
    pub(super) fn apply(&mut self, op: &Op) -> Result<Applied, String> {
        let mut a = Applied::default();
        match op {
            Op::Whiteout { path } => {
                let (dir, name) = split(path);
                match self.walk(&comps(dir), false, true) {
                    Ok(w) => {
                        let p = join(&w.phys, name);
                        if self.opaque_only.iter().any(|o| under(o, &p)) {
                            return Err("whiteout of a directory the layer marked opaque".into());
                        }
                        if !w.via.is_empty() {
                            a.features.push("whiteout through a lower symlink".into());
                        }
                        match self.nodes.get(&p) {
                            None => a.features.push("whiteout of a missing path".into()),
                            Some(_) if self.written.contains(&p) => a
                                .features
                                .push("whiteout after the same layer wrote the path".into()),
                            Some(n) => a.features.push(format!("whiteout of a lower {}", n.kind())),
                        }
                        self.remove_lower(&p);
                    }
                    Err(Stop::Missing) => a.features.push("whiteout in a missing directory".into()),
                    Err(Stop::NotDir) => a.features.push("whiteout below a non-directory".into()),
                    Err(Stop::Refused) => {
                        a.refused = true;
                        a.features
                            .push("whiteout under a same-layer symlink (no-op)".into());
                    }
                    Err(e) => return Err(format!("whiteout directory: {e:?}")),
                }
            }
            Op::Opaque { dir } => match self.walk(&comps(dir), false, true) {
                Ok(w) => {
                    if self
                        .opaque_only
                        .iter()
                        .any(|o| *o != w.phys && under(o, &w.phys))
                    {
                        return Err("opaque above a directory the layer marked opaque".into());
                    }
                    if !w.via.is_empty() {
                        a.features.push("opaque through a lower symlink".into());
                    }
                    if w.phys.is_empty() {
                        a.features.push("opaque root".into());
                    }
                    let children = self.children(&w.phys);
                    if children.iter().any(|c| self.written.contains(c)) {
                        a.features.push("opaque after same-layer children".into());
                    }
                    for child in children {
                        self.remove_lower(&child);
                    }
                    if !self.written.contains(&w.phys) {
                        self.opaque_only.insert(w.phys.clone());
                    }
                    self.written.insert(w.phys);
                    a.features.push("opaque".into());
                }
                Err(Stop::Refused) => {
                    a.refused = true;
                    a.features
                        .push("opaque under a same-layer symlink (no-op)".into());
                }
                Err(e) => return Err(format!("opaque directory: {e:?}")),
            },
            Op::Dir { path, mode } => self.put(path, Node::Dir { mode: *mode }, &mut a)?,
            Op::File {
                path,
                mode,
                text,
                repeat,
            } => {
                if mode & 0o6000 != 0 {
                    a.features.push("setuid/setgid file".into());
                }
                if text.len() * repeat == 0 {
                    a.features.push("empty file".into());
                } else if text.len() * repeat > 256 << 10 {
                    a.features.push("file over 256 KiB".into());
                }
                self.put(path, Node::File, &mut a)?
            }
            Op::Fifo { path, .. } => self.put(path, Node::Fifo, &mut a)?,
            Op::Symlink { path, target } => {
                self.put(path, Node::Symlink(target.clone()), &mut a)?;
                if target.starts_with('/') {
                    a.features.push("absolute symlink".into());
                } else if target.matches("../").count() > path.matches('/').count() {
                    a.features.push("relative symlink escaping the root".into());
                }
            }
            Op::Hardlink { path, target, .. } => self.hardlink(path, target, &mut a)?,
        }
        Ok(a)
    }

    fn put(&mut self, path: &str, node: Node, a: &mut Applied) -> Result<(), String> {
        let (dir, name) = split(path);
        let w = self
            .walk(&comps(dir), true, false)
            .map_err(|e| format!("parent: {e:?}"))?;
        self.note_walk(&w, a);
        let p = join(&w.phys, name);
        let same_layer = self.written.contains(&p);
        self.written.insert(p.clone());
        if let Some(old) = self.nodes.get(&p) {
            let layer = if same_layer {
                "in one layer"
            } else {
                "across layers"
            };
            a.features
                .push(format!("{} -> {} {layer}", old.kind(), node.kind()));
        }
        match (self.nodes.get_mut(&p), &node) {
            (Some(Node::Dir { mode }), Node::Dir { mode: new }) => *mode = *new,
            _ => {
                self.remove_tree(&p);
                self.nodes.insert(p, node);
            }
        }
        Ok(())
    }

    fn note_walk(&self, w: &Walked, a: &mut Applied) {
        if !w.via.is_empty() {
            a.features.push("parent through a symlink".into());
        }
        if w.created > 0 {
            a.features.push("implicit parent directory".into());
        }
    }

    fn hardlink(&mut self, path: &str, target: &str, a: &mut Applied) -> Result<(), String> {
        let (dir, name) = split(path);
        let w = self
            .walk(&comps(dir), true, false)
            .map_err(|e| format!("parent: {e:?}"))?;
        self.note_walk(&w, a);
        let p = join(&w.phys, name);
        let (tdir, tname) = split(target.trim_start_matches('/'));
        let tw = self
            .walk(&comps(tdir), false, false)
            .map_err(|e| format!("target dir: {e:?}"))?;
        let tp = join(&tw.phys, tname);
        let node = match self.nodes.get(&tp) {
            None => return Err("hardlink target missing".into()),
            Some(Node::Dir { .. }) => return Err("hardlink target is a directory".into()),
            Some(n) => n.clone(),
        };
        // umoci clears the link's path before it resolves the target.
        if under(&tp, &p) || tw.via.iter().any(|v| under(v, &p)) {
            return Err("hardlink target at or below the link".into());
        }
        a.features.push(if self.written.contains(&tp) {
            "hardlink within the layer".into()
        } else {
            "hardlink to a lower layer".into()
        });
        a.features.push(format!("hardlink to a {}", node.kind()));
        if !tw.via.is_empty() {
            a.features.push("hardlink target through a symlink".into());
        }
        if let Some(old) = self.nodes.get(&p) {
            let layer = if self.written.contains(&p) {
                "in one layer"
            } else {
                "across layers"
            };
            a.features
                .push(format!("{} -> hardlink {layer}", old.kind()));
        }
        self.written.insert(p.clone());
        self.remove_tree(&p);
        self.nodes.insert(p, node);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Compression;
    use crate::stackgen::{LayerSpec, Stack};
    use std::collections::BTreeSet;

    #[test]
    fn stackgen_model_walks_symlinks_in_root() {
        let mut m = Model::default();
        m.begin_layer(0);
        for op in [
            Op::Dir {
                path: "a".into(),
                mode: 0o755,
            },
            Op::Symlink {
                path: "a/up".into(),
                target: "../../../b".into(),
            },
            Op::Symlink {
                path: "l".into(),
                target: "/a/up".into(),
            },
        ] {
            m.apply(&op).unwrap();
        }
        let w = m.walk(&["l", "c"], true, false).ok().unwrap();
        assert_eq!(w.phys, "b/c");
        assert_eq!(w.created, 2);
        m.begin_layer(1);
        m.apply(&Op::Symlink {
            path: "s".into(),
            target: "a".into(),
        })
        .unwrap();
        assert!(
            m.apply(&Op::Whiteout {
                path: "s/up".into()
            })
            .unwrap()
            .refused
        );
        assert!(
            !m.apply(&Op::Whiteout { path: "l/c".into() })
                .unwrap()
                .refused
        );
        assert!(!m.nodes.contains_key("b/c"));
    }

    /// Shapes umoci 0.4.7 and bundlegen treat differently, which the
    /// generator must never produce (see `docs/flattening.md`, "Property
    /// test"). Each is valid up to its last entry.
    #[test]
    fn stackgen_excludes_shapes_the_tools_disagree_on() {
        let d = |p: &str| Op::Dir {
            path: p.into(),
            mode: 0o755,
        };
        let sd = |p: &str| Op::Dir {
            path: p.into(),
            mode: 0o2755,
        };
        let f = |p: &str| Op::File {
            path: p.into(),
            mode: 0o644,
            text: "x".into(),
            repeat: 1,
        };
        let sl = |p: &str, t: &str| Op::Symlink {
            path: p.into(),
            target: t.into(),
        };
        let hl = |p: &str, t: &str| Op::Hardlink {
            path: p.into(),
            target: t.into(),
            mode: 0o644,
        };
        let wh = |p: &str| Op::Whiteout { path: p.into() };
        let opq = |p: &str| Op::Opaque { dir: p.into() };
        let cases: Vec<(&str, Vec<Vec<Op>>)> = vec![
            // umoci: `mkdir parent: not a directory`; bundlegen replaces the file.
            ("file as a parent", vec![vec![f("f")], vec![f("f/x")]]),
            (
                "symlink to a file as a parent",
                vec![vec![f("f"), sl("l", "f")], vec![f("l/x")]],
            ),
            // umoci creates nothing; bundlegen creates the directory.
            (
                "opaque marker in a missing directory",
                vec![vec![f("f")], vec![opq("m")]],
            ),
            // umoci keeps the file; bundlegen replaces it with a directory.
            (
                "opaque marker on a file",
                vec![vec![f("f")], vec![opq("f")]],
            ),
            // umoci removes the directory; bundlegen keeps it (the marker
            // says the layer has it).
            (
                "whiteout of an opaque-only directory",
                vec![vec![d("d"), f("d/x")], vec![opq("d"), wh("d")]],
            ),
            (
                "opaque above an opaque-only directory",
                vec![vec![d("e/c")], vec![opq("e/c"), opq("e")]],
            ),
            // umoci unlinks the path, then fails to link it to itself.
            ("hardlink to itself", vec![vec![f("f")], vec![hl("f", "f")]]),
            // Both fail: the target goes with the path it is under.
            (
                "hardlink to a path below it",
                vec![vec![d("d"), f("d/x")], vec![hl("d", "d/x")]],
            ),
            // Both fail with ELOOP.
            (
                "whiteout through a symlink loop",
                vec![vec![sl("a", "b"), sl("b", "a")], vec![wh("a/x")]],
            ),
            // umoci cleans `x/..` lexically; bundlegen creates `x` first.
            (
                "`..` after a missing directory",
                vec![vec![sl("l", "x/../y")], vec![f("l/x")]],
            ),
            // umoci's new directory inherits setgid; bundlegen's is 0755.
            (
                "implicit directory in a setgid directory",
                vec![vec![sd("s")], vec![f("s/new/x")]],
            ),
        ];
        for (what, layers) in cases {
            let mut stack = Stack {
                seed: 0,
                layers: Vec::new(),
                features: BTreeSet::new(),
            };
            for ops in layers {
                stack.layers.push(LayerSpec {
                    ops,
                    compression: Compression::None,
                });
            }
            assert!(!stack.valid(), "{what}: the model accepts it");
            let last = stack.layers.last_mut().unwrap();
            last.ops.pop();
            assert!(
                stack.valid(),
                "{what}: the model refuses more than the last entry"
            );
        }
    }
}
