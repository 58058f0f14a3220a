// Tests of the checked build (ITERLOCK_CHECKED, as in the debug and asan presets): an entry_ptr kept across
// a growth that evacuated its entry, or across clear(), dies with "entry used after" when dereferenced; one
// kept across writes that did not move the entry stays usable. Without ITERLOCK_CHECKED the tests skip.
#include <gtest/gtest.h>

#include <cstdio>

#include "iterlock/detail/map/test_access.hpp"
#include "iterlock/map.hpp"

namespace {

using int_map = iterlock::map<int, int>;
using access = iterlock::detail::map_test_access;

constexpr const char* used_after_re = "entry used after";

class MapChecked : public ::testing::Test {
  protected:
    void SetUp() override {
#if !defined(ITERLOCK_CHECKED) || !ITERLOCK_CHECKED
        GTEST_SKIP() << "needs a checked build (ITERLOCK_CHECKED)";
#endif
        GTEST_FLAG_SET(death_test_style, "threadsafe");
    }
};

// Inserts fresh keys until the table has grown and finished evacuating (B increased, not growing).
void grow_past_evacuation(int_map& m, int& next) {
    const auto b = access::table(m).bucket_shift();
    while (access::table(m).bucket_shift() == b || access::table(m).growing()) {
        m.insert({next, next});
        ++next;
    }
}

TEST_F(MapChecked, EntryPtrAfterGrowthDies) {
    int_map m{iterlock::seed{1}};
    m.insert({0, 0});
    auto p = m.find(0);
    ASSERT_TRUE(p);
    int next = 1;
    grow_past_evacuation(m, next);
    grow_past_evacuation(m, next);
    EXPECT_DEATH(std::printf("%d\n", p->second), used_after_re);
    EXPECT_DEATH(std::printf("%d\n", (*p).second), used_after_re);
}

TEST_F(MapChecked, EntryPtrFromInsertAfterGrowthDies) {
    int_map m{iterlock::seed{2}};
    for (int i = 0; i < 40; ++i) m.insert({i, i});
    auto [p, inserted] = m.insert({-1, -1});
    ASSERT_TRUE(inserted);
    int next = 1000;
    grow_past_evacuation(m, next);
    EXPECT_DEATH(p->second = 5, used_after_re);
}

TEST_F(MapChecked, EntryPtrMidGrowthAfterItsBucketWasEvacuatedDies) {
    // Keep inserting only until the entry's old bucket has been evacuated (growth may still be in progress).
    int_map m{iterlock::seed{3}};
    for (int i = 0; i < 52; ++i) m.insert({i, i});
    auto p = m.find(10);
    ASSERT_TRUE(p);
    int next = 100;
    m.insert({next++, 0});  // starts the growth; evacuation proceeds with each write
    ASSERT_TRUE(access::table(m).growing() || access::table(m).bucket_shift() > 3);
    while (access::table(m).growing()) m.insert({next++, 0});
    EXPECT_DEATH(std::printf("%d\n", p->first), used_after_re);
}

TEST_F(MapChecked, EntryPtrAfterClearDies) {
    int_map m = {{1, 1}, {2, 2}};
    auto p = m.find(1);
    ASSERT_TRUE(p);
    m.clear();
    EXPECT_DEATH(std::printf("%d\n", p->second), used_after_re);
}

TEST_F(MapChecked, ConstEntryPtrAfterGrowthDies) {
    int_map m{iterlock::seed{4}};
    m.insert({0, 0});
    const int_map& cm = m;
    int_map::const_entry_ptr p = cm.find(0);
    ASSERT_TRUE(p);
    int next = 1;
    grow_past_evacuation(m, next);
    EXPECT_DEATH(std::printf("%d\n", p->second), used_after_re);
}

TEST_F(MapChecked, EntryPtrToErasedEntryDies) {
    int_map m{iterlock::seed{6}};
    for (int i = 0; i < 20; ++i) m.insert({i, i});
    auto p = m.find(7);
    ASSERT_TRUE(p);
    m.erase(7);
    EXPECT_DEATH(std::printf("%d\n", p->second), used_after_re);
}

TEST_F(MapChecked, EntryPtrAfterMapMoveDies) {
    int_map m{iterlock::seed{7}};
    for (int i = 0; i < 20; ++i) m.insert({i, i});
    auto p = m.find(3);
    ASSERT_TRUE(p);
    int_map moved(std::move(m));
    EXPECT_DEATH(std::printf("%d\n", p->second), used_after_re);
    auto q = moved.find(4);
    ASSERT_TRUE(q);
    int_map other;
    other.swap(moved);
    EXPECT_DEATH(std::printf("%d\n", q->second), used_after_re);
}

TEST_F(MapChecked, IteratorDereferencedAfterClearDies) {
    int_map m{iterlock::seed{8}};
    for (int i = 0; i < 20; ++i) m.insert({i, i});
    auto it = m.begin();
    m.clear();
    EXPECT_DEATH(std::printf("%d\n", it->second), used_after_re);
}

TEST_F(MapChecked, EntryPtrSurvivesWritesThatDoNotMoveIt) {
    int_map m{iterlock::seed{5}};
    m.reserve(1000);
    m.insert({0, 0});
    auto p = m.find(0);
    ASSERT_TRUE(p);
    const auto b = access::table(m).bucket_shift();
    for (int i = 1; i < 900; ++i) m.insert({i, i});
    for (int i = 1; i < 900; i += 2) m.erase(i);
    ASSERT_EQ(access::table(m).bucket_shift(), b) << "the reserve should have prevented growth";
    p->second = 42;  // must not die: the entry never moved
    EXPECT_EQ(m.get(0), std::optional<int>(42));
}

}  // namespace
