//! Renderings of plans and findings: simple text for people and JSON for tools. Pure functions, so the CLI's output
//! is snapshot-tested here.

use crate::checks::Finding;
use crate::planner::{Action, BatchAction, BlockingNode, PhaseKind, PlanStatus, Remedy, UpgradePlan};
use std::fmt::Write;

/// Findings grouped by node (in the order given, which is inventory order), one line each.
pub fn findings_text(findings: &[Finding]) -> String {
    let mut s = String::new();
    let mut current: Option<&str> = None;
    for f in findings {
        if current != Some(f.node.as_str()) {
            if f.is_cluster_level() {
                let _ = writeln!(s, "cluster (not one node):");
            } else {
                let _ = writeln!(s, "{}:", f.node);
            }
            current = Some(&f.node);
        }
        let _ = writeln!(s, "  {:<11} {:<26} {}", f.class.as_str(), f.code.as_str(), f.message);
    }
    s
}

pub fn findings_json(findings: &[Finding]) -> String {
    serde_json::to_string_pretty(findings).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The plan as people read it: status, phases with nodes and components `from → to`, skipped and pruned nodes,
/// then every finding grouped by node.
pub fn plan_text(plan: &UpgradePlan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Upgrade plan ({}) to release {} (kubernetes {})", plan.mode, plan.release, plan.kubernetes);
    match &plan.status {
        PlanStatus::Ready if plan.phases.is_empty() => {
            let _ = writeln!(s, "Status: nothing to do, the cluster is at {}", plan.release);
        }
        PlanStatus::Ready => {
            let _ = writeln!(s, "Status: ready{}", if plan.partial { " (partial)" } else { "" });
        }
        PlanStatus::Blocked { reasons, blocking, cluster, remedies } => {
            let _ = writeln!(s, "Status: blocked");
            for r in reasons {
                let _ = writeln!(s, "  - {r}");
            }
            blocked_text(&mut s, plan, blocking, cluster, remedies);
        }
    }
    if !plan.staging.is_empty() {
        let _ = writeln!(s, "\nStaging (in the background from the start; each node's turn waits for its own):");
        for st in &plan.staging {
            let _ = writeln!(s, "  {}: {}", st.id, st.components.join(", "));
        }
    }
    if !plan.snapshots.is_empty() {
        let _ = writeln!(s, "\nBefore any node (cluster healthy with a leader, snapshot verified):");
        for sn in &plan.snapshots {
            let _ = writeln!(s, "  {} on {}", sn.id, sn.node);
        }
    }
    for (i, phase) in plan.phases.iter().enumerate() {
        let _ = writeln!(s, "\nPhase {}: {}", i + 1, phase.kind.as_str());
        if phase.kind == PhaseKind::ApiServers {
            let _ = writeln!(
                s,
                "  (every API server before the masters' other components, so that no controller-manager, \
                 scheduler or kubelet runs ahead of an API server: version-skew policy)"
            );
        }
        if phase.kind == PhaseKind::Worker
            && let Some(b) = &plan.batching
        {
            let _ = writeln!(
                s,
                "  (batches of at most {} node(s), --max-unavailable {}; within one {} each; no batch takes more from a \
                 PodDisruptionBudget than it allows or a replicated controller's last ready replica{})",
                b.max,
                b.max_unavailable,
                b.topology_key,
                if b.capacity_checked {
                    "; evicted requests fit on the other nodes"
                } else {
                    "; capacity not checked: not every pod declares requests or node reports allocatable"
                }
            );
        }
        for batch in &phase.batches {
            let parallel = batch.nodes.len() > 1;
            if parallel || batch.bound.is_some() {
                let _ = writeln!(
                    s,
                    "  {} ({} node{}{})",
                    batch.id,
                    batch.nodes.len(),
                    if parallel { "s together" } else { "" },
                    batch.bound.as_ref().map(|b| format!(": {}", b.describe())).unwrap_or_default()
                );
            }
            for bs in &batch.steps {
                let what = match &bs.action {
                    BatchAction::Recheck => {
                        "re-check the live budgets and controllers; split the batch if they no longer permit it"
                            .to_string()
                    }
                    BatchAction::PreferNoSchedule { nodes } => format!(
                        "taint the next batch {}:PreferNoSchedule: {}",
                        crate::planner::DRAIN_SOON_TAINT,
                        nodes.join(", ")
                    ),
                };
                let _ = writeln!(s, "    {what}");
            }
            for n in &batch.nodes {
                let roles: Vec<&str> = n.roles.iter().map(|r| r.as_str()).collect();
                let indent = if parallel || batch.bound.is_some() { "    " } else { "  " };
                let _ = writeln!(s, "{indent}{} [{}]", n.host, roles.join(","));
                for step in &n.steps {
                    let what = match &step.action {
                        Action::Upgrade { component, from, to, delivery, restart } => format!(
                            "{component} {} → {to} ({delivery}{})",
                            from.as_deref().unwrap_or("none"),
                            if *restart { ", restart" } else { "" }
                        ),
                        Action::WriteMarkers { kismatic_version, .. } => format!("markers → {kismatic_version}"),
                        Action::Cordon => "cordon".into(),
                        Action::Drain => "drain".into(),
                        Action::Untaint => format!("untaint {}", crate::planner::DRAIN_SOON_TAINT),
                        Action::Uncordon => "uncordon".into(),
                    };
                    let _ = writeln!(s, "{indent}  {what}{}", gates_text(&step.gates));
                }
            }
        }
        for svc in &phase.services {
            let _ = writeln!(
                s,
                "  {} {} → {}{}",
                svc.component,
                svc.from.as_deref().unwrap_or("none"),
                svc.to,
                gates_text(&svc.gates)
            );
        }
    }
    if !plan.skipped.is_empty() {
        let _ = writeln!(s, "\nAlready at {} (skipped): {}", plan.release, plan.skipped.join(", "));
    }
    if !plan.pruned.is_empty() {
        let _ = writeln!(s, "\nLeft out by --partial-ok:");
        for p in &plan.pruned {
            let codes: Vec<&str> = p.codes.iter().map(|c| c.as_str()).collect();
            let _ = writeln!(s, "  {}: {}", p.host, codes.join(", "));
        }
    }
    if plan.partial {
        let _ = writeln!(
            s,
            "\nPartial upgrade: cluster level services are left to upgrade; they run once every node is upgraded."
        );
    }
    if !plan.findings.is_empty() {
        let _ = writeln!(s, "\nFindings:");
        s.push_str(&findings_text(&plan.findings));
    }
    s
}

/// A step's gates as a plan shows them: `; gate: a, b`.
fn gates_text(gates: &[crate::gates::Gate]) -> String {
    if gates.is_empty() {
        return String::new();
    }
    let each: Vec<String> = gates.iter().map(|g| g.describe()).collect();
    format!("; gate: {}", each.join(", "))
}

/// `--accept` pairs printed before the list is cut short (the JSON has them all).
const ACCEPT_LINES: usize = 20;

/// The nodes and codes that stop the plan, and the remedies that would work, ready to copy.
fn blocked_text(
    s: &mut String,
    plan: &UpgradePlan,
    blocking: &[BlockingNode],
    cluster: &[crate::checks::Code],
    remedies: &[Remedy],
) {
    if blocking.is_empty() && cluster.is_empty() {
        return;
    }
    let _ = writeln!(s, "Stopped by:");
    let mut width = blocking.iter().map(|b| b.host.len()).max().unwrap_or(0);
    if !cluster.is_empty() {
        width = width.max("the cluster".len());
    }
    if !cluster.is_empty() {
        let codes: Vec<String> = cluster.iter().map(|c| format!("{c} ({})", c.class())).collect();
        let _ = writeln!(s, "  {:<width$}  {:<6}  {}", "the cluster", "-", codes.join(", "));
    }
    for b in blocking {
        let codes: Vec<String> = b.codes.iter().map(|c| format!("{c} ({})", c.class())).collect();
        let _ = writeln!(s, "  {:<width$}  {:<6}  {}", b.host, b.phase.as_str(), codes.join(", "));
    }
    let kept: Vec<&str> = blocking.iter().filter(|b| b.phase != PhaseKind::Worker).map(|b| b.host.as_str()).collect();
    let mode = plan.mode.to_string();
    let _ = writeln!(s, "What would work:");
    for r in remedies {
        match r {
            Remedy::Fix => {
                let _ = writeln!(s, "  - fix what the findings below describe (codes: docs/checks.md), then rerun");
            }
            Remedy::PartialOk { left_out } => {
                let _ = writeln!(
                    s,
                    "  - rerun `kismatic upgrade {mode}` with --partial-ok: upgrades the other nodes, leaves out {}",
                    left_out.join(", ")
                );
            }
            Remedy::Offline { partial_ok, left_out, accept } => {
                let flag = if *partial_ok { " --partial-ok" } else { "" };
                let out =
                    if left_out.is_empty() { String::new() } else { format!("; leaves out {}", left_out.join(", ")) };
                let _ = writeln!(
                    s,
                    "  - `kismatic upgrade offline{flag}`: no safety checks, no cordon or drain (workloads go down \
                     with their node){out}"
                );
                if !accept.is_empty() {
                    let words: Vec<String> =
                        accept.iter().take(ACCEPT_LINES).map(|a| format!("--accept {a}")).collect();
                    let _ = writeln!(s, "      it stops at these too, unless acknowledged: {}", words.join(" "));
                    if accept.len() > ACCEPT_LINES {
                        let _ =
                            writeln!(s, "      ... and {} more (all in the JSON plan)", accept.len() - ACCEPT_LINES);
                    }
                }
            }
            Remedy::Accept { accept, partial_ok, left_out } => {
                let what = if *partial_ok {
                    format!("accept the findings on the nodes that must stay and leave out {}", left_out.join(", "))
                } else {
                    "acknowledge each finding".to_string()
                };
                let _ = writeln!(s, "  - {what} (findings stay reported but no longer stop the upgrade): add");
                let mut words: Vec<String> = Vec::new();
                if *partial_ok {
                    words.push("--partial-ok".into());
                }
                words.extend(accept.iter().take(ACCEPT_LINES).map(|a| format!("--accept {a}")));
                let _ = writeln!(s, "      {}", words.join(" "));
                if accept.len() > ACCEPT_LINES {
                    let _ = writeln!(s, "      ... and {} more (all in the JSON plan)", accept.len() - ACCEPT_LINES);
                }
            }
        }
    }
    let not_partial = !remedies.iter().any(|r| matches!(r, Remedy::PartialOk { .. }));
    if not_partial && !kept.is_empty() && !plan.partial {
        let _ = writeln!(
            s,
            "  (--partial-ok never leaves out {}: etcd members and masters are not left behind)",
            kept.join(", ")
        );
    }
}

/// The plan as JSON (format [`crate::planner::PLAN_FORMAT`], documented in docs/checks.md).
pub fn plan_json(plan: &UpgradePlan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
