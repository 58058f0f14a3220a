// iterlock-etcd-lag-observer: D3's second process (bench/workloads_etcd.cpp). It opens an
// iterlock::etcd::map<uint64_t, int64_t> on a prefix, prints "ready" once its mirror's watch delivers, then
// waits for the entries 0 .. n-1 that the writer process puts, each valued with its send time (CLOCK_REALTIME
// ns, the clock both processes share). For each entry, lag = the time this process first finds it in its
// mirror (after wait_applied wakes it) minus its send time. Prints "p50_ns p99_ns" and exits 0; exits 1
// if the entries did not all arrive within 60 s. With ITERLOCK_D3_COLD_START set in its environment it prints
// "ready" as soon as the map is constructed, so the lags include the watch's start (docs/ETCD.md, M2).
//
// Usage: iterlock-etcd-lag-observer ENDPOINTS(comma-separated) PREFIX N
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "iterlock/etcd/map.hpp"

namespace {
std::int64_t realtime_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s ENDPOINTS PREFIX N\n", argv[0]);
        return 2;
    }
    namespace etcd = iterlock::etcd;
    etcd::client_options o;
    std::stringstream ss(argv[1]);
    for (std::string e; std::getline(ss, e, ',');)
        if (!e.empty()) o.endpoints.push_back(e);
    const std::uint64_t n = std::strtoull(argv[3], nullptr, 10);
    etcd::client c(o);
    etcd::map<std::uint64_t, std::int64_t> m(c, argv[2]);
    // Ready once the watch delivers: a marker entry (key n, after the measured ones) written and seen in the
    // mirror. A watch created behind etcd's head is "unsynced" and caught up on etcd's 100 ms cycle
    // (docs/ETCD.md, M2); D3 measures the steady state, as the Go anchor does (ready once its watch is
    // created, from the head).
    if (std::getenv("ITERLOCK_D3_COLD_START") == nullptr &&
        !m.wait_applied(m.insert_or_assign(n, 0), std::chrono::seconds(10))) {
        std::fprintf(stderr, "lag observer: the mirror's watch did not deliver within 10 s\n");
        return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    std::vector<double> lag;
    lag.reserve(n);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::uint64_t next = 0;
    while (next < n && std::chrono::steady_clock::now() < give_up) {
        m.wait_applied(m.applied_revision() + 1, std::chrono::milliseconds(100));
        for (auto v = m.find(next); v && next < n; v = m.find(next)) {
            lag.push_back(static_cast<double>(realtime_ns() - *v));
            ++next;
        }
    }
    if (next < n) {
        std::fprintf(stderr, "lag observer: %llu of %llu entries arrived\n",
                     static_cast<unsigned long long>(next), static_cast<unsigned long long>(n));
        return 1;
    }
    std::sort(lag.begin(), lag.end());
    const auto at = [&](double p) {
        return lag[static_cast<std::size_t>(p * static_cast<double>(n - 1) + 0.5)];
    };
    std::printf("%.0f %.0f\n", at(0.5), at(0.99));
    return 0;
}
