//! Can this app run on this device? Checks that fail with a typed error
//! naming the cause (the binary exits with code 2).
//!
//! [`check_arch`] compares the image with the platform: architecture (and
//! ARM variant) and OS. [`check_platform`] compares the app metadata with
//! the platform: graphics, RDK version and features, network type, storage
//! and display resolution ([`check_ram`] the RAM, under the strict memory
//! policy).
//! [`check_entrypoint`] checks that `process.args[0]` resolves inside the
//! final rootfs to something the device can execute, with every library it
//! needs provided by the bundle or the device. See `docs/libmatch.md`.
//!
//! The app metadata is the typed [`AppMetadata`], checked when it was
//! loaded: `graphics`, `network.type`, `resources.ram`,
//! `storage.persistent[].size`, `storage.temp[].size`, `features`, and two
//! extensions: `rdk.minVersion` (the oldest RDK version the app supports,
//! compared with the platform's `rdk.version`) and `display.resolution`
//! (`"1920x1080"` or `"1920x1080@60"`, which the platform's
//! `display.resolutions` must offer).

use std::cmp::Ordering;

use crate::appmeta::{AppMetadata, StorageEntry};
use crate::diag::{Diagnostics, Warning};
use crate::image::ResolvedImage;
use crate::platform::Platform;

mod entrypoint;

pub use entrypoint::{EntrypointInfo, Located, check_entrypoint, entrypoint_roots, locate_command};

/// `PATH` when the image sets none (what Docker and runc use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why the app cannot run on the platform.
#[derive(Debug, thiserror::Error)]
pub enum Incompatible {
    #[error("the image is for {image}, the platform {platform} is {platform_arch}")]
    Architecture {
        image: String,
        platform: String,
        platform_arch: String,
    },
    #[error("the image is for ARM {image}, the platform {platform} is ARM {platform_variant}")]
    Variant {
        image: String,
        platform: String,
        platform_variant: String,
    },
    #[error("the image is for the OS {image:?}, the platform is {platform:?}")]
    Os { image: String, platform: String },
    #[error(
        "the app needs graphics (graphics: true) and the platform has none (hardware.graphics)"
    )]
    Graphics,
    #[error("the app needs features the platform does not support: {}; the platform supports: {}", missing.join(", "), if supported.is_empty() { "none".to_owned() } else { supported.join(", ") })]
    Features {
        missing: Vec<String>,
        supported: Vec<String>,
    },
    #[error("the app needs RDK {needed} or later (rdk.minVersion), the platform is RDK {have}")]
    RdkVersion { needed: String, have: String },
    #[error("the app needs {wanted:?} networking (network.type), the platform offers {}", options.join(", "))]
    Network {
        wanted: String,
        options: Vec<String>,
    },
    #[error(
        "the app needs {app} of RAM (resources.ram), the platform allows {max} (hardware.maxRam)"
    )]
    Ram { app: String, max: String },
    #[error(
        "storage.{kind}[{index}] ({path}): {size} is more than the platform's storage.{kind}.maxSize {limit}"
    )]
    StorageSize {
        kind: &'static str,
        index: usize,
        path: String,
        size: String,
        limit: String,
    },
    #[error(
        "storage.{kind}: {total} in all is more than the platform's storage.{kind}.maxTotalSize {limit}"
    )]
    StorageTotal {
        kind: &'static str,
        total: String,
        limit: String,
    },
    #[error("the app needs persistent storage and the platform has none (storage.persistent)")]
    NoPersistentStorage,
    #[error("the app needs the display mode {wanted} (display.resolution), the platform offers {}", if supported.is_empty() { "none".to_owned() } else { supported.join(", ") })]
    Resolution {
        wanted: String,
        supported: Vec<String>,
    },
    #[error(
        "the container has no entrypoint: process.args is empty (set OCI_IMAGE_ENTRYPOINT or OCI_IMAGE_CMD)"
    )]
    NoEntrypoint,
    #[error(
        "entrypoint {path} does not exist in the rootfs{}",
        alternatives_hint(alternatives, hint)
    )]
    EntrypointMissing {
        path: String,
        alternatives: Vec<String>,
        hint: String,
    },
    #[error(
        "entrypoint {name} is not in PATH ({path}){}",
        alternatives_hint(alternatives, hint)
    )]
    NotInPath {
        name: String,
        path: String,
        alternatives: Vec<String>,
        hint: String,
    },
    #[error(
        "entrypoint {path} is not executable (no x bit in its mode {mode:o}): chmod +x it in the image"
    )]
    NotExecutable { path: String, mode: u32 },
    #[error("entrypoint {path} is neither an ELF executable nor a #! script")]
    NotRunnable { path: String },
    #[error("entrypoint {path} is a directory")]
    IsDirectory { path: String },
    #[error("script {script}: its interpreter cannot run")]
    Script {
        script: String,
        #[source]
        source: Box<Incompatible>,
    },
    #[error("entrypoint {path}: more than 4 levels of #! interpreters")]
    TooManyInterpreters { path: String },
    #[error("{path} is {elf_arch} code, the platform {platform} is {platform_arch}")]
    EntrypointArch {
        path: String,
        elf_arch: String,
        platform: String,
        platform_arch: String,
    },
    #[error(
        "{path} asks for the dynamic loader {interpreter}, which neither the rootfs nor the device provides"
    )]
    MissingInterpreter { path: String, interpreter: String },
    #[error("{path} needs libraries that neither the bundle nor the device provides: {}", libs.join("; "))]
    MissingLibraries { path: String, libs: Vec<String> },
    /// An entrypoint failure in an image where a layer replaced a symlink
    /// to a directory with a directory (`lib -> usr/lib` then `lib/`).
    #[error(
        "{inner}\nnote: a layer replaced the directory symlink {} with a directory, so what the lower layers put there (the loader, libraries) is no longer reachable through it\nhelp: pass --keep-dirlinks to keep such symlinks and write the layer's entries through them (umoci --keep-dirlinks)",
        links.join(", ")
    )]
    AfterReplacedDirlinks {
        inner: Box<Incompatible>,
        links: Vec<String>,
    },
    #[error("cannot read {path} in the rootfs")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Incompatible {
    /// Whether the input is malformed (exit 1) rather than incompatible
    /// (exit 2): never, since every input is checked when it is loaded.
    pub fn is_bad_input(&self) -> bool {
        false
    }

    /// Whether reading the rootfs failed (exit 3).
    pub fn is_failure(&self) -> bool {
        matches!(self, Incompatible::Read { .. })
    }
}

fn alternatives_hint(alternatives: &[String], hint: &str) -> String {
    match alternatives {
        [] => String::new(),
        [one] => format!("; {one} does: {hint}"),
        many => format!("; {} do: {hint}", many.join(" and ")),
    }
}

/// Checks the app metadata against the platform (the image's architecture
/// is [`check_arch`]'s).
pub fn check_platform(
    platform: &Platform,
    app: &AppMetadata,
    diag: &dyn Diagnostics,
) -> Result<(), Incompatible> {
    let spec = &platform.spec;
    if app.graphics && spec.hardware.as_ref().and_then(|h| h.graphics) != Some(true) {
        return Err(Incompatible::Graphics);
    }
    let rdk = spec.rdk.as_ref();
    let supported = rdk
        .and_then(|r| r.supported_features.clone())
        .unwrap_or_default();
    let missing: Vec<String> = app
        .features
        .iter()
        .filter(|f| !supported.contains(f))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Incompatible::Features { missing, supported });
    }
    if let Some(needed) = app.rdk.as_ref().and_then(|r| r.min_version.as_deref()) {
        match rdk.and_then(|r| r.version.as_deref()) {
            Some(have) if natural_cmp(have, needed) == Ordering::Less => {
                return Err(Incompatible::RdkVersion {
                    needed: needed.to_owned(),
                    have: have.to_owned(),
                });
            }
            Some(_) => {}
            None => diag.warning(Warning::new(
                "rdk.version",
                format!("the platform names no RDK version; cannot check the app's rdk.minVersion {needed}"),
            )),
        }
    }
    let wanted = &app.network.kind;
    let options = spec
        .network
        .as_ref()
        .and_then(|n| n.options.clone())
        .unwrap_or_default();
    // `none` (no network at all, as Dobby's networking plugin calls it)
    // needs nothing from the device.
    if wanted != "none" && !options.contains(wanted) {
        return Err(Incompatible::Network {
            wanted: wanted.clone(),
            options,
        });
    }
    // RAM is not compared here: see check_ram.
    check_storage(platform, app, diag)?;
    check_resolution(platform, app, diag)
}

/// The strict memory policy (`--strict-memory`, operator `strictMemory`):
/// an app asking for more RAM than `hardware.maxRam` is incompatible. By
/// default, as BundleGen, the limit is lowered to `maxRam` with a warning
/// when `config.json` is built instead.
pub fn check_ram(platform: &Platform, app: &AppMetadata) -> Result<(), Incompatible> {
    let ram = app.resources.ram;
    if let Some(max) = platform.spec.hardware.as_ref().and_then(|h| h.max_ram)
        && ram.bytes() > max.bytes()
    {
        return Err(Incompatible::Ram {
            app: ram.to_string(),
            max: max.to_string(),
        });
    }
    Ok(())
}

/// The image's architecture (and variant) against the platform's.
pub fn check_arch(
    platform: &Platform,
    image: &ResolvedImage,
    diag: &dyn Diagnostics,
) -> Result<(), Incompatible> {
    let pick = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else {
            a.to_owned()
        }
    };
    let image_arch = pick(&image.platform.architecture, &image.config.architecture);
    let image_os = pick(&image.platform.os, &image.config.os);
    let image_variant = image
        .platform
        .variant
        .clone()
        .or_else(|| image.config.variant.clone());
    let arch = platform.spec.arch.as_ref();
    match platform.oci_arch() {
        None => diag.warning(Warning::new(
            "arch.arch",
            "the platform names no architecture; the image's is not checked",
        )),
        Some(p) if !image_arch.is_empty() && crate::elf::oci_arch(&image_arch) != p => {
            return Err(Incompatible::Architecture {
                image: image_arch,
                platform: platform.name.clone(),
                platform_arch: p.to_owned(),
            });
        }
        Some("arm") => {
            let pv = arch.and_then(|a| a.variant.clone());
            if let (Some(iv), Some(pv)) = (&image_variant, &pv)
                && arm_level(iv) > arm_level(pv)
            {
                return Err(Incompatible::Variant {
                    image: iv.clone(),
                    platform: platform.name.clone(),
                    platform_variant: pv.clone(),
                });
            }
        }
        Some(_) => {}
    }
    if let Some(os) = &platform.spec.os
        && !image_os.is_empty()
        && !os.eq_ignore_ascii_case(&image_os)
    {
        return Err(Incompatible::Os {
            image: image_os,
            platform: os.clone(),
        });
    }
    Ok(())
}

/// `v7` → 7; unknown spellings compare as 0 (never refused).
fn arm_level(variant: &str) -> u32 {
    variant.trim_start_matches(['v', 'V']).parse().unwrap_or(0)
}

fn check_storage(
    platform: &Platform,
    app: &AppMetadata,
    diag: &dyn Diagnostics,
) -> Result<(), Incompatible> {
    let storage = platform.spec.storage.as_ref();
    let lists: [(&'static str, &[StorageEntry]); 2] = [
        ("persistent", &app.storage.persistent),
        ("temp", &app.storage.temp),
    ];
    for (kind, items) in lists {
        if items.is_empty() {
            continue;
        }
        let (max, min, total_max) = match kind {
            "persistent" => {
                let Some(p) = storage.and_then(|s| s.persistent.as_ref()) else {
                    return Err(Incompatible::NoPersistentStorage);
                };
                (p.max_size, p.min_size, p.max_total_size)
            }
            _ => match storage.and_then(|s| s.temp.as_ref()) {
                Some(t) => (t.max_size, t.min_size, t.max_total_size),
                None => (None, None, None),
            },
        };
        let mut total: u64 = 0;
        for (index, item) in items.iter().enumerate() {
            let (sz, path) = (item.size, &item.path);
            total = total.saturating_add(sz.bytes());
            if let Some(max) = max
                && sz.bytes() > max.bytes()
            {
                return Err(Incompatible::StorageSize {
                    kind,
                    index,
                    path: path.clone(),
                    size: sz.to_string(),
                    limit: max.to_string(),
                });
            }
            if let Some(min) = min
                && sz.bytes() < min.bytes()
            {
                diag.warning(Warning::new(
                    format!("storage.{kind}[{index}]"),
                    format!(
                        "{path}: {sz} is below the platform's storage.{kind}.minSize {min}; the device may round it up or refuse it"
                    ),
                ));
            }
        }
        if let Some(limit) = total_max
            && total > limit.bytes()
        {
            return Err(Incompatible::StorageTotal {
                kind,
                total: crate::size::Size(total).to_string(),
                limit: limit.to_string(),
            });
        }
    }
    Ok(())
}

fn check_resolution(
    platform: &Platform,
    app: &AppMetadata,
    diag: &dyn Diagnostics,
) -> Result<(), Incompatible> {
    let Some(wanted) = app.display.as_ref().and_then(|d| d.resolution) else {
        return Ok(());
    };
    let offered = platform
        .spec
        .display
        .as_ref()
        .map(|d| d.resolutions.clone())
        .unwrap_or_default();
    if offered.is_empty() {
        diag.warning(Warning::new(
            "display.resolutions",
            format!("the platform lists no display modes; the app's {wanted} is not checked"),
        ));
        return Ok(());
    }
    let fits = offered.iter().any(|m| {
        m.width == wanted.width
            && m.height == wanted.height
            && (wanted.refresh_hz.is_none()
                || m.refresh_hz.is_none()
                || m.refresh_hz == wanted.refresh_hz)
    });
    if fits {
        return Ok(());
    }
    Err(Incompatible::Resolution {
        wanted: wanted.to_string(),
        supported: offered.iter().map(ToString::to_string).collect(),
    })
}

/// Compares version strings by runs of digits (numerically) and other
/// characters: `2024Q3` > `2024Q1`, `6.10` > `6.9`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (chunks(a).into_iter(), chunks(b).into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(p), Ok(q)) => p.cmp(&q),
                    _ => x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

fn chunks(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prev: Option<bool> = None;
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() {
            prev = None;
            continue;
        }
        let digit = c.is_ascii_digit();
        match (prev, out.last_mut()) {
            (Some(p), Some(last)) if p == digit => last.push(c),
            _ => out.push(c.to_string()),
        }
        prev = Some(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_naturally() {
        assert_eq!(natural_cmp("2024Q3", "2024Q1"), Ordering::Greater);
        assert_eq!(natural_cmp("6.10", "6.9"), Ordering::Greater);
        assert_eq!(natural_cmp("6.0", "6.0"), Ordering::Equal);
        assert_eq!(natural_cmp("5", "5.1"), Ordering::Less);
        assert_eq!(natural_cmp("RDK-V 6", "rdk-v 6"), Ordering::Equal);
    }

    #[test]
    fn arm_levels() {
        assert!(arm_level("v8") > arm_level("v7"));
        assert_eq!(arm_level("weird"), 0);
    }

    #[test]
    fn entrypoint_message_names_both_paths() {
        let e = Incompatible::EntrypointMissing {
            path: "/sbin/init".into(),
            alternatives: vec!["/usr/sbin/init".into()],
            hint: "set OCI_IMAGE_ENTRYPOINT to it, or add a /sbin -> usr/sbin link".into(),
        };
        assert_eq!(
            e.to_string(),
            "entrypoint /sbin/init does not exist in the rootfs; /usr/sbin/init does: set OCI_IMAGE_ENTRYPOINT to it, or add a /sbin -> usr/sbin link"
        );
    }
}
