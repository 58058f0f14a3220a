// iterlock/detail/util/transparent.hpp: whether a map's Hash and KeyEqual accept keys of other types.
//
// Owns: iterlock::detail::transparent_v.
// Invariants: true exactly when both declare `is_transparent` (the standard's opt-in for heterogeneous
//       lookup); iterlock::map and iterlock::concurrent_map enable their K2 overloads on it.
#pragma once

namespace iterlock::detail {

template <class Hash, class KeyEqual>
inline constexpr bool transparent_v = requires {
    typename Hash::is_transparent;
}
&&requires {
    typename KeyEqual::is_transparent;
};

}  // namespace iterlock::detail
