// bench/ab/variant.cpp: one contender of the in-process A/B driver (tools/ab-finds.sh), compiled once per
// header tree with `-Diterlock=<name>` so that several versions of the library live in one program.
//
// Owns: build_<name>(), erases_<name>(), destroy_<name>(), finds_<name>() and walk_<name>(), the entry
//       points main.cpp calls through AB_VARIANTS.
// Invariants: everything of the library is in the renamed namespace, so no inline function of one tree is
//       merged with another's at link time (the trap docs/BENCHMARKS.md describes for per-file wrappers);
//       AB_CONCURRENT, AB_LOCKED and AB_POLICY pick the map type (iterlock::map with AB_POLICY,
//       iterlock::concurrent_map, or iterlock::locked_concurrent_map).
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#if defined(AB_LOCKED)
#define AB_CONCURRENT
#include <iterlock/concurrent_map.hpp>
using ab_map = iterlock::locked_concurrent_map<std::uint64_t, std::uint64_t>;
#elif defined(AB_CONCURRENT)
#include <iterlock/concurrent_map.hpp>
using ab_map = iterlock::concurrent_map<std::uint64_t, std::uint64_t>;
#else
#include <iterlock/map.hpp>
using ab_map =
    iterlock::map<std::uint64_t, std::uint64_t, iterlock::hash<std::uint64_t>, std::equal_to<std::uint64_t>,
                  std::allocator<std::pair<const std::uint64_t, std::uint64_t> >, AB_POLICY>;
#endif

#define AB_CAT2(a, b) a##b
#define AB_CAT(a, b) AB_CAT2(a, b)

// A fresh map holding keys[i] -> i, filled without reserve (growth included: main times it as the inserts).
[[gnu::noinline]] void* AB_CAT(build_, AB_NAME)(const std::vector<std::uint64_t>& keys) {
    auto* m = new ab_map;
    for (std::size_t i = 0; i < keys.size(); ++i) m->insert_or_assign(keys[i], i);
    return m;
}

// Erases every key of `order` from a map made by build_; returns how many were erased.
[[gnu::noinline]] std::uint64_t AB_CAT(erases_, AB_NAME)(void* map, const std::vector<std::uint64_t>& order) {
    ab_map& m = *static_cast<ab_map*>(map);
    std::uint64_t erased = 0;
    for (std::uint64_t k : order) erased += m.erase(k);
    return erased;
}

void AB_CAT(destroy_, AB_NAME)(void* map) {
    delete static_cast<ab_map*>(map);
}

// Looks every key up; returns the sum of the values found plus the number found (both contenders of a
// run must agree on it).
[[gnu::noinline]] std::uint64_t AB_CAT(finds_, AB_NAME)(void* map, const std::vector<std::uint64_t>& keys) {
    ab_map& m = *static_cast<ab_map*>(map);
    std::uint64_t sum = 0, found = 0;
    for (std::uint64_t k : keys) {
#ifdef AB_CONCURRENT
        if (auto v = m.find(k)) {
            sum += *v;
            ++found;
        }
#else
        if (auto p = m.find(k)) {
            sum += p->second;
            ++found;
        }
#endif
    }
    return sum + found;
}

// One full walk (iterlock::map's iterator; concurrent_map: a snapshot's; the locked map: a guard's), summing
// the values; returns the sum plus the number of entries visited.
[[gnu::noinline]] std::uint64_t AB_CAT(walk_, AB_NAME)(void* map) {
    ab_map& m = *static_cast<ab_map*>(map);
    std::uint64_t sum = 0, seen = 0;
#if defined(AB_LOCKED)
    auto guard = m.lock_for_iteration();
    for (const auto& [k, v] : guard) {
#elif defined(AB_CONCURRENT)
    auto snap = m.snapshot();
    for (const auto& [k, v] : snap) {
#else
    for (const auto& [k, v] : m) {
#endif
        sum += v;
        ++seen;
    }
    return sum + seen;
}
