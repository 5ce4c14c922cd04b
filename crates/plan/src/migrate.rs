//! Deprecated fields migrated on read, then Kismatic's defaults applied (both in place on the raw model).
//! Each migrated deprecated field leaves a note in `Plan::warnings`.

use crate::diag::Diagnostic;
use crate::model::{self, Cni, Dashboard, Heapster, Loc, LocStr, Plan, s};

/// Kubernetes version Kismatic v1.12 installed when `cluster.version` was empty.
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.10.5";
pub const DEFAULT_SSH_PORT: i64 = 22;
pub const DEFAULT_APISERVER_PORT: u16 = 6443;
const DEFAULT_CA_EXPIRY: &str = "17520h";
const DEFAULT_HEAPSTER_SINK: &str = "influxdb:http://heapster-influxdb.kube-system.svc:8086";

fn set_str(slot: &mut LocStr, value: impl Into<String>, from: Option<model::Pos>) {
    *slot = Some(Loc::new(value.into(), from));
}

fn empty(v: &LocStr) -> bool {
    s(v).is_empty()
}

fn default_str(slot: &mut LocStr, value: &str) {
    if empty(slot) {
        *slot = Some(Loc::synthetic(value.to_string()));
    }
}

fn default_int(slot: &mut model::LocInt, value: i64) {
    if slot.as_ref().is_none_or(|l| l.value == 0) {
        *slot = Some(Loc::synthetic(value));
    }
}

pub(crate) fn migrate(plan: &mut Plan) {
    let file = plan.path.clone();
    let mut notes = Vec::new();
    let mut note = |pos, key: &str, msg: String| notes.push(Diagnostic::new(&file, pos, key, msg));

    // allow_package_installation (KET ≤ v1.4.0) is the inverse of disable_package_installation.
    if let Some(allow) = plan.cluster.allow_package_installation.clone() {
        plan.cluster.disable_package_installation = Some(Loc::new(!allow.value, allow.pos));
        note(
            allow.pos,
            "cluster.allow_package_installation",
            format!("deprecated; read as `disable_package_installation: {}`", !allow.value),
        );
    }
    if let Some(pw) = &plan.cluster.admin_password {
        note(pw.pos, "cluster.admin_password", "deprecated and ignored".into());
    }

    // load_balanced_fqdn → load_balancer = fqdn:6443 (load_balancer wins when both are set).
    if let Some(master) = &mut plan.master {
        let m = &mut master.value;
        if let Some(fqdn) = m.load_balanced_fqdn.clone().filter(|f| !f.value.is_empty()) {
            if empty(&m.load_balancer) {
                let lb = format!("{}:{DEFAULT_APISERVER_PORT}", fqdn.value);
                note(fqdn.pos, "master.load_balanced_fqdn", format!("deprecated; read as `load_balancer: {lb}`"));
                set_str(&mut m.load_balancer, lb, fqdn.pos);
            } else {
                note(fqdn.pos, "master.load_balanced_fqdn", "deprecated and ignored: `load_balancer` is set".into());
            }
        }
        if let Some(short) = m.load_balanced_short_name.as_ref().filter(|v| !v.value.is_empty()) {
            note(short.pos, "master.load_balanced_short_name", "deprecated and ignored".into());
        }
    }

    // docker_registry address/port → server.
    let reg = &mut plan.docker_registry;
    if let Some(addr) = reg.address.clone().filter(|a| !a.value.is_empty()) {
        if empty(&reg.server) {
            let server = match reg.port.as_ref().map(|p| p.value) {
                Some(port) if port != 0 => format!("{}:{port}", addr.value),
                _ => addr.value.clone(),
            };
            note(addr.pos, "docker_registry.address", format!("deprecated; read as `server: {server}`"));
            set_str(&mut reg.server, server, addr.pos);
        } else {
            note(addr.pos, "docker_registry.address", "deprecated and ignored: `server` is set".into());
        }
    }

    // features.package_manager (KET ≤ v1.3.3) → add_ons.package_manager.
    if let Some(pm) = plan.features.as_ref().and_then(|f| f.package_manager.as_ref()) {
        let enabled = model::b(&pm.enabled);
        let pos = model::p(&pm.enabled);
        plan.add_ons.package_manager.disable = Some(Loc::new(!enabled, pos));
        set_str(&mut plan.add_ons.package_manager.provider, "helm", pos);
        note(
            pos,
            "features.package_manager",
            format!("deprecated; read as `add_ons.package_manager: {{disable: {}, provider: helm}}`", !enabled),
        );
    }

    // dashbard (sic) is read only when dashboard is absent.
    if let Some(old) = plan.add_ons.dashbard.take() {
        let pos = model::p(&old.disable);
        if plan.add_ons.dashboard.is_none() {
            plan.add_ons.dashboard = Some(old);
            note(pos, "add_ons.dashbard", "deprecated misspelling; read as `add_ons.dashboard`".into());
        } else {
            note(pos, "add_ons.dashbard", "deprecated and ignored: `add_ons.dashboard` is set".into());
        }
    }

    // networking.type (KET < v1.5.0) is the Calico mode, used when add_ons.cni is absent.
    let net_type = plan.cluster.networking.type_.clone().filter(|t| !t.value.is_empty());
    if plan.add_ons.cni.is_none() {
        let mut cni = Cni::default();
        set_str(&mut cni.provider, "calico", None);
        match &net_type {
            Some(t) => {
                note(
                    t.pos,
                    "cluster.networking.type",
                    format!("deprecated; read as `add_ons.cni.options.calico.mode: {}`", t.value),
                );
                cni.options.calico.mode = Some(t.clone());
            }
            None => set_str(&mut cni.options.calico.mode, "overlay", None),
        }
        plan.add_ons.cni = Some(cni);
    } else if let Some(t) = &net_type {
        note(t.pos, "cluster.networking.type", "deprecated and ignored: `add_ons.cni` is set".into());
    }

    // heapster_replicas / influxdb_pvc_name (KET < v1.5.0).
    let heapster = plan.add_ons.heapster.get_or_insert_with(Heapster::default);
    let o = &mut heapster.options;
    if let Some(r) = o.heapster_replicas.clone().filter(|r| r.value != 0) {
        note(
            r.pos,
            "add_ons.heapster.options.heapster_replicas",
            format!("deprecated; read as `heapster.replicas: {}`", r.value),
        );
        o.heapster.replicas = Some(r);
    }
    if let Some(pvc) = o.influxdb_pvc_name.clone().filter(|v| !v.value.is_empty()) {
        note(
            pvc.pos,
            "add_ons.heapster.options.influxdb_pvc_name",
            format!("deprecated; read as `influxdb.pvc_name: {}`", pvc.value),
        );
        o.influxdb.pvc_name = Some(pvc);
    }

    // docker.storage.direct_lvm → devicemapper with direct_lvm_block_device.
    let st = &mut plan.docker.storage;
    if let Some(lvm) = st.direct_lvm.clone() {
        let pos = model::p(&lvm.enabled);
        if model::b(&lvm.enabled) {
            set_str(&mut st.driver, "devicemapper", pos);
            st.direct_lvm_block_device.path = lvm.block_device.clone();
            let deferred = model::b(&lvm.enable_deferred_deletion);
            st.opts.insert("dm.use_deferred_removal", "true");
            st.opts.insert("dm.use_deferred_deletion", if deferred { "true" } else { "false" });
            note(
                pos,
                "docker.storage.direct_lvm",
                "deprecated; read as `driver: devicemapper` with `direct_lvm_block_device`".into(),
            );
        } else {
            note(pos, "docker.storage.direct_lvm", "deprecated and ignored: not enabled".into());
        }
    }

    plan.warnings.extend(notes);
    apply_defaults(plan);
}

/// Kismatic's defaults, applied where a value is absent (or zero/empty, as Go's zero values were).
fn apply_defaults(plan: &mut Plan) {
    let c = &mut plan.cluster;
    default_str(&mut c.version, DEFAULT_KUBERNETES_VERSION);
    default_str(&mut c.certificates.ca_expiry, DEFAULT_CA_EXPIRY);
    if c.ssh.ssh_port.is_none() {
        c.ssh.ssh_port = Some(Loc::synthetic(DEFAULT_SSH_PORT));
    }

    let logs = &mut plan.docker.logs;
    if empty(&logs.driver) {
        logs.driver = Some(Loc::synthetic("json-file".into()));
        if logs.opts.is_empty() {
            logs.opts.insert("max-file", "1");
            logs.opts.insert("max-size", "50m");
        }
    }
    let dev = &mut plan.docker.storage.direct_lvm_block_device;
    if !empty(&dev.path) {
        default_str(&mut dev.thinpool_percent, "95");
        default_str(&mut dev.thinpool_metapercent, "1");
        default_str(&mut dev.thinpool_autoextend_threshold, "80");
        default_str(&mut dev.thinpool_autoextend_percent, "20");
    }

    let a = &mut plan.add_ons;
    if let Some(cni) = &mut a.cni {
        default_str(&mut cni.provider, "calico");
        let cal = &mut cni.options.calico;
        default_str(&mut cal.mode, "overlay");
        default_str(&mut cal.log_level, "info");
        default_int(&mut cal.workload_mtu, 1500);
        default_int(&mut cal.felix_input_mtu, 1440);
        default_str(&mut cal.ip_autodetection_method, "first-found");
    }
    default_str(&mut a.dns.provider, "kubedns");
    default_int(&mut a.dns.options.replicas, 2);
    if let Some(h) = &mut a.heapster {
        default_int(&mut h.options.heapster.replicas, 2);
        default_str(&mut h.options.heapster.service_type, "ClusterIP");
        default_str(&mut h.options.heapster.sink, DEFAULT_HEAPSTER_SINK);
    }
    let dash = a.dashboard.get_or_insert_with(Dashboard::default);
    default_str(&mut dash.options.service_type, "ClusterIP");
    default_str(&mut a.package_manager.options.helm.namespace, "kube-system");

    // internalip defaults to ip.
    for group in crate::groups_mut(plan) {
        for node in group.iter_mut() {
            let n = &mut node.value;
            if empty(&n.internalip) {
                n.internalip = n.ip.as_ref().map(|ip| Loc::new(ip.value.clone(), ip.pos));
            }
        }
    }
}
