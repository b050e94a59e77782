//! `bundlegen deps`: like `ldd` for any architecture, without running anything.

use std::path::Path;

use bundlegen::diag::Diagnostics;
use bundlegen::elf;
use bundlegen::ldso::{Closure, Loader};
use clap::Args;
use serde_json::json;

use super::Failure;
use super::platform::{pretty, print_out};

#[derive(Debug, Args)]
pub struct DepsArgs {
    /// A rootfs directory. (OCI image references are not supported yet.)
    #[arg(value_name = "IMAGE|ROOTFS")]
    pub target: String,
    /// In-root path of the ELF file to analyse (`/usr/bin/curl`); without it,
    /// every ELF file in the rootfs is checked for unresolved libraries.
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DepsArgs, diag: &dyn Diagnostics) -> Result<(), Failure> {
    let root = Path::new(&args.target);
    if !root.is_dir() {
        // TODO(image): once `bundlegen::image::ImageRef::parse` and
        // `bundlegen::layers::flatten` are merged, flatten IMAGE into a
        // temporary directory here and continue with it as the rootfs.
        return Err(Failure::BadInput(anyhow::anyhow!(
            "{}: not a directory\nhelp: pass an unpacked rootfs; image references are not supported by `deps` yet",
            args.target
        )));
    }
    match &args.path {
        Some(path) => one(root, path, args.json, diag),
        None => all(root, args.json, diag),
    }
}

fn one(root: &Path, path: &str, json: bool, diag: &dyn Diagnostics) -> Result<(), Failure> {
    let mut loader = Loader::new(root, diag);
    let closure = loader
        .closure(path)
        .map_err(|e| Failure::BadInput(anyhow::Error::new(e)))?;
    if json {
        return print_out(&pretty(&closure));
    }
    print_out(&ldd_text(&closure))
}

/// `ldd`-style lines: `name => path`, `name => not found`, then the interpreter.
fn ldd_text(c: &Closure) -> String {
    let mut out = String::new();
    for lib in &c.libs {
        out.push_str(&format!("\t{} => {}\n", lib.name, lib.found.path));
    }
    for m in &c.missing {
        out.push_str(&format!(
            "\t{} => not found (needed by {})\n",
            m.name,
            m.needed_by.join(", ")
        ));
    }
    match (&c.interpreter, &c.interpreter_found) {
        (Some(_), Some(found)) => out.push_str(&format!("\t{}\n", found.path)),
        (Some(i), None) => out.push_str(&format!("\t{i} (interpreter) => not found\n")),
        (None, _) => {}
    }
    out
}

fn all(root: &Path, json: bool, diag: &dyn Diagnostics) -> Result<(), Failure> {
    let scan = elf::scan(root, diag).map_err(|e| {
        Failure::BadInput(anyhow::Error::new(e).context(format!("cannot scan {}", root.display())))
    })?;
    let mut loader = Loader::new(root, diag).with_scan(&scan);
    let mut files = serde_json::Map::new();
    let mut missing = Vec::new();
    for (path, info) in &scan.files {
        if info.needed.is_empty() {
            continue;
        }
        let resolved = loader
            .resolve_needed(path)
            .map_err(|e| Failure::Processing(anyhow::Error::new(e)))?;
        let mut needed = Vec::new();
        for (name, found) in resolved {
            if found.is_none() {
                missing.push(format!("{path}: {name} => not found"));
            }
            needed.push(json!({ "name": name, "path": found.map(|f| f.path) }));
        }
        files.insert(
            path.clone(),
            json!({ "arch": info.arch_name(), "needed": needed }),
        );
    }
    if json {
        return print_out(&pretty(&json!({ "files": files, "missing": missing })));
    }
    let mut text = format!(
        "{} ELF files with dependencies, {} unresolved\n",
        files.len(),
        missing.len()
    );
    for m in &missing {
        text.push_str(m);
        text.push('\n');
    }
    print_out(&text)
}
