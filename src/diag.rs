//! Diagnostics: how the library reports warnings and progress without printing.
//!
//! The library never writes to stdout or stderr. Every stage takes a
//! `&dyn Diagnostics` and reports through it; the binary renders the events
//! (a progress bar on a terminal, plain lines in a build log) and tests record
//! them with [`Collected`].

use std::sync::Mutex;

/// Something the user should know about that does not stop the job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// What the warning is about: a file, layer digest, JSON key or path.
    pub subject: String,
    /// What happened, and what to do about it when there is something to do.
    pub message: String,
}

impl Warning {
    pub fn new(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Warning { subject: subject.into(), message: message.into() }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// Progress of a long-running step, counted in bytes or items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A step starts; `total` is its size in `unit`s when known.
    Begin { step: String, total: Option<u64>, unit: Unit },
    /// `n` more units of the current step are done.
    Advance(u64),
    /// The current step is finished.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items,
}

/// Receiver of warnings and progress. Implementations must be cheap to call:
/// `progress` is called from hot loops (at most once per read buffer).
pub trait Diagnostics: Send + Sync {
    fn warning(&self, warning: Warning);
    fn progress(&self, _event: Progress) {}
}

/// Drops everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Diagnostics for Silent {
    fn warning(&self, _warning: Warning) {}
}

/// Records warnings in order; used by tests and to build reports.
#[derive(Debug, Default)]
pub struct Collected {
    warnings: Mutex<Vec<Warning>>,
}

impl Collected {
    pub fn warnings(&self) -> Vec<Warning> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

impl Diagnostics for Collected {
    fn warning(&self, warning: Warning) {
        if let Ok(mut w) = self.warnings.lock() {
            w.push(warning);
        }
    }
}

/// Holds warnings and progress in order, to pass on later
/// ([`Buffered::replay`]): work done on several threads at once reports
/// in a fixed order, whichever thread finished first.
#[derive(Debug, Default)]
pub struct Buffered {
    events: Mutex<Vec<Event>>,
}

#[derive(Debug)]
enum Event {
    Warning(Warning),
    Progress(Progress),
}

impl Buffered {
    /// Passes everything held on to `to`, in the order it came.
    pub fn replay(self, to: &dyn Diagnostics) {
        let events = self.events.into_inner().unwrap_or_else(|e| e.into_inner());
        for event in events {
            match event {
                Event::Warning(w) => to.warning(w),
                Event::Progress(p) => to.progress(p),
            }
        }
    }

    fn push(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

impl Diagnostics for Buffered {
    fn warning(&self, warning: Warning) {
        self.push(Event::Warning(warning));
    }
    fn progress(&self, event: Progress) {
        self.push(Event::Progress(event));
    }
}

/// Forwards to an inner receiver and also records warnings (for reports).
pub struct Tee<'a> {
    pub inner: &'a dyn Diagnostics,
    pub record: Collected,
}

impl<'a> Tee<'a> {
    pub fn new(inner: &'a dyn Diagnostics) -> Self {
        Tee { inner, record: Collected::default() }
    }
}

impl Diagnostics for Tee<'_> {
    fn warning(&self, warning: Warning) {
        self.record.warning(warning.clone());
        self.inner.warning(warning);
    }
    fn progress(&self, event: Progress) {
        self.inner.progress(event);
    }
}

/// An error and each of its causes, outermost first.
pub fn causes<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = String> + 'a {
    std::iter::successors(Some(e), |e| e.source()).map(ToString::to_string)
}

/// An error and its causes on one line, `error: cause: cause`, as messages
/// that are not printed by the binary (reports, logs) show them.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    causes(e).collect::<Vec<_>>().join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_events_are_replayed_in_their_order() {
        let buffered = Buffered::default();
        buffered.warning(Warning::new("a", "first"));
        buffered.progress(Progress::Begin { step: "s".into(), total: None, unit: Unit::Items });
        buffered.warning(Warning::new("b", "second"));
        let to = Collected::default();
        buffered.replay(&to);
        assert_eq!(to.warnings(), [Warning::new("a", "first"), Warning::new("b", "second")]);
    }
}
