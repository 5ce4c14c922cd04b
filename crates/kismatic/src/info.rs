//! `kismatic info`: the version of the cluster and of every node, read from every node concurrently (one SSH round
//! trip each), with drift between the markers and what is installed and running. Output formats: docs/info.md.
use anyhow::Context;
use kismatic_core::facts::{Marker, NodeFacts};
use kismatic_core::summary::{ClusterVersionState, ClusterVersionSummary, summarize};
use kismatic_fleet::{Fleet, FleetConfig, NodeError};
use kismatic_plan::Inventory;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Version of the `-o json` document; bumped only on incompatible changes.
pub const INFO_FORMAT: u32 = 1;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// The plan file describing the cluster.
    #[arg(short = 'f', long = "plan-file", default_value = "kismatic-cluster.yaml")]
    pub plan_file: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Simple)]
    pub output: OutputFormat,
    /// Release directory: probe the components it declares for each node's roles, and tell whether each node is
    /// at that release. Without it, components found under /opt/kismatic on each node are probed.
    #[arg(long = "release")]
    pub release: Option<PathBuf>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// SSH options shared by every command that talks to nodes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SshArgs {
    /// Accept and record the host keys of nodes not yet in known_hosts (a changed key is always refused).
    #[arg(long = "trust-new-hosts")]
    pub trust_new_hosts: bool,
}

impl SshArgs {
    /// The fleet configuration for this inventory and these options.
    pub fn fleet_config(&self, inventory: &Inventory) -> FleetConfig {
        let mut config = FleetConfig::from_plan(&inventory.ssh);
        config.trust_new_hosts = self.trust_new_hosts;
        config
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Simple,
    Json,
}

pub fn run(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let inventory = kismatic_plan::load(&args.plan_file)
        .with_context(|| format!("reading plan file {}", args.plan_file.display()))?;
    let release = match &args.release {
        Some(dir) => Some(
            kismatic_release::load_dir(dir).with_context(|| format!("reading release directory {}", dir.display()))?,
        ),
        None => None,
    };
    let fleet = Fleet::new(args.ssh.fleet_config(&inventory)).context("setting up SSH")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let probed = runtime.block_on(kismatic_ops::probe_nodes_detailed(&fleet, &inventory, release.as_ref()));
    drop(fleet);
    let facts: Vec<NodeFacts> = probed.iter().map(|p| p.facts.clone()).collect();
    let errors: Vec<Option<NodeError>> = probed.into_iter().map(|p| p.error).collect();
    let summary = summarize(&facts, release.as_ref());
    let report = build_report(&inventory, &facts, &errors, &summary);
    let text = match args.output {
        OutputFormat::Simple => render_simple(&report),
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&report).context("rendering JSON")?;
            s.push('\n');
            s
        }
    };
    crate::out!("{text}");
    if report.nodes_unreadable > 0 {
        eprintln!("error: {} of {} nodes could not be read", report.nodes_unreadable, report.nodes.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------------------------
// The report: what both output formats show (the JSON document is this, serialized; stable, see docs/info.md)
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct InfoReport {
    pub format: u32,
    /// The release every node is at, when all nodes were read and agree.
    pub cluster_version: Option<String>,
    /// Earliest and latest valid `/etc/kismatic-version` over the nodes read.
    pub earliest_version: Option<String>,
    pub latest_version: Option<String>,
    /// Nodes disagree (Kismatic's `IsTransitioning`).
    pub transitioning: bool,
    /// `--release` version, when given.
    pub target_version: Option<String>,
    /// Every node at the target release (markers and running versions); `null` without `--release`.
    pub at_target: Option<bool>,
    /// Why the `--release` cannot be applied while the cluster transitions to another release; `null` otherwise.
    pub target_refused: Option<String>,
    pub nodes_unreadable: usize,
    pub nodes: Vec<NodeReport>,
}

#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub ip: String,
    pub roles: Vec<String>,
    /// `ok`, `drift`, `not_installed`, `invalid_marker`, or why the node could not be read: `unreachable`,
    /// `host_key_changed`, `host_key_unknown`, `auth_failed`, `sudo_failed`, `command_failed`, `session_error`.
    pub status: String,
    /// Human message for every status but `ok` and `drift`.
    pub error: Option<String>,
    /// `/etc/kismatic-version` when valid.
    pub version: Option<String>,
    /// `/etc/kismatic-version` as found: `{"state":"present","value":..}`, `{"state":"not_installed"}` or
    /// `{"state":"invalid","raw":..,"error":..}`; `null` when the node could not be read.
    pub version_marker: Option<Marker<semver::Version>>,
    /// `/etc/component-versions` as found (same shape); `null` when the node could not be read.
    pub component_markers: Option<Marker<BTreeMap<String, String>>>,
    /// Per component found on the node: marker, installed and running version, service state.
    pub components: BTreeMap<String, ComponentReport>,
    pub drift: Vec<DriftReport>,
    /// Path → bytes available.
    pub disk_free: BTreeMap<String, u64>,
    /// At the `--release` target; `null` without one or when unreadable.
    pub at_target: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ComponentReport {
    pub marker: Option<String>,
    pub installed: Option<String>,
    pub running: Option<String>,
    pub service_active: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct DriftReport {
    pub component: String,
    /// `marker-vs-installed`, `installed-vs-running`, `marker-vs-running`, `not-running`.
    pub kind: String,
    pub message: String,
}

fn build_report(
    inventory: &Inventory,
    facts: &[NodeFacts],
    errors: &[Option<NodeError>],
    summary: &ClusterVersionSummary,
) -> InfoReport {
    let mut nodes = Vec::with_capacity(facts.len());
    let mut unreadable = 0;
    for (i, f) in facts.iter().enumerate() {
        let node = inventory.nodes.iter().find(|n| n.host == f.host);
        let row = summary.nodes.iter().find(|r| r.host == f.host);
        let error = errors.get(i).and_then(Option::as_ref);
        let drift: Vec<DriftReport> = summary
            .drift
            .iter()
            .filter(|d| d.host == f.host)
            .map(|d| DriftReport {
                component: d.component.clone(),
                kind: serde_json::to_value(d.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                message: d.message.clone(),
            })
            .collect();
        let readable = f.is_reachable();
        let (status, message) = if let Some(e) = error {
            (e.kind().replace('-', "_"), Some(e.to_string()))
        } else if !readable {
            let msg = match &f.read {
                kismatic_core::facts::NodeRead::Unreachable { error } => error.clone(),
                kismatic_core::facts::NodeRead::Ok => String::new(),
            };
            ("unreachable".to_string(), Some(msg))
        } else {
            match &f.kismatic_version {
                Marker::NotInstalled => ("not_installed".to_string(), Some("not installed".to_string())),
                Marker::Invalid { error, .. } => ("invalid_marker".to_string(), Some(error.clone())),
                Marker::Present { .. } if !drift.is_empty() => ("drift".to_string(), None),
                Marker::Present { .. } => ("ok".to_string(), None),
            }
        };
        if !readable {
            unreadable += 1;
        }
        let components = row
            .map(|r| {
                r.components
                    .iter()
                    .map(|(k, c)| {
                        (
                            k.clone(),
                            ComponentReport {
                                marker: c.marker.clone(),
                                installed: c.installed.clone(),
                                running: c.running.clone(),
                                service_active: c.service_active,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        nodes.push(NodeReport {
            name: f.host.clone(),
            ip: node.map(|n| n.ip.clone()).unwrap_or_default(),
            roles: node.map(|n| n.roles.iter().map(|r| r.to_string()).collect()).unwrap_or_default(),
            status,
            error: message,
            version: f.kismatic_version.present().filter(|_| readable).map(|v| v.to_string()),
            version_marker: readable.then(|| f.kismatic_version.clone()),
            component_markers: readable.then(|| f.component_markers.clone()),
            components,
            drift,
            disk_free: f.disk_free.clone(),
            at_target: row.and_then(|r| r.at_target),
        });
    }
    let (cluster_version, earliest, latest, transitioning) = match &summary.state {
        ClusterVersionState::At { version } => {
            (Some(version.to_string()), Some(version.to_string()), Some(version.to_string()), false)
        }
        ClusterVersionState::Transitioning { from, to } => {
            (None, Some(from.to_string()), Some(to.to_string()), from.cmp_precedence(to).is_ne())
        }
        ClusterVersionState::Unknown => (None, None, None, false),
    };
    InfoReport {
        format: INFO_FORMAT,
        cluster_version,
        earliest_version: earliest,
        latest_version: latest,
        transitioning,
        target_version: summary.target.as_ref().map(|v| v.to_string()),
        at_target: summary.at_target,
        target_refused: summary.transition_conflict.as_ref().map(|c| c.message()),
        nodes_unreadable: unreadable,
        nodes,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Simple output: Kismatic's header and table, plus our columns and sections
// ---------------------------------------------------------------------------------------------------------------

fn render_simple(r: &InfoReport) -> String {
    let mut out = String::new();
    let unknown = r.nodes.iter().filter(|n| n.version.is_none()).count();
    match (&r.cluster_version, &r.earliest_version, &r.latest_version) {
        (Some(v), _, _) => out.push_str(&format!("Cluster Version: v{v}\n")),
        (None, Some(a), Some(b)) if r.transitioning => out.push_str(&format!("Transitioning from v{a} to v{b}\n")),
        (None, Some(a), _) => out.push_str(&format!(
            "Cluster Version: v{a} on the nodes read ({unknown} node{} without a version)\n",
            if unknown == 1 { "" } else { "s" }
        )),
        _ => out.push_str("Cluster Version: unknown (no node has a valid /etc/kismatic-version)\n"),
    }
    if let Some(t) = &r.target_version {
        let at = if r.at_target == Some(true) { "yes" } else { "no" };
        out.push_str(&format!("Target Release: v{t} (cluster at target: {at})\n"));
    }
    if let Some(why) = &r.target_refused {
        out.push_str(&format!("Target refused: {why}\n"));
    }
    out.push_str("\nNodes:\n");
    let mut rows = vec![vec![
        "Name".to_string(),
        "IP".to_string(),
        "Roles".to_string(),
        "Kismatic Version".to_string(),
        "Status".to_string(),
        "Components".to_string(),
    ]];
    for n in &r.nodes {
        rows.push(vec![
            n.name.clone(),
            n.ip.clone(),
            n.roles.join(","),
            n.version.clone().unwrap_or_else(|| "-".to_string()),
            simple_status(n),
            components_cell(n),
        ]);
    }
    out.push_str(&align(&rows));
    let drift: Vec<String> =
        r.nodes.iter().flat_map(|n| n.drift.iter().map(move |d| format!("  {}: {}", n.name, d.message))).collect();
    if !drift.is_empty() {
        out.push_str("\nDrift:\n");
        for d in drift {
            out.push_str(&d);
            out.push('\n');
        }
    }
    let problems: Vec<String> = r
        .nodes
        .iter()
        .filter(|n| n.version_marker.is_none())
        .filter_map(|n| n.error.as_ref().map(|e| format!("  {e}")))
        .collect();
    if !problems.is_empty() {
        out.push_str("\nUnreadable nodes:\n");
        for p in problems {
            out.push_str(&p);
            out.push('\n');
        }
    }
    out
}

fn simple_status(n: &NodeReport) -> String {
    match n.status.as_str() {
        "ok" | "drift" => n.status.clone(),
        "not_installed" => "not installed".to_string(),
        "invalid_marker" => n.error.clone().unwrap_or_else(|| "invalid version".to_string()),
        other => other.replace('_', " "),
    }
}

fn components_cell(n: &NodeReport) -> String {
    let mut parts = Vec::new();
    if let Some(Marker::Present { value }) = &n.component_markers {
        if let Some(k) = value.get("kubernetes") {
            parts.push(format!("kubernetes={k}"));
        }
    } else if let Some(Marker::Invalid { .. }) = &n.component_markers {
        parts.push("component-versions invalid".to_string());
    }
    for (name, c) in &n.components {
        let shown = c.running.as_ref().or(c.installed.as_ref()).or(c.marker.as_ref());
        let mut s = format!("{name}={}", shown.map(String::as_str).unwrap_or("?"));
        if n.drift.iter().any(|d| &d.component == name) {
            s.push('!');
        }
        parts.push(s);
    }
    if parts.is_empty() { "-".to_string() } else { parts.join(" ") }
}

/// Left-aligned columns two spaces apart, no trailing spaces: stable when piped.
fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < r.len() {
                line.extend(std::iter::repeat_n(' ', widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_without_trailing_spaces() {
        let rows = vec![
            vec!["Name".to_string(), "IP".to_string(), "X".to_string()],
            vec!["etcd01".to_string(), "10.0.0.1".to_string(), "".to_string()],
        ];
        assert_eq!(align(&rows), "Name    IP        X\netcd01  10.0.0.1\n");
    }
}
