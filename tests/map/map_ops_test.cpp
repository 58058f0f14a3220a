// Unit tests of iterlock::map, one group per operation: insert, insert_or_assign, try_emplace, operator[],
// find/get/contains/count, erase/erase_if, clear, reserve, copy/move/swap, ==, heterogeneous lookup and
// initializer lists. Every test ends with check_invariants() on each map it touched.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "iterlock/detail/map/test_access.hpp"
#include "iterlock/map.hpp"
#include "support/filled_map.hpp"

namespace {

using int_map = iterlock::map<int, int>;
using access = iterlock::detail::map_test_access;

// The map's content as a sorted vector, for whole-map comparisons independent of iteration order.
template <class Map>
std::vector<std::pair<typename Map::key_type, typename Map::mapped_type>> sorted_items(const Map& m) {
    std::vector<std::pair<typename Map::key_type, typename Map::mapped_type>> out;
    for (const auto& kv : m) out.emplace_back(kv.first, kv.second);
    std::sort(out.begin(), out.end());
    return out;
}

using iterlock::test::make_filled;

TEST(MapBasics, DefaultConstructedIsEmpty) {
    int_map m;
    EXPECT_TRUE(m.empty());
    EXPECT_EQ(m.size(), 0u);
    EXPECT_TRUE(m.begin() == m.end());
    EXPECT_FALSE(m.find(1));
    EXPECT_FALSE(m.contains(1));
    EXPECT_EQ(m.erase(1), 0u);
    m.check_invariants();
}

TEST(MapInsert, InsertsNewKeyAndReturnsEntry) {
    int_map m;
    auto [p, inserted] = m.insert({1, 10});
    EXPECT_TRUE(inserted);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->first, 1);
    EXPECT_EQ(p->second, 10);
    EXPECT_EQ((*p).second, 10);
    EXPECT_EQ(m.size(), 1u);
    m.check_invariants();
}

TEST(MapInsert, ExistingKeyIsNotOverwritten) {
    int_map m;
    m.insert({1, 10});
    const int_map::value_type kv{1, 20};
    auto [p, inserted] = m.insert(kv);  // const value_type& overload
    EXPECT_FALSE(inserted);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->second, 10);
    EXPECT_EQ(m.size(), 1u);
    m.check_invariants();
}

TEST(MapInsert, RvalueValueTypeIsMovedIn) {
    iterlock::map<int, std::unique_ptr<int>> m;
    auto [p, inserted] = m.insert({1, std::make_unique<int>(5)});
    EXPECT_TRUE(inserted);
    ASSERT_TRUE(p);
    ASSERT_TRUE(p->second);
    EXPECT_EQ(*p->second, 5);
    m.check_invariants();
}

TEST(MapInsert, EntryPointerWritesThrough) {
    int_map m;
    auto [p, inserted] = m.insert({3, 1});
    ASSERT_TRUE(inserted);
    p->second = 99;
    EXPECT_EQ(m.get(3), std::optional<int>(99));
}

TEST(MapInsertOrAssign, InsertsThenAssigns) {
    int_map m;
    auto [p1, inserted1] = m.insert_or_assign(4, 40);
    EXPECT_TRUE(inserted1);
    EXPECT_EQ(p1->second, 40);
    auto [p2, inserted2] = m.insert_or_assign(4, 41);
    EXPECT_FALSE(inserted2);
    EXPECT_EQ(p2->second, 41);
    EXPECT_EQ(m.size(), 1u);
    EXPECT_EQ(m.get(4), std::optional<int>(41));
    m.check_invariants();
}

TEST(MapTryEmplace, ConstructsInPlaceOnlyWhenAbsent) {
    iterlock::map<int, std::unique_ptr<int>> m;
    auto [p1, inserted1] = m.try_emplace(1, std::make_unique<int>(1));
    EXPECT_TRUE(inserted1);
    EXPECT_EQ(*p1->second, 1);

    auto keep = std::make_unique<int>(2);
    auto [p2, inserted2] = m.try_emplace(1, std::move(keep));
    EXPECT_FALSE(inserted2);
    ASSERT_TRUE(keep) << "try_emplace must not move from its arguments when the key exists";
    EXPECT_EQ(*p2->second, 1);
    m.check_invariants();
}

TEST(MapTryEmplace, ForwardsSeveralArguments) {
    iterlock::map<int, std::string> m;
    auto [p, inserted] = m.try_emplace(7, 3u, 'x');
    EXPECT_TRUE(inserted);
    EXPECT_EQ(p->second, "xxx");
    m.check_invariants();
}

TEST(MapSubscript, DefaultConstructsAndAssigns) {
    int_map m;
    EXPECT_EQ(m[5], 0);
    EXPECT_EQ(m.size(), 1u);
    m[5] = 50;
    m[6] += 3;
    EXPECT_EQ(m.get(5), std::optional<int>(50));
    EXPECT_EQ(m.get(6), std::optional<int>(3));
    EXPECT_EQ(m.size(), 2u);
    m.check_invariants();
}

TEST(MapSubscript, MovesRvalueKey) {
    iterlock::map<std::string, int> m;
    std::string k(40, 'k');  // long enough to live on the heap
    m[std::move(k)] = 1;
    EXPECT_EQ(m.get(std::string(40, 'k')), std::optional<int>(1));
    m.check_invariants();
}

TEST(MapFind, FindsPresentAndMissesAbsent) {
    int_map m = make_filled(100);
    for (int i = 0; i < 100; ++i) {
        auto p = m.find(i);
        ASSERT_TRUE(p) << i;
        EXPECT_EQ(p->first, i);
        EXPECT_EQ(p->second, i * 10);
    }
    EXPECT_FALSE(m.find(100));
    EXPECT_FALSE(m.find(-1));
}

TEST(MapFind, ConstMapReturnsConstEntry) {
    const int_map m = make_filled(10);
    int_map::const_entry_ptr p = m.find(3);
    ASSERT_TRUE(p);
    static_assert(std::is_const_v<std::remove_reference_t<decltype((p->second))>>);
    EXPECT_EQ(p->second, 30);
    EXPECT_FALSE(m.find(11));
}

TEST(MapGet, ReturnsCopyOrNullopt) {
    int_map m = make_filled(10);
    std::optional<int> v = m.get(4);
    EXPECT_EQ(v, std::optional<int>(40));
    EXPECT_EQ(m.get(10), std::nullopt);
    m.erase(4);
    EXPECT_EQ(v, std::optional<int>(40)) << "get returns a copy";
    EXPECT_EQ(m.get(4), std::nullopt);
}

TEST(MapContainsCount, AgreeWithContent) {
    int_map m = make_filled(20);
    for (int i = -5; i < 25; ++i) {
        const bool in = i >= 0 && i < 20;
        EXPECT_EQ(m.contains(i), in) << i;
        EXPECT_EQ(m.count(i), in ? 1u : 0u) << i;
    }
}

TEST(MapErase, RemovesOnlyTheKey) {
    int_map m = make_filled(50);
    EXPECT_EQ(m.erase(10), 1u);
    EXPECT_EQ(m.erase(10), 0u);
    EXPECT_EQ(m.erase(1000), 0u);
    EXPECT_EQ(m.size(), 49u);
    EXPECT_FALSE(m.contains(10));
    for (int i = 0; i < 50; ++i) {
        if (i != 10) EXPECT_EQ(m.get(i), std::optional<int>(i * 10)) << i;
    }
    m.check_invariants();
}

TEST(MapErase, EraseAllThenReuse) {
    int_map m = make_filled(1000);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(m.erase(i), 1u) << i;
    EXPECT_TRUE(m.empty());
    EXPECT_TRUE(m.begin() == m.end());
    m.check_invariants();
    for (int i = 0; i < 1000; ++i) m.insert({i, -i});
    EXPECT_EQ(m.size(), 1000u);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(m.get(i), std::optional<int>(-i));
    m.check_invariants();
}

TEST(MapEraseIf, MemberWithKeyValuePredicate) {
    int_map m = make_filled(100);
    const auto n = m.erase_if([](const int& k, int& v) {
        (void)v;
        return k % 3 == 0;
    });
    EXPECT_EQ(n, 34u);
    EXPECT_EQ(m.size(), 66u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(m.contains(i), i % 3 != 0) << i;
    m.check_invariants();
}

TEST(MapEraseIf, MemberWithValueTypePredicate) {
    int_map m = make_filled(100);
    const auto n = m.erase_if([](int_map::value_type& kv) { return kv.second >= 500; });
    EXPECT_EQ(n, 50u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(m.contains(i), i < 50) << i;
    m.check_invariants();
}

TEST(MapEraseIf, FreeFunction) {
    int_map m = make_filled(64);
    const auto n = iterlock::erase_if(m, [](int_map::value_type& kv) { return kv.first < 16; });
    EXPECT_EQ(n, 16u);
    EXPECT_EQ(m.size(), 48u);
    EXPECT_EQ(iterlock::erase_if(m, [](int_map::value_type&) { return false; }), 0u);
    EXPECT_EQ(iterlock::erase_if(m, [](int_map::value_type&) { return true; }), 48u);
    EXPECT_TRUE(m.empty());
    m.check_invariants();
}

TEST(MapClear, EmptiesAndStaysUsable) {
    int_map m = make_filled(500);
    m.clear();
    EXPECT_TRUE(m.empty());
    EXPECT_TRUE(m.begin() == m.end());
    EXPECT_FALSE(m.contains(3));
    m.check_invariants();
    m[3] = 4;
    EXPECT_EQ(m.get(3), std::optional<int>(4));
    EXPECT_EQ(m.size(), 1u);
    m.clear();
    m.clear();
    EXPECT_TRUE(m.empty());
    m.check_invariants();
}

TEST(MapReserve, NoGrowthWhileFillingToTheHint) {
    for (std::size_t n : {1u, 8u, 9u, 100u, 1000u, 5000u}) {
        int_map m{iterlock::seed{1}};
        m.reserve(n);
        const auto b = access::table(m).bucket_shift();
        for (std::size_t i = 0; i < n; ++i) m.insert({static_cast<int>(i), 0});
        EXPECT_EQ(access::table(m).bucket_shift(), b)
            << "reserve(" << n << ") then " << n << " inserts grew the table";
        EXPECT_FALSE(access::table(m).growing()) << n;
        m.check_invariants();
    }
}

// More than 2^31 buckets is refused before anything is allocated (the array view's B field has 5 bits),
// and the map is left as it was.
TEST(MapReserve, BeyondTwoToThe31BucketsThrowsLengthError) {
    int_map m{iterlock::seed{1}};
    m.insert({1, 2});
    EXPECT_THROW(m.reserve(std::size_t{1} << 40), std::length_error);
    EXPECT_EQ(m.get(1), std::optional<int>(2));
    EXPECT_EQ(m.size(), 1u);
    m.check_invariants();
}

TEST(MapReserve, SizeHintConstructorMatchesReserve) {
    int_map a(1000, iterlock::seed{3});
    int_map b{iterlock::seed{3}};
    b.reserve(1000);
    EXPECT_EQ(access::table(a).bucket_shift(), access::table(b).bucket_shift());
    EXPECT_GE(access::bucket_count(a), 1000u / 8u);
    a.check_invariants();
}

TEST(MapReserve, ReserveOnFilledMapKeepsContent) {
    int_map m = make_filled(100);
    m.reserve(10000);
    EXPECT_EQ(m.size(), 100u);
    for (int i = 0; i < 100; ++i) ASSERT_EQ(m.get(i), std::optional<int>(i * 10));
    m.check_invariants();
    m.reserve(0);
    EXPECT_EQ(m.size(), 100u);
    m.check_invariants();
}

TEST(MapCopy, ConstructAndAssignAreDeepAndIndependent) {
    int_map a = make_filled(300);
    int_map b(a);
    EXPECT_TRUE(a == b);
    EXPECT_EQ(sorted_items(a), sorted_items(b));
    b[0] = -1;
    b.erase(1);
    EXPECT_EQ(a.get(0), std::optional<int>(0));
    EXPECT_TRUE(a.contains(1));
    EXPECT_FALSE(a == b);

    int_map c = make_filled(3);
    c = a;
    EXPECT_TRUE(c == a);
    c.clear();
    EXPECT_EQ(a.size(), 300u);
    a.check_invariants();
    b.check_invariants();
    c.check_invariants();
}

TEST(MapCopy, SelfAssignmentKeepsContent) {
    int_map a = make_filled(50);
    int_map& alias = a;
    a = alias;
    EXPECT_EQ(a.size(), 50u);
    EXPECT_EQ(sorted_items(a), sorted_items(make_filled(50)));
    a.check_invariants();
}

TEST(MapCopy, CopyOfGrowingMapIsComplete) {
    // Insert until the table is mid-growth, then copy: the copy must hold every entry.
    int_map a{iterlock::seed{11}};
    int i = 0;
    while (!access::table(a).growing() && i < 100000) {
        a.insert({i, i});
        ++i;
    }
    ASSERT_TRUE(access::table(a).growing()) << "never observed a growing table";
    int_map b(a);
    EXPECT_EQ(b.size(), static_cast<std::size_t>(i));
    EXPECT_TRUE(a == b);
    for (int k = 0; k < i; ++k) ASSERT_EQ(b.get(k), std::optional<int>(k));
    b.check_invariants();
    a.check_invariants();
}

TEST(MapMove, MovedFromIsEmptyAndUsable) {
    int_map a = make_filled(200);
    int_map b(std::move(a));
    EXPECT_EQ(b.size(), 200u);
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract says moved-from is empty
    EXPECT_TRUE(a.begin() == a.end());
    EXPECT_FALSE(a.contains(3));
    a.check_invariants();
    a[1] = 2;
    EXPECT_EQ(a.size(), 1u);
    a.check_invariants();

    int_map c = make_filled(5);
    c = std::move(b);
    EXPECT_EQ(c.size(), 200u);
    EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
    b.insert({7, 7});
    EXPECT_EQ(b.size(), 1u);
    for (int i = 0; i < 200; ++i) ASSERT_EQ(c.get(i), std::optional<int>(i * 10));
    b.check_invariants();
    c.check_invariants();
}

TEST(MapMove, MoveConstructorIsNoexcept) {
    static_assert(std::is_nothrow_move_constructible_v<int_map>);
    SUCCEED();
}

TEST(MapSwap, ExchangesContentAndSeeds) {
    int_map a = make_filled(10, 1);
    int_map b{iterlock::seed{2}};
    b[100] = 1;
    const auto seed_a = a.hash_seed();
    const auto seed_b = b.hash_seed();
    static_assert(noexcept(a.swap(b)));
    a.swap(b);
    EXPECT_EQ(a.size(), 1u);
    EXPECT_EQ(b.size(), 10u);
    EXPECT_TRUE(a.contains(100));
    EXPECT_TRUE(b.contains(9));
    EXPECT_EQ(a.hash_seed(), seed_b);
    EXPECT_EQ(b.hash_seed(), seed_a);
    a.check_invariants();
    b.check_invariants();
}

TEST(MapEquality, ContentEqualityIgnoresOrderAndSeed) {
    int_map a{iterlock::seed{1}};
    int_map b{iterlock::seed{2}};
    for (int i = 0; i < 100; ++i) a.insert({i, i});
    for (int i = 99; i >= 0; --i) b.insert({i, i});
    EXPECT_TRUE(a == b);
    EXPECT_FALSE(a != b);
    b[50] = 51;
    EXPECT_FALSE(a == b);
    b[50] = 50;
    EXPECT_TRUE(a == b);
    b.erase(50);
    EXPECT_FALSE(a == b);
    b[1000] = 50;
    EXPECT_FALSE(a == b) << "same size, different key";
    EXPECT_TRUE(int_map{} == int_map{});
}

TEST(MapSeed, SameSeedSameHashSeed) {
    int_map a{iterlock::seed{12345}};
    int_map b{iterlock::seed{12345}};
    int_map c{iterlock::seed{54321}};
    EXPECT_EQ(a.hash_seed(), b.hash_seed());
    EXPECT_NE(a.hash_seed(), c.hash_seed());
}

TEST(MapSeed, UnseededMapsGetDifferentHashSeeds) {
    // hash0 is random per map (Go's fastrand): 8 maps drawing the same 64-bit seed is not a real outcome.
    std::vector<std::uint64_t> seeds;
    for (int i = 0; i < 8; ++i) seeds.push_back(int_map{}.hash_seed());
    std::sort(seeds.begin(), seeds.end());
    EXPECT_NE(seeds.front(), seeds.back());
}

TEST(MapHeterogeneous, StringViewAndLiteralLookups) {
    using smap = iterlock::map<std::string, int, iterlock::hash<std::string>, std::equal_to<>>;
    smap m;
    m.insert({"alpha", 1});
    m.insert({std::string(50, 'z'), 2});
    const std::string_view alpha = "alpha";
    EXPECT_TRUE(m.contains(alpha));
    EXPECT_EQ(m.count(alpha), 1u);
    EXPECT_EQ(m.count("alpha"), 1u);
    EXPECT_EQ(m.get(std::string_view(std::string(50, 'z'))), std::optional<int>(2));
    auto p = m.find(alpha);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->first, "alpha");
    const smap& cm = m;
    EXPECT_TRUE(cm.find("alpha"));
    EXPECT_FALSE(cm.find(std::string_view("alph")));

    EXPECT_EQ(m.erase(std::string_view("alpha")), 1u);
    EXPECT_EQ(m.erase("alpha"), 0u);
    EXPECT_EQ(m.size(), 1u);
    m.check_invariants();
}

template <class Map>
concept heterogeneous_writes = requires(Map& m, std::string_view k) {
    m.try_emplace(k, 1);
    m.insert_or_assign(k, 1);
    m[k];
};

// The task's API lists try_emplace(K2&&), insert_or_assign(K2&&) and operator[](K2&&) taking any K2 when
// Hash and KeyEqual are transparent (building the key only when it is inserted); map.hpp offers K only.
// Disabled until the API is settled: enable it once heterogeneous writes exist.
template <class Map>
void check_heterogeneous_writes() {
    if constexpr (heterogeneous_writes<Map>) {
        Map m;
        auto [q, inserted] = m.try_emplace(std::string_view("beta"), 3);
        EXPECT_TRUE(inserted);
        EXPECT_EQ(q->first, "beta");
        auto [r, assigned_new] = m.insert_or_assign(std::string_view("beta"), 4);
        EXPECT_FALSE(assigned_new);
        EXPECT_EQ(r->second, 4);
        m[std::string_view("gamma")] = 5;
        EXPECT_EQ(m.get("gamma"), std::optional<int>(5));
        m.check_invariants();
    } else {
        FAIL() << "try_emplace/insert_or_assign/operator[] do not accept std::string_view keys";
    }
}

TEST(MapHeterogeneous, WritesTakeStringView) {
    check_heterogeneous_writes<
        iterlock::map<std::string, int, iterlock::hash<std::string>, std::equal_to<>>>();
}

TEST(MapInitializerList, ConstructsFromList) {
    int_map m{{1, 10}, {2, 20}, {3, 30}};
    EXPECT_EQ(m.size(), 3u);
    EXPECT_EQ(m.get(2), std::optional<int>(20));
    iterlock::map<std::string, int> s = {{"a", 1}, {"b", 2}};
    EXPECT_EQ(s.get(std::string("b")), std::optional<int>(2));
    EXPECT_TRUE(m == (int_map{{3, 30}, {1, 10}, {2, 20}}));
    m.check_invariants();
    s.check_invariants();
}

TEST(MapIterators, RangeForVisitsEveryEntryAndWritesThrough) {
    int_map m = make_filled(257);
    std::size_t n = 0;
    for (auto& [k, v] : m) {
        v = k + 1;
        ++n;
    }
    EXPECT_EQ(n, 257u);
    for (int i = 0; i < 257; ++i) ASSERT_EQ(m.get(i), std::optional<int>(i + 1));
    const int_map& cm = m;
    std::size_t cn = 0;
    for (auto it = cm.begin(); it != cm.end(); ++it) {
        static_assert(std::is_const_v<std::remove_reference_t<decltype((it->second))>>);
        ++cn;
    }
    EXPECT_EQ(cn, 257u);
    std::size_t ccn = 0;
    for (auto it = m.cbegin(); it != m.cend(); it++) ++ccn;
    EXPECT_EQ(ccn, 257u);
}

TEST(MapIterators, SatisfyForwardIteratorConcept) {
    static_assert(std::forward_iterator<int_map::iterator>);
    static_assert(std::forward_iterator<int_map::const_iterator>);
    static_assert(std::is_same_v<std::iter_reference_t<int_map::iterator>, int_map::value_type&>);
    SUCCEED();
}

TEST(MapIterators, CopiedIteratorResumesAtSamePosition) {
    int_map m = make_filled(100);
    auto it = m.begin();
    for (int i = 0; i < 30; ++i) ++it;
    auto copy = it;
    std::vector<int> rest_a, rest_b;
    for (; it != m.end(); ++it) rest_a.push_back(it->first);
    for (; copy != m.end(); ++copy) rest_b.push_back(copy->first);
    EXPECT_EQ(rest_a, rest_b);
    EXPECT_EQ(rest_a.size(), 70u);
}

TEST(MapGrowth, ManyInsertsGrowAndKeepEverything) {
    int_map m{iterlock::seed{5}};
    for (int i = 0; i < 100000; ++i) m.insert({i, i ^ 0x5555});
    EXPECT_EQ(m.size(), 100000u);
    EXPECT_GE(access::table(m).bucket_shift(), 14u);
    for (int i = 0; i < 100000; ++i) ASSERT_EQ(m.get(i), std::optional<int>(i ^ 0x5555)) << i;
    m.check_invariants();
}

// Incremental growth (table.hpp, grow_work): a write moves at most evacuations_per_write old buckets, and a
// growth of 2^oldB buckets is over after at most 2^oldB / evacuations_per_write writes, so no insert pays for
// a rehash and no growth lingers.
TEST(MapGrowth, EachWriteEvacuatesABoundedNumberOfBucketsAndGrowthEnds) {
    constexpr std::size_t per_write = iterlock::detail::evacuations_per_write;
    int_map m{iterlock::seed{11}};
    int next = 0;
    std::size_t growths_seen = 0;
    while (growths_seen < 6) {
        while (!access::table(m).growing()) m.insert({next, next}), ++next;
        ++growths_seen;
        ASSERT_FALSE(access::table(m).same_size_grow());  // distinct keys, no deletes: a doubling
        const std::size_t old_buckets = std::size_t{1} << (access::table(m).bucket_shift() - 1);
        std::size_t writes = 0;
        while (access::table(m).growing()) {
            const std::uint64_t before = access::table(m).evacuated_buckets();
            m.insert({next, next}), ++next;
            ++writes;
            ASSERT_LE(access::table(m).evacuated_buckets() - before, per_write) << "write " << writes;
        }
        EXPECT_LE(writes, old_buckets / per_write + 1) << "a growth of " << old_buckets << " buckets";
    }
    for (int i = 0; i < next; ++i) ASSERT_EQ(m.get(i), std::optional<int>(i)) << i;
    m.check_invariants();
}

TEST(MapGrowth, CollidingKeysChainIntoOverflowBuckets) {
    struct low_entropy_hash {
        std::uint64_t operator()(int k) const noexcept { return static_cast<std::uint64_t>(k & 3); }
    };
    iterlock::map<int, int, low_entropy_hash> m;
    for (int i = 0; i < 300; ++i) m.insert({i, i});
    EXPECT_GT(access::table(m).overflow_buckets(), 0u);
    for (int i = 0; i < 300; ++i) ASSERT_EQ(m.get(i), std::optional<int>(i));
    for (int i = 0; i < 300; i += 2) ASSERT_EQ(m.erase(i), 1u);
    for (int i = 0; i < 300; ++i) ASSERT_EQ(m.contains(i), i % 2 == 1);
    m.check_invariants();
}

}  // namespace
