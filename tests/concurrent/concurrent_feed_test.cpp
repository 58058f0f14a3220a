// Rules V2 and V3 of iterlock::versioned_map (versioned_map.hpp): change feeds started from snapshots and
// cursors — exactly once relative to the snapshot, per-key order, writers never wait, lagging watchers are
// cut off with a reason, memory bounded — and a snapshot handed to another thread over a chan.
#include <atomic>
#include <cstdint>
#include <latch>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/chan.hpp"
#include "iterlock/select.hpp"
#include "iterlock/versioned_map.hpp"
#include "support/feed_replica.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using vmap = iterlock::versioned_map<int, long>;
using change = iterlock::change<int, long>;
using replica = iterlock::test::feed_replica<long>;

replica list(const vmap::snapshot_view& s) {
    replica r = iterlock::test::list_snapshot(s);
    EXPECT_EQ(r.size(), s.size()) << "a key listed twice";
    return r;
}
// Applies one event, checking per-key order and exactly once against what the replica holds.
void apply(replica& r, const change& c, std::map<int, std::uint64_t>& last_rev) {
    ASSERT_TRUE(iterlock::test::apply_change(r, c, last_rev))
        << "key " << c.key << ": event out of order, delivered twice, or with a wrong value";
}
// Receives what the feed holds now, without waiting.
void drain(const vmap::feed_type& f, replica& r, std::map<int, std::uint64_t>& last_rev) {
    for (;;) {
        auto got = f.events().try_recv();
        if (!got) return;
        apply(r, *got, last_rev);
    }
}

TEST(ConcurrentFeed, V2_SnapshotPlusFeedEqualsMapAfterwards) {
    vmap m(4, 64);
    for (int i = 0; i < 20; ++i) m.insert_or_assign(i, long{i});
    auto s = m.snapshot();
    replica r = list(s);
    auto f = m.watch(s);
    m.insert_or_assign(1, 100L);
    m.erase(2);
    m.insert_or_assign(50, 5L);
    m.compare_and_set(3, m.find_versioned(3)->revision, 33L);
    m.erase_if_unchanged(4, 12345);  // fails: no event
    std::map<int, std::uint64_t> last;
    drain(f, r, last);
    EXPECT_EQ(r, list(m.snapshot()));
    EXPECT_FALSE(f.ended());
}

TEST(ConcurrentFeed, V2_RandomWritersWatchersAtRandomSnapshots) {
    const int writers = 3, watchers = 4, keys = 64;
    const long per = iterlock::test::scaled(20000, 2000);
    vmap m(8, 1 << 14);
    std::vector<vmap::feed_type> feeds(watchers);
    std::vector<replica> replicas(watchers);
    std::vector<std::map<int, std::uint64_t>> lasts(watchers);
    iterlock::test::writers_and_watchers(m, writers, watchers, per, keys, [&](int w, auto writing) {
        auto s = m.snapshot();
        replicas[w] = list(s);
        feeds[w] = m.watch(s, static_cast<std::size_t>(writers * per + 1));
        while (writing()) drain(feeds[w], replicas[w], lasts[w]);
    });
    const replica final_map = list(m.snapshot());
    for (int w = 0; w < watchers; ++w) {
        ASSERT_FALSE(feeds[w].ended()) << iterlock::to_string(feeds[w].reason());
        drain(feeds[w], replicas[w], lasts[w]);
        EXPECT_EQ(replicas[w], final_map) << "watcher " << w;
    }
}

TEST(ConcurrentFeed, V2_WritesToOneKeyArriveInOrder) {
    vmap m(4, 0);
    auto f = m.watch(std::size_t{100000});
    const long n = iterlock::test::scaled(10000, 1000);
    std::thread writer([&] {
        for (long i = 1; i <= n; ++i) m.insert_or_assign(1, i);
    });
    long expect = 1;
    while (expect <= n) {
        auto c = f.events().recv();
        ASSERT_TRUE(c.has_value());
        ASSERT_EQ(*c->value, expect);
        ++expect;
    }
    writer.join();
}

TEST(ConcurrentFeed, V3_LaggingWatcherIsCutOffWritersDoNotWait) {
    vmap m(2, 16);
    auto f = m.watch(std::size_t{8});
    for (long i = 0; i < 100; ++i) m.insert_or_assign(static_cast<int>(i), i);  // never blocks
    EXPECT_EQ(m.size(), 100u);
    EXPECT_EQ(f.reason(), iterlock::feed_end::lagging);
    int received = 0;
    for (const change& c : f.events()) {  // the events before the cut, then closed
        (void)c;
        ++received;
    }
    EXPECT_EQ(received, 8);
    // A cut-off watcher is dropped from the shards by the next write there: nothing grows.
    m.insert_or_assign(1000, 1L);
    m.insert_or_assign(1001, 1L);
    EXPECT_EQ(std::string(iterlock::to_string(f.reason())).rfind("lagging", 0), 0u);
}

TEST(ConcurrentFeed, V3_ResumeFromCursorAfterLagging) {
    vmap m(4, 1024);
    auto s = m.snapshot();
    replica r = list(s);
    iterlock::watch_cursor at = s.cursor();
    auto f = m.watch(s, 4);
    std::map<int, std::uint64_t> last;
    for (long i = 0; i < 50; ++i) m.insert_or_assign(static_cast<int>(i % 7), i);
    ASSERT_EQ(f.reason(), iterlock::feed_end::lagging);
    for (const change& c : f.events()) {
        apply(r, c, last);
        at.advance(c);
    }
    auto g = m.watch(at);  // the history still holds the rest
    ASSERT_FALSE(g.ended()) << iterlock::to_string(g.reason());
    drain(g, r, last);
    EXPECT_EQ(r, list(m.snapshot()));
}

TEST(ConcurrentFeed, V3_CompactedWhenHistoryNoLongerHoldsTheStart) {
    vmap m(1, 4);
    auto s = m.snapshot();
    for (long i = 0; i < 10; ++i) m.insert_or_assign(1, i);
    auto f = m.watch(s);
    EXPECT_EQ(f.reason(), iterlock::feed_end::compacted);
    EXPECT_FALSE(f.events().recv().has_value());  // closed, nothing delivered
    auto g = m.watch(m.snapshot());               // listing again works
    EXPECT_FALSE(g.ended());
}

TEST(ConcurrentFeed, V3_ManyWatchersEachGetEveryEvent) {
    vmap m(8, 0);
    std::vector<vmap::feed_type> fs;
    for (int i = 0; i < 64; ++i) fs.push_back(m.watch(std::size_t{1000}));
    EXPECT_EQ(m.feeds_alive(), 64u);
    for (long i = 0; i < 500; ++i) m.insert_or_assign(static_cast<int>(i % 50), i);
    for (auto& f : fs) {
        EXPECT_EQ(f.backlog(), 500u);
        EXPECT_FALSE(f.ended());
    }
    fs.clear();
    EXPECT_EQ(m.feeds_alive(), 0u);
}

TEST(ConcurrentFeed, V3_WatcherDestroyedMidFeed) {
    vmap m(8, 256);
    iterlock::test::rounds_under_writers(m, iterlock::test::scaled(300, 30), [&] {
        auto f = m.watch(std::size_t{64});
        for (int j = 0; j < 10; ++j)
            if (!f.events().try_recv()) break;
        // f ends here, mid-feed, while writers deliver to it
    });
    EXPECT_EQ(m.feeds_alive(), 0u);
}

TEST(ConcurrentFeed, V2_FeedComposesWithSelect) {
    vmap m(4, 0);
    auto f = m.watch();
    iterlock::chan<int> other(1);
    m.insert_or_assign(3, 30L);
    int got = 0;
    iterlock::select(iterlock::on_recv(f.events(), [&](std::optional<change> c) { got = c ? c->key : -1; }),
                     iterlock::on_recv(other, [&](std::optional<int>) { got = -2; }));
    EXPECT_EQ(got, 3);
}

// The seed's remedy: hand a snapshot of the map to another thread over a channel.
TEST(ConcurrentFeed, SnapshotSentOverAChan) {
    vmap m(4, 0);
    for (int i = 0; i < 100; ++i) m.insert_or_assign(i, long{i});
    iterlock::chan<vmap::snapshot_view> ch(1);
    std::size_t seen = 0;
    long sum = 0;
    std::thread reader([&] {
        auto s = ch.recv();
        ASSERT_TRUE(s.has_value());
        for (const auto& [k, vv] : *s) {
            ++seen;
            sum += vv.value;
        }
    });
    ch.send(m.snapshot());
    for (int i = 0; i < 100; ++i) m.insert_or_assign(i, -1L);  // after the snapshot's instant
    reader.join();
    EXPECT_EQ(seen, 100u);
    EXPECT_EQ(sum, 99 * 100 / 2);
}

}  // namespace

namespace {

// snapshot_and_watch needs no history: with none kept and writers running, the listing plus its feed
// equals the map afterwards.
TEST(ConcurrentFeed, V2_SnapshotAndWatchWithoutHistoryUnderWriters) {
    vmap m(8, 0);
    const long per = iterlock::test::scaled(20000, 2000);
    std::latch start(3);
    std::vector<std::thread> ts;
    for (int w = 0; w < 2; ++w)
        ts.emplace_back([&, w] {
            std::mt19937 rng(static_cast<unsigned>(w + 3));
            start.arrive_and_wait();
            for (long i = 0; i < per; ++i) {
                const int k = static_cast<int>(rng() % 32);
                if (rng() % 5 == 0)
                    m.erase(k);
                else
                    m.insert_or_assign(k, i);
            }
        });
    start.arrive_and_wait();
    auto l = m.snapshot_and_watch(static_cast<std::size_t>(2 * per + 1));
    replica r = list(l.snapshot);
    std::map<int, std::uint64_t> last;
    for (auto& t : ts) t.join();
    ASSERT_FALSE(l.feed.ended()) << iterlock::to_string(l.feed.reason());
    drain(l.feed, r, last);
    EXPECT_EQ(r, list(m.snapshot()));
}

}  // namespace

namespace {

// A reader may close the feed's channel: writers neither throw nor wait; the feed ends as cancelled.
TEST(ConcurrentFeed, V3_ReaderClosingTheChannelEndsTheFeedNotTheWriters) {
    vmap m(2, 0);
    auto f = m.watch(std::size_t{16});
    f.events().close();
    for (long i = 0; i < 10; ++i) EXPECT_NO_THROW(m.insert_or_assign(static_cast<int>(i), i));
    EXPECT_EQ(f.reason(), iterlock::feed_end::cancelled);
    EXPECT_EQ(m.size(), 10u);
}

}  // namespace
