// tests/support/feed_replica.hpp: what the change-feed tests (V2, V3, V5) do with a versioned_map's
// snapshots and feeds: list a snapshot into an ordered replica, apply an event to it with the checks of V2,
// write at random from one thread (puts, erases, compare-and-sets) as the feeds' writers do, and run rounds
// of feed churn while two writers write flat out.
//
// Owns: iterlock::test::feed_replica<V>, list_snapshot(), apply_change(), random_versioned_writes(),
//       writers_and_watchers(), rounds_under_writers().
// Invariants: apply_change() accepts an event only if it is newer than both what the replica holds for its
//       key and the last event applied for that key (per-key order, no event twice), and leaves the replica
//       untouched otherwise.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "iterlock/versioned_map.hpp"

namespace iterlock::test {

template <class V>
using feed_replica = std::map<int, iterlock::versioned<V>>;

// The snapshot's entries. A key listed twice is not added twice (the caller compares sizes if it cares).
template <class Snapshot>
auto list_snapshot(const Snapshot& s) {
    feed_replica<decltype(s.begin()->second.value)> r;
    for (const auto& [k, vv] : s) r.emplace(k, vv);
    return r;
}

// Applies event c to r; false (and r untouched) if c is not newer than what r holds for its key or than the
// last event applied for it (`last_rev`): out of order, or delivered twice.
template <class V>
bool apply_change(feed_replica<V>& r, const iterlock::change<int, V>& c,
                  std::map<int, std::uint64_t>& last_rev) {
    std::uint64_t& last = last_rev[c.key];
    auto it = r.find(c.key);
    const std::uint64_t before = std::max(last, it != r.end() ? it->second.revision : 0);
    if (c.revision <= before) return false;
    if (c.kind == iterlock::change_kind::put && !c.value.has_value()) return false;
    if (c.kind == iterlock::change_kind::erase && c.value.has_value()) return false;
    last = c.revision;
    if (c.kind == iterlock::change_kind::put)
        r[c.key] = {*c.value, c.revision};
    else
        r.erase(c.key);
    return true;
}

// `per` random writes to keys [0, keys) of m from writer number w: a quarter erases, a quarter
// compare-and-sets of the current revision, half puts of a value that names the writer.
template <class Map>
void random_versioned_writes(Map& m, int w, long per, int keys) {
    std::mt19937 rng(static_cast<unsigned>(w + 1));
    for (long i = 0; i < per; ++i) {
        const int k = static_cast<int>(rng() % static_cast<unsigned>(keys));
        switch (rng() % 4) {
            case 0:
                m.erase(k);
                break;
            case 1: {
                const auto cur = m.find_versioned(k);
                m.compare_and_set(k, cur ? cur->revision : 0, i);
                break;
            }
            default:
                m.insert_or_assign(k, i * 10 + w);
        }
    }
}

// `writers` threads each make `per` random_versioned_writes to keys [0, keys) of m, while `watchers` threads
// each sleep up to 2 ms (a per-watcher seed) and then call watch(w, writing), where writing() is true while
// any writer still writes. Returns once every thread is joined.
template <class Map, class Watch>
void writers_and_watchers(Map& m, int writers, int watchers, long per, int keys, Watch watch) {
    std::latch start(writers + watchers);
    std::atomic<int> writers_done{0};
    std::vector<std::thread> ts;
    for (int w = 0; w < writers; ++w)
        ts.emplace_back([&, w] {
            start.arrive_and_wait();
            random_versioned_writes(m, w, per, keys);
            writers_done.fetch_add(1);
        });
    for (int w = 0; w < watchers; ++w)
        ts.emplace_back([&, w] {
            std::mt19937 rng(static_cast<unsigned>(100 + w));
            start.arrive_and_wait();
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
            watch(w, [&] { return writers_done.load() < writers; });
        });
    for (auto& t : ts) t.join();
}

// Two writers put flat out on keys [0, 100) of m while round() runs `rounds` times on a third thread (the
// tests that end feeds mid-stream, V3); returns once all three threads are joined.
template <class Map, class Round>
void rounds_under_writers(Map& m, long rounds, Round round) {
    std::atomic<bool> stop{false};
    std::latch start(3);
    std::vector<std::thread> ts;
    for (int w = 0; w < 2; ++w)
        ts.emplace_back([&, w] {
            start.arrive_and_wait();
            for (long i = 0; !stop.load(); ++i) m.insert_or_assign(static_cast<int>((i + w) % 100), i);
        });
    ts.emplace_back([&] {
        start.arrive_and_wait();
        for (long i = 0; i < rounds; ++i) round();
        stop.store(true);
    });
    for (auto& t : ts) t.join();
}

}  // namespace iterlock::test
