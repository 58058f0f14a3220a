// tests/concurrent/concurrent_snapshot_budget_test.cpp: rule S7 of iterlock/concurrent_map.hpp, the
// snapshot memory budget: the oldest snapshot expires first, its next read throws snapshot_expired, the
// memory returns within the budget, writers never wait for a snapshot holder, an expired snapshot is
// destroyed (and moved) safely, and expiry under concurrent writers and walkers keeps S2 for every walk
// that completes.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/versioned_map.hpp"
#include "support/concurrent_maps.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using iterlock::test::scaled;
using iterlock::test::snap_map;
using lmap = snap_map<long, long>;

// S3's reserve per shard at most (two 16 KiB blocks, detail/concurrent/snapshot_store.hpp): part of S7's
// overshoot bound.
constexpr std::size_t reserve_bytes = std::size_t{32} << 10;

void fill(lmap& m, long n, long tag) {
    for (long k = 0; k < n; ++k) m.insert_or_assign(k, k * 10 + tag);
}

// Every read of an expired snapshot throws snapshot_expired.
void expect_every_read_throws(const lmap::snapshot_view& s) {
    EXPECT_TRUE(s.expired());
    EXPECT_THROW((void)s.size(), iterlock::snapshot_expired);
    EXPECT_THROW((void)s.revision(), iterlock::snapshot_expired);
    EXPECT_THROW((void)s.find(1), iterlock::snapshot_expired);
    EXPECT_THROW((void)s.contains(1), iterlock::snapshot_expired);
    EXPECT_THROW((void)s.begin(), iterlock::snapshot_expired);
}

TEST(SnapshotBudget, S7_NoBudgetByDefaultNothingExpires) {
    lmap m(4);
    EXPECT_EQ(m.snapshot_budget(), 0u);
    fill(m, 5000, 0);
    auto s = m.snapshot();
    fill(m, 5000, 1);
    EXPECT_GT(m.preserved_bytes(), 0u);
    EXPECT_FALSE(s.expired());
    EXPECT_EQ(s.size(), 5000u);
    EXPECT_EQ(m.metrics().snapshots_expired, 0u);
}

TEST(SnapshotBudget, S7_OldestExpiresFirstAndItsNextStepThrows) {
    lmap m(4);
    const long n = 20000;
    fill(m, n, 0);
    auto s1 = m.snapshot();
    auto it = s1.begin();  // a walk in progress when s1 expires
    fill(m, n, 1);         // copies for s1 alone
    const std::size_t one = m.preserved_bytes();
    ASSERT_GT(one, 4 * reserve_bytes) << "the test needs copies larger than the reserves";
    auto s2 = m.snapshot();
    const std::size_t budget = one + one / 2;
    m.set_snapshot_budget(budget);
    EXPECT_EQ(m.snapshot_budget(), budget);
    fill(m, n, 2);  // as much again for s2: past the budget, and s1 is the oldest

    EXPECT_TRUE(s1.expired());
    EXPECT_FALSE(s2.expired()) << "expiring the oldest alone brought the bytes back within the budget";
    // The walk in progress throws at its next batch (what it had copied is still yielded).
    std::size_t yielded = 0;
    EXPECT_THROW(
        {
            for (; it != s1.end(); ++it) ++yielded;
        },
        iterlock::snapshot_expired);
    EXPECT_LT(yielded, static_cast<std::size_t>(n) / 4) << "the expired walk went on reading the map";
    expect_every_read_throws(s1);
    EXPECT_EQ(m.metrics().snapshots_expired, 1u);
    EXPECT_EQ(m.snapshots_alive(), 1u);
    EXPECT_LE(m.preserved_bytes(), budget);

    // The survivor still sees its instant: every key with tag 1 (S1, S2).
    std::size_t walked = 0;
    for (const auto& [k, v] : s2) {
        EXPECT_EQ(v, k * 10 + 1);
        ++walked;
    }
    EXPECT_EQ(walked, static_cast<std::size_t>(n));
    EXPECT_EQ(s2.size(), static_cast<std::size_t>(n));
    EXPECT_EQ(*s2.find(7), 71);
}

TEST(SnapshotBudget, S7_MemoryReturnsWithinTheBudget) {
    lmap m(4);
    const long n = 20000;
    fill(m, n, 0);
    const std::size_t budget = 64 << 10;
    m.set_snapshot_budget(budget);
    std::vector<lmap::snapshot_view> held;
    for (int round = 1; round <= 4; ++round) {
        held.push_back(m.snapshot());
        fill(m, n, round);
        // Checked every budget / (2 * shards) bytes per shard: within 1.5 budgets plus the reserves.
        EXPECT_LE(m.preserved_bytes(), budget + budget / 2 + m.shard_count() * reserve_bytes)
            << "round " << round;
    }
    for (const auto& s : held) EXPECT_TRUE(s.expired());
    EXPECT_EQ(m.snapshots_alive(), 0u);
    EXPECT_EQ(m.preserved_bytes(), 0u) << "no snapshot left: everything returns (S5)";
    EXPECT_EQ(m.metrics().snapshots_expired, 4u);
    held.clear();  // destroying expired snapshots releases nothing twice
    EXPECT_EQ(m.metrics().iterations_success, 4u);

    // Lifting the budget restores S5 alone.
    m.set_snapshot_budget(0);
    auto s = m.snapshot();
    fill(m, n, 9);
    EXPECT_FALSE(s.expired());
    EXPECT_EQ(*s.find(3), 34);
}

TEST(SnapshotBudget, S7_ExpiredSnapshotIsDestroyedAndMovedSafely) {
    lmap m(2);
    fill(m, 5000, 0);
    m.set_snapshot_budget(1);
    auto a = m.snapshot();
    auto b = m.snapshot();
    fill(m, 5000, 1);
    EXPECT_TRUE(a.expired());
    EXPECT_TRUE(b.expired());
    lmap::snapshot_view moved(std::move(a));
    expect_every_read_throws(moved);
    auto fresh = m.snapshot();
    EXPECT_FALSE(fresh.expired());
    fresh = std::move(b);  // releases fresh (live), takes the expired b
    EXPECT_EQ(m.snapshots_alive(), 0u);
    expect_every_read_throws(fresh);
    // The map's destructor (end of scope) would abort if a registration were left over or released twice.
}

// Writers never wait for a snapshot holder: the holder is parked until every writer has finished, so a
// writer that waited for it would never finish. The expiry happens on the writers' side.
TEST(SnapshotBudget, S7_WritersNeverWaitForTheExpiredSnapshotsHolder) {
    lmap m(8);
    const long n = scaled(20000, 4000);
    fill(m, n, 0);
    m.set_snapshot_budget(32 << 10);
    std::latch taken(1);
    std::latch writers_done(1);
    std::atomic<bool> saw_expired{false};
    std::thread holder([&] {
        auto s = m.snapshot();
        auto it = s.begin();
        taken.count_down();
        writers_done.wait();
        try {
            for (; it != s.end(); ++it) {
            }
        } catch (const iterlock::snapshot_expired&) {
            saw_expired = true;
        }
    });
    taken.wait();
    std::vector<std::thread> writers;
    for (int w = 0; w < 2; ++w)
        writers.emplace_back([&, w] {
            for (long k = w; k < n; k += 2) m.insert_or_assign(k, -k);
        });
    for (auto& t : writers) t.join();
    EXPECT_EQ(m.size(), static_cast<std::size_t>(n));
    EXPECT_EQ(m.snapshots_alive(), 0u) << "the held snapshot was expired while its holder slept";
    writers_done.count_down();
    holder.join();
    EXPECT_TRUE(saw_expired);
    EXPECT_EQ(m.preserved_bytes(), 0u);
}

// Writers and walkers together (TSan): every walk that completes is one instant (no duplicates, size()
// equals the walk), every expired one fails with snapshot_expired and nothing else, and expiries happen.
TEST(SnapshotBudget, S7_ConcurrentWritersAndWalkersUnderABudget) {
    lmap m(8);
    const long n = 4000;
    fill(m, n, 0);
    m.set_snapshot_budget(8 << 10);
    const int rounds = static_cast<int>(scaled(200, 30));
    std::atomic<int> walkers_left{2};
    std::atomic<long> completed{0};
    std::atomic<long> expired{0};
    std::latch start(4);
    std::vector<std::thread> threads;
    for (int w = 0; w < 2; ++w)
        threads.emplace_back([&, w] {
            start.arrive_and_wait();
            for (long i = 0; walkers_left.load() > 0; ++i) {
                const long k = (i * 7 + w) % n;
                if (i % 5 == 0) {
                    m.erase(k);
                } else {
                    m.insert_or_assign(k, i);
                }
            }
        });
    for (int r = 0; r < 2; ++r)
        threads.emplace_back([&] {
            start.arrive_and_wait();
            for (int i = 0; i < rounds; ++i) {
                try {
                    auto s = m.snapshot();
                    std::set<long> keys;
                    std::size_t walked = 0;
                    for (const auto& [k, v] : s) {
                        EXPECT_TRUE(keys.insert(k).second) << "duplicate key " << k;
                        ++walked;
                    }
                    EXPECT_EQ(s.size(), walked);
                    ++completed;
                } catch (const iterlock::snapshot_expired&) {
                    ++expired;
                }
            }
            --walkers_left;
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(completed + expired, 2L * rounds);
    EXPECT_GT(m.metrics().snapshots_expired, 0u);
    EXPECT_EQ(m.snapshots_alive(), 0u);
    EXPECT_EQ(m.preserved_bytes(), 0u);
}

// versioned_map forwards the budget: its snapshots expire like concurrent_map's, its feeds are not
// snapshots and go on (a replica that lists again after an expiry loses nothing, V2).
TEST(SnapshotBudget, S7_VersionedMapSnapshotsExpireFeedsGoOn) {
    iterlock::versioned_map<long, long> m(4, 0);
    for (long k = 0; k < 5000; ++k) m.insert_or_assign(k, k);
    m.set_snapshot_budget(1);
    EXPECT_EQ(m.snapshot_budget(), 1u);
    auto l = m.snapshot_and_watch(std::size_t{1} << 16);
    for (long k = 0; k < 5000; ++k) m.insert_or_assign(k, -k);
    EXPECT_TRUE(l.snapshot.expired());
    EXPECT_THROW((void)l.snapshot.size(), iterlock::snapshot_expired);
    EXPECT_THROW((void)l.snapshot.find(3), iterlock::snapshot_expired);
    std::size_t events = 0;
    const auto ch = l.feed.events();
    while (auto r = ch.try_recv()) {
        EXPECT_EQ(r->value, -r->key);
        ++events;
    }
    EXPECT_EQ(events, 5000u);
    EXPECT_FALSE(l.feed.ended());
}

}  // namespace
