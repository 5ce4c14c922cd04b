//! Reading and validating a facts document (written by `kismatic facts`, or by hand, or by an attacker) before any
//! analysis: like plan files, every problem at once, each with its JSON path. Pure: the caller supplies the bytes.
//!
//! Bounds (docs/checks.md, "Limits"): version numbers as in release files (0..=999999); Kubernetes counts (replicas,
//! PDB counts and integer budgets) 0..=2147483647, the range of the API's int32; PDB percentages 0%..=100%.

use crate::facts::{Controller, Facts, IntOrPercent, Marker};
use kismatic_plan::text::{quoted, shown};
use kismatic_release::MAX_VERSION_NUMBER;
use rustc_hash::FxHashMap;
use std::fmt;

/// Largest count accepted from the Kubernetes API (its counts are int32).
pub const MAX_COUNT: i64 = i32::MAX as i64;

/// One problem in a facts document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsProblem {
    /// `$.kube.pdbs[3].min_available`.
    pub path: String,
    /// Line and column, for documents that do not parse.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for FactsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{line}:{col}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Parses and validates a facts document.
pub fn read(reader: impl std::io::Read) -> Result<Facts, Vec<FactsProblem>> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let facts: Facts = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = json_path(&e.path().to_string());
        let inner = e.into_inner();
        vec![FactsProblem { path, at: Some((inner.line(), inner.column())), message: plain_serde_message(&inner) }]
    })?;
    de.end().map_err(|e| {
        vec![FactsProblem { path: "$".into(), at: Some((e.line(), e.column())), message: plain_serde_message(&e) }]
    })?;
    let problems = validate(&facts);
    if problems.is_empty() { Ok(facts) } else { Err(problems) }
}

fn json_path(p: &str) -> String {
    match p {
        "." | "" => "$".into(),
        p if p.starts_with('[') => format!("${p}"),
        p => format!("$.{p}"),
    }
}

/// serde_json's message without its " at line L column C" (the caller shows the place once) and in the user's
/// terms: a number past i64/u64 is "out of range", not "floating point".
fn plain_serde_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let s = match s.rfind(" at line ") {
        Some(i) if s[i..].contains(" column ") => s[..i].to_string(),
        _ => s,
    };
    let range = |ty: &str| match ty {
        "u8" => "0..=255".to_string(),
        "u16" => "0..=65535".to_string(),
        "u32" => format!("0..={}", u32::MAX),
        "u64" => format!("0..={}", u64::MAX),
        "i32" => format!("{}..={}", i32::MIN, i32::MAX),
        "i64" => format!("{}..={}", i64::MIN, i64::MAX),
        _ => String::new(),
    };
    // "invalid value: integer `-1`, expected u32" / "invalid type: floating point `1e20`, expected i64"
    for prefix in ["invalid value: integer `", "invalid type: floating point `"] {
        if let Some(rest) = s.strip_prefix(prefix)
            && let Some((value, ty)) = rest.split_once("`, expected ")
            && !range(ty).is_empty()
        {
            let whole = value.parse::<f64>().is_ok_and(|f| f.fract() == 0.0);
            return if prefix.contains("integer") || whole {
                format!("{} is out of range {} (a whole number)", shown(value), range(ty))
            } else {
                format!("{} is not a whole number (expected one in {})", shown(value), range(ty))
            };
        }
    }
    s
}

/// Every problem of a parsed document.
pub fn validate(facts: &Facts) -> Vec<FactsProblem> {
    let mut out = Vec::new();
    let mut push = |path: String, message: String| out.push(FactsProblem { path, at: None, message });
    let inv = &facts.inventory;
    if inv.nodes.is_empty() {
        push("$.inventory.nodes".into(), "the inventory has no nodes: there is nothing to upgrade".into());
    }
    // Host names are compared case-insensitively, as Kubernetes node names are.
    let mut inventory: FxHashMap<String, usize> = FxHashMap::default();
    for (i, n) in inv.nodes.iter().enumerate() {
        let at = format!("$.inventory.nodes[{i}].host");
        if n.host.trim().is_empty() {
            push(at, "the host name is empty".into());
            continue;
        }
        if let Some(first) = inventory.insert(n.host.to_ascii_lowercase(), i) {
            inventory.insert(n.host.to_ascii_lowercase(), first);
            push(at, format!("node {} is listed again (first at $.inventory.nodes[{first}])", quoted(&n.host)));
        }
    }
    let mut seen: FxHashMap<String, usize> = FxHashMap::default();
    for (i, nf) in facts.nodes.iter().enumerate() {
        let key = nf.host.to_ascii_lowercase();
        let at = format!("$.nodes[{i}]");
        if !inventory.contains_key(&key) {
            push(format!("{at}.host"), format!("facts for {}, which is not an inventory node", quoted(&nf.host)));
        } else if let Some(first) = seen.insert(key.clone(), i) {
            seen.insert(key, first);
            push(
                format!("{at}.host"),
                format!("second facts for node {} (first at $.nodes[{first}])", quoted(&nf.host)),
            );
        }
        if let Marker::Present { value } = &nf.kismatic_version {
            version_bounds(&mut push, format!("{at}.kismatic_version.value"), value);
        }
    }
    for (i, n) in inv.nodes.iter().enumerate() {
        let key = n.host.to_ascii_lowercase();
        if !n.host.trim().is_empty() && inventory.get(&key) == Some(&i) && !seen.contains_key(&key) {
            push("$.nodes".into(), format!("no facts for inventory node {} ($.inventory.nodes[{i}])", quoted(&n.host)));
        }
    }
    if let Some(kube) = &facts.kube {
        let lists: [(&str, &Vec<Controller>); 6] = [
            ("replica_sets", &kube.replica_sets),
            ("deployments", &kube.deployments),
            ("stateful_sets", &kube.stateful_sets),
            ("daemon_sets", &kube.daemon_sets),
            ("jobs", &kube.jobs),
            ("replication_controllers", &kube.replication_controllers),
        ];
        for (list, ctrls) in lists {
            for (i, c) in ctrls.iter().enumerate() {
                for (field, v) in [("desired_replicas", c.desired_replicas), ("ready_replicas", c.ready_replicas)] {
                    if let Some(v) = v {
                        count(&mut push, format!("$.kube.{list}[{i}].{field}"), v);
                    }
                }
            }
        }
        for (i, p) in kube.pdbs.iter().enumerate() {
            let at = format!("$.kube.pdbs[{i}]");
            for (field, v) in [
                ("disruptions_allowed", p.disruptions_allowed),
                ("current_healthy", p.current_healthy),
                ("desired_healthy", p.desired_healthy),
                ("expected_pods", p.expected_pods),
            ] {
                count(&mut push, format!("{at}.{field}"), v);
            }
            for (field, v) in [("min_available", &p.min_available), ("max_unavailable", &p.max_unavailable)] {
                match v {
                    Some(IntOrPercent::Int(n)) => count(&mut push, format!("{at}.{field}"), *n),
                    Some(pct @ IntOrPercent::Str(s)) if pct.percent().is_none() => push(
                        format!("{at}.{field}"),
                        format!("{} is not a count or a percentage from 0% to 100%", quoted(s)),
                    ),
                    _ => {}
                }
            }
        }
    }
    out
}

fn count(push: &mut impl FnMut(String, String), path: String, v: i64) {
    if !(0..=MAX_COUNT).contains(&v) {
        push(path, format!("{v} is out of range 0..={MAX_COUNT}"));
    }
}

fn version_bounds(push: &mut impl FnMut(String, String), path: String, v: &semver::Version) {
    for (part, n) in [("major", v.major), ("minor", v.minor), ("patch", v.patch)] {
        if n > MAX_VERSION_NUMBER {
            push(path.clone(), format!("version {v} has {part} {n}, out of range 0..={MAX_VERSION_NUMBER}"));
        }
    }
}
