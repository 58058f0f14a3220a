// Tests of iterlock/prometheus.hpp: the exported names, labels and values (driven by real maps), nothing
// recorded between scrapes (P1), the RAII exposure (P3, P4, P6), the errors of P5, the HTTP endpoint,
// promtool's verdict on the exposition (P2), and scrapes racing with maps that come and go.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/guarded.hpp"
#include "iterlock/iteration_lock.hpp"
#include "iterlock/priority.hpp"
#include "iterlock/prometheus.hpp"
#include "support/counting_new.hpp"
#include "support/exposition.hpp"
#include "support/process.hpp"
#include "support/promtool_check.hpp"

namespace {

using iterlock::test::exposition;

template <class Options>
using map_with = iterlock::concurrent_map<int, int, iterlock::hash<int>, std::equal_to<int>,
                                          std::allocator<std::pair<const int, int>>, Options>;
using locked_map = map_with<iterlock::locked_iteration>;
using snapshot_map = map_with<iterlock::snapshot_iteration>;
using quiet_map = map_with<iterlock::map_options<iterlock::iteration_policy::locked, false>>;

static_assert(iterlock::prometheus::records_metrics<locked_map>::value);
static_assert(!iterlock::prometheus::records_metrics<quiet_map>::value);

template <class Map>
void fill(Map& m, int n) {
    for (int i = 0; i < n; ++i) m.insert_or_assign(i, i);
}

TEST(PrometheusExport, LockedMapCountsIterationsByOutcome) {
    locked_map m(4);
    fill(m, 100);
    iterlock::prometheus::registry reg;
    auto h = iterlock::prometheus::expose(reg, m, "jobs");

    for (int i = 0; i < 3; ++i) {
        auto g = m.lock_for_iteration();
        int n = 0;
        for (auto& e : g) n += e.second >= 0;
        EXPECT_EQ(n, 100);
    }
    // timeout: a writer holds a shard (inside visit) while try_lock_for_iteration waits.
    {
        std::latch held(1), release(1);
        std::thread writer([&] {
            m.visit(7, [&](const int&, int&) {
                held.count_down();
                release.wait();
            });
        });
        held.wait();
        EXPECT_FALSE(m.try_lock_for_iteration(std::chrono::milliseconds(1)));
        release.count_down();
        writer.join();
    }
    // error: a guard asked for inside a visit callback of the same map is refused with lock_error.
    m.visit(8, [&](const int&, int&) { EXPECT_THROW((void)m.lock_for_iteration(), iterlock::lock_error); });

    const exposition e(reg.text());
    EXPECT_EQ(e.get(R"(iterlock_locked_iterations_total{map="jobs",state="success"})"), 3);
    EXPECT_EQ(e.get(R"(iterlock_locked_iterations_total{map="jobs",state="timeout"})"), 1);
    EXPECT_EQ(e.get(R"(iterlock_locked_iterations_total{map="jobs",state="error"})"), 1);
    EXPECT_EQ(e.get(R"(iterlock_iterations_started_total{map="jobs"})"), 5);
    EXPECT_EQ(e.get(R"(iterlock_misuse_detected_total{map="jobs"})"), 1);
    EXPECT_EQ(e.get(R"(iterlock_lock_wait_seconds_count{map="jobs",role="iterator",priority="best_effort"})"),
              3);
    EXPECT_EQ(e.get(R"(iterlock_map_entries{map="jobs"})"), 100);
    EXPECT_EQ(e.get(R"(iterlock_map_revision{map="jobs"})"), 100 + 2);  // two visits count as writes
    EXPECT_EQ(e.types.at("iterlock_locked_iterations_total"), "counter");
    EXPECT_EQ(e.types.at("iterlock_lock_wait_seconds"), "histogram");
    EXPECT_EQ(e.types.at("iterlock_map_entries"), "gauge");
    EXPECT_FALSE(e.has_family("iterlock_snapshot_iterations_total"));
}

// Issue 15: an iteration_lock, and a guarded<Map> through it, export like a locked map, plus guard hold
// times; a locked concurrent_map exports its guards' hold times too (none taken here: a count of 0).
TEST(PrometheusExport, IterationLockAndGuardedExportIterationsAndHoldTimes) {
    iterlock::guarded<std::unordered_map<int, int>> g;
    iterlock::iteration_lock l;
    locked_map m(2);
    iterlock::prometheus::registry reg;
    auto hg = reg.add(g, "features");
    auto hl = reg.add(l, "lock");
    auto hm = reg.add(m, "map");
    g.insert_or_assign(1, 1);
    g.insert_or_assign(2, 2);
    for (int i = 0; i < 2; ++i) {
        auto w = g.lock_for_iteration();
    }
    {
        iterlock::priority_scope rt(iterlock::priority::realtime);
        auto w = l.lock_for_iteration();
    }
    const exposition e(reg.text());
    EXPECT_EQ(e.get(R"(iterlock_locked_iterations_total{map="features",state="success"})"), 2);
    EXPECT_EQ(e.get(R"(iterlock_map_entries{map="features"})"), 2);
    EXPECT_EQ(
        e.get(R"(iterlock_lock_wait_seconds_count{map="features",role="writer",priority="best_effort"})"), 2);
    EXPECT_EQ(e.get(R"(iterlock_iteration_hold_seconds_count{map="features",priority="best_effort"})"), 2);
    EXPECT_EQ(e.get(R"(iterlock_iteration_hold_seconds_count{map="lock",priority="realtime"})"), 1);
    EXPECT_EQ(e.types.at("iterlock_iteration_hold_seconds"), "histogram");
    EXPECT_EQ(e.get(R"(iterlock_iteration_hold_seconds_count{map="map",priority="best_effort"})"), 0);
}

// Issue 16 item 5: concurrent_map records how long its guards and snapshots were held, by the priority of
// the thread that ended them.
TEST(PrometheusExport, ConcurrentMapExportsGuardAndSnapshotHoldTimes) {
    locked_map l(2);
    snapshot_map s(2);
    iterlock::prometheus::registry reg;
    auto hl = reg.add(l, "locked");
    auto hs = reg.add(s, "snap");
    {
        auto g = l.lock_for_iteration();
        auto nested = l.lock_for_iteration();  // L7: one hold, counted once
    }
    {
        iterlock::priority_scope rt(iterlock::priority::realtime);
        auto a = s.snapshot();
        auto b = s.snapshot();
    }
    const exposition e(reg.text());
    EXPECT_EQ(e.get(R"(iterlock_iteration_hold_seconds_count{map="locked",priority="best_effort"})"), 1);
    EXPECT_EQ(e.get(R"(iterlock_iteration_hold_seconds_count{map="snap",priority="realtime"})"), 2);
    EXPECT_EQ(e.get(R"(iterlock_iteration_hold_seconds_count{map="snap",priority="best_effort"})"), 0);
}

// Issue 16 item 5 (S7): the budget and the expiries are exported; a map without a budget exports 0.
TEST(PrometheusExport, SnapshotBudgetAndExpiriesAreExported) {
    snapshot_map m(2);
    fill(m, 4000);
    iterlock::prometheus::registry reg;
    auto h = reg.add(m, "budgeted");
    {
        const exposition e(reg.text());
        EXPECT_EQ(e.get(R"(iterlock_snapshot_budget_bytes{map="budgeted"})"), 0);
        EXPECT_EQ(e.get(R"(iterlock_snapshots_expired_total{map="budgeted"})"), 0);
        EXPECT_EQ(e.types.at("iterlock_snapshots_expired_total"), "counter");
    }
    m.set_snapshot_budget(1024);
    auto s = m.snapshot();
    for (int i = 0; i < 4000; ++i) m.insert_or_assign(i, -i);  // copies past the budget: s expires
    const exposition e(reg.text());
    EXPECT_EQ(e.get(R"(iterlock_snapshot_budget_bytes{map="budgeted"})"), 1024);
    EXPECT_EQ(e.get(R"(iterlock_snapshots_expired_total{map="budgeted"})"), 1);
    EXPECT_TRUE(s.expired());
}

TEST(PrometheusExport, LockWaitsAreLabelledByRoleAndPriority) {
    locked_map m(2);
    iterlock::prometheus::registry reg;
    auto h = reg.add(m, "prio");
    fill(m, 10);  // best effort
    {
        iterlock::priority_scope rt(iterlock::priority::realtime);
        for (int i = 0; i < 4; ++i) m.insert_or_assign(100 + i, i);
        auto g = m.lock_for_iteration();
    }
    const exposition e(reg.text());
    const std::string w = R"(iterlock_lock_wait_seconds_count{map="prio",role="writer",priority=)";
    const std::string it = R"(iterlock_lock_wait_seconds_count{map="prio",role="iterator",priority=)";
    EXPECT_EQ(e.get(w + R"("best_effort"})"), 10);
    EXPECT_EQ(e.get(w + R"("realtime"})"), 4);
    EXPECT_EQ(e.get(it + R"("best_effort"})"), 0);
    EXPECT_EQ(e.get(it + R"("realtime"})"), 1);
}

TEST(PrometheusExport, HistogramBucketsAreCumulativeUpToInf) {
    locked_map m(2);
    fill(m, 50);
    iterlock::prometheus::registry reg;
    auto h = reg.add(m, "h");
    const std::string text = reg.text();
    const exposition e(text);
    // Every series of the histogram: non-decreasing buckets ending in +Inf == _count.
    int series = 0;
    for (const char* role : {"writer", "iterator"}) {
        for (const char* prio : {"best_effort", "realtime"}) {
            const std::string labels =
                std::string(R"(map="h",role=")") + role + R"(",priority=")" + prio + '"';
            double prev = 0;
            int buckets = 0;
            for (const auto& s : e.order) {
                if (s.rfind("iterlock_lock_wait_seconds_bucket{" + labels + ",le=", 0) != 0) continue;
                const double v = e.samples.at(s);
                EXPECT_GE(v, prev) << s;
                prev = v;
                ++buckets;
            }
            EXPECT_GT(buckets, 10);
            EXPECT_EQ(e.get("iterlock_lock_wait_seconds_bucket{" + labels + R"(,le="+Inf"})"),
                      e.get("iterlock_lock_wait_seconds_count{" + labels + "}"));
            ++series;
        }
    }
    EXPECT_EQ(series, 4);
    EXPECT_EQ(e.get(R"(iterlock_lock_wait_seconds_count{map="h",role="writer",priority="best_effort"})"), 50);
    EXPECT_NE(text.find(R"(le="+Inf")"), std::string::npos);
}

TEST(PrometheusExport, SnapshotMapExportsSnapshotFamiliesAndGauges) {
    snapshot_map m(4);
    fill(m, 1000);
    iterlock::prometheus::registry reg;
    auto h = reg.add(m, "sessions", {{"team", "ads"}});
    {
        auto s1 = m.snapshot();
        auto s2 = m.snapshot();
        for (int i = 0; i < 200; ++i) m.insert_or_assign(i, -i);  // preserved for the live snapshots (S4)
        const exposition e(reg.text());
        EXPECT_EQ(e.get(R"(iterlock_snapshots_active{map="sessions",team="ads"})"), 2);
        EXPECT_GT(e.get(R"(iterlock_snapshot_preserved_bytes{map="sessions",team="ads"})").value_or(0), 0);
        EXPECT_EQ(e.get(R"(iterlock_iterations_started_total{map="sessions",team="ads"})"), 2);
        EXPECT_EQ(e.get(R"(iterlock_snapshot_iterations_total{map="sessions",team="ads",state="success"})"),
                  0);
    }
    const exposition e(reg.text());
    EXPECT_EQ(e.get(R"(iterlock_snapshots_active{map="sessions",team="ads"})"), 0);
    EXPECT_EQ(e.get(R"(iterlock_snapshot_preserved_bytes{map="sessions",team="ads"})"), 0);  // S5
    EXPECT_EQ(e.get(R"(iterlock_snapshot_iterations_total{map="sessions",team="ads",state="success"})"), 2);
    EXPECT_EQ(e.get(R"(iterlock_snapshot_iterations_total{map="sessions",team="ads",state="error"})"), 0);
    EXPECT_FALSE(e.get(R"(iterlock_snapshot_iterations_total{map="sessions",team="ads",state="timeout"})"))
        << "snapshots never wait, so they have no timeout series";
    EXPECT_EQ(e.get(R"(iterlock_map_revision{map="sessions",team="ads"})"), 1200);
    EXPECT_EQ(e.get(R"(iterlock_map_entries{map="sessions",team="ads"})"), 1000);
    EXPECT_FALSE(e.has_family("iterlock_locked_iterations_total"));
}

TEST(PrometheusExport, MetricsCompiledOutExportOnlyWhatIsMeasured) {
    quiet_map q(2);
    locked_map l(2);
    fill(q, 3000);  // grows
    fill(l, 10);
    { auto g = q.lock_for_iteration(); }
    iterlock::prometheus::registry reg;
    auto hq = reg.add(q, "quiet");
    auto hl = reg.add(l, "loud");
    const exposition e(reg.text());
    EXPECT_EQ(e.get(R"(iterlock_map_entries{map="quiet"})"), 3000);
    EXPECT_EQ(e.get(R"(iterlock_map_revision{map="quiet"})"), 3000);
    EXPECT_GT(e.get(R"(iterlock_map_growths_total{map="quiet"})").value_or(0), 0);
    EXPECT_TRUE(e.get(R"(iterlock_map_evacuated_buckets_total{map="quiet"})"));
    for (const char* f : {"iterlock_locked_iterations_total", "iterlock_iterations_started_total",
                          "iterlock_lock_wait_seconds_count", "iterlock_misuse_detected_total"}) {
        EXPECT_FALSE(e.any(f, R"(map="quiet")")) << f;
        EXPECT_TRUE(e.any(f, R"(map="loud")")) << f;
    }
}

// P1: exposing and scraping a map records nothing in it and costs its writers nothing. Two maps run the same
// history (and seed), one exposed and scraped between the steps, the other exposed only at the end: every
// series but the measured durations agrees, and the writes of the exposed one allocate exactly what the
// other's do (where allocations are counted).
TEST(PrometheusExport, P1_ExposureAndScrapesRecordNothingBetweenScrapes) {
    locked_map a(4, iterlock::seed{7}), b(4, iterlock::seed{7});
    iterlock::prometheus::registry reg;
    auto ha = reg.add(a, "a");
    std::uint64_t allocs[2] = {0, 0};
    for (int round = 0; round < 4; ++round) {
        int m = 0;
        for (locked_map* map : {&a, &b}) {
            const std::uint64_t before = iterlock::test::counting_new::allocations();
            fill(*map, 200 * (round + 1));  // inserts, then overwrites of the earlier keys
            map->erase(round);
            {
                auto g = map->lock_for_iteration();
                for (auto& e : g) (void)e;
            }
            allocs[m++] += iterlock::test::counting_new::allocations() - before;
        }
        (void)reg.text();  // a scrape between the steps reads `a` only
    }
    if (iterlock::test::counting_new::enabled) EXPECT_EQ(allocs[0], allocs[1]);
    auto hb = reg.add(b, "b");
    const exposition e(reg.text());
    int compared = 0;
    for (const auto& [series, value] : e.samples) {
        const auto at = series.find("map=\"a\"");
        if (at == std::string::npos) continue;
        std::string twin = series;
        twin.replace(at, 7, "map=\"b\"");
        if (series.find("_seconds") != std::string::npos) continue;  // measured durations differ by nature
        EXPECT_EQ(e.get(twin), value) << series;
        ++compared;
    }
    EXPECT_GT(compared, 3);
}

TEST(PrometheusExport, P2_OneFamilyPerNameWhateverTheNumberOfMaps) {
    std::vector<std::unique_ptr<locked_map>> maps;
    std::vector<iterlock::prometheus::exposure> hs;
    iterlock::prometheus::registry reg;
    for (int i = 0; i < 5; ++i) {
        maps.push_back(std::make_unique<locked_map>(2));
        hs.push_back(reg.add(*maps.back(), "m" + std::to_string(i)));
    }
    const exposition e(reg.text());
    for (const auto& [name, n] : e.type_lines) EXPECT_EQ(n, 1) << name;
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(e.get("iterlock_map_entries{map=\"m" + std::to_string(i) + "\"}"), 0);
    EXPECT_EQ(reg.names(), (std::vector<std::string>{"m0", "m1", "m2", "m3", "m4"}));
}

TEST(PrometheusExport, P3_ExposureUnregistersOnDestructionAndReset) {
    iterlock::prometheus::registry reg;
    auto m = std::make_unique<locked_map>(2);
    {
        auto h = reg.add(*m, "gone");
        EXPECT_TRUE(h.active());
        EXPECT_TRUE(exposition(reg.text()).get(R"(iterlock_map_entries{map="gone"})"));
    }
    m.reset();  // P3: safe once its exposure is gone; the next scrape must not read it
    EXPECT_TRUE(reg.names().empty());
    EXPECT_EQ(reg.text(), "");

    locked_map a(2), b(2);
    auto ha = reg.add(a, "a");
    iterlock::prometheus::exposure moved = std::move(ha);
    EXPECT_FALSE(ha.active());
    EXPECT_TRUE(moved.active());
    moved = reg.add(b, "b");  // move assignment unregisters "a"
    EXPECT_EQ(reg.names(), std::vector<std::string>{"b"});
    moved.reset();
    EXPECT_FALSE(moved.active());
    EXPECT_TRUE(reg.names().empty());
    auto again = reg.add(a, "a");  // the name is free again
    EXPECT_TRUE(again.active());
}

TEST(PrometheusExport, P4_ExposureOutlivingItsRegistryIsHarmless) {
    locked_map m(2);
    iterlock::prometheus::exposure h;
    {
        iterlock::prometheus::registry reg;
        h = reg.add(m, "orphan");
        EXPECT_TRUE(h.active());
    }
    EXPECT_FALSE(h.active());  // P4
    h.reset();
}

// Issue 13, item 2 (P6): a map destroyed before its exposure is no longer read: the next scrape skips it
// (today's main read the dead map: stack-use-after-scope under ASan), the handle turns inactive, the name
// is free again, and the late reset() is harmless.
TEST(PrometheusExport, P6_Item02_MapDestroyedBeforeItsExposureIsNoLongerRead) {
    iterlock::prometheus::registry reg;
    iterlock::prometheus::exposure early, late;
    {
        snapshot_map s(2);
        locked_map l(2);
        fill(s, 10);
        fill(l, 10);
        early = reg.add(s, "short_lived");
        late = reg.add(l, "long_lived_exposure");
        const exposition e(reg.text());
        EXPECT_EQ(e.get(R"(iterlock_map_entries{map="short_lived"})"), 10);
        EXPECT_EQ(e.get(R"(iterlock_map_entries{map="long_lived_exposure"})"), 10);
    }  // both maps die here, their exposures live on
    EXPECT_FALSE(early.active());
    EXPECT_FALSE(late.active());
    EXPECT_EQ(reg.text(), "");
    EXPECT_TRUE(reg.names().empty());
    snapshot_map again(2);
    auto h = reg.add(again, "short_lived");  // the dead map's name is free again
    EXPECT_TRUE(h.active());
    early.reset();  // unregisters nothing of the new map
    EXPECT_EQ(reg.names(), std::vector<std::string>{"short_lived"});
}

// Item 2 with a scrape thread: maps on the stack die while their exposures live and scrapes run; no scrape
// may read a dead map (ASan), every scrape stays valid, and a scrape in progress holds the destruction off
// (P6) rather than reading freed shards.
TEST(PrometheusExport, P6_Item02_ScrapesRacingMapDestructionNeverReadADeadMap) {
    iterlock::prometheus::registry reg;
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0}, scrapes{0};
    std::latch go(2);
    std::thread scraper([&] {
        go.arrive_and_wait();
        while (!stop.load()) {
            const exposition e(reg.text());
            for (const auto& [series, v] : e.samples)
                if (series.rfind("iterlock_map_entries{", 0) == 0 && v != 32) ++bad;
            ++scrapes;
        }
    });
    go.arrive_and_wait();
    std::vector<iterlock::prometheus::exposure> outliving;
    for (int round = 0; round < 300; ++round) {
        snapshot_map s(2);
        locked_map l(2);
        fill(s, 32);
        fill(l, 32);
        outliving.push_back(reg.add(s, "s" + std::to_string(round)));
        outliving.push_back(reg.add(l, "l" + std::to_string(round)));
        if (round % 50 == 0) {  // make sure scrapes overlap the maps' lives
            const int seen = scrapes.load();
            while (scrapes.load() < seen + 1) std::this_thread::yield();
        }
    }  // each round's maps die before their exposures
    const int seen = scrapes.load();
    while (scrapes.load() < seen + 2) std::this_thread::yield();
    stop.store(true);
    scraper.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(reg.text(), "");
    for (const auto& h : outliving) EXPECT_FALSE(h.active());
}

TEST(PrometheusExport, P5_RejectsDuplicateNamesAndReservedLabels) {
    locked_map a(2), b(2);
    iterlock::prometheus::registry reg;
    auto h = reg.add(a, "dup");
    EXPECT_THROW((void)reg.add(b, "dup"), std::invalid_argument);
    auto other_labels = reg.add(b, "dup", {{"region", "eu"}});  // a different series set: allowed
    EXPECT_TRUE(other_labels.active());
    for (const char* bad : {"map", "state", "role", "priority", "le", "__meta", "1x", "a-b"}) {
        EXPECT_THROW((void)reg.add(b, "x", {{bad, "v"}}), std::invalid_argument) << bad;
    }
    EXPECT_EQ(reg.names().size(), 2u);
}

TEST(PrometheusExport, EndpointServesTheMapsOverHttp) {
    locked_map m(2);
    fill(m, 42);
    iterlock::prometheus::endpoint ep("127.0.0.1:0");
    ASSERT_NE(ep.port(), 0);
    EXPECT_EQ(ep.url(), "http://127.0.0.1:" + std::to_string(ep.port()) + "/metrics");
    auto h = ep.expose(m, "web");
    const auto r = iterlock::test::http_get(ep.port(), "/metrics");
    ASSERT_EQ(r.status, 200);
    const exposition e(r.body);
    EXPECT_EQ(e.get(R"(iterlock_map_entries{map="web"})"), 42);
    h.reset();
    const exposition after(iterlock::test::http_get(ep.port(), "/metrics").body);
    EXPECT_FALSE(after.get(R"(iterlock_map_entries{map="web"})"));
}

TEST(PrometheusExport, P2_ExpositionPassesPromtool) {
    const auto promtool = iterlock::test::find_program("promtool");
    if (!promtool)
        GTEST_SKIP() << "promtool is not installed (Debian package `prometheus`; tools/dev.sh deps)";
    locked_map l(2);
    snapshot_map s(2);
    quiet_map q(2);
    fill(l, 10);
    fill(s, 10);
    fill(q, 10);
    { auto g = l.lock_for_iteration(); }
    auto snap = s.snapshot();
    s.insert_or_assign(1, 2);
    iterlock::prometheus::registry reg;
    auto h1 = reg.add(l, "locked \"one\"\n\\");
    auto h2 = reg.add(s, "snap", {{"team", "a}b"}});
    auto h3 = reg.add(q, "quiet");
    iterlock::test::expect_promtool_accepts(*promtool, reg.text());
}

// P3 under load: scrapes (direct and over HTTP) race with maps being exposed, written, walked and destroyed.
// ASan catches a scrape that reads a destroyed map; TSan catches unsynchronised access to the registry.
TEST(PrometheusExport, P3_ScrapesRaceWithMapsComingAndGoing) {
    iterlock::prometheus::endpoint ep("127.0.0.1:0");
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0}, scrapes{0};
    std::latch go(3);
    auto check = [&](const std::string& text) {
        const exposition e(text);
        for (const auto& [name, n] : e.type_lines)
            if (n != 1) ++bad;
        for (const auto& [series, v] : e.samples)
            if (series.rfind("iterlock_map_entries{", 0) == 0 && v > 64) ++bad;
        ++scrapes;
    };
    std::thread direct([&] {
        go.arrive_and_wait();
        while (!stop.load()) check(ep.maps().text());
    });
    std::thread http([&] {
        go.arrive_and_wait();
        while (!stop.load()) {
            const auto r = iterlock::test::http_get(ep.port(), "/metrics");
            if (r.status != 200) ++bad;
            check(r.body);
        }
    });
    go.arrive_and_wait();
    for (int round = 0; round < 150; ++round) {
        auto lm = std::make_unique<locked_map>(2);
        auto sm = std::make_unique<snapshot_map>(2);
        auto hl = ep.expose(*lm, "l" + std::to_string(round % 3));
        auto hs = ep.expose(*sm, "s");
        for (int i = 0; i < 64; ++i) {
            lm->insert_or_assign(i, i);
            sm->insert_or_assign(i, i);
        }
        { auto g = lm->lock_for_iteration(); }
        { auto v = sm->snapshot(); }
        if (round % 2 == 0) {
            hl.reset();
            lm.reset();  // destroyed while `hs` is still exposed and scrapes go on
        }
    }
    // Let a few more scrapes run on the empty registry before stopping.
    const int seen = scrapes.load();
    while (scrapes.load() < seen + 2) std::this_thread::yield();
    stop = true;
    direct.join();
    http.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(scrapes.load(), 2);
    EXPECT_TRUE(ep.maps().names().empty());
}

}  // namespace
