//! Table-driven tests over `tests/plans/*.yaml`: malformed and hostile plan files.
//!
//! Each file is copied into a fresh temporary folder as `plan.yaml`, next to a private key `id_rsa`
//! (mode 0600), and loaded with `kismatic_plan::load`. Header comments steer the case:
//! - `# key-mode: 0644` creates the key with that mode; `# key: none` creates no key.
//! - `# expect: plan.yaml:LINE:COL: ...` lines are the exact diagnostics, in order. A file without
//!   any `expect` line must load.
//!
//! In messages the temporary folder reads as `$DIR`. `BLESS=1 cargo test -p kismatic-plan --test plans`
//! rewrites the `expect` lines from the actual output (review the diff!).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans");
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("tests/plans exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

fn header(text: &str, name: &str) -> Option<String> {
    let prefix = format!("# {name}: ");
    text.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// Load one case; the diagnostics as the user would see them, with the temp dir replaced by `$DIR`.
fn run(case: &Path) -> (String, Vec<String>) {
    let text = fs::read_to_string(case).expect("case readable");
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = tmp.path().join("plan.yaml");
    fs::write(&plan, &text).expect("write plan");
    if header(&text, "key").as_deref() != Some("none") {
        let key = tmp.path().join("id_rsa");
        fs::write(&key, "not really a key\n").expect("write key");
        let mode =
            header(&text, "key-mode").map(|m| u32::from_str_radix(&m, 8).expect("octal key-mode")).unwrap_or(0o600);
        fs::set_permissions(&key, fs::Permissions::from_mode(mode)).expect("chmod key");
    }
    let dir = tmp.path().display().to_string();
    let actual = match kismatic_plan::load(&plan) {
        Ok(_) => Vec::new(),
        Err(e) => {
            let shown = e.to_string();
            assert_eq!(shown.lines().count(), e.diagnostics().len(), "one line per diagnostic");
            e.diagnostics()
                .iter()
                .map(|d| d.to_string().replace(&format!("{dir}/plan.yaml"), "plan.yaml").replace(&dir, "$DIR"))
                .collect()
        }
    };
    (text, actual)
}

#[test]
fn hostile_and_malformed_plans() {
    let bless = std::env::var_os("BLESS").is_some();
    let cases = cases();
    assert!(cases.len() >= 25, "expected at least 25 cases, found {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (text, actual) = run(case);
        let expected: Vec<String> =
            text.lines().filter_map(|l| l.strip_prefix("# expect: ").map(str::to_string)).collect();
        if bless {
            let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("# expect: ")).collect();
            let mut out = String::new();
            // Header comments first (description, key directives), then expectations, then the plan.
            let split = kept.iter().position(|l| !l.starts_with('#')).unwrap_or(kept.len());
            for l in &kept[..split] {
                out.push_str(l);
                out.push('\n');
            }
            for a in &actual {
                out.push_str("# expect: ");
                out.push_str(a);
                out.push('\n');
            }
            for l in &kept[split..] {
                out.push_str(l);
                out.push('\n');
            }
            fs::write(case, out).expect("bless");
            continue;
        }
        if expected != actual {
            failures.push(format!(
                "{}:\n  expected:\n    {}\n  actual:\n    {}",
                case.display(),
                expected.join("\n    "),
                actual.join("\n    ")
            ));
        }
        let is_hostile = !expected.is_empty();
        let name = case.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(is_hostile || name.starts_with("ok-"), "{name}: cases without expectations must be named ok-*");
    }
    assert!(failures.is_empty(), "{} case(s) differ:\n{}", failures.len(), failures.join("\n"));
}
