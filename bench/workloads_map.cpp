// The single-threaded map workloads: W1 (insert/find/erase costs, worst insert against a full rehash),
// W3 (full iteration) and W6 (memory per entry), for iterlock::map and three flat/node-based peers.
//
// Invariants: every implementation sees the same keys (a fixed-seed splitmix64 stream, uint64 -> uint64)
// in the same order, and uses its own default hash; timed loops feed their results to keep() so the
// compiler cannot drop them; maps are built and destroyed outside the timed regions. The iterlock
// implementations are compiled only when <iterlock/map.hpp> exists; until then they throw `unavailable`.
#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "counting_allocator.hpp"
#include "registry.hpp"

#if __has_include(<iterlock/map.hpp>)
#include <iterlock/map.hpp>
#define ITERLOCK_BENCH_HAVE_MAP 1
#else
#define ITERLOCK_BENCH_HAVE_MAP 0
#endif
#if __has_include(<iterlock/concurrent_map.hpp>)
#include <iterlock/concurrent_map.hpp>
#define ITERLOCK_BENCH_HAVE_CMAP 1
#else
#define ITERLOCK_BENCH_HAVE_CMAP 0
#endif

namespace iterlock::bench {
namespace {

using u64 = std::uint64_t;
using value_pair = std::pair<const u64, u64>;

constexpr u64 hit_seed = 0x6a09e667f3bcc908ULL;    // keys that are inserted
constexpr u64 miss_seed = 0xbb67ae8584caa73bULL;   // keys that are looked up but never inserted
constexpr u64 order_seed = 0x3c6ef372fe94f82bULL;  // the shuffled order of finds and erases
constexpr u64 fresh_seed = 0xa54ff53a5f1d36f1ULL;  // W3's fresh layouts: one key stream per pass

// Makes `v` observable so the loop that computed it is kept.
inline void keep(u64 v) noexcept {
    asm volatile("" : : "r"(v) : "memory");
}

// ----- the implementations, by name -------------------------------------------------------------

template <class Map>
struct is_iterlock_map : std::false_type {};

#if ITERLOCK_BENCH_HAVE_MAP
template <class K, class V, class H, class E, class A, class P>
struct is_iterlock_map<iterlock::map<K, V, H, E, A, P>> : std::true_type {};
#endif

// Calls f.template operator()<Map>() with the map type named `impl`, built on allocator Alloc.
// Throws `unavailable` for an iterlock impl this build lacks, std::invalid_argument for an unknown name.
template <class Alloc, class F>
void with_map(const std::string& impl, F&& f) {
    if (impl == "std_unordered_map") {
        f.template operator()<std::unordered_map<u64, u64, std::hash<u64>, std::equal_to<u64>, Alloc>>();
    } else if (impl == "absl_flat_hash_map") {
        f.template operator()<absl::flat_hash_map<u64, u64, absl::Hash<u64>, std::equal_to<u64>, Alloc>>();
    } else if (impl == "boost_unordered_flat_map") {
        f.template
        operator()<boost::unordered_flat_map<u64, u64, boost::hash<u64>, std::equal_to<u64>, Alloc>>();
    } else if (impl == "iterlock" || impl == "iterlock_nodetect") {
#if ITERLOCK_BENCH_HAVE_MAP
        if (impl == "iterlock") {
            f.template operator()<iterlock::map<u64, u64, iterlock::hash<u64>, std::equal_to<u64>, Alloc,
                                                iterlock::detect_misuse>>();
        } else {
            f.template operator()<iterlock::map<u64, u64, iterlock::hash<u64>, std::equal_to<u64>, Alloc,
                                                iterlock::no_misuse_detection>>();
        }
#else
        throw unavailable(
            "iterlock::map is not in this build yet (<iterlock/map.hpp> was missing when this file was "
            "compiled; if it exists now, touch bench/workloads_map.cpp and rebuild)");
#endif
    } else {
        throw std::invalid_argument("unknown map implementation '" + impl + "'");
    }
}

// Looks `k` up; adds its value to `sum` and returns true when found.
template <class Map>
inline bool lookup(Map& m, u64 k, u64& sum) {
    if constexpr (is_iterlock_map<Map>::value) {
        auto p = m.find(k);
        if (!p) return false;
        sum += p->second;
        return true;
    } else {
        auto it = m.find(k);
        if (it == m.end()) return false;
        sum += it->second;
        return true;
    }
}

// Time to move every entry of `m` into a fresh table. For the one-shot-growth peers this is
// rehash(2 * bucket_count()), the work their worst insert does; iterlock grows incrementally and has no
// such call, so its figure is reserve(size()) on a new map plus copying every entry into it.
template <class Map>
std::int64_t full_rehash_ns(Map& m) {
    if constexpr (is_iterlock_map<Map>::value) {
        std::optional<Map> copy;  // destroyed after the clock stops
        const std::int64_t t0 = now_ns();
        copy.emplace();
        copy->reserve(m.size());
        for (auto& kv : m) copy->insert_or_assign(kv.first, kv.second);
        const std::int64_t t1 = now_ns();
        keep(copy->size());
        return t1 - t0;
    } else {
        const std::size_t buckets = m.bucket_count();
        const std::int64_t t0 = now_ns();
        m.rehash(2 * buckets);
        const std::int64_t t1 = now_ns();
        keep(m.bucket_count());
        return t1 - t0;
    }
}

// ----- inputs -----------------------------------------------------------------------------------

std::vector<u64> stream(u64 seed, std::size_t n) {
    splitmix64 g{seed};
    std::vector<u64> v(n);
    for (auto& k : v) k = g();
    return v;
}

// `keys` in a fixed pseudo-random order (Fisher-Yates driven by splitmix64).
std::vector<u64> shuffled(std::vector<u64> keys) {
    splitmix64 g{order_seed};
    for (std::size_t i = keys.size(); i > 1; --i) std::swap(keys[i - 1], keys[g() % i]);
    return keys;
}

std::vector<std::size_t> sizes_or(const options& opts, std::vector<std::size_t> defaults) {
    std::vector<std::size_t> sizes = opts.sizes.empty() ? std::move(defaults) : opts.sizes;
    for (std::size_t n : sizes) {
        if (n == 0) throw std::invalid_argument("--size must be at least 1");
    }
    return sizes;
}

// Returns the heap's free memory to the system (glibc), so that the next allocations fault their pages in.
void trim_heap() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

double per(std::int64_t ns, std::size_t n) {
    return static_cast<double>(ns) / static_cast<double>(n);
}

// ----- W1 ---------------------------------------------------------------------------------------

template <class Map>
void w1_one_size(std::size_t n, const options& opts, medians& out) {
    const std::vector<u64> keys = stream(hit_seed, n);
    const std::vector<u64> order = shuffled(keys);
    const std::vector<u64> misses = stream(miss_seed, n);
    for (int rep = 0; rep < opts.repetitions; ++rep) {
        {
            // Each fill starts from a trimmed heap, as in a fresh process: otherwise it runs on whatever
            // the repetition before it (another map, with --interleave) freed, mapped or not.
            trim_heap();
            Map m;  // no reserve: growth is part of the cost
            std::int64_t t0 = now_ns();
            for (std::size_t i = 0; i < n; ++i) m.insert_or_assign(keys[i], u64{i});
            std::int64_t t1 = now_ns();
            out.add("insert_ns", per(t1 - t0, n), "ns/op");

            u64 sum = 0;
            std::size_t found = 0;
            t0 = now_ns();
            for (u64 k : order) found += lookup(m, k, sum);
            t1 = now_ns();
            keep(sum);
            if (found != n) throw std::logic_error("W1: a successful find missed");
            out.add("find_hit_ns", per(t1 - t0, n), "ns/op");

            found = 0;
            t0 = now_ns();
            for (u64 k : misses) found += lookup(m, k, sum);
            t1 = now_ns();
            keep(sum + found);
            out.add("find_miss_ns", per(t1 - t0, n), "ns/op");

            std::size_t erased = 0;
            t0 = now_ns();
            for (u64 k : order) erased += m.erase(k);
            t1 = now_ns();
            if (erased != n || m.size() != 0) throw std::logic_error("W1: erase left entries behind");
            out.add("erase_ns", per(t1 - t0, n), "ns/op");
        }
        {
            // A second build, each insert timed alone (the clock reads stay out of insert_ns above).
            Map m;
            std::int64_t worst = 0;
            for (std::size_t i = 0; i < n; ++i) {
                const std::int64_t t0 = now_ns();
                m.insert_or_assign(keys[i], u64{i});
                const std::int64_t t1 = now_ns();
                worst = std::max(worst, t1 - t0);
            }
            out.add("max_insert_ns", static_cast<double>(worst), "ns");
            const std::int64_t rehash = full_rehash_ns(m);
            out.add("full_rehash_ns", static_cast<double>(rehash), "ns");
            out.add("max_insert_over_rehash", static_cast<double>(worst) / static_cast<double>(rehash),
                    "ratio");
        }
    }
}

void run_w1(const std::string& impl, const options& opts, const emit_fn& emit) {
    for (std::size_t n : sizes_or(opts, {1'000'000})) {
        medians out;
        with_map<std::allocator<value_pair>>(impl, [&]<class Map>() { w1_one_size<Map>(n, opts, out); });
        out.emit(emit, "W1", impl, n, 1);
    }
}

// ----- W3 ---------------------------------------------------------------------------------------

// Enough passes that a small map is timed over ~20M entries; at least 3.
std::size_t w3_passes(std::size_t n) {
    return std::max<std::size_t>(3, 20'000'000 / n);
}

// Fills a map with keys[i] -> i.
template <class Map>
void fill_values(Map& m, const std::vector<u64>& keys) {
    for (std::size_t i = 0; i < keys.size(); ++i) m.insert_or_assign(keys[i], u64{i});
}

// The memory limit of a walk (issue 14): a streaming read of as many bytes as iterlock::map's bucket storage
// holds at n entries (its bucket arrays and overflow buckets, built as W3 builds its maps), summed as 64-bit
// words. Timed per pass like a walk and divided by the same n, so `iter_ns_per_entry` of the `bandwidth` row
// lines up with the walks', and every walk row also reports `x_bandwidth`: its iter_ns_per_entry over this
// read's, timed right after it in the same repetition (so drift between repetitions cancels).
std::size_t iterlock_storage_bytes(std::size_t n) {
#if ITERLOCK_BENCH_HAVE_MAP
    static std::map<std::size_t, std::size_t> known;
    if (auto it = known.find(n); it != known.end()) return it->second;
    const std::vector<u64> keys = stream(hit_seed, n);
    const std::size_t before = allocation_stats::live.load();
    std::size_t bytes = 0;
    {
        iterlock::map<u64, u64, iterlock::hash<u64>, std::equal_to<u64>, counting_allocator<value_pair>> m;
        fill_values(m, keys);
        bytes = allocation_stats::live.load() - before;
    }
    known.emplace(n, bytes);
    return bytes;
#else
    throw unavailable("the bandwidth row sizes its read by iterlock::map, which is not in this build");
#endif
}

// Runs pass() `passes` times (each must return `expected`: the check that the pass saw everything, which
// `failure` names) and returns the time per entry, counting n entries per pass.
template <class Pass>
double time_passes(std::size_t n, std::size_t passes, u64 expected, const char* failure, Pass&& pass) {
    u64 total = 0;
    const std::int64_t t0 = now_ns();
    for (std::size_t p = 0; p < passes; ++p) {
        const u64 sum = pass();
        keep(sum);
        total += sum;
    }
    const std::int64_t t1 = now_ns();
    if (total != expected * passes) throw std::logic_error(failure);
    return per(t1 - t0, n * passes);
}

class bandwidth_read {
  public:
    explicit bandwidth_read(std::size_t n)
        : words_(std::max<std::size_t>(1, iterlock_storage_bytes(n) / sizeof(u64)), u64{1}) {}
    // One streaming pass over the buffer. Four independent sums, so the loop is bound by the loads (two a
    // cycle), not by one add chain's latency: at 10K the buffer sits in L2 and a single chain would be the
    // limit instead of the cache.
    u64 pass() const noexcept {
        const u64* w = words_.data();
        const std::size_t n = words_.size();
        u64 s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        std::size_t i = 0;
        for (; i + 4 <= n; i += 4) {
            s0 += w[i];
            s1 += w[i + 1];
            s2 += w[i + 2];
            s3 += w[i + 3];
        }
        for (; i < n; ++i) s0 += w[i];
        return s0 + s1 + s2 + s3;
    }
    // ns per entry of `passes` reads, reported as a walk of n entries is.
    double ns_per_entry(std::size_t n, std::size_t passes) const {
        return time_passes(n, passes, words_.size(), "W3: the bandwidth read lost words",
                           [this] { return pass(); });
    }
    std::size_t bytes() const noexcept { return words_.size() * sizeof(u64); }

  private:
    std::vector<u64> words_;
};

// W3's second figure, iter_fresh_ns_per_entry: walks of layouts the machine has not walked before. Walking
// one unchanged table again and again lets the branch predictor learn which buckets are full (at 10K
// entries that made every map's walk about 2.4x faster on the VMs measured: docs/BENCHMARKS.md, "W3 at
// 10K: a walk the branch predictor has learned"); a map its writers keep changing gives it no such chance.
// Before each timed pass, `walk_fresh(keys)` builds its map anew from keys it never held (one stream per
// pass), then returns its one walk's time per entry (time_passes of one pass); the build is not timed.
template <class WalkFresh>
double fresh_ns_per_entry(std::size_t n, WalkFresh&& walk_fresh) {
    const std::size_t passes = std::max<std::size_t>(3, 1'000'000 / n);
    double ns = 0;
    for (std::size_t p = 0; p < passes; ++p) ns += walk_fresh(stream(fresh_seed + p, n));
    return ns / static_cast<double>(passes);
}

// W3 for maps of type Map, walked by `walk(map)` (one pass; returns the sum of the values): per repetition,
// `passes` walks of one n-entry map holding values 0..n-1 (iter_ns_per_entry), the bandwidth read
// (x_bandwidth, see bandwidth_read), and walks of fresh layouts (iter_fresh_ns_per_entry).
template <class Map, class Walk>
void w3_time(std::size_t n, const options& opts, medians& out, const Walk& walk) {
    Map m;
    fill_values(m, stream(hit_seed, n));
    const u64 expected = static_cast<u64>(n) * (n - 1) / 2;
    const std::size_t passes = w3_passes(n);
    const bandwidth_read limit(n);
    for (int rep = 0; rep < opts.repetitions; ++rep) {
        const double ns = time_passes(n, passes, expected, "W3: a pass did not visit every entry once",
                                      [&] { return walk(m); });
        out.add("iter_ns_per_entry", ns, "ns");
        out.add("x_bandwidth", ns / limit.ns_per_entry(n, passes), "ratio");
        const double fresh = fresh_ns_per_entry(n, [&](const std::vector<u64>& keys) {
            Map f;
            fill_values(f, keys);
            return time_passes(n, 1, expected,
                               "W3: a pass over a fresh layout did not visit every entry once",
                               [&] { return walk(f); });
        });
        out.add("iter_fresh_ns_per_entry", fresh, "ns");
    }
}

// The `bandwidth` row itself: the read alone, and the bytes it reads per entry.
void w3_bandwidth(std::size_t n, const options& opts, medians& out) {
    const bandwidth_read limit(n);
    const std::size_t passes = w3_passes(n);
    for (int rep = 0; rep < opts.repetitions; ++rep) {
        out.add("iter_ns_per_entry", limit.ns_per_entry(n, passes), "ns");
        out.add("bytes_per_entry", static_cast<double>(limit.bytes()) / static_cast<double>(n), "B");
    }
}

template <class Map>
void w3_one_size(std::size_t n, const options& opts, medians& out) {
    w3_time<Map>(n, opts, out, [](Map& m) {
        u64 sum = 0;
        for (auto& kv : m) sum += kv.second;
        return sum;
    });
}

#if ITERLOCK_BENCH_HAVE_CMAP
// The same walk over iterlock::concurrent_map: a snapshot pass (taken per pass, as a user would) or a
// pass under the iteration lock. No writer runs: this measures the walk's own cost against the idle map.
template <class Options>
void w3_concurrent(std::size_t n, const options& opts, medians& out) {
    using cmap = iterlock::concurrent_map<u64, u64, iterlock::hash<u64>, std::equal_to<u64>,
                                          std::allocator<value_pair>, Options>;
    w3_time<cmap>(n, opts, out, [](cmap& m) {
        u64 sum = 0;
        if constexpr (Options::iteration == iterlock::iteration_policy::snapshot) {
            const auto snap = m.snapshot();
            for (const auto& kv : snap) sum += kv.second;
        } else {
            auto guard = m.lock_for_iteration();
            for (auto& kv : guard) sum += kv.second;
        }
        return sum;
    });
}
#endif

void run_w3(const std::string& impl, const options& opts, const emit_fn& emit) {
    for (std::size_t n : sizes_or(opts, {10'000, 1'000'000})) {
        medians out;
        if (impl == "bandwidth") {
            w3_bandwidth(n, opts, out);
        } else if (impl == "iterlock_snapshot" || impl == "iterlock_locked") {
#if ITERLOCK_BENCH_HAVE_CMAP
            if (impl == "iterlock_snapshot") {
                w3_concurrent<iterlock::snapshot_iteration>(n, opts, out);
            } else {
                w3_concurrent<iterlock::locked_iteration>(n, opts, out);
            }
#else
            throw unavailable("iterlock/concurrent_map.hpp is not in this build");
#endif
        } else {
            with_map<std::allocator<value_pair>>(impl, [&]<class Map>() { w3_one_size<Map>(n, opts, out); });
        }
        out.emit(emit, "W3", impl, n, 1);
    }
}

// ----- W6 ---------------------------------------------------------------------------------------

template <class Map>
void w6_one_size(std::size_t n, const options& opts, medians& out) {
    const std::vector<u64> keys = stream(hit_seed, n);
    for (int rep = 0; rep < opts.repetitions; ++rep) {
        const std::size_t before = allocation_stats::live.load();
        allocation_stats::reset_peak();
        std::size_t held = 0;
        {
            Map m;
            fill_values(m, keys);
            held = allocation_stats::live.load() - before;
        }
        const std::size_t peak = allocation_stats::peak.load() - before;
        out.add("bytes_per_entry", static_cast<double>(held) / static_cast<double>(n), "B");
        out.add("peak_bytes_per_entry", static_cast<double>(peak) / static_cast<double>(n), "B");
    }
}

void run_w6(const std::string& impl, const options& opts, const emit_fn& emit) {
    for (std::size_t n : sizes_or(opts, {1'000'000})) {
        medians out;
        with_map<counting_allocator<value_pair>>(impl, [&]<class Map>() { w6_one_size<Map>(n, opts, out); });
        out.emit(emit, "W6", impl, n, 1);
    }
}

const std::vector<std::string> map_impls = {"iterlock", "iterlock_nodetect", "std_unordered_map",
                                            "absl_flat_hash_map", "boost_unordered_flat_map"};

const std::map<std::string, std::string> map_notes = {
    {"iterlock", "Go map, misuse detection on"},
    {"iterlock_nodetect", "Go map, detection compiled out"},
    {"std_unordered_map", "node-based, std::hash"},
    {"absl_flat_hash_map", "swiss table, absl::Hash"},
    {"boost_unordered_flat_map", "open addressing, boost::hash"},
};

const registrar w1{{"W1",
                    "single thread, uint64->uint64: insert N (no reserve), N hit finds, N miss finds, "
                    "erase all; worst insert vs a full rehash (default N=1M)",
                    map_impls, run_w1, "absl_flat_hash_map", map_notes}};
const std::vector<std::string> w3_impls = {
    "iterlock",          "iterlock_nodetect",  "iterlock_snapshot",        "iterlock_locked",
    "std_unordered_map", "absl_flat_hash_map", "boost_unordered_flat_map", "bandwidth"};
std::map<std::string, std::string> w3_notes() {
    auto n = map_notes;
    n.emplace("bandwidth",
              "a streaming read of iterlock::map's bucket storage at N (the walk's memory limit); "
              "x_bandwidth = a row's iter_ns_per_entry over this read, timed in the same repetition");
    n.emplace("iterlock_snapshot", "concurrent_map, one snapshot per pass, no writer");
    n.emplace("iterlock_locked", "concurrent_map, one iteration guard per pass, no writer");
    return n;
}
const registrar w3{{"W3",
                    "single thread: full iteration summing values (default N=10k and 1M); "
                    "iter_fresh_ns_per_entry: each walk on a map built anew from new keys (a layout the "
                    "branch predictor has not learned)",
                    w3_impls, run_w3, "absl_flat_hash_map", w3_notes()}};
const registrar w6{
    {"W6", "memory: allocated bytes per entry at N entries, and the peak while growing (default N=1M)",
     map_impls, run_w6, "absl_flat_hash_map", map_notes}};

}  // namespace
}  // namespace iterlock::bench
