// D5-D6: the iteration lock across processes on etcd (issue 18; iterlock/etcd/iteration_lock.hpp), against
// etcd's lock recipe (concurrency.Mutex: a key per acquirer on a lease, the waiter watching its predecessor
// from the revision of its Get), ported here as `etcd_mutex` so both run on the same client and member. The
// etcd is one member this program starts (src/etcd/testing/local_etcd.hpp) unless --etcd-endpoints names
// one. The other processes are this program run again in a child mode (ITERLOCK_BENCH_LOCK_CHILD).
//   D5  acquire_p50_ns: an uncontended acquire plus release (iterlock_etcd: a guard; etcd_mutex: Lock +
//       Unlock). handoff_p50_ns / handoff_p99_ns: from the holder's release call to the return of the
//       waiting process's acquire (iterlock_etcd: the waiter is a put blocked by the guard, which returns
//       when its view shows the release applied its put, the hand-off; etcd_mutex: its Lock), the waiter
//       queued 150 ms before the release; handoff_short_p50_ns: the waiter asked 3 ms before the release.
//       go_concurrency: the anchor, etcd's own recipe in Go (bench/go_anchor_lock, target
//       iterlock-etcd-lock-anchor), timed the same way, holder and waiter on two clients of one Go process.
//   D6  writer_keep: the write throughput of 3 writer processes (one closed-loop writer each, 1,000 keys
//       each) while this process takes a guard every second and walks the prefix under it, as a ratio to
//       the same run without the walker. iterlock_etcd: gated writes; etcd_mutex: one recipe Lock around
//       every write, and the walker walks under the same mutex. Also writes_per_s (no walker),
//       writes_per_s_walked, and walk_hold_p50_ms (from asking for the guard to releasing it).
// Invariants: each run uses its own prefixes, cleared first; figures are medians over --reps; runs with
// and without the walker alternate within each repetition.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
#include "iterlock/etcd/map.hpp"
#include "testing/local_etcd.hpp"
#endif

extern char** environ;

namespace iterlock::bench {
namespace {

#if ITERLOCK_BENCH_ETCD
namespace etcd = iterlock::etcd;
using lmap = etcd::map<std::uint64_t, std::uint64_t, etcd::default_codec, etcd::locked_iteration>;
using namespace std::chrono_literals;

constexpr const char* child_env = "ITERLOCK_BENCH_LOCK_CHILD";

std::int64_t mono_ns() {  // CLOCK_MONOTONIC: one clock for every process of the machine
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// etcd's concurrency.Mutex (clientv3/concurrency/mutex.go, 3.4), the same steps on our client: a key
// pfx/<lease> put if absent with the lease; the holder is the key with the lowest create revision; a waiter
// gets the last key created before its own and watches it for its delete from the Get's revision.
class recipe_mutex {
  public:
    recipe_mutex(etcd::client& c, std::string pfx, std::int64_t lease)
        : c_(c), pfx_(std::move(pfx)), key_(pfx_ + std::to_string(lease)), lease_(lease) {}
    void lock() {
        etcd::compare absent{key_, etcd::compare::target::create_revision, etcd::compare::op::equal, 0};
        auto r = c_.txn({absent}, {etcd::txn_op::put(key_, {}, lease_)}, {etcd::txn_op::range(key_)});
        const std::int64_t mine = r.succeeded ? r.revision : r.ranges.at(0).kvs.at(0).create_revision;
        for (;;) {  // waitDeletes(pfx, mine - 1)
            auto all = c_.range(pfx_, {.range_end = etcd::prefix_end(pfx_)});
            const etcd::key_value* last = nullptr;
            for (const auto& kv : all.kvs)
                if (kv.create_revision < mine && (!last || kv.create_revision > last->create_revision))
                    last = &kv;
            if (!last) return;
            auto w = c_.watch({.key = last->key, .start_revision = all.revision});
            etcd::watch_batch b;
            bool gone = false;
            while (!gone && w->next(b))
                for (const auto& e : b.events) gone |= e.what == etcd::event::kind::erase;
        }
    }
    void unlock() { c_.erase(key_); }

  private:
    etcd::client& c_;
    std::string pfx_, key_;
    std::int64_t lease_;
};

// The lock a D5/D6 process contends on under `prefix`: for iterlock_etcd the map (data under prefix/data/)
// with its iteration lock under prefix/lock/; otherwise the recipe's mutex under prefix/mutex/ on a fresh
// 60 s lease. Exactly one of the two is set.
struct contended_lock {
    std::unique_ptr<lmap> m;
    std::unique_ptr<recipe_mutex> mu;
};

contended_lock make_contended_lock(etcd::client& c, const std::string& impl, const std::string& prefix) {
    contended_lock l;
    if (impl == "iterlock_etcd")
        l.m = std::make_unique<lmap>(c, prefix + "data/", etcd::map_options{},
                                     etcd::lock_options{.prefix = prefix + "lock/", .ttl = 30s});
    else
        l.mu = std::make_unique<recipe_mutex>(c, prefix + "mutex/", c.lease_grant(60).id);
    return l;
}

// ---- child processes ----

std::string self_exe() {
    char buf[4096];
    const auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) throw std::runtime_error("D5/D6: /proc/self/exe unreadable");
    return std::string(buf, static_cast<std::size_t>(n));
}

struct child_proc {
    pid_t pid = -1;
    FILE* in = nullptr;   // its stdin
    FILE* out = nullptr;  // its stdout
    ~child_proc() {
        if (in) std::fclose(in);
        if (out) std::fclose(out);
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    }
    std::string read_line() {
        char buf[256];
        if (!out || !std::fgets(buf, sizeof buf, out))
            throw std::runtime_error("D5/D6: a child process died");
        return buf;
    }
    void send(const char* s) {
        std::fputs(s, in);
        std::fflush(in);
    }
};

void spawn_child(child_proc& ch, const std::string& spec) {
    int to[2], from[2];
    if (::pipe(to) != 0 || ::pipe(from) != 0) throw std::runtime_error("D5/D6: pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    posix_spawn_file_actions_addclose(&fa, to[1]);
    posix_spawn_file_actions_addclose(&fa, from[0]);
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.push_back(std::string(child_env) + "=" + spec);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string exe = self_exe();
    char* argv[] = {exe.data(), nullptr};
    const int rc = ::posix_spawn(&ch.pid, exe.c_str(), &fa, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&fa);
    ::close(to[0]);
    ::close(from[1]);
    if (rc != 0) throw std::runtime_error("D5/D6: posix_spawn failed");
    ch.in = ::fdopen(to[1], "w");
    ch.out = ::fdopen(from[0], "r");
}

// "d5 impl endpoint prefix": per "go" line on stdin, acquire (iterlock_etcd: a gated write; etcd_mutex:
// Lock), print "start_ns done_ns", release (etcd_mutex: Unlock).
// "d6 impl endpoint prefix index start_ns stop_ns": writes from start_ns to stop_ns, prints the count.
int child_main(const std::string& spec) {
    std::istringstream in(spec);
    std::string mode, impl, endpoint, prefix;
    in >> mode >> impl >> endpoint >> prefix;
    etcd::client c(etcd::client_options{.endpoints = {endpoint}, .call_timeout = 60s});
    const std::string data = prefix + "data/";
    auto contended = make_contended_lock(c, impl, prefix);
    auto& m = contended.m;
    auto& mu = contended.mu;
    const std::string value(64, 'v');
    if (mode == "d5") {
        char line[64];
        for (std::uint64_t i = 0; std::fgets(line, sizeof line, stdin);) {
            const auto t0 = mono_ns();
            if (m)
                m->insert_or_assign(i++ % 100, 1);
            else
                mu->lock();
            const auto t1 = mono_ns();
            std::printf("%lld %lld\n", static_cast<long long>(t0), static_cast<long long>(t1));
            std::fflush(stdout);
            if (mu) mu->unlock();
        }
        return 0;
    }
    std::uint64_t index = 0;
    std::int64_t start = 0, stop = 0;
    in >> index >> start >> stop;
    while (mono_ns() < start) std::this_thread::sleep_for(1ms);
    std::uint64_t n = 0;
    for (; mono_ns() < stop; ++n) {
        const std::uint64_t k = index << 32 | (n % 1000);
        if (m) {
            m->insert_or_assign(k, n);
        } else {
            mu->lock();
            c.put(data + etcd::default_codec::encode(k), value);
            mu->unlock();
        }
    }
    std::printf("%llu\n", static_cast<unsigned long long>(n));
    std::fflush(stdout);
    return 0;
}

struct child_dispatch {
    child_dispatch() {
        const char* spec = std::getenv(child_env);
        if (!spec) return;
        try {
            std::_Exit(child_main(spec));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "iterlock-bench child: %s\n", e.what());
            std::_Exit(1);
        }
    }
} const child_dispatch_instance;

void require(const std::string& impl) {
    if (impl != "iterlock_etcd" && impl != "etcd_mutex")
        throw unavailable("D5/D6: unknown implementation " + impl);
}

// ---- D5 ----

// D5 for etcd's own recipe in Go (bench/go_anchor_lock), against the same endpoints.
void run_d5_go(const options& opts, const emit_fn& emit) {
    const std::string bin = ITERLOCK_ETCD_LOCK_ANCHOR;
    if (::access(bin.c_str(), X_OK) != 0)
        throw unavailable(
            "go_concurrency: build it first: cmake --build <dir> --target iterlock-etcd-lock-anchor");
    std::string eps;
    for (const auto& e : etcd_endpoints(opts)) eps += (eps.empty() ? "" : ",") + e;
    const std::size_t n = opts.sizes.empty() ? 30 : opts.sizes.front();
    medians med;
    for (int rep = 0; rep < opts.repetitions; ++rep) {
        FILE* f = ::popen((bin + " -endpoints " + eps + " -n " + std::to_string(n)).c_str(), "r");
        double v[4] = {};
        const int got = f ? std::fscanf(f, "%lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3]) : 0;
        if (f) ::pclose(f);
        if (got != 4) throw std::runtime_error("go_concurrency: the anchor printed no figures");
        med.add("acquire_p50_ns", v[0], "ns");
        med.add("handoff_p50_ns", v[1], "ns");
        med.add("handoff_p99_ns", v[2], "ns");
        med.add("handoff_short_p50_ns", v[3], "ns");
    }
    med.emit(emit, "D5", "go_concurrency", n, 2);
}

void run_d5(const std::string& impl, const options& opts, const emit_fn& emit) {
    if (impl == "go_concurrency") return run_d5_go(opts, emit);
    require(impl);
    const auto eps = etcd_endpoints(opts);
    etcd::client c(etcd::client_options{.endpoints = eps, .call_timeout = 60s});
    const std::string prefix = "d5/" + impl + "/";
    c.erase(prefix, etcd::prefix_end(prefix));
    auto contended = make_contended_lock(c, impl, prefix);
    auto& m = contended.m;
    auto& mu = contended.mu;
    child_proc waiter;
    spawn_child(waiter, "d5 " + impl + " " + eps.front() + " " + prefix);
    auto acquire = [&](lmap* lm, std::optional<etcd::iteration_guard>& g) {
        if (lm)
            g.emplace(lm->lock_for_iteration());
        else
            mu->lock();
    };
    auto release = [&](std::optional<etcd::iteration_guard>& g) {
        if (g)
            g.reset();
        else
            mu->unlock();
    };
    // The waiter has asked and is queued: its key is in etcd.
    auto queued = [&] {
        const std::string q = m ? prefix + "lock/w/" : prefix + "mutex/";
        for (int i = 0; i < 5000; ++i) {
            const auto n = c.range(q, {.range_end = etcd::prefix_end(q), .count_only = true}).count;
            if (n >= (m ? 1 : 2)) return;
            std::this_thread::sleep_for(1ms);
        }
        throw std::runtime_error("D5: the waiter never queued");
    };
    const std::size_t n = opts.sizes.empty() ? 30 : opts.sizes.front();
    medians med;
    for (int rep = 0; rep < opts.repetitions; ++rep) {
        std::vector<double> acq, hand, hand_short;
        for (std::size_t i = 0; i < 5 * n; ++i) {
            const auto t0 = mono_ns();
            std::optional<etcd::iteration_guard> g;
            acquire(m.get(), g);
            release(g);
            acq.push_back(static_cast<double>(mono_ns() - t0));
        }
        for (int shortcase = 0; shortcase < 2; ++shortcase)
            for (std::size_t i = 0; i < n; ++i) {
                std::optional<etcd::iteration_guard> g;
                acquire(m.get(), g);
                waiter.send("go\n");
                if (shortcase) {
                    std::this_thread::sleep_for(3ms);
                } else {
                    queued();
                    std::this_thread::sleep_for(150ms);
                }
                const auto rel = mono_ns();
                release(g);
                long long start = 0, done = 0;
                if (std::sscanf(waiter.read_line().c_str(), "%lld %lld", &start, &done) != 2)
                    throw std::runtime_error("D5: the waiter printed no times");
                (shortcase ? hand_short : hand).push_back(static_cast<double>(done - rel));
                std::this_thread::sleep_for(20ms);  // the waiter's release (etcd_mutex: Unlock)
            }
        med.add("acquire_p50_ns", percentile(acq, 0.5), "ns");
        med.add("handoff_p50_ns", percentile(hand, 0.5), "ns");
        med.add("handoff_p99_ns", percentile(hand, 0.99), "ns");
        med.add("handoff_short_p50_ns", percentile(hand_short, 0.5), "ns");
    }
    med.emit(emit, "D5", impl, n, 2);
}

// ---- D6 ----

void run_d6(const std::string& impl, const options& opts, const emit_fn& emit) {
    require(impl);
    const auto eps = etcd_endpoints(opts);
    etcd::client c(etcd::client_options{.endpoints = eps, .call_timeout = 60s});
    const double seconds = opts.duration_s > 0 ? opts.duration_s : 5.0;
    constexpr int writers = 3;
    medians med;
    std::uint64_t walks = 0;
    std::vector<double> holds;  // ms from asking for the guard (or mutex) to its release, over every walk
    for (int rep = 0; rep < opts.repetitions; ++rep) {
        double rate[2] = {0, 0};
        for (int walked = 0; walked < 2; ++walked) {
            const std::string prefix =
                "d6/" + impl + "/" + std::to_string(rep) + std::to_string(walked) + "/";
            c.erase(prefix, etcd::prefix_end(prefix));
            auto contended = make_contended_lock(c, impl, prefix);
            auto& m = contended.m;
            auto& mu = contended.mu;
            const auto start = mono_ns() + 1'500'000'000;  // the children's clients connect first
            const auto stop = start + static_cast<std::int64_t>(seconds * 1e9);
            std::vector<child_proc> kids(writers);
            for (int w = 0; w < writers; ++w)
                spawn_child(kids[static_cast<std::size_t>(w)],
                            "d6 " + impl + " " + eps.front() + " " + prefix + " " + std::to_string(w) + " " +
                                std::to_string(start) + " " + std::to_string(stop));
            if (walked) {
                for (auto next = start + 500'000'000; next < stop; next += 1'000'000'000) {
                    while (mono_ns() < next) std::this_thread::sleep_for(1ms);
                    std::size_t seen = 0;
                    const auto t0 = mono_ns();
                    if (m) {
                        auto g = m->lock_for_iteration();
                        m->for_each(g, [&](std::uint64_t, const etcd::versioned<std::uint64_t>&) { ++seen; });
                    } else {
                        mu->lock();
                        seen = c.range(prefix + "data/", {.range_end = etcd::prefix_end(prefix + "data/")})
                                   .kvs.size();
                        mu->unlock();
                    }
                    walks += seen > 0;
                    holds.push_back(static_cast<double>(mono_ns() - t0) / 1e6);
                }
            }
            std::uint64_t total = 0;
            for (auto& k : kids) total += std::stoull(k.read_line());
            rate[walked] = static_cast<double>(total) / seconds;
            c.erase(prefix, etcd::prefix_end(prefix));
        }
        med.add("writes_per_s", rate[0], "1/s");
        med.add("writes_per_s_walked", rate[1], "1/s");
        med.add("writer_keep", rate[0] > 0 ? rate[1] / rate[0] : 0, "ratio");
        med.add("walk_hold_p50_ms", percentile(holds, 0.5), "ms");
    }
    if (walks == 0) throw std::runtime_error("D6: no walk saw any entry");
    med.emit(emit, "D6", impl, 1000, writers);
}
#else
void run_unavailable(const std::string&, const options&, const emit_fn&) {
    throw unavailable(
        "iterlock::etcd is not part of this build (cmake/etcd.cmake: gRPC, protobuf, etcd's protos)");
}
#define run_d5 run_unavailable
#define run_d6 run_unavailable
#endif

const registrar d5{
    {"D5",
     "etcd iteration lock across processes: uncontended acquire, hand-off to a waiting process "
     "(queued long before, and 3 ms before)",
     {"iterlock_etcd", "etcd_mutex", "go_concurrency"},
     run_d5,
     "go_concurrency",
     {{"etcd_mutex", "etcd's concurrency.Mutex recipe, ported to our client"},
      {"go_concurrency", "etcd's concurrency.Mutex in Go (clientv3 3.4), the anchor"}}}};
const registrar d6{
    {"D6",
     "etcd writer throughput of 3 writer processes with a walker every second, as a ratio to no "
     "walker (gated writes vs one etcd mutex around every write)",
     {"iterlock_etcd", "etcd_mutex"},
     run_d6,
     "etcd_mutex",
     {{"etcd_mutex", "one etcd mutex (recipe) around every write and every walk"}}}};

}  // namespace
}  // namespace iterlock::bench
