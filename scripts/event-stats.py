#!/usr/bin/env python3
"""Where an upgrade's time went, from its `--events` JSON-lines file.

wall: first event to last. Steps may overlap (staging runs on all nodes at once; offline batches), so step time is
the union of the steps' intervals. waits: time inside steps spent waiting on restarts, health gates, drains and
rollouts (`wait_ms`). node work: step time outside waits (remote commands, uploads, API writes). between steps:
wall minus step time (the tool's own planning and bookkeeping). Per phase and per node: step time and waits."""
import json
import sys
from collections import defaultdict

events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
if not events:
    sys.exit("no events")
run = events[-1]["run_id"] if len(sys.argv) < 3 else sys.argv[2]
events = [e for e in events if e["run_id"] == run]
wall = (events[-1]["at_ms"] - events[0]["at_ms"]) / 1000
done = [e for e in events if e["state"] in ("finished", "failed")]


def union_seconds(intervals):
    total, end = 0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total / 1000


def stats(evs):
    busy = union_seconds([(e["at_ms"] - e.get("duration_ms", 0), e["at_ms"]) for e in evs])
    waits = union_seconds([(e["at_ms"] - e.get("wait_ms", 0), e["at_ms"]) for e in evs if e.get("wait_ms")])
    return busy, waits


busy, waits = stats(done)
nodes = {e["node"] for e in done if e.get("node")}
outside = busy - waits
print(f"run {run}: wall {wall:.1f}s; steps {busy:.1f}s of which waits {waits:.1f}s; "
      f"node work outside waits {outside:.1f}s ({outside / wall:.1%}); between steps {wall - busy:.1f}s "
      f"({(wall - busy) / wall:.1%}); outside waits in total {outside + wall - busy:.1f}s "
      f"({(outside + wall - busy) / wall:.1%}), {(outside + wall - busy) / max(len(nodes), 1):.2f}s per node "
      f"over {len(nodes)} nodes")
for label, key in (("phase", lambda e: e["phase"]), ("node", lambda e: e.get("node") or e["phase"])):
    groups = defaultdict(list)
    for e in done:
        groups[key(e)].append(e)
    print(f"per {label}:")
    for name, evs in groups.items():
        b, w = stats(evs)
        print(f"  {name:<14} steps {b:6.1f}s  waits {w:6.1f}s  outside waits {b - w:5.1f}s")
