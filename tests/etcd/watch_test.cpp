// iterlock::etcd::map::watch (rule M11 of map.hpp) against a real one-member etcd: a past snapshot plus
// the feed from its revision replays to the map later, under concurrent writers; the feed ends compacted
// when its start is gone, lagging when its reader falls behind (the mirror goes on), and a transaction's
// events are numbered like a versioned_map batch.
#include <gtest/gtest.h>

#include <latch>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "iterlock/etcd/detail/mirror_test_access.hpp"
#include "support/etcd_client_options.hpp"
#include "support/etcd_sequences.hpp"
#include "testing/local_etcd.hpp"

using namespace iterlock::test;
using etcd::testing::local_etcd;
using mirror_access = etcd::detail::mirror_test_access;

namespace {

using replay_map = std::map<std::uint64_t, etcd::versioned<std::uint64_t>>;

// Receives every change the feed already holds and applies it to `state`, checking that revisions never
// go down (etcd order) and that each key's revisions strictly grow (no duplicate). Returns how many.
std::size_t drain(const seq_map::feed_type& f, replay_map& state, std::uint64_t& last_revision) {
    std::size_t n = 0;
    for (auto r = f.events().try_recv(); r.has_value(); r = f.events().try_recv()) {
        const auto& c = *r;
        EXPECT_GE(c.revision, last_revision) << "a change arrived out of etcd's revision order";
        last_revision = c.revision;
        const auto it = state.find(c.key);
        if (it != state.end())
            EXPECT_GT(c.revision, static_cast<std::uint64_t>(it->second.mod_revision))
                << "a change of key " << c.key << " arrived twice or out of order";
        if (c.kind == iterlock::change_kind::put) {
            EXPECT_TRUE(c.value.has_value());
            state[c.key] = {*c.value, static_cast<std::int64_t>(c.revision)};
        } else {
            EXPECT_FALSE(c.value.has_value());
            state.erase(c.key);
        }
        ++n;
    }
    return n;
}

replay_map from_past(const seq_map::past_snapshot& p) {
    replay_map out;
    for (const auto& [k, v] : p.entries) out[k] = v;
    return out;
}

void expect_same(const replay_map& a, const replay_map& b, const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (const auto& [k, v] : a) {
        const auto it = b.find(k);
        ASSERT_NE(it, b.end()) << what << ": key " << k;
        EXPECT_EQ(v.value, it->second.value) << what << ": key " << k;
        EXPECT_EQ(v.mod_revision, it->second.mod_revision) << what << ": key " << k;
    }
}

// Four writers put and erase 64 keys through their own map while a reader takes snapshot_at(R) and
// watch(R) at several points of the run and drains the feeds as they go; once the writers are done, every
// replay equals the mirror and etcd at the final revision.
TEST(EtcdWatch, M11_SnapshotAtPlusWatchReplayedEqualsTheMapLater) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    const std::string prefix = "w/";
    seq_map writer_map(c, prefix);
    seq_map m(c, prefix);
    constexpr int writers = 4, per_writer = 120;
    std::latch go(writers + 1);
    std::atomic<int> done{0};
    std::vector<std::int64_t> last(writers);
    std::vector<std::thread> ts;
    for (int t = 0; t < writers; ++t)
        ts.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(t) + 1);
            go.arrive_and_wait();
            for (int i = 0; i < per_writer; ++i) {
                const std::uint64_t k = rng() % 64;
                if (rng() % 4 == 0)
                    last[t] = std::max(last[t], writer_map.erase(k).second);
                else
                    last[t] = writer_map.insert_or_assign(k, rng() % 1000);
                done.fetch_add(1);
            }
        });
    struct replay {
        seq_map::feed_type feed;
        replay_map state;
        std::uint64_t last = 0;
    };
    std::vector<replay> replays;
    go.arrive_and_wait();
    int next_start = 0;
    std::size_t received = 0;  // over the whole run: the loop may drain everything before the writers end
    while (done.load() < writers * per_writer) {
        if (done.load() >= next_start && replays.size() < 4) {
            const std::int64_t r = m.applied_revision();
            replay rp{m.watch(r), from_past(m.snapshot_at(r)), static_cast<std::uint64_t>(r)};
            EXPECT_FALSE(rp.feed.ended()) << to_string(rp.feed.reason());
            replays.push_back(std::move(rp));
            next_start += writers * per_writer / 4;
        }
        for (auto& rp : replays) received += drain(rp.feed, rp.state, rp.last);
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    for (auto& t : ts) t.join();
    const std::int64_t final_rev = *std::max_element(last.begin(), last.end());
    ASSERT_TRUE(m.wait_applied(final_rev));
    ASSERT_GE(replays.size(), 2u);
    const auto s = m.snapshot();
    replay_map mirror;
    for (const auto& [k, v] : s.view) mirror[k] = v;
    const replay_map in_etcd = from_past(m.snapshot_at(s.revision));
    expect_same(mirror, in_etcd, "the mirror against etcd");
    for (auto& rp : replays) {
        received += drain(rp.feed, rp.state, rp.last);
        EXPECT_EQ(rp.feed.reason(), iterlock::feed_end::none);
        EXPECT_EQ(rp.last, static_cast<std::uint64_t>(s.revision));
        expect_same(rp.state, mirror, "snapshot_at(R) + watch(R) against the mirror later");
    }
    EXPECT_GT(received, 0u);
    EXPECT_EQ(m.metrics().duplicate_events, 0u);
}

// A start older than the kept history, or a re-list after etcd compacted the mirror's resume point, ends
// the feed with feed_end::compacted; a start inside the history replays exactly the changes after it.
TEST(EtcdWatch, M11_AStartThatIsGoneEndsTheFeedCompacted) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    etcd::map_options o;
    o.feed_history = 4;
    seq_map m(c, "cw/", o);
    std::vector<std::int64_t> revs;
    for (std::uint64_t i = 0; i < 10; ++i) revs.push_back(m.insert_or_assign(i, i));
    ASSERT_TRUE(m.wait_applied(revs.back()));
    auto old = m.watch(revs[2]);
    EXPECT_TRUE(old.ended());
    EXPECT_EQ(old.reason(), iterlock::feed_end::compacted);
    EXPECT_FALSE(old.events().recv().has_value());

    auto recent = m.watch(revs[6]);  // changes 7, 8, 9
    for (std::uint64_t i = 7; i < 10; ++i) {
        auto r = recent.events().try_recv();
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(r->key, i);
        EXPECT_EQ(r->revision, static_cast<std::uint64_t>(revs[i]));
    }
    EXPECT_FALSE(recent.events().try_recv().has_value());

    // etcd compacts past the mirror's resume point while it is disconnected: the re-list (M7) ends the feed.
    mirror_access::suspend(mirror_access::core(m));
    std::int64_t end = 0;
    for (std::uint64_t i = 10; i < 20; ++i) end = c.put("cw/" + etcd::default_codec::encode(i), "x");
    end = m.insert_or_assign(20, 20);
    c.compact(end, true);
    mirror_access::resume(mirror_access::core(m));
    ASSERT_TRUE(m.wait_applied(end, std::chrono::seconds(10)));
    EXPECT_EQ(m.metrics().compaction_resyncs, 1u);
    EXPECT_TRUE(recent.events().recv_for(std::chrono::seconds(5)).closed());
    EXPECT_EQ(recent.reason(), iterlock::feed_end::compacted);
    // A watch from before the re-list is gone too; one from the re-list's revision works.
    EXPECT_EQ(m.watch(revs.back()).reason(), iterlock::feed_end::compacted);
    auto fresh = m.watch(m.applied_revision());
    const auto w = m.insert_or_assign(21, 21);
    auto r = fresh.events().recv_for(std::chrono::seconds(5));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->revision, static_cast<std::uint64_t>(w));
}

// A feed whose reader does not keep up is cut off (V3's lagging) while the mirror goes on applying.
TEST(EtcdWatch, M11_ALaggingFeedIsCutOffAndTheMirrorNeverWaits) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    seq_map m(c, "lag/");
    auto f = m.watch(m.applied_revision(), 2);
    std::int64_t last = 0;
    for (std::uint64_t i = 0; i < 6; ++i) last = m.insert_or_assign(i, i);
    ASSERT_TRUE(m.wait_applied(last));
    EXPECT_EQ(m.find(5), std::optional<std::uint64_t>(5));
    EXPECT_EQ(f.reason(), iterlock::feed_end::lagging);
    int got = 0;
    for (auto r = f.events().recv(); r.has_value(); r = f.events().recv()) {
        EXPECT_EQ(r->key, static_cast<std::uint64_t>(got));
        ++got;
    }
    EXPECT_EQ(got, 2);
}

// The changes of one etcd transaction arrive together, numbered by more_in_batch as a versioned_map batch.
TEST(EtcdWatch, M11_OneTransactionIsOneBatch) {
    local_etcd cluster;
    etcd::client c(cluster_client_options(cluster));
    seq_map m(c, "tx/");
    ASSERT_TRUE(m.wait_applied(m.insert_or_assign(9, 9)));
    auto f = m.watch(m.applied_revision());
    const auto enc = [](std::uint64_t x) { return etcd::default_codec::encode(x); };
    auto t = c.txn({}, {etcd::txn_op::put(m.etcd_key(1), enc(10)), etcd::txn_op::put(m.etcd_key(2), enc(20)),
                        etcd::txn_op::erase(m.etcd_key(9))});
    ASSERT_TRUE(t.succeeded);
    ASSERT_TRUE(m.wait_applied(t.revision));
    std::vector<seq_map::change_type> got;
    for (auto r = f.events().try_recv(); r.has_value(); r = f.events().try_recv()) got.push_back(*r);
    ASSERT_EQ(got.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(got[i].revision, static_cast<std::uint64_t>(t.revision));
        EXPECT_EQ(got[i].more_in_batch, 2 - i);
    }
    EXPECT_EQ(got[2].kind, iterlock::change_kind::erase);
    EXPECT_EQ(got[2].key, 9u);
}

}  // namespace
