#!/bin/sh
# Whole run from the facts JSON (read file -> parse -> analyse -> plan -> render) against deserialization alone
# (the floor), and peak memory against the facts file size. Targets (issue 5): end-to-end <= 2x the floor,
# analysis + planning <= 1x, peak RSS <= 2x the file.
# Usage: crates/core/benches/whole-run.sh [NODES PODS [RUNS]]   (needs GNU time at /usr/bin/time)
# Times are user CPU seconds (GNU time), medians of RUNS interleaved runs, so a shared, loaded machine skews them
# less than wall time; whole_run also reports its own per-stage thread CPU time, whose medians are printed too.
set -eu
NODES=${1:-5000}; PODS=${2:-150000}; RUNS=${3:-5}
: "${CARGO_TARGET_DIR:=target}"
cargo build --release -q -p kismatic-core --example gen_facts --example whole_run
BIN="$CARGO_TARGET_DIR/release/examples"
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
FACTS="$DIR/facts.json"
"$BIN/gen_facts" "$NODES" "$PODS" "$FACTS"
SIZE=$(stat -c %s "$FACTS")
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
"$BIN/whole_run" "$FACTS" >/dev/null 2>&1   # warm the page cache
i=0
while [ "$i" -lt "$RUNS" ]; do
  /usr/bin/time -f "%U %M" -o "$DIR/t" "$BIN/whole_run" "$FACTS" parse-only 2>/dev/null
  cat "$DIR/t" >>"$DIR/parse"
  /usr/bin/time -f "%U %M" -o "$DIR/t" "$BIN/whole_run" "$FACTS" 2>"$DIR/stages" >/dev/null
  cat "$DIR/t" >>"$DIR/full"
  # "cpu (via reader): parse 0.6s, analysis 0.2s, planning 0.01s, render 0.01s; ..."
  sed -n 's/^cpu[^:]*: parse \([0-9.]*\)s, analysis \([0-9.]*\)s, planning \([0-9.]*\)s, render \([0-9.]*\)s.*/\1 \2 \3 \4/p' \
    "$DIR/stages" >>"$DIR/stage"
  i=$((i + 1))
done
med() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
P_USER=$(cut -d' ' -f1 "$DIR/parse" | med); P_RSS=$(cut -d' ' -f2 "$DIR/parse" | med)
F_USER=$(cut -d' ' -f1 "$DIR/full" | med); F_RSS=$(cut -d' ' -f2 "$DIR/full" | med)
S_PARSE=$(cut -d' ' -f1 "$DIR/stage" | med); S_AN=$(cut -d' ' -f2 "$DIR/stage" | med)
S_PL=$(cut -d' ' -f3 "$DIR/stage" | med); S_RE=$(cut -d' ' -f4 "$DIR/stage" | med)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "facts file: $SIZE bytes ($NODES nodes, $PODS pods); medians of $RUNS runs"
echo "deserialization (parse-only run): ${P_USER}s user, peak RSS ${P_RSS} KiB ($(ratio "$((P_RSS * 1024))" "$SIZE")x file)"
echo "end-to-end (whole run):           ${F_USER}s user, peak RSS ${F_RSS} KiB ($(ratio "$((F_RSS * 1024))" "$SIZE")x file)"
echo "stages (thread CPU): parse ${S_PARSE}s, analysis ${S_AN}s, planning ${S_PL}s, render ${S_RE}s"
echo "ratios: end-to-end / deserialization $(ratio "$F_USER" "$P_USER") (target <= 2, process user time);" \
  "analysis+planning / parse $(ratio "$(awk -v a="$S_AN" -v b="$S_PL" 'BEGIN { print a + b }')" "$S_PARSE") (target <= 1);" \
  "peak RSS / file size $(ratio "$((F_RSS * 1024))" "$SIZE") (target <= 2)"
