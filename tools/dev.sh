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
# etcd (iterlock::etcd, cmake/etcd.cmake): the server and etcdctl for the tests and the bench, gRPC and
# protobuf for the client, and etcd's .proto files with the two packages that hold their imports (gogoproto
# and the googleapis annotations), all under /usr/share/gocode/src.
packages=(
    cmake ninja-build g++ clang libclang-rt-14-dev
    libgtest-dev libgmock-dev libbenchmark-dev
    libabsl-dev libboost1.81-dev libboost-fiber1.81-dev libtbb-dev libcuckoo-dev libcli11-dev
    libconcurrentqueue-dev prometheus-cpp-dev relacy-dev
    python3 python3-matplotlib python3-munkres prometheus
    git pkg-config
    etcd-server etcd-client libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
    golang-etcd-server-dev golang-github-gogo-protobuf-dev golang-github-grpc-ecosystem-grpc-gateway-dev
)
# The aarch64 leg's cross compiler, target C library, disassembler and emulator: installed when that leg
# runs (and by `deps`), not for the other legs.
aarch64_packages=(g++-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu qemu-user)

usage() {
    cat <<'EOF'
usage: tools/dev.sh COMMAND [ARGS]

  demo [ARGS...]       build the `release` preset and run iterlock-demo (or, until that exists, the
                       example examples/go_map_semantics); ARGS go to the program
  test                 every leg CI runs: release, asan (ASan+UBSan, checked), tsan, fuzz smoke, aarch64
                       (the tests cross-built for aarch64, run under qemu-aarch64, LL/SC and LSE)
  test --quick         the release leg alone
  test --only L[,L]    only the named legs (release, asan, tsan, fuzz, aarch64)
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

# ensure_packages [EXTRA...]: installs what is missing of `packages` and the EXTRA packages.
ensure_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "note: not a Debian system; assuming the tools in tools/dev.sh's package list are installed"
        return 0
    fi
    local missing=() p
    for p in "${packages[@]}" "$@"; do
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

# The aarch64 leg's test executables and the ones it leaves out, with why (printed by the leg). The lists
# themselves are ITERLOCK_TEST_ONLY in the aarch64 presets of CMakePresets.json.
aarch64_left_out=(
    "map_misuse_test map_checked_test chan_faults_test: their death tests use gtest's threadsafe style,"
    "  which re-executes the test binary; qemu-user cannot exec an aarch64 binary without binfmt_misc"
    "map_differential_test map_lifetime_test map_fuzz_replay chan_stress_test chan_select_test chan_model_test"
    "  lock_order_test concurrent_locked_test concurrent_linearizability_test concurrent_differential_test"
    "  concurrent_snapshot_faults_test concurrent_unit_test: time (each a cross compile, the last one over"
    "  two minutes, and minutes under the emulator); they add no aarch64-specific path beyond what the suites"
    "  that run already take (the release, asan and tsan legs run them natively; prefetch_for_write's"
    "  aarch64 instruction is checked in the disassembly instead of by CMapPlatform)"
    "the armv8.1-a build runs only the suites whose atomics differ between LL/SC and LSE: map_tophash_test,"
    "  lock_stress_test, chan_semantics_test, concurrent_snapshot_test, concurrent_optimistic_test"
    "tests/observability (prometheus-cpp and TBB are not cross-installed) and tests/consumer (configures a"
    "  separate project with host tools); iterlock-bench and the examples (no timing comes from an emulator)"
)

# check_aarch64_isa BUILD_DIR lse|llsc: the instruction selection the build was made for is really there.
# Under -mno-outline-atomics at ARMv8.0, atomics are inline LL/SC loops (ldaxr/stlxr) and no LSE instruction
# appears; at ARMv8.1 they are LSE (cas, ldadd, swp, ...). Both builds match tophash with NEON (cmeq and
# addv on 8 lanes) and prefetch for write with prfm pstl1keep.
check_aarch64_isa() {
    local dir=$1 want=$2 objdump=aarch64-linux-gnu-objdump
    local lse='\s(cas|casa|casl|casal|ldadd|ldadda|ldaddl|ldaddal|swp|swpa|swpl|swpal|ldset|ldseta|ldsetl|ldsetal|ldclr|ldclra|ldclrl|ldclral|ldeor|ldeoral)[bh]?\s'
    local dis n_lse n_llsc
    dis=$("$objdump" -d --no-show-raw-insn "$dir/tests/concurrent/concurrent_snapshot_test") || return 1
    n_lse=$(grep -cE "$lse" <<<"$dis" || true)
    n_llsc=$(grep -cE '\s(ldaxr|ldxr)[bh]?\s' <<<"$dis" || true)
    echo "concurrent_snapshot_test: $n_lse LSE atomic instructions, $n_llsc LL/SC exclusive loads"
    if [ "$want" = lse ]; then
        [ "$n_lse" -gt 0 ] || { echo "error: an armv8.1-a build without LSE atomics" >&2; return 1; }
    else
        if [ "$n_lse" -ne 0 ] || [ "$n_llsc" -eq 0 ]; then
            echo "error: an armv8-a -mno-outline-atomics build should use LL/SC only" >&2
            return 1
        fi
    fi
    grep -qiE '\sprfm\s+pstl1keep' <<<"$dis" ||
        { echo "error: no prfm pstl1keep (prefetch_for_write) in concurrent_snapshot_test" >&2; return 1; }
    # (Whole disassemblies in variables: `objdump | grep -q` fails under pipefail when grep stops early.)
    dis=$("$objdump" -d --no-show-raw-insn "$dir/tests/map/map_tophash_test") || return 1
    grep -qE '\saddv\s+b[0-9]+, v[0-9]+\.8b' <<<"$dis" ||
        { echo "error: no NEON tophash match (addv on 8 lanes) in map_tophash_test" >&2; return 1; }
}

leg_aarch64() {
    # Why: iterlock's users deploy on ARM64 (Graviton, Ampere), and every other leg runs x86 code. This leg
    # cross-builds the tests for aarch64 (cmake/aarch64-linux-gnu.cmake; GoogleTest from /usr/src/googletest
    # by the cross compiler) and runs them under qemu-aarch64, twice: `aarch64` is ARMv8.0 with
    # -mno-outline-atomics (inline LL/SC loops; the tests run as a Cortex-A57, which has no LSE, so a stray
    # LSE instruction would be an illegal instruction) and `aarch64-lse` is -march=armv8.1-a (LSE: cas,
    # ldadd, swp). It runs the aarch64 twins of the x86-only paths: the NEON tophash matchers, PRFM PSTL1KEEP
    # for prefetch_for_write, `yield` in spin loops, and membarrier on aarch64 Linux (qemu passes it to the
    # host kernel); check_aarch64_isa checks that each build contains the instructions it is for.
    # What it is not: qemu-user on an x86 host keeps x86's (TSO) memory ordering, so this leg checks code
    # paths and instruction selection, not the reorderings ARM hardware makes (the memory-model checks are
    # for those). No timing may be reported from it: qemu is an emulator.
    echo "note: left out of the aarch64 leg:"
    printf '    %s\n' "${aarch64_left_out[@]}"
    preset_leg aarch64 && check_aarch64_isa build/aarch64 llsc &&
        preset_leg aarch64-lse && check_aarch64_isa build/aarch64-lse lse
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
    # The default legs, CI's. aarch64 costs about 265 s of CPU from scratch (431 s wall when measured on
    # the 2-core machine under other builds, about half that on an idle one).
    local legs=(release asan tsan fuzz aarch64)
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
        case $leg in release | asan | tsan | fuzz | aarch64) ;; *) die "unknown leg: $leg" ;; esac
    done

    local extra=()
    for leg in "${legs[@]}"; do
        [ "$leg" = aarch64 ] && extra+=("${aarch64_packages[@]}")
    done
    ensure_packages "${extra[@]}"
    local start=$SECONDS
    for leg in "${legs[@]}"; do run_leg "$leg"; done
    print_summary
    printf '\nall legs passed in %ds (%s)\n' "$((SECONDS - start))" "${legs[*]}"
}

# ---------------------------------------------------------------------------------------------------

case ${1:-} in
    demo) shift; cmd_demo "$@" ;;
    test) shift; cmd_test "$@" ;;
    deps) ensure_packages "${aarch64_packages[@]}" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
