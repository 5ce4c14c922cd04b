#!/usr/bin/env python3
"""The master gate against the API server's own ready time, in one run (issue 10, item 4).

While CMD runs (an online upgrade writing its `--events` to EVENTS), each master of PLAN polls its own API
server on the node every 50 ms (`curl https://<ip>:6443/readyz`, anonymous) and logs each answer with its time.
Afterwards, per master: the new kube-apiserver's start (systemd's ExecMainStartTimestamp, microseconds) to the
first `/readyz` 200 after it (the server's own ready time), against the tool's health gate of that master's
kube-apiserver step (the `health` wait of the step's event: running version, then `/readyz` + `/version`).
Nodes share the host's clock, so node and tool times compare directly.

Usage: master-gate.py PLAN EVENTS -- CMD...   (run as root on the testbed host; the testbed is up)"""
import datetime
import json
import os
import signal
import subprocess
import sys

import yaml

POLL = r"""
while :; do
  code=$(curl -sk -o /dev/null -m 2 -w '%{http_code}' "https://$1:6443/readyz")
  echo "$(date +%s.%N) $code"
  sleep 0.05
done
"""


def ssh(plan_dir, ssh_cfg, ip, args, **kw):
    key = os.path.join(plan_dir, ssh_cfg["ssh_key"])
    known = os.path.join(plan_dir, ssh_cfg["known_hosts"])
    base = ["ssh", "-i", key, "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-p", str(ssh_cfg.get("ssh_port", 22)), f"{ssh_cfg['user']}@{ip}"]
    return subprocess.Popen(base + args, **kw)


def start_time(plan_dir, ssh_cfg, ip):
    p = ssh(plan_dir, ssh_cfg, ip, ["systemctl", "show", "--timestamp=us+utc", "-p", "ExecMainStartTimestamp",
                                     "--value", "kube-apiserver"], stdout=subprocess.PIPE, text=True)
    out = p.communicate()[0].strip()  # e.g. "Wed 2026-12-02 18:40:01.123456 UTC"
    parts = out.split()
    t = datetime.datetime.strptime(f"{parts[1]} {parts[2]}", "%Y-%m-%d %H:%M:%S.%f")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def main():
    if "--" not in sys.argv or len(sys.argv) < 5:
        sys.exit(__doc__)
    sep = sys.argv.index("--")
    plan_path, events_path = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sep + 1:]
    plan = yaml.safe_load(open(plan_path))
    plan_dir = os.path.dirname(os.path.abspath(plan_path))
    ssh_cfg = plan["cluster"]["ssh"]
    masters = [(n["host"], n["internalip"]) for n in plan["master"]["nodes"]]
    pollers = {}
    for host, ip in masters:
        pollers[host] = ssh(plan_dir, ssh_cfg, ip, ["bash", "-c", POLL, "poll", ip], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    status = subprocess.call(cmd)
    polls = {}
    for host, p in pollers.items():
        os.killpg(p.pid, signal.SIGTERM)
        out = p.communicate()[0]
        polls[host] = [(float(t), c) for t, c in (line.split() for line in out.splitlines() if len(line.split()) == 2)]
    events = [json.loads(line) for line in open(events_path) if line.strip()]
    run = events[-1]["run_id"]
    steps = {e["node"]: e for e in events if e["run_id"] == run and e.get("state") == "finished"
             and "kube-apiserver" in e.get("step", "") and e.get("node")}
    print(f"{'master':<10} {'server start→/readyz':>21} {'gate':>7} {'gate−server':>12} {'gate end−ready':>15}")
    for host, ip in masters:
        started = start_time(plan_dir, ssh_cfg, ip)
        ready = next((t for t, c in polls[host] if t >= started and c == "200"), None)
        e = steps.get(host)
        health = [w for w in (e or {}).get("waits", []) if w["kind"] == "health"]
        if ready is None or not health:
            print(f"{host:<10} incomplete (ready seen: {ready is not None}, gate event: {bool(health)})")
            continue
        g = health[-1]
        gate_s, gate_end = g["ms"] / 1000, (g["at_ms"] + g["ms"]) / 1000
        server_s = ready - started
        print(f"{host:<10} {server_s:>20.2f}s {gate_s:>6.2f}s {gate_s - server_s:>+11.2f}s {gate_end - ready:>+14.2f}s")
    sys.exit(status)


if __name__ == "__main__":
    main()
