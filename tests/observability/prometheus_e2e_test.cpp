// End-to-end: a real Prometheus server on loopback scrapes iterlock's /metrics and answers, through its HTTP
// query API, the values the test drove. Two endpoints: one in this process (iterlock::prometheus::endpoint),
// and the running iterlock-demo (--metrics-port 0), whose final counts the test reads from its CSV.
//
// Each Prometheus runs on its own free port with its own config and data directory under a temp dir,
// scrape_interval 1s; every wait is bounded (30 s for the value to show up); every server started here is
// stopped by its PID. The tests are skipped only when the `prometheus` binary is absent (Debian package
// `prometheus`, installed by tools/dev.sh).
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/prometheus.hpp"
#include "support/process.hpp"

namespace {

using namespace std::chrono_literals;
namespace it = iterlock::test;

class prometheus_server {
  public:
    // Starts Prometheus and waits (bounded) until it is ready. The free port is picked before Prometheus
    // binds it, so another process may take it in between: then Prometheus exits, and it is started again on
    // another port (three tries).
    prometheus_server(const std::string& binary, std::uint16_t target_port) {
        it::write_file(dir_.path() / "prometheus.yml",
                       "global:\n"
                       "  scrape_interval: 1s\n"
                       "  scrape_timeout: 1s\n"
                       "  evaluation_interval: 1s\n"
                       "scrape_configs:\n"
                       "  - job_name: iterlock\n"
                       "    static_configs:\n"
                       "      - targets: ['127.0.0.1:" +
                           std::to_string(target_port) + "']\n");
        for (int attempt = 0; attempt < 3; ++attempt) {
            port_ = it::free_port();
            proc_.reset();
            proc_.emplace(
                std::vector<std::string>{binary, "--config.file=" + (dir_.path() / "prometheus.yml").string(),
                                         "--storage.tsdb.path=" + (dir_.path() / "data").string(),
                                         "--web.listen-address=127.0.0.1:" + std::to_string(port_)},
                dir_.path() / "prometheus.log");
            const auto deadline = std::chrono::steady_clock::now() + 30s;
            while (proc_->running() && std::chrono::steady_clock::now() < deadline) {
                if (it::http_get(port_, "/-/ready", 1000ms).status == 200) return;
                std::this_thread::sleep_for(100ms);
            }
            if (proc_->running()) return;  // not ready in 30 s: let the queries fail with the log
        }
    }
    // The value of an instant query that yields one sample, or nullopt (no answer yet, no sample).
    std::optional<std::string> query(const std::string& promql) {
        const auto r = it::http_get(port_, "/api/v1/query?query=" + it::url_encode(promql), 2000ms);
        if (r.status != 200) return std::nullopt;
        static const std::regex value_re(R"re("value":\[[0-9.e+]+,"([^"]*)"\])re");
        std::smatch m;
        if (!std::regex_search(r.body, m, value_re)) return std::nullopt;
        return m[1].str();
    }

    // Polls `promql` until it equals `want` or 30 s pass; returns the last value seen.
    std::optional<std::string> wait_for_value(const std::string& promql, const std::string& want) {
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        std::optional<std::string> last;
        while (std::chrono::steady_clock::now() < deadline) {
            if (!proc_->running()) break;
            if (auto v = query(promql)) {
                last = v;
                if (*v == want) return last;
            }
            std::this_thread::sleep_for(250ms);
        }
        return last;
    }

    std::string log() const { return it::read_file(dir_.path() / "prometheus.log"); }

  private:
    it::temp_dir dir_;
    std::uint16_t port_ = 0;
    std::optional<it::child_process> proc_;
};

std::optional<std::string> prometheus_binary() {
    return it::find_program("prometheus");
}

TEST(PrometheusE2E, ScrapesACounterTheTestDrove) {
    const auto bin = prometheus_binary();
    if (!bin)
        GTEST_SKIP()
            << "the prometheus server is not installed (Debian package `prometheus`; tools/dev.sh deps)";

    using locked_map =
        iterlock::concurrent_map<int, int, iterlock::hash<int>, std::equal_to<int>,
                                 std::allocator<std::pair<const int, int>>, iterlock::locked_iteration>;
    locked_map m(4);
    for (int i = 0; i < 123; ++i) m.insert_or_assign(i, i);
    for (int i = 0; i < 7; ++i) {
        auto g = m.lock_for_iteration();
    }
    iterlock::prometheus::endpoint ep("127.0.0.1:0");
    auto h = ep.expose(m, "e2e_jobs");

    prometheus_server prom(*bin, ep.port());
    const auto v =
        prom.wait_for_value(R"(iterlock_locked_iterations_total{map="e2e_jobs",state="success"})", "7");
    ASSERT_EQ(v, std::optional<std::string>("7")) << "prometheus log:\n" << prom.log();
    EXPECT_EQ(prom.query(R"(iterlock_map_entries{map="e2e_jobs",job="iterlock"})"),
              std::optional<std::string>("123"));
    EXPECT_EQ(
        prom.query(
            R"(iterlock_lock_wait_seconds_count{map="e2e_jobs",role="iterator",priority="best_effort"})"),
        std::optional<std::string>("7"));
}

#ifdef ITERLOCK_DEMO_PATH
constexpr const char* demo_path = ITERLOCK_DEMO_PATH;
#else
constexpr const char* demo_path = "";
#endif

TEST(PrometheusE2E, ScrapesTheDemosEndpoint) {
    const auto bin = prometheus_binary();
    if (!bin)
        GTEST_SKIP()
            << "the prometheus server is not installed (Debian package `prometheus`; tools/dev.sh deps)";
    if (std::string(demo_path).empty())
        GTEST_SKIP() << "iterlock-demo is not part of this build (tools/ not added)";

    it::temp_dir dir;
    const auto log = dir.path() / "demo.log";
    it::child_process demo(
        {demo_path, "--contenders", "iterlock_locked,iterlock_snapshot", "--duration", "2", "--size", "20000",
         "--interval", "50", "--metrics-port", "0", "--csv", "--linger", "120"},
        log);

    // The demo prints its URL first and its CSV when the load is done (then lingers, serving final values).
    std::uint16_t port = 0;
    std::map<std::string, std::string> aggregations;  // contender -> count, from the CSV
    const std::regex url_re(R"(http://127\.0\.0\.1:([0-9]+)/metrics)");
    const std::regex row_re(R"((iterlock_locked|iterlock_snapshot),aggregations,([0-9]+),count)");
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < deadline && aggregations.size() < 2) {
        ASSERT_TRUE(demo.running()) << "iterlock-demo ended early:\n" << it::read_file(log);
        const std::string text = it::read_file(log);
        std::smatch m;
        if (port == 0 && std::regex_search(text, m, url_re))
            port = static_cast<std::uint16_t>(std::stoi(m[1].str()));
        for (auto i = std::sregex_iterator(text.begin(), text.end(), row_re); i != std::sregex_iterator();
             ++i)
            aggregations[(*i)[1].str()] = (*i)[2].str();
        std::this_thread::sleep_for(100ms);
    }
    ASSERT_NE(port, 0) << it::read_file(log);
    ASSERT_EQ(aggregations.size(), 2u) << it::read_file(log);
    EXPECT_NE(aggregations["iterlock_locked"], "0");

    prometheus_server prom(*bin, port);
    const auto locked =
        prom.wait_for_value(R"(iterlock_locked_iterations_total{map="iterlock_locked",state="success"})",
                            aggregations["iterlock_locked"]);
    ASSERT_EQ(locked, aggregations["iterlock_locked"]) << "prometheus log:\n" << prom.log();
    EXPECT_EQ(
        prom.wait_for_value(R"(iterlock_snapshot_iterations_total{map="iterlock_snapshot",state="success"})",
                            aggregations["iterlock_snapshot"]),
        aggregations["iterlock_snapshot"]);
    EXPECT_EQ(prom.query(R"(iterlock_demo_aggregations_total{contender="iterlock_locked"})"),
              aggregations["iterlock_locked"]);
    EXPECT_EQ(prom.query(R"(iterlock_demo_violations_total{contender="iterlock_snapshot"})"),
              std::optional<std::string>("0"));
    demo.stop();
}

}  // namespace
