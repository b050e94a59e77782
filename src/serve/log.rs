//! Structured logs: one JSON object per line, with the time, the level,
//! an event name and, for a request, its `uuid` in `request`.

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Where the worker's log lines go (the binary passes stderr; tests a
/// buffer).
pub struct Log {
    out: Mutex<Box<dyn Write + Send>>,
    min: Level,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("min", &self.min)
            .finish_non_exhaustive()
    }
}

impl Log {
    pub fn new(out: Box<dyn Write + Send>, verbose: bool) -> Log {
        Log {
            out: Mutex::new(out),
            min: if verbose { Level::Debug } else { Level::Info },
        }
    }

    /// Writes one line: `{"ts", "level", "event", "request"?, fields…}`.
    pub fn event(
        &self,
        level: Level,
        event: &str,
        request: Option<&str>,
        fields: &[(&str, Value)],
    ) {
        if (level as u8) < (self.min as u8) {
            return;
        }
        let mut line = Map::new();
        line.insert("ts".into(), Value::String(timestamp(SystemTime::now())));
        line.insert("level".into(), Value::String(level.as_str().into()));
        line.insert("event".into(), Value::String(event.into()));
        if let Some(r) = request {
            line.insert("request".into(), Value::String(r.into()));
        }
        for (k, v) in fields {
            line.insert((*k).into(), v.clone());
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        if let Ok(mut out) = self.out.lock() {
            // A log that cannot be written must not stop the worker.
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }

    pub fn info(&self, event: &str, request: Option<&str>, fields: &[(&str, Value)]) {
        self.event(Level::Info, event, request, fields);
    }

    pub fn warn(&self, event: &str, request: Option<&str>, fields: &[(&str, Value)]) {
        self.event(Level::Warn, event, request, fields);
    }

    pub fn error(&self, event: &str, request: Option<&str>, fields: &[(&str, Value)]) {
        self.event(Level::Error, event, request, fields);
    }

    pub fn debug(&self, event: &str, request: Option<&str>, fields: &[(&str, Value)]) {
        self.event(Level::Debug, event, request, fields);
    }
}

/// RFC 3339 UTC with milliseconds.
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // `date -u -d @1709210096` → Thu Feb 29 12:34:56 UTC 2024
        assert_eq!(
            timestamp(UNIX_EPOCH + std::time::Duration::from_millis(1_709_210_096_789)),
            "2024-02-29T12:34:56.789Z"
        );
    }
}
