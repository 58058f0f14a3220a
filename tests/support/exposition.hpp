// tests/support/exposition.hpp: reading Prometheus' text exposition format back in tests.
//
// Owns: iterlock::test::exposition (series -> value, and the families' TYPE lines).
// Invariant: a series is keyed exactly as printed, `name{label="value",...}`, so tests state the label order
// iterlock promises (map first, then constant labels, then the family's own, `le` last).
#pragma once

#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace iterlock::test {

struct exposition {
    std::map<std::string, double> samples;     // series -> value
    std::map<std::string, std::string> types;  // family name -> counter | gauge | histogram | ...
    std::map<std::string, int> type_lines;     // family name -> how many # TYPE lines declared it
    std::vector<std::string> order;            // series in the order they were printed

    explicit exposition(const std::string& text) {
        std::istringstream in(text);
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("# TYPE ", 0) == 0) {
                const std::string rest = line.substr(7);
                const auto sp = rest.find(' ');
                types[rest.substr(0, sp)] = rest.substr(sp + 1);
                ++type_lines[rest.substr(0, sp)];
                continue;
            }
            if (line.empty() || line[0] == '#') continue;
            // The value follows the last space outside the label set.
            const auto close = line.rfind('}');
            const auto sp = line.find(' ', close == std::string::npos ? 0 : close);
            if (sp == std::string::npos) continue;
            const std::string series = line.substr(0, sp);
            samples[series] = std::strtod(line.c_str() + sp + 1, nullptr);
            order.push_back(series);
        }
    }

    std::optional<double> get(const std::string& series) const {
        auto it = samples.find(series);
        if (it == samples.end()) return std::nullopt;
        return it->second;
    }
    bool has_family(const std::string& name) const { return types.count(name) != 0; }
    // Whether any series of family `name` carries `needle` (e.g. `map="x"`) in its labels.
    bool any(const std::string& name, const std::string& needle) const {
        for (const auto& [s, v] : samples)
            if (s.rfind(name + "{", 0) == 0 && s.find(needle) != std::string::npos) return true;
        return false;
    }
};

}  // namespace iterlock::test
