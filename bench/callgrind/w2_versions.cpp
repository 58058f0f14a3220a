// W2's operation mix at a fixed count, single thread, for callgrind instruction counts (issue 16: what
// versions cost). Not part of iterlock-bench (a timed phase has no fixed instruction count). Build and run:
//   g++ -std=c++20 -O2 -DNDEBUG -Iinclude -o w2cg bench/callgrind/w2_versions.cpp -pthread
//   valgrind --tool=callgrind --toggle-collect='*run_ops*' ./w2cg MODE
// MODE: plain, versioned, history, watched, history_4k, history_push, history_pull (see main).
// Prefill: the even indices of a 2N keyspace (N = 100K); then 1M operations, 90% find / 5% insert_or_assign /
// 5% erase.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterlock/concurrent_map.hpp>
#include <iterlock/versioned_map.hpp>

#include "keys.hpp"
template <class M>
__attribute__((noinline)) u64 run_ops(M& m, u64 n, u64 ops) {
    u64 s = 0, r = 12345;
    for (u64 j = 0; j < ops; ++j) {
        r = mix(r + 0x9e3779b97f4a7c15ULL);
        const u64 i = ((r >> 32) * (2 * n)) >> 32;
        const u64 pick = ((r & 0xffffffffULL) * 100) >> 32;
        if (pick < 90) {
            if (auto v = m.find(mix(i))) s += *v;
        } else if (pick < 95)
            m.insert_or_assign(mix(i), i);
        else
            s += m.erase(mix(i));
    }
    return s;
}
template <class M>
int go(M& m, u64 n, u64 ops) {
    for (u64 i = 0; i < n; i += 2) m.insert_or_assign(mix(i), i);
    std::printf("%llu\n", (unsigned long long)run_ops(m, n, ops));
    return 0;
}
int main(int argc, char** argv) {
    const u64 n = 100000, ops = 1000000;
    if (!std::strcmp(argv[1], "plain")) {
        iterlock::concurrent_map<u64, u64> m;
        return go(m, n, ops);
    }
    if (!std::strcmp(argv[1], "versioned")) {
        iterlock::versioned_map<u64, u64> m(0, 0);
        return go(m, n, ops);
    }
    if (!std::strcmp(argv[1], "history")) {
        iterlock::versioned_map<u64, u64> m(0, 256);
        return go(m, n, ops);
    }
    if (!std::strcmp(argv[1], "watched")) {
        iterlock::versioned_map<u64, u64> m(0, 0);
        auto f = m.watch(std::size_t{1} << 20);
        return go(m, n, ops);
    }
    // 4096 events of history per shard (every write of the run: a pull feed is then never cut off), with
    // no feed, or one feed registered that nobody reads, push or pull delivery: what the writer pays per
    // watcher.
    if (!std::strcmp(argv[1], "history_4k")) {
        iterlock::versioned_map<u64, u64> m(0, 4096);
        return go(m, n, ops);
    }
    if (!std::strcmp(argv[1], "history_push")) {
        iterlock::versioned_map<u64, u64> m(0, 4096);
        auto f = m.watch(std::size_t{1} << 20, iterlock::feed_delivery::push);
        return go(m, n, ops);
    }
    if (!std::strcmp(argv[1], "history_pull")) {
        iterlock::versioned_map<u64, u64> m(0, 4096);
        auto f = m.watch(std::size_t{1} << 20, iterlock::feed_delivery::pull);
        return go(m, n, ops);
    }
    return 1;
}
