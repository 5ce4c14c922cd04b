//! Validation of a migrated plan. `validate` is pure (no file system); `check_files` does the I/O checks
//! (key file present and private, referenced files present). Both report every problem they find.

use crate::diag::Diagnostic;
use crate::model::{self, Loc, LocInt, LocStr, Plan, PlanNode, Pos, b, p, s};
use crate::names;
use crate::{Role, groups};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const CNI_PROVIDERS: [&str; 4] = ["calico", "contiv", "weave", "custom"];
const DNS_PROVIDERS: [&str; 2] = ["kubedns", "coredns"];
const CALICO_MODES: [&str; 2] = ["overlay", "routed"];
const CALICO_LOG_LEVELS: [&str; 3] = ["warning", "info", "debug"];
const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const CLOUD_PROVIDERS: [&str; 11] =
    ["aws", "azure", "cloudstack", "fake", "gce", "mesos", "openstack", "ovirt", "photon", "rackspace", "vsphere"];
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
const RESERVED_PREFIX: &str = "kismatic/";

struct V<'a> {
    file: &'a Path,
    out: Vec<Diagnostic>,
}

impl V<'_> {
    fn err(&mut self, pos: Option<Pos>, key: impl Into<String>, msg: impl Into<String>) {
        self.out.push(Diagnostic::new(self.file, pos, key, msg));
    }

    fn required(&mut self, v: &LocStr, parent_pos: Option<Pos>, key: &str, what: &str) -> bool {
        if s(v).is_empty() {
            self.err(p(v).or(parent_pos), key, format!("{what} is required"));
            false
        } else {
            true
        }
    }

    fn one_of(&mut self, v: &LocStr, key: &str, what: &str, options: &[&str]) {
        let val = s(v);
        if !options.contains(&val) {
            self.err(p(v), key, format!("{:?} is not a valid {what}; options are: {}", val, options.join(", ")));
        }
    }

    fn check(&mut self, v: &LocStr, key: &str, what: &str, f: impl Fn(&str) -> Result<(), String>) {
        let val = s(v);
        if let Err(reason) = f(val) {
            self.err(p(v), key, format!("{what} {:?} {reason}", val));
        }
    }

    fn overrides(&mut self, m: &model::LocMap, key: &str) {
        for (k, v) in &m.0 {
            if let Err(r) = names::flag_name(&k.value) {
                self.err(k.pos, key, format!("option name {:?} {r}", k.value));
            }
            if let Err(r) = names::no_control(&v.value) {
                self.err(v.pos, format!("{key}.{}", k.value), format!("option value {r}"));
            }
        }
    }
}

/// Every problem of a (migrated) plan that can be seen without touching the file system.
pub fn validate(plan: &Plan) -> Vec<Diagnostic> {
    let mut v = V { file: &plan.path, out: Vec::new() };
    cluster(&mut v, plan);
    registry(&mut v, plan);
    docker(&mut v, plan);
    add_ons(&mut v, plan);
    node_groups(&mut v, plan);
    additional_files(&mut v, plan);
    nfs(&mut v, plan);
    v.out
}

fn cluster(v: &mut V, plan: &Plan) {
    let c = &plan.cluster;
    if v.required(&c.name, None, "cluster.name", "cluster name") {
        v.check(&c.name, "cluster.name", "cluster name", names::no_control);
    }
    v.check(&c.version, "cluster.version", "Kubernetes version", names::kube_version);

    let n = &c.networking;
    if v.required(&n.pod_cidr_block, None, "cluster.networking.pod_cidr_block", "pod CIDR block") {
        v.check(&n.pod_cidr_block, "cluster.networking.pod_cidr_block", "pod CIDR block", names::cidr);
    }
    if v.required(&n.service_cidr_block, None, "cluster.networking.service_cidr_block", "service CIDR block") {
        v.check(&n.service_cidr_block, "cluster.networking.service_cidr_block", "service CIDR block", names::cidr);
    }
    for (val, key) in [
        (&n.http_proxy, "cluster.networking.http_proxy"),
        (&n.https_proxy, "cluster.networking.https_proxy"),
        (&n.no_proxy, "cluster.networking.no_proxy"),
        (&c.certificates.apiserver_cert_extra_sans, "cluster.certificates.apiserver_cert_extra_sans"),
    ] {
        v.check(val, key, "value", names::no_control);
    }

    let certs = &c.certificates;
    if v.required(&certs.expiry, None, "cluster.certificates.expiry", "certificate expiry") {
        v.check(&certs.expiry, "cluster.certificates.expiry", "certificate expiry", names::go_duration);
    }
    v.check(&certs.ca_expiry, "cluster.certificates.ca_expiry", "CA certificate expiry", names::go_duration);

    let ssh = &c.ssh;
    if v.required(&ssh.user, None, "cluster.ssh.user", "SSH user") {
        v.check(&ssh.user, "cluster.ssh.user", "SSH user", names::ssh_user);
    }
    if v.required(&ssh.ssh_key, None, "cluster.ssh.ssh_key", "SSH key") {
        v.check(&ssh.ssh_key, "cluster.ssh.ssh_key", "SSH key path", names::no_control);
    }
    v.check(&ssh.known_hosts, "cluster.ssh.known_hosts", "known_hosts path", names::no_control);
    port(v, &ssh.ssh_port, "cluster.ssh.ssh_port", "SSH port");

    for (opts, key) in [
        (&c.kube_apiserver, "cluster.kube_apiserver.option_overrides"),
        (&c.kube_controller_manager, "cluster.kube_controller_manager.option_overrides"),
        (&c.kube_scheduler, "cluster.kube_scheduler.option_overrides"),
        (&c.kube_proxy, "cluster.kube_proxy.option_overrides"),
        (&c.kubelet, "cluster.kubelet.option_overrides"),
    ] {
        v.overrides(&opts.option_overrides, key);
    }

    let cp = &c.cloud_provider;
    if !s(&cp.provider).is_empty() {
        v.one_of(&cp.provider, "cluster.cloud_provider.provider", "cloud provider", &CLOUD_PROVIDERS);
    }
    v.check(&cp.config, "cluster.cloud_provider.config", "cloud config path", names::no_control);
}

/// The bounds of the plan's integer fields, by key: validation checks them, and the parser names them when a number
/// is too large to read at all. `None` as maximum: no upper bound but the integer type's.
pub(crate) fn int_range(key: &str) -> Option<(i64, Option<i64>)> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    match leaf {
        "ssh_port" | "port" => Some((1, Some(65535))),
        "workload_mtu" | "felix_input_mtu" => Some((68, Some(65535))),
        "replicas" => Some((1, None)),
        "expected_count" => Some((0, None)),
        _ => None,
    }
}

/// "in the range 1-65535" / "at least 1", for messages ("it must be …").
pub(crate) fn range_text((min, max): (i64, Option<i64>)) -> String {
    match max {
        Some(max) => format!("in the range {min}-{max}"),
        None => format!("at least {min}"),
    }
}

fn port(v: &mut V, val: &LocInt, key: &str, what: &str) {
    let (min, max) = int_range(key).unwrap_or((1, Some(65535)));
    if let Some(port) = val
        && !(min..=max.unwrap_or(i64::MAX)).contains(&port.value)
    {
        v.err(port.pos, key, format!("{what} {} is invalid; it must be in the range 1-65535", port.value));
    }
}

fn registry(v: &mut V, plan: &Plan) {
    let r = &plan.docker_registry;
    let server = s(&r.server);
    if server.is_empty() {
        if !s(&r.ca).is_empty() {
            v.err(p(&r.ca), "docker_registry.CA", "a registry CA is given but `docker_registry.server` is empty");
        }
        if !s(&r.username).is_empty() {
            v.err(
                p(&r.username),
                "docker_registry.username",
                "a registry username is given but `docker_registry.server` is empty",
            );
        }
        if b(&plan.cluster.disconnected_installation) {
            v.err(
                p(&plan.cluster.disconnected_installation),
                "cluster.disconnected_installation",
                "a container image registry (`docker_registry.server`) is required for a disconnected installation",
            );
        }
    } else {
        let ok = if server.starts_with('[') || server.matches(':').count() == 1 {
            names::host_port(server).map(|_| ())
        } else {
            names::host_or_ip(server)
        };
        if let Err(reason) = ok {
            v.err(
                p(&r.server),
                "docker_registry.server",
                format!("registry server {server:?} {reason} (expected host or host:port)"),
            );
        }
    }
    port(v, &r.port, "docker_registry.port", "registry port");
    if !s(&r.username).is_empty() && s(&r.password).is_empty() {
        v.err(
            p(&r.username),
            "docker_registry.password",
            format!("registry password is required for username {:?}", s(&r.username)),
        );
    }
    if !s(&r.password).is_empty() && s(&r.username).is_empty() {
        v.err(p(&r.password), "docker_registry.username", "registry username is required when a password is given");
    }
    v.check(&r.ca, "docker_registry.CA", "registry CA path", names::no_control);
}

fn docker(v: &mut V, plan: &Plan) {
    let st = &plan.docker.storage;
    let dev = &st.direct_lvm_block_device;
    let path = s(&dev.path);
    if !path.is_empty() {
        if s(&st.driver) != "devicemapper" {
            v.err(
                p(&dev.path),
                "docker.storage.direct_lvm_block_device.path",
                "can only be used with the 'devicemapper' storage driver",
            );
        }
        if !path.starts_with('/') {
            v.err(
                p(&dev.path),
                "docker.storage.direct_lvm_block_device.path",
                format!("block device path {path:?} must be absolute"),
            );
        }
    }
    if let Some(lvm) = &st.direct_lvm
        && b(&lvm.enabled)
        && s(&lvm.block_device).is_empty()
    {
        v.err(
            p(&lvm.enabled),
            "docker.storage.direct_lvm.block_device",
            "direct_lvm is enabled but no block device is given",
        );
    }
    for (m, key) in [(&plan.docker.logs.opts, "docker.logs.opts"), (&st.opts, "docker.storage.opts")] {
        v.overrides(m, key);
    }
}

fn add_ons(v: &mut V, plan: &Plan) {
    let a = &plan.add_ons;
    if let Some(cni) = &a.cni
        && !b(&cni.disable)
    {
        v.one_of(&cni.provider, "add_ons.cni.provider", "CNI provider", &CNI_PROVIDERS);
        if s(&cni.provider) == "calico" {
            let cal = &cni.options.calico;
            v.one_of(&cal.mode, "add_ons.cni.options.calico.mode", "Calico mode", &CALICO_MODES);
            v.one_of(&cal.log_level, "add_ons.cni.options.calico.log_level", "Calico log level", &CALICO_LOG_LEVELS);
            for (mtu, key) in [
                (&cal.workload_mtu, "add_ons.cni.options.calico.workload_mtu"),
                (&cal.felix_input_mtu, "add_ons.cni.options.calico.felix_input_mtu"),
            ] {
                if let Some(m) = mtu
                    && !(68..=65535).contains(&m.value)
                {
                    v.err(m.pos, key, format!("MTU {} is not in the range 68-65535", m.value));
                }
            }
        }
    }
    if !b(&a.dns.disable) {
        v.one_of(&a.dns.provider, "add_ons.dns.provider", "DNS provider", &DNS_PROVIDERS);
        replicas(v, &a.dns.options.replicas, "add_ons.dns.options.replicas", "DNS");
    }
    if let Some(h) = &a.heapster
        && !b(&h.disable)
    {
        replicas(v, &h.options.heapster.replicas, "add_ons.heapster.options.heapster.replicas", "Heapster");
        v.one_of(
            &h.options.heapster.service_type,
            "add_ons.heapster.options.heapster.service_type",
            "Heapster service type",
            &SERVICE_TYPES,
        );
    }
    if let Some(d) = &a.dashboard
        && !b(&d.disable)
    {
        v.one_of(
            &d.options.service_type,
            "add_ons.dashboard.options.service_type",
            "dashboard service type",
            &SERVICE_TYPES,
        );
        let np = s(&d.options.node_port);
        if !np.is_empty() && names::port_str(np).is_err() {
            v.err(
                p(&d.options.node_port),
                "add_ons.dashboard.options.node_port",
                format!("node port {np:?} is not a number from 1 to 65535"),
            );
        }
    }
    if !b(&a.package_manager.disable) {
        let prov = s(&a.package_manager.provider);
        if !prov.is_empty() && prov != "helm" {
            v.err(
                p(&a.package_manager.provider),
                "add_ons.package_manager.provider",
                format!("{prov:?} is not a valid package manager; options are: helm"),
            );
        }
    }
}

fn replicas(v: &mut V, r: &LocInt, key: &str, what: &str) {
    if let Some(r) = r
        && r.value <= 0
    {
        v.err(r.pos, key, format!("{what} replicas {} is not valid; it must be greater than 0", r.value));
    }
}

/// The identity of a node: host (case-insensitively), ip, internalip.
pub(crate) fn node_key(n: &PlanNode) -> (String, String, String) {
    (s(&n.host).to_ascii_lowercase(), s(&n.ip).to_string(), s(&n.internalip).to_string())
}

fn node_groups(v: &mut V, plan: &Plan) {
    for g in groups(plan) {
        let name = g.role.as_str();
        let nodes: &[Loc<PlanNode>] = g.nodes.map(|n| n.value.as_slice()).unwrap_or(&[]);
        let count = g.expected.as_ref().map(|c| c.value);
        let count_pos = p(g.expected);
        let nodes_pos = g.nodes.and_then(|n| n.pos).or(g.pos);
        let optional = matches!(g.role, Role::Ingress | Role::Storage);
        if !g.present {
            if !optional {
                v.err(None, name, format!("the {name} group is required, with at least one node"));
            }
            continue;
        }
        if let Some(c) = count
            && c < 0
        {
            v.err(count_pos, format!("{name}.expected_count"), format!("expected_count {c} must not be negative"));
        }
        let c = count.unwrap_or(0);
        if optional && c <= 0 && nodes.is_empty() {
            continue;
        }
        if nodes.is_empty() {
            v.err(nodes_pos, format!("{name}.nodes"), "at least one node is required");
        }
        if c == 0 && !optional {
            v.err(count_pos.or(g.pos), format!("{name}.expected_count"), "expected_count must be greater than 0");
        }
        if c >= 0 && (c > 0 || optional) && !nodes.is_empty() && c as usize != nodes.len() {
            v.err(
                count_pos.or(g.pos),
                format!("{name}.expected_count"),
                format!("expected_count is {c} but {} node(s) are listed", nodes.len()),
            );
        }
        let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let key = format!("{name}.nodes[{i}]");
            node(v, &n.value, n.pos, &key);
            let id = node_key(&n.value);
            if id.0.is_empty() && id.1.is_empty() {
                continue;
            }
            if let Some(first) = seen.get(&id) {
                v.err(
                    n.pos,
                    key,
                    format!("the same node is listed twice in the {name} group (see {name}.nodes[{first}])"),
                );
            } else {
                seen.insert(id, i);
            }
        }
    }
    if let Some(m) = &plan.master {
        let lb = &m.value.load_balancer;
        if s(lb).is_empty() {
            v.err(
                p(lb).or(m.pos),
                "master.load_balancer",
                "load balancer is required (host:port of the API servers' endpoint)",
            );
        } else if let Err(reason) = names::host_port(s(lb)) {
            v.err(p(lb), "master.load_balancer", format!("load balancer {:?} {reason}", s(lb)));
        }
    }
    cross_node(v, plan);
}

fn node(v: &mut V, n: &PlanNode, pos: Option<Pos>, key: &str) {
    let host_key = format!("{key}.host");
    if v.required(&n.host, pos, &host_key, "node host") {
        v.check(&n.host, &host_key, "host", |h| {
            names::dns1123_host(h).map_err(|e| format!("is not a valid DNS-1123 host name: it {e}"))
        });
    }
    let ip_key = format!("{key}.ip");
    if v.required(&n.ip, pos, &ip_key, "node ip") {
        v.check(&n.ip, &ip_key, "ip", |i| {
            names::ip(i).map(|_| ()).map_err(|e| format!("is not a valid IP address: it {e}"))
        });
    }
    // internalip defaults to ip; only check it when it was given separately.
    if s(&n.internalip) != s(&n.ip) {
        v.check(&n.internalip, &format!("{key}.internalip"), "internalip", |i| {
            names::ip(i).map(|_| ()).map_err(|e| format!("is not a valid IP address: it {e}"))
        });
    }
    for (k, val) in &n.labels.0 {
        let lk = format!("{key}.labels");
        if k.value.starts_with(RESERVED_PREFIX) {
            v.err(k.pos, &lk, format!("label {:?} must not start with 'kismatic/' (reserved)", k.value));
        } else if let Err(r) = names::qualified_name(&k.value) {
            v.err(k.pos, &lk, format!("label key {:?} is not a valid Kubernetes label name: it {r}", k.value));
        }
        if let Err(r) = names::label_value(&val.value) {
            v.err(
                val.pos,
                format!("{lk}.{}", k.value.escape_debug()),
                format!("label value {:?} is not valid: it {r}", val.value),
            );
        }
    }
    for (i, t) in n.taints.iter().enumerate() {
        let tk = format!("{key}.taints[{i}]");
        let t_ = &t.value;
        let tkey = s(&t_.key);
        if tkey.is_empty() {
            v.err(p(&t_.key).or(t.pos), format!("{tk}.key"), "taint key is required");
        } else if tkey.starts_with(RESERVED_PREFIX) {
            v.err(
                p(&t_.key),
                format!("{tk}.key"),
                format!("taint key {tkey:?} must not start with 'kismatic/' (reserved)"),
            );
        } else if let Err(r) = names::qualified_name(tkey) {
            v.err(
                p(&t_.key),
                format!("{tk}.key"),
                format!("taint key {tkey:?} is not a valid Kubernetes name: it {r}"),
            );
        }
        if let Err(r) = names::label_value(s(&t_.value)) {
            v.err(p(&t_.value), format!("{tk}.value"), format!("taint value {:?} is not valid: it {r}", s(&t_.value)));
        }
        let effect = s(&t_.effect);
        if !TAINT_EFFECTS.contains(&effect) {
            v.err(
                p(&t_.effect).or(t.pos),
                format!("{tk}.effect"),
                format!("taint effect {effect:?} is not valid; options are: {}", TAINT_EFFECTS.join(", ")),
            );
        }
    }
    if let Some(k) = &n.kubelet {
        v.overrides(&k.option_overrides, &format!("{key}.kubelet.option_overrides"));
    }
}

/// No two different nodes may share a host name, an ip or an internalip; a node listed in several
/// groups must not carry different kubelet overrides.
fn cross_node(v: &mut V, plan: &Plan) {
    type Id = (String, String, String);
    let mut hosts: HashMap<String, (Id, String)> = HashMap::new();
    let mut ips: HashMap<String, (Id, String)> = HashMap::new();
    let mut internals: HashMap<String, (Id, String)> = HashMap::new();
    let mut kubelets: HashMap<Id, (Option<&model::ComponentOptions>, String)> = HashMap::new();
    for g in groups(plan) {
        let Some(nodes) = g.nodes else { continue };
        for (i, n) in nodes.value.iter().enumerate() {
            let where_ = format!("{}.nodes[{i}]", g.role);
            let id = node_key(&n.value);
            let (host, ip, internal) = (&id.0, &id.1, &id.2);
            let clash =
                |map: &mut HashMap<String, (Id, String)>, val: &str, shown: &str, pos, field: &str, what: &str| {
                    if val.is_empty() {
                        return None;
                    }
                    match map.get(val) {
                        Some((other, at)) if *other != id => Some(Diagnostic::new(
                            v.file,
                            pos,
                            format!("{where_}.{field}"),
                            format!("{what} {shown:?} is already used by a different node ({at})"),
                        )),
                        Some(_) => None,
                        None => {
                            map.insert(val.to_string(), (id.clone(), where_.clone()));
                            None
                        }
                    }
                };
            let mut found = Vec::new();
            found.extend(clash(&mut hosts, host, s(&n.value.host), p(&n.value.host), "host", "host"));
            found.extend(clash(&mut ips, ip, ip, p(&n.value.ip), "ip", "ip"));
            // A defaulted internalip equals ip: its clash is already reported as an ip clash.
            if internal != ip || !found.iter().any(|d| d.key.ends_with(".ip")) {
                found.extend(clash(
                    &mut internals,
                    internal,
                    internal,
                    p(&n.value.internalip),
                    "internalip",
                    "internalip",
                ));
            }
            v.out.extend(found);

            let kubelet = n.value.kubelet.as_ref().filter(|k| !k.option_overrides.is_empty());
            match kubelets.get(&id) {
                Some((first, at)) => {
                    let same = match (first, kubelet) {
                        (None, None) => true,
                        (Some(a), Some(b)) => a.option_overrides.iter().eq(b.option_overrides.iter()),
                        _ => false,
                    };
                    if !same {
                        v.err(
                            n.pos,
                            format!("{where_}.kubelet"),
                            format!("kubelet option overrides differ from those of the same node at {at}"),
                        );
                    }
                }
                None => {
                    kubelets.insert(id.clone(), (kubelet, where_.clone()));
                }
            }
        }
    }
}

fn additional_files(v: &mut V, plan: &Plan) {
    let hosts: Vec<String> = groups(plan)
        .iter()
        .filter_map(|g| g.nodes)
        .flat_map(|n| n.value.iter().map(|n| s(&n.value.host).to_ascii_lowercase()))
        .collect();
    for (i, f) in plan.additional_files.iter().enumerate() {
        let key = format!("additional_files[{i}]");
        let f_ = &f.value;
        if f_.hosts.is_empty() {
            v.err(f.pos, format!("{key}.hosts"), "at least one host, role or `all` is required");
        }
        for h in &f_.hosts {
            let known = h.value == "all"
                || Role::ALL.iter().any(|r| r.as_str() == h.value)
                || hosts.contains(&h.value.to_ascii_lowercase());
            if !known {
                v.err(h.pos, format!("{key}.hosts"), format!("{:?} is not a host, a role or `all`", h.value));
            }
        }
        for (val, field) in [(&f_.source, "source"), (&f_.destination, "destination")] {
            let path = s(val);
            if !path.starts_with('/') {
                v.err(p(val).or(f.pos), format!("{key}.{field}"), format!("{field} {path:?} must be an absolute path"));
            } else {
                v.check(val, &format!("{key}.{field}"), field, names::no_control);
            }
        }
    }
}

fn nfs(v: &mut V, plan: &Plan) {
    let Some(nfs) = &plan.nfs else { return };
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, vol) in nfs.nfs_volume.iter().enumerate() {
        let key = format!("nfs.nfs_volume[{i}]");
        let n = &vol.value;
        if v.required(&n.nfs_host, vol.pos, &format!("{key}.nfs_host"), "NFS host") {
            v.check(&n.nfs_host, &format!("{key}.nfs_host"), "NFS host", names::host_or_ip);
        }
        if v.required(&n.mount_path, vol.pos, &format!("{key}.mount_path"), "NFS mount path")
            && !s(&n.mount_path).starts_with('/')
        {
            v.err(p(&n.mount_path), format!("{key}.mount_path"), "NFS mount path must be absolute");
        }
        let id = (s(&n.nfs_host).to_string(), s(&n.mount_path).to_string());
        if let Some(first) = seen.get(&id) {
            v.err(vol.pos, key, format!("duplicate NFS volume (same as nfs.nfs_volume[{first}])"));
        } else {
            seen.insert(id, i);
        }
    }
}

/// Resolve a path from the plan: `~/` is the user's home, relative paths are relative to the plan's folder.
pub fn resolve_path(plan_path: &Path, value: &str) -> PathBuf {
    if let Some(rest) = value.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    let v = Path::new(value);
    if v.is_absolute() {
        return v.to_path_buf();
    }
    let dir = plan_path.parent().unwrap_or(Path::new(""));
    let joined = dir.join(v);
    std::path::absolute(&joined).unwrap_or(joined)
}

/// The checks that need the file system: the SSH key exists, is a regular file and is private (as ssh
/// itself insists: no access for group or others); other referenced local files exist.
pub fn check_files(plan: &Plan) -> Vec<Diagnostic> {
    let mut v = V { file: &plan.path, out: Vec::new() };
    let ssh = &plan.cluster.ssh;
    let key = s(&ssh.ssh_key);
    if !key.is_empty() {
        let path = resolve_path(&plan.path, key);
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                v.err(
                    p(&ssh.ssh_key),
                    "cluster.ssh.ssh_key",
                    format!("SSH key file {} does not exist", path.display()),
                );
            }
            Err(e) => v.err(
                p(&ssh.ssh_key),
                "cluster.ssh.ssh_key",
                format!("cannot read SSH key file {}: {e}", path.display()),
            ),
            Ok(m) if !m.is_file() => {
                v.err(
                    p(&ssh.ssh_key),
                    "cluster.ssh.ssh_key",
                    format!("SSH key {} is not a regular file", path.display()),
                );
            }
            Ok(m) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    v.err(
                        p(&ssh.ssh_key),
                        "cluster.ssh.ssh_key",
                        format!(
                            "SSH key file {} is accessible by group or others (mode {mode:04o}); ssh refuses such keys: run `chmod 600 {}`",
                            path.display(),
                            path.display()
                        ),
                    );
                }
            }
        }
    }
    let kh = s(&ssh.known_hosts);
    if !kh.is_empty() {
        let path = resolve_path(&plan.path, kh);
        if path.exists() && !path.is_file() {
            v.err(
                p(&ssh.known_hosts),
                "cluster.ssh.known_hosts",
                format!("known_hosts {} is not a regular file", path.display()),
            );
        }
    }
    let mut exists = |val: &LocStr, key: String, what: &str| {
        let f = s(val);
        if !f.is_empty() {
            let path = resolve_path(&plan.path, f);
            if !path.exists() {
                v.err(p(val), key, format!("{what} {} does not exist", path.display()));
            }
        }
    };
    exists(&plan.docker_registry.ca, "docker_registry.CA".into(), "registry CA file");
    if !s(&plan.cluster.cloud_provider.provider).is_empty() {
        exists(&plan.cluster.cloud_provider.config, "cluster.cloud_provider.config".into(), "cloud config file");
    }
    for (i, f) in plan.additional_files.iter().enumerate() {
        if !b(&f.value.skip_validation) && s(&f.value.source).starts_with('/') {
            exists(&f.value.source, format!("additional_files[{i}].source"), "source");
        }
    }
    v.out
}
