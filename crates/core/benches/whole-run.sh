#!/bin/sh
# Whole run from the facts JSON vs deserialization alone (the floor), and peak memory vs facts file size.
# Usage: crates/core/benches/whole-run.sh [NODES PODS]   (needs hyperfine and GNU time at /usr/bin/time)
set -eu
NODES=${1:-5000}; PODS=${2:-150000}
: "${CARGO_TARGET_DIR:=target}"
cargo build --release -q -p kismatic-core --example gen_facts --example whole_run
BIN="$CARGO_TARGET_DIR/release/examples"
FACTS=$(mktemp --suffix=.json)
trap 'rm -f "$FACTS"' EXIT
"$BIN/gen_facts" "$NODES" "$PODS" "$FACTS"
SIZE=$(stat -c %s "$FACTS")
hyperfine -N --warmup 1 --runs 5 "$BIN/whole_run $FACTS parse-only" "$BIN/whole_run $FACTS"
for mode in parse-only full; do
  arg=$([ "$mode" = full ] && echo "" || echo parse-only)
  RSS=$(/usr/bin/time -f %M "$BIN/whole_run" "$FACTS" $arg 2>&1 >/dev/null | tail -1)
  echo "$mode: peak RSS ${RSS} KiB, facts file $((SIZE / 1024)) KiB, ratio $(echo "scale=2; $RSS * 1024 / $SIZE" | bc)"
done
