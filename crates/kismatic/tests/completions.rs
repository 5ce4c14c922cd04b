//! Shell completions for bash, zsh and fish, a bash completion exercised in a real bash (`complete -p`,
//! `compgen`), and the man pages.

use std::process::Command;

fn kismatic(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kismatic")).args(args).output().expect("kismatic runs");
    assert!(out.status.success(), "kismatic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn completions_for_three_shells() {
    let bash = kismatic(&["completions", "bash"]);
    assert!(bash.contains("complete -F _kismatic"), "{bash}");
    let zsh = kismatic(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef kismatic"), "{zsh}");
    let fish = kismatic(&["completions", "fish"]);
    assert!(fish.contains("complete -c kismatic"), "{fish}");
    for script in [&bash, &zsh, &fish] {
        for sub in ["info", "facts", "upgrade", "status", "completions", "man"] {
            assert!(script.contains(sub), "{sub} missing from a completion script");
        }
        assert!(script.contains("partial-ok"), "upgrade flags are completed");
    }
}

#[test]
fn bash_completes_commands_and_flags() {
    let tmp = tempfile::tempdir().expect("tmp");
    let script = tmp.path().join("kismatic.bash");
    std::fs::write(&script, kismatic(&["completions", "bash"])).expect("write");
    // What bash does on <TAB>: the function registered by `complete` is called with COMP_WORDS/COMP_CWORD set.
    let probe = r#"
set -u
source "$1"
complete -p kismatic
complete_at() {
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
    _kismatic kismatic "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    compgen -W "${COMPREPLY[*]}" -- "${COMP_WORDS[COMP_CWORD]}" | sort | tr '\n' ' '
    echo
}
echo "top: $(complete_at kismatic u)"
echo "upgrade: $(complete_at kismatic upgrade o)"
echo "online: $(complete_at kismatic upgrade online --pa)"
echo "status: $(complete_at kismatic status -o '')"
"#;
    let out = Command::new("bash").arg("-c").arg(probe).arg("probe").arg(&script).output().expect("bash runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.starts_with("complete ") && l.contains(" -F _kismatic ") && l.ends_with(" kismatic")),
        "{text}"
    );
    let line = |name: &str| text.lines().find(|l| l.starts_with(name)).map(str::to_string).unwrap_or_default();
    assert_eq!(line("top:").trim(), "top: upgrade", "{text}");
    assert_eq!(line("upgrade:").trim(), "upgrade: offline online", "{text}");
    assert_eq!(line("online:").trim(), "online: --partial-ok", "{text}");
    assert_eq!(line("status:").trim(), "status: json simple", "{text}");
}

#[test]
fn man_pages_for_every_command() {
    let tmp = tempfile::tempdir().expect("tmp");
    let said = kismatic(&["man", tmp.path().to_str().expect("utf-8")]);
    for page in [
        "kismatic.1",
        "kismatic-info.1",
        "kismatic-facts.1",
        "kismatic-status.1",
        "kismatic-upgrade.1",
        "kismatic-upgrade-online.1",
        "kismatic-upgrade-offline.1",
        "kismatic-completions.1",
        "kismatic-man.1",
    ] {
        let text = std::fs::read_to_string(tmp.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains("\n.TH "), "{page} is a man page");
        assert!(said.contains(page), "{said}");
    }
    let online = std::fs::read_to_string(tmp.path().join("kismatic-upgrade-online.1")).expect("page");
    let title = format!(".TH kismatic-upgrade-online 1  \"kismatic {}\"", env!("CARGO_PKG_VERSION"));
    assert!(online.contains(&title), "{online}");
    assert!(online.contains("partial\\-ok"), "{online}");
}
