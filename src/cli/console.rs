//! Renders library diagnostics: a progress bar on a terminal, plain lines
//! in build logs (bitbake captures stderr), warnings always.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use bundlegen::diag::{Diagnostics, Progress, Unit, Warning};

pub struct Console {
    bar: Option<Mutex<Option<ProgressBar>>>,
    quiet: bool,
}

impl Console {
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Console { bar: (tty && !quiet).then(|| Mutex::new(None)), quiet }
    }

    pub fn note(&self, line: &str) {
        if self.quiet {
            return;
        }
        self.print(line);
    }

    fn print(&self, line: &str) {
        if let Some(bar) = self.bar.as_ref().and_then(|b| b.lock().ok()).and_then(|b| b.clone()) {
            bar.suspend(|| eprintln!("{line}"));
        } else {
            eprintln!("{line}");
        }
    }
}

impl Diagnostics for Console {
    fn warning(&self, w: Warning) {
        self.print(&format!("warning: {}: {}", w.subject, w.message));
    }

    fn progress(&self, event: Progress) {
        let Some(slot) = &self.bar else {
            if let Progress::Begin { step, .. } = event
                && !self.quiet {
                    eprintln!("{step}");
                }
            return;
        };
        let Ok(mut slot) = slot.lock() else { return };
        match event {
            Progress::Begin { step, total, unit } => {
                let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                let template = match unit {
                    Unit::Bytes => "{msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    Unit::Items => "{msg:40} [{bar:30}] {pos}/{len}",
                };
                if let Ok(style) = ProgressStyle::with_template(template) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(step);
                *slot = Some(bar);
            }
            Progress::Advance(n) => {
                if let Some(bar) = slot.as_ref() {
                    bar.inc(n);
                }
            }
            Progress::End => {
                if let Some(bar) = slot.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }
}
