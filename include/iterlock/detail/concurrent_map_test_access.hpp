// The one door tests use to look inside iterlock::concurrent_map (Go's export_test.go). Not for production
// code: these names may change without notice.
#pragma once

#include <cstddef>

#include "iterlock/concurrent_map.hpp"

namespace iterlock::detail {

struct concurrent_map_test_access {
    // Chain versions the snapshot sweeps of m have examined so far (detail/snapshot_store.hpp): what
    // releasing snapshots cost, counted instead of timed. Read while no snapshot is being released.
    template <class Map>
    static std::size_t sweep_examined(const Map& m) noexcept {
        std::size_t n = 0;
        for (const auto& s : m.shards_) n += s.t.chain_watch().examined_by_sweeps();
        return n;
    }
};

}  // namespace iterlock::detail
