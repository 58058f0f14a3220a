// tests/guarded/guarded_consistency_test.cpp: the W5 check on iterlock::guarded<Map> with std::unordered_map,
// absl::flat_hash_map and boost::unordered_flat_map inside (GD2, GD3: a walk under the guard is one instant).
//
// One writer inserts k0, k1, ... in order (then erases them in order) through the guarded's writes while
// walkers take guards and walk the live map. Each walk must see exactly a prefix {k0..k(c-1)} (then a
// suffix): no hole, no duplicate, no value that was not written; and one walker's c never goes back. Threads
// start behind a latch; nothing depends on time.
#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <latch>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/guarded.hpp"
#include "support/guarded_maps.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

template <class Map>
class GuardedConsistency : public iterlock::test::watched {};
using maps = iterlock::test::guarded_maps<std::uint64_t>;
using map_names = iterlock::test::guarded_map_names;
TYPED_TEST_SUITE(GuardedConsistency, maps, map_names);

// Key i is scrambled so every hash sees random-looking keys; value i lets a walk recover the index.
constexpr std::uint64_t key_of(std::uint64_t i) {
    return (i + 1) * 0x9E3779B97F4A7C15ULL;
}

struct walk_tally {
    std::uint64_t walks = 0;
    std::uint64_t holed = 0;
    std::uint64_t backwards = 0;
};

// Checks one walk: the indices seen must be distinct, well formed, and form [0, c) (prefix) or [n - c, n)
// (suffix). Returns c, or UINT64_MAX for a holed walk.
template <class Guard>
std::uint64_t check_walk(Guard& g, std::uint64_t n, bool prefix, std::vector<char>& seen) {
    seen.assign(n, 0);
    std::uint64_t c = 0, lo = n, hi = 0;
    for (const auto& [k, v] : g) {
        if (v >= n || k != key_of(v) || seen[v]) return UINT64_MAX;
        seen[v] = 1;
        ++c;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    if (c == 0) return 0;
    if (prefix ? (lo != 0 || hi != c - 1) : (hi != n - 1 || lo != n - c)) return UINT64_MAX;
    return c;
}

template <class Map>
void run(bool prefix) {
    constexpr int walkers = 2;
    const std::uint64_t n = static_cast<std::uint64_t>(iterlock::test::scaled(4000, 2000));
    iterlock::guarded<Map> m;
    if (!prefix)
        for (std::uint64_t i = 0; i < n; ++i) m.insert_or_assign(key_of(i), i);
    std::atomic<bool> done{false};
    std::latch go(walkers + 1);
    std::vector<walk_tally> tallies(walkers);
    std::vector<std::jthread> threads;
    for (int w = 0; w < walkers; ++w)
        threads.emplace_back([&, w] {
            walk_tally& t = tallies[static_cast<std::size_t>(w)];
            std::vector<char> seen;
            std::uint64_t last = prefix ? 0 : n;
            go.arrive_and_wait();
            bool last_round = false;
            while (!last_round) {
                last_round = done.load();
                auto g = m.lock_for_iteration();
                const std::uint64_t c = check_walk(g, n, prefix, seen);
                ++t.walks;
                if (c == UINT64_MAX) {
                    ++t.holed;
                    continue;
                }
                if (prefix ? c < last : c > last) ++t.backwards;
                last = c;
            }
        });
    go.arrive_and_wait();
    for (std::uint64_t i = 0; i < n; ++i) {
        if (prefix)
            m.insert_or_assign(key_of(i), i);
        else
            ASSERT_EQ(m.erase(key_of(i)), 1u);
    }
    done = true;
    threads.clear();
    for (const walk_tally& t : tallies) {
        EXPECT_GE(t.walks, 1u);
        EXPECT_EQ(t.holed, 0u);
        EXPECT_EQ(t.backwards, 0u);
    }
    EXPECT_EQ(m.size(), prefix ? n : 0);
    EXPECT_EQ(m.lock().state().total_waiting(), 0u);
}

TYPED_TEST(GuardedConsistency, GD3_WalkSeesAPrefixOfInOrderInserts) {
    run<TypeParam>(true);
}

TYPED_TEST(GuardedConsistency, GD3_WalkSeesASuffixOfInOrderErases) {
    run<TypeParam>(false);
}

// Readers under the shared lock beside walks and a writer: a read sees each key either absent or with its
// value, and the walks stay consistent (GD1 with GD2/GD3).
TYPED_TEST(GuardedConsistency, GD1_ReadsBesideWalksAndAWriterSeeWrittenValues) {
    const std::uint64_t n = static_cast<std::uint64_t>(iterlock::test::scaled(4000, 2000));
    iterlock::guarded<TypeParam> m;
    std::atomic<bool> done{false};
    std::atomic<int> bad{0};
    std::latch go(3);
    std::jthread reader([&] {
        go.arrive_and_wait();
        std::uint64_t i = 0;
        while (!done.load()) {
            if (auto v = m.get(key_of(i % n)); v && *v != i % n) ++bad;
            ++i;
        }
    });
    std::jthread walker([&] {
        go.arrive_and_wait();
        std::vector<char> seen;
        while (!done.load()) {
            auto g = m.lock_for_iteration();
            if (check_walk(g, n, true, seen) == UINT64_MAX) ++bad;
        }
    });
    go.arrive_and_wait();
    for (std::uint64_t i = 0; i < n; ++i) m.insert_or_assign(key_of(i), i);
    done = true;
    reader.join();
    walker.join();
    EXPECT_EQ(bad.load(), 0);
}

}  // namespace
