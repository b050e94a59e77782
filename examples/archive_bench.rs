//! Times `bundlegen::bundle::archive::write_tar` on a bundle directory.
//!
//! Usage: archive_bench BUNDLE_DIR OUT gzip|zstd|none THREADS [RUNS]
//! Prints the best wall time of RUNS (default 3), the size and the digest.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use bundlegen::bundle::archive::{ArchiveOptions, Compression, write_tar};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: archive_bench BUNDLE_DIR OUT gzip|zstd|none THREADS [RUNS]");
        return ExitCode::from(2);
    }
    let compression = match args[3].as_str() {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        _ => Compression::None,
    };
    let threads: usize = args[4].parse().unwrap_or(1);
    let runs: usize = args.get(5).and_then(|r| r.parse().ok()).unwrap_or(3);
    let recorded = BTreeMap::new();
    let opts = ArchiveOptions {
        compression,
        threads,
        source_date_epoch: Some(1_600_000_000),
        ..ArchiveOptions::new(&recorded)
    };
    let mut best = f64::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        match write_tar(Path::new(&args[1]), Path::new(&args[2]), &opts) {
            Ok(info) => last = Some(info),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    if let Some(info) = last {
        println!(
            "{} threads={threads}: {best:.2} s, {} bytes ({} uncompressed), {}",
            args[3], info.size, info.uncompressed_size, info.sha256
        );
    }
    ExitCode::SUCCESS
}
