// Tests of iterlock-demo's own instruments (tools/demo/): the consistency check that fills the violations
// column, and the latency histogram behind the p50/p99/p99.9/max columns. The demo's numbers are only as
// good as these two.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

#include "feature_service.hpp"
#include "feed_exporter.hpp"
#include "latency_histogram.hpp"
#include "support/scale.hpp"

namespace {

using namespace iterlock_demo;

// Writer w's sessions at the instant its last finished update was `last`: slot r holds the newest
// sequence number <= last that is r mod k.
std::vector<std::uint64_t> instant(unsigned w, std::uint64_t k, std::uint64_t last) {
    std::vector<std::uint64_t> stamps;
    for (std::uint64_t r = 0; r < k; ++r) {
        std::uint64_t seq = last - ((last - r) % k);
        stamps.push_back(make_stamp(w, seq));
    }
    return stamps;
}

TEST(DemoWindowCheck, OneInstantIsConsistentInAnyOrder) {
    const std::uint64_t k = 10;
    window_check c(2, k);
    std::mt19937 rng(1);
    for (std::uint64_t last : {k - 1, k, std::uint64_t{37}, std::uint64_t{1000}}) {
        auto a = instant(0, k, last), b = instant(1, k, last + 3);
        a.insert(a.end(), b.begin(), b.end());
        std::shuffle(a.begin(), a.end(), rng);
        c.begin();
        for (auto s : a) c.see(s);
        EXPECT_TRUE(c.consistent()) << last;
    }
}

TEST(DemoWindowCheck, LaterUpdateSeenEarlierMissedIsAViolation) {
    const std::uint64_t k = 10;
    window_check c(1, k);
    // The walk read slot 0 while it held seq 20, then the writer went on to seq 31 (slot 1 = 31), and the
    // walk read the other slots after that: it saw 31 but missed 30 (slot 0 was overwritten after it was
    // read).
    auto seen = instant(0, k, 31);
    seen[0] = make_stamp(0, 20);
    c.begin();
    for (auto s : seen) c.see(s);
    EXPECT_FALSE(c.consistent());
}

TEST(DemoWindowCheck, MissingOrForeignEntriesAreViolations) {
    const std::uint64_t k = 4;
    window_check c(1, k);
    auto seen = instant(0, k, 9);
    c.begin();
    for (std::size_t i = 1; i < seen.size(); ++i) c.see(seen[i]);  // one session missing
    EXPECT_FALSE(c.consistent());
    c.begin();
    for (auto s : seen) c.see(s);
    c.see(make_stamp(3, 1));  // a writer that does not exist
    EXPECT_FALSE(c.consistent());
    c.begin();
    for (auto s : seen) c.see(s);
    EXPECT_TRUE(c.consistent());  // begin() forgets the previous walk
}

TEST(DemoLatencyHistogram, BucketsTileTheRangeAndQuantilesAreClose) {
    for (std::uint64_t v : std::vector<std::uint64_t>{0, 1, 63, 64, 65, 1000, 123456789, ~std::uint64_t{0}}) {
        const auto i = latency_histogram::index_of(v);
        ASSERT_LT(i, latency_histogram::bucket_count);
        EXPECT_LE(latency_histogram::lower_of(i), v);
        EXPECT_GE(latency_histogram::upper_of(i), v);
    }
    for (std::size_t i = 0; i + 1 < latency_histogram::bucket_count; ++i)
        ASSERT_EQ(latency_histogram::upper_of(i) + 1, latency_histogram::lower_of(i + 1)) << i;

    latency_histogram h, part;
    for (std::uint64_t v = 1; v <= 100000; ++v) (v % 2 ? h : part).record(v * 10);
    h.merge(part);
    EXPECT_EQ(h.total(), 100000u);
    EXPECT_EQ(h.max(), 1000000u);
    for (double q : {0.5, 0.99, 0.999}) {
        const double truth = q * 1e6;
        EXPECT_NEAR(static_cast<double>(h.quantile(q)), truth, truth / 32 + 10) << q;
    }
    EXPECT_EQ(h.quantile(1.0), h.max());
    EXPECT_LE(h.quantile(0.5), h.quantile(0.99));
}

TEST(DemoFeatureService, SlotOrderIsAFixedPermutation) {
    const auto a = slot_order(1000, 0, 7), b = slot_order(1000, 0, 7), c = slot_order(1000, 1, 7);
    EXPECT_EQ(a, b);  // fixed by (seed, writer)
    EXPECT_NE(a, c);  // each writer has its own order
    auto sorted = a;
    std::sort(sorted.begin(), sorted.end());
    for (std::uint32_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
    std::size_t in_place = 0;
    for (std::uint32_t i = 0; i < 1000; ++i) in_place += a[i] == i;
    EXPECT_LT(in_place, 20u);  // not the key order (a random permutation fixes about one point)
}

// A run of the feature service with two writers: `sessions` sessions, an aggregation every `interval`,
// `seconds` long, with about `entry_ns` of work per entry.
service_config two_writer_service(std::uint64_t sessions, std::chrono::milliseconds interval, double seconds,
                                  double entry_ns) {
    service_config cfg;
    cfg.writers = 2;
    cfg.sessions = sessions;
    cfg.interval = interval;
    cfg.duration = std::chrono::duration<double>(seconds);
    cfg.work = entry_work::calibrated(entry_ns);
    return cfg;
}

// Both loops (closed: capacity, no per-update timing; open: every update timed from its arrival), over the
// writers' random slot orders and the per-entry work: the consistent stores show no violation, which they
// could not if the prefill's sequence numbers did not follow the writers' orders.
TEST(DemoFeatureService, ConsistentStoresShowNoViolations) {
    service_config cfg = two_writer_service(2000, std::chrono::milliseconds(5), 0.3, 20);
    EXPECT_GT(cfg.work.steps(), 0u);
    iterlock_snapshot_store snap;
    iterlock_locked_store locked;
    for (int pass = 0; pass < 4; ++pass) {
        cfg.rate = pass < 2 ? 0 : 200'000;
        live_counters live;
        const service_result r = pass % 2 == 0 ? run_feature_service(snap, cfg, live, [](double) {})
                                               : run_feature_service(locked, cfg, live, [](double) {});
        EXPECT_GT(r.aggregations, 0u);
        EXPECT_EQ(r.violations, 0u);
        EXPECT_GT(r.writer_ops, 0u);
        EXPECT_EQ(r.write_latency.total(), cfg.rate > 0 ? r.writer_ops : 0u);
        EXPECT_EQ(live.aggregations.load(), r.aggregations);
        EXPECT_EQ(live.writes.load(), r.writer_ops);
    }
}

// Issue 16 ("Done means"): iterlock_feed exports through a change feed while the writers run, and its check
// finds the replica equal to the map at the end; its walks are snapshots, consistent like the others.
TEST(DemoFeatureService, FeedExporterReplicaEqualsTheMapAtTheEnd) {
    service_config cfg = two_writer_service(2000, std::chrono::milliseconds(5), 0.3, 20);
    for (int pass = 0; pass < 2; ++pass) {
        cfg.rate = pass == 0 ? 0 : 200'000;
        iterlock_feed_store store;
        store.start_export();
        live_counters live;
        const service_result r = run_feature_service(store, cfg, live, [](double) {});
        EXPECT_EQ(store.finish_export(), 0u) << "the exported replica differs from the map";
        EXPECT_GT(r.writer_ops, 0u);
        EXPECT_GT(store.events_applied(), 0u) << "the exporter ran while the writers did";
        EXPECT_GT(r.aggregations, 0u);
        EXPECT_EQ(r.violations, 0u);
    }
}

// The check itself can fail: a replica that missed writes (the exporter stopped before the writers did)
// differs from the map.
TEST(DemoFeatureService, FeedExporterCheckCatchesAStaleReplica) {
    iterlock_feed_store store;
    for (key_type k = 0; k < 100; ++k) store.prefill(k, session{k, 0.5});
    store.start_export();
    std::uint64_t differ = store.finish_export();
    EXPECT_EQ(differ, 0u);
    for (key_type k = 0; k < 10; ++k) store.put(k, session{1000 + k, 0.25});  // no exporter running now
    differ = store.finish_export();
    EXPECT_EQ(differ, 10u);
}

// A torn store is caught in the random orders too: tbb walks without a lock. (Not under TSan: TBB's own code
// is not instrumented, so its hand-offs would read as races.)
TEST(DemoFeatureService, UnlockedWalksAreCaught) {
    if (ITERLOCK_TEST_TSAN) GTEST_SKIP() << "TBB is not instrumented for ThreadSanitizer";
    // Long walks (50 ns of work per entry): writers land in the middle of them.
    service_config cfg = two_writer_service(20000, std::chrono::milliseconds(1), 0.5, 50);
    tbb_store tbb;
    // A torn walk needs a writer running during it; on a busy machine that may take a few rounds.
    std::uint64_t aggregations = 0, violations = 0;
    for (int round = 0; round < 40 && violations == 0; ++round) {
        live_counters live;
        const service_result r = run_feature_service(tbb, cfg, live, [](double) {});
        aggregations += r.aggregations;
        violations += r.violations;
    }
    EXPECT_GT(aggregations, 0u);
    EXPECT_GT(violations, 0u);
}

}  // namespace
