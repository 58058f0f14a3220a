// iterlock/detail/metrics/prom_families.hpp: turns map_metrics into Prometheus metric families (names, help,
// labels).
//
// Owns: iterlock::detail::prom_family_builder, the table of exported metric names.
// Invariants:
//   - one family per metric name, whatever the number of maps added (Prometheus rejects a scrape that
//     declares a name twice), in a fixed order; families that no map filled are dropped;
//   - every sample carries the label `map` first, then the caller's constant labels, then the family's own
//     (`state`, `role`, `priority`), so the label set of one series never changes between scrapes;
//   - counters end in `_total` and are monotone as long as the map's counters are; gauges do not;
//   - a map with metrics compiled out exports only what it still measures (the gauges, growth and
//     evacuation counts), never a counter stuck at zero that would read as "nothing happened".
// Pure data conversion: no locks, no I/O. Used by iterlock/prometheus.hpp.
#pragma once

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "iterlock/metrics.hpp"
#include "iterlock/priority.hpp"

namespace iterlock::detail {

// A constant label pair; `map` is added by the builder.
using prom_labels = std::vector<::prometheus::ClientMetric::Label>;

// Collects the samples of any number of maps into one family per metric name.
class prom_family_builder {
  public:
    // Family indices, in exposition order.
    enum family : std::size_t {
        locked_iterations,
        snapshot_iterations,
        iterations_started,
        lock_wait,
        iteration_hold,
        snapshots_active,
        preserved_bytes,
        snapshot_budget,
        snapshots_expired,
        entries,
        growths,
        evacuated,
        misuse,
        revision,
        family_count
    };

    prom_family_builder() {
        using T = ::prometheus::MetricType;
        define(locked_iterations, "iterlock_locked_iterations_total",
               "Locked iterations (iteration guards) finished, by outcome: success = the guard was held and "
               "released, timeout = try_lock_for_iteration gave up, error = lock_error instead of a guard.",
               T::Counter);
        define(snapshot_iterations, "iterlock_snapshot_iterations_total",
               "Snapshot iterations finished, by outcome: success = the snapshot was taken and released, "
               "error = lock_error instead of a snapshot.",
               T::Counter);
        define(iterations_started, "iterlock_iterations_started_total",
               "Iterations asked for: iteration guards requested (locked policy) or snapshots taken "
               "(snapshot policy).",
               T::Counter);
        define(lock_wait, "iterlock_lock_wait_seconds",
               "Time spent waiting for a shard lock, by role (writer: one write; iterator: every shard of "
               "one locked iteration) and by the waiter's priority.",
               T::Histogram);
        define(iteration_hold, "iterlock_iteration_hold_seconds",
               "Time each iteration guard held its lock (iterlock::iteration_lock, iterlock::guarded, "
               "concurrent_map's locked policy), or each concurrent_map snapshot lived (snapshot policy), by "
               "the priority of the thread that ended it.",
               T::Histogram);
        define(snapshots_active, "iterlock_snapshots_active", "Snapshots alive now.", T::Gauge);
        define(preserved_bytes, "iterlock_snapshot_preserved_bytes",
               "Bytes of old entries kept alive for live snapshots (zero when no snapshot is alive).",
               T::Gauge);
        define(snapshot_budget, "iterlock_snapshot_budget_bytes",
               "The map's snapshot memory budget (concurrent_map S7; 0: none): past it the oldest snapshot "
               "is expired.",
               T::Gauge);
        define(snapshots_expired, "iterlock_snapshots_expired_total",
               "Snapshots expired to keep preserved bytes within the budget (their next read threw "
               "iterlock::snapshot_expired).",
               T::Counter);
        define(entries, "iterlock_map_entries", "Entries in the map.", T::Gauge);
        define(growths, "iterlock_map_growths_total",
               "Table growths started (doubling or same-size), all shards.", T::Counter);
        define(evacuated, "iterlock_map_evacuated_buckets_total",
               "Old buckets moved to the new table by incremental growth, all shards.", T::Counter);
        define(misuse, "iterlock_misuse_detected_total",
               "Misuse detected and refused with iterlock::lock_error (calls that would have deadlocked).",
               T::Counter);
        define(revision, "iterlock_map_revision",
               "Successful writes to the map since it was made (its revision; a snapshot's revision says "
               "how many writes it reflects).",
               T::Gauge);
    }

    // Adds one map's samples. `metrics_recorded` is false for a map whose Options compiled metrics out.
    void add(std::string_view map_name, const prom_labels& extra, const map_metrics& m,
             bool metrics_recorded) {
        const prom_labels base = labels_for(map_name, extra);
        const bool locked = std::string_view(m.policy == nullptr ? "" : m.policy) == "locked";
        if (metrics_recorded) {
            const family it = locked ? locked_iterations : snapshot_iterations;
            counter(it, with(base, "state", "success"), m.iterations_success);
            if (locked)
                counter(it, with(base, "state", "timeout"), m.iterations_timeout);  // snapshots never wait
            counter(it, with(base, "state", "error"), m.iterations_error);
            counter(iterations_started, base, m.iterations_started);
            for (int role = 0; role < 2; ++role) {
                for (int p = 0; p < 2; ++p) {
                    prom_labels l = with(base, "role",
                                         role == static_cast<int>(lock_role::writer) ? "writer" : "iterator");
                    l = with(l, "priority",
                             priority_name(p == 1 ? priority::realtime : priority::best_effort));
                    histogram(lock_wait, l, m.lock_wait[role][p]);
                }
            }
            for (int p = 0; p < 2; ++p) {
                if (m.iteration_hold[p].upper_bounds.empty()) continue;  // not measured by this source
                histogram(iteration_hold,
                          with(base, "priority",
                               priority_name(p == 1 ? priority::realtime : priority::best_effort)),
                          m.iteration_hold[p]);
            }
        }
        gauge(snapshots_active, base, static_cast<double>(m.snapshots_active));
        gauge(preserved_bytes, base, static_cast<double>(m.snapshot_preserved_bytes));
        if (!locked) {
            gauge(snapshot_budget, base, static_cast<double>(m.snapshot_budget_bytes));
            if (metrics_recorded) counter(snapshots_expired, base, m.snapshots_expired);
        }
        gauge(entries, base, static_cast<double>(m.entries));
        counter(growths, base, m.growths);
        counter(evacuated, base, m.evacuated_buckets);
        if (metrics_recorded) counter(misuse, base, m.misuse_detected);
        gauge(revision, base, static_cast<double>(m.revision));
    }

    // The families that hold at least one sample, in the fixed order. Leaves the builder empty.
    std::vector<::prometheus::MetricFamily> take() {
        std::vector<::prometheus::MetricFamily> out;
        for (auto& f : families_) {
            if (!f.metric.empty()) out.push_back(std::move(f));
            f.metric.clear();
        }
        return out;
    }

    static prom_labels labels_for(std::string_view map_name, const prom_labels& extra) {
        prom_labels l;
        l.reserve(extra.size() + 1);
        l.push_back({"map", std::string(map_name)});
        l.insert(l.end(), extra.begin(), extra.end());
        return l;
    }

  private:
    void define(family f, const char* name, const char* help, ::prometheus::MetricType type) {
        families_[f].name = name;
        families_[f].help = help;
        families_[f].type = type;
    }
    static prom_labels with(const prom_labels& base, const char* name, std::string_view value) {
        prom_labels l = base;
        l.push_back({name, std::string(value)});
        return l;
    }
    void counter(family f, const prom_labels& l, std::uint64_t v) {
        ::prometheus::ClientMetric c;
        c.label = l;
        c.counter.value = static_cast<double>(v);
        families_[f].metric.push_back(std::move(c));
    }
    void gauge(family f, const prom_labels& l, double v) {
        ::prometheus::ClientMetric c;
        c.label = l;
        c.gauge.value = v;
        families_[f].metric.push_back(std::move(c));
    }
    void histogram(family f, const prom_labels& l, const histogram_data& h) {
        ::prometheus::ClientMetric c;
        c.label = l;
        c.histogram.sample_count = h.count;
        c.histogram.sample_sum = h.sum;
        const std::size_t n = std::min(h.upper_bounds.size(), h.cumulative_counts.size());
        c.histogram.bucket.reserve(n);
        std::uint64_t running = 0;
        for (std::size_t i = 0; i < n; ++i) {
            // Cumulative counts read without one instant may dip; Prometheus needs them non-decreasing.
            running = std::max(running, h.cumulative_counts[i]);
            c.histogram.bucket.push_back({std::min(running, h.count), h.upper_bounds[i]});
        }
        families_[f].metric.push_back(std::move(c));
    }

    std::array<::prometheus::MetricFamily, family_count> families_;
};

}  // namespace iterlock::detail
