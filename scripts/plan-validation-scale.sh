#!/usr/bin/env bash
# Plan validation time beside parse time for large plans (issue 12, item 6). Usage: scripts/plan-validation-scale.sh [NODES...]
# (default 2500 10000 20000). Release build; best of three runs per figure; compare the ratio column across sizes:
# linear validation keeps it flat.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --locked --release -p kismatic-plan --example validation_scale -- "$@"
