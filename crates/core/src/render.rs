//! Renderings of plans and findings: simple text for people and JSON for tools. Pure functions, so the CLI's output
//! is snapshot-tested here.

use crate::checks::Finding;
use crate::planner::{Action, PhaseKind, PlanStatus, UpgradePlan};
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
        PlanStatus::Blocked { reasons } => {
            let _ = writeln!(s, "Status: blocked");
            for r in reasons {
                let _ = writeln!(s, "  - {r}");
            }
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
        for batch in &phase.batches {
            let parallel = batch.nodes.len() > 1;
            if parallel {
                let _ = writeln!(s, "  {} ({} nodes together)", batch.id, batch.nodes.len());
            }
            for n in &batch.nodes {
                let roles: Vec<&str> = n.roles.iter().map(|r| r.as_str()).collect();
                let indent = if parallel { "    " } else { "  " };
                let _ = writeln!(
                    s,
                    "{indent}{} [{}]{}",
                    n.host,
                    roles.join(","),
                    if n.drain { " cordon, drain, uncordon" } else { "" }
                );
                for step in &n.steps {
                    match &step.action {
                        Action::Upgrade { component, from, to, delivery } => {
                            let _ = writeln!(
                                s,
                                "{indent}  {component} {} → {to} ({delivery})",
                                from.as_deref().unwrap_or("none")
                            );
                        }
                        Action::WriteMarkers { kismatic_version, .. } => {
                            let _ = writeln!(s, "{indent}  markers → {kismatic_version}");
                        }
                        Action::Cordon | Action::Drain | Action::Uncordon => {}
                    }
                }
            }
        }
        for svc in &phase.services {
            let _ = writeln!(s, "  {} {} → {}", svc.component, svc.from.as_deref().unwrap_or("none"), svc.to);
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

/// The plan as JSON (format [`crate::planner::PLAN_FORMAT`], documented in docs/checks.md).
pub fn plan_json(plan: &UpgradePlan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
