// iterlock-bench's driver: parses the command line (CLI11), runs each selected workload for each selected
// implementation, and prints either CSV (one header, one row per figure) or aligned tables grouped by
// workload with a ratio column against the workload's baseline implementation.
//
// Invariants: the CSV header is exactly `workload,impl,size,threads,metric,value,unit` and stdout carries
// nothing else in --csv mode (progress and notes go to stderr); an unknown workload or implementation, or a
// malformed option, exits with status 2 before anything runs; a workload that throws exits 1 at the end.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "registry.hpp"

namespace iterlock::bench {
namespace {

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}

// "10000", "10k", "1M", "10m" -> a count; throws CLI::ValidationError on anything else.
std::size_t parse_size(const std::string& text) {
    std::size_t pos = 0;
    unsigned long long n = 0;
    try {
        n = std::stoull(text, &pos);
    } catch (const std::exception&) {
        throw CLI::ValidationError("--size", "'" + text + "' is not a count");
    }
    const std::string suffix = lower(text.substr(pos));
    if (suffix == "k") {
        n *= 1'000;
    } else if (suffix == "m") {
        n *= 1'000'000;
    } else if (!suffix.empty()) {
        throw CLI::ValidationError("--size", "'" + text + "': the only suffixes are k and M");
    }
    return static_cast<std::size_t>(n);
}

// Full precision for CSV: integers as integers, the rest with 6 significant digits.
std::string csv_number(double v) {
    char buf[64];
    if (std::isfinite(v) && (v == std::floor(v) || std::fabs(v) >= 1e6) && std::fabs(v) < 1e18) {
        std::snprintf(buf, sizeof buf, "%.0f", v);
    } else {
        std::snprintf(buf, sizeof buf, "%.6g", v);
    }
    return buf;
}

// About four significant digits for the tables.
std::string table_number(double v) {
    char buf[64];
    const double a = std::fabs(v);
    if (a >= 1000 || v == std::floor(v)) {
        std::snprintf(buf, sizeof buf, "%.0f", v);
    } else if (a >= 100) {
        std::snprintf(buf, sizeof buf, "%.1f", v);
    } else if (a >= 1) {
        std::snprintf(buf, sizeof buf, "%.2f", v);
    } else {
        std::snprintf(buf, sizeof buf, "%.3g", v);
    }
    return buf;
}

std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
}

void print_csv_row(const row& r) {
    std::cout << csv_field(r.workload) << ',' << csv_field(r.impl) << ',' << r.size << ',' << r.threads << ','
              << csv_field(r.metric) << ',' << csv_number(r.value) << ',' << csv_field(r.unit) << '\n'
              << std::flush;
}

struct not_run {
    std::string impl;
    std::string why;
};

// One workload's tables: a block per (size, threads), metrics in first-seen order, implementations in run
// order, ratio = value / the baseline's value for the same size, threads and metric.
void print_tables(const workload& w, const std::vector<row>& rows, const std::vector<not_run>& skipped,
                  const std::vector<std::string>& impls, const std::string& baseline) {
    std::cout << "\n== " << w.name << ": " << w.description << "\n";
    std::vector<std::pair<std::size_t, int>> groups;
    for (const auto& r : rows) {
        if (std::find(groups.begin(), groups.end(), std::pair{r.size, r.threads}) == groups.end()) {
            groups.emplace_back(r.size, r.threads);
        }
    }
    const bool has_base = !baseline.empty() && std::find(impls.begin(), impls.end(), baseline) != impls.end();
    for (const auto& [size, threads] : groups) {
        std::vector<const row*> g;
        std::vector<std::string> metrics;
        for (const auto& r : rows) {
            if (r.size != size || r.threads != threads) continue;
            g.push_back(&r);
            if (std::find(metrics.begin(), metrics.end(), r.metric) == metrics.end())
                metrics.push_back(r.metric);
        }
        struct line {
            std::string metric, impl, value, unit, ratio;
        };
        std::vector<line> lines;
        for (const auto& m : metrics) {
            const row* base = nullptr;
            for (const row* r : g) {
                if (r->metric == m && r->impl == baseline) base = r;
            }
            bool first = true;
            for (const auto& impl : impls) {
                for (const row* r : g) {
                    if (r->metric != m || r->impl != impl) continue;
                    std::string ratio;
                    if (base && base->value != 0 && r->unit != "ratio") {
                        char buf[32];
                        std::snprintf(buf, sizeof buf, "%.2fx", r->value / base->value);
                        ratio = buf;
                    }
                    lines.push_back({first ? m : "", impl, table_number(r->value), r->unit, ratio});
                    first = false;
                }
            }
        }
        std::size_t wm = 6, wi = 4, wv = 5, wu = 4;
        for (const auto& l : lines) {
            wm = std::max(wm, l.metric.size());
            wi = std::max(wi, l.impl.size());
            wv = std::max(wv, l.value.size());
            wu = std::max(wu, l.unit.size());
        }
        std::cout << "\n  size " << size << ", threads " << threads << "\n";
        auto print = [&](const std::string& m, const std::string& i, const std::string& v,
                         const std::string& u, const std::string& r) {
            std::cout << "  " << m << std::string(wm - m.size() + 2, ' ') << i
                      << std::string(wi - i.size() + 2, ' ') << std::string(wv - v.size(), ' ') << v << "  "
                      << u << std::string(wu - u.size() + 2, ' ') << r << "\n";
        };
        print("metric", "impl", "value", "unit", has_base ? "vs " + baseline : "");
        for (const auto& l : lines) print(l.metric, l.impl, l.value, l.unit, l.ratio);
    }
    bool any_note = false;
    for (const auto& impl : impls) {
        auto it = w.notes.find(impl);
        if (it == w.notes.end()) continue;
        if (!any_note) std::cout << "\n  notes:\n";
        any_note = true;
        std::cout << "    " << impl << ": " << it->second << "\n";
    }
    for (const auto& s : skipped) std::cout << "  not run: " << s.impl << ": " << s.why << "\n";
}

// Reduces the rows of several one-repetition passes to one row per (impl, size, threads, metric) holding
// the median of its values, in first-seen order.
std::vector<row> interleaved_medians(const std::vector<row>& samples) {
    std::vector<row> out;
    std::vector<std::vector<double>> values;
    for (const row& r : samples) {
        auto same = [&](const row& o) {
            return o.impl == r.impl && o.size == r.size && o.threads == r.threads && o.metric == r.metric;
        };
        const auto it = std::find_if(out.begin(), out.end(), same);
        if (it == out.end()) {
            out.push_back(r);
            values.push_back({r.value});
        } else {
            values[static_cast<std::size_t>(it - out.begin())].push_back(r.value);
        }
    }
    for (std::size_t i = 0; i < out.size(); ++i) out[i].value = median(values[i]);
    return out;
}

void print_list() {
    for (const auto& w : registry()) {
        std::cout << w.name << ": " << w.description << "\n";
        if (!w.baseline.empty()) std::cout << "  baseline: " << w.baseline << "\n";
        for (const auto& impl : w.impls) {
            auto it = w.notes.find(impl);
            std::cout << "  " << impl << (it != w.notes.end() ? "  (" + it->second + ")" : "") << "\n";
        }
    }
}

// Orders workloads by letter prefix, then number (W1 < W2 < W10 < C1 ...); registration order otherwise.
void sort_registry() {
    auto key = [](const std::string& name) {
        std::size_t digits = name.find_first_of("0123456789");
        if (digits == std::string::npos) return std::pair{name, 0UL};
        return std::pair{name.substr(0, digits), std::stoul(name.substr(digits))};
    };
    std::stable_sort(registry().begin(), registry().end(), [&](const workload& a, const workload& b) {
        const auto ka = key(a.name), kb = key(b.name);
        if (ka.first != kb.first) return ka.first > kb.first;  // "W" before "C": maps first, channels after
        return ka.second < kb.second;
    });
}

const workload* find_workload(const std::string& name) {
    for (const auto& w : registry()) {
        if (lower(w.name) == lower(name)) return &w;
    }
    return nullptr;
}

int run(int argc, char** argv) {
    CLI::App app{"iterlock-bench: iterlock's maps, channels and their peers under the issue's workloads"};
    std::vector<std::string> workload_names, impl_names, size_texts;
    std::vector<int> threads;
    std::string baseline;
    options opts;
    bool csv = false, list = false, interleave = false;
    app.add_option("-w,--workload", workload_names, "workloads to run, e.g. W1,W3 (see --list)")
        ->delimiter(',');
    app.add_option("-i,--impl", impl_names, "implementations to run (default: all of each workload)")
        ->delimiter(',');
    app.add_option("-n,--size", size_texts,
                   "entries (or keyspace half), e.g. 10000,1M (default: per workload)")
        ->delimiter(',');
    app.add_option("-t,--threads", threads, "thread counts for W2, e.g. 1,2,4 (default 1,2)")
        ->delimiter(',')
        ->check(CLI::Range(1, 1024));
    app.add_option("-d,--duration", opts.duration_s, "seconds per timed phase (default: per workload, 2)")
        ->check(CLI::Range(0.0, 3600.0));
    app.add_option("-r,--reps", opts.repetitions, "repetitions; figures are their medians")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    app.add_option("--baseline", baseline,
                   "implementation the ratio column divides by (default: per workload)");
    app.add_flag("--interleave", interleave,
                 "run the repetitions round-robin over the implementations (rep 1 of each, then rep 2, "
                 "...) so that each median spans the same stretch of time; for ratios on a noisy machine");
    app.add_option(
        "--etcd-endpoints", opts.etcd_endpoints,
        "etcd endpoints for D1-D4, e.g. 127.0.0.1:2379,127.0.0.1:22379 (default: start one member)");
    app.add_flag("--csv", csv, "print CSV: workload,impl,size,threads,metric,value,unit");
    app.add_flag("--list", list, "list workloads and implementations, then exit");
    try {
        app.parse(argc, argv);
        for (const auto& t : size_texts) opts.sizes.push_back(parse_size(t));
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : 2;
    }
    opts.threads = threads;
    sort_registry();

    if (list) {
        print_list();
        return 0;
    }
    if (workload_names.empty()) {
        std::cerr << "iterlock-bench: no workload given; use --workload W1[,W3...] (--list shows them)\n";
        return 2;
    }
    std::vector<const workload*> selected;
    for (const auto& name : workload_names) {
        const workload* w = find_workload(name);
        if (!w) {
            std::vector<std::string> known;
            for (const auto& k : registry()) known.push_back(k.name);
            std::cerr << "iterlock-bench: unknown workload '" << name << "'; known: " << join(known) << "\n";
            return 2;
        }
        if (std::find(selected.begin(), selected.end(), w) == selected.end()) selected.push_back(w);
    }
    for (const auto& impl : impl_names) {
        const bool known = std::any_of(selected.begin(), selected.end(), [&](const workload* w) {
            return std::find(w->impls.begin(), w->impls.end(), impl) != w->impls.end();
        });
        if (!known) {
            std::vector<std::string> all;
            for (const workload* w : selected) {
                for (const auto& i : w->impls) {
                    if (std::find(all.begin(), all.end(), i) == all.end()) all.push_back(i);
                }
            }
            std::cerr << "iterlock-bench: unknown implementation '" << impl << "' for "
                      << join(workload_names) << "; known: " << join(all) << "\n";
            return 2;
        }
    }

    if (csv) std::cout << "workload,impl,size,threads,metric,value,unit\n" << std::flush;
    int failures = 0;
    for (const workload* w : selected) {
        std::vector<std::string> impls;
        if (impl_names.empty()) {
            impls = w->impls;
        } else {
            for (const auto& i : impl_names) {
                if (std::find(w->impls.begin(), w->impls.end(), i) != w->impls.end()) impls.push_back(i);
            }
        }
        std::vector<row> rows;
        std::vector<not_run> skipped;
        // One pass runs every implementation once with `pass_opts`; --interleave makes `reps` passes of
        // one repetition each and takes the medians at the end, otherwise one pass does every repetition.
        const int reps = interleave ? opts.repetitions : 1;
        options pass_opts = opts;
        if (interleave) pass_opts.repetitions = 1;
        std::vector<row> samples;  // --interleave: every pass's rows, reduced to medians below
        std::vector<std::string> failed;
        const auto gave_up = [&](const std::string& impl) {  // failed or unavailable in an earlier pass
            return std::find(failed.begin(), failed.end(), impl) != failed.end() ||
                   std::any_of(skipped.begin(), skipped.end(),
                               [&](const not_run& n) { return n.impl == impl; });
        };
        for (int pass = 0; pass < reps; ++pass) {
            for (const auto& impl : impls) {
                if (gave_up(impl)) continue;
                std::cerr << "[" << w->name << "] " << impl;
                if (interleave) std::cerr << " (pass " << pass + 1 << " of " << reps << ")";
                std::cerr << " ...\n";
                try {
                    w->run(impl, pass_opts, [&](row r) {
                        if (interleave) {
                            samples.push_back(std::move(r));
                            return;
                        }
                        if (csv) print_csv_row(r);
                        rows.push_back(std::move(r));
                    });
                } catch (const unavailable& e) {
                    std::cerr << "[" << w->name << "] " << impl << ": not run: " << e.what() << "\n";
                    skipped.push_back({impl, e.what()});
                } catch (const std::exception& e) {
                    std::cerr << "[" << w->name << "] " << impl << ": FAILED: " << e.what() << "\n";
                    failed.push_back(impl);
                    ++failures;
                }
            }
        }
        if (interleave) {
            for (row& r : interleaved_medians(samples)) {
                if (csv) print_csv_row(r);
                rows.push_back(std::move(r));
            }
        }
        if (!csv) {
            print_tables(*w, rows, skipped, impls, baseline.empty() ? w->baseline : baseline);
            std::cout << std::flush;
        }
    }
    return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace iterlock::bench

int main(int argc, char** argv) {
    return iterlock::bench::run(argc, argv);
}
