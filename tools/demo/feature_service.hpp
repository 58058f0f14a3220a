// tools/demo/feature_service.hpp: the load iterlock-demo runs: writers stream session updates, an aggregator
// walks every session on a fixed period, and a built-in check counts the walks that were not one instant.
//
// Owns: iterlock_demo::service_config, iterlock_demo::live_counters, iterlock_demo::window_check,
//       iterlock_demo::service_result, iterlock_demo::run_feature_service().
//
// The consistency check. Writer w owns K sessions, keys s*W + w for slots s in [0, K). Its updates carry a
// sequence number that only grows, and update i goes to slot order_w[i mod K], where order_w is a fixed
// random permutation of the K slots (real session updates arrive in no key order; an update stream in key
// order would turn every update of a node-based map into a sequential memory sweep). The prefill writes
// sequence r into slot order_w[r] (in key order), so at every instant writer w's sessions hold exactly the K
// newest sequence numbers [j-K+1, j] of that writer (j = its last finished update). Therefore a walk that
// reflects one instant sees, for every writer, K distinct sequence numbers whose max - min is K-1. A walk
// that sees some updates of w and misses earlier ones (it read slot a before w overwrote it, and slot b after
// w's later update landed) sees a wider spread: that aggregation counts as one violation. (A torn walk may
// happen to look whole; then it is not counted: the count is a lower bound.)
//
// The aggregation's work. A real aggregator does something with each session (the seed's service decays a
// score, buckets it and updates a few window counters: tens of arithmetic operations and a cache miss or
// two into per-user state, 100-200 ns). `work_ns` models that with a dependent chain of multiply-adds,
// calibrated once per process (entry_work), run inside the walk for every entry: the walk holds whatever
// its store holds (a shared lock, the iteration lock, a snapshot) for the whole of it, as a real one does.
//
// Invariants of a run: threads start together behind a latch; the measured window runs from that start to
// the stop signal; with a rate (open loop), an update's latency runs from its batch's arrival to the end of
// its put(), and without one (closed loop) no update is timed; every aggregation that starts is finished,
// checked and counted.
#pragma once

#include <sys/prctl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <latch>
#include <limits>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "contenders.hpp"
#include "latency_histogram.hpp"

namespace iterlock_demo {

// The per-entry work of an aggregation: `steps` dependent multiply-adds, about `ns` nanoseconds in all on
// the machine that calibrated it. The chain is dependent, so it costs latency, not throughput, and the
// compiler cannot fold it (no fast-math). The walk threads one chain through all its entries (each
// entry's work starts from the previous result), so the processor cannot overlap one entry's work with
// the next's and the walk takes its calibrated time.
class entry_work {
  public:
    entry_work() = default;
    // Times a chain (16 probes, about 20 ms in all) and sizes `steps` to take `ns` nanoseconds per entry.
    static entry_work calibrated(double ns) {
        entry_work w;
        if (ns <= 0) return w;
        using clock = std::chrono::steady_clock;
        constexpr std::uint32_t probe = 1u << 20;
        double per_step = 1e9;
        for (int i = 0; i < 16; ++i) {  // the fastest of 16 short probes: a probe that was preempted is slow
            const auto t0 = clock::now();
            volatile double sink = run_steps(0.5, probe);
            (void)sink;
            per_step = std::min(per_step,
                                std::chrono::duration<double, std::nano>(clock::now() - t0).count() / probe);
        }
        w.steps_ = static_cast<std::uint32_t>(std::max(1.0, ns / std::max(per_step, 1e-3)));
        w.ns_ = ns;
        return w;
    }
    double operator()(double x) const noexcept { return steps_ == 0 ? x : run_steps(x, steps_); }
    std::uint32_t steps() const noexcept { return steps_; }
    double ns() const noexcept { return ns_; }

  private:
    // Out of line, so that every contender's walk and the calibration run the same machine code (inlined
    // into a walk's loop, the chain's register could be spilled to the stack in one contender and not in
    // another, and the same work would cost them different times).
    [[gnu::noinline]] static double run_steps(double x, std::uint32_t n) noexcept {
        for (std::uint32_t i = 0; i < n; ++i) x = x * 0.999999 + 1e-6;
        return x;
    }
    std::uint32_t steps_ = 0;
    double ns_ = 0;
};

struct service_config {
    unsigned writers = 2;                         // writer threads (at most 255: the stamp's writer field)
    std::uint64_t sessions = 200'000;             // rounded down to a multiple of `writers`
    std::chrono::milliseconds interval{100};      // aggregation period
    std::chrono::duration<double> duration{7.5};  // measured window
    double rate = 0;  // updates per second per writer (open loop); 0: as fast as possible (closed loop)
    std::chrono::microseconds batch{100};  // open loop: updates arrive in batches this far apart
    entry_work work;  // the aggregation's work per entry (see the top of the file); none by default
    std::uint64_t order_seed = 1;  // seeds the writers' slot permutations
    std::uint64_t per_writer() const { return sessions / writers; }
};

// Writer w's update order: a random permutation of its K slots, fixed by (seed, w).
inline std::vector<std::uint32_t> slot_order(std::uint64_t k, unsigned w, std::uint64_t seed) {
    if (k > std::numeric_limits<std::uint32_t>::max())
        throw std::invalid_argument("too many sessions per writer");
    std::vector<std::uint32_t> order(static_cast<std::size_t>(k));
    for (std::uint64_t i = 0; i < k; ++i) order[i] = static_cast<std::uint32_t>(i);
    std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ULL + w);
    std::shuffle(order.begin(), order.end(), rng);
    return order;
}

// Asks the kernel to wake this thread's sleeps on time (the default slack is 50 us), so an open-loop
// writer's latency is the store's, not the timer's.
inline void quiet_timer_slack() noexcept {
#ifdef PR_SET_TIMERSLACK
    ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
}

// Progress, readable while the run goes on (progress line, /metrics). Relaxed: they are reports, not locks.
struct live_counters {
    std::atomic<std::uint64_t> writes{0};
    std::atomic<std::uint64_t> aggregations{0};
    std::atomic<std::uint64_t> violations{0};
    std::atomic<bool> running{false};
};

// Per-aggregation bookkeeping of the consistency check (see the top of the file). Not thread-safe: one
// aggregator owns one.
class window_check {
  public:
    window_check(unsigned writers, std::uint64_t per_writer) : per_writer_(per_writer), w_(writers) {}

    void begin() {
        for (auto& w : w_) w = {};
        foreign_ = 0;
    }
    void see(std::uint64_t stamp) noexcept {
        const unsigned w = stamp_writer(stamp);
        if (w >= w_.size()) {
            ++foreign_;
            return;
        }
        const std::uint64_t seq = stamp_seq(stamp);
        auto& s = w_[w];
        s.min = std::min(s.min, seq);
        s.max = std::max(s.max, seq);
        ++s.count;
    }
    // Whether the walk since begin() could have been one instant.
    bool consistent() const noexcept {
        if (foreign_ != 0) return false;
        for (const auto& s : w_)
            if (s.count != per_writer_ || s.max - s.min != per_writer_ - 1) return false;
        return true;
    }

  private:
    struct window {
        std::uint64_t min = std::numeric_limits<std::uint64_t>::max();
        std::uint64_t max = 0;
        std::uint64_t count = 0;
    };
    std::uint64_t per_writer_;
    std::vector<window> w_;
    std::uint64_t foreign_ = 0;
};

struct service_result {
    std::uint64_t aggregations = 0;
    std::uint64_t violations = 0;
    std::uint64_t writer_ops = 0;
    double seconds = 0;          // the measured window
    double prefill_seconds = 0;  // filling the sessions before the window
    latency_histogram write_latency;
    latency_histogram aggregation_time;
    double writer_ops_per_s() const { return seconds > 0 ? static_cast<double>(writer_ops) / seconds : 0; }
};

inline double score_of(std::uint64_t seq) noexcept {
    return static_cast<double>(seq & 1023) / 1024.0;
}

// Runs the feature service against `store` (prefill, then cfg.duration of load). `tick(elapsed_seconds)` is
// called from the calling thread about four times a second while the load runs (progress display).
template <class Store>
service_result run_feature_service(Store& store, const service_config& cfg, live_counters& live,
                                   const std::function<void(double)>& tick) {
    using clock = std::chrono::steady_clock;
    if (cfg.writers == 0 || cfg.writers > 255) throw std::invalid_argument("writers must be in [1, 255]");
    const std::uint64_t k = cfg.per_writer();
    if (k < 2) throw std::invalid_argument("need at least 2 sessions per writer");
    const unsigned nw = cfg.writers;

    service_result res;
    const auto p0 = clock::now();
    store.reserve(static_cast<std::size_t>(k * nw));
    // The prefill goes in key order, each slot getting the sequence number its place in the writer's order
    // gives it. (Filling in the writers' update order instead would lay a node-based map's nodes out in the
    // order the updates visit them, and every update would again be a sequential sweep.)
    std::vector<std::vector<std::uint32_t>> order(nw);
    for (unsigned w = 0; w < nw; ++w) order[w] = slot_order(k, w, cfg.order_seed);
    {
        std::vector<std::vector<std::uint32_t>> place(
            nw, std::vector<std::uint32_t>(static_cast<std::size_t>(k)));
        for (unsigned w = 0; w < nw; ++w)
            for (std::uint64_t r = 0; r < k; ++r) place[w][order[w][r]] = static_cast<std::uint32_t>(r);
        for (std::uint64_t slot = 0; slot < k; ++slot)
            for (unsigned w = 0; w < nw; ++w) {
                const std::uint64_t r = place[w][slot];
                store.prefill(slot * nw + w, session{make_stamp(w, r), score_of(r)});
            }
    }
    res.prefill_seconds = std::chrono::duration<double>(clock::now() - p0).count();

    std::atomic<bool> stop{false};
    std::latch start(nw + 2);  // writers, the aggregator, this thread
    std::vector<latency_histogram> write_lat(nw);
    std::vector<std::uint64_t> write_ops(nw, 0);

    std::vector<std::thread> threads;
    for (unsigned w = 0; w < nw; ++w) {
        threads.emplace_back([&, w] {
            latency_histogram& lat = write_lat[w];
            const std::vector<std::uint32_t>& my_order = order[w];
            std::uint64_t seq = k, idx = 0, ops = 0;  // the prefill wrote sequences [0, k); idx = seq mod k
            // Open loop: updates arrive in batches every cfg.batch (a consumer's poll); update number `ops`
            // is due when its batch arrives, and its latency counts from then, so time spent blocked delays
            // (and is charged to) every update that fell due meanwhile.
            const bool open = cfg.rate > 0;
            const std::uint64_t per_batch =
                open ? std::max<std::uint64_t>(
                           1, static_cast<std::uint64_t>(cfg.rate *
                                                         std::chrono::duration<double>(cfg.batch).count()))
                     : 1;
            const auto batch_period = std::chrono::duration_cast<clock::duration>(
                std::chrono::duration<double>(open ? static_cast<double>(per_batch) / cfg.rate : 0));
            if (open) quiet_timer_slack();
            start.arrive_and_wait();
            const auto w_start = clock::now();
            auto due = w_start;
            while (!stop.load(std::memory_order_relaxed)) {
                const key_type key = my_order[idx] * std::uint64_t{nw} + w;
                const session s{make_stamp(w, seq), score_of(seq)};
                if (open) {
                    if (ops % per_batch == 0) {
                        due = w_start + batch_period * static_cast<clock::rep>(ops / per_batch);
                        if (clock::now() < due) std::this_thread::sleep_until(due);
                    }
                    store.put(key, s);
                    lat.record(static_cast<std::uint64_t>(
                        std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - due).count()));
                } else {
                    store.put(key, s);  // closed loop: capacity, no clock reads in the way
                }
                ++seq;
                if (++idx == k) idx = 0;
                if ((++ops & 1023) == 0) live.writes.fetch_add(1024, std::memory_order_relaxed);
            }
            live.writes.fetch_add(ops & 1023, std::memory_order_relaxed);
            write_ops[w] = ops;
        });
    }
    threads.emplace_back([&] {
        window_check check(nw, k);
        volatile double sink = 0;  // keeps the aggregation's sum alive
        start.arrive_and_wait();
        auto next = clock::now();
        while (!stop.load(std::memory_order_relaxed)) {
            const auto t0 = clock::now();
            double sum = 0;
            check.begin();
            store.walk([&](key_type, std::uint64_t stamp, double score) {
                check.see(stamp);
                sum = cfg.work(sum + score);  // one chain through the walk: the work cannot overlap
            });
            const auto t1 = clock::now();
            sink = sum;
            res.aggregation_time.record(static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
            ++res.aggregations;
            live.aggregations.fetch_add(1, std::memory_order_relaxed);
            if (!check.consistent()) {
                ++res.violations;
                live.violations.fetch_add(1, std::memory_order_relaxed);
            }
            next += cfg.interval;
            if (next < t1) next = t1;  // an aggregation longer than the period: start the next one at once
            while (!stop.load(std::memory_order_relaxed) && clock::now() < next)
                std::this_thread::sleep_for(
                    std::min<clock::duration>(next - clock::now(), std::chrono::milliseconds(5)));
        }
        (void)sink;
    });

    live.running.store(true, std::memory_order_relaxed);
    start.arrive_and_wait();
    const auto t_start = clock::now();
    const auto deadline = t_start + std::chrono::duration_cast<clock::duration>(cfg.duration);
    for (auto now = clock::now(); now < deadline; now = clock::now()) {
        std::this_thread::sleep_for(
            std::min<clock::duration>(deadline - now, std::chrono::milliseconds(250)));
        tick(std::chrono::duration<double>(clock::now() - t_start).count());
    }
    stop.store(true, std::memory_order_relaxed);
    const auto t_stop = clock::now();
    for (auto& t : threads) t.join();
    live.running.store(false, std::memory_order_relaxed);

    res.seconds = std::chrono::duration<double>(t_stop - t_start).count();
    for (unsigned w = 0; w < nw; ++w) {
        res.write_latency.merge(write_lat[w]);
        res.writer_ops += write_ops[w];
    }
    return res;
}

}  // namespace iterlock_demo
