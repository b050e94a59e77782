//! Reading the JSON input files: platform templates and their overlays,
//! library inventories, app metadata and the operator configuration.
//!
//! Every file goes through the same steps: read it ([`read`]), parse the
//! text ([`parse`], whose top level must be an object), then deserialize it
//! into its type key by key ([`typed`]). A value of the wrong type is an
//! error naming the file and the key path (`gpu.devs[0].major`), with the
//! serde message as its cause; a key the type does not know is a warning
//! naming the file and the key path, or an error with `strict`. Each input
//! then checks what serde cannot (paths, ids, required keys) in its own
//! module, once, when it is loaded: later stages read the typed values and
//! never the JSON.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diag::{Diagnostics, Warning};

/// Which kind of input a file is: it picks the words of messages and the
/// document that lists the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A platform template, `.d` fragment, overlay or library inventory.
    Platform,
    AppMetadata,
    Operator,
}

impl InputKind {
    /// What `cannot read ...` calls the file.
    fn noun(self) -> &'static str {
        match self {
            InputKind::Platform => "",
            InputKind::AppMetadata => "app metadata ",
            InputKind::Operator => "operator configuration ",
        }
    }

    /// The document listing the keys this input may have.
    fn docs(self) -> &'static str {
        match self {
            InputKind::Platform => "docs/platforms.md",
            InputKind::AppMetadata | InputKind::Operator => "docs/formats.md",
        }
    }

    /// What follows `unknown key` in the error of a strict load.
    fn unknown_key_help(self) -> String {
        match self {
            InputKind::Platform => String::new(),
            _ => format!(
                " (remove it, or check its spelling against {})",
                self.docs()
            ),
        }
    }
}

/// Why an input file could not be loaded; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}{}", kind.noun(), path.display())]
    Read {
        kind: InputKind,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: the top level must be a JSON object")]
    NotObject { path: PathBuf },
    #[error("{path}: {key}: invalid value")]
    Invalid {
        path: PathBuf,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {key}: unknown key{}", kind.unknown_key_help())]
    UnknownKey {
        kind: InputKind,
        path: PathBuf,
        key: String,
    },
}

/// Reads a whole input file.
pub fn read(kind: InputKind, path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        kind,
        path: path.to_owned(),
        source,
    })
}

/// Parses JSON text; the top level must be an object. `path` names the
/// text in errors (a file, or `image:/appmetadata.json`).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Value, LoadError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|source| LoadError::Json {
        path: path.to_owned(),
        source,
    })?;
    if !value.is_object() {
        return Err(LoadError::NotObject {
            path: path.to_owned(),
        });
    }
    Ok(value)
}

/// Deserializes a parsed input into its type. A wrong value is an error
/// naming the key path; unknown keys are warnings through `diag` (pass
/// [`crate::diag::Silent`] to ignore them), or an error for the first one
/// when `strict`.
pub fn typed<T: DeserializeOwned>(
    kind: InputKind,
    path: &Path,
    value: &Value,
    strict: bool,
    diag: &dyn Diagnostics,
) -> Result<T, LoadError> {
    deserialize(kind, path, value, strict, diag)
}

/// [`parse`] and [`typed`] in one, straight from the text (no
/// [`Value`] in between), for an input whose JSON is not needed afterwards.
pub fn from_bytes<T: DeserializeOwned>(
    kind: InputKind,
    path: &Path,
    bytes: &[u8],
    strict: bool,
    diag: &dyn Diagnostics,
) -> Result<T, LoadError> {
    // serde reads a struct from an array too: refuse any top level but an
    // object first, with the error [`parse`] gives.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        parse(path, bytes)?;
        return Err(LoadError::NotObject {
            path: path.to_owned(),
        });
    }
    let json = |source| LoadError::Json {
        path: path.to_owned(),
        source,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let out = deserialize(kind, path, &mut de, strict, diag).map_err(|e| match e {
        LoadError::Invalid { source, .. } if source.is_syntax() || source.is_eof() => json(source),
        other => other,
    })?;
    de.end().map_err(json)?;
    Ok(out)
}

/// [`read`] and [`from_bytes`].
pub fn load<T: DeserializeOwned>(
    kind: InputKind,
    path: &Path,
    strict: bool,
    diag: &dyn Diagnostics,
) -> Result<T, LoadError> {
    from_bytes(kind, path, &read(kind, path)?, strict, diag)
}

/// A whole input file in memory: mapped when it is a non-empty regular
/// file the system can map, read otherwise.
///
/// For inputs of megabytes that are parsed once and partly kept
/// (`_libs.json`): mapping skips the copy into fresh, zeroed pages, and
/// what is kept can point into the mapping. A mapped file must not be
/// truncated or rewritten in place while bundlegen runs (reading it would
/// then stop the process, or see the new bytes); bundlegen's inputs are
/// build artefacts that are replaced, if at all, by writing a new file and
/// renaming it, which leaves the mapping as it was.
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Read(v) => v,
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self {
            FileBytes::Mapped(_) => "Mapped",
            FileBytes::Read(_) => "Read",
        };
        write!(f, "FileBytes::{how}({} bytes)", self.len())
    }
}

/// Maps (or reads) a whole input file: see [`FileBytes`].
pub fn map(kind: InputKind, path: &Path) -> Result<FileBytes, LoadError> {
    let error = |source| LoadError::Read { kind, path: path.to_owned(), source };
    let mut file = std::fs::File::open(path).map_err(error)?;
    let meta = file.metadata().map_err(error)?;
    if meta.is_file() && meta.len() > 0 {
        // SAFETY: the mapping is read-only and private to this process;
        // the file is an input that is not changed in place while it is
        // read (see FileBytes), so the bytes stay as they were mapped.
        if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
            return Ok(FileBytes::Mapped(map));
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(error)?;
    Ok(FileBytes::Read(bytes))
}

/// [`from_bytes`] of a file whose unknown keys are allowed and ignored
/// unseen (`_libs.json`, megabytes per platform): serde_json alone reads
/// it, and the wrappers that name the key of an error run only when that
/// fails, to give the same error [`from_bytes`] gives.
pub fn from_bytes_lenient<T: DeserializeOwned>(
    kind: InputKind,
    path: &Path,
    bytes: &[u8],
) -> Result<T, LoadError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && let Ok(out) = serde_json::from_slice(bytes)
    {
        return Ok(out);
    }
    from_bytes(kind, path, bytes, false, &crate::diag::Silent)
}

fn deserialize<'de, T, D>(
    kind: InputKind,
    path: &Path,
    de: D,
    strict: bool,
    diag: &dyn Diagnostics,
) -> Result<T, LoadError>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de, Error = serde_json::Error>,
{
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(key_path(&p));
    let de = serde_ignored::Deserializer::new(de, &mut record);
    let out: T = serde_path_to_error::deserialize(de).map_err(|e| LoadError::Invalid {
        path: path.to_owned(),
        key: e.path().to_string(),
        source: e.into_inner(),
    })?;
    if let Some(key) = unknown.first().filter(|_| strict) {
        return Err(LoadError::UnknownKey {
            kind,
            path: path.to_owned(),
            key: key.clone(),
        });
    }
    for key in unknown {
        diag.warning(Warning::new(
            path.display().to_string(),
            format!(
                "{key}: unknown key (ignored; check the spelling against {})",
                kind.docs()
            ),
        ));
    }
    Ok(out)
}

/// `gpu.devs[0].access` style path of an ignored key.
fn key_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let head = key_path(parent);
            if head.is_empty() {
                key.clone()
            } else {
                format!("{head}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Collected;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Dev {
        major: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        name: Option<String>,
        #[serde(default)]
        devs: Vec<Dev>,
    }

    /// Through [`parse`] and [`typed`], and through [`from_bytes`]: both
    /// give the same result, warnings and error message.
    fn check(kind: InputKind, text: &str, strict: bool) -> (Result<Doc, LoadError>, Vec<String>) {
        let diag = Collected::default();
        let path = Path::new("dir/dev.json");
        let r = parse(path, text.as_bytes()).and_then(|v| typed(kind, path, &v, strict, &diag));
        let warnings: Vec<String> = diag.warnings().iter().map(ToString::to_string).collect();
        let direct = Collected::default();
        let d = from_bytes::<Doc>(kind, path, text.as_bytes(), strict, &direct);
        let direct: Vec<String> = direct.warnings().iter().map(ToString::to_string).collect();
        assert_eq!(direct, warnings, "{text}");
        assert_eq!(
            d.as_ref().map(|_| ()).map_err(ToString::to_string),
            r.as_ref().map(|_| ()).map_err(ToString::to_string),
            "{text}"
        );
        assert_eq!(
            d.as_ref()
                .err()
                .map(|e| matches!(e, LoadError::Json { .. })),
            r.as_ref()
                .err()
                .map(|e| matches!(e, LoadError::Json { .. })),
            "{text}"
        );
        (r, warnings)
    }

    #[test]
    fn unknown_keys_are_reported_with_their_path_and_file() {
        let text = r#"{"name": "x", "devs": [{"major": 1}, {"major": 2, "minr": 3}], "nme": 1}"#;
        let (doc, w) = check(InputKind::Platform, text, false);
        assert!(doc.is_ok(), "{doc:?}");
        assert_eq!(
            w,
            [
                "dir/dev.json: devs[1].minr: unknown key (ignored; check the spelling against docs/platforms.md)",
                "dir/dev.json: nme: unknown key (ignored; check the spelling against docs/platforms.md)",
            ]
        );
        let (doc, w) = check(InputKind::Operator, text, true);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            doc.expect_err("strict").to_string(),
            "dir/dev.json: devs[1].minr: unknown key (remove it, or check its spelling against docs/formats.md)"
        );
        let (doc, _) = check(InputKind::Platform, text, true);
        assert_eq!(
            doc.expect_err("strict").to_string(),
            "dir/dev.json: devs[1].minr: unknown key"
        );
    }

    #[test]
    fn a_wrong_type_names_the_key_and_keeps_the_cause() {
        let (doc, _) = check(
            InputKind::AppMetadata,
            r#"{"devs": [{"major": "226"}]}"#,
            false,
        );
        let e = doc.expect_err("wrong type");
        assert_eq!(e.to_string(), "dir/dev.json: devs[0].major: invalid value");
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert!(
            cause.as_deref().is_some_and(|c| c.contains("expected u32")),
            "{cause:?}"
        );
    }

    #[test]
    fn syntax_top_level_and_reading_name_the_file() {
        let (doc, _) = check(InputKind::Platform, r#"{"name": "#, false);
        let e = doc.expect_err("syntax");
        assert!(matches!(e, LoadError::Json { .. }), "{e:?}");
        assert_eq!(e.to_string(), "dir/dev.json: not valid JSON");
        let (doc, _) = check(InputKind::Platform, r#"{"name": "x"} 1"#, false);
        assert!(matches!(doc, Err(LoadError::Json { .. })), "{doc:?}");
        let (doc, _) = check(InputKind::Platform, " [1", false);
        assert!(matches!(doc, Err(LoadError::Json { .. })), "{doc:?}");
        let (doc, _) = check(InputKind::Platform, "[1]", false);
        assert_eq!(
            doc.expect_err("array").to_string(),
            "dir/dev.json: the top level must be a JSON object"
        );
        let missing = Path::new("/nonexistent/op.json");
        let e = load::<Doc>(InputKind::Operator, missing, false, &Collected::default())
            .expect_err("missing");
        assert_eq!(
            e.to_string(),
            "cannot read operator configuration /nonexistent/op.json"
        );
        let e = read(InputKind::AppMetadata, missing).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "cannot read app metadata /nonexistent/op.json"
        );
        let e = read(InputKind::Platform, missing).expect_err("missing");
        assert_eq!(e.to_string(), "cannot read /nonexistent/op.json");
    }
}
