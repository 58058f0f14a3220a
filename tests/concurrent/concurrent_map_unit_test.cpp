// tests/concurrent/concurrent_map_unit_test.cpp: single-threaded tests of every member of
// iterlock::concurrent_map under both iteration policies (results, revision counting S6, string keys with
// heterogeneous lookup, snapshot isolation S1/S2 without concurrency, guard walks L6/L7, and the misuse that
// must raise lock_error instead of deadlocking).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/detail/concurrent/test_access.hpp"
#include "iterlock/detail/util/inplace_array.hpp"
#include "iterlock/errors.hpp"
#include "support/concurrent_maps.hpp"
#include "support/contents.hpp"
#include "support/element_types.hpp"

namespace {

using iterlock::lock_error;
using iterlock::seed;
using iterlock::test::contents;
using iterlock::test::locked_map;
using iterlock::test::snap_map;

// ---- members common to both policies ----------------------------------------------------------------------

template <class Map>
class CMapMembers : public ::testing::Test {};
using both_policies = ::testing::Types<snap_map<int, std::string>, locked_map<int, std::string>>;
TYPED_TEST_SUITE(CMapMembers, both_policies);

TYPED_TEST(CMapMembers, ShardCountIsAPowerOfTwo) {
    TypeParam def;
    EXPECT_GE(def.shard_count(), 16u);
    EXPECT_LE(def.shard_count(), 1024u);
    EXPECT_EQ(def.shard_count() & (def.shard_count() - 1), 0u);
    EXPECT_EQ(TypeParam(3).shard_count(), 4u);
    EXPECT_EQ(TypeParam(16).shard_count(), 16u);
    EXPECT_EQ(TypeParam(1000, seed{5}).shard_count(), 1024u);
    EXPECT_EQ(TypeParam(2).shard_count(), 2u);
}

// detail::inplace_array (the shards' storage): built in place, destroyed in reverse, and a constructor that
// throws leaves nothing behind (ASan's leak check runs this too).
struct counted_ctor {
    static inline int live = 0;
    static inline int built = 0;
    static inline int throw_at = -1;
    static inline std::vector<int> destroyed;
    int id;
    explicit counted_ctor(int base) : id(base + built) {
        if (built == throw_at) throw std::runtime_error("ctor");
        ++built;
        ++live;
    }
    ~counted_ctor() {
        --live;
        destroyed.push_back(id);
    }
    counted_ctor(const counted_ctor&) = delete;
    counted_ctor& operator=(const counted_ctor&) = delete;
};

// The write prefetch's path for this CPU (DESIGN.md, "Which path runs where"): PREFETCHW chosen by CPUID on
// x86-64, PRFM PSTL1KEEP on aarch64. A hint: on any line, the one just written included, it changes nothing.
TEST(CMapPlatform, PrefetchForWriteTakesThePathOfThisCpuAndChangesNothing) {
#if defined(__aarch64__)
    EXPECT_STREQ(iterlock::detail::prefetch_for_write_path, "aarch64 prfm pstl1keep");
#elif (defined(__x86_64__) || defined(__i386__)) && !defined(__PRFCHW__) && !ITERLOCK_DETAIL_ASAN
    EXPECT_EQ(ITERLOCK_DETAIL_PREFETCHW_AT_RUN_TIME, 1);
#endif
    std::printf("prefetch_for_write: %s\n", iterlock::detail::prefetch_for_write_path);
    alignas(64) std::uint64_t line[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (auto& w : line) iterlock::detail::prefetch_for_write(&w);
    for (std::uint64_t i = 0; i < 8; ++i) EXPECT_EQ(line[i], i + 1);
}

TEST(InplaceArray, BuildsInPlaceAndDestroysInReverse) {
    counted_ctor::built = 0;
    counted_ctor::throw_at = -1;
    counted_ctor::destroyed.clear();
    {
        iterlock::detail::inplace_array<counted_ctor> a(4, 100);
        ASSERT_EQ(a.size(), 4u);
        EXPECT_EQ(counted_ctor::live, 4);
        for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].id, 100 + static_cast<int>(i));
        EXPECT_EQ(a.end() - a.begin(), 4);
    }
    EXPECT_EQ(counted_ctor::live, 0);
    EXPECT_EQ(counted_ctor::destroyed, (std::vector<int>{103, 102, 101, 100}));
}

TEST(InplaceArray, AThrowingConstructorLeavesNothingBehind) {
    counted_ctor::built = 0;
    counted_ctor::throw_at = 2;
    counted_ctor::destroyed.clear();
    EXPECT_THROW(iterlock::detail::inplace_array<counted_ctor>(5, 0), std::runtime_error);
    EXPECT_EQ(counted_ctor::live, 0);
    EXPECT_EQ(counted_ctor::destroyed, (std::vector<int>{1, 0}));
}

// concurrent_map(1): a single shard (shard choice once shifted a 64-bit value by 64).
TYPED_TEST(CMapMembers, OneShardWorks) {
    TypeParam m(1, seed{1});
    EXPECT_EQ(m.shard_count(), 1u);
    for (int i = 0; i < 100; ++i) EXPECT_TRUE(m.insert({i, std::to_string(i)}));
    EXPECT_EQ(m.size(), 100u);
    EXPECT_EQ(contents(m).size(), 100u);
}

TYPED_TEST(CMapMembers, InsertDoesNotOverwrite) {
    TypeParam m(4, seed{1});
    EXPECT_TRUE(m.empty());
    EXPECT_TRUE(m.insert({1, "one"}));
    EXPECT_FALSE(m.insert({1, "uno"}));
    std::pair<const int, std::string> p{2, "two"};
    EXPECT_TRUE(m.insert(p));
    EXPECT_EQ(m.find(1), std::optional<std::string>("one"));
    EXPECT_EQ(m.find(2), std::optional<std::string>("two"));
    EXPECT_EQ(m.find(3), std::nullopt);
    EXPECT_TRUE(m.contains(2));
    EXPECT_FALSE(m.contains(3));
    EXPECT_EQ(m.size(), 2u);
    EXPECT_FALSE(m.empty());
}

TYPED_TEST(CMapMembers, TryEmplaceConstructsInPlaceOnlyWhenAbsent) {
    TypeParam m(4, seed{2});
    EXPECT_TRUE(m.try_emplace(7, 3u, 'x'));
    EXPECT_EQ(m.find(7), std::optional<std::string>("xxx"));
    EXPECT_FALSE(m.try_emplace(7, 5u, 'y'));
    EXPECT_EQ(m.find(7), std::optional<std::string>("xxx"));
    EXPECT_EQ(m.size(), 1u);
}

TYPED_TEST(CMapMembers, InsertOrAssignReportsInsertion) {
    TypeParam m(4, seed{3});
    EXPECT_TRUE(m.insert_or_assign(5, std::string("a")));
    EXPECT_FALSE(m.insert_or_assign(5, std::string("b")));
    EXPECT_EQ(m.find(5), std::optional<std::string>("b"));
    EXPECT_EQ(m.size(), 1u);
}

TYPED_TEST(CMapMembers, VisitorsSeeAndChangeTheEntry) {
    TypeParam m(4, seed{4});
    m.insert({1, "a"});
    int calls = 0;
    EXPECT_FALSE(m.cvisit(2, [&](const int&, const std::string&) { ++calls; }));
    EXPECT_FALSE(m.visit(2, [&](const int&, std::string&) { ++calls; }));
    EXPECT_FALSE(m.update(2, [&](std::string&) { ++calls; }));
    EXPECT_EQ(calls, 0);
    EXPECT_TRUE(m.cvisit(1, [&](const int& k, const std::string& v) {
        EXPECT_EQ(k, 1);
        EXPECT_EQ(v, "a");
        ++calls;
    }));
    EXPECT_TRUE(m.visit(1, [&](const int& k, std::string& v) {
        EXPECT_EQ(k, 1);
        v += "b";
        ++calls;
    }));
    EXPECT_TRUE(m.update(1, [&](std::string& v) {
        v += "c";
        ++calls;
    }));
    EXPECT_EQ(calls, 3);
    EXPECT_EQ(m.find(1), std::optional<std::string>("abc"));
    EXPECT_FALSE(m.contains(2));
}

TYPED_TEST(CMapMembers, EraseReturnsHowManyWereRemoved) {
    TypeParam m(4, seed{5});
    m.insert({1, "a"});
    EXPECT_EQ(m.erase(1), 1u);
    EXPECT_EQ(m.erase(1), 0u);
    EXPECT_EQ(m.erase(99), 0u);
    EXPECT_TRUE(m.empty());
    EXPECT_TRUE(m.insert({1, "again"}));
    EXPECT_EQ(m.find(1), std::optional<std::string>("again"));
}

TYPED_TEST(CMapMembers, EraseIfTakesBothPredicateForms) {
    TypeParam m(8, seed{6});
    for (int i = 0; i < 1000; ++i) m.insert({i, std::to_string(i)});
    EXPECT_EQ(m.erase_if([](const int& k, std::string&) { return k % 3 == 0; }), 334u);
    EXPECT_EQ(m.size(), 666u);
    EXPECT_EQ(m.erase_if([](std::pair<const int, std::string>& e) { return e.second.size() == 1; }), 6u);
    EXPECT_EQ(m.erase_if([](const int&, std::string&) { return false; }), 0u);
    const auto c = contents(m);
    EXPECT_EQ(c.size(), 660u);
    for (int i = 0; i < 1000; ++i) {
        const bool kept = i % 3 != 0 && i >= 10;
        EXPECT_EQ(c.count(i), kept ? 1u : 0u) << i;
        EXPECT_EQ(m.contains(i), kept) << i;
    }
}

TYPED_TEST(CMapMembers, ClearEmptiesEveryShard) {
    TypeParam m(8, seed{7});
    for (int i = 0; i < 5000; ++i) m.insert({i, "v"});
    m.clear();
    EXPECT_EQ(m.size(), 0u);
    EXPECT_TRUE(m.empty());
    EXPECT_TRUE(contents(m).empty());
    for (int i = 0; i < 5000; i += 97) EXPECT_FALSE(m.contains(i));
    m.clear();  // clearing an empty map is fine
    EXPECT_TRUE(m.insert({3, "x"}));
    EXPECT_EQ(m.size(), 1u);
}

TYPED_TEST(CMapMembers, ReserveThenFillKeepsEverything) {
    TypeParam m(4, seed{8});
    m.reserve(20000);
    EXPECT_EQ(m.size(), 0u);
    EXPECT_EQ(m.revision(), 0u) << "reserve is not a write";
    for (int i = 0; i < 20000; ++i) ASSERT_TRUE(m.insert({i, std::to_string(i)}));
    EXPECT_EQ(m.size(), 20000u);
    for (int i = 0; i < 20000; i += 13) ASSERT_EQ(m.find(i), std::optional<std::string>(std::to_string(i)));
    m.reserve(10);  // a hint smaller than the content changes nothing
    EXPECT_EQ(contents(m).size(), 20000u);
}

TYPED_TEST(CMapMembers, GrowthKeepsEveryEntry) {
    TypeParam m(2, seed{9});
    for (int i = 0; i < 30000; ++i) ASSERT_TRUE(m.insert_or_assign(i, std::to_string(i)));
    for (int i = 0; i < 30000; i += 2) ASSERT_EQ(m.erase(i), 1u);
    EXPECT_EQ(m.size(), 15000u);
    const auto c = contents(m);
    ASSERT_EQ(c.size(), 15000u);
    for (const auto& [k, v] : c) {
        EXPECT_EQ(k % 2, 1);
        EXPECT_EQ(v, std::to_string(k));
    }
}

// S6: one revision per successful write; failed writes and reads count nothing.
TYPED_TEST(CMapMembers, S6_RevisionCountsSuccessfulWritesOnly) {
    TypeParam m(4, seed{10});
    EXPECT_EQ(m.revision(), 0u);
    std::uint64_t r = 0;
    auto expect_delta = [&](std::uint64_t d, const char* what) {
        r += d;
        EXPECT_EQ(m.revision(), r) << what;
    };
    m.insert({1, "a"});
    expect_delta(1, "insert");
    m.insert({1, "b"});
    expect_delta(0, "insert of a present key");
    m.try_emplace(2, "b");
    expect_delta(1, "try_emplace");
    m.try_emplace(2, "c");
    expect_delta(0, "try_emplace of a present key");
    m.insert_or_assign(3, std::string("c"));
    expect_delta(1, "insert_or_assign (insert)");
    m.insert_or_assign(3, std::string("d"));
    expect_delta(1, "insert_or_assign (assign)");
    m.visit(3, [](const int&, std::string& v) { v = "e"; });
    expect_delta(1, "visit");
    m.visit(4, [](const int&, std::string&) {});
    expect_delta(0, "visit of an absent key");
    m.update(3, [](std::string& v) { v = "f"; });
    expect_delta(1, "update");
    m.update(4, [](std::string&) {});
    expect_delta(0, "update of an absent key");
    m.erase(3);
    expect_delta(1, "erase");
    m.erase(3);
    expect_delta(0, "erase of an absent key");
    (void)m.find(1);
    (void)m.contains(1);
    m.cvisit(1, [](const int&, const std::string&) {});
    expect_delta(0, "reads");
    for (int i = 10; i < 20; ++i) m.insert({i, "x"});
    expect_delta(10, "ten inserts");
    m.erase_if([](const int& k, std::string&) { return k >= 15; });
    expect_delta(5, "erase_if of five entries (one write per entry erased)");
    m.erase_if([](const int&, std::string&) { return false; });
    expect_delta(0, "erase_if that erases nothing");
    const std::size_t n = m.size();
    m.clear();
    expect_delta(n, "clear (one write per entry erased)");
    m.clear();
    expect_delta(0, "clear of an empty map");
}

// Misuse that would self-deadlock on the shard lock raises lock_error and leaves the map usable.
TYPED_TEST(CMapMembers, UsingTheMapInsideItsCallbacksThrows) {
    TypeParam m(4, seed{11});
    m.insert({1, "a"});
    m.insert({2, "b"});
    EXPECT_THROW(m.cvisit(1, [&](const int&, const std::string&) { (void)m.find(2); }), lock_error);
    EXPECT_THROW(m.cvisit(1, [&](const int&, const std::string&) { (void)m.find(1); }), lock_error);
    EXPECT_THROW(m.visit(1, [&](const int&, std::string&) { m.insert({3, "c"}); }), lock_error);
    EXPECT_THROW(m.visit(1, [&](const int&, std::string&) { (void)m.contains(2); }), lock_error);
    EXPECT_THROW(m.update(1, [&](std::string&) { m.erase(2); }), lock_error);
    EXPECT_THROW(m.update(1, [&](std::string&) { m.cvisit(2, [](const int&, const std::string&) {}); }),
                 lock_error);
    EXPECT_THROW(m.erase_if([&](const int&, std::string&) { return m.erase(2) == 1; }), lock_error);
    EXPECT_THROW(m.visit(1, [&](const int&, std::string&) { m.clear(); }), lock_error);
    if constexpr (requires { m.snapshot(); }) {
        auto s = m.snapshot();
        EXPECT_THROW(m.cvisit(1, [&](const int&, const std::string&) { (void)s.find(2); }), lock_error);
        EXPECT_THROW(m.visit(1, [&](const int&, std::string&) { (void)s.begin(); }), lock_error);
        EXPECT_THROW(m.update(1, [&](std::string&) { (void)s.size(); }), lock_error);
    } else {
        EXPECT_THROW(m.visit(1, [&](const int&, std::string&) { (void)m.lock_for_iteration(); }), lock_error);
        EXPECT_THROW(m.cvisit(1,
                              [&](const int&, const std::string&) {
                                  (void)m.try_lock_for_iteration(std::chrono::milliseconds(1));
                              }),
                     lock_error);
    }
    // Nothing leaked: every lock was released, the map still reads and writes, nothing changed.
    EXPECT_EQ(m.find(1), std::optional<std::string>("a"));
    EXPECT_EQ(m.find(2), std::optional<std::string>("b"));
    EXPECT_FALSE(m.contains(3));
    EXPECT_TRUE(m.insert({3, "c"}));
    EXPECT_EQ(m.erase(3), 1u);
    EXPECT_EQ(contents(m).size(), 2u);
    // A different map may be used from inside a callback.
    TypeParam other(4, seed{12});
    EXPECT_TRUE(m.visit(1, [&](const int& k, std::string& v) { EXPECT_TRUE(other.insert({k, v})); }));
    EXPECT_EQ(other.find(1), std::optional<std::string>("a"));
}

// ---- string keys, heterogeneous lookup --------------------------------------------------------------------

template <class Map>
class CMapStringKeys : public ::testing::Test {};
using string_maps =
    ::testing::Types<snap_map<std::string, int, iterlock::hash<std::string>, std::equal_to<>>,
                     locked_map<std::string, int, iterlock::hash<std::string>, std::equal_to<>>>;
TYPED_TEST_SUITE(CMapStringKeys, string_maps);

TYPED_TEST(CMapStringKeys, HeterogeneousLookupFindsTheSameEntries) {
    TypeParam m(8, seed{13});
    for (int i = 0; i < 2000; ++i) ASSERT_TRUE(m.insert({"key-" + std::to_string(i), i}));
    ASSERT_TRUE(m.insert({std::string(40, 'L'), -1}));  // longer than a 16-byte hash block
    for (int i = 0; i < 2000; i += 7) {
        const std::string k = "key-" + std::to_string(i);
        const std::string_view sv(k);
        EXPECT_EQ(m.find(sv), std::optional<int>(i));
        EXPECT_EQ(m.find(k), std::optional<int>(i));
        EXPECT_TRUE(m.contains(sv));
        int seen = -100;
        EXPECT_TRUE(m.cvisit(sv, [&](const std::string& key, const int& v) {
            EXPECT_EQ(key, k);
            seen = v;
        }));
        EXPECT_EQ(seen, i);
    }
    EXPECT_EQ(m.find(std::string_view(std::string(40, 'L'))), std::optional<int>(-1));
    EXPECT_EQ(m.find("key-5"), std::optional<int>(5));
    EXPECT_FALSE(m.contains(std::string_view("key-2000")));
    EXPECT_EQ(m.find(std::string_view("")), std::nullopt);
    EXPECT_TRUE(m.update(std::string_view("key-3"), [](int& v) { v = 333; }));
    EXPECT_EQ(m.find("key-3"), std::optional<int>(333));
    EXPECT_TRUE(m.visit(std::string_view("key-4"), [](const std::string&, int& v) { v = 444; }));
    EXPECT_EQ(m.find("key-4"), std::optional<int>(444));
    EXPECT_EQ(m.erase(std::string_view("key-1")), 1u);
    EXPECT_EQ(m.erase(std::string_view("key-1")), 0u);
    EXPECT_FALSE(m.contains("key-1"));
    EXPECT_TRUE(m.try_emplace(std::string("fresh"), 1));
    EXPECT_TRUE(m.insert_or_assign(std::string("fresh2"), 2));
    EXPECT_EQ(m.size(), 2002u);
    if constexpr (requires { m.snapshot(); }) {
        auto s = m.snapshot();
        EXPECT_EQ(s.find(std::string_view("key-3")), std::optional<int>(333));
        EXPECT_TRUE(s.contains("key-10"));
        EXPECT_FALSE(s.contains("key-1"));
        EXPECT_EQ(s.size(), 2002u);
    }
    EXPECT_EQ(contents(m).size(), 2002u);
}

// ---- snapshot policy --------------------------------------------------------------------------------------

TEST(CMapSnapshotUnit, S2_EmptyMapSnapshot) {
    snap_map<int, int> m(4, seed{20});
    auto s = m.snapshot();
    EXPECT_EQ(s.size(), 0u);
    EXPECT_TRUE(s.empty());
    EXPECT_EQ(s.revision(), 0u);
    EXPECT_TRUE(s.begin() == s.end());
    EXPECT_EQ(s.find(1), std::nullopt);
    EXPECT_EQ(m.snapshots_alive(), 1u);
}

// S1/S2 without concurrency: a snapshot keeps the state of its instant whatever is written afterwards.
TEST(CMapSnapshotUnit, S1_S2_LaterWritesAreInvisible) {
    snap_map<int, std::string> m(4, seed{21});
    for (int i = 0; i < 3000; ++i) m.insert({i, std::to_string(i)});
    const std::uint64_t rev = m.revision();
    auto s = m.snapshot();
    EXPECT_EQ(s.revision(), rev);
    for (int i = 0; i < 3000; i += 2) m.erase(i);                                 // erase half
    for (int i = 1; i < 3000; i += 4) m.insert_or_assign(i, std::string("new"));  // assign some
    for (int i = 3000; i < 9000; ++i) m.insert({i, "grown"});                     // make it grow
    m.update(1, [](std::string& v) { v = "updated"; });
    m.erase_if([](const int& k, std::string&) { return k % 5 == 0; });
    EXPECT_NE(m.revision(), rev);
    EXPECT_EQ(s.revision(), rev);
    EXPECT_EQ(s.size(), 3000u);
    std::set<int> seen;
    for (const auto& [k, v] : s) {
        EXPECT_TRUE(seen.insert(k).second) << "duplicate " << k;
        EXPECT_EQ(v, std::to_string(k));
    }
    EXPECT_EQ(seen.size(), 3000u);
    EXPECT_EQ(*seen.begin(), 0);
    EXPECT_EQ(*seen.rbegin(), 2999);
    for (int i = 0; i < 9000; i += 11) {
        EXPECT_EQ(s.find(i), i < 3000 ? std::optional<std::string>(std::to_string(i)) : std::nullopt) << i;
        EXPECT_EQ(s.contains(i), i < 3000);
    }
    m.clear();
    EXPECT_EQ(s.size(), 3000u);
    std::size_t n = 0;
    for (auto it = s.begin(); it != s.end(); ++it) {
        EXPECT_EQ(it->second, std::to_string(it->first));
        ++n;
    }
    EXPECT_EQ(n, 3000u);
    EXPECT_GT(m.preserved_bytes(), 0u);
}

TEST(CMapSnapshotUnit, SnapshotsAreMovable) {
    snap_map<int, int> m(4, seed{22});
    m.insert({1, 10});
    auto a = m.snapshot();
    m.insert({2, 20});
    auto b = m.snapshot();
    EXPECT_EQ(m.snapshots_alive(), 2u);
    auto c = std::move(a);
    EXPECT_EQ(m.snapshots_alive(), 2u);
    EXPECT_EQ(c.size(), 1u);
    c = std::move(b);  // releases c's first snapshot
    EXPECT_EQ(m.snapshots_alive(), 1u);
    EXPECT_EQ(c.size(), 2u);
    EXPECT_EQ(c.find(2), std::optional<int>(20));
    {
        auto d = std::move(c);
        EXPECT_EQ(m.snapshots_alive(), 1u);
    }
    EXPECT_EQ(m.snapshots_alive(), 0u);
    EXPECT_EQ(m.preserved_bytes(), 0u);
}

// S5 with several overlapping snapshots: each keeps its own instant, and preserved memory goes when the last
// one that needs it ends, in whatever order they end.
TEST(CMapSnapshotUnit, S5_OverlappingSnapshotsReleasedInEveryOrder) {
    const std::vector<std::vector<int>> orders = {{0, 1, 2}, {2, 1, 0}, {1, 0, 2},
                                                  {1, 2, 0}, {0, 2, 1}, {2, 0, 1}};
    for (const auto& order : orders) {
        snap_map<int, int> m(4, seed{23});
        std::vector<std::map<int, int>> expected;
        std::vector<std::optional<snap_map<int, int>::snapshot_view>> snaps;
        std::map<int, int> model;
        int next = 0;
        for (int phase = 0; phase < 3; ++phase) {
            for (int i = 0; i < 500; ++i, ++next) {
                m.insert_or_assign(next, next * 10 + phase);
                model[next] = next * 10 + phase;
            }
            for (int i = 0; i < next; i += 3) {
                m.insert_or_assign(i, phase * 1000 + i);
                model[i] = phase * 1000 + i;
            }
            for (int i = phase; i < next; i += 7) {
                m.erase(i);
                model.erase(i);
            }
            snaps.emplace_back(m.snapshot());
            expected.push_back(model);
        }
        for (int i = 0; i < next; ++i) m.insert_or_assign(i, -i);  // change everything once more
        for (std::size_t r = 0; r < order.size(); ++r) {
            snaps[static_cast<std::size_t>(order[r])].reset();
            for (std::size_t j = 0; j < snaps.size(); ++j) {
                if (!snaps[j]) continue;
                std::map<int, int> got;
                for (const auto& [k, v] : *snaps[j]) got.emplace(k, v);
                EXPECT_EQ(got, expected[j]) << "snapshot " << j << " after releasing " << r + 1;
                EXPECT_EQ(snaps[j]->size(), expected[j].size());
            }
            if (r + 1 < order.size()) EXPECT_GT(m.preserved_bytes(), 0u);
        }
        EXPECT_EQ(m.snapshots_alive(), 0u);
        EXPECT_EQ(m.preserved_bytes(), 0u);
        EXPECT_EQ(contents(m).size(), static_cast<std::size_t>(next));
    }
}

// ---- locked policy ----------------------------------------------------------------------------------------

TEST(CMapGuardUnit, WalkSeesEveryEntryOnceAndMayAssign) {
    locked_map<int, int> m(8, seed{30});
    for (int i = 0; i < 5000; ++i) m.insert({i, i});
    {
        auto g = m.lock_for_iteration();
        EXPECT_TRUE(g.owns_lock());
        EXPECT_TRUE(static_cast<bool>(g));
        EXPECT_EQ(g.size(), 5000u);
        std::set<int> seen;
        for (auto& [k, v] : g) {
            EXPECT_TRUE(seen.insert(k).second) << "duplicate " << k;
            v = -k;  // assignment through the iterator
        }
        EXPECT_EQ(seen.size(), 5000u);
    }
    for (int i = 0; i < 5000; i += 17) EXPECT_EQ(m.find(i), std::optional<int>(-i));
    EXPECT_EQ(m.revision(), 5000u) << "assignments through a guard's iterator are not counted writes";
}

TEST(CMapGuardUnit, EmptyMapWalk) {
    locked_map<int, int> m(4, seed{31});
    auto g = m.lock_for_iteration();
    EXPECT_TRUE(g.begin() == g.end());
    EXPECT_EQ(g.size(), 0u);
}

TEST(CMapGuardUnit, TryLockSucceedsWhenFree) {
    locked_map<int, int> m(4, seed{32});
    m.insert({1, 1});
    auto g = m.try_lock_for_iteration(std::chrono::milliseconds(5));
    ASSERT_TRUE(g);
    EXPECT_TRUE(g.owns_lock());
    int n = 0;
    for (auto& e : g) n += e.second;
    EXPECT_EQ(n, 1);
}

// L7 on one thread: a nested guard shares the outer one's locks; writes resume when both are gone.
TEST(CMapGuardUnit, L7_NestedGuardsOnOneThread) {
    locked_map<int, int> m(4, seed{33});
    for (int i = 0; i < 100; ++i) m.insert({i, i});
    {
        auto outer = m.lock_for_iteration();
        auto inner = m.lock_for_iteration();
        auto timed = m.try_lock_for_iteration(std::chrono::milliseconds(1));
        ASSERT_TRUE(timed);
        std::size_t n = 0;
        for (auto& e : inner) n += e.first >= 0 ? 1 : 0;
        EXPECT_EQ(n, 100u);
    }
    EXPECT_TRUE(m.insert({100, 100}));
    EXPECT_EQ(m.size(), 101u);
}

// L6 with I1/I4: the only guard holder erases every odd key while walking: each key is produced at most once,
// every even key exactly once, an odd key erased before the walk reached it is never produced.
// ---- issue 13: guards that cannot dangle or wander, and the locked alias

// Item 11 (G1): a guard is neither copyable nor movable, so it cannot be moved into an std::optional or to
// another thread; guaranteed copy elision still lets a function return one by value.
TEST(CMapGuardUnit, G1_Item11_GuardIsNotMovableYetReturnsByValue) {
    using map_t = locked_map<int, int>;
    using guard = map_t::iteration_guard;
    EXPECT_FALSE(std::is_move_constructible_v<guard>);
    EXPECT_FALSE(std::is_move_assignable_v<guard>);
    EXPECT_FALSE(std::is_copy_constructible_v<guard>);
    EXPECT_FALSE((std::is_constructible_v<std::optional<guard>, guard&&>));
    map_t m(4, seed{70});
    m.insert({1, 1});
    auto take = [&m]() -> guard { return m.lock_for_iteration(); };
    auto g = take();
    ASSERT_TRUE(g);
    int n = 0;
    for (auto& e : g) n += e.second;
    EXPECT_EQ(n, 1);
}

// Item 12 (L5, G3): try_lock_for_iteration returns the guard itself (it tests as bool), so a range-for
// straight over the call holds every shard for the whole loop instead of walking a dead std::optional.
TEST(CMapGuardUnit, L5_G3_Item12_RangeForOverTryLockHoldsTheLocksForTheWholeLoop) {
    using map_t = locked_map<int, int>;
    using access = iterlock::detail::concurrent_map_test_access;
    EXPECT_TRUE(
        (std::is_same_v<decltype(std::declval<map_t&>().try_lock_for_iteration(std::chrono::milliseconds(5))),
                        map_t::iteration_guard>));
    map_t m(4, seed{71});
    for (int i = 0; i < 100; ++i) m.insert({i, i});
    int n = 0;
    for (auto& [k, v] : m.try_lock_for_iteration(std::chrono::milliseconds(5))) {
        for (std::size_t i = 0; i < m.shard_count(); ++i)
            ASSERT_EQ(access::iterations_held(m, i), 1u) << "shard " << i << " released during the loop";
        v = -k;
        ++n;
    }
    EXPECT_EQ(n, 100);
    for (std::size_t i = 0; i < m.shard_count(); ++i) EXPECT_EQ(access::iterations_held(m, i), 0u);
    if (auto g = m.try_lock_for_iteration(std::chrono::milliseconds(5))) {
        EXPECT_EQ(g.size(), 100u);
    } else {
        ADD_FAILURE() << "an uncontended try_lock_for_iteration failed";
    }
    EXPECT_EQ(m.find(7), std::optional<int>(-7));
}

// Item 15 (a): locked_concurrent_map names the locked policy without the other four parameters.
TEST(CMapGuardUnit, Item15_LockedAliasNamesTheLockedPolicy) {
    using alias = iterlock::locked_concurrent_map<std::string, int>;
    EXPECT_TRUE(
        (std::is_same_v<alias,
                        iterlock::concurrent_map<
                            std::string, int, iterlock::hash<std::string>, std::equal_to<std::string>,
                            std::allocator<std::pair<const std::string, int>>, iterlock::locked_iteration>>));
    alias m;
    m.insert({"a", 1});
    m.insert({"b", 2});
    {
        auto g = m.lock_for_iteration();
        for (auto& [k, v] : g) v *= 10;
    }
    EXPECT_EQ(m.find("b"), std::optional<int>(20));
    EXPECT_STREQ(m.metrics().policy, "locked");
}

// Item 3 (G4): a guard that outlives its map aborts with a message in the user's terms, not the shard
// lock's internal one; so do the other locks a dying map may still hold (a callback of the map itself).
void destroy_map_under_a_guard() {
    auto m = std::make_unique<locked_map<int, int>>(4, seed{72});
    m->insert({1, 1});
    auto g = m->lock_for_iteration();
    m.reset();
}
template <class Map, bool Shared>
void destroy_map_inside_its_callback() {
    auto m = std::make_unique<Map>(4, seed{73});
    m->insert({1, 1});
    if constexpr (Shared) {
        m->cvisit(1, [&](const int&, const int&) { m.reset(); });
    } else {
        m->visit(1, [&](const int&, int&) { m.reset(); });
    }
}
TEST(CMapGuardDeathTest, G4_Item03_MapDestroyedUnderAGuardSaysSo) {
    EXPECT_DEATH(destroy_map_under_a_guard(),
                 "concurrent_map destroyed while an iteration guard \\(lock_for_iteration");
}
TEST(CMapGuardDeathTest, Item03_MapDestroyedInsideItsOwnCallbackSaysSo) {
    const char* msg = "concurrent_map destroyed while a call on it is still running";
    EXPECT_DEATH((destroy_map_inside_its_callback<snap_map<int, int>, false>()), msg);
    EXPECT_DEATH((destroy_map_inside_its_callback<locked_map<int, int>, true>()), msg);
}

TEST(CMapGuardUnit, L6_IterateAndEraseOddKeys) {
    for (std::uint64_t sd = 40; sd < 48; ++sd) {
        locked_map<int, int> m(4, seed{sd});
        const int n = 4000;
        for (int i = 0; i < n; ++i) m.insert({i, i});
        std::set<int> seen;
        std::set<int> erased_early;  // odd keys erased before the walk produced them
        {
            auto g = m.lock_for_iteration();
            for (auto& [k, v] : g) {
                EXPECT_TRUE(seen.insert(k).second) << "produced twice: " << k;
                EXPECT_EQ(erased_early.count(k), 0u) << "I1: erased before reached but produced: " << k;
                EXPECT_EQ(v, k);
                if (k % 2 == 1) {
                    m.erase(k);  // the current entry
                } else if (k + 1 < n && seen.count(k + 1) == 0 && m.erase(k + 1) == 1) {
                    erased_early.insert(k + 1);  // an entry not reached yet
                }
            }
        }
        for (int i = 0; i < n; i += 2) EXPECT_EQ(seen.count(i), 1u) << "I4: even key not produced: " << i;
        EXPECT_EQ(m.size(), static_cast<std::size_t>(n / 2));
        EXPECT_EQ(m.revision(), static_cast<std::uint64_t>(n + n / 2));
        std::set<int> left;
        for (auto& e : m.lock_for_iteration()) left.insert(e.first);
        EXPECT_EQ(left.size(), static_cast<std::size_t>(n / 2));
        for (int k : left) EXPECT_EQ(k % 2, 0);
    }
}

// L6 with I2/I3: inserting during the walk (enough to make shards grow) never produces an entry twice and
// produces every entry that was present throughout.
TEST(CMapGuardUnit, L6_InsertDuringWalkProducesNoDuplicates) {
    locked_map<int, int> m(2, seed{50});
    for (int i = 0; i < 200; ++i) m.insert({i, i});
    std::set<int> seen;
    {
        auto g = m.lock_for_iteration();
        int next = 1000;
        for (auto& [k, v] : g) {
            EXPECT_TRUE(seen.insert(k).second) << "produced twice: " << k;
            EXPECT_EQ(v, k);
            if (k < 200) {  // only the original entries insert (an inserted one may be produced, I2)
                for (int j = 0; j < 10; ++j, ++next) m.insert({next, next});
            }
        }
    }
    for (int i = 0; i < 200; ++i) EXPECT_EQ(seen.count(i), 1u) << i;
    EXPECT_EQ(m.size(), 200u + 2000u);
}

// L1/L6: a guard registers as an iterator only with the shards its holder writes to (so a walk that
// writes nothing touches no table), before that write; the registration ends with the guard, nested guards
// included (L7), and writes after it are ordinary again (growth evacuates as it goes).
TEST(CMapGuardUnit, L6_GuardRegistersOnlyWhereItsHolderWrites) {
    using access = iterlock::detail::concurrent_map_test_access;
    locked_map<int, int> m(4, seed{51});
    for (int i = 0; i < 100; ++i) m.insert({i, i});
    {
        auto g = m.lock_for_iteration();
        std::size_t walked = 0;
        for (auto& kv : g) walked += kv.first >= 0 ? 1 : 0;
        EXPECT_EQ(walked, 100u);
        EXPECT_EQ(access::tables_with_iterators(m), 0u);
        m.insert({1000, 1000});  // one shard
        EXPECT_EQ(access::tables_with_iterators(m), 1u);
        {
            auto inner = m.lock_for_iteration();  // L7: shares the outer guard's holds and registration
            for (int k = 2000; k < 2400; ++k) m.insert({k, k});  // every shard
            EXPECT_EQ(access::tables_with_iterators(m), 4u);
        }
        EXPECT_EQ(access::tables_with_iterators(m), 4u);
    }
    EXPECT_EQ(access::tables_with_iterators(m), 0u);
    for (int k = 3000; k < 3400; ++k) m.insert({k, k});
    EXPECT_EQ(access::tables_with_iterators(m), 0u);
    EXPECT_EQ(m.size(), 100u + 1u + 400u + 400u);
    auto g = m.lock_for_iteration();
    std::set<int> seen;
    for (auto& kv : g) EXPECT_TRUE(seen.insert(kv.first).second) << kv.first;
    EXPECT_EQ(seen.size(), m.size());
}

// A snapshot walk's iterator: copies share their batch and compare equal at equal positions; the end
// compares equal to a default-constructed iterator; a batch that outgrows its buffer (constant_hash: the
// whole map is one chain, so the first batch grows while copying) yields every entry once, on the
// sequence-lock path (trivially copyable entries) and on the locked one (strings).
TEST(CMapSnapshotUnit, S2_IteratorEqualityAndGrowingBatches) {
    iterlock::concurrent_map<int, int, iterlock::test::constant_hash> m(1, seed{52});
    for (int i = 0; i < 1500; ++i) m.insert({i, i});
    auto s = m.snapshot();
    auto a = s.begin();
    auto b = a;
    EXPECT_TRUE(a == b);
    ++b;
    EXPECT_FALSE(a == b);
    std::set<int> seen;
    for (auto it = s.begin(); it != s.end(); ++it) {
        EXPECT_EQ(it->second, it->first);
        EXPECT_TRUE(seen.insert(it->first).second) << it->first;
    }
    EXPECT_EQ(seen.size(), 1500u);
    EXPECT_TRUE(decltype(s.begin())() == s.end());
    iterlock::concurrent_map<std::string, std::string, iterlock::test::constant_hash> ms(1, seed{53});
    for (int i = 0; i < 1500; ++i) ms.insert({std::to_string(i), std::string(40, 'x')});
    auto ss = ms.snapshot();
    std::set<std::string> keys;
    for (const auto& [k, v] : ss) {
        EXPECT_EQ(v, std::string(40, 'x'));
        EXPECT_TRUE(keys.insert(k).second) << k;
    }
    EXPECT_EQ(keys.size(), 1500u);
}

// The walks go shard by shard (a guard's iterator steps each shard's table in turn; a snapshot copies
// batches of buckets, a chain's overflow members out of line): at every fill of 64 shards, most of them
// empty at the small sizes, from whatever shard a walk starts at, each entry comes exactly once, also when
// one hash puts every key into one chain of overflow members.
template <class Map>
void expect_each_entry_once_at_every_fill() {
    for (int n : {0, 1, 2, 3, 63, 64, 65, 200, 3000}) {
        for (std::uint64_t round = 0; round < 3; ++round) {
            Map m(64, seed{70 + round});
            for (int i = 0; i < n; ++i) m.insert({i, i + 1});
            std::vector<int> seen;
            auto record = [&](int k, int v) {
                EXPECT_EQ(v, k + 1);
                seen.push_back(k);
            };
            if constexpr (requires(Map & x) { x.snapshot(); }) {
                const auto s = m.snapshot();
                for (const auto& [k, v] : s) record(k, v);
            } else {
                auto g = m.lock_for_iteration();
                for (auto& [k, v] : g) record(k, v);
            }
            std::sort(seen.begin(), seen.end());
            ASSERT_EQ(seen.size(), static_cast<std::size_t>(n)) << "n = " << n << ", round " << round;
            for (int i = 0; i < n; ++i) ASSERT_EQ(seen[static_cast<std::size_t>(i)], i) << "n = " << n;
        }
    }
}

TEST(CMapWalkUnit, LockedWalkVisitsEachEntryOnceAtEveryFill) {
    expect_each_entry_once_at_every_fill<locked_map<int, int>>();
    expect_each_entry_once_at_every_fill<locked_map<int, int, iterlock::test::constant_hash>>();
}

TEST(CMapWalkUnit, SnapshotWalkVisitsEachEntryOnceAtEveryFill) {
    expect_each_entry_once_at_every_fill<snap_map<int, int>>();  // optimistic batches (outside TSan)
    expect_each_entry_once_at_every_fill<snap_map<int, int, iterlock::test::constant_hash>>();
}

// Holds a guard of maps[i], ..., maps[n - 1] (guards are not movable, G1: one per stack frame), then
// checks that maps[n] is refused.
template <class Maps>
void hold_guards_then_expect_refusal(Maps& maps, std::size_t i, std::size_t n) {
    if (i == n) {
        EXPECT_THROW((void)maps[n]->lock_for_iteration(), lock_error);
        return;
    }
    auto g = maps[i]->lock_for_iteration();
    hold_guards_then_expect_refusal(maps, i + 1, n);
}

// The per-thread registry of held guards is shared with iterlock::iteration_lock (iteration_lock.hpp):
// 8 maps or locks at once.
TEST(CMapGuardUnit, L7_GuardsOfAtMostEightMapsPerThread) {
    std::vector<std::unique_ptr<locked_map<int, int>>> maps;
    for (int i = 0; i < 9; ++i) maps.push_back(std::make_unique<locked_map<int, int>>(2, seed{60}));
    hold_guards_then_expect_refusal(maps, 0, 8);
    auto g = maps[8]->lock_for_iteration();
    EXPECT_TRUE(g.owns_lock());
    EXPECT_EQ(maps[8]->preserved_bytes(), 0u);
    EXPECT_EQ(maps[8]->snapshots_alive(), 0u);
}

}  // namespace
