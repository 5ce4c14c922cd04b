//! API versions that Kubernetes stopped serving, as data, and the `removed-api` gate: what still uses an API version
//! that the upgrade would remove — calls seen by the API servers, objects last written with it, the release's own
//! manifests.
//!
//! Source of the table: the Kubernetes "Deprecated API Migration Guide"
//! (<https://kubernetes.io/docs/reference/using-api/deprecation-guide/>), every release from v1.16 (the first with
//! removals of widely used APIs) to v1.32; the guide lists no removals for v1.33 to v1.35. Where the guide names
//! kinds, so does the table; the resource is the kind's plural as the API serves it (what the API servers'
//! `apiserver_requested_deprecated_apis` metric labels).

use crate::facts::{ApiObjectUse, AuditLog, AuditedCall, DeprecatedApiRequest, UseSource};

/// Where the table comes from, for messages and docs.
pub const DEPRECATION_GUIDE: &str = "https://kubernetes.io/docs/reference/using-api/deprecation-guide/";

/// One API version of one kind that a Kubernetes minor stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovedApi {
    /// API group, `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Plural resource name, as in URLs and the deprecated-API metric.
    pub resource: &'static str,
    /// Kubernetes 1.x minor that no longer serves it.
    pub removed_in: u64,
    /// The `group/version` to migrate to; `None` when the API has no successor.
    pub replacement: Option<&'static str>,
}

impl RemovedApi {
    /// `group/version`, or `version` for the core group (as in `apiVersion`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    fn removed_text(&self) -> String {
        format!("removed in v1.{}", self.removed_in)
    }

    fn remedy(&self) -> String {
        match self.replacement {
            Some(r) => format!("use {r}"),
            None => format!("{} has no successor API: remove its use", self.kind),
        }
    }
}

const fn api(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    resource: &'static str,
    removed_in: u64,
    replacement: Option<&'static str>,
) -> RemovedApi {
    RemovedApi { group, version, kind, resource, removed_in, replacement }
}

const APPS: Option<&str> = Some("apps/v1");
const ADMISSION: Option<&str> = Some("admissionregistration.k8s.io/v1");
const AUTHZ: Option<&str> = Some("authorization.k8s.io/v1");
const NETWORKING: Option<&str> = Some("networking.k8s.io/v1");
const RBAC: Option<&str> = Some("rbac.authorization.k8s.io/v1");
const STORAGE: Option<&str> = Some("storage.k8s.io/v1");
const HPA: Option<&str> = Some("autoscaling/v2");
const FLOWCONTROL: &str = "flowcontrol.apiserver.k8s.io";

/// Every removal of the deprecation guide, v1.16 to v1.32, in release order.
pub const REMOVED_APIS: &[RemovedApi] = &[
    // v1.16
    api("extensions", "v1beta1", "NetworkPolicy", "networkpolicies", 16, NETWORKING),
    api("extensions", "v1beta1", "PodSecurityPolicy", "podsecuritypolicies", 16, Some("policy/v1beta1")),
    api("extensions", "v1beta1", "DaemonSet", "daemonsets", 16, APPS),
    api("apps", "v1beta2", "DaemonSet", "daemonsets", 16, APPS),
    api("extensions", "v1beta1", "Deployment", "deployments", 16, APPS),
    api("apps", "v1beta1", "Deployment", "deployments", 16, APPS),
    api("apps", "v1beta2", "Deployment", "deployments", 16, APPS),
    api("apps", "v1beta1", "StatefulSet", "statefulsets", 16, APPS),
    api("apps", "v1beta2", "StatefulSet", "statefulsets", 16, APPS),
    api("extensions", "v1beta1", "ReplicaSet", "replicasets", 16, APPS),
    api("apps", "v1beta1", "ReplicaSet", "replicasets", 16, APPS),
    api("apps", "v1beta2", "ReplicaSet", "replicasets", 16, APPS),
    // v1.22
    api(
        "admissionregistration.k8s.io",
        "v1beta1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        22,
        ADMISSION,
    ),
    api(
        "admissionregistration.k8s.io",
        "v1beta1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        22,
        ADMISSION,
    ),
    api(
        "apiextensions.k8s.io",
        "v1beta1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        22,
        Some("apiextensions.k8s.io/v1"),
    ),
    api("apiregistration.k8s.io", "v1beta1", "APIService", "apiservices", 22, Some("apiregistration.k8s.io/v1")),
    api("authentication.k8s.io", "v1beta1", "TokenReview", "tokenreviews", 22, Some("authentication.k8s.io/v1")),
    api("authorization.k8s.io", "v1beta1", "LocalSubjectAccessReview", "localsubjectaccessreviews", 22, AUTHZ),
    api("authorization.k8s.io", "v1beta1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", 22, AUTHZ),
    api("authorization.k8s.io", "v1beta1", "SubjectAccessReview", "subjectaccessreviews", 22, AUTHZ),
    api(
        "certificates.k8s.io",
        "v1beta1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        22,
        Some("certificates.k8s.io/v1"),
    ),
    api("coordination.k8s.io", "v1beta1", "Lease", "leases", 22, Some("coordination.k8s.io/v1")),
    api("extensions", "v1beta1", "Ingress", "ingresses", 22, NETWORKING),
    api("networking.k8s.io", "v1beta1", "Ingress", "ingresses", 22, NETWORKING),
    api("networking.k8s.io", "v1beta1", "IngressClass", "ingressclasses", 22, NETWORKING),
    api("rbac.authorization.k8s.io", "v1beta1", "ClusterRole", "clusterroles", 22, RBAC),
    api("rbac.authorization.k8s.io", "v1beta1", "ClusterRoleBinding", "clusterrolebindings", 22, RBAC),
    api("rbac.authorization.k8s.io", "v1beta1", "Role", "roles", 22, RBAC),
    api("rbac.authorization.k8s.io", "v1beta1", "RoleBinding", "rolebindings", 22, RBAC),
    api("scheduling.k8s.io", "v1beta1", "PriorityClass", "priorityclasses", 22, Some("scheduling.k8s.io/v1")),
    api("storage.k8s.io", "v1beta1", "CSIDriver", "csidrivers", 22, STORAGE),
    api("storage.k8s.io", "v1beta1", "CSINode", "csinodes", 22, STORAGE),
    api("storage.k8s.io", "v1beta1", "StorageClass", "storageclasses", 22, STORAGE),
    api("storage.k8s.io", "v1beta1", "VolumeAttachment", "volumeattachments", 22, STORAGE),
    // v1.25
    api("batch", "v1beta1", "CronJob", "cronjobs", 25, Some("batch/v1")),
    api("discovery.k8s.io", "v1beta1", "EndpointSlice", "endpointslices", 25, Some("discovery.k8s.io/v1")),
    api("events.k8s.io", "v1beta1", "Event", "events", 25, Some("events.k8s.io/v1")),
    api("autoscaling", "v2beta1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", 25, HPA),
    api("policy", "v1beta1", "PodDisruptionBudget", "poddisruptionbudgets", 25, Some("policy/v1")),
    api("policy", "v1beta1", "PodSecurityPolicy", "podsecuritypolicies", 25, None),
    api("node.k8s.io", "v1beta1", "RuntimeClass", "runtimeclasses", 25, Some("node.k8s.io/v1")),
    // v1.26
    api(FLOWCONTROL, "v1beta1", "FlowSchema", "flowschemas", 26, Some("flowcontrol.apiserver.k8s.io/v1beta2")),
    api(
        FLOWCONTROL,
        "v1beta1",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        26,
        Some("flowcontrol.apiserver.k8s.io/v1beta2"),
    ),
    api("autoscaling", "v2beta2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", 26, HPA),
    // v1.27
    api("storage.k8s.io", "v1beta1", "CSIStorageCapacity", "csistoragecapacities", 27, STORAGE),
    // v1.29
    api(FLOWCONTROL, "v1beta2", "FlowSchema", "flowschemas", 29, Some("flowcontrol.apiserver.k8s.io/v1")),
    api(
        FLOWCONTROL,
        "v1beta2",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        29,
        Some("flowcontrol.apiserver.k8s.io/v1"),
    ),
    // v1.32
    api(FLOWCONTROL, "v1beta3", "FlowSchema", "flowschemas", 32, Some("flowcontrol.apiserver.k8s.io/v1")),
    api(
        FLOWCONTROL,
        "v1beta3",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        32,
        Some("flowcontrol.apiserver.k8s.io/v1"),
    ),
];

/// Splits an `apiVersion` into group and version (`v1` → core group).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// Removals that a move from Kubernetes 1.`from_minor` to 1.`to_minor` crosses: removed in (from, to].
pub fn crossed(from_minor: u64, to_minor: u64) -> impl Iterator<Item = &'static RemovedApi> {
    REMOVED_APIS.iter().filter(move |r| r.removed_in > from_minor && r.removed_in <= to_minor)
}

/// The removal an object of this `apiVersion` and `kind` falls under, when the move crosses one.
pub fn removal_of_kind(from_minor: u64, to_minor: u64, api_version: &str, kind: &str) -> Option<&'static RemovedApi> {
    let (group, version) = split_api_version(api_version);
    crossed(from_minor, to_minor).find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The removal a request to `group/version/resource` falls under, when the move crosses one.
pub fn removal_of_resource(
    from_minor: u64,
    to_minor: u64,
    group: &str,
    version: &str,
    resource: &str,
) -> Option<&'static RemovedApi> {
    crossed(from_minor, to_minor).find(|r| r.group == group && r.version == version && r.resource == resource)
}

/// One use of a removed API, for a finding: what uses it, and the message that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedUse {
    pub api: &'static RemovedApi,
    /// The object concerned: `group/version resource` for calls, `Kind namespace/name` for objects.
    pub object: String,
    pub message: String,
}

/// A manifest object of the release: its file, `apiVersion`, `kind` and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestObject<'a> {
    pub file: &'a str,
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

fn qualified(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    }
}

/// The user agent prefix of kismatic's own requests: its fact gathering lists stored objects of removed kinds in the
/// version the server serves, which may itself be deprecated (PodSecurityPolicy on 1.21–1.24); that is no client.
pub const OWN_USER_AGENT: &str = "kismatic/";

/// Whether a caller is the control plane itself (or kismatic, see [`OWN_USER_AGENT`]): the API server, the controller-manager (with its own identity or,
/// with `--use-service-account-credentials`, a kube-system service account and its user agent) or the scheduler.
/// Their requests for a deprecated API come from following discovery (the garbage collector's and the quota
/// controller's informers watch every listed resource, the namespace controller deletes through every one); a
/// server that no longer serves the API no longer lists it, and the version-skew policy guarantees a
/// controller-manager one minor behind the API servers works with them. So they are not clients the removal breaks.
pub fn control_plane_caller(user: &str, user_agent: &str) -> bool {
    user_agent.starts_with(OWN_USER_AGENT)
        || matches!(user, "system:apiserver" | "system:kube-controller-manager" | "system:kube-scheduler")
        || (user.starts_with("system:serviceaccount:kube-system:")
            && user_agent.starts_with("kube-controller-manager/"))
}

/// Calls to API versions the move removes, for one API server (`server` names it: its node or endpoint):
/// - `requests`, its `apiserver_requested_deprecated_apis` metric (requests since the server started, no caller);
/// - `audit`, what its audit log records of them, by caller.
///
/// With the audit log read, the callers outside the control plane ([`control_plane_caller`]) are named, one finding
/// per API; an API the metric counts but the log names no caller for at all is still reported (the audit policy
/// may not record it, or the log rotated past it); an API only the control plane calls is not. Without the audit
/// log, every API the metric counts is reported, its caller unknown.
pub fn from_calls(
    from_minor: u64,
    to_minor: u64,
    server: &str,
    requests: &[DeprecatedApiRequest],
    audit: Option<&AuditLog>,
) -> Vec<RemovedUse> {
    let key = |api: &'static RemovedApi, sub: &str| {
        let sub = if sub.is_empty() { String::new() } else { format!("/{sub}") };
        format!("{} {}{sub}", api.api_version(), api.resource)
    };
    let mut out: Vec<RemovedUse> = Vec::new();
    // The audit log first: callers named.
    let mut audited: Vec<String> = Vec::new();
    if let Some(AuditLog::Read { path, since, calls, truncated }) = audit {
        let covers = match since {
            Some(t) => format!("{path}, since {t}"),
            None => path.clone(),
        };
        let more = if *truncated { " (the probe listed its first 200 callers only)" } else { "" };
        let mut by_api: Vec<(&'static RemovedApi, String, Vec<&AuditedCall>)> = Vec::new();
        for c in calls {
            let Some(api) = removal_of_resource(from_minor, to_minor, &c.group, &c.version, &c.resource) else {
                continue;
            };
            let object = key(api, &c.subresource);
            if !audited.contains(&object) {
                audited.push(object.clone());
            }
            if control_plane_caller(&c.user, &c.user_agent) {
                continue;
            }
            match by_api.iter_mut().find(|(_, o, _)| *o == object) {
                Some((_, _, callers)) => callers.push(c),
                None => by_api.push((api, object, vec![c])),
            }
        }
        for (api, object, callers) in by_api {
            let named: Vec<String> = callers
                .iter()
                .take(CALLERS_NAMED)
                .map(|c| {
                    let agent =
                        if c.user_agent.is_empty() { String::new() } else { format!(", user agent {}", c.user_agent) };
                    format!("{} ({} request(s){agent}, the last at {})", c.user, c.count, c.last)
                })
                .collect();
            let beyond = callers.len().saturating_sub(CALLERS_NAMED);
            let beyond = if beyond > 0 { format!(" and {beyond} more caller(s)") } else { String::new() };
            out.push(RemovedUse {
                api,
                message: format!(
                    "API server {server}'s audit log ({covers}) records requests for {object} by {}{beyond}{more}: \
                     a client still calls this API, {}; {} (deprecation guide)",
                    named.join("; "),
                    api.removed_text(),
                    api.remedy()
                ),
                object,
            });
        }
    }
    let caller_unknown = match audit {
        Some(AuditLog::Read { path, .. }) => {
            format!(
                "its audit log ({path}) names no caller (its policy may not record these requests, or the log rotated past them)"
            )
        }
        Some(AuditLog::Unreadable { path }) => format!("who called is unknown: its audit log {path} could not be read"),
        Some(AuditLog::NotKept) => "who called is unknown: the server keeps no audit log file".to_string(),
        None => "who called is unknown: its audit log was not read".to_string(),
    };
    for r in requests {
        let Some(api) = removal_of_resource(from_minor, to_minor, &r.group, &r.version, &r.resource) else { continue };
        let object = key(api, &r.subresource);
        if audited.contains(&object) || out.iter().any(|u| u.object == object) {
            continue;
        }
        out.push(RemovedUse {
            api,
            message: format!(
                "API server {server} has served requests for {object} since it started (the metric \
                 apiserver_requested_deprecated_apis counts from the server's start), and {caller_unknown}: a client \
                 may still call this API, {}; {} (deprecation guide)",
                api.removed_text(),
                api.remedy()
            ),
            object,
        });
    }
    out
}

/// Callers named one by one in a finding; the rest are counted.
const CALLERS_NAMED: usize = 3;

/// Stored objects last written with an API version the move removes (last-applied configuration or managed
/// fields, as kubent and Pluto read them).
pub fn from_objects(from_minor: u64, to_minor: u64, uses: &[ApiObjectUse]) -> impl Iterator<Item = RemovedUse> + '_ {
    uses.iter().filter_map(move |u| {
        let api_version = if u.group.is_empty() { u.version.to_string() } else { format!("{}/{}", u.group, u.version) };
        let api = removal_of_kind(from_minor, to_minor, &api_version, &u.kind)?;
        let object = qualified(&u.kind, u.namespace.as_deref(), &u.name);
        let how = match &u.source {
            UseSource::LastApplied => {
                format!("was last applied as {api_version} (kubectl.kubernetes.io/last-applied-configuration)")
            }
            UseSource::ManagedFields { manager } => {
                format!("was written by {manager} with {api_version} (managed fields)")
            }
        };
        Some(RemovedUse {
            api,
            message: format!(
                "{object} {how}, {}: {} and apply it again before the upgrade (deprecation guide)",
                api.removed_text(),
                api.remedy()
            ),
            object,
        })
    })
}

/// The release's own manifests that use an API version the move removes: applying them would fail.
pub fn from_manifests<'a>(
    from_minor: u64,
    to_minor: u64,
    release: &'a str,
    objects: &'a [ManifestObject<'a>],
) -> impl Iterator<Item = RemovedUse> + 'a {
    objects.iter().filter_map(move |o| {
        let api = removal_of_kind(from_minor, to_minor, o.api_version, o.kind)?;
        let object = qualified(o.kind, o.namespace, o.name);
        Some(RemovedUse {
            api,
            message: format!(
                "release {release}'s manifest {} declares {object} as {}, {}: the release cannot be applied as it \
                 is; {} (deprecation guide)",
                o.file,
                o.api_version,
                api.removed_text(),
                api.remedy()
            ),
            object,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_is_well_formed() {
        let mut seen = HashSet::new();
        for r in REMOVED_APIS {
            assert!(seen.insert((r.group, r.version, r.kind)), "{r:?} listed twice");
            assert!((16..=35).contains(&r.removed_in), "{r:?}");
            assert!(r.resource.chars().all(|c| c.is_ascii_lowercase()), "{r:?}");
            assert!(r.version.starts_with('v'), "{r:?}");
            if let Some(rep) = r.replacement {
                assert_ne!(rep, r.api_version(), "{r:?} replaced by itself");
            }
        }
        let releases: Vec<u64> = REMOVED_APIS.iter().map(|r| r.removed_in).collect();
        assert!(releases.is_sorted(), "release order");
    }

    #[test]
    fn crossing_is_half_open() {
        assert_eq!(crossed(20, 20).count(), 0, "a patch upgrade removes nothing");
        assert_eq!(crossed(20, 21).count(), 0, "v1.21 removed nothing the guide lists");
        let ingress = removal_of_kind(21, 22, "networking.k8s.io/v1beta1", "Ingress").expect("1.22 removes it");
        assert_eq!(ingress.replacement, Some("networking.k8s.io/v1"));
        assert!(removal_of_kind(22, 23, "networking.k8s.io/v1beta1", "Ingress").is_none(), "already gone");
        assert!(removal_of_kind(20, 24, "networking.k8s.io/v1beta1", "Ingress").is_some());
        assert!(removal_of_kind(20, 22, "networking.k8s.io/v1", "Ingress").is_none(), "the GA version stays");
        assert!(removal_of_kind(24, 25, "policy/v1beta1", "PodDisruptionBudget").is_some());
        assert!(removal_of_kind(24, 25, "policy/v1beta1", "Eviction").is_none(), "kinds are matched exactly");
        assert!(removal_of_resource(31, 32, FLOWCONTROL, "v1beta3", "flowschemas").is_some());
        assert!(removal_of_resource(15, 16, "apps", "v1beta2", "deployments").is_some());
        assert_eq!(crossed(32, 35).count(), 0, "nothing listed after v1.32");
    }

    #[test]
    fn core_group_api_versions() {
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(split_api_version("policy/v1beta1"), ("policy", "v1beta1"));
    }

    #[test]
    fn messages_name_api_removal_and_replacement() {
        let reqs = [
            DeprecatedApiRequest {
                group: "networking.k8s.io".into(),
                version: "v1beta1".into(),
                resource: "ingresses".into(),
                subresource: String::new(),
                removed_release: "1.22".into(),
            },
            DeprecatedApiRequest {
                group: "batch".into(),
                version: "v1beta1".into(),
                resource: "cronjobs".into(),
                subresource: String::new(),
                removed_release: "1.25".into(),
            },
        ];
        let found: Vec<RemovedUse> = from_calls(20, 22, "master01", &reqs, None);
        assert_eq!(found.len(), 1, "only what the move crosses: {found:?}");
        assert_eq!(found[0].object, "networking.k8s.io/v1beta1 ingresses");
        let m = &found[0].message;
        assert!(m.contains("master01") && m.contains("removed in v1.22") && m.contains("use networking.k8s.io/v1"));
        assert!(m.contains("since it started"), "{m}");

        let uses = [
            ApiObjectUse {
                group: "policy".into(),
                version: "v1beta1".into(),
                kind: "PodDisruptionBudget".into(),
                namespace: Some("default".into()),
                name: "web".into(),
                source: UseSource::LastApplied,
            },
            ApiObjectUse {
                group: "policy".into(),
                version: "v1beta1".into(),
                kind: "PodSecurityPolicy".into(),
                namespace: None,
                name: "restricted".into(),
                source: UseSource::ManagedFields { manager: "kube-controller".into() },
            },
        ];
        let found: Vec<RemovedUse> = from_objects(24, 25, &uses).collect();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].object, "PodDisruptionBudget default/web");
        assert!(found[0].message.contains("last-applied-configuration") && found[0].message.contains("policy/v1"));
        assert_eq!(found[1].object, "PodSecurityPolicy restricted");
        assert!(found[1].message.contains("no successor"), "{}", found[1].message);
        assert!(found[1].message.contains("kube-controller"), "{}", found[1].message);
        assert_eq!(from_objects(20, 24, &uses).count(), 0, "1.25 is not crossed");

        let objs = [ManifestObject {
            file: "manifests/dns.yaml",
            api_version: "apps/v1beta2",
            kind: "Deployment",
            namespace: Some("kube-system"),
            name: "coredns",
        }];
        let found: Vec<RemovedUse> = from_manifests(15, 16, "1.2.0", &objs).collect();
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("manifests/dns.yaml") && found[0].message.contains("apps/v1"));
    }

    fn call(user: &str, agent: &str, group: &str, resource: &str, count: u64) -> AuditedCall {
        AuditedCall {
            user: user.into(),
            user_agent: agent.into(),
            group: group.into(),
            version: "v1beta1".into(),
            resource: resource.into(),
            subresource: String::new(),
            removed_release: "1.22".into(),
            count,
            first: "2026-12-02T10:00:00Z".into(),
            last: "2026-12-02T10:05:00Z".into(),
        }
    }

    fn request(group: &str, resource: &str) -> DeprecatedApiRequest {
        DeprecatedApiRequest {
            group: group.into(),
            version: "v1beta1".into(),
            resource: resource.into(),
            subresource: String::new(),
            removed_release: "1.22".into(),
        }
    }

    fn read(calls: Vec<AuditedCall>) -> AuditLog {
        AuditLog::Read {
            path: "/var/log/kubernetes/audit.log".into(),
            since: Some("2026-12-02T09:00:00Z".into()),
            calls,
            truncated: false,
        }
    }

    const GC_AGENT: &str = "kube-controller-manager/v1.20.2 (linux/amd64) kubernetes/faecb19/system:serviceaccount:kube-system:generic-garbage-collector";

    #[test]
    fn control_plane_callers() {
        assert!(control_plane_caller("system:kube-controller-manager", "kube-controller-manager/v1.20.2"));
        assert!(control_plane_caller("system:kube-scheduler", ""));
        assert!(control_plane_caller("system:apiserver", "kube-apiserver/v1.20.2"));
        assert!(control_plane_caller("system:serviceaccount:kube-system:generic-garbage-collector", GC_AGENT));
        assert!(
            !control_plane_caller("system:serviceaccount:kube-system:generic-garbage-collector", "my-tool/1.0"),
            "a kube-system service account is the control plane only with the controller-manager's agent"
        );
        assert!(!control_plane_caller("system:serviceaccount:default:ci", "kube-controller-manager/v1.20.2"));
        assert!(!control_plane_caller("kubernetes-admin", "kubectl/v1.20.2 (linux/amd64)"));
        assert!(control_plane_caller("admin", "kismatic/0.1.0"), "the tool's own fact gathering");
    }

    #[test]
    fn the_control_plane_following_discovery_is_not_a_finding() {
        // What a real 1.20 control plane shows with no user object and no user call: the garbage collector's and
        // the quota controller's informers list extensions/v1beta1 ingresses.
        let requests = [request("extensions", "ingresses")];
        let audit = read(vec![
            call("system:serviceaccount:kube-system:generic-garbage-collector", GC_AGENT, "extensions", "ingresses", 3),
            call("system:kube-controller-manager", "kube-controller-manager/v1.20.2", "extensions", "ingresses", 1),
        ]);
        assert_eq!(from_calls(20, 22, "master01", &requests, Some(&audit)), Vec::<RemovedUse>::new());
    }

    #[test]
    fn a_client_in_the_audit_log_is_named() {
        let requests = [request("extensions", "ingresses")];
        let audit = read(vec![
            call("system:serviceaccount:kube-system:generic-garbage-collector", GC_AGENT, "extensions", "ingresses", 3),
            call("kubernetes-admin", "kubectl/v1.20.2 (linux/amd64)", "extensions", "ingresses", 2),
            call("system:serviceaccount:default:ci", "", "extensions", "ingresses", 9),
        ]);
        let found = from_calls(20, 22, "master01", &requests, Some(&audit));
        assert_eq!(found.len(), 1, "one finding per API: {found:?}");
        assert_eq!(found[0].object, "extensions/v1beta1 ingresses");
        let m = &found[0].message;
        for part in [
            "master01's audit log (/var/log/kubernetes/audit.log, since 2026-12-02T09:00:00Z)",
            "kubernetes-admin (2 request(s), user agent kubectl/v1.20.2 (linux/amd64), the last at 2026-12-02T10:05:00Z)",
            "system:serviceaccount:default:ci (9 request(s), the last at",
            "removed in v1.22",
            "use networking.k8s.io/v1",
        ] {
            assert!(m.contains(part), "{part:?} not in {m}");
        }
        assert!(!m.contains("garbage-collector"), "{m}");
    }

    #[test]
    fn callers_beyond_three_are_counted_and_truncation_is_said() {
        let calls: Vec<AuditedCall> =
            (0..5).map(|i| call(&format!("user{i}"), "", "networking.k8s.io", "ingresses", 1)).collect();
        let AuditLog::Read { path, since, calls, .. } = read(calls) else { unreachable!() };
        let audit = AuditLog::Read { path, since, calls, truncated: true };
        let found = from_calls(20, 22, "master01", &[], Some(&audit));
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("and 2 more caller(s)"), "{}", found[0].message);
        assert!(found[0].message.contains("first 200 callers"), "{}", found[0].message);
        assert!(!found[0].message.contains("user3"), "{}", found[0].message);
    }

    #[test]
    fn a_call_the_audit_log_does_not_explain_is_reported_with_its_caller_unknown() {
        let requests = [request("extensions", "ingresses"), request("networking.k8s.io", "ingresses")];
        let audit = read(vec![call("system:kube-controller-manager", "", "extensions", "ingresses", 1)]);
        let found = from_calls(20, 22, "master01", &requests, Some(&audit));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].object, "networking.k8s.io/v1beta1 ingresses");
        assert!(found[0].message.contains("names no caller"), "{}", found[0].message);
        for (audit, says) in [
            (None, "its audit log was not read"),
            (Some(AuditLog::NotKept), "keeps no audit log file"),
            (Some(AuditLog::Unreadable { path: "/l".into() }), "its audit log /l could not be read"),
        ] {
            let found = from_calls(20, 22, "master01", &requests, audit.as_ref());
            assert_eq!(found.len(), 2, "without the log every counted API is reported: {found:?}");
            assert!(found.iter().all(|u| u.message.contains(says) && u.message.contains("since it started")));
        }
    }

    #[test]
    fn only_apis_the_move_removes_count() {
        let audit = read(vec![call("kubernetes-admin", "", "extensions", "ingresses", 1)]);
        assert!(from_calls(20, 21, "master01", &[request("extensions", "ingresses")], Some(&audit)).is_empty());
        assert_eq!(from_calls(21, 22, "master01", &[], Some(&audit)).len(), 1, "the log alone is evidence");
    }
}
