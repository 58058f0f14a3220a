// iterlock::etcd::map against a real one-member etcd: the mirror's revision label under concurrent
// writers (M1), read-your-writes (M3), compare-and-set (M4), snapshots (M5, M6), size checks (M8); the
// codec (K1-K4).
#include <gtest/gtest.h>

#include <cstring>
#include <latch>
#include <string>
#include <thread>

#include "support/etcd_client_options.hpp"
#include "support/etcd_sequences.hpp"
#include "testing/local_etcd.hpp"

using namespace iterlock::test;
using etcd::testing::local_etcd;

namespace {

// Four sequence writers run before, during and after the list; every snapshot of the mirror is an exact
// prefix of each writer's sequence and equals etcd at its label. The writers go on past per_writer until
// the reader has taken six snapshots, so the overlap does not depend on the schedule (an ASan run under
// load once finished the writes during the map's construction).
TEST(EtcdMap, M1_ListThenWatchIsExactUnderFourWriters) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    const std::string prefix = "seq/";
    constexpr std::uint64_t writers = 4, per_writer = 150;
    std::latch go(writers + 1);
    std::atomic<std::uint64_t> done_writes{0}, writers_done{0};
    std::atomic<int> snapshots{0};
    std::vector<std::int64_t> last(writers);
    std::vector<std::uint64_t> written(writers);
    std::vector<std::thread> ts;
    for (std::uint64_t t = 0; t < writers; ++t)
        ts.emplace_back([&, t] {
            go.arrive_and_wait();
            std::uint64_t i = 0;
            for (; i < per_writer || (snapshots.load() <= 5 && i < 20 * per_writer); ++i) {
                last[t] = write_sequence(c, prefix, t, i, i + 1);
                done_writes.fetch_add(1);
            }
            written[t] = i;
            writers_done.fetch_add(1);
        });
    go.arrive_and_wait();
    while (done_writes.load() < 40) std::this_thread::yield();
    seq_map m(c, prefix);  // listed while the writers write
    std::int64_t prev = 0;
    while (writers_done.load() < writers) {
        auto s = m.snapshot();
        EXPECT_GE(s.revision, prev);
        prev = s.revision;
        expect_exact_prefixes(s.view, "snapshot during the writes");
        if (snapshots++ % 8 == 0) expect_equals_etcd(m, s);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    for (auto& t : ts) t.join();
    ASSERT_TRUE(m.wait_applied(*std::max_element(last.begin(), last.end())));
    auto s = m.snapshot();
    auto counts = expect_exact_prefixes(s.view, "final snapshot");
    for (std::uint64_t t = 0; t < writers; ++t) EXPECT_EQ(counts[t], written[t]);
    expect_equals_etcd(m, s);
    EXPECT_GT(snapshots, 5);
    const auto mm = m.metrics();
    EXPECT_EQ(mm.duplicate_events, 0u);
    EXPECT_EQ(mm.decode_errors, 0u);
    EXPECT_EQ(mm.relists, 1u);
}

TEST(EtcdMap, M1_TwoMirrorsAtOneRevisionHoldTheSame) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    seq_map a(c, "two/");
    for (std::uint64_t i = 0; i < 50; ++i) a.insert_or_assign(seq_key(0, i), i);
    seq_map b(c, "two/");
    std::int64_t r = 0;
    for (std::uint64_t i = 50; i < 80; ++i) r = a.insert_or_assign(seq_key(0, i), i);
    r = std::max(r, a.erase(seq_key(0, 3)).second);
    ASSERT_TRUE(a.wait_applied(r));
    ASSERT_TRUE(b.wait_applied(r));
    auto sa = a.snapshot(), sb = b.snapshot();
    EXPECT_EQ(sa.revision, sb.revision);
    std::map<std::uint64_t, std::int64_t> da, db;
    for (const auto& [k, v] : sa.view) da[k] = v.mod_revision;
    for (const auto& [k, v] : sb.view) db[k] = v.mod_revision;
    EXPECT_EQ(da, db);
    EXPECT_EQ(da.size(), 79u);
}

TEST(EtcdMap, M3_ReadYourWritesAfterWaitApplied) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    etcd::map<std::string, std::string> m(c, "ryw/");
    const auto r = m.insert_or_assign("a", "1");
    ASSERT_TRUE(m.wait_applied(r));
    EXPECT_EQ(m.find("a"), "1");
    EXPECT_EQ(m.find_versioned("a")->mod_revision, r);
    // An erase of a missing key writes nothing and says so.
    const auto [existed, r2] = m.erase("missing");
    EXPECT_FALSE(existed);
    EXPECT_GE(r2, r);
    // With wait_for_mirror every write returns after the mirror applied it.
    etcd::map<std::string, std::string> w(c, "ryw/", {.wait_for_mirror = true});
    w.insert_or_assign("b", "2");
    EXPECT_EQ(w.find("b"), "2");
    w.erase("b");
    EXPECT_FALSE(w.find("b").has_value());
    // Linearizable read from etcd.
    auto v = m.find("a", etcd::linearizable);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->value, "1");
    EXPECT_EQ(v->mod_revision, r);
}

TEST(EtcdMap, M4_CompareAndSet) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    etcd::map<std::string, std::uint64_t> m(c, "cas/");
    auto r1 = m.compare_and_set("k", 0, 1);  // 0: only if absent
    EXPECT_TRUE(r1.succeeded);
    EXPECT_FALSE(m.compare_and_set("k", 0, 2).succeeded);
    EXPECT_FALSE(m.compare_and_set("k", r1.revision - 1, 2).succeeded);
    auto r2 = m.compare_and_set("k", r1.revision, 2);
    EXPECT_TRUE(r2.succeeded);
    EXPECT_GT(r2.revision, r1.revision);
    // Four threads increment one counter by CAS: no lost update, every success counted once.
    m.insert_or_assign("n", 0);
    std::atomic<int> successes{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
            for (int done = 0; done < 20;) {
                auto cur = m.find("n", etcd::linearizable);
                if (m.compare_and_set("n", cur->mod_revision, cur->value + 1).succeeded) {
                    ++done;
                    successes.fetch_add(1);
                }
            }
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(successes.load(), 80);
    EXPECT_EQ(m.find("n", etcd::linearizable)->value, 80u);
}

TEST(EtcdMap, M6_SnapshotAtAPastRevisionOrCompacted) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    etcd::map<std::string, std::string> m(c, "past/");
    const auto r1 = m.insert_or_assign("a", "old");
    const auto r2 = m.insert_or_assign("a", "new");
    m.insert_or_assign("b", "x");
    auto p = m.snapshot_at(r1);
    ASSERT_EQ(p.entries.size(), 1u);
    EXPECT_EQ(p.entries[0].second.value, "old");
    EXPECT_EQ(p.revision, r1);
    c.compact(r2);
    try {
        m.snapshot_at(r1);
        FAIL() << "r1 was compacted";
    } catch (const etcd::error& e) {
        EXPECT_EQ(e.code(), etcd::errc::compacted) << e.what();
    }
    EXPECT_EQ(m.snapshot_at(r2).entries.size(), 1u);
}

TEST(EtcdMap, M5_SnapshotOutlivesWritesAndKeepsItsLabel) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    etcd::map<std::string, std::string> m(c, "snap/");
    const auto r = m.insert_or_assign("a", "1");
    ASSERT_TRUE(m.wait_applied(r));
    auto s = m.snapshot();
    EXPECT_EQ(s.revision, r);
    const auto r2 = m.insert_or_assign("a", "2");
    ASSERT_TRUE(m.wait_applied(r2));
    ASSERT_EQ(s.view.size(), 1u);
    for (const auto& [k, v] : s.view) EXPECT_EQ(v.value, "1");
    EXPECT_EQ(m.snapshot().revision, r2);
}

TEST(EtcdMap, M8_TooLargeIsRejectedWithNoPartialWrite) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    etcd::map<std::string, std::string> m(c, "big/");
    try {
        m.insert_or_assign("a", std::string(1600 * 1024, 'x'));
        FAIL();
    } catch (const etcd::error& e) {
        EXPECT_EQ(e.code(), etcd::errc::too_large) << e.what();
    }
    EXPECT_FALSE(m.find("a", etcd::linearizable).has_value());
    EXPECT_GT(m.insert_or_assign("a", std::string(1000 * 1024, 'x')), 0);  // under the limit: accepted
}

TEST(EtcdCodec, K1_IntegersKeepTheirOrderAsBytes) {
    using etcd::default_codec;
    EXPECT_LT(default_codec::encode(std::int64_t{-5}), default_codec::encode(std::int64_t{3}));
    EXPECT_LT(default_codec::encode(std::uint32_t{255}), default_codec::encode(std::uint32_t{256}));
    std::int64_t x = 0;
    EXPECT_TRUE(default_codec::decode(default_codec::encode(std::int64_t{-42}), x));
    EXPECT_EQ(x, -42);
    EXPECT_FALSE(default_codec::decode(std::string_view("abc"), x));  // K4
}

TEST(EtcdCodec, K2_StringsAreTheirBytes) {
    using etcd::default_codec;
    const std::string s("a\0b\xff", 4);
    EXPECT_EQ(default_codec::encode(s), s);
    std::string out = "old";
    EXPECT_TRUE(default_codec::decode(std::string_view(s), out));
    EXPECT_EQ(out, s);
}

TEST(EtcdCodec, K3_TriviallyCopyableTypesAreTheirObjectRepresentation) {
    struct point {
        double x;
        float y;
    };
    using etcd::default_codec;
    const point p{1.5, -2.25f};
    const std::string bytes = default_codec::encode(p);
    ASSERT_EQ(bytes.size(), sizeof(point));
    EXPECT_EQ(std::memcmp(bytes.data(), &p, sizeof(point)), 0);
    point q{0, 0};
    EXPECT_TRUE(default_codec::decode(std::string_view(bytes), q));
    EXPECT_EQ(q.x, 1.5);
    EXPECT_EQ(q.y, -2.25f);
}

TEST(EtcdCodec, K4_SizeMismatchDecodesToFalseAndLeavesTheTarget) {
    using etcd::default_codec;
    std::int32_t i = 7;
    EXPECT_FALSE(default_codec::decode(std::string_view("abcde"), i));
    EXPECT_FALSE(default_codec::decode(std::string_view(""), i));
    EXPECT_EQ(i, 7);
    double d = 3.0;
    EXPECT_FALSE(default_codec::decode(std::string_view("abc"), d));  // shorter than sizeof(double)
    EXPECT_EQ(d, 3.0);
}

}  // namespace
