// W8: change feeds and conditional writes (issue 16, item 6; named W8 because W7 is issue 13's release cost).
// One writer's rate with 0, 1 and 4 watchers draining feeds (ten maps each, in rotation), the delivery delay
// from a write's return to its event's receipt (paced writes, one watcher), compare-and-set under contention
// on 16 keys, the time to list 1M entries and start a feed from that list (resync), and a W5-style
// consistency check: two writers on overlapping keys while a watcher lists and then replays its feed; the
// replica must equal the final map.
//
// Peers (what a user would write otherwise):
//   iterlock_feed       iterlock::versioned_map (4096 events of history per shard): snapshot +
//                       watch(snapshot), events on an iterlock::chan.
//   iterlock_feed_pull  the same with feed_delivery::pull (the writer keeps events in its shard's history,
//                       the watcher's receivers copy them out; a channel of 256 events stages each pull).
//   mutex_deque         std::unordered_map + std::mutex; each write appends its change to every watcher's
//                       std::deque under the same lock (a condition variable wakes the watcher).
//   tbb_queue           tbb::concurrent_hash_map + one tbb::concurrent_bounded_queue per watcher: the map and
//                       the queues are not updated together, which the consistency check shows.
// Invariants: keys are mix64(i) over a 100K keyspace (1M for resync); threads start behind a latch; a
// watcher's replica is checked against the final map after the writers stopped and its feed was drained.
// In the writer_keep and delivery phases the writer runs on CPU 0 and the watchers on the other CPUs
// (pin_this_thread), so that what is measured is the feed, not the scheduler putting both on one core.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <oneapi/tbb/concurrent_hash_map.h>
#include <oneapi/tbb/concurrent_queue.h>
#include <oneapi/tbb/concurrent_vector.h>

#include "iterlock/versioned_map.hpp"
#include "registry.hpp"

namespace iterlock::bench {
namespace {

using u64 = std::uint64_t;
using event = std::pair<u64, u64>;  // key, value
using replica = std::unordered_map<u64, u64>;

// ---- peers: put, watch (returns a watcher with blocking next / non-blocking try_next), list_and_watch,
// cas_increment, contents.

template <feed_delivery Delivery>
class iterlock_feed_peer_of {
  public:
    static constexpr const char* name =
        Delivery == feed_delivery::pull ? "iterlock_feed_pull" : "iterlock_feed";
    class watcher {
      public:
        explicit watcher(versioned_map<u64, u64>::feed_type f) : f_(std::move(f)), ch_(f_.events()) {}
        bool next(event& e) {
            auto c = ch_.recv();
            if (!c) return false;
            e = {c->key, *c->value};
            return true;
        }
        bool try_next(event& e) {
            auto c = ch_.try_recv();
            if (!c) return false;
            const auto& o = c.as_optional();
            e = {o->key, *o->value};
            return true;
        }
        bool cut_off() const { return f_.ended(); }
        void stop() { f_ = {}; }  // ends the feed (its channel closes); ch_ stays valid for a blocked next()

      private:
        versioned_map<u64, u64>::feed_type f_;
        chan<change<u64, u64>> ch_;
    };
    void put(u64 k, u64 v) { m_.insert_or_assign(k, v); }
    std::unique_ptr<watcher> watch(std::size_t cap) {
        return std::make_unique<watcher>(m_.watch(channel(cap), Delivery));
    }
    std::unique_ptr<watcher> list_and_watch(replica& out, std::size_t cap) {
        auto l = m_.snapshot_and_watch(channel(cap), Delivery);
        for (const auto& [k, vv] : l.snapshot) out[k] = vv.value;
        return std::make_unique<watcher>(std::move(l.feed));
    }
    void cas_increment(u64 k) {
        for (;;) {
            const auto cur = m_.find_versioned(k);
            if (m_.compare_and_set(k, cur ? cur->revision : 0, (cur ? cur->value : 0) + 1).succeeded) return;
        }
    }
    replica contents() {
        replica r;
        for (const auto& [k, vv] : m_.snapshot()) r[k] = vv.value;
        return r;
    }
    void close_watchers() {}

  private:
    // A pull feed's slack is the history; its channel is where receivers take a pull's batch from, and
    // GUIDE.md section 14 sizes it at a few hundred events (a larger one only adds memory the watcher
    // cycles through). Push feeds get the workload's capacity, their slack.
    static std::size_t channel(std::size_t cap) {
        return Delivery == feed_delivery::pull ? std::min<std::size_t>(cap, pull_channel) : cap;
    }
    static constexpr std::size_t pull_channel = 256;
    // A pull feed is bounded by the history (V3): 4096 events per shard hold the resync phase's 2 x 20K
    // writes, which its watcher reads only afterwards. Both peers keep the same history, so that their
    // writer_mops_0w (which pays for writing it) is the same baseline.
    versioned_map<u64, u64> m_{0, std::size_t{1} << 12};
};
using iterlock_feed_peer = iterlock_feed_peer_of<feed_delivery::push>;
using iterlock_feed_pull_peer = iterlock_feed_peer_of<feed_delivery::pull>;

class mutex_deque_peer {
    struct queue {
        std::deque<event> q;
        std::condition_variable cv;
        bool closed = false;
    };

  public:
    static constexpr const char* name = "mutex_deque";
    class watcher {
      public:
        watcher(mutex_deque_peer& p, std::shared_ptr<queue> q) : p_(p), q_(std::move(q)) {}
        bool next(event& e) {
            std::unique_lock lk(p_.mu_);
            q_->cv.wait(lk, [&] { return !q_->q.empty() || q_->closed; });
            if (q_->q.empty()) return false;
            e = q_->q.front();
            q_->q.pop_front();
            return true;
        }
        bool try_next(event& e) {
            std::lock_guard lk(p_.mu_);
            if (q_->q.empty()) return false;
            e = q_->q.front();
            q_->q.pop_front();
            return true;
        }
        bool cut_off() const { return false; }
        void stop() {}

      private:
        mutex_deque_peer& p_;
        std::shared_ptr<queue> q_;
    };
    void put(u64 k, u64 v) {
        std::lock_guard lk(mu_);
        m_[k] = v;
        for (auto& w : watchers_) {
            w->q.emplace_back(k, v);
            w->cv.notify_one();
        }
    }
    std::unique_ptr<watcher> watch(std::size_t) {
        auto q = std::make_shared<queue>();
        std::lock_guard lk(mu_);
        watchers_.push_back(q);
        return std::make_unique<watcher>(*this, q);
    }
    std::unique_ptr<watcher> list_and_watch(replica& out, std::size_t) {
        auto q = std::make_shared<queue>();
        std::lock_guard lk(mu_);  // writers wait for the whole copy
        out = m_;
        watchers_.push_back(q);
        return std::make_unique<watcher>(*this, q);
    }
    void cas_increment(u64 k) {
        std::lock_guard lk(mu_);
        ++m_[k];
    }
    replica contents() {
        std::lock_guard lk(mu_);
        return m_;
    }
    void close_watchers() {
        std::lock_guard lk(mu_);
        for (auto& w : watchers_) {
            w->closed = true;
            w->cv.notify_all();
        }
    }

  private:
    std::mutex mu_;
    replica m_;
    std::vector<std::shared_ptr<queue>> watchers_;
};

class tbb_queue_peer {
    using map_t = tbb::concurrent_hash_map<u64, u64>;
    using queue = tbb::concurrent_bounded_queue<std::optional<event>>;

  public:
    static constexpr const char* name = "tbb_queue";
    class watcher {
      public:
        explicit watcher(std::shared_ptr<queue> q) : q_(std::move(q)) {}
        bool next(event& e) {
            std::optional<event> v;
            q_->pop(v);
            if (!v) return false;
            e = *v;
            return true;
        }
        bool try_next(event& e) {
            std::optional<event> v;
            if (!q_->try_pop(v) || !v) return false;
            e = *v;
            return true;
        }
        bool cut_off() const { return false; }
        void stop() {}

      private:
        std::shared_ptr<queue> q_;
    };
    void put(u64 k, u64 v) {
        {
            map_t::accessor a;
            m_.insert(a, k);
            a->second = v;
        }
        // Only the watchers published by watch(): concurrent_vector's size() also counts an element that
        // push_back is still constructing, and reading that one hung a writer here (resync).
        const std::size_t n = ready_.load(std::memory_order_acquire);
        for (std::size_t i = 0; i < n; ++i) watchers_[i]->push(event{k, v});
    }
    // Requires: one thread at a time adds watchers (W8's main thread).
    std::unique_ptr<watcher> watch(std::size_t) {
        auto q = std::make_shared<queue>();
        const auto it = watchers_.push_back(q);
        ready_.store(static_cast<std::size_t>(it - watchers_.begin()) + 1, std::memory_order_release);
        return std::make_unique<watcher>(q);
    }
    // Subscribe, then copy the map (not one instant; events may repeat or come out of order with the copy).
    std::unique_ptr<watcher> list_and_watch(replica& out, std::size_t cap) {
        auto w = watch(cap);
        for (const auto& [k, v] : m_) out[k] = v;
        return w;
    }
    void cas_increment(u64 k) {
        map_t::accessor a;
        m_.insert(a, k);
        ++a->second;
    }
    replica contents() {
        replica r;
        for (const auto& [k, v] : m_) r[k] = v;
        return r;
    }
    void close_watchers() {
        const std::size_t n = ready_.load(std::memory_order_acquire);
        for (std::size_t i = 0; i < n; ++i) watchers_[i]->push(std::nullopt);
    }

  private:
    map_t m_;
    tbb::concurrent_vector<std::shared_ptr<queue>> watchers_;
    std::atomic<std::size_t> ready_{0};  // watchers_[0, ready_) are constructed
};

constexpr u64 keyspace = 100'000;
constexpr std::size_t feed_capacity = std::size_t{1} << 16;

// One writer for `d` with `watchers` threads draining, on a map of its own; counts its writes and the
// seconds it ran into `writes` and `seconds` (and the watchers cut off into `cutoffs`).
template <class P>
void writer_phase(int watchers, std::chrono::nanoseconds d, u64 seed, double& writes_out, double& seconds,
                  int& cutoffs) {
    P p;
    for (u64 i = 0; i < keyspace; i += 2) p.put(mix64(i), i);
    std::vector<std::unique_ptr<typename P::watcher>> ws;
    for (int i = 0; i < watchers; ++i) ws.push_back(p.watch(feed_capacity));
    std::atomic<bool> stop{false};
    std::latch go(watchers + 2);
    u64 writes = 0;
    std::vector<std::jthread> ts;
    for (auto& w : ws)
        ts.emplace_back([&, wp = w.get()] {
            pin_this_thread(false);
            go.arrive_and_wait();
            event e;
            while (wp->next(e)) {
            }
        });
    std::jthread writer([&] {
        pin_this_thread(true);
        splitmix64 rng{seed};
        go.arrive_and_wait();
        u64 n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            for (int j = 0; j < 64; ++j) {
                const u64 r = rng();
                p.put(mix64(r % keyspace), r);
            }
            n += 64;
        }
        writes = n;
    });
    go.arrive_and_wait();
    const std::int64_t t0 = now_ns();
    std::this_thread::sleep_for(d);
    stop.store(true);
    writer.join();
    const std::int64_t t1 = now_ns();
    for (auto& w : ws) cutoffs += w->cut_off() ? 1 : 0;
    for (auto& w : ws) w->stop();
    p.close_watchers();
    ts.clear();  // the watchers' next() returned: their channels are closed
    ws.clear();
    writes_out += static_cast<double>(writes);
    seconds += static_cast<double>(t1 - t0) * 1e-9;
}

// writer_keep's rates: writes per second with 0, 1 and 4 watchers, each over `phases` maps of its own,
// run in rotation (0, 1, 4, 0, 1, 4, ...; d / phases each), summed. One map's rate depends on where its
// memory landed (the same code ran at 70-170 ns per write from one process to the next here), and so
// does its feed's cost; many short maps in rotation average that out, as --interleave does for drift.
struct writer_rates {
    double w0 = 0, w1 = 0, w4 = 0;
    int cut1 = 0, cut4 = 0;
};
template <class P>
writer_rates writer_rotation(std::chrono::nanoseconds d, u64 seed, int phases) {
    double n[3] = {0, 0, 0}, t[3] = {0, 0, 0};
    int cut[3] = {0, 0, 0};
    const int watchers[3] = {0, 1, 4};
    for (int p = 0; p < phases; ++p)
        for (int i = 0; i < 3; ++i)
            writer_phase<P>(watchers[i], d / phases, seed + static_cast<u64>(p), n[i], t[i], cut[i]);
    return {n[0] / t[0], n[1] / t[1], n[2] / t[2], cut[1], cut[2]};
}

// Paced writes (one per `gap` ns), one watcher: delay from each write's return to its event's receipt.
template <class P>
std::vector<double> delivery(std::size_t writes, std::int64_t gap) {
    P p;
    auto w = p.watch(feed_capacity);
    std::vector<std::int64_t> returned(writes), received(writes);
    std::latch go(2);
    std::jthread reader([&] {
        pin_this_thread(false);
        go.arrive_and_wait();
        event e;
        for (std::size_t i = 0; i < writes && w->next(e); ++i) received[e.second] = now_ns();
    });
    std::jthread writer([&] {
        pin_this_thread(true);
        go.arrive_and_wait();
        std::int64_t next = now_ns();
        for (std::size_t i = 0; i < writes; ++i) {
            while (now_ns() < next) {
            }
            p.put(mix64(i % keyspace), i);
            returned[i] = now_ns();
            next = returned[i] + gap;
        }
    });
    writer.join();
    reader.join();
    std::vector<double> d(writes);
    for (std::size_t i = 0; i < writes; ++i)
        d[i] = static_cast<double>(std::max<std::int64_t>(0, received[i] - returned[i]));
    std::sort(d.begin(), d.end());
    return d;
}

// Two threads incrementing 16 counters by compare-and-set (or the peer's equivalent) for `d`.
template <class P>
double cas_rate(std::chrono::nanoseconds d) {
    P p;
    std::atomic<bool> stop{false};
    std::atomic<u64> total{0};
    std::latch go(3);
    std::vector<std::jthread> ts;
    for (int t = 0; t < 2; ++t)
        ts.emplace_back([&, t] {
            go.arrive_and_wait();
            u64 n = 0;
            while (!stop.load(std::memory_order_relaxed)) {
                p.cas_increment(mix64((n * 7 + static_cast<u64>(t)) % 16));
                ++n;
            }
            total += n;
        });
    go.arrive_and_wait();
    const std::int64_t t0 = now_ns();
    std::this_thread::sleep_for(d);
    stop.store(true);
    ts.clear();
    const std::int64_t t1 = now_ns();
    u64 sum = 0;
    for (const auto& [k, v] : p.contents()) sum += v;
    if (sum != total.load()) throw std::runtime_error(std::string("W8: ") + P::name + " lost CAS increments");
    return static_cast<double>(total.load()) / (static_cast<double>(t1 - t0) * 1e-3);
}

// List `n` entries and start a feed from the list, beside a writer; then check the replica. Returns the
// list+watch time (ms) and whether the replica equalled the final map.
template <class P>
std::pair<double, bool> resync(std::size_t n, int writers) {
    P p;
    for (u64 i = 0; i < n; ++i) p.put(mix64(i), i);
    std::atomic<bool> stop{false};
    std::latch go(writers + 1);
    std::vector<std::jthread> ts;
    for (int t = 0; t < writers; ++t)
        ts.emplace_back([&, t] {
            splitmix64 rng{static_cast<u64>(t) + 99};
            go.arrive_and_wait();
            for (int i = 0; i < 20'000 && !stop.load(std::memory_order_relaxed); ++i)
                p.put(mix64(rng() % 64), rng());  // overlapping keys
        });
    go.arrive_and_wait();
    replica r;
    r.reserve(n);
    const std::int64_t t0 = now_ns();
    auto w = p.list_and_watch(r, std::size_t{1} << 17);  // room for every write of the writers
    const std::int64_t t1 = now_ns();
    ts.clear();  // the writers' 2 x 20K writes end
    event e;
    while (w->try_next(e)) r[e.first] = e.second;
    const replica fin = p.contents();
    const bool ok = !w->cut_off() && r == fin;
    if (std::getenv("W8_DEBUG") != nullptr && !ok) {
        std::size_t diff = 0;
        for (const auto& [k, v] : fin) diff += (r.count(k) == 0 || r.at(k) != v) ? 1 : 0;
        std::fprintf(stderr, "W8 %s: cut_off %d, sizes %zu/%zu, differing %zu\n", P::name, int(w->cut_off()),
                     r.size(), fin.size(), diff);
    }
    p.close_watchers();
    return {static_cast<double>(t1 - t0) * 1e-6, ok};
}

template <class F>
void with_feed_peer(const std::string& impl, F&& f) {
    if (impl == iterlock_feed_peer::name) return f.template operator()<iterlock_feed_peer>();
    if (impl == iterlock_feed_pull_peer::name) return f.template operator()<iterlock_feed_pull_peer>();
    if (impl == mutex_deque_peer::name) return f.template operator()<mutex_deque_peer>();
    if (impl == tbb_queue_peer::name) return f.template operator()<tbb_queue_peer>();
    throw std::invalid_argument("W8: unknown implementation '" + impl + "'");
}

void run_w8(const std::string& impl, const options& opts, const emit_fn& emit) {
    const auto d = std::chrono::nanoseconds(
        static_cast<std::int64_t>((opts.duration_s > 0 ? opts.duration_s : 1.0) * 1e9));
    const std::size_t n = opts.sizes.empty() ? 1'000'000 : opts.sizes.front();
    with_feed_peer(impl, [&]<class P>() {
        medians out;
        for (int rep = 0; rep < opts.repetitions; ++rep) {
            const u64 seed = 0x88000000ULL + static_cast<u64>(rep) * 1000;
            const writer_rates r = writer_rotation<P>(d, seed, 10);
            out.add("writer_mops_0w", r.w0 * 1e-6, "Mop/s");
            out.add("writer_keep_1w", r.w1 / r.w0, "ratio");
            out.add("writer_keep_4w", r.w4 / r.w0, "ratio");
            // A watcher cut off (V3) stops costing the writer: a keep figure with a cut-off is not one.
            out.add("cutoffs_1w", r.cut1, "watchers");
            out.add("cutoffs_4w", r.cut4, "watchers");
            const std::vector<double> dl = delivery<P>(20'000, 20'000);
            out.add("delivery_p50_ns", dl[dl.size() / 2], "ns");
            out.add("delivery_p99_ns", dl[dl.size() * 99 / 100], "ns");
            out.add("delivery_max_ns", dl.back(), "ns");
            out.add("cas_mops", cas_rate<P>(d), "Mop/s");
            const auto [ms, ok] = resync<P>(n, 2);
            out.add("resync_ms", ms, "ms");
            out.add("replica_equal", ok ? 1 : 0, "bool");
        }
        out.emit(emit, "W8", impl, n, 1);
    });
}

const registrar w8{
    {"W8",
     "change feeds: one writer with 0/1/4 watchers (writer_keep), delivery delay of paced writes, CAS on "
     "16 keys by 2 threads, list N (default 1M) + watch beside 2 writers of 20K writes each (resync_ms) and "
     "the replica's "
     "equality with the final map",
     {"iterlock_feed", "iterlock_feed_pull", "mutex_deque", "tbb_queue"},
     run_w8,
     "mutex_deque",
     {{"iterlock_feed", "snapshot_and_watch: exactly once (V2), writers never wait for a watcher (V3)"},
      {"iterlock_feed_pull",
       "the same with feed_delivery::pull: receivers copy events out of the shard histories"},
      {"mutex_deque", "consistent: the list and the watcher's queue under one mutex"},
      {"tbb_queue", "not consistent: map and queues updated separately"}}}};

}  // namespace
}  // namespace iterlock::bench
