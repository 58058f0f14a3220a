// bench/etcd_support.hpp: what the etcd workloads (D1-D4 in workloads_etcd.cpp, D5-D6 in
// workloads_etcd_lock.cpp) share: the endpoints they run against and the percentile of a sample.
//
// Owns: iterlock::bench::etcd_endpoints(), iterlock::bench::percentile().
// Invariants: without --etcd-endpoints, one single-member etcd is started for the whole run (on first use,
//       under a mutex) and every workload uses it; it stops when the process exits.
#pragma once

#include <algorithm>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "registry.hpp"
#include "testing/local_etcd.hpp"

namespace iterlock::bench {

// --etcd-endpoints (comma-separated), or the run's own member.
inline std::vector<std::string> etcd_endpoints(const options& opts) {
    std::vector<std::string> out;
    if (!opts.etcd_endpoints.empty()) {
        std::stringstream ss(opts.etcd_endpoints);
        for (std::string e; std::getline(ss, e, ',');)
            if (!e.empty()) out.push_back(e);
        return out;
    }
    static std::unique_ptr<etcd::testing::local_etcd> local;
    static std::mutex mu;
    std::lock_guard<std::mutex> g(mu);
    if (!local) local = std::make_unique<etcd::testing::local_etcd>(1);
    return local->endpoints();
}

// The p-quantile of v (nearest rank); 0 for an empty sample.
inline double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

}  // namespace iterlock::bench
