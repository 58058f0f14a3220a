// iterlock/metrics.hpp: metrics of iterlock's concurrent maps: what a map records about its locks,
// iterations and snapshots, and the plain-data view (`map_metrics`) that exporters such as
// iterlock/prometheus.hpp read.
//
// Owns: iterlock::map_metrics, iterlock::histogram_data, iterlock::lock_role,
//       iterlock::detail::wait_histogram, iterlock::detail::shard_metrics,
//       iterlock::detail::map_event_metrics, iterlock::detail::no_metrics.
// Invariants: recording never allocates and never blocks (relaxed atomics; a shard's writer-wait histogram
//       is written only under that shard's lock); a histogram's total counts every observation, +Inf too.
//
// Recording is relaxed and local: writer lock waits go to a histogram inside the writer's shard (updated
// under that shard's lock, so a write adds a load and a store on a line no other shard touches); iteration
// events and iterator lock waits are rare and go to per-map counters. Recording never allocates (reading,
// map_metrics and add_to(), fills vectors). A map whose Options say `metrics = false` compiles all of it
// out (see iterlock::map_options).
//
// Histogram buckets are powers of two in nanoseconds, from 256 ns to 2^34 ns (about 17 s), plus +Inf:
//   bucket i counts waits w with 2^(i+7) < w <= 2^(i+8) ns (bucket 0 also takes every shorter wait).
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "iterlock/detail/util/exclusive_add.hpp"

namespace iterlock {

// A histogram as exporters want it (Prometheus' cumulative buckets).
struct histogram_data {
    std::vector<double> upper_bounds;              // seconds, increasing; +Inf is implicit
    std::vector<std::uint64_t> cumulative_counts;  // observations <= the matching bound
    std::uint64_t count = 0;                       // all observations (the +Inf bucket)
    double sum = 0;                                // seconds
};

enum class lock_role : int { writer = 0, iterator = 1 };

// One consistent-enough read of a map's metrics (each counter is read atomically; the set is not one
// instant).
struct map_metrics {
    const char* policy = "";               // "snapshot" or "locked"
    std::uint64_t iterations_started = 0;  // guards asked for (locked) or snapshots taken (snapshot)
    std::uint64_t iterations_success = 0;  // finished normally
    std::uint64_t iterations_timeout = 0;  // try_lock_for_iteration gave up
    std::uint64_t iterations_error = 0;    // lock_error instead of an iteration
    histogram_data lock_wait[2][2];        // [lock_role][priority: 0 best_effort, 1 realtime]
    histogram_data iteration_hold[2];      // [priority]: how long guards (and concurrent_map's snapshots)
                                           // were held, by the releasing thread's priority (empty bounds:
                                           // not measured by this source)
    std::uint64_t snapshots_active = 0;
    std::uint64_t snapshot_preserved_bytes = 0;
    std::uint64_t snapshot_budget_bytes = 0;  // concurrent_map's snapshot memory budget (S7); 0: none
    std::uint64_t snapshots_expired = 0;      // snapshots the budget expired (S7)
    std::uint64_t entries = 0;
    std::uint64_t growths = 0;            // hash_grow calls (doubling or same-size)
    std::uint64_t evacuated_buckets = 0;  // old buckets moved by incremental growth
    std::uint64_t misuse_detected = 0;    // lock_error thrown for would-be deadlocks
    std::uint64_t revision = 0;
};

namespace detail {

// Fixed log2 histogram of durations, relaxed atomics.
class wait_histogram {
  public:
    static constexpr int buckets = 27;  // 2^8 .. 2^34 ns
    static constexpr int first_shift = 8;

    // Single-writer form (the caller holds a lock that serialises recorders): a load and a store.
    void record_exclusive(std::chrono::nanoseconds d) noexcept {
        const std::uint64_t ns = clamp(d);
        bump(counts_[index(ns)]);
        bump(total_);
        add_exclusive(sum_ns_, ns);
    }
    // Any number of concurrent recorders.
    void record_shared(std::chrono::nanoseconds d) noexcept {
        const std::uint64_t ns = clamp(d);
        // Relaxed (all three): statistics, read without ordering.
        counts_[index(ns)].fetch_add(1, std::memory_order_relaxed);
        total_.fetch_add(1, std::memory_order_relaxed);
        sum_ns_.fetch_add(ns, std::memory_order_relaxed);
    }
    // Adds this histogram into `out` (bounds are filled on first use), with `zero_waits` observations of
    // 0 ns that the caller counted elsewhere (concurrent_map counts uncontended writes on the shard lock's
    // line instead of here: one bump on a line the write takes anyway).
    void add_to(histogram_data& out, std::uint64_t zero_waits = 0) const {
        if (out.upper_bounds.empty()) {
            for (int i = 0; i < buckets; ++i)
                out.upper_bounds.push_back(static_cast<double>(std::uint64_t{1} << (i + first_shift)) * 1e-9);
            out.cumulative_counts.assign(buckets, 0);
        }
        std::uint64_t running = zero_waits;
        for (int i = 0; i < buckets; ++i) {
            // Relaxed (here and below): statistics, read without ordering.
            running += counts_[i].load(std::memory_order_relaxed);
            out.cumulative_counts[i] += running;
        }
        const std::uint64_t total = total_.load(std::memory_order_relaxed) + zero_waits;
        out.count += total < running ? running : total;
        out.sum += static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) * 1e-9;
    }

  private:
    static std::uint64_t clamp(std::chrono::nanoseconds d) noexcept {
        return d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
    }
    static int index(std::uint64_t ns) noexcept {
        if (ns <= (std::uint64_t{1} << first_shift)) return 0;
        const int i = static_cast<int>(std::bit_width(ns - 1)) - first_shift;  // ceil(log2(ns)) - 8
        return i < buckets ? i : buckets;  // == buckets: only in +Inf (total)
    }
    static void bump(std::atomic<std::uint64_t>& a) noexcept { add_exclusive(a, 1); }

    std::atomic<std::uint64_t> total_{0};
    std::atomic<std::uint64_t> sum_ns_{0};
    std::atomic<std::uint64_t> counts_[buckets + 1] = {};
};

// Per-shard recorders (writer waits by priority).
struct shard_metrics {
    wait_histogram writer_wait[2];
};

// Per-map recorders of rare events.
struct map_event_metrics {
    std::atomic<std::uint64_t> iterations_started{0};
    std::atomic<std::uint64_t> iterations_success{0};
    std::atomic<std::uint64_t> iterations_timeout{0};
    std::atomic<std::uint64_t> iterations_error{0};
    std::atomic<std::uint64_t> misuse_detected{0};
    std::atomic<std::uint64_t> snapshots_expired{0};  // concurrent_map, S7
    wait_histogram iterator_wait[2];
    wait_histogram iteration_hold[2];  // concurrent_map: guard and snapshot hold times, by priority
};

struct no_metrics {};

}  // namespace detail
}  // namespace iterlock
