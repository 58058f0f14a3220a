// detail/concurrent/write_site.hpp: what concurrent_map's write hook (detail_write_at) shows a layer above.
//
// Owns: write_site (the state of one key at the moment its shard's writer lock is held) and site_decision
// (what the layer wants done with it). Used by iterlock::versioned_map (versioned_map.hpp), which numbers
// every write with its shard's revision and feeds it to watchers, all inside the write's critical section.
// Invariants: a write_site is valid only inside the hook's callbacks, which run under the shard's writer
// lock; `revision` is the shard's count of successful writes before this one (concurrent_map S6), so the
// write the hook applies is the shard's write number revision + 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace iterlock::detail {

template <class V>
struct write_site {
    std::size_t shard;       // index of the key's shard, 0 .. shard_count()-1
    std::uint64_t revision;  // the shard's revision (successful writes) before this write
    const V* current;        // the key's value, or nullptr if the key is absent
};

enum class site_action : unsigned char { none, put, erase };

template <class V>
struct site_decision {
    site_action action = site_action::none;
    std::optional<V> value;  // for put: the value to store (inserted or assigned)
};

}  // namespace iterlock::detail
