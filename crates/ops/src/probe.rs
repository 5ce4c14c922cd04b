//! Node fact probing: ONE SSH round trip per node running a fixed POSIX sh script, whose line-oriented report is
//! parsed into [`NodeFacts`]. The script text is constant; component names, services and packages are positional
//! arguments (`sh -c SCRIPT kismatic-probe ARGS...`), each shell-quoted by the transport.
//!
//! Report format (version 1), one record per line, fields separated by TAB:
//! ```text
//! kismatic-probe  1
//! file  /etc/kismatic-version      followed by `od -An -v -tx1` hex lines (or `unreadable`), then `endfile`
//! missing  /etc/component-versions
//! statfs  /  <f_bavail> <f_frsize>
//! component  <name>  <binary|package>
//! link  <target of /opt/kismatic/<name>/current>
//! dpkg  <dpkg-query version>
//! unit  LoadState=loaded | ActiveState=active | MainPID=123
//! exe  </proc/<MainPID>/exe target>
//! cmdline, hex lines, endcmdline     kube-controller-manager/kube-scheduler only: /proc/<MainPID>/cmdline
//! file  <path>, hex lines, endfile   ... and the kubeconfig/config files it names (see `api_clients`)
//! audit  read <path> <since> | unreadable <path> | not-kept     kube-apiserver only: its audit log, then
//! call  user agent group version resource subresource removed-release count first last   (read: per caller and API)
//! calls-truncated, endaudit
//! endcomponent
//! end
//! ```
//! Anything unexpected is ignored or reported as an invalid marker; parsing never panics.

use kismatic_core::facts::{AuditLog, AuditedCall, ComponentObservation, Marker, NodeFacts, NodeRead};
use kismatic_core::skew::Upstream;
use kismatic_fleet::{Fleet, NodeError, NodeSession, Target};
use kismatic_plan::Inventory;
use kismatic_release::{Delivery, Release};
use std::collections::BTreeMap;

pub use crate::contract::scripts::PROBE_SCRIPT;
use crate::contract::truncate;
pub use crate::contract::{
    COMPONENT_VERSIONS_FILE, KISMATIC_VERSION_FILE, parse_component_versions, parse_kismatic_version, version_from_exe,
};

/// What to probe for one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentProbe {
    pub name: String,
    /// `binary` or `package` (manifest components live on the cluster, not on nodes).
    pub delivery: Delivery,
    pub service: String,
    pub package: Option<String>,
}

/// The components a node with these roles gets from the release.
pub fn component_probes(release: &Release, roles: &[kismatic_plan::Role]) -> Vec<ComponentProbe> {
    release
        .components_for_roles(roles)
        .map(|c| ComponentProbe {
            name: c.name.clone(),
            delivery: c.delivery,
            service: c.service.clone().unwrap_or_else(|| c.name.clone()),
            package: c.package.clone(),
        })
        .collect()
}

/// The script's positional arguments for these components.
pub fn probe_args(components: &[ComponentProbe]) -> Vec<String> {
    let mut args = Vec::with_capacity(components.len() * 4);
    for c in components {
        args.push(c.name.clone());
        args.push(c.delivery.to_string());
        args.push(c.service.clone());
        args.push(c.package.clone().unwrap_or_default());
    }
    args
}

/// Facts of one node plus, when it could not be read, the typed reason.
#[derive(Debug, Clone)]
pub struct Probed {
    pub facts: NodeFacts,
    pub error: Option<NodeError>,
}

/// Probes every node of the inventory concurrently: one SSH round trip each.
pub async fn probe_nodes(fleet: &Fleet, inventory: &Inventory, release: Option<&Release>) -> Vec<NodeFacts> {
    probe_nodes_detailed(fleet, inventory, release).await.into_iter().map(|p| p.facts).collect()
}

/// [`probe_nodes`], keeping the typed error of each unreadable node (for status columns and exit codes).
pub async fn probe_nodes_detailed(fleet: &Fleet, inventory: &Inventory, release: Option<&Release>) -> Vec<Probed> {
    let targets: Vec<Target> = inventory.nodes.iter().map(|n| Target::new(&n.host, &n.ip)).collect();
    let args: BTreeMap<&str, Vec<String>> = inventory
        .nodes
        .iter()
        .map(|n| (n.host.as_str(), release.map(|r| probe_args(&component_probes(r, &n.roles))).unwrap_or_default()))
        .collect();
    let args = &args;
    let results = fleet
        .on_each(&targets, async |s: &NodeSession| {
            let a = args.get(s.node()).map(Vec::as_slice).unwrap_or_default();
            run_probe(s, a).await
        })
        .await;
    targets
        .iter()
        .zip(results)
        .zip(&inventory.nodes)
        .map(|((t, r), node)| match r {
            Ok(mut facts) => {
                let local = [node.ip.as_str(), node.internal_ip.as_str(), node.host.as_str()];
                for obs in facts.components.values_mut() {
                    obs.upstream = upstream_of(&obs.api_servers, &local);
                }
                Probed { facts, error: None }
            }
            Err(e) => Probed { facts: NodeFacts::unreachable(&t.name, e.to_string()), error: Some(e) },
        })
        .collect()
}

/// A node whose probe takes longer than this (a hung mount under `/`, a wedged systemd) is reported, not waited for.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the probe on one open session and parses its report.
pub async fn run_probe(session: &NodeSession, args: &[String]) -> Result<NodeFacts, NodeError> {
    let mut argv: Vec<&str> = vec!["-c", PROBE_SCRIPT.text(), "kismatic-probe"];
    argv.extend(args.iter().map(String::as_str));
    let out = tokio::time::timeout(PROBE_TIMEOUT, session.run("sh", &argv, None)).await.map_err(|_| {
        NodeError::Session {
            node: session.node().to_string(),
            reason: format!("the probe did not finish within {} s", PROBE_TIMEOUT.as_secs()),
        }
    })??;
    parse_report(session.node(), &out.stdout).map_err(|reason| NodeError::CommandFailed {
        node: session.node().to_string(),
        program: "probe".into(),
        status: "unparseable report".into(),
        stderr: reason,
    })
}

/// Parses the probe's report. Only a missing header or trailer is an error; every field is best-effort.
pub fn parse_report(host: &str, report: &[u8]) -> Result<NodeFacts, String> {
    let text = String::from_utf8_lossy(report);
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.starts_with("kismatic-probe\t1") => {}
        Some(h) => return Err(format!("unexpected probe header {:?}", truncate(h, 80))),
        None => return Err("empty probe report".into()),
    }
    let mut facts = NodeFacts {
        host: host.to_string(),
        read: NodeRead::Ok,
        kismatic_version: Marker::NotInstalled,
        component_markers: Marker::NotInstalled,
        components: BTreeMap::new(),
        disk_free: BTreeMap::new(),
    };
    let mut files: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let mut ended = false;
    while let Some(line) = lines.next() {
        let (kind, rest) = line.split_once('\t').unwrap_or((line, ""));
        match kind {
            "file" => {
                let bytes = hex_block(&mut lines, "endfile");
                files.insert(rest.to_string(), bytes);
            }
            "missing" => {
                files.remove(rest);
            }
            "statfs" => {
                let mut f = rest.split(['\t', ' ']);
                let path = f.next().unwrap_or("/");
                let avail = f.next().and_then(|v| v.trim().parse::<u64>().ok());
                let frsize = f.next().and_then(|v| v.trim().parse::<u64>().ok());
                if let (Some(a), Some(s)) = (avail, frsize) {
                    facts.disk_free.insert(path.to_string(), a.saturating_mul(s));
                }
            }
            "component" => {
                let mut f = rest.split('\t');
                let name = f.next().unwrap_or("").to_string();
                let is_package = f.next() == Some("package");
                let obs = parse_component(&name, is_package, &mut lines);
                if !name.is_empty() {
                    facts.components.insert(name, obs);
                }
            }
            "end" => {
                ended = true;
                break;
            }
            _ => {}
        }
    }
    if !ended {
        return Err("probe report ended early (no `end` line)".into());
    }
    facts.kismatic_version = match files.get(KISMATIC_VERSION_FILE) {
        None => Marker::NotInstalled,
        Some(None) => Marker::Invalid { raw: String::new(), error: "unreadable file".into() },
        Some(Some(bytes)) => parse_kismatic_version(bytes),
    };
    facts.component_markers = match files.get(COMPONENT_VERSIONS_FILE) {
        None => Marker::NotInstalled,
        Some(None) => Marker::Invalid { raw: String::new(), error: "unreadable file".into() },
        Some(Some(bytes)) => parse_component_versions(bytes),
    };
    Ok(facts)
}

fn parse_component<'a>(
    name: &str,
    is_package: bool,
    lines: &mut impl Iterator<Item = &'a str>,
) -> ComponentObservation {
    let mut link = None;
    let mut dpkg = None;
    let mut load_state = None;
    let mut active_state = None;
    let mut exe = None;
    let mut cmdline = None;
    let mut client_files: Vec<Vec<u8>> = Vec::new();
    let mut audit_log = None;
    while let Some(line) = lines.next() {
        let (kind, rest) = line.split_once('\t').unwrap_or((line, ""));
        match kind {
            "endcomponent" => break,
            "cmdline" => cmdline = Some(hex_block(lines, "endcmdline").unwrap_or_default()),
            "audit" => audit_log = Some(audit_block(rest, lines)),
            "file" => client_files.extend(hex_block(lines, "endfile")),
            "link" => link = Some(rest.to_string()),
            "dpkg" => dpkg = Some(rest.trim().to_string()).filter(|v| !v.is_empty()),
            "exe" => exe = Some(rest.to_string()),
            "unit" => match rest.split_once('=') {
                Some(("LoadState", v)) => load_state = Some(v.to_string()),
                Some(("ActiveState", v)) => active_state = Some(v.to_string()),
                _ => {}
            },
            _ => {}
        }
    }
    let service_active = match load_state.as_deref() {
        Some("loaded") => Some(active_state.as_deref() == Some("active")),
        _ => None,
    };
    let installed_version = match (&link, &dpkg) {
        (Some(l), _) => last_segment(l),
        (None, Some(d)) => Some(d.clone()),
        _ => None,
    };
    let running_version = if is_package {
        // Packages: the installed version runs when its service is active.
        dpkg.clone().filter(|_| service_active == Some(true))
    } else {
        exe.as_deref().and_then(|e| version_from_exe(name, e))
    };
    let api_servers = match &cmdline {
        Some(c) => api_servers(c, &client_files),
        None => Vec::new(),
    };
    ComponentObservation { installed_version, running_version, service_active, api_servers, upstream: None, audit_log }
}

/// The `audit` record (`rest`: what follows `audit\t`) and, for a log that was read, its `call` lines up to
/// `endaudit`. A malformed `call` line is skipped: one odd caller must not hide the others.
fn audit_block<'a>(rest: &str, lines: &mut impl Iterator<Item = &'a str>) -> AuditLog {
    let mut f = rest.split('\t');
    match f.next() {
        Some("read") => {}
        Some("unreadable") => return AuditLog::Unreadable { path: f.next().unwrap_or_default().to_string() },
        _ => return AuditLog::NotKept,
    }
    let path = f.next().unwrap_or_default().to_string();
    let since = f.next().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
    let mut calls = Vec::new();
    let mut truncated = false;
    for line in lines.by_ref() {
        match line.split_once('\t') {
            _ if line == "endaudit" => break,
            _ if line == "calls-truncated" => truncated = true,
            Some(("call", fields)) => calls.extend(audited_call(fields)),
            _ => {}
        }
    }
    // The node's awk lists callers in hash order: sorted here so the facts are stable.
    calls.sort_by(|a: &AuditedCall, b| {
        (&a.group, &a.version, &a.resource, &a.subresource, &a.user, &a.user_agent).cmp(&(
            &b.group,
            &b.version,
            &b.resource,
            &b.subresource,
            &b.user,
            &b.user_agent,
        ))
    });
    AuditLog::Read { path, since, calls, truncated }
}

fn audited_call(fields: &str) -> Option<AuditedCall> {
    let f: Vec<&str> = fields.split('\t').collect();
    let [user, user_agent, group, version, resource, subresource, removed_release, count, first, last] = f[..] else {
        return None;
    };
    if version.is_empty() || resource.is_empty() {
        return None;
    }
    Some(AuditedCall {
        user: truncate(user, 256),
        user_agent: truncate(user_agent, 256),
        group: group.to_string(),
        version: version.to_string(),
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        removed_release: removed_release.to_string(),
        count: count.trim().parse().ok()?,
        first: first.to_string(),
        last: last.to_string(),
    })
}

/// The hex lines of an `od` block up to `end`; `None` when the block says `unreadable`.
fn hex_block<'a>(lines: &mut impl Iterator<Item = &'a str>, end: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut readable = true;
    for l in lines.by_ref() {
        match l {
            l if l == end => break,
            "unreadable" => readable = false,
            hex => bytes.extend(hex.split_whitespace().filter_map(|b| u8::from_str_radix(b, 16).ok())),
        }
    }
    readable.then_some(bytes)
}

/// The API servers a controller's process is configured with: `--master` on its command line (it overrides the
/// kubeconfig, as in Kubernetes), else every `server:` of the files it reads (kubeconfig clusters, kube-sim's
/// `api.server`). Order kept, duplicates dropped, at most 16.
fn api_servers(cmdline: &[u8], files: &[Vec<u8>]) -> Vec<String> {
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let mut servers = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--master=") {
            servers.push(v.to_string());
        } else if a == "--master"
            && let Some(v) = args.get(i + 1)
        {
            servers.push(v.clone());
        }
    }
    if servers.is_empty() {
        for f in files {
            servers.extend(server_values(&String::from_utf8_lossy(f)));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    servers.retain(|s| !s.is_empty() && seen.insert(s.clone()));
    servers.truncate(16);
    servers.into_iter().map(|s| truncate(&s, 256)).collect()
}

/// Values of `server:` keys in block (`    server: https://…`) or flow (`{server: https://…, ca: …}`) YAML, quotes
/// removed. A line scan, not a YAML parse: the files are small and machine-written, and an unreadable one only makes
/// the upstream unknown (the stricter case).
fn server_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("server:") {
            let before = rest[..at].chars().next_back();
            let value = &rest[at + "server:".len()..];
            rest = value;
            if before.is_some_and(|c| !(c.is_whitespace() || c == '{' || c == ',')) {
                continue;
            }
            let v = value.trim_start();
            let end = v.find([',', '}', ' ', '\t', '#']).unwrap_or(v.len());
            let v = v[..end].trim_matches(['"', '\'']);
            if !v.is_empty() {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// Where a controller's API servers are: on its own node (every URL names one of `local` addresses, 127.0.0.1,
/// ::1 or localhost), else the load balancer or other masters — `None` when nothing was read.
pub fn upstream_of(servers: &[String], local: &[&str]) -> Option<Upstream> {
    if servers.is_empty() {
        return None;
    }
    let is_local = |url: &str| {
        let host = url_host(url);
        matches!(host, "127.0.0.1" | "::1" | "localhost") || local.iter().any(|l| l.eq_ignore_ascii_case(host))
    };
    Some(if servers.iter().all(|s| is_local(s)) { Upstream::Local } else { Upstream::LoadBalancer })
}

/// `host` of `scheme://host:port/path`, `[v6]:port` or a bare `host:port`.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// `1.2.3` from `1.2.3`, `/opt/kismatic/etcd/1.2.3` or `/opt/kismatic/etcd/1.2.3/`.
fn last_segment(path: &str) -> Option<String> {
    path.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &[u8]) -> String {
        s.iter().map(|b| format!(" {b:02x}")).collect()
    }

    #[test]
    fn parses_a_full_report() {
        let report = format!(
            "kismatic-probe\t1\nfile\t/etc/kismatic-version\n{}\nendfile\nfile\t/etc/component-versions\n{}\nendfile\n\
             statfs\t/\t1000 4096\n\
             component\tetcd\tbinary\nlink\t/opt/kismatic/etcd/3.5.1\nunit\tLoadState=loaded\nunit\tActiveState=active\n\
             unit\tMainPID=42\nexe\t/opt/kismatic/etcd/3.4.23/bin/etcd (deleted)\nendcomponent\n\
             component\tcontainer-runtime\tpackage\ndpkg\t1.1.0\nunit\tLoadState=loaded\nunit\tActiveState=active\nunit\tMainPID=7\n\
             exe\t/usr/bin/runtime\nendcomponent\n\
             component\tkubelet\tbinary\nunit\tLoadState=not-found\nunit\tActiveState=inactive\nunit\tMainPID=0\nendcomponent\n\
             end\n",
            hex(b"1.1.0"),
            hex(b"kubernetes: v1.34.1\netcd: 3.10\n")
        );
        let f = parse_report("n1", report.as_bytes()).expect("parses");
        assert_eq!(f.kismatic_version, Marker::Present { value: semver::Version::new(1, 1, 0) });
        let cv = f.component_markers.present().expect("component markers");
        assert_eq!(cv["kubernetes"], "v1.34.1");
        assert_eq!(cv["etcd"], "3.10");
        assert_eq!(f.disk_free["/"], 4_096_000);
        let etcd = &f.components["etcd"];
        assert_eq!(etcd.installed_version.as_deref(), Some("3.5.1"));
        assert_eq!(etcd.running_version.as_deref(), Some("3.4.23"));
        assert_eq!(etcd.service_active, Some(true));
        let rt = &f.components["container-runtime"];
        assert_eq!(rt.installed_version.as_deref(), Some("1.1.0"));
        assert_eq!(rt.running_version.as_deref(), Some("1.1.0"));
        let kubelet = &f.components["kubelet"];
        assert_eq!(kubelet, &ComponentObservation::default());
    }

    #[test]
    fn missing_empty_and_garbage_markers() {
        let r = "kismatic-probe\t1\nfile\t/etc/kismatic-version\nendfile\nmissing\t/etc/component-versions\nend\n";
        let f = parse_report("n", r.as_bytes()).expect("parses");
        assert_eq!(f.kismatic_version, Marker::Invalid { raw: String::new(), error: "invalid version \"\"".into() });
        assert_eq!(f.component_markers, Marker::NotInstalled);

        assert_eq!(
            parse_kismatic_version(b"abc"),
            Marker::Invalid { raw: "abc".into(), error: "invalid version \"abc\"".into() }
        );
        assert_eq!(parse_kismatic_version(b"1.2.0\n"), Marker::Present { value: semver::Version::new(1, 2, 0) });
        assert!(matches!(parse_kismatic_version(&[0xff, 0xfe]), Marker::Invalid { .. }));
        // Issue 12: a minor past the bound is garbage on a node too (it overflowed the minor distance).
        assert!(matches!(parse_kismatic_version(b"1.9223372036854775808.0"), Marker::Invalid { .. }));
        assert!(matches!(parse_kismatic_version(b"v1.2.0"), Marker::Invalid { .. }));
        assert!(matches!(parse_component_versions(b"- a\n- b\n"), Marker::Invalid { .. }));
        assert!(matches!(parse_component_versions(b"   \n"), Marker::Invalid { .. }));
        assert!(matches!(parse_component_versions(b"a: [1, 2]\n"), Marker::Invalid { .. }));
    }

    #[test]
    fn garbage_reports_never_panic() {
        for r in [
            &b""[..],
            b"kismatic-probe\t1\n",
            b"kismatic-probe\t1\nfile\t/etc/kismatic-version\nzz qq\n",
            b"kismatic-probe\t1\ncomponent\n\nstatfs\t/\tx y\nend\n",
            b"\xff\xfe\x00garbage\nend\n",
            b"kismatic-probe\t1\ncomponent\tx\tbinary\nexe\t/opt/kismatic/x/\nlink\t/\nend\n",
        ] {
            let _ = parse_report("n", r);
        }
        assert!(parse_report("n", b"").is_err());
        assert!(parse_report("n", b"kismatic-probe\t1\n").is_err());
    }

    #[test]
    fn controller_api_servers_from_master_flag_kubeconfig_and_kube_sim_config() {
        let kubeconfig = b"apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority: /ca\n    \
            server: \"https://127.0.10.11:6443\"\n    tls-server-name: kubernetes\n  name: k\n";
        let kube_sim = b"api: {server: https://127.0.10.100:6443, ca: /ca, cert: /c, key: /k}\n";
        let cmd = |args: &[&str]| args.join("\0").into_bytes();
        assert_eq!(
            api_servers(&cmd(&["kcm", "--kubeconfig=/k"]), &[kubeconfig.to_vec()]),
            ["https://127.0.10.11:6443"]
        );
        assert_eq!(
            api_servers(&cmd(&["kube-sim", "--config", "/c"]), &[kube_sim.to_vec()]),
            ["https://127.0.10.100:6443"]
        );
        // --master wins over the kubeconfig, as in Kubernetes.
        assert_eq!(
            api_servers(&cmd(&["kcm", "--master", "https://10.0.0.1:6443", "--kubeconfig=/k"]), &[kubeconfig.to_vec()]),
            ["https://10.0.0.1:6443"]
        );
        assert_eq!(api_servers(&cmd(&["kcm", "--master=http://lb:8080"]), &[]), ["http://lb:8080"]);
        assert!(api_servers(&cmd(&["kcm"]), &[b"garbage\xff: {{".to_vec()]).is_empty());
        // Two clusters, one repeated.
        let two = b"clusters:\n- cluster: {server: 'https://a:1'}\n- cluster:\n    server: https://b:2 # lb\n- cluster: {server: https://a:1}\n";
        assert_eq!(server_values(&String::from_utf8_lossy(two)), ["https://a:1", "https://b:2", "https://a:1"]);
        assert_eq!(api_servers(&cmd(&["x"]), &[two.to_vec()]), ["https://a:1", "https://b:2"]);
    }

    #[test]
    fn upstream_is_local_only_when_every_server_is_on_the_node() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let local = ["127.0.10.11", "10.1.0.11", "master01"];
        assert_eq!(upstream_of(&s(&[]), &local), None);
        assert_eq!(upstream_of(&s(&["https://127.0.10.11:6443"]), &local), Some(Upstream::Local));
        assert_eq!(upstream_of(&s(&["https://localhost:6443", "https://[::1]:6443"]), &local), Some(Upstream::Local));
        assert_eq!(upstream_of(&s(&["https://MASTER01:6443/"]), &local), Some(Upstream::Local));
        assert_eq!(upstream_of(&s(&["https://127.0.10.100:6443"]), &local), Some(Upstream::LoadBalancer));
        assert_eq!(
            upstream_of(&s(&["https://127.0.10.11:6443", "https://127.0.10.12:6443"]), &local),
            Some(Upstream::LoadBalancer)
        );
        assert_eq!(url_host("https://user@h:1/p?q"), "h");
        assert_eq!(url_host("h"), "h");
        assert_eq!(url_host("[fe80::1]:6443"), "fe80::1");
    }

    /// The script itself, run by the machine's `sh` against a real process: a stand-in `systemctl` names the PID of
    /// a process whose command line carries `--config FILE`, and FILE names a kubeconfig (as a
    /// KubeSchedulerConfiguration does).
    /// Runs the probe script by `sh` for `component`, whose service a stand-in `systemctl` (in `dir/bin`) reports as
    /// a real running process with these arguments.
    fn probe_a_running_process(
        dir: &std::path::Path,
        component: &str,
        args: &[&std::ffi::OsStr],
    ) -> std::process::Output {
        use std::os::unix::fs::PermissionsExt;
        let mut child =
            std::process::Command::new("sh").args(["-c", "sleep 30; :", component]).args(args).spawn().expect("spawn");
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let systemctl = bin.join("systemctl");
        std::fs::write(
            &systemctl,
            format!("#!/bin/sh\nprintf 'LoadState=loaded\\nActiveState=active\\nMainPID={}\\n'\n", child.id()),
        )
        .expect("write");
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new("sh")
            .args(["-c", PROBE_SCRIPT.text(), "kismatic-probe", component, "binary", component, ""])
            .env("PATH", path)
            .output()
            .expect("run the probe");
        let _ = child.kill();
        let _ = child.wait();
        out
    }

    #[test]
    fn the_probe_script_reads_a_running_controllers_kubeconfig() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("scheduler.kubeconfig");
        std::fs::write(&kubeconfig, "clusters:\n- cluster:\n    server: https://127.0.10.12:6443\n").expect("write");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, format!("clientConnection:\n  kubeconfig: \"{}\"\n", kubeconfig.display()))
            .expect("write");
        let out = probe_a_running_process(dir.path(), "kube-scheduler", &["--config".as_ref(), config.as_os_str()]);
        let facts = parse_report("master02", &out.stdout).expect("parses");
        let obs = &facts.components["kube-scheduler"];
        assert_eq!(obs.api_servers, ["https://127.0.10.12:6443"], "{}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(upstream_of(&obs.api_servers, &["127.0.10.12"]), Some(Upstream::Local));
    }

    /// An audit event as kube-apiserver 1.20 writes it (Metadata level; field order of its JSON encoder).
    fn audit_event(
        stage: &str,
        verb: &str,
        user: &str,
        agent: &str,
        object_ref: &str,
        at: &str,
        deprecated: bool,
    ) -> String {
        let annotations =
            if deprecated { r#","k8s.io/deprecated":"true","k8s.io/removed-release":"1.22""# } else { "" };
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"{stage}","requestURI":"/apis/x","verb":"{verb}","user":{{"username":"{user}","groups":["system:authenticated"]}},"sourceIPs":["127.0.10.11"],"userAgent":"{agent}","objectRef":{{{object_ref}}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{at}","stageTimestamp":"{at}","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"x\""{annotations}}}}}"#
        )
    }

    #[test]
    fn the_probe_script_aggregates_a_running_api_servers_audit_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ingresses =
            r#""resource":"ingresses","namespace":"default","apiGroup":"extensions","apiVersion":"v1beta1""#;
        let kcm = "kube-controller-manager/v1.20.2 (linux/amd64) kubernetes/faecb19/system:serviceaccount:kube-system:generic-garbage-collector";
        let log = [
            audit_event(
                "ResponseComplete",
                "list",
                "system:serviceaccount:kube-system:generic-garbage-collector",
                kcm,
                ingresses,
                "2026-12-02T10:00:00.000001Z",
                true,
            ),
            audit_event(
                "ResponseComplete",
                "get",
                "kubernetes-admin",
                "kubectl/v1.20.2 (linux/amd64)",
                ingresses,
                "2026-12-02T10:01:00.000001Z",
                true,
            ),
            audit_event(
                "ResponseStarted",
                "watch",
                "kubernetes-admin",
                "kubectl/v1.20.2 (linux/amd64)",
                ingresses,
                "2026-12-02T10:01:30.000001Z",
                true,
            ),
            audit_event(
                "ResponseComplete",
                "list",
                "kubernetes-admin",
                "kubectl/v1.20.2 (linux/amd64)",
                ingresses,
                "2026-12-02T10:02:00.000001Z",
                true,
            ),
            audit_event(
                "ResponseComplete",
                "list",
                "kubernetes-admin",
                "kubectl/v1.20.2 (linux/amd64)",
                r#""resource":"pods","apiVersion":"v1""#,
                "2026-12-02T10:03:00.000001Z",
                false,
            ),
        ]
        .join("\n");
        let audit = dir.path().join("audit.log");
        std::fs::write(&audit, format!("{log}\n")).expect("write");
        let out = probe_a_running_process(
            dir.path(),
            "kube-apiserver",
            &["--audit-log-maxsize=20".as_ref(), "--audit-log-path".as_ref(), audit.as_os_str()],
        );
        let report = String::from_utf8_lossy(&out.stdout);
        let facts = parse_report("master01", &out.stdout).expect("parses");
        let Some(AuditLog::Read { path, since, calls, truncated }) = &facts.components["kube-apiserver"].audit_log
        else {
            panic!("no audit log read: {report}");
        };
        assert_eq!(path, &audit.display().to_string());
        assert_eq!(since.as_deref(), Some("2026-12-02T10:00:00.000001Z"));
        assert!(!truncated);
        assert_eq!(calls.len(), 2, "{report}");
        let admin = calls.iter().find(|c| c.user == "kubernetes-admin").expect("the admin's calls");
        assert_eq!(
            (admin.group.as_str(), admin.version.as_str(), admin.resource.as_str()),
            ("extensions", "v1beta1", "ingresses")
        );
        assert_eq!(admin.count, 2, "completed requests only: the watch has not ended");
        assert_eq!(admin.removed_release, "1.22");
        assert_eq!(
            (admin.first.as_str(), admin.last.as_str()),
            ("2026-12-02T10:01:00.000001Z", "2026-12-02T10:02:00.000001Z")
        );
        assert_eq!(admin.user_agent, "kubectl/v1.20.2 (linux/amd64)");
        let gc = calls.iter().find(|c| c.user != "kubernetes-admin").expect("the garbage collector's");
        assert_eq!((gc.user_agent.as_str(), gc.count), (kcm, 1));
    }

    #[test]
    fn audit_records_of_every_kind_parse() {
        let report = "kismatic-probe\t1\ncomponent\tkube-apiserver\tbinary\naudit\tunreadable\t/var/log/a.log\nendcomponent\n\
                      component\tkube-scheduler\tbinary\naudit\tnot-kept\nendcomponent\n\
                      component\tetcd\tbinary\naudit\tread\t/l\t\ncall\tu\tagent\t\tv1beta1\tpods\t\t\tnot-a-number\t\t\n\
                      call\tshort\ncall\tu\t\tpolicy\tv1beta1\tpodsecuritypolicies\t\t1.25\t7\tA\tB\ncalls-truncated\nendaudit\n\
                      endcomponent\nend\n";
        let facts = parse_report("m", report.as_bytes()).expect("parses");
        assert_eq!(
            facts.components["kube-apiserver"].audit_log,
            Some(AuditLog::Unreadable { path: "/var/log/a.log".into() })
        );
        assert_eq!(facts.components["kube-scheduler"].audit_log, Some(AuditLog::NotKept));
        let Some(AuditLog::Read { since, calls, truncated, .. }) = &facts.components["etcd"].audit_log else {
            panic!("read");
        };
        assert_eq!((since, *truncated), (&None, true));
        assert_eq!(calls.len(), 1, "malformed call lines are skipped: {calls:?}");
        assert_eq!(
            (calls[0].resource.as_str(), calls[0].count, calls[0].removed_release.as_str()),
            ("podsecuritypolicies", 7, "1.25")
        );
    }

    #[test]
    fn exe_versions() {
        assert_eq!(last_segment("3.5.1/").as_deref(), Some("3.5.1"));
    }
}
