// iterlock-bench's plug-in point: each workload file registers itself here, the driver (main.cpp)
// parses the command line, runs the selected workloads for the selected implementations and prints
// one row per figure (CSV: workload,impl,size,threads,metric,value,unit).
//
// Invariants: a workload reports medians of its repetitions; it never prints on its own (progress and
// notes go to stderr through the driver). An implementation that this build lacks throws `unavailable`
// from `run`; the driver reports it as pending instead of failing.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace iterlock::bench {

struct options {
    std::vector<std::size_t> sizes;  // --size (empty: the workload's own defaults)
    std::vector<int> threads;        // --threads (empty: the workload's own defaults)
    double duration_s = 0;           // --duration (0: the workload's own default)
    int repetitions = 3;             // --reps
    std::string etcd_endpoints;      // --etcd-endpoints (empty: the etcd workloads start their own member)
};

struct row {
    std::string workload;
    std::string impl;
    std::size_t size = 0;
    int threads = 1;
    std::string metric;
    double value = 0;
    std::string unit;
};

using emit_fn = std::function<void(row)>;

struct workload {
    std::string name;                // e.g. "W1"
    std::string description;         // one line for --list
    std::vector<std::string> impls;  // implementations this workload can run, in display order
    // Runs `impl` with `opts`, emitting one row per figure.
    std::function<void(const std::string& impl, const options& opts, const emit_fn& emit)> run;
    // The implementation the table's ratio column divides by (empty: no ratio column).
    std::string baseline;
    // Optional one-line note per implementation, shown in the tables and by --list (for the concurrent
    // workloads: the peer's iteration guarantee).
    std::map<std::string, std::string> notes;
};

// Thrown by `workload::run` when `impl` is not compiled into this build (e.g. its header is missing).
struct unavailable : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The registry: a function-local static so registration from any translation unit is order-safe.
std::vector<workload>& registry();

struct registrar {
    explicit registrar(workload w) { registry().push_back(std::move(w)); }
};

// Median of a small sample (copies; the samples are few). The median of an empty sample is 0.
double median(std::vector<double> v);

// Collects one value per repetition for each metric, then emits their medians in first-seen order.
class medians {
  public:
    void add(const std::string& metric, double value, const std::string& unit);
    void emit(const emit_fn& emit, const std::string& workload, const std::string& impl, std::size_t size,
              int threads) const;

  private:
    struct series {
        std::string metric;
        std::string unit;
        std::vector<double> values;
    };
    std::vector<series> series_;
};

// splitmix64's output function: a bijection on 64-bit words with good avalanche. Workloads use
// mix64(i) as the i-th key of a keyspace, so keys look random to every hash (identity hashes included)
// yet never repeat.
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// The splitmix64 stream: a fixed seed gives the same keys on every run and every machine.
struct splitmix64 {
    std::uint64_t state;
    constexpr std::uint64_t operator()() noexcept { return mix64(state += 0x9e3779b97f4a7c15ULL); }
};

// Monotonic nanoseconds (steady_clock; about 20 ns a call on Linux x86-64).
inline std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Thread placement for latency figures: pins the calling thread to CPU 0 alone (`first` true) or to every
// CPU but 0 (`first` false), so that a writer and the threads it is measured against never share a core
// by the scheduler's choice. Returns false, changing nothing, on a one-CPU machine or where the call fails.
bool pin_this_thread(bool first) noexcept;

}  // namespace iterlock::bench
