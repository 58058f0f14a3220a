// tests/lock/shard_lock_basic_test.cpp: single-threaded tests of shard_lock (compatibility matrix, sequence
// reads, upgrade rules, timeouts, misuse detection) and of iterlock::priority / priority_scope.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "iterlock/detail/lock/shard_lock.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/priority.hpp"
#include "support/shard_lock_idle.hpp"

namespace {

using iterlock::lock_error;
using iterlock::priority;
using iterlock::detail::shard_lock;
using iterlock::test::expect_idle;
using namespace std::chrono_literals;

TEST(ShardLockLayout, CacheLineAligned) {
    static_assert(alignof(shard_lock) == 64);
    static_assert(sizeof(shard_lock) % 64 == 0);
    shard_lock locks[2];
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&locks[1]) % 64, 0U);
}

TEST(ShardLockBasic, EachRoleRoundTrips) {
    shard_lock l;
    l.lock_shared();
    EXPECT_EQ(l.state().readers, 1U);
    l.unlock_shared();
    l.lock();
    EXPECT_TRUE(l.state().write_held);
    l.unlock();
    l.lock_iteration();
    EXPECT_EQ(l.state().iterations, 1U);
    l.unlock_iteration();
    expect_idle(l);
}

TEST(ShardLockBasic, WorksWithStandardLockAdaptors) {
    shard_lock l;
    {
        std::unique_lock<shard_lock> w(l);
        EXPECT_TRUE(l.state().write_held);
    }
    {
        std::shared_lock<shard_lock> r(l);
        EXPECT_EQ(l.state().readers, 1U);
    }
    {
        iterlock::detail::iteration_guard g(l);
        EXPECT_EQ(l.state().iterations, 1U);
    }
    expect_idle(l);
}

// The compatibility matrix of the header, probed with the non-blocking calls.
TEST(ShardLockBasic, R1_R2_CompatibilityWhileReaderHolds) {
    shard_lock l;
    l.lock_shared();
    EXPECT_FALSE(l.try_lock());
    EXPECT_TRUE(l.try_lock_shared());
    EXPECT_TRUE(l.try_lock_iteration());
    l.unlock_iteration();
    l.unlock_shared();
    l.unlock_shared();
    expect_idle(l);
}

TEST(ShardLockBasic, R1_R2_CompatibilityWhileWriterHolds) {
    shard_lock l;
    l.lock();
    EXPECT_FALSE(l.try_lock());
    EXPECT_FALSE(l.try_lock_shared());
    EXPECT_FALSE(l.try_lock_iteration());
    l.unlock();
    expect_idle(l);
}

TEST(ShardLockBasic, R1_R2_CompatibilityWhileIterationHolds) {
    shard_lock l;
    l.lock_iteration();
    EXPECT_FALSE(l.try_lock());
    EXPECT_TRUE(l.try_lock_shared());
    l.unlock_shared();
    EXPECT_TRUE(l.try_lock_iteration());
    EXPECT_EQ(l.state().iterations, 2U);
    l.unlock_iteration();
    l.unlock_iteration();
    expect_idle(l);
}

TEST(ShardLockBasic, R1_R7_CompatibilityWhileUpgraded) {
    shard_lock l;
    l.lock_iteration();
    l.upgrade_iteration_to_write();
    EXPECT_FALSE(l.try_lock());
    EXPECT_FALSE(l.try_lock_shared());
    EXPECT_FALSE(l.try_lock_iteration());
    l.downgrade_write_to_iteration();
    EXPECT_TRUE(l.try_lock_shared());
    l.unlock_shared();
    l.unlock_iteration();
    expect_idle(l);
}

TEST(ShardLockBasic, R9_SequenceCountsWriteAcquisitions) {
    shard_lock l;
    const auto seq0 = l.state().seq;
    l.lock();
    l.unlock();
    EXPECT_EQ(l.state().seq, seq0 + 1);
    l.lock_iteration();
    l.upgrade_iteration_to_write();
    l.downgrade_write_to_iteration();
    l.unlock_iteration();
    EXPECT_EQ(l.state().seq, seq0 + 2);
    l.lock_shared();  // readers and iterations leave it alone
    l.unlock_shared();
    l.lock_iteration();
    l.unlock_iteration();
    EXPECT_EQ(l.state().seq, seq0 + 2);
}

TEST(ShardLockSequenceRead, R9_ValidatesWhenNoWriterCame) {
    shard_lock l;
    const auto token = l.read_begin();
    EXPECT_TRUE(l.read_validate(token));
    l.lock_shared();  // readers and iterations do not invalidate
    l.lock_iteration();
    EXPECT_TRUE(l.read_validate(token));
    l.unlock_iteration();
    l.unlock_shared();
    EXPECT_TRUE(l.read_validate(token));
}

TEST(ShardLockSequenceRead, R9_FailsAfterAWriter) {
    shard_lock l;
    const auto token = l.read_begin();
    l.lock();
    EXPECT_FALSE(l.read_validate(token));  // while held
    l.unlock();
    EXPECT_FALSE(l.read_validate(token));  // and after
    EXPECT_TRUE(l.read_validate(l.read_begin()));
}

TEST(ShardLockSequenceRead, R9_FailsAcrossAnUpgrade) {
    shard_lock l;
    l.lock_iteration();
    const auto token = l.read_begin();
    l.upgrade_iteration_to_write();
    EXPECT_FALSE(l.read_validate(token));
    l.downgrade_write_to_iteration();
    EXPECT_FALSE(l.read_validate(token));
    l.unlock_iteration();
}

TEST(ShardLockUpgrade, R7_SucceedsForTheOnlyIteration) {
    shard_lock l;
    l.lock_iteration();
    l.upgrade_iteration_to_write();
    auto st = l.state();
    EXPECT_TRUE(st.write_held);
    EXPECT_EQ(st.iterations, 1U);
    l.check_invariants();
    l.downgrade_write_to_iteration();
    st = l.state();
    EXPECT_FALSE(st.write_held);
    EXPECT_EQ(st.iterations, 1U);
    l.unlock_iteration();
    expect_idle(l);
}

TEST(ShardLockUpgrade, R7_ThrowsWhenAnotherIterationIsLiveAndChangesNothing) {
    shard_lock l;
    l.lock_iteration();
    l.lock_iteration();  // a second walk (the lock does not know whose)
    const auto before = l.state();
    try {
        l.upgrade_iteration_to_write();
        FAIL() << "upgrade with two live iterations must throw";
    } catch (const lock_error& e) {
        EXPECT_NE(std::string(e.what()).find("another iteration"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("deadlock"), std::string::npos) << e.what();
    }
    const auto after = l.state();
    EXPECT_EQ(after.iterations, before.iterations);
    EXPECT_EQ(after.write_held, before.write_held);
    EXPECT_EQ(after.seq, before.seq);
    l.unlock_iteration();
    l.upgrade_iteration_to_write();  // alone now: allowed
    l.downgrade_write_to_iteration();
    l.unlock_iteration();
    expect_idle(l);
}

TEST(ShardLockUpgrade, R7_ThrowsWithoutAnIteration) {
    shard_lock l;
    EXPECT_THROW(l.upgrade_iteration_to_write(), lock_error);
    l.lock();  // a plain writer cannot "upgrade" either
    EXPECT_THROW(l.upgrade_iteration_to_write(), lock_error);
    l.unlock();
    expect_idle(l);
}

TEST(ShardLockUpgrade, R7_ThrowsWhenAlreadyUpgraded) {
    shard_lock l;
    l.lock_iteration();
    l.upgrade_iteration_to_write();
    EXPECT_THROW(l.upgrade_iteration_to_write(), lock_error);
    EXPECT_TRUE(l.state().write_held);
    l.downgrade_write_to_iteration();
    l.unlock_iteration();
    expect_idle(l);
}

TEST(ShardLockUpgrade, R7_DowngradeWithoutUpgradeThrows) {
    shard_lock l;
    EXPECT_THROW(l.downgrade_write_to_iteration(), lock_error);
    l.lock_iteration();
    EXPECT_THROW(l.downgrade_write_to_iteration(), lock_error);
    l.unlock_iteration();
    l.lock();
    EXPECT_THROW(l.downgrade_write_to_iteration(), lock_error);  // a writer unlocks instead
    EXPECT_TRUE(l.state().write_held);
    l.unlock();
    expect_idle(l);
}

TEST(ShardLockUpgrade, R7_LockErrorIsALogicError) {
    shard_lock l;
    EXPECT_THROW(l.upgrade_iteration_to_write(), std::logic_error);
}

TEST(ShardLockTimeout, R6_IterationTimesOutBehindAWriterAndLeavesNoTrace) {
    shard_lock l;
    l.lock();
    std::chrono::nanoseconds waited{-1};
    EXPECT_FALSE(l.try_lock_iteration_for(1ms, priority::best_effort, &waited));
    EXPECT_GE(waited.count(), 0);
    EXPECT_FALSE(l.try_lock_iteration_until(std::chrono::steady_clock::now() - 1s, priority::realtime));
    auto st = l.state();
    EXPECT_EQ(st.total_waiting(), 0U);
    EXPECT_FALSE(st.queued);
    EXPECT_EQ(st.iterations, 0U);
    l.check_invariants();
    l.unlock();
    EXPECT_TRUE(l.try_lock_iteration_for(1ms));  // a later acquire works, on the fast path
    l.unlock_iteration();
    EXPECT_TRUE(l.try_lock_iteration_until(std::chrono::system_clock::now() + 1s));  // any clock
    l.unlock_iteration();
    expect_idle(l);
}

TEST(ShardLockTimeout, R6_WriterTimesOutBehindAnIterationAndLeavesNoTrace) {
    shard_lock l;
    l.lock_iteration();
    EXPECT_FALSE(l.try_lock_for(1ms));
    EXPECT_FALSE(l.state().queued);
    EXPECT_TRUE(l.try_lock_iteration());  // no queued writer left behind to block new walks (R3)
    l.unlock_iteration();
    l.unlock_iteration();
    EXPECT_TRUE(l.try_lock_for(1ms));
    l.unlock();
    expect_idle(l);
}

TEST(ShardLockMetrics, FastPathsReportZeroWait) {
    shard_lock l;
    std::chrono::nanoseconds waited{-1};
    l.lock_shared(&waited);
    EXPECT_EQ(waited.count(), 0);
    l.unlock_shared();
    waited = std::chrono::nanoseconds{-1};
    l.lock(&waited);
    EXPECT_EQ(waited.count(), 0);
    l.unlock();
    waited = std::chrono::nanoseconds{-1};
    l.lock_iteration(priority::realtime, &waited);
    EXPECT_EQ(waited.count(), 0);
    waited = std::chrono::nanoseconds{-1};
    l.upgrade_iteration_to_write(&waited);
    EXPECT_EQ(waited.count(), 0);
    l.downgrade_write_to_iteration();
    l.unlock_iteration();
}

#if !defined(NDEBUG) || defined(ITERLOCK_CHECKED)
constexpr bool checks_on = true;
#else
constexpr bool checks_on = false;
#endif

TEST(ShardLockMisuseDeathTest, UnbalancedReleasesAbortWithAMessage) {
    if (!checks_on) GTEST_SKIP() << "misuse checks are compiled out of release builds";
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            shard_lock l;
            l.unlock_shared();
        },
        "unlock_shared\\(\\) without lock_shared\\(\\)");
    EXPECT_DEATH(
        {
            shard_lock l;
            l.unlock();
        },
        "unlock\\(\\) without lock\\(\\)");
    EXPECT_DEATH(
        {
            shard_lock l;
            l.lock_iteration();
            l.upgrade_iteration_to_write();
            l.unlock_iteration();
        },
        "while upgraded");
}

TEST(Priority, DefaultIsBestEffortAndScopesNest) {
    EXPECT_EQ(iterlock::current_priority(), priority::best_effort);
    {
        iterlock::priority_scope outer(priority::realtime);
        EXPECT_EQ(iterlock::current_priority(), priority::realtime);
        EXPECT_EQ(outer.previous(), priority::best_effort);
        {
            iterlock::priority_scope inner(priority::best_effort);
            EXPECT_EQ(iterlock::current_priority(), priority::best_effort);
        }
        EXPECT_EQ(iterlock::current_priority(), priority::realtime);
    }
    EXPECT_EQ(iterlock::current_priority(), priority::best_effort);
}

TEST(Priority, IsPerThread) {
    iterlock::priority_scope here(priority::realtime);
    priority seen_there = priority::realtime;
    std::thread other([&] { seen_there = iterlock::current_priority(); });
    other.join();
    EXPECT_EQ(seen_there, priority::best_effort);
    EXPECT_EQ(iterlock::current_priority(), priority::realtime);
}

TEST(Priority, NamesAreStableMetricLabels) {
    EXPECT_EQ(iterlock::priority_name(priority::best_effort), "best_effort");
    EXPECT_EQ(iterlock::priority_name(priority::realtime), "realtime");
    static_assert(priority::realtime > priority::best_effort);
}

}  // namespace
