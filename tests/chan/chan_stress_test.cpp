// Concurrency stress for chan<T>: MPMC exactly-once and per-producer order (C3, C4), close racing with
// sends (C5), ping-pong and a pipeline. Threads start behind a latch; checks are on values, never on time.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <latch>
#include <ostream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "iterlock/chan.hpp"
#include "support/chan_probes.hpp"
#include "support/delivery_check.hpp"
#include "support/scale.hpp"

namespace {

using access = iterlock::test::chan_access;
using iterlock::chan;
using iterlock::chan_closed;

using iterlock::test::encode;

// stream and stream_timed: blocking and timed calls on a channel made with chan_wait::stream (rule C6's
// polling phase on both sides).
enum class style { blocking, try_ops, timed, stream, stream_timed };

bool is_stream(style s) {
    return s == style::stream || s == style::stream_timed;
}
// The calls a style makes (a stream style makes those of its sleeping twin).
style calls_of(style s) {
    if (s == style::stream) return style::blocking;
    if (s == style::stream_timed) return style::timed;
    return s;
}

struct mpmc_param {
    int producers;
    int consumers;
    std::size_t capacity;
    style how;
};

const char* style_name(style s) {
    switch (s) {
        case style::blocking:
            return "blocking";
        case style::try_ops:
            return "try";
        case style::timed:
            return "timed";
        case style::stream:
            return "stream";
        case style::stream_timed:
            return "stream_timed";
    }
    return "?";
}

// Readable, deterministic names for ctest (the default would print the struct's bytes, padding included).
std::string shape_name(const ::testing::TestParamInfo<mpmc_param>& info) {
    auto const& p = info.param;
    return "P" + std::to_string(p.producers) + "C" + std::to_string(p.consumers) + "Cap" +
           std::to_string(p.capacity) + "_" + style_name(p.how);
}

void PrintTo(const mpmc_param& p, std::ostream* os) {
    *os << p.producers << " producers, " << p.consumers << " consumers, capacity " << p.capacity << ", "
        << style_name(p.how);
}

class ChanMpmc : public ::testing::TestWithParam<mpmc_param> {};

// Every value is received exactly once, and each consumer sees each producer's values in send order.
TEST_P(ChanMpmc, ExactlyOnceAndPerProducerOrder) {
    auto const p = GetParam();
    std::size_t const per_producer =
        p.capacity == 0 ? iterlock::test::scaled(20000, 2500) : iterlock::test::scaled(50000, 6250);
    chan<std::uint64_t> c(p.capacity,
                          is_stream(p.how) ? iterlock::chan_wait::stream : iterlock::chan_wait::sleep);
    style const how = calls_of(p.how);
    std::latch start(p.producers + p.consumers);
    std::vector<std::vector<std::uint64_t>> got(p.consumers);
    std::vector<std::thread> ts;
    ts.reserve(static_cast<std::size_t>(p.producers) + static_cast<std::size_t>(p.consumers));
    for (int id = 0; id < p.producers; ++id) {
        ts.emplace_back([&, id] {
            start.arrive_and_wait();
            for (std::uint32_t s = 0; s < per_producer; ++s) {
                std::uint64_t v = encode(static_cast<std::uint32_t>(id), s);
                switch (how) {
                    case style::blocking:
                        c.send(v);
                        break;
                    case style::try_ops:
                        while (!c.try_send(std::uint64_t{v})) std::this_thread::yield();
                        break;
                    case style::timed:
                        while (!c.send_for(std::uint64_t{v}, std::chrono::microseconds(20))) {
                        }
                        break;
                    default:
                        FAIL() << "calls_of() returned a stream style";
                }
            }
        });
    }
    for (int k = 0; k < p.consumers; ++k) {
        ts.emplace_back([&, k] {
            start.arrive_and_wait();
            auto& mine = got[k];
            for (;;) {
                // Two sides that only try can never meet on an unbuffered channel (nobody parks), so there
                // the try_ops consumers block.
                if (how == style::blocking || (how == style::try_ops && p.capacity == 0)) {
                    auto v = c.recv();
                    if (!v) break;
                    mine.push_back(*v);
                } else if (how == style::try_ops) {
                    auto r = c.try_recv();
                    if (r.closed()) break;
                    if (r) {
                        mine.push_back(*r);
                    } else {
                        std::this_thread::yield();
                    }
                } else {
                    auto r = c.recv_for(std::chrono::microseconds(30));
                    if (r.closed()) break;
                    if (r) mine.push_back(*r);
                }
            }
        });
    }
    for (int id = 0; id < p.producers; ++id) ts[id].join();
    c.close();
    for (std::size_t i = p.producers; i < ts.size(); ++i) ts[i].join();

    std::vector<std::uint64_t> all;
    for (auto const& mine : got) {
        std::vector<std::int64_t> last(p.producers, -1);
        for (std::uint64_t v : mine) {
            auto const id = static_cast<std::uint32_t>(v >> 32);
            auto const seq = static_cast<std::int64_t>(v & 0xffffffffu);
            ASSERT_LT(id, static_cast<std::uint32_t>(p.producers));
            ASSERT_GT(seq, last[id]) << "producer " << id << " reordered";
            last[id] = seq;
        }
        all.insert(all.end(), mine.begin(), mine.end());
    }
    ASSERT_EQ(all.size(), per_producer * p.producers);
    std::sort(all.begin(), all.end());
    EXPECT_TRUE(std::adjacent_find(all.begin(), all.end()) == all.end()) << "a value was received twice";
    EXPECT_TRUE(access::check_invariants(c));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ChanMpmc,
    ::testing::Values(mpmc_param{1, 1, 0, style::blocking}, mpmc_param{4, 4, 0, style::blocking},
                      mpmc_param{4, 4, 1, style::blocking}, mpmc_param{3, 5, 7, style::blocking},
                      mpmc_param{2, 2, 1024, style::blocking}, mpmc_param{8, 2, 16, style::blocking},
                      mpmc_param{2, 6, 3, style::blocking}, mpmc_param{3, 3, 0, style::try_ops},
                      mpmc_param{3, 3, 4, style::try_ops}, mpmc_param{3, 3, 0, style::timed},
                      mpmc_param{3, 3, 2, style::timed}, mpmc_param{1, 1, 64, style::stream},
                      mpmc_param{3, 5, 7, style::stream}, mpmc_param{8, 2, 16, style::stream},
                      mpmc_param{3, 3, 2, style::stream_timed}),
    shape_name);

// Close racing with blocked and running senders: every send that returned normally is received, every
// other send threw, nothing else is received. Each value is recorded (producer, sequence), so a lost value
// and a duplicated one cannot cancel out as they did in a comparison of sums.
TEST(ChanStress, Item17_CloseRacingWithSendsDeliversEachValueOnce) {
    for (std::size_t cap : {0u, 1u, 8u}) {
        for (int round = 0; round < static_cast<int>(iterlock::test::scaled(40, 5)); ++round) {
            chan<std::uint64_t> c(cap);
            constexpr int producers = 3;
            std::latch start(producers + 2);
            std::vector<std::vector<std::uint64_t>> sent(producers);
            std::vector<std::uint64_t> received;
            std::atomic<int> threw{0};
            std::vector<std::thread> ts;
            ts.reserve(producers + 2);
            for (int id = 0; id < producers; ++id) {
                ts.emplace_back([&, id] {
                    start.arrive_and_wait();
                    try {
                        for (std::uint32_t seq = 0;; ++seq) {
                            std::uint64_t const v =
                                iterlock::test::encode(static_cast<std::uint32_t>(id), seq);
                            c.send(v);
                            sent[id].push_back(v);
                        }
                    } catch (const chan_closed&) {
                        ++threw;
                    }
                });
            }
            ts.emplace_back([&] {
                start.arrive_and_wait();
                while (auto v = c.recv()) received.push_back(*v);
            });
            ts.emplace_back([&, round] {
                start.arrive_and_wait();
                for (int i = 0; i < round * 10; ++i) std::this_thread::yield();
                c.close();
            });
            for (auto& t : ts) t.join();
            EXPECT_EQ(threw.load(), producers);
            EXPECT_TRUE(iterlock::test::each_received_once(iterlock::test::concat(sent), received))
                << "capacity " << cap << " round " << round;
            EXPECT_TRUE(access::check_invariants(c));
        }
    }
}

TEST(ChanStress, PingPongOverUnbufferedChannels) {
    chan<int> ping(0);
    chan<int> pong(0);
    int const rounds = static_cast<int>(iterlock::test::scaled(20000, 2500));
    std::latch start(2);
    std::thread echo([&] {
        start.arrive_and_wait();
        while (auto v = ping.recv()) pong.send(*v + 1);
        pong.close();
    });
    start.arrive_and_wait();
    int x = 0;
    for (int i = 0; i < rounds; ++i) {
        ping.send(x);
        auto r = pong.recv();
        ASSERT_TRUE(r);
        ASSERT_EQ(*r, x + 1);
        x = *r;
    }
    ping.close();
    EXPECT_EQ(pong.recv(), std::nullopt);
    echo.join();
    EXPECT_EQ(x, rounds);
}

// Stages connected by channels of mixed capacities, each closing its output when its input closes.
TEST(ChanStress, PipelineDeliversEverythingInOrder) {
    std::vector<std::size_t> caps = {0, 1, 16, 0, 3};
    std::vector<chan<long>> links;
    links.reserve(caps.size());
    for (std::size_t cap : caps) links.emplace_back(cap);
    long const n = static_cast<long>(iterlock::test::scaled(20000, 2500));
    std::latch start(static_cast<std::ptrdiff_t>(caps.size()) + 1);
    std::vector<std::thread> stages;
    stages.emplace_back([&] {
        start.arrive_and_wait();
        for (long i = 0; i < n; ++i) links[0].send(i);
        links[0].close();
    });
    for (std::size_t s = 1; s < caps.size(); ++s) {
        stages.emplace_back([&, s] {
            start.arrive_and_wait();
            for (long& v : links[s - 1]) links[s].send(v * 2);
            links[s].close();
        });
    }
    start.arrive_and_wait();
    long expect = 0;
    long count = 0;
    long const factor = 1L << (caps.size() - 1);
    for (long& v : links.back()) {
        ASSERT_EQ(v, expect * factor);
        ++expect;
        ++count;
    }
    for (auto& t : stages) t.join();
    EXPECT_EQ(count, n);
}

// Fan-in/fan-out with several handles per thread and mixed blocking styles on one channel; every value is
// recorded and must arrive exactly once.
TEST(ChanStress, MixedStylesShareOneChannel) {
    chan<std::uint64_t> c(2);
    std::uint32_t const n = static_cast<std::uint32_t>(iterlock::test::scaled(30000, 3750));
    std::vector<std::vector<std::uint64_t>> sent(2);
    std::vector<std::vector<std::uint64_t>> got(2);
    std::latch start(4);
    std::thread a([&, h = c] {
        start.arrive_and_wait();
        for (std::uint32_t i = 0; i < n; ++i) {
            h.send(encode(0, i));
            sent[0].push_back(encode(0, i));
        }
    });
    std::thread b([&, h = c] {
        start.arrive_and_wait();
        for (std::uint32_t i = 0; i < n; ++i) {
            if (h.try_send(encode(1, i))) sent[1].push_back(encode(1, i));
        }
    });
    std::thread r1([&, h = c] {
        start.arrive_and_wait();
        while (auto v = h.recv()) got[0].push_back(*v);
    });
    std::thread r2([&, h = c] {
        start.arrive_and_wait();
        for (;;) {
            auto v = h.recv_for(std::chrono::microseconds(50));
            if (v.closed()) break;
            if (v) got[1].push_back(*v);
        }
    });
    a.join();
    b.join();
    c.close();
    r1.join();
    r2.join();
    EXPECT_TRUE(
        iterlock::test::each_received_once(iterlock::test::concat(sent), iterlock::test::concat(got)));
}

}  // namespace
