// iterlock::etcd::map across processes: three writer processes (this executable run again in writer mode)
// write sequences while this process's mirror walks; every snapshot the walker takes is an exact prefix of
// each writer's sequence and equals etcd at its label (M1, across processes).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "support/etcd_sequences.hpp"
#include "testing/local_etcd.hpp"

using namespace iterlock::test;
using etcd::testing::local_etcd;

namespace {

constexpr std::uint64_t per_writer = 120;
constexpr const char* writer_env = "ITERLOCK_ETCD_TEST_WRITER";  // "writer-index endpoint prefix"

// Writer mode: runs before main() when the variable is set, writes its sequence and exits.
struct writer_mode {
    writer_mode() {
        const char* spec = std::getenv(writer_env);
        if (!spec) return;
        std::uint64_t t = 0;
        char endpoint[128] = {}, prefix[64] = {};
        if (std::sscanf(spec, "%lu %127s %63s", &t, endpoint, prefix) != 3) std::_Exit(2);
        try {
            etcd::client_options o;
            o.endpoints = {endpoint};
            etcd::client c(o);
            write_sequence(c, prefix, t, 0, per_writer);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "writer %lu: %s\n", t, e.what());
            std::_Exit(1);
        }
        std::_Exit(0);
    }
} const writer_mode_instance;

pid_t spawn_writer(std::uint64_t t, const std::string& endpoint, const std::string& prefix) {
    return spawn_self(writer_env, std::to_string(t) + " " + endpoint + " " + prefix);
}

TEST(EtcdMultiProcess, M1_ThreeWriterProcessesOneWalker) {
    local_etcd cluster;
    etcd::client c({.endpoints = cluster.endpoints()});
    seq_map m(c, "mp/");
    std::vector<pid_t> pids;
    for (std::uint64_t t = 0; t < 3; ++t) {
        pids.push_back(spawn_writer(t, cluster.endpoint(0), "mp/"));
        ASSERT_GT(pids.back(), 0);
    }
    auto running = [&] {
        for (auto& p : pids) {
            if (p <= 0) continue;
            int st = 0;
            if (::waitpid(p, &st, WNOHANG) == p) {
                EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "a writer process failed";
                p = 0;
            }
        }
        return std::any_of(pids.begin(), pids.end(), [](pid_t p) { return p > 0; });
    };
    int snapshots = 0;
    while (running()) {
        auto s = m.snapshot();
        expect_exact_prefixes(s.view, "walker snapshot");
        if (snapshots++ % 8 == 0) expect_equals_etcd(m, s);
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    const auto latest = c.range("mp/", {.range_end = etcd::prefix_end("mp/"), .count_only = true});
    ASSERT_TRUE(m.wait_applied(latest.revision));
    auto s = m.snapshot();
    auto counts = expect_exact_prefixes(s.view, "final");
    for (std::uint64_t t = 0; t < 3; ++t) EXPECT_EQ(counts[t], per_writer);
    expect_equals_etcd(m, s);
    EXPECT_GT(snapshots, 3);
    EXPECT_EQ(m.metrics().duplicate_events, 0u);
}

}  // namespace
