// iterlock/detail/util/exclusive_add.hpp: an add to an atomic counter that only one thread at a time writes.
//
// Owns: iterlock::detail::add_exclusive().
// Invariants: c += d is one relaxed load and one relaxed store, no locked instruction; it is exact only
//       while the caller's lock serialises every writer of c; a concurrent reader sees the value before or
//       after the add, never a torn one.
//
// Counters that writers change under a lock and any thread may read (a shard's revision and count, the
// writer-wait histograms, the snapshot store's item and byte counts): the writer holds the lock that
// serialises all writers of the counter, so a relaxed load and a relaxed store suffice, and cost no
// locked instruction (a fetch_add would, on every write). A reader sees the value before or after.
#pragma once

#include <atomic>
#include <type_traits>

namespace iterlock::detail {

// c += d. Requires: no other thread writes c meanwhile (the caller's lock serialises the writers).
template <class T>
void add_exclusive(std::atomic<T>& c, std::type_identity_t<T> d) noexcept {
    // Relaxed: the caller's lock serialises the writers; readers get statistics or counts that need no
    // ordering.
    c.store(c.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
}

}  // namespace iterlock::detail
