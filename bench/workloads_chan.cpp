// The channel workloads of iterlock-bench: C1 (ping-pong latency over an unbuffered channel), C2 (buffered
// throughput, P producers / P consumers) and C3 (select over four channels fed by one thread), for
// iterlock::chan and its peers: a mutex + condition-variable queue (the usual hand-written substitute),
// moodycamel's BlockingConcurrentQueue and Boost.Fiber's channels used from plain threads.
//
// Invariants: every run is time-boxed (--duration, default 0.5 s per repetition) and counts what the
// consumers actually received, after the producers stopped and the queues drained; every thread starts
// behind a latch and the clock starts when the last one arrives; figures are medians over --reps.
// Peers that lack a feature are adapted the usual way and the adaptation is named in `notes`.
#include <concurrentqueue/blockingconcurrentqueue.h>

#include <atomic>
#include <boost/fiber/buffered_channel.hpp>
#include <boost/fiber/channel_op_status.hpp>
#include <boost/fiber/unbuffered_channel.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "registry.hpp"

#include <iterlock/chan.hpp>
#include <iterlock/select.hpp>

namespace iterlock::bench {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_or(const options& o, double fallback) {
    return o.duration_s > 0 ? o.duration_s : fallback;
}
double since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// ----- peer: the hand-written bounded queue
// -----------------------------------------------------------------

template <class T>
class mutex_condvar_queue {
  public:
    explicit mutex_condvar_queue(std::size_t cap) : cap_(cap ? cap : 1) {}

    // Channel vocabulary (send/recv/close), so the channel workloads run it through the same code as
    // iterlock::chan. send returns false if the queue was closed.
    bool send(T v) {
        std::unique_lock<std::mutex> l(m_);
        not_full_.wait(l, [&] { return q_.size() < cap_ || closed_; });
        if (closed_) return false;
        q_.push_back(std::move(v));
        l.unlock();
        not_empty_.notify_one();
        return true;
    }
    std::optional<T> recv() {
        std::unique_lock<std::mutex> l(m_);
        not_empty_.wait(l, [&] { return !q_.empty() || closed_; });
        if (q_.empty()) return std::nullopt;
        T v = std::move(q_.front());
        q_.pop_front();
        l.unlock();
        not_full_.notify_one();
        return v;
    }
    void close() {
        {
            std::lock_guard<std::mutex> l(m_);
            closed_ = true;
        }
        not_empty_.notify_all();
        not_full_.notify_all();
    }

  private:
    std::mutex m_;
    std::condition_variable not_empty_;
    std::condition_variable not_full_;
    std::deque<T> q_;
    std::size_t const cap_;
    bool closed_ = false;
};

// The usual hand-written "select" over k such queues: one mutex and one condition variable for all of them;
// the consumer takes from a non-empty queue chosen from a random starting point.
class mutex_condvar_select {
  public:
    mutex_condvar_select(std::size_t k, std::size_t cap) : qs_(k), cap_(cap) {}

    void push(std::size_t i, long v) {
        std::unique_lock<std::mutex> l(m_);
        not_full_.wait(l, [&] { return qs_[i].size() < cap_; });
        qs_[i].push_back(v);
        l.unlock();
        not_empty_.notify_one();
    }
    std::optional<long> pop_any(std::uint64_t& rng) {
        std::unique_lock<std::mutex> l(m_);
        for (;;) {
            std::size_t const start = static_cast<std::size_t>((rng = mix64(rng)) % qs_.size());
            for (std::size_t j = 0; j < qs_.size(); ++j) {
                auto& q = qs_[(start + j) % qs_.size()];
                if (!q.empty()) {
                    long v = q.front();
                    q.pop_front();
                    l.unlock();
                    not_full_.notify_one();
                    return v;
                }
            }
            if (closed_) return std::nullopt;
            not_empty_.wait(l);
        }
    }
    void close() {
        {
            std::lock_guard<std::mutex> l(m_);
            closed_ = true;
        }
        not_empty_.notify_all();
    }

  private:
    std::mutex m_;
    std::condition_variable not_empty_;
    std::condition_variable not_full_;
    std::vector<std::deque<long>> qs_;
    std::size_t const cap_;
    bool closed_ = false;
};

// ----- C1: ping-pong
// ----------------------------------------------------------------------------------------

// Runs round trips for `secs` and returns nanoseconds per round trip. `ping(v)` sends to the echo thread and
// waits for the reply; `echo()` runs in the other thread until `stop()` makes it return.
template <class Ping, class Echo, class Stop>
double ping_pong(double secs, Ping ping, Echo echo, Stop stop) {
    std::latch start(2);
    std::thread other([&] {
        start.arrive_and_wait();
        echo();
    });
    start.arrive_and_wait();
    auto const t0 = clock_type::now();
    long n = 0;
    double elapsed = 0;
    do {
        for (int i = 0; i < 256; ++i) ping(n++);
        elapsed = since(t0);
    } while (elapsed < secs);
    stop();
    other.join();
    return elapsed * 1e9 / static_cast<double>(n);
}

// C1 over anything with channel vocabulary: send(v), recv() -> optional, close().
template <class Chan>
double c1_channel(Chan& ping, Chan& pong, double secs) {
    return ping_pong(
        secs,
        [&](long v) {
            ping.send(v);
            if (pong.recv() != v) throw std::runtime_error("C1: wrong echo");
        },
        [&] {
            while (auto v = ping.recv()) pong.send(*v);
        },
        [&] { ping.close(); });
}

double c1_once(const std::string& impl, double secs) {
    if (impl == "iterlock_chan") {
        iterlock::chan<long> ping(0), pong(0);
        return c1_channel(ping, pong, secs);
    }
    if (impl == "mutex_condvar_queue") {
        mutex_condvar_queue<long> ping(1), pong(1);
        return c1_channel(ping, pong, secs);
    }
    if (impl == "moodycamel") {
        moodycamel::BlockingConcurrentQueue<long> ping, pong;
        return ping_pong(
            secs,
            [&](long v) {
                ping.enqueue(v);
                long r = -1;
                pong.wait_dequeue(r);
                if (r != v) throw std::runtime_error("C1: wrong echo");
            },
            [&] {
                for (;;) {
                    long v = 0;
                    ping.wait_dequeue(v);
                    if (v < 0) return;
                    pong.enqueue(v);
                }
            },
            [&] { ping.enqueue(-1); });
    }
    if (impl == "boost_fiber") {
        boost::fibers::unbuffered_channel<long> ping, pong;
        return ping_pong(
            secs,
            [&](long v) {
                ping.push(v);
                long r = -1;
                pong.pop(r);
                if (r != v) throw std::runtime_error("C1: wrong echo");
            },
            [&] {
                long v = 0;
                while (ping.pop(v) == boost::fibers::channel_op_status::success) pong.push(v);
            },
            [&] { ping.close(); });
    }
    throw unavailable("C1: unknown implementation " + impl);
}

// ----- C2: buffered throughput
// --------------------------------------------------------------------------------

// Runs `producers` threads calling `produce(stop)` and as many calling `consume()` (which returns how many
// values it received), closes with `finish()` once the producers stopped; returns Mops/s received.
template <class Produce, class Consume, class Finish>
double mpmc(int pairs, double secs, Produce produce, Consume consume, Finish finish) {
    std::atomic<bool> stop{false};
    std::atomic<long> received{0};
    std::latch start(2 * pairs + 1);
    std::vector<std::thread> producers, consumers;
    for (int i = 0; i < pairs; ++i) {
        producers.emplace_back([&, i] {
            start.arrive_and_wait();
            produce(i, stop);
        });
        consumers.emplace_back([&] {
            start.arrive_and_wait();
            received += consume();
        });
    }
    start.arrive_and_wait();
    auto const t0 = clock_type::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
    stop = true;
    for (auto& t : producers) t.join();
    finish();
    for (auto& t : consumers) t.join();
    return static_cast<double>(received.load()) / since(t0) / 1e6;
}

double c2_once(const std::string& impl, int pairs, std::size_t cap, double secs) {
    auto const keep_going = [](std::atomic<bool>& stop, long i) {
        return (i & 255) != 0 || !stop.load(std::memory_order_relaxed);
    };
    // Anything with channel vocabulary: send(v), recv() -> optional, close().
    auto const channel = [&](auto& c) {
        return mpmc(
            pairs, secs,
            [&](int, std::atomic<bool>& stop) {
                for (long i = 0; keep_going(stop, i); ++i) c.send(i);
            },
            [&] {
                long n = 0;
                while (c.recv()) ++n;
                return n;
            },
            [&] { c.close(); });
    };
    if (impl == "iterlock_chan") {
        iterlock::chan<long> c(cap);
        return channel(c);
    }
    if (impl == "mutex_condvar_queue") {
        mutex_condvar_queue<long> q(cap);
        return channel(q);
    }
    if (impl == "moodycamel") {
        // No bound and no close: a LightweightSemaphore of `cap` free slots bounds it (the usual way; it beat
        // try_enqueue + yield by 4x here), producer and consumer tokens give it its fast path, and one
        // sentinel per consumer ends the run.
        moodycamel::BlockingConcurrentQueue<long> q(cap);
        moodycamel::LightweightSemaphore slots(static_cast<moodycamel::LightweightSemaphore::ssize_t>(cap));
        return mpmc(
            pairs, secs,
            [&](int, std::atomic<bool>& stop) {
                moodycamel::ProducerToken token(q);
                for (long i = 0; keep_going(stop, i); ++i) {
                    slots.wait();
                    q.enqueue(token, i);
                }
            },
            [&] {
                moodycamel::ConsumerToken token(q);
                long n = 0;
                for (;;) {
                    long v = 0;
                    q.wait_dequeue(token, v);
                    if (v < 0) return n;
                    slots.signal();
                    ++n;
                }
            },
            [&] {
                for (int i = 0; i < pairs; ++i) q.enqueue(-1);
            });
    }
    if (impl == "boost_fiber") {
        boost::fibers::buffered_channel<long> q(cap);  // capacity must be a power of two
        return mpmc(
            pairs, secs,
            [&](int, std::atomic<bool>& stop) {
                for (long i = 0; keep_going(stop, i); ++i) q.push(i);
            },
            [&] {
                long n = 0;
                long v = 0;
                while (q.pop(v) == boost::fibers::channel_op_status::success) ++n;
                return n;
            },
            [&] { q.close(); });
    }
    throw unavailable("C2: unknown implementation " + impl);
}

// ----- C3: select over four channels
// ----------------------------------------------------------------------------

constexpr std::size_t c3_channels = 4;

template <class Feed, class Drain, class Finish>
double feed_and_select(double secs, Feed feed, Drain drain, Finish finish) {
    std::atomic<bool> stop{false};
    long received = 0;
    std::latch start(3);
    std::thread feeder([&] {
        start.arrive_and_wait();
        feed(stop);
    });
    std::thread selector([&] {
        start.arrive_and_wait();
        received = drain();
    });
    start.arrive_and_wait();
    auto const t0 = clock_type::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
    stop = true;
    feeder.join();
    finish();
    selector.join();
    return static_cast<double>(received) / since(t0) / 1e6;
}

double c3_once(const std::string& impl, std::size_t cap, double secs) {
    if (impl == "iterlock_chan") {
        std::vector<iterlock::chan<long>> cs;
        for (std::size_t i = 0; i < c3_channels; ++i) cs.emplace_back(cap);
        return feed_and_select(
            secs,
            [&](std::atomic<bool>& stop) {
                for (long i = 0; (i & 255) != 0 || !stop.load(std::memory_order_relaxed); ++i) {
                    cs[static_cast<std::size_t>(i) % c3_channels].send(i);
                }
            },
            [&] {
                long n = 0;
                int open = static_cast<int>(c3_channels);
                iterlock::chan<long> nil;
                bool live[c3_channels] = {true, true, true, true};
                auto on = [&](std::size_t k) {
                    return iterlock::on_recv(live[k] ? cs[k] : nil, [&, k](std::optional<long> v) {
                        if (v) {
                            ++n;
                        } else {
                            live[k] = false;
                            --open;
                        }
                    });
                };
                while (open > 0) iterlock::select(on(0), on(1), on(2), on(3));
                return n;
            },
            [&] {
                for (auto& c : cs) c.close();
            });
    }
    if (impl == "mutex_condvar_queue") {
        mutex_condvar_select q(c3_channels, cap);
        return feed_and_select(
            secs,
            [&](std::atomic<bool>& stop) {
                for (long i = 0; (i & 255) != 0 || !stop.load(std::memory_order_relaxed); ++i) {
                    q.push(static_cast<std::size_t>(i) % c3_channels, i);
                }
            },
            [&] {
                long n = 0;
                std::uint64_t rng = 0x2545f4914f6cdd1dULL;
                while (q.pop_any(rng)) ++n;
                return n;
            },
            [&] { q.close(); });
    }
    throw unavailable("C3: unknown implementation " + impl);
}

// ----- registration
// -------------------------------------------------------------------------------------------

// NOLINTBEGIN(cert-err58-cpp): registering at start-up is the registry's plug-in design; a bad_alloc there
// ends the program, which is what we want.
std::map<std::string, std::string> const peer_notes = {
    {"iterlock_chan", "iterlock::chan<long>; C3 uses iterlock::select"},
    {"mutex_condvar_queue",
     "std::deque + std::mutex + 2 condition variables; C1 capacity 1; C3 one lock for 4 queues"},
    {"moodycamel",
     "BlockingConcurrentQueue: unbounded, no close/select; C2 bound by try_enqueue + yield, sentinels"},
    {"boost_fiber", "unbuffered_channel (C1) / buffered_channel (C2) used from threads"},
};

registrar const c1{workload{
    "C1",
    "ping-pong round trip between two threads over an unbuffered channel (roundtrip_ns)",
    {"iterlock_chan", "mutex_condvar_queue", "moodycamel", "boost_fiber"},
    [](const std::string& impl, const options& opts, const emit_fn& emit) {
        medians m;
        for (int r = 0; r < opts.repetitions; ++r)
            m.add("roundtrip_ns", c1_once(impl, seconds_or(opts, 0.5)), "ns");
        m.emit(emit, "C1", impl, 0, 2);
    },
    "iterlock_chan",
    peer_notes,
}};

registrar const c2{workload{
    "C2",
    "buffered channel throughput, P producers / P consumers (threads = 2P; default capacity 1024, threads "
    "2,4)",
    {"iterlock_chan", "mutex_condvar_queue", "moodycamel", "boost_fiber"},
    [](const std::string& impl, const options& opts, const emit_fn& emit) {
        std::vector<std::size_t> const caps =
            opts.sizes.empty() ? std::vector<std::size_t>{1024} : opts.sizes;
        std::vector<int> const threads = opts.threads.empty() ? std::vector<int>{2, 4} : opts.threads;
        for (std::size_t cap : caps) {
            for (int t : threads) {
                int const pairs = t / 2 > 0 ? t / 2 : 1;
                medians m;
                for (int r = 0; r < opts.repetitions; ++r) {
                    m.add("mops", c2_once(impl, pairs, cap, seconds_or(opts, 0.5)), "Mops/s");
                }
                m.emit(emit, "C2", impl, cap, 2 * pairs);
            }
        }
    },
    "iterlock_chan",
    peer_notes,
}};

registrar const c3{workload{
    "C3",
    "select over 4 buffered channels (capacity 1024 each) fed round-robin by one thread (mops)",
    {"iterlock_chan", "mutex_condvar_queue"},
    [](const std::string& impl, const options& opts, const emit_fn& emit) {
        std::size_t const cap = opts.sizes.empty() ? 1024 : opts.sizes.front();
        medians m;
        for (int r = 0; r < opts.repetitions; ++r)
            m.add("mops", c3_once(impl, cap, seconds_or(opts, 0.5)), "Mops/s");
        m.emit(emit, "C3", impl, cap, 2);
    },
    "iterlock_chan",
    peer_notes,
}};
// NOLINTEND(cert-err58-cpp)

}  // namespace
}  // namespace iterlock::bench
