// iterlock::etcd::iteration_lock across real processes (this executable run again in a child mode): a holder
// killed with SIGKILL mid-walk, a holder stopped with SIGSTOP past its TTL, and walkers against writers on
// four processes with the W5 check (no write inside any guard) and a starvation bound.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "iterlock/etcd/map.hpp"
#include "testing/local_etcd.hpp"

extern char** environ;

namespace {

namespace etcd = iterlock::etcd;
using etcd::testing::local_etcd;
using lmap = etcd::map<std::uint64_t, std::uint64_t, etcd::default_codec, etcd::locked_iteration>;
using namespace std::chrono_literals;

constexpr const char* child_env = "ITERLOCK_ETCD_LOCK_CHILD";  // "mode endpoint prefix outfile ttl_s arg"
constexpr std::uint64_t writes_per_thread = 40;
constexpr int guards_per_thread = 8;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

struct out_file {
    std::mutex mu;
    std::ofstream f;
    explicit out_file(const std::string& p) : f(p, std::ios::app) {}
    void line(const std::string& s) {
        std::lock_guard<std::mutex> g(mu);
        f << s << '\n';
        f.flush();
    }
};

// Child modes. hold: takes a guard and walks forever. holdwrite: takes a guard and writes through it (fenced)
// until a step throws lease_expired (exit 0). writer: two threads write sequences (seq key t<<32|i = i).
// walker: two threads take guards, each checking that nothing changes under it, until <outfile>.stop exists.
int child_main(const std::string& mode, const std::string& endpoint, const std::string& prefix,
               const std::string& path, int ttl, int arg) {
    etcd::client c(etcd::client_options{.endpoints = {endpoint}, .call_timeout = 30s});
    lmap m(c, prefix, {}, etcd::lock_options{.ttl = std::chrono::seconds(ttl)});
    out_file out(path);
    if (mode == "hold") {
        auto g = m.lock_for_iteration();
        out.line("held " + std::to_string(g.revision()));
        for (;;) {
            m.for_each(g, [](std::uint64_t, const etcd::versioned<std::uint64_t>&) {});
            std::this_thread::sleep_for(20ms);
        }
    }
    if (mode == "holdwrite") {
        auto g = m.lock_for_iteration();
        out.line("held " + std::to_string(g.revision()));
        for (std::uint64_t i = 0;; ++i) {
            try {
                g.check();
                const auto rev = m.insert_or_assign(1000 + i, i);
                out.line("w " + std::to_string(i) + " " + std::to_string(rev));
            } catch (const etcd::error& e) {
                if (e.code() != etcd::errc::lease_expired) {
                    out.line(std::string("error ") + e.what());
                    return 3;
                }
                out.line("expired " + std::to_string(i));
                return 0;
            }
            std::this_thread::sleep_for(20ms);
        }
    }
    std::vector<std::thread> ts;
    std::atomic<int> failures{0};
    for (int j = 0; j < 2; ++j) {
        ts.emplace_back([&, j] {
            try {
                if (mode == "writer") {
                    // Start once the walkers hold guards, so that the two overlap on any schedule.
                    const auto give_up = std::chrono::steady_clock::now() + 30s;
                    while (m.lock().view_state().guards == 0 && std::chrono::steady_clock::now() < give_up)
                        std::this_thread::sleep_for(1ms);
                    const std::uint64_t t = static_cast<std::uint64_t>(2 * arg + j);
                    for (std::uint64_t i = 0; i < writes_per_thread; ++i) {
                        const auto t0 = now_ns();
                        const auto rev = m.insert_or_assign(t << 32 | i, i);
                        out.line("w " + std::to_string(rev) + " " + std::to_string(now_ns() - t0));
                    }
                    return;
                }
                // walker: at least guards_per_thread guards, and on until the parent says the writers are
                // done
                for (int n = 0; n < guards_per_thread || !std::ifstream(path + ".stop"); ++n) {
                    auto g = m.lock_for_iteration();
                    const auto t0 = now_ns();
                    std::map<std::uint64_t, std::uint64_t> at_h, count;
                    std::int64_t max_mod = 0;
                    m.for_each(g, [&](std::uint64_t k, const etcd::versioned<std::uint64_t>& v) {
                        at_h[k] = v.value;
                        ++count[k >> 32];
                        max_mod = std::max(max_mod, v.mod_revision);
                        if (v.value != (k & 0xffffffffu)) failures.fetch_add(1);
                    });
                    for (const auto& [t, cnt] : count)  // W5: each writer's sequence is a prefix
                        if (!at_h.count(t << 32 | (cnt - 1))) {
                            out.line("FAIL hole in writer " + std::to_string(t));
                            failures.fetch_add(1);
                        }
                    std::this_thread::sleep_for(10ms);
                    const auto now = c.range(prefix, {.range_end = etcd::prefix_end(prefix)});
                    std::int64_t late = 0;
                    for (const auto& kv : now.kvs) late = std::max(late, kv.mod_revision);
                    if (now.kvs.size() != at_h.size() || late > g.revision()) {
                        out.line("FAIL a write landed inside guard " + std::to_string(g.revision()) +
                                 " (latest mod " + std::to_string(late) + ")");
                        failures.fetch_add(1);
                    }
                    out.line("g " + std::to_string(g.revision()) + " " + std::to_string(g.queued_revision()) +
                             " " + std::to_string(now.revision) + " " + std::to_string(now_ns() - t0));
                }
            } catch (const std::exception& e) {
                out.line(std::string("error ") + e.what());
                failures.fetch_add(1);
            }
        });
    }
    for (auto& t : ts) t.join();
    if (mode == "writer") out.line("c " + std::to_string(m.lock().counters().writes_waited));
    return failures.load() == 0 ? 0 : 4;
}

struct child_mode {
    child_mode() {
        const char* spec = std::getenv(child_env);
        if (!spec) return;
        std::istringstream in(spec);
        std::string mode, endpoint, prefix, path;
        int ttl = 0, arg = 0;
        if (!(in >> mode >> endpoint >> prefix >> path >> ttl >> arg)) std::_Exit(2);
        try {
            std::_Exit(child_main(mode, endpoint, prefix, path, ttl, arg));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child %s: %s\n", mode.c_str(), e.what());
            std::_Exit(1);
        }
    }
} const child_mode_instance;

struct child {
    pid_t pid = -1;
    std::string path;
    ~child() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        if (!path.empty()) std::remove(path.c_str());
    }
    std::vector<std::string> lines() const {
        std::ifstream f(path);
        std::vector<std::string> out;
        for (std::string l; std::getline(f, l);) out.push_back(l);
        return out;
    }
    int wait() {
        int st = 0;
        ::waitpid(pid, &st, 0);
        pid = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
};

void spawn(child& ch, const std::string& mode, const std::string& endpoint, const std::string& prefix,
           int ttl, int arg = 0) {
    static int n = 0;
    ch.path = "/tmp/iterlock-lock-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
    std::remove(ch.path.c_str());
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.push_back(std::string(child_env) + "=" + mode + " " + endpoint + " " + prefix + " " + ch.path + " " +
                  std::to_string(ttl) + " " + std::to_string(arg));
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string self = "/proc/self/exe";
    char* argv[] = {self.data(), nullptr};
    ASSERT_EQ(::posix_spawn(&ch.pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()), 0);
}

template <class P>
bool eventually(P&& pred, std::chrono::seconds limit = 30s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return pred();
}

std::int64_t held_revision(const child& ch) {
    for (const auto& l : ch.lines())
        if (l.rfind("held ", 0) == 0) return std::stoll(l.substr(5));
    return 0;
}

TEST(EtcdIterationLock, DL6_SigkilledHolderMidWalk_WritersResumeWithinTtl) {
    local_etcd cluster;
    constexpr int ttl = 2;
    child holder;
    spawn(holder, "hold", cluster.endpoint(0), "dk/", ttl);
    ASSERT_TRUE(eventually([&] { return held_revision(holder) > 0; }));
    etcd::client c(etcd::client_options{.endpoints = cluster.endpoints()});
    lmap m(c, "dk/", {}, etcd::lock_options{.ttl = std::chrono::seconds(ttl)});
    auto w = std::async(std::launch::async, [&] { return m.insert_or_assign(1, 1); });
    ASSERT_TRUE(eventually([&] { return m.lock().view_state().writers_best_effort == 1; }));
    const auto killed = std::chrono::steady_clock::now();
    ::kill(holder.pid, SIGKILL);
    EXPECT_EQ(holder.wait(), 128 + SIGKILL);
    const auto rev = w.get();
    const auto waited = std::chrono::steady_clock::now() - killed;
    EXPECT_GT(rev, held_revision(holder));
    // The bound the design states: the lease's TTL (etcd's expiry) plus one epsilon for the expiry check
    // (etcd checks leases every 500 ms), the watch event and the write's round trip; epsilon = TTL here.
    EXPECT_LE(waited, std::chrono::seconds(2 * ttl)) << "writers did not resume within TTL + epsilon";
    EXPECT_EQ(
        c.range("iterlock-lock:dk/", {.range_end = etcd::prefix_end("iterlock-lock:dk/"), .count_only = true})
            .count,
        0)
        << "the dead holder left a key behind";
}

TEST(EtcdIterationLock, DL6_SigstoppedHolderPastItsTtl_ItsWritesAreRefused) {
    local_etcd cluster;
    constexpr int ttl = 2;
    child holder;
    spawn(holder, "holdwrite", cluster.endpoint(0), "ds/", ttl);
    ASSERT_TRUE(eventually([&] { return holder.lines().size() >= 4; }));  // held, and fenced writes land
    ::kill(holder.pid, SIGSTOP);
    etcd::client c(etcd::client_options{.endpoints = cluster.endpoints()});
    lmap m(c, "ds/", {}, etcd::lock_options{.ttl = std::chrono::seconds(ttl)});
    const auto rev = m.insert_or_assign(5, 5);  // proceeds once the stopped holder's lease expired
    std::this_thread::sleep_for(300ms);
    ::kill(holder.pid, SIGCONT);
    EXPECT_EQ(holder.wait(), 0) << "the holder's next step after SIGCONT did not throw lease_expired";
    bool expired = false;
    for (const auto& l : holder.lines()) expired |= l.rfind("expired ", 0) == 0;
    EXPECT_TRUE(expired);
    // No fenced write of the stopped holder landed after the lease expired (the other write is after it).
    const auto all = c.range("ds/", {.range_end = etcd::prefix_end("ds/")});
    int from_holder = 0;
    for (const auto& kv : all.kvs) {
        if (kv.key == m.etcd_key(5)) continue;
        ++from_holder;
        EXPECT_LT(kv.mod_revision, rev) << kv.key << ": a fenced write of an expired guard landed";
    }
    EXPECT_GE(from_holder, 3);
}

void four_processes(int members) {
    local_etcd cluster(members);
    constexpr int ttl = 3;
    child procs[4];
    spawn(procs[0], "writer", cluster.endpoint(0 % members), "d4/", ttl, 0);
    spawn(procs[1], "writer", cluster.endpoint(1 % members), "d4/", ttl, 1);
    spawn(procs[2], "walker", cluster.endpoint(2 % members), "d4/", ttl);
    spawn(procs[3], "walker", cluster.endpoint(3 % members), "d4/", ttl);
    EXPECT_EQ(procs[0].wait(), 0) << "a writer process failed";
    EXPECT_EQ(procs[1].wait(), 0) << "a writer process failed";
    for (int i = 2; i < 4; ++i) {
        std::ofstream(procs[i].path + ".stop") << "stop\n";
        EXPECT_EQ(procs[i].wait(), 0) << "a walker process failed";
        std::remove((procs[i].path + ".stop").c_str());
    }
    std::vector<std::int64_t> writes;
    std::int64_t max_wait = 0, max_hold = 0;
    struct guard_span {
        std::int64_t h, q, e;
    };
    std::vector<guard_span> guards;
    std::uint64_t waited = 0;
    for (auto& p : procs)
        for (const auto& l : p.lines()) {
            std::istringstream in(l);
            std::string tag;
            in >> tag;
            if (tag == "w") {
                std::int64_t rev = 0, wait = 0;
                in >> rev >> wait;
                writes.push_back(rev);
                max_wait = std::max(max_wait, wait);
            } else if (tag == "c") {
                std::uint64_t n = 0;
                in >> n;
                waited += n;
            } else if (tag == "g") {
                guard_span s{};
                std::int64_t hold = 0;
                in >> s.h >> s.q >> s.e >> hold;
                guards.push_back(s);
                max_hold = std::max(max_hold, hold);
            } else {
                ADD_FAILURE() << p.path << ": " << l;
            }
        }
    EXPECT_EQ(writes.size(), 4 * writes_per_thread) << "a writer did not finish";
    EXPECT_GE(guards.size(), 4u * guards_per_thread);
    EXPECT_GT(waited, 0u) << "no write ever met a guard: the run proved nothing";
    // D-L1 across processes: no write's revision falls inside a guard (from its fence to its last read).
    for (const auto& s : guards)
        for (const auto w : writes)
            EXPECT_FALSE(w > s.h && w <= s.e) << "write " << w << " inside guard " << s.h;
    // D-L3, no starvation: a writer that waits, waits for the guards held when it registered and those that
    // queued before it: at most one guard per walker thread (4), each held at most max_hold, plus a TTL for
    // a guard whose holder stalls. Stated from the run's own walk time, not a wall-clock constant.
    const std::int64_t bound = 4 * max_hold + std::chrono::nanoseconds(std::chrono::seconds(ttl)).count();
    EXPECT_LE(max_wait, bound) << "a writer waited " << max_wait / 1'000'000 << " ms; bound "
                               << bound / 1'000'000 << " ms";
    std::printf(
        "%d member(s): writes %zu (%lu waited), guards %zu, max write wait %.1f ms, max guard hold %.1f ms\n",
        members, writes.size(), static_cast<unsigned long>(waited), guards.size(),
        static_cast<double>(max_wait) / 1e6, static_cast<double>(max_hold) / 1e6);
}

TEST(EtcdIterationLock, DL1_WalkersAndWritersOnFourProcesses_W5AndNoStarvation) {
    four_processes(1);
}

TEST(EtcdIterationLock, DL1_WalkersAndWritersOnFourProcesses_ThreeMembers) {
    four_processes(3);
}

}  // namespace
