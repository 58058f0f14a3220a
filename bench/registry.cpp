// The registry's storage and the small statistics helpers shared by every workload.
//
// Invariant: `registry()` is a function-local static, so a registrar in any translation unit may run
// before or after this file's own statics.
#include "registry.hpp"

#include <algorithm>
#include <thread>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace iterlock::bench {

std::vector<workload>& registry() {
    static std::vector<workload> all;
    return all;
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    const std::size_t mid = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
    if (v.size() % 2 == 1) return v[mid];
    const double upper = v[mid];
    const double lower = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid));
    return (lower + upper) / 2;
}

void medians::add(const std::string& metric, double value, const std::string& unit) {
    for (auto& s : series_) {
        if (s.metric == metric) {
            s.values.push_back(value);
            return;
        }
    }
    series_.push_back({metric, unit, {value}});
}

void medians::emit(const emit_fn& emit, const std::string& workload, const std::string& impl,
                   std::size_t size, int threads) const {
    for (const auto& s : series_)
        emit(row{workload, impl, size, threads, s.metric, median(s.values), s.unit});
}

bool pin_this_thread(bool first) noexcept {
#if defined(__linux__)
    const unsigned n = std::thread::hardware_concurrency();
    if (n < 2 || n > CPU_SETSIZE) return false;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (first) {
        CPU_SET(0, &set);
    } else {
        for (unsigned c = 1; c < n; ++c) CPU_SET(c, &set);
    }
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
#else
    (void)first;
    return false;
#endif
}

}  // namespace iterlock::bench
