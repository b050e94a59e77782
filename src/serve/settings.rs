//! The worker's settings, read as BundleGen's worker reads them: from the
//! environment, or from a `.env` file for what the environment does not set.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A `.env` file larger than this is refused.
const MAX_DOTENV: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{name} is not set\nhelp: set it in the environment or in a .env file ({what})")]
    Missing {
        name: &'static str,
        what: &'static str,
    },
    #[error("{name}={value:?} is not {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot read the settings file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}\nhelp: write one NAME=VALUE per line")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Where the broker is and where bundles go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `RABBITMQ_HOST` (default `localhost`, as pika's).
    pub host: String,
    /// `RABBITMQ_PORT` (default 5672).
    pub port: u16,
    /// `RABBITMQ_HEARTBEAT_SECONDS` (default 60, as BundleGen's).
    pub heartbeat: u16,
    /// `RABBITMQ_USERNAME`, `RABBITMQ_PASSWORD` (default `guest`, as pika's).
    pub username: String,
    pub password: String,
    /// `RABBITMQ_VHOST` (default `/`).
    pub vhost: String,
    /// `BUNDLE_STORE_DIR`: where finished bundles go unless a request names
    /// its `outputdir`.
    pub store_dir: PathBuf,
    /// `BUNDLEGEN_TMP_DIR`: work directories (downloaded images, bundles
    /// being built).
    pub tmp_dir: PathBuf,
    /// `RDK_PLATFORM_SEARCHPATH`, used when a request has no `searchpath`.
    pub searchpath: Option<OsString>,
    /// `RDK_OCI_REGISTRY_CREDS`: `USER:PASSWORD` for registries.
    pub registry_creds: Option<String>,
}

impl Settings {
    /// Reads the settings from `vars` (the environment over the `.env`
    /// file, see [`Vars`]).
    pub fn from_vars(vars: &Vars) -> Result<Settings, SettingsError> {
        let number = |name: &'static str, default: u16| -> Result<u16, SettingsError> {
            match vars.get(name) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| SettingsError::Invalid {
                    name,
                    value: v.to_owned(),
                    expected: "a number from 0 to 65535",
                }),
            }
        };
        let dir = |name: &'static str, what: &'static str| -> Result<PathBuf, SettingsError> {
            vars.get(name)
                .map(PathBuf::from)
                .ok_or(SettingsError::Missing { name, what })
        };
        Ok(Settings {
            host: vars.get("RABBITMQ_HOST").unwrap_or("localhost").to_owned(),
            port: number("RABBITMQ_PORT", 5672)?,
            heartbeat: number("RABBITMQ_HEARTBEAT_SECONDS", 60)?,
            username: vars.get("RABBITMQ_USERNAME").unwrap_or("guest").to_owned(),
            password: vars.get("RABBITMQ_PASSWORD").unwrap_or("guest").to_owned(),
            vhost: vars.get("RABBITMQ_VHOST").unwrap_or("/").to_owned(),
            store_dir: dir("BUNDLE_STORE_DIR", "the directory finished bundles go to")?,
            tmp_dir: dir("BUNDLEGEN_TMP_DIR", "a directory for work in progress")?,
            searchpath: vars.get("RDK_PLATFORM_SEARCHPATH").map(OsString::from),
            registry_creds: vars.get("RDK_OCI_REGISTRY_CREDS").map(str::to_owned),
        })
    }

    /// The broker's address as an AMQP URI (credentials included).
    pub fn amqp_uri(&self) -> String {
        format!(
            "amqp://{}:{}@{}:{}/{}?heartbeat={}",
            percent_encode(&self.username),
            percent_encode(&self.password),
            self.host,
            self.port,
            percent_encode(&self.vhost),
            self.heartbeat
        )
    }

    /// The broker's address without credentials, for logs.
    pub fn broker(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Setting values: the environment's, then a `.env` file's for names the
/// environment does not set (python-dotenv's rule: it never overrides).
/// Empty values count as unset, as BundleGen's `os.environ.get(...) or`
/// tests do.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    values: BTreeMap<String, String>,
}

impl Vars {
    /// The process environment over the `.env` file at `dotenv`, if any.
    pub fn load(dotenv: Option<&Path>) -> Result<Vars, SettingsError> {
        let mut values = match dotenv {
            Some(path) => read_dotenv(path)?,
            None => BTreeMap::new(),
        };
        for (k, v) in std::env::vars_os() {
            if let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) {
                values.insert(k, v);
            }
        }
        Ok(Vars { values })
    }

    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Vars {
        Vars {
            values: pairs.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The `.env` file BundleGen's worker would read: `.env` in `start` or the
/// nearest of its parents.
pub fn find_dotenv(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(".env"))
        .find(|p| p.is_file())
}

/// Parses a `.env` file: `NAME=VALUE` lines, optionally `export NAME=VALUE`;
/// `#` comments and blank lines; values in single quotes are literal, in
/// double quotes `\n`, `\"` and `\\` are unescaped; an unquoted value ends
/// at ` #`.
pub fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>, SettingsError> {
    use std::io::Read;
    let read_err = |source| SettingsError::Read {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(MAX_DOTENV + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_DOTENV {
        return Err(SettingsError::Syntax {
            path: path.to_owned(),
            line: 0,
            reason: format!("larger than {MAX_DOTENV} bytes"),
        });
    }
    parse_dotenv(&text).map_err(|(line, reason)| SettingsError::Syntax {
        path: path.to_owned(),
        line,
        reason,
    })
}

fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut values = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err((i + 1, format!("{line:?} has no `=`")));
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((i + 1, format!("{name:?} is not a variable name")));
        }
        let value = value.trim();
        let value = if let Some(rest) = value.strip_prefix('\'') {
            rest.split_once('\'')
                .ok_or((i + 1, "unterminated single quote".to_owned()))?
                .0
                .to_owned()
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.chars();
            loop {
                match chars.next() {
                    None => return Err((i + 1, "unterminated double quote".to_owned())),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some(c) => out.push(c),
                        None => return Err((i + 1, "unterminated double quote".to_owned())),
                    },
                    Some(c) => out.push(c),
                }
            }
            out
        } else {
            value.split(" #").next().unwrap_or("").trim_end().to_owned()
        };
        values.insert(name.to_owned(), value);
    }
    Ok(values)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines() {
        let text = "# BundleGen's example.env\nBUNDLE_STORE_DIR=/srv/bundles/\nexport RABBITMQ_PORT = 1234 # broker\n\
                    RDK_OCI_REGISTRY_CREDS='user:p#ss'\nQ=\"a\\\"b\"\nRDK_PLATFORM_SEARCHPATH=\n";
        let v = parse_dotenv(text).unwrap();
        assert_eq!(v["BUNDLE_STORE_DIR"], "/srv/bundles/");
        assert_eq!(v["RABBITMQ_PORT"], "1234");
        assert_eq!(v["RDK_OCI_REGISTRY_CREDS"], "user:p#ss");
        assert_eq!(v["Q"], "a\"b");
        assert_eq!(v["RDK_PLATFORM_SEARCHPATH"], "");
        assert_eq!(parse_dotenv("just words\n").unwrap_err().0, 1);
        assert_eq!(parse_dotenv("A=1\nB='x\n").unwrap_err().0, 2);
    }

    #[test]
    fn defaults_and_required() {
        let vars = Vars::from_pairs([
            ("BUNDLE_STORE_DIR".into(), "/s".into()),
            ("BUNDLEGEN_TMP_DIR".into(), "/t".into()),
        ]);
        let s = Settings::from_vars(&vars).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.heartbeat),
            ("localhost", 5672, 60)
        );
        assert_eq!(
            s.amqp_uri(),
            "amqp://guest:guest@localhost:5672/%2F?heartbeat=60"
        );
        let missing = Settings::from_vars(&Vars::default()).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("BUNDLE_STORE_DIR is not set"),
            "{missing}"
        );
        let bad = Vars::from_pairs([
            ("BUNDLE_STORE_DIR".into(), "/s".into()),
            ("BUNDLEGEN_TMP_DIR".into(), "/t".into()),
            ("RABBITMQ_PORT".into(), "amqp".into()),
        ]);
        assert!(
            Settings::from_vars(&bad)
                .unwrap_err()
                .to_string()
                .contains("RABBITMQ_PORT=\"amqp\"")
        );
    }
}
