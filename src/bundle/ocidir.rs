//! `--oci-output DIR`: the final rootfs as a minimal OCI image layout, for
//! tools that want an image rather than a bundle (`skopeo copy`, `umoci
//! unpack`, a registry push).
//!
//! One layer (the rootfs archived by [`crate::bundle::archive`], names
//! relative to the rootfs), a config derived from the source image's (same
//! runtime settings, `rootfs.diff_ids` = the new layer), one manifest, and
//! an `index.json` naming it with the tag. The source history is kept with
//! every entry marked `empty_layer` (their layers are gone, and the spec
//! wants one non-empty history entry per layer) and one entry appended for
//! the flattened layer. Deterministic: the layer follows the archive rules,
//! JSON is written in a fixed order, times come from `SOURCE_DATE_EPOCH`.
//! Written atomically through [`Staging`]; an existing OCI layout at `DIR`
//! is replaced, anything else is refused.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::archive::{self, ArchiveError, ArchiveOptions, Compression};
use crate::image::Digest;
use crate::image::spec::{
    ANNOTATION_REF_NAME, ImageConfig, MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_MANIFEST,
};
use crate::staging::{Staging, StagingError};

#[derive(Debug, thiserror::Error)]
pub enum OciDirError {
    #[error("cannot write the layer of the OCI layout {path}")]
    Layer {
        path: PathBuf,
        #[source]
        source: ArchiveError,
    },
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "tag `{tag}` is not valid: {reason}\nhelp: use letters, digits, `.`, `_` and `-`, at most 128 characters"
    )]
    Tag { tag: String, reason: &'static str },
}

/// Writes `rootfs` as an OCI image layout at `out` with `tag`; returns the
/// manifest digest.
pub fn write(
    rootfs: &Path,
    source_config: &ImageConfig,
    out: &Path,
    tag: &str,
    opts: &ArchiveOptions<'_>,
) -> Result<Digest, OciDirError> {
    check_tag(tag)?;
    let replace = out.join("oci-layout").is_file() && !out.is_symlink();
    let staging = Staging::new(out, replace)?;
    let dir = staging.path().to_owned();
    let io_err = |op, path: &Path| {
        let path = path.to_owned();
        move |source| OciDirError::Io { op, path, source }
    };
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;

    let layer_tmp = blobs.join("layer.tmp");
    let layer =
        archive::write_dir(rootfs, b"", &layer_tmp, opts).map_err(|source| OciDirError::Layer {
            path: out.to_owned(),
            source,
        })?;
    let layer_path = blobs.join(layer.sha256.hex());
    fs::rename(&layer_tmp, &layer_path).map_err(io_err("rename", &layer_path))?;
    let layer_type = match opts.compression {
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
    };

    let config = derive_config(source_config, &layer.diff_id, opts.source_date_epoch);
    let config_bytes = serde_json::to_vec(&config)
        .map_err(|e| io_err("serialise the config for", out)(e.into()))?;
    let config_digest = put_blob(&blobs, &config_bytes)?;

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": { "mediaType": MT_OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len() },
        "layers": [ { "mediaType": layer_type, "digest": layer.sha256.to_string(), "size": layer.size } ],
    });
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| io_err("serialise the manifest for", out)(e.into()))?;
    let manifest_digest = put_blob(&blobs, &manifest_bytes)?;

    let mut platform =
        json!({ "architecture": source_config.architecture, "os": source_config.os });
    if let Some(v) = &source_config.variant {
        platform["variant"] = json!(v);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [ {
            "mediaType": MT_OCI_MANIFEST,
            "digest": manifest_digest.to_string(),
            "size": manifest_bytes.len(),
            "platform": platform,
            "annotations": { ANNOTATION_REF_NAME: tag },
        } ],
    });
    let index_path = dir.join("index.json");
    fs::write(&index_path, serde_json::to_vec(&index).unwrap_or_default())
        .map_err(io_err("write", &index_path))?;
    let layout = dir.join("oci-layout");
    fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err("write", &layout))?;
    staging.commit()?;
    Ok(manifest_digest)
}

fn put_blob(blobs: &Path, data: &[u8]) -> Result<Digest, OciDirError> {
    let digest = Digest::of(data);
    let path = blobs.join(digest.hex());
    fs::write(&path, data).map_err(|source| OciDirError::Io {
        op: "write",
        path,
        source,
    })?;
    Ok(digest)
}

/// The source config with the single new layer and the history adjusted.
fn derive_config(source: &ImageConfig, diff_id: &Digest, epoch: Option<i64>) -> ImageConfig {
    let mut config = source.clone();
    config.rootfs.kind = "layers".into();
    config.rootfs.diff_ids = vec![diff_id.to_string()];
    let mut history: Vec<Value> = match config.rest.get("history") {
        Some(Value::Array(h)) => h.clone(),
        _ => Vec::new(),
    };
    for entry in &mut history {
        if let Value::Object(m) = entry {
            m.insert("empty_layer".into(), Value::Bool(true));
        }
    }
    let mut new = json!({
        "created_by": "bundlegen (flattened rootfs)",
        "comment": format!("{} source layers flattened into one", source.rootfs.diff_ids.len()),
    });
    if let Some(t) = epoch {
        let created = rfc3339(t);
        new["created"] = json!(created);
        config.rest.insert("created".into(), json!(created));
    }
    history.push(new);
    config.rest.insert("history".into(), Value::Array(history));
    config
}

fn check_tag(tag: &str) -> Result<(), OciDirError> {
    let bad = |reason| {
        Err(OciDirError::Tag {
            tag: tag.to_owned(),
            reason,
        })
    };
    if tag.is_empty() || tag.len() > 128 {
        return bad("it must have 1 to 128 characters");
    }
    if tag.starts_with(['.', '-']) {
        return bad("it must not start with `.` or `-`");
    }
    if !tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("it contains a character other than letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC).
fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_600_000_000), "2020-09-13T12:26:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn tags() {
        assert!(check_tag("latest").is_ok());
        assert!(check_tag("1.0_rc-2").is_ok());
        assert!(check_tag("").is_err());
        assert!(check_tag("a/b").is_err());
        assert!(check_tag("-x").is_err());
    }

    #[test]
    fn history_keeps_one_non_empty_entry() {
        let mut src = ImageConfig::default();
        src.rootfs.diff_ids = vec!["sha256:a".into(), "sha256:b".into()];
        src.rest.insert(
            "history".into(),
            json!([{ "created_by": "x" }, { "created_by": "y" }]),
        );
        let c = derive_config(&src, &Digest::of(b""), Some(0));
        let h = c.rest["history"].as_array().unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.iter()
                .filter(|e| e.get("empty_layer") != Some(&json!(true)))
                .count(),
            1
        );
        assert_eq!(c.rootfs.diff_ids.len(), 1);
    }
}
