// tests/support/concurrent_maps.hpp: the two concurrent_map flavours under test, by short names.
//
// Owns: iterlock::test::snap_map (snapshot_iteration) and iterlock::test::locked_map (locked iteration), with
// concurrent_map's defaults for the hash, equality and allocator.
#pragma once

#include <functional>
#include <memory>
#include <utility>

#include "iterlock/concurrent_map.hpp"

namespace iterlock::test {

template <class K, class V, class Hash = iterlock::hash<K>, class Eq = std::equal_to<K>,
          class Alloc = std::allocator<std::pair<const K, V>>>
using snap_map = iterlock::concurrent_map<K, V, Hash, Eq, Alloc, iterlock::snapshot_iteration>;
template <class K, class V, class Hash = iterlock::hash<K>, class Eq = std::equal_to<K>,
          class Alloc = std::allocator<std::pair<const K, V>>>
using locked_map = iterlock::locked_concurrent_map<K, V, Hash, Eq, Alloc>;

}  // namespace iterlock::test
