// Fixed-count phases over iterlock::map and concurrent_map, single thread, for callgrind instruction counts
// before and after a change that should not change the machine code's work (issue 15 item 3: the layout
// split). Not part of iterlock-bench (a timed phase has no fixed instruction count). Build and run:
//   g++ -std=c++20 -O2 -DNDEBUG -Iinclude -o layers bench/callgrind/layers.cpp -pthread
//   valgrind --tool=callgrind --toggle-collect='*phase_*' ./layers <phase>
// Phases: map_insert, map_hit, map_miss, map_erase, map_walk (iterlock::map, N = 100K keys), cmap_w2
// (W2's mix: 90% find / 5% insert_or_assign / 5% erase over 2N keys, N prefilled), cmap_snapshot_walk,
// cmap_locked_walk (10 walks each).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterlock/concurrent_map.hpp>
#include <iterlock/map.hpp>

#include "keys.hpp"
constexpr u64 n = 100000;
using plain_map = iterlock::map<u64, u64>;
using snap_map = iterlock::concurrent_map<u64, u64>;
using lock_map = iterlock::locked_concurrent_map<u64, u64>;

__attribute__((noinline)) u64 phase_map_insert(plain_map& m) {
    for (u64 i = 0; i < n; ++i) m.insert_or_assign(mix(i), i);
    return m.size();
}
__attribute__((noinline)) u64 phase_map_hit(plain_map& m) {
    u64 s = 0;
    for (u64 r = 0; r < 4; ++r)
        for (u64 i = 0; i < n; ++i) s += m.contains(mix(i));
    return s;
}
__attribute__((noinline)) u64 phase_map_miss(plain_map& m) {
    u64 s = 0;
    for (u64 r = 0; r < 4; ++r)
        for (u64 i = n; i < 2 * n; ++i) s += m.contains(mix(i));
    return s;
}
__attribute__((noinline)) u64 phase_map_erase(plain_map& m) {
    u64 s = 0;
    for (u64 i = 0; i < n; ++i) s += m.erase(mix(i));
    return s;
}
__attribute__((noinline)) u64 phase_map_walk(plain_map& m) {
    u64 s = 0;
    for (int r = 0; r < 10; ++r)
        for (const auto& [k, v] : m) s += v;
    return s;
}
template <class M>
__attribute__((noinline)) u64 phase_cmap_w2(M& m) {
    u64 s = 0, r = 12345;
    for (u64 j = 0; j < 10 * n; ++j) {
        r = mix(r + 0x9e3779b97f4a7c15ULL);
        const u64 i = ((r >> 32) * (2 * n)) >> 32;
        const u64 pick = ((r & 0xffffffffULL) * 100) >> 32;
        if (pick < 90) {
            if (auto v = m.find(mix(i))) s += *v;
        } else if (pick < 95) {
            m.insert_or_assign(mix(i), i);
        } else {
            s += m.erase(mix(i));
        }
    }
    return s;
}
__attribute__((noinline)) u64 phase_cmap_snapshot_walk(snap_map& m) {
    u64 s = 0;
    for (int r = 0; r < 10; ++r) {
        auto snap = m.snapshot();
        for (const auto& [k, v] : snap) s += v;
    }
    return s;
}
__attribute__((noinline)) u64 phase_cmap_locked_walk(lock_map& m) {
    u64 s = 0;
    for (int r = 0; r < 10; ++r) {
        auto g = m.lock_for_iteration();
        for (const auto& [k, v] : g) s += v;
    }
    return s;
}

int main(int argc, char** argv) {
    const char* p = argc > 1 ? argv[1] : "";
    u64 out = 0;
    if (std::strncmp(p, "map_", 4) == 0) {
        plain_map m(iterlock::seed{42});
        if (std::strcmp(p, "map_insert") == 0) {
            out = phase_map_insert(m);
        } else {
            for (u64 i = 0; i < n; ++i) m.insert_or_assign(mix(i), i);
            if (std::strcmp(p, "map_hit") == 0) out = phase_map_hit(m);
            if (std::strcmp(p, "map_miss") == 0) out = phase_map_miss(m);
            if (std::strcmp(p, "map_erase") == 0) out = phase_map_erase(m);
            if (std::strcmp(p, "map_walk") == 0) out = phase_map_walk(m);
        }
    } else if (std::strcmp(p, "cmap_locked_walk") == 0) {
        lock_map m(64, iterlock::seed{42});
        for (u64 i = 0; i < n; ++i) m.insert_or_assign(mix(i), i);
        out = phase_cmap_locked_walk(m);
    } else {
        snap_map m(64, iterlock::seed{42});
        for (u64 i = 0; i < 2 * n; i += 2) m.insert_or_assign(mix(i), i);
        if (std::strcmp(p, "cmap_w2") == 0) out = phase_cmap_w2(m);
        if (std::strcmp(p, "cmap_snapshot_walk") == 0) out = phase_cmap_snapshot_walk(m);
    }
    std::printf("%llu\n", static_cast<unsigned long long>(out));
    return 0;
}
