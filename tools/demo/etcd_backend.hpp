// tools/demo/etcd_backend.hpp: iterlock-demo --backend etcd, the feature service across processes: N writer
// processes stream session updates into one iterlock::etcd::map, one aggregator process walks its mirror's
// snapshots, and the same consistency check (feature_service.hpp's window_check) counts torn walks.
//
// Owns: iterlock_demo::etcd_run_config, run_etcd_service() (the parent's side), etcd_child_main() (the
//       writer and aggregator processes: iterlock-demo run again with --etcd-role).
//
// Protocol. The parent clears a fresh prefix, prefills it (in transactions of 128 puts) with the layout the
// check expects (writer w's slot s is key s*N + w, sequence r in slot order_w[r]), starts the aggregator and
// waits for its ready file (its mirror is live), starts the writers and waits for theirs, runs the window,
// then sends SIGTERM to every child. Each child finishes its current operation, writes its results
// (counts, then raw nanosecond samples) to its --etcd-out file and exits 0. With --chaos the parent stops the
// cluster's leader (SIGSTOP) for the middle third of the window: writes through it stall or fail with
// may_have_applied (then the writer reads the key back and sends again only if it is missing, never blindly),
// a new leader is elected, and the aggregator's walks must stay one instant (zero violations).
//
// --policy locked: the same processes on etcd::map<..., locked_iteration>. Writers write through the
// iteration lock (gated transactions, D-L1); the aggregator takes a guard and walks etcd at its fence
// (map::for_each), and the same check counts torn walks. With --chaos the parent, at a third of each window,
// asks the aggregator to stall inside a guard (a .hang file), SIGKILLs it once it holds one (its .holding
// file, written with its results so far), measures from the kill to the first write that lands in etcd
// (the guard's lease expires, demo_lock_ttl, and the gated writers go on), and restarts the aggregator.
// The run fails when writers took longer than demo_lock_ttl + demo_resume_slack to resume.
// Invariants: a writer's updates are applied in its order (one put at a time), so at every etcd revision
// writer w's sessions hold its K newest sequence numbers, and a mirror snapshot (one revision) passes the
// check; the window is timed by the parent from all writers ready to SIGTERM.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "contenders.hpp"
#include "feature_service.hpp"
#include "iterlock/etcd/map.hpp"
#include "testing/local_etcd.hpp"

extern char** environ;

namespace iterlock_demo {

struct etcd_run_config {
    std::string endpoints;  // comma-separated; empty: a local 3-member cluster on loopback
    bool chaos = false;     // SIGSTOP the leader for the middle third of each window
    std::string self;       // this program, for the children
    bool locked = false;    // --policy locked
};

// The lease TTL of every process's iteration lock in --policy locked, and how much later than the TTL the
// first write after a killed holder may land (etcd checks lease expiry every 500 ms, then the writers'
// views see the guard key go and they retry) before the run counts as failed.
inline constexpr std::chrono::seconds demo_lock_ttl{2};
inline constexpr std::chrono::seconds demo_resume_slack{3};

namespace etcd_detail {

namespace etcd = iterlock::etcd;
using session_map = etcd::map<key_type, session>;
using locked_session_map = etcd::map<key_type, session, etcd::default_codec, etcd::locked_iteration>;

inline std::atomic<bool> child_stop{false};
extern "C" inline void on_term(int) {
    child_stop.store(true);
}

inline std::vector<std::string> split_endpoints(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (char ch : s + ",") {
        if (ch == ',') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += ch;
        }
    }
    return out;
}

inline void write_results(const std::string& path, const std::vector<std::uint64_t>& counts,
                          const std::vector<std::uint64_t>& samples) {
    std::ofstream out(path + ".tmp", std::ios::binary);
    const std::uint64_t n = counts.size(), m = samples.size();
    out.write(reinterpret_cast<const char*>(&n), sizeof n);
    out.write(reinterpret_cast<const char*>(counts.data()), static_cast<std::streamsize>(n * 8));
    out.write(reinterpret_cast<const char*>(&m), sizeof m);
    out.write(reinterpret_cast<const char*>(samples.data()), static_cast<std::streamsize>(m * 8));
    out.close();
    std::filesystem::rename(path + ".tmp", path);
}

inline bool read_results(const std::string& path, std::vector<std::uint64_t>& counts,
                         std::vector<std::uint64_t>& samples) {
    std::ifstream in(path, std::ios::binary);
    std::uint64_t n = 0, m = 0;
    if (!in.read(reinterpret_cast<char*>(&n), sizeof n)) return false;
    counts.resize(n);
    in.read(reinterpret_cast<char*>(counts.data()), static_cast<std::streamsize>(n * 8));
    if (!in.read(reinterpret_cast<char*>(&m), sizeof m)) return false;
    samples.resize(m);
    return static_cast<bool>(
        in.read(reinterpret_cast<char*>(samples.data()), static_cast<std::streamsize>(m * 8)));
}

inline void touch(const std::string& path) {
    std::ofstream(path).put('1');
}

}  // namespace etcd_detail

// The children's side: argv holds --etcd-role writer|aggregator and the options the parent passed.
struct etcd_child_args {
    std::string role, endpoints, prefix, out;
    unsigned writer = 0, writers = 1;
    std::uint64_t sessions = 0;
    double rate = 0;
    unsigned batch_us = 100, interval_ms = 100;
    double work_ns = 0;
    bool locked = false;
};

inline int etcd_child_main(const etcd_child_args& a) {
    using namespace etcd_detail;
    using clock = std::chrono::steady_clock;
    struct sigaction sa {};
    sa.sa_handler = on_term;
    ::sigaction(SIGTERM, &sa, nullptr);
    etcd::client_options o;
    o.endpoints = split_endpoints(a.endpoints);
    o.call_timeout = std::chrono::seconds(10);
    etcd::client c(o);
    const std::uint64_t k = a.sessions / a.writers;
    if (a.role == "aggregator") {
        std::unique_ptr<session_map> sm;
        std::unique_ptr<locked_session_map> lm;
        if (a.locked)
            lm = std::make_unique<locked_session_map>(c, a.prefix, etcd::map_options{},
                                                      etcd::lock_options{.ttl = demo_lock_ttl});
        else
            sm = std::make_unique<session_map>(c, a.prefix);
        const entry_work work = entry_work::calibrated(a.work_ns);
        window_check check(a.writers, k);
        touch(a.out + ".ready");
        std::uint64_t aggregations = 0, violations = 0;
        std::vector<std::uint64_t> times;
        volatile double sink = 0;
        auto next = clock::now();
        while (!child_stop.load()) {
            const auto t0 = clock::now();
            double sum = 0;
            check.begin();
            if (lm) {
                auto g = lm->lock_for_iteration();
                if (std::filesystem::exists(a.out + ".hang")) {  // --chaos: stall holding the guard
                    write_results(a.out, {aggregations, violations, 0, 0}, times);
                    touch(a.out + ".holding");
                    for (;;) ::pause();
                }
                lm->for_each(g, [&](const key_type&, const etcd::versioned<session>& v) {
                    check.see(v.value.stamp);
                    sum = work(sum + v.value.score);
                });
            } else {
                auto s = sm->snapshot();
                for (const auto& [key, v] : s.view) {
                    check.see(v.value.stamp);
                    sum = work(sum + v.value.score);
                }
            }
            const auto t1 = clock::now();
            sink = sum;
            times.push_back(static_cast<std::uint64_t>(std::chrono::nanoseconds(t1 - t0).count()));
            ++aggregations;
            if (!check.consistent()) ++violations;
            next += std::chrono::milliseconds(a.interval_ms);
            if (next < t1) next = t1;
            while (!child_stop.load() && clock::now() < next)
                std::this_thread::sleep_for(
                    std::min<clock::duration>(next - clock::now(), std::chrono::milliseconds(5)));
        }
        (void)sink;
        const auto mm = lm ? lm->metrics() : sm->metrics();
        write_results(a.out, {aggregations, violations, mm.watch_restarts, mm.client.failovers}, times);
        return 0;
    }
    // writer
    const std::vector<std::uint32_t> order = slot_order(k, a.writer, 1);
    std::uint64_t seq = k, idx = 0, ops = 0;
    std::vector<std::uint64_t> lat;
    const bool open = a.rate > 0;
    const std::uint64_t per_batch =
        open ? std::max<std::uint64_t>(1, static_cast<std::uint64_t>(a.rate * a.batch_us / 1e6)) : 1;
    const auto batch_period = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(open ? static_cast<double>(per_batch) / a.rate : 0));
    std::uint64_t retried = 0;
    std::unique_ptr<locked_session_map> lm;  // --policy locked: writes go through the iteration lock
    if (a.locked)
        lm = std::make_unique<locked_session_map>(c, a.prefix, etcd::map_options{},
                                                  etcd::lock_options{.ttl = demo_lock_ttl});
    touch(a.out + ".ready");
    const auto w_start = clock::now();
    auto due = w_start;
    while (!child_stop.load()) {
        const key_type key = order[idx] * std::uint64_t{a.writers} + a.writer;
        const session s{make_stamp(a.writer, seq), score_of(seq)};
        const std::string ekey = a.prefix + etcd::default_codec::encode(key);
        if (open && ops % per_batch == 0) {
            due = w_start + batch_period * static_cast<clock::rep>(ops / per_batch);
            if (clock::now() < due) std::this_thread::sleep_until(due);
        }
        const auto t0 = open ? due : clock::now();
        for (;;) {  // one update, applied exactly once (client.hpp C3: never resent blindly)
            try {
                if (lm)
                    lm->insert_or_assign(key, s);
                else
                    c.put(ekey, etcd::default_codec::encode(s));
                break;
            } catch (const etcd::error& e) {
                if (e.code() != etcd::errc::may_have_applied && e.code() != etcd::errc::unavailable &&
                    e.code() != etcd::errc::deadline)
                    throw;
                ++retried;
                try {
                    const auto kv = c.get(ekey);
                    session there{};
                    if (kv && etcd::default_codec::decode(kv->value, there) && there.stamp == s.stamp) break;
                } catch (const etcd::error&) {
                }
            }
        }
        lat.push_back(static_cast<std::uint64_t>(std::chrono::nanoseconds(clock::now() - t0).count()));
        ++seq;
        ++ops;
        if (++idx == k) idx = 0;
    }
    write_results(a.out, {ops, retried}, lat);
    return 0;
}

// The parent's side: one run of the service (cfg's duration, writers as processes). Throws on a child that
// failed. `cluster` is null when --endpoints named an external cluster.
inline service_result run_etcd_service(const service_config& cfg, const etcd_run_config& rc,
                                       iterlock::etcd::testing::local_etcd* cluster, live_counters& live,
                                       const std::function<void(double)>& tick) {
    using namespace etcd_detail;
    using clock = std::chrono::steady_clock;
    static int run_no = 0;
    const std::string prefix =
        "iterlock-demo/" + std::to_string(::getpid()) + "/" + std::to_string(run_no++) + "/";
    std::string eps = rc.endpoints;
    if (cluster)
        for (const auto& e : cluster->endpoints()) eps += (eps.empty() ? "" : ",") + e;
    etcd::client_options o;
    o.endpoints = split_endpoints(eps);
    o.call_timeout = std::chrono::seconds(30);
    etcd::client c(o);
    const unsigned nw = cfg.writers;
    const std::uint64_t k = cfg.per_writer();
    service_result res;
    const auto p0 = clock::now();
    c.erase(prefix, etcd::prefix_end(prefix));
    {
        std::vector<std::vector<std::uint32_t>> place(nw, std::vector<std::uint32_t>(k));
        for (unsigned w = 0; w < nw; ++w) {
            const auto order = slot_order(k, w, 1);
            for (std::uint64_t r = 0; r < k; ++r) place[w][order[r]] = static_cast<std::uint32_t>(r);
        }
        std::vector<etcd::txn_op> ops;
        for (std::uint64_t slot = 0; slot < k; ++slot)
            for (unsigned w = 0; w < nw; ++w) {
                const std::uint64_t r = place[w][slot];
                ops.push_back(
                    etcd::txn_op::put(prefix + etcd::default_codec::encode(key_type{slot * nw + w}),
                                      etcd::default_codec::encode(session{make_stamp(w, r), score_of(r)})));
                if (ops.size() == 128 || (slot + 1 == k && w + 1 == nw)) {
                    c.txn({}, ops);
                    ops.clear();
                }
            }
    }
    res.prefill_seconds = std::chrono::duration<double>(clock::now() - p0).count();

    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() /
        ("iterlock-demo-etcd-" + std::to_string(::getpid()) + "-" + std::to_string(run_no));
    std::filesystem::create_directories(dir);
    struct child {
        pid_t pid = -1;
        std::string out;
    };
    auto spawn = [&](const std::vector<std::string>& extra, const std::string& out) {
        std::vector<std::string> args = {rc.self,
                                         "--etcd-role",
                                         extra[0],
                                         "--endpoints",
                                         eps,
                                         "--etcd-prefix",
                                         prefix,
                                         "--etcd-out",
                                         out,
                                         "--threads",
                                         std::to_string(nw),
                                         "--size",
                                         std::to_string(cfg.sessions),
                                         "--rate",
                                         std::to_string(cfg.rate),
                                         "--batch-us",
                                         std::to_string(cfg.batch.count()),
                                         "--interval",
                                         std::to_string(cfg.interval.count()),
                                         "--work-ns",
                                         std::to_string(cfg.work.ns()),
                                         "--policy",
                                         rc.locked ? "locked" : "snapshot"};
        args.insert(args.end(), extra.begin() + 1, extra.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        child ch;
        ch.out = out;
        if (::posix_spawn(&ch.pid, rc.self.c_str(), nullptr, nullptr, argv.data(), environ) != 0)
            throw std::runtime_error("cannot start " + rc.self);
        return ch;
    };
    auto wait_ready = [&](const child& ch) {
        for (int i = 0; i < 3000; ++i) {
            if (std::filesystem::exists(ch.out + ".ready")) return;
            int st = 0;
            if (::waitpid(ch.pid, &st, WNOHANG) == ch.pid)
                throw std::runtime_error("a demo process exited before it was ready");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        throw std::runtime_error("a demo process did not get ready in 30 s");
    };
    std::vector<child> children;
    struct reaper {  // on an exception, no child outlives this run
        std::vector<child>& cs;
        bool armed = true;
        ~reaper() {
            if (!armed) return;
            for (const auto& ch : cs) {
                ::kill(ch.pid, SIGKILL);
                ::waitpid(ch.pid, nullptr, 0);
            }
        }
    } reap{children};
    children.push_back(spawn({"aggregator"}, (dir / "aggregator").string()));
    wait_ready(children.back());
    for (unsigned w = 0; w < nw; ++w) {
        children.push_back(spawn({"writer", "--etcd-writer", std::to_string(w)},
                                 (dir / ("writer" + std::to_string(w))).string()));
    }
    for (std::size_t i = 1; i < children.size(); ++i) wait_ready(children[i]);

    live.running.store(true);
    const auto t_start = clock::now();
    const auto deadline = t_start + std::chrono::duration_cast<clock::duration>(cfg.duration);
    int stopped = -1;
    bool killed = false;
    std::vector<std::string> earlier_aggregators;  // killed by --chaos; their results so far
    // --policy locked --chaos: stall the aggregator inside a guard, SIGKILL it, time the writers' resumption.
    auto kill_holder = [&] {
        const std::string agg = children[0].out;
        touch(agg + ".hang");
        for (int i = 0; !std::filesystem::exists(agg + ".holding"); ++i) {
            if (i == 3000) throw std::runtime_error("--chaos: the aggregator never held a guard");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        const auto rev =
            c.range(prefix, {.range_end = etcd::prefix_end(prefix), .count_only = true}).revision;
        const auto t_kill = clock::now();
        ::kill(children[0].pid, SIGKILL);
        ::waitpid(children[0].pid, nullptr, 0);
        earlier_aggregators.push_back(agg);
        double resumed = -1;
        while (resumed < 0) {
            const auto r = c.range(prefix, {.range_end = etcd::prefix_end(prefix)});
            for (const auto& kv : r.kvs)
                if (kv.mod_revision > rev)
                    resumed = std::chrono::duration<double>(clock::now() - t_kill).count();
            if (resumed < 0 && clock::now() - t_kill > 4 * (demo_lock_ttl + demo_resume_slack))
                throw std::runtime_error("--chaos: no write landed after the guard holder was killed");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        std::cerr
            << "\niterlock-demo: --chaos: the aggregator was SIGKILLed holding a guard; writers resumed "
            << resumed << " s later (lease TTL " << demo_lock_ttl.count() << " s)\n";
        if (resumed > std::chrono::duration<double>(demo_lock_ttl + demo_resume_slack).count())
            throw std::runtime_error("--chaos: writers resumed " + std::to_string(resumed) +
                                     " s after the holder died, later than TTL + " +
                                     std::to_string(demo_resume_slack.count()) + " s");
        children[0] = spawn({"aggregator"},
                            (dir / ("aggregator" + std::to_string(earlier_aggregators.size()))).string());
        wait_ready(children[0]);
        std::cerr << "iterlock-demo: --chaos: aggregator restarted\n";
    };
    for (auto now = clock::now(); now < deadline; now = clock::now()) {
        std::this_thread::sleep_for(
            std::min<clock::duration>(deadline - now, std::chrono::milliseconds(250)));
        const double elapsed = std::chrono::duration<double>(clock::now() - t_start).count();
        if (rc.chaos && rc.locked) {
            if (!killed && elapsed >= cfg.duration.count() / 3) {
                killed = true;
                kill_holder();
            }
        } else if (rc.chaos && cluster) {
            const double third = cfg.duration.count() / 3;
            if (stopped < 0 && elapsed >= third && elapsed < 2 * third) {
                stopped = cluster->leader();
                if (stopped >= 0) {
                    cluster->stop(stopped);
                    std::cerr << "\niterlock-demo: --chaos: member " << stopped << " (the leader) stopped\n";
                }
            } else if (stopped >= 0 && elapsed >= 2 * third) {
                cluster->resume(stopped);
                std::cerr << "\niterlock-demo: --chaos: member " << stopped << " resumed\n";
                stopped = -2;
            }
        }
        tick(elapsed);
    }
    if (stopped >= 0) cluster->resume(stopped);
    for (const auto& ch : children) ::kill(ch.pid, SIGTERM);
    const auto t_stop = clock::now();
    bool failed = false;
    for (const auto& ch : children) {
        int st = 0;
        ::waitpid(ch.pid, &st, 0);
        failed |= !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    reap.armed = false;
    live.running.store(false);
    res.seconds = std::chrono::duration<double>(t_stop - t_start).count();
    std::vector<std::uint64_t> counts, samples;
    if (failed || !read_results(children[0].out, counts, samples) || counts.size() < 4)
        throw std::runtime_error("the aggregator process failed (" + children[0].out + ")");
    res.aggregations = counts[0];
    res.violations = counts[1];
    for (auto t : samples) res.aggregation_time.record(t);
    for (const auto& earlier : earlier_aggregators) {
        std::vector<std::uint64_t> ec, es;
        if (!read_results(earlier, ec, es) || ec.size() < 2)
            throw std::runtime_error("--chaos: the killed aggregator left no results (" + earlier + ")");
        res.aggregations += ec[0];
        res.violations += ec[1];
        for (auto t : es) res.aggregation_time.record(t);
    }
    std::cerr << "\niterlock-demo: aggregator's mirror: " << counts[2] << " watch restarts, " << counts[3]
              << " endpoint failovers\n";
    std::uint64_t retried = 0;
    for (std::size_t i = 1; i < children.size(); ++i) {
        if (!read_results(children[i].out, counts, samples) || counts.size() < 2)
            throw std::runtime_error("a writer process failed (" + children[i].out + ")");
        res.writer_ops += counts[0];
        retried += counts[1];
        for (auto t : samples) res.write_latency.record(t);
    }
    if (retried != 0)
        std::cerr << "iterlock-demo: " << retried
                  << " writes failed or lost their answer and were read back\n";
    live.writes.fetch_add(res.writer_ops);
    live.aggregations.fetch_add(res.aggregations);
    live.violations.fetch_add(res.violations);
    std::filesystem::remove_all(dir);
    return res;
}

}  // namespace iterlock_demo
