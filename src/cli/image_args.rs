//! Options shared by every command that reads an image.

use clap::Args;

use bundlegen::image::Selector;
use bundlegen::layers::{FlattenOptions, Limits};

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The image: `oci:DIR[:TAG]`, a layout directory (such as image-oci's
    /// `<image>-latest-oci` link), `oci-archive:FILE[:TAG]`, or any skopeo
    /// transport (`docker://…`, `docker-archive:…`)
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Architecture to pick from a multi-platform image (`arm64`, `amd64`;
    /// `aarch64` and `x86_64` are accepted)
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Architecture variant to pick (`v7`, `v8`)
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,
    /// Operating system to pick (default: any)
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
}

impl ImageArgs {
    /// The image asked for (the reference's tag is added when it is opened).
    pub fn selector(&self) -> Selector {
        Selector { tag: None, arch: self.arch.clone(), variant: self.variant.clone(), os: self.os.clone() }
    }
}

/// Flattening behaviour and limits.
#[derive(Debug, Args)]
pub struct FlattenArgs {
    /// Keep a lower layer's symlink to a directory when an upper layer has
    /// a directory of that name (umoci --keep-dirlinks)
    #[arg(long)]
    pub keep_dirlinks: bool,
    /// Do not chown or create device nodes even as root; record ownership,
    /// devices and privileged xattrs instead
    #[arg(long)]
    pub rootless: bool,
    /// Most layers an image may have
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_layers)]
    pub max_layers: usize,
    /// Most tar entries over all layers
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_entries)]
    pub max_entries: u64,
    /// Most uncompressed bytes over all layers (suffixes K, M, G, T: powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "128G", value_parser = parse_bytes)]
    pub max_bytes: u64,
    /// Longest entry path in bytes
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_path_len)]
    pub max_path_len: usize,
    /// Longest symlink target in bytes
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_link_len)]
    pub max_link_len: usize,
    /// Highest uncompressed:compressed ratio of a layer past 64 MiB
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_ratio)]
    pub max_ratio: u64,
    /// Largest PAX or GNU long-name record (suffixes K, M, G: powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_bytes)]
    pub max_pax_size: u64,
}

impl FlattenArgs {
    pub fn options(&self) -> FlattenOptions {
        FlattenOptions {
            keep_dirlinks: self.keep_dirlinks,
            rootless: self.rootless,
            limits: Limits {
                max_layers: self.max_layers,
                max_entries: self.max_entries,
                max_bytes: self.max_bytes,
                max_path_len: self.max_path_len,
                max_link_len: self.max_link_len,
                max_ratio: self.max_ratio,
                max_record: self.max_pax_size,
            },
        }
    }
}

/// Parses a size the way platform templates write them (`64K`, `10M`, `2G`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    bundlegen::size::parse(s).map_err(|e| e.to_string())
}
