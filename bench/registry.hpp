// iterlock-bench's plug-in point: each workload file registers itself here, the driver (main.cpp)
// parses the command line, runs the selected workloads for the selected implementations and prints
// one row per figure (CSV: workload,impl,size,threads,metric,value,unit).
//
// Invariant: a workload reports medians of its repetitions; it never prints on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace iterlock::bench {

struct options {
    std::vector<std::size_t> sizes;   // --size (empty: the workload's own defaults)
    std::vector<int> threads;         // --threads (empty: the workload's own defaults)
    double duration_s = 0;            // --duration (0: the workload's own default)
    int repetitions = 3;              // --reps
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
    std::string name;                  // e.g. "W1"
    std::string description;           // one line for --list
    std::vector<std::string> impls;    // implementations this workload can run, in display order
    // Runs `impl` with `opts`, emitting one row per figure.
    std::function<void(const std::string& impl, const options& opts, const emit_fn& emit)> run;
};

// The registry: a function-local static so registration from any translation unit is order-safe.
std::vector<workload>& registry();

struct registrar {
    explicit registrar(workload w) { registry().push_back(std::move(w)); }
};

// Median of a small sample (copies; the samples are few).
double median(std::vector<double> v);

}  // namespace iterlock::bench
