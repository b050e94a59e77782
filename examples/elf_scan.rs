//! Times `bundlegen::elf::scan` on a directory (used by `scripts/bench-elf`).
//!
//! Usage: `cargo run --release --example elf_scan -- ROOTFS [RUNS]`

use std::time::Instant;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        eprintln!("usage: elf_scan ROOTFS [RUNS]");
        return std::process::ExitCode::from(1);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let mut best = f64::MAX;
    for run in 1..=runs {
        let start = Instant::now();
        let scan = match bundlegen::elf::scan(std::path::Path::new(&root), &bundlegen::diag::Silent)
        {
            Ok(scan) => scan,
            Err(e) => {
                eprintln!("error: cannot scan {root}: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        let secs = start.elapsed().as_secs_f64();
        best = best.min(secs);
        let files = scan.files.len() + scan.other_files;
        println!(
            "run {run}: {files} files ({} ELF, {} other, {} symlinks) in {secs:.3} s",
            scan.files.len(),
            scan.other_files,
            scan.symlinks.len()
        );
    }
    println!("best: {best:.3} s");
    std::process::ExitCode::SUCCESS
}
