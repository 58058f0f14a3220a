// Tests of iterlock-demo's own instruments (tools/demo/): the consistency check that fills the violations
// column, and the latency histogram behind the p50/p99/p99.9/max columns. The demo's numbers are only as
// good as these two.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "feature_service.hpp"
#include "latency_histogram.hpp"

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

TEST(DemoFeatureService, ConsistentStoresShowNoViolations) {
    service_config cfg;
    cfg.writers = 2;
    cfg.sessions = 2000;
    cfg.interval = std::chrono::milliseconds(5);
    cfg.duration = std::chrono::duration<double>(0.3);
    iterlock_snapshot_store snap;
    iterlock_locked_store locked;
    for (int pass = 0; pass < 2; ++pass) {
        live_counters live;
        const service_result r = pass == 0 ? run_feature_service(snap, cfg, live, [](double) {})
                                           : run_feature_service(locked, cfg, live, [](double) {});
        EXPECT_GT(r.aggregations, 0u);
        EXPECT_EQ(r.violations, 0u);
        EXPECT_GT(r.writer_ops, 0u);
        EXPECT_EQ(r.write_latency.total(), r.writer_ops);
        EXPECT_EQ(live.aggregations.load(), r.aggregations);
        EXPECT_EQ(live.writes.load(), r.writer_ops);
    }
}

}  // namespace
