// tools/demo/feed_exporter.hpp: iterlock-demo's fifth contender, iterlock_feed — the session store as an
// iterlock::versioned_map, with an exporter thread that keeps a replica of it through a change feed while
// the writers run (issue 16: list-then-watch, V2), and a check that the replica equals the map at the end.
//
// Owns: iterlock_demo::iterlock_feed_store.
// Invariants: the replica is the exporter's alone while it runs (no lock); it starts from
//       versioned_map::snapshot_and_watch's snapshot and applies each event in the order its feed delivers
//       it (one key's writes arrive in order, V2), so once every write has returned and the feed is drained
//       it equals the map. A feed cut off for lagging (V3) is replaced by listing again (a new
//       snapshot_and_watch; counted in resyncs()); writers never wait for the exporter.
// The walk (the aggregator's) reads a snapshot of the map, as iterlock_snapshot_store does.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "contenders.hpp"
#include "iterlock/versioned_map.hpp"

namespace iterlock_demo {

class iterlock_feed_store {
  public:
    using map_type = iterlock::versioned_map<key_type, session>;
    static constexpr std::string_view name() { return "iterlock_feed"; }
    ~iterlock_feed_store() { stop_export(); }

    void reserve(std::size_t) {}  // versioned_map has no size hint
    void prefill(key_type k, session s) { m_.insert_or_assign(k, s); }
    void put(key_type k, session s) { m_.insert_or_assign(k, s); }
    template <class F>
    void walk(F&& f) const {
        auto snap = m_.snapshot();
        for (const auto& [k, v] : snap) f(k, v.value.stamp, v.value.score);
    }
    std::size_t size() const { return m_.size(); }

    // Starts the exporter (list, then watch). Call once, before or while the writers run.
    void start_export() {
        stop_.store(false);
        exporter_ = std::thread([this] { export_loop(); });
    }
    // Call after every writer has returned: the exporter drains its feed (every write's event was handed
    // over inside the write, V2/V3) and stops. Returns how many keys of the replica differ from the map
    // (missing, extra, or another value): 0 is the check passing.
    std::uint64_t finish_export() {
        stop_export();
        std::uint64_t differ = 0;
        std::size_t seen = 0;
        for (const auto& [k, v] : m_.snapshot()) {
            ++seen;
            const auto it = replica_.find(k);
            if (it == replica_.end() || it->second.stamp != v.value.stamp ||
                it->second.score != v.value.score)
                ++differ;
        }
        if (replica_.size() > seen) differ += replica_.size() - seen;
        return differ;
    }
    // Events the exporter applied, and how often it had to list again (a lagging feed, V3).
    std::uint64_t events_applied() const { return applied_; }
    std::uint64_t resyncs() const { return resyncs_; }

  private:
    void stop_export() {
        if (!exporter_.joinable()) return;
        stop_.store(true);
        exporter_.join();
    }
    void export_loop() {
        for (bool first = true;; first = false) {
            auto listing = m_.snapshot_and_watch(feed_capacity);
            if (!first) ++resyncs_;
            replica_.clear();
            for (const auto& [k, v] : listing.snapshot) replica_.insert_or_assign(k, v.value);
            // The snapshot is copied: end it now (a snapshot held for the whole run keeps every pre-image).
            { [[maybe_unused]] auto done = std::move(listing.snapshot); }
            const auto events = listing.feed.events();
            for (;;) {
                // Stopping: the writers are done, so what is in the channel is the rest; drain it.
                const bool stopping = stop_.load();
                auto r = stopping ? events.try_recv() : events.recv_for(std::chrono::milliseconds(20));
                if (r) {
                    apply(*r);
                    continue;
                }
                if (r.closed()) break;  // cut off (lagging): list again
                if (stopping) return;   // drained
            }
        }
    }
    void apply(const typename map_type::feed_type::change_type& c) {
        ++applied_;
        if (c.value) {
            replica_.insert_or_assign(c.key, *c.value);
        } else {
            replica_.erase(c.key);
        }
    }

    static constexpr std::size_t feed_capacity = std::size_t{1} << 16;
    map_type m_;
    std::thread exporter_;
    std::atomic<bool> stop_{false};
    std::unordered_map<key_type, session> replica_;  // the exporter's (read by finish_export after join)
    std::uint64_t applied_ = 0;
    std::uint64_t resyncs_ = 0;
};

}  // namespace iterlock_demo
