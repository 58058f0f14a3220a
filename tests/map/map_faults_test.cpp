// Faults of iterlock::map found by issue 13, one test (or a few) per item, named Item<NN>_<what it checks>:
// sizes no table can hold (item 6), an iterator kept past a mutex (item 10) and writes during a live
// iteration (item 9: the iteration ends, and writes stay O(1) amortized). Hangs are turned into failures
// by a watchdog; nothing here asserts on elapsed time.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <limits>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "concurrent/concurrent_test_util.hpp"
#include "iterlock/detail/map_test_access.hpp"
#include "iterlock/map.hpp"
#include "map_test_types.hpp"

namespace {

using int_map = iterlock::map<int, int>;
using access = iterlock::detail::map_test_access;
using iterlock::ctest::watchdog;
using iterlock_test::misuse_action_scope;

int_map make_filled(int n, std::uint64_t seed = 7) {
    int_map m{iterlock::seed{seed}};
    for (int i = 0; i < n; ++i) m.insert({i, i * 10});
    return m;
}

// The map still holds 0..n-1 (value i * 10) and accepts writes.
void expect_intact_and_usable(int_map& m, int n) {
    ASSERT_EQ(m.size(), static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) ASSERT_EQ(m.get(i), std::optional<int>(i * 10)) << i;
    m.check_invariants();
    m.insert_or_assign(n, n * 10);
    m.erase(n);
    EXPECT_EQ(m.size(), static_cast<std::size_t>(n));
    m.check_invariants();
}

// ---- item 6: sizes that no table can hold ----------------------------------------------------------------

// Every size that reserve() cannot honour, including those that used to loop forever (size_t(-1), a
// negative int converted, 2^63) or shift by 64 bits (UBSan).
std::vector<std::size_t> unreachable_sizes(const int_map& m) {
    const int minus_one = -1;
    return {std::numeric_limits<std::size_t>::max(), static_cast<std::size_t>(minus_one),
            std::size_t{1} << 63, (std::size_t{1} << 63) + 12345, std::size_t{1} << 40, m.max_size() + 1};
}

TEST(MapFaults, Item06_ReserveOfAnUnreachableSizeThrowsLengthError) {
    watchdog dog(std::chrono::seconds(60));  // today's reserve(size_t(-1)) never returns
    int_map m = make_filled(50);
    for (const std::size_t n : unreachable_sizes(m)) {
        EXPECT_THROW(m.reserve(n), std::length_error) << n;
        expect_intact_and_usable(m, 50);
    }
    // Also on an empty map that has no array yet, and while an iterator is alive (reserve is then a hint
    // that does nothing, but a size no table can hold is still refused).
    int_map empty;
    EXPECT_THROW(empty.reserve(std::numeric_limits<std::size_t>::max()), std::length_error);
    EXPECT_TRUE(empty.empty());
    empty.insert({1, 10});
    EXPECT_EQ(empty.get(1), std::optional<int>(10));
    {
        auto it = m.begin();
        EXPECT_THROW(m.reserve(std::numeric_limits<std::size_t>::max()), std::length_error);
        (void)it;
    }
    expect_intact_and_usable(m, 50);
}

TEST(MapFaults, Item06_SizeHintConstructorOfAnUnreachableSizeThrowsLengthError) {
    watchdog dog(std::chrono::seconds(60));
    const int minus_one = -1;
    EXPECT_THROW(int_map m(static_cast<std::size_t>(minus_one)), std::length_error);
    EXPECT_THROW(int_map m(std::numeric_limits<std::size_t>::max(), iterlock::seed{1}), std::length_error);
    EXPECT_THROW(int_map m(std::size_t{1} << 63), std::length_error);
    const std::size_t above = int_map().max_size() + 1;
    EXPECT_THROW(int_map m(above), std::length_error);
    EXPECT_THROW(int_map m({{1, 2}}, above), std::length_error);
}

// An allocator that refuses (std::bad_alloc) any block above 64 MiB, so that a reserve the size check
// accepts fails in the allocator instead of taking the machine's memory.
template <class T>
struct small_blocks_only {
    using value_type = T;
    small_blocks_only() = default;
    template <class U>
    small_blocks_only(const small_blocks_only<U>&) noexcept {}
    T* allocate(std::size_t n) {
        if (n > (std::size_t{64} << 20) / sizeof(T)) throw std::bad_alloc();
        return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
    friend bool operator==(const small_blocks_only&, const small_blocks_only&) noexcept { return true; }
};

// max_size() is exactly the largest size reserve() accepts: 13 * 2^30 entries (a full load factor of 6.5
// on 2^31 buckets). reserve(max_size()) passes the size check and fails only for want of memory; one more
// is a length_error.
TEST(MapFaults, Item06_MaxSizeIsTheLargestSizeReserveAccepts) {
    using small_map =
        iterlock::map<int, int, iterlock::hash<int>, std::equal_to<int>, small_blocks_only<std::pair<const int, int>>>;
    small_map m;
    EXPECT_EQ(m.max_size(), std::size_t{13} << 30);
    m.insert({1, 10});
    EXPECT_THROW(m.reserve(m.max_size()), std::bad_alloc);
    EXPECT_THROW(m.reserve(m.max_size() + 1), std::length_error);
    EXPECT_EQ(m.size(), 1u);
    EXPECT_EQ(m.get(1), std::optional<int>(10));
    m.check_invariants();
}

// ---- item 10: an iterator kept after the mutex is released --------------------------------------------

// GUIDE section 5: a map shared under a mutex is correct only if no iterator outlives the critical section
// that created it. Thread A finds an entry with std::find_if and keeps the iterator after unlocking; thread
// B's write under the same mutex is then "concurrent map iteration and map write" (thrown here, aborting by
// default). Once A copies out what it needs and its iterator is gone, B's write succeeds.
TEST(MapFaults, Item10_IteratorKeptAfterUnlockingIsReportedCopyingOutIsNot) {
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    int_map m = make_filled(100);
    std::mutex mu;
    std::latch kept{1};
    std::latch written{1};
    std::latch copied{1};
    std::latch written_again{1};
    std::optional<int> value_seen;
    std::thread a([&] {
        int_map::iterator it;
        {
            std::lock_guard<std::mutex> lk(mu);
            it = std::find_if(m.begin(), m.end(), [](const auto& kv) { return kv.first == 42; });
        }
        kept.count_down();  // wrong: `it` is still alive
        written.wait();
        {
            std::lock_guard<std::mutex> lk(mu);  // the fix: copy out under the lock, then drop the iterator
            value_seen = it->second;
            it = int_map::iterator();
        }
        copied.count_down();
        written_again.wait();
    });
    kept.wait();
    {
        std::lock_guard<std::mutex> lk(mu);
        try {
            m.insert_or_assign(1000, 1);
            ADD_FAILURE() << "a write while another thread keeps an iterator was not reported";
        } catch (const iterlock::concurrent_misuse& e) {
            EXPECT_STREQ(e.what(), "concurrent map iteration and map write");
        }
    }
    written.count_down();
    copied.wait();
    {
        std::lock_guard<std::mutex> lk(mu);
        EXPECT_NO_THROW(m.insert_or_assign(1000, 1));
    }
    written_again.count_down();
    a.join();
    EXPECT_EQ(value_seen, std::optional<int>(420));
    EXPECT_EQ(m.size(), 101u);
    m.check_invariants();
}

}  // namespace
