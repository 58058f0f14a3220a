// M0 of iterlock-bench: what the machine charges for sharing a cache line between two cores, the figure
// every cross-thread result (W2, W4, W8, C1-C3) rides on. On this project's 2-vCPU VMs the hypervisor places
// the two vCPUs differently from one VM to the next (the same core type, a neighbour in the same cache
// complex, or far apart), and a feed's or a snapshot's cost to the writer follows the line transfer time,
// not the code. Report M0 beside any cross-thread figure.
//
// Owns: the `M0` workload: `line_round_trip_ns` (two threads pinned apart hand one cache line back and forth:
// one store and one load miss each way per round trip) and `compute_keep` (a dependent integer loop's speed
// beside a busy thread on the other CPU, over its speed alone: below 1 when the two vCPUs share a core).
#include <atomic>
#include <cstdint>
#include <latch>
#include <stdexcept>
#include <thread>

#include "registry.hpp"

namespace iterlock::bench {
namespace {

constexpr int round_trips = 200'000;

// Nanoseconds per round trip of one line between this thread (on CPU 0) and a thread on the other CPUs.
double line_round_trip() {
    alignas(64) std::atomic<std::uint64_t> line{0};
    std::latch start(2);
    std::thread other([&] {
        pin_this_thread(false);
        start.arrive_and_wait();
        for (std::uint64_t i = 0; i < round_trips; ++i) {
            // Acquire/release: each side's store is the other's go-ahead, nothing else is published.
            while (line.load(std::memory_order_acquire) != 2 * i + 1) {
            }
            line.store(2 * i + 2, std::memory_order_release);
        }
    });
    start.arrive_and_wait();
    const std::int64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < round_trips; ++i) {
        line.store(2 * i + 1, std::memory_order_release);
        while (line.load(std::memory_order_acquire) != 2 * i + 2) {
        }
    }
    const std::int64_t t1 = now_ns();
    other.join();
    return static_cast<double>(t1 - t0) / round_trips;
}

// Seconds of a dependent multiply-add chain (no memory traffic).
[[gnu::noinline]] double compute_seconds() {
    std::uint64_t x = 1, y = 2;
    const std::int64_t t0 = now_ns();
    for (int i = 0; i < 50'000'000; ++i) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        y ^= x >> 7;
    }
    const std::int64_t t1 = now_ns();
    if (y == 42) throw std::logic_error("M0: unreachable");  // keeps the chain
    return static_cast<double>(t1 - t0) * 1e-9;
}

// compute_seconds() alone over the same beside a thread spinning on the other CPUs.
double compute_keep() {
    const double alone = compute_seconds();
    std::atomic<bool> stop{false};
    std::thread busy([&] {
        pin_this_thread(false);
        std::uint64_t z = 3;
        // Relaxed: a stop flag, nothing published.
        while (!stop.load(std::memory_order_relaxed)) z = z * 2862933555777941757ULL + 3037000493ULL;
        if (z == 42) std::this_thread::yield();
    });
    const double beside = compute_seconds();
    stop.store(true, std::memory_order_relaxed);
    busy.join();
    return alone / beside;
}

// Runs f() on a thread pinned to CPU 0 (the calling thread keeps its placement) and returns its result.
template <class F>
double on_cpu0(F f) {
    double r = 0;
    bool pinned = false;
    std::thread t([&] {
        pinned = pin_this_thread(true);
        if (pinned) r = f();
    });
    t.join();
    if (!pinned) throw unavailable("M0: could not pin a thread to CPU 0");
    return r;
}

void run_m0(const std::string& impl, const options& opts, const emit_fn& emit) {
    if (impl != "cache_line") throw unavailable("M0: unknown implementation " + impl);
    if (std::thread::hardware_concurrency() < 2)
        throw unavailable("M0 needs two CPUs (this machine has one)");
    medians out;
    for (int rep = 0; rep < opts.repetitions; ++rep) {
        out.add("line_round_trip_ns", on_cpu0(line_round_trip), "ns");
        out.add("compute_keep", on_cpu0(compute_keep), "ratio");
    }
    out.emit(emit, "M0", impl, 0, 2);
}

const registrar m0{{"M0",
                    "the machine: one cache line's round trip between two pinned threads, and a compute "
                    "loop's speed beside a busy thread (read it beside any cross-thread figure)",
                    {"cache_line"},
                    run_m0,
                    "",
                    {{"cache_line", "CPU 0 against the others; compute_keep < 1: the vCPUs share a core"}}}};

}  // namespace
}  // namespace iterlock::bench
