// tests/guarded/guarded_rules_test.cpp: iterlock::guarded<Map>'s rules GD1-GD8, for std::unordered_map,
// absl::flat_hash_map and boost::unordered_flat_map, and its misuse (GD4's refusals, GD6's and GD7's
// reports).
//
// Threads (where a rule is about waiting) wait for each other through the lock's state(), never on time.
#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <chrono>
#include <latch>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include <gtest/gtest.h>

#include "iterlock/guarded.hpp"
#include "support/guarded_maps.hpp"
#include "support/polling.hpp"

namespace {

using namespace std::chrono_literals;
using iterlock::test::eventually;

template <class Map>
class GuardedRules : public ::testing::Test {
  protected:
    using guarded_map = iterlock::guarded<Map, false>;
    static constexpr bool node_based =
        std::is_same_v<Map, std::unordered_map<typename Map::key_type, typename Map::mapped_type>>;
    void fill(guarded_map& m, int n) {
        for (int i = 0; i < n; ++i) m.insert_or_assign(i, i * 10);
    }
};
using maps = iterlock::test::guarded_maps<int>;
using map_names = iterlock::test::guarded_map_names;
TYPED_TEST_SUITE(GuardedRules, maps, map_names);

TYPED_TEST(GuardedRules, GD1_ReadsReturnCopiesAndRunBesideAWalk) {
    typename TestFixture::guarded_map m;
    this->fill(m, 10);
    auto g = m.lock_for_iteration();  // reads never wait for walks (R1), this thread's own included
    EXPECT_EQ(m.size(), 10u);
    EXPECT_FALSE(m.empty());
    EXPECT_TRUE(m.contains(3));
    EXPECT_EQ(m.count(3), 1u);
    EXPECT_EQ(m.get(3), std::optional<int>(30));
    EXPECT_EQ(m.get(42), std::nullopt);
    int seen = -1;
    EXPECT_TRUE(m.visit(4, [&](const auto& kv) { seen = kv.second; }));
    EXPECT_EQ(seen, 40);
    EXPECT_FALSE(m.visit(42, [&](const auto&) { seen = 0; }));
    EXPECT_EQ(m.read([](const auto& raw) { return raw.size(); }), 10u);
    EXPECT_EQ(m.lock().state().readers, 0u);
}

TYPED_TEST(GuardedRules, GD2_WritesWaitForAnotherThreadsWalk) {
    typename TestFixture::guarded_map m;
    std::atomic<bool> wrote{false};
    std::jthread writer;
    {
        auto g = m.lock_for_iteration();
        writer = std::jthread([&] {
            m.insert_or_assign(1, 1);
            wrote = true;
        });
        ASSERT_TRUE(eventually([&] { return m.lock().state().waiting_writers[0] == 1; }));
        EXPECT_FALSE(wrote.load());
        EXPECT_EQ(g.size(), 0u);
    }
    writer.join();
    EXPECT_TRUE(wrote.load());
    EXPECT_EQ(m.get(1), std::optional<int>(1));
}

TYPED_TEST(GuardedRules, GD2_WritesReportWhatTheMapDid) {
    typename TestFixture::guarded_map m;
    EXPECT_TRUE(m.insert({1, 10}));
    EXPECT_FALSE(m.insert({1, 11}));
    EXPECT_TRUE(m.try_emplace(2, 20));
    EXPECT_FALSE(m.try_emplace(2, 21));
    EXPECT_TRUE(m.emplace(3, 30));
    EXPECT_FALSE(m.insert_or_assign(1, 12));
    EXPECT_TRUE(m.update(1, [](int& v) { v += 1; }));
    EXPECT_FALSE(m.update(9, [](int& v) { v += 1; }));
    EXPECT_EQ(m.get(1), std::optional<int>(13));
    EXPECT_EQ(m.get(2), std::optional<int>(20));
    EXPECT_EQ(m.erase(2), 1u);
    EXPECT_EQ(m.erase(2), 0u);
    EXPECT_EQ(m.erase_if([](const auto& kv) { return kv.first == 3; }), 1u);
    m.reserve(100);
    EXPECT_EQ(m.write([](auto& raw) { return raw.size(); }), 1u);
    m.clear();
    EXPECT_TRUE(m.empty());
}

TYPED_TEST(GuardedRules, GD3_GuardWalksTheLiveMapOnce) {
    typename TestFixture::guarded_map m;
    this->fill(m, 500);
    auto g = m.lock_for_iteration();
    ASSERT_TRUE(g);
    std::set<int> keys;
    for (auto& [k, v] : g) {
        EXPECT_EQ(v, k * 10);
        EXPECT_TRUE(keys.insert(k).second) << "visited twice: " << k;
    }
    EXPECT_EQ(keys.size(), 500u);
    EXPECT_EQ(g.size(), 500u);
    EXPECT_NE(g.find(7), g.end());
    EXPECT_EQ(g.find(700), g.end());
}

TYPED_TEST(GuardedRules, GD4_IterateAndExpireThroughTheGuard) {
    typename TestFixture::guarded_map m;
    this->fill(m, 1000);
    std::set<int> visited;
    {
        auto g = m.lock_for_iteration();
        for (auto it = g.begin(); it != g.end();) {
            EXPECT_TRUE(visited.insert(it->first).second);
            if (it->first % 2 == 0)
                it = g.erase(it);
            else
                ++it;
        }
    }
    EXPECT_EQ(visited.size(), 1000u);
    EXPECT_EQ(m.size(), 500u);
    EXPECT_FALSE(m.contains(0));
    EXPECT_TRUE(m.contains(1));
}

TYPED_TEST(GuardedRules, GD4_NewKeyDuringOwnWalkFollowsTheMapsRule) {
    typename TestFixture::guarded_map m;
    this->fill(m, 10);
    if constexpr (TestFixture::node_based) {
        // std::unordered_map: allowed while it cannot rehash, and then the walk's buckets stay put.
        m.reserve(64);
        auto g = m.lock_for_iteration();
        const auto buckets = m.read([](const auto& raw) { return raw.bucket_count(); });
        auto it = g.begin();
        EXPECT_TRUE(m.insert_or_assign(100, 1));
        EXPECT_EQ(m.read([](const auto& raw) { return raw.bucket_count(); }), buckets);
        int n = 0;
        for (; it != g.end(); ++it) ++n;  // the old iterator still walks
        EXPECT_GE(n, 1);
        // Fill to the load factor: the next new key would rehash, so it is refused.
        int k = 1000;
        while (m.read([](const auto& raw) {
            return static_cast<double>(raw.size() + 1) <= raw.max_load_factor() * raw.bucket_count();
        }))
            m.insert_or_assign(k++, 0);
        const auto size = m.size();
        EXPECT_THROW(m.insert_or_assign(k, 0), iterlock::invalidation_error);
        EXPECT_EQ(m.size(), size);
        EXPECT_EQ(m.read([](const auto& raw) { return raw.bucket_count(); }), buckets);
    } else {
        auto g = m.lock_for_iteration();
        EXPECT_THROW(m.insert_or_assign(100, 1), iterlock::invalidation_error);
        EXPECT_THROW(m.try_emplace(100, 1), iterlock::invalidation_error);
        EXPECT_THROW(m.insert({100, 1}), iterlock::invalidation_error);
        EXPECT_FALSE(m.contains(100));
        EXPECT_EQ(m.size(), 10u);
    }
}

TYPED_TEST(GuardedRules, GD4_AssignmentsUpdatesAndOtherErasesAreAllowed) {
    typename TestFixture::guarded_map m;
    this->fill(m, 100);
    auto g = m.lock_for_iteration();
    auto it = g.begin();
    const int here = it->first;
    const int other = here == 0 ? 1 : 0;
    EXPECT_FALSE(m.insert_or_assign(here, -1));  // existing key: no structural change
    EXPECT_FALSE(m.try_emplace(here, -2));
    EXPECT_TRUE(m.update(here, [](int& v) { v = -3; }));
    EXPECT_EQ(it->second, -3);
    EXPECT_EQ(m.erase(other), 1u);
    EXPECT_EQ(m.erase(12345), 0u);
    std::set<int> rest;
    for (; it != g.end(); ++it) rest.insert(it->first);
    EXPECT_TRUE(rest.count(here));
    EXPECT_FALSE(rest.count(other));
}

TYPED_TEST(GuardedRules, GD4_EraseOfTheEntryTheWalkStandsOnIsRefused) {
    typename TestFixture::guarded_map m;
    this->fill(m, 100);
    auto g = m.lock_for_iteration();
    auto it = g.begin();
    const int here = it->first;
    EXPECT_THROW(m.erase(here), iterlock::invalidation_error);
    EXPECT_THROW(m.erase_if([&](const auto& kv) { return kv.first == here; }), iterlock::invalidation_error);
    EXPECT_TRUE(m.contains(here));
    EXPECT_EQ(m.size(), 100u);
    ++it;  // once the walk moved on, the entry may go
    EXPECT_EQ(m.erase(here), 1u);
}

TYPED_TEST(GuardedRules, GD4_ClearReserveAndRawWritesAreRefusedDuringOwnWalk) {
    typename TestFixture::guarded_map m;
    this->fill(m, 10);
    auto g = m.lock_for_iteration();
    EXPECT_THROW(m.clear(), iterlock::invalidation_error);
    EXPECT_THROW(m.reserve(1'000'000), iterlock::invalidation_error);
    EXPECT_THROW(m.write([](auto& raw) { raw.clear(); }), iterlock::invalidation_error);
    EXPECT_EQ(m.size(), 10u);
    EXPECT_FALSE(m.lock().state().write_held);  // every refusal turned the upgrade back
}

TYPED_TEST(GuardedRules, GD4_WriteBesideAnotherWalkThrowsLockError) {
    typename TestFixture::guarded_map m;
    this->fill(m, 10);
    std::latch held(1), done(1);
    std::jthread other([&] {
        auto g = m.lock_for_iteration();
        held.count_down();
        done.wait();
    });
    held.wait();
    {
        auto g = m.lock_for_iteration();
        auto it = g.begin();
        EXPECT_THROW(m.insert_or_assign(it->first, 0), iterlock::lock_error);
        EXPECT_THROW(g.erase(it), iterlock::lock_error);
        EXPECT_EQ(m.size(), 10u);
    }
    done.count_down();
    other.join();
    EXPECT_EQ(m.metrics().misuse_detected, 2u);
}

TYPED_TEST(GuardedRules, GD5_TimedOutGuardOwnsNothing) {
    typename TestFixture::guarded_map m;
    this->fill(m, 3);
    std::unique_lock w(m.lock());  // a writer holds
    auto g = m.try_lock_for_iteration(1ms);
    EXPECT_FALSE(g);
    EXPECT_THROW(g.begin(), iterlock::lock_error);
    EXPECT_THROW(g.size(), iterlock::lock_error);
    EXPECT_THROW(g.find(1), iterlock::lock_error);
    EXPECT_EQ(m.lock().state().total_waiting(), 0u);
}

TYPED_TEST(GuardedRules, GD6_NestedGuardsShareAndCursorsOfAllAreChecked) {
    typename TestFixture::guarded_map m;
    this->fill(m, 10);
    auto outer = m.lock_for_iteration();
    auto o = outer.begin();
    {
        auto inner = m.lock_for_iteration();
        EXPECT_EQ(m.lock().state().iterations, 1u);
        auto i = inner.begin();
        ++i;
        EXPECT_THROW(m.erase(o->first), iterlock::invalidation_error);  // the outer walk stands there
        EXPECT_THROW(m.erase(i->first), iterlock::invalidation_error);
    }
    EXPECT_EQ(m.lock().state().iterations, 1u);
}

void release_on_another_thread() {
    iterlock::guarded<std::unordered_map<int, int>> m;
    auto* g = new auto(m.lock_for_iteration());
    std::thread([g] { delete g; }).join();
}

TEST(GuardedDeathTest, GD6_GuardReleasedOnAnotherThreadAborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(release_on_another_thread(), "released by another thread");
}

using checked_map = iterlock::guarded<std::unordered_map<int, int>, true>;

TEST(GuardedChecked, GD7_UnguardedIterationAcrossAWriteIsReportedWithGosMessage) {
    checked_map m;
    for (int i = 0; i < 10; ++i) m.insert_or_assign(i, i);
    iterlock::set_misuse_action(iterlock::misuse_action::throw_exception);
    try {
        auto it = m.begin();
        m.insert_or_assign(it->first, 0);  // any write: the unguarded walk did not exclude it
        ++it;
        ADD_FAILURE() << "not detected";
    } catch (const iterlock::concurrent_misuse& e) {
        EXPECT_STREQ(e.what(), "concurrent map iteration and map write");
    }
    iterlock::set_misuse_action(iterlock::misuse_action::abort);
}

TEST(GuardedChecked, GD7_UnguardedIterationWithoutWritesPasses) {
    checked_map m;
    for (int i = 0; i < 10; ++i) m.insert_or_assign(i, i);
    int n = 0;
    for (auto& kv : m) n += kv.second >= 0;
    EXPECT_EQ(n, 10);
    const checked_map& cm = m;
    n = 0;
    for (const auto& kv : cm) n += kv.second >= 0;
    EXPECT_EQ(n, 10);
}

TEST(GuardedChecked, GD7_IteratorsOfAGuardHolderAreNotChecked) {
    checked_map m;
    for (int i = 0; i < 10; ++i) m.insert_or_assign(i, i);
    auto g = m.lock_for_iteration();
    auto it = m.begin();
    m.insert_or_assign(it->first, 5);  // the holder's own allowed write
    ++it;
    SUCCEED();
}

void step_after_a_write() {
    checked_map m;
    m.insert_or_assign(1, 1);
    m.insert_or_assign(2, 2);
    auto it = m.begin();
    m.erase(3);
    (void)*it;
}

TEST(GuardedCheckedDeathTest, GD7_ByDefaultTheReportAborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(step_after_a_write(),
                 "fatal error: concurrent map iteration and map write \\(iterlock::guarded<int, int>\\)");
}

TEST(GuardedUnchecked, GD7_UncheckedIterationIsTheMapsOwn) {
    using unchecked = iterlock::guarded<std::unordered_map<int, int>, false>;
    static_assert(
        std::is_same_v<decltype(std::declval<unchecked&>().begin()), std::unordered_map<int, int>::iterator>);
    static_assert(sizeof(unchecked) < sizeof(checked_map));
}

TYPED_TEST(GuardedRules, GD9_CallsFromInsideItsCallbacksThrowLockError) {
    typename TestFixture::guarded_map m, other;
    this->fill(m, 3);
    other.insert_or_assign(1, 1);
    EXPECT_THROW(m.visit(1, [&](const auto&) { m.insert_or_assign(5, 5); }), iterlock::lock_error);
    EXPECT_THROW(m.update(1, [&](int&) { (void)m.get(2); }), iterlock::lock_error);
    EXPECT_THROW(m.read([&](const auto&) {
        auto g = m.lock_for_iteration();
        return 0;
    }),
                 iterlock::lock_error);
    EXPECT_THROW(m.erase_if([&](const auto&) { return m.contains(1); }), iterlock::lock_error);
    EXPECT_THROW(m.write([&](auto&) { return m.size(); }), iterlock::lock_error);
    EXPECT_THROW(m.visit(1, [&](const auto&) { other.visit(1, [&](const auto&) { (void)m.size(); }); }),
                 iterlock::lock_error);  // through another guarded's callback
    EXPECT_TRUE(other.visit(1, [&](const auto&) { m.insert_or_assign(6, 6); }));  // another guarded: fine
    EXPECT_EQ(m.lock().state().readers, 0u);
    EXPECT_FALSE(m.lock().state().write_held);
    EXPECT_EQ(m.size(), 4u);
}

TYPED_TEST(GuardedRules, GD8_MetricsCountWalksEntriesAndHoldTimes) {
    typename TestFixture::guarded_map m;
    this->fill(m, 7);
    { auto g = m.lock_for_iteration(); }
    { auto g = m.lock_for_iteration(); }
    const iterlock::map_metrics mm = m.metrics();
    EXPECT_STREQ(mm.policy, "locked");
    EXPECT_EQ(mm.entries, 7u);
    EXPECT_EQ(mm.iterations_started, 2u);
    EXPECT_EQ(mm.iterations_success, 2u);
    EXPECT_EQ(mm.iteration_hold[0].count, 2u);
    EXPECT_EQ(mm.lock_wait[static_cast<int>(iterlock::lock_role::writer)][0].count, 7u);
}

}  // namespace
