#!/usr/bin/env bash
# Runs the benchmark set behind docs/BENCHMARKS.md and leaves one CSV per group in OUT (default
# build/bench-results). Run it on an otherwise idle machine: the figures are wall-clock times.
#   tools/run-benchmarks.sh [OUT]            about 10 minutes on 2 cores
# Then: tools/plot_bench.py table OUT/*.csv --baseline ...   (Markdown tables)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/bench-results}
mkdir -p "$out"
cmake --preset release >/dev/null
cmake --build --preset release --target iterlock-bench -j2
bench=build/release/bench/iterlock-bench
run() {  # name, args...
    local name=$1
    shift
    echo "== $name: iterlock-bench $*" >&2
    "$bench" "$@" --csv >"$out/$name.csv"
}
{ date -u +%FT%TZ; lscpu | grep -E 'Model name|^CPU\(s\)'; uname -r; } >"$out/machine.txt"
run machine    --workload M0 --reps 3  # the cross-core figures below ride on this line's round trip
run map        --workload W1,W3,W6 --reps 3
run w1_10m     --workload W1 --size 10M --impl iterlock,absl_flat_hash_map --reps 1
run w2         --workload W2 --threads 1,2 --duration 2 --reps 5 --interleave  # ratios: same stretch of time
run w4         --workload W4 --duration 2 --reps 1
run w5         --workload W5i,W5d --duration 4 --reps 1
run chan       --workload C1,C2,C3 --reps 3
echo "results in $out" >&2
