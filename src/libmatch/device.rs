//! The device side: the library inventory indexed by soname, and which
//! sonames belong to glibc.

use super::file_name;
use crate::elf::{Class, ElfInfo};
use crate::ldso::triplets;
use crate::platform::{LibEntry, LibsInventory};

/// Sonames glibc itself ships (2.17 to 2.41), loaders excepted (see
/// [`is_loader_name`]). `libcrypt.so.1` is not here: modern systems take it
/// from libxcrypt, a separate project; an image library that needs
/// `GLIBC_PRIVATE` is treated as a family member whatever its name.
const GLIBC_SONAMES: &[&str] = &[
    "libBrokenLocale.so.1",
    "libSegFault.so",
    "libanl.so.1",
    "libc.so.6",
    "libc_malloc_debug.so.0",
    "libcidn.so.1",
    "libdl.so.2",
    "libm.so.6",
    "libmemusage.so",
    "libmvec.so.1",
    "libnsl.so.1",
    "libnss_compat.so.2",
    "libnss_db.so.2",
    "libnss_dns.so.2",
    "libnss_files.so.2",
    "libnss_hesiod.so.2",
    "libnss_nis.so.2",
    "libnss_nisplus.so.2",
    "libpcprofile.so",
    "libpthread.so.0",
    "libresolv.so.2",
    "librt.so.1",
    "libthread_db.so.1",
    "libutil.so.1",
];

/// Whether `name` (a soname or file name) is glibc's dynamic loader:
/// `ld-linux-x86-64.so.2`, `ld-linux-aarch64.so.1`, `ld-linux-armhf.so.3`,
/// `ld-linux.so.2`, `ld64.so.1`, `ld.so.1`, or an old `ld-2.31.so`.
pub fn is_loader_name(name: &str) -> bool {
    name.starts_with("ld-linux")
        || name.starts_with("ld64.so.")
        || name == "ld.so.1"
        || (name.starts_with("ld-2.") && name.ends_with(".so"))
}

/// Whether a library (by soname or file name) belongs to glibc and so must
/// come from the same build as the C library.
pub fn is_glibc_family(name: &str) -> bool {
    is_loader_name(name) || GLIBC_SONAMES.contains(&name) || is_versioned_glibc_file(name)
}

/// Pre-2.34 real file names: `libc-2.31.so`, `libpthread-2.31.so`.
fn is_versioned_glibc_file(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".so") else {
        return false;
    };
    let Some((base, ver)) = stem.rsplit_once('-') else {
        return false;
    };
    ver.starts_with("2.")
        && ver[2..].chars().all(|c| c.is_ascii_digit() || c == '.')
        && GLIBC_SONAMES
            .iter()
            .any(|s| s.split('.').next() == Some(base))
}

/// Whether an image object needs glibc's private interface, which only
/// objects of the same glibc build may use.
pub(super) fn needs_glibc_private(info: &ElfInfo) -> bool {
    info.version_needs
        .iter()
        .any(|n| n.versions.iter().any(|v| v == "GLIBC_PRIVATE"))
}

/// The device inventory indexed by file name (which for the entries that
/// matter is the soname: symlinks are listed under their own path).
pub(super) struct Device<'a> {
    /// Every entry under its file name, sorted by name, then with the
    /// standard library directories and the shorter paths first.
    by_name: Vec<(&'a str, u8, &'a LibEntry)>,
    /// Every entry, sorted by path (stable: for a path listed twice, the
    /// last entry is the one used).
    by_path: Vec<&'a LibEntry>,
    present: bool,
}

impl<'a> Device<'a> {
    pub fn new(inventory: Option<&'a LibsInventory>) -> Device<'a> {
        let mut by_name: Vec<_> = inventory
            .iter()
            .flat_map(|inv| &inv.libs)
            .map(|e| (file_name(&e.name), rank(&e.name), e))
            .collect();
        by_name.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2.name.len(), a.2.name.as_str()).cmp(&(b.0, b.1, b.2.name.len(), b.2.name.as_str()))
        });
        // Inventories are written sorted: this sort only checks that.
        let mut by_path: Vec<&LibEntry> = inventory.iter().flat_map(|inv| &inv.libs).collect();
        by_path.sort_by(|a, b| a.name.cmp(&b.name));
        Device { by_name, by_path, present: inventory.is_some() }
    }

    /// Whether there is an inventory at all.
    pub fn present(&self) -> bool {
        self.present
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn get(&self, path: &str) -> Option<&'a LibEntry> {
        let end = self.by_path.partition_point(|e| e.name.as_str() <= path);
        end.checked_sub(1).map(|i| self.by_path[i]).filter(|e| e.name == path)
    }

    /// The device library with this soname that a loader working for
    /// objects like `like` would use: directories naming another
    /// multiarch triplet or word size are skipped.
    pub fn lookup(&self, soname: &str, like: Option<&ElfInfo>) -> Option<&'a LibEntry> {
        let start = self.by_name.partition_point(|(name, ..)| *name < soname);
        self.by_name[start..]
            .iter()
            .take_while(|(name, ..)| *name == soname)
            .map(|&(.., e)| e)
            .find(|e| like.is_none_or(|l| path_fits(&e.name, l)))
    }
}

/// Standard library directories first.
fn rank(path: &str) -> u8 {
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    match dir {
        "/lib" | "/usr/lib" | "/lib64" | "/usr/lib64" => 0,
        d if d.matches('/').count() <= 3
            && (d.starts_with("/lib/") || d.starts_with("/usr/lib/")) =>
        {
            1
        }
        _ => 2,
    }
}

const KNOWN_TRIPLETS: &[&str] = &[
    "x86_64-linux-gnu",
    "x86_64-linux-gnux32",
    "i386-linux-gnu",
    "aarch64-linux-gnu",
    "arm-linux-gnueabihf",
    "arm-linux-gnueabi",
    "riscv64-linux-gnu",
    "mips-linux-gnu",
    "mipsel-linux-gnu",
    "mips64el-linux-gnuabi64",
    "powerpc-linux-gnu",
    "powerpc64-linux-gnu",
    "powerpc64le-linux-gnu",
    "s390x-linux-gnu",
    "loongarch64-linux-gnu",
];

/// Whether a device path could hold a library for objects like `like`:
/// the inventory does not record architectures, but multilib directories
/// do (`/lib32`, `/lib64`, `/usr/lib/arm-linux-gnueabihf`).
fn path_fits(path: &str, like: &ElfInfo) -> bool {
    let comps: Vec<&str> = path.split('/').collect();
    let own = triplets(like);
    for c in &comps {
        if KNOWN_TRIPLETS.contains(c) && !own.contains(c) {
            return false;
        }
        match (*c, like.class) {
            ("lib32" | "libx32", Class::Elf64) => return false,
            ("lib64", Class::Elf32) => return false,
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_family_names() {
        for n in [
            "libc.so.6",
            "libpthread.so.0",
            "libnss_files.so.2",
            "ld-linux-aarch64.so.1",
            "ld-linux-x86-64.so.2",
            "ld-linux-armhf.so.3",
            "ld64.so.2",
            "ld-2.31.so",
            "libc-2.31.so",
            "libpthread-2.28.so",
        ] {
            assert!(is_glibc_family(n), "{n}");
        }
        for n in [
            "libcrypt.so.1",
            "libnss_myhostname.so.2",
            "libnsl.so.2",
            "libz.so.1",
            "libcap-2.66.so",
            "ld-musl-aarch64.so.1",
        ] {
            assert!(!is_glibc_family(n), "{n}");
        }
    }
}
