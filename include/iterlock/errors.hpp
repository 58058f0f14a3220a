// iterlock/errors.hpp: the exception types iterlock throws.
//
// Owns: iterlock::lock_error, iterlock::invalidation_error, iterlock::snapshot_expired (more error types
//       join this header as the library grows).
// Invariants: every type here derives from a standard exception, so `catch (const std::exception&)` sees
//       it, and its what() says what went wrong and what the caller can do about it.
#pragma once

#include <stdexcept>

namespace iterlock {

// A lock request that cannot be granted without deadlocking or corrupting the lock, e.g. upgrading an
// iteration to write while another iteration of the same shard is live. It reports a bug in the calling
// code (a logic error), not a transient condition: retrying the same call in the same state fails again.
// When it is thrown, the lock is left exactly as it was before the call.
struct lock_error : std::logic_error {
    using std::logic_error::logic_error;
};

// A write that the walking thread asked for during its own walk of an iterlock::guarded map, refused because
// the wrapped map's rules say it may invalidate the walk's iterators (an insert that may rehash, erasing the
// entry the walk stands on, clear, ...; guarded.hpp, GD4). A logic error in the calling code; nothing was
// changed, the walk may go on.
struct invalidation_error : std::logic_error {
    using std::logic_error::logic_error;
};

// A read (begin, find, size, revision, an iterator's next batch) of a concurrent_map snapshot that the map
// expired to stay within its snapshot memory budget (concurrent_map.hpp, S7): the memory only it needed is
// gone, so it can no longer answer. A runtime condition, not a bug: take a new snapshot and start the walk
// again (or raise the budget, set_snapshot_budget). The expired snapshot stays safe to destroy and move.
struct snapshot_expired : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace iterlock
