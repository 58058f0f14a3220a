#!/usr/bin/env bash
# fuzz-smoke.sh: builds the `fuzz` preset (clang, libFuzzer + ASan + UBSan, checked build) and runs the map
# fuzzer for N seconds (default 60), starting from the committed corpus fuzz/corpus/map.
#
# Usage: tools/fuzz-smoke.sh [SECONDS] [extra libFuzzer flags...]
# New inputs go to build/fuzz/corpus-work (the committed corpus is only read); a crash is written to
# build/fuzz/artifacts/ and the script exits non-zero. Uses 2 build jobs: the machine is shared.
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build/fuzz"

cd "${root}"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target map_fuzz -j2

work="${build}/corpus-work"
artifacts="${build}/artifacts/"
mkdir -p "${work}" "${artifacts}"

echo "fuzz-smoke: running map_fuzz for ${seconds}s"
"${build}/fuzz/map_fuzz" \
  -max_total_time="${seconds}" \
  -max_len=4096 \
  -timeout=20 \
  -rss_limit_mb=2048 \
  -print_final_stats=1 \
  -artifact_prefix="${artifacts}" \
  "$@" \
  "${work}" "${root}/fuzz/corpus/map"
echo "fuzz-smoke: no crash in ${seconds}s"
