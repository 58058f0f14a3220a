// tests/support/filled_map.hpp: the small iterlock::map most map tests start from.
//
// Owns: iterlock::test::int_map, make_filled. Invariant: make_filled(n, seed) holds exactly the keys 0..n-1,
// key i with value i * 10, built with the given seed (so a failure reproduces).
#pragma once

#include <cstdint>

#include "iterlock/map.hpp"

namespace iterlock::test {

using int_map = iterlock::map<int, int>;

inline int_map make_filled(int n, std::uint64_t seed = 7) {
    int_map m{iterlock::seed{seed}};
    for (int i = 0; i < n; ++i) m.insert({i, i * 10});
    return m;
}

}  // namespace iterlock::test
