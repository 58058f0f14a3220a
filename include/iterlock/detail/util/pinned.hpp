// iterlock/detail/util/pinned.hpp: a base for objects that stand for one place or one lifetime and so must
// never be copied or moved (a wake list on a stack, a container's lifetime anchor).
//
// Owns: iterlock::detail::pinned.
// Invariants: a class deriving from pinned has no copy or move constructor or assignment unless it
//       declares its own.
#pragma once

namespace iterlock::detail {

struct pinned {
    pinned() = default;
    pinned(const pinned&) = delete;
    pinned& operator=(const pinned&) = delete;
};

}  // namespace iterlock::detail
