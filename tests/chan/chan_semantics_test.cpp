// Go's channel semantics, rule by rule (the C-numbers of include/iterlock/chan.hpp's contract).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "iterlock/chan.hpp"
#include "support/chan_probes.hpp"
#include "support/delivery_check.hpp"
#include "support/polling.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using iterlock::chan_wait;
using access = iterlock::test::chan_access;
using iterlock::chan;
using iterlock::chan_closed;
using iterlock::chan_status;
using iterlock::select;

// Counts live instances so tests can see that the channel destroys what it holds exactly once.
struct counted {
    static inline std::atomic<int> live{0};
    int v = 0;
    explicit counted(int x) : v(x) { ++live; }
    counted(const counted& o) : v(o.v) { ++live; }
    counted(counted&& o) noexcept : v(o.v) { ++live; }
    counted& operator=(const counted&) = default;
    ~counted() { --live; }
};

TEST(ChanBasics, CapacityAndSizeAndHandles) {
    chan<int> u(0);
    chan<int> b(5);
    EXPECT_EQ(u.capacity(), 0u);
    EXPECT_EQ(b.capacity(), 5u);
    EXPECT_EQ(b.size(), 0u);
    b.send(1);
    b.send(2);
    EXPECT_EQ(b.size(), 2u);
    chan<int> const copy = b;  // NOLINT(performance-unnecessary-copy-initialization): the copy is the test
    EXPECT_TRUE(copy == b);
    EXPECT_FALSE(copy == u);
    EXPECT_EQ(copy.recv(), 1);
    EXPECT_EQ(b.size(), 1u);
    EXPECT_TRUE(access::check_invariants(b));
}

TEST(ChanBasics, NilChannelIsLoudOnDirectUse) {
    chan<int> nil;
    EXPECT_FALSE(static_cast<bool>(nil));
    EXPECT_THROW(nil.send(1), std::logic_error);
    EXPECT_THROW((void)nil.recv(), std::logic_error);
    EXPECT_THROW(nil.close(), std::logic_error);
    EXPECT_THROW((void)nil.try_recv(), std::logic_error);
}

// C1: a send on an unbuffered channel completes only when a receiver takes the value.
TEST(ChanC1Unbuffered, TryOpsFailWithoutPartner) {
    chan<int> c(0);
    EXPECT_FALSE(c.try_send(1));
    auto r = c.try_recv();
    EXPECT_EQ(r.status(), chan_status::would_block);
    EXPECT_FALSE(r.has_value());
    EXPECT_EQ(c.size(), 0u);
}

TEST(ChanC1Unbuffered, SendReturnsOnlyAfterReceiverTakesValue) {
    chan<int> c(0);
    std::atomic<bool> sent{false};
    std::thread sender([&] {
        c.send(42);
        sent = true;
    });
    iterlock::test::wait_senders(c, 1);  // the sender is parked with its value
    EXPECT_FALSE(sent.load());
    EXPECT_EQ(c.size(), 0u);
    EXPECT_EQ(c.recv(), 42);
    sender.join();
    EXPECT_TRUE(sent.load());
    EXPECT_TRUE(access::check_invariants(c));
}

TEST(ChanC1Unbuffered, TrySendSucceedsAgainstParkedReceiver) {
    chan<std::string> c(0);
    std::optional<std::string> got;
    std::thread receiver([&] { got = c.recv(); });
    iterlock::test::wait_receivers(c, 1);
    EXPECT_TRUE(c.try_send(std::string("rendezvous")));
    receiver.join();
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, "rendezvous");
}

TEST(ChanC1Unbuffered, TryRecvTakesFromParkedSender) {
    chan<int> c(0);
    std::thread sender([&] { c.send(7); });
    iterlock::test::wait_senders(c, 1);
    auto r = c.try_recv();
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, 7);
    sender.join();
}

// C3 among parked threads: senders parked on an unbuffered channel are served in the order they parked (the
// first one sits in the channel's hand-over slot, the others in the queue), and so are receivers.
TEST(ChanC1Unbuffered, ParkedSendersServedInArrivalOrder) {
    chan<int> c(0);
    std::vector<std::thread> ts;
    ts.reserve(4);
    for (int i = 0; i < 4; ++i) {
        ts.emplace_back([&c, i] { c.send(i); });
        iterlock::test::wait_senders(c, static_cast<std::size_t>(i) + 1);
    }
    for (int i = 0; i < 4; ++i) EXPECT_EQ(c.recv(), i);
    for (auto& t : ts) t.join();
    EXPECT_TRUE(access::check_invariants(c));
}

TEST(ChanC1Unbuffered, ParkedReceiversServedInArrivalOrder) {
    chan<std::unique_ptr<int>> c(0);
    std::vector<int> got(4, -1);
    std::vector<std::thread> ts;
    ts.reserve(4);
    for (int i = 0; i < 4; ++i) {
        ts.emplace_back([&c, &got, i] { got[static_cast<std::size_t>(i)] = **c.recv(); });
        iterlock::test::wait_receivers(c, static_cast<std::size_t>(i) + 1);
    }
    for (int i = 0; i < 4; ++i) c.send(std::make_unique<int>(i));
    for (auto& t : ts) t.join();
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3}));
}

// C4/C5/C7 for a sender parked in the hand-over slot: its value went into the channel and must come back.
TEST(ChanC4ExactlyOnce, ParkedSenderGetsValueBackOnTimeoutAndClose) {
    chan<std::unique_ptr<int>> c(0);
    auto p = std::make_unique<int>(7);
    // NOLINTBEGIN(bugprone-use-after-move): a failed send must leave the argument as it was.
    EXPECT_FALSE(c.send_for(std::move(p), std::chrono::milliseconds(2)));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 7);
    std::atomic<bool> threw{false};
    std::thread s([&] {
        try {
            c.send(std::move(p));
        } catch (const chan_closed&) {
            threw = true;
        }
    });
    iterlock::test::wait_senders(c, 1);
    c.close();
    s.join();
    EXPECT_TRUE(threw.load());
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 7);
    // NOLINTEND(bugprone-use-after-move)
    EXPECT_TRUE(access::check_invariants(c));
}

// C2: a buffered channel holds exactly `capacity` values.
TEST(ChanC2Buffered, FillsToCapacityThenWouldBlock) {
    chan<int> c(3);
    EXPECT_TRUE(c.try_send(1));
    EXPECT_TRUE(c.try_send(2));
    EXPECT_TRUE(c.try_send(3));
    EXPECT_FALSE(c.try_send(4));
    EXPECT_EQ(c.size(), 3u);
    EXPECT_EQ(*c.try_recv(), 1);
    EXPECT_TRUE(c.try_send(4));
    EXPECT_EQ(c.size(), 3u);
    EXPECT_TRUE(access::check_invariants(c));
}

TEST(ChanC2Buffered, BlockedSenderResumesWhenRoomAppears) {
    chan<int> c(1);
    c.send(1);
    std::atomic<bool> sent{false};
    std::thread sender([&] {
        c.send(2);
        sent = true;
    });
    iterlock::test::wait_senders(c, 1);
    EXPECT_FALSE(sent.load());
    EXPECT_EQ(c.recv(), 1);
    sender.join();
    EXPECT_TRUE(sent.load());
    EXPECT_EQ(c.recv(), 2);
}

TEST(ChanC2Buffered, BlockedReceiverResumesWhenValueArrives) {
    chan<int> c(4);
    std::optional<int> got;
    std::thread receiver([&] { got = c.recv(); });
    iterlock::test::wait_receivers(c, 1);
    c.send(9);
    receiver.join();
    EXPECT_EQ(got, 9);
}

// C3: FIFO, across many laps of the ring and for odd capacities.
TEST(ChanC3Fifo, OrderKeptAcrossLaps) {
    for (std::size_t cap : {1u, 2u, 3u, 7u, 64u}) {
        chan<int> c(cap);
        int next_in = 0;
        int next_out = 0;
        for (int round = 0; round < 200; ++round) {
            std::size_t const k = static_cast<std::size_t>(round) * 7 % (cap + 1);
            for (std::size_t i = 0; i < k && c.try_send(int{next_in}); ++i) ++next_in;
            std::size_t const j = static_cast<std::size_t>(round) * 5 % (cap + 1);
            for (std::size_t i = 0; i < j; ++i) {
                auto r = c.try_recv();
                if (!r) break;
                EXPECT_EQ(*r, next_out++);
            }
            ASSERT_EQ(c.size(), static_cast<std::size_t>(next_in - next_out));
            ASSERT_TRUE(access::check_invariants(c));
        }
    }
}

// C4: a failed send leaves its argument untouched; values are moved, not copied.
TEST(ChanC4ExactlyOnce, FailedTrySendLeavesMoveOnlyValue) {
    chan<std::unique_ptr<int>> c(1);
    EXPECT_TRUE(c.try_send(std::make_unique<int>(1)));
    auto p = std::make_unique<int>(2);
    // NOLINTBEGIN(bugprone-use-after-move): the point is that a failed send does not move.
    EXPECT_FALSE(c.try_send(std::move(p)));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 2);
    EXPECT_FALSE(c.send_for(std::move(p), 1ms));
    ASSERT_NE(p, nullptr);
    // NOLINTEND(bugprone-use-after-move)
    auto got = c.recv();
    ASSERT_TRUE(got && *got);
    EXPECT_EQ(**got, 1);
}

// try_send(const T&) on a buffered channel copies the value straight into the buffer when T's copy cannot
// throw (no temporary), and copies first otherwise. Either way: one copy per value sent, the argument
// unchanged, a full channel sends nothing, a closed one throws (C4, C5).
struct copy_counted {
    int v = 0;
    static inline int copies = 0;
    explicit copy_counted(int x) noexcept : v(x) {}
    copy_counted(const copy_counted& o) noexcept : v(o.v) { ++copies; }
    copy_counted(copy_counted&& o) noexcept : v(o.v) {}
    copy_counted& operator=(const copy_counted&) = delete;
    copy_counted& operator=(copy_counted&&) = delete;
    ~copy_counted() = default;
};

TEST(ChanC4ExactlyOnce, TrySendOfAnLvalueCopiesOnceAndLeavesIt) {
    chan<copy_counted> c(2);
    copy_counted const a(1);
    copy_counted const b(2);
    copy_counted::copies = 0;
    EXPECT_TRUE(c.try_send(a));
    EXPECT_TRUE(c.try_send(b));
    EXPECT_EQ(copy_counted::copies, 2) << "one copy per value sent, made in the buffer";
    EXPECT_FALSE(c.try_send(a)) << "full";
    EXPECT_EQ(copy_counted::copies, 2) << "a send into a full buffer copies nothing";
    EXPECT_EQ(a.v, 1);
    EXPECT_EQ(c.recv()->v, 1);
    EXPECT_EQ(c.recv()->v, 2);
    c.close();
    EXPECT_THROW((void)c.try_send(a), chan_closed);

    chan<std::string> s(1);  // a copy that may throw: made before the channel is touched
    std::string const text(100, 'x');
    EXPECT_TRUE(s.try_send(text));
    EXPECT_FALSE(s.try_send(text));
    EXPECT_EQ(text, std::string(100, 'x'));
    EXPECT_EQ(*s.recv(), text);
}

TEST(ChanC4ExactlyOnce, BufferedValuesDestroyedOnceWithLastHandle) {
    ASSERT_EQ(counted::live.load(), 0);
    {
        chan<counted> c(8);
        for (int i = 0; i < 5; ++i) c.send(counted(i));
        EXPECT_EQ(c.recv()->v, 0);
        EXPECT_EQ(counted::live.load(), 4);
        chan<counted> const copy = c;  // NOLINT(performance-unnecessary-copy-initialization): a second handle
        EXPECT_TRUE(copy == c);
    }
    EXPECT_EQ(counted::live.load(), 0);
    {
        // Wrap around the ring before dropping it.
        chan<counted> c(3);
        for (int i = 0; i < 10; ++i) {
            if (c.size() == c.capacity()) (void)c.recv();
            c.send(counted(i));
        }
        EXPECT_EQ(counted::live.load(), static_cast<int>(c.size()));
    }
    EXPECT_EQ(counted::live.load(), 0);
}

// C5: close.
TEST(ChanC5Close, SendOnClosedThrows) {
    for (std::size_t cap : {0u, 3u}) {
        chan<int> c(cap);
        c.close();
        EXPECT_THROW(c.send(1), chan_closed);
        EXPECT_THROW(c.try_send(1), chan_closed);
        EXPECT_THROW(c.send_for(1, 1ms), chan_closed);
    }
}

TEST(ChanC5Close, DoubleCloseThrows) {
    for (std::size_t cap : {0u, 3u}) {
        chan<int> c(cap);
        c.close();
        EXPECT_THROW(c.close(), chan_closed);
        EXPECT_TRUE(access::check_invariants(c));
    }
}

TEST(ChanC5Close, ReceiversDrainThenSeeClosed) {
    chan<int> c(4);
    c.send(1);
    c.send(2);
    c.send(3);
    c.close();
    EXPECT_EQ(c.size(), 3u);
    EXPECT_EQ(c.recv(), 1);
    EXPECT_EQ(*c.try_recv(), 2);
    auto r = c.recv_for(1s);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, 3);
    EXPECT_EQ(c.recv(), std::nullopt);
    EXPECT_EQ(c.recv(), std::nullopt);
    EXPECT_EQ(c.try_recv().status(), chan_status::closed);
    EXPECT_EQ(c.recv_for(1s).status(), chan_status::closed);
    EXPECT_TRUE(access::check_invariants(c));
}

TEST(ChanC5Close, UnbufferedReceiveAfterCloseIsClosed) {
    chan<int> c(0);
    c.close();
    EXPECT_EQ(c.recv(), std::nullopt);
    EXPECT_EQ(c.try_recv().status(), chan_status::closed);
}

TEST(ChanC5Close, CloseWakesEveryBlockedReceiver) {
    for (std::size_t cap : {0u, 4u}) {
        chan<int> c(cap);
        constexpr int k = 6;
        std::atomic<int> saw_closed{0};
        std::vector<std::thread> ts;
        ts.reserve(k);
        for (int i = 0; i < k; ++i) {
            ts.emplace_back([&] {
                if (!c.recv()) ++saw_closed;
            });
        }
        iterlock::test::wait_receivers(c, k);
        c.close();
        for (auto& t : ts) t.join();
        EXPECT_EQ(saw_closed.load(), k) << "capacity " << cap;
        EXPECT_TRUE(access::check_invariants(c));
    }
}

TEST(ChanC5Close, CloseWakesEveryBlockedSenderWithError) {
    for (std::size_t cap : {0u, 2u}) {
        chan<int> c(cap);
        for (std::size_t i = 0; i < cap; ++i) c.send(static_cast<int>(i));
        constexpr int k = 5;
        std::atomic<int> threw{0};
        std::vector<std::thread> ts;
        ts.reserve(k);
        for (int i = 0; i < k; ++i) {
            ts.emplace_back([&, i] {
                try {
                    c.send(100 + i);
                } catch (const chan_closed&) {
                    ++threw;
                }
            });
        }
        iterlock::test::wait_senders(c, k);
        c.close();
        for (auto& t : ts) t.join();
        EXPECT_EQ(threw.load(), k) << "capacity " << cap;
        // What was buffered before close is still delivered.
        for (std::size_t i = 0; i < cap; ++i) EXPECT_EQ(c.recv(), static_cast<int>(i));
        EXPECT_EQ(c.recv(), std::nullopt);
    }
}

TEST(ChanC5Close, CloseWakesTimedWaitersToo) {
    chan<int> c(0);
    std::atomic<int> closed_seen{0};
    std::thread r([&] {
        if (c.recv_for(std::chrono::hours(1)).closed()) ++closed_seen;
    });
    iterlock::test::wait_receivers(c, 1);
    c.close();
    r.join();
    EXPECT_EQ(closed_seen.load(), 1);
}

// C6: a blocked operation polls for a bounded time, then sleeps on a futex, and the operation that completes
// it wakes it. Each blocked receiver must be seen asleep (test access) before any sender arrives; one that
// kept polling never would be, and the watchdog deadline (generous: the polling budget is microseconds)
// fails the test instead of hanging it. Covers the hand-over slot, the unbuffered queue, the buffered
// queue, a select linked on two channels, and a sender parked in the hand-over slot.
TEST(ChanC6Blocking, Item20_BlockedThreadSleepsBeforeItsPartnerArrives) {
    using namespace std::chrono_literals;
    struct shape {
        const char* name;
        std::size_t capacity;
        int receivers;
        bool via_select;
        chan_wait wait = chan_wait::sleep;
    };
    for (shape const sh :
         {shape{"hand-over slot", 0, 1, false}, shape{"slot and unbuffered queue", 0, 2, false},
          shape{"buffered queue", 4, 2, false}, shape{"select on two channels", 0, 1, true},
          shape{"buffered queue, stream mode", 4, 2, false, chan_wait::stream}}) {
        SCOPED_TRACE(sh.name);
        chan<int> c(sh.capacity, sh.wait);
        chan<int> other(1);
        std::atomic<int> sum{0};
        std::vector<std::thread> rs;
        for (int k = 0; k < sh.receivers; ++k) {
            rs.emplace_back([&, h = c, o = other] {
                if (sh.via_select) {
                    select(iterlock::on_recv(h, [&](std::optional<int> v) { sum += v.value_or(-1000); }),
                           iterlock::on_recv(o, [&](std::optional<int> v) { sum += v.value_or(-1000); }));
                } else {
                    sum += h.recv().value_or(-1000);
                }
            });
        }
        auto const n = static_cast<std::size_t>(sh.receivers);
        EXPECT_TRUE(iterlock::test::eventually([&] { return access::asleep(c, false) == n; }, 5s))
            << access::waiting(c, false) << " receiver(s) parked, " << access::asleep(c, false)
            << " asleep after 5 s: C6 says a blocked thread sleeps after a few microseconds of polling";
        for (int k = 0; k < sh.receivers; ++k) c.send(10 + k);  // the partner arrives only now
        for (auto& t : rs) t.join();
        EXPECT_EQ(sum.load(), sh.receivers == 1 ? 10 : 21);
    }
    // The sender side of the hand-over slot.
    chan<int> c(0);
    std::thread s([h = c] { h.send(5); });
    EXPECT_TRUE(iterlock::test::eventually([&] { return access::asleep(c, true) == 1; }, 5s))
        << "a sender parked in the hand-over slot still polls after 5 s (C6)";
    EXPECT_EQ(c.recv(), 5);
    s.join();
}

// C6, stream mode: the polling budget follows the waits a channel's blocked operations saw. A wait within
// the limit sets it to twice that wait unless it is higher (then it decays by a quarter per wait); a longer
// wait halves it, so a channel whose values stop coming goes back to sleeping at once. The budget is
// checked as a rule here; the stream-mode calls themselves run in the C6 test above (they still sleep
// when nothing comes) and in ChanMpmc's stream shapes (C3, C4).
TEST(ChanC6Blocking, StreamBudgetFollowsTheRecentWaits) {
    access::spin_budget b;
    constexpr std::int64_t limit = access::spin_budget::max_ns;
    static_assert(limit >= 4000, "the test below needs a limit of at least 4 us");
    EXPECT_EQ(b.get(), 0) << "a new channel polls nothing beyond the fixed backoff";
    b.observe(1000);
    EXPECT_EQ(b.get(), 2000) << "a 1 us wait: poll for 2 us next time";
    b.observe(100);
    EXPECT_EQ(b.get(), 1500) << "a shorter wait: decay by a quarter, not a drop to 200 ns";
    b.observe(limit / 2);
    EXPECT_EQ(b.get(), limit) << "twice the wait, capped at the limit";
    b.observe(limit + 1);
    EXPECT_EQ(b.get(), limit / 2) << "a wait beyond the limit halves the budget";
    for (int i = 0; i < 40; ++i) b.observe(10 * limit);
    EXPECT_EQ(b.get(), 0) << "rare values: back to sleeping after the fixed backoff";
    b.observe(-5);  // a clock that went backwards (never with steady_clock) counts as a long wait
    EXPECT_EQ(b.get(), 0);
}

// C8: operations on a buffered channel take no lock while nobody waits, counted by the lock's probe. One
// thread fills and drains with blocking, try and timed calls that never have to wait (and try calls that
// find it full or empty); then a producer and a consumer that only try. Then the probe is shown to count: a
// send that must wake a parked receiver takes the lock. (waiting() itself locks; it is called
// outside the counted stretches.)
TEST(ChanC8Progress, Item20_BufferedOpsWithoutWaitersTakeNoLock) {
    using namespace std::chrono_literals;
    chan<int> c(8);
    auto const before = access::lock_acquisitions(c);
    for (int round = 0; round < 1000; ++round) {
        for (int i = 0; i < 8; ++i) {
            if (i % 3 == 0) {
                c.send(i);
            } else if (i % 3 == 1) {
                ASSERT_TRUE(c.try_send(i));
            } else {
                ASSERT_TRUE(c.send_for(i, 1h));
            }
        }
        ASSERT_FALSE(c.try_send(99));
        ASSERT_EQ(c.size(), 8u);
        for (int i = 0; i < 8; ++i) {
            if (i % 3 == 0) {
                ASSERT_EQ(c.recv(), i);
            } else if (i % 3 == 1) {
                ASSERT_EQ(*c.try_recv(), i);
            } else {
                ASSERT_EQ(*c.recv_for(1h), i);
            }
        }
        ASSERT_EQ(c.try_recv().status(), chan_status::would_block);
    }
    EXPECT_EQ(access::lock_acquisitions(c) - before, 0u) << "C8: one thread, nobody waiting";

    int const n = static_cast<int>(iterlock::test::scaled(100000, 12500));
    auto const before_pair = access::lock_acquisitions(c);
    std::latch start(2);
    std::thread producer([&, h = c] {
        start.arrive_and_wait();
        for (int i = 0; i < n; ++i) {
            while (!h.try_send(i)) std::this_thread::yield();
        }
    });
    std::thread consumer([&, h = c] {
        start.arrive_and_wait();
        for (int i = 0; i < n;) {
            if (auto r = h.try_recv()) {
                ASSERT_EQ(*r, i);
                ++i;
            } else {
                std::this_thread::yield();
            }
        }
    });
    producer.join();
    consumer.join();
    EXPECT_EQ(access::lock_acquisitions(c) - before_pair, 0u)
        << "C8: a producer and a consumer, nobody waiting";

    std::thread r([h = c] { EXPECT_EQ(h.recv(), 7); });
    iterlock::test::wait_receivers(c, 1);
    auto const parked = access::lock_acquisitions(c);
    c.send(7);
    r.join();
    EXPECT_GT(access::lock_acquisitions(c) - parked, 0u)
        << "the probe must see the lock taken to wake a waiter";
}

// C7: timeouts report "timeout" and change nothing.
TEST(ChanC7Timeouts, RecvForOnEmptyTimesOut) {
    for (std::size_t cap : {0u, 2u}) {
        chan<int> c(cap);
        auto r = c.recv_for(2ms);
        EXPECT_TRUE(r.timed_out());
        EXPECT_FALSE(r.has_value());
        auto r0 = c.recv_for(0ms);
        EXPECT_TRUE(r0.timed_out());
        auto r1 = c.recv_until(std::chrono::system_clock::now() + 1ms);
        EXPECT_TRUE(r1.timed_out());
        EXPECT_TRUE(access::check_invariants(c));
    }
}

TEST(ChanC7Timeouts, SendForOnFullOrPartnerlessTimesOut) {
    chan<int> u(0);
    EXPECT_FALSE(u.send_for(1, 2ms));
    chan<int> b(1);
    EXPECT_TRUE(b.send_for(1, 2ms));
    EXPECT_FALSE(b.send_for(2, 2ms));
    EXPECT_FALSE(b.send_until(3, std::chrono::system_clock::now()));
    EXPECT_EQ(b.size(), 1u);
    EXPECT_TRUE(access::check_invariants(u));
    EXPECT_TRUE(access::check_invariants(b));
}

TEST(ChanC7Timeouts, TimedOperationsCompleteAgainstPartner) {
    chan<int> c(0);
    std::thread s([&] { c.send(5); });
    auto r = c.recv_for(std::chrono::hours(1));
    s.join();
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, 5);
    std::optional<int> got;
    std::thread rcv([&] { got = c.recv(); });
    EXPECT_TRUE(c.send_for(6, std::chrono::hours(1)));
    rcv.join();
    EXPECT_EQ(got, 6);
}

// Range-style consumption.
TEST(ChanRange, ForLoopReceivesUntilClosed) {
    for (std::size_t cap : {0u, 1u, 16u}) {
        chan<int> c(cap);
        std::thread p([&] {
            for (int i = 1; i <= 100; ++i) c.send(i);
            c.close();
        });
        int sum = 0;
        int expect = 1;
        for (int& v : c) {
            EXPECT_EQ(v, expect++);
            sum += v;
        }
        p.join();
        EXPECT_EQ(sum, 5050);
    }
}

TEST(ChanRange, EmptyClosedChannelYieldsNothing) {
    chan<int> c(2);
    c.close();
    int n = 0;
    for ([[maybe_unused]] int v : c) ++n;
    EXPECT_EQ(n, 0);
}

// C4 + C7 where they meet, the claim/abandon race: a parked timed operation whose deadline passes just as a
// partner claims it must take the partner's outcome (the value moved), not report a timeout. Timed senders
// and receivers meet on an unbuffered channel; a sender whose send_for fails retries the same value (C4: it
// still owns it). Every value is recorded, so a lost value and a duplicated one cannot cancel out, and the
// run goes on until the race was reached `target` times (the abandon_lost probe), within a generous cap.
TEST(ChanC7Timeouts, Item17_TimeoutRacesDeliverEachValueExactlyOnce) {
    constexpr int producers = 3;
    constexpr int consumers = 3;
    std::uint64_t const target = std::max<std::uint64_t>(25, iterlock::test::scaled(200, 25));
    std::size_t const cap_per_producer = iterlock::test::scaled(4000000, 500000);
    iterlock::test::watchdog const dog(std::chrono::seconds(60),
                                       "Item17: the timeout race test ran for 60 s");
    chan<std::uint64_t> c(0);
    access::widen_claim_window const widen;
    std::uint64_t const races_before = access::abandon_lost();
    std::uint64_t const slot_races_before = access::slot_deadline_lost();
    std::atomic<bool> stop{false};
    std::atomic<bool> closing{false};
    std::atomic<int> closed_while_open{0};
    std::atomic<int> producers_done{0};
    std::vector<std::vector<std::uint64_t>> sent(producers);
    std::vector<std::vector<std::uint64_t>> got(consumers);
    std::latch start(producers + consumers);
    std::vector<std::thread> ts;
    for (int id = 0; id < producers; ++id) {
        ts.emplace_back([&, id] {
            start.arrive_and_wait();
            std::uint32_t seq = 0;
            for (std::size_t attempt = 0; attempt < cap_per_producer && !stop.load(std::memory_order_relaxed);
                 ++attempt) {
                std::uint64_t v = iterlock::test::encode(static_cast<std::uint32_t>(id), seq);
                try {
                    if (c.send_for(std::move(v), std::chrono::microseconds(attempt % 7 * 5))) {
                        sent[id].push_back(iterlock::test::encode(static_cast<std::uint32_t>(id), seq));
                        ++seq;
                    }
                } catch (const chan_closed&) {
                    ++closed_while_open;  // the channel closes only after every producer stopped
                }
            }
            ++producers_done;
        });
    }
    for (int k = 0; k < consumers; ++k) {
        ts.emplace_back([&, k] {
            start.arrive_and_wait();
            for (std::size_t i = 0;; ++i) {
                auto v = c.recv_for(std::chrono::microseconds(i % 3 * 3));
                if (v.closed()) {
                    if (closing.load()) break;
                    ++closed_while_open;
                }
                if (v) got[k].push_back(*v);
            }
        });
    }
    while (access::abandon_lost() - races_before < target && producers_done.load() < producers)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stop = true;
    for (int id = 0; id < producers; ++id) ts[id].join();
    closing = true;
    c.close();
    for (std::size_t i = producers; i < ts.size(); ++i) ts[i].join();

    std::uint64_t const races = access::abandon_lost() - races_before;
    std::size_t const values = iterlock::test::concat(sent).size();
    ::testing::Test::RecordProperty("abandon_lost", std::to_string(races));
    ::testing::Test::RecordProperty("slot_deadline_lost",
                                    std::to_string(access::slot_deadline_lost() - slot_races_before));
    EXPECT_GE(races, target) << "the claim/abandon race was reached only " << races << " times in " << values
                             << " values; the test did not exercise what it checks";
    EXPECT_TRUE(
        iterlock::test::each_received_once(iterlock::test::concat(sent), iterlock::test::concat(got)));
    EXPECT_EQ(closed_while_open.load(), 0) << "operations reported 'closed' on a channel that was open";
    EXPECT_TRUE(access::check_invariants(c));
}

}  // namespace
