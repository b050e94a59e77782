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
    let given = Path::new(&args.target);
    let is_rootfs = given.is_dir() && !given.join("oci-layout").exists() && !args.target.starts_with("oci:");
    let _unpacked;
    let root = if is_rootfs {
        given.to_owned()
    } else {
        let image = super::image_args::ImageArgs { image: args.target.clone(), arch: args.arch.clone(), variant: None, os: None };
        let (source, resolved) = image.open(None)?;
        let temp = tempfile::Builder::new()
            .prefix("bundlegen-deps-")
            .tempdir()
            .map_err(|e| Failure::Processing(anyhow::Error::new(e).context("cannot create a temporary directory")))?;
        let options = bundlegen::layers::FlattenOptions { rootless: true, ..Default::default() };
        bundlegen::layers::flatten(&source, &resolved, temp.path(), &options, diag)
            .map_err(|e| Failure::from(bundlegen::error::Error::from(e)))?;
        let root = temp.path().to_owned();
        _unpacked = temp;
        root
    };
    let root = root.as_path();
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
