// Rules V1 and V4 of iterlock::versioned_map (versioned_map.hpp): per-key revisions and conditional writes,
// including the seed's §4.2 A-B-A example (select on a channel, then a compare-and-set on a stale revision).
#include <atomic>
#include <cstdint>
#include <latch>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/chan.hpp"
#include "iterlock/select.hpp"
#include "iterlock/versioned_map.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using vmap = iterlock::versioned_map<int, std::string>;

TEST(ConcurrentVersions, V1_RevisionGrowsWithEveryWriteOfAKey) {
    vmap m(4);
    std::uint64_t last = 0;
    for (int i = 0; i < 100; ++i) {
        std::uint64_t r = 0;
        switch (i % 3) {
            case 0:
                r = m.insert_or_assign(7, "a" + std::to_string(i));
                break;
            case 1:
                r = m.compare_and_set(7, last, std::string("b")).revision;
                break;
            case 2:
                ASSERT_EQ(m.erase(7), 1u);
                r = m.insert_or_assign(7, std::string("c"));
                break;
        }
        ASSERT_GT(r, last) << "write " << i;
        ASSERT_EQ(m.find_versioned(7)->revision, r);
        last = r;
    }
    EXPECT_EQ(m.find_versioned(8), std::nullopt);
}

TEST(ConcurrentVersions, V1_WriteAWriteBWriteAFailsTheFirstRevision) {
    vmap m(8);
    const std::uint64_t first = m.insert_or_assign(1, std::string("A"));
    m.insert_or_assign(1, std::string("B"));
    const std::uint64_t again = m.insert_or_assign(1, std::string("A"));
    ASSERT_EQ(*m.find(1), "A");  // the value looks unchanged ...
    ASSERT_NE(again, first);     // ... the revision does not
    const iterlock::conditional_result r = m.compare_and_set(1, first, std::string("C"));
    EXPECT_FALSE(r.succeeded);
    EXPECT_EQ(r.revision, again);
    EXPECT_EQ(*m.find(1), "A");
    // Also across an erase and a re-insert.
    ASSERT_EQ(m.erase(1), 1u);
    const std::uint64_t reinserted = m.insert_or_assign(1, std::string("A"));
    EXPECT_GT(reinserted, again);
    EXPECT_FALSE(m.erase_if_unchanged(1, again).succeeded);
    EXPECT_EQ(m.size(), 1u);
}

TEST(ConcurrentVersions, V1_RevisionsAreUniqueAcrossKeysAndNeverZero) {
    vmap m(16);
    std::set<std::uint64_t> seen;
    for (int i = 0; i < 2000; ++i) {
        const std::uint64_t r = m.insert_or_assign(i % 300, std::to_string(i));
        ASSERT_NE(r, 0u);
        ASSERT_TRUE(seen.insert(r).second) << "revision " << r << " given twice";
    }
}

TEST(ConcurrentVersions, V1_SnapshotAndWalkShowRevisionsOfTheirInstant) {
    vmap m(4);
    std::map<int, std::uint64_t> at;
    for (int i = 0; i < 50; ++i) at[i] = m.insert_or_assign(i, std::to_string(i));
    auto s = m.snapshot();
    for (int i = 0; i < 50; ++i) m.insert_or_assign(i, std::string("later"));
    m.erase(3);
    std::size_t n = 0;
    for (const auto& [k, vv] : s) {
        ++n;
        EXPECT_EQ(vv.revision, at.at(k));
        EXPECT_EQ(vv.value, std::to_string(k));
    }
    EXPECT_EQ(n, 50u);
    EXPECT_EQ(s.find_versioned(3)->revision, at[3]);
    EXPECT_EQ(m.find_versioned(3), std::nullopt);
    EXPECT_NE(m.find_versioned(4)->revision, at[4]);
}

TEST(ConcurrentVersions, V4_CompareAndSetWithZeroMeansAbsent) {
    vmap m(4);
    auto r = m.compare_and_set(5, 0, std::string("x"));
    ASSERT_TRUE(r.succeeded);
    EXPECT_NE(r.revision, 0u);
    auto again = m.compare_and_set(5, 0, std::string("y"));
    EXPECT_FALSE(again.succeeded);
    EXPECT_EQ(again.revision, r.revision);
    EXPECT_EQ(*m.find(5), "x");
    auto ok = m.compare_and_set(5, r.revision, std::string("z"));
    EXPECT_TRUE(ok.succeeded);
    EXPECT_GT(ok.revision, r.revision);
    EXPECT_EQ(*m.find(5), "z");
}

TEST(ConcurrentVersions, V4_EraseIfUnchanged) {
    vmap m(4);
    const std::uint64_t r = m.insert_or_assign(9, std::string("v"));
    EXPECT_FALSE(m.erase_if_unchanged(9, r + 1).succeeded);
    EXPECT_TRUE(m.contains(9));
    const auto gone = m.erase_if_unchanged(9, r);
    EXPECT_TRUE(gone.succeeded);
    EXPECT_EQ(gone.revision, 0u);
    EXPECT_FALSE(m.contains(9));
    EXPECT_TRUE(m.erase_if_unchanged(9, 0).succeeded);  // absent, as expected: nothing written
    const auto stale = m.erase_if_unchanged(9, r);
    EXPECT_FALSE(stale.succeeded);
    EXPECT_EQ(stale.revision, 0u);
    const std::uint64_t before = m.write_count();
    EXPECT_FALSE(m.try_emplace(10, std::string("a")).revision == 0);
    EXPECT_FALSE(m.try_emplace(10, std::string("b")).succeeded);
    EXPECT_EQ(*m.find(10), "a");
    EXPECT_EQ(m.write_count(), before + 1);
}

// The seed's §4.2: a thread reads a key, waits in a select, and acts on what it read. Meanwhile another
// thread writes B, then A again. The value looks the same; the compare-and-set on the revision read
// before the select fails.
TEST(ConcurrentVersions, V1_SeedAbaExampleSelectThenStaleCasFails) {
    vmap m(8);
    m.insert_or_assign(42, std::string("A"));
    iterlock::chan<int> go(0);  // unbuffered: the reader is in its select when the writer sends
    iterlock::chan<int> written(1);
    std::thread writer([&] {
        go.send(1);
        m.insert_or_assign(42, std::string("B"));
        m.insert_or_assign(42, std::string("A"));
        written.send(1);
    });
    const auto seen = m.find_versioned(42);
    ASSERT_TRUE(seen.has_value());
    bool woke = false;
    iterlock::select(iterlock::on_recv(go, [&](std::optional<int>) { woke = true; }));
    ASSERT_TRUE(woke);
    ASSERT_TRUE(written.recv().has_value());
    writer.join();
    ASSERT_EQ(*m.find(42), seen->value);  // A again
    const auto r = m.compare_and_set(42, seen->revision, std::string("acted on a stale read"));
    EXPECT_FALSE(r.succeeded);
    EXPECT_EQ(*m.find(42), "A");
    EXPECT_EQ(r.revision, m.find_versioned(42)->revision);
}

// V4 under contention: counters incremented by CAS loops on 16 keys; no increment is lost.
TEST(ConcurrentVersions, V4_CasLoopsLoseNoIncrement) {
    iterlock::versioned_map<int, long> m(8);
    for (int k = 0; k < 16; ++k) m.insert_or_assign(k, 0L);
    const int threads = 4;
    const long per = iterlock::test::scaled(20000, 2000);
    std::latch start(threads);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            start.arrive_and_wait();
            for (long i = 0; i < per; ++i) {
                const int k = static_cast<int>((i * 7 + t) % 16);
                for (;;) {
                    const auto cur = m.find_versioned(k);
                    if (m.compare_and_set(k, cur->revision, cur->value + 1).succeeded) break;
                }
            }
        });
    for (auto& t : ts) t.join();
    long total = 0;
    for (int k = 0; k < 16; ++k) total += *m.find(k);
    EXPECT_EQ(total, threads * per);
}

}  // namespace
