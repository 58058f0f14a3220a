// compare_and_set across processes (M4): three client processes (this executable run again in client mode)
// each read two keys linearizably and compare-and-set them on the mod_revision they read, with values no
// one writes twice (so comparing the mod_revision is comparing the value: no ABA). Each process stamps its
// operations with CLOCK_MONOTONIC, which every process of the machine shares, and writes its history to a
// file; this process checks the merged history, one key at a time, with the linearizability checker of
// tests/concurrent (Wing & Gong with Lowe's memo), after checking the checker's cas on hand-made histories.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "support/etcd_sequences.hpp"
#include "support/linearizability.hpp"
#include "testing/local_etcd.hpp"

using namespace iterlock::test;
using etcd::testing::local_etcd;
using iterlock::test::absent;
using iterlock::test::lin_checker;
using iterlock::test::lin_history;
using iterlock::test::lin_op;

namespace {

constexpr int processes = 3, ops_per_process = 60, keys = 2;
constexpr const char* client_env = "ITERLOCK_ETCD_TEST_CAS_CLIENT";  // "index endpoints history-file"

std::uint64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// One line per op: kind key value expected result inv res.
void write_op(std::FILE* f, const lin_op& o) {
    std::fprintf(f, "%d %d %ld %ld %ld %llu %llu\n", static_cast<int>(o.kind), o.key, o.value, o.expected,
                 o.result, static_cast<unsigned long long>(o.inv), static_cast<unsigned long long>(o.res));
}

std::vector<lin_op> read_ops(const std::string& path) {
    std::vector<lin_op> out;
    std::ifstream in(path);
    int kind = 0;
    lin_op o{};
    unsigned long long inv = 0, res = 0;
    while (in >> kind >> o.key >> o.value >> o.expected >> o.result >> inv >> res) {
        o.kind = static_cast<lin_op::kind_t>(kind);
        o.inv = inv;
        o.res = res;
        out.push_back(o);
    }
    return out;
}

// Client mode: runs before main() when the variable is set.
struct client_mode {
    client_mode() {
        const char* spec = std::getenv(client_env);
        if (!spec) return;
        int t = 0;
        char endpoints[256] = {}, path[512] = {};
        if (std::sscanf(spec, "%d %255s %511s", &t, endpoints, path) != 3) std::_Exit(2);
        std::FILE* f = std::fopen(path, "w");
        if (!f) std::_Exit(3);
        try {
            etcd::client_options o;
            for (std::string e, all = endpoints; !all.empty();) {
                const auto comma = all.find(',');
                e = all.substr(0, comma);
                all = comma == std::string::npos ? "" : all.substr(comma + 1);
                o.endpoints.push_back(e);
            }
            etcd::client c(o);
            seq_map m(c, "cas/");  // only for its codec and writes; reads go to etcd (linearizable)
            for (int i = 0; i < ops_per_process; ++i) {
                const int key = (i / 2 + t) % keys;
                lin_op get{};
                get.kind = lin_op::get;
                get.key = key;
                get.inv = monotonic_ns();
                const auto seen = m.find(static_cast<std::uint64_t>(key), etcd::linearizable);
                get.res = monotonic_ns();
                get.result = seen ? static_cast<long>(seen->value) : absent;
                write_op(f, get);
                lin_op cas{};
                cas.kind = lin_op::cas;
                cas.key = key;
                cas.expected = get.result;
                cas.value = (t + 1) * 100'000 + i;  // written once by anyone
                cas.inv = monotonic_ns();
                const auto r =
                    m.compare_and_set(static_cast<std::uint64_t>(key), seen ? seen->mod_revision : 0,
                                      static_cast<std::uint64_t>(cas.value));
                cas.res = monotonic_ns();
                cas.result = r.succeeded ? 1 : 0;
                write_op(f, cas);
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "cas client %d: %s\n", t, e.what());
            std::_Exit(1);
        }
        std::fclose(f);
        std::_Exit(0);
    }
} const client_mode_instance;

lin_op op(lin_op::kind_t k, long expected, long value, long result, std::uint64_t inv, std::uint64_t res) {
    lin_op o{};
    o.kind = k;
    o.key = 0;
    o.expected = expected;
    o.value = value;
    o.result = result;
    o.inv = inv;
    o.res = res;
    return o;
}

// The checker's cas on hand-made histories: it must accept and reject, or the multi-process test could not
// fail.
TEST(EtcdCasLinearizability, M4_CheckerJudgesCompareAndSet) {
    // Two overlapping cas from absent: only one may succeed.
    EXPECT_TRUE(
        lin_checker({{op(lin_op::cas, absent, 1, 1, 1, 4)}, {op(lin_op::cas, absent, 2, 0, 2, 3)}}, {0})
            .check());
    EXPECT_FALSE(
        lin_checker({{op(lin_op::cas, absent, 1, 1, 1, 4)}, {op(lin_op::cas, absent, 2, 1, 2, 3)}}, {0})
            .check());
    // A cas on 1 after a completed cas to 1 must succeed; a read after both must see its value.
    EXPECT_FALSE(
        lin_checker({{op(lin_op::cas, absent, 1, 1, 1, 2), op(lin_op::cas, 1, 5, 0, 3, 4)}}, {0}).check());
    EXPECT_TRUE(lin_checker({{op(lin_op::cas, absent, 1, 1, 1, 2), op(lin_op::cas, 1, 5, 1, 3, 4),
                              op(lin_op::get, 0, 0, 5, 5, 6)}},
                            {0})
                    .check());
    EXPECT_FALSE(lin_checker({{op(lin_op::cas, absent, 1, 1, 1, 2), op(lin_op::cas, 1, 5, 1, 3, 4),
                               op(lin_op::get, 0, 0, 1, 5, 6)}},
                             {0})
                     .check());
}

TEST(EtcdCasLinearizability, M4_ThreeProcessesCompareAndSetLinearizably) {
    local_etcd cluster;
    std::string eps;
    for (const auto& e : cluster.endpoints()) eps += (eps.empty() ? "" : ",") + e;
    const std::string dir = ::testing::TempDir();
    std::vector<std::string> files;
    std::vector<pid_t> pids;
    for (int t = 0; t < processes; ++t) {
        files.push_back(dir + "iterlock_etcd_cas_" + std::to_string(::getpid()) + "_" + std::to_string(t));
        pids.push_back(spawn_self(client_env, std::to_string(t) + " " + eps + " " + files.back()));
        ASSERT_GT(pids.back(), 0);
    }
    for (pid_t p : pids) {
        int st = 0;
        ASSERT_EQ(::waitpid(p, &st, 0), p);
        ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "a client process failed";
    }
    lin_history h;
    std::size_t succeeded = 0, failed = 0;
    for (const auto& f : files) {
        h.push_back(read_ops(f));
        std::remove(f.c_str());
        ASSERT_EQ(h.back().size(), 2u * ops_per_process);
        for (const auto& o : h.back())
            if (o.kind == lin_op::cas) (o.result ? succeeded : failed) += 1;
    }
    for (int k = 0; k < keys; ++k)
        EXPECT_TRUE(lin_checker(h, {k}).check()) << "key " << k << ":\n"
                                                 << iterlock::test::dump_history(h, k);
    EXPECT_GT(succeeded, 0u);
    // Contention happened: some cas lost (three processes on two keys), so the check was not vacuous.
    EXPECT_GT(failed, 0u);
}

}  // namespace
