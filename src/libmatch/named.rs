//! Libraries loaded by name at run time: `dlopen("libwayland-cursor.so.0")`
//! is invisible to `DT_NEEDED`, but the name is a string somewhere in the
//! image (an ELF file's read-only data, a script, a configuration file).
//! Before a library nothing links is pruned, every other file of the image
//! is searched for the names it is known by; a library named anywhere is
//! kept, and the files it keeps are searched in turn.
//!
//! A name is a run of `[A-Za-z0-9_.+-]` around `.so`, with the version
//! digits after it (`libfoo.so.1.2`): a path (`/usr/lib/libfoo.so.1`)
//! names its last component. Names built at run time (`"libnss_%s.so.2"`,
//! Qt's `QLibrary("GL", 1)`) cannot be found this way: keep patterns cover
//! the common ones (`DEFAULT_KEEP`), `--keep` the others.
//!
//! Files that list every library without loading any are not searched:
//! the loader cache and package-manager databases (see [`NOT_SEARCHED`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use rayon::prelude::*;

use super::walk::in_loader_dir;
use super::{Ctx, file_name};
use crate::diag::{Diagnostics, Warning};

/// In-root path prefixes whose files name libraries without loading them.
pub const NOT_SEARCHED: &[&str] = &[
    "/etc/ld.so.cache",
    "/var/lib/dpkg/",
    "/var/lib/opkg/",
    "/usr/lib/opkg/",
    "/var/lib/rpm/",
    "/usr/lib/sysimage/rpm/",
    "/lib/apk/db/",
    "/var/cache/",
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/lintian/",
];

/// At most this many naming files are reported per library.
const MAX_REPORTED: usize = 8;

/// Of `candidates` (real in-root paths of libraries nothing links), those
/// named by another file of the image, each with the files naming it
/// (sorted, at most [`MAX_REPORTED`]). A symlink to a candidate from
/// outside the loader directories counts as naming it (something opens
/// the library by that path).
pub(super) fn find(
    ctx: &Ctx<'_>,
    candidates: &[String],
    diag: &dyn Diagnostics,
) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if candidates.is_empty() {
        return BTreeMap::new();
    }
    // Name → candidates known by it.
    let mut names: HashMap<Vec<u8>, Vec<&String>> = HashMap::new();
    let mut dirs = HashMap::new();
    for real in candidates {
        let mut known: BTreeSet<String> = BTreeSet::from([file_name(real).to_owned()]);
        if let Some(info) = ctx.scan.files.get(real) {
            known.extend(info.soname.clone());
            for link in ctx.with_links(real).iter().skip(1) {
                known.insert(file_name(link).to_owned());
                if !in_loader_dir(ctx, &mut dirs, link, info) {
                    found.entry(real.clone()).or_default().insert(link.clone());
                }
            }
        }
        for n in known {
            names.entry(n.into_bytes()).or_default().push(real);
        }
    }
    let files = match crate::elf::regular_files(ctx.root, diag) {
        Ok(f) => f,
        Err(e) => {
            // Nothing can be ruled out: keep every candidate.
            diag.warning(Warning::new(
                ctx.root.display().to_string(),
                format!(
                    "cannot list the rootfs to look for library names ({e}): nothing is pruned"
                ),
            ));
            return candidates
                .iter()
                .map(|c| (c.clone(), vec!["(the rootfs could not be searched)".into()]))
                .collect();
        }
    };
    let is_candidate: BTreeSet<&String> = candidates.iter().collect();
    let full: HashMap<&String, &std::path::PathBuf> = files.iter().map(|(p, f)| (p, f)).collect();
    let mut batch: Vec<&String> = files
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !is_candidate.contains(p) && !NOT_SEARCHED.iter().any(|x| p.starts_with(x)))
        .collect();
    let mut kept: BTreeSet<String> = found.keys().cloned().collect();
    batch.extend(
        kept.iter()
            .filter_map(|k| full.get_key_value(k).map(|(p, _)| *p)),
    );
    let mut searched: BTreeSet<&String> = BTreeSet::new();
    while !batch.is_empty() {
        batch.retain(|p| searched.insert(p));
        let hits: Vec<(&String, BTreeSet<Vec<u8>>)> = batch
            .par_iter()
            .filter_map(|p| {
                let path = full.get(p)?;
                let tokens = tokens_in(path, &names).ok()?;
                (!tokens.is_empty()).then_some((*p, tokens))
            })
            .collect();
        let mut next = Vec::new();
        for (file, tokens) in hits {
            for t in tokens {
                for lib in names.get(&t).into_iter().flatten() {
                    if *lib == file {
                        continue;
                    }
                    found
                        .entry((*lib).clone())
                        .or_default()
                        .insert(file.clone());
                    if kept.insert((*lib).clone())
                        && let Some((p, _)) = full.get_key_value(lib)
                    {
                        next.push(*p);
                    }
                }
            }
        }
        batch = next;
    }
    found
        .into_iter()
        .map(|(lib, by)| (lib, by.into_iter().take(MAX_REPORTED).collect()))
        .collect()
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-')
}

/// Read size; consecutive reads overlap by [`OVERLAP`] bytes so a name
/// across a boundary is seen whole.
const CHUNK: usize = 1 << 18;
const OVERLAP: usize = 512;

/// The library names of `names` that occur in the file.
fn tokens_in(
    path: &std::path::Path,
    names: &HashMap<Vec<u8>, Vec<&String>>,
) -> std::io::Result<BTreeSet<Vec<u8>>> {
    let mut file = std::fs::File::open(path)?;
    let mut out = BTreeSet::new();
    let mut buf = vec![0u8; OVERLAP + CHUNK];
    let mut carried = 0;
    loop {
        let mut filled = carried;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let data = &buf[..filled];
        scan_names(data, names, &mut out);
        if filled < buf.len() {
            return Ok(out);
        }
        let keep_from = filled - OVERLAP;
        buf.copy_within(keep_from..filled, 0);
        carried = OVERLAP;
    }
}

/// Adds to `out` each name of `names` that occurs in `data` as a whole
/// token around a `.so`.
pub(super) fn scan_names(
    data: &[u8],
    names: &HashMap<Vec<u8>, Vec<&String>>,
    out: &mut BTreeSet<Vec<u8>>,
) {
    let mut i = 0;
    while i + 3 <= data.len() {
        let Some(dot) = data[i..data.len() - 2].iter().position(|&b| b == b'.') else {
            break;
        };
        let at = i + dot;
        i = at + 1;
        if &data[at + 1..at + 3] != b"so" {
            continue;
        }
        let mut start = at;
        while start > 0 && is_name_byte(data[start - 1]) {
            start -= 1;
        }
        let mut end = at + 3;
        while end < data.len() && (data[end].is_ascii_digit() || data[end] == b'.') {
            end += 1;
        }
        while end > at + 3 && data[end - 1] == b'.' {
            end -= 1;
        }
        let token = &data[start..end];
        if names.contains_key(token) {
            out.insert(token.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(data: &[u8], known: &[&str]) -> Vec<String> {
        let owner = String::from("/lib/x");
        let names: HashMap<Vec<u8>, Vec<&String>> = known
            .iter()
            .map(|n| (n.as_bytes().to_vec(), vec![&owner]))
            .collect();
        let mut out = BTreeSet::new();
        scan_names(data, &names, &mut out);
        out.into_iter()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .collect()
    }

    #[test]
    fn names_are_whole_tokens_around_so() {
        let known = [
            "libwayland-cursor.so.0",
            "libz.so.1",
            "libfoo.so",
            "libGL.so.1",
        ];
        let rodata = b"\0\x01libwayland-cursor.so.0\0wl_cursor_theme_load\0";
        assert_eq!(found(rodata, &known), ["libwayland-cursor.so.0"]);
        let script = b"#!/bin/sh\nLD_PRELOAD=/usr/lib/libz.so.1. exec app\n";
        assert_eq!(found(script, &known), ["libz.so.1"]);
        // Longer names are other libraries; built names are not found.
        assert!(found(b"mylibz.so.1 libz.so.12 libnss_%s.so.2", &known).is_empty());
        assert_eq!(found(b"dlopen(\"libfoo.so\")", &known), ["libfoo.so"]);
        assert!(found(b"libfoo.so.3", &known).is_empty());
        assert!(found(b".so", &known).is_empty());
        assert!(found(b"", &known).is_empty());
    }

    #[test]
    fn a_name_across_a_read_boundary_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("big");
        let name = b"libwayland-cursor.so.0";
        let mut data = vec![0u8; CHUNK + OVERLAP - 10];
        data.extend_from_slice(name);
        data.extend_from_slice(&[0; 100]);
        std::fs::write(&p, &data).expect("write");
        let owner = String::from("/lib/x");
        let names = HashMap::from([(name.to_vec(), vec![&owner])]);
        let got = tokens_in(&p, &names).expect("read");
        assert!(got.contains(name.as_slice()), "{got:?}");
    }
}
