//! Keep patterns, and the libraries nothing reaches.

use std::collections::{BTreeSet, HashMap};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use super::walk::in_loader_dir;
use super::{Ctx, LibMatchError, file_name};
use crate::elf::Kind;

/// Libraries kept even when no `DT_NEEDED` reaches them, because something
/// loads them by name at run time. Each is also a root, so what it needs
/// is kept too.
///
/// - `libnss_*`: NSS modules, `dlopen`ed by libc for `getpwnam`,
///   `getaddrinfo`, ... as `/etc/nsswitch.conf` says (glibc's and others:
///   `libnss_systemd`, `libnss_mdns`, ...).
/// - `libgcc_s.so*`: glibc `dlopen`s it for `pthread_cancel`, `pthread_exit`
///   and `backtrace` (unwinding).
/// - `libidn2.so*`: glibc `dlopen`s `libidn2.so.0` for `getaddrinfo` with
///   `AI_IDN` (internationalised domain names).
/// - `**/gconv/**`: iconv modules (outside the loader directories, so never
///   pruned anyway; listed for clarity).
/// - `libsoftokn3.so*`, `libfreebl*.so*`, `libnssckbi.so*`,
///   `libnssdbm3.so*`: Mozilla NSS loads its crypto modules by name.
/// - `libEGL_*.so*`, `libGLX_*.so*`: vendor libraries libglvnd loads by name.
/// - `libvulkan_*.so*`: Vulkan drivers named by ICD manifests.
///
/// Not kept: `libthread_db` (debuggers only), `libmemusage`, `libpcprofile`,
/// `libc_malloc_debug` and `libSegFault` (`LD_PRELOAD` helpers): add them
/// with `--keep` when the app needs them.
pub const DEFAULT_KEEP: &[&str] = &[
    "libnss_*",
    "libgcc_s.so*",
    "libidn2.so*",
    "**/gconv/**",
    "libsoftokn3.so*",
    "libfreebl*.so*",
    "libnssckbi.so*",
    "libnssdbm3.so*",
    "libEGL_*.so*",
    "libGLX_*.so*",
    "libvulkan_*.so*",
];

/// The default keep patterns plus the user's.
pub(super) struct KeepSet {
    /// Patterns without `/`, matched against file names.
    names: GlobSet,
    /// Patterns with `/`, matched against in-root paths.
    paths: GlobSet,
}

impl KeepSet {
    pub fn new(extra: &[String]) -> Result<KeepSet, LibMatchError> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let all = DEFAULT_KEEP
            .iter()
            .map(|s| (*s).to_owned())
            .chain(extra.iter().cloned());
        for pattern in all {
            let bad = |source| LibMatchError::KeepPattern {
                pattern: pattern.clone(),
                source,
            };
            if pattern.contains('/') {
                let p = if pattern.starts_with('/') || pattern.starts_with("**") {
                    pattern.clone()
                } else {
                    format!("/{pattern}")
                };
                let glob = GlobBuilder::new(&p)
                    .literal_separator(true)
                    .build()
                    .map_err(bad)?;
                paths.add(glob);
            } else {
                names.add(Glob::new(&pattern).map_err(bad)?);
            }
        }
        let build = |b: GlobSetBuilder, pattern: &str| {
            b.build().map_err(|source| LibMatchError::KeepPattern {
                pattern: pattern.to_owned(),
                source,
            })
        };
        Ok(KeepSet {
            names: build(names, "(file name patterns)")?,
            paths: build(paths, "(path patterns)")?,
        })
    }

    fn matches(&self, path: &str) -> bool {
        self.names.is_match(file_name(path)) || self.paths.is_match(path)
    }

    /// Whether a pattern protects the file at `real` or any of the paths
    /// (its symlinks) it is known by.
    pub fn protects(&self, real: &str, aliases: &[String]) -> bool {
        self.matches(real) || aliases.iter().any(|a| self.matches(a))
    }
}

/// Shared libraries directly in a loader directory that nothing reached and
/// no keep pattern protects, sorted.
pub(super) fn prunable(ctx: &Ctx<'_>, keep: &KeepSet, reached: &BTreeSet<String>) -> Vec<String> {
    let mut dirs = HashMap::new();
    let mut out = Vec::new();
    for (path, info) in &ctx.scan.files {
        if info.kind != Kind::SharedLib
            || reached.contains(path)
            || !in_loader_dir(ctx, &mut dirs, path, info)
            || keep.protects(path, &ctx.with_links(path))
        {
            continue;
        }
        out.push(path.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_patterns_match_names_and_paths() {
        let k = KeepSet::new(&["libfoo.so*".into(), "opt/app/lib/*.so".into()]).expect("valid");
        assert!(k.matches("/lib/x86_64-linux-gnu/libnss_files.so.2"));
        assert!(k.matches("/usr/lib/gconv/UTF-16.so"));
        assert!(k.matches("/lib/libgcc_s.so.1"));
        assert!(k.matches("/usr/lib/libfoo.so.3"));
        assert!(k.matches("/opt/app/lib/plugin.so"));
        assert!(!k.matches("/opt/app/lib/sub/plugin.so"));
        assert!(!k.matches("/usr/lib/libz.so.1"));
        assert!(k.protects(
            "/usr/lib/libgcc_s-12.so",
            &["/usr/lib/libgcc_s.so.1".into()]
        ));
        let err = KeepSet::new(&["lib[.so".into()]).err().expect("invalid");
        assert!(err.to_string().contains("lib[.so"), "{err}");
    }
}
