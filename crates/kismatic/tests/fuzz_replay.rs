//! Replays the fuzz inputs on stable, in the normal suite (issue 12): every saved crash (`fuzz/regressions/TARGET/`)
//! and every seed (`fuzz/seeds/TARGET/`) runs through the same function the cargo-fuzz target calls
//! (`fuzz/targets.rs`, included here), and must not panic. Add a crash input there when fixing it.

#[allow(dead_code)]
#[path = "../../../fuzz/targets.rs"]
mod targets;

use std::path::Path;

#[test]
fn fuzz_regressions_and_seeds_replay_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for (name, run) in targets::TARGETS {
        for folder in ["regressions", "seeds"] {
            let dir = root.join(folder).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
            files.sort();
            for f in files {
                let data = std::fs::read(&f).expect("readable");
                let result = std::panic::catch_unwind(|| run(&data));
                assert!(result.is_ok(), "{name}: {} panics", f.display());
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 7, "only {replayed} inputs replayed");
}

/// The crashes of issue 12, as the fuzz targets see them.
#[test]
fn issue_12_inputs_do_not_panic() {
    targets::version(b"v1.33.5\nv1.18446744073709551615.0");
    targets::version(b"v1.9223372036854775808.0\nv1.0.0");
    targets::markers(b"1.9223372036854775808.0\n");
}
