// iterlock/detail/map/test_access.hpp: the one door tests use to look inside iterlock::map (Go's
// export_test.go).
//
// Owns: iterlock::detail::map_test_access.
// Invariants: every member only reads (bucket shift, growth state, overflow count); not for production
//       code: these names may change without notice.
#pragma once

#include <cstddef>

#include "iterlock/detail/map/tophash.hpp"  // the matchers and their twins, tested directly (map_tophash_test)
#include "iterlock/map.hpp"

namespace iterlock::detail {

struct map_test_access {
    template <class Map>
    static unsigned bucket_shift(const Map& m) noexcept {
        return m.t_.bucket_shift();
    }
    template <class Map>
    static std::size_t bucket_count(const Map& m) noexcept {
        return std::size_t{1} << m.t_.bucket_shift();
    }
    template <class Map>
    static bool growing(const Map& m) noexcept {
        return m.t_.growing();
    }
    template <class Map>
    static bool same_size_grow(const Map& m) noexcept {
        return m.t_.same_size_grow();
    }
    template <class Map>
    static std::size_t overflow_buckets(const Map& m) noexcept {
        return m.t_.overflow_buckets();
    }
    template <class Map>
    static std::size_t live_iterators(const Map& m) noexcept {
        return m.t_.live_iterators();
    }
    template <class Map>
    static std::size_t allocated_bytes(const Map& m) noexcept {
        return m.t_.allocated_bytes();
    }
    template <class Map>
    static std::size_t longest_chain(const Map& m) noexcept {
        return m.t_.longest_chain();
    }
    template <class Map>
    static std::size_t retained_arrays(const Map& m) noexcept {
        return m.t_.retained_arrays();
    }
    template <class Map>
    static std::uint64_t growths(const Map& m) noexcept {
        return m.t_.growths();
    }
    template <class Map>
    static std::uint64_t moves(const Map& m) noexcept {
        return m.t_.moves();
    }
};

}  // namespace iterlock::detail
