// tests/support/cross_shard_writes.hpp: the two-writer round of the real-time-order tests (L1 and S1 across
// shards). Writer A inserts a[i] = 2i for i = 0, 1, ..., n - 1; writer B inserts b[i] = 2i + 1 only after A's
// insert of a[i] returned. Meanwhile the test's walk runs again and again; it checks that no view holds b[i]
// without a[i], each with value_of(k).
//
// Owns: iterlock::test::run_cross_shard_round: the two writer threads, their start latch, and the handshake
// that makes walks overlap the writes (A waits for a new walk after every 8 inserts; no wait involves time).
// Invariants: the last walk of a round starts after B finished; both writers are joined before the function
// returns, also when a walk fails fatally (the round then stops walking and releases A from the handshake).
#pragma once

#include <atomic>
#include <latch>
#include <thread>

#include <gtest/gtest.h>

#include "support/ordered_writes.hpp"

namespace iterlock::test {

// Runs one round on the empty map m. walk(started) takes one view of m, calls started() right after the
// view exists, and checks it. Returns the number of walks that returned without a fatal failure.
template <class Map, class Walk>
long run_cross_shard_round(Map& m, long n, Walk walk) {
    std::atomic<long> a_done{0};
    std::atomic<long> walks{0};
    std::atomic<bool> finished{false};
    std::atomic<bool> abandoned{false};
    std::latch start(3);
    std::thread a([&] {
        start.arrive_and_wait();
        for (long i = 0; i < n; ++i) {
            m.insert({2 * i, value_of(2 * i)});
            a_done.store(i + 1);
            if (i % 8 == 7) {
                const long seen = walks.load();
                while (walks.load() == seen && !abandoned.load()) std::this_thread::yield();
            }
        }
    });
    std::thread b([&] {
        start.arrive_and_wait();
        for (long i = 0; i < n; ++i) {
            while (a_done.load() <= i) std::this_thread::yield();
            m.insert({2 * i + 1, value_of(2 * i + 1)});
        }
        finished.store(true);
    });
    start.arrive_and_wait();
    long passes = 0;
    for (bool last = false; !last;) {
        last = finished.load();
        walk([&] { walks.fetch_add(1); });
        if (::testing::Test::HasFatalFailure()) {
            abandoned.store(true);
            break;
        }
        ++passes;
    }
    a.join();
    b.join();
    return passes;
}

}  // namespace iterlock::test
