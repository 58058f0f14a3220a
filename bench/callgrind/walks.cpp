// bench/callgrind/walks.cpp: fixed-count walks of iterlock::map and concurrent_map (locked and snapshot),
// single thread, for callgrind instruction counts per entry (issue 14 item 2). Not part of iterlock-bench (a
// timed phase has no fixed instruction count). Build and run:
//   g++ -std=c++20 -O2 -DNDEBUG -Iinclude -o walks bench/callgrind/walks.cpp -pthread
//   valgrind --tool=callgrind --toggle-collect='*phase_*' ./walks <phase> <n>
// Phases: map_walk, locked_walk, snapshot_walk: 10 walks of n entries (default 10000) summing the values;
// the concurrent maps have 64 shards (the default on a 2-thread machine). Divide Ir by 10 n.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterlock/concurrent_map.hpp>
#include <iterlock/map.hpp>

#include "keys.hpp"
using plain_map = iterlock::map<u64, u64>;
using snap_map = iterlock::concurrent_map<u64, u64>;
using lock_map = iterlock::locked_concurrent_map<u64, u64>;
constexpr int walks = 10;

__attribute__((noinline)) u64 phase_map_walk(plain_map& m) {
    u64 s = 0;
    for (int r = 0; r < walks; ++r)
        for (const auto& [k, v] : m) s += v;
    return s;
}
__attribute__((noinline)) u64 phase_locked_walk(lock_map& m) {
    u64 s = 0;
    for (int r = 0; r < walks; ++r) {
        auto g = m.lock_for_iteration();
        for (const auto& [k, v] : g) s += v;
    }
    return s;
}
__attribute__((noinline)) u64 phase_snapshot_walk(snap_map& m) {
    u64 s = 0;
    for (int r = 0; r < walks; ++r) {
        auto snap = m.snapshot();
        for (const auto& [k, v] : snap) s += v;
    }
    return s;
}

int main(int argc, char** argv) {
    const char* p = argc > 1 ? argv[1] : "";
    const u64 n = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 10000;
    u64 out = 0;
    if (std::strcmp(p, "map_walk") == 0) {
        plain_map m(iterlock::seed{42});
        for (u64 i = 0; i < n; ++i) m.insert_or_assign(mix(i), i);
        out = phase_map_walk(m);
    } else if (std::strcmp(p, "locked_walk") == 0) {
        lock_map m(64, iterlock::seed{42});
        for (u64 i = 0; i < n; ++i) m.insert_or_assign(mix(i), i);
        out = phase_locked_walk(m);
    } else if (std::strcmp(p, "snapshot_walk") == 0) {
        snap_map m(64, iterlock::seed{42});
        for (u64 i = 0; i < n; ++i) m.insert_or_assign(mix(i), i);
        out = phase_snapshot_walk(m);
    } else {
        std::fprintf(stderr, "usage: walks map_walk|locked_walk|snapshot_walk [n]\n");
        return 2;
    }
    std::printf("%llu\n", static_cast<unsigned long long>(out));
    return out == static_cast<u64>(walks) * n * (n - 1) / 2 ? 0 : 1;
}
