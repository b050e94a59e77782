//! `/etc/ld.so.conf` inside a rootfs: directories, `include` globs.

use std::path::Path;

use super::{MAX_CONF_DEPTH, components, join, parent};
use crate::diag::{Diagnostics, Warning};
use crate::rootfs::{self, Walker};

/// An `ld.so.conf` file is a few lines; anything larger is not one.
const MAX_CONF_FILE: u64 = 1 << 20;

/// Reads one ld.so.conf file (in-root path), appending directories.
pub(super) fn read_conf(
    root: &Path,
    file: &str,
    depth: usize,
    out: &mut Vec<String>,
    diag: &dyn Diagnostics,
) {
    if depth > MAX_CONF_DEPTH {
        diag.warning(Warning::new(
            file,
            "ld.so.conf includes nested too deep; the rest is ignored",
        ));
        return;
    }
    let Ok(Some(bytes)) = Walker::new(root).and_then(|mut w| w.read_file(file.as_bytes(), MAX_CONF_FILE))
    else {
        return;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with("hwcap ") {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("include")
            .filter(|r| r.starts_with([' ', '\t']))
        {
            for pattern in rest.split_whitespace() {
                let pattern = if pattern.starts_with('/') {
                    pattern.to_owned()
                } else {
                    join(parent(file), pattern)
                };
                for inc in glob_in_root(root, &pattern, diag) {
                    read_conf(root, &inc, depth + 1, out, diag);
                }
            }
            continue;
        }
        for dir in line.split([' ', '\t', ':', ',']).filter(|d| !d.is_empty()) {
            // libc5-era `dir=TYPE` entries: the type is irrelevant here.
            let dir = dir.split('=').next().unwrap_or(dir).trim_end_matches('/');
            if dir.starts_with('/') {
                out.push(if dir.is_empty() {
                    "/".into()
                } else {
                    dir.to_owned()
                });
            }
        }
    }
}

/// Expands a glob of in-root paths (`/etc/ld.so.conf.d/*.conf`), sorted per
/// directory level as glob(3) does.
fn glob_in_root(root: &Path, pattern: &str, diag: &dyn Diagnostics) -> Vec<String> {
    let mut current = vec![String::from("/")];
    for comp in components(pattern) {
        let mut next = Vec::new();
        let is_glob = comp.contains(['*', '?', '[']);
        let matcher = if is_glob {
            match globset::GlobBuilder::new(&comp)
                .literal_separator(true)
                .build()
            {
                Ok(g) => Some(g.compile_matcher()),
                Err(e) => {
                    diag.warning(Warning::new(
                        pattern,
                        format!("bad include pattern in ld.so.conf: {e}"),
                    ));
                    return Vec::new();
                }
            }
        } else {
            None
        };
        for base in &current {
            match &matcher {
                None => next.push(join(base, &comp)),
                Some(m) => {
                    let Ok(names) = Walker::new(root)
                        .and_then(|mut w| w.resolve(base.as_bytes()))
                        .and_then(|dir| dir.list())
                    else {
                        continue;
                    };
                    let mut names: Vec<String> = names
                        .iter()
                        .map(|n| n.to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.') && m.is_match(n))
                        .collect();
                    names.sort();
                    next.extend(names.iter().map(|n| join(base, n)));
                }
            }
        }
        current = next;
    }
    current.retain(|p| rootfs::resolve(root, p).is_ok());
    current
}
