//! etcd access through `etcdctl` on an etcd node over SSH, as Kismatic did: the node's own client certificate is
//! used and snapshots stay on the node. Node contract (docs/node-contract.md; the paths in `kismatic_ops::contract`):
//! for a cluster component `C` (`etcd`, `etcd-networking`), `/opt/kismatic/C/current/bin/etcdctl`, the member's
//! configuration `/etc/kismatic/C/etcd.conf.yml` and client TLS material in
//! `/etc/kismatic/C/tls/{ca.crt,client.crt,client.key}`.

use kismatic_core::facts::{EtcdClusterFacts, EtcdMember};
use kismatic_fleet::{NodeError, NodeSession, OpKind};
use kismatic_ops::contract::scripts::SNAPSHOT_SAVE;
use kismatic_ops::contract::{etcd_config, etcd_tls_dir as tls_dir, etcdctl as etcdctl_path};
use serde::Deserialize;
use std::collections::BTreeMap;

/// How to reach one etcd cluster from one of its member nodes.
#[derive(Debug, Clone)]
pub struct EtcdAccess {
    pub component: String,
    /// Client URL of the member on this node (from its `advertise-client-urls`).
    pub endpoint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{node}: {component}: {message}")]
    Parse { node: String, component: String, message: String },
    #[error("{path}: {error}")]
    Local { path: String, error: String },
}

/// Reads the member's own client URL from its configuration.
pub async fn access(session: &NodeSession, component: &str) -> Result<EtcdAccess, EtcdError> {
    let path = etcd_config(component);
    let text = session.read_file(&path).await?;
    let text = String::from_utf8_lossy(&text);
    let endpoint = advertise_client_url(&text).ok_or_else(|| EtcdError::Parse {
        node: session.node().to_string(),
        component: component.to_string(),
        message: format!("{path} has no advertise-client-urls"),
    })?;
    Ok(EtcdAccess { component: component.to_string(), endpoint })
}

/// First URL of `advertise-client-urls` in an etcd YAML configuration (a comma-separated string there).
pub fn advertise_client_url(config: &str) -> Option<String> {
    config.lines().find_map(|l| {
        let v = l.trim().strip_prefix("advertise-client-urls:")?;
        let first = v.trim().trim_matches(|c| c == '"' || c == '\'' || c == '[' || c == ']').split(',').next()?;
        let first = first.trim().trim_matches(|c| c == '"' || c == '\'');
        (!first.is_empty()).then(|| first.to_string())
    })
}

/// `env ETCDCTL_API=3 etcdctl <TLS flags> <args>` as quoted arguments for `env`.
fn etcdctl_argv(access: &EtcdAccess, args: &[&str]) -> Vec<String> {
    let tls = tls_dir(&access.component);
    let mut argv = vec![
        "ETCDCTL_API=3".to_string(),
        etcdctl_path(&access.component),
        format!("--endpoints={}", access.endpoint),
        format!("--cacert={tls}/ca.crt"),
        format!("--cert={tls}/client.crt"),
        format!("--key={tls}/client.key"),
        "--command-timeout=10s".to_string(),
        "--dial-timeout=5s".to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// Runs `etcdctl` with the node's TLS material against the member on this node; a non-zero exit is an error.
pub async fn etcdctl(session: &NodeSession, access: &EtcdAccess, args: &[&str]) -> Result<Vec<u8>, EtcdError> {
    let argv = etcdctl_argv(access, args);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    Ok(session.run("env", &argv, None).await?.stdout)
}

/// Like [`etcdctl`] but returns the output whatever the exit code: `endpoint status|health --cluster` exit
/// non-zero when a member is down, yet print what they could read.
async fn etcdctl_lenient(session: &NodeSession, access: &EtcdAccess, args: &[&str]) -> Result<Vec<u8>, EtcdError> {
    let argv = etcdctl_argv(access, args);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    Ok(session.output("env", &argv, None).await?.stdout)
}

#[derive(Deserialize)]
struct MemberList {
    #[serde(default)]
    members: Vec<RawMember>,
}

#[derive(Deserialize)]
struct RawMember {
    #[serde(rename = "ID")]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
}

#[derive(Deserialize)]
struct EndpointStatus {
    #[serde(rename = "Endpoint")]
    endpoint: String,
    #[serde(rename = "Status")]
    status: RawStatus,
}

#[derive(Deserialize)]
struct RawStatus {
    header: RawHeader,
    version: String,
    leader: u64,
}

#[derive(Deserialize)]
struct RawHeader {
    member_id: u64,
}

#[derive(Deserialize)]
struct EndpointHealth {
    endpoint: String,
    health: bool,
    #[serde(default)]
    error: Option<String>,
}

/// Facts about one cluster from three `etcdctl` calls: `member list`, `endpoint status --cluster` and
/// `endpoint health --cluster`. A member that does not answer status or health is reported unhealthy, not skipped.
/// `hosts` maps plan host names to their addresses, to tie members to nodes.
pub async fn cluster_facts(
    session: &NodeSession,
    access: &EtcdAccess,
    hosts: &BTreeMap<String, String>,
) -> Result<EtcdClusterFacts, EtcdError> {
    let parse_err = |what: &str, e: serde_json::Error| EtcdError::Parse {
        node: session.node().to_string(),
        component: access.component.clone(),
        message: format!("unreadable `etcdctl {what}` output: {e}"),
    };
    let list: MemberList = serde_json::from_slice(&etcdctl(session, access, &["member", "list", "-w", "json"]).await?)
        .map_err(|e| parse_err("member list", e))?;
    let status_out = etcdctl_lenient(session, access, &["endpoint", "status", "--cluster", "-w", "json"]).await?;
    let statuses: Vec<EndpointStatus> = serde_json::from_slice(&status_out).unwrap_or_default();
    let health_out = etcdctl_lenient(session, access, &["endpoint", "health", "--cluster", "-w", "json"]).await?;
    let healths: Vec<EndpointHealth> = serde_json::from_slice(&health_out).unwrap_or_default();
    Ok(assemble(&access.component, list.members, &statuses, &healths, hosts))
}

fn assemble(
    component: &str,
    members: Vec<RawMember>,
    statuses: &[EndpointStatus],
    healths: &[EndpointHealth],
    hosts: &BTreeMap<String, String>,
) -> EtcdClusterFacts {
    let leader = statuses.iter().map(|s| s.status.leader).find(|l| *l != 0).map(|l| format!("{l:x}"));
    let members = members
        .into_iter()
        .map(|m| {
            let status =
                statuses.iter().find(|s| s.status.header.member_id == m.id || m.client_urls.contains(&s.endpoint));
            let health = healths.iter().find(|h| m.client_urls.contains(&h.endpoint));
            let node = hosts
                .iter()
                .find(|(host, ip)| {
                    host.eq_ignore_ascii_case(&m.name) || m.client_urls.iter().any(|u| url_host(u) == Some(ip.as_str()))
                })
                .map(|(h, _)| h.clone());
            EtcdMember {
                id: format!("{:x}", m.id),
                name: m.name,
                node,
                client_urls: m.client_urls,
                healthy: Some(health.is_some_and(|h| h.health)),
                version: status.map(|s| s.status.version.clone()),
                error: health.and_then(|h| h.error.clone()).filter(|e| !e.is_empty()),
            }
        })
        .collect();
    EtcdClusterFacts { cluster: component.to_string(), members, leader, error: None }
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split("://").nth(1)?;
    let hostport = rest.split('/').next()?;
    Some(hostport.rsplit_once(':').map(|(h, _)| h).unwrap_or(hostport))
}

/// A healthy cluster: every member answers health and a leader exists.
pub fn quorum_problem(f: &EtcdClusterFacts) -> Option<String> {
    if f.members.is_empty() {
        return Some(format!("{}: no members listed", f.cluster));
    }
    let unhealthy: Vec<&str> = f.members.iter().filter(|m| m.healthy != Some(true)).map(|m| m.name.as_str()).collect();
    if !unhealthy.is_empty() {
        return Some(format!("{}: unhealthy member(s): {}", f.cluster, unhealthy.join(", ")));
    }
    if f.leader.is_none() {
        return Some(format!("{}: no leader", f.cluster));
    }
    None
}

/// Snapshots of one cluster kept on its node: this run's and the ones before it (each upgrade takes one; older
/// ones are removed so that the folder does not grow without bound).
pub const SNAPSHOTS_KEPT: usize = 3;

/// Takes a snapshot on the node and verifies it with `snapshot status`; returns the status. The snapshot is named
/// `<cluster>-<run id>.db` in `dir`; only the [`SNAPSHOTS_KEPT`] most recent of the cluster are kept.
pub async fn snapshot(
    session: &NodeSession,
    access: &EtcdAccess,
    dir: &str,
    run_id: &str,
) -> Result<(String, SnapshotInfo), EtcdError> {
    let path = format!("{dir}/{}-{run_id}.db", access.component);
    let keep = SNAPSHOTS_KEPT.to_string();
    let mut argv: Vec<String> = ["-c", SNAPSHOT_SAVE.text(), "kismatic-snapshot", dir, &path, &keep, &access.component]
        .map(String::from)
        .to_vec();
    argv.push("env".into());
    argv.extend(etcdctl_argv(access, &[]));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    session.run_within(OpKind::Snapshot, "sh", &argv, None).await?;
    let out = etcdctl(session, access, &["snapshot", "status", &path, "-w", "json"]).await?;
    let status: SnapshotInfo = serde_json::from_slice(&out).map_err(|e| EtcdError::Parse {
        node: session.node().to_string(),
        component: access.component.clone(),
        message: format!("snapshot {path} did not verify: {e}"),
    })?;
    if status.total_key == 0 {
        return Err(EtcdError::Parse {
            node: session.node().to_string(),
            component: access.component.clone(),
            message: format!("snapshot {path} verified empty (0 keys)"),
        });
    }
    Ok((path, status))
}

/// Copies a snapshot off the node into `local_dir` (created 0700; the file 0600, written beside and renamed).
pub async fn copy_snapshot(
    session: &NodeSession,
    path: &str,
    local_dir: &std::path::Path,
) -> Result<std::path::PathBuf, EtcdError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let bytes = session.run_within(OpKind::Transfer, "cat", &["--", path], None).await?.stdout;
    let local_err = |e: std::io::Error, p: &std::path::Path| EtcdError::Local {
        path: p.display().to_string(),
        error: e.to_string(),
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(local_dir).map_err(|e| local_err(e, local_dir))?;
    let name = path.rsplit('/').next().unwrap_or("etcd-snapshot.db");
    let target = local_dir.join(format!("{}-{name}", session.node()));
    let tmp = local_dir.join(format!(".{}-{name}.tmp", session.node()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| local_err(e, &tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| local_err(e, &tmp))?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| local_err(e, &tmp))?;
    }
    std::fs::rename(&tmp, &target).map_err(|e| local_err(e, &target))?;
    Ok(target)
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct SnapshotInfo {
    pub hash: u64,
    pub revision: i64,
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_url_from_config() {
        let c = "name: e1\nadvertise-client-urls: https://127.0.10.1:2379,https://x:2379\n";
        assert_eq!(advertise_client_url(c).as_deref(), Some("https://127.0.10.1:2379"));
        assert_eq!(advertise_client_url("advertise-client-urls: \"https://a:1\"").as_deref(), Some("https://a:1"));
        assert_eq!(advertise_client_url("name: x"), None);
    }

    #[test]
    fn assemble_ties_members_to_nodes_and_marks_unanswered_unhealthy() {
        let members: MemberList = serde_json::from_str(
            r#"{"header":{"cluster_id":1},"members":[
              {"ID":18446744073709551615,"name":"etcd01","peerURLs":[],"clientURLs":["https://127.0.10.1:2379"]},
              {"ID":2,"name":"etcd02","peerURLs":[],"clientURLs":["https://127.0.10.2:2379"]}]}"#,
        )
        .unwrap();
        let statuses: Vec<EndpointStatus> = serde_json::from_str(
            r#"[{"Endpoint":"https://127.0.10.1:2379","Status":{"header":{"cluster_id":1,"member_id":18446744073709551615,"revision":5,"raft_term":2},"version":"3.4.23","dbSize":1,"leader":2,"raftIndex":1,"raftTerm":2}}]"#,
        )
        .unwrap();
        let healths: Vec<EndpointHealth> =
            serde_json::from_str(r#"[{"endpoint":"https://127.0.10.1:2379","health":true,"took":"1ms"}]"#).unwrap();
        let hosts: BTreeMap<String, String> =
            [("etcd01".into(), "127.0.10.1".into()), ("ETCD02".into(), "127.0.10.2".into())].into();
        let f = assemble("etcd", members.members, &statuses, &healths, &hosts);
        assert_eq!(f.leader.as_deref(), Some("2"));
        assert_eq!(f.members[0].id, "ffffffffffffffff");
        assert_eq!(f.members[0].version.as_deref(), Some("3.4.23"));
        assert_eq!(f.members[0].healthy, Some(true));
        assert_eq!(f.members[1].node.as_deref(), Some("ETCD02"));
        assert_eq!(f.members[1].healthy, Some(false));
        assert_eq!(quorum_problem(&f).as_deref(), Some("etcd: unhealthy member(s): etcd02"));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://127.0.0.1:2379"), Some("127.0.0.1"));
        assert_eq!(url_host("http://h"), Some("h"));
    }
}
