// D1-D4: iterlock::etcd against a real etcd (issue 17). The etcd is one member this program starts on
// loopback (src/etcd/testing/local_etcd.hpp), unless --etcd-endpoints names one.
//   D1  put latency, one thread: put_p50_ns, put_p99_ns (64-byte values over 1,000 keys).
//   D2  compare_and_set latency and success rate, 4 threads on 16 keys, each CAS on the mod_revision
//       its thread last saw in the mirror: cas_p50_ns, cas_p99_ns, cas_success_rate.
//   D3  watch lag across processes: lag_p50_ns, lag_p99_ns, from a put's send in this process to the entry
//       being found in another process's mirror (bench/etcd_lag_observer.cpp; CLOCK_REALTIME, which both
//       processes share). Anchor: etcd's Go client, a watcher process and a writer process
//       (bench/go_anchor, -mode lag-observer / lag-writer), its delivery lag measured the same way.
//   D4  100K entries of 64 bytes: mirror_walk_ms (a snapshot walk of the local mirror, the median of five
//       per repetition), range_walk_ms (one unpaged Range of the prefix at one revision, decoded),
//       resync_ms (a re-list after a compaction past the mirror's resume point, until the mirror is
//       current again).
// Invariants: every workload writes under its own prefix, cleared first; figures are medians over --reps.
// Without iterlock::etcd in the build every run throws `unavailable`.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "registry.hpp"

#if ITERLOCK_BENCH_ETCD
#include "etcd_support.hpp"
#include "iterlock/etcd/detail/mirror_test_access.hpp"
#include "iterlock/etcd/map.hpp"
#include "testing/local_etcd.hpp"
#endif

namespace iterlock::bench {
namespace {

#if ITERLOCK_BENCH_ETCD
namespace etcd = iterlock::etcd;

etcd::client_options client_opts(const options& opts) {
    etcd::client_options o;
    o.endpoints = etcd_endpoints(opts);
    o.call_timeout = std::chrono::seconds(30);
    return o;
}

void require(const std::string& impl) {
    if (impl != "iterlock_etcd") throw unavailable("D1-D4: unknown implementation " + impl);
}

// D1 for the Go client anchor: runs bench/go_anchor's binary against the same endpoints.
void run_d1_go(const options& opts, const emit_fn& emit) {
    const std::string bin = ITERLOCK_ETCD_ANCHOR;
    if (::access(bin.c_str(), X_OK) != 0)
        throw unavailable("go_clientv3: build it first: cmake --build <dir> --target iterlock-etcd-anchor");
    std::string eps;
    for (const auto& e : etcd_endpoints(opts)) eps += (eps.empty() ? "" : ",") + e;
    for (std::size_t n : opts.sizes.empty() ? std::vector<std::size_t>{2000} : opts.sizes) {
        medians m;
        for (int rep = 0; rep < opts.repetitions; ++rep) {
            const std::string cmd = bin + " -endpoints " + eps + " -n " + std::to_string(n);
            FILE* f = ::popen(cmd.c_str(), "r");
            double p50 = 0, p99 = 0;
            const int got = f ? std::fscanf(f, "%lf %lf", &p50, &p99) : 0;
            if (f) ::pclose(f);
            if (got != 2) throw std::runtime_error("go_clientv3: the anchor printed no figures");
            m.add("put_p50_ns", p50, "ns");
            m.add("put_p99_ns", p99, "ns");
        }
        m.emit(emit, "D1", "go_clientv3", n, 1);
    }
}

void run_d1(const std::string& impl, const options& opts, const emit_fn& emit) {
    if (impl == "go_clientv3") return run_d1_go(opts, emit);
    require(impl);
    etcd::client c(client_opts(opts));
    c.erase("d1/", etcd::prefix_end("d1/"));
    const std::string value(64, 'v');
    for (std::size_t n : opts.sizes.empty() ? std::vector<std::size_t>{2000} : opts.sizes) {
        medians m;
        for (int rep = 0; rep < opts.repetitions; ++rep) {
            for (int i = 0; i < 50; ++i) c.put("d1/" + std::to_string(i), value);  // warm-up
            std::vector<double> lat;
            lat.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                const std::string key = "d1/" + std::to_string(i % 1000);
                const auto t0 = now_ns();
                c.put(key, value);
                lat.push_back(static_cast<double>(now_ns() - t0));
            }
            m.add("put_p50_ns", percentile(lat, 0.5), "ns");
            m.add("put_p99_ns", percentile(lat, 0.99), "ns");
        }
        m.emit(emit, "D1", impl, n, 1);
    }
}

void run_d2(const std::string& impl, const options& opts, const emit_fn& emit) {
    require(impl);
    etcd::client c(client_opts(opts));
    c.erase("d2/", etcd::prefix_end("d2/"));
    constexpr std::uint64_t keys = 16;
    etcd::map<std::uint64_t, std::uint64_t> m(c, "d2/");
    std::int64_t r = 0;
    for (std::uint64_t k = 0; k < keys; ++k) r = m.insert_or_assign(k, 0);
    m.wait_applied(r);
    const int threads = opts.threads.empty() ? 4 : opts.threads.front();
    for (std::size_t n : opts.sizes.empty() ? std::vector<std::size_t>{500} : opts.sizes) {
        medians med;
        for (int rep = 0; rep < opts.repetitions; ++rep) {
            std::vector<std::vector<double>> lat(static_cast<std::size_t>(threads));
            std::vector<std::uint64_t> ok(static_cast<std::size_t>(threads));
            std::vector<std::thread> ts;
            for (int t = 0; t < threads; ++t)
                ts.emplace_back([&, t] {
                    splitmix64 rng{static_cast<std::uint64_t>(t) * 7919 + static_cast<std::uint64_t>(rep)};
                    auto& l = lat[static_cast<std::size_t>(t)];
                    for (std::size_t i = 0; i < n; ++i) {
                        const std::uint64_t k = rng() % keys;
                        const auto cur = m.find_versioned(k);  // the mirror's view: may be stale
                        const auto t0 = now_ns();
                        const auto res =
                            m.compare_and_set(k, cur ? cur->mod_revision : 0, cur ? cur->value + 1 : 1);
                        l.push_back(static_cast<double>(now_ns() - t0));
                        ok[static_cast<std::size_t>(t)] += res.succeeded;
                    }
                });
            for (auto& t : ts) t.join();
            std::vector<double> all;
            std::uint64_t succeeded = 0;
            for (int t = 0; t < threads; ++t) {
                all.insert(all.end(), lat[static_cast<std::size_t>(t)].begin(),
                           lat[static_cast<std::size_t>(t)].end());
                succeeded += ok[static_cast<std::size_t>(t)];
            }
            med.add("cas_p50_ns", percentile(all, 0.5), "ns");
            med.add("cas_p99_ns", percentile(all, 0.99), "ns");
            med.add("cas_success_rate", static_cast<double>(succeeded) / static_cast<double>(all.size()),
                    "ratio");
        }
        med.emit(emit, "D2", impl, n, threads);
    }
}

// D3: the observer process (started first, with popen) prints "ready", then "p50 p99" once it saw all n
// entries; `write` puts them meanwhile.
template <class Write>
std::pair<double, double> observe_lag(const std::string& observer_cmd, Write&& write) {
    FILE* f = ::popen(observer_cmd.c_str(), "r");
    if (f == nullptr) throw std::runtime_error("D3: cannot start " + observer_cmd);
    char line[128] = {};
    if (std::fgets(line, sizeof line, f) == nullptr || std::string(line) != "ready\n") {
        ::pclose(f);
        throw std::runtime_error("D3: the observer did not start: " + observer_cmd);
    }
    try {
        write();
    } catch (...) {
        ::pclose(f);  // the observer gives up after 60 s
        throw;
    }
    double p50 = 0, p99 = 0;
    const int got = std::fscanf(f, "%lf %lf", &p50, &p99);
    const int rc = ::pclose(f);
    if (got != 2 || rc != 0) throw std::runtime_error("D3: the observer printed no figures: " + observer_cmd);
    return {p50, p99};
}

std::int64_t realtime_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void run_d3(const std::string& impl, const options& opts, const emit_fn& emit) {
    if (impl != "go_clientv3") require(impl);
    const bool go = impl == "go_clientv3";
    const std::string anchor = ITERLOCK_ETCD_ANCHOR;
    if (go && ::access(anchor.c_str(), X_OK) != 0)
        throw unavailable("go_clientv3: build it first: cmake --build <dir> --target iterlock-etcd-anchor");
    std::string eps;
    for (const auto& e : etcd_endpoints(opts)) eps += (eps.empty() ? "" : ",") + e;
    etcd::client c(client_opts(opts));
    for (std::size_t n : opts.sizes.empty() ? std::vector<std::size_t>{1000} : opts.sizes) {
        medians m;
        for (int rep = 0; rep < opts.repetitions; ++rep) {
            const std::string prefix = std::string(go ? "d3go/" : "d3/") + std::to_string(rep) + "/";
            c.erase(prefix, etcd::prefix_end(prefix));
            const std::string count = std::to_string(n);
            std::pair<double, double> lag;
            if (go) {
                const std::string common =
                    anchor + " -endpoints " + eps + " -prefix " + prefix + " -n " + count;
                lag = observe_lag(common + " -mode lag-observer", [&] {
                    if (std::system((common + " -mode lag-writer").c_str()) != 0)
                        throw std::runtime_error("D3: the Go writer failed");
                });
            } else {
                lag = observe_lag(
                    std::string(ITERLOCK_ETCD_LAG_OBSERVER) + " " + eps + " " + prefix + " " + count, [&] {
                        for (std::size_t i = 0; i < n; ++i)
                            c.put(prefix + etcd::default_codec::encode(std::uint64_t{i}),
                                  etcd::default_codec::encode(realtime_ns()));
                    });
            }
            m.add("lag_p50_ns", lag.first, "ns");
            m.add("lag_p99_ns", lag.second, "ns");
        }
        m.emit(emit, "D3", impl, n, 1);
    }
}

void run_d4(const std::string& impl, const options& opts, const emit_fn& emit) {
    require(impl);
    etcd::client c(client_opts(opts));
    // 64-byte values as a trivially copyable type: the mirror's snapshot walk copies them without
    // allocating (concurrent_map S3), as the "entries of 64 bytes" allow.
    using value64 = std::array<char, 64>;
    using emap = etcd::map<std::uint64_t, value64>;
    constexpr int walks_per_rep = 5;
    for (std::size_t n : opts.sizes.empty() ? std::vector<std::size_t>{100'000} : opts.sizes) {
        const std::string prefix = "d4/" + std::to_string(n) + "/";
        c.erase(prefix, etcd::prefix_end(prefix));
        const std::string value(64, 'v');
        std::int64_t last = 0;
        for (std::size_t i = 0; i < n;) {  // fill in transactions of 128 puts (etcd's --max-txn-ops)
            std::vector<etcd::txn_op> ops;
            for (; i < n && ops.size() < 128; ++i)
                ops.push_back(
                    etcd::txn_op::put(prefix + etcd::default_codec::encode(std::uint64_t{i}), value));
            last = c.txn({}, ops).revision;
        }
        emap m(c, prefix);
        m.wait_applied(last, std::chrono::seconds(60));
        medians med;
        for (int rep = 0; rep < opts.repetitions; ++rep) {
            // A walk of 100K entries takes a few ms, less than one scheduler slice lost to another process
            // on a shared machine: each repetition reports the median of walks_per_rep walks.
            std::vector<double> walks;
            for (int w = 0; w < walks_per_rep; ++w) {
                std::size_t bytes = 0, entries = 0;
                const auto w0 = now_ns();
                {
                    auto s = m.snapshot();
                    for (const auto& [k, v] : s.view) {
                        bytes += v.value.size() * (v.value[63] == 'v');
                        ++entries;
                    }
                }
                walks.push_back(static_cast<double>(now_ns() - w0) / 1e6);
                if (entries != n || bytes != n * 64)
                    throw std::runtime_error("D4: the mirror walk saw the wrong content");
            }
            const double mirror_ms = percentile(walks, 0.5);
            auto t0 = now_ns();
            auto r = c.range(prefix, {.range_end = etcd::prefix_end(prefix), .revision = last});
            const double range_ms = static_cast<double>(now_ns() - t0) / 1e6;
            if (r.kvs.size() != n) throw std::runtime_error("D4: the range saw the wrong content");
            // resync: the mirror disconnected, a write and a compaction past its resume point, reconnect.
            // Whatever path the mirror takes, it must then hold both writes at their revisions (M1). The
            // compaction is physical (the call returns once etcd finished it): with a logical one the
            // reconnect found its resume point intact now and then under CPU load (1 run in 18-60 with two
            // busy threads on a 2-vCPU VM; none in 80 since) and caught up without a resync. Should that
            // still happen, the scenario runs again, up to 5 times (resync_tries).
            using access = etcd::detail::mirror_test_access;
            double resync_ms = -1;
            std::string misses;
            int tries = 0;
            while (tries < 5 && resync_ms < 0) {
                ++tries;
                access::suspend(access::core(m));
                const auto before = m.metrics().compaction_resyncs;
                const auto restarts = m.metrics().watch_restarts;
                const auto r0 = c.put(prefix + etcd::default_codec::encode(std::uint64_t{0}), value);
                const auto w = c.put(prefix + etcd::default_codec::encode(std::uint64_t{1}), value);
                c.compact(w, true);  // everything before w is gone, the resume point with it
                const auto applied_before = m.applied_revision();
                t0 = now_ns();
                access::resume(access::core(m));
                if (!m.wait_applied(w, std::chrono::seconds(60)))
                    throw std::runtime_error("D4: the mirror did not reach the last write within 60 s");
                const double took = static_cast<double>(now_ns() - t0) / 1e6;
                const auto k0 = m.find_versioned(0), k1 = m.find_versioned(1);
                if (!k0 || k0->mod_revision != r0 || !k1 || k1->mod_revision != w)
                    throw std::runtime_error("D4: the mirror missed a write made while it was away (M1)");
                last = w;
                if (m.metrics().compaction_resyncs == before + 1) {
                    resync_ms = took;
                } else {
                    misses += " [resyncs " + std::to_string(before) + " -> " +
                              std::to_string(m.metrics().compaction_resyncs) + ", watch restarts " +
                              std::to_string(restarts) + " -> " + std::to_string(m.metrics().watch_restarts) +
                              ", compacted at " + std::to_string(w) + ", applied before resume " +
                              std::to_string(applied_before) + "]";
                }
            }
            if (resync_ms < 0) throw std::runtime_error("D4: no resync happened in 5 tries:" + misses);
            med.add("mirror_walk_ms", mirror_ms, "ms");
            med.add("range_walk_ms", range_ms, "ms");
            med.add("range_over_mirror", range_ms / mirror_ms, "x");
            med.add("resync_ms", resync_ms, "ms");
            med.add("resync_tries", tries, "tries");  // 1 unless a reconnect caught up without a resync
        }
        med.emit(emit, "D4", impl, n, 1);
    }
}
#else
void run_unavailable(const std::string&, const options&, const emit_fn&) {
    throw unavailable(
        "iterlock::etcd is not part of this build (cmake/etcd.cmake: gRPC, protobuf, etcd's protos)");
}
#define run_d1 run_unavailable
#define run_d2 run_unavailable
#define run_d3 run_unavailable
#define run_d4 run_unavailable
#endif

const registrar d1{{"D1",
                    "etcd put latency, one thread, 64-byte values (anchor: etcd's Go client)",
                    {"iterlock_etcd", "go_clientv3"},
                    run_d1,
                    "go_clientv3",
                    {}}};
const registrar d2{{"D2",
                    "etcd compare_and_set latency and success rate, 4 threads on 16 keys",
                    {"iterlock_etcd"},
                    run_d2,
                    "",
                    {}}};
const registrar d3{{"D3",
                    "etcd watch lag across processes: a put's send to visible in another process's mirror "
                    "(anchor: etcd's Go client's watch delivery)",
                    {"iterlock_etcd", "go_clientv3"},
                    run_d3,
                    "go_clientv3",
                    {}}};
const registrar d4{{"D4",
                    "etcd prefix of 100K x 64 B: mirror snapshot walk vs one unpaged Range at a revision; "
                    "re-list after compaction",
                    {"iterlock_etcd"},
                    run_d4,
                    "",
                    {}}};

}  // namespace
}  // namespace iterlock::bench
