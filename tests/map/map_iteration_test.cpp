// Tests of Go's iteration rules I1..I6 for writes made by the iterating thread during its own iteration:
// erase ahead (I1), inserts that may or may not be seen (I2), no entry twice even when the table grows
// mid-iteration (I3), every untouched entry exactly once (I4), clear() ends the iteration (I5), randomized
// and seed-reproducible start (I6). Each iteration is checked by iteration_oracle against a mirror.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "iterlock/detail/map/test_access.hpp"
#include "iterlock/map.hpp"
#include "support/iteration_oracle.hpp"

namespace {

using int_map = iterlock::map<int, int>;
using mirror_map = std::unordered_map<int, int>;
using oracle = iterlock::test::iteration_oracle<int, int>;
using access = iterlock::detail::map_test_access;

struct filled {
    int_map map;
    mirror_map mirror;
};

filled make_filled(int n, std::uint64_t seed) {
    filled f{int_map{iterlock::seed{seed}}, {}};
    for (int i = 0; i < n; ++i) {
        f.map.insert({i, i});
        f.mirror.emplace(i, i);
    }
    return f;
}

// Iterates `f.map`; before each step `write(it_key, oracle, f)` may change the map (mirroring the change in
// f.mirror and reporting it to the oracle). Checks I1/I3/I4 and returns the produced keys in order.
template <class Write>
std::vector<int> iterate_with_writes(filled& f, Write write) {
    oracle o(f.mirror);
    std::vector<int> produced;
    for (auto it = f.map.begin(); it != f.map.end(); ++it) {
        const int k = it->first;
        const std::string err = o.on_produced(k, it->second, f.mirror);
        EXPECT_EQ(err, "");
        if (!err.empty()) break;
        produced.push_back(k);
        write(k, o, f);
    }
    EXPECT_EQ(o.finish(), "");
    f.map.check_invariants();
    EXPECT_EQ(f.map.size(), f.mirror.size());
    return produced;
}

std::vector<int> keys_in_order(const int_map& m) {
    std::vector<int> out;
    for (const auto& kv : m) out.push_back(kv.first);
    return out;
}

// ---- I1: erased before reached -> not produced ------------------------------------------------------------

TEST(MapIterationI1, EraseAheadIsNotProduced) {
    for (std::uint64_t seed = 1; seed <= 20; ++seed) {
        auto f = make_filled(500, seed);
        std::mt19937 rng(static_cast<std::uint32_t>(seed));
        std::set<int> erased_unseen;
        std::set<int> seen;
        iterate_with_writes(f, [&](int k, oracle& o, filled& ff) {
            seen.insert(k);
            // Erase three random keys that were not produced yet.
            for (int j = 0; j < 3; ++j) {
                const int victim = static_cast<int>(rng() % 500);
                if (seen.count(victim) || !ff.mirror.count(victim)) continue;
                ASSERT_EQ(ff.map.erase(victim), 1u);
                ff.mirror.erase(victim);
                o.on_erase(victim);
                erased_unseen.insert(victim);
            }
        });
        for (int v : erased_unseen) EXPECT_EQ(seen.count(v), 0u) << "erased key " << v << " seed " << seed;
        EXPECT_FALSE(erased_unseen.empty());
    }
}

TEST(MapIterationI1, EraseCurrentEntryEveryStep) {
    // Go's idiom `for k := range m { delete(m, k) }`: erasing the entry just produced, then advancing.
    auto f = make_filled(3000, 9);
    const auto produced = iterate_with_writes(f, [](int k, oracle& o, filled& ff) {
        ASSERT_EQ(ff.map.erase(k), 1u);
        ff.mirror.erase(k);
        o.on_erase(k);
    });
    EXPECT_EQ(produced.size(), 3000u);
    EXPECT_TRUE(f.map.empty());
}

TEST(MapIterationI1, EraseAllOthersOnFirstStep) {
    auto f = make_filled(200, 4);
    int first = -1;
    const auto produced = iterate_with_writes(f, [&](int k, oracle& o, filled& ff) {
        if (first != -1) return;
        first = k;
        for (int i = 0; i < 200; ++i) {
            if (i == k) continue;
            ff.map.erase(i);
            ff.mirror.erase(i);
            o.on_erase(i);
        }
    });
    EXPECT_EQ(produced, std::vector<int>{first});
}

// ---- I2: inserted during iteration -> may or may not be produced (but at most once, and current) ---------

TEST(MapIterationI2, InsertedEntriesMayAppearAtMostOnce) {
    for (std::uint64_t seed = 1; seed <= 10; ++seed) {
        auto f = make_filled(100, seed);
        int next = 1000;
        std::size_t new_seen = 0;
        iterate_with_writes(f, [&](int k, oracle& o, filled& ff) {
            if (k >= 1000) {
                ++new_seen;
                return;
            }
            ASSERT_TRUE(ff.map.insert({next, next}).second);
            ff.mirror.emplace(next, next);
            o.on_insert(next);
            ++next;
        });
        EXPECT_LE(new_seen, 100u);
        EXPECT_EQ(f.map.size(), 200u);
    }
}

TEST(MapIterationI2, InsertThenEraseDuringIteration) {
    auto f = make_filled(300, 21);
    int next = 10000;
    iterate_with_writes(f, [&](int, oracle& o, filled& ff) {
        // Insert a new key and erase it again at once: it must never be produced (I1 applies to it).
        ASSERT_TRUE(ff.map.insert({next, 1}).second);
        ff.mirror.emplace(next, 1);
        o.on_insert(next);
        ASSERT_EQ(ff.map.erase(next), 1u);
        ff.mirror.erase(next);
        o.on_erase(next);
        ++next;
    });
    EXPECT_EQ(f.map.size(), 300u);
}

TEST(MapIterationI2, EraseThenReinsertMayProduceNewEntry) {
    // An entry produced, erased and inserted again is a new entry: producing it again is allowed (I2),
    // producing any other entry twice is not (I3).
    auto f = make_filled(400, 33);
    iterate_with_writes(f, [&](int k, oracle& o, filled& ff) {
        if (k % 2 != 0) return;
        ff.map.erase(k);
        ff.mirror.erase(k);
        o.on_erase(k);
        ff.map.insert({k, k + 1});
        ff.mirror.emplace(k, k + 1);
        o.on_insert(k);
    });
    EXPECT_EQ(f.map.size(), 400u);
}

TEST(MapIterationI2, AssignDuringIterationIsVisible) {
    auto f = make_filled(500, 2);
    iterate_with_writes(f, [&](int k, oracle&, filled& ff) {
        const int other = (k * 7 + 3) % 500;  // assign ahead: when reached, the new value must be produced
        ff.map.insert_or_assign(other, -other);
        ff.mirror[other] = -other;
        ff.map[k] = k * 2;
        ff.mirror[k] = k * 2;
    });
}

// ---- I3: no entry twice, also when the table grows mid-iteration ------------------------------------------

TEST(MapIterationI3, GrowthMidIterationNoDuplicates) {
    for (std::uint64_t seed = 1; seed <= 20; ++seed) {
        auto f = make_filled(52, seed);  // 6.5 per bucket at B = 3: the next insert starts a growth
        const auto b0 = access::table(f.map).bucket_shift();
        int next = 100000;
        bool saw_growing = false;
        // Insert only while producing original keys: entries inserted during the iteration may be produced
        // (I2), and inserting again for those could extend the iteration without bound.
        iterate_with_writes(f, [&](int k, oracle& o, filled& ff) {
            if (k >= 100000) return;
            for (int j = 0; j < 40; ++j) {  // 52 * 40 inserts: far past the next growth threshold
                ff.map.insert({next, next});
                ff.mirror.emplace(next, next);
                o.on_insert(next);
                ++next;
                saw_growing = saw_growing || access::table(ff.map).growing();
            }
        });
        EXPECT_GT(access::table(f.map).bucket_shift(), b0) << "seed " << seed;
        EXPECT_TRUE(saw_growing) << "seed " << seed;
        // Growth went on under the live iterator (rule I7); further writes finish any growth in progress.
        for (int j = 0; j < 100000 && access::table(f.map).growing(); ++j) f.map.insert({next + j, 0});
        EXPECT_FALSE(access::table(f.map).growing()) << "seed " << seed;
        f.map.check_invariants();
        for (const auto& kv : f.mirror) ASSERT_EQ(f.map.get(kv.first), std::optional<int>(kv.second));
    }
}

TEST(MapIterationI3, EntriesMovedMidMemberAreProducedWhereTheyWent) {
    // The walk is inside a full member when a growth starts and evacuates it (and everything else); the
    // member's slots not produced yet now hold moved-from objects behind evacuation marks. Every original
    // key is then given a new value, so an entry produced from its old slot instead of from where growth
    // moved it shows a stale value (the walk's inline step must not outlive the evacuation, iter_next).
    for (std::uint64_t seed = 1; seed <= 40; ++seed) {
        auto f = make_filled(13, seed);  // 6.5 per bucket at B = 1: the next insert starts a growth
        bool first = true;
        int next = 100000;
        iterate_with_writes(f, [&](int, oracle& o, filled& ff) {
            if (!first) return;
            first = false;
            // Growths until the map holds 200 more entries and none is in progress (bounded: each growth
            // ends after a few inserts at these sizes).
            for (int j = 0; (j < 200 || access::table(ff.map).growing()) && j < 100000; ++j, ++next) {
                ff.map.insert({next, next});
                ff.mirror.emplace(next, next);
                o.on_insert(next);
            }
            EXPECT_FALSE(access::table(ff.map).growing()) << "seed " << seed;
            for (int k = 0; k < 13; ++k) {
                ff.map.insert_or_assign(k, k + 1000);
                ff.mirror[k] = k + 1000;
            }
        });
    }
}

TEST(MapIterationI3, IterationStartedDuringGrowth) {
    // Begin iterating while old buckets are still being evacuated (the iterator must read unevacuated old
    // buckets and skip the sibling's keys), and keep inserting during the iteration.
    for (std::uint64_t seed = 1; seed <= 20; ++seed) {
        filled f{int_map{iterlock::seed{seed}}, {}};
        int i = 0;
        while (!access::table(f.map).growing() && i < 1000000) {
            f.map.insert({i, i});
            f.mirror.emplace(i, i);
            ++i;
        }
        ASSERT_TRUE(access::table(f.map).growing()) << "seed " << seed;
        int next = 1 << 20;
        iterate_with_writes(f, [&](int k, oracle& o, filled& ff) {
            if (k >= (1 << 20)) return;  // no inserts for inserted keys: keeps the iteration finite
            ff.map.insert({next, next});
            ff.mirror.emplace(next, next);
            o.on_insert(next);
            ++next;
        });
    }
}

TEST(MapIterationI3, MixedWritesWithGrowthFromRandomStream) {
    for (std::uint64_t seed = 1; seed <= 30; ++seed) {
        auto f = make_filled(static_cast<int>(seed * 37 % 300), seed);
        std::mt19937_64 rng(seed);
        int next = 5000;
        iterate_with_writes(f, [&](int k, oracle& o, filled& ff) {
            switch (rng() % 5) {
                case 0:  // erase the current entry
                    ff.map.erase(k);
                    ff.mirror.erase(k);
                    o.on_erase(k);
                    break;
                case 1: {  // erase some key, maybe ahead, maybe behind
                    const int victim = static_cast<int>(rng() % 300);
                    if (ff.map.erase(victim) == 1) {
                        ff.mirror.erase(victim);
                        o.on_erase(victim);
                    }
                    break;
                }
                case 2:
                case 3:  // a burst of new keys, growing the table (only for original keys: stays finite)
                    if (k >= 5000) break;
                    for (int j = 0; j < 8; ++j, ++next) {
                        ff.map.insert({next, next});
                        ff.mirror.emplace(next, next);
                        o.on_insert(next);
                    }
                    break;
                default:  // assign an existing key
                    ff.map.insert_or_assign(k, k + 1);
                    ff.mirror[k] = k + 1;
                    break;
            }
        });
    }
}

// ---- I4: every entry present for the whole iteration exactly once -----------------------------------------

TEST(MapIterationI4, UntouchedEntriesExactlyOnceWithoutWrites) {
    for (int n : {0, 1, 7, 8, 9, 53, 1000, 20000}) {
        auto f = make_filled(n, static_cast<std::uint64_t>(n) + 1);
        const auto produced = iterate_with_writes(f, [](int, oracle&, filled&) {});
        EXPECT_EQ(produced.size(), static_cast<std::size_t>(n));
        std::set<int> uniq(produced.begin(), produced.end());
        EXPECT_EQ(uniq.size(), static_cast<std::size_t>(n));
    }
}

TEST(MapIterationI4, UntouchedEntriesExactlyOnceThroughGrowth) {
    auto f = make_filled(1000, 77);
    int next = 50000;
    const auto produced = iterate_with_writes(f, [&](int k, oracle& o, filled& ff) {
        if (k >= 1000) return;  // inserted keys may be produced (I2); inserting for them could never end
        for (int j = 0; j < 20; ++j, ++next) {
            ff.map.insert({next, next});
            ff.mirror.emplace(next, next);
            o.on_insert(next);
        }
    });
    std::size_t old_keys = 0;
    for (int k : produced) old_keys += k < 1000 ? 1 : 0;
    EXPECT_EQ(old_keys, 1000u);
    EXPECT_EQ(f.map.size(), 1000u + 20000u);
}

TEST(MapIterationI4, AfterEraseHeavyChurnWithTombstones) {
    // Tombstones (emptyOne) left by erase must not hide or duplicate live entries.
    auto f = make_filled(4000, 5);
    for (int i = 0; i < 4000; i += 3) {
        f.map.erase(i);
        f.mirror.erase(i);
    }
    const auto produced = iterate_with_writes(f, [](int, oracle&, filled&) {});
    EXPECT_EQ(produced.size(), f.mirror.size());
}

// ---- I5: clear() during iteration ends it cleanly ---------------------------------------------------------

TEST(MapIterationI5, ClearEndsIterationAtNextIncrement) {
    for (int n : {1, 10, 1000}) {
        int_map m{iterlock::seed{3}};
        for (int i = 0; i < n; ++i) m.insert({i, i});
        auto it = m.begin();
        ASSERT_TRUE(it != m.end());
        m.clear();
        ++it;
        EXPECT_TRUE(it == m.end()) << "iterator must equal end() after clear() and one increment";
        EXPECT_TRUE(m.empty());
        m.check_invariants();
    }
}

TEST(MapIterationI5, ClearThenRefillDoesNotResume) {
    // The ended iteration stays ended even though the map holds entries again.
    int_map m{iterlock::seed{8}};
    for (int i = 0; i < 500; ++i) m.insert({i, i});
    std::size_t steps = 0;
    std::size_t refill_seen = 0;
    for (auto it = m.begin(); it != m.end(); ++it) {
        ++steps;
        if (it->first >= 1000) ++refill_seen;
        if (steps == 100) {
            m.clear();
            for (int i = 1000; i < 1500; ++i) m.insert({i, i});
        }
    }
    EXPECT_EQ(steps, 100u);
    EXPECT_EQ(refill_seen, 0u);
    EXPECT_EQ(m.size(), 500u);
    m.check_invariants();
}

TEST(MapIterationI5, GoStyleLoopThatClearsTerminates) {
    // for k := range m { if ... { clear(m) } }: the loop ends at the next step, not walking freed slots.
    for (std::size_t at : {1u, 50u, 300u}) {
        int_map m{iterlock::seed{10}};
        for (int i = 0; i < 300; ++i) m.insert({i, i});
        std::size_t steps = 0;
        for (auto it = m.begin(); it != m.end(); ++it) {
            ++steps;
            if (steps == at) m.clear();
        }
        EXPECT_EQ(steps, at);
        EXPECT_TRUE(m.empty());
    }
}

TEST(MapIterationI5, ClearDuringGrowthMidIteration) {
    auto f = make_filled(52, 6);
    std::size_t steps = 0;
    int next = 1000;
    for (auto it = f.map.begin(); it != f.map.end(); ++it) {
        ++steps;
        for (int j = 0; j < 30; ++j) f.map.insert({next++, 0});  // grows (and evacuates) under the iterator
        if (steps == 10) f.map.clear();
    }
    EXPECT_EQ(steps, 10u);
    EXPECT_TRUE(f.map.empty());
    f.map.check_invariants();
    for (int i = 0; i < 1000; ++i) f.map.insert({i, i});
    EXPECT_EQ(f.map.size(), 1000u);
    f.map.check_invariants();
}

TEST(MapIterationI5, OtherLiveIteratorsAlsoEnd) {
    int_map m{iterlock::seed{12}};
    for (int i = 0; i < 100; ++i) m.insert({i, i});
    auto a = m.begin();
    auto b = a;
    ++b;
    m.clear();
    ++a;
    ++b;
    EXPECT_TRUE(a == m.end());
    EXPECT_TRUE(b == m.end());
}

// ---- I6: randomized start, reproducible with a fixed seed -------------------------------------------------

TEST(MapIterationI6, StartIsRandomized) {
    int_map m;
    for (int i = 0; i < 100; ++i) m.insert({i, i});
    std::set<int> firsts;
    for (int r = 0; r < 50; ++r) firsts.insert(m.begin()->first);
    EXPECT_GT(firsts.size(), 1u) << "50 iterations of a 100-entry map all started at the same entry";
}

TEST(MapIterationI6, StartIsRandomizedForSmallMaps) {
    // Go randomizes the offset inside a bucket too, so even a one-bucket map starts at different entries.
    int_map m;
    for (int i = 0; i < 5; ++i) m.insert({i, i});
    std::set<int> firsts;
    for (int r = 0; r < 100; ++r) firsts.insert(m.begin()->first);
    EXPECT_GT(firsts.size(), 1u);
}

TEST(MapIterationI6, FixedSeedReproducesOrderSequence) {
    auto run = [](std::uint64_t seed) {
        int_map m{iterlock::seed{seed}};
        std::vector<std::vector<int>> orders;
        for (int i = 0; i < 300; ++i) m.insert({i * 3, i});
        for (int r = 0; r < 5; ++r) orders.push_back(keys_in_order(m));
        for (int i = 0; i < 100; ++i) m.erase(i * 3);
        for (int r = 0; r < 5; ++r) orders.push_back(keys_in_order(m));
        return orders;
    };
    EXPECT_EQ(run(99), run(99));
    EXPECT_NE(run(99), run(100));
}

TEST(MapIterationI6, SameSeedSameSequenceAcrossMaps) {
    int_map a{iterlock::seed{4242}};
    int_map b{iterlock::seed{4242}};
    for (int i = 0; i < 64; ++i) {
        a[i] = i;
        b[i] = i;
    }
    for (int r = 0; r < 10; ++r) EXPECT_EQ(keys_in_order(a), keys_in_order(b)) << "round " << r;
}

}  // namespace
