// Faults of the table that every concurrent_map shard shares (issue 13, items 6 and 9), seen through
// concurrent_map: a reserve no shard can hold throws instead of looping, and a locked-iteration guard holder
// that writes during its walk (rule L6) gets a walk that ends and writes that stay O(1) amortized. Tests are
// named Item<NN>_<what it checks>; a watchdog turns a hang into a failure; nothing asserts on time.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/concurrent_map.hpp"
#include "support/concurrent_maps.hpp"
#include "support/watchdog.hpp"

namespace {

using iterlock::seed;
using iterlock::test::locked_map;
using iterlock::test::snap_map;

class CMapTableFaults : public iterlock::test::watched {};

// Item 6 through concurrent_map: reserve() divides n over the shards; a share no table can hold throws
// std::length_error (it used to loop forever in the table's size computation), with or without a live
// snapshot, and the map is unchanged.
TEST_F(CMapTableFaults, Item06_ReserveOfAnUnreachableSizeThrowsLengthError) {
    const int minus_one = -1;
    for (const std::size_t n : {std::numeric_limits<std::size_t>::max(), static_cast<std::size_t>(minus_one),
                                std::size_t{1} << 63}) {
        snap_map<long, long> s(4, seed{1});
        locked_map<long, long> l(4, seed{1});
        for (long k = 0; k < 100; ++k) {
            s.insert({k, k});
            l.insert({k, k});
        }
        EXPECT_THROW(s.reserve(n), std::length_error) << n;
        EXPECT_THROW(l.reserve(n), std::length_error) << n;
        {
            auto snap = s.snapshot();
            EXPECT_THROW(s.reserve(n), std::length_error) << "with a snapshot alive, " << n;
        }
        EXPECT_EQ(s.size(), 100u);
        EXPECT_EQ(l.size(), 100u);
        EXPECT_EQ(s.find(42), std::optional<long>(42));
        EXPECT_EQ(l.find(42), std::optional<long>(42));
        s.insert({1000, 1});
        l.insert({1000, 1});
        EXPECT_EQ(s.size(), 101u);
        EXPECT_EQ(l.size(), 101u);
    }
}

// Item 9 through a locked-iteration guard: the holder of the only guard inserts 10 new keys for every entry
// its walk produces (rule L6: Go's rules for writes during iteration apply). The walk used to run forever
// (each shard's growth paused under the guard's registration); now it ends within the sum of the shards'
// I7 bounds and produces every original entry once. For a shard grown by inserts alone to n entries, I7
// allows 8 * (buckets + overflow + 2 * buckets) <= 40 * 2^B with 2^B the smallest power of two holding n at
// a load of 6.5; with 100 entries over 4 shards (about 25 each, 2^B <= 8) that is at most 4 * 320.
TEST_F(CMapTableFaults, L6_I7_Item09_GuardHolderInsertLoopEnds) {
    for (std::uint64_t round = 1; round <= 10; ++round) {
        locked_map<long, long> m(4, seed{round});
        for (long k = 0; k < 100; ++k) m.insert({k, k});
        const std::size_t bound = 4 * 40 * 8;
        std::vector<int> seen(100, 0);
        std::size_t produced = 0;
        long next = 1000;
        {
            auto g = m.lock_for_iteration();
            for (auto& [k, v] : g) {
                if (++produced > bound) break;
                if (k < 100) ++seen[static_cast<std::size_t>(k)];
                const long from = k;
                for (int j = 0; j < 10; ++j) m.insert_or_assign(next++, from);
            }
        }
        ASSERT_LE(produced, bound) << "round " << round << ": the guard's walk does not end";
        for (long k = 0; k < 100; ++k) ASSERT_EQ(seen[static_cast<std::size_t>(k)], 1) << k;
        EXPECT_EQ(m.size(), 100 + 10 * produced);
        for (long k = 1000; k < next; k += 37) ASSERT_EQ(m.find(k).has_value(), true) << k;
    }
}

// The same with erases, and an insert-heavy stretch: the guard holder erases each produced entry (by the
// reference the walk gives it) and inserts 10 more, then inserts 50,000 keys with the guard still held.
// Growth keeps pace (the shards grow), and every key stays findable.
TEST_F(CMapTableFaults, L6_I7_Item09_GuardHolderEraseAndInsertHeavyLoop) {
    locked_map<long, long> m(4, seed{5});
    for (long k = 0; k < 100; ++k) m.insert({k, k});
    const std::size_t bound = 4 * 40 * 8;
    std::size_t produced = 0;
    long next = 1000;
    std::set<long> erased;
    {
        auto g = m.lock_for_iteration();
        for (auto& [k, v] : g) {
            if (++produced > bound) break;
            erased.insert(k);
            ASSERT_EQ(m.erase(k), 1u);
            for (int j = 0; j < 10; ++j) m.insert_or_assign(next++, j);
        }
        for (long i = 0; i < 50000; ++i) m.insert({next++, i});
    }
    ASSERT_LE(produced, bound);
    for (long k = 0; k < 100; ++k) EXPECT_FALSE(m.find(k).has_value()) << k;
    EXPECT_EQ(m.size(), static_cast<std::size_t>(next - 1000) - (produced - 100));
    EXPECT_GE(m.metrics().growths, 4u * 8u) << "the shards did not grow under the guard";
    for (long k = 1000; k < next; ++k) ASSERT_EQ(m.find(k).has_value(), erased.count(k) == 0) << k;
}

}  // namespace
