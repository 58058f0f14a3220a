// tests/support/lock_probes.hpp: observing who waits on a lock. For a shard_lock, its waiter counts by role
// and priority (through its state()); for a map, a probe that sees "a writer is queued" through the public
// API only.
//
// Owns: iterlock::test::waiting_writers, waiting_iterations, wait_until_writer_queued.
// Invariant: the probes only read; none of them changes what the lock grants.
#pragma once

#include <chrono>

#include "iterlock/detail/lock/shard_lock.hpp"
#include "iterlock/priority.hpp"
#include "polling.hpp"

namespace iterlock::test {

// Waiter counts of `l` for one priority class.
inline unsigned waiting_writers(const detail::shard_lock& l, priority p) {
    return l.state().waiting_writers[static_cast<int>(p)];
}
inline unsigned waiting_iterations(const detail::shard_lock& l, priority p) {
    return l.state().waiting_iterations[static_cast<int>(p)];
}

// Waits until a new iteration guard of `m` (priority `p`) can no longer get in: with a guard already held by
// another thread and nobody writing, a new guard is granted at once (L2), so a timed-out attempt proves that
// a writer (of a class that outranks `p`) is queued (L3/L4). Returns false if that never happens.
template <class Map>
bool wait_until_writer_queued(Map& m, iterlock::priority p = iterlock::priority::best_effort) {
    iterlock::priority_scope scope(p);
    return eventually([&] { return !m.try_lock_for_iteration(std::chrono::milliseconds(2)); });
}

}  // namespace iterlock::test
