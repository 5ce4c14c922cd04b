//! Table-driven tests over `tests/facts/*.json`: malformed and hostile facts documents (issue 12).
//!
//! Each case starts from a generated facts document (`synth::generate(8, 200)`, serialized), sets JSON pointers
//! (`"set": {"/inventory/nodes/1/host": ""}`), replaces text in the serialized document (`"replace": [[from,
//! to]]`, for what JSON values cannot say: numbers past i64, broken syntax), removes list elements (`"remove":
//! ["/nodes/7"]`), and expects exactly the listed
//! problems (`"expect"`, as shown to the user). A case without problems must also pass the analysis without
//! panicking. `BLESS=1 cargo test -p kismatic-core --test facts_fixtures` rewrites `expect` (review the diff!).

use kismatic_core::checks::{CheckOptions, Mode, analyze};
use kismatic_core::{facts_check, synth};
use serde_json::Value;
use std::fs;
use std::path::Path;

fn base() -> String {
    serde_json::to_string(&synth::generate(8, 200)).expect("serializes")
}

#[test]
fn facts_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/facts");
    let mut cases: Vec<_> = fs::read_dir(&dir).expect("tests/facts").map(|e| e.expect("entry").path()).collect();
    cases.sort();
    let base = base();
    let release = synth::release();
    let mut failures = Vec::new();
    for case in &cases {
        let mut spec: Value = serde_json::from_str(&fs::read_to_string(case).expect("read")).expect("case is JSON");
        let mut doc: Value = serde_json::from_str(&base).expect("base");
        for (ptr, v) in spec["set"].as_object().cloned().unwrap_or_default() {
            match doc.pointer_mut(&ptr) {
                Some(slot) => *slot = v,
                None => {
                    // A key the base lacks: added to its object.
                    let (parent, key) = ptr.rsplit_once('/').expect("pointer");
                    let obj = doc.pointer_mut(parent).and_then(Value::as_object_mut);
                    obj.unwrap_or_else(|| panic!("{}: no object at {parent}", case.display())).insert(key.into(), v);
                }
            }
        }
        for ptr in spec["remove"].as_array().cloned().unwrap_or_default() {
            let ptr = ptr.as_str().expect("pointer");
            let (parent, index) = ptr.rsplit_once('/').expect("pointer to an element");
            let list = doc.pointer_mut(parent).and_then(Value::as_array_mut).expect("parent is a list");
            list.remove(index.parse().expect("index"));
        }
        let mut text = doc.to_string();
        for pair in spec["replace"].as_array().cloned().unwrap_or_default() {
            let (from, to) = (pair[0].as_str().expect("from"), pair[1].as_str().expect("to"));
            assert!(text.contains(from), "{}: {from:?} not in the document", case.display());
            text = text.replacen(from, to, 1);
        }
        let actual: Vec<String> = match facts_check::read(text.as_bytes()) {
            Ok(facts) => {
                for mode in [Mode::Online, Mode::Offline] {
                    let _ = analyze(&facts, &release, &CheckOptions::new(mode));
                }
                Vec::new()
            }
            Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
        };
        let expected: Vec<String> = spec["expect"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default();
        if std::env::var_os("BLESS").is_some() {
            spec["expect"] = actual.iter().cloned().map(Value::String).collect();
            fs::write(case, serde_json::to_string_pretty(&spec).expect("json") + "\n").expect("bless");
        } else if actual != expected {
            failures.push(format!("{}:\n  expected {expected:#?}\n  actual {actual:#?}", case.display()));
        }
    }
    assert!(cases.len() >= 15, "only {} facts cases", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore]
fn dump_base() {
    println!("{}", serde_json::to_string_pretty(&serde_json::from_str::<Value>(&base()).expect("json")).expect("s"));
}
