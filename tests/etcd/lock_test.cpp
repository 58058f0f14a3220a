// iterlock::etcd::iteration_lock (D-L1..D-L7) against a real etcd, one process: each "process" is a node with
// its own client, map and lock session (its own lease), so everything between nodes goes through etcd.
// The multi-process tests (SIGKILL, SIGSTOP, four processes) are in lock_process_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "iterlock/errors.hpp"
#include "iterlock/etcd/map.hpp"
#include "testing/local_etcd.hpp"
#if ITERLOCK_TEST_PROMETHEUS
#include "iterlock/prometheus.hpp"
#endif

namespace {

namespace etcd = iterlock::etcd;
using etcd::testing::local_etcd;
using lmap = etcd::map<std::uint64_t, std::uint64_t, etcd::default_codec, etcd::locked_iteration>;
using namespace std::chrono_literals;

struct node {
    etcd::client c;
    lmap m;
    node(const local_etcd& cl, const std::string& prefix, std::chrono::seconds ttl = 3s)
        : c(etcd::client_options{.endpoints = cl.endpoints()}),
          m(c, prefix, {}, etcd::lock_options{.ttl = ttl}) {}
};

// Polls `pred` until it holds (true) or 20 s pass (false): waits for another node's state to show, never
// a timing assertion.
template <class P>
bool eventually(P&& pred) {
    const auto end = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return pred();
}

std::size_t keys_under(etcd::client& c, const std::string& p) {
    return static_cast<std::size_t>(c.range(p, {.range_end = etcd::prefix_end(p), .count_only = true}).count);
}

// DL1's scene: node b writes key 1 = v while node a holds a guard. b's write queues (a sees one waiting
// best-effort writer) and lands nowhere while the guard lives; a releases, and b's write returns a revision
// (in *rev) after the guard's.
void write_waits_for_a_guard(node& a, node& b, std::uint64_t v, std::int64_t* rev) {
    auto g = a.m.lock_for_iteration();
    ASSERT_TRUE(g);
    auto w = std::async(std::launch::async, [&] { return b.m.insert_or_assign(1, v); });
    ASSERT_TRUE(eventually([&] { return a.m.lock().view_state().writers_best_effort == 1; }));
    EXPECT_FALSE(a.c.get(a.m.etcd_key(1)).has_value()) << "a write landed inside a guard";
    const auto h = g.revision();
    g.release();
    *rev = w.get();
    EXPECT_GT(*rev, h);
}

TEST(EtcdIterationLock, DL1_WriteOfAnotherProcessWaitsForTheGuard) {
    local_etcd cluster;
    node a(cluster, "dl1/"), b(cluster, "dl1/");
    std::int64_t rev = 0;
    ASSERT_NO_FATAL_FAILURE(write_waits_for_a_guard(a, b, 1, &rev));
    EXPECT_TRUE(a.c.get(a.m.etcd_key(1)).has_value());
    EXPECT_TRUE(eventually([&] { return a.m.lock().view_state().writers_best_effort == 0; }))
        << "the waiting writer's key stayed behind";
    EXPECT_EQ(b.m.lock().counters().writes_waited, 1u);
}

// The hand-off: the waiting put lands in the release's own Txn, once, at the revision the guard ends at.
TEST(EtcdIterationLock, DL1_HandOffPutLandsOnceInTheRelease) {
    local_etcd cluster;
    node a(cluster, "dl1h/"), b(cluster, "dl1h/");
    a.m.insert_or_assign(2, 1);  // another key, before the guard
    std::int64_t rev = 0;
    ASSERT_NO_FATAL_FAILURE(write_waits_for_a_guard(a, b, 7, &rev));
    const auto kv = a.c.get(a.m.etcd_key(1));
    ASSERT_TRUE(kv.has_value());
    EXPECT_EQ(kv->mod_revision, rev) << "the writer was told another revision than its put's";
    EXPECT_EQ(kv->version, 1) << "the waiting put landed more than once";
    EXPECT_EQ(a.m.find(1, etcd::linearizable)->value, 7u);
    EXPECT_EQ(a.m.lock().counters().handoffs_applied, 1u);
    EXPECT_EQ(b.m.lock().counters().writes_handed_off, 1u);
    EXPECT_EQ(b.m.lock().counters().writes_waited, 1u);
    EXPECT_TRUE(eventually([&] { return keys_under(a.c, a.m.lock().prefix()) == 0; }))
        << "a guard or intent key stayed behind";
}

// A write with compares of its own (compare-and-set) is not handed off: it retries itself.
TEST(EtcdIterationLock, DL1_ConditionalWriteRetriesItself) {
    local_etcd cluster;
    node a(cluster, "dl1c/"), b(cluster, "dl1c/");
    const auto first = a.m.insert_or_assign(1, 1);
    auto g = a.m.lock_for_iteration();
    auto w = std::async(std::launch::async, [&] { return b.m.compare_and_set(1, first, 2); });
    ASSERT_TRUE(eventually([&] { return a.m.lock().view_state().writers_best_effort == 1; }));
    g.release();
    EXPECT_TRUE(w.get().succeeded);
    EXPECT_EQ(a.m.lock().counters().handoffs_applied, 0u);
    EXPECT_EQ(b.m.lock().counters().writes_handed_off, 0u);
    EXPECT_EQ(a.c.get(a.m.etcd_key(1))->version, 2);
}

// A waiting put that gives up (write_wait) withdraws its intent: the later release applies nothing.
TEST(EtcdIterationLock, DL1_HandOffIntentWithdrawnOnWriteWait) {
    local_etcd cluster;
    node a(cluster, "dl1w/");
    etcd::client cb(etcd::client_options{.endpoints = cluster.endpoints()});
    lmap b(cb, "dl1w/", {}, etcd::lock_options{.ttl = 3s, .write_wait = 300ms});
    auto g = a.m.lock_for_iteration();
    try {
        b.insert_or_assign(1, 1);
        ADD_FAILURE() << "the write did not wait for the guard";
    } catch (const etcd::error& e) {
        EXPECT_EQ(e.code(), etcd::errc::deadline) << e.what();
    }
    EXPECT_TRUE(eventually([&] { return a.m.lock().view_state().writers_best_effort == 0; }));
    g.release();
    EXPECT_EQ(a.m.lock().counters().handoffs_applied, 0u);
    EXPECT_FALSE(a.c.get(a.m.etcd_key(1)).has_value()) << "a withdrawn write landed";
}

TEST(EtcdIterationLock, DL1_UncontendedWriteNeitherWaitsNorLeavesAKey) {
    local_etcd cluster;
    node a(cluster, "dl1b/");
    a.m.insert_or_assign(1, 1);
    EXPECT_EQ(a.m.lock().counters().writes_gated, 1u);
    EXPECT_EQ(a.m.lock().counters().writes_waited, 0u);
    EXPECT_EQ(keys_under(a.c, a.m.lock().prefix()), 0u);
    EXPECT_EQ(a.m.lock().lease_id(), 0) << "a write with no guard around needs no lease";
}

TEST(EtcdIterationLock, DL2_M10_GuardsOfTwoProcessesAtOnce) {
    local_etcd cluster;
    node a(cluster, "dl2/"), b(cluster, "dl2/");
    auto ga = a.m.lock_for_iteration();
    auto gb = b.m.try_lock_for_iteration(10s);
    ASSERT_TRUE(ga);
    ASSERT_TRUE(gb);
    EXPECT_TRUE(eventually([&] { return a.m.lock().view_state().guards == 2; }));
    EXPECT_NE(ga.revision(), gb.revision());
}

TEST(EtcdIterationLock, DL3_WaitingWriterBlocksNewGuards) {
    local_etcd cluster;
    node a(cluster, "dl3/"), b(cluster, "dl3/"), c(cluster, "dl3/");
    auto g = a.m.lock_for_iteration();
    auto w = std::async(std::launch::async, [&] { return b.m.insert_or_assign(7, 7); });
    ASSERT_TRUE(eventually([&] { return c.m.lock().view_state().writers_best_effort == 1; }));
    auto refused = c.m.try_lock_for_iteration(300ms);
    EXPECT_FALSE(refused) << "a guard was granted past a waiting writer";
    auto also_a = a.m.try_lock_for_iteration(300ms);  // nested on a's thread: shares a's hold (L7)
    EXPECT_TRUE(also_a);
    also_a.release();
    g.release();
    const auto wrev = w.get();
    auto later = c.m.lock_for_iteration();
    ASSERT_TRUE(later);
    EXPECT_GT(later.revision(), wrev);
}

TEST(EtcdIterationLock, DL3_GuardQueuedBeforeAWriterKeepsItsTurn) {
    local_etcd cluster;
    node a(cluster, "dl3b/"), b(cluster, "dl3b/"), c(cluster, "dl3b/"), d(cluster, "dl3b/");
    auto g = a.m.lock_for_iteration();
    // b's writer waits first; c's walker queues behind it (Q_c > w_b); then d's writer queues (w_d > Q_c).
    auto wb = std::async(std::launch::async, [&] { return b.m.insert_or_assign(1, 1); });
    ASSERT_TRUE(eventually([&] { return c.m.lock().view_state().writers_best_effort == 1; }));
    std::atomic<std::int64_t> c_fence{0}, c_queued{0};
    std::atomic<bool> c_release{false};
    auto gc = std::async(std::launch::async, [&] {
        auto h = c.m.lock_for_iteration();
        c_queued = h.queued_revision();
        c_fence = h.revision();
        while (!c_release) std::this_thread::sleep_for(1ms);
    });
    ASSERT_TRUE(eventually([&] { return c.m.lock().counters().guard_refusals > 0; }));  // c's Q is set
    auto wd = std::async(std::launch::async, [&] { return d.m.insert_or_assign(2, 2); });
    ASSERT_TRUE(eventually([&] { return a.m.lock().view_state().writers_best_effort == 2; }));
    g.release();
    const auto rb = wb.get();
    ASSERT_TRUE(eventually([&] { return c_fence.load() != 0; }))
        << "the guard queued before d's writer starved";
    EXPECT_GT(c_fence.load(), rb);
    EXPECT_LT(c_queued.load(), c_fence.load());
    // d's write may overtake c once no guard is held (writers wait only for held guards; a release may
    // apply it, the hand-off); it must not land while c holds. What etcd holds while c holds says which.
    const auto d_seen = a.c.get(a.m.etcd_key(2));
    c_release = true;
    gc.get();
    const auto rd = wd.get();
    if (d_seen) {
        EXPECT_LT(d_seen->mod_revision, c_fence.load()) << "d's write landed inside c's guard";
        EXPECT_EQ(rd, d_seen->mod_revision);
    } else {
        EXPECT_GT(rd, c_fence.load()) << "d's write landed inside c's guard";
    }
}

TEST(EtcdIterationLock, DL4_RealtimeWalkerGoesBeforeWaitingBestEffortWriter) {
    local_etcd cluster;
    node a(cluster, "dl4/"), b(cluster, "dl4/"), c(cluster, "dl4/");
    auto g = a.m.lock_for_iteration();
    auto w = std::async(std::launch::async, [&] { return b.m.insert_or_assign(3, 3); });
    ASSERT_TRUE(eventually([&] { return c.m.lock().view_state().writers_best_effort == 1; }));
    EXPECT_FALSE(c.m.try_lock_for_iteration(300ms)) << "best_effort walker";
    {
        iterlock::priority_scope rt(iterlock::priority::realtime);
        auto grt = c.m.try_lock_for_iteration(10s);
        EXPECT_TRUE(grt) << "a realtime walker waited behind a best_effort writer";
    }
    g.release();
    EXPECT_GT(w.get(), 0);
}

TEST(EtcdIterationLock, DL4_RealtimeWriterBlocksEveryNewWalker) {
    local_etcd cluster;
    node a(cluster, "dl4b/"), b(cluster, "dl4b/"), c(cluster, "dl4b/");
    auto g = a.m.lock_for_iteration();
    auto w = std::async(std::launch::async, [&] {
        iterlock::priority_scope rt(iterlock::priority::realtime);
        return b.m.insert_or_assign(3, 3);
    });
    ASSERT_TRUE(eventually([&] { return c.m.lock().view_state().writers_realtime == 1; }));
    iterlock::priority_scope rt(iterlock::priority::realtime);
    EXPECT_FALSE(c.m.try_lock_for_iteration(300ms)) << "a later realtime walker passed a realtime writer";
    g.release();
    EXPECT_GT(w.get(), 0);
    EXPECT_TRUE(c.m.try_lock_for_iteration(10s));
}

TEST(EtcdIterationLock, DL5_TimedOutTryLeavesNoKey) {
    local_etcd cluster;
    node a(cluster, "dl5/"), b(cluster, "dl5/"), c(cluster, "dl5/");
    auto g = a.m.lock_for_iteration();
    auto w = std::async(std::launch::async, [&] { return b.m.insert_or_assign(1, 1); });
    ASSERT_TRUE(eventually([&] { return c.m.lock().view_state().writers_best_effort == 1; }));
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(c.m.try_lock_for_iteration(100ms));
    EXPECT_EQ(keys_under(a.c, a.m.lock().prefix() + "i/"), 1u) << "a failed try left a guard key";
    EXPECT_EQ(keys_under(a.c, a.m.lock().prefix()), 2u);
    EXPECT_EQ(c.m.lock().counters().guard_timeouts, 3u);
    g.release();
    w.get();
    EXPECT_TRUE(eventually([&] { return keys_under(a.c, a.m.lock().prefix()) == 0; }));
}

TEST(EtcdIterationLock, DL6_E5_FencedWriteOfAnExpiredLeaseNeverLands) {
    local_etcd cluster;
    node a(cluster, "dl6/"), b(cluster, "dl6/");
    b.m.insert_or_assign(1, 1);
    auto g = a.m.lock_for_iteration();
    EXPECT_TRUE(a.m.erase(1).first) << "the holder's own fenced write";
    // The lease ends under the holder (as an expiry would): etcd deletes its key.
    b.c.lease_revoke(a.m.lock().lease_id());
    try {
        a.m.insert_or_assign(2, 2);
        ADD_FAILURE() << "a fenced write of an expired guard returned";
    } catch (const etcd::error& e) {
        EXPECT_EQ(e.code(), etcd::errc::lease_expired) << e.what();
    }
    EXPECT_FALSE(b.c.get(b.m.etcd_key(2)).has_value()) << "a fenced write of an expired guard landed";
    try {
        g.check();
        ADD_FAILURE() << "check() passed on an expired guard";
    } catch (const etcd::error& e) {
        EXPECT_EQ(e.code(), etcd::errc::lease_expired);
    }
    b.m.insert_or_assign(3, 3);  // writers proceed
    g.release();
    EXPECT_EQ(a.m.lock().counters().lease_expiries, 1u);
    EXPECT_EQ(a.m.lock().metrics().iterations_error, 1u) << "a guard that ended on an expired lease";
    EXPECT_EQ(a.m.lock().metrics().iterations_success, 0u);
    auto again = a.m.lock_for_iteration();  // a new lease
    EXPECT_TRUE(again);
    again.check();
}

TEST(EtcdIterationLock, DL6_KeepAliveHoldsAGuardPastItsTtl) {
    local_etcd cluster;
    node a(cluster, "dl6b/", 2s), b(cluster, "dl6b/");
    auto g = a.m.lock_for_iteration();
    std::this_thread::sleep_for(3500ms);  // past the TTL: only keep-alives keep the key
    g.check();
    EXPECT_EQ(keys_under(b.c, a.m.lock().prefix() + "i/"), 1u);
    a.m.insert_or_assign(9, 9);
    EXPECT_EQ(a.m.lock().counters().writes_fenced, 1u);
}

TEST(EtcdIterationLock, DL6_LeaderChangeWhileAGuardIsHeld) {
    local_etcd cluster(3);
    node a(cluster, "dl6c/", 3s), b(cluster, "dl6c/", 3s);
    auto g = a.m.lock_for_iteration();
    const int leader = cluster.leader();
    ASSERT_GE(leader, 0);
    cluster.kill(leader);
    ASSERT_TRUE(eventually([&] {
        const int l = cluster.leader();
        return l >= 0 && l != leader;
    }));
    auto w = std::async(std::launch::async, [&] { return b.m.insert_or_assign(5, 5); });
    std::this_thread::sleep_for(4s);  // past the TTL, across the election
    g.check();
    EXPECT_EQ(w.wait_for(0s), std::future_status::timeout) << "a write landed inside a guard";
    EXPECT_FALSE(a.c.get(a.m.etcd_key(5)).has_value());
    a.m.insert_or_assign(6, 6);  // the holder's fenced write
    const auto h = g.revision();
    g.release();
    EXPECT_GT(w.get(), h);
}

TEST(EtcdIterationLock, DL7_IterateAndExpire) {
    local_etcd cluster;
    node a(cluster, "dl7/"), b(cluster, "dl7/");
    for (std::uint64_t k = 0; k < 64; ++k) b.m.insert_or_assign(k, k);
    auto g = a.m.lock_for_iteration();
    auto w = std::async(std::launch::async, [&] { return b.m.insert_or_assign(1000, 1); });
    std::int64_t last_erase = 0;
    std::size_t seen = 0;
    a.m.for_each(g, [&](std::uint64_t k, const etcd::versioned<std::uint64_t>& v) {
        ++seen;
        EXPECT_LE(v.mod_revision, g.revision());
        if (k % 2 == 1) last_erase = std::max(last_erase, a.m.erase(k).second);
    });
    EXPECT_EQ(seen, 64u);
    const auto h = g.revision();
    g.release();
    const auto wrev = w.get();
    EXPECT_GT(wrev, last_erase);
    EXPECT_GT(last_erase, h);
    const auto r = b.c.range("dl7/", {.range_end = etcd::prefix_end("dl7/"), .count_only = true});
    EXPECT_EQ(r.count, 33);
}

TEST(EtcdIterationLock, DL7_WriteUnderASharedGuardThrowsLockError) {
    local_etcd cluster;
    node a(cluster, "dl7b/"), b(cluster, "dl7b/");
    auto ga = a.m.lock_for_iteration();
    auto gb = b.m.lock_for_iteration();
    EXPECT_THROW(a.m.insert_or_assign(1, 1), iterlock::lock_error);
    EXPECT_FALSE(a.c.get(a.m.etcd_key(1)).has_value());
    gb.release();
    a.m.insert_or_assign(1, 1);
    EXPECT_TRUE(a.c.get(a.m.etcd_key(1)).has_value());
}

}  // namespace

namespace {

// The lock's metrics are the in-process lock's (map_metrics, policy "locked"), exported under the same
// names with a backend label.
TEST(EtcdIterationLock, Metrics_SameSeriesAsTheInProcessLock) {
    local_etcd cluster;
    node a(cluster, "dlm/"), b(cluster, "dlm/"), c(cluster, "dlm/");
    a.m.insert_or_assign(1, 1);  // a write that did not wait
    {
        auto g = a.m.lock_for_iteration();
        auto w = std::async(std::launch::async, [&] { return b.m.insert_or_assign(2, 2); });
        ASSERT_TRUE(eventually([&] { return c.m.lock().view_state().writers_best_effort == 1; }));
        EXPECT_FALSE(c.m.try_lock_for_iteration(50ms));
        g.release();
        w.get();
    }
    const auto ma = a.m.lock().metrics();
    EXPECT_STREQ(ma.policy, "locked");
    EXPECT_EQ(ma.iterations_started, 1u);
    EXPECT_EQ(ma.iterations_success, 1u);
    EXPECT_EQ(ma.iteration_hold[0].count, 1u);
    EXPECT_EQ(ma.lock_wait[static_cast<int>(iterlock::lock_role::writer)][0].count, 1u) << "one zero wait";
    EXPECT_EQ(b.m.lock().metrics().lock_wait[static_cast<int>(iterlock::lock_role::writer)][0].count, 1u);
    EXPECT_EQ(c.m.lock().metrics().iterations_timeout, 1u);
#if ITERLOCK_TEST_PROMETHEUS
    iterlock::prometheus::registry reg;
    auto h = iterlock::prometheus::expose(reg, a.m.lock(), "jobs", {{"backend", "etcd"}});
    const std::string text = reg.text();
    EXPECT_NE(text.find("iterlock_locked_iterations_total{"), std::string::npos) << text;
    EXPECT_NE(text.find("backend=\"etcd\""), std::string::npos) << text;
    EXPECT_NE(text.find("iterlock_lock_wait_seconds_bucket{"), std::string::npos) << text;
#endif
}

}  // namespace
