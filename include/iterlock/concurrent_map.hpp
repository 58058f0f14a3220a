// iterlock/concurrent_map.hpp: iterlock::concurrent_map, a thread-safe, sharded Go map whose iterations
// writers cannot corrupt.
//
// Owns: iterlock::concurrent_map, iterlock::locked_concurrent_map, iterlock::iteration_policy,
//       iterlock::map_options (snapshot_iteration, locked_iteration).
// Invariants: the rules below (S1-S7 for snapshots, L1-L7 and G1-G4 for locked iteration) and the
//       per-call guarantees at each member.
//
// Layers: this header is the facade (the contract below, the public names, forwarding). The concurrent tier
// under it is detail/concurrent/: sharded_table.hpp (shards, write locking, the find paths, reclamation,
// the snapshot sweep), snapshot_walk.hpp (snapshot_view), locked_walk.hpp (iteration_guard). Each shard
// is the single-threaded core, detail/map/table.hpp, behind detail/lock/shard_lock.hpp.
//
// Each shard is a Go map (detail/map/table.hpp, the same core as iterlock::map) with its own lock
// (detail/lock/shard_lock.hpp) and its own incremental growth. Which iteration the map offers is chosen at
// the type by the Options parameter:
//
//   iterlock::snapshot_iteration (default)   auto s = m.snapshot();  for (const auto& [k, v] : s) ...
//   iterlock::locked_iteration               auto g = m.lock_for_iteration();  for (auto& [k, v] : g) ...
//       (iterlock::locked_concurrent_map<K, V> names that type without the other parameters)
//
// Snapshot iteration: what a snapshot guarantees
// ----------------------------------------------
//   S1  A snapshot is one instant of the map: there is a point T between the start and the return of
//       snapshot() such that the snapshot holds exactly the writes that took effect before T (every write,
//       on every shard: a write that finished before another started is never missing from a snapshot
//       that holds the later one).
//   S2  Walking it yields each entry of that instant exactly once (no holes, no duplicates, no value that
//       was never written); size() equals the number of entries the walk yields; find(k) agrees with it.
//   S3  Writers never wait for a snapshot: taking one is a registry mutex, plus, if writers copied chains
//       since the previous snapshot was taken, a reserve for each shard that did (O(shards), no shard lock:
//       memory for the coming copies, allocated and touched by the snapshot's creator instead of the
//       writers; detail/concurrent/snapshot_store.hpp). A walk copies one batch of 32 buckets at a time,
//       never across user code: for trivially copyable K and V as a sequence-lock read that no writer waits
//       for (a batch that a writer overlapped is read again; after four tries it takes the shard's lock in
//       shared mode), otherwise under the shard's lock in shared mode. Ending a snapshot sweeps what it alone
//       needed in steps of at most 256 preserved chains under one shard's lock at a time: that step is the
//       longest a writer waits for a release.
//   S4  While snapshots live, a writer preserves only what it changes, one bucket chain at a time (the
//       chain's entries, copied at most once between two snapshots); growth and evacuation during a snapshot
//       preserve the same way and retire the old bucket array instead of freeing it.
//   S5  Memory: what was preserved is freed when the last snapshot that needs it ends, and the reserves
//       when the last snapshot ends (preserved_bytes() counts both, and returns to zero when no snapshot is
//       alive). The thread that ends a snapshot frees it, unless that thread is inside a visit, cvisit,
//       update or erase_if callback of this map (it may hold the shard lock a sweep needs): then the sweep
//       runs as that call returns. A release examines the copies made between its snapshot and the next
//       live one; released oldest first that is all it examines whatever the number of live snapshots,
//       in a random order each copy is examined O(log n) times on average, newest first a copy is examined
//       once per live snapshot made after its chain last changed (docs/GUIDE.md, "Snapshot costs"). With no
//       snapshot alive a write pays one load and a compare for all this.
//   S6  revision(): every successful write (insert, assignment, erase, visit; clear and erase_if count one
//       per entry removed) advances the map's revision by one; a snapshot's revision() is the number of
//       writes it reflects. (m.revision() sums per-shard counters that a write updates as it finishes, so
//       while writes are in flight it may trail a snapshot's revision by the writes in progress.)
//   S7  Memory budget (set_snapshot_budget(bytes); none by default, and then S5 alone applies): when a
//       writer's copies for live snapshots take preserved_bytes() past the budget, the oldest live snapshot
//       is expired, then the next oldest, until the bytes are back within it or no snapshot is left.
//       Expiry is the snapshot's release (S5) done early: what only it needed is freed, the newer
//       snapshots are untouched, and its own destruction later releases nothing twice. Its next read of
//       the map (begin, find, contains, size, revision, and an iterator's ++ that needs the next batch of
//       32 buckets) throws iterlock::snapshot_expired; the entries already copied into an iterator's batch
//       are the snapshot's own copies and are still yielded. expired() tells without throwing; destroying
//       or moving it stays safe. Writers never wait for a snapshot:
//       a writer whose shard copied budget / (2 * shards) bytes since its last check reads the total
//       (O(shards)) after its write took effect and its lock is released, and runs the expiry's sweep
//       itself (S3's steps, under one shard lock at a time), unless another thread is sweeping (that one
//       checks when it is done) or it runs inside a callback of this map (then the next sweep does). So
//       the copies pass the budget by at most half of it before a check acts, plus S3's reserves (at
//       most 32 KiB per shard, handed out when a snapshot is taken). With no budget a write pays nothing
//       more (the check is a field tested only where a copy is made). Counted in metrics()
//       (snapshots_expired, snapshot_budget_bytes; docs/GUIDE.md, "Snapshot memory budget").
//   Snapshots may be taken and walked by any thread and several may live at once. A snapshot must not
//   outlive its map (destroying a map with a live snapshot aborts with a message). K and V must be copy
//   constructible: a walk copies each bucket's entries out under the shard lock.
//
// Locked iteration: what the guard guarantees
// -------------------------------------------
//   L1  While a guard lives, no other thread writes: the walk sees one instant, without copies.
//   L2  Any number of guards may live at once (on any threads); finds never wait for them.
//   L3  Writer preference: a waiting writer blocks new guards, so a stream of walks cannot starve writers.
//       A guard already held keeps holding; writers wait for it.
//   L4  Priorities: acquirers waiting with iterlock::priority::realtime (see priority_scope) go before
//       best_effort ones (detail/lock/shard_lock.hpp, rule R4).
//   L5  try_lock_for_iteration(timeout) returns a guard that tests false, leaving no trace, if it cannot get
//       every shard in time.
//   L6  The thread that holds the only live guard may write to the map during its walk ("iterate and
//       expire"); Go's rules for writes during iteration apply (iterlock::map, I1-I4 and I7, each shard's
//       walk starting on the array current when the walk began). If another guard is
//       live, such a write would deadlock: it throws iterlock::lock_error instead.
//   L7  Nested guards on one thread share the first one's locks (no self-deadlock behind a waiting writer).
//   A guard is neither copyable nor movable: it stays on the thread and in the scope that took it (G1-G4
//   at iteration_guard). The map must outlive its guards (destroying it under one aborts with a message).
//
// Misuse that would deadlock gets iterlock::lock_error, never a hang: calling the map from inside
// visit/cvisit/update/erase_if on the same map (also through another map's callback called from there),
// taking a guard or walking a snapshot inside visit, and L6. metrics() takes no lock and works anywhere.
// Not detectable: deadlocks across threads and maps (thread 1 in a visit of A calls B while thread 2 in a
// visit of B calls A; or two threads holding guards of A and B each ask for the other). Rule: never call
// another concurrent_map from inside a callback or while holding a guard, or do so in one global order of
// maps (docs/GUIDE.md).
//
// Optimistic reads: with trivially copyable K and V compared by std::equal_to (and outside ThreadSanitizer
// builds; see optimistic_reads), find/contains store nothing to shared memory: a sequence-lock read of the
// shard under an epoch section (detail/reclaim/epoch.hpp) keeps the blocks it may reach allocated, and the
// answer is kept only if no writer came in between (else retried, then taken under the lock). Otherwise finds
// take the shard's lock in shared mode. Either way a find is linearizable and returns a copy. Memory: a block
// that a writer unlinks (an overflow bucket, an array that growth retired) is freed by a later write to the
// same shard, or by the map's destructor, once no read that began before the unlink is still running.
//
// Complexity: find/insert/erase O(1) expected, one shard lock each (finds share it). snapshot() O(1), or
// O(shards) after writers copied (S3); a walk O(buckets + entries) plus the copies of S4.
// lock_for_iteration() O(shards) lock acquisitions.
// Exception safety: a write that throws (hash, equality, allocation, K/V constructors and assignments, and
// the copies S4 makes for live snapshots) leaves the map and every snapshot unchanged, and the exception
// reaches the caller. erase_if and clear() work chain by chain: what they erased before a throw stays erased
// (and counted). Ending a snapshot never throws and never waits for a lock its thread holds.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "iterlock/detail/concurrent/locked_walk.hpp"
#include "iterlock/detail/concurrent/sharded_table.hpp"
#include "iterlock/detail/concurrent/snapshot_walk.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/hash.hpp"
#include "iterlock/map.hpp"
#include "iterlock/metrics.hpp"
#include "iterlock/priority.hpp"

namespace iterlock {

enum class iteration_policy { snapshot, locked };

// The Options of a concurrent_map: its iteration policy, and whether it records metrics (metrics.hpp).
template <iteration_policy Policy, bool Metrics = true>
struct map_options {
    static constexpr iteration_policy iteration = Policy;
    static constexpr bool metrics = Metrics;
};
using snapshot_iteration = map_options<iteration_policy::snapshot>;
using locked_iteration = map_options<iteration_policy::locked>;

namespace detail {
// Options::metrics, true where an Options type does not say.
template <class Options>
inline constexpr bool metrics_of = [] {
    if constexpr (requires { Options::metrics; }) {
        return static_cast<bool>(Options::metrics);
    } else {
        return true;
    }
}();
}  // namespace detail

template <class K, class V, class Hash = hash<K>, class KeyEqual = std::equal_to<K>,
          class Allocator = std::allocator<std::pair<const K, V>>, class Options = snapshot_iteration>
class concurrent_map : private detail::sharded_table<K, V, Hash, KeyEqual, Allocator,
                                                     Options::iteration == iteration_policy::snapshot,
                                                     detail::metrics_of<Options>> {
    using base =
        detail::sharded_table<K, V, Hash, KeyEqual, Allocator,
                              Options::iteration == iteration_policy::snapshot, detail::metrics_of<Options>>;
    static constexpr bool snapshots = Options::iteration == iteration_policy::snapshot;
    static constexpr bool transparent = base::transparent;

  public:
    // Whether finds and snapshot walks read without storing to shared memory (sequence-lock reads; see
    // "Optimistic reads" above): only where a torn copy is harmless bytes — trivially copyable K and V
    // compared by std::equal_to — and not under ThreadSanitizer, which cannot model a sequence lock's racy
    // reads (detail/util/racy_read.hpp).
    using base::optimistic_reads;
    using typename base::allocator_type;
    using typename base::hasher;
    using typename base::key_equal;
    using typename base::key_type;
    using typename base::mapped_type;
    using typename base::size_type;
    using typename base::value_type;

    // What snapshot() returns (S1-S7): movable, walkable by any thread, must not outlive the map.
    using snapshot_view = detail::snapshot_walk<base>;
    // What lock_for_iteration() and try_lock_for_iteration() return (L1-L7):
    // G1  A guard belongs to the thread that took it, and to the scope it was returned into: it is neither
    //     copyable nor movable (C++17's guaranteed copy elision still lets `auto g = m.lock_for_iteration();`
    //     and a function returning m.lock_for_iteration() by value compile). So it cannot be moved into an
    //     std::optional, a container or a lambda, or handed to another thread. L6 and L7 are rules about the
    //     holding thread; a guard released elsewhere would leave that thread marked as holding it.
    // G2  Releasing a guard on another thread anyway (through a pointer to a heap-allocated guard) aborts
    //     with a message: the locks cannot be handed over.
    // G3  A guard from a timed-out try_lock_for_iteration tests false and owns nothing; begin() and size()
    //     on it throw lock_error, so a range-for over it never walks an unlocked map.
    // G4  The map must outlive its guards: destroying a map while a guard lives aborts with a message.
    using iteration_guard = detail::locked_walk<base>;

    // ---- construction ---------------------------------------------------------------------------
    concurrent_map() : concurrent_map(0) {}
    // `shards`: rounded up to a power of two, at most 65536; 0 picks detail::default_shard_count(). The map
    // draws one hash seed (or takes `s`) and keeps it for its lifetime: unlike iterlock::map, clear() does
    // not re-seed, because the seed also decides each key's shard. The first map built in a process also
    // decides the process's memory fences for optimistic finds (detail/reclaim/epoch.hpp, E4): on Linux it
    // registers for membarrier, one system call that takes milliseconds once the process has threads (an
    // RCU grace period), paid here rather than by a later find or write.
    explicit concurrent_map(std::size_t shards, const Hash& h = Hash(), const KeyEqual& eq = KeyEqual(),
                            const Allocator& a = Allocator())
        : concurrent_map(shards, seed{detail::random_seed()}, h, eq, a) {}
    concurrent_map(std::size_t shards, seed s, const Hash& h = Hash(), const KeyEqual& eq = KeyEqual(),
                   const Allocator& a = Allocator())
        : base(shards, s.value, h, eq, a) {}
    concurrent_map(const concurrent_map&) = delete;
    concurrent_map& operator=(const concurrent_map&) = delete;
    // Requires: no guard, call or callback of this map is still running (checked: aborts with a message
    // naming what is still alive). Observers holding lifetime_token() stop reading first.
    ~concurrent_map() = default;

    // ---- lookup ---------------------------------------------------------------------------------
    // A copy of the value (cannot dangle), or nullopt. Shares the shard lock; never waits for iterations.
    ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> find(const K& k) const { return base::find(k); }
    template <class K2>
    requires transparent ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> find(const K2& k)
    const { return base::find(k); }
    bool contains(const K& k) const { return base::contains(k); }
    template <class K2>
    requires transparent bool contains(const K2& k) const { return base::contains(k); }
    // cvisit(k, f): runs f(const K&, const V&) on the entry under its shard lock (shared). Returns whether
    // it exists. f must not use this map (lock_error).
    using base::cvisit;

    // ---- modifiers ------------------------------------------------------------------------------
    // insert, try_emplace, insert_or_assign: each returns true if it inserted a new entry.
    using base::insert;
    using base::insert_or_assign;
    using base::try_emplace;
    // visit(k, f): runs f(const K&, V&) on the entry under its shard lock (exclusive); counts as a write.
    // update(k, f): the same with f(V&). Each returns whether the entry exists. f must not use this map
    // (lock_error).
    using base::update;
    using base::visit;
    // erase(k): removes k; returns the number of entries removed (0 or 1).
    using base::erase;
    // erase_if(pred): erases every entry for which pred(const K&, V&) (or pred(value_type&)) is true, shard
    // by shard (each shard atomically). pred must not use this map. Returns the number erased. If pred (or a
    // copy that a live snapshot needs) throws, the entries erased before stay erased and are counted (basic
    // guarantee); the exception reaches the caller.
    using base::erase_if;
    // clear(): removes every entry (shard by shard, each atomically). With snapshots alive, what they need
    // is preserved first (O(size) copies then).
    using base::clear;
    // reserve(n): Go's size hint, spread over the shards. A hint: skipped for shards that a live snapshot or
    // iteration is reading. Throws std::length_error, changing nothing, if a shard's share exceeds what one
    // shard's table holds (map::max_size(), detail/map/table.hpp's max_entries), even where it would be
    // skipped.
    using base::reserve;

    // ---- observers ------------------------------------------------------------------------------
    // size(): the sum of the shards' sizes, each read atomically (exact when no write is in flight).
    // revision(): the number of successful writes so far (S6); monotonic. preserved_bytes(): bytes held
    // for live snapshots (S5), 0 with the locked policy. All O(shards), no lock.
    using base::empty;
    using base::preserved_bytes;
    using base::revision;
    using base::shard_count;
    using base::size;
    using base::snapshots_alive;
    // set_snapshot_budget(bytes): the snapshot memory budget of S7 (0: none, the default); any thread, any
    // time, O(1); it takes effect at the next check (a writer's next block of copies). snapshot_budget():
    // the budget set (0: none). Both compile with the locked policy too, where nothing is preserved.
    using base::set_snapshot_budget;
    using base::snapshot_budget;
    // metrics(): the map's metrics (metrics.hpp). O(shards) relaxed loads of counters; takes no lock and
    // never waits, so any thread may call it at any time, including from inside a visit/cvisit/update/
    // erase_if callback or under an iteration guard of this map. Each counter is read atomically; the set is
    // not one instant. With metrics compiled out, only the gauges (entries, revision, snapshots, preserved
    // bytes, growth) are filled. Throws only std::bad_alloc (the histograms' vectors).
    using base::metrics;
    // For observers that may outlive the map (iterlock/prometheus.hpp's exposure): a token through which
    // they read the map only while it exists; the destructor waits for a read in progress, and no read
    // starts after it (detail/util/lifetime.hpp, LT1). The first call allocates it; no other call touches it.
    using base::lifetime_token;

    // ---- snapshot iteration ---------------------------------------------------------------------
    // snapshot(): the map at one instant (S1-S6). O(1); never waits for writers, and writers never wait for
    // it. lock_error inside a callback of this map.
    using base::snapshot;

    // ---- locked iteration -----------------------------------------------------------------------
    // lock_for_iteration(): blocks writers for the guard's life (L1-L7). Waits (with the thread's priority)
    // for current writers.
    // try_lock_for_iteration(timeout), L5: a guard that tests false (owns no lock, leaves no trace) if every
    // shard could not be had within `timeout`. Use it as
    //     if (auto g = m.try_lock_for_iteration(5ms)) for (auto& kv : g) ...
    // a range-for straight over the call (`for (auto& kv : m.try_lock_for_iteration(5ms))`) is safe too (the
    // guard lives for the loop) and throws lock_error on a timeout.
    using base::lock_for_iteration;
    using base::try_lock_for_iteration;

    // ---- hooks for iterlock::versioned_map (versioned_map.hpp); not part of this map's contract ------
    // detail/concurrent/sharded_table.hpp states what each does.
    using base::detail_shard_index;
    using base::detail_snapshot_all_locked;
    using base::detail_with_shard;
    using base::detail_write_at;
    using base::detail_write_batch;
    using typename base::batch_site;

  private:
    friend struct detail::concurrent_map_test_access;
};

// A concurrent_map with locked iteration (L1-L7), without spelling all six template parameters:
//     iterlock::locked_concurrent_map<std::string, int> m;  auto g = m.lock_for_iteration();
template <class K, class V, class Hash = hash<K>, class KeyEqual = std::equal_to<K>,
          class Allocator = std::allocator<std::pair<const K, V>>>
using locked_concurrent_map = concurrent_map<K, V, Hash, KeyEqual, Allocator, locked_iteration>;

}  // namespace iterlock
