//! The raw plan-file model: one struct per map of `kismatic-cluster.yaml`, field names exactly the YAML keys.
//!
//! Every struct denies unknown keys; every field is optional (missing and `null` both read as "not set"),
//! so that defaults and deprecated-field migration can tell "absent" from "set to the zero value".
//! Scalars carry their source position ([`Loc`]) so validation can point at the offending value.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A 1-based line and column in the plan file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub(crate) fn from_location(l: serde_saphyr::Location) -> Option<Pos> {
        // serde-saphyr reports line 0 for "unknown" (e.g. values rebuilt from a buffered form).
        (l.line() > 0).then(|| Pos { line: l.line(), column: l.column() })
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value with the position it was read from (`None` for values produced by defaults or migration
/// without a source position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc<T> {
    pub value: T,
    pub pos: Option<Pos>,
}

impl<T> Loc<T> {
    pub fn new(value: T, pos: Option<Pos>) -> Self {
        Loc { value, pos }
    }
    /// A value that did not come from the file (a default).
    pub fn synthetic(value: T) -> Self {
        Loc { value, pos: None }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loc<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Loc { value: s.value, pos: Pos::from_location(s.referenced) })
    }
}

pub type LocStr = Option<Loc<String>>;
pub type LocBool = Option<Loc<bool>>;
pub type LocInt = Option<Loc<i64>>;

/// Reads `null` (an empty section such as `networking:` followed only by comments) as the default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A free-form string map (labels, option overrides, driver options), in file order, with positions.
/// `null` values read as empty strings, as Kismatic (Go yaml.v2 into `map[string]string`) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocMap(pub Vec<(Loc<String>, Loc<String>)>);

impl LocMap {
    pub fn get(&self, key: &str) -> Option<&Loc<String>> {
        self.0.iter().find(|(k, _)| k.value == key).map(|(_, v)| v)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn insert(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k.value == key) {
            Some((_, v)) => *v = Loc::synthetic(value.to_string()),
            None => self.0.push((Loc::synthetic(key.to_string()), Loc::synthetic(value.to_string()))),
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.value.as_str(), v.value.as_str()))
    }
}

impl<'de> Deserialize<'de> for LocMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LocMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings to strings")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<LocMap, E> {
                Ok(LocMap::default())
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<LocMap, E> {
                Ok(LocMap::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<LocMap, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Loc<String>>()? {
                    let v = m.next_value::<Loc<Option<String>>>()?;
                    out.push((k, Loc::new(v.value.unwrap_or_default(), v.pos)));
                }
                Ok(LocMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `kismatic-cluster.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Plan {
    #[serde(deserialize_with = "nullable")]
    pub cluster: Cluster,
    #[serde(deserialize_with = "nullable")]
    pub docker: Docker,
    #[serde(deserialize_with = "nullable")]
    pub docker_registry: DockerRegistry,
    #[serde(deserialize_with = "nullable")]
    pub additional_files: Vec<Loc<AdditionalFile>>,
    #[serde(deserialize_with = "nullable")]
    pub add_ons: AddOns,
    /// Deprecated (KET ≤ v1.3.3): migrated into `add_ons`.
    pub features: Option<Features>,
    pub etcd: Option<Loc<NodeGroup>>,
    pub master: Option<Loc<MasterNodeGroup>>,
    pub worker: Option<Loc<NodeGroup>>,
    pub ingress: Option<Loc<NodeGroup>>,
    pub storage: Option<Loc<NodeGroup>>,
    pub nfs: Option<Nfs>,
    /// The file this plan was read from (relative paths in the plan resolve against its folder).
    #[serde(skip)]
    pub path: std::path::PathBuf,
    /// Deprecated fields that were migrated or ignored on read.
    #[serde(skip)]
    pub warnings: Vec<crate::Diagnostic>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    pub name: LocStr,
    pub version: LocStr,
    /// Deprecated: read, never used.
    pub admin_password: LocStr,
    pub disable_package_installation: LocBool,
    /// Deprecated inverse of `disable_package_installation`.
    pub allow_package_installation: LocBool,
    pub disconnected_installation: LocBool,
    #[serde(deserialize_with = "nullable")]
    pub networking: Networking,
    #[serde(deserialize_with = "nullable")]
    pub certificates: Certificates,
    #[serde(deserialize_with = "nullable")]
    pub ssh: Ssh,
    #[serde(deserialize_with = "nullable")]
    pub kube_apiserver: ComponentOptions,
    #[serde(deserialize_with = "nullable")]
    pub kube_controller_manager: ComponentOptions,
    #[serde(deserialize_with = "nullable")]
    pub kube_scheduler: ComponentOptions,
    #[serde(deserialize_with = "nullable")]
    pub kube_proxy: ComponentOptions,
    #[serde(deserialize_with = "nullable")]
    pub kubelet: ComponentOptions,
    #[serde(deserialize_with = "nullable")]
    pub cloud_provider: CloudProvider,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Networking {
    /// Deprecated (KET < v1.5.0): Calico mode, migrated to `add_ons.cni.options.calico.mode`.
    #[serde(rename = "type")]
    pub type_: LocStr,
    pub pod_cidr_block: LocStr,
    pub service_cidr_block: LocStr,
    pub update_hosts_files: LocBool,
    pub http_proxy: LocStr,
    pub https_proxy: LocStr,
    pub no_proxy: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Certificates {
    pub expiry: LocStr,
    pub ca_expiry: LocStr,
    pub apiserver_cert_extra_sans: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ssh {
    pub user: LocStr,
    pub ssh_key: LocStr,
    pub ssh_port: LocInt,
    /// Our extension: the known_hosts file to verify node host keys against (relative to the plan's folder).
    pub known_hosts: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentOptions {
    #[serde(deserialize_with = "nullable")]
    pub option_overrides: LocMap,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudProvider {
    pub provider: LocStr,
    pub config: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Docker {
    pub disable: LocBool,
    #[serde(deserialize_with = "nullable")]
    pub logs: DockerLogs,
    #[serde(deserialize_with = "nullable")]
    pub storage: DockerStorage,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerLogs {
    pub driver: LocStr,
    #[serde(deserialize_with = "nullable")]
    pub opts: LocMap,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerStorage {
    pub driver: LocStr,
    #[serde(deserialize_with = "nullable")]
    pub opts: LocMap,
    #[serde(deserialize_with = "nullable")]
    pub direct_lvm_block_device: DirectLvmBlockDevice,
    /// Deprecated: migrated to `driver: devicemapper` + `direct_lvm_block_device`.
    pub direct_lvm: Option<DirectLvmDeprecated>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectLvmBlockDevice {
    pub path: LocStr,
    pub thinpool_percent: LocStr,
    pub thinpool_metapercent: LocStr,
    pub thinpool_autoextend_threshold: LocStr,
    pub thinpool_autoextend_percent: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectLvmDeprecated {
    pub enabled: LocBool,
    pub block_device: LocStr,
    pub enable_deferred_deletion: LocBool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerRegistry {
    pub server: LocStr,
    /// Deprecated: `server` is `address:port`.
    pub address: LocStr,
    /// Deprecated: see `address`.
    pub port: LocInt,
    #[serde(rename = "CA")]
    pub ca: LocStr,
    pub username: LocStr,
    pub password: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdditionalFile {
    #[serde(deserialize_with = "nullable")]
    pub hosts: Vec<Loc<String>>,
    pub source: LocStr,
    pub destination: LocStr,
    pub skip_validation: LocBool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddOns {
    pub cni: Option<Cni>,
    #[serde(deserialize_with = "nullable")]
    pub dns: Dns,
    pub heapster: Option<Heapster>,
    #[serde(deserialize_with = "nullable")]
    pub metrics_server: Toggle,
    pub dashboard: Option<Dashboard>,
    /// Deprecated misspelling of `dashboard`, read only when `dashboard` is absent.
    pub dashbard: Option<Dashboard>,
    #[serde(deserialize_with = "nullable")]
    pub package_manager: PackageManager,
    #[serde(deserialize_with = "nullable")]
    pub rescheduler: Toggle,
}

/// An add-on with nothing but `disable`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Toggle {
    pub disable: LocBool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cni {
    pub disable: LocBool,
    pub provider: LocStr,
    #[serde(deserialize_with = "nullable")]
    pub options: CniOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniOptions {
    #[serde(deserialize_with = "nullable")]
    pub portmap: Toggle,
    #[serde(deserialize_with = "nullable")]
    pub calico: Calico,
    #[serde(deserialize_with = "nullable")]
    pub weave: Weave,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Calico {
    pub mode: LocStr,
    pub log_level: LocStr,
    pub workload_mtu: LocInt,
    pub felix_input_mtu: LocInt,
    pub ip_autodetection_method: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weave {
    pub password: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    pub disable: LocBool,
    pub provider: LocStr,
    #[serde(deserialize_with = "nullable")]
    pub options: DnsOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsOptions {
    pub replicas: LocInt,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Heapster {
    pub disable: LocBool,
    #[serde(deserialize_with = "nullable")]
    pub options: HeapsterOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeapsterOptions {
    #[serde(deserialize_with = "nullable")]
    pub heapster: HeapsterSettings,
    #[serde(deserialize_with = "nullable")]
    pub influxdb: InfluxDb,
    /// Deprecated (KET < v1.5.0): `heapster.replicas`.
    pub heapster_replicas: LocInt,
    /// Deprecated (KET < v1.5.0): `influxdb.pvc_name`.
    pub influxdb_pvc_name: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeapsterSettings {
    pub replicas: LocInt,
    pub service_type: LocStr,
    pub sink: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxDb {
    pub pvc_name: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dashboard {
    pub disable: LocBool,
    #[serde(deserialize_with = "nullable")]
    pub options: DashboardOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardOptions {
    pub service_type: LocStr,
    pub node_port: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PackageManager {
    pub disable: LocBool,
    pub provider: LocStr,
    #[serde(deserialize_with = "nullable")]
    pub options: PackageManagerOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PackageManagerOptions {
    #[serde(deserialize_with = "nullable")]
    pub helm: Helm,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Helm {
    pub namespace: LocStr,
}

/// Deprecated (KET ≤ v1.3.3).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Features {
    pub package_manager: Option<DeprecatedPackageManager>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeprecatedPackageManager {
    pub enabled: LocBool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeGroup {
    pub expected_count: LocInt,
    pub nodes: Option<Loc<Vec<Loc<PlanNode>>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MasterNodeGroup {
    pub load_balancer: LocStr,
    pub expected_count: LocInt,
    /// Deprecated: `load_balancer` is `load_balanced_fqdn:6443`.
    pub load_balanced_fqdn: LocStr,
    /// Deprecated: read, never used.
    pub load_balanced_short_name: LocStr,
    pub nodes: Option<Loc<Vec<Loc<PlanNode>>>>,
}

/// A node entry as written in one group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanNode {
    pub host: LocStr,
    pub ip: LocStr,
    pub internalip: LocStr,
    #[serde(deserialize_with = "nullable")]
    pub labels: LocMap,
    #[serde(deserialize_with = "nullable")]
    pub taints: Vec<Loc<PlanTaint>>,
    pub kubelet: Option<ComponentOptions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanTaint {
    pub key: LocStr,
    pub value: LocStr,
    pub effect: LocStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Nfs {
    #[serde(deserialize_with = "nullable")]
    pub nfs_volume: Vec<Loc<NfsVolume>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NfsVolume {
    pub nfs_host: LocStr,
    pub mount_path: LocStr,
}

/// Text of an optional string ("" when absent).
pub(crate) fn s(v: &LocStr) -> &str {
    v.as_ref().map(|l| l.value.as_str()).unwrap_or("")
}

/// Position of an optional value.
pub(crate) fn p<T>(v: &Option<Loc<T>>) -> Option<Pos> {
    v.as_ref().and_then(|l| l.pos)
}

pub(crate) fn b(v: &LocBool) -> bool {
    v.as_ref().map(|l| l.value).unwrap_or(false)
}
