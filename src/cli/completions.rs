//! `bundlegen completions SHELL` and `bundlegen man`: shell completion
//! scripts and man pages, generated from the clap definitions at run time so
//! they always match the binary's subcommands and flags.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Failure};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install (per user):
  bash:  bundlegen completions bash > ~/.local/share/bash-completion/completions/bundlegen
  zsh:   bundlegen completions zsh > ~/.zfunc/_bundlegen   (with fpath+=~/.zfunc before compinit)
  fish:  bundlegen completions fish > ~/.config/fish/completions/bundlegen.fish")]
pub struct CompletionsArgs {
    /// The shell to write a completion script for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  bundlegen man | man -l -                  read the main page
  bundlegen man platform init | man -l -    read one subcommand's page
  bundlegen man --dir ~/.local/share/man/man1
                                            install every page for `man bundlegen`")]
pub struct ManArgs {
    /// Write every page (bundlegen.1 and one per subcommand, such as
    /// bundlegen-platform-init.1) into DIR instead of printing one
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub dir: Option<PathBuf>,
    /// The subcommand whose page to print, such as `generate` or
    /// `platform init`; none for the main page
    #[arg(value_name = "SUBCOMMAND")]
    pub command: Vec<String>,
}

pub fn completions(args: &CompletionsArgs) -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "bundlegen", &mut out);
    write_stdout(&out)
}

pub fn man(args: &ManArgs) -> Result<(), Failure> {
    let cmd = Cli::command().disable_help_subcommand(true);
    if let Some(dir) = &args.dir {
        return write_pages(cmd, dir).map_err(Failure::Processing);
    }
    let mut cmd = cmd;
    cmd.build();
    let mut page = cmd;
    for (i, name) in args.command.iter().enumerate() {
        let Some(sub) = page.find_subcommand(name).cloned() else {
            let known: Vec<&str> = page.get_subcommands().map(|s| s.get_name()).collect();
            let parent = ["bundlegen"]
                .into_iter()
                .chain(args.command[..i].iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            return Err(Failure::BadInput(anyhow::anyhow!(
                "`{parent}` has no subcommand {name:?}\nhelp: its subcommands: {}",
                known.join(", ")
            )));
        };
        page = sub;
    }
    let mut out = Vec::new();
    // Rendering into memory cannot fail.
    let _ = clap_mangen::Man::new(page).render(&mut out);
    write_stdout(&out)
}

/// Writes every page into `dir`, through a temporary file per page so a
/// failed run leaves no truncated page behind.
fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = cmd;
    cmd.build();
    let mut todo = vec![cmd];
    let mut written = 0;
    while let Some(cmd) = todo.pop() {
        todo.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let man = clap_mangen::Man::new(cmd);
        let path = dir.join(man.get_filename());
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        man.render(&mut tmp)
            .and_then(|()| tmp.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .with_context(|| format!("cannot set permissions on {}", path.display()))?;
        tmp.persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written += 1;
    }
    eprintln!("wrote {written} man pages in {}", dir.display());
    Ok(())
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    super::platform::print_out(&String::from_utf8_lossy(bytes))
}
