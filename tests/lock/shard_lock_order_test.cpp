// tests/lock/shard_lock_order_test.cpp: threaded tests of who waits for whom and in which order the shard
// lock hands itself on (rules R1..R7 of iterlock/detail/lock/shard_lock.hpp). Orders are checked by a log
// written inside the critical sections, never by timing; "X is queued" is observed through
// shard_lock::state().
#include <atomic>
#include <chrono>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/detail/lock/shard_lock.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/priority.hpp"
#include "support/lock_probes.hpp"
#include "support/order_log.hpp"
#include "support/polling.hpp"
#include "support/watchdog.hpp"

namespace {

using iterlock::lock_error;
using iterlock::priority;
using iterlock::detail::shard_lock;
using iterlock::test::eventually;
using iterlock::test::order_log;
using iterlock::test::waiting_iterations;
using iterlock::test::waiting_writers;
using Strings = std::vector<std::string>;

class ShardLockOrder : public iterlock::test::watched {};
class ShardLockTimeout : public iterlock::test::watched {};
class ShardLockUpgrade : public iterlock::test::watched {};

// A writer thread with priority `p` that logs `name` inside its critical section.
std::thread writer(shard_lock& l, order_log& log, std::string name, priority p) {
    return std::thread([&l, &log, name = std::move(name), p] {
        iterlock::priority_scope scope(p);
        l.lock();
        log.add(name);
        l.unlock();
    });
}

// An iteration thread with priority `p` that logs `name` inside its critical section.
std::thread iteration(shard_lock& l, order_log& log, std::string name, priority p) {
    return std::thread([&l, &log, name = std::move(name), p] {
        l.lock_iteration(p);
        log.add(name);
        l.unlock_iteration();
    });
}

TEST_F(ShardLockOrder, R1_ReadersProceedWhileAnIterationHolds) {
    shard_lock l;
    l.lock_iteration();
    std::atomic<bool> read{false};
    std::thread reader([&] {
        l.lock_shared();
        read = true;
        l.unlock_shared();
    });
    EXPECT_TRUE(eventually([&] { return read.load(); })) << "a reader waited for an iteration";
    l.unlock_iteration();
    reader.join();
}

TEST_F(ShardLockOrder, R1_ReadersDoNotQueueBehindAWaitingWriter) {
    shard_lock l;
    l.lock_iteration();
    order_log log;
    std::thread w = writer(l, log, "writer", priority::realtime);
    ASSERT_TRUE(eventually([&] { return waiting_writers(l, priority::realtime) == 1; }));
    std::atomic<bool> read{false};
    std::thread reader([&] {
        l.lock_shared();
        read = true;
        l.unlock_shared();
    });
    EXPECT_TRUE(eventually([&] { return read.load(); })) << "a reader waited for a queued writer";
    EXPECT_TRUE(log.entries().empty());
    l.unlock_iteration();
    reader.join();
    w.join();
    EXPECT_EQ(log.entries(), Strings{"writer"});
}

TEST_F(ShardLockOrder, R2_WriterWaitsForAnIterationThenProceeds) {
    shard_lock l;
    l.lock_iteration();
    std::atomic<bool> wrote{false};
    std::chrono::nanoseconds waited{-1};
    std::thread w([&] {
        l.lock(&waited);
        wrote = true;
        l.unlock();
    });
    ASSERT_TRUE(eventually([&] { return waiting_writers(l, priority::best_effort) == 1; }));
    EXPECT_FALSE(wrote.load());
    l.unlock_iteration();
    w.join();
    EXPECT_TRUE(wrote.load());
    EXPECT_GT(waited.count(), 0) << "the wait hook must report the time a queued writer spent";
    EXPECT_FALSE(l.state().queued);
}

TEST_F(ShardLockOrder, R1_R8_ReaderWaitsForAWriterThenProceeds) {
    shard_lock l;
    int data = 0;  // plain data: ThreadSanitizer checks that the lock orders these accesses
    l.lock();
    std::atomic<bool> read{false};
    int seen = -1;
    std::thread r([&] {
        l.lock_shared();
        seen = data;
        read = true;
        l.unlock_shared();
    });
    ASSERT_TRUE(eventually([&] { return l.state().waiting_readers == 1; }));
    EXPECT_FALSE(read.load());
    data = 42;
    l.unlock();
    r.join();
    EXPECT_EQ(seen, 42);
}

TEST_F(ShardLockOrder, R3_QueuedWriterGoesBeforeANewIteration) {
    shard_lock l;
    order_log log;
    l.lock_iteration();
    std::thread w = writer(l, log, "writer", priority::best_effort);
    ASSERT_TRUE(eventually([&] { return waiting_writers(l, priority::best_effort) == 1; }));
    EXPECT_FALSE(l.try_lock_iteration()) << "a new iteration got past a queued writer";
    std::thread it = iteration(l, log, "iteration", priority::best_effort);
    ASSERT_TRUE(eventually([&] { return waiting_iterations(l, priority::best_effort) == 1; }));
    EXPECT_TRUE(log.entries().empty());
    l.unlock_iteration();  // the holder finishes; the writer, then the new walk
    w.join();
    it.join();
    EXPECT_EQ(log.entries(), (Strings{"writer", "iteration"}));
}

// R5: while a writer is queued, the fast paths refuse even where the compatibility matrix alone would admit
// the caller (another iteration beside the holding one); readers are exempt (R1).
TEST_F(ShardLockOrder, R5_FastPathsRefuseWhileAnybodyIsQueued) {
    shard_lock l;
    order_log log;
    l.lock_iteration();
    std::thread w = writer(l, log, "writer", priority::best_effort);
    ASSERT_TRUE(eventually([&] { return waiting_writers(l, priority::best_effort) == 1; }));
    EXPECT_TRUE(l.state().queued);
    EXPECT_FALSE(l.try_lock_iteration()) << "a fast-path iteration overtook a queued writer";
    EXPECT_FALSE(l.try_lock()) << "a fast-path writer overtook a queued writer";
    EXPECT_TRUE(l.try_lock_shared()) << "a reader queued behind a waiting writer (R1 exempts readers)";
    l.unlock_shared();
    EXPECT_TRUE(log.entries().empty());
    l.unlock_iteration();
    w.join();
    EXPECT_EQ(log.entries(), Strings{"writer"});
    EXPECT_FALSE(l.state().queued);
}

TEST_F(ShardLockOrder, R4_HandOffFollowsPriorityThenRole) {
    shard_lock l;
    order_log log;
    l.lock();
    // Queue them in the worst order: best-effort first, iterations before writers.
    std::vector<std::thread> threads;
    threads.push_back(iteration(l, log, "be_iteration", priority::best_effort));
    ASSERT_TRUE(eventually([&] { return waiting_iterations(l, priority::best_effort) == 1; }));
    threads.push_back(writer(l, log, "be_writer", priority::best_effort));
    ASSERT_TRUE(eventually([&] { return waiting_writers(l, priority::best_effort) == 1; }));
    threads.push_back(iteration(l, log, "rt_iteration", priority::realtime));
    ASSERT_TRUE(eventually([&] { return waiting_iterations(l, priority::realtime) == 1; }));
    threads.push_back(writer(l, log, "rt_writer", priority::realtime));
    ASSERT_TRUE(eventually([&] { return waiting_writers(l, priority::realtime) == 1; }));
    l.unlock();
    for (auto& t : threads) t.join();
    EXPECT_EQ(log.entries(), (Strings{"rt_writer", "rt_iteration", "be_writer", "be_iteration"}));
    EXPECT_FALSE(l.state().queued);
}

TEST_F(ShardLockOrder, R4_RealtimeIterationOvertakesAQueuedBestEffortWriter) {  // R4: priority beats R3
    shard_lock l;
    order_log log;
    l.lock_iteration();  // a best-effort walk holds
    std::thread w = writer(l, log, "be_writer", priority::best_effort);
    ASSERT_TRUE(eventually([&] { return waiting_writers(l, priority::best_effort) == 1; }));

    std::atomic<bool> rt_in{false};
    std::atomic<bool> rt_release{false};
    std::thread rt([&] {
        l.lock_iteration(priority::realtime);
        log.add("rt_iteration");
        rt_in = true;
        while (!rt_release.load()) std::this_thread::yield();
        l.unlock_iteration();
    });
    EXPECT_TRUE(eventually([&] { return rt_in.load(); }))
        << "realtime walk waited behind a best-effort writer";
    // A best-effort walk arriving now still queues behind the writer.
    std::thread be = iteration(l, log, "be_iteration", priority::best_effort);
    ASSERT_TRUE(eventually([&] { return waiting_iterations(l, priority::best_effort) == 1; }));
    rt_release = true;
    l.unlock_iteration();
    rt.join();
    w.join();
    be.join();
    EXPECT_EQ(log.entries(), (Strings{"rt_iteration", "be_writer", "be_iteration"}));
}

TEST_F(ShardLockOrder, R3_RealtimeWriterBlocksNewRealtimeIterations) {  // R3 within one priority
    shard_lock l;
    order_log log;
    l.lock_iteration();
    std::thread w = writer(l, log, "rt_writer", priority::realtime);
    ASSERT_TRUE(eventually([&] { return waiting_writers(l, priority::realtime) == 1; }));
    std::thread it = iteration(l, log, "rt_iteration", priority::realtime);
    ASSERT_TRUE(eventually([&] { return waiting_iterations(l, priority::realtime) == 1; }));
    l.unlock_iteration();
    w.join();
    it.join();
    EXPECT_EQ(log.entries(), (Strings{"rt_writer", "rt_iteration"}));
}

TEST_F(ShardLockOrder, R4_WritersOfOneClassGoOneAtATimeIterationsTogether) {
    shard_lock l;
    l.lock();
    std::atomic<int> writers_in{0};
    std::atomic<int> max_writers_in{0};
    std::atomic<int> iterations_in{0};
    std::atomic<bool> iterations_release{false};
    std::vector<std::thread> threads;
    threads.reserve(6);
    for (int i = 0; i < 3; ++i)
        threads.emplace_back([&] {
            l.lock();
            const int now = ++writers_in;
            int seen = max_writers_in.load();
            while (now > seen && !max_writers_in.compare_exchange_weak(seen, now)) {
            }
            --writers_in;
            l.unlock();
        });
    for (int i = 0; i < 3; ++i)
        threads.emplace_back([&] {
            l.lock_iteration(priority::best_effort);
            ++iterations_in;
            while (!iterations_release.load()) std::this_thread::yield();
            l.unlock_iteration();
        });
    ASSERT_TRUE(eventually([&] {
        const auto st = l.state();
        return st.waiting_writers[0] == 3 && st.waiting_iterations[0] == 3;
    }));
    l.unlock();
    // All three walks must be able to hold at once once the writers are through.
    EXPECT_TRUE(eventually([&] { return iterations_in.load() == 3; }));
    iterations_release = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(max_writers_in.load(), 1);
}

TEST_F(ShardLockTimeout, R6_TimedOutIterationReturnsFalseAndALaterAcquireWorks) {
    shard_lock l;
    l.lock();
    std::atomic<int> result{-1};
    std::thread t([&] {
        result = l.try_lock_iteration_for(std::chrono::milliseconds(20)) ? 1 : 0;
        if (result == 1) l.unlock_iteration();
    });
    t.join();
    EXPECT_EQ(result.load(), 0);
    EXPECT_EQ(l.state().total_waiting(), 0U);
    EXPECT_FALSE(l.state().queued);
    l.unlock();
    std::thread later([&] {
        l.lock_iteration();
        result = 2;
        l.unlock_iteration();
    });
    later.join();
    EXPECT_EQ(result.load(), 2);
}

TEST_F(ShardLockTimeout, R6_TimedOutWriterReleasesTheIterationsItHeldBack) {  // R6 with R3
    shard_lock l;
    l.lock_iteration();  // held for the whole test
    std::atomic<int> writer_result{-1};
    std::thread w([&] {
        writer_result = l.try_lock_for(std::chrono::milliseconds(100)) ? 1 : 0;
        if (writer_result == 1) l.unlock();
    });
    ASSERT_TRUE(
        eventually([&] { return waiting_writers(l, priority::best_effort) == 1 || writer_result >= 0; }));
    // This walk queues behind the timed writer (or, if the writer already gave up, gets straight in). Either
    // way it must get in while our walk still holds: a timed-out writer leaves nothing that blocks walks.
    std::atomic<bool> walked{false};
    std::thread it([&] {
        l.lock_iteration();
        walked = true;
        l.unlock_iteration();
    });
    EXPECT_TRUE(eventually([&] { return walked.load(); }));
    w.join();
    it.join();
    EXPECT_EQ(writer_result.load(), 0);
    EXPECT_FALSE(l.state().queued);
    l.unlock_iteration();
}

TEST_F(ShardLockTimeout, R6_TimedOutRealtimeWaiterLetsBestEffortGo) {  // R6 with R4
    shard_lock l;
    order_log log;
    l.lock_iteration();
    // A realtime writer that gives up, and a best-effort writer behind it: when the walk ends, the
    // best-effort writer must get the lock.
    std::atomic<int> rt_result{-1};
    std::thread rt([&] {
        iterlock::priority_scope scope(priority::realtime);
        rt_result = l.try_lock_for(std::chrono::milliseconds(30)) ? 1 : 0;
        if (rt_result == 1) l.unlock();
    });
    std::thread be = writer(l, log, "be_writer", priority::best_effort);
    rt.join();
    EXPECT_EQ(rt_result.load(), 0);
    l.unlock_iteration();
    be.join();
    EXPECT_EQ(log.entries(), Strings{"be_writer"});
    EXPECT_FALSE(l.state().queued);
}

TEST_F(ShardLockUpgrade, R7_ThrowsWhenAnotherThreadWalks) {
    shard_lock l;
    std::latch other_holds(1);
    std::atomic<bool> other_release{false};
    std::thread other([&] {
        l.lock_iteration();
        other_holds.count_down();
        while (!other_release.load()) std::this_thread::yield();
        l.unlock_iteration();
    });
    other_holds.wait();
    l.lock_iteration();
    EXPECT_THROW(l.upgrade_iteration_to_write(), lock_error);
    EXPECT_FALSE(l.state().write_held);
    EXPECT_EQ(l.state().iterations, 2U);
    other_release = true;
    other.join();
    l.upgrade_iteration_to_write();  // the only walk now
    EXPECT_TRUE(l.state().write_held);
    l.downgrade_write_to_iteration();
    l.unlock_iteration();
}

TEST_F(ShardLockUpgrade, R7_DrainsReadersInsideAndBlocksNewOnes) {
    shard_lock l;
    int data = 0;
    std::latch reader_in(1);
    std::atomic<bool> reader_release{false};
    std::thread inside([&] {
        l.lock_shared();
        reader_in.count_down();
        while (!reader_release.load()) std::this_thread::yield();
        l.unlock_shared();
    });
    reader_in.wait();

    std::atomic<bool> upgraded{false};
    std::atomic<bool> writer_done{false};
    std::thread walker([&] {
        l.lock_iteration();
        l.upgrade_iteration_to_write();
        upgraded = true;
        data = 7;  // plain write under the upgraded lock
        l.downgrade_write_to_iteration();
        writer_done = true;
        l.unlock_iteration();
    });
    ASSERT_TRUE(eventually([&] { return l.state().upgrade_draining; }));
    EXPECT_FALSE(upgraded.load());
    EXPECT_FALSE(l.try_lock_shared()) << "a new reader got in while an upgrade drains";
    int seen = -1;
    std::thread late([&] {
        l.lock_shared();
        seen = data;
        l.unlock_shared();
    });
    ASSERT_TRUE(eventually([&] { return l.state().waiting_readers == 1; }));
    reader_release = true;
    inside.join();
    walker.join();
    late.join();
    EXPECT_TRUE(writer_done.load());
    EXPECT_EQ(seen, 7);
    EXPECT_FALSE(l.state().queued);
    l.check_invariants();
}

TEST_F(ShardLockUpgrade, R7_UpgradedIterationExcludesWritersAndIterations) {
    shard_lock l;
    order_log log;
    l.lock_iteration();
    l.upgrade_iteration_to_write();
    std::thread w = writer(l, log, "writer", priority::realtime);
    std::thread it = iteration(l, log, "iteration", priority::realtime);
    ASSERT_TRUE(eventually([&] {
        const auto st = l.state();
        return st.waiting_writers[1] == 1 && st.waiting_iterations[1] == 1;
    }));
    log.add("upgraded");
    l.downgrade_write_to_iteration();
    l.unlock_iteration();
    w.join();
    it.join();
    EXPECT_EQ(log.entries(), (Strings{"upgraded", "writer", "iteration"}));
}

}  // namespace
