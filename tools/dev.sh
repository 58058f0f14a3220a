#!/usr/bin/env bash
# iterlock's front door: `demo` builds and runs the demo, `test` runs every check that CI runs.
#
# Invariants this script keeps:
#   - it runs from any directory (it moves to the repository root first);
#   - it installs what is missing from Debian's archive, and touches apt only when something is missing
#     (`apt-get update` only when a missing package has no candidate, or the first install fails);
#   - `test` stops at the first failing leg with a message naming it, and always prints a summary;
#   - each leg is `cmake --preset X && cmake --build --preset X && ctest --preset X`, so what CI runs is
#     exactly what a developer can rerun by hand with the same preset.
#
# Environment knobs:
#   ITERLOCK_JOBS=N        parallel build and test jobs (default 2: the project's machines have 2 cores)
#   ITERLOCK_NO_APT=1      never call apt-get; fail with the list of missing packages instead
#   ITERLOCK_TEST_TIMEOUT  per-test timeout in seconds passed to ctest (default 300), so a deadlocked
#                          concurrency test fails its leg instead of hanging CI
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

jobs=${ITERLOCK_JOBS:-2}
test_timeout=${ITERLOCK_TEST_TIMEOUT:-300}

# Debian 12 packages the build, the tests, the benchmarks and the plotting/monitoring tools need.
# libclang-rt-14-dev carries clang's sanitizer and libFuzzer runtimes; prometheus is the server that
# scrapes the metrics endpoint; python3-matplotlib draws the benchmark figures.
# python3-munkres must come with python3-matplotlib: matplotlib needs python3-fonttools, which needs
# "python3-scipy | python3-munkres"; apt's first choice (scipy -> pythran -> libboost-dev, i.e. Boost 1.74)
# conflicts with libboost1.81-dev, and the whole install fails.
packages=(
    cmake ninja-build g++ clang libclang-rt-14-dev
    libgtest-dev libgmock-dev libbenchmark-dev
    libabsl-dev libboost1.81-dev libboost-fiber1.81-dev libtbb-dev libcuckoo-dev libcli11-dev
    libconcurrentqueue-dev prometheus-cpp-dev relacy-dev
    python3 python3-matplotlib python3-munkres prometheus
    git pkg-config
)

usage() {
    cat <<'EOF'
usage: tools/dev.sh COMMAND [ARGS]

  demo [ARGS...]       build the `release` preset and run iterlock-demo (or, until that exists, the
                       example examples/go_map_semantics); ARGS go to the program
  test                 every leg CI runs: release, asan (ASan+UBSan, checked), tsan, fuzz smoke
  test --quick         the release leg alone
  test --only L[,L]    only the named legs (release, asan, tsan, fuzz)
  deps                 install the Debian packages the other commands need, and nothing else
EOF
}

say() { printf '\n==> %s\n' "$*"; }
die() {
    printf '\nerror: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------------
# Packages

is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

ensure_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "note: not a Debian system; assuming the tools in tools/dev.sh's package list are installed"
        return 0
    fi
    local missing=() p
    for p in "${packages[@]}"; do
        is_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    say "installing missing Debian packages: ${missing[*]}"
    [ "${ITERLOCK_NO_APT:-0}" = 1 ] && die "ITERLOCK_NO_APT=1 and these packages are missing: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install as root: apt-get install -y ${missing[*]}"
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine (or container) often has no package lists: update only when apt knows no
    # installable candidate for one of the missing packages.
    local need_update=0
    for p in "${missing[@]}"; do
        apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]' || need_update=1
    done
    if [ "$need_update" = 1 ]; then
        "${sudo[@]}" apt-get update
    fi
    if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
        # Stale lists point at versions the mirror no longer has: refresh once and retry.
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" ||
            die "apt-get could not install: ${missing[*]}"
    fi
}

# ---------------------------------------------------------------------------------------------------
# demo

cmd_demo() {
    ensure_packages
    say "configuring the release preset"
    cmake --preset release
    # The release preset's binaryDir (CMakePresets.json): build/<preset>.
    local build_dir=build/release target=go_map_semantics
    if ninja -C "$build_dir" -t targets all 2>/dev/null | grep -q '^iterlock-demo:'; then
        target=iterlock-demo
    fi
    say "building $target"
    cmake --build --preset release --target "$target" -j"$jobs"
    local exe
    exe=$(find "$build_dir" -type f -name "$target" -perm -u+x | head -n 1)
    [ -n "$exe" ] || die "built $target but found no executable named $target under $build_dir"
    say "running $exe $*"
    exec "$exe" "$@"
}

# ---------------------------------------------------------------------------------------------------
# test

summary=()   # one "leg  result  seconds" line per leg that ran or was skipped

print_summary() {
    printf '\n==> summary\n'
    local line
    for line in "${summary[@]}"; do printf '    %s\n' "$line"; done
}

# preset_leg PRESET [extra ctest args...]: configure, build and test one preset.
# (Runs inside `if`, where `set -e` does not apply: every step is chained with &&.)
preset_leg() {
    local preset=$1
    shift
    cmake --preset "$preset" &&
        cmake --build --preset "$preset" -j"$jobs" &&
        ctest --preset "$preset" -j"$jobs" --no-tests=error --timeout "$test_timeout" "$@"
}

leg_release() {
    # Why: the configuration users build (gcc, -O2) and the one the benchmarks use; it also builds
    # iterlock-bench and the examples, so a broken benchmark or example fails here.
    preset_leg release
}

leg_asan() {
    # Why: ASan+UBSan catch out-of-bounds slot access, use-after-free of evacuated buckets and
    # undefined shifts in the hash/tophash code; the checked build (ITERLOCK_CHECKED) adds the
    # generation counters that catch an entry_ptr used after growth moved its entry.
    preset_leg asan
}

leg_tsan() {
    # Why: data races in concurrent_map's shard locks, the iteration lock, snapshots and channels are
    # invisible to the other legs. Every test runs (single-threaded ones are cheap, and they check the
    # misuse detector's own atomics).
    # Clang 14's TSan cannot map its shadow memory when the kernel randomizes mmap with more than
    # 28 bits; running the tests without address randomization works around it.
    local rnd_bits
    rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)
    if [ "$rnd_bits" -gt 28 ] && command -v setarch >/dev/null 2>&1; then
        echo "note: vm.mmap_rnd_bits=$rnd_bits: running the TSan tests under setarch -R"
        cmake --preset tsan && cmake --build --preset tsan -j"$jobs" &&
            setarch "$(uname -m)" -R ctest --preset tsan -j"$jobs" --no-tests=error --timeout "$test_timeout"
    else
        preset_leg tsan
    fi
}

leg_fuzz() {
    # Why: the fuzzers drive random operation sequences (insert/erase/iterate/clear/grow) against a
    # reference model far beyond what hand-written tests reach; 30 seconds per target catches
    # regressions cheaply. The script (owned by the fuzzing work) builds the `fuzz` preset itself.
    if [ -f tools/fuzz-smoke.sh ]; then
        bash tools/fuzz-smoke.sh 30
    else
        return 77
    fi
}

# CPU seconds (user + system) used so far by this script's finished children (cutime + cstime of this
# shell, /proc/<pid>/stat fields 16-17). With the wall time it shows how much of a slow leg was the
# machine being busy with other work.
children_cpu_s() {
    local hz
    hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
    awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%d", ($14 + $15) / hz }' "/proc/$$/stat" 2>/dev/null || echo 0
}

run_leg() {
    local leg=$1 start rc=0 cpu0
    start=$SECONDS
    cpu0=$(children_cpu_s)
    say "leg $leg: start"
    if "leg_$leg"; then rc=0; else rc=$?; fi
    local took=$((SECONDS - start)) cpu=$(($(children_cpu_s) - cpu0))
    if [ "$rc" -eq 0 ]; then
        summary+=("$(printf '%-8s passed   %5ds wall, %5ds cpu' "$leg" "$took" "$cpu")")
    elif [ "$leg" = fuzz ] && [ "$rc" -eq 77 ]; then
        summary+=("$(printf '%-8s skipped  (tools/fuzz-smoke.sh does not exist yet)' "$leg")")
    else
        summary+=("$(printf '%-8s FAILED   %5ds wall, %5ds cpu (exit %d)' "$leg" "$took" "$cpu" "$rc")")
        print_summary
        die "leg '$leg' failed (exit $rc); rerun it alone with: tools/dev.sh test --only $leg"
    fi
}

cmd_test() {
    local legs=(release asan tsan fuzz)
    while [ $# -gt 0 ]; do
        case $1 in
            --quick) legs=(release) ;;
            --only)
                [ $# -ge 2 ] || die "--only needs a list of legs, e.g. --only asan,tsan"
                IFS=, read -r -a legs <<<"$2"
                shift
                ;;
            *) usage >&2; die "unknown argument to test: $1" ;;
        esac
        shift
    done
    local leg
    for leg in "${legs[@]}"; do
        case $leg in release | asan | tsan | fuzz) ;; *) die "unknown leg: $leg" ;; esac
    done

    ensure_packages
    local start=$SECONDS
    for leg in "${legs[@]}"; do run_leg "$leg"; done
    print_summary
    printf '\nall legs passed in %ds (%s)\n' "$((SECONDS - start))" "${legs[*]}"
}

# ---------------------------------------------------------------------------------------------------

case ${1:-} in
    demo) shift; cmd_demo "$@" ;;
    test) shift; cmd_test "$@" ;;
    deps) ensure_packages ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
