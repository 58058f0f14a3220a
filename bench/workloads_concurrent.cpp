// The concurrent workloads: W2 (mixed find/insert/erase throughput), W4 (one writer, then one writer
// beside one iterating thread: write latency and pass times), W5i/W5d (does a pass see exactly a
// prefix/suffix of an in-order writer?), run over every adapter in peers_concurrent.hpp.
//
// Invariants: keys are mix64(i) for an index i in the workload's keyspace, so every peer's hash (identity
// ones included) sees random-looking keys; threads start together behind a latch; a timed phase ends
// when the driver thread sets `stop`, and rates divide by the phase's wall time. A peer whose iteration
// is unsafe beside writers (iteration_safe == false) is not run in W4/W5: it throws `unavailable`.
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "peers_concurrent.hpp"
#include "registry.hpp"

namespace iterlock::bench {
namespace {

using u64 = std::uint64_t;

inline void keep(u64 v) noexcept {
    asm volatile("" : : "r"(v) : "memory");
}

// A uniform index in [0, n) from the top 32 bits of r (n < 2^32).
inline u64 index_in(u64 r, u64 n) noexcept {
    return ((r >> 32) * n) >> 32;
}

// ----- dispatch by name -------------------------------------------------------------------------

template <class F, class... Peers>
bool dispatch(const std::string& impl, F& f, peer_list<Peers...>) {
    static_assert((concurrent_peer<Peers> && ...));
    return ((impl == Peers::name ? (f.template operator()<Peers>(), true) : false) || ...);
}

// Calls f.template operator()<Peer>() for the adapter named `impl`.
template <class F>
void with_peer(const std::string& impl, F&& f) {
    if (dispatch(impl, f, available_peers{})) return;
    for (std::string_view name : iterlock_peer_names) {
        if (impl == name) {
            throw unavailable(
                "iterlock::concurrent_map is not in this build yet "
                "(<iterlock/concurrent_map.hpp> was missing when this file was compiled; if it exists now, "
                "touch bench/workloads_concurrent.cpp and rebuild)");
        }
    }
    throw std::invalid_argument("unknown concurrent implementation '" + impl + "'");
}

template <class... Peers>
std::vector<std::string> names_of(peer_list<Peers...>) {
    return {std::string(Peers::name)...};
}

template <class... Peers>
std::map<std::string, std::string> guarantees_of(peer_list<Peers...>) {
    std::map<std::string, std::string> notes{{std::string(Peers::name), std::string(Peers::guarantee)}...};
    notes.emplace("iterlock_snapshot", "snapshot (pending)");
    notes.emplace("iterlock_locked", "iteration lock (pending)");
    return notes;
}

std::vector<std::string> all_impls() {
    std::vector<std::string> names(std::begin(iterlock_peer_names), std::end(iterlock_peer_names));
    for (auto& n : names_of(available_peers{})) {
        if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
    return names;
}

template <class P>
void require_safe_iteration() {
    if constexpr (!P::iteration_safe) {
        throw unavailable(std::string(P::name) + ": iteration beside writers is undefined behaviour");
    }
}

// ----- options ----------------------------------------------------------------------------------

std::vector<std::size_t> sizes_or(const options& opts, std::vector<std::size_t> defaults) {
    std::vector<std::size_t> sizes = opts.sizes.empty() ? std::move(defaults) : opts.sizes;
    for (std::size_t n : sizes) {
        if (n == 0 || n >= (std::size_t{1} << 31)) throw std::invalid_argument("--size must be in [1, 2^31)");
    }
    return sizes;
}

std::chrono::nanoseconds seconds(double s) {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(s * 1e9));
}

// Prefills the even indices of a 2n keyspace: n entries, half the keyspace.
template <class P>
void prefill_half(P& p, std::size_t n) {
    for (u64 i = 0; i < n; ++i) p.insert_or_assign(mix64(2 * i), 2 * i);
}

// ----- latency histogram ------------------------------------------------------------------------

// A log-linear histogram of nanosecond values (HDR-like): values below 64 have their own bucket; above,
// each power of two is split into 32 buckets, so a reported percentile is within ~3% of the truth.
// The maximum is kept exactly. Not thread-safe: one per recording thread.
//
//   index(v) = v                            for v < 64
//            = (e - 5) * 32 + (v >> (e - 5)) for v >= 64, e = floor(log2 v); (v >> (e-5)) is in [32, 64)
class latency_histogram {
  public:
    void record(u64 v) noexcept {
        ++counts_[index(v)];
        ++total_;
        max_ = std::max(max_, v);
    }
    u64 count() const noexcept { return total_; }
    u64 max() const noexcept { return max_; }
    // The value at quantile q in [0, 1] (the middle of its bucket, capped at the maximum); 0 when empty.
    double quantile(double q) const noexcept {
        if (total_ == 0) return 0;
        const u64 rank = std::max<u64>(1, static_cast<u64>(q * static_cast<double>(total_) + 0.999999));
        u64 seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += counts_[i];
            if (seen >= rank) {
                const double mid =
                    (static_cast<double>(lower(i)) + static_cast<double>(lower(i + 1) - 1)) / 2;
                return std::min(mid, static_cast<double>(max_));
            }
        }
        return static_cast<double>(max_);
    }

  private:
    static constexpr std::size_t bucket_count = 59 * 32 + 32;  // top index: (63-5)*32 + 63

    static std::size_t index(u64 v) noexcept {
        if (v < 64) return static_cast<std::size_t>(v);
        const int shift = std::bit_width(v) - 1 - 5;
        return static_cast<std::size_t>(shift) * 32 + static_cast<std::size_t>(v >> shift);
    }
    static u64 lower(std::size_t i) noexcept {
        if (i < 64) return i;
        const std::size_t shift = i / 32 - 1;
        return (u64{i % 32} + 32) << shift;
    }

    std::array<u64, bucket_count> counts_{};
    u64 total_ = 0;
    u64 max_ = 0;
};

// ----- W2: mixed throughput ---------------------------------------------------------------------

// T threads, each 90% find / 5% insert_or_assign / 5% erase over a 2n keyspace, for `duration`.
// Returns million operations per second over all threads.
template <class P>
double w2_once(P& p, std::size_t n, int threads, std::chrono::nanoseconds duration, u64 seed) {
    struct alignas(64) counter {
        u64 ops = 0;
    };
    std::vector<counter> ops(static_cast<std::size_t>(threads));
    std::atomic<bool> stop{false};
    std::latch go(threads + 1);
    std::vector<std::jthread> workers;
    const u64 keyspace = 2 * u64{n};
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            splitmix64 rng{seed ^ mix64(static_cast<u64>(t) + 1)};
            u64 done = 0, sum = 0;
            go.arrive_and_wait();
            while (!stop.load(std::memory_order_relaxed)) {
                for (int j = 0; j < 64; ++j) {
                    const u64 r = rng();
                    const u64 i = index_in(r, keyspace);
                    const u64 pick = ((r & 0xffffffffULL) * 100) >> 32;  // [0, 100)
                    if (pick < 90) {
                        if (auto v = p.find(mix64(i))) sum += *v;
                    } else if (pick < 95) {
                        p.insert_or_assign(mix64(i), i);
                    } else {
                        sum += p.erase(mix64(i));
                    }
                }
                done += 64;
            }
            keep(sum);
            ops[static_cast<std::size_t>(t)].ops = done;
        });
    }
    go.arrive_and_wait();
    const std::int64_t t0 = now_ns();
    std::this_thread::sleep_for(duration);
    stop.store(true, std::memory_order_relaxed);
    workers.clear();  // joins
    const std::int64_t t1 = now_ns();
    u64 total = 0;
    for (const auto& c : ops) total += c.ops;
    return static_cast<double>(total) / static_cast<double>(t1 - t0) * 1e3;
}

void run_w2(const std::string& impl, const options& opts, const emit_fn& emit) {
    const auto duration = seconds(opts.duration_s > 0 ? opts.duration_s : 2.0);
    const std::vector<int> thread_counts = opts.threads.empty() ? std::vector<int>{1, 2} : opts.threads;
    for (std::size_t n : sizes_or(opts, {1'000'000})) {
        for (int threads : thread_counts) {
            medians out;
            for (int rep = 0; rep < opts.repetitions; ++rep) {
                with_peer(impl, [&]<class P>() {
                    auto p = std::make_unique<P>();
                    prefill_half(*p, n);
                    out.add("mops", w2_once(*p, n, threads, duration, static_cast<u64>(rep) + 1), "Mop/s");
                });
            }
            out.emit(emit, "W2", impl, n, threads);
        }
    }
}

// ----- W4: iterate under writes -----------------------------------------------------------------

struct writer_result {
    u64 ops = 0;
    double seconds = 0;
    latency_histogram latency;
};

// One writer (50% insert_or_assign / 50% erase over a 2n keyspace) for `duration`, each operation timed;
// with `iterate`, one more thread runs back-to-back passes meanwhile and records each pass's time.
template <class P>
writer_result w4_phase(P& p, std::size_t n, std::chrono::nanoseconds duration, u64 seed, bool iterate,
                       std::vector<double>* pass_ns) {
    writer_result w;
    std::atomic<bool> stop{false};
    std::latch go(iterate ? 3 : 2);
    std::jthread writer([&] {
        splitmix64 rng{seed};
        const u64 keyspace = 2 * u64{n};
        go.arrive_and_wait();
        std::int64_t prev = now_ns();
        while (!stop.load(std::memory_order_relaxed)) {
            const u64 r = rng();
            const u64 i = index_in(r, keyspace);
            if (r & 1) {
                p.insert_or_assign(mix64(i), i);
            } else {
                p.erase(mix64(i));
            }
            const std::int64_t now =
                now_ns();  // one clock read per op: the end of one is the start of the next
            w.latency.record(static_cast<u64>(now - prev));
            prev = now;
            ++w.ops;
        }
    });
    std::jthread iterator;
    if (iterate) {
        iterator = std::jthread([&] {
            go.arrive_and_wait();
            while (!stop.load(std::memory_order_relaxed)) {
                u64 sum = 0;
                const std::int64_t t0 = now_ns();
                p.for_each_consistent([&](u64, u64 v) { sum += v; });
                const std::int64_t t1 = now_ns();
                keep(sum);
                pass_ns->push_back(static_cast<double>(t1 - t0));
            }
        });
    }
    go.arrive_and_wait();
    const std::int64_t t0 = now_ns();
    std::this_thread::sleep_for(duration);
    stop.store(true, std::memory_order_relaxed);
    writer.join();
    const std::int64_t t1 = now_ns();
    if (iterator.joinable()) iterator.join();
    w.seconds = static_cast<double>(t1 - t0) / 1e9;
    return w;
}

void run_w4(const std::string& impl, const options& opts, const emit_fn& emit) {
    const double base = opts.duration_s > 0 ? opts.duration_s : 2.0;
    for (std::size_t n : sizes_or(opts, {10'000, 1'000'000})) {
        medians out;
        for (int rep = 0; rep < opts.repetitions; ++rep) {
            with_peer(impl, [&]<class P>() {
                require_safe_iteration<P>();
                auto p = std::make_unique<P>();
                prefill_half(*p, n);
                const u64 seed = 0x5eed0000ULL + static_cast<u64>(rep);
                auto alone =
                    std::make_unique<writer_result>(w4_phase(*p, n, seconds(base), seed, false, nullptr));
                std::vector<double> passes;
                auto mixed = std::make_unique<writer_result>(
                    w4_phase(*p, n, seconds(base * 1.5), seed + 1, true, &passes));
                out.add("passes", static_cast<double>(passes.size()), "passes");
                out.add("pass_p50_ns", median(passes), "ns");
                out.add("pass_max_ns", passes.empty() ? 0 : *std::max_element(passes.begin(), passes.end()),
                        "ns");
                out.add("writer_alone_ops", static_cast<double>(alone->ops) / alone->seconds, "op/s");
                out.add("writer_iter_ops", static_cast<double>(mixed->ops) / mixed->seconds, "op/s");
                out.add("write_alone_p50_ns", alone->latency.quantile(0.5), "ns");
                out.add("write_alone_p999_ns", alone->latency.quantile(0.999), "ns");
                out.add("write_alone_max_ns", static_cast<double>(alone->latency.max()), "ns");
                out.add("write_p50_ns", mixed->latency.quantile(0.5), "ns");
                out.add("write_p99_ns", mixed->latency.quantile(0.99), "ns");
                out.add("write_p999_ns", mixed->latency.quantile(0.999), "ns");
                out.add("write_max_ns", static_cast<double>(mixed->latency.max()), "ns");
            });
        }
        out.emit(emit, "W4", impl, n, 2);
    }
}

// ----- W5i / W5d: prefix and suffix checks ------------------------------------------------------

// Checks one pass against the writer's sequence k_i = mix64(i), value i, i in [0, n): the keys seen must
// be distinct, well-formed, and form [0, count) (a prefix, W5i) or [n - count, n) (a suffix, W5d).
class pass_checker {
  public:
    explicit pass_checker(std::size_t n) : n_(n), seen_((n + 63) / 64) {}

    void begin() noexcept {
        std::fill(seen_.begin(), seen_.end(), 0);
        count_ = 0;
        lo_ = n_;
        hi_ = 0;
        bad_ = false;
    }
    void visit(u64 k, u64 v) noexcept {
        if (v >= n_ || k != mix64(v)) {
            bad_ = true;
            return;
        }
        u64& word = seen_[v / 64];
        const u64 bit = u64{1} << (v % 64);
        if (word & bit) bad_ = true;  // the same key twice in one pass
        word |= bit;
        ++count_;
        lo_ = std::min(lo_, v);
        hi_ = std::max(hi_, v);
    }
    bool holed(bool want_prefix) const noexcept {
        if (bad_) return true;
        if (count_ == 0) return false;
        return want_prefix ? !(lo_ == 0 && hi_ == count_ - 1) : !(hi_ == n_ - 1 && lo_ == n_ - count_);
    }

  private:
    u64 n_;
    std::vector<u64> seen_;
    u64 count_ = 0, lo_ = 0, hi_ = 0;
    bool bad_ = false;
};

struct w5_tally {
    u64 rounds = 0, passes = 0, holed = 0;
    std::int64_t checked_ns = 0;  // time the rounds' writers ran beside passes (capped by the budget)
    double writer_seconds = 0;
};

// One round: a fresh map (W5d: prefilled with k_0..k_{n-1}, untimed); the writer inserts (W5i) or erases
// (W5d) k_0, k_1, ... in order while the other thread runs passes until the writer finishes or `budget_ns`
// has passed (a writer held off by back-to-back passes then finishes alone, unchecked).
template <class P>
void w5_round(std::size_t n, bool inserts, std::int64_t budget_ns, pass_checker& check, w5_tally& tally) {
    auto p = std::make_unique<P>();
    if (!inserts) {
        for (u64 i = 0; i < n; ++i) p->insert_or_assign(mix64(i), i);
    }
    std::atomic<bool> writer_done{false};
    std::latch go(2);
    std::int64_t t0 = 0, t1 = 0;
    std::jthread writer([&] {
        go.arrive_and_wait();
        t0 = now_ns();
        for (u64 i = 0; i < n; ++i) {
            if (inserts) {
                p->insert_or_assign(mix64(i), i);
            } else {
                p->erase(mix64(i));
            }
        }
        t1 = now_ns();
        writer_done.store(true, std::memory_order_release);
    });
    go.arrive_and_wait();
    const std::int64_t start = now_ns();
    const std::int64_t deadline = start + budget_ns;
    while (!writer_done.load(std::memory_order_acquire) && now_ns() < deadline) {
        check.begin();
        p->for_each_consistent([&](u64 k, u64 v) { check.visit(k, v); });
        ++tally.passes;
        tally.holed += check.holed(inserts);
    }
    writer.join();
    // The round's time with the writer, whether or not a pass fitted in it (so rounds always add up).
    tally.checked_ns += std::max<std::int64_t>(1, std::min(now_ns(), deadline) - start);
    ++tally.rounds;
    tally.writer_seconds += static_cast<double>(t1 - t0) / 1e9;
}

void run_w5(const char* name, bool inserts, const std::string& impl, const options& opts,
            const emit_fn& emit) {
    const std::int64_t duration = seconds(opts.duration_s > 0 ? opts.duration_s : 2.0).count();
    for (std::size_t n : sizes_or(opts, {1'000'000})) {
        medians out;
        for (int rep = 0; rep < opts.repetitions; ++rep) {
            with_peer(impl, [&]<class P>() {
                require_safe_iteration<P>();
                pass_checker check(n);
                w5_tally tally;
                // Rounds until the writers have run beside passes for `duration` in all (at least one
                // round); prefill and teardown are not counted.
                do {
                    w5_round<P>(n, inserts, duration - tally.checked_ns, check, tally);
                } while (tally.checked_ns < duration);
                out.add("passes", static_cast<double>(tally.passes), "passes");
                out.add("holed_passes", static_cast<double>(tally.holed), "passes");
                out.add("rounds", static_cast<double>(tally.rounds), "rounds");
                out.add("writer_ops", static_cast<double>(tally.rounds * n) / tally.writer_seconds, "op/s");
            });
        }
        out.emit(emit, name, impl, n, 2);
    }
}

const std::string concurrent_baseline = "sharded_spinlock";

const registrar w2{
    {"W2",
     "mixed: prefill N keys of a 2N keyspace, T threads 90% find / 5% insert_or_assign / 5% erase "
     "(default N=1M, T=1,2, 2 s)",
     all_impls(), run_w2, concurrent_baseline, guarantees_of(available_peers{})}};
const registrar w4{
    {"W4",
     "iterate under writes: one writer (50% insert_or_assign / 50% erase over 2N) alone for D, then "
     "beside one iterating thread for 1.5 D (default N=10k and 1M, D=2 s)",
     all_impls(), run_w4, concurrent_baseline, guarantees_of(available_peers{})}};
const registrar w5i{
    {"W5i",
     "prefix check: a writer inserts k0, k1, ... in order (rounds of N, default 1M) for 2 s; a pass "
     "is holed unless it sees exactly a prefix",
     all_impls(),
     [](const std::string& impl, const options& opts, const emit_fn& emit) {
         run_w5("W5i", true, impl, opts, emit);
     },
     concurrent_baseline, guarantees_of(available_peers{})}};
const registrar w5d{
    {"W5d",
     "suffix check: N prefilled, a writer erases k0, k1, ... in order (rounds, default N=1M) for 2 s; "
     "a pass is holed unless it sees exactly a suffix",
     all_impls(),
     [](const std::string& impl, const options& opts, const emit_fn& emit) {
         run_w5("W5d", false, impl, opts, emit);
     },
     concurrent_baseline, guarantees_of(available_peers{})}};

}  // namespace
}  // namespace iterlock::bench
