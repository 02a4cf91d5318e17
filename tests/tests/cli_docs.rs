//! Shell completions, manual pages and `--version` of both binaries,
//! checked against what each binary's own `--help` lists.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use eventi_tests::binary;

/// Runs `bin args` and returns its stdout (it must succeed).
fn run(bin: &str, args: &[&str]) -> String {
    let o = Command::new(binary(bin)).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The subcommands `--help` lists under "Commands:", `help` aside.
fn listed(bin: &str, path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = run(bin, &args);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command as a path of names, nested ones included.
fn all_commands(bin: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for name in listed(bin, &[]) {
        let nested = listed(bin, &[&name]);
        out.push(vec![name.clone()]);
        for sub in nested {
            out.push(vec![name.clone(), sub]);
        }
    }
    out
}

fn check_binary(bin: &str, must_list: &[&str], dir: &Path) {
    let commands = all_commands(bin);
    let top: BTreeSet<&str> = commands
        .iter()
        .filter(|c| c.len() == 1)
        .map(|c| c[0].as_str())
        .collect();
    for name in must_list {
        assert!(top.contains(name), "{bin} --help lists {name}: {top:?}");
    }
    assert!(commands.len() > top.len(), "{bin} has nested commands");

    for shell in ["bash", "zsh", "fish"] {
        let script = run(bin, &["completions", shell]);
        for c in &commands {
            let name = c.last().unwrap();
            assert!(
                script.contains(name.as_str()),
                "{bin}'s {shell} completion names {c:?}"
            );
        }
    }
    // The bash script parses (bash is in every Debian base).
    let script = dir.join(format!("{bin}.bash"));
    std::fs::write(&script, run(bin, &["completions", "bash"])).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // An unknown shell is refused, naming the choices.
    let o = Command::new(binary(bin))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bash"));

    let pages = dir.join(format!("{bin}-man"));
    let printed = run(bin, &["man-pages", pages.to_str().unwrap()]);
    assert_eq!(printed.lines().count(), commands.len() + 1, "{printed}");
    let main = std::fs::read_to_string(pages.join(format!("{bin}.1"))).unwrap();
    assert!(main.starts_with(".ie") || main.contains(".TH"), "{main}");
    for c in &commands {
        let page = pages.join(format!("{bin}-{}.1", c.join("-")));
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("{} for {c:?}: {e}", page.display()));
        assert!(text.contains(".TH"), "{}", page.display());
        // The page describes the command as its --help does: the first
        // line of its about text.
        let mut args: Vec<&str> = c.iter().map(String::as_str).collect();
        args.push("--help");
        let about = run(bin, &args).lines().next().unwrap().to_string();
        let first_words: String = about
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            text.replace("\\-", "-")
                .replace("\\*(Aq", "'")
                .contains(&first_words),
            "{} lacks {first_words:?}",
            page.display()
        );
    }

    let version = run(bin, &["--version"]);
    assert!(version.starts_with(&format!("{bin} {}", env!("CARGO_PKG_VERSION"))));
    for part in ["speaks: venti 02 and 04", "eventi-noise-1"] {
        assert!(version.contains(part), "{version}");
    }
}

#[test]
fn every_command_of_the_client_has_completions_and_a_manual_page() {
    let dir = tempfile::tempdir().unwrap();
    check_binary(
        "eventi",
        &["backup", "restore", "mount", "completions", "man-pages"],
        dir.path(),
    );
    let version = run("eventi", &["--version"]);
    assert!(version.contains("writes: blocks v1"), "{version}");
    assert!(version.contains("trees v3"), "{version}");
}

#[test]
fn every_command_of_the_server_has_completions_and_a_manual_page() {
    let dir = tempfile::tempdir().unwrap();
    check_binary(
        "eventi-server",
        &["serve", "keys", "completions", "man-pages"],
        dir.path(),
    );
    let version = run("eventi-server", &["--version"]);
    assert!(version.contains("data log records"), "{version}");
}
