// Compiled by the ctest consumer.gcc_tsan_warnings with g++ -fsanitize=thread -Werror (item 15 of issue
// 13): every public header, with the templates that carry fences instantiated, must compile without GCC's
// -Wtsan warnings ("atomic_thread_fence is not supported with -fsanitize=thread"). Never run.
#include <iterlock/chan.hpp>
#include <iterlock/concurrent_map.hpp>
#include <iterlock/errors.hpp>
#include <iterlock/guarded.hpp>
#include <iterlock/hash.hpp>
#include <iterlock/iteration_lock.hpp>
#include <iterlock/map.hpp>
#include <iterlock/metrics.hpp>
#include <iterlock/misuse.hpp>
#include <iterlock/priority.hpp>
#include <iterlock/select.hpp>
#if ITERLOCK_WITH_PROMETHEUS
#include <iterlock/prometheus.hpp>
#endif

#include <chrono>
#include <string>
#include <unordered_map>

int main() {
    iterlock::concurrent_map<int, int> s;  // optimistic reads, snapshots
    s.insert({1, 2});
    (void)s.find(1);
    for (const auto& kv : s.snapshot()) (void)kv;
    iterlock::concurrent_map<std::string, std::string> t;  // locked finds, copied snapshots
    t.insert_or_assign(std::string("a"), std::string("b"));
    for (const auto& kv : t.snapshot()) (void)kv;
    iterlock::locked_concurrent_map<int, int> l;
    l.insert({1, 2});
    for (auto& kv : l.try_lock_for_iteration(std::chrono::milliseconds(5))) kv.second += 1;
    iterlock::guarded<std::unordered_map<int, int>> g;  // iteration_lock inside
    g.insert_or_assign(1, 2);
    for (auto& kv : g.lock_for_iteration()) (void)kv;
    l.erase_if([](const int&, int& v) { return v > 2; });
    iterlock::map<int, int> m;
    for (int i = 0; i < 100; ++i) m[i] = i;
    for (auto& [k, v] : m) v += k;
    iterlock::chan<int> c(1);
    c.send(1);
    (void)c.recv();
    (void)s.metrics();
#if ITERLOCK_WITH_PROMETHEUS
    iterlock::prometheus::registry reg;
    const auto e = reg.add(s, "s");
    (void)reg.text();
#endif
}
