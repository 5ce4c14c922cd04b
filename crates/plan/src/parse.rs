//! YAML text → raw [`Plan`], with every unknown key reported (with a suggestion), not just the first.
//!
//! serde stops at the first error, so when the typed read fails the text is also read as a generic tree
//! and walked: at each map that is a struct of the model, the known keys are obtained by asking serde
//! itself (a one-key probe document makes `deny_unknown_fields` list them), so the key lists can never
//! drift from the model.

use crate::diag::Diagnostic;
use crate::model::{Loc, Plan, Pos};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

fn options() -> serde_saphyr::Options {
    // Duplicate keys are errors (as in Go yaml.v2); YAML 1.1 booleans (yes/no/on/off) are accepted as Go did.
    let mut o = serde_saphyr::Options::default();
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    // A plan of a thousand nodes is some tens of thousands of events; more replayed alias events than
    // this is an alias bomb, refused before it costs seconds.
    o.alias_limits.max_total_replayed_events = 100_000;
    o
}

pub(crate) fn parse_plan(text: &str, path: &Path) -> Result<Plan, Vec<Diagnostic>> {
    match serde_saphyr::from_str_with_options::<Plan>(text, options()) {
        Ok(mut plan) => {
            plan.path = path.to_path_buf();
            Ok(plan)
        }
        Err(err) => Err(explain(text, path, &err)),
    }
}

/// Turn a serde-saphyr error into diagnostics: all unknown keys of the document, plus the error itself
/// when it is something else (a type error, a YAML syntax error...).
fn explain(text: &str, path: &Path, err: &serde_saphyr::Error) -> Vec<Diagnostic> {
    let inner = err.without_snippet();
    let pos = inner.location().and_then(Pos::from_location);
    let tree_result = serde_saphyr::from_str_with_options::<Loc<Tree>>(text, options());
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    // When the generic read fails for another reason than the typed one (an alias bomb behind an
    // unknown key, say), that is worth reporting too.
    let tree = match tree_result {
        Ok(t) => Some(t),
        Err(e) => {
            let e = e.without_snippet();
            let epos = e.location().and_then(Pos::from_location);
            let msg = message_of(e);
            // One message per position: where the typed read failed at the same place, its message (with the
            // key) says it.
            if epos != pos {
                out.push(Diagnostic::new(path, epos, "", msg));
            }
            None
        }
    };
    if let Some(tree) = &tree {
        let mut probe = Probe::default();
        walk(&tree.value, &mut Vec::new(), "", &mut probe, path, &mut unknown);
    }
    let is_unknown_field = matches!(inner, serde_saphyr::Error::SerdeUnknownField { .. });
    let typed_error_covered = is_unknown_field && !unknown.is_empty();
    out.extend(unknown);
    if !typed_error_covered {
        let key = tree.as_ref().zip(pos).and_then(|(t, pos)| key_at(t, pos)).unwrap_or_default();
        let message = number_message(text, pos, &key, inner).unwrap_or_else(|| message_of(inner));
        out.push(Diagnostic::new(path, pos, key, message));
    }
    out
}

fn message_of(e: &serde_saphyr::Error) -> String {
    match e {
        serde_saphyr::Error::SerdeUnknownField { field, expected, .. } => unknown_key_message(field, "", expected),
        serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => {
            format!("key `{}` appears twice in the same map", sanitize(k))
        }
        serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => "a key appears twice in the same map".to_string(),
        other => humanize(&strip_location(&other.to_string())),
    }
}

/// An integer field given something that is not a 64-bit integer: say what was written and, for a number too large
/// to read, the field's range (the reader's own words are "invalid i64" or "non-finite float ... policy").
fn number_message(text: &str, pos: Option<Pos>, key: &str, e: &serde_saphyr::Error) -> Option<String> {
    let msg = strip_location(&e.to_string());
    if msg != "invalid i64" && !msg.starts_with("non-finite float") {
        return None;
    }
    let tok = scalar_at(text, pos?)?;
    let digits = tok.strip_prefix(['-', '+']).unwrap_or(tok);
    let shown = crate::text::shown(tok);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let range = crate::validate::int_range(key).map(crate::validate::range_text);
        return Some(match range {
            Some(r) => format!("{shown} is out of range; it must be {r}"),
            None => format!("{shown} is out of range for an integer"),
        });
    }
    Some(format!("expected an integer, found {shown}"))
}

/// The plain scalar starting at `pos` (1-based line and column), up to the next separator.
fn scalar_at(text: &str, pos: Pos) -> Option<&str> {
    let line = text.lines().nth(usize::try_from(pos.line).ok()?.checked_sub(1)?)?;
    let col = usize::try_from(pos.column).ok()?.checked_sub(1)?;
    let at = line.char_indices().nth(col)?.0;
    let rest = line.get(at..)?;
    let token = if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
        rest[1..].split(q).next().unwrap_or("")
    } else {
        // A plain scalar runs to the end of the line or a comment; inside a flow collection also to `,`, `]`, `}`.
        let in_flow = line[..at].contains(['{', '[']);
        let end = rest.find(" #").unwrap_or(rest.len());
        let plain = &rest[..end];
        let plain = if in_flow { plain.split([',', ']', '}']).next().unwrap_or("") } else { plain };
        plain.trim()
    };
    Some(token).filter(|t| !t.is_empty())
}

/// serde-saphyr appends " at line L, column C" to messages; we print positions ourselves.
fn strip_location(msg: &str) -> String {
    let stripped = msg.rfind(" at line ").and_then(|i| {
        let (line, col) = msg[i + " at line ".len()..].split_once(", column ")?;
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        (digits(line) && digits(col)).then(|| msg[..i].to_string())
    });
    stripped.unwrap_or_else(|| msg.to_string()).replace('\n', " ")
}

fn humanize(msg: &str) -> String {
    match msg {
        "invalid i64" => "expected an integer".to_string(),
        "invalid bool" => "expected a boolean (true or false)".to_string(),
        "expected string scalar" => "expected a string, found a list or map".to_string(),
        "expected sequence start" => "expected a list".to_string(),
        "expected mapping start" => "expected a map".to_string(),
        m if m.starts_with("multiple YAML documents") => {
            "a plan file holds one YAML document; this starts a second one".to_string()
        }
        m if m.starts_with("cannot deserialize null into string") => "expected a string, found null".to_string(),
        m => m.to_string(),
    }
}

/// A YAML document reduced to its shape: maps with positioned keys, lists, and scalars.
#[derive(Debug)]
enum Tree {
    Map(Vec<(Loc<String>, Loc<Tree>)>),
    Seq(Vec<Loc<Tree>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_none<E>(self) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Tree, D2::Error> {
                Tree::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Tree, A::Error> {
                let mut v = Vec::new();
                while let Some(item) = s.next_element::<Loc<Tree>>()? {
                    v.push(item);
                }
                Ok(Tree::Seq(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Tree, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key::<Loc<String>>()? {
                    let val = m.next_value::<Loc<Tree>>()?;
                    v.push((k, val));
                }
                Ok(Tree::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A step from the root: a map key, or "any element of a list".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Key(String),
    Elem,
}

/// Asks the model which keys a map at a given path accepts; `None` when the map is free-form
/// (labels, option overrides) or not a map in the model at all.
#[derive(Default)]
struct Probe {
    cache: HashMap<Vec<Seg>, Option<Vec<&'static str>>>,
}

const PROBE_KEY: &str = "__kismatic_probe__";

impl Probe {
    fn fields(&mut self, at: &[Seg]) -> Option<Vec<&'static str>> {
        if let Some(hit) = self.cache.get(at) {
            return hit.clone();
        }
        // Flow style needs no indentation bookkeeping. Only keys already known to the model reach here
        // (we recurse into known keys only), so they need no quoting.
        let mut doc = String::new();
        for seg in at {
            match seg {
                Seg::Key(k) => {
                    doc.push('{');
                    doc.push_str(k);
                    doc.push_str(": ");
                }
                Seg::Elem => doc.push('['),
            }
        }
        doc.push('{');
        doc.push_str(PROBE_KEY);
        doc.push_str(": 0}");
        for seg in at.iter().rev() {
            doc.push(match seg {
                Seg::Key(_) => '}',
                Seg::Elem => ']',
            });
        }
        let fields = match serde_saphyr::from_str::<Plan>(&doc) {
            Err(e) => match e.without_snippet() {
                serde_saphyr::Error::SerdeUnknownField { field, expected, .. } if field == PROBE_KEY => {
                    Some(expected.clone())
                }
                _ => None,
            },
            Ok(_) => None,
        };
        self.cache.insert(at.to_vec(), fields.clone());
        fields
    }
}

fn walk(tree: &Tree, at: &mut Vec<Seg>, display: &str, probe: &mut Probe, file: &Path, out: &mut Vec<Diagnostic>) {
    match tree {
        Tree::Map(entries) => {
            let Some(fields) = probe.fields(at) else {
                return;
            };
            for (k, v) in entries {
                if fields.contains(&k.value.as_str()) {
                    at.push(Seg::Key(k.value.clone()));
                    let child = join(display, &k.value);
                    walk(&v.value, at, &child, probe, file, out);
                    at.pop();
                } else {
                    out.push(Diagnostic::new(file, k.pos, "", unknown_key_message(&k.value, display, &fields)));
                }
            }
        }
        Tree::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Seg::Elem);
                walk(&item.value, at, &format!("{display}[{i}]"), probe, file, out);
                at.pop();
            }
        }
        Tree::Scalar => {}
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// The key path of the value (or key) at `pos`, for errors serde reports without one.
fn key_at(tree: &Loc<Tree>, pos: Pos) -> Option<String> {
    fn go(t: &Loc<Tree>, pos: Pos, path: &str) -> Option<String> {
        match &t.value {
            Tree::Map(entries) => entries.iter().find_map(|(k, v)| {
                let child = join(path, &k.value);
                if k.pos == Some(pos) || v.pos == Some(pos) { Some(child) } else { go(v, pos, &child) }
            }),
            Tree::Seq(items) => items.iter().enumerate().find_map(|(i, v)| {
                let child = format!("{path}[{i}]");
                if v.pos == Some(pos) { Some(child) } else { go(v, pos, &child) }
            }),
            Tree::Scalar => None,
        }
    }
    go(tree, pos, "")
}

fn unknown_key_message(key: &str, parent: &str, known: &[&str]) -> String {
    let shown = sanitize(key);
    let place = if parent.is_empty() { "at the top level".to_string() } else { format!("in `{parent}`") };
    if let Some(hint) = legacy_hint(parent, key) {
        return format!("unknown key `{shown}` {place}: {hint}");
    }
    match suggest(key, known) {
        Some(s) => format!("unknown key `{shown}` {place}, did you mean `{s}`?"),
        None => format!("unknown key `{shown}` {place}; known keys: {}", known.join(", ")),
    }
}

/// Keys of older Kismatic plan formats that we deliberately do not read.
fn legacy_hint(parent: &str, key: &str) -> Option<&'static str> {
    match (parent, key) {
        ("docker_registry", "setup_internal") => {
            Some("Kismatic's on-cluster registry setup was removed before v1.12 and is not supported; remove the key")
        }
        ("cluster", "disable_registry_seeding") => {
            Some("this pre-v1.12 key is not supported; remove it (registry seeding is not part of upgrades)")
        }
        _ => None,
    }
}

/// Control characters and the like must not reach a terminal verbatim.
pub(crate) fn sanitize(s: &str) -> String {
    crate::text::shown(s).into_owned()
}

/// The closest known key, if it is close enough to be a plausible typo.
pub(crate) fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let k = key.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for cand in known {
        let c = cand.to_ascii_lowercase();
        let d = levenshtein(&k, &c);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, cand));
        }
    }
    let (d, cand) = best?;
    let limit = (k.chars().count().max(cand.len()) / 3).max(1);
    if d <= limit {
        return Some(cand);
    }
    // `hostname` for `host`, `ssh_key_file` for `ssh_key`: a known key that is a prefix of the typo.
    known.iter().find(|c| c.len() >= 2 && k.starts_with(&c.to_ascii_lowercase())).copied()
}

pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_basics() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("usr", "user"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let known = ["user", "ssh_key", "ssh_port", "known_hosts"];
        assert_eq!(suggest("usr", &known), Some("user"));
        assert_eq!(suggest("sshkey", &known), Some("ssh_key"));
        assert_eq!(suggest("SSH_PORT", &known), Some("ssh_port"));
        assert_eq!(suggest("ssh_key_file", &known), Some("ssh_key"));
        assert_eq!(suggest("password", &known), None);
        assert_eq!(suggest("internal_ip", &["host", "ip", "internalip"]), Some("internalip"));
        assert_eq!(suggest("hostname", &["host", "ip", "internalip"]), Some("host"));
    }

    #[test]
    fn probe_lists_struct_keys_and_skips_free_maps() {
        let mut p = Probe::default();
        let ssh = p.fields(&[Seg::Key("cluster".into()), Seg::Key("ssh".into())]);
        assert_eq!(ssh, Some(vec!["user", "ssh_key", "ssh_port", "known_hosts"]));
        let node = p.fields(&[Seg::Key("etcd".into()), Seg::Key("nodes".into()), Seg::Elem]);
        assert_eq!(node, Some(vec!["host", "ip", "internalip", "labels", "taints", "kubelet"]));
        let labels =
            p.fields(&[Seg::Key("worker".into()), Seg::Key("nodes".into()), Seg::Elem, Seg::Key("labels".into())]);
        assert_eq!(labels, None);
        let root = p.fields(&[]);
        assert!(root.is_some_and(|r| r.contains(&"docker_registry")));
    }

    #[test]
    fn sanitize_escapes_control_characters() {
        assert_eq!(sanitize("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
    }
}
