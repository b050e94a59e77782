//! BundleGen's messages: a generation request (a msgpack map, see
//! BundleGen's `rabbitmq/message.py`) and its reply.

use serde::{Deserialize, Serialize};

/// The queue BundleGen's clients send requests to (declared durable).
pub const QUEUE: &str = "bundlegen-requests";

/// Longest `output_filename` accepted (a file name, before `.tar.gz`).
const MAX_FILENAME: usize = 200;

/// `lib_match_mode`: `generate -m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibMatchMode {
    Normal,
    Image,
    Host,
}

impl LibMatchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LibMatchMode::Normal => "normal",
            LibMatchMode::Image => "image",
            LibMatchMode::Host => "host",
        }
    }
}

/// A decoded and checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub uuid: String,
    pub platform: String,
    pub image_url: String,
    /// Replaces the image's `/appmetadata.json` when present.
    pub app_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub lib_match_mode: LibMatchMode,
    /// The bundle's file name without `.tar.gz`; default: the app id and six
    /// random letters, as BundleGen names it.
    pub output_filename: Option<String>,
    /// Platform template directory; default: `RDK_PLATFORM_SEARCHPATH`.
    pub searchpath: Option<String>,
    /// Where the bundle goes; default: `BUNDLE_STORE_DIR`.
    pub outputdir: Option<String>,
    pub createmountpoints: bool,
    /// Overrides the metadata's `id`.
    pub app_id: Option<String>,
}

/// The map as it travels; every field optional so that a bad one is
/// reported by name, and `nil` (Python's `None`) is accepted where BundleGen
/// accepts it.
#[derive(Debug, Deserialize)]
struct Wire {
    uuid: Option<String>,
    platform: Option<String>,
    image_url: Option<String>,
    app_metadata: Option<serde_json::Value>,
    lib_match_mode: Option<String>,
    output_filename: Option<String>,
    searchpath: Option<String>,
    outputdir: Option<String>,
    createmountpoints: Option<bool>,
    app_id: Option<String>,
}

/// Only the request id, to answer a request whose other fields are bad.
#[derive(Debug, Deserialize)]
struct UuidOnly {
    uuid: String,
}

/// Why a message is not a request this worker can carry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Invalid {
    /// The request id, when the message has a readable one (then it gets a
    /// failure reply).
    pub uuid: Option<String>,
    pub reason: String,
}

/// Decodes a request body.
pub fn decode(body: &[u8]) -> Result<Request, Invalid> {
    let wire: Wire = match rmp_serde::from_slice(body) {
        Ok(w) => w,
        Err(e) => {
            let uuid = rmp_serde::from_slice::<UuidOnly>(body).ok().map(|u| u.uuid);
            return Err(Invalid {
                uuid,
                reason: format!(
                    "not a BundleGen request (a msgpack map of the documented fields): {e}"
                ),
            });
        }
    };
    let Some(uuid) = wire.uuid.filter(|u| !u.is_empty()) else {
        return Err(Invalid {
            uuid: None,
            reason: "the request has no `uuid`".into(),
        });
    };
    let bad = |reason: String| Invalid {
        uuid: Some(uuid.clone()),
        reason,
    };
    let platform = wire
        .platform
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("the request has no `platform`".into()))?;
    let app_metadata = match wire.app_metadata {
        None => None,
        Some(serde_json::Value::Object(m)) if m.is_empty() => None,
        Some(serde_json::Value::Object(m)) => Some(m),
        Some(other) => {
            return Err(bad(format!(
                "`app_metadata` must be a map, not {}",
                json_kind(&other)
            )));
        }
    };
    let lib_match_mode = match wire.lib_match_mode.as_deref() {
        None | Some("") | Some("normal") => LibMatchMode::Normal,
        Some("image") => LibMatchMode::Image,
        Some("host") => LibMatchMode::Host,
        Some(other) => {
            return Err(bad(format!(
                "`lib_match_mode` {other:?} is not one of normal, image, host"
            )));
        }
    };
    let output_filename = wire.output_filename.filter(|f| !f.is_empty());
    if let Some(name) = &output_filename {
        check_filename(name)
            .map_err(|reason| bad(format!("`output_filename` {name:?} {reason}")))?;
    }
    Ok(Request {
        platform,
        image_url: wire.image_url.unwrap_or_default(),
        app_metadata,
        lib_match_mode,
        output_filename,
        searchpath: wire.searchpath.filter(|s| !s.is_empty()),
        outputdir: wire.outputdir.filter(|s| !s.is_empty()),
        createmountpoints: wire.createmountpoints.unwrap_or(false),
        app_id: wire.app_id.filter(|s| !s.is_empty()),
        uuid,
    })
}

/// A bundle name must stay a name: BundleGen joins it to the output
/// directory unchecked, so `../x` would write elsewhere.
fn check_filename(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_FILENAME {
        return Err("is too long");
    }
    if name.contains('/') || name.contains('\0') {
        return Err("must be a file name, not a path");
    }
    if name.starts_with('.') {
        return Err("must not start with `.` (hidden names are the worker's)");
    }
    Ok(())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "nil",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "a map",
    }
}

/// BundleGen's reply: `{success, uuid, bundle_path}` (`bundle_path` only on
/// success), in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub success: bool,
    pub uuid: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bundle_path: Option<String>,
}

impl Reply {
    pub fn success(uuid: &str, bundle_path: &str) -> Reply {
        Reply {
            success: true,
            uuid: uuid.to_owned(),
            bundle_path: Some(bundle_path.to_owned()),
        }
    }

    pub fn failure(uuid: &str) -> Reply {
        Reply {
            success: false,
            uuid: uuid.to_owned(),
            bundle_path: None,
        }
    }

    /// The msgpack map (string keys, as Python's `msgpack.packb` writes a
    /// dict).
    pub fn encode(&self) -> Vec<u8> {
        // A struct of a bool and strings always encodes.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(v: &serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(v).unwrap()
    }

    #[test]
    fn decodes_bundlegen_test_client_message() {
        // The fields BundleGen's rabbitmq/test/test.py sends.
        let body = pack(&serde_json::json!({
            "uuid": "u1", "platform": "rpi3_reference", "image_url": "docker://hello-world",
            "output_filename": "", "searchpath": "", "outputdir": "", "createmountpoints": true, "app_id": "",
            "app_metadata": {"id": "com.docker.helloworld"}, "lib_match_mode": "normal"
        }));
        let r = decode(&body).unwrap();
        assert_eq!(r.uuid, "u1");
        assert_eq!(r.platform, "rpi3_reference");
        assert!(r.createmountpoints && r.output_filename.is_none() && r.outputdir.is_none());
        assert_eq!(r.app_metadata.unwrap()["id"], "com.docker.helloworld");
    }

    #[test]
    fn names_the_bad_field_and_keeps_the_uuid() {
        let e = decode(&pack(
            &serde_json::json!({"uuid": "u2", "platform": "p", "lib_match_mode": "best"}),
        ))
        .unwrap_err();
        assert_eq!(e.uuid.as_deref(), Some("u2"));
        assert!(e.reason.contains("lib_match_mode"), "{e}");
        let e = decode(&pack(&serde_json::json!({"uuid": "u3", "platform": 7}))).unwrap_err();
        assert_eq!(e.uuid.as_deref(), Some("u3"));
        let e = decode(&pack(
            &serde_json::json!({"uuid": "u4", "platform": "p", "output_filename": "../etc/x"}),
        ))
        .unwrap_err();
        assert!(e.reason.contains("not a path"), "{e}");
        let e = decode(b"\xc1garbage").unwrap_err();
        assert_eq!(e.uuid, None);
        assert_eq!(
            decode(&pack(&serde_json::json!([1, 2]))).unwrap_err().uuid,
            None
        );
    }

    #[test]
    fn reply_layout() {
        // fixmap of 3: "success" true, "uuid" "a", "bundle_path" "/b"
        let bytes = Reply::success("a", "/b").encode();
        assert_eq!(bytes[0], 0x83);
        assert_eq!(&bytes[1..9], b"\xa7success");
        assert_eq!(bytes[9], 0xc3);
        assert_eq!(Reply::failure("a").encode()[0], 0x82);
    }
}
