//! Table-driven tests over `tests/hostile/*.txt`: malformed and hostile release directories (issue 12).
//!
//! Each case starts from a valid release directory (etcd binary with its unit, a package, two manifests) and
//! changes it with header lines:
//! - `replace: FROM => TO` replaces text in `release.yaml` (once; it must occur);
//! - `write: PATH = CONTENT` writes a file (escapes `\n`, `\t`, `\\`, `\xNN`; `CONTENT*N` repeats it N times);
//! - `expect: MESSAGE` lines are the exact problems, in order (the folder reads as `$DIR`). A case without any
//!   `expect` line must load.
//!
//! `BLESS=1 cargo test -p kismatic-release --test hostile` rewrites the `expect` lines (review the diff!).

use std::fs;
use std::path::Path;

const BASE: &[(&str, &str)] = &[
    ("artifacts/etcd-3.5.1.tar.gz", "etcd tarball"),
    ("units/etcd.service", "[Unit]\nDescription=etcd\n\n[Service]\nExecStart=/opt/kismatic/etcd/current/etcd\n"),
    ("packages/kismatic-runtime_1.1.0_all.deb", "deb"),
    ("manifests/registry.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: registry\n"),
    ("manifests/dns.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: coredns\n"),
];

const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn release_yaml() -> String {
    format!(
        "format: 1
version: 1.1.0
kubernetes: v1.34.1
components:
  - name: etcd
    version: 3.5.1
    delivery: binary
    roles: [etcd]
    artifact: {{file: artifacts/etcd-3.5.1.tar.gz, sha256: {SHA}}}
    unit: {{file: units/etcd.service, sha256: {SHA}}}
  - name: container-runtime
    version: 1.1.0
    delivery: package
    package: kismatic-runtime
    roles: [master, worker]
    artifact: {{file: packages/kismatic-runtime_1.1.0_all.deb, sha256: {SHA}}}
  - name: registry
    version: 2.8.3
    delivery: manifest
    phase: registry
    artifact: {{file: manifests/registry.yaml, sha256: {SHA}}}
  - name: dns
    version: 1.11.1
    delivery: manifest
    artifact: {{file: manifests/dns.yaml, sha256: {SHA}}}
"
    )
}

fn unescape(s: &str) -> Vec<u8> {
    let (s, times) = match s.rsplit_once('*') {
        Some((body, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => (body, n.parse().expect("n")),
        _ => (s, 1),
    };
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).expect("hex"));
                    i += 2;
                }
                c => panic!("unknown escape \\{}", c as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out.repeat(times)
}

fn run(case: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    for (p, data) in BASE {
        let full = dir.join(p);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(&full, data).expect("write");
    }
    let mut yaml = release_yaml();
    for line in case.lines() {
        if let Some(r) = line.strip_prefix("replace: ") {
            let (from, to) = r.split_once(" => ").expect("replace: FROM => TO");
            let (from, to) =
                (String::from_utf8(unescape(from)).expect("utf-8"), String::from_utf8(unescape(to)).expect("utf-8"));
            assert!(yaml.contains(&from), "{from:?} not in release.yaml");
            yaml = yaml.replacen(&from, &to, 1);
        } else if let Some(w) = line.strip_prefix("write: ") {
            let (path, content) = w.split_once(" = ").expect("write: PATH = CONTENT");
            let full = dir.join(path);
            fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            fs::write(&full, unescape(content)).expect("write");
        }
    }
    fs::write(dir.join("release.yaml"), yaml).expect("write release.yaml");
    let shown = dir.display().to_string();
    match kismatic_release::load_dir(dir) {
        Ok(_) => Vec::new(),
        // Validation problems come one per line after a heading; a syntax error is one line.
        Err(e @ kismatic_release::ReleaseError::Invalid { .. }) => {
            e.to_string().lines().skip(1).map(|l| l.trim().replace(&shown, "$DIR")).collect()
        }
        Err(e) => vec![e.to_string().replace(&shown, "$DIR")],
    }
}

#[test]
fn hostile_releases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut cases: Vec<_> = fs::read_dir(&dir).expect("tests/hostile").map(|e| e.expect("entry").path()).collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        let text = fs::read_to_string(case).expect("read");
        let actual = run(&text);
        let expected: Vec<String> = text.lines().filter_map(|l| l.strip_prefix("expect: ")).map(String::from).collect();
        if std::env::var_os("BLESS").is_some() {
            let mut kept: Vec<String> = text.lines().filter(|l| !l.starts_with("expect: ")).map(String::from).collect();
            kept.extend(actual.iter().map(|a| format!("expect: {a}")));
            fs::write(case, kept.join("\n") + "\n").expect("bless");
        } else if actual != expected {
            failures.push(format!("{}:\n  expected {expected:#?}\n  actual {actual:#?}", case.display()));
        }
        assert!(actual.iter().all(|l| !l.contains('\u{1b}') && l.len() < 2000), "{}: raw or long", case.display());
    }
    assert!(cases.len() >= 15, "only {} release cases", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
