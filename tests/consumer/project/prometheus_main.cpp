// The pkg-config consumer's second program: exports a concurrent_map through iterlock/prometheus.hpp, built
// with only `pkg-config --cflags --libs iterlock-prometheus`, so missing link flags fail the build.
#include <iterlock/concurrent_map.hpp>
#include <iterlock/prometheus.hpp>

#include <cstdio>
#include <string>

int main() {
    iterlock::locked_concurrent_map<std::string, int> sessions;
    sessions.insert({"a", 1});
    sessions.insert({"b", 2});
    iterlock::prometheus::registry reg;
    const auto exposed = reg.add(sessions, "sessions");
    const std::string text = reg.text();
    const bool ok = text.find("iterlock_map_entries{map=\"sessions\"} 2") != std::string::npos;
    std::printf("iterlock prometheus consumer: %s\n", ok ? "ok" : text.c_str());
    return ok ? 0 : 1;
}
