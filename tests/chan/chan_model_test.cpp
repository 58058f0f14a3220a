// Model-based randomized test: random sequences of channel operations (and non-blocking selects over
// several channels) checked step by step against a sequential reference of Go's channel state machine,
// with check_invariants() after every step. One thread; the threaded suites cover interleavings.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <vector>

#include "iterlock/chan.hpp"
#include "iterlock/select.hpp"
#include "support/chan_probes.hpp"
#include "support/scale.hpp"

namespace {

using access = iterlock::test::chan_access;
using iterlock::chan;
using iterlock::chan_closed;
using iterlock::chan_status;

// The reference: a bounded FIFO plus a closed flag. With no other thread, an unbuffered channel never has
// a partner, so every operation on it either fails (would block) or reports closed.
struct model {
    std::size_t cap = 0;
    std::deque<int> q;
    bool closed = false;

    bool can_send() const { return !closed && q.size() < cap; }
    bool can_recv() const { return !q.empty() || closed; }
};

class ChanModel : public ::testing::TestWithParam<std::size_t> {};

TEST_P(ChanModel, SingleChannelMatchesReference) {
    std::size_t const cap = GetParam();
    std::mt19937 rng(static_cast<unsigned>(cap * 7919 + 17));
    for (int trial = 0; trial < 30; ++trial) {
        chan<int> c(cap);
        model m{cap, {}, false};
        int next = 0;
        int const steps = static_cast<int>(iterlock::test::scaled(2000, 250));
        for (int step = 0; step < steps; ++step) {
            // Close rarely, so that most of a run exercises the open channel.
            int const op = std::uniform_int_distribution<int>(0, 99)(rng);
            if (op < 30) {  // try_send
                int const v = next++;
                if (m.closed) {
                    EXPECT_THROW(c.try_send(v), chan_closed);
                } else {
                    bool const ok = c.try_send(v);
                    ASSERT_EQ(ok, m.can_send());
                    if (ok) m.q.push_back(v);
                }
            } else if (op < 40) {  // blocking send, only where it cannot block
                if (m.can_send()) {
                    int const v = next++;
                    c.send(v);
                    m.q.push_back(v);
                } else if (m.closed) {
                    EXPECT_THROW(c.send(next++), chan_closed);
                }
            } else if (op < 70) {  // try_recv
                auto r = c.try_recv();
                if (!m.q.empty()) {
                    ASSERT_TRUE(r);
                    ASSERT_EQ(*r, m.q.front());
                    m.q.pop_front();
                } else {
                    ASSERT_EQ(r.status(), m.closed ? chan_status::closed : chan_status::would_block);
                }
            } else if (op < 80) {  // blocking recv, only where it cannot block
                if (m.can_recv()) {
                    auto v = c.recv();
                    if (m.q.empty()) {
                        ASSERT_FALSE(v);
                    } else {
                        ASSERT_EQ(v, m.q.front());
                        m.q.pop_front();
                    }
                }
            } else if (op < 85) {  // timed receive with a zero timeout
                auto r = c.recv_for(std::chrono::nanoseconds(0));
                if (!m.q.empty()) {
                    ASSERT_EQ(*r, m.q.front());
                    m.q.pop_front();
                } else {
                    ASSERT_EQ(r.status(), m.closed ? chan_status::closed : chan_status::timeout);
                }
            } else if (op < 90) {  // timed send with a zero timeout
                if (m.closed) {
                    EXPECT_THROW(c.send_for(next++, std::chrono::nanoseconds(0)), chan_closed);
                } else {
                    int const v = next++;
                    bool const ok = c.send_for(v, std::chrono::nanoseconds(0));
                    ASSERT_EQ(ok, m.can_send());
                    if (ok) m.q.push_back(v);
                }
            } else if (op < 92) {  // close
                if (m.closed) {
                    EXPECT_THROW(c.close(), chan_closed);
                } else {
                    c.close();
                    m.closed = true;
                }
            } else {  // observe
                ASSERT_EQ(c.size(), m.q.size());
                ASSERT_EQ(c.capacity(), cap);
            }
            ASSERT_TRUE(access::check_invariants(c)) << "step " << step;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Capacities, ChanModel, ::testing::Values(0, 1, 2, 3, 5, 16));

// Non-blocking selects over three channels with random case sets: the chosen case must be one the model
// says is ready (default only when none is), and exactly its effect must appear.
TEST(ChanModelSelect, NonBlockingSelectPicksAReadyCaseAndOnlyIt) {
    std::mt19937 rng(12345);
    std::vector<std::size_t> const caps = {1, 2, 4};
    for (int trial = 0; trial < 20; ++trial) {
        std::vector<chan<int>> cs;
        std::vector<model> ms;
        for (std::size_t cap : caps) {
            cs.emplace_back(cap);
            ms.push_back(model{cap, {}, false});
        }
        int next = 0;
        int const steps = static_cast<int>(iterlock::test::scaled(1500, 187));
        for (int step = 0; step < steps; ++step) {
            int const dir0 = std::uniform_int_distribution<int>(0, 1)(rng);
            int const dir1 = std::uniform_int_distribution<int>(0, 1)(rng);
            int const dir2 = std::uniform_int_distribution<int>(0, 1)(rng);
            int const v = next++;
            std::optional<int> got;
            bool closed_seen = false;
            auto on_r = [&](std::optional<int> x) {
                if (x) {
                    got = x;
                } else {
                    closed_seen = true;
                }
            };
            // Sends on closed channels throw; keep them out of the case set.
            auto sendable = [&](int i) { return !ms[i].closed; };
            std::size_t k = 0;
            try {
                k = iterlock::select((dir0 && sendable(0)) ? iterlock::on_send(cs[0], int{v})
                                                           : iterlock::on_send(chan<int>(), int{v}),
                                     iterlock::on_recv(dir0 ? chan<int>() : cs[0], on_r),
                                     (dir1 && sendable(1)) ? iterlock::on_send(cs[1], int{v})
                                                           : iterlock::on_send(chan<int>(), int{v}),
                                     iterlock::on_recv(dir1 ? chan<int>() : cs[1], on_r),
                                     (dir2 && sendable(2)) ? iterlock::on_send(cs[2], int{v})
                                                           : iterlock::on_send(chan<int>(), int{v}),
                                     iterlock::on_recv(dir2 ? chan<int>() : cs[2], on_r),
                                     iterlock::on_default());
            } catch (...) {
                FAIL() << "unexpected exception";
            }
            std::vector<std::size_t> ready;
            int const dirs[3] = {dir0, dir1, dir2};
            for (int i = 0; i < 3; ++i) {
                if (dirs[i] && sendable(i) && ms[i].can_send())
                    ready.push_back(static_cast<std::size_t>(2 * i));
                if (!dirs[i] && ms[i].can_recv()) ready.push_back(static_cast<std::size_t>(2 * i + 1));
            }
            if (ready.empty()) {
                ASSERT_EQ(k, 6u);
            } else {
                ASSERT_NE(std::find(ready.begin(), ready.end(), k), ready.end())
                    << "chose a case that was not ready";
                std::size_t const i = k / 2;
                if (k % 2 == 0) {
                    ms[i].q.push_back(v);
                } else if (!ms[i].q.empty()) {
                    ASSERT_EQ(got, ms[i].q.front());
                    ms[i].q.pop_front();
                } else {
                    ASSERT_TRUE(closed_seen);
                }
            }
            // Occasionally close one channel.
            if (std::uniform_int_distribution<int>(0, 199)(rng) == 0) {
                std::size_t const i = std::uniform_int_distribution<std::size_t>(0, 2)(rng);
                if (!ms[i].closed) {
                    cs[i].close();
                    ms[i].closed = true;
                }
            }
            for (std::size_t i = 0; i < 3; ++i) {
                ASSERT_EQ(cs[i].size(), ms[i].q.size());
                ASSERT_TRUE(access::check_invariants(cs[i]));
            }
        }
    }
}

}  // namespace
