// iterlock::select against its contract (the SEL-numbers of include/iterlock/select.hpp): fairness without
// timing, default never blocks, exactly one case commits under contention, timeouts, nil and closed
// channels, and select-to-select rendezvous.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <latch>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "iterlock/chan.hpp"
#include "iterlock/select.hpp"
#include "support/chan_probes.hpp"
#include "support/counting_new.hpp"
#include "support/delivery_check.hpp"
#include "support/scale.hpp"

namespace {

using namespace std::chrono_literals;
using access = iterlock::test::chan_access;
using iterlock::chan;
using iterlock::chan_closed;
using iterlock::on_deadline;
using iterlock::on_default;
using iterlock::on_recv;
using iterlock::on_send;
using iterlock::on_timeout;
using iterlock::select;

// Pearson's statistic for `counts` against a uniform expectation.
double chi_square(const std::vector<long>& counts) {
    long total = 0;
    for (long c : counts) total += c;
    double const expected = static_cast<double>(total) / static_cast<double>(counts.size());
    double x2 = 0;
    for (long c : counts) {
        double const d = static_cast<double>(c) - expected;
        x2 += d * d / expected;
    }
    return x2;
}
// Critical value for 3 degrees of freedom at p = 1e-6 is about 30.7; a fair select fails this bound about
// once in a million runs, a select biased by even 3% towards one case over 40000 rounds fails it always.
constexpr double chi2_bound_df3 = 30.7;

// SEL2: all four receive cases always ready; each must win about a quarter of the rounds.
TEST(SelectSEL2Fairness, ReadyReceiveCasesChosenUniformly) {
    std::array<chan<int>, 4> cs{chan<int>(1), chan<int>(1), chan<int>(0 + 2), chan<int>(3)};
    for (auto& c : cs) c.send(0);
    std::vector<long> counts(4, 0);
    long const rounds = static_cast<long>(iterlock::test::scaled(40000, 5000));
    for (long r = 0; r < rounds; ++r) {
        std::size_t const i = select(on_recv(cs[0]), on_recv(cs[1]), on_recv(cs[2]), on_recv(cs[3]));
        ASSERT_LT(i, 4u);
        ++counts[i];
        cs[i].send(0);  // keep every case ready
    }
    EXPECT_LT(chi_square(counts), chi2_bound_df3)
        << counts[0] << " " << counts[1] << " " << counts[2] << " " << counts[3];
}

// SEL2 with mixed directions: two ready receives and two ready sends.
TEST(SelectSEL2Fairness, MixedReadyCasesChosenUniformly) {
    chan<int> r0(1);
    chan<std::string> r1(1);
    chan<long> s0(1);
    chan<double> s1(1);
    r0.send(1);
    r1.send("x");
    std::vector<long> counts(4, 0);
    long const rounds = static_cast<long>(iterlock::test::scaled(40000, 5000));
    for (long r = 0; r < rounds; ++r) {
        std::size_t const i = select(on_recv(r0), on_send(s0, 5L), on_recv(r1), on_send(s1, 2.5));
        ++counts[i];
        switch (i) {
            case 0:
                r0.send(1);
                break;
            case 1:
                (void)s0.recv();
                break;
            case 2:
                r1.send("x");
                break;
            case 3:
                (void)s1.recv();
                break;
        }
    }
    EXPECT_LT(chi_square(counts), chi2_bound_df3);
}

// SEL3: with nothing ready the default runs, every time, without blocking.
TEST(SelectSEL3Default, NeverBlocks) {
    chan<int> empty_buffered(4);
    chan<int> no_partner(0);
    chan<int> full(1);
    full.send(1);
    for (int i = 0; i < 1000; ++i) {
        bool ran_default = false;
        std::size_t const k = select(on_recv(empty_buffered), on_recv(no_partner), on_send(full, 2),
                                     on_send(no_partner, 3), on_default([&] { ran_default = true; }));
        ASSERT_EQ(k, 4u);
        ASSERT_TRUE(ran_default);
    }
    EXPECT_EQ(full.size(), 1u);
    EXPECT_TRUE(access::check_invariants(empty_buffered));
    EXPECT_TRUE(access::check_invariants(no_partner));
}

TEST(SelectSEL3Default, ReadyCaseBeatsDefault) {
    chan<int> c(1);
    c.send(11);
    int got = 0;
    std::size_t const k = select(on_default([] {}), on_recv(c, [&](std::optional<int> v) { got = *v; }));
    EXPECT_EQ(k, 1u);
    EXPECT_EQ(got, 11);
}

TEST(SelectSEL3Default, UnbufferedPartnerParkedIsReady) {
    chan<int> c(0);
    std::thread s([&] { c.send(3); });
    iterlock::test::wait_senders(c, 1);
    int got = 0;
    std::size_t const k =
        select(on_recv(c, [&](std::optional<int> v) { got = v.value_or(-1); }), on_default());
    s.join();
    EXPECT_EQ(k, 0u);
    EXPECT_EQ(got, 3);
}

// SEL4: timeouts.
TEST(SelectSEL4Timeout, TimeoutRunsWhenNothingReady) {
    chan<int> a(0);
    chan<int> b(2);
    bool timed_out = false;
    std::size_t const k = select(on_recv(a), on_recv(b), on_timeout(2ms, [&] { timed_out = true; }));
    EXPECT_EQ(k, 2u);
    EXPECT_TRUE(timed_out);
    std::size_t const k2 = select(on_deadline(std::chrono::system_clock::now() + 1ms), on_send(a, 1));
    EXPECT_EQ(k2, 0u);
    EXPECT_EQ(access::waiting(a, false), 0u);
    EXPECT_EQ(access::waiting(a, true), 0u);
    EXPECT_EQ(access::waiting(b, false), 0u);
    EXPECT_TRUE(access::check_invariants(a));
    EXPECT_TRUE(access::check_invariants(b));
}

TEST(SelectSEL4Timeout, ValueArrivingBeforeDeadlineWins) {
    chan<int> c(0);
    std::thread s([&] {
        iterlock::test::wait_receivers(c, 1);
        c.send(8);
    });
    int got = 0;
    std::size_t const k =
        select(on_recv(c, [&](std::optional<int> v) { got = *v; }), on_timeout(std::chrono::hours(1)));
    s.join();
    EXPECT_EQ(k, 0u);
    EXPECT_EQ(got, 8);
}

// SEL5/SEL6: closed channels.
TEST(SelectSEL5Closed, ClosedReceiveCaseIsReadyWithNullopt) {
    chan<int> open(1);
    chan<int> closed(0);
    closed.close();
    bool saw_nullopt = false;
    std::size_t const k =
        select(on_recv(open), on_recv(closed, [&](std::optional<int> v) { saw_nullopt = !v; }));
    EXPECT_EQ(k, 1u);
    EXPECT_TRUE(saw_nullopt);
}

TEST(SelectSEL5Closed, CloseWakesParkedSelect) {
    chan<int> a(0);
    chan<int> b(3);
    std::size_t k = 99;
    bool saw_nullopt = false;
    std::thread t(
        [&] { k = select(on_recv(a), on_recv(b, [&](std::optional<int> v) { saw_nullopt = !v; })); });
    iterlock::test::wait_receivers(b, 1);
    iterlock::test::wait_receivers(a, 1);
    b.close();
    t.join();
    EXPECT_EQ(k, 1u);
    EXPECT_TRUE(saw_nullopt);
    EXPECT_EQ(access::waiting(a, false), 0u);
    EXPECT_TRUE(access::check_invariants(a));
}

TEST(SelectSEL6Send, SendCaseOnClosedChannelThrows) {
    chan<int> c(2);
    c.close();
    bool handler_ran = false;
    EXPECT_THROW(select(on_send(c, 1, [&] { handler_ran = true; })), chan_closed);
    EXPECT_FALSE(handler_ran);
}

TEST(SelectSEL6Send, RvalueMovedOnlyWhenChosen) {
    chan<std::unique_ptr<int>> full(1);
    full.send(std::make_unique<int>(0));
    auto p = std::make_unique<int>(42);
    std::size_t const k = select(on_send(full, std::move(p)), on_default());
    EXPECT_EQ(k, 1u);
    ASSERT_NE(p, nullptr);
    (void)full.recv();
    std::size_t const k2 = select(on_send(full, std::move(p)), on_default());
    EXPECT_EQ(k2, 0u);
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(**full.recv(), 42);
}

// SEL7: nil channels are never ready.
TEST(SelectSEL7Nil, NilCasesNeverChosen) {
    chan<int> nil;
    chan<int> ready(1);
    ready.send(1);
    for (int i = 0; i < 100; ++i) {
        std::size_t const k = select(on_recv(nil), on_send(nil, 1), on_recv(ready));
        ASSERT_EQ(k, 2u);
        ready.send(1);
    }
    EXPECT_EQ(select(on_recv(nil), on_timeout(1ms)), 1u);
    EXPECT_EQ(select(on_recv(nil), on_default()), 1u);
}

// SEL1: exactly one case commits under contention. Producers select over sends to three channels of
// different kinds, consumers select over receives from them (one consumer also forwards through a send
// case); every value sent is received exactly once.
TEST(SelectSEL1ExactlyOne, ValuesCountedOnBothSides) {
    chan<std::uint64_t> a(0);
    chan<std::uint64_t> b(1);
    chan<std::uint64_t> c(8);
    chan<std::uint64_t> relay(0);
    constexpr int producers = 3;
    constexpr int consumers = 3;
    std::size_t const per = iterlock::test::scaled(20000, 2500);
    std::latch start(producers + consumers + 1);
    std::vector<std::vector<std::uint64_t>> sent(producers);
    std::vector<std::vector<std::uint64_t>> got(consumers + 1);
    std::vector<std::thread> ts;
    ts.reserve(producers + consumers + 1);
    for (int id = 0; id < producers; ++id) {
        ts.emplace_back([&, id] {
            start.arrive_and_wait();
            for (std::uint64_t s = 0; s < per; ++s) {
                std::uint64_t const v = (static_cast<std::uint64_t>(id) << 32) | s;
                std::size_t const k = select(on_send(a, v), on_send(b, v), on_send(c, v));
                ASSERT_LT(k, 3u);
                sent[id].push_back(v);
            }
        });
    }
    std::atomic<int> open_inputs{3};
    for (int k = 0; k < consumers; ++k) {
        ts.emplace_back([&, k] {
            start.arrive_and_wait();
            bool a_open = true;
            bool b_open = true;
            bool c_open = true;
            chan<std::uint64_t> nil;
            while (a_open || b_open || c_open) {
                // Closed inputs are switched off with the nil-channel idiom.
                std::optional<std::uint64_t> forward;
                select(on_recv(a_open ? a : nil,
                               [&](std::optional<std::uint64_t> v) {
                                   if (!v) {
                                       a_open = false;
                                   } else if (k == 0) {
                                       forward = v;  // consumer 0 relays what it gets from `a`
                                   } else {
                                       got[k].push_back(*v);
                                   }
                               }),
                       on_recv(b_open ? b : nil,
                               [&](std::optional<std::uint64_t> v) {
                                   if (v) {
                                       got[k].push_back(*v);
                                   } else {
                                       b_open = false;
                                   }
                               }),
                       on_recv(c_open ? c : nil, [&](std::optional<std::uint64_t> v) {
                           if (v) {
                               got[k].push_back(*v);
                           } else {
                               c_open = false;
                           }
                       }));
                if (forward) relay.send(*forward);
            }
            --open_inputs;
        });
    }
    ts.emplace_back([&] {
        start.arrive_and_wait();
        while (auto v = relay.recv()) got[consumers].push_back(*v);
    });
    for (int id = 0; id < producers; ++id) ts[id].join();
    a.close();
    b.close();
    c.close();
    for (int k = 0; k < consumers; ++k) ts[producers + k].join();
    relay.close();
    ts.back().join();

    std::vector<std::uint64_t> all_sent;
    std::vector<std::uint64_t> all_got;
    for (auto& v : sent) all_sent.insert(all_sent.end(), v.begin(), v.end());
    for (auto& v : got) all_got.insert(all_got.end(), v.begin(), v.end());
    std::sort(all_sent.begin(), all_sent.end());
    std::sort(all_got.begin(), all_got.end());
    EXPECT_EQ(all_sent.size(), per * producers);
    EXPECT_EQ(all_got, all_sent);
    for (auto* ch : {&a, &b, &c, &relay}) EXPECT_TRUE(access::check_invariants(*ch));
}

// Two selects meeting on unbuffered channels from both directions: every iteration on one side pairs with
// one on the other, so both finish the same number of rounds and all values cross in order.
TEST(SelectRendezvous, SelectMeetsSelect) {
    chan<int> ab(0);
    chan<int> ba(0);
    int const rounds = static_cast<int>(iterlock::test::scaled(20000, 2500));
    std::latch start(2);
    int a_sent = 0, a_got = 0, b_sent = 0, b_got = 0;
    int a_last = -1, b_last = -1;
    std::thread ta([&] {
        start.arrive_and_wait();
        for (int r = 0; r < rounds; ++r) {
            select(on_send(ab, int{a_sent}, [&] { ++a_sent; }), on_recv(ba, [&](std::optional<int> v) {
                       EXPECT_EQ(*v, a_last + 1);
                       a_last = *v;
                       ++a_got;
                   }));
        }
    });
    std::thread tb([&] {
        start.arrive_and_wait();
        for (int r = 0; r < rounds; ++r) {
            select(on_recv(ab,
                           [&](std::optional<int> v) {
                               EXPECT_EQ(*v, b_last + 1);
                               b_last = *v;
                               ++b_got;
                           }),
                   on_send(ba, int{b_sent}, [&] { ++b_sent; }));
        }
    });
    ta.join();
    tb.join();
    EXPECT_EQ(a_sent, b_got);
    EXPECT_EQ(b_sent, a_got);
    EXPECT_EQ(a_sent + a_got, rounds);
    EXPECT_TRUE(access::check_invariants(ab));
    EXPECT_TRUE(access::check_invariants(ba));
}

// Timed selects racing with senders: a value is either received by a select or its send failed. Every
// value is recorded (a comparison of sums let a lost and a duplicated value cancel out).
TEST(SelectSEL4Timeout, TimeoutRacesKeepAccounts) {
    chan<std::uint64_t> u(0);
    chan<std::uint64_t> b(2);
    std::uint32_t const n = static_cast<std::uint32_t>(iterlock::test::scaled(20000, 2500));
    std::vector<std::vector<std::uint64_t>> sent(2);
    std::vector<std::uint64_t> got;
    std::latch start(3);
    std::thread s1([&] {
        start.arrive_and_wait();
        for (std::uint32_t i = 0; i < n; ++i) {
            if (u.send_for(iterlock::test::encode(0, i), std::chrono::microseconds(i % 5 * 4)))
                sent[0].push_back(iterlock::test::encode(0, i));
        }
    });
    std::thread s2([&] {
        start.arrive_and_wait();
        for (std::uint32_t i = 0; i < n; ++i) {
            if (b.try_send(iterlock::test::encode(1, i))) sent[1].push_back(iterlock::test::encode(1, i));
        }
    });
    std::atomic<bool> stop{false};
    std::thread r([&] {
        start.arrive_and_wait();
        auto take = [&](std::optional<std::uint64_t> v) {
            if (v) got.push_back(*v);
        };
        while (!stop.load()) {
            select(on_recv(u, take), on_recv(b, take), on_timeout(std::chrono::microseconds(7)));
        }
        // Drain what is left in the buffer.
        while (auto v = b.try_recv()) got.push_back(*v);
    });
    s1.join();
    s2.join();
    stop = true;
    r.join();
    EXPECT_TRUE(iterlock::test::each_received_once(iterlock::test::concat(sent), got));
    EXPECT_TRUE(access::check_invariants(u));
    EXPECT_TRUE(access::check_invariants(b));
}

// The for { select { ... } } pattern ends on close, with the same channel on both sides of a select.
TEST(SelectLoop, LoopUntilClosedWithSendAndReceiveOnSameChannel) {
    chan<int> work(4);
    chan<int> done(0);
    std::thread producer([&] {
        for (int i = 0; i < 1000; ++i) work.send(i);
        work.close();
    });
    long sum = 0;
    bool open = true;
    int extra = -1;
    while (open) {
        select(on_recv(work,
                       [&](std::optional<int> v) {
                           if (v) {
                               sum += *v;
                           } else {
                               open = false;
                           }
                       }),
               on_send(done, int{extra}));  // nobody receives on `done`: never chosen
    }
    producer.join();
    EXPECT_EQ(sum, 999L * 1000 / 2);
    EXPECT_EQ(access::waiting(done, true), 0u);
}

// SEL8: no allocation. A loop of selects on this thread, through every path (a ready case, the default, an
// immediate and a real timeout, and blocking selects completed by a partner on an unbuffered and on a
// buffered channel), counts no call of operator new on this thread. The counter is checked first, so the
// test cannot pass because the replacement is not linked.
TEST(SelectSEL8NoAllocation, Item20_LoopOfSelectsAllocatesNothing) {
    if (!iterlock::test::counting_new::enabled)
        GTEST_SKIP()
            << "ThreadSanitizer's runtime owns operator new; the release and ASan builds run this test";
    using iterlock::test::counting_new::allocations;
    {
        std::uint64_t const before = allocations();
        void* volatile p = ::operator new(32);
        ::operator delete(p);
        ASSERT_EQ(allocations() - before, 1u) << "the counting operator new is not in use";
    }
    chan<int> ready(4);
    chan<int> out(1);
    chan<int> idle(0);
    chan<int> unbuf(0);
    chan<int> buf(2);
    int const rounds = static_cast<int>(iterlock::test::scaled(200, 25));
    std::thread partner([&, u = unbuf, b = buf] {
        for (int i = 0; i < rounds; ++i) {
            chan<int> const& to = i % 2 == 0 ? u : b;
            iterlock::test::wait_receivers(to, 1);  // the select below is parked on it
            to.send(i);
        }
    });
    long sum = 0;
    auto take = [&](std::optional<int> v) { sum += v.value_or(0); };
    std::uint64_t const before = allocations();
    for (int i = 0; i < rounds; ++i) {
        ready.send(i);
        ASSERT_LT(select(on_recv(ready, take), on_send(out, i), on_recv(idle, take)), 2u);
        (void)out.try_recv();
        (void)ready.try_recv();
        ASSERT_EQ(select(on_recv(idle, take), on_default()), 1u);
        ASSERT_EQ(select(on_recv(idle, take), on_timeout(0us)), 1u);
        ASSERT_EQ(select(on_recv(idle, take), on_send(idle, int{i}), on_timeout(20us)), 2u);
        ASSERT_LT(select(on_recv(unbuf, take), on_recv(buf, take), on_recv(idle, take)), 2u);
    }
    std::uint64_t const allocated = allocations() - before;
    partner.join();
    EXPECT_EQ(allocated, 0u) << "SEL8: " << rounds << " rounds of selects allocated";
    EXPECT_GT(sum, 0);
}

}  // namespace
