//! Kubernetes' version-skew policy and etcd's upgrade rules, as data, and pure checks of every moment an upgrade
//! passes through.
//!
//! Sources: the Kubernetes "Version Skew Policy" (<https://kubernetes.io/releases/version-skew-policy/>) and etcd's
//! upgrade guides (<https://etcd.io/docs/latest/upgrades/>). The policy is stated in minor versions: a kubelet one
//! patch ahead of an API server of the same minor is within it.
//!
//! A plan is checked by [`walk`]: starting from the versions running now, each planned change is applied in plan
//! order and every rule is checked after each one, so a plan that is fine at its end but breaks the policy half-way
//! (an API server two minors ahead of its peer, a controller-manager newer than the API server behind the load
//! balancer) is caught before anything runs.

use semver::Version;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The Kubernetes version-skew policy, for messages and docs.
pub const SKEW_POLICY: &str = "https://kubernetes.io/releases/version-skew-policy/";

/// A rule of the Kubernetes version-skew policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkewRule {
    ApiServersWithinOneMinor,
    AgentNotNewer,
    AgentNotTooOld,
    ControllerNotNewer,
    ControllerNotTooOld,
}

impl SkewRule {
    /// The rule as the policy states it.
    pub fn statement(self) -> &'static str {
        match self {
            SkewRule::ApiServersWithinOneMinor => {
                "in a highly available cluster the newest and oldest kube-apiserver are within one minor version"
            }
            SkewRule::AgentNotNewer => "kubelet and kube-proxy are never newer than any kube-apiserver",
            SkewRule::AgentNotTooOld => {
                "kubelet and kube-proxy are at most three minor versions older than kube-apiserver (two while they \
                 are older than v1.25)"
            }
            SkewRule::ControllerNotNewer => {
                "kube-controller-manager and kube-scheduler are never newer than the kube-apiserver instances they \
                 talk to"
            }
            SkewRule::ControllerNotTooOld => {
                "kube-controller-manager and kube-scheduler are at most one minor version older than the \
                 kube-apiserver instances they talk to"
            }
        }
    }
}

impl fmt::Display for SkewRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.statement())
    }
}

/// Which API servers a controller-manager or scheduler talks to, as its kubeconfig says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Upstream {
    /// The API server on its own node.
    Local,
    /// The load balancer, hence every API server. Also assumed when the node's configuration could not be read.
    LoadBalancer,
}

/// How a component takes part in the skew policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ApiServer,
    Controller,
    Agent,
}

/// The policy's view of a component, `None` for components it does not govern.
pub fn role_of(component: &str) -> Option<Role> {
    match component {
        "kube-apiserver" => Some(Role::ApiServer),
        "kube-controller-manager" | "kube-scheduler" => Some(Role::Controller),
        "kubelet" | "kube-proxy" => Some(Role::Agent),
        _ => None,
    }
}

/// The governed components of a cluster at one moment: per (host, component), its version (and for controllers,
/// its upstream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moment {
    versions: BTreeMap<(String, String), Version>,
    upstreams: BTreeMap<(String, String), Upstream>,
}

/// An API server of a moment: (host, component) and its version.
type ApiServer<'a> = (&'a (String, String), &'a Version);

/// One planned change of one component on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub host: String,
    pub component: String,
    pub to: Version,
}

/// A rule broken at some moment, with the components concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: SkewRule,
    /// The (host, component) pairs involved, the one to change first (the laggard or the one running ahead) first.
    pub subjects: Vec<(String, String)>,
    /// How far past the bound, in minor versions.
    pub gap: u64,
    pub message: String,
}

impl Violation {
    /// What a violation is about across moments: the rule and the component to change first (for the API server
    /// rule, the cluster's API servers as a whole, whichever are oldest and newest at that moment).
    fn key(&self) -> (SkewRule, Option<(String, String)>) {
        match self.rule {
            SkewRule::ApiServersWithinOneMinor => (self.rule, None),
            _ => (self.rule, self.subjects.first().cloned()),
        }
    }
}

/// A violation and when it first appears: after the `after`-th change of the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepViolation {
    pub after: usize,
    pub violation: Violation,
}

fn minor_gap(newer: &Version, older: &Version) -> Option<u64> {
    // Across a major (Kubernetes has had none) the policy says nothing usable: report as a large gap.
    if newer.major != older.major {
        return Some(u64::MAX);
    }
    newer.minor.checked_sub(older.minor)
}

fn v(version: &Version) -> String {
    format!("v{}.{}.{}", version.major, version.minor, version.patch)
}

impl Moment {
    /// Records a component's version; components outside the policy are ignored.
    pub fn set(&mut self, host: &str, component: &str, version: Version) {
        if role_of(component).is_some() {
            self.versions.insert((host.to_string(), component.to_string()), version);
        }
    }

    /// Records which API servers a controller-manager or scheduler talks to (default: the load balancer).
    pub fn set_upstream(&mut self, host: &str, component: &str, upstream: Upstream) {
        self.upstreams.insert((host.to_string(), component.to_string()), upstream);
    }

    pub fn upstream(&self, host: &str, component: &str) -> Upstream {
        self.upstreams.get(&(host.to_string(), component.to_string())).copied().unwrap_or(Upstream::LoadBalancer)
    }

    fn with_role(&self, role: Role) -> impl Iterator<Item = (&(String, String), &Version)> {
        self.versions.iter().filter(move |((_, c), _)| role_of(c) == Some(role))
    }

    /// Every rule this moment breaks.
    pub fn violations(&self) -> Vec<Violation> {
        let apis: Vec<(&(String, String), &Version)> = self.with_role(Role::ApiServer).collect();
        let mut out = Vec::new();
        self.api_server_violations(&apis, &mut out);
        for role in [Role::Agent, Role::Controller] {
            for (subject, version) in self.with_role(role) {
                self.subject_violations(&apis, subject, version, &mut out);
            }
        }
        out
    }

    /// The API servers and their versions (few: kept by the walk between API server changes).
    fn api_servers(&self) -> Vec<((String, String), Version)> {
        self.with_role(Role::ApiServer).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The rules about one agent or controller only, against the API servers given.
    fn violations_of(&self, apis: &[((String, String), Version)], host: &str, component: &str) -> Vec<Violation> {
        let apis: Vec<(&(String, String), &Version)> = apis.iter().map(|(k, v)| (k, v)).collect();
        let mut out = Vec::new();
        let key = (host.to_string(), component.to_string());
        if let Some((subject, version)) = self.versions.get_key_value(&key) {
            self.subject_violations(&apis, subject, version, &mut out);
        }
        out
    }

    /// The API servers' extremes by minor (the policy's unit): (oldest, newest).
    fn extremes<'a>(apis: &'a [ApiServer<'a>]) -> (Option<&'a ApiServer<'a>>, Option<&'a ApiServer<'a>>) {
        (apis.iter().min_by_key(|(_, v)| (v.major, v.minor)), apis.iter().max_by_key(|(_, v)| (v.major, v.minor)))
    }

    fn api_server_violations(&self, apis: &[ApiServer<'_>], out: &mut Vec<Violation>) {
        if let (Some((ho, vo)), Some((hn, vn))) = Self::extremes(apis)
            && minor_gap(vn, vo).is_some_and(|g| g > 1)
        {
            out.push(Violation {
                rule: SkewRule::ApiServersWithinOneMinor,
                subjects: vec![(*ho).clone(), (*hn).clone()],
                gap: minor_gap(vn, vo).unwrap_or(u64::MAX).saturating_sub(1),
                message: format!(
                    "kube-apiserver {} on {} and {} on {} would be more than one minor version apart",
                    v(vo),
                    ho.0,
                    v(vn),
                    hn.0
                ),
            });
        }
    }

    /// The rules about one agent or controller (nothing for an API server: its rule is the cluster's).
    fn subject_violations(
        &self,
        apis: &[ApiServer<'_>],
        subject: &(String, String),
        version: &Version,
        out: &mut Vec<Violation>,
    ) {
        match role_of(&subject.1) {
            Some(Role::Agent) => Self::agent_violations(apis, subject, version, out),
            Some(Role::Controller) => self.controller_violations(apis, subject, version, out),
            _ => {}
        }
    }

    fn agent_violations(apis: &[ApiServer<'_>], agent: &(String, String), av: &Version, out: &mut Vec<Violation>) {
        let (oldest, newest) = Self::extremes(apis);
        if let Some((ho, vo)) = oldest
            && minor_gap(av, vo).is_some_and(|g| g > 0)
        {
            out.push(Violation {
                rule: SkewRule::AgentNotNewer,
                subjects: vec![agent.clone(), (*ho).clone()],
                gap: minor_gap(av, vo).unwrap_or(u64::MAX),
                message: format!(
                    "{} {} on {} would be newer than kube-apiserver {} on {}",
                    agent.1,
                    v(av),
                    agent.0,
                    v(vo),
                    ho.0
                ),
            });
        }
        if let Some((hn, vn)) = newest {
            let allowed = if av.major == 1 && av.minor < 25 { 2 } else { 3 };
            if minor_gap(vn, av).is_some_and(|g| g > allowed) {
                out.push(Violation {
                    rule: SkewRule::AgentNotTooOld,
                    subjects: vec![agent.clone(), (*hn).clone()],
                    gap: minor_gap(vn, av).unwrap_or(u64::MAX).saturating_sub(allowed),
                    message: format!(
                        "{} {} on {} would be more than {allowed} minor versions older than kube-apiserver {} on \
                         {}: upgrade {}'s {} first",
                        agent.1,
                        v(av),
                        agent.0,
                        v(vn),
                        hn.0,
                        agent.0,
                        agent.1
                    ),
                });
            }
        }
    }

    fn controller_violations(
        &self,
        apis: &[ApiServer<'_>],
        ctl: &(String, String),
        cv: &Version,
        out: &mut Vec<Violation>,
    ) {
        let upstream = self.upstream(&ctl.0, &ctl.1);
        let local = apis.iter().find(|((h, _), _)| *h == ctl.0);
        // A controller with no API server beside it talks through the load balancer whatever it says.
        let talks_to: Vec<&(&(String, String), &Version)> = match (upstream, local) {
            (Upstream::Local, Some(l)) => vec![l],
            _ => apis.iter().collect(),
        };
        let how = match (upstream, local) {
            (Upstream::Local, Some(_)) => "its local",
            _ => "the load balancer's",
        };
        if let Some((ho, vo)) = talks_to.iter().min_by_key(|(_, v)| (v.major, v.minor))
            && minor_gap(cv, vo).is_some_and(|g| g > 0)
        {
            out.push(Violation {
                rule: SkewRule::ControllerNotNewer,
                subjects: vec![ctl.clone(), (*ho).clone()],
                gap: minor_gap(cv, vo).unwrap_or(u64::MAX),
                message: format!(
                    "{} {} on {} would be newer than {how} kube-apiserver {} on {}",
                    ctl.1,
                    v(cv),
                    ctl.0,
                    v(vo),
                    ho.0
                ),
            });
        }
        if let Some((hn, vn)) = talks_to.iter().max_by_key(|(_, v)| (v.major, v.minor))
            && minor_gap(vn, cv).is_some_and(|g| g > 1)
        {
            out.push(Violation {
                rule: SkewRule::ControllerNotTooOld,
                subjects: vec![ctl.clone(), (*hn).clone()],
                gap: minor_gap(vn, cv).unwrap_or(u64::MAX).saturating_sub(1),
                message: format!(
                    "{} {} on {} would be more than one minor version older than {how} kube-apiserver {} on {}",
                    ctl.1,
                    v(cv),
                    ctl.0,
                    v(vn),
                    hn.0
                ),
            });
        }
    }
}

/// Applies `changes` in order to `initial` and checks every rule after each one. Reported: what the changes break
/// or make worse — a violation the cluster already had, no wider, is the cluster's state, not the plan's doing (a
/// plan may be what repairs it). Each (rule, component) once, at the first moment it appears or widens.
pub fn walk(initial: &Moment, changes: &[Change]) -> Vec<StepViolation> {
    let mut worst: BTreeMap<(SkewRule, Option<(String, String)>), u64> =
        initial.violations().into_iter().map(|v| (v.key(), v.gap)).collect();
    let mut reported: BTreeSet<(SkewRule, Option<(String, String)>)> = BTreeSet::new();
    let mut out = Vec::new();
    let mut m = initial.clone();
    let mut apis = m.api_servers();
    for (i, c) in changes.iter().enumerate() {
        if role_of(&c.component).is_none() {
            continue;
        }
        m.set(&c.host, &c.component, c.to.clone());
        // Only an API server's change moves what every other component is measured against; any other change
        // can break only the rules about that component (the rest were judged at an earlier moment).
        let now = if role_of(&c.component) == Some(Role::ApiServer) {
            apis = m.api_servers();
            m.violations()
        } else {
            m.violations_of(&apis, &c.host, &c.component)
        };
        for violation in now {
            let key = violation.key();
            let widened = worst.get(&key).is_none_or(|g| violation.gap > *g);
            if widened && !reported.contains(&key) {
                worst.insert(key.clone(), violation.gap);
                reported.insert(key);
                out.push(StepViolation { after: i, violation });
            }
        }
    }
    out
}

// -------------------------------------------------------------------------------------------------------------
// etcd
// -------------------------------------------------------------------------------------------------------------

/// A minimum patch release that every member must run before etcd moves to the next minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdMinimum {
    /// The minor the cluster leaves, e.g. (3, 5).
    pub from: (u64, u64),
    /// Every member must be at least this version first.
    pub at_least: (u64, u64, u64),
    /// Where etcd says so.
    pub source: &'static str,
}

/// etcd's documented minimum patches before a minor upgrade. etcd's general rule (one minor at a time, latest patch
/// first) is in [`crate::checks`]; these are the cases where the guide names a release.
pub const ETCD_MINIMUMS: &[EtcdMinimum] = &[EtcdMinimum {
    from: (3, 5),
    at_least: (3, 5, 26),
    // The guide asked for 3.5.20 earlier; patch releases 3.5.24 to 3.5.26 fixed further upgrade blockers.
    source: "https://etcd.io/docs/latest/upgrades/upgrade_3_6/",
}];

/// The minimum `from` must reach before moving to `to`, when etcd documents one for that step and `from` is below it.
pub fn etcd_minimum_unmet(from: &Version, to: &Version) -> Option<&'static EtcdMinimum> {
    if (to.major, to.minor) == (from.major, from.minor) {
        return None;
    }
    ETCD_MINIMUMS
        .iter()
        .find(|m| m.from == (from.major, from.minor) && (from.major, from.minor, from.patch) < m.at_least)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ver(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn moment(entries: &[(&str, &str, &str)]) -> Moment {
        let mut m = Moment::default();
        for (h, c, v) in entries {
            m.set(h, c, ver(v));
        }
        m
    }

    fn rules(vs: &[Violation]) -> Vec<SkewRule> {
        vs.iter().map(|v| v.rule).collect()
    }

    fn change(h: &str, c: &str, v: &str) -> Change {
        Change { host: h.into(), component: c.into(), to: ver(v) }
    }

    #[test]
    fn api_servers_one_minor_apart_is_fine_two_is_not() {
        let m = moment(&[("m1", "kube-apiserver", "1.21.0"), ("m2", "kube-apiserver", "1.20.9")]);
        assert!(m.violations().is_empty());
        let m = moment(&[("m1", "kube-apiserver", "1.22.0"), ("m2", "kube-apiserver", "1.20.9")]);
        let vs = m.violations();
        assert_eq!(rules(&vs), vec![SkewRule::ApiServersWithinOneMinor]);
        assert!(vs[0].message.contains("v1.22.0 on m1") && vs[0].message.contains("v1.20.9 on m2"), "{vs:?}");
    }

    #[test]
    fn agents_never_newer_by_minor() {
        let m = moment(&[("m1", "kube-apiserver", "1.20.2"), ("w1", "kubelet", "1.20.3")]);
        assert!(m.violations().is_empty(), "a patch ahead is within the policy");
        let m = moment(&[("m1", "kube-apiserver", "1.20.2"), ("w1", "kube-proxy", "1.21.0")]);
        let vs = m.violations();
        assert_eq!(rules(&vs), vec![SkewRule::AgentNotNewer]);
        assert_eq!(vs[0].subjects[0], ("w1".to_string(), "kube-proxy".to_string()));
    }

    #[test]
    fn agents_at_most_three_minors_behind_two_before_1_25() {
        let ok = moment(&[("m1", "kube-apiserver", "1.28.0"), ("w1", "kubelet", "1.25.4")]);
        assert!(ok.violations().is_empty(), "three behind from 1.25 on");
        let old = moment(&[("m1", "kube-apiserver", "1.29.0"), ("w1", "kubelet", "1.25.4")]);
        assert_eq!(rules(&old.violations()), vec![SkewRule::AgentNotTooOld]);
        let pre125 = moment(&[("m1", "kube-apiserver", "1.23.0"), ("w1", "kubelet", "1.20.4")]);
        let vs = pre125.violations();
        assert_eq!(rules(&vs), vec![SkewRule::AgentNotTooOld]);
        assert!(vs[0].message.contains("more than 2 minor") && vs[0].message.contains("upgrade w1's kubelet first"));
        let two = moment(&[("m1", "kube-apiserver", "1.22.0"), ("w1", "kubelet", "1.20.4")]);
        assert!(two.violations().is_empty(), "two behind is allowed before 1.25");
    }

    #[test]
    fn controllers_follow_their_upstream() {
        // Behind the load balancer, a controller-manager upgraded before the other API server is newer than it.
        let mut m = moment(&[
            ("m1", "kube-apiserver", "1.21.0"),
            ("m1", "kube-controller-manager", "1.21.0"),
            ("m2", "kube-apiserver", "1.20.9"),
        ]);
        let vs = m.violations();
        assert_eq!(rules(&vs), vec![SkewRule::ControllerNotNewer]);
        assert!(vs[0].message.contains("load balancer"), "{vs:?}");
        // Talking to its own API server it is fine.
        m.set_upstream("m1", "kube-controller-manager", Upstream::Local);
        assert!(m.violations().is_empty());
        // Two minors behind its API server.
        let mut m = moment(&[("m1", "kube-apiserver", "1.22.0"), ("m1", "kube-scheduler", "1.20.0")]);
        m.set_upstream("m1", "kube-scheduler", Upstream::Local);
        assert_eq!(rules(&m.violations()), vec![SkewRule::ControllerNotTooOld]);
    }

    #[test]
    fn local_upstream_without_a_local_api_server_means_the_load_balancer() {
        let mut m = moment(&[("m1", "kube-apiserver", "1.20.0"), ("c1", "kube-scheduler", "1.21.0")]);
        m.set_upstream("c1", "kube-scheduler", Upstream::Local);
        assert_eq!(rules(&m.violations()), vec![SkewRule::ControllerNotNewer]);
    }

    #[test]
    fn walk_reports_a_mid_plan_violation_once_at_its_first_moment() {
        let initial = moment(&[
            ("m1", "kube-apiserver", "1.20.2"),
            ("m1", "kube-controller-manager", "1.20.2"),
            ("m2", "kube-apiserver", "1.20.2"),
            ("m2", "kube-controller-manager", "1.20.2"),
        ]);
        // Node by node: m1's controller-manager runs 1.21 while m2's API server is still 1.20.
        let by_node = [
            change("m1", "kube-apiserver", "1.21.0"),
            change("m1", "kube-controller-manager", "1.21.0"),
            change("m2", "kube-apiserver", "1.21.0"),
            change("m2", "kube-controller-manager", "1.21.0"),
        ];
        let vs = walk(&initial, &by_node);
        assert_eq!(vs.len(), 1, "{vs:?}");
        assert_eq!(vs[0].after, 1);
        assert_eq!(vs[0].violation.rule, SkewRule::ControllerNotNewer);
        // Every API server first (the split master phase): nothing breaks.
        let split = [by_node[0].clone(), by_node[2].clone(), by_node[1].clone(), by_node[3].clone()];
        assert!(walk(&initial, &split).is_empty());
    }

    #[test]
    fn walk_leaves_the_clusters_own_violation_to_a_plan_that_repairs_it() {
        let initial = moment(&[("m1", "kube-apiserver", "1.24.0"), ("w1", "kubelet", "1.21.0")]);
        assert_eq!(initial.violations().len(), 1, "broken before the plan");
        assert!(walk(&initial, &[change("w1", "kubelet", "1.24.0")]).is_empty(), "the plan repairs it");
        // Moving the API servers further ahead first makes it worse: reported, naming the kubelet to upgrade.
        let vs = walk(&initial, &[change("m1", "kube-apiserver", "1.25.0"), change("w1", "kubelet", "1.25.0")]);
        assert_eq!(vs.len(), 1, "{vs:?}");
        assert_eq!(vs[0].after, 0);
        assert!(vs[0].violation.message.contains("upgrade w1's kubelet first"), "{vs:?}");
    }

    #[test]
    fn etcd_minimum_patch_before_3_6() {
        assert!(etcd_minimum_unmet(&ver("3.5.25"), &ver("3.6.0")).is_some());
        assert!(etcd_minimum_unmet(&ver("3.5.26"), &ver("3.6.0")).is_none());
        assert!(etcd_minimum_unmet(&ver("3.5.1"), &ver("3.5.26")).is_none(), "a patch upgrade is how to get there");
        assert!(etcd_minimum_unmet(&ver("3.4.23"), &ver("3.5.1")).is_none(), "no documented minimum");
    }

    #[test]
    fn components_outside_the_policy_are_ignored() {
        let mut m = Moment::default();
        m.set("e1", "etcd", ver("3.5.1"));
        assert!(m.violations().is_empty());
        assert!(walk(&m, &[change("e1", "etcd", "9.0.0")]).is_empty());
    }

    /// The walk as first written: every rule re-judged after every change.
    fn walk_everything(initial: &Moment, changes: &[Change]) -> Vec<StepViolation> {
        let mut worst: BTreeMap<(SkewRule, Option<(String, String)>), u64> =
            initial.violations().into_iter().map(|v| (v.key(), v.gap)).collect();
        let mut reported = BTreeSet::new();
        let mut out = Vec::new();
        let mut m = initial.clone();
        for (i, c) in changes.iter().enumerate() {
            if role_of(&c.component).is_none() {
                continue;
            }
            m.set(&c.host, &c.component, c.to.clone());
            for violation in m.violations() {
                let key = violation.key();
                if worst.get(&key).is_none_or(|g| violation.gap > *g) && !reported.contains(&key) {
                    worst.insert(key.clone(), violation.gap);
                    reported.insert(key);
                    out.push(StepViolation { after: i, violation });
                }
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// The incremental walk finds exactly what re-judging everything after every change finds.
        #[test]
        fn incremental_walk_equals_the_full_one(
            initial in proptest::collection::vec((0usize..4, 0usize..5, 20u64..30, proptest::bool::ANY), 0..14),
            changes in proptest::collection::vec((0usize..4, 0usize..5, 20u64..32), 0..20),
        ) {
            const COMPONENTS: [&str; 5] =
                ["kube-apiserver", "kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler"];
            let mut m = Moment::default();
            for (h, c, minor, local) in &initial {
                let host = format!("n{h}");
                m.set(&host, COMPONENTS[*c], Version::new(1, *minor, 0));
                if *local {
                    m.set_upstream(&host, COMPONENTS[*c], Upstream::Local);
                }
            }
            let changes: Vec<Change> = changes
                .iter()
                .map(|(h, c, minor)| Change {
                    host: format!("n{h}"),
                    component: COMPONENTS[*c].to_string(),
                    to: Version::new(1, *minor, 0),
                })
                .collect();
            proptest::prop_assert_eq!(walk(&m, &changes), walk_everything(&m, &changes));
        }
    }
}
