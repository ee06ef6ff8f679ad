#!/usr/bin/env bash
# Regenerates the benchmark numbers of docs/benchmarks.md: each
# benches/<job>.rs measures cdpctl and its baselines in the same run and
# prints ratios; the output is also written into that job's block under
# "Latest output of bench/run.sh" in docs/benchmarks.md.
# Usage: bash bench/run.sh [job ...]   (e.g. bash bench/run.sh stitch)
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v mold >/dev/null 2>&1; then
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-fuse-ld=mold"
fi
doc=docs/benchmarks.md

# Replaces (or appends) the block of one job in $doc with the output in $2.
record() {
  local job=$1 out=$2 block start end sizes
  start="<!-- bench-output:$job -->"
  end="<!-- /bench-output:$job -->"
  sizes=$(env | grep -E '^(STITCH|MIGRATE|HISTORY|PROD|CDPCTL)_BENCH_' | sort | tr '\n' ' ' || true)
  block=$(mktemp)
  {
    echo "$start"
    echo "### $job"
    echo
    echo "\`${sizes}bash bench/run.sh $job\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown):"
    echo
    if grep -q '^|' "$out"; then
      # the tables only, one blank line between consecutive tables
      awk '/^\|/ {print; t=1; next} t {print ""; t=0}' "$out" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
    else
      echo '```text'
      cat "$out"
      echo '```'
    fi
    echo "$end"
  } >"$block"
  if grep -qxF "$start" "$doc"; then
    awk -v start="$start" -v end="$end" -v f="$block" '
      $0 == start { while ((getline l < f) > 0) print l; skip = 1; next }
      $0 == end { skip = 0; next }
      !skip { print }' "$doc" >"$doc.tmp"
    mv "$doc.tmp" "$doc"
  else
    { echo; cat "$block"; } >>"$doc"
  fi
  rm -f "$block"
  echo "recorded in $doc ($job)"
}

jobs=("$@")
if [ ${#jobs[@]} -eq 0 ]; then
  for f in benches/*.rs; do jobs+=("$(basename "$f" .rs)"); done
fi
for job in "${jobs[@]}"; do
  echo "== $job"
  out=$(mktemp)
  cargo bench -q --bench "$job" | tee "$out"
  record "$job" "$out"
  rm -f "$out"
done
