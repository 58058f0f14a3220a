// iterlock::concurrent_map — a thread-safe, sharded Go map whose iterations writers cannot corrupt.
//
// Each shard is a Go map (detail/map/table.hpp, the same core as iterlock::map) with its own lock
// (detail/lock/shard_lock.hpp) and its own incremental growth. Which iteration the map offers is chosen at the
// type by the Options parameter:
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
//       writers; detail/concurrent/snapshot_store.hpp). A walk copies one batch of 32 buckets at a time, never across
//       user code: for trivially copyable K and V as a sequence-lock read that no writer waits for (a batch
//       that a writer overlapped is read again; after four tries it takes the shard's lock in shared
//       mode), otherwise under the shard's lock in shared mode. Ending a snapshot sweeps what it alone
//       needed in steps of at most 256 preserved chains under one shard's lock at a time: that step is the
//       longest a writer waits for a release.
//   S4  While snapshots live, a writer preserves only what it changes, one bucket chain at a time (the
//       chain's entries, copied once per snapshot epoch); growth and evacuation during a snapshot preserve
//       the same way and retire the old bucket array instead of freeing it.
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
// shard under an epoch section (detail/concurrent/epoch.hpp) keeps the blocks it may reach allocated, and the answer
// is kept only if no writer came in between (else retried, then taken under the lock). Otherwise finds take
// the shard's lock in shared mode. Either way a find is linearizable and returns a copy. Memory: a block
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

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "iterlock/detail/util/inplace_array.hpp"
#include "iterlock/detail/util/lifetime.hpp"
#include "iterlock/detail/lock/shard_lock.hpp"
#include "iterlock/detail/concurrent/snapshot_store.hpp"
#include "iterlock/detail/concurrent/write_site.hpp"
#include "iterlock/detail/map/table.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/hash.hpp"
#include "iterlock/iteration_lock.hpp"
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

struct concurrent_map_test_access;

// What the calling thread is doing with concurrent maps, to turn would-be deadlocks into lock_error.
struct thread_map_state {
    // The visit/cvisit/update/erase_if callbacks running on this thread, innermost first: a callback may
    // call another map, whose callback may come back to the first (that re-entry would wait for a shard
    // lock this thread holds, so it is detected like a direct one).
    struct visit_frame {
        const void* map;
        const visit_frame* outer;
    };
    const visit_frame* visiting = nullptr;
    bool in_visit_of(const void* m) const noexcept {
        for (const visit_frame* f = visiting; f != nullptr; f = f->outer)
            if (f->map == m) return true;
        return false;
    }
    const void* sweeping = nullptr;  // the map whose snapshot sweep this thread is running
    // The nesting depth of this thread's locked-iteration guards of map `m`, or nullptr: kept with the
    // iteration_lock's holds (iteration_lock.hpp), one registry for both.
    int* depth_for(const void* m) noexcept { return this_thread_iteration_holds().depth_for(m); }
};
inline thread_map_state& this_thread_maps() noexcept {
    thread_local thread_map_state s;
    return s;
}

// Default shard count: a power of two, 32 per hardware thread, between 16 and 1024. A writer holding a
// shard sends that shard's finds to their slow path (they wait for it) and queues other writers, so
// fewer collisions pay: on W2 with 2 threads, 8 per thread was 1-11% slower than 32 in three A/B runs
// (docs/BENCHMARKS.md, fourth session). A shard costs 1.5 KiB plus its table.
inline std::size_t default_shard_count() noexcept {
    const std::size_t hw = std::max(1u, std::thread::hardware_concurrency());
    return std::clamp<std::size_t>(std::bit_ceil(hw * 32), 16, 1024);
}

}  // namespace detail

template <class K, class V, class Hash = hash<K>, class KeyEqual = std::equal_to<K>,
          class Allocator = std::allocator<std::pair<const K, V>>, class Options = snapshot_iteration>
class concurrent_map {
    static constexpr bool snapshots = Options::iteration == iteration_policy::snapshot;
    static constexpr bool metrics_on = [] {
        if constexpr (requires { Options::metrics; }) {
            return static_cast<bool>(Options::metrics);
        } else {
            return true;
        }
    }();
    using shard_stats = std::conditional_t<metrics_on, detail::shard_metrics, detail::no_metrics>;
    using map_stats = std::conditional_t<metrics_on, detail::map_event_metrics, detail::no_metrics>;
    using slot_type = std::pair<const K, V>;
    using extra_type = std::conditional_t<snapshots, detail::chain_tag, detail::no_chain_extra>;
    using array_ref_probe = detail::bucket_array<slot_type, extra_type>;
    using watch_type =
        std::conditional_t<snapshots, detail::shard_versions<slot_type, array_ref_probe, Allocator>,
                           detail::no_chain_watch>;
    using table_type = detail::table<K, V, Hash, KeyEqual, Allocator, extra_type, watch_type>;
    using bucket = typename table_type::bucket;
    static_assert(std::is_same_v<typename table_type::array_ref, array_ref_probe>);
    static constexpr int optimistic_attempts = 4;
    static_assert(!snapshots || (std::is_copy_constructible_v<K> && std::is_copy_constructible_v<V>),
                  "snapshot iteration copies entries: K and V must be copy constructible "
                  "(or choose iterlock::locked_iteration)");
    static constexpr bool transparent = requires { typename Hash::is_transparent; }
    &&requires { typename KeyEqual::is_transparent; };

    // Every write changes two lines of its shard: the lock word's, which also holds the shard's revision,
    // entry count and uncontended-write counts (shard_lock::owner_words), and the table's header. When
    // two cores write the same shard in turn, each line changed is a transfer between them, so the
    // counters ride on the line the lock takes anyway, and the chain watch stores only on change.
    struct alignas(64) shard {
        detail::shard_lock lock;
        table_type t;
        [[no_unique_address]] shard_stats stats;  // writer lock waits (metrics.hpp)
        explicit shard(std::uint64_t seed, const Hash& h, const KeyEqual& eq, const Allocator& a)
            : t(seed, h, eq, a) {}
        // Successful writes (S6).
        std::atomic<std::uint64_t>& revision() noexcept { return lock.owner_words[0]; }
        // t.size(), readable without the lock.
        std::atomic<std::uint64_t>& count() noexcept { return lock.owner_words[1]; }
        // Writer lock acquisitions that did not wait, by priority (metrics: the 0 ns bucket of writer_wait).
        std::atomic<std::uint64_t>& zero_waits(int p) noexcept { return lock.owner_words[2 + p]; }
        // Locked iteration: the thread tag of the guard holder registered as the table's iterator (0: none).
        // A guard registers with a shard's table only when its holder first writes there (L6, write_lock):
        // the registration changes only how writes behave, and no other thread writes while a guard lives
        // (L1), so a guard that never writes (the common walk) costs no registration. Written by the holder
        // under the upgraded lock and at its release; read by releasing guards of other threads (relaxed:
        // each thread only acts on its own tag, which only it writes).
        std::atomic<std::uint64_t> iteration_writer{0};
    };
    static_assert(detail::shard_lock::owner_word_count >= 4);

  public:
    // Whether finds and snapshot walks read without storing to shared memory (sequence-lock reads; see
    // "Optimistic reads" above and find_impl): only where a torn copy is harmless bytes — trivially
    // copyable K and V compared by std::equal_to — and not under ThreadSanitizer, which cannot model a
    // sequence lock's racy reads (detail/util/racy_read.hpp).
    static constexpr bool optimistic_reads =
        !ITERLOCK_DETAIL_TSAN && std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V> &&
        (std::is_same_v<KeyEqual, std::equal_to<K>> || std::is_same_v<KeyEqual, std::equal_to<>>);
    using key_type = K;
    using mapped_type = V;
    using value_type = std::pair<const K, V>;
    using size_type = std::size_t;
    using hasher = Hash;
    using key_equal = KeyEqual;
    using allocator_type = Allocator;

    class snapshot_view;
    class iteration_guard;

    // ---- construction ------------------------------------------------------------------------------------
    concurrent_map() : concurrent_map(0) {}
    // `shards`: rounded up to a power of two, at most 65536; 0 picks detail::default_shard_count(). The map
    // draws one hash seed (or takes `s`) and keeps it for its lifetime: unlike iterlock::map, clear() does
    // not re-seed, because the seed also decides each key's shard.
    explicit concurrent_map(std::size_t shards, const Hash& h = Hash(), const KeyEqual& eq = KeyEqual(),
                            const Allocator& a = Allocator())
        : concurrent_map(shards, seed{detail::random_seed()}, h, eq, a) {}
    concurrent_map(std::size_t shards, seed s, const Hash& h = Hash(), const KeyEqual& eq = KeyEqual(),
                   const Allocator& a = Allocator())
        : shards_(shard_count_for(shards), s.value, h, eq, a),
          shard_shift_(shard_shift_for(shards_.size())),
          seed_(s.value),
          hash_(h),
          eq_(eq) {
        for (shard& sh : shards_) {
            // One hash serves the shard choice and the shard's table (key_hash), so no table may re-seed:
            // Go picks a new hash0 when a map is cleared or empties; a concurrent_map keeps its seed.
            sh.t.set_reseed(false);
            if constexpr (optimistic_reads) {
                sh.t.enable_deferred_frees(&detail::epoch_domain::global());
                if constexpr (snapshots)
                    sh.t.chain_watch().enable_deferred_frees(&detail::epoch_domain::global());
            }
            if constexpr (snapshots) {
                sh.t.chain_watch().bind(&registry_, a);
            }
        }
    }
    concurrent_map(const concurrent_map&) = delete;
    concurrent_map& operator=(const concurrent_map&) = delete;
    // Requires: no guard, call or callback of this map is still running (checked: aborts with a message
    // naming what is still alive). Observers holding lifetime_token() stop reading first.
    ~concurrent_map() {
        lifetime_.end();
        abort_if_in_use();
        if constexpr (snapshots) {
            if (registry_.live() != 0)
                detail::fatal("iterlock: concurrent_map destroyed while a snapshot is alive");
            for (shard& s : shards_) s.t.chain_watch().release_all(s.t);
        }
    }

    // ---- lookup ------------------------------------------------------------------------------------------
    // A copy of the value (cannot dangle), or nullopt. Shares the shard lock; never waits for iterations.
    ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> find(const K& k) const { return find_impl(k); }
    template <class K2>
    requires transparent ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> find(const K2& k)
    const { return find_impl(k); }
    bool contains(const K& k) const {
        if constexpr (optimistic_reads) return find_impl(k).has_value();
        return cvisit(k, [](const K&, const V&) {});
    }
    template <class K2>
    requires transparent bool contains(const K2& k) const {
        if constexpr (optimistic_reads) return find_impl(k).has_value();
        return cvisit(k, [](const K&, const V&) {});
    }

    // Runs f(const K&, const V&) on the entry under its shard lock (shared). Returns whether it exists.
    template <class K2, class F>
    bool cvisit(const K2& k, F&& f) const {
        const std::uint64_t h = key_hash(k);
        shard& s = shard_for(h);
        entry_check();
        const callback_exit exit{*this};
        s.lock.lock_shared();
        visit_scope vs(this);
        struct unlock {
            shard& s;
            ~unlock() { s.lock.unlock_shared(); }
        } u{s};
        const slot_type* e = s.t.find_slot(k, h);
        if (e == nullptr) return false;
        f(e->first, static_cast<const V&>(e->second));
        return true;
    }

    // ---- modifiers ---------------------------------------------------------------------------------------
    // Each returns true if it inserted a new entry.
    bool insert(const value_type& v) { return try_emplace(v.first, v.second); }
    bool insert(value_type&& v) { return try_emplace(v.first, std::move(v.second)); }

    template <class KArg, class... Args>
    bool try_emplace(KArg&& k, Args&&... args) {
        return write(k, [&](table_type& t, const typename table_type::write_position& pos, std::uint64_t h) {
            if (pos.found) return write_result::unchanged;
            t.will_write(pos);
            ::new (static_cast<void*>(pos.slot))
                slot_type(std::piecewise_construct, std::forward_as_tuple(std::forward<KArg>(k)),
                          std::forward_as_tuple(std::forward<Args>(args)...));
            t.commit_insert(pos, h);
            return write_result::inserted;
        });
    }

    template <class KArg, class M>
    bool insert_or_assign(KArg&& k, M&& v) {
        return write(k, [&](table_type& t, const typename table_type::write_position& pos, std::uint64_t h) {
            t.will_write(pos);
            if (pos.found) {
                pos.slot->second = std::forward<M>(v);
                return write_result::assigned;
            }
            ::new (static_cast<void*>(pos.slot)) slot_type(std::forward<KArg>(k), std::forward<M>(v));
            t.commit_insert(pos, h);
            return write_result::inserted;
        });
    }

    // Runs f(const K&, V&) on the entry under its shard lock (exclusive); counts as a write. Returns whether
    // the entry exists. f must not use this map (lock_error).
    template <class K2, class F>
    bool visit(const K2& k, F&& f) {
        return write_existing(k, [&](slot_type& e) { f(e.first, e.second); });
    }
    // Runs f(V&) on the entry's value under its shard lock; counts as a write. Returns whether it exists.
    template <class K2, class F>
    bool update(const K2& k, F&& f) {
        return write_existing(k, [&](slot_type& e) { f(e.second); });
    }

    // Removes k. Returns the number of entries removed (0 or 1).
    template <class K2 = K>
    size_type erase(const K2& k) {
        const std::uint64_t h = key_hash(k);
        shard& s = shard_for_write(h);
        write_lock wl(*this, s);
        if (s.t.size() == 0) return 0;
        // The counters are preserved before the table may change them; an erase of an absent key preserves
        // them needlessly (harmless, as for try_emplace of a present key) and advances no revision.
        before_counter_change(s);
        const bool erased = s.t.erase_key(k, h);
        after_write(s, erased ? 1 : 0);
        return erased ? 1 : 0;
    }

    // Erases every entry for which pred(const K&, V&) (or pred(value_type&)) is true, shard by shard (each
    // shard atomically). pred must not use this map. Returns the number erased.
    // If pred (or a copy that a live snapshot needs) throws, the entries erased before stay erased and are
    // counted (basic guarantee); the exception reaches the caller.
    template <class Pred>
    size_type erase_if(Pred pred) {
        const callback_exit exit{*this};
        size_type total = 0;
        for (shard& s : shards_) {
            write_lock wl(*this, s);
            if (s.t.size() == 0) continue;
            visit_scope vs(this);
            before_counter_change(s);
            auto test = [&](slot_type& e) -> bool {
                if constexpr (std::is_invocable_r_v<bool, Pred&, const K&, V&>) {
                    return pred(e.first, e.second);
                } else {
                    return pred(e);
                }
            };
            const size_type before = s.t.size();
            try {
                s.t.erase_if(test);
            } catch (...) {
                after_write(s, before - s.t.size());
                throw;
            }
            after_write(s, before - s.t.size());
            total += before - s.t.size();
        }
        return total;
    }

    // Removes every entry (shard by shard, each atomically). With snapshots alive, what they need is
    // preserved first (O(size) copies then).
    void clear() {
        for (shard& s : shards_) {
            write_lock wl(*this, s);
            const size_type n = s.t.size();
            if (n == 0) continue;
            before_counter_change(s);
            if constexpr (snapshots) {
                if (registry_.live() != 0 || s.t.chain_watch().has_items()) {
                    auto all = [](slot_type&) { return true; };
                    s.t.erase_if(all);
                    after_write(s, n);
                    continue;
                }
            }
            s.t.clear();
            after_write(s, n);
        }
    }

    // Go's size hint, spread over the shards. A hint: skipped for shards that a live snapshot or iteration
    // is reading. Throws std::length_error, changing nothing, if a shard's share exceeds what one shard's
    // table holds (map::max_size(), detail/map/table.hpp's max_entries), even where it would be skipped.
    void reserve(size_type n) {
        const size_type per = n / shards_.size() + 1;
        if (per > detail::max_entries) detail::throw_too_many_entries();
        for (shard& s : shards_) {
            write_lock wl(*this, s);
            if constexpr (snapshots) {
                if (registry_.live() != 0 || s.t.chain_watch().has_items()) continue;
            }
            s.t.reserve(per);
        }
    }

    // ---- observers ---------------------------------------------------------------------------------------
    // Sum of the shards' sizes, each read atomically (exact when no write is in flight).
    size_type size() const noexcept {
        size_type n = 0;
        // Relaxed: each count is written only by its shard's lock holder; the sum needs no order between
        // shards.
        for (shard& s : shards_) n += s.count().load(std::memory_order_relaxed);
        return n;
    }
    bool empty() const noexcept { return size() == 0; }
    // Number of successful writes so far (S6). Monotonic.
    std::uint64_t revision() const noexcept {
        std::uint64_t r = 0;
        // Relaxed: as in size(); each shard's revision only grows, written by its lock holder.
        for (shard& s : shards_) r += s.revision().load(std::memory_order_relaxed);
        return r;
    }
    std::size_t shard_count() const noexcept { return shards_.size(); }
    // Bytes currently held for live snapshots (S5). 0 with the locked policy.
    std::size_t preserved_bytes() const noexcept {
        std::size_t b = 0;
        if constexpr (snapshots)
            for (shard& s : shards_) b += s.t.chain_watch().preserved_bytes();
        return b;
    }
    std::size_t snapshots_alive() const noexcept {
        if constexpr (snapshots) return registry_.live();
        return 0;
    }

    // The map's metrics (metrics.hpp). O(shards) relaxed loads of counters; takes no lock and never waits,
    // so any thread may call it at any time, including from inside a visit/cvisit/update/erase_if callback
    // or under an iteration guard of this map. Each counter is read atomically; the set is not one
    // instant. With metrics compiled out, only the gauges (entries, revision, snapshots, preserved bytes,
    // growth) are filled. Throws only std::bad_alloc (the histograms' vectors).
    map_metrics metrics() const {
        map_metrics out;
        out.policy = snapshots ? "snapshot" : "locked";
        for (shard& s : shards_) {
            out.growths += s.t.growths();
            out.evacuated_buckets += s.t.evacuated_buckets();
            if constexpr (metrics_on) {
                for (int p = 0; p < 2; ++p)
                    s.stats.writer_wait[p].add_to(out.lock_wait[0][p],
                                                  // Relaxed: a statistic, read without ordering.
                                                  s.zero_waits(p).load(std::memory_order_relaxed));
            }
        }
        if constexpr (metrics_on) {
            detail::add_events_to(events_, out);
        }
        // Empty histograms still carry their bounds, so exporters always print every series.
        for (auto& role : out.lock_wait)
            for (auto& h : role)
                if (h.upper_bounds.empty()) detail::wait_histogram().add_to(h);
        out.entries = size();
        out.revision = revision();
        out.snapshots_active = snapshots_alive();
        out.snapshot_preserved_bytes = preserved_bytes();
        return out;
    }

    // For observers that may outlive the map (iterlock/prometheus.hpp's exposure): a token through which
    // they read the map only while it exists; the destructor waits for a read in progress, and no read
    // starts after it (detail/util/lifetime.hpp, LT1). The first call allocates it; no other call touches it.
    std::shared_ptr<detail::lifetime> lifetime_token() const { return lifetime_.watch(); }

    // ---- snapshot iteration
    // -------------------------------------------------------------------------------- The map at one instant
    // (S1-S6). O(1); never waits for writers, and writers never wait for it.
    snapshot_view snapshot() const requires snapshots {
        count_event(&detail::map_event_metrics::iterations_started);
        try {
            entry_check();
        } catch (const lock_error&) {
            count_event(&detail::map_event_metrics::iterations_error);
            throw;
        }
        drain_deferred();  // a snapshot that ended inside a callback whose sweep has not run yet
        // Reserves for the writers' copies (detail/concurrent/snapshot_store.hpp), before registering: the sweep that
        // ends the last snapshot frees them.
        if (registry_.chunks_started_since_last_look())
            for (shard& s : shards_) s.t.chain_watch().provision();
        try {
            return snapshot_view(this, registry_.acquire());
        } catch (...) {  // no snapshot of ours will free them (a live one's writers just lose theirs)
            for (shard& s : shards_) s.t.chain_watch().drop_reserve();
            throw;
        }
    }

    // ---- locked iteration
    // ---------------------------------------------------------------------------------- Blocks writers for
    // the guard's life (L1-L7). Waits (with the thread's priority) for current writers.
    iteration_guard lock_for_iteration() requires(!snapshots) { return iteration_guard(this, std::nullopt); }
    // L5: a guard that tests false (owns no lock, leaves no trace) if every shard could not be had within
    // `timeout`. Use it as `if (auto g = m.try_lock_for_iteration(5ms)) for (auto& kv : g) ...`; a range-for
    // straight over the call (`for (auto& kv : m.try_lock_for_iteration(5ms))`) is safe too (the guard
    // lives for the loop) and throws lock_error on a timeout.
    template <class Rep, class Period>
    iteration_guard try_lock_for_iteration(std::chrono::duration<Rep, Period> timeout) requires(!snapshots) {
        return iteration_guard(this, std::chrono::steady_clock::now() + timeout);
    }

    // ---- hooks for iterlock::versioned_map (versioned_map.hpp); not part of this map's contract ---------
    // The index of k's shard.
    template <class K2>
    std::size_t detail_shard_index(const K2& k) const {
        return static_cast<std::size_t>(&shard_for(key_hash(k)) - &shards_[0]);
    }
    // Under k's shard writer lock: decide(write_site) says what to do with k (nothing, put a value, erase);
    // the hook does it as one write (S1-S6 as for insert_or_assign/erase), then calls
    // commit(site, action, stored) (noexcept; stored: the entry's value after a put, else nullptr) before
    // the lock is released. If decide or the write throws, nothing changed and commit is not called.
    template <class K2, class Decide, class Commit>
    detail::site_action detail_write_at(const K2& k, Decide&& decide, Commit&& commit) {
        const std::uint64_t h = key_hash(k);
        shard& s = shard_for_write(h);
        write_lock wl(*this, s);
        const slot_type* cur = s.t.find_slot(k, h);
        // Relaxed: under the shard's lock, whose holder is the only writer.
        const detail::write_site<V> site{static_cast<std::size_t>(&s - &shards_[0]),
                                         s.revision().load(std::memory_order_relaxed),
                                         cur != nullptr ? &cur->second : nullptr};
        detail::site_decision<V> d = decide(site);
        if (d.action == detail::site_action::put) {
            const V& stored = put_locked(s, k, h, std::move(*d.value));
            commit(site, d.action, &stored);
        } else if (d.action == detail::site_action::erase && cur != nullptr) {
            erase_locked(s, k, h);
            commit(site, d.action, static_cast<const V*>(nullptr));
        } else {
            d.action = detail::site_action::none;
        }
        return d.action;
    }
    // One write over several shards: locks the shards `ids` (sorted, distinct) in ascending order (the one
    // global order, so overlapping batches never deadlock), labels them as one operation (every snapshot
    // holds all of it or none), and runs f(batch_site&) with them held. The site's put/erase/clear_shard are
    // writes as in detail_write_at (each calls its commit under the locks); f must touch only keys of the
    // locked shards (checked: std::logic_error). What f wrote before a throw stays written.
    class batch_site {
      public:
        std::uint64_t revision(std::size_t i) const noexcept {
            // Relaxed: under shard i's lock (held).
            return m_.shards_[i].revision().load(std::memory_order_relaxed);
        }
        template <class K2>
        const V* find(const K2& k) const {
            const std::uint64_t h = m_.key_hash(k);
            const slot_type* e = held(h).t.find_slot(k, h);
            return e != nullptr ? &e->second : nullptr;
        }
        // Stores v under k; commit(const V& stored) runs after the write.
        template <class Commit>
        void put(const K& k, V&& v, Commit&& commit) {
            const std::uint64_t h = m_.key_hash(k);
            commit(m_.put_locked(held(h), k, h, std::move(v)));
        }
        // Erases k if present; commit() runs after the write. Returns whether it erased.
        template <class Commit>
        bool erase(const K& k, Commit&& commit) {
            const std::uint64_t h = m_.key_hash(k);
            shard& s = held(h);
            if (s.t.find_slot(k, h) == nullptr) return false;
            m_.erase_locked(s, k, h);
            commit();
            return true;
        }
        // Erases every entry of shard i; on_erased(const K&) runs for each before it is destroyed.
        template <class OnErased>
        void clear_shard(std::size_t i, OnErased&& on_erased) {
            shard& s = m_.shards_[i];
            if (!m_.shard_held(i, held_)) throw_not_held();
            const size_type n = s.t.size();
            if (n == 0) return;
            m_.before_counter_change(s);
            auto all = [&](slot_type& e) {
                on_erased(static_cast<const K&>(e.first));
                return true;
            };
            size_type erased = 0;
            try {
                erased = s.t.erase_if(all);
            } catch (...) {
                after_write(s, n - s.t.size());
                throw;
            }
            after_write(s, erased);
        }

      private:
        friend class concurrent_map;
        batch_site(concurrent_map& m, const std::vector<std::size_t>& held) : m_(m), held_(held) {}
        shard& held(std::uint64_t h) const {
            shard& s = m_.shard_for(h);
            if (!m_.shard_held(static_cast<std::size_t>(&s - &m_.shards_[0]), held_)) throw_not_held();
            return s;
        }
        [[noreturn]] static void throw_not_held() {
            throw std::logic_error("iterlock: a batch wrote a key outside the set it declared");
        }
        concurrent_map& m_;
        const std::vector<std::size_t>& held_;
    };
    template <class F>
    void detail_write_batch(const std::vector<std::size_t>& ids, F&& f) requires snapshots {
        entry_check();
        const callback_exit exit{*this};
        struct locks {
            concurrent_map& m;
            std::size_t n = 0;
            const std::vector<std::size_t>& ids;
            ~locks() {
                while (n > 0) {
                    shard& s = m.shards_[ids[--n]];
                    if constexpr (optimistic_reads) reclaim(s);
                    s.lock.unlock();
                }
            }
        } held{*this, 0, ids};
        for (const std::size_t i : ids) {
            shard& s = shards_[i];
            if (!s.lock.try_lock()) s.lock.lock();
            ++held.n;
        }
        // One label for the whole batch: seq first, then liveness, as begin_op reads them.
        const std::uint64_t seq = registry_.seq();
        const bool quiet = registry_.live() == 0;
        for (const std::size_t i : ids) shards_[i].t.chain_watch().begin_op_at(seq, quiet);
        visit_scope vs(this);
        batch_site site(*this, ids);
        f(site);
    }
    // A snapshot taken while every shard's writer lock is held (in ascending order): no write is in
    // progress, so shard i's revision at the snapshot is its revision now, and f(i, revision) runs for
    // each shard before any writer goes on (versioned_map registers a watcher there: list-then-watch with
    // no history). Writers wait for this O(shards) hold. If f throws, no snapshot is returned.
    template <class F>
    snapshot_view detail_snapshot_all_locked(F&& f) requires snapshots {
        entry_check();
        drain_deferred();
        if (registry_.chunks_started_since_last_look())
            for (shard& s : shards_) s.t.chain_watch().provision();
        std::optional<snapshot_view> view;
        {
            struct locks {
                concurrent_map& m;
                std::size_t n = 0;
                ~locks() {
                    while (n > 0) m.shards_[--n].lock.unlock();
                }
            } held{*this};
            for (shard& s : shards_) {
                if (!s.lock.try_lock()) s.lock.lock();
                ++held.n;
            }
            view.emplace(snapshot_view(this, registry_.acquire()));
            for (std::size_t i = 0; i < shards_.size(); ++i)
                // Relaxed: under shard i's lock.
                f(i, shards_[i].revision().load(std::memory_order_relaxed));
        }  // the locks go before the view could be released (a release sweeps under shard locks)
        count_event(&detail::map_event_metrics::iterations_started);
        return std::move(*view);
    }
  private:
    // The hooks' two writes. Requires: s's writer lock (and, for erase_locked, k present). Each is one
    // write as insert_or_assign/erase make it (S1-S6); put_locked returns the stored value.
    template <class K2>
    const V& put_locked(shard& s, const K2& k, std::uint64_t h, V&& v) {
        const auto pos = s.t.prepare_write(k, h);
        before_counter_change(s);
        s.t.will_write(pos);
        V* stored = &pos.slot->second;
        if (pos.found) {
            pos.slot->second = std::move(v);
        } else {
            ::new (static_cast<void*>(pos.slot)) slot_type(k, std::move(v));
            stored = &s.t.commit_insert(pos, h).slot->second;
        }
        after_write(s, 1);
        return *stored;
    }
    template <class K2>
    void erase_locked(shard& s, const K2& k, std::uint64_t h) {
        before_counter_change(s);
        s.t.erase_key(k, h);
        after_write(s, 1);
    }
    static bool shard_held(std::size_t i, const std::vector<std::size_t>& ids) noexcept {
        return std::binary_search(ids.begin(), ids.end(), i);
    }

  public:

    // Runs f(revision) under shard i's writer lock (revision: the shard's successful writes so far).
    template <class F>
    void detail_with_shard(std::size_t i, F&& f) {
        shard& s = shards_[i];
        write_lock wl(*this, s);
        // Relaxed: under the shard's lock.
        f(s.revision().load(std::memory_order_relaxed));
    }

  private:
    enum class write_result { unchanged, inserted, assigned };

    // A key's hash, as every shard's table computes it (hash0 = the map's seed; tables never re-seed). Its
    // bits are split three ways: the low B select the table's bucket, the top 8 are the tophash byte, and
    // the shard is chosen by the log2(shards) bits just below those (shard_for).
    template <class K2>
    std::uint64_t key_hash(const K2& k) const {
        return detail::seeded_mix(static_cast<std::uint64_t>(hash_(k)), seed_);
    }
    shard& shard_for(std::uint64_t h) const noexcept {
        return shards_[static_cast<std::size_t>(h >> shard_shift_) & (shards_.size() - 1)];
    }
    // Shards: a power of two, at most max_shards (so a table's bucket bits, under 2^40 buckets, never reach
    // the shard bits).
    static constexpr std::size_t max_shards = std::size_t{1} << 16;
    static std::size_t shard_count_for(std::size_t requested) noexcept {
        return std::bit_ceil(std::clamp<std::size_t>(
            requested == 0 ? detail::default_shard_count() : requested, 1, max_shards));
    }
    static unsigned shard_shift_for(std::size_t n) noexcept {
        return 56 - static_cast<unsigned>(std::countr_zero(n));
    }

    // Misuse that would deadlock: a call from inside a visit callback of this map, directly or through a
    // callback of another map that this one's callback called.
    void entry_check() const {
        if (visiting_this()) [[unlikely]] {
            count_misuse();
            throw lock_error(
                "iterlock::concurrent_map: the map was used from inside visit/cvisit/update/erase_if "
                "on the same map (directly, or through another map's callback called from it); that would "
                "deadlock on the shard lock");
        }
    }
    // One load and a test for null when no callback runs on this thread.
    bool visiting_this() const noexcept { return detail::this_thread_maps().in_visit_of(this); }
    struct visit_scope {
        explicit visit_scope(const void* m) noexcept : frame{m, detail::this_thread_maps().visiting} {
            detail::this_thread_maps().visiting = &frame;
        }
        ~visit_scope() { detail::this_thread_maps().visiting = frame.outer; }
        visit_scope(const visit_scope&) = delete;
        visit_scope& operator=(const visit_scope&) = delete;
        detail::thread_map_state::visit_frame frame;
    };
    // Declared before the lock of a call that runs user code: at the call's end, after the lock is released,
    // sweeps a snapshot that ended inside the callback (release_snapshot).
    struct callback_exit {
        const concurrent_map& m;
        ~callback_exit() {
            if constexpr (snapshots) m.after_callback();
        }
    };
    // Whether this thread may hold one of this map's shard locks, or runs its sweep: then a sweep must not
    // start here (it would wait for a lock this thread holds).
    bool sweep_must_wait() const noexcept {
        const detail::thread_map_state& tls = detail::this_thread_maps();
        return tls.sweeping == this || tls.in_visit_of(this);
    }

    // The exclusive access a write needs: the shard's writer lock, or, for the thread that holds the only
    // locked-iteration guard of this map, an upgrade of its iteration lock (L6).
    struct write_lock {
        write_lock(concurrent_map& m, shard& s) : s_(s) {
            m.entry_check();
            std::chrono::nanoseconds waited{0};
            std::chrono::nanoseconds* wp = metrics_on ? &waited : nullptr;
            if constexpr (!snapshots) {
                if (const int* d = detail::this_thread_maps().depth_for(&m); d != nullptr && *d > 0) {
                    try {
                        s_.lock.upgrade_iteration_to_write(wp);  // lock_error if another iteration is live
                    } catch (const lock_error&) {
                        m.count_misuse();
                        throw;
                    }
                    upgraded_ = true;
                    record(waited);
                    // Relaxed: see shard::iteration_writer; this thread holds the shard exclusively.
                    if (const std::uint64_t me = detail::thread_tag();
                        s_.iteration_writer.load(std::memory_order_relaxed) != me) {
                        s_.t.register_iterator(me);
                        s_.iteration_writer.store(me, std::memory_order_relaxed);
                    }
                    return;
                }
            }
            if (s_.lock.try_lock()) [[likely]] {
                record_uncontended();
            } else {
                s_.lock.lock(wp);
                record(waited);
            }
            if constexpr (snapshots) s_.t.chain_watch().begin_op();
        }
        void record([[maybe_unused]] std::chrono::nanoseconds waited) noexcept {
            if constexpr (metrics_on) {
                s_.stats.writer_wait[current_priority() == priority::realtime ? 1 : 0].record_exclusive(
                    waited);
            }
        }
        void record_uncontended() noexcept {
            if constexpr (metrics_on) {
                detail::add_exclusive(s_.zero_waits(current_priority() == priority::realtime ? 1 : 0), 1);
            }
        }
        ~write_lock() {
            if constexpr (optimistic_reads) reclaim(s_);
            if (upgraded_) {
                s_.lock.downgrade_write_to_iteration();
            } else {
                s_.lock.unlock();
            }
        }
        write_lock(const write_lock&) = delete;
        write_lock& operator=(const write_lock&) = delete;
        shard& s_;
        bool upgraded_ = false;
    };

    void before_counter_change(shard& s) {
        if constexpr (snapshots) {
            s.t.chain_watch().before_counter_change([&s] {
                // Relaxed: under the shard's lock, whose holder is the only writer.
                return detail::shard_counters{s.t.size(), s.revision().load(std::memory_order_relaxed)};
            });
        }
    }
    // Publishes a write's effect on the shard's counters (writes: the shard's lock is held).
    static void after_write(shard& s, std::uint64_t writes) noexcept {
        if (writes != 0) detail::add_exclusive(s.revision(), writes);
        // Relaxed: only the shard's lock holder writes it; readers (size()) only need an eventually-current
        // value.
        s.count().store(s.t.size(), std::memory_order_relaxed);
    }

    template <class K2, class F>
    bool write(const K2& k, F&& apply) {
        const std::uint64_t h = key_hash(k);
        shard& s = shard_for_write(h);
        write_lock wl(*this, s);
        const auto pos = s.t.prepare_write(k, h);
        // The counters are preserved before anything changes; a write that turns out to change nothing
        // (try_emplace of a present key) preserves them needlessly, which is harmless.
        before_counter_change(s);
        const write_result r = apply(s.t, pos, h);
        after_write(s, r != write_result::unchanged ? 1 : 0);
        return r == write_result::inserted;
    }

    template <class K2, class F>
    bool write_existing(const K2& k, F&& f) {
        const std::uint64_t h = key_hash(k);
        shard& s = shard_for_write(h);
        const callback_exit exit{*this};
        write_lock wl(*this, s);
        if (s.t.find_slot(k, h) == nullptr) return false;
        const auto pos = s.t.prepare_write(k, h);  // found: no structural change beyond growth steps
        before_counter_change(s);
        s.t.will_write(pos);
        visit_scope vs(this);
        f(*pos.slot);
        after_write(s, 1);
        return true;
    }

    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> find_impl(const K2& k) const {
        const std::uint64_t h = key_hash(k);
        shard& s = shard_for(h);
        if constexpr (optimistic_reads) {
            // A sequence-lock read: no store to the shard's lock word, so finds on two cores do not bounce
            // its cache line. The epoch section keeps every block the walk can reach allocated
            // (detail/concurrent/epoch.hpp); the validation keeps the answer only if no writer came in between.
            // This is the fast path, one attempt, inline: over a large map every find waits for a cache
            // miss, and how many finds a core keeps in flight at once depends on how few instructions
            // each one takes (184 -> 128 instructions per find took a 1M-key find loop from 1.4x to 1.1x
            // of a bare table lookup; docs/BENCHMARKS.md, fourth session).
            // Everything rare is out of line in find_slow: the thread's first find (it claims an epoch
            // record), a writer holding the shard, a failed validation, a call from a visit callback.
            detail::epoch_domain::record* rec = detail::epoch_domain::fast_record();
            std::uint64_t token;
            if (rec != nullptr && s.lock.try_read_begin(token) && !visiting_this()) [[likely]] {
                detail::epoch_domain::enter_fast(*rec);
                bool torn = false;
                const slot_type* hit = s.t.find_racy(k, h, torn);
                // The value as bytes (no V is made before the validation; GCC keeps these in registers
                // where an std::optional went through the stack).
                std::array<unsigned char, sizeof(V)> value{};
                if (hit != nullptr) value = detail::racy_bytes(&hit->second);
                detail::epoch_domain::leave(*rec);
                if (!torn && s.lock.read_validate(token)) [[likely]] {
                    if (hit == nullptr) return std::nullopt;
                    return std::bit_cast<V>(value);
                }
            }
            return find_slow<K2>(k, h, s);
        } else {
            entry_check();
            return find_locked(k, h, s);
        }
    }
    // A key handed to an out-of-line call: by value where that is a register or two, so the inline caller
    // need not keep it in memory for the call.
    template <class K2>
    using key_pass = std::conditional_t<std::is_trivially_copyable_v<K2> && sizeof(K2) <= 16, K2, const K2&>;
    // The optimistic find's rare cases: more attempts (read_begin waits while a writer holds), then the
    // lock. Requires: optimistic_reads.
    template <class K2>
    ITERLOCK_DETAIL_NOINLINE std::optional<V> find_slow(key_pass<K2> k, std::uint64_t h, shard& s) const {
        entry_check();
        detail::epoch_domain::record& rec = detail::epoch_domain::global().mine();
        for (int attempt = 1; attempt < optimistic_attempts; ++attempt) {
            const std::uint64_t token = s.lock.read_begin();  // outside the section: it may wait (E2)
            bool torn = false;
            std::optional<V> r = find_in_section(k, h, s, rec, torn);
            if (torn) break;
            if (s.lock.read_validate(token)) return r;
        }
        return find_locked(k, h, s);
    }
    // One racy lookup inside an epoch section: a copy of the matched value (meaningful only if the
    // caller's validation succeeds); `torn` is set if the walk met a torn chain.
    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> find_in_section(const K2& k, std::uint64_t h,
                                                                   const shard& s,
                                                                   detail::epoch_domain::record& rec,
                                                                   bool& torn) const {
        const detail::epoch_domain::section in_section(detail::epoch_domain::global(), rec);
        const slot_type* hit = s.t.find_racy(k, h, torn);
        if (hit == nullptr) return std::nullopt;
        return detail::racy_copy<V>(&hit->second);
    }
    // The find under the shard's lock (shared). Out of line: for optimistic maps it is the rare fallback,
    // and keeping it out of find_impl keeps that small enough to inline into callers.
    template <class K2>
    ITERLOCK_DETAIL_NOINLINE std::optional<V> find_locked(const K2& k, std::uint64_t h, shard& s) const {
        s.lock.lock_shared();
        struct unlock {
            shard& s;
            ~unlock() { s.lock.unlock_shared(); }
        } u{s};
        const slot_type* e = s.t.find_slot(k, h);
        if (e == nullptr) return std::nullopt;
        return e->second;
    }

    // shard_for(h), and the lines a write of h will touch start loading before the caller locks the shard
    // (table::prefetch_for_write): a write's lock is a locked instruction, and on two cores the lock word
    // is usually in the other core's cache (its finds read it), so the data misses overlap that transfer
    // instead of following it.
    // While a snapshot lives, the chain's tag is read too (detail/concurrent/snapshot_store.hpp).
    shard& shard_for_write(std::uint64_t h) const noexcept {
        shard& s = shard_for(h);
        bool tag_read = false;
        if constexpr (snapshots) tag_read = registry_.live() != 0;
        s.t.prefetch_for_write(h, tag_read);
        return s;
    }

    // The destructor's check: a guard, call or waiter that outlives the map would use freed shards, so say
    // in the user's terms what is still alive. O(shards).
    void abort_if_in_use() const noexcept {
        for (shard& s : shards_) {
            const detail::shard_lock_state st = s.lock.state();
            if (st.iterations != 0)
                detail::fatal(
                    "iterlock: concurrent_map destroyed while an iteration guard (lock_for_iteration / "
                    "try_lock_for_iteration) is alive; end every guard before its map");
            if (st.write_held || st.readers != 0)
                detail::fatal(
                    "iterlock: concurrent_map destroyed while a call on it is still running (inside a "
                    "visit/cvisit/update/erase_if callback, or on another thread); a map must outlive every "
                    "call on it");
            if (st.total_waiting() != 0)
                detail::fatal(
                    "iterlock: concurrent_map destroyed while another thread waits for one of its locks; "
                    "a map must outlive every call on it");
        }
    }

    void count_misuse() const noexcept { count_event(&detail::map_event_metrics::misuse_detected); }
    void count_event(
        [[maybe_unused]] std::atomic<std::uint64_t> detail::map_event_metrics::*which) const noexcept {
        if constexpr (metrics_on)
            (events_.*which).fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
    }

    // Frees what optimistic readers can no longer reach (table blocks, dropped versions). Requires: the
    // shard's writer lock.
    static void reclaim(shard& s) noexcept {
        bool due = s.t.reclaim_due();
        if constexpr (snapshots) due = due || s.t.chain_watch().reclaim_due();
        if (due) [[unlikely]]
            reclaim_now(s);
    }
    ITERLOCK_DETAIL_NOINLINE static void reclaim_now(shard& s) noexcept {
        const std::uint64_t oldest = detail::epoch_domain::global().oldest_reader();
        s.t.reclaim_deferred(oldest);
        if constexpr (snapshots) s.t.chain_watch().reclaim_deferred(oldest);
    }

    // An optimistic walk of another snapshot may still be reading what a sweep unlinked: waits for the
    // epoch sections open now to end (they never wait themselves: epoch E2).
    static void wait_for_open_sections() noexcept {
        detail::epoch_domain& d = detail::epoch_domain::global();
        d.wait_until_safe(d.retire_stamp());
    }

    // Ends a snapshot (S5). The sweep runs here unless this thread may hold one of the map's shard locks
    // (it runs inside a callback of this map, or inside this map's sweep); then it is deferred to the end of
    // that callback (after_callback), or to the next snapshot() or release.
    void release_snapshot(std::uint64_t marker) const noexcept {
        count_event(&detail::map_event_metrics::iterations_success);
        const detail::sweep_range r = registry_.release(marker);
        if (sweep_must_wait()) {
            registry_.defer(marker);
            return;
        }
        std::lock_guard<std::mutex> g(sweep_mu_);
        sweep(r);
        drain_deferred_locked();
    }
    // Runs the sweeps that releases deferred, if this thread may (see release_snapshot).
    void drain_deferred() const noexcept {
        if (!registry_.has_deferred() || sweep_must_wait()) return;
        std::lock_guard<std::mutex> g(sweep_mu_);
        drain_deferred_locked();
    }
    void drain_deferred_locked() const noexcept {
        detail::sweep_range r;
        while (registry_.take_deferred(r)) sweep(r);
    }
    // After a call that ran user code under a shard lock: a snapshot ended in there is swept now.
    void after_callback() const noexcept {
        if (registry_.has_deferred()) [[unlikely]]
            drain_deferred();
    }

    // Frees what the ended snapshot (r) alone needed, shard by shard, a bounded step at a time under each
    // shard's lock (writers wait for one step at most); the versions are destroyed after the optimistic
    // readers that might still read them are done. Requires: sweep_mu_.
    void sweep(const detail::sweep_range& r) const noexcept {
        struct sweeping_scope {
            const void* saved = detail::this_thread_maps().sweeping;
            explicit sweeping_scope(const void* m) noexcept { detail::this_thread_maps().sweeping = m; }
            ~sweeping_scope() { detail::this_thread_maps().sweeping = saved; }
        } scope(this);
        bool any = false;
        for (shard& s : shards_) {
            auto& w = s.t.chain_watch();
            if (!w.has_items() && !w.has_reserve()) continue;
            typename watch_type::sweep_cursor c;
            for (bool done = false; !done;) {
                s.lock.lock();
                done = w.sweep_step(r, s.t, c, sweep_step_budget);
                if constexpr (optimistic_reads) reclaim(s);
                s.lock.unlock();
            }
            any = any || w.has_garbage();
        }
        if (!any) return;
        if constexpr (optimistic_reads) wait_for_open_sections();
        for (shard& s : shards_) s.t.chain_watch().free_garbage();
    }
    // Chain versions a sweep examines per hold of a shard's lock.
    static constexpr std::size_t sweep_step_budget = 256;

    detail::inplace_array<shard> shards_;  // contiguous: shard_for is an address computation
    unsigned shard_shift_;
    std::uint64_t seed_;  // every table's hash0
    [[no_unique_address]] Hash hash_;
    [[no_unique_address]] KeyEqual eq_;
    mutable detail::snapshot_registry registry_;
    friend struct detail::concurrent_map_test_access;
    mutable std::mutex sweep_mu_;  // serialises the sweeps of this map's snapshots (writers never take it)
    [[no_unique_address]] mutable map_stats events_;
    detail::lifetime_anchor lifetime_;  // observers' view of the map's existence (lifetime_token())

    friend struct detail::concurrent_map_test_access;

  public:
    // ==== snapshot_view: what snapshot() returns
    // ====================================================================
    class snapshot_view {
      public:
        snapshot_view(snapshot_view&& o) noexcept
            : m_(std::exchange(o.m_, nullptr)), marker_(o.marker_), totals_(o.totals_) {}
        snapshot_view& operator=(snapshot_view&& o) noexcept {
            if (this != &o) {
                release();
                m_ = std::exchange(o.m_, nullptr);
                marker_ = o.marker_;
                totals_ = o.totals_;
            }
            return *this;
        }
        snapshot_view(const snapshot_view&) = delete;
        snapshot_view& operator=(const snapshot_view&) = delete;
        ~snapshot_view() { release(); }

        // Entries at the snapshot's instant (S2). O(shards) shard locks, shared, on the first call.
        size_type size() const { return totals().count; }
        bool empty() const { return size() == 0; }
        // The number of writes the snapshot reflects (S6).
        std::uint64_t revision() const { return totals().revision; }
        std::uint64_t marker() const noexcept { return marker_; }
        // Hook for versioned_map: shard i's revision at the snapshot's instant (one shared shard lock).
        std::uint64_t detail_shard_revision(std::size_t i) const {
            shard& s = m_->shards_[i];
            m_->entry_check();
            s.lock.lock_shared();
            // Relaxed: under the shard's lock (shared), which orders the writer's store before this.
            const detail::shard_counters c = s.t.chain_watch().counters_at(
                detail::shard_counters{s.t.size(), s.revision().load(std::memory_order_relaxed)}, marker_);
            s.lock.unlock_shared();
            return c.revision;
        }

        std::optional<V> find(const K& k) const { return find_impl(k); }
        template <class K2>
        requires transparent std::optional<V> find(const K2& k)
        const { return find_impl(k); }
        bool contains(const K& k) const { return find(k).has_value(); }

        class iterator;
        iterator begin() const { return iterator(this); }
        iterator end() const noexcept { return iterator(); }

        // A forward walk over copies of the entries, one batch of buckets at a time.
        class iterator {
          public:
            using iterator_category = std::input_iterator_tag;
            using value_type = concurrent_map::value_type;
            using difference_type = std::ptrdiff_t;
            using pointer = const value_type*;
            using reference = const value_type&;

            iterator() = default;
            reference operator*() const noexcept { return *cur_; }
            pointer operator->() const noexcept { return cur_; }
            iterator& operator++() {
                if (++cur_ == end_) fill();
                return *this;
            }
            void operator++(int) { ++*this; }
            // Copies of one iterator share its batch (an input iterator: only the one advanced last is
            // valid), so equal positions are equal addresses; the end is null.
            friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.cur_ == b.cur_; }

          private:
            friend class snapshot_view;
            // Entries copied out of the shard: a buffer that grows by doubling and is reused batch after
            // batch, so the copy loops store through a pointer with one capacity test per bucket (room())
            // instead of one per entry. Invariant: [data, data + n) are constructed slot_type objects.
            struct batch {
                slot_type* data = nullptr;
                std::size_t n = 0;
                std::size_t cap = 0;

                batch() = default;
                batch(const batch&) = delete;
                batch& operator=(const batch&) = delete;
                ~batch() {
                    clear();
                    if (data != nullptr) std::allocator<slot_type>().deallocate(data, cap);
                }
                std::size_t size() const noexcept { return n; }
                void clear() noexcept { truncate(0); }
                void truncate(std::size_t keep) noexcept {
                    if constexpr (!std::is_trivially_destructible_v<slot_type>)
                        for (std::size_t i = keep; i < n; ++i) data[i].~slot_type();
                    n = std::min(n, keep);
                }
                // Room for `more` entries past n. Strong guarantee: if the allocation or a copy throws, the
                // batch is as it was.
                void room(std::size_t more) {
                    if (cap - n >= more) [[likely]]
                        return;
                    grow(n + more);
                }
                void push(const slot_type& e) {
                    room(1);
                    ::new (static_cast<void*>(data + n)) slot_type(e);
                    ++n;
                }
                ITERLOCK_DETAIL_NOINLINE void grow(std::size_t need) {
                    // At least a full batch of main buckets without overflow: no growth in the common case.
                    const std::size_t c = std::max({need, 2 * cap, batch_buckets * detail::bucket_cnt * 2});
                    std::allocator<slot_type> a;
                    slot_type* d = a.allocate(c);
                    try {
                        std::uninitialized_copy(data, data + n, d);
                    } catch (...) {
                        a.deallocate(d, c);
                        throw;
                    }
                    const std::size_t keep = n;
                    clear();
                    if (data != nullptr) a.deallocate(data, cap);
                    data = d;
                    n = keep;
                    cap = c;
                }
            };

            explicit iterator(const snapshot_view* s) : s_(s), batch_(std::make_shared<batch>()) { fill(); }

            // Copies the next batch of chains (at least one entry, unless the walk is over: then cur_ and
            // end_ are null).
            void fill() {
                batch_->clear();
                const concurrent_map& m = *s_->m_;
                while (batch_->size() == 0) {
                    if (shard_ == m.shards_.size()) {
                        s_ = nullptr;
                        cur_ = end_ = nullptr;
                        return;
                    }
                    shard& sh = m.shards_[shard_];
                    m.entry_check();
                    struct unlock {
                        shard& s;
                        ~unlock() { s.lock.unlock_shared(); }
                    };
                    if (!have_structure_) {
                        // The arrays named here stay allocated while this snapshot lives (S4), so later
                        // batches may read them without the lock.
                        sh.lock.lock_shared();
                        unlock u{sh};
                        st_ = sh.t.chain_watch().structure_at(sh.t, s_->marker_);
                        bucket_ = 0;
                        have_structure_ = true;
                    }
                    const std::size_t nb = std::size_t{1} << st_.B;
                    const std::size_t walk = !st_.cur ? 0 : st_.old ? (st_.same_size ? nb : nb >> 1) : nb;
                    const std::size_t stop = std::min(walk, bucket_ + batch_buckets);
                    bool copied = false;
                    if constexpr (optimistic_reads) copied = copy_batch_racy(sh, stop);
                    if (!copied) {
                        sh.lock.lock_shared();
                        unlock u{sh};
                        for (; bucket_ < stop; ++bucket_) copy_bucket(bucket_);
                    }
                    bucket_ = stop;
                    if (bucket_ == walk) {
                        ++shard_;
                        have_structure_ = false;
                    }
                }
                cur_ = batch_->data;
                end_ = batch_->data + batch_->size();
            }
            void copy_bucket(std::size_t j) {
                const std::uint64_t m = s_->marker_;
                if (!st_.old) {
                    copy_chain(st_.cur.at(j), m);
                    return;
                }
                const bucket ob = st_.old.at(j);
                auto* v = s_->m_->shards_[shard_].t.chain_watch().chain_at(ob, m);
                if (v != nullptr) {  // preserved: it was not evacuated at the snapshot's instant
                    for (std::uint32_t i = 0; i < v->count; ++i) batch_->push(v->entries()[i]);
                    return;
                }
                if (!detail::is_evacuated_mark(ob.top[0])) {
                    copy_live(ob);
                    return;
                }
                copy_chain(st_.cur.at(j), m);
                if (!st_.same_size) copy_chain(st_.cur.at(j + ((std::size_t{1} << st_.B) >> 1)), m);
            }
            void copy_chain(const bucket& head, std::uint64_t m) {
                auto* v = s_->m_->shards_[shard_].t.chain_watch().chain_at(head, m);
                if (v != nullptr) {
                    for (std::uint32_t i = 0; i < v->count; ++i) batch_->push(v->entries()[i]);
                } else {
                    copy_live(head);
                }
            }
            void copy_live(const bucket& head) {
                for (bucket b = head; b; b = b.next()) {
                    for (detail::slot_mask msk = detail::match_full(b.top); msk != 0; msk &= msk - 1) {
                        batch_->push(*b.slot(static_cast<unsigned>(std::countr_zero(msk))));
                    }
                    if (detail::has_empty_rest(b.top)) break;
                }
            }

            using version_type = detail::chain_version<slot_type>;
            static constexpr std::uint32_t max_racy_entries = std::uint32_t{1} << 20;

            // ---- the optimistic batch (trivially copyable K and V): a sequence-lock read of buckets
            // [bucket_, stop), so writers never wait for a walk. Every load is a relaxed atomic load
            // (detail/util/racy_read.hpp); the epoch section keeps every block reachable from the snapshot's
            // structure allocated (overflow buckets, dropped versions: detail/concurrent/epoch.hpp); a batch that a
            // writer overlapped is discarded and read again, under the lock after a few tries.
            bool copy_batch_racy(shard& sh, std::size_t stop) {
                detail::epoch_domain& d = detail::epoch_domain::global();
                detail::epoch_domain::record& rec = d.mine();
                const std::size_t mark = batch_->size();
                for (int attempt = 0; attempt < optimistic_attempts; ++attempt) {
                    const std::uint64_t token = sh.lock.read_begin();  // outside the section (E2)
                    bool ok = true;
                    {
                        const detail::epoch_domain::section in_section(d, rec);
                        for (std::size_t j = bucket_; j < stop && ok; ++j) ok = copy_bucket_racy(sh, j);
                    }
                    if (ok && sh.lock.read_validate(token)) return true;
                    batch_->truncate(mark);
                }
                return false;
            }
            bool copy_bucket_racy(shard& sh, std::size_t j) {
                const std::uint64_t m = s_->marker_;
                if (!st_.old) return copy_chain_racy(sh, st_.cur.at(j), m);
                const bucket ob = st_.old.at(j);
                const version_type* v = nullptr;
                if (!sh.t.chain_watch().chain_at_racy(ob, m, v)) return false;
                if (v != nullptr) return push_version_racy(v);
                if (!ob.evacuated_racy()) return copy_live_racy(ob);
                if (!copy_chain_racy(sh, st_.cur.at(j), m)) return false;
                if (st_.same_size) return true;
                return copy_chain_racy(sh, st_.cur.at(j + ((std::size_t{1} << st_.B) >> 1)), m);
            }
            bool copy_chain_racy(shard& sh, const bucket& head, std::uint64_t m) {
                const version_type* v = nullptr;
                if (!sh.t.chain_watch().chain_at_racy(head, m, v)) return false;
                return v != nullptr ? push_version_racy(v) : copy_live_racy(head);
            }
            bool push_version_racy(const version_type* v) {
                // Relaxed: read after chain_at_racy()'s acquire fence, which pairs with preserve's release
                // fence; the walk is validated afterwards.
                const std::uint32_t n = __atomic_load_n(&v->count, __ATOMIC_RELAXED);
                if (n > max_racy_entries) return false;
                const slot_type* e = const_cast<version_type*>(v)->entries();
                batch& out = *batch_;
                out.room(n);
                for (std::uint32_t i = 0; i < n; ++i)
                    ::new (static_cast<void*>(out.data + out.n + i))
                        slot_type(detail::racy_copy(&e[i].first), detail::racy_copy(&e[i].second));
                out.n += n;
                return true;
            }
            bool copy_live_racy(bucket b) {
                batch& out = *batch_;
                for (std::size_t hops = 0; hops < max_racy_entries / detail::bucket_cnt; ++hops) {
                    std::uint8_t group[detail::bucket_cnt];
                    b.load_top_racy(group);
                    out.room(detail::bucket_cnt);
                    slot_type* to = out.data + out.n;
                    const slot_type* from = b.slot(0);
                    for (detail::slot_mask msk = detail::match_full(group); msk != 0; msk &= msk - 1) {
                        const slot_type* e = from + std::countr_zero(msk);
                        ::new (static_cast<void*>(to++))
                            slot_type(detail::racy_copy(&e->first), detail::racy_copy(&e->second));
                    }
                    out.n = static_cast<std::size_t>(to - out.data);
                    if (detail::has_empty_rest(group)) return true;
                    b = b.next_racy();
                    if (!b) return true;
                }
                return false;  // longer than any real chain: torn
            }

            static constexpr std::size_t batch_buckets = 32;
            const snapshot_view* s_ = nullptr;
            std::shared_ptr<batch> batch_;
            const slot_type* cur_ = nullptr;  // the entry in batch_ (null: the end)
            const slot_type* end_ = nullptr;  // one past batch_'s last entry
            std::size_t shard_ = 0;
            std::size_t bucket_ = 0;
            bool have_structure_ = false;
            detail::structure<typename table_type::array_ref> st_{};
        };

      private:
        friend class concurrent_map;
        snapshot_view(const concurrent_map* m, std::uint64_t marker) : m_(m), marker_(marker) {}

        struct totals_t {
            size_type count = 0;
            std::uint64_t revision = 0;
            bool known = false;
        };
        const totals_t& totals() const {
            if (!totals_.known) {
                totals_t t;
                for (shard& s : m_->shards_) {
                    m_->entry_check();
                    s.lock.lock_shared();
                    const detail::shard_counters c = s.t.chain_watch().counters_at(
                        // Relaxed: under the shard's lock (shared), which orders the writer's store before
                        // this.
                        detail::shard_counters{s.t.size(), s.revision().load(std::memory_order_relaxed)},
                        marker_);
                    s.lock.unlock_shared();
                    t.count += c.count;
                    t.revision += c.revision;
                }
                t.known = true;
                totals_ = t;
            }
            return totals_;
        }

        template <class K2>
        std::optional<V> find_impl(const K2& k) const {
            const std::uint64_t h = m_->key_hash(k);
            shard& s = m_->shard_for(h);
            m_->entry_check();
            s.lock.lock_shared();
            struct unlock {
                shard& s;
                ~unlock() { s.lock.unlock_shared(); }
            } u{s};
            const auto st = s.t.chain_watch().structure_at(s.t, marker_);
            if (!st.cur) return std::nullopt;
            auto search_version = [&](auto* v) -> std::optional<V> {
                for (std::uint32_t i = 0; i < v->count; ++i)
                    if (m_->eq_(k, v->entries()[i].first)) return v->entries()[i].second;
                return std::nullopt;
            };
            auto search_live = [&](const bucket& head) -> std::optional<V> {
                const std::uint8_t top = detail::tophash_of(h);
                for (bucket b = head; b; b = b.next()) {
                    for (detail::slot_mask msk = detail::match_byte(b.top, top); msk != 0; msk &= msk - 1) {
                        const slot_type* e = b.slot(static_cast<unsigned>(std::countr_zero(msk)));
                        if (m_->eq_(k, e->first)) return e->second;
                    }
                    if (detail::has_empty_rest(b.top)) break;
                }
                return std::nullopt;
            };
            const std::size_t mask = (std::size_t{1} << st.B) - 1;
            if (st.old) {
                const std::size_t omask = st.same_size ? mask : mask >> 1;
                const bucket ob = st.old.at(h & omask);
                if (auto* v = s.t.chain_watch().chain_at(ob, marker_)) return search_version(v);
                if (!detail::is_evacuated_mark(ob.top[0])) return search_live(ob);
            }
            const bucket head = st.cur.at(h & mask);
            if (auto* v = s.t.chain_watch().chain_at(head, marker_)) return search_version(v);
            return search_live(head);
        }

        void release() noexcept {
            if (m_ != nullptr) {
                m_->release_snapshot(marker_);
                m_ = nullptr;
            }
        }

        const concurrent_map* m_;
        std::uint64_t marker_;
        mutable totals_t totals_;
    };

    // ==== iteration_guard: what lock_for_iteration() and try_lock_for_iteration() return
    // ==========================================================
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
    class iteration_guard {
      public:
        iteration_guard(iteration_guard&&) = delete;
        iteration_guard& operator=(iteration_guard&&) = delete;
        iteration_guard(const iteration_guard&) = delete;
        iteration_guard& operator=(const iteration_guard&) = delete;
        ~iteration_guard() { release(); }

        bool owns_lock() const noexcept { return m_ != nullptr; }
        explicit operator bool() const noexcept { return owns_lock(); }
        // Entries while the guard lives (an estimate is not needed: writers are excluded). lock_error if
        // the guard owns nothing (G3).
        size_type size() const {
            require_lock();
            return m_->size();
        }

        // Walks every shard (in order from a random one), each shard in Go's randomized order. The entries
        // may be modified through the iterator; the holding thread may also insert and erase (L6).
        class iterator {
          public:
            using iterator_category = std::forward_iterator_tag;
            using value_type = concurrent_map::value_type;
            using difference_type = std::ptrdiff_t;
            using pointer = value_type*;
            using reference = value_type&;

            iterator() = default;
            reference operator*() const noexcept { return *cur_; }
            pointer operator->() const noexcept { return cur_; }
            iterator& operator++() {
                step();
                return *this;
            }
            iterator operator++(int) {
                iterator c = *this;
                step();
                return c;
            }
            friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.cur_ == b.cur_; }

          private:
            friend class iteration_guard;
            explicit iterator(concurrent_map* m) : m_(m) {
                const std::size_t n = m_->shards_.size();
                start_ = static_cast<std::size_t>(draw()) & (n - 1);
                open(start_);
                step();
            }
            void open(std::size_t i) {
                shard_ = i;
                m_->shards_[i].t.iter_init(st_, draw());
            }
            // The random start of each shard's walk (Go randomizes every walk): splitmix64 over a
            // thread-local state seeded once from random_seed(), so a walk draws without an atomic
            // operation per shard (random_seed() is a shared counter: at 10K entries its 64 RMWs per walk
            // were a measurable part of the walk).
            static std::uint64_t draw() noexcept {
                thread_local std::uint64_t state = detail::random_seed();
                std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
                return z ^ (z >> 31);
            }
            void step() {
                const std::size_t n = m_->shards_.size();
                for (;;) {
                    cur_ = m_->shards_[shard_].t.iter_next(st_);
                    if (cur_ != nullptr) return;
                    if (++visited_ == n) return;  // cur_ == nullptr: end
                    open((shard_ + 1) & (n - 1));
                }
            }
            concurrent_map* m_ = nullptr;
            typename table_type::iter_state st_{};
            slot_type* cur_ = nullptr;
            std::size_t start_ = 0;
            std::size_t shard_ = 0;
            std::size_t visited_ = 0;
        };
        // lock_error if the guard owns nothing (G3).
        iterator begin() const {
            require_lock();
            return iterator(m_);
        }
        iterator end() const noexcept { return iterator(); }

      private:
        void require_lock() const {
            if (m_ == nullptr)
                throw lock_error(
                    "iterlock: using an iteration guard that does not own the lock (try_lock_for_iteration "
                    "timed out: test the guard before walking it)");
        }

        friend class concurrent_map;
        using deadline_t = std::optional<std::chrono::steady_clock::time_point>;

        iteration_guard(concurrent_map* m, deadline_t deadline) : owner_(detail::thread_tag()) {
            m->count_event(&detail::map_event_metrics::iterations_started);
            try {
                m->entry_check();
            } catch (const lock_error&) {
                m->count_event(&detail::map_event_metrics::iterations_error);
                throw;
            }
            detail::iteration_holds& tls = detail::this_thread_iteration_holds();
            if (int* d = tls.depth_for(m); d != nullptr && *d > 0) {  // L7: nested, share the locks
                ++*d;
                m_ = m;
                nested_ = true;
                return;
            }
            detail::iteration_holds::held* slot = nullptr;
            try {
                slot = &tls.add(m);
            } catch (const lock_error&) {
                m->count_event(&detail::map_event_metrics::iterations_error);
                throw;
            }
            const priority p = current_priority();
            detail::wait_histogram* wait = nullptr;
            if constexpr (metrics_on) wait = &m->events_.iterator_wait[detail::priority_index(p)];
            if (!detail::acquire_iterations(  // L5: all shards or none
                    m->shards_.size(),
                    [m](std::size_t i) -> detail::shard_lock& { return m->shards_[i].lock; }, deadline, p,
                    wait)) {
                tls.remove(*slot);
                m->count_event(&detail::map_event_metrics::iterations_timeout);
                return;
            }
            // Tables register this guard when its holder first writes to them (L6), not here.
            m_ = m;
        }

        void release() noexcept {
            if (m_ == nullptr) return;
            if (owner_ != detail::thread_tag()) {  // G2
                detail::fatal(
                    "iterlock: an iteration guard was released by another thread than the one that took it; "
                    "guards are not movable and must end on their own thread");
            }
            detail::iteration_holds& tls = detail::this_thread_iteration_holds();
            detail::iteration_holds::held* h = tls.find(m_);
            m_->count_event(&detail::map_event_metrics::iterations_success);
            if (--h->depth == 0) {
                tls.remove(*h);
                for (shard& s : m_->shards_) {
                    // Relaxed: see shard::iteration_writer (only this thread stores its own tag there).
                    if (s.iteration_writer.load(std::memory_order_relaxed) == owner_) [[unlikely]] {
                        s.t.unregister_iterator(owner_);
                        s.iteration_writer.store(0, std::memory_order_relaxed);
                    }
                    s.lock.unlock_iteration();
                }
            }
            m_ = nullptr;
        }

        concurrent_map* m_ = nullptr;
        std::uint64_t owner_ = 0;
        bool nested_ = false;
    };
};

// A concurrent_map with locked iteration (L1-L7), without spelling all six template parameters:
//     iterlock::locked_concurrent_map<std::string, int> m;  auto g = m.lock_for_iteration();
template <class K, class V, class Hash = hash<K>, class KeyEqual = std::equal_to<K>,
          class Allocator = std::allocator<std::pair<const K, V>>>
using locked_concurrent_map = concurrent_map<K, V, Hash, KeyEqual, Allocator, locked_iteration>;

}  // namespace iterlock
