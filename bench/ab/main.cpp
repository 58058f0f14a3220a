// bench/ab/main.cpp: the in-process A/B driver's main (tools/ab-finds.sh builds and runs it): inserts, finds,
// walks and erases of each contender against absl's.
//
// Owns: the rounds, the ratios and the report.
// Invariants: every contender's map holds the same N keys and is probed with the same hit order and miss
//       keys; all maps are alive for the whole run and timed round-robin (each round starting one contender
//       later than the last), so a drift of the machine's speed lands on every contender alike; each round's
//       time is divided by absl's in the same round, and the report gives the median of those per-round
//       ratios (not a ratio of medians); every fill starts from a trimmed heap.
//
// Why: on this project's 2-vCPU VMs one process's memory placement moves a find's time by up to 2x from
// the next process's, and iterlock-bench builds a fresh map per repetition, so two binaries' W1 ratios
// differ by more than most changes under test. Here the contenders share one process and its placement
// luck; run the script several times to sample placements.
#include <absl/container/flat_hash_map.h>

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

using u64 = std::uint64_t;

#define AB_DECLARE(name)                                        \
    void* build_##name(const std::vector<u64>& keys);           \
    u64 erases_##name(void* map, const std::vector<u64>& keys); \
    void destroy_##name(void* map);                             \
    u64 finds_##name(void* map, const std::vector<u64>& keys);  \
    u64 walk_##name(void* map);
AB_VARIANTS(AB_DECLARE)

namespace {

using absl_map = absl::flat_hash_map<u64, u64>;
[[gnu::noinline]] void* build_absl(const std::vector<u64>& keys) {
    auto* m = new absl_map;
    for (std::size_t i = 0; i < keys.size(); ++i) m->insert_or_assign(keys[i], i);
    return m;
}
[[gnu::noinline]] u64 erases_absl(void* map, const std::vector<u64>& order) {
    absl_map& m = *static_cast<absl_map*>(map);
    u64 erased = 0;
    for (u64 k : order) erased += m.erase(k);
    return erased;
}
void destroy_absl(void* map) {
    delete static_cast<absl_map*>(map);
}
[[gnu::noinline]] u64 finds_absl(void* map, const std::vector<u64>& keys) {
    absl_map& m = *static_cast<absl_map*>(map);
    u64 sum = 0, found = 0;
    for (u64 k : keys) {
        if (auto it = m.find(k); it != m.end()) {
            sum += it->second;
            ++found;
        }
    }
    return sum + found;
}
[[gnu::noinline]] u64 walk_absl(void* map) {
    absl_map& m = *static_cast<absl_map*>(map);
    u64 sum = 0, seen = 0;
    for (const auto& [k, v] : m) {
        sum += v;
        ++seen;
    }
    return sum + seen;
}

// splitmix64, as iterlock-bench's key streams.
struct splitmix64 {
    u64 s;
    u64 operator()() {
        u64 z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

double now_ns() {
    return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

struct contender {
    const char* name;
    void* (*build)(const std::vector<u64>&);
    u64 (*erases)(void*, const std::vector<u64>&);
    void (*destroy)(void*);
    u64 (*finds)(void*, const std::vector<u64>&);
    u64 (*walk)(void*);
    void* map = nullptr;
    std::vector<double> insert_ns, hit_ns, miss_ns, walk_ns, erase_ns;
    std::vector<double> insert_ratio, hit_ratio, miss_ratio, walk_ratio, erase_ratio;
};

}  // namespace

int main(int argc, char** argv) {
    const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 11;
    if (n == 0 || rounds <= 0) {
        std::fprintf(stderr, "usage: %s [entries > 0] [rounds > 0]\n", argv[0]);
        return 2;
    }
    splitmix64 g{1};
    std::vector<u64> keys(n), misses(n);
    for (u64& k : keys) k = g();
    for (u64& k : misses) k = g();
    std::vector<u64> order = keys;
    splitmix64 shuffle{7};
    for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[shuffle() % i]);

#define AB_ENTRY(name) \
    contender{#name, build_##name, erases_##name, destroy_##name, finds_##name, walk_##name},
    std::vector<contender> cs = {
        contender{"absl", build_absl, erases_absl, destroy_absl, finds_absl, walk_absl},
        AB_VARIANTS(AB_ENTRY)};
    // Walks per round: enough to time ~20M entries, as W3 does.
    const std::size_t walks = std::max<std::size_t>(3, 20'000'000 / n);
    for (contender& c : cs) c.map = c.build(keys);
    // What every contender's finds and walks must return: absl's.
    u64 expect = cs[0].finds(cs[0].map, order) + cs[0].finds(cs[0].map, misses);
    for (std::size_t p = 0; p < walks; ++p) expect += cs[0].walk(cs[0].map);
    for (int r = 0; r < rounds; ++r) {
        // Each round starts at the next contender, so that a drift within a round does not always land on
        // the same one. (The fills' dependence on what the round freed before them is the trim's, below.)
        for (std::size_t j = 0; j < cs.size(); ++j) {
            const std::size_t i = (j + static_cast<std::size_t>(r)) % cs.size();
            contender& c = cs[i];
            const double t0 = now_ns();
            const u64 a = c.finds(c.map, order);
            const double t1 = now_ns();
            const u64 b = c.finds(c.map, misses);
            const double t2 = now_ns();
            u64 w = 0;
            for (std::size_t p = 0; p < walks; ++p) w += c.walk(c.map);
            const double t3 = now_ns();
            // Last: a fresh map's allocation and release would disturb the caches the finds and walks use.
            void* fresh = c.build(keys);
            const double t4 = now_ns();
            const u64 erased = c.erases(fresh, order);
            const double t5 = now_ns();
            c.destroy(fresh);
            // Every fill starts from a trimmed heap, as in a fresh process: otherwise a fill finds the
            // pages its predecessor in the round freed already mapped or not, depending on who that was
            // (absl's one large block goes back to the system, 64 shards' arrays stay in the heap).
            malloc_trim(0);
            if (erased != n) {
                std::fprintf(stderr, "%s inserted or erased other keys than absl\n", c.name);
                return 1;
            }
            if (a + b + w != expect) {
                std::fprintf(stderr, "%s found or walked other values than absl\n", c.name);
                return 1;
            }
            c.insert_ns.push_back((t4 - t3) / static_cast<double>(n));
            c.hit_ns.push_back((t1 - t0) / static_cast<double>(n));
            c.miss_ns.push_back((t2 - t1) / static_cast<double>(n));
            c.walk_ns.push_back((t3 - t2) / static_cast<double>(n * walks));
            c.erase_ns.push_back((t5 - t4) / static_cast<double>(n));
        }
        for (contender& c : cs) {
            c.insert_ratio.push_back(c.insert_ns.back() / cs[0].insert_ns.back());
            c.hit_ratio.push_back(c.hit_ns.back() / cs[0].hit_ns.back());
            c.miss_ratio.push_back(c.miss_ns.back() / cs[0].miss_ns.back());
            c.walk_ratio.push_back(c.walk_ns.back() / cs[0].walk_ns.back());
            c.erase_ratio.push_back(c.erase_ns.back() / cs[0].erase_ns.back());
        }
    }
    std::printf("%-16s %10s %10s %10s %10s %10s %10s %10s %10s %10s %10s\n", "contender", "insert ns",
                "x absl", "hit ns", "x absl", "miss ns", "x absl", "walk ns", "x absl", "erase ns", "x absl");
    for (const contender& c : cs) {
        std::printf("%-16s %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f\n", c.name,
                    median(c.insert_ns), median(c.insert_ratio), median(c.hit_ns), median(c.hit_ratio),
                    median(c.miss_ns), median(c.miss_ratio), median(c.walk_ns), median(c.walk_ratio),
                    median(c.erase_ns), median(c.erase_ratio));
    }
    return 0;
}
