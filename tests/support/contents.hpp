// tests/support/contents.hpp: a concurrent_map's whole content as one std::map, read through its policy's
// iteration (a snapshot, or a guard of the locked policy).
//
// Owns: iterlock::test::contents. Invariant: the walk it reads yields no key twice and as many entries as the
// view's size() says (S2, L1); a failure of either is a test failure, and the content is returned anyway.
#pragma once

#include <map>

#include <gtest/gtest.h>

namespace iterlock::test {

template <class Map>
std::map<typename Map::key_type, typename Map::mapped_type> contents(Map& m) {
    std::map<typename Map::key_type, typename Map::mapped_type> out;
    if constexpr (requires { m.snapshot(); }) {
        auto s = m.snapshot();
        for (const auto& [k, v] : s) EXPECT_TRUE(out.emplace(k, v).second) << "duplicate key " << k;
        EXPECT_EQ(s.size(), out.size());
    } else {
        auto g = m.lock_for_iteration();
        for (auto& [k, v] : g) EXPECT_TRUE(out.emplace(k, v).second) << "duplicate key " << k;
        EXPECT_EQ(g.size(), out.size());
    }
    return out;
}

}  // namespace iterlock::test
