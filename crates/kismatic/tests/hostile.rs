//! Hostile use of the built binary (issue 12): a closed standard output, out-of-range flags.
//!
//! Flag cases live in `tests/hostile/flags.txt`: one case per block, `args: …` (split on spaces) then the exact
//! last line of standard error as `expect: …`; each exits with status 2.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

fn kismatic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kismatic"))
}

/// Output into a pipe nobody reads: killed by SIGPIPE like `cat`, nothing on standard error, never a panic (101).
#[test]
fn closed_stdout_ends_quietly_with_sigpipe() {
    for args in [&["completions", "bash"][..], &["completions", "zsh"][..]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = kismatic().args(args).stdout(writer).stderr(Stdio::piped()).output().expect("runs");
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{args:?}: {:?}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

#[test]
fn out_of_range_flags_state_the_range() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile/flags.txt")).expect("read");
    let mut cases = 0;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty() && !b.starts_with('#')) {
        let field = |name: &str| {
            block.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("{name} missing in {block}"))
        };
        let args: Vec<&str> = field("args: ").split(' ').collect();
        let out = kismatic().args(&args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert_eq!(first, field("expect: "), "{args:?}");
        cases += 1;
    }
    assert!(cases >= 10, "only {cases} flag cases");
}

/// Issue 12: "No such file or directory (os error 2): No such file or directory (os error 2)".
#[test]
fn a_cause_is_shown_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let m = missing.to_str().expect("utf-8");
    for args in [
        vec!["upgrade", "online", "--dry-run", "--facts", m, "--release", m],
        vec!["upgrade", "online", "--dry-run", "-f", m, "--release", m],
        vec!["upgrade", "online", "--dry-run", "--facts", m],
    ] {
        let out = kismatic().args(&args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.matches("(os error 2)").count(), 1, "{args:?}: {stderr}");
    }
}

/// Issue 12: a 20 MB cluster name is read but never printed in full: `info` and `status` on such a plan (its nodes
/// on unused loopback addresses, so unreachable at once) answer in a few KB.
#[test]
fn a_20_mb_cluster_name_is_never_printed_in_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/minimal.yaml"))
        .expect("read the example plan");
    let name = "x".repeat(20 * 1024 * 1024);
    let plan = example.replace("name: minimal", &format!("name: {name}")).replace("127.0.11.", "127.0.251.");
    assert!(plan.len() > 20 * 1024 * 1024);
    let tb = dir.path().join("minimal.testbed");
    std::fs::create_dir(&tb).expect("mkdir");
    std::fs::write(tb.join("known_hosts"), "").expect("known_hosts");
    std::fs::write(tb.join("id_ed25519"), "not a key\n").expect("key");
    std::fs::set_permissions(tb.join("id_ed25519"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let path = dir.path().join("plan.yaml");
    std::fs::write(&path, plan).expect("write plan");
    for args in [&["info"][..], &["status"][..]] {
        let out = kismatic().args(args).arg("-f").arg(&path).output().expect("runs");
        let all = [out.stdout, out.stderr].concat();
        assert!(all.len() < 16 * 1024, "{args:?}: {} bytes", all.len());
        assert!(!String::from_utf8_lossy(&all).contains(&"x".repeat(300)), "{args:?}");
    }
}
