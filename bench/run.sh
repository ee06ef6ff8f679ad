#!/usr/bin/env bash
# Regenerates every benchmark number of the README: each benches/<job>.rs
# measures cdpctl and its baselines in the same run and prints ratios.
# Usage: bash bench/run.sh [job ...]   (e.g. bash bench/run.sh stitch)
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v mold >/dev/null 2>&1; then
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-fuse-ld=mold"
fi
jobs=("$@")
if [ ${#jobs[@]} -eq 0 ]; then
  for f in benches/*.rs; do jobs+=("$(basename "$f" .rs)"); done
fi
for job in "${jobs[@]}"; do
  echo "== $job"
  cargo bench -q --bench "$job"
done
