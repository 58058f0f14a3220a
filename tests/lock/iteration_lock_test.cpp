// tests/lock/iteration_lock_test.cpp: iterlock::iteration_lock, the public component (L1-L7 for one lock,
// its metrics, and that concurrent_map's guards share its per-thread holds).
//
// Threads start behind latches or wait for each other through the lock's own state() (bounded polls); no
// assertion depends on elapsed time.
#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/iteration_lock.hpp"
#include "support/order_log.hpp"
#include "support/polling.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using iterlock::iteration_lock;
using iterlock::priority;
using iterlock::test::eventually;
using iterlock::test::order_log;

class IterationLock : public iterlock::test::watched {};

static_assert(!std::is_copy_constructible_v<iteration_lock::guard>);
static_assert(!std::is_move_constructible_v<iteration_lock::guard>);

TEST_F(IterationLock, MeetsSharedMutexThroughStandardAdaptors) {
    iteration_lock l;
    {
        std::unique_lock w(l);
        EXPECT_TRUE(l.state().write_held);
    }
    {
        std::shared_lock r(l);
        EXPECT_EQ(l.state().readers, 1u);
    }
    EXPECT_EQ(l.state().total_waiting(), 0u);
    EXPECT_FALSE(l.state().write_held);
}

TEST_F(IterationLock, L1_WriterWaitsForTheGuard) {
    iteration_lock l;
    std::atomic<bool> wrote{false};
    std::jthread writer;
    {
        auto g = l.lock_for_iteration();
        writer = std::jthread([&] {
            std::unique_lock w(l);
            wrote = true;
        });
        ASSERT_TRUE(eventually([&] { return l.state().waiting_writers[0] == 1; }));
        EXPECT_FALSE(wrote.load());
    }
    writer.join();
    EXPECT_TRUE(wrote.load());
}

TEST_F(IterationLock, L2_GuardsAndReadersRunBesideAGuard) {
    iteration_lock l;
    auto g = l.lock_for_iteration();
    std::jthread other([&] {
        auto g2 = l.try_lock_for_iteration(0ms);
        EXPECT_TRUE(g2.owns_lock());
        EXPECT_TRUE(l.try_lock_shared());
        l.unlock_shared();
        EXPECT_EQ(l.state().iterations, 2u);
    });
    other.join();
    EXPECT_EQ(l.state().iterations, 1u);
}

TEST_F(IterationLock, L3_WaitingWriterBlocksNewGuards) {
    iteration_lock l;
    std::jthread writer;
    {
        auto g = l.lock_for_iteration();
        writer = std::jthread([&] { std::unique_lock w(l); });
        ASSERT_TRUE(eventually([&] { return l.state().waiting_writers[0] == 1; }));
        std::jthread late([&] {
            auto g2 = l.try_lock_for_iteration(20ms);
            EXPECT_FALSE(g2.owns_lock());
        });
        late.join();
        EXPECT_EQ(l.metrics().iterations_timeout, 1u);
    }
    writer.join();
}

TEST_F(IterationLock, L4_RealtimeGuardGoesBeforeABestEffortWriter) {
    iteration_lock l;
    order_log log;
    std::jthread be_writer, rt_walker;
    {
        std::unique_lock w(l);
        be_writer = std::jthread([&] {
            std::unique_lock w2(l);
            log.add("writer");
        });
        ASSERT_TRUE(eventually([&] { return l.state().waiting_writers[0] == 1; }));
        rt_walker = std::jthread([&] {
            iterlock::priority_scope rt(priority::realtime);
            auto g = l.lock_for_iteration();
            log.add("walker");
        });
        ASSERT_TRUE(eventually([&] { return l.state().waiting_iterations[1] == 1; }));
    }
    be_writer.join();
    rt_walker.join();
    ASSERT_EQ(log.entries().size(), 2u);
    EXPECT_EQ(log.entries()[0], "walker");
}

TEST_F(IterationLock, L5_TimedOutGuardOwnsNothingAndLeavesNoTrace) {
    iteration_lock l;
    std::unique_lock w(l);
    auto g = l.try_lock_for_iteration(2ms);
    EXPECT_FALSE(g.owns_lock());
    EXPECT_FALSE(static_cast<bool>(g));
    EXPECT_FALSE(l.held_for_iteration());
    EXPECT_EQ(l.state().total_waiting(), 0u);
    EXPECT_EQ(l.state().iterations, 0u);
}

TEST_F(IterationLock, L6_TheOnlyGuardUpgradesToWriteAndBack) {
    iteration_lock l;
    auto g = l.lock_for_iteration();
    {
        std::unique_lock w(l);  // upgrade, not a second acquisition
        EXPECT_TRUE(l.state().write_held);
        EXPECT_EQ(l.state().iterations, 1u);
    }
    EXPECT_FALSE(l.state().write_held);
    EXPECT_EQ(l.state().iterations, 1u);
    EXPECT_TRUE(l.held_for_iteration());
}

TEST_F(IterationLock, L6_WriteBesideAnotherGuardThrowsLockErrorAndChangesNothing) {
    iteration_lock l;
    std::latch held(1), done(1);
    std::jthread other([&] {
        auto g = l.lock_for_iteration();
        held.count_down();
        done.wait();
    });
    held.wait();
    {
        auto g = l.lock_for_iteration();
        EXPECT_THROW(l.lock(), iterlock::lock_error);
        EXPECT_FALSE(l.try_lock());
        EXPECT_FALSE(l.state().write_held);
        EXPECT_EQ(l.state().iterations, 2u);
    }
    done.count_down();
    other.join();
    EXPECT_EQ(l.metrics().misuse_detected, 2u);
}

TEST_F(IterationLock, L7_NestedGuardsShareTheHoldBehindAWaitingWriter) {
    iteration_lock l;
    std::jthread writer;
    {
        auto outer = l.lock_for_iteration();
        writer = std::jthread([&] { std::unique_lock w(l); });
        ASSERT_TRUE(eventually([&] { return l.state().waiting_writers[0] == 1; }));
        auto inner = l.lock_for_iteration();  // would queue behind the writer if it were not shared
        EXPECT_TRUE(inner.owns_lock());
        EXPECT_EQ(l.state().iterations, 1u);
    }
    writer.join();
    EXPECT_EQ(l.state().iterations, 0u);
}

TEST_F(IterationLock, L7_ThreadHoldsAtMostEightLocksAndMapsTogether) {
    std::vector<std::unique_ptr<iteration_lock>> locks;
    std::vector<std::unique_ptr<iteration_lock::guard>> guards;
    for (int i = 0; i < 7; ++i) {
        locks.push_back(std::make_unique<iteration_lock>());
        guards.push_back(std::make_unique<iteration_lock::guard>(*locks.back()));
    }
    iterlock::locked_concurrent_map<int, int> m(4);
    auto mg = m.lock_for_iteration();  // the eighth hold: a map shares the registry
    iteration_lock ninth;
    EXPECT_THROW(iteration_lock::guard g(ninth), iterlock::lock_error);
    EXPECT_EQ(ninth.metrics().iterations_error, 1u);
    while (!guards.empty()) guards.pop_back();
}

TEST_F(IterationLock, MetricsCountOutcomesWaitsAndHoldTimes) {
    iteration_lock l;
    { auto g = l.lock_for_iteration(); }
    {
        iterlock::priority_scope rt(priority::realtime);
        auto g = l.lock_for_iteration();
    }
    {
        std::unique_lock w(l);
        auto g = l.try_lock_for_iteration(1ms);
        EXPECT_FALSE(g);
    }
    const iterlock::map_metrics m = l.metrics();
    EXPECT_STREQ(m.policy, "locked");
    EXPECT_EQ(m.iterations_started, 3u);
    EXPECT_EQ(m.iterations_success, 2u);
    EXPECT_EQ(m.iterations_timeout, 1u);
    EXPECT_EQ(m.iteration_hold[0].count, 1u);
    EXPECT_EQ(m.iteration_hold[1].count, 1u);
    EXPECT_EQ(m.lock_wait[static_cast<int>(iterlock::lock_role::iterator)][0].count, 1u);
    EXPECT_EQ(m.lock_wait[static_cast<int>(iterlock::lock_role::iterator)][1].count, 1u);
    EXPECT_EQ(m.lock_wait[static_cast<int>(iterlock::lock_role::writer)][0].count, 1u);
}

TEST_F(IterationLock, ConcurrentMapGuardsUseTheSameHoldRegistry) {
    iterlock::locked_concurrent_map<int, int> m(4);
    auto g = m.lock_for_iteration();
    EXPECT_NE(iterlock::detail::this_thread_iteration_holds().depth_for(&m), nullptr);
}

TEST_F(IterationLock, StressWritersReadersAndWalkersKeepTheInvariant) {
    // Writers keep two counters equal under the write lock; walkers and readers must never see them apart.
    iteration_lock l;
    long a = 0, b = 0;
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::latch go(5);
    std::vector<std::jthread> ts;
    for (int w = 0; w < 2; ++w)
        ts.emplace_back([&] {
            go.arrive_and_wait();
            for (int i = 0; i < iterlock::test::scaled(20000, 10000); ++i) {
                std::unique_lock lk(l);
                ++a;
                ++b;
            }
        });
    for (int r = 0; r < 3; ++r)
        ts.emplace_back([&, r] {
            go.arrive_and_wait();
            while (!stop.load()) {
                if (r == 0) {
                    std::shared_lock lk(l);
                    if (a != b) ++bad;
                } else {
                    auto g = l.lock_for_iteration();
                    if (a != b) ++bad;
                    if (r == 2 && a % 7 == 0) {
                        try {  // L6: succeeds only when this is the only walk
                            std::unique_lock w(l);
                            ++a;
                            ++b;
                        } catch (const iterlock::lock_error&) {
                        }
                    }
                }
            }
        });
    ts[0].join();
    ts[1].join();
    stop = true;
    ts.clear();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(a, b);
    EXPECT_GE(a, 2 * iterlock::test::scaled(20000, 10000));
    l.state();  // and the lock is idle
    EXPECT_EQ(l.state().total_waiting(), 0u);
}

TEST(IterationLockDeathTest, GuardReleasedOnAnotherThreadAborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            iteration_lock l;
            auto* g = new iteration_lock::guard(l);
            std::thread([g] { delete g; }).join();
        },
        "released by another thread");
}

}  // namespace
