// The consumer project's program: uses iterlock::map through the packaged target and checks a few
// results, so a package whose headers or usage requirements are broken fails to build or to run.
#include <iterlock/map.hpp>

#include <cstdio>
#include <string>
#include <utility>

int main() {
    iterlock::map<std::string, int> counts;
    for (std::string word : {"go", "map", "go", "lock", "go"}) ++counts[std::move(word)];

    int total = 0;
    for (const auto& [word, n] : counts) total += n;

    const bool ok = counts.size() == 3 && counts.get(std::string("go")) == 3 &&
                    !counts.contains(std::string("chan")) && total == 5;
    std::printf("iterlock consumer: %zu words, %d occurrences: %s\n", counts.size(), total,
                ok ? "ok" : "WRONG");
    return ok ? 0 : 1;
}
