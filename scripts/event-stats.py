#!/usr/bin/env python3
"""Where an upgrade's time went, from its `--events` JSON-lines file.

wall: first event to last. waits: time inside steps spent waiting on restarts, health gates, drains and rollouts
(`wait_ms`). node work: the rest of the steps' time (remote commands, uploads). tool: wall minus step time (the
tool's own planning and bookkeeping between steps). Per node: step time and waits."""
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
steps = sum(e.get("duration_ms", 0) for e in done) / 1000
waits = sum(e.get("wait_ms", 0) for e in done) / 1000
per_node = defaultdict(lambda: [0.0, 0.0])
for e in done:
    key = e.get("node") or e["phase"]
    per_node[key][0] += e.get("duration_ms", 0) / 1000
    per_node[key][1] += e.get("wait_ms", 0) / 1000
print(f"run {run}: wall {wall:.1f}s; steps {steps:.1f}s of which waits {waits:.1f}s; "
      f"node work {steps - waits:.1f}s ({(steps - waits) / wall:.1%}); tool between steps {wall - steps:.1f}s "
      f"({(wall - steps) / wall:.1%})")
for node, (total, wait) in per_node.items():
    print(f"  {node:<14} steps {total:6.1f}s  waits {wait:6.1f}s  outside waits {total - wait:5.1f}s")
