// iterlock-demo: why iterlock exists, in one run. A feature service streams session updates from writer
// threads while an aggregator walks every session every 100 ms; the same load runs once per contender
// (std::unordered_map + std::shared_mutex, iterlock locked iteration, iterlock snapshot iteration, an
// iterlock::versioned_map exported through a change feed meanwhile (feed_exporter.hpp), and
// tbb::concurrent_unordered_map walked without a lock), and one table compares aggregations, writer latency
// and the consistency violations the built-in check found (feature_service.hpp; for iterlock_feed also the
// keys in which the exported replica differs from the map at the end).
//
// Output contract: the table (or, with --csv, rows `contender,metric,value,unit` and nothing else) goes to
// stdout; progress, the metrics URL and notes go to stderr. Exit status: 0, or 1 when a contender that
// promises consistent walks (std_shared_mutex, iterlock_locked, iterlock_snapshot) had a violation, 2 for
// bad options or a failed plot.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "contenders.hpp"
#include "feature_service.hpp"
#include "feed_exporter.hpp"

#if ITERLOCK_DEMO_PROMETHEUS
#include "iterlock/prometheus.hpp"
#endif
#if ITERLOCK_DEMO_ETCD
#include "etcd_backend.hpp"
#endif

extern char** environ;

namespace iterlock_demo {
namespace {

// ---- contenders ------------------------------------------------------------------------------------------

struct contender {
    virtual ~contender() = default;
    virtual std::string_view name() const = 0;
    virtual bool promises_consistency() const = 0;
    virtual service_result run(const service_config& cfg, const std::function<void(double)>& tick) = 0;
#if ITERLOCK_DEMO_PROMETHEUS
    virtual void expose(iterlock::prometheus::endpoint&) {}
#endif
    live_counters live;
};

template <class Store>
struct contender_of final : contender {
    std::string_view name() const override { return Store::name(); }
    bool promises_consistency() const override { return !std::is_same_v<Store, tbb_store>; }
    service_result run(const service_config& cfg, const std::function<void(double)>& tick) override {
        if constexpr (requires { store.start_export(); }) {
            // iterlock_feed: an exporter keeps a replica through a change feed while the writers run; a
            // replica that differs from the map at the end counts as violations (feed_exporter.hpp).
            store.start_export();
            service_result r = run_feature_service(store, cfg, live, tick);
            const std::uint64_t differ = store.finish_export();
            std::cerr << "iterlock_feed: the exporter applied " << store.events_applied() << " events ("
                      << store.resyncs() << " resyncs); its replica "
                      << (differ == 0 ? "equals the map" : "DIFFERS from the map in ")
                      << (differ == 0 ? std::string() : std::to_string(differ) + " keys") << "\n";
            r.violations += differ;
            live.violations.fetch_add(differ, std::memory_order_relaxed);
            return r;
        } else {
            return run_feature_service(store, cfg, live, tick);
        }
    }
#if ITERLOCK_DEMO_PROMETHEUS
    void expose(iterlock::prometheus::endpoint& ep) override {
        if constexpr (requires { store.map(); })
            exposure = ep.expose(store.map(), std::string(Store::name()));
    }
#endif
    Store store;
#if ITERLOCK_DEMO_PROMETHEUS
    iterlock::prometheus::exposure exposure;  // after the store: unregisters before the map goes away
#endif
};

#if ITERLOCK_DEMO_ETCD
// --backend etcd: the service across processes through one iterlock::etcd::map (etcd_backend.hpp).
struct etcd_contender final : contender {
    etcd_contender(etcd_run_config rc, iterlock::etcd::testing::local_etcd* cluster)
        : rc_(std::move(rc)), cluster_(cluster) {}
    std::string_view name() const override { return rc_.locked ? "iterlock_etcd_locked" : "iterlock_etcd"; }
    bool promises_consistency() const override { return true; }
    service_result run(const service_config& cfg, const std::function<void(double)>& tick) override {
        return run_etcd_service(cfg, rc_, cluster_, live, tick);
    }
    etcd_run_config rc_;
    iterlock::etcd::testing::local_etcd* cluster_;
};
#endif

const std::vector<std::string> all_contenders = {"std_shared_mutex", "iterlock_locked", "iterlock_snapshot",
                                                 "iterlock_feed", "tbb_concurrent_unordered_map"};

std::unique_ptr<contender> make_contender(const std::string& name) {
    if (name == "std_shared_mutex") return std::make_unique<contender_of<std_shared_mutex_store>>();
    if (name == "iterlock_locked") return std::make_unique<contender_of<iterlock_locked_store>>();
    if (name == "iterlock_snapshot") return std::make_unique<contender_of<iterlock_snapshot_store>>();
    if (name == "iterlock_feed") return std::make_unique<contender_of<iterlock_feed_store>>();
    if (name == "tbb_concurrent_unordered_map") return std::make_unique<contender_of<tbb_store>>();
    return nullptr;
}

// ---- the demo's own metrics (per contender, for every contender including the non-iterlock ones) ---------

#if ITERLOCK_DEMO_PROMETHEUS
class demo_metrics final : public ::prometheus::Collectable {
  public:
    explicit demo_metrics(std::vector<const contender*> cs) : cs_(std::move(cs)) {}
    std::vector<::prometheus::MetricFamily> Collect() const override {
        using T = ::prometheus::MetricType;
        std::vector<::prometheus::MetricFamily> out(4);
        out[0] = {
            "iterlock_demo_writes_total", "Session updates written by the demo's writers.", T::Counter, {}};
        out[1] = {"iterlock_demo_aggregations_total",
                  "Aggregations (whole walks) the demo's aggregator finished.",
                  T::Counter,
                  {}};
        out[2] = {"iterlock_demo_violations_total",
                  "Aggregations that saw a writer's later update but missed an earlier one.",
                  T::Counter,
                  {}};
        out[3] = {"iterlock_demo_running", "1 while this contender's load runs.", T::Gauge, {}};
        for (const contender* c : cs_) {
            const std::vector<::prometheus::ClientMetric::Label> l = {{"contender", std::string(c->name())}};
            auto counter = [&](std::size_t f, const std::atomic<std::uint64_t>& v) {
                ::prometheus::ClientMetric m;
                m.label = l;
                m.counter.value = static_cast<double>(v.load(std::memory_order_relaxed));
                out[f].metric.push_back(std::move(m));
            };
            counter(0, c->live.writes);
            counter(1, c->live.aggregations);
            counter(2, c->live.violations);
            ::prometheus::ClientMetric g;
            g.label = l;
            g.gauge.value = c->live.running.load(std::memory_order_relaxed) ? 1 : 0;
            out[3].metric.push_back(std::move(g));
        }
        return out;
    }

  private:
    std::vector<const contender*> cs_;
};
#endif

// ---- formatting ------------------------------------------------------------------------------------------

std::string human_ns(double ns) {
    char buf[32];
    if (ns < 1e3) {
        std::snprintf(buf, sizeof buf, "%.0f ns", ns);
    } else if (ns < 1e6) {
        std::snprintf(buf, sizeof buf, "%.1f us", ns / 1e3);
    } else if (ns < 1e9) {
        std::snprintf(buf, sizeof buf, "%.2f ms", ns / 1e6);
    } else {
        std::snprintf(buf, sizeof buf, "%.2f s", ns / 1e9);
    }
    return buf;
}

std::string human_rate(double per_s) {
    char buf[32];
    if (per_s >= 1e6) {
        std::snprintf(buf, sizeof buf, "%.2f M/s", per_s / 1e6);
    } else if (per_s >= 1e3) {
        std::snprintf(buf, sizeof buf, "%.1f k/s", per_s / 1e3);
    } else {
        std::snprintf(buf, sizeof buf, "%.0f /s", per_s);
    }
    return buf;
}

std::string pad(std::string s, std::size_t w, bool right) {
    if (s.size() >= w) return s;
    return right ? std::string(w - s.size(), ' ') + s : s + std::string(w - s.size(), ' ');
}

// One contender's two phases: `capacity`, writer throughput flat out (closed loop); `r`, the run at the
// offered rate (open loop), whose latencies and walks the table shows. With --rate 0 only the closed loop
// runs and `r` is it (its latency columns are empty: a closed loop times no update).
struct finished {
    const contender* c;
    service_result r;
    double capacity = 0;  // writes/s, closed loop
    bool timed = true;    // r has per-update latencies
};

// One line per contender: what its row means, against std_shared_mutex's row when that ran.
std::string meaning(const finished& f, const std::vector<finished>& rows) {
    const service_result* base = nullptr;
    double base_cap = 0;
    for (const auto& o : rows)
        if (o.c->name() == "std_shared_mutex") {
            base = &o.r;
            base_cap = o.capacity;
        }
    const auto& r = f.r;
    const double walk = static_cast<double>(r.aggregation_time.quantile(0.5));
    const double p999 = static_cast<double>(r.write_latency.quantile(0.999));
    const double wmax = static_cast<double>(r.write_latency.max());
    auto ratio = [](double a, double b) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2gx", b > 0 ? a / b : 0.0);
        return std::string(buf);
    };
    std::ostringstream s;
    const std::string_view n = f.c->name();
    s << n << ": ";
    if (n == "std_shared_mutex") {
        s << "every walk holds the one shared_mutex for its whole length (" << human_ns(walk)
          << "), so a writer that arrives meanwhile waits it out";
        if (f.timed) s << ": write p99.9 " << human_ns(p999) << ", max " << human_ns(wmax);
        s << ".";
    } else if (n == "iterlock_locked") {
        s << "the iteration lock keeps writers out for the whole walk, as a shared_mutex does (the walk sees "
             "the live map and may write it)";
        if (base) s << "; max writes/s " << ratio(f.capacity, base_cap) << " std's";
        if (base && f.timed)
            s << ", write max " << human_ns(wmax)
              << " (std: " << human_ns(static_cast<double>(base->write_latency.max())) << ")";
        s << ".";
    } else if (n == "iterlock_feed") {
        s << "a versioned_map whose walks are snapshots, exported meanwhile through a change feed "
             "(snapshot_and_watch) into a replica that the check found "
          << (f.r.violations == 0 ? "equal to the map at the end"
                                  : "DIFFERENT from the map (counted as violations)");
        if (base)
            s << "; max writes/s " << ratio(f.capacity, base_cap)
              << " std's (each write also feeds the "
                 "exporter)";
        s << ".";
    } else if (n == "iterlock_snapshot") {
        s << "each walk reads one instant while writers go on";
        if (base) {
            s << ": max writes/s " << ratio(f.capacity, base_cap) << " std's";
            if (f.timed)
                s << ", write p99.9 " << human_ns(p999) << " and max " << human_ns(wmax)
                  << " (std: " << human_ns(static_cast<double>(base->write_latency.quantile(0.999)))
                  << " and " << human_ns(static_cast<double>(base->write_latency.max())) << ")";
            s << "; one walk " << ratio(walk, static_cast<double>(base->aggregation_time.quantile(0.5)))
              << " std's";
        }
        s << " (the walk copies each chain as it reads it; writers copy a chain only when they change it "
             "under a live walk).";
    } else if (n == "iterlock_etcd_locked") {
        s << "writer processes write through the etcd iteration lock (gated transactions) and the aggregator "
             "process walks etcd under a guard (locked_iteration): "
          << r.violations << " of " << r.aggregations << " aggregations torn.";
    } else if (n == "iterlock_etcd") {
        s << "writer processes put through etcd and the aggregator process walks its mirror's snapshots, "
             "each the map at one etcd revision: "
          << r.violations << " of " << r.aggregations << " aggregations torn.";
    } else {
        s << "walks the live map without a lock: " << r.violations << " of " << r.aggregations
          << " aggregations were torn (not one instant); fast, and not an aggregate of any state the map "
             "was in.";
    }
    return s.str();
}

void print_table(const std::vector<finished>& rows, const service_config& cfg) {
    const std::vector<std::string> head = {"contender",    "aggregations", "aggr p50", "aggr max",
                                           "max writes/s", "write p50",    "p99",      "p99.9",
                                           "max",          "violations"};
    std::vector<std::vector<std::string>> cells;
    for (const auto& f : rows) {
        const auto& r = f.r;
        auto lat = [&](double q) {
            return f.timed ? human_ns(static_cast<double>(r.write_latency.quantile(q))) : std::string("-");
        };
        cells.push_back({std::string(f.c->name()), std::to_string(r.aggregations),
                         human_ns(static_cast<double>(r.aggregation_time.quantile(0.5))),
                         human_ns(static_cast<double>(r.aggregation_time.max())), human_rate(f.capacity),
                         lat(0.5), lat(0.99), lat(0.999), lat(1.0), std::to_string(r.violations)});
    }
    std::vector<std::size_t> w(head.size());
    for (std::size_t i = 0; i < head.size(); ++i) {
        w[i] = head[i].size();
        for (const auto& row : cells) w[i] = std::max(w[i], row[i].size());
    }
    auto line = [&](const std::vector<std::string>& row) {
        std::string s;
        for (std::size_t i = 0; i < row.size(); ++i) s += (i ? "  " : "") + pad(row[i], w[i], i != 0);
        std::cout << s << '\n';
    };
    std::cout << "\niterlock-demo: a feature service with " << cfg.per_writer() * cfg.writers << " sessions, "
              << cfg.writers << " writer thread" << (cfg.writers == 1 ? "" : "s") << " streaming updates, "
              << "one aggregator walking every session every " << cfg.interval.count() << " ms";
    if (cfg.work.steps() != 0) std::cout << " with " << cfg.work.ns() << " ns of work per session";
    std::cout << "\n\n";
    line(head);
    for (const auto& row : cells) line(row);

    std::cout << "\naggregations: whole walks done in the window (aggr p50/max: time of one walk, with its "
                 "work per entry)\n"
                 "max writes/s: writer throughput flat out (closed loop, half of each contender's window)\n";
    if (cfg.rate > 0)
        std::cout << "write p50 .. max: latency of one update from its arrival, updates arriving at "
                  << human_rate(cfg.rate) << " per writer in batches every " << cfg.batch.count()
                  << " us (the other half); aggregations and violations count both halves\n";
    std::cout << "violations: walks that saw a writer's later update but missed an earlier one (not one "
                 "instant of the map)\n\n";
    for (const auto& f : rows) std::cout << meaning(f, rows) << '\n';
    std::cout.flush();
}

void print_csv(const std::vector<finished>& rows) {
    std::cout << "contender,metric,value,unit\n";
    for (const auto& f : rows) {
        const auto& r = f.r;
        const std::string n(f.c->name());
        auto row = [&](const char* metric, double v, const char* unit) {
            std::ostringstream s;
            s.precision(15);
            s << n << ',' << metric << ',' << v << ',' << unit << '\n';
            std::cout << s.str();
        };
        row("aggregations", static_cast<double>(r.aggregations), "count");
        row("aggregation_p50_ns", static_cast<double>(r.aggregation_time.quantile(0.5)), "ns");
        row("aggregation_max_ns", static_cast<double>(r.aggregation_time.max()), "ns");
        row("writer_ops", static_cast<double>(r.writer_ops), "count");
        row("writer_ops_per_s", std::round(r.writer_ops_per_s()), "ops/s");
        row("max_writer_ops_per_s", std::round(f.capacity), "ops/s");
        if (f.timed) row("write_p50_ns", static_cast<double>(r.write_latency.quantile(0.5)), "ns");
        if (f.timed) row("write_p99_ns", static_cast<double>(r.write_latency.quantile(0.99)), "ns");
        if (f.timed) row("write_p999_ns", static_cast<double>(r.write_latency.quantile(0.999)), "ns");
        if (f.timed) row("write_max_ns", static_cast<double>(r.write_latency.max()), "ns");
        row("violations", static_cast<double>(r.violations), "count");
    }
    std::cout.flush();
}

// The writer latency distribution, one row per non-empty bucket: contender,lower_ns,upper_ns,count.
void write_latency_csv(const std::vector<finished>& rows, const std::string& path) {
    std::ofstream out(path);
    if (!out) throw std::runtime_error("cannot write " + path);
    out << "contender,lower_ns,upper_ns,count\n";
    for (const auto& f : rows) {
        f.r.write_latency.for_each_bucket([&](std::uint64_t lo, std::uint64_t hi, std::uint64_t n) {
            out << f.c->name() << ',' << lo << ',' << hi << ',' << n << '\n';
        });
    }
    if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

// Where tools/plot_latency.py is: $ITERLOCK_PLOT_SCRIPT, the source tree this binary was built from, or
// next to the binary's tools/ folder.
std::string plot_script() {
    if (const char* e = std::getenv("ITERLOCK_PLOT_SCRIPT")) return e;
#ifdef ITERLOCK_DEMO_PLOT_SCRIPT
    if (std::filesystem::exists(ITERLOCK_DEMO_PLOT_SCRIPT)) return ITERLOCK_DEMO_PLOT_SCRIPT;
#endif
    return "tools/plot_latency.py";
}

// The Python that has Debian's python3-matplotlib: $ITERLOCK_PYTHON, else /usr/bin/python3 (a python3 earlier
// on PATH, such as a pyenv shim, usually lacks the Debian packages), else python3 from PATH.
std::string python_interpreter() {
    if (const char* e = std::getenv("ITERLOCK_PYTHON")) return e;
    if (::access("/usr/bin/python3", X_OK) == 0) return "/usr/bin/python3";
    return "python3";
}

// Runs PYTHON plot_latency.py --latency CSV --output PNG --title TITLE; returns its exit status.
int run_plot(const std::string& csv, const std::string& png, const std::string& title) {
    const std::string python = python_interpreter();
    std::vector<std::string> args = {python,     plot_script(), "--latency", csv,
                                     "--output", png,           "--title",   title};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (posix_spawnp(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
        std::cerr << "iterlock-demo: cannot start " << python << " for the plot\n";
        return 127;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (char ch : s + ",") {
        if (ch == ',') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else if (ch != ' ') {
            cur += ch;
        }
    }
    return out;
}

int demo_main(int argc, char** argv) {
    CLI::App app{
        "iterlock-demo: writers stream session updates while an aggregator walks the map every 100 ms; the "
        "same "
        "load runs once per contender and one table compares them."};
    double duration = 30;
    unsigned threads = 2;
    std::uint64_t size = 200'000;
    unsigned interval_ms = 100;
    double rate = 500'000;
    unsigned batch_us = 100;
    double work_ns = 150;
    std::string contenders_opt;
    int metrics_port = -1;
    std::string metrics_bind = "127.0.0.1";
    double linger = 0;
    bool csv = false;
    std::string plot, latency_csv;
    app.add_option("--duration", duration, "seconds for the whole run, shared by the contenders")
        ->capture_default_str()
        ->check(CLI::Range(0.1, 86400.0));
    app.add_option("--threads", threads, "writer threads")->capture_default_str()->check(CLI::Range(1, 255));
    app.add_option("--size", size, "sessions in the map")
        ->capture_default_str()
        ->check(CLI::Range(2, 1'000'000'000));
    app.add_option("--interval", interval_ms, "milliseconds between the starts of two aggregations")
        ->capture_default_str()
        ->check(CLI::Range(1, 60'000));
    app.add_option("--rate", rate,
                   "updates per second per writer for the latency half of each run, counted from when each "
                   "update arrived (0: only the flat-out run, no latencies)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1e9));
    app.add_option("--batch-us", batch_us,
                   "with --rate: updates arrive in batches this many microseconds apart")
        ->capture_default_str()
        ->check(CLI::Range(1, 1'000'000));
    app.add_option("--work-ns", work_ns,
                   "the aggregation's work per session in nanoseconds, calibrated at start (default: a small "
                   "feature computation; 0: the raw walk)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1e6));
    app.add_option("--contenders", contenders_opt,
                   "comma-separated subset of: std_shared_mutex, iterlock_locked, iterlock_snapshot, "
                   "iterlock_feed (a versioned_map exported through a change feed while the writers run; its "
                   "check compares the replica with the map at the end), tbb_concurrent_unordered_map "
                   "(default: all, in that order)");
    app.add_option(
           "--metrics-port", metrics_port,
           "serve /metrics on this port while the demo runs (0: any free port; the URL goes to stderr)")
        ->check(CLI::Range(0, 65535));
    app.add_option("--metrics-bind", metrics_bind, "address the metrics endpoint binds")
        ->capture_default_str();
    app.add_option("--linger", linger, "with --metrics-port: keep serving this many seconds after the table")
        ->check(CLI::Range(0.0, 86400.0));
    app.add_flag("--csv", csv, "print rows contender,metric,value,unit instead of the table");
    app.add_option("--plot", plot, "draw the writer latency distribution per contender into this PNG file");
    app.add_option("--latency-csv", latency_csv,
                   "write the writer latency distribution (contender,lower_ns,upper_ns,count) to this file");
    std::string backend = "inprocess", endpoints, policy = "snapshot";
    bool chaos = false;
    app.add_option(
           "--backend", backend,
           "inprocess (threads sharing one map, the contenders above) or etcd (writer processes and "
           "an aggregator process sharing one iterlock::etcd::map; needs a build with iterlock::etcd)")
        ->capture_default_str()
        ->check(CLI::IsMember({"inprocess", "etcd"}));
    app.add_option(
        "--endpoints", endpoints,
        "--backend etcd: comma-separated etcd endpoints (default: start a 3-member etcd on loopback)");
    app.add_option(
           "--policy", policy,
           "--backend etcd: snapshot (the aggregator walks its mirror's snapshots) or locked (it walks "
           "etcd under an iteration guard, locked_iteration; writers are gated)")
        ->capture_default_str()
        ->check(CLI::IsMember({"snapshot", "locked"}));
    app.add_flag("--chaos", chaos,
                 "--backend etcd: stop the leader member (SIGSTOP) for the middle third of each run; with "
                 "--policy locked, SIGKILL the aggregator once while it holds a guard and restart it");
#if ITERLOCK_DEMO_ETCD
    etcd_child_args child;  // the writer and aggregator processes of --backend etcd (not for users)
    app.add_option("--etcd-role", child.role)->group("");
    app.add_option("--etcd-prefix", child.prefix)->group("");
    app.add_option("--etcd-out", child.out)->group("");
    app.add_option("--etcd-writer", child.writer)->group("");
#endif
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
#if ITERLOCK_DEMO_ETCD
    if (!child.role.empty()) {
        child.endpoints = endpoints;
        child.writers = threads;
        child.sessions = size;
        child.rate = rate;
        child.batch_us = batch_us;
        child.interval_ms = interval_ms;
        child.work_ns = work_ns;
        child.locked = policy == "locked";
        return etcd_child_main(child);
    }
    std::unique_ptr<iterlock::etcd::testing::local_etcd> cluster;
    if (backend == "etcd") {
        // etcd commits a few thousand puts a second here: smaller defaults than in-process.
        if (app.count("--size") == 0) size = 2'000;
        if (app.count("--rate") == 0) rate = 100;
        if (app.count("--batch-us") == 0) batch_us = 10'000;
        if (app.count("--duration") == 0) duration = 12;
        if (policy == "locked" && chaos && app.count("--duration") == 0) duration = 16;
        if (chaos && !endpoints.empty()) {
            std::cerr << "iterlock-demo: --chaos stops a member of the etcd the demo starts; not with "
                         "--endpoints\n";
            return 2;
        }
        if (!contenders_opt.empty()) {
            std::cerr << "iterlock-demo: --contenders is for --backend inprocess\n";
            return 2;
        }
        if (endpoints.empty()) {
            std::cerr << "iterlock-demo: starting a 3-member etcd on loopback\n";
            cluster = std::make_unique<iterlock::etcd::testing::local_etcd>(3);
        }
    }
#else
    if (backend == "etcd") {
        std::cerr
            << "iterlock-demo: built without iterlock::etcd (gRPC, protobuf, etcd's protos; docs/ETCD.md)\n";
        return 2;
    }
#endif

    const std::vector<std::string> names =
        contenders_opt.empty() ? all_contenders : split_list(contenders_opt);
    std::vector<std::unique_ptr<contender>> cs;
#if ITERLOCK_DEMO_ETCD
    if (backend == "etcd") {
        char self[4096] = {};
        const auto len = ::readlink("/proc/self/exe", self, sizeof self - 1);
        cs.push_back(std::make_unique<etcd_contender>(
            etcd_run_config{endpoints, chaos,
                            len > 0 ? std::string(self, static_cast<std::size_t>(len)) : argv[0],
                            policy == "locked"},
            cluster.get()));
    }
#endif
    for (const auto& n : backend == "etcd" ? std::vector<std::string>{} : names) {
        auto c = make_contender(n);
        if (!c) {
            std::cerr << "iterlock-demo: unknown contender '" << n
                      << "' (known: std_shared_mutex, iterlock_locked, "
                      << "iterlock_snapshot, iterlock_feed, tbb_concurrent_unordered_map)\n";
            return 2;
        }
        cs.push_back(std::move(c));
    }
    if (size / threads < 2) {
        std::cerr << "iterlock-demo: --size must be at least 2 per writer thread\n";
        return 2;
    }

    service_config cfg;
    cfg.writers = threads;
    cfg.sessions = size;
    cfg.interval = std::chrono::milliseconds(interval_ms);
    cfg.rate = rate;
    cfg.batch = std::chrono::microseconds(batch_us);
    cfg.work = entry_work::calibrated(work_ns);
    cfg.duration = std::chrono::duration<double>(duration / static_cast<double>(cs.size()));

#if ITERLOCK_DEMO_PROMETHEUS
    std::unique_ptr<iterlock::prometheus::endpoint> ep;
    if (metrics_port >= 0) {
        try {
            ep = std::make_unique<iterlock::prometheus::endpoint>(metrics_bind + ":" +
                                                                  std::to_string(metrics_port));
        } catch (const std::exception& e) {
            std::cerr << "iterlock-demo: cannot serve metrics on " << metrics_bind << ':' << metrics_port
                      << ": " << e.what() << '\n';
            return 2;
        }
        std::vector<const contender*> view;
        for (auto& c : cs) {
            c->expose(*ep);
            view.push_back(c.get());
        }
        ep->add(std::make_shared<demo_metrics>(std::move(view)));
        std::cerr << "iterlock-demo: serving metrics at " << ep->url() << std::endl;
    }
#else
    if (metrics_port >= 0) {
        std::cerr << "iterlock-demo: built without prometheus-cpp; --metrics-port is not available\n";
        return 2;
    }
#endif

    const bool tty = isatty(STDERR_FILENO) != 0;
    std::cerr << "iterlock-demo: " << cs.size() << " contender" << (cs.size() == 1 ? "" : "s") << ", "
              << cfg.duration.count() << " s each, " << cfg.per_writer() * threads << " sessions, " << threads
              << " writer thread" << (threads == 1 ? "" : "s") << ", aggregation every " << interval_ms
              << " ms, " << cfg.work.steps() << " work steps per session (--work-ns " << work_ns << ")\n";
    // Each contender runs flat out (closed loop) for its capacity, then at the offered rate (open loop) for
    // the latencies; with --rate 0, the closed loop alone for the whole of its window.
    service_config closed = cfg, open = cfg;
    closed.rate = 0;
    if (cfg.rate > 0) closed.duration = open.duration = cfg.duration / 2;
    std::vector<finished> done;
    for (std::size_t i = 0; i < cs.size(); ++i) {
        contender& c = *cs[i];
        const std::string label = "[" + std::to_string(i + 1) + "/" + std::to_string(cs.size()) + "] " +
                                  pad(std::string(c.name()), 28, false);
        double offset = 0;
        const char* phase = "flat out";
        auto progress = [&](double elapsed) {
            char buf[200];
            std::snprintf(
                buf, sizeof buf, "%s %-8s %5.1f/%.1f s  writes %10llu  aggregations %4llu  violations %llu",
                label.c_str(), phase, offset + elapsed, cfg.duration.count(),
                static_cast<unsigned long long>(c.live.writes.load(std::memory_order_relaxed)),
                static_cast<unsigned long long>(c.live.aggregations.load(std::memory_order_relaxed)),
                static_cast<unsigned long long>(c.live.violations.load(std::memory_order_relaxed)));
            if (tty) std::cerr << '\r' << buf << "\033[K" << std::flush;
            return std::string(buf);
        };
        if (!tty) std::cerr << label << " running\n";
        finished f{&c, c.run(closed, progress)};
        f.capacity = f.r.writer_ops_per_s();
        f.timed = false;
        if (cfg.rate > 0) {
            offset = f.r.seconds;
            phase = "at rate";
            service_result at_rate = c.run(open, progress);
            at_rate.aggregations += f.r.aggregations;
            at_rate.violations += f.r.violations;
            f.r = std::move(at_rate);
            f.timed = true;
        }
        const std::string last = progress(f.r.seconds);
        if (tty) {
            std::cerr << '\n';
        } else {
            std::cerr << last << '\n';
        }
        done.push_back(std::move(f));
    }

    if (csv) {
        print_csv(done);
    } else {
        print_table(done, cfg);
    }

    int rc = 0;
    for (const auto& f : done) {
        if (f.c->promises_consistency() && f.r.violations != 0) {
            std::cerr << "iterlock-demo: ERROR: " << f.c->name() << " promises consistent walks but "
                      << f.r.violations << " were torn\n";
            rc = 1;
        }
    }

    try {
        if (!latency_csv.empty()) write_latency_csv(done, latency_csv);
        if (!plot.empty()) {
            std::string data = latency_csv;
            std::filesystem::path tmp;
            if (data.empty()) {
                tmp = std::filesystem::temp_directory_path() /
                      ("iterlock-demo-latency-" + std::to_string(getpid()) + ".csv");
                data = tmp.string();
                write_latency_csv(done, data);
            }
            std::ostringstream title;
            title << "iterlock-demo: writer latency, " << cfg.per_writer() * threads << " sessions, "
                  << threads << " writers, aggregation every " << interval_ms << " ms";
            const int prc = run_plot(data, plot, title.str());
            if (!tmp.empty()) std::filesystem::remove(tmp);
            if (prc != 0) {
                std::cerr << "iterlock-demo: the plot failed (exit " << prc
                          << "); python3-matplotlib is needed\n";
                rc = rc == 0 ? 2 : rc;
            } else {
                std::cerr << "iterlock-demo: wrote " << plot << '\n';
            }
        }
    } catch (const std::exception& e) {
        std::cerr << "iterlock-demo: " << e.what() << '\n';
        rc = rc == 0 ? 2 : rc;
    }

#if ITERLOCK_DEMO_PROMETHEUS
    if (ep && linger > 0) {
        std::cerr << "iterlock-demo: serving the final metrics at " << ep->url() << " for " << linger
                  << " s\n";
        std::this_thread::sleep_for(std::chrono::duration<double>(linger));
    }
#endif
    return rc;
}

}  // namespace
}  // namespace iterlock_demo

int main(int argc, char** argv) {
    try {
        return iterlock_demo::demo_main(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "iterlock-demo: " << e.what() << '\n';
        return 2;
    }
}
