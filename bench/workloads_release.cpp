// W7: what ending snapshots costs (issue 13, item 8). N snapshots of one map are taken with G writes
// before each, then released in one order (oldest first, newest first, random) while a writer thread keeps
// writing. Reports the time of each release and the writer's worst write latency during the releases,
// against its worst latency during an equally long phase with the same snapshots alive and idle.
//
// Invariants: keys are mix64(i) over a keyspace of 200K (100K prefilled); the writer starts before the
// phase it measures and stops after it; the snapshots' instants are checked once (a survivor's walk
// still holds its count of entries) so a broken release cannot pass for a fast one.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "iterlock/concurrent_map.hpp"
#include "registry.hpp"

namespace iterlock::bench {
namespace {

using u64 = std::uint64_t;
using snap_map = iterlock::concurrent_map<u64, u64>;
constexpr u64 keyspace = 200'000;
constexpr int gap_writes = 200;  // writes between two snapshots (the setting)

// A writer of random keys that records its largest write latency while running.
class writer_thread {
  public:
    writer_thread(snap_map& m, u64 seed)
        : thread_([this, &m, seed] {
              splitmix64 rng{seed};
              while (!stop_.load(std::memory_order_acquire)) {
                  const u64 r = rng();
                  const std::int64_t t0 = now_ns();
                  m.insert_or_assign(mix64(r % keyspace), r);
                  const std::int64_t dt = now_ns() - t0;
                  if (measuring_.load(std::memory_order_relaxed) && dt > max_) max_ = dt;
              }
          }) {}
    ~writer_thread() { stop(); }
    writer_thread(const writer_thread&) = delete;
    writer_thread& operator=(const writer_thread&) = delete;
    void measure(bool on) { measuring_.store(on, std::memory_order_relaxed); }
    // Stops the thread; returns the largest latency measured (ns).
    std::int64_t stop() {
        stop_.store(true, std::memory_order_release);
        if (thread_.joinable()) thread_.join();
        return max_;
    }

  private:
    std::atomic<bool> stop_{false};
    std::atomic<bool> measuring_{false};
    std::int64_t max_ = 0;  // written by the thread, read after join
    std::thread thread_;
};

struct release_result {
    std::vector<double> release_ns;
    std::int64_t writer_idle_max_ns = 0;
    std::int64_t writer_releasing_max_ns = 0;
};

release_result w7_round(std::size_t live, const std::string& order, u64 seed) {
    auto m = std::make_unique<snap_map>();
    for (u64 i = 0; i < keyspace / 2; ++i) m->insert_or_assign(mix64(i), i);
    splitmix64 rng{seed};
    std::vector<std::optional<snap_map::snapshot_view>> snaps;
    snaps.reserve(live);
    for (std::size_t i = 0; i < live; ++i) {
        for (int w = 0; w < gap_writes; ++w) m->insert_or_assign(mix64(rng() % keyspace), rng());
        snaps.emplace_back(m->snapshot());
    }
    std::vector<std::size_t> idx(live);
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    if (order == "newest_first") std::reverse(idx.begin(), idx.end());
    if (order == "random") {
        std::mt19937_64 shuffle_rng(seed);
        std::shuffle(idx.begin(), idx.end(), shuffle_rng);
    }
    const std::size_t survivor_size = snaps[idx.back()]->size();

    release_result r;
    writer_thread writer(*m, seed + 1);
    // Idle phase: the snapshots live, nobody releases; as long as the release phase is expected to take
    // (at least 50 ms), so both maxima come from comparable numbers of writes.
    writer.measure(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + static_cast<int>(live / 10)));
    writer.measure(false);
    r.writer_idle_max_ns = writer.stop();

    writer_thread writer2(*m, seed + 2);
    writer2.measure(true);
    for (std::size_t j = 0; j < live; ++j) {
        if (j + 1 == live) {  // the last survivor still holds its instant (a walk, not a probe)
            std::size_t n = 0;
            for (auto it = snaps[idx[j]]->begin(); it != snaps[idx[j]]->end(); ++it) ++n;
            if (n != survivor_size) throw std::runtime_error("W7: a snapshot changed while others ended");
        }
        const std::int64_t t0 = now_ns();
        snaps[idx[j]].reset();
        r.release_ns.push_back(static_cast<double>(now_ns() - t0));
    }
    writer2.measure(false);
    r.writer_releasing_max_ns = writer2.stop();
    if (m->preserved_bytes() != 0)
        throw std::runtime_error("W7: preserved bytes left after the last release");
    return r;
}

void run_w7(const std::string& impl, const options& opts, const emit_fn& emit) {
    if (impl != "iterlock_snapshot") throw std::invalid_argument("W7 runs iterlock_snapshot only");
    for (std::size_t live : opts.sizes.empty() ? std::vector<std::size_t>{50, 200, 1000} : opts.sizes) {
        medians out;
        for (int rep = 0; rep < opts.repetitions; ++rep) {
            for (const std::string order : {"oldest_first", "random", "newest_first"}) {
                const release_result r = w7_round(live, order, 0x77000000ULL + static_cast<u64>(rep));
                const double total = std::accumulate(r.release_ns.begin(), r.release_ns.end(), 0.0);
                out.add("release_" + order + "_mean_ns", total / static_cast<double>(live), "ns");
                out.add("release_" + order + "_max_ns",
                        *std::max_element(r.release_ns.begin(), r.release_ns.end()), "ns");
                out.add("writer_idle_" + order + "_max_ns", static_cast<double>(r.writer_idle_max_ns), "ns");
                out.add("writer_releasing_" + order + "_max_ns",
                        static_cast<double>(r.writer_releasing_max_ns), "ns");
            }
        }
        out.emit(emit, "W7", impl, live, 2);
    }
}

const registrar w7{
    {"W7",
     "ending snapshots: N live snapshots (default 50, 200, 1000) with 200 writes before each are "
     "released oldest first, at random and newest first beside a writer; release time and the "
     "writer's worst latency, against the same snapshots idle",
     {"iterlock_snapshot"},
     run_w7,
     "",
     {}}};

}  // namespace
}  // namespace iterlock::bench
