//! The `bundlegen` command. All logic is in the library; this file only
//! hands over to the command-line layer.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
