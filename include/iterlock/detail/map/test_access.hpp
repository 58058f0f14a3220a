// iterlock/detail/map/test_access.hpp: the one door tests use to look inside iterlock::map (Go's
// export_test.go).
//
// Owns: iterlock::detail::map_test_access.
// Invariants: every member only reads (the table, through a const reference); not for production
//       code: these names may change without notice.
#pragma once

#include <cstddef>

#include "iterlock/detail/map/tophash.hpp"  // the matchers and their twins, tested directly (map_tophash_test)
#include "iterlock/map.hpp"

namespace iterlock::detail {

struct map_test_access {
    // The map's core table, read-only: bucket_shift(), growing(), same_size_grow(), overflow_buckets(),
    // live_iterators(), allocated_bytes(), longest_chain(), retained_arrays(), growths(), moves().
    template <class Map>
    static const auto& table(const Map& m) noexcept {
        return m.t_;
    }
    template <class Map>
    static std::size_t bucket_count(const Map& m) noexcept {
        return std::size_t{1} << m.t_.bucket_shift();
    }
};

}  // namespace iterlock::detail
