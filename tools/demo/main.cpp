// iterlock-demo: why iterlock exists, in one run. A feature service streams session updates from writer
// threads while an aggregator walks every session every 100 ms; the same load runs once per contender
// (std::unordered_map + std::shared_mutex, iterlock locked iteration, iterlock snapshot iteration, and
// tbb::concurrent_unordered_map walked without a lock), and one table compares aggregations, writer latency
// and the consistency violations the built-in check found (feature_service.hpp).
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

#if ITERLOCK_DEMO_PROMETHEUS
#include "iterlock/prometheus.hpp"
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
        return run_feature_service(store, cfg, live, tick);
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

const std::vector<std::string> all_contenders = {"std_shared_mutex", "iterlock_locked", "iterlock_snapshot",
                                                 "tbb_concurrent_unordered_map"};

std::unique_ptr<contender> make_contender(const std::string& name) {
    if (name == "std_shared_mutex") return std::make_unique<contender_of<std_shared_mutex_store>>();
    if (name == "iterlock_locked") return std::make_unique<contender_of<iterlock_locked_store>>();
    if (name == "iterlock_snapshot") return std::make_unique<contender_of<iterlock_snapshot_store>>();
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

struct finished {
    const contender* c;
    service_result r;
};

void print_table(const std::vector<finished>& rows, const service_config& cfg) {
    const std::vector<std::string> head = {"contender", "aggregations", "aggr p50", "aggr max", "writes/s",
                                           "write p50", "p99",          "p99.9",    "max",      "violations"};
    std::vector<std::vector<std::string>> cells;
    for (const auto& f : rows) {
        const auto& r = f.r;
        cells.push_back({std::string(f.c->name()), std::to_string(r.aggregations),
                         human_ns(static_cast<double>(r.aggregation_time.quantile(0.5))),
                         human_ns(static_cast<double>(r.aggregation_time.max())),
                         human_rate(r.writer_ops_per_s()),
                         human_ns(static_cast<double>(r.write_latency.quantile(0.5))),
                         human_ns(static_cast<double>(r.write_latency.quantile(0.99))),
                         human_ns(static_cast<double>(r.write_latency.quantile(0.999))),
                         human_ns(static_cast<double>(r.write_latency.max())), std::to_string(r.violations)});
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
              << "one aggregator walking every session every " << cfg.interval.count() << " ms\n\n";
    line(head);
    for (const auto& row : cells) line(row);

    std::cout << "\naggregations: whole walks done in the window (aggr p50/max: time of one walk)\n"
                 "writes/s, write p50 .. max: writer throughput and the latency of one update\n"
                 "violations: walks that saw a writer's later update but missed an earlier one (not one "
                 "instant of the map)\n";
    for (const auto& f : rows) {
        if (f.c->promises_consistency()) continue;
        std::cout
            << "\n"
            << f.c->name() << " walks without a lock: " << f.r.violations << " of " << f.r.aggregations
            << " aggregations were torn. std_shared_mutex and iterlock_locked keep "
            << "writers out while they walk; iterlock_snapshot walks one instant while writers go on.\n";
    }
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
        row("write_p50_ns", static_cast<double>(r.write_latency.quantile(0.5)), "ns");
        row("write_p99_ns", static_cast<double>(r.write_latency.quantile(0.99)), "ns");
        row("write_p999_ns", static_cast<double>(r.write_latency.quantile(0.999)), "ns");
        row("write_max_ns", static_cast<double>(r.write_latency.max()), "ns");
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
    double rate = 0;
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
                   "updates per second per writer, latency counted from when each update was due "
                   "(0: as fast as possible)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1e9));
    app.add_option("--contenders", contenders_opt,
                   "comma-separated subset of: std_shared_mutex, iterlock_locked, iterlock_snapshot, "
                   "tbb_concurrent_unordered_map (default: all, in that order)");
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
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }

    const std::vector<std::string> names =
        contenders_opt.empty() ? all_contenders : split_list(contenders_opt);
    std::vector<std::unique_ptr<contender>> cs;
    for (const auto& n : names) {
        auto c = make_contender(n);
        if (!c) {
            std::cerr << "iterlock-demo: unknown contender '" << n
                      << "' (known: std_shared_mutex, iterlock_locked, "
                      << "iterlock_snapshot, tbb_concurrent_unordered_map)\n";
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
              << " ms\n";
    std::vector<finished> done;
    for (std::size_t i = 0; i < cs.size(); ++i) {
        contender& c = *cs[i];
        const std::string label = "[" + std::to_string(i + 1) + "/" + std::to_string(cs.size()) + "] " +
                                  pad(std::string(c.name()), 28, false);
        auto progress = [&](double elapsed) {
            char buf[160];
            std::snprintf(
                buf, sizeof buf, "%s %5.1f/%.1f s  writes %10llu  aggregations %4llu  violations %llu",
                label.c_str(), elapsed, cfg.duration.count(),
                static_cast<unsigned long long>(c.live.writes.load(std::memory_order_relaxed)),
                static_cast<unsigned long long>(c.live.aggregations.load(std::memory_order_relaxed)),
                static_cast<unsigned long long>(c.live.violations.load(std::memory_order_relaxed)));
            if (tty) std::cerr << '\r' << buf << "\033[K" << std::flush;
            return std::string(buf);
        };
        if (!tty) std::cerr << label << " running\n";
        service_result r = c.run(cfg, [&](double elapsed) { progress(elapsed); });
        const std::string last = progress(r.seconds);
        if (tty) {
            std::cerr << '\n';
        } else {
            std::cerr << last << '\n';
        }
        done.push_back({&c, std::move(r)});
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
