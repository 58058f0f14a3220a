// tests/concurrent/concurrent_linearizability_test.cpp: concurrent_map histories checked for linearizability.
// Several threads run short random histories (insert_or_assign, try_emplace, erase, update, find, snapshot
// reads of one key and of the whole map; guard walks for the locked policy) on a few keys; every key's
// sub-history must be linearizable against a register model, and the whole history with whole-map reads must
// be linearizable too (each walk equals the model state at one point consistent with real-time order: S1,
// L1). The checker itself is tested first on hand-made histories it must accept or reject.
#include <atomic>
#include <cstdint>
#include <latch>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/concurrent_map.hpp"
#include "support/concurrent_maps.hpp"
#include "support/linearizability.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using iterlock::seed;
using iterlock::test::absent;
using iterlock::test::lin_checker;
using iterlock::test::lin_history;
using iterlock::test::lin_op;
using iterlock::test::scaled;

// ---- the checker on hand-made histories -------------------------------------------------------------------

lin_op op(lin_op::kind_t k, int key, long value, long result, std::uint64_t inv, std::uint64_t res) {
    lin_op o{};
    o.kind = k;
    o.key = key;
    o.value = value;
    o.result = result;
    o.inv = inv;
    o.res = res;
    return o;
}
lin_op walk(std::vector<long> all, std::uint64_t inv, std::uint64_t res) {
    lin_op o{};
    o.kind = lin_op::snap_all;
    o.all = std::move(all);
    o.inv = inv;
    o.res = res;
    return o;
}

TEST(CMapLinChecker, AcceptsOverlappingOpsInEitherOrder) {
    // t0 writes 1 over [1, 4]; t1 reads over [2, 3]: absent or 1 are both fine.
    for (long seen : {absent, 1L}) {
        const lin_history h = {{op(lin_op::put, 0, 1, 1, 1, 4)}, {op(lin_op::get, 0, 0, seen, 2, 3)}};
        EXPECT_TRUE(lin_checker(h, {0}).check()) << seen;
    }
}

TEST(CMapLinChecker, RejectsAStaleRead) {
    // The write returned (2) before the read began (3): the read must see it.
    const lin_history h = {{op(lin_op::put, 0, 1, 1, 1, 2)}, {op(lin_op::get, 0, 0, absent, 3, 4)}};
    EXPECT_FALSE(lin_checker(h, {0}).check());
}

TEST(CMapLinChecker, RejectsAWrongInsertFlag) {
    // Two sequential inserts of one key cannot both report an insertion.
    const lin_history h = {{op(lin_op::put, 0, 1, 1, 1, 2), op(lin_op::put, 0, 2, 1, 3, 4)}};
    EXPECT_FALSE(lin_checker(h, {0}).check());
    const lin_history ok = {{op(lin_op::put, 0, 1, 1, 1, 2), op(lin_op::put, 0, 2, 0, 3, 4)}};
    EXPECT_TRUE(lin_checker(ok, {0}).check());
}

TEST(CMapLinChecker, RejectsAWalkThatMixesInstants) {
    // t0 writes key 0 then (after it returned) key 1. A walk holding key 1's write but not key 0's is fine
    // for each key alone, but no single instant explains it.
    const lin_history h = {{op(lin_op::put, 0, 10, 1, 1, 2), op(lin_op::put, 1, 11, 1, 3, 4)},
                           {walk({absent, 11}, 0, 5)}};
    EXPECT_TRUE(lin_checker(h, {0}).check());
    EXPECT_TRUE(lin_checker(h, {1}).check());
    EXPECT_FALSE(lin_checker(h, {0, 1}).check());
    const lin_history ok = {{op(lin_op::put, 0, 10, 1, 1, 2), op(lin_op::put, 1, 11, 1, 3, 4)},
                            {walk({10, absent}, 0, 5)}};
    EXPECT_TRUE(lin_checker(ok, {0, 1}).check());
}

TEST(CMapLinChecker, UsesErasesAndUpdates) {
    const lin_history h = {{op(lin_op::put, 0, 1, 1, 1, 2), op(lin_op::erase, 0, 0, 1, 3, 4),
                            op(lin_op::update, 0, 5, 0, 5, 6), op(lin_op::emplace, 0, 7, 1, 7, 8),
                            op(lin_op::update, 0, 9, 1, 9, 10), op(lin_op::get, 0, 0, 9, 11, 12)}};
    EXPECT_TRUE(lin_checker(h, {0}).check());
    lin_history bad = h;
    bad[0][2].result = 1;  // an update of an erased key cannot succeed
    EXPECT_FALSE(lin_checker(bad, {0}).check());
}

// ---- recorded histories -----------------------------------------------------------------------------------

constexpr int n_keys = 8;
constexpr int n_threads = 3;

// Runs one round: each thread performs `ops` random operations on m, recording a lin_history.
template <class Map>
lin_history record_round(Map& m, int ops, std::uint64_t round_seed) {
    constexpr bool snapshots = requires {
        m.snapshot();
    };
    lin_history h(n_threads);
    std::atomic<std::uint64_t> clock{1};
    std::atomic<std::uint64_t> spins{0};
    std::latch start(n_threads);
    std::vector<std::thread> ts;
    for (int t = 0; t < n_threads; ++t) {
        ts.emplace_back([&, t] {
            std::mt19937_64 rng(round_seed * 31 + static_cast<std::uint64_t>(t));
            auto& mine = h[static_cast<std::size_t>(t)];
            mine.reserve(static_cast<std::size_t>(ops));
            start.arrive_and_wait();
            for (int i = 0; i < ops; ++i) {
                lin_op o{};
                o.key = static_cast<int>(rng() % n_keys);
                o.value = static_cast<long>(t) * 1000000 + i + 1;  // unique per write
                const auto r = rng() % 100;
                o.kind = r < 25   ? lin_op::put
                         : r < 35 ? lin_op::emplace
                         : r < 55 ? lin_op::erase
                         : r < 63 ? lin_op::update
                         : r < 83 ? lin_op::get
                         : r < 91 ? lin_op::snap_get
                                  : lin_op::snap_all;
                if (o.kind == lin_op::snap_all) o.key = -1;
                // A short random pause (no system call) varies the interleavings.
                for (auto spin = rng() % 64; spin > 0; --spin) spins.fetch_add(1, std::memory_order_relaxed);
                o.inv = clock.fetch_add(1);
                switch (o.kind) {
                    case lin_op::put:
                        o.result = m.insert_or_assign(static_cast<long>(o.key), o.value) ? 1 : 0;
                        o.res = clock.fetch_add(1);
                        break;
                    case lin_op::emplace:
                        o.result = m.try_emplace(static_cast<long>(o.key), o.value) ? 1 : 0;
                        o.res = clock.fetch_add(1);
                        break;
                    case lin_op::erase:
                        o.result = static_cast<long>(m.erase(static_cast<long>(o.key)));
                        o.res = clock.fetch_add(1);
                        break;
                    case lin_op::update: {
                        const long v = o.value;
                        o.result = m.update(static_cast<long>(o.key), [v](long& x) { x = v; }) ? 1 : 0;
                        o.res = clock.fetch_add(1);
                        break;
                    }
                    case lin_op::get:
                        o.result = m.find(static_cast<long>(o.key)).value_or(absent);
                        o.res = clock.fetch_add(1);
                        break;
                    case lin_op::snap_get:
                        if constexpr (snapshots) {
                            auto s = m.snapshot();
                            o.res = clock.fetch_add(1);  // the snapshot's instant lies inside snapshot()
                            o.result = s.find(static_cast<long>(o.key)).value_or(absent);
                        } else {
                            long v = absent;
                            m.cvisit(static_cast<long>(o.key), [&](const long&, const long& x) { v = x; });
                            o.res = clock.fetch_add(1);
                            o.result = v;
                        }
                        break;
                    case lin_op::snap_all: {
                        o.all.assign(n_keys, absent);
                        std::size_t produced = 0, reported = 0;
                        auto fill = [&](auto& view) {
                            for (const auto& [k, v] : view) {
                                EXPECT_TRUE(k >= 0 && k < n_keys) << k;
                                EXPECT_EQ(o.all[static_cast<std::size_t>(k)], absent) << "duplicate " << k;
                                o.all[static_cast<std::size_t>(k)] = v;
                                ++produced;
                            }
                            reported = view.size();
                        };
                        if constexpr (snapshots) {
                            auto s = m.snapshot();
                            o.res = clock.fetch_add(1);
                            fill(s);
                            for (long k = 0; k < n_keys; ++k) {  // find() agrees with the walk (S2)
                                EXPECT_EQ(s.find(k).value_or(absent), o.all[static_cast<std::size_t>(k)])
                                    << k;
                            }
                        } else {
                            auto g = m.lock_for_iteration();
                            fill(g);  // the walk's instant is anywhere while the guard lives
                            o.res = clock.fetch_add(1);
                        }
                        EXPECT_EQ(reported, produced) << "size() disagrees with the walk";
                        break;
                    }
                }
                mine.push_back(std::move(o));
            }
        });
    }
    for (auto& t : ts) t.join();
    return h;
}

template <class Map>
void check_rounds(const char* policy, std::uint64_t first_seed) {
    const int rounds = static_cast<int>(scaled(800, 300));
    const int ops = 200;
    for (int round = 0; round < rounds; ++round) {
        const std::uint64_t sd = first_seed + static_cast<std::uint64_t>(round);
        Map m(round % 2 == 0 ? 2 : 4, seed{sd});
        const lin_history h = record_round(m, ops, sd);
        for (int k = 0; k < n_keys; ++k) {
            ASSERT_TRUE(lin_checker(h, {k}).check()) << policy << " round " << round << " (seed " << sd
                                                     << "): key " << k << "'s history is not linearizable:\n"
                                                     << iterlock::test::dump_history(h, k);
        }
        std::vector<int> all_keys;
        for (int k = 0; k < n_keys; ++k) all_keys.push_back(k);
        ASSERT_TRUE(lin_checker(h, all_keys).check())
            << policy << " round " << round << " (seed " << sd
            << "): every key is linearizable alone, but no single instant explains some whole-map read:\n"
            << iterlock::test::dump_history(h, -1);
    }
}

class CMapLinearizability : public iterlock::test::watched {};

// Threads take and end snapshots concurrently with the writers (this once caught the sweep freeing what a
// newer snapshot needed; see CMapSnapshot.S5_ReleaseRacesWithNewSnapshots).
TEST_F(CMapLinearizability, SnapshotPolicy) {
    check_rounds<iterlock::test::snap_map<long, long>>("snapshot", 1000);
}

TEST_F(CMapLinearizability, LockedPolicy) {
    check_rounds<iterlock::test::locked_map<long, long>>("locked", 5000);
}

}  // namespace
