//! `bundlegen completions` and `bundlegen man` cover every subcommand
//! (issue #12). The subcommands are read from the binary's `--help` (what a
//! user sees), recursively; the bash script is loaded into a real bash and
//! asked for completions as the shell would; the man pages are rendered by
//! the real `man`.

use std::collections::BTreeSet;
use std::process::Command;

use crate::debian::{have, unavailable};

fn bundlegen(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bundlegen"))
        .args(args)
        .output()
        .expect("run bundlegen");
    assert!(
        out.status.success(),
        "bundlegen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The names listed under `Commands:` in `--help`, without `help`.
fn help_commands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = bundlegen(&args);
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // wrapped description lines
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect()
}

/// Every subcommand path (`["platform", "init"]`), from `--help`.
fn all_subcommands() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        for name in help_commands(&p) {
            let mut sub = path.clone();
            sub.push(name);
            todo.push(sub.clone());
            out.push(sub);
        }
    }
    out.sort();
    // The help parsing itself: it must find at least what the docs list.
    for known in [
        "generate",
        "unpack",
        "validate",
        "inspect",
        "platform init",
        "platform show",
        "deps",
        "completions",
        "man",
    ] {
        assert!(
            out.iter().any(|p| p.join(" ") == known),
            "{known} not found in --help: {out:?}"
        );
    }
    out
}

/// Asks bash's completion for the words after `bundlegen` (the last one
/// being completed), with the script loaded as bash-completion would.
fn bash_complete(script: &std::path::Path, words: &[&str]) -> BTreeSet<String> {
    let words: Vec<String> = std::iter::once("bundlegen")
        .chain(words.iter().copied())
        .map(|w| format!("'{w}'"))
        .collect();
    let probe = format!(
        "source '{}'\n\
         COMP_WORDS=({})\n\
         COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         _bundlegen bundlegen \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        words.join(" ")
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "bash completion failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_offers_every_subcommand_and_its_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("bundlegen.bash");
    std::fs::write(&script, bundlegen(&["completions", "bash"])).expect("write");
    let subs = all_subcommands();
    for path in &subs {
        let (name, parents) = path.split_last().expect("non-empty");
        let mut words: Vec<&str> = parents.iter().map(String::as_str).collect();
        words.push("");
        let offered = bash_complete(&script, &words);
        assert!(
            offered.contains(name),
            "`bundlegen {} <TAB>` does not offer {name}: {offered:?}",
            parents.join(" ")
        );
        // Each subcommand's own flags complete too.
        let mut words: Vec<&str> = path.iter().map(String::as_str).collect();
        words.push("--");
        let flags = bash_complete(&script, &words);
        assert!(
            flags.contains("--help"),
            "`bundlegen {} --<TAB>` offers no flags: {flags:?}",
            path.join(" ")
        );
    }
    let generate = bash_complete(&script, &["generate", "--pl"]);
    assert!(
        generate.contains("--platform") && generate.contains("--platform-overlay"),
        "{generate:?}"
    );
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    let zsh = bundlegen(&["completions", "zsh"]);
    let fish = bundlegen(&["completions", "fish"]);
    assert!(zsh.starts_with("#compdef bundlegen"), "{}", &zsh[..80]);
    for path in all_subcommands() {
        let name = path.last().expect("non-empty");
        // zsh: `'NAME:description'` in the _describe list of its parent.
        assert!(
            zsh.contains(&format!("'{name}:")),
            "zsh script lacks {name}"
        );
        // fish: `-a "NAME"` offered when its parent is being completed.
        assert!(
            fish.contains(&format!("-a \"{name}\"")),
            "fish script lacks {name}"
        );
    }
}

#[test]
fn man_pages_exist_for_every_subcommand_and_render() {
    let dir = tempfile::tempdir().expect("tempdir");
    let man1 = dir.path().join("man1");
    bundlegen(&["man", "--dir", man1.to_str().expect("utf-8 path")]);
    let mut expected: BTreeSet<String> = all_subcommands()
        .iter()
        .map(|p| format!("bundlegen-{}.1", p.join("-")))
        .collect();
    expected.insert("bundlegen.1".into());
    let written: BTreeSet<String> = std::fs::read_dir(&man1)
        .expect("man1")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, expected);

    // One page printed on stdout is the same page.
    let printed = bundlegen(&["man", "platform", "init"]);
    let file = std::fs::read_to_string(man1.join("bundlegen-platform-init.1")).expect("page");
    assert_eq!(printed, file);

    if !have("man", "--version") {
        return unavailable::<()>("man (apt-get install man-db)").unwrap_or(());
    }
    for page in &expected {
        let topic = page.trim_end_matches(".1");
        let out = Command::new("man")
            .args(["-M"])
            .arg(dir.path())
            .args(["-P", "cat", topic])
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "man {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let name_line = text
            .lines()
            .skip_while(|l| l.trim() != "NAME")
            .nth(1)
            .unwrap_or("");
        let words: Vec<&str> = name_line.split_whitespace().take(2).collect();
        assert!(
            words == [topic, "-"],
            "man {topic}: NAME section is {name_line:?}"
        );
    }
}

#[test]
fn man_for_an_unknown_subcommand_names_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_bundlegen"))
        .args(["man", "platform", "nope"])
        .output()
        .expect("run bundlegen");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`bundlegen platform` has no subcommand \"nope\"")
            && err.contains("help: its subcommands: list, show, validate, init"),
        "{err}"
    );
}
