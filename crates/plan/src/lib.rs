//! Kismatic plan files (`kismatic-cluster.yaml`): model, defaults, migration, validation.
//!
//! - [`load`] reads a plan file and returns the checked [`Inventory`], or every problem at once.
//! - [`parse`] does the same from text without touching the file system (no key-file checks).
//! - [`read`] only parses and migrates (no validation): Kismatic's own templates, full of placeholders,
//!   pass it; [`validate`] and [`check_files`] then list what is still to be filled in.
mod derive;
mod diag;
mod inventory;
mod migrate;
pub mod model;
pub mod names;
mod parse;
pub mod text;
mod validate;

pub use diag::{Diagnostic, PlanError};
pub use inventory::*;
pub use migrate::{DEFAULT_APISERVER_PORT, DEFAULT_KUBERNETES_VERSION, DEFAULT_SSH_PORT};
pub use model::{Loc, Plan, Pos};
pub use validate::{check_files, resolve_path, validate};

use model::{Loc as L, LocInt, PlanNode};
use std::path::Path;

/// Read, migrate, validate (including key-file checks) and derive the inventory of a plan file.
pub fn load(path: &Path) -> Result<Inventory, PlanError> {
    load_plan(path).map(|(_, inv)| inv)
}

/// Like [`load`], also returning the migrated plan (for the settings the inventory does not carry).
pub fn load_plan(path: &Path) -> Result<(Plan, Inventory), PlanError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read { path: path.to_path_buf(), source })?;
    let plan = read(&text, path)?;
    let mut diags = validate(&plan);
    diags.extend(check_files(&plan));
    finish(plan, diags)
}

/// Parse, migrate and validate plan text as if read from `path` (which only names the file in
/// diagnostics and anchors relative paths). Pure: the key file is not looked at (see [`check_files`]).
pub fn parse(text: &str, path: &Path) -> Result<(Plan, Inventory), PlanError> {
    let plan = read(text, path)?;
    let diags = validate(&plan);
    finish(plan, diags)
}

/// Parse and migrate only: fails on YAML errors, unknown keys and wrongly typed values, not on
/// missing or invalid settings.
pub fn read(text: &str, path: &Path) -> Result<Plan, PlanError> {
    let mut plan = parse::parse_plan(text, path).map_err(|mut diagnostics| {
        diag::sort(&mut diagnostics);
        PlanError::Invalid { diagnostics }
    })?;
    migrate::migrate(&mut plan);
    Ok(plan)
}

fn finish(plan: Plan, mut diags: Vec<Diagnostic>) -> Result<(Plan, Inventory), PlanError> {
    if diags.is_empty() {
        let inv = derive::inventory(&plan);
        Ok((plan, inv))
    } else {
        diag::sort(&mut diags);
        Err(PlanError::Invalid { diagnostics: diags })
    }
}

/// One node group of the plan, whatever its type.
pub(crate) struct Group<'a> {
    pub role: Role,
    /// The group key is present (and not null).
    pub present: bool,
    pub pos: Option<Pos>,
    pub expected: &'a LocInt,
    pub nodes: Option<&'a L<Vec<L<PlanNode>>>>,
}

static NO_COUNT: LocInt = None;

/// The groups in `Role` order (master, etcd, worker, ingress, storage).
pub(crate) fn groups(plan: &Plan) -> Vec<Group<'_>> {
    fn ng(role: Role, g: &Option<L<model::NodeGroup>>) -> Group<'_> {
        match g {
            Some(g) => Group {
                role,
                present: true,
                pos: g.pos,
                expected: &g.value.expected_count,
                nodes: g.value.nodes.as_ref(),
            },
            None => Group { role, present: false, pos: None, expected: &NO_COUNT, nodes: None },
        }
    }
    let master = match &plan.master {
        Some(m) => Group {
            role: Role::Master,
            present: true,
            pos: m.pos,
            expected: &m.value.expected_count,
            nodes: m.value.nodes.as_ref(),
        },
        None => ng(Role::Master, &None),
    };
    vec![
        master,
        ng(Role::Etcd, &plan.etcd),
        ng(Role::Worker, &plan.worker),
        ng(Role::Ingress, &plan.ingress),
        ng(Role::Storage, &plan.storage),
    ]
}

pub(crate) fn groups_mut(plan: &mut Plan) -> Vec<&mut Vec<L<PlanNode>>> {
    let mut out = Vec::new();
    if let Some(m) = &mut plan.master
        && let Some(n) = &mut m.value.nodes
    {
        out.push(&mut n.value);
    }
    for g in [&mut plan.etcd, &mut plan.worker, &mut plan.ingress, &mut plan.storage].into_iter().flatten() {
        if let Some(n) = &mut g.value.nodes {
            out.push(&mut n.value);
        }
    }
    out
}

impl Plan {
    /// The Kubernetes version the plan asks for (defaulted to Kismatic v1.12's when absent).
    pub fn kubernetes_version(&self) -> &str {
        model::s(&self.cluster.version)
    }
}
