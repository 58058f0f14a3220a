#!/usr/bin/env bash
# tools/ab-finds.sh: in-process A/B of insert, find, walk and erase speed between versions of the library,
# against absl.
#
# Builds bench/ab/variant.cpp once per revision (each under its own namespace, -Diterlock=<name>), links
# them with bench/ab/main.cpp into one program, and runs it: every contender's map holds the same keys, all
# maps are alive, and round-robin each round times finds (hits in a shuffled order, then as many misses),
# full walks (~20M entries a round), filling a fresh map with the keys (growth included) and erasing them
# from it in the shuffled order, each divided by absl's in the same round. On a VM whose speed and memory
# placement move from one process to the next, this compares code where iterlock-bench's separate runs
# compare luck; run it a few times (--runs) to sample placements. docs/BENCHMARKS.md, "Method", says when
# to use which.
#
# Usage: tools/ab-finds.sh [--concurrent | --locked] [--nodetect] [--entries N] [--rounds R] [--runs K] REV...
#   REV: a git revision, "." for the working tree's include/ (uncommitted changes included), or a directory
#        holding an include/ tree (a variant made by hand, e.g. with a parameter changed).
#   --concurrent  time iterlock::concurrent_map (snapshot policy) instead of iterlock::map
#   --locked      time iterlock::locked_concurrent_map (its walk: a guard's)
#   --nodetect    iterlock::map with no_misuse_detection (default: detect_misuse, the default policy)
# Needs g++ and absl (libabsl-dev), both installed by `tools/dev.sh deps`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
entries=1000000 rounds=11 runs=3 map_flag="" policy=iterlock::detect_misuse
revs=()
while (($#)); do
    case $1 in
        --concurrent) map_flag=-DAB_CONCURRENT ;;
        --locked) map_flag=-DAB_LOCKED ;;
        --nodetect) policy=iterlock::no_misuse_detection ;;
        --entries) entries=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --runs) runs=$2; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "ab-finds: unknown option $1" >&2; exit 2 ;;
        *) revs+=("$1") ;;
    esac
    shift
done
((${#revs[@]})) || { echo "ab-finds: name at least one revision (or . for the working tree)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-std=c++20 -O2 -DNDEBUG)
[[ -n $map_flag ]] && flags+=("$map_flag")
list="" objs=()
for i in "${!revs[@]}"; do
    rev=${revs[$i]} name=v$i
    mkdir -p "$work/$name"
    if [[ $rev == . ]]; then
        cp -r "$root/include" "$work/$name/"
    elif [[ -d $rev/include ]]; then
        cp -r "$rev/include" "$work/$name/"
    else
        git -C "$root" archive "$rev" include | tar -x -C "$work/$name"
    fi
    g++ "${flags[@]}" "-Diterlock=$name" "-DAB_NAME=$name" "-DAB_POLICY=$policy" -I"$work/$name/include" \
        -c "$root/bench/ab/variant.cpp" -o "$work/$name.o" &
    objs+=("$work/$name.o")
    list+="X($name) "
    echo "v$i = $rev" >&2
done
wait
g++ "${flags[@]}" "-DAB_VARIANTS(X)=$list" "$root/bench/ab/main.cpp" "${objs[@]}" -o "$work/ab" \
    $(pkg-config --libs absl_hash absl_raw_hash_set) -pthread
for ((r = 1; r <= runs; ++r)); do
    echo "== run $r of $runs ($entries entries, $rounds rounds)"
    "$work/ab" "$entries" "$rounds"
done
