// Object lifetime tests: every key and value the map constructs is destroyed exactly once, through erase,
// clear, growth (evacuation moves entries), copy, move, swap and destruction; string keys and move-only
// values (std::unique_ptr) survive growth intact.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "iterlock/detail/map/test_access.hpp"
#include "iterlock/map.hpp"
#include "support/element_types.hpp"

namespace {

using iterlock::test::counted;
using iterlock::test::counted_hash;
using counted_map = iterlock::map<counted, counted, counted_hash>;
using access = iterlock::detail::map_test_access;

// Checks, at scope exit, that no counted object leaked or was destroyed twice during the test.
class CountedLifetime : public ::testing::Test {
  protected:
    void SetUp() override {
        live_before_ = counted::live();
        double_before_ = counted::double_destroys();
        bad_before_ = counted::bad_reads();
    }
    void TearDown() override {
        EXPECT_EQ(counted::live(), live_before_) << "leaked or over-destroyed counted objects";
        EXPECT_EQ(counted::double_destroys(), double_before_) << "an object was destroyed twice";
        EXPECT_EQ(counted::bad_reads(), bad_before_) << "a destroyed or never-constructed object was read";
    }
    long live_before_ = 0;
    long double_before_ = 0;
    long bad_before_ = 0;
};

void fill(counted_map& m, int from, int to) {
    for (int i = from; i < to; ++i) m.try_emplace(counted(i), i * 2);
}

TEST_F(CountedLifetime, DestructionReleasesEverything) {
    {
        counted_map m;
        fill(m, 0, 5000);  // many growths, each evacuating entries
        EXPECT_EQ(counted::live() - live_before_, 2 * 5000);
        m.check_invariants();
    }
}

TEST_F(CountedLifetime, EraseDestroysKeyAndValue) {
    counted_map m;
    fill(m, 0, 1000);
    for (int i = 0; i < 1000; i += 2) ASSERT_EQ(m.erase(counted(i)), 1u);
    EXPECT_EQ(counted::live() - live_before_, 2 * 500);
    EXPECT_EQ(m.erase_if([](const counted& k, counted&) { return k.value() % 4 == 1; }), 250u);
    EXPECT_EQ(counted::live() - live_before_, 2 * 250);
    m.check_invariants();
}

TEST_F(CountedLifetime, ClearDestroysAllAndMapIsReusable) {
    counted_map m;
    fill(m, 0, 3000);
    m.clear();
    EXPECT_EQ(counted::live(), live_before_);
    fill(m, 0, 100);
    EXPECT_EQ(counted::live() - live_before_, 200);
    m.check_invariants();
}

TEST_F(CountedLifetime, GrowthMovesWithoutLeaking) {
    counted_map m{iterlock::seed{3}};
    for (int i = 0; i < 20000; ++i) {
        m.try_emplace(counted(i), i);
        ASSERT_EQ(counted::live() - live_before_, 2 * (i + 1)) << "after insert " << i;
    }
    for (int i = 0; i < 20000; ++i) {
        auto p = m.find(counted(i));
        ASSERT_TRUE(p);
        ASSERT_EQ(p->second.value(), i);
    }
    m.check_invariants();
}

TEST_F(CountedLifetime, CopyConstructsEachEntryOnce) {
    counted_map a;
    fill(a, 0, 700);
    {
        counted_map b(a);
        EXPECT_EQ(counted::live() - live_before_, 4 * 700);
        EXPECT_TRUE(a == b);
        counted_map c;
        fill(c, 5000, 5100);
        c = a;  // the 100 old entries of c are destroyed
        EXPECT_EQ(counted::live() - live_before_, 6 * 700);
    }
    EXPECT_EQ(counted::live() - live_before_, 2 * 700);
}

TEST_F(CountedLifetime, MoveAndSwapTransferWithoutCopies) {
    counted_map a;
    fill(a, 0, 500);
    const long after_fill = counted::live();
    counted_map b(std::move(a));
    EXPECT_EQ(counted::live(), after_fill) << "move construction must not copy or drop entries";
    counted_map c;
    fill(c, 1000, 1010);
    c = std::move(b);  // c's 10 old entries are destroyed
    EXPECT_EQ(counted::live(), after_fill);
    counted_map d;
    fill(d, 2000, 2003);
    d.swap(c);
    EXPECT_EQ(counted::live() - live_before_, 2 * 503);
    EXPECT_EQ(d.size(), 500u);
    EXPECT_EQ(c.size(), 3u);
    d.check_invariants();
    c.check_invariants();
}

TEST_F(CountedLifetime, ReplacedValuesDestroyedOnAssign) {
    counted_map m;
    fill(m, 0, 100);
    for (int i = 0; i < 100; ++i) m.insert_or_assign(counted(i), counted(-i));
    EXPECT_EQ(counted::live() - live_before_, 200);
    for (int i = 0; i < 100; ++i) m[counted(i)] = counted(i);
    EXPECT_EQ(counted::live() - live_before_, 200);
    m.check_invariants();
}

TEST_F(CountedLifetime, WritesDuringIterationAcrossGrowth) {
    counted_map m;
    fill(m, 0, 60);
    int next = 1000;
    for (auto it = m.begin(); it != m.end(); ++it) {
        const int k = it->first.value();
        if (k < 1000 && k % 2 == 0) {
            m.erase(counted(k));
        }
        if (k < 1000) {  // only for original keys: inserted ones may be produced too (I2)
            for (int j = 0; j < 10; ++j) m.try_emplace(counted(next++), 0);
        }
    }
    EXPECT_EQ(counted::live() - live_before_, 2 * static_cast<long>(m.size()));
    m.clear();
    EXPECT_EQ(counted::live(), live_before_);
}

TEST(MapStringKeys, SurviveGrowthAndErase) {
    iterlock::map<std::string, std::string> m{iterlock::seed{17}};
    auto key = [](int i) {
        return "key/" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 40), 'x');
    };
    for (int i = 0; i < 10000; ++i) m.insert_or_assign(key(i), std::to_string(i));
    for (int i = 0; i < 10000; ++i)
        ASSERT_EQ(m.get(key(i)), std::optional<std::string>(std::to_string(i))) << i;
    for (int i = 0; i < 10000; i += 3) ASSERT_EQ(m.erase(key(i)), 1u);
    for (int i = 0; i < 10000; ++i) ASSERT_EQ(m.contains(key(i)), i % 3 != 0) << i;
    EXPECT_FALSE(m.contains(std::string()));
    m[std::string()] = "empty";
    EXPECT_EQ(m.get(std::string()), std::optional<std::string>("empty"));
    m.check_invariants();
}

TEST(MapMoveOnlyValues, UniquePtrThroughGrowthEraseAndMove) {
    iterlock::map<int, std::unique_ptr<int>> m;
    for (int i = 0; i < 5000; ++i) {
        auto [p, inserted] = m.try_emplace(i, std::make_unique<int>(i));
        ASSERT_TRUE(inserted);
    }
    for (int i = 0; i < 5000; ++i) {
        auto p = m.find(i);
        ASSERT_TRUE(p);
        ASSERT_TRUE(p->second);
        ASSERT_EQ(*p->second, i);
    }
    m[6000] = std::make_unique<int>(6000);
    m.insert_or_assign(0, std::make_unique<int>(-1));
    EXPECT_EQ(*m.find(0)->second, -1);
    EXPECT_EQ(m.erase_if([](auto& kv) { return *kv.second % 2 == 1; }), 2500u);

    iterlock::map<int, std::unique_ptr<int>> moved(std::move(m));
    EXPECT_EQ(moved.size(), 2501u);
    EXPECT_TRUE(m.empty());  // NOLINT(bugprone-use-after-move)
    for (auto& [k, v] : moved) {
        ASSERT_TRUE(v) << k;
        if (k != 0) ASSERT_EQ(*v, k);
    }
    moved.check_invariants();
}

TEST(MapMoveOnlyValues, MoveOnlyKeys) {
    struct ptr_hash {
        std::uint64_t operator()(const std::unique_ptr<int>& p) const noexcept {
            return iterlock::hash<const int*>{}(p.get());
        }
    };
    iterlock::map<std::unique_ptr<int>, int, ptr_hash> m;
    std::vector<const int*> raw;
    for (int i = 0; i < 500; ++i) {
        auto p = std::make_unique<int>(i);
        raw.push_back(p.get());
        m.try_emplace(std::move(p), i);
    }
    EXPECT_EQ(m.size(), 500u);
    std::size_t seen = 0;
    for (auto& [k, v] : m) {
        ASSERT_EQ(*k, v);
        ++seen;
    }
    EXPECT_EQ(seen, 500u);
    m.check_invariants();
}

}  // namespace
