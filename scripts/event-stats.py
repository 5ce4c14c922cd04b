#!/usr/bin/env python3
"""Where an upgrade's time went, from its `--events` JSON-lines file.

Every finished step carries `duration_ms`, `wait_ms` (waiting on restarts, health gates, drains, rollouts) and
`remote_ms` (time in node commands outside those waits: uploads, installs, switches). Staging steps run in the
background, overlapping the foreground steps, so time is counted on the wall-clock timeline:

  waits        wall time inside a foreground wait
  node work    foreground node commands outside waits, plus time when only staging ran (the foreground waited
               for a node's artifacts)
  tool itself  the rest: the tool's own work inside foreground steps (API calls, bookkeeping, local hashing)
               plus the time between steps

The run's last events give each node's SSH connections and commands (round trips), printed at the end.

Usage: event-stats.py EVENTS [RUN_ID]   (default: the last run in the file)"""
import json
import sys
from collections import defaultdict

events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
if not events:
    sys.exit("no events")
run = events[-1]["run_id"] if len(sys.argv) < 3 else sys.argv[2]
events = [e for e in events if e["run_id"] == run]
# `info` events (the per-node SSH totals written after the clean-up) are not part of the timeline.
ssh = {e["node"]: e for e in events if e["state"] == "info" and e["step"] == "ssh"}
events = [e for e in events if e["state"] != "info"]
t0, t1 = events[0]["at_ms"], events[-1]["at_ms"]
wall = (t1 - t0) / 1000
done = [e for e in events if e["state"] in ("finished", "failed")]
foreground = [e for e in done if e["phase"] != "stage"]
staging = [e for e in done if e["phase"] == "stage"]


def interval(e):
    return e["at_ms"] - e.get("duration_ms", 0), e["at_ms"]


def union_ms(intervals):
    total, end = 0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total, end = total + b - a, b
        elif b > end:
            total, end = total + b - end, b
    return total


def covered(intervals, minus):
    """ms covered by `intervals` and not by `minus`."""
    return union_ms(intervals + minus) - union_ms(minus)


fg_busy = union_ms([interval(e) for e in foreground])
waits = sum(e.get("wait_ms", 0) for e in foreground)
remote = sum(e.get("remote_ms", 0) for e in foreground)
own_in_steps = sum(e.get("duration_ms", 0) - e.get("wait_ms", 0) - e.get("remote_ms", 0) for e in foreground)
staging_alone = covered([interval(e) for e in staging], [interval(e) for e in foreground])
between = (t1 - t0) - fg_busy - staging_alone
nodes = sorted({e["node"] for e in done if e.get("node")})
tool = (own_in_steps + between) / 1000
node_work = (remote + staging_alone) / 1000
print(f"run {run}: wall {wall:.1f}s over {len(nodes)} nodes")
print(f"  waits (restarts, health, drains, rollouts) {waits / 1000:6.1f}s {waits / 1000 / wall:6.1%}")
print(f"  node work outside waits                    {node_work:6.1f}s {node_work / wall:6.1%}"
      f"  ({remote / 1000:.1f}s commands in steps, {staging_alone / 1000:.1f}s waiting for staging)")
print(f"  tool itself                                {tool:6.1f}s {tool / wall:6.1%}"
      f"  ({own_in_steps / 1000:.1f}s in steps, {between / 1000:.1f}s between steps)"
      f"  = {tool / max(len(nodes), 1):.2f}s per node")
if staging:
    st = union_ms([interval(e) for e in staging]) / 1000
    print(f"  (staging in the background: {st:.1f}s of wall time, "
          f"{sum(e.get('remote_ms', 0) for e in staging) / 1000:.1f}s of node commands)")
per = defaultdict(lambda: [0, 0, 0, 0])
for e in foreground:
    p = per[e.get("node") or e["phase"]]
    p[0] += e.get("duration_ms", 0)
    p[1] += e.get("wait_ms", 0)
    p[2] += e.get("remote_ms", 0)
print("per node (foreground steps): total, waits, node commands, tool itself")
for name, (d, w, r, _) in per.items():
    print(f"  {name:<14} {d / 1000:6.1f}s {w / 1000:6.1f}s {r / 1000:6.1f}s {(d - w - r) / 1000:6.2f}s")
if ssh:
    total = sum(e.get("round_trips", 0) for e in ssh.values())
    print(f"SSH round trips: {total} command(s) over {len(ssh)} node(s) = {total / len(ssh):.1f} per node")
    for name, e in sorted(ssh.items()):
        in_steps = sum(x.get("round_trips", 0) for x in done if x.get("node") == name)
        print(f"  {name:<14} {e.get('round_trips', 0):4d} commands ({in_steps} in its steps), {e['message']}")
