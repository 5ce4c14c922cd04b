#!/usr/bin/env bash
# Benchmark: `kismatic info` against N loopback SSH endpoints (default 200), compared in the same run with
#  - the way Kismatic did it: a sequential loop of `ssh … cat /etc/kismatic-version /etc/component-versions`;
#  - parallel-ssh (Debian `pssh`) doing the same `cat` on every node.
# Prints the three medians and the ratios. Targets: >= 20x faster than the loop, no slower than pssh.
#
# Endpoints: sshd processes on 127.0.78.1..N (each process listens on PER_SSHD addresses), each in its own mount
# namespace with an overlay over /etc holding the markers. Needs root, openssh-server, pssh, hyperfine, python3.
# Everything it starts is stopped by PID on exit; its files live in one temporary folder.
#
# Usage: scripts/bench-info.sh [NODES]
#   env: RUNS (kismatic and pssh, default 3), SEQ_RUNS (sequential loop, default 2), PORT (default: a free one),
#        KISMATIC (binary; default: cargo build --release), SETUP_ONLY=SECONDS (start the endpoints and wait)
#
# Note: every endpoint runs on this machine, so the nodes' sshd CPU (a fork, re-exec and key exchange per
# connection) is spent on the same cores as the clients'. Parallelism cannot beat the core count by much here;
# see docs/info.md for measured figures and what they mean.
set -euo pipefail

NODES=${1:-200}
RUNS=${RUNS:-3}
SEQ_RUNS=${SEQ_RUNS:-2}
PER_SSHD=${PER_SSHD:-16}  # sshd accepts at most 16 listen sockets (MAX_LISTEN_SOCKS)
SUBNET=${SUBNET:-78}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" != 0 ]; then echo "bench-info: needs root (mount namespaces, sshd)" >&2; exit 2; fi
for t in /usr/sbin/sshd unshare ssh ssh-keygen parallel-ssh hyperfine python3; do
  command -v "$t" >/dev/null || { echo "bench-info: $t is missing" >&2; exit 2; }
done
if [ "$NODES" -lt 3 ] || [ "$NODES" -gt 254 ]; then echo "bench-info: NODES must be 3..254" >&2; exit 2; fi

KISMATIC=${KISMATIC:-}
if [ -z "$KISMATIC" ]; then
  (cd "$ROOT" && cargo build --release -p kismatic >&2)
  KISMATIC="${CARGO_TARGET_DIR:-$ROOT/target}/release/kismatic"
fi

WORK=$(mktemp -d /tmp/kbench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/id_client"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/host_key"
cp "$WORK/id_client.pub" "$WORK/authorized_keys"
HOSTKEY=$(cut -d' ' -f1,2 "$WORK/host_key.pub")
: >"$WORK/known_hosts"
: >"$WORK/hosts"

# One sshd per PER_SSHD addresses; each group has its own /etc overlay with the markers.
NODE_SCRIPT='set -e
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc
exec /usr/sbin/sshd -D -e -f "$3"'
n=1
g=0
while [ "$n" -le "$NODES" ]; do
  gd="$WORK/g$g"; mkdir -p "$gd/upper" "$gd/work"
  printf '1.1.0' >"$gd/upper/kismatic-version"
  printf 'kubernetes: v1.34.1\n' >"$gd/upper/component-versions"
  {
    echo "Port $PORT"
    echo "HostKey $WORK/host_key"
    echo "PidFile none"
    echo "AuthorizedKeysFile $WORK/authorized_keys"
    echo "StrictModes no"
    echo "UsePAM no"
    echo "PermitRootLogin prohibit-password"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "MaxStartups 1000:30:1000"
    echo "UseDNS no"
    echo "LogLevel ERROR"
  } >"$gd/sshd_config"
  i=0
  while [ "$i" -lt "$PER_SSHD" ] && [ "$n" -le "$NODES" ]; do
    a="127.0.$SUBNET.$n"
    echo "ListenAddress $a" >>"$gd/sshd_config"
    echo "[$a]:$PORT $HOSTKEY" >>"$WORK/known_hosts"
    echo "$a:$PORT" >>"$WORK/hosts"
    n=$((n + 1)); i=$((i + 1))
  done
  unshare --mount --propagation private -- sh -c "$NODE_SCRIPT" bench "$gd/upper" "$gd/work" "$gd/sshd_config" \
    >"$gd/sshd.log" 2>&1 &
  PIDS+=($!)
  g=$((g + 1))
done

# Plan: node 1 etcd, node 2 master, the rest workers.
{
  cat <<EOF
cluster:
  name: bench
  version: v1.34.1
  networking:
    pod_cidr_block: 172.16.0.0/16
    service_cidr_block: 172.20.0.0/16
  certificates:
    expiry: 17520h
  ssh:
    user: root
    ssh_key: $WORK/id_client
    ssh_port: $PORT
    known_hosts: $WORK/known_hosts
etcd:
  expected_count: 1
  nodes:
  - host: node1
    ip: 127.0.$SUBNET.1
master:
  expected_count: 1
  load_balancer: 127.0.$SUBNET.2:6443
  nodes:
  - host: node2
    ip: 127.0.$SUBNET.2
worker:
  expected_count: $((NODES - 2))
  nodes:
EOF
  for n in $(seq 3 "$NODES"); do printf '  - host: node%d\n    ip: 127.0.%d.%d\n' "$n" "$SUBNET" "$n"; done
} >"$WORK/plan.yaml"

# Wait until every endpoint accepts connections.
python3 - "$WORK/hosts" <<'EOF' || { cat "$WORK"/g*/sshd.log >&2; exit 1; }
import socket, sys, time
hosts = [l.strip().rsplit(":", 1) for l in open(sys.argv[1]) if l.strip()]
deadline = time.time() + 30
for h, p in hosts:
    while True:
        try:
            socket.create_connection((h, int(p)), 0.5).close()
            break
        except OSError:
            if time.time() > deadline:
                sys.exit(f"bench-info: {h}:{p} did not come up")
            time.sleep(0.05)
EOF

SSH_OPTS="-i $WORK/id_client -o UserKnownHostsFile=$WORK/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes"
cat >"$WORK/sequential.sh" <<EOF
#!/bin/sh
# Kismatic's way: one ssh per node, one after the other.
set -e
for a in \$(sed 's/:.*//' "$WORK/hosts"); do
  ssh $SSH_OPTS -p $PORT root@\$a cat /etc/kismatic-version /etc/component-versions >/dev/null
done
EOF
chmod +x "$WORK/sequential.sh"

if [ -n "${SETUP_ONLY:-}" ]; then
  echo "bench-info: endpoints up; plan $WORK/plan.yaml, hosts $WORK/hosts; sleeping (SETUP_ONLY)" >&2
  sleep "$SETUP_ONLY"
  exit 0
fi

# Sanity: each way reads every node (exit code 0 and 200 rows), before timing anything.
"$KISMATIC" info -f "$WORK/plan.yaml" >"$WORK/info.out"
rows=$(grep -c '  1.1.0  ' "$WORK/info.out" || true)
[ "$rows" -eq "$NODES" ] || { echo "bench-info: kismatic info read $rows of $NODES nodes" >&2; cat "$WORK/info.out" >&2; exit 1; }
"$WORK/sequential.sh"
parallel-ssh -t 0 -p 32 -h "$WORK/hosts" -l root -x "$SSH_OPTS" -i cat /etc/kismatic-version /etc/component-versions \
  >"$WORK/pssh.out"
ok=$(grep -c 'SUCCESS' "$WORK/pssh.out" || true)
[ "$ok" -eq "$NODES" ] || { echo "bench-info: pssh read $ok of $NODES nodes" >&2; exit 1; }

# The sanity pass above warmed every cache; the sequential loop is slow, so it gets fewer runs.
echo "bench-info: load average before timing: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)" >&2
hyperfine --runs "$RUNS" --export-json "$WORK/fast.json" \
  -n "kismatic info" "$KISMATIC info -f $WORK/plan.yaml >/dev/null" \
  -n "parallel-ssh" "parallel-ssh -t 0 -p 32 -h $WORK/hosts -l root -x '$SSH_OPTS' -i cat /etc/kismatic-version /etc/component-versions >/dev/null"
hyperfine --runs "$SEQ_RUNS" --export-json "$WORK/seq.json" -n "sequential ssh loop" "$WORK/sequential.sh"
echo "bench-info: load average after timing: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$WORK/fast.json" "$WORK/seq.json" "$NODES" <<'EOF'
import json, sys
r = {}
for f in sys.argv[1:3]:
    r.update({x["command"]: x for x in json.load(open(f))["results"]})
k, s, p = (r[n]["median"] for n in ("kismatic info", "sequential ssh loop", "parallel-ssh"))
print()
print(f"nodes: {sys.argv[3]}")
print(f"median kismatic info:       {k:8.3f} s")
print(f"median sequential ssh loop: {s:8.3f} s")
print(f"median parallel-ssh:        {p:8.3f} s")
print(f"sequential / kismatic:      {s / k:8.1f}x   (target >= 20x)")
print(f"parallel-ssh / kismatic:    {p / k:8.2f}x   (target >= 1.0x)")
EOF
