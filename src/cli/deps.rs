//! `bundlegen deps`: like `ldd` for any architecture, without running anything.

use bundlegen::diag::Diagnostics;
use bundlegen::error::Category;
use bundlegen::ldso::Closure;
use bundlegen::pipeline::deps::{self, Deps, Survey};
use clap::Args;

use super::Failure;
use super::platform::{pretty, print_out};

#[derive(Debug, Args)]
pub struct DepsArgs {
    /// A rootfs directory, or an image (`oci:DIR[:TAG]`, a layout
    /// directory, `oci-archive:FILE`), which is flattened into a temporary
    /// directory first
    #[arg(value_name = "IMAGE|ROOTFS")]
    pub target: String,
    /// Architecture to pick from a multi-platform image
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// In-root path of the ELF file to analyse (`/usr/bin/curl`); without it,
    /// every ELF file in the rootfs is checked for unresolved libraries.
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DepsArgs, diag: &dyn Diagnostics) -> Result<(), Failure> {
    let found = deps::deps(&args.target, args.arch.as_deref(), args.path.as_deref(), diag).map_err(|e| {
        let category = e.category();
        let e = anyhow::Error::new(e);
        match category {
            Category::BadInput => Failure::BadInput(e),
            Category::Incompatible => Failure::Incompatible(e),
            Category::Failed => Failure::Processing(e),
        }
    })?;
    print_out(&match (&found, args.json) {
        (_, true) => pretty(&found),
        (Deps::One(closure), false) => ldd_text(closure),
        (Deps::All(survey), false) => survey_text(survey),
    })
}

/// `ldd`-style lines: `name => path`, `name => not found`, then the interpreter.
fn ldd_text(c: &Closure) -> String {
    let mut out = String::new();
    for lib in &c.libs {
        out.push_str(&format!("\t{} => {}\n", lib.name, lib.found.path));
    }
    for m in &c.missing {
        out.push_str(&format!("\t{} => not found (needed by {})\n", m.name, m.needed_by.join(", ")));
    }
    match (&c.interpreter, &c.interpreter_found) {
        (Some(_), Some(found)) => out.push_str(&format!("\t{}\n", found.path)),
        (Some(i), None) => out.push_str(&format!("\t{i} (interpreter) => not found\n")),
        (None, _) => {}
    }
    out
}

fn survey_text(s: &Survey) -> String {
    let mut text = format!("{} ELF files with dependencies, {} unresolved\n", s.files.len(), s.missing.len());
    for m in &s.missing {
        text.push_str(m);
        text.push('\n');
    }
    text
}
