// iterlock::etcd::client against a real one-member etcd: the basic calls (Put, Range, Txn, Watch,
// LeaseGrant), failover (C2), the error codes (E1, E2), size checks and auth (C5).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "iterlock/etcd/client.hpp"
#include "testing/local_etcd.hpp"

namespace etcd = iterlock::etcd;
using etcd::testing::local_etcd;

namespace {

etcd::client_options opts(std::vector<std::string> eps) {
    etcd::client_options o;
    o.endpoints = std::move(eps);
    return o;
}

TEST(EtcdClient, PutRangeTxnWatchLease) {
    local_etcd cluster;
    etcd::client c(opts(cluster.endpoints()));
    const auto r1 = c.put("a/1", "one");
    const auto r2 = c.put("a/2", "two");
    EXPECT_GT(r2, r1);
    auto got = c.range("a/", {.range_end = etcd::prefix_end("a/")});
    ASSERT_EQ(got.kvs.size(), 2u);
    EXPECT_EQ(got.kvs[0].value, "one");
    EXPECT_EQ(got.kvs[1].mod_revision, r2);
    EXPECT_EQ(got.revision, r2);

    // Txn: compare on mod_revision.
    auto t1 = c.txn({{"a/1", etcd::compare::target::mod_revision, etcd::compare::op::equal, r1, {}}},
                    {etcd::txn_op::put("a/1", "uno")}, {etcd::txn_op::range("a/1")});
    EXPECT_TRUE(t1.succeeded);
    EXPECT_GT(t1.revision, r2);
    auto t2 = c.txn({{"a/1", etcd::compare::target::mod_revision, etcd::compare::op::equal, r1, {}}},
                    {etcd::txn_op::put("a/1", "again")}, {etcd::txn_op::range("a/1")});
    EXPECT_FALSE(t2.succeeded);
    ASSERT_EQ(t2.ranges.size(), 1u);
    EXPECT_EQ(t2.ranges[0].kvs.at(0).value, "uno");

    // Watch from a past revision: replays the history in order.
    auto w = c.watch({.key = "a/", .range_end = etcd::prefix_end("a/"), .start_revision = r1});
    std::vector<std::int64_t> revs;
    etcd::watch_batch b;
    while (revs.size() < 3 && w->next(b))
        for (auto& e : b.events) revs.push_back(e.kv.mod_revision);
    EXPECT_EQ(revs, (std::vector<std::int64_t>{r1, r2, t1.revision}));
    w->cancel();
    EXPECT_FALSE(w->next(b));

    // Lease: a key attached to a lease goes with its revocation.
    auto l = c.lease_grant(30);
    EXPECT_GT(l.id, 0);
    c.put("a/leased", "x", l.id);
    EXPECT_TRUE(c.get("a/leased").has_value());
    c.lease_revoke(l.id);
    EXPECT_FALSE(c.get("a/leased").has_value());

    auto d = c.erase("a/", etcd::prefix_end("a/"));
    EXPECT_EQ(d.deleted, 2);
}

TEST(EtcdClient, C2_FailsOverFromADeadEndpoint) {
    local_etcd cluster;
    // 127.0.0.1:1 refuses connections: nothing is sent there, so even a write may move on.
    etcd::client c(opts({"127.0.0.1:1", cluster.endpoint(0)}));
    EXPECT_GT(c.put("k", "v"), 0);
    EXPECT_GE(c.metrics().failovers, 1u);
    EXPECT_EQ(c.get("k")->value, "v");
}

TEST(EtcdClient, E1_UnavailableWhenNoEndpointAnswers) {
    auto o = opts({"127.0.0.1:1"});
    o.call_timeout = std::chrono::milliseconds(300);
    etcd::client c(o);
    try {
        c.range("k");
        FAIL() << "no endpoint answers";
    } catch (const etcd::error& e) {
        EXPECT_TRUE(e.code() == etcd::errc::unavailable || e.code() == etcd::errc::deadline) << e.what();
    }
}

TEST(EtcdClient, E2_AWriteLostAfterSendMayHaveApplied) {
    local_etcd cluster;
    auto o = opts(cluster.endpoints());
    o.call_timeout = std::chrono::milliseconds(300);
    etcd::client c(o);
    c.put("k", "before");  // connected
    cluster.stop(0);       // the member takes the request but never answers
    try {
        c.put("k", "after");
        FAIL() << "the member is stopped";
    } catch (const etcd::error& e) {
        EXPECT_EQ(e.code(), etcd::errc::may_have_applied) << e.what();
        EXPECT_NE(std::string(e.what()).find("may have been applied"), std::string::npos);
    }
    cluster.resume(0);
    EXPECT_EQ(c.metrics().may_have_applied, 1u);
}

TEST(EtcdClient, TooLargeIsRejectedBeforeSending) {
    local_etcd cluster;
    etcd::client c(opts(cluster.endpoints()));
    const auto trips = c.metrics().round_trips;
    try {
        c.put("big", std::string(2 * 1024 * 1024, 'x'));
        FAIL();
    } catch (const etcd::error& e) {
        EXPECT_EQ(e.code(), etcd::errc::too_large);
    }
    EXPECT_EQ(c.metrics().round_trips, trips);
    EXPECT_FALSE(c.get("big").has_value());
}

TEST(EtcdClient, E1_CompactedAndFutureRevisions) {
    local_etcd cluster;
    etcd::client c(opts(cluster.endpoints()));
    const auto r1 = c.put("k", "1");
    const auto r2 = c.put("k", "2");
    EXPECT_EQ(c.range("k", {.revision = r1}).kvs.at(0).value, "1");
    c.compact(r2);
    try {
        c.range("k", {.revision = r1});
        FAIL();
    } catch (const etcd::error& e) {
        EXPECT_EQ(e.code(), etcd::errc::compacted) << e.what();
    }
    try {
        c.range("k", {.revision = r2 + 100});
        FAIL();
    } catch (const etcd::error& e) {
        EXPECT_EQ(e.code(), etcd::errc::future_revision) << e.what();
    }
}

TEST(EtcdClient, C5_UserPasswordAuth) {
    local_etcd cluster;
    const std::string ep = cluster.endpoint(0);
    const std::string ctl = std::string(ITERLOCK_ETCDCTL) + " --endpoints=" + ep + " ";
    ASSERT_EQ(std::system((ctl + "user add root:rootpw >/dev/null").c_str()), 0);
    ASSERT_EQ(std::system((ctl + "auth enable >/dev/null").c_str()), 0);
    {
        auto o = opts({ep});
        o.user = "root";
        o.password = "rootpw";
        etcd::client c(o);
        EXPECT_GT(c.put("k", "v"), 0);
        EXPECT_EQ(c.get("k")->value, "v");
    }
    {
        auto o = opts({ep});
        o.user = "root";
        o.password = "wrong";
        etcd::client c(o);
        try {
            c.put("k", "v2");
            FAIL();
        } catch (const etcd::error& e) {
            EXPECT_EQ(e.code(), etcd::errc::auth_failed) << e.what();
        }
    }
    {
        etcd::client c(opts({ep}));  // no credentials
        try {
            c.put("k", "v3");
            FAIL();
        } catch (const etcd::error& e) {
            EXPECT_NE(e.code(), etcd::errc::may_have_applied) << e.what();
        }
    }
}

}  // namespace
