//! The node contract (docs/node-contract.md) in one place: the paths kismatic reads and writes on a node, the
//! version markers' formats with their parser and their writer, and the running-version rule. Used by the probe
//! (reading), staging and installing (paths, running version) and marker writing.

use kismatic_core::facts::Marker;
use kismatic_fleet::{NodeError, NodeSession};
use kismatic_release::{Component, Delivery, Release};
use std::collections::BTreeMap;

pub mod scripts;

/// The Kismatic release the node was last brought to: semver without `v`.
pub const KISMATIC_VERSION_FILE: &str = "/etc/kismatic-version";
/// YAML map component → version for the node's components, plus `kubernetes`; the masters' also records the
/// on-cluster services.
pub const COMPONENT_VERSIONS_FILE: &str = "/etc/component-versions";
/// `binary` components: `<OPT>/<component>/<version>/`, `current` and `previous` links.
pub const OPT: &str = "/opt/kismatic";
/// The file inside each staged version directory (`<OPT>/<component>/<version>/`) naming the sha256 of the
/// artifact it was unpacked from; a directory whose marker does not name the release's digest is not staged (it is
/// replaced).
pub const DIGEST_MARKER: &str = ".kismatic-sha256";
/// Where the units of `binary` components are written (`<UNIT_DIR>/<service>.service`).
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where artifacts are staged on a node before their digest is checked.
pub const STAGING: &str = "/var/cache/kismatic/staging";
/// Where etcd snapshots are written on the etcd node that takes them (0700).
pub const SNAPSHOT_DIR: &str = "/var/lib/kismatic/backups";
/// The cluster's run lock, on the first etcd node.
pub const CLUSTER_LOCK: &str = "/var/lib/kismatic/run.lock";
/// An etcd cluster's `etcdctl` on a member's node.
pub fn etcdctl(cluster: &str) -> String {
    format!("{OPT}/{cluster}/current/bin/etcdctl")
}

/// Where the components' configuration lives: `<CONFIG>/<component>/`, the node's own (upgrades do not rewrite it).
pub const CONFIG: &str = "/etc/kismatic";

/// A component's configuration folder.
pub fn config_dir(component: &str) -> String {
    format!("{CONFIG}/{component}")
}

/// An etcd member's configuration (its `advertise-client-urls` is the member's endpoint).
pub fn etcd_config(cluster: &str) -> String {
    format!("{}/etcd.conf.yml", config_dir(cluster))
}

/// An etcd member's client TLS material: `ca.crt`, `client.crt`, `client.key`.
pub fn etcd_tls_dir(cluster: &str) -> String {
    format!("{}/tls", config_dir(cluster))
}

/// Markers larger than this are garbage; reading stops there.
pub const MARKER_LIMIT: usize = 64 * 1024;

/// The `<version>` segment of `/opt/kismatic/<name>/<version>/...` (a replaced binary reads `... (deleted)`): the
/// running-version rule, applied to the service's `/proc/<MainPID>/exe`.
pub fn version_from_exe(name: &str, exe: &str) -> Option<String> {
    let prefix = format!("{OPT}/{name}/");
    let rest = exe.strip_prefix(&prefix)?;
    let (version, _) = rest.split_once('/')?;
    (!version.is_empty() && version != "current").then(|| version.to_string())
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max).collect::<String>()) }
}

fn raw_text(bytes: &[u8]) -> String {
    let limited = &bytes[..bytes.len().min(MARKER_LIMIT)];
    truncate(&String::from_utf8_lossy(limited), 200)
}

/// `/etc/kismatic-version`: semver without `v`; surrounding whitespace tolerated (hand-edited files end in a
/// newline). Anything else, including an empty file, is `invalid version "<raw>"`.
pub fn parse_kismatic_version(bytes: &[u8]) -> Marker<semver::Version> {
    let raw = raw_text(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.trim(),
        Err(_) => return Marker::Invalid { error: format!("invalid version {raw:?}: not UTF-8"), raw },
    };
    // The release's bounded parser (no leading `v` here): a minor of 2^63 on a node is garbage, not a version.
    match kismatic_release::parse_version(text).ok().filter(|_| !text.starts_with('v')) {
        Some(v) => Marker::Present { value: v },
        None => Marker::Invalid { error: format!("invalid version {:?}", truncate(text, 200)), raw },
    }
}

/// `/etc/component-versions`: a YAML map of component → version. Plain scalars are kept as written
/// (`3.10` stays `3.10`).
pub fn parse_component_versions(bytes: &[u8]) -> Marker<BTreeMap<String, String>> {
    let raw = raw_text(bytes);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Marker::Invalid { raw, error: "not UTF-8".into() };
    };
    if text.trim().is_empty() {
        return Marker::Invalid { raw, error: "empty file".into() };
    }
    match serde_saphyr::from_str::<BTreeMap<String, String>>(text) {
        Ok(map) => Marker::Present { value: map },
        Err(e) => {
            let first = e.to_string().lines().next().unwrap_or("").to_string();
            Marker::Invalid { raw, error: format!("not a YAML map of component versions: {first}") }
        }
    }
}

/// The marker files' contents for a node at `release` with these components (`/etc/component-versions` is a YAML
/// map component → version plus `kubernetes`).
pub fn marker_texts<'a>(release: &Release, components: impl Iterator<Item = &'a Component>) -> (String, String) {
    let mut versions = String::new();
    for c in components {
        versions.push_str(&format!("{}: {}\n", c.name, yaml_scalar(&c.version)));
    }
    versions.push_str(&format!("kubernetes: {}\n", yaml_scalar(&release.kubernetes)));
    (release.version.to_string(), versions)
}

/// A master's component-versions text: its own components (`own`, from [`marker_texts`]) plus the on-cluster
/// service entries its current marker records (`existing`), which only the services phase changes.
pub fn with_service_entries(own: &str, existing: &BTreeMap<String, String>, release: &Release) -> String {
    let mut text = own.to_string();
    for c in release.components.iter().filter(|c| c.delivery == Delivery::Manifest) {
        if let Some(v) = existing.get(&c.name) {
            text.push_str(&format!("{}: {}\n", c.name, yaml_scalar(v)));
        }
    }
    text
}

/// A whole component-versions text from a map (every value quoted).
pub fn component_versions_text(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}: {}\n", quoted(v))).collect()
}

// Versions are validated semver-ish strings, but quote anything YAML could misread (e.g. `1.10` as a float).
pub(crate) fn yaml_scalar(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        && s.chars().any(|c| c.is_ascii_alphabetic())
    {
        s.to_string()
    } else {
        quoted(s)
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The node's component-versions marker, read with the probe's parser; an absent or unreadable marker counts as
/// empty (it is rewritten whole).
pub async fn read_component_versions(s: &NodeSession) -> Result<BTreeMap<String, String>, NodeError> {
    let out = s.output("cat", &["--", COMPONENT_VERSIONS_FILE], None).await?;
    Ok(parse_component_versions(&out.stdout).present().cloned().unwrap_or_default())
}

/// Sets entries in a node's component-versions marker, keeping the others (two round trips: read, write).
pub async fn set_component_versions(s: &NodeSession, entries: &[(&str, &str)]) -> Result<(), NodeError> {
    let mut map = read_component_versions(s).await?;
    for (k, v) in entries {
        map.insert((*k).to_string(), (*v).to_string());
    }
    s.write_file(COMPONENT_VERSIONS_FILE, component_versions_text(&map).as_bytes(), 0o644).await
}

/// Writes the node's markers (only after all its components are verified at the target).
/// Both files in one round trip, each replaced atomically; the version marker last, so that a node whose
/// `/etc/kismatic-version` says the new release always has the matching component list.
pub async fn write_markers(s: &NodeSession, version: &str, component_versions: &str) -> Result<(), NodeError> {
    s.run("sh", &["-c", scripts::WRITE_MARKERS.text(), "kismatic-markers", component_versions, version], None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_are_quoted_when_ambiguous() {
        assert_eq!(yaml_scalar("v1.34.1"), "v1.34.1");
        assert_eq!(yaml_scalar("3.5.1"), "\"3.5.1\"");
        assert_eq!(yaml_scalar("1.10"), "\"1.10\"");
        assert_eq!(yaml_scalar("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn exe_versions() {
        assert_eq!(version_from_exe("etcd", "/opt/kismatic/etcd/3.5.1/etcd").as_deref(), Some("3.5.1"));
        assert_eq!(version_from_exe("etcd", "/usr/bin/etcd"), None);
        assert_eq!(version_from_exe("etcd", "/opt/kismatic/etcd/current/etcd"), None);
    }

    /// What the writers write, the parser reads back as written: own components, kept service entries, and a
    /// merged map.
    #[test]
    fn written_markers_parse_back() {
        let release = kismatic_core::synth::release();
        let own: Vec<&Component> = release.components_for_roles(&[kismatic_plan::Role::Master]).collect();
        let (version, text) = marker_texts(&release, own.iter().copied().filter(|c| c.delivery != Delivery::Manifest));
        assert_eq!(parse_kismatic_version(version.as_bytes()), Marker::Present { value: release.version.clone() });
        let existing = BTreeMap::from([("dns".to_string(), "1.10".to_string()), ("old".to_string(), "x".to_string())]);
        let merged = with_service_entries(&text, &existing, &release);
        let parsed = parse_component_versions(merged.as_bytes()).present().cloned().unwrap();
        assert_eq!(parsed["dns"], "1.10", "a version YAML would read as a float is kept as written");
        assert_eq!(parsed["kubernetes"], "v1.34.1");
        assert_eq!(parsed["kube-apiserver"], "1.34.1");
        assert!(!parsed.contains_key("old"), "only the release's services are kept");
        let again = parse_component_versions(component_versions_text(&parsed).as_bytes()).present().cloned();
        assert_eq!(again.as_ref(), Some(&parsed));
    }
}
