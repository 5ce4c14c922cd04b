// The fuzzed code paths, one function per target. Shared with the stable replay test
// (crates/kismatic/tests/fuzz_replay.rs) through `include!`, so a saved crash replays exactly what was fuzzed.
// Each must never panic, whatever the bytes.

use std::path::Path;

/// Plan parser + validation + inventory derivation.
pub fn plan(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kismatic_plan::parse(text, Path::new("/fuzz/plan.yaml"));
    }
}

/// Release parser + validation (artifacts are looked up in a folder that does not exist).
pub fn release(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let dir = Path::new("/nonexistent-fuzz-release");
        let _ = kismatic_release::parse(dir, &dir.join("release.yaml"), text);
    }
}

/// Facts document parser + validation + the analysis of what passes (both modes).
pub fn facts(data: &[u8]) {
    use kismatic_core::checks::{CheckOptions, Mode, analyze};
    if let Ok(facts) = kismatic_core::facts_check::read(data) {
        let release = kismatic_core::synth::release();
        for mode in [Mode::Online, Mode::Offline] {
            let _ = analyze(&facts, &release, &CheckOptions::new(mode));
        }
    }
}

/// The node probe's report parser.
pub fn probe(data: &[u8]) {
    let _ = kismatic_ops::probe::parse_report("fuzz-node", data);
}

/// The node marker parsers (`/etc/kismatic-version`, `/etc/component-versions`).
pub fn markers(data: &[u8]) {
    let _ = kismatic_ops::probe::parse_kismatic_version(data);
    let _ = kismatic_ops::probe::parse_component_versions(data);
}

/// The journal reader.
pub fn journal(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kismatic_journal::parse("fuzz.journal", text);
    }
}

/// The version parser, comparison and minor distance, on two versions split at the first newline.
pub fn version(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\n').unwrap_or((&text, "v1.34.1"));
    let (pa, pb) = (kismatic_core::version::parse(a), kismatic_core::version::parse(b));
    let _ = kismatic_core::version::cmp_str(a, b);
    let _ = kismatic_core::version::same(a, b);
    if let (Some(x), Some(y)) = (pa, pb) {
        let _ = kismatic_core::version::minor_step(&x, &y);
        let _ = kismatic_core::version::with_v(&x);
    }
}

/// A fuzzed code path.
pub type Target = fn(&[u8]);

/// Every target, by name (the replay test walks this).
pub const TARGETS: &[(&str, Target)] = &[
    ("plan", plan),
    ("release", release),
    ("facts", facts),
    ("probe", probe),
    ("markers", markers),
    ("journal", journal),
    ("version", version),
];
