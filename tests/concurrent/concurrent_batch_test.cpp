// Rule V5 of iterlock::versioned_map (versioned_map.hpp): atomic multi-key writes (write_batch, clear) —
// all or nothing for snapshots and watchers, keys outside the declared set throw, overlapping batches never
// deadlock.
#include <atomic>
#include <cstdint>
#include <latch>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/versioned_map.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using vmap = iterlock::versioned_map<int, long>;

TEST(ConcurrentBatch, V5_BatchWritesAndReadsItsOwnWrites) {
    vmap m(8);
    m.insert_or_assign(1, 10L);
    const std::size_t n = m.write_batch({1, 2, 3}, [](vmap::batch_writer& b) {
        EXPECT_EQ(b.find(1), 10L);
        b.put(2, 20L);
        EXPECT_EQ(b.find(2), 20L);
        EXPECT_EQ(b.find_versioned(2), std::nullopt);  // as the batch found it
        b.erase(1);
        b.erase(3);  // absent: no write
        EXPECT_EQ(b.find(1), std::nullopt);
    });
    EXPECT_EQ(n, 2u);
    EXPECT_FALSE(m.contains(1));
    EXPECT_EQ(m.find(2), 20L);
}

TEST(ConcurrentBatch, V5_KeyOutsideTheDeclaredSetThrowsAndWritesNothing) {
    vmap m(8);
    m.insert_or_assign(1, 1L);
    const std::uint64_t writes = m.write_count();
    EXPECT_THROW(m.write_batch({1, 2},
                               [](vmap::batch_writer& b) {
                                   b.put(1, 5L);
                                   b.put(99, 5L);
                               }),
                 std::logic_error);
    EXPECT_THROW(m.write_batch({1}, [](vmap::batch_writer& b) { (void)b.find(2); }), std::logic_error);
    EXPECT_THROW(m.write_batch({1},
                               [](vmap::batch_writer& b) {
                                   b.put(1, 7L);
                                   throw std::runtime_error("user");
                               }),
                 std::runtime_error);
    EXPECT_EQ(m.find(1), 1L);
    EXPECT_EQ(m.write_count(), writes);
}

TEST(ConcurrentBatch, V5_UsingTheMapInsideTheCallbackIsLockError) {
    vmap m(8);
    EXPECT_THROW(m.write_batch({1}, [&](vmap::batch_writer&) { m.insert_or_assign(1, 1L); }),
                 iterlock::lock_error);
    EXPECT_TRUE(m.empty());
}

// Transfers between accounts keep the total; every snapshot must see the same total.
TEST(ConcurrentBatch, V5_SnapshotsSeeBatchesWhole) {
    const int accounts = 32;
    vmap m(16);
    for (int i = 0; i < accounts; ++i) m.insert_or_assign(i, 100L);
    std::atomic<bool> stop{false};
    std::latch start(3);
    std::vector<std::thread> ts;
    for (int w = 0; w < 2; ++w)
        ts.emplace_back([&, w] {
            std::mt19937 rng(static_cast<unsigned>(w + 7));
            start.arrive_and_wait();
            while (!stop.load()) {
                const int a = static_cast<int>(rng() % accounts), c = static_cast<int>(rng() % accounts);
                if (a == c) continue;
                m.write_batch({a, c}, [&](vmap::batch_writer& b) {
                    b.put(a, *b.find(a) - 1);
                    b.put(c, *b.find(c) + 1);
                });
            }
        });
    start.arrive_and_wait();
    const long rounds = iterlock::test::scaled(2000, 200);
    for (long r = 0; r < rounds; ++r) {
        auto s = m.snapshot();
        long total = 0;
        std::size_t n = 0;
        for (const auto& [k, vv] : s) {
            total += vv.value;
            ++n;
        }
        ASSERT_EQ(n, static_cast<std::size_t>(accounts));
        ASSERT_EQ(total, 100L * accounts) << "a snapshot held part of a batch";
    }
    stop.store(true);
    for (auto& t : ts) t.join();
}

TEST(ConcurrentBatch, V5_OverlappingBatchesNeverDeadlock) {
    iterlock::test::watchdog dog(std::chrono::seconds(120));
    vmap m(8);
    const int threads = 4;
    const long per = iterlock::test::scaled(5000, 500);
    std::latch start(threads);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(t));
            start.arrive_and_wait();
            for (long i = 0; i < per; ++i) {
                std::vector<int> keys;
                for (int j = 0; j < 4; ++j) keys.push_back(static_cast<int>(rng() % 64));
                if (t % 2 == 1) std::reverse(keys.begin(), keys.end());  // declared in opposite orders
                m.write_batch(keys, [&](vmap::batch_writer& b) {
                    for (int k : keys) b.put(k, b.find(k).value_or(0) + 1);
                });
            }
        });
    for (auto& t : ts) t.join();
    long total = 0;
    for (const auto& [k, vv] : m.snapshot()) total += vv.value;
    EXPECT_EQ(total, threads * per * 4);
}

TEST(ConcurrentBatch, V5_ClearIsAtomicForSnapshots) {
    const int n = 200;
    vmap m(16);
    std::vector<int> keys(n);
    for (int i = 0; i < n; ++i) keys[static_cast<std::size_t>(i)] = i;
    auto fill = [&] {
        m.write_batch(keys, [&](vmap::batch_writer& b) {
            for (int k : keys) b.put(k, long{k});
        });
    };
    fill();
    std::atomic<bool> stop{false};
    std::thread writer([&] {
        while (!stop.load()) {
            m.clear();
            fill();
        }
    });
    const long rounds = iterlock::test::scaled(2000, 200);
    for (long r = 0; r < rounds; ++r) {
        auto s = m.snapshot();
        std::size_t seen = 0;
        for (const auto& kv : s) {
            (void)kv;
            ++seen;
        }
        ASSERT_TRUE(seen == 0 || seen == static_cast<std::size_t>(n)) << seen;
        ASSERT_EQ(seen, s.size());
    }
    stop.store(true);
    writer.join();
}

TEST(ConcurrentBatch, V5_WatcherReceivesTheBatchInOrderAndWhole) {
    vmap m(8, 0);
    m.insert_or_assign(5, 5L);
    auto s = m.snapshot();
    std::map<int, long> replica;
    for (const auto& [k, vv] : s) replica[k] = vv.value;
    auto f = m.watch(s);
    m.write_batch({1, 2, 3, 5}, [](vmap::batch_writer& b) {
        b.put(1, 1L);
        b.put(2, 2L);
        b.put(3, 3L);
        b.erase(5);
    });
    m.clear();
    std::vector<std::uint32_t> more;
    while (auto c = f.events().try_recv()) {
        const auto& e = *c.as_optional();
        more.push_back(e.more_in_batch);
        if (e.kind == iterlock::change_kind::put)
            replica[e.key] = *e.value;
        else
            replica.erase(e.key);
    }
    EXPECT_EQ(more, (std::vector<std::uint32_t>{3, 2, 1, 0, 2, 1, 0}));
    EXPECT_TRUE(replica.empty());
    EXPECT_TRUE(m.empty());
}

}  // namespace
