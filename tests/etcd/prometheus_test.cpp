// Tests of iterlock/etcd/prometheus.hpp against a real etcd member: an etcd map exports its mirror under the
// in-process map's names plus the etcd families (EP1), with values that follow what happened (writes,
// a compaction resync, a disconnected watch), one family per name for several maps (EP2), the RAII handle
// (EP3), the errors of EP4, and promtool's verdict on the exposition.
#include <gtest/gtest.h>

#include <string>

#include "iterlock/etcd/detail/mirror_test_access.hpp"
#include "iterlock/etcd/prometheus.hpp"
#include "support/etcd_client_options.hpp"
#include "support/etcd_sequences.hpp"
#include "support/exposition.hpp"
#include "support/process.hpp"
#include "support/promtool_check.hpp"
#include "testing/local_etcd.hpp"

using namespace iterlock::test;
using etcd::testing::local_etcd;
using iterlock::test::exposition;
using mirror_access = etcd::detail::mirror_test_access;

namespace {

std::string series(const std::string& name, const std::string& labels = R"(map="sessions",service="a")") {
    return name + "{" + labels + "}";
}

TEST(EtcdPrometheus, EP1_MirrorFamiliesUnderTheInProcessNamesPlusTheEtcdOnes) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    seq_map m(c, "prom/");
    const auto last = write_sequence(c, "prom/", 0, 0, 10);
    ASSERT_TRUE(m.wait_applied(last));
    etcd::metrics_registry reg;
    auto h = reg.add(m, "sessions", {{"service", "a"}});
    const exposition e(reg.text());

    // The in-process map's names, for the mirror.
    EXPECT_EQ(e.get(series("iterlock_map_entries")), 10.0);
    EXPECT_EQ(e.types.at("iterlock_map_entries"), "gauge");
    EXPECT_TRUE(e.has_family("iterlock_map_revision"));
    EXPECT_TRUE(e.has_family("iterlock_snapshot_iterations_total"));
    // The etcd ones.
    EXPECT_EQ(e.get(series("iterlock_etcd_mirror_revision")), static_cast<double>(m.applied_revision()));
    EXPECT_EQ(e.get(series("iterlock_etcd_events_applied_total")), 10.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_relists_total")), 1.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_compaction_resyncs_total")), 0.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_decode_errors_total")), 0.0);
    EXPECT_GE(e.get(series("iterlock_etcd_round_trips_total")).value_or(0), 12.0);  // list, watch, 10 puts
    EXPECT_EQ(e.get(series("iterlock_etcd_retries_total")), 0.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_reconnects_total")), 0.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_may_have_applied_total")), 0.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_mirror_lag_revisions")), 0.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_mirror_lag_seconds")), 0.0);
    for (const char* counter :
         {"iterlock_etcd_round_trips_total", "iterlock_etcd_retries_total", "iterlock_etcd_reconnects_total",
          "iterlock_etcd_may_have_applied_total", "iterlock_etcd_watch_restarts_total",
          "iterlock_etcd_relists_total", "iterlock_etcd_compaction_resyncs_total",
          "iterlock_etcd_events_applied_total", "iterlock_etcd_decode_errors_total"})
        EXPECT_EQ(e.types.at(counter), "counter") << counter;
    for (const char* gauge : {"iterlock_etcd_mirror_revision", "iterlock_etcd_mirror_lag_revisions",
                              "iterlock_etcd_mirror_lag_seconds"})
        EXPECT_EQ(e.types.at(gauge), "gauge") << gauge;
}

TEST(EtcdPrometheus, EP1_ResyncAndLagFollowADisconnectedWatch) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    seq_map m(c, "lag/");
    etcd::metrics_registry reg;
    auto h = reg.add(m, "sessions", {{"service", "a"}});
    ASSERT_TRUE(m.wait_applied(write_sequence(c, "lag/", 0, 0, 5)));
    mirror_access::suspend(mirror_access::core(m));
    // A broken watch marks the mirror as behind.
    double lag = 0;
    for (int i = 0; i < 1000 && lag == 0; ++i) {
        lag = exposition(reg.text()).get(series("iterlock_etcd_mirror_lag_seconds")).value_or(0);
        if (lag == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_GT(lag, 0.0);
    write_sequence(c, "lag/", 0, 5, 20);
    const auto end = c.put("lag/" + etcd::default_codec::encode(seq_key(1, 0)),
                           etcd::default_codec::encode(std::uint64_t{0}));
    c.compact(end, true);  // past the resume point: the watch cannot resume
    mirror_access::resume(mirror_access::core(m));
    ASSERT_TRUE(m.wait_applied(end, std::chrono::seconds(10)));
    exposition e(reg.text());
    EXPECT_EQ(e.get(series("iterlock_etcd_compaction_resyncs_total")), 1.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_relists_total")), 2.0);
    EXPECT_GE(e.get(series("iterlock_etcd_watch_restarts_total")).value_or(0), 1.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_mirror_revision")), static_cast<double>(end));
    EXPECT_EQ(e.get(series("iterlock_map_entries")), 21.0);
    // Current again once the new watch reports no newer revision than the mirror holds.
    for (int i = 0; i < 1000; ++i) {
        e = exposition(reg.text());
        if (e.get(series("iterlock_etcd_mirror_lag_seconds")) == 0.0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(e.get(series("iterlock_etcd_mirror_lag_seconds")), 0.0);
    EXPECT_EQ(e.get(series("iterlock_etcd_mirror_lag_revisions")), 0.0);
}

TEST(EtcdPrometheus, EP2_OneFamilyPerNameForSeveralMaps) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    seq_map a(c, "a/"), b(c, "b/");
    etcd::metrics_registry reg;
    auto ha = reg.add(a, "a");
    auto hb = reg.add(b, "b");
    const exposition e(reg.text());
    for (const auto& [name, n] : e.type_lines) EXPECT_EQ(n, 1) << name;
    EXPECT_TRUE(e.any("iterlock_etcd_mirror_revision", R"(map="a")"));
    EXPECT_TRUE(e.any("iterlock_etcd_mirror_revision", R"(map="b")"));
    EXPECT_TRUE(e.any("iterlock_map_entries", R"(map="b")"));
    // The client's counters are the client's: both maps report the same values (EP2).
    EXPECT_EQ(e.get(R"(iterlock_etcd_round_trips_total{map="a"})"),
              e.get(R"(iterlock_etcd_round_trips_total{map="b"})"));
}

TEST(EtcdPrometheus, EP3_EP4_HandleUnregistersAndDuplicatesAreRefused) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    seq_map m(c, "h/");
    etcd::metrics_registry reg;
    auto h = reg.add(m, "m");
    EXPECT_THROW((void)reg.add(m, "m"), std::invalid_argument);
    EXPECT_THROW((void)reg.add(m, "other", {{"map", "x"}}), std::invalid_argument);
    EXPECT_TRUE(h.active());
    EXPECT_TRUE(exposition(reg.text()).has_family("iterlock_etcd_mirror_revision"));
    h.reset();
    EXPECT_FALSE(h.active());
    const exposition e(reg.text());
    EXPECT_FALSE(e.has_family("iterlock_etcd_mirror_revision"));
    EXPECT_FALSE(e.has_family("iterlock_map_entries"));
    auto again = reg.add(m, "m");  // the name is free again
    EXPECT_TRUE(again.active());
    {
        auto gone = std::make_unique<etcd::metrics_registry>();
        auto orphan = gone->add(m, "m");
        gone.reset();
        EXPECT_FALSE(orphan.active());  // outliving its registry is harmless (EP3)
    }
}

TEST(EtcdPrometheus, EP2_ExpositionPassesPromtool) {
    const auto promtool = iterlock::test::find_program("promtool");
    if (!promtool) GTEST_SKIP() << "promtool is not installed (Debian package `prometheus`)";
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    seq_map m(c, "pt/");
    ASSERT_TRUE(m.wait_applied(write_sequence(c, "pt/", 0, 0, 3)));
    etcd::metrics_registry reg;
    auto h = reg.add(m, "sessions", {{"service", "a"}});
    iterlock::test::expect_promtool_accepts(*promtool, reg.text());
}

}  // namespace
