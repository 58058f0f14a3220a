// iterlock/etcd/prometheus.hpp: exports iterlock::etcd::map metrics to Prometheus, the in-process map's
// names for its mirror plus the etcd ones.
//
// Owns: iterlock::etcd::metrics_registry (a ::prometheus::Collectable) and its RAII handle
//       etcd_exposure. Needs both iterlock::etcd and iterlock::prometheus (prometheus-cpp) at link time.
//
//     iterlock::prometheus::endpoint ep("0.0.0.0:9464");
//     auto reg = std::make_shared<iterlock::etcd::metrics_registry>();
//     ep.add(reg);                                         // serve it beside the in-process maps
//     auto handle = reg->add(sessions, "sessions");        // sessions: an iterlock::etcd::map
//
// What it exports, per map, labelled {map="<name>", <your constant labels>}:
//   every family of iterlock/prometheus.hpp, for the mirror (an iterlock::concurrent_map: entries,
//   revision, snapshots, lock waits, ...), under the same names;
//   iterlock_etcd_round_trips_total         counter  requests the map's client sent (attempts; watches
//                                                    opened included)
//   iterlock_etcd_retries_total             counter  attempts after the first (client.hpp C3)
//   iterlock_etcd_reconnects_total          counter  moves of the client to another endpoint (C2)
//   iterlock_etcd_may_have_applied_total    counter  writes whose answer was lost (error.hpp E2)
//   iterlock_etcd_watch_restarts_total      counter  the mirror's watch reopened after it failed (M9)
//   iterlock_etcd_relists_total             counter  full lists of the prefix (the first one included)
//   iterlock_etcd_compaction_resyncs_total  counter  re-lists because the resume point was compacted (M7)
//   iterlock_etcd_events_applied_total      counter  watch events applied to the mirror
//   iterlock_etcd_decode_errors_total       counter  entries under the prefix that did not decode (K4)
//   iterlock_etcd_mirror_revision           gauge    applied_revision(): the etcd revision the mirror equals
//   iterlock_etcd_mirror_lag_revisions      gauge    revisions the mirror trails the newest one its watch saw
//   iterlock_etcd_mirror_lag_seconds        gauge    how long the mirror has been known to trail (0: current)
//
// Guarantees:
//   EP1  Free between scrapes: a scrape calls map.metrics() and the mirror's metrics() once per exposed
//        map (relaxed loads, no lock of the mirror, no request to etcd).
//   EP2  One family per name however many maps are exposed; the etcd counters are monotone. The client's
//        counters (round trips, retries, reconnects, may_have_applied) belong to the client: maps that
//        share one client export the same values, so sum them per client, not per map.
//   EP3  The handle is RAII: once it is destroyed or reset() the map is no longer read (a scrape reading it
//        then has finished), so the map may be destroyed right after its handle. The map must outlive its
//        handle; the registry may go away first (the handle then unregisters nothing).
//   EP4  add() throws std::invalid_argument for a name already exposed in this registry, or a reserved or
//        invalid label name (as iterlock/prometheus.hpp P5).
// Thread safety: every call may come from any thread.
#pragma once

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "iterlock/detail/metrics/source_registration.hpp"
#include "iterlock/etcd/map.hpp"
#include "iterlock/prometheus.hpp"

namespace iterlock::etcd {

namespace detail {
struct etcd_metrics_state {
    struct source {
        std::uint64_t id;
        std::string name;
        iterlock::detail::prom_labels labels;  // constant labels, without `map`
        std::function<map_etcd_metrics()> read;
    };
    std::mutex mu;  // guards `sources`; held while a scrape reads them (EP3)
    std::vector<source> sources;
    std::uint64_t next_id = 1;
};
}  // namespace detail

// What metrics_registry::add returns: exports the map while it lives (EP3). Movable, not copyable.
class etcd_exposure {
  public:
    // Movable, not copyable; the destructor stops exporting (the mirror's families first).
    etcd_exposure() noexcept = default;

    // Stops exporting the map; blocks while a scrape is reading it. No effect on an empty handle.
    void reset() noexcept {
        mirror_.reset();
        registration_.reset();
    }
    bool active() const noexcept { return registration_.active(); }

  private:
    friend class metrics_registry;
    etcd_exposure(iterlock::prometheus::exposure mirror, std::weak_ptr<detail::etcd_metrics_state> s,
                  std::uint64_t id) noexcept
        : registration_(std::move(s), id), mirror_(std::move(mirror)) {}

    iterlock::detail::source_registration<detail::etcd_metrics_state> registration_;
    iterlock::prometheus::exposure mirror_;  // destroyed first
};

// A ::prometheus::Collectable of etcd maps: their mirrors' families (iterlock/prometheus.hpp) followed by the
// etcd families. Register it with an Exposer (in a shared_ptr) or iterlock::prometheus::endpoint::add().
class metrics_registry final : public ::prometheus::Collectable {
  public:
    metrics_registry() : state_(std::make_shared<detail::etcd_metrics_state>()) {}
    metrics_registry(const metrics_registry&) = delete;
    metrics_registry& operator=(const metrics_registry&) = delete;

    // Exports `m` under {map="name", labels...} until the returned handle goes away (EP3, EP4).
    template <class K, class V, class Codec>
    [[nodiscard]] etcd_exposure add(const map<K, V, Codec>& m, std::string_view name,
                                    const ::prometheus::Labels& labels = {}) {
        // The mirror first: it checks the name and the labels (EP4) and throws before anything is kept.
        auto mirror = mirrors_.add(m.mirror(), name, labels);
        iterlock::detail::prom_labels extra;
        for (const auto& [k, v] : labels) extra.push_back({k, v});
        const auto* p = &m;
        std::lock_guard lk(state_->mu);
        const std::uint64_t id = state_->next_id++;
        state_->sources.push_back({id, std::string(name), std::move(extra), [p] { return p->metrics(); }});
        return etcd_exposure(std::move(mirror), state_, id);
    }

    // One scrape (EP1, EP2): the mirrors' families, then one family per etcd metric name.
    std::vector<::prometheus::MetricFamily> Collect() const override {
        auto out = mirrors_.Collect();
        enum : std::size_t {
            round_trips,
            retries,
            reconnects,
            may_have_applied,
            watch_restarts,
            relists,
            resyncs,
            events,
            decode_errors,
            revision,
            lag_revisions,
            lag_seconds,
            count
        };
        using T = ::prometheus::MetricType;
        // In the order of the enum above: names, help texts, types.
        static constexpr const char* names[count] = {
            "iterlock_etcd_round_trips_total",        "iterlock_etcd_retries_total",
            "iterlock_etcd_reconnects_total",         "iterlock_etcd_may_have_applied_total",
            "iterlock_etcd_watch_restarts_total",     "iterlock_etcd_relists_total",
            "iterlock_etcd_compaction_resyncs_total", "iterlock_etcd_events_applied_total",
            "iterlock_etcd_decode_errors_total",      "iterlock_etcd_mirror_revision",
            "iterlock_etcd_mirror_lag_revisions",     "iterlock_etcd_mirror_lag_seconds"};
        static constexpr const char* helps[count] = {
            "Requests the map's etcd client sent (attempts, watches opened included).",
            "Attempts after the first (reads and refused writes).",
            "Moves of the client to another endpoint after a connection failure.",
            "Writes whose answer was lost after they were sent (they may have been applied).",
            "Times the mirror's watch was reopened after it failed.",
            "Full lists of the prefix, the first one included.",
            "Re-lists because the watch's resume point had been compacted.",
            "Watch events applied to the mirror.",
            "Entries under the prefix whose key or value did not decode (skipped).",
            "The etcd revision whose content the mirror holds exactly.",
            "Revisions the mirror trails the newest revision its watch reported.",
            "Seconds the mirror has been known to trail etcd (0 while it is current)."};
        static constexpr T types[count] = {T::Counter, T::Counter, T::Counter, T::Counter,
                                           T::Counter, T::Counter, T::Counter, T::Counter,
                                           T::Counter, T::Gauge,   T::Gauge,   T::Gauge};
        std::array<::prometheus::MetricFamily, count> f;
        for (std::size_t i = 0; i < count; ++i) {
            f[i].name = names[i];
            f[i].help = helps[i];
            f[i].type = types[i];
        }
        {
            std::lock_guard lk(state_->mu);
            for (const auto& s : state_->sources) {
                const map_etcd_metrics m = s.read();
                const auto labels = iterlock::detail::prom_family_builder::labels_for(s.name, s.labels);
                const auto add = [&](std::size_t i, double v) {
                    ::prometheus::ClientMetric c;
                    c.label = labels;
                    if (f[i].type == T::Counter)
                        c.counter.value = v;
                    else
                        c.gauge.value = v;
                    f[i].metric.push_back(std::move(c));
                };
                add(round_trips, static_cast<double>(m.client.round_trips));
                add(retries, static_cast<double>(m.client.retries));
                add(reconnects, static_cast<double>(m.client.failovers));
                add(may_have_applied, static_cast<double>(m.client.may_have_applied));
                add(watch_restarts, static_cast<double>(m.watch_restarts));
                add(relists, static_cast<double>(m.relists));
                add(resyncs, static_cast<double>(m.compaction_resyncs));
                add(events, static_cast<double>(m.events_applied));
                add(decode_errors, static_cast<double>(m.decode_errors));
                add(revision, static_cast<double>(m.applied_revision));
                add(lag_revisions, static_cast<double>(m.mirror_lag_revisions));
                add(lag_seconds, m.mirror_lag_seconds);
            }
        }
        for (auto& fam : f)
            if (!fam.metric.empty()) out.push_back(std::move(fam));
        return out;
    }

    // The exposition text of one Collect() (tests, logs).
    std::string text() const { return ::prometheus::TextSerializer().Serialize(Collect()); }

  private:
    iterlock::prometheus::registry mirrors_;
    std::shared_ptr<detail::etcd_metrics_state> state_;
};

}  // namespace iterlock::etcd
