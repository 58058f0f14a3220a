// Faults of the table that every concurrent_map shard shares (issue 13, items 6 and 9), seen through
// concurrent_map: a reserve no shard can hold throws instead of looping, and a locked-iteration guard holder
// that writes during its walk (rule L6) gets a walk that ends and writes that stay O(1) amortized. Tests are
// named Item<NN>_<what it checks>; a watchdog turns a hang into a failure; nothing asserts on time.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>

#include <gtest/gtest.h>

#include "concurrent_test_util.hpp"
#include "iterlock/concurrent_map.hpp"

namespace {

using iterlock::seed;
using iterlock::ctest::locked_map;
using iterlock::ctest::snap_map;

class CMapTableFaults : public iterlock::ctest::watched {};

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

}  // namespace
