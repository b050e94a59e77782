//! Issue 13: no import cycle between the crate's top-level modules. The
//! graph is read from the sources: a module uses another when a file under
//! it names `crate::other` (test modules left out), the way a reader
//! following `use` lines sees it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `crate::a` and each name of `crate::{a, b::c}`.
fn used(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect::<String>();
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|n| ident(n.trim())).filter(|n| !n.is_empty()));
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &all {
        let rel = f.strip_prefix(&src).expect("under src");
        let top = rel.iter().next().expect("a component").to_string_lossy().trim_end_matches(".rs").to_owned();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = fs::read_to_string(f).expect("read");
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let deps = graph.entry(top.clone()).or_default();
        deps.extend(used(text).into_iter().filter(|d| *d != top));
    }
    assert!(graph.len() > 10 && graph["pipeline"].contains("libmatch"), "the graph was read: {graph:?}");
    // A module is on a cycle when it reaches itself.
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = todo.pop() {
            if m == start {
                cycles.push(start.clone());
                break;
            }
            if seen.insert(m.clone()) {
                todo.extend(graph.get(m).into_iter().flatten());
            }
        }
    }
    assert!(cycles.is_empty(), "modules on an import cycle: {cycles:?}\ngraph: {graph:#?}");
}
