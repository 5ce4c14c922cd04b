use super::*;
use std::fs;

const ETCD_SHA: &str = "PLACEHOLDER";

/// A release directory with real artifacts; returns (dir, text of a valid release.yaml).
fn fixture() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let files: &[(&str, &[u8])] = &[
        ("artifacts/etcd-3.5.1.tar.gz", b"etcd tarball"),
        ("units/etcd.service", b"[Service]\nExecStart=/opt/kismatic/etcd/current/etcd\n"),
        ("packages/kismatic-runtime_1.1.0_all.deb", b"deb"),
        ("manifests/registry.yaml", b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: registry}\n"),
        ("manifests/dns.yaml", b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dns}\n---\n"),
    ];
    for (p, data) in files {
        let full = dir.path().join(p);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(&full, data).expect("write");
    }
    let sha = |p: &str| sha256_file(&dir.path().join(p)).expect("hash");
    let text = format!(
        r#"format: 1
version: 1.1.0
kubernetes: v1.34.1
components:
  - name: etcd
    version: 3.5.1
    delivery: binary
    roles: [etcd]
    artifact: {{file: artifacts/etcd-3.5.1.tar.gz, sha256: {}}}
    unit: {{file: units/etcd.service, sha256: {}}}
  - name: container-runtime
    version: 1.1.0
    delivery: package
    package: kismatic-runtime
    roles: [master, worker, ingress, storage]
    artifact: {{file: packages/kismatic-runtime_1.1.0_all.deb, sha256: {}}}
  - name: registry
    version: 2.8.3
    delivery: manifest
    phase: registry
    artifact: {{file: manifests/registry.yaml, sha256: {}}}
  - name: dns
    version: 1.11.1
    delivery: manifest
    artifact: {{file: manifests/dns.yaml, sha256: {}}}
"#,
        sha("artifacts/etcd-3.5.1.tar.gz"),
        sha("units/etcd.service"),
        sha("packages/kismatic-runtime_1.1.0_all.deb"),
        sha("manifests/registry.yaml"),
        sha("manifests/dns.yaml"),
    );
    (dir, text)
}

fn load_text(dir: &Path, text: &str) -> Result<Release, ReleaseError> {
    fs::write(dir.join(RELEASE_FILE), text).expect("write release.yaml");
    load_dir(dir)
}

/// Replaces `from` (which must occur) and returns the error text of loading the result.
fn err_after(from: &str, to: &str) -> String {
    let (dir, text) = fixture();
    assert!(text.contains(from), "fixture lacks {from:?}");
    let bad = text.replacen(from, to, 1);
    match load_text(dir.path(), &bad) {
        Ok(_) => panic!("release with {to:?} instead of {from:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_err(from: &str, to: &str, expected: &str) {
    let msg = err_after(from, to);
    assert!(msg.contains(expected), "expected {expected:?} in:\n{msg}");
    assert!(msg.contains("release.yaml:"), "no location in:\n{msg}");
}

#[test]
fn valid_release_loads() {
    let (dir, text) = fixture();
    let r = load_text(dir.path(), &text).expect("valid");
    assert_eq!(r.version, semver::Version::new(1, 1, 0));
    assert_eq!(r.kubernetes, "v1.34.1");
    assert_eq!(r.components.len(), 4);
    let etcd = r.component("etcd").expect("etcd");
    assert_eq!(etcd.service.as_deref(), Some("etcd"));
    assert_eq!(etcd.artifact.size, 12);
    assert_eq!(r.component("dns").expect("dns").phase, Some(ServicePhase::Services));
    assert_eq!(r.component("registry").expect("registry").phase, Some(ServicePhase::Registry));
    assert!(verify_artifacts(&r).is_empty());
    assert_eq!(r.components_for_roles(&[Role::Worker]).count(), 1);
    assert!(r.artifact_bytes_for_roles(&[Role::Etcd]) > 12);
    let _ = ETCD_SHA;
}

#[test]
fn digest_mismatch_is_reported() {
    let (dir, text) = fixture();
    let r = load_text(dir.path(), &text).expect("valid");
    fs::write(dir.path().join("manifests/dns.yaml"), b"tampered").expect("write");
    fs::remove_file(dir.path().join("units/etcd.service")).expect("rm");
    let problems = verify_artifacts(&r);
    assert_eq!(problems.len(), 2);
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|t| t.starts_with("etcd: units/etcd.service: cannot read")), "{text:?}");
    assert!(text.iter().any(|t| t.contains("dns: manifests/dns.yaml: sha256 mismatch")), "{text:?}");
}

#[test]
fn missing_release_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = load_dir(dir.path()).expect_err("no file");
    assert!(e.to_string().contains("cannot read") && e.to_string().contains("release.yaml"), "{e}");
}

#[test]
fn unknown_key_has_location() {
    let msg = err_after("    phase: registry\n", "    phase: registry\n    wait: true\n");
    assert!(msg.contains("wait"), "{msg}");
    assert!(msg.contains("release.yaml:"), "{msg}");
}

#[test]
fn unknown_top_level_key() {
    let msg = err_after("format: 1\n", "format: 1\nchannel: stable\n");
    assert!(msg.contains("channel") && msg.contains(":2:"), "{msg}");
}

#[test]
fn bad_release_version() {
    assert_err("version: 1.1.0\n", "version: 1.1\n", "version \"1.1\" is not semver");
}

#[test]
fn release_version_with_v() {
    assert_err("version: 1.1.0\n", "version: v1.1.0\n", "without a leading \"v\"");
}

#[test]
fn kubernetes_without_v() {
    assert_err("kubernetes: v1.34.1", "kubernetes: 1.34.1", "must start with \"v\"");
}

#[test]
fn kubernetes_garbage() {
    assert_err("kubernetes: v1.34.1", "kubernetes: vlatest", "kubernetes \"vlatest\" is not semver");
}

#[test]
fn wrong_format() {
    assert_err("format: 1", "format: 2", "unsupported format 2");
}

#[test]
fn missing_required_key() {
    let msg = err_after("kubernetes: v1.34.1\n", "");
    assert!(msg.contains("kubernetes"), "{msg}");
}

#[test]
fn duplicate_component() {
    assert_err("  - name: dns\n", "  - name: registry\n", "component \"registry\" is listed twice");
}

#[test]
fn bad_component_name() {
    assert_err("  - name: dns\n", "  - name: DNS;rm\n", "component name \"DNS;rm\"");
}

#[test]
fn bad_component_version() {
    assert_err("version: 2.8.3", "version: latest", "registry: version \"latest\" is not semver");
}

#[test]
fn sha_too_short() {
    let (_, text) = fixture();
    let start = text.find("sha256: ").expect("sha") + 8;
    let sha = &text[start..start + 64];
    assert_err(sha, "abc123", "sha256 \"abc123\" must be 64 hexadecimal digits");
}

#[test]
fn sha_not_hex() {
    let (_, text) = fixture();
    let start = text.find("sha256: ").expect("sha") + 8;
    let sha = &text[start..start + 64];
    let bad = format!("{}zz", &sha[..62]);
    assert_err(sha, &bad, "must be 64 hexadecimal digits");
}

#[test]
fn upper_case_sha_is_normalised() {
    let (dir, text) = fixture();
    let start = text.find("sha256: ").expect("sha") + 8;
    let sha = text[start..start + 64].to_string();
    let r = load_text(dir.path(), &text.replacen(&sha, &sha.to_uppercase(), 1)).expect("valid");
    assert_eq!(r.components[0].artifact.sha256, sha);
}

#[test]
fn file_missing() {
    assert_err("file: manifests/dns.yaml", "file: manifests/nope.yaml", "file \"manifests/nope.yaml\" cannot be read");
}

#[test]
fn file_escapes_with_dotdot() {
    assert_err("file: manifests/dns.yaml", "file: ../etc/passwd", "must not contain \"..\"");
}

#[test]
fn file_absolute() {
    assert_err("file: manifests/dns.yaml", "file: /etc/passwd", "must be relative to the release directory");
}

#[test]
fn file_is_directory() {
    assert_err("file: manifests/dns.yaml", "file: manifests", "is not a regular file");
}

#[test]
fn file_symlink_escapes() {
    let (dir, text) = fixture();
    let outside = tempfile::NamedTempFile::new().expect("tmp");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("manifests/evil.yaml")).expect("symlink");
    let bad = text.replacen("file: manifests/dns.yaml", "file: manifests/evil.yaml", 1);
    let msg = load_text(dir.path(), &bad).expect_err("escapes").to_string();
    assert!(msg.contains("outside the release directory"), "{msg}");
}

#[test]
fn file_used_twice() {
    assert_err("file: manifests/dns.yaml", "file: manifests/registry.yaml", "already used by another entry");
}

#[test]
fn binary_needs_unit() {
    let (_, text) = fixture();
    let unit_line = text.lines().find(|l| l.contains("unit:")).expect("unit").to_string() + "\n";
    assert_err(&unit_line, "", "etcd: a binary component needs `unit`");
}

#[test]
fn package_needs_package() {
    assert_err("    package: kismatic-runtime\n", "", "a package component needs `package`");
}

#[test]
fn package_name_hostile() {
    assert_err("package: kismatic-runtime", "package: \"x; rm -rf /\"", "is not a valid package name");
}

#[test]
fn package_on_binary() {
    assert_err("    delivery: binary\n", "    delivery: binary\n    package: etcd\n", "`package` is only for package");
}

#[test]
fn unit_on_manifest() {
    assert_err(
        "    phase: registry\n",
        "    phase: registry\n    unit: {file: units/etcd.service, sha256: 0000000000000000000000000000000000000000000000000000000000000000}\n",
        "`unit` is only for binary components",
    );
}

#[test]
fn manifest_has_no_roles() {
    assert_err("    phase: registry\n", "    phase: registry\n    roles: [master]\n", "has no roles");
}

#[test]
fn phase_on_package() {
    assert_err(
        "    package: kismatic-runtime\n",
        "    package: kismatic-runtime\n    phase: services\n",
        "`phase` is only",
    );
}

#[test]
fn bad_phase() {
    let msg = err_after("phase: registry", "phase: early");
    assert!(msg.contains("early") && msg.contains("release.yaml:"), "{msg}");
}

#[test]
fn binary_without_roles() {
    assert_err("    roles: [etcd]\n", "", "a binary component needs `roles`");
}

#[test]
fn empty_roles() {
    assert_err("roles: [etcd]", "roles: []", "roles must not be empty");
}

#[test]
fn duplicate_role() {
    assert_err("roles: [etcd]", "roles: [etcd, etcd]", "role etcd is listed twice");
}

#[test]
fn unknown_role() {
    let msg = err_after("roles: [etcd]", "roles: [etcd, gluster]");
    assert!(msg.contains("gluster") && msg.contains("release.yaml:"), "{msg}");
}

#[test]
fn unknown_delivery() {
    let msg = err_after("delivery: binary", "delivery: tarball");
    assert!(msg.contains("tarball") && msg.contains("release.yaml:"), "{msg}");
}

#[test]
fn service_with_suffix() {
    assert_err(
        "    roles: [etcd]\n",
        "    roles: [etcd]\n    service: etcd.service\n",
        "without the \".service\" suffix",
    );
}

#[test]
fn service_hostile() {
    assert_err(
        "    roles: [etcd]\n",
        "    roles: [etcd]\n    service: \"etcd $(reboot)\"\n",
        "not a valid systemd unit name",
    );
}

#[test]
fn no_components() {
    let (dir, _) = fixture();
    let msg = load_text(dir.path(), "format: 1\nversion: 1.0.0\nkubernetes: v1.34.1\ncomponents: []\n")
        .expect_err("empty")
        .to_string();
    assert!(msg.contains("at least one component") && msg.contains(":4:"), "{msg}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let (dir, text) = fixture();
    let bad = text
        .replacen("version: 1.1.0\n", "version: one\n", 1)
        .replacen("roles: [etcd]", "roles: []", 1)
        .replacen("file: manifests/dns.yaml", "file: /abs", 1);
    match load_text(dir.path(), &bad) {
        Err(ReleaseError::Invalid { problems, .. }) => {
            assert_eq!(problems.len(), 3, "{problems:?}");
            assert_eq!(problems[0].line, 2);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn not_yaml() {
    let (dir, _) = fixture();
    let msg = load_text(dir.path(), "format: [1\n").expect_err("syntax").to_string();
    assert!(msg.contains("release.yaml:"), "{msg}");
}

#[test]
fn parse_version_strips_v() {
    assert_eq!(parse_version("v1.2.3").expect("ok"), semver::Version::new(1, 2, 3));
    assert!(parse_version("1.2").is_err());
}

#[test]
fn version_numbers_past_the_bound_are_refused_with_the_range() {
    // Issue 12: a kube-apiserver minor of 2^63 panicked later (minor distance); u64::MAX passed the one-minor rule.
    assert_err(
        "version: 2.8.3",
        "version: 1.9223372036854775808.0",
        "registry: version \"1.9223372036854775808.0\" has minor 9223372036854775808, out of range 0..=999999",
    );
    assert_err(
        "version: 2.8.3",
        "version: 1.18446744073709551616.0",
        "registry: version \"1.18446744073709551616.0\" has minor 18446744073709551616, out of range 0..=999999",
    );
    assert_err("kubernetes: v1.34.1", "kubernetes: v1.1000000.0", "has minor 1000000, out of range 0..=999999");
    assert!(parse_version("v999999.999999.999999").is_ok());
}

#[test]
fn long_and_hostile_values_are_shortened_and_escaped() {
    let long = format!("1.2.3-{}", "a".repeat(200_000));
    let msg = err_after("version: 2.8.3", &format!("version: {long}"));
    assert!(msg.contains("is 200006 bytes long (at most 128)"), "{msg}");
    assert!(msg.len() < 1000, "message not shortened: {} bytes", msg.len());
    let msg = err_after("name: registry", "name: \"reg\\e[31mistry\"");
    assert!(msg.contains("component name \"reg\\u{1b}[31mistry\" must be"), "{msg}");
    assert!(!msg.contains('\u{1b}'), "{msg}");
}

#[test]
fn the_manifests_objects_are_kept_for_the_removed_api_gate() {
    let (dir, text) = fixture();
    let r = load_text(dir.path(), &text).expect("loads");
    let heads: Vec<(&str, &str, &str, &str)> = r
        .manifest_objects
        .iter()
        .map(|m| (m.file.as_str(), m.api_version.as_str(), m.kind.as_str(), m.name.as_str()))
        .collect();
    assert_eq!(
        heads,
        [
            ("manifests/registry.yaml", "apps/v1", "Deployment", "registry"),
            ("manifests/dns.yaml", "apps/v1", "Deployment", "dns")
        ]
    );
}
