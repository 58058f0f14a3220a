// iterlock/prometheus.hpp: exports concurrent_map metrics to Prometheus through prometheus-cpp's pull
// exposer.
//
// Owns: iterlock::prometheus::registry, iterlock::prometheus::exposure, iterlock::prometheus::expose(),
//       iterlock::prometheus::endpoint.
// Invariants: rules P1-P6 below: a scrape takes no lock of the map and nothing is recorded between
//       scrapes; one family per metric name; once an exposure is gone, its map is no longer read.
//
// Link the CMake target iterlock::prometheus (it brings prometheus-cpp::pull and prometheus-cpp::core;
// Debian: prometheus-cpp-dev). Outside CMake: `pkg-config --cflags --libs iterlock-prometheus` (installed
// with iterlock).
//
//     iterlock::prometheus::endpoint ep("0.0.0.0:9464");     // serves http://host:9464/metrics
//     auto handle = ep.expose(sessions, "sessions");          // or expose(ep.maps(), sessions, "sessions")
//     ...                                                     // handle's destructor unregisters the map
//
// What it exports, per map, labelled {map="<name>", <your constant labels>}:
//   iterlock_locked_iterations_total{state}     counter  locked-policy maps: guards finished by outcome
//   iterlock_snapshot_iterations_total{state}   counter  snapshot-policy maps: snapshots finished by outcome
//                                                        state = success | timeout | error
//   iterlock_iterations_started_total           counter  guards asked for / snapshots taken
//   iterlock_lock_wait_seconds{role,priority}   histogram role = writer | iterator,
//                                                        priority = best_effort | realtime
//   iterlock_iteration_hold_seconds{priority}   histogram guard hold times (iteration_lock, guarded only)
//   iterlock_snapshots_active                   gauge
//   iterlock_snapshot_preserved_bytes           gauge
//   iterlock_map_entries                        gauge
//   iterlock_map_growths_total                  counter
//   iterlock_map_evacuated_buckets_total        counter
//   iterlock_misuse_detected_total              counter
//   iterlock_map_revision                       gauge    successful writes so far
// A map whose Options compile metrics out (map_options<P, false>) exports only the gauges and the growth and
// evacuation counters; the iteration, lock-wait and misuse series are absent rather than stuck at zero.
//
// Guarantees:
//   P1  Free between scrapes: nothing is recorded or copied for Prometheus; each scrape calls map.metrics()
//       (O(shards) relaxed loads, no lock of the map) once per exposed map.
//   P2  One family per metric name however many maps are exposed, so the exposition is valid for any number
//       of maps; the names follow Prometheus' rules (checked by `promtool check metrics` in the tests).
//   P3  exposure is RAII: when it is destroyed or reset(), the map is no longer read, and a scrape that is
//       reading it right then has finished. So `map` may be destroyed right after its exposure.
//   P4  A registry may go away before its exposures: they then unregister nothing and stay harmless.
//   P5  expose() throws std::invalid_argument for a name (with the same constant labels) already exposed in
//       the registry, or for a constant label whose name is invalid or reserved (map, state, role, priority,
//       le, anything starting with "__").
//   P6  A concurrent_map may also go away before its exposure: its destructor waits for a scrape that is
//       reading it, and from then on it is no longer exported (its series vanish, its name may be exposed
//       again, active() turns false); the exposure's later reset() is harmless. This costs the map nothing
//       on its other calls (concurrent_map::lifetime_token()).
// Naming: inside namespace iterlock (or after `using namespace iterlock`), `prometheus::` means this
// namespace; spell prometheus-cpp's `::prometheus::`. Thread safety: every call may come from any thread.
// Lifetimes: a concurrent_map may die before or after its exposure (P3, P6). Another metrics_source
// without lifetime_token() must outlive its exposure (declare the exposure after it). A scrape takes no
// lock of the map (concurrent_map::metrics() reads counters), so an exposure may be reset anywhere.
#pragma once

#include <prometheus/check_names.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/labels.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/detail/metrics/prom_families.hpp"
#include "iterlock/detail/metrics/source_registration.hpp"
#include "iterlock/detail/util/lifetime.hpp"
#include "iterlock/metrics.hpp"

namespace iterlock::prometheus {

namespace detail {
template <class Options>
constexpr bool options_record_metrics() {
    if constexpr (requires { Options::metrics; }) {
        return static_cast<bool>(Options::metrics);
    } else {
        return true;
    }
}
}  // namespace detail

// Whether a map type records the counters and histograms of metrics.hpp (false for map_options<P, false>).
template <class Map>
struct records_metrics : std::true_type {};
template <class K, class V, class H, class E, class A, class Options>
struct records_metrics<concurrent_map<K, V, H, E, A, Options>>
    : std::bool_constant<detail::options_record_metrics<Options>()> {};

// Anything with `map_metrics metrics() const` (iterlock::concurrent_map).
template <class Map>
concept metrics_source = requires(const Map& m) {
    { m.metrics() } -> std::convertible_to<map_metrics>;
};

namespace detail {
struct registry_state {
    struct source {
        std::uint64_t id;
        std::string name;
        iterlock::detail::prom_labels labels;  // the caller's constant labels (without `map`)
        std::function<map_metrics()> read;
        bool recorded;
        std::shared_ptr<iterlock::detail::lifetime> life;  // null: the source must outlive its exposure
        // Whether the map still exists (P6).
        bool alive() const { return life == nullptr || life->alive(); }
        // Calls out(read()) if the map still exists, the map's destruction held off meanwhile (P6).
        template <class Out>
        void read_into(Out&& out) const {
            if (life == nullptr) {
                out(read());
            } else {
                life->read([&] { out(read()); });
            }
        }
    };
    std::mutex mu;  // guards `sources`; held while a scrape reads them (P3)
    std::vector<source> sources;
    std::uint64_t next_id = 1;
};
}  // namespace detail

class registry;

// The RAII handle expose() returns: the map is exported while it lives (P3). Movable, not copyable.
class exposure {
  public:
    // Movable (a move assignment stops exporting this handle's map, then takes the other's), not copyable;
    // the destructor stops exporting (its registration ends before the map's lifetime token is let go).
    exposure() noexcept = default;

    // Stops exporting the map. Blocks while a scrape is reading it (a few microseconds per shard); after it
    // returns the map is never read again through this handle. No effect on an empty handle. O(maps).
    void reset() noexcept {
        registration_.reset();
        life_.reset();
    }
    // Whether this handle still exports a map (false once reset, moved from, its registry is gone, or the
    // map is gone: P6).
    bool active() const noexcept { return registration_.active() && (!life_ || life_->alive()); }

  private:
    friend class registry;
    exposure(std::weak_ptr<detail::registry_state> s, std::shared_ptr<iterlock::detail::lifetime> life,
             std::uint64_t id) noexcept
        : life_(std::move(life)), registration_(std::move(s), id) {}

    std::shared_ptr<iterlock::detail::lifetime> life_;  // the map's, when it has one (P6)
    iterlock::detail::source_registration<detail::registry_state> registration_;  // destroyed first
};

// A ::prometheus::Collectable holding the exposed maps. Register it with a ::prometheus::Exposer
// (`exposer.RegisterCollectable(reg)`, which needs it in a shared_ptr), or use
// iterlock::prometheus::endpoint, which does that for you.
class registry final : public ::prometheus::Collectable {
  public:
    registry() : state_(std::make_shared<detail::registry_state>()) {}
    registry(const registry&) = delete;
    registry& operator=(const registry&) = delete;

    // Exports `map` under {map="name", labels...} until the returned exposure goes away (P3, P5). The map's
    // metrics are read only when a scrape comes (P1). Throws std::invalid_argument (P5).
    template <metrics_source Map>
    [[nodiscard]] exposure add(const Map& map, std::string_view name,
                               const ::prometheus::Labels& labels = {}) {
        iterlock::detail::prom_labels extra;
        for (const auto& [k, v] : labels) {
            if (!::prometheus::CheckLabelName(k) || k == "map" || k == "state" || k == "role" ||
                k == "priority" || k == "le") {
                throw std::invalid_argument("iterlock::prometheus: label name '" + k +
                                            "' is invalid or reserved by iterlock's metrics");
            }
            extra.push_back({k, v});
        }
        const Map* m = &map;
        std::shared_ptr<iterlock::detail::lifetime> life;
        if constexpr (requires { map.lifetime_token(); }) life = map.lifetime_token();
        std::lock_guard lk(state_->mu);
        std::erase_if(state_->sources, [](const detail::registry_state::source& s) { return !s.alive(); });
        for (const auto& s : state_->sources) {
            if (s.name == name && s.labels == extra) {
                throw std::invalid_argument(
                    "iterlock::prometheus: a map named '" + std::string(name) +
                    "' is already exposed in this registry; give each map its own name");
            }
        }
        const std::uint64_t id = state_->next_id++;
        state_->sources.push_back({id, std::string(name), std::move(extra),
                                   [m] { return map_metrics(m->metrics()); }, records_metrics<Map>::value,
                                   life});
        return exposure(state_, std::move(life), id);
    }

    // Reads every exposed map once (P1) and returns one family per metric name (P2). Called by the exposer on
    // each scrape; any thread. O(maps * shards).
    std::vector<::prometheus::MetricFamily> Collect() const override {
        iterlock::detail::prom_family_builder b;
        std::lock_guard lk(state_->mu);
        for (const auto& s : state_->sources)
            s.read_into([&](const map_metrics& mm) { b.add(s.name, s.labels, mm, s.recorded); });
        return b.take();
    }

    // The exposition text of one Collect(), as a scrape would get it (tests, logs, a push to a file).
    std::string text() const { return ::prometheus::TextSerializer().Serialize(Collect()); }

    // Names of the maps exposed now (still alive, P6), in the order they were added.
    std::vector<std::string> names() const {
        std::lock_guard lk(state_->mu);
        std::vector<std::string> out;
        for (const auto& s : state_->sources)
            if (s.alive()) out.push_back(s.name);
        return out;
    }

  private:
    std::shared_ptr<detail::registry_state> state_;
};

// expose(registry, map, "name"): the free-function spelling of registry.add().
template <metrics_source Map>
[[nodiscard]] exposure expose(registry& r, const Map& map, std::string_view name,
                              const ::prometheus::Labels& labels = {}) {
    return r.add(map, name, labels);
}

// An HTTP endpoint serving /metrics (prometheus-cpp's Exposer, civetweb inside) with a registry of maps
// already registered. Other collectables (a ::prometheus::Registry of your own counters) can be added.
class endpoint {
  public:
    // bind_address: "host:port", e.g. "127.0.0.1:0" (port 0: the system picks a free one; see port()).
    // Starts serving at once. Throws (a std::runtime_error from civetweb) if the address cannot be bound.
    explicit endpoint(const std::string& bind_address = "127.0.0.1:0", std::size_t threads = 2)
        : maps_(std::make_shared<registry>()),
          exposer_(std::make_unique<::prometheus::Exposer>(bind_address, threads)),
          host_(bind_address.substr(0, bind_address.rfind(':'))) {
        exposer_->RegisterCollectable(maps_);
    }
    endpoint(const endpoint&) = delete;
    endpoint& operator=(const endpoint&) = delete;
    // Stops serving (waits for a scrape in progress) before anything it serves goes away. Takes up to about
    // 2 s: civetweb's shutdown waits for its worker threads' poll timeouts.
    ~endpoint() { exposer_.reset(); }

    // The port actually bound (the chosen one when the address said port 0).
    std::uint16_t port() const {
        const std::vector<int> ports = exposer_->GetListeningPorts();
        return ports.empty() ? 0 : static_cast<std::uint16_t>(ports.front());
    }
    // "http://HOST:PORT/metrics" (HOST as given to the constructor; 0.0.0.0 is given as 127.0.0.1).
    std::string url() const {
        const std::string h = host_.empty() || host_ == "0.0.0.0" ? "127.0.0.1" : host_;
        return "http://" + h + ":" + std::to_string(port()) + "/metrics";
    }

    registry& maps() noexcept { return *maps_; }
    template <metrics_source Map>
    [[nodiscard]] exposure expose(const Map& map, std::string_view name,
                                  const ::prometheus::Labels& labels = {}) {
        return maps_->add(map, name, labels);
    }
    // Serves `c` too (kept alive by the endpoint). Its names must not collide with iterlock's.
    void add(std::shared_ptr<::prometheus::Collectable> c) {
        exposer_->RegisterCollectable(c);
        others_.push_back(std::move(c));
    }
    ::prometheus::Exposer& exposer() noexcept { return *exposer_; }

  private:
    std::shared_ptr<registry> maps_;
    std::vector<std::shared_ptr<::prometheus::Collectable>> others_;
    std::unique_ptr<::prometheus::Exposer> exposer_;
    std::string host_;
};

}  // namespace iterlock::prometheus
