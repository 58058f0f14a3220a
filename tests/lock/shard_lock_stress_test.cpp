// tests/lock/shard_lock_stress_test.cpp: randomized many-thread tests of shard_lock: mutual exclusion checked
// inside every critical section, no lost wake-ups (every thread finishes; a watchdog turns a hang into a
// failure with the lock's state), and sequence reads that never validate a torn pair.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/detail/lock/shard_lock.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/priority.hpp"
#include "support/polling.hpp"
#include "support/scale.hpp"
#include "support/shard_lock_idle.hpp"
#include "support/watchdog.hpp"

namespace {

using iterlock::lock_error;
using iterlock::priority;
using iterlock::detail::shard_lock;
using iterlock::test::scaled;

class ShardLockStress : public iterlock::test::watched {};

// Who is inside, counted by the threads themselves and checked against the rules on every entry.
struct occupancy {
    std::atomic<int> readers{0};
    std::atomic<int> writers{0};
    std::atomic<int> iterations{0};
    std::atomic<int> upgraded{0};
    std::atomic<long> violations{0};

    void expect(bool ok, const char* what) {
        if (!ok && violations.fetch_add(1) < 5) std::fprintf(stderr, "violation: %s\n", what);
    }
};

// Data the lock protects, accessed with plain loads and stores so ThreadSanitizer sees any broken exclusion.
struct protected_data {
    std::uint64_t a = 0;
    std::uint64_t b = 0;  // always 3 * a outside a write
};

// Spends a little time inside a critical section so that holds overlap.
void dwell(std::mt19937& rng, int max_yields) {
    const int n = static_cast<int>(rng() % static_cast<unsigned>(max_yields + 1));
    for (int i = 0; i < n; ++i) std::this_thread::yield();
}

// Runs `threads` workers doing `ops` random operations each, then checks that nobody is left inside and the
// lock is idle. A watchdog fails the test (printing the lock state) if the workers stop finishing.
void run_random_mix(int threads, int ops, int max_dwell, bool use_timeouts) {
    shard_lock l;
    occupancy occ;
    protected_data data;
    std::atomic<long> upgrades_done{0};
    std::atomic<long> upgrades_refused{0};
    std::atomic<long> timeouts{0};
    std::atomic<long> slow_acquisitions{0};  // acquisitions that left the fast path (the wait hook said > 0)
    std::atomic<int> finished{0};
    std::mutex done_mu;
    std::condition_variable done_cv;
    std::latch start(threads);

    auto worker = [&](unsigned seed) {
        std::mt19937 rng(seed);
        start.arrive_and_wait();
        for (int op = 0; op < ops; ++op) {
            const unsigned dice = rng() % 100;
            const priority p = rng() % 4 == 0 ? priority::realtime : priority::best_effort;
            iterlock::priority_scope scope(p);
            std::chrono::nanoseconds waited{0};
            if (dice < 55) {  // reader
                l.lock_shared(&waited);
                occ.readers.fetch_add(1);
                occ.expect(occ.writers.load() == 0 && occ.upgraded.load() == 0,
                           "reader inside with a writer");
                occ.expect(data.b == 3 * data.a, "reader saw a torn write");
                dwell(rng, max_dwell / 4);
                occ.readers.fetch_sub(1);
                l.unlock_shared();
            } else if (dice < 60) {  // sequence read (only validated copies count)
                const auto token = l.read_begin();
                occ.expect(occ.writers.load() == 0 || !l.read_validate(token),
                           "sequence read validated mid-write");
            } else if (dice < 80) {  // writer, sometimes timed
                bool held = true;
                if (use_timeouts && rng() % 4 == 0) {
                    held = l.try_lock_for(std::chrono::microseconds(rng() % 2000), &waited);
                    if (!held) timeouts.fetch_add(1);
                } else {
                    l.lock(&waited);
                }
                if (held) {
                    occ.expect(occ.writers.fetch_add(1) == 0, "two writers inside");
                    occ.expect(occ.readers.load() == 0, "writer inside with readers");
                    occ.expect(occ.iterations.load() == 0, "writer inside with an iteration");
                    data.a += 1;
                    dwell(rng, 1);
                    data.b = 3 * data.a;
                    occ.writers.fetch_sub(1);
                    l.unlock();
                }
            } else {  // iteration, sometimes timed, sometimes upgraded
                bool held = true;
                if (use_timeouts && rng() % 3 == 0) {
                    held = l.try_lock_iteration_for(std::chrono::microseconds(rng() % 3000), p, &waited);
                    if (!held) timeouts.fetch_add(1);
                } else {
                    l.lock_iteration(p, &waited);
                }
                if (!held) continue;
                occ.iterations.fetch_add(1);
                occ.expect(occ.writers.load() == 0, "iteration inside with a writer");
                occ.expect(data.b == 3 * data.a, "iteration saw a torn write");
                dwell(rng, max_dwell);
                if (rng() % 3 == 0) {
                    try {
                        l.upgrade_iteration_to_write();
                        occ.upgraded.fetch_add(1);
                        occ.expect(occ.readers.load() == 0, "upgraded with readers inside");
                        occ.expect(occ.iterations.load() == 1, "upgraded with another iteration inside");
                        occ.expect(occ.writers.load() == 0, "upgraded with a writer inside");
                        data.a += 1;
                        data.b = 3 * data.a;
                        occ.upgraded.fetch_sub(1);
                        l.downgrade_write_to_iteration();
                        upgrades_done.fetch_add(1);
                    } catch (const lock_error&) {
                        upgrades_refused.fetch_add(1);  // another walk was live: the documented refusal
                    }
                }
                occ.iterations.fetch_sub(1);
                l.unlock_iteration();
            }
            if (waited.count() > 0) slow_acquisitions.fetch_add(1);
            if (op % 256 == 0) l.check_invariants();
        }
        {
            std::lock_guard<std::mutex> lk(done_mu);
            finished.fetch_add(1);
        }
        done_cv.notify_all();
    };

    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker, 1234U + static_cast<unsigned>(t));
    {
        std::unique_lock<std::mutex> lk(done_mu);
        const bool all =
            done_cv.wait_for(lk, std::chrono::seconds(90), [&] { return finished.load() == threads; });
        if (!all) {  // a lost wake-up: report and stop (the stuck threads cannot be joined)
            const auto st = l.state();
            std::fprintf(stderr,
                         "watchdog: %d of %d workers finished; readers=%u iterations=%u W=%d Q=%d waiting: "
                         "w=%u/%u i=%u/%u r=%u drain=%d\n",
                         finished.load(), threads, st.readers, st.iterations, st.write_held, st.queued,
                         st.waiting_writers[0], st.waiting_writers[1], st.waiting_iterations[0],
                         st.waiting_iterations[1], st.waiting_readers, st.upgrade_draining);
            std::fflush(stderr);
            std::abort();
        }
    }
    for (auto& t : pool) t.join();

    EXPECT_EQ(occ.violations.load(), 0);
    EXPECT_EQ(data.b, 3 * data.a);
    iterlock::test::expect_idle(l);
    std::printf(
        "ops=%d x %d threads: %ld slow-path acquisitions, upgrades %ld done / %ld refused, %ld timeouts, "
        "%llu writes\n",
        ops, threads, slow_acquisitions.load(), upgrades_done.load(), upgrades_refused.load(),
        timeouts.load(), static_cast<unsigned long long>(data.a));
}

TEST_F(ShardLockStress, R2_R8_MutualExclusionWithShortHolds) {
    run_random_mix(4, scaled(20000, 10000), 2, false);
}

TEST_F(ShardLockStress, R4_R6_NoLostWakeupsManyThreadsWithTimeouts) {
    // More threads than cores and longer holds: waiters must park and be woken, and timeouts race grants.
    run_random_mix(12, scaled(6000, 3000), 16, true);
}

TEST_F(ShardLockStress, R1_R2_R8_WritersAndReadersOnly) {
    // The plain reader/writer protocol, hammered: most contention on the reader fast path's undo.
    shard_lock l;
    std::uint64_t value = 0;
    std::atomic<long> bad{0};
    constexpr int threads = 6;
    const int ops = scaled(300000, 150000);
    std::latch start(threads);
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            start.arrive_and_wait();
            std::uint64_t last = 0;
            for (int i = 0; i < ops; ++i) {
                if ((i + t) % 5 == 0) {
                    l.lock();
                    ++value;
                    l.unlock();
                } else {
                    l.lock_shared();
                    if (value < last) bad.fetch_add(1);  // writes are increments: never seen to go back
                    last = value;
                    l.unlock_shared();
                }
            }
        });
    for (auto& t : pool) t.join();
    EXPECT_EQ(bad.load(), 0);
    std::uint64_t writes = 0;
    for (int t = 0; t < threads; ++t)
        for (int i = 0; i < ops; ++i) writes += (i + t) % 5 == 0 ? 1 : 0;
    EXPECT_EQ(value, writes);
    EXPECT_FALSE(l.state().queued);
}

TEST_F(ShardLockStress, R9_SequenceReadsNeverValidateATornPair) {
    shard_lock l;
    std::atomic<std::int64_t> x{0};
    std::atomic<std::int64_t> y{0};  // always -x outside a write
    std::atomic<bool> writer_done{false};
    std::atomic<long> torn{0};
    std::atomic<long> validated{0};
    std::atomic<long> retried{0};
    const int writes = scaled(300000, 150000);
    constexpr int readers = 3;
    std::latch start(readers + 1);
    std::vector<std::thread> pool;
    pool.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 1; i <= writes; ++i) {
            l.lock();
            x.store(i, std::memory_order_relaxed);
            y.store(-i, std::memory_order_relaxed);
            l.unlock();
        }
        writer_done = true;
    });
    for (int r = 0; r < readers; ++r)
        pool.emplace_back([&] {
            start.arrive_and_wait();
            // Read while the writer runs, then a few reads after it stopped (those must validate).
            for (int after = 0; after < 100;) {
                if (writer_done.load()) ++after;
                const auto token = l.read_begin();
                const std::int64_t a = x.load(std::memory_order_relaxed);
                const std::int64_t b = y.load(std::memory_order_relaxed);
                if (l.read_validate(token)) {
                    validated.fetch_add(1);
                    if (a != -b) torn.fetch_add(1);
                } else {
                    retried.fetch_add(1);
                }
            }
        });
    for (auto& t : pool) t.join();
    EXPECT_EQ(torn.load(), 0);
    EXPECT_GE(validated.load(), readers * 100);
    std::printf("%d writes: %ld validated reads, %ld failed validation\n", writes, validated.load(),
                retried.load());
}

TEST_F(ShardLockStress, WaitHookReportsQueuedTime) {
    // Readers parked behind a writer report a positive wait; the hook never reports a negative one.
    shard_lock l;
    l.lock();
    constexpr int readers = 4;
    std::vector<std::chrono::nanoseconds> waited(readers, std::chrono::nanoseconds{-1});
    std::vector<std::thread> pool;
    pool.reserve(readers);
    for (int r = 0; r < readers; ++r)
        pool.emplace_back([&, r] {
            l.lock_shared(&waited[static_cast<std::size_t>(r)]);
            l.unlock_shared();
        });
    ASSERT_TRUE(iterlock::test::eventually([&] { return l.state().waiting_readers == readers; }));
    l.unlock();
    for (auto& t : pool) t.join();
    for (const auto& w : waited) EXPECT_GT(w.count(), 0);
}

}  // namespace
