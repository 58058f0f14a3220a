// Rules V2, V3 and V5 of iterlock::versioned_map (versioned_map.hpp) for feeds made with
// feed_delivery::pull (feed.hpp): the receivers copy events out of the shards' histories themselves. Exactly
// once from a snapshot under concurrent writers and receivers, per-key and per-batch order, no lost wake-up
// for a parked receiver or a select, the history as the lagging bound, resuming from a cursor, and a channel
// handle that outlives its feed and its map.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/chan.hpp"
#include "iterlock/detail/util/line_array.hpp"
#include "iterlock/select.hpp"
#include "iterlock/versioned_map.hpp"
#include "support/feed_replica.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using vmap = iterlock::versioned_map<int, long>;
using change = iterlock::change<int, long>;
using replica = iterlock::test::feed_replica<long>;
constexpr auto pull = iterlock::feed_delivery::pull;

class ConcurrentFeedPull : public iterlock::test::watched {};

replica list(const vmap::snapshot_view& s) {
    return iterlock::test::list_snapshot(s);
}
bool apply(replica& r, const change& c, std::map<int, std::uint64_t>& last_rev) {
    return iterlock::test::apply_change(r, c, last_rev);
}

TEST_F(ConcurrentFeedPull, V2_SnapshotPlusFeedEqualsMapAfterwards) {
    vmap m(4, 64);
    for (int i = 0; i < 20; ++i) m.insert_or_assign(i, long{i});
    auto s = m.snapshot();
    replica r = list(s);
    auto f = m.watch(s, 16, pull);
    m.insert_or_assign(1, 100L);
    m.erase(2);
    m.insert_or_assign(50, 5L);
    m.compare_and_set(3, m.find_versioned(3)->revision, 33L);
    EXPECT_EQ(f.backlog(), 4u);  // held by the shards, not yet in the channel
    std::map<int, std::uint64_t> last;
    for (int i = 0; i < 4; ++i) {
        auto c = f.events().try_recv();
        ASSERT_TRUE(c) << "event " << i;
        ASSERT_TRUE(apply(r, *c, last));
    }
    EXPECT_FALSE(f.events().try_recv());
    EXPECT_EQ(r, list(m.snapshot()));
    EXPECT_FALSE(f.ended());
}

// Writers, watchers that start at random snapshots, and two receiving threads per watcher sharing its
// channel: every watcher's replica equals the final map, no event twice, per-key order (V2).
TEST_F(ConcurrentFeedPull, V2_RandomWritersWatchersAndReceivers) {
    const int writers = 3, watchers = 3, keys = 64;
    const long per = iterlock::test::scaled(20000, 2000);
    vmap m(8, 1 << 15);  // the history holds every write: no watcher is cut off
    std::vector<replica> replicas(watchers);
    std::vector<bool> ok(watchers, true);
    iterlock::test::writers_and_watchers(m, writers, watchers, per, keys, [&](int w, auto writing) {
        auto s = m.snapshot();
        replica r = list(s);
        auto f = m.watch(s, 256, pull);
        // Two receivers on one channel: each event reaches exactly one of them. They record events in
        // the order they took them; per shard the puller moves events in order, but two receivers can
        // take two of one key's events in either order, so the replica is rebuilt by revision.
        std::vector<change> got[2];
        std::atomic<bool> done{false};
        auto receive = [&](int i) {
            auto ch = f.events();
            for (;;) {
                if (auto c = ch.recv_for(std::chrono::milliseconds(1))) {
                    got[i].push_back(*c);
                } else if (done.load()) {
                    while (auto more = ch.try_recv()) got[i].push_back(*more);
                    return;
                }
            }
        };
        std::thread second(receive, 1);
        std::thread first(receive, 0);
        while (writing()) std::this_thread::yield();
        done.store(true);
        first.join();
        second.join();
        if (f.ended()) {
            ok[w] = false;
            return;
        }
        std::vector<change> all = got[0];
        all.insert(all.end(), got[1].begin(), got[1].end());
        std::sort(all.begin(), all.end(),
                  [](const change& a, const change& b) { return a.revision < b.revision; });
        // Revisions of different shards do not order writes, but one key's do, and each key lives in
        // one shard: applying in revision order applies each key's events in its order.
        std::map<int, std::uint64_t> last;
        for (const change& c : all)
            if (!apply(r, c, last)) ok[w] = false;
        replicas[w] = std::move(r);
    });
    const replica final_map = list(m.snapshot());
    for (int w = 0; w < watchers; ++w) {
        EXPECT_TRUE(ok[w]) << "watcher " << w << ": an event repeated, out of order, or the feed ended";
        EXPECT_EQ(replicas[w], final_map) << "watcher " << w;
    }
    EXPECT_EQ(m.feeds_alive(), 0u);
}

TEST_F(ConcurrentFeedPull, V2_WritesToOneKeyArriveInOrder) {
    vmap m(4, 1 << 14);
    auto f = m.watch(std::size_t{64}, pull);
    const long n = iterlock::test::scaled(10000, 1000);
    std::thread writer([&] {
        for (long i = 1; i <= n; ++i) m.insert_or_assign(1, i);
    });
    long expect = 1;
    while (expect <= n) {
        auto c = f.events().recv();
        ASSERT_TRUE(c.has_value()) << iterlock::to_string(f.reason());
        ASSERT_EQ(*c->value, expect);
        ++expect;
    }
    writer.join();
}

// A receiver parked on an empty feed is woken by the next write (no lost wake-up), many times over.
TEST_F(ConcurrentFeedPull, V2_ParkedReceiverIsWokenByAWrite) {
    vmap m(8, 256);
    auto f = m.watch(std::size_t{4}, pull);
    const int rounds = static_cast<int>(iterlock::test::scaled(2000, 200));
    std::atomic<int> received{0};
    std::thread reader([&] {
        auto ch = f.events();
        for (int i = 0; i < rounds; ++i) {
            auto c = ch.recv();  // blocks: the writer waits for it below
            ASSERT_TRUE(c.has_value());
            ASSERT_EQ(*c->value, i);
            received.store(i + 1);
        }
    });
    for (int i = 0; i < rounds; ++i) {
        // Vary whether the reader is still polling, about to park, or asleep when the write comes.
        if (i % 3 == 1) std::this_thread::sleep_for(std::chrono::microseconds(100 * (i % 7)));
        m.insert_or_assign(i % 40, long{i});
        while (received.load() != i + 1) std::this_thread::yield();
    }
    reader.join();
}

TEST_F(ConcurrentFeedPull, V2_SelectWakesForAPullFeed) {
    vmap m(4, 64);
    auto f = m.watch(std::size_t{8}, pull);
    iterlock::chan<int> other(1);
    const int rounds = static_cast<int>(iterlock::test::scaled(500, 50));
    std::thread writer([&] {
        for (int i = 0; i < rounds; ++i) {
            if (i % 2 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
            m.insert_or_assign(7, long{i});  // one key: its events arrive in order (V2)
        }
    });
    int got = 0;
    while (got < rounds) {
        iterlock::select(iterlock::on_recv(f.events(),
                                           [&](std::optional<change> c) {
                                               ASSERT_TRUE(c.has_value());
                                               ASSERT_EQ(*c->value, got);
                                               ++got;
                                           }),
                         iterlock::on_recv(other, [&](std::optional<int>) { FAIL(); }));
    }
    writer.join();
}

// V3: a watcher that stops reading is cut off once the shards' histories overwrite what it has not taken;
// writers never wait.
TEST_F(ConcurrentFeedPull, V3_HistoryIsTheBoundWritersDoNotWait) {
    vmap m(2, 16);
    auto f = m.watch(std::size_t{8}, pull);
    for (long i = 0; i < 10; ++i) m.insert_or_assign(static_cast<int>(i), i);
    EXPECT_FALSE(f.ended());  // 10 events wait in histories of 2 x 16: more than the channel holds
    EXPECT_EQ(f.backlog(), 10u);
    for (long i = 10; i < 1000; ++i) m.insert_or_assign(static_cast<int>(i), i);  // never blocks
    EXPECT_EQ(m.size(), 1000u);
    EXPECT_EQ(f.reason(), iterlock::feed_end::lagging);
    EXPECT_FALSE(f.events().recv().has_value());  // nothing was taken before the cut: closed
    EXPECT_EQ(std::string(iterlock::to_string(f.reason())).rfind("lagging", 0), 0u);
}

// Histories of any size, powers of two or not (the ring places consecutive events two slots apart): a
// watcher receives exactly the events the history still holds, in order, over several laps of the ring,
// and one more unread lap ends it (lagging).
TEST_F(ConcurrentFeedPull, V3_HistoriesOfAnySizeDeliverInOrderAndBoundTheLag) {
    for (std::size_t cap :
         {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{5}, std::size_t{8}, std::size_t{13}}) {
        vmap m(1, cap);
        auto f = m.watch(cap, pull);
        long next = 0;
        for (int lap = 0; lap < 4; ++lap) {
            for (std::size_t i = 0; i < cap; ++i, ++next) m.insert_or_assign(7, next);
            for (long want = next - static_cast<long>(cap); want < next; ++want) {
                auto c = f.events().try_recv();
                ASSERT_TRUE(c) << "cap " << cap << " value " << want;
                EXPECT_EQ(*c->value, want) << "cap " << cap;
            }
            EXPECT_FALSE(f.events().try_recv()) << "cap " << cap;
        }
        for (std::size_t i = 0; i <= cap; ++i, ++next) m.insert_or_assign(7, next);
        EXPECT_FALSE(f.events().try_recv()) << "cap " << cap;
        EXPECT_EQ(f.reason(), iterlock::feed_end::lagging) << "cap " << cap;
    }
}

// A receiver that finds its next event overwritten ends the feed itself (lagging) after the events it
// took before; resuming from its cursor works while the history still holds the rest.
TEST_F(ConcurrentFeedPull, V3_ReceiverFindsItsEventGoneThenResumesFromCursor) {
    vmap m(1, 8);
    auto s = m.snapshot();
    replica r = list(s);
    iterlock::watch_cursor at = s.cursor();
    auto f = m.watch(s, 4, pull);
    std::map<int, std::uint64_t> last;
    for (long i = 0; i < 3; ++i) m.insert_or_assign(static_cast<int>(i), i);
    for (int i = 0; i < 3; ++i) {
        auto c = f.events().try_recv();
        ASSERT_TRUE(c);
        ASSERT_TRUE(apply(r, *c, last));
        at.advance(*c);
    }
    // 12 more writes: the oldest 4 of them are overwritten in the history of 8. The writer's own check
    // runs every 64 events, so here the receiver is the one that finds out.
    for (long i = 3; i < 15; ++i) m.insert_or_assign(static_cast<int>(i), i);
    EXPECT_FALSE(f.ended());
    EXPECT_FALSE(f.events().recv().has_value());
    EXPECT_EQ(f.reason(), iterlock::feed_end::lagging);
    auto g = m.watch(at, 4, pull);  // compacted: the history lost events after the cursor
    EXPECT_EQ(g.reason(), iterlock::feed_end::compacted);
    // Listing again always works.
    auto h = m.snapshot_and_watch(4, pull);
    replica r2 = list(h.snapshot);
    m.insert_or_assign(99, 99L);
    auto c = h.feed.events().recv();
    ASSERT_TRUE(c);
    ASSERT_TRUE(apply(r2, *c, last));
    EXPECT_EQ(r2, list(m.snapshot()));
}

TEST_F(ConcurrentFeedPull, V3_ResumeFromCursorWhileTheHistoryHoldsTheRest) {
    vmap m(4, 1024);
    auto s = m.snapshot();
    replica r = list(s);
    iterlock::watch_cursor at = s.cursor();
    std::map<int, std::uint64_t> last;
    {
        auto f = m.watch(s, 4, pull);
        for (long i = 0; i < 50; ++i) m.insert_or_assign(static_cast<int>(i % 7), i);
        for (int i = 0; i < 10; ++i) {  // take some, then drop the feed
            auto c = f.events().try_recv();
            ASSERT_TRUE(c);
            ASSERT_TRUE(apply(r, *c, last));
            at.advance(*c);
        }
    }
    auto g = m.watch(at, 64, pull);
    ASSERT_FALSE(g.ended()) << iterlock::to_string(g.reason());
    while (auto c = g.events().try_recv()) ASSERT_TRUE(apply(r, *c, last));
    EXPECT_EQ(r, list(m.snapshot()));
}

// V5: a pull feed receives each batch's events in the batch's order, though the batch spans shards that
// the puller scans in another order, while batches and single writes run on other threads.
TEST_F(ConcurrentFeedPull, V5_BatchEventsArriveInBatchOrder) {
    vmap m(16, 1 << 12);
    auto f = m.watch(std::size_t{32}, pull);
    const long batches = iterlock::test::scaled(2000, 200);
    std::atomic<bool> stop{false};
    // The writers stay at most `ahead` events ahead of the reader, so no shard's history (4096) can be
    // overrun whatever the scheduler does to the reader: this test is about order, not about V3's cut-off.
    constexpr long ahead = 1000;
    std::atomic<long> written{0}, received{0};
    auto wait_for_reader = [&] {
        while (written.load() - received.load() > ahead && !stop.load()) std::this_thread::yield();
    };
    std::thread single([&] {
        for (long i = 0; !stop.load(); ++i) {
            wait_for_reader();
            m.insert_or_assign(static_cast<int>(1000 + i % 50), -1L);
            written.fetch_add(1);
            std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
    });
    std::thread batcher([&] {
        for (long b = 0; b < batches; ++b) {
            wait_for_reader();
            // Keys listed from high to low: the batch's order is not the shards' order.
            std::vector<int> keys;
            for (int k = 20; k > 0; --k) keys.push_back(k * 7 + static_cast<int>(b % 3));
            m.write_batch(keys, [&](vmap::batch_writer& w) {
                for (int k : keys) w.put(k, b);
            });
            written.fetch_add(static_cast<long>(keys.size()));
        }
    });
    struct stop_and_join {  // also when an assertion below returns early
        std::atomic<bool>& stop;
        std::thread &a, &b;
        ~stop_and_join() {
            stop.store(true);
            a.join();
            b.join();
        }
    } joiner{stop, batcher, single};
    // Per batch (value b), more_in_batch must count down 19, 18, ..., 0 with nothing of that batch between.
    std::map<long, std::uint32_t> next_more;
    long done = 0;
    auto ch = f.events();
    while (done < batches) {
        auto c = ch.recv();
        ASSERT_TRUE(c.has_value()) << iterlock::to_string(f.reason());
        received.fetch_add(1);
        if (*c->value < 0) continue;  // a single write
        auto [it, fresh] = next_more.try_emplace(*c->value, 19u);
        ASSERT_EQ(c->more_in_batch, it->second) << "batch " << *c->value;
        if (c->more_in_batch == 0) {
            next_more.erase(it);
            ++done;
        } else {
            --it->second;
        }
    }
    EXPECT_TRUE(next_more.empty());
}

TEST_F(ConcurrentFeedPull, V5_ClearArrivesAsOneOrderedBatch) {
    vmap m(8, 256);
    for (int i = 0; i < 100; ++i) m.insert_or_assign(i, long{i});
    auto f = m.watch(std::size_t{16}, pull);
    std::thread clearer([&] { m.clear(); });
    std::set<int> erased;
    for (std::uint32_t expect = 99;; --expect) {
        auto c = f.events().recv();
        ASSERT_TRUE(c.has_value());
        ASSERT_EQ(c->kind, iterlock::change_kind::erase);
        ASSERT_EQ(c->more_in_batch, expect);
        erased.insert(c->key);
        if (expect == 0) break;
    }
    clearer.join();
    EXPECT_EQ(erased.size(), 100u);
}

// The channel handle may outlive the feed and the map: a receive then sees it closed and touches nothing
// of the map (ASan checks that).
// The shards' publication marks are kept only while a pull feed is registered: a pull feed that starts
// after every earlier one ended, with writes in between, still receives exactly the writes after its
// snapshot (none of the in-between ones, none missing), and so does one that starts beside a live one.
TEST_F(ConcurrentFeedPull, V2_FeedStartedAfterEarlierOnesEndedSeesExactlyItsWrites) {
    vmap m(4, 256);
    for (int i = 0; i < 40; ++i) m.insert_or_assign(i, long{i});
    {
        auto first = m.watch(std::size_t{64}, pull);
        for (int i = 0; i < 10; ++i) m.insert_or_assign(i, 100L + i);
        int got = 0;
        while (first.events().try_recv()) ++got;
        EXPECT_EQ(got, 10);
    }  // no pull feed: the marks stop following the writes
    for (int i = 0; i < 40; ++i) m.insert_or_assign(i, 200L + i);
    auto s = m.snapshot();
    replica r = list(s);
    auto second = m.watch(s, 64, pull);
    auto third = m.watch(std::size_t{64}, pull);  // beside a live pull feed
    for (int i = 0; i < 40; i += 3) m.insert_or_assign(i, 300L + i);
    m.erase(7);
    std::map<int, std::uint64_t> last;
    int events = 0;
    while (auto c = second.events().try_recv()) {
        ASSERT_TRUE(apply(r, *c, last));
        ++events;
    }
    EXPECT_EQ(events, 15);
    EXPECT_EQ(r, list(m.snapshot()));
    int third_events = 0;
    while (third.events().try_recv()) ++third_events;
    EXPECT_EQ(third_events, 15);
    EXPECT_FALSE(second.ended());
    EXPECT_FALSE(third.ended());
}

TEST_F(ConcurrentFeedPull, V3_ChannelOutlivesItsFeedAndMap) {
    iterlock::chan<change> ch;
    {
        vmap m(4, 64);
        auto f = m.watch(std::size_t{8}, pull);
        ch = f.events();
        m.insert_or_assign(1, 1L);
        // f ends, then m
    }
    while (ch.try_recv()) {
    }
    EXPECT_FALSE(ch.recv().has_value());
}

TEST_F(ConcurrentFeedPull, V3_FeedsDestroyedMidStreamUnderWriters) {
    vmap m(8, 256);
    iterlock::test::rounds_under_writers(m, iterlock::test::scaled(300, 30), [&] {
        auto f = m.watch(std::size_t{64}, pull);
        auto ch = f.events();
        std::thread other([ch]() mutable {  // a receiver on another thread, ended under it
            while (ch.recv_for(std::chrono::milliseconds(1)).has_value()) {
            }
        });
        for (int j = 0; j < 10; ++j)
            if (!f.events().try_recv()) break;
        f = {};  // ends mid-feed while writers publish and `other` receives
        other.join();
    });
    EXPECT_EQ(m.feeds_alive(), 0u);
}

// The marks and the cursors live in line_arrays (detail/util/line_array.hpp): whole lines of their own,
// zeroed, so that what pullers write shares no line with what writers read.
TEST(LineArray, ElementsStartALineAndFillWholeLines) {
    using marks = iterlock::detail::line_array<std::atomic<std::uint32_t>>;
    static_assert(marks::per_line == 16);
    for (std::size_t n : {1u, 15u, 16u, 17u, 64u}) {
        marks a(n);
        const auto at = [&](std::size_t i) { return reinterpret_cast<std::uintptr_t>(&a[i]); };
        EXPECT_EQ(at(0) % 64, 0u) << n;
        for (std::size_t i = 0; i < n; ++i) {
            EXPECT_EQ(a[i].load(), 0u) << n << " " << i;
            EXPECT_EQ(at(i) / 64 - at(0) / 64, i / marks::per_line) << n << " " << i;
        }
    }
}

TEST_F(ConcurrentFeedPull, PullNeedsATriviallyCopyableChangeAndAHistory) {
    iterlock::versioned_map<int, std::string> strings(4, 64);
    EXPECT_THROW(strings.watch(std::size_t{8}, pull), std::invalid_argument);
    vmap no_history(4, 0);
    EXPECT_THROW(no_history.watch(std::size_t{8}, pull), std::invalid_argument);
    EXPECT_EQ(no_history.feeds_alive(), 0u);
    EXPECT_NO_THROW(no_history.watch(std::size_t{8}));  // push needs neither
}

}  // namespace
