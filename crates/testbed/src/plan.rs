//! Reading the plan file: the plan crate's parser (`kismatic_plan::parse`: migration, validation with line and
//! column diagnostics), then the testbed's own requirements (loopback addresses, an etcd node).
//! `parse`, not `load`: `load` also requires the SSH key file to exist, and the testbed creates that key.

use anyhow::{Context, Result, anyhow, bail};
pub use kismatic_plan::{Inventory, Node, Role};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// Loads the plan into an `Inventory` and checks what the testbed itself requires (loopback addresses).
pub fn load_inventory(path: &Path) -> Result<Inventory> {
    let inv = parse(path)?;
    check_testbed_rules(&inv)?;
    Ok(inv)
}

fn parse(path: &Path) -> Result<Inventory> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read plan file {}", path.display()))?;
    // Canonical, so relative key paths resolve the same from any working directory.
    let path = std::fs::canonicalize(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let (_, inv) = kismatic_plan::parse(&text, &path).map_err(|e| anyhow!("{e}"))?;
    Ok(inv)
}

/// Every address must be loopback (the testbed never touches a real network) and unique.
fn check_testbed_rules(inv: &Inventory) -> Result<()> {
    let plan = inv.plan_path.display();
    let name_ok = |s: &str| {
        !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if !name_ok(&inv.cluster_name) {
        bail!("{plan}: cluster.name {:?} must be 1-40 characters of letters, digits, '-' or '.'", inv.cluster_name);
    }
    if inv.nodes.is_empty() {
        bail!("{plan}: the plan has no nodes");
    }
    let mut seen = BTreeMap::new();
    for n in &inv.nodes {
        if !name_ok(&n.host) {
            bail!("{plan}: node host {:?} must be letters, digits, '-' or '.'", n.host);
        }
        let ip: Ipv4Addr =
            n.ip.parse().with_context(|| format!("{plan}: node {}: ip {:?} is not IPv4", n.host, n.ip))?;
        if !ip.is_loopback() || ip.octets()[3] == 0 || ip == Ipv4Addr::LOCALHOST {
            bail!(
                "{plan}: node {}: the testbed needs a loopback ip of its own (127.K.N.x, not 127.0.0.1), got {}",
                n.host,
                n.ip
            );
        }
        if n.internal_ip != n.ip {
            bail!("{plan}: node {}: the testbed shares the host network, internalip must equal ip", n.host);
        }
        if let Some(other) = seen.insert(n.ip.clone(), n.host.clone()) {
            bail!("{plan}: nodes {other} and {} share ip {}", n.host, n.ip);
        }
    }
    if inv.nodes_with_role(Role::Etcd).next().is_none() {
        bail!("{plan}: the testbed needs at least one etcd node");
    }
    if let Some(lb) = &inv.load_balancer {
        let ip: Ipv4Addr = lb.host.parse().with_context(|| {
            format!("{plan}: master.load_balancer host {:?} must be an IPv4 loopback address", lb.host)
        })?;
        if !ip.is_loopback() {
            bail!("{plan}: master.load_balancer must be a loopback address");
        }
        if let Some(host) = seen.get(&lb.host) {
            bail!("{plan}: master.load_balancer {} is node {host}'s ip; give HAProxy its own address", lb.host);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("plan.yaml");
        std::fs::write(&p, text).expect("write plan");
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("testbed-plan-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("tmpdir");
        d
    }

    #[test]
    fn examples_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        for name in ["minimal.yaml", "ha.yaml", "scale.yaml"] {
            let inv = load_inventory(&root.join(name)).expect(name);
            assert!(inv.ssh.known_hosts.is_some(), "{name}");
        }
        let ha = load_inventory(&root.join("ha.yaml")).expect("ha");
        assert_eq!(ha.nodes_with_role(Role::Etcd).count(), 3);
        assert_eq!(ha.nodes_with_role(Role::Master).count(), 2);
        assert_eq!(ha.nodes_with_role(Role::Worker).count(), 3);
        assert_eq!(ha.nodes_with_role(Role::Ingress).count(), 1);
        let scale = load_inventory(&root.join("scale.yaml")).expect("scale");
        let workers: Vec<_> = scale.nodes_with_role(Role::Worker).collect();
        assert_eq!(workers.len(), 40);
        for zone in ["zone-a", "zone-b", "zone-c", "zone-d"] {
            let n = workers
                .iter()
                .filter(|w| w.labels.get("topology.kubernetes.io/zone").map(String::as_str) == Some(zone));
            assert_eq!(n.count(), 10, "{zone}");
        }
    }

    fn minimal_text() -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/minimal.yaml");
        std::fs::read_to_string(p).expect("minimal example")
    }

    #[test]
    fn merges_roles_and_resolves_paths() {
        let d = tmpdir("merge");
        // etcd on the master node: one node with two roles.
        let text = minimal_text().replacen(
            "host: etcd01\n    ip: 127.0.11.1\n    internalip: 127.0.11.1",
            "host: master01\n    ip: 127.0.11.11\n    internalip: 127.0.11.11",
            1,
        );
        let inv = load_inventory(&write(&d, &text)).expect("load");
        assert_eq!(inv.nodes.len(), 2);
        assert_eq!(inv.nodes[0].roles, vec![Role::Master, Role::Etcd]);
        let d = std::fs::canonicalize(&d).expect("canonical");
        assert_eq!(inv.ssh.key, d.join("minimal.testbed/id_ed25519"));
        assert_eq!(inv.ssh.known_hosts, Some(d.join("minimal.testbed/known_hosts")));
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn rejects_non_loopback() {
        let d = tmpdir("nonlo");
        let text = minimal_text().replace("127.0.11.21", "10.0.0.21");
        let err = load_inventory(&write(&d, &text)).expect_err("must fail").to_string();
        assert!(err.contains("loopback") && err.contains("worker01"), "{err}");
        std::fs::remove_dir_all(d).ok();
    }
}
