// iterlock/detail/concurrent/snapshot_store.hpp: what concurrent_map's snapshots need from each shard — the
// registry of live snapshots, the per-chain labels, the preserved copies (pre-images) of chains that
// writers changed while a snapshot needed them, and their reclamation.
//
// Owns: iterlock::detail::snapshot_registry, sweep_range, shard_versions (the chain watch of a snapshot
//       shard's table), chain_tag, chain_version, version_chunk, structure, shard_counters.
// Invariants: a chain, structure or counter labelled L is seen as it is now by snapshot M iff L <= M, else
//       through the version with lo <= M < hi ("Markers and labels" below); a version is freed only after
//       no live snapshot's marker lies in its [lo, hi) and no optimistic reader can still reach it (the
//       sweep, then the retire list); preserved_bytes() counts every version and reserve byte held.
//
// Markers and labels
// ------------------
// The registry keeps `seq`, a counter that only snapshot creation advances: a new snapshot takes marker
// M = seq and publishes seq = M + 1. Every change a shard makes (a logical write, an evacuation step, a
// structure change) happens under the shard's lock and reads seq once per operation (`op_seq`); the change
// labels what it touched with op_seq. Because seq is read inside the critical section, every operation sits
// wholly before or wholly after each snapshot's instant:
//   a chain, a structure or a shard counter labelled L is seen as it is now by snapshot M iff L <= M.
// Before a change with label op_seq overwrites something labelled L < op_seq while a live snapshot has a
// marker in [L, op_seq), the writer copies it (a pre-image valid for markers lo = L <= M < hi = op_seq).
// "Is one live?" is one comparison: every live marker is < seq, so one exists in [L, op_seq) iff the
// largest live marker is >= L, unless that marker is newer than the operation (a snapshot taken while the
// writer held the lock), when the registry's mutex answers exactly. With no snapshot alive the check is one
// relaxed load of `live`.
//
//   chain_tag (in each main bucket's body):  | label (u64) | versions* (newest first) | gen (u32) |
//   chain_version:                            | next | lo | hi | count | dead | chunk | tag | entries |
//
// Reclamation: a pre-image, a preserved structure or counter is needed while a live marker falls in its
// [lo, hi). Each shard keeps its items in logs ordered by hi. When a snapshot ends, the releasing thread
// sweeps the shards that hold preserved items: the ended marker and its live neighbours (sweep_range) say
// which items only it needed, and those lie in one stretch of each log, so a release costs what was made
// between it and the next live snapshot, not everything preserved (a sweep that read every item made
// releasing n snapshots O(n^2)). The sweep works in steps of a bounded number of items under the shard's
// lock, releasing it in between, so a writer waits for one step at most. Sweeps of one map are serialised
// (concurrent_map's sweep mutex, which writers never take); a release from a thread that may hold one of
// the map's shard locks (inside a visit callback) is deferred and run once that thread has let go
// (snapshot_registry::defer). Arrays that growth retired while a snapshot could still read them are freed
// in the same sweep. With no snapshot left the sweep is O(1) under the lock: the shard bumps its version
// generation, which makes every tag's version list read as empty (a tag is trusted only if its gen
// matches), and takes the list of all its versions with it; the versions are destroyed after the lock is
// released, so a writer never waits for thousands of frees.
//
// Exception safety: a writer allocates and copies before it changes anything (preserve, the structure
// hooks); the hooks the table calls from noexcept code use room reserved beforehand.
//
// Reserves: a writer carves its copies from chunks, and a fresh chunk's pages are often fresh too (glibc
// hands the heap top back to the kernel when a sweep frees the chunks, so the next snapshot's copies
// fault page by page, on the writer). A snapshot's creator therefore gives each shard whose writers carved
// since the previous snapshot a reserve chunk sized from that, with its pages already touched; a writer
// that needs a chunk takes the reserve first. A reserve is snapshot memory like the copies: the sweep that
// finds no snapshot alive frees it (S5).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <vector>

#include "iterlock/detail/map/bucket.hpp"
#include "iterlock/detail/map/tophash.hpp"
#include "iterlock/detail/reclaim/epoch.hpp"
#include "iterlock/detail/reclaim/retire_list.hpp"
#include "iterlock/detail/util/atomic_traits.hpp"
#include "iterlock/detail/util/exclusive_add.hpp"
#include "iterlock/detail/util/fence.hpp"
#include "iterlock/detail/util/inline.hpp"
#include "iterlock/detail/util/racy_read.hpp"
#include "iterlock/misuse.hpp"

namespace iterlock::detail {

// Whether some marker in the sorted `live` lies in [lo, hi).
inline bool any_marker_in(const std::vector<std::uint64_t>& live, std::uint64_t lo,
                          std::uint64_t hi) noexcept {
    auto it = std::lower_bound(live.begin(), live.end(), lo);
    return it != live.end() && *it < hi;
}

// What one ended snapshot lets a sweep free, read under the registry's mutex together with the snapshot's
// removal. An item valid for markers [lo, hi) (a chain version, a preserved structure or counters) was
// needed by at least one live marker when it was made, and no marker in [lo, hi) can be created later
// (markers only grow, and hi <= seq). So it becomes unneeded exactly when the last of its markers ends,
// and that release sees the item as
//     m < hi <= above   (no live marker between m and hi)   and   lo >= floor   (none between lo and m),
// where m is the ended marker, `floor` is one past the largest live marker below it (0 if none) and
// `above` the smallest live marker above it (seq if none). Only items with hi in (m, above] need a look:
// each shard keeps its items in order of hi, so a sweep reads that range and nothing else. A concurrent
// release of a neighbour reads the registry after this one and sweeps the merged range itself.
struct sweep_range {
    std::uint64_t m = 0;
    std::uint64_t floor = 0;
    std::uint64_t above = ~std::uint64_t{0};
    bool none_live = true;                  // no snapshot was live after the removal
    std::uint64_t seq = ~std::uint64_t{0};  // seq when it was read
    bool frees(std::uint64_t lo, std::uint64_t hi) const noexcept {
        return hi > m && hi <= above && lo >= floor;
    }
    // Everything (the map's destruction).
    static sweep_range everything() noexcept { return {}; }
};

// The live snapshots of one map. Creation and release take a mutex (they are rare next to writes, and the
// mutex is never held across user code or a shard lock); the writers' question (needed) is lock-free
// unless a snapshot was created during the writer's own operation.
class snapshot_registry {
  public:
    // The marker the next snapshot would get. Writers read it under their shard lock.
    // Acquire: pairs with acquire()'s seq_cst (so release) store of seq: a writer whose op_seq is past a
    // marker sees that snapshot's registration (live_, max_live_) in needed() (checked:
    // memory_model.S1_WriterAfterASnapshotsInstantPreservesWhatItOverwrites; planted as relaxed, it fails).
    std::uint64_t seq() const noexcept { return seq_.load(std::memory_order_acquire); }

    // Whether a live snapshot has a marker in [lo, hi), where hi is the caller's op_seq (so every live marker
    // >= hi is newer than the caller's operation). Exact, so that every preserved item has a snapshot whose
    // release will free it (sweep_range): the lock-free answer stands unless the newest live snapshot was
    // created during the caller's operation; then the mutex decides.
    bool needed(std::uint64_t lo, std::uint64_t hi) const {
        // Acquire: pairs with the stores of acquire() and release(). S1 does not need it (seq()'s acquire
        // already orders acquire()'s stores before this load; the memory-model check passes with relaxed
        // here); it keeps needed() correct for a caller that did not read seq() first.
        if (live_.load(std::memory_order_acquire) == 0) return false;
        // Acquire: as live_ above (pairs with acquire()'s and release()'s stores of max_live_).
        const std::uint64_t newest = max_live_.load(std::memory_order_acquire);
        if (newest < lo) return false;
        if (newest < hi) return true;
        std::lock_guard<sync_mutex> g(mu_);
        return any_marker_in(markers_, lo, hi);
    }
    // Relaxed: a count for statistics, the destructor's misuse check (after every user is gone) and decisions
    // that seq() and needed() confirm under the shard lock (a prefetch hint, the clear and reserve paths,
    // which also consult the shard's own items).
    std::size_t live() const noexcept { return live_.load(std::memory_order_relaxed); }

    // Shards count the chunks they start (see shard_versions::provision): a snapshot's creator looks at the
    // shards only if some were started since the last creator looked, so on a map whose writers copied
    // nothing it costs one load. Writers add under their own shard's lock, rarely (once per chunk).
    // Relaxed: a counter; chunks_started_since_last_look() only decides whether a creator looks at the shards
    // (a stale answer costs a reserve, never correctness).
    void note_chunk_started() noexcept { chunks_started_.fetch_add(1, std::memory_order_relaxed); }
    bool chunks_started_since_last_look() noexcept {
        // Relaxed: as note_chunk_started(); the exchange below makes one looker per change.
        const std::uint64_t n = chunks_started_.load(std::memory_order_relaxed);
        return n != chunks_seen_.load(std::memory_order_relaxed) &&
               chunks_seen_.exchange(n, std::memory_order_relaxed) != n;
    }

    std::uint64_t acquire() {
        std::lock_guard<sync_mutex> g(mu_);
        // Relaxed: only acquire() writes seq_, always under mu_, which orders this load after the previous
        // store.
        const std::uint64_t m = seq_.load(std::memory_order_relaxed);
        // Room for this marker in the deferred list too, so that release() never allocates.
        deferred_.reserve(markers_.size() + deferred_.size() + 1);
        markers_.insert(std::upper_bound(markers_.begin(), markers_.end(), m), m);
        // Relaxed: published by the seq_cst (release) store of seq below, which writers read with acquire
        // (seq()); a writer with an older op_seq does not need this marker.
        max_live_.store(m, std::memory_order_relaxed);
        // Relaxed: as max_live_ above.
        live_.store(markers_.size(), std::memory_order_relaxed);
        seq_.store(m + 1, std::memory_order_seq_cst);  // publishes the registration with the new seq
        return m;
    }
    // Removes marker m and sets `out` to what a sweep may free for it; returns false (out untouched) if
    // m was expired already (expire_oldest released it then). O(live snapshots) under the mutex.
    bool release(std::uint64_t m, sweep_range& out) noexcept {
        std::lock_guard<sync_mutex> g(mu_);
        auto it = std::lower_bound(markers_.begin(), markers_.end(), m);
        if (it == markers_.end() || *it != m) {
            // Relaxed: under mu_, which orders it after expire_oldest()'s store.
            if (m <= expired_through_.load(std::memory_order_relaxed)) return false;
            fatal("iterlock: releasing a snapshot marker that is not live");
        }
        unprotected_remove(it);
        out = unprotected_range(m);
        return true;
    }

    // ---- the snapshot memory budget (concurrent_map.hpp, S7) ------------------------------------
    // Expiry is an early release: the oldest live marker leaves the registry as release() would remove it,
    // and expired_through_ records it, so the snapshot that holds it learns (expired()) that it must not
    // read, and its own release later finds nothing to do. Markers only grow and expiry always takes the
    // smallest live one, so the expired markers of snapshots that still exist are exactly those
    // <= expired_through_ (a smaller live marker cannot exist when a larger one expires).
    static constexpr std::size_t unbounded = ~std::size_t{0};
    // `step`: how many bytes a shard copies between two checks of the total (0: no budget). Relaxed: a
    // setting read by writers that copy and by the enforcement, which reads the bytes itself; a stale value
    // delays an expiry to the next check.
    void set_budget(std::size_t bytes, std::size_t step) noexcept {
        budget_.store(bytes, std::memory_order_relaxed);
        check_step_.store(bytes == unbounded ? 0 : std::max<std::size_t>(step, 1), std::memory_order_relaxed);
    }
    std::size_t budget() const noexcept { return budget_.load(std::memory_order_relaxed); }
    std::size_t check_step() const noexcept { return check_step_.load(std::memory_order_relaxed); }
    // Whether the snapshot with marker m was expired. Seq_cst: pairs with expire_oldest()'s store; a walk
    // reads it after taking the shard's lock (the expiry's sweep has not reached the shard then) or inside
    // an epoch section (the expiry's frees wait for the section).
    bool expired(std::uint64_t m) const noexcept {
        return m <= expired_through_.load(std::memory_order_seq_cst);
    }
    // Expires the oldest live snapshot: removes its marker and sets `out` to its sweep. False if none is
    // live.
    bool expire_oldest(sweep_range& out) noexcept {
        std::lock_guard<sync_mutex> g(mu_);
        if (markers_.empty()) return false;
        const std::uint64_t m = markers_.front();
        // Seq_cst: published before any sweep step of the expiry takes a shard's lock (see expired()).
        expired_through_.store(m, std::memory_order_seq_cst);
        unprotected_remove(markers_.begin());
        out = unprotected_range(m);
        return true;
    }
    // A budget check that could not run where it was due (the sweep mutex was busy, or the thread may hold
    // a shard lock); whoever holds the sweep mutex next runs it. Relaxed: the sweep mutex orders the rest.
    void note_budget_pending() noexcept { budget_pending_.store(true, std::memory_order_relaxed); }
    bool take_budget_pending() noexcept {
        return budget_pending_.load(std::memory_order_relaxed) &&
               budget_pending_.exchange(false, std::memory_order_relaxed);
    }
    bool budget_pending() const noexcept { return budget_pending_.load(std::memory_order_relaxed); }

    // A release whose sweep cannot run now (the releasing thread holds one of the map's shard locks):
    // remembers the ended marker for a later drain. Never allocates (acquire() made room).
    void defer(std::uint64_t m) noexcept {
        std::lock_guard<sync_mutex> g(mu_);
        deferred_.push_back(m);
        // Release: pairs with nothing that needs it today (has_deferred() is relaxed and take_deferred()
        // reads the list under mu_); the list itself is ordered by mu_.
        has_deferred_.store(true, std::memory_order_release);
    }
    // Relaxed: a hint; take_deferred() decides under mu_.
    bool has_deferred() const noexcept { return has_deferred_.load(std::memory_order_relaxed); }
    // Takes one deferred marker and returns its range as of now (still exact: see sweep_range), or false.
    bool take_deferred(sweep_range& out) noexcept {
        std::lock_guard<sync_mutex> g(mu_);
        if (deferred_.empty()) return false;
        const std::uint64_t m = deferred_.back();
        deferred_.pop_back();
        // Relaxed: under mu_, a hint as above.
        has_deferred_.store(!deferred_.empty(), std::memory_order_relaxed);
        out = unprotected_range(m);
        return true;
    }

  private:
    void unprotected_remove(std::vector<std::uint64_t>::iterator it) noexcept {
        markers_.erase(it);
        live_.store(markers_.size(), std::memory_order_seq_cst);
        max_live_.store(markers_.empty() ? 0 : markers_.back(), std::memory_order_seq_cst);
    }
    sweep_range unprotected_range(std::uint64_t m) const noexcept {
        sweep_range r;
        r.m = m;
        // Relaxed: called under mu_, which orders it after acquire()'s store.
        r.seq = seq_.load(std::memory_order_relaxed);
        auto up = std::upper_bound(markers_.begin(), markers_.end(), m);
        r.above = up == markers_.end() ? r.seq : *up;
        r.floor = up == markers_.begin() ? 0 : *std::prev(up) + 1;
        r.none_live = markers_.empty();
        return r;
    }

    // detail::atomic and sync_mutex: std's, or Relacy's in the memory-model checks
    // (detail/util/atomic_traits.hpp).
    atomic<std::uint64_t> seq_{1};  // starts at 1 so that label 0 ("never written") is <= every marker
    atomic<std::size_t> live_{0};
    atomic<std::uint64_t> max_live_{0};
    atomic<bool> has_deferred_{false};
    atomic<std::size_t> check_step_{0};  // see set_budget (beside live_: a copying writer reads both)
    // On their own line: every write reads seq_ and live_, and a chunk's start should not evict them.
    alignas(64) atomic<std::uint64_t> chunks_started_{0};
    atomic<std::uint64_t> chunks_seen_{0};
    atomic<std::size_t> budget_{unbounded};     // bytes (set_budget)
    atomic<std::uint64_t> expired_through_{0};  // the largest expired marker (markers start at 1)
    atomic<bool> budget_pending_{false};
    mutable sync_mutex mu_;
    std::vector<std::uint64_t> markers_;   // sorted
    std::vector<std::uint64_t> deferred_;  // ended markers whose sweep is still to run
};

// The block versions are carved from (see shard_versions::carve). Freed by whoever drops the last reference.
struct version_chunk {
    // While it is a shard's current chunk: 1 + one per version it could hold, less the versions freed;
    // after: the versions carved from it and not yet freed. A reserve (not yet carved from) holds 0.
    std::atomic<std::size_t> refs;
    std::size_t units;  // its size, in allocation units
};

struct chain_tag;

// A preserved copy of one chain's entries, valid for markers lo <= M < hi.
template <class Slot>
struct chain_version {
    chain_version* next;  // the next older version
    std::uint64_t lo;
    std::uint64_t hi;
    std::uint32_t count;
    bool dead = false;               // unlinked by a partial sweep, waiting to be freed
    version_chunk* chunk = nullptr;  // the chunk it was carved from
    chain_tag* tag = nullptr;        // the tag whose list holds it (a sweep unlinks it from there)

    Slot* entries() noexcept {
        return std::launder(reinterpret_cast<Slot*>(reinterpret_cast<unsigned char*>(this) + header_size()));
    }
    static constexpr std::size_t header_size() noexcept {
        return (sizeof(chain_version) + alignof(Slot) - 1) / alignof(Slot) * alignof(Slot);
    }
    static constexpr std::size_t bytes_for(std::size_t n) noexcept {
        return header_size() + n * sizeof(Slot);
    }
};

// The per-chain bookkeeping stored in each main bucket's body (the table's ChainExtra).
struct chain_tag {
    std::uint64_t label = 0;   // op_seq of the last change
    void* versions = nullptr;  // chain_version<Slot>*, newest first; valid only if gen is the shard's
    std::uint32_t gen = 0;     // the shard's version generation when `versions` was set
};

// A shard's structure as a snapshot needs it (Go's buckets, oldbuckets, B, sameSizeGrow). Not hash0:
// concurrent_map's tables never re-seed.
template <class ArrayRef>
struct structure {
    ArrayRef cur;
    ArrayRef old;
    unsigned B = 0;
    bool same_size = false;
};

// A shard's counters as a snapshot needs them.
struct shard_counters {
    std::size_t count = 0;
    std::uint64_t revision = 0;
};

// The ChainWatch of a snapshot-enabled shard: preserves what live snapshots need before the table changes
// it, and reclaims it later. Every member is used under the shard's lock, except preserved_bytes().
template <class Slot, class ArrayRef, class Allocator = std::allocator<Slot>>
class shard_versions {
    using version = chain_version<Slot>;
    // Versions are allocated through the map's allocator, in max_align_t units.
    using unit = std::max_align_t;
    using unit_alloc = typename std::allocator_traits<Allocator>::template rebind_alloc<unit>;
    static_assert(alignof(Slot) <= alignof(unit) && alignof(version) <= alignof(unit));
    static constexpr std::size_t units_for(std::size_t bytes) noexcept {
        return (bytes + sizeof(unit) - 1) / sizeof(unit);
    }

  public:
    shard_versions() = default;
    shard_versions(const shard_versions&) = delete;
    shard_versions& operator=(const shard_versions&) = delete;
    shard_versions& operator=(shard_versions&&) = delete;
    ~shard_versions() { free_all_versions(); }

    void bind(snapshot_registry* r, const Allocator& a) {
        reg_ = r;
        alloc_.emplace(a);
    }
    // Optimistic walks (chain_at_racy) read versions without the shard's lock: then versions that a
    // writer drops under the lock are freed only once no epoch section can still be reading them, and the
    // caller of sweep() waits for the readers before free_garbage() (detail/reclaim/epoch.hpp).
    void enable_deferred_frees(epoch_domain* d) noexcept { limbo_.enable(d); }

    // ---- reserves -------------------------------------------------------------------------------
    // Called by a snapshot's creator, without the shard's lock (see the file comment). Gives the shard a
    // reserve if its writers carved at least a page of copies since the last call and it has none: 5/4 of
    // what they carved, at most max_reserve_units, every page touched here. Call before registering the
    // snapshot (so that the sweep ending the snapshot frees it). Best effort: on allocation failure the
    // writers allocate for themselves, as without a reserve.
    void provision() noexcept {
        // Relaxed (carved_units_, provisioned_at_): only sizes a best-effort reserve; a stale count gives a
        // smaller or later reserve, never a wrong one. The exchange settles which concurrent creator
        // provisions.
        const std::size_t carved = carved_units_.load(std::memory_order_relaxed);
        if (provisioned_at_.load(std::memory_order_relaxed) == carved) return;  // the common case: no RMW
        const std::size_t before = provisioned_at_.exchange(carved, std::memory_order_relaxed);
        if (before >= carved) return;  // nothing carved since, or a concurrent creator read later than this
        const std::size_t since = carved - before;
        // Relaxed: a cheap check; the CAS below decides.
        if (since < page_units || reserve_.load(std::memory_order_relaxed) != nullptr) return;
        const std::size_t units =
            std::min((since + since / 4 + page_units - 1) / page_units * page_units, max_reserve_units);
        unit* raw = nullptr;
        try {
            raw = std::allocator_traits<unit_alloc>::allocate(*alloc_, units);
        } catch (...) {
            return;
        }
        auto* bytes = reinterpret_cast<unsigned char*>(raw);
        for (std::size_t off = 0; off < units * sizeof(unit); off += page_bytes) bytes[off] = 0;
        bytes[units * sizeof(unit) - 1] = 0;  // the last page, if the block does not start on one
        version_chunk* c = ::new (static_cast<void*>(raw)) version_chunk{{0}, units};
        // Counted before it is published, so that whoever takes it (take_reserve) subtracts after.
        reserve_bytes_.fetch_add(units * sizeof(unit), std::memory_order_relaxed);  // relaxed: a statistic
        version_chunk* none = nullptr;
        // Release: pairs with take_reserve()'s acquire exchange; publishes the chunk header and pages written
        // above. Failure relaxed: nothing is read through `none` then.
        if (!reserve_.compare_exchange_strong(none, c, std::memory_order_release,
                                              std::memory_order_relaxed)) {
            reserve_bytes_.fetch_sub(units * sizeof(unit),
                                     std::memory_order_relaxed);  // relaxed: a statistic
            free_chunk(c);                                        // another creator was first
        }
    }
    // Frees the reserve, if any (a creator whose registration failed; the final sweep).
    void drop_reserve() noexcept {
        if (version_chunk* c = take_reserve()) free_chunk(c);
    }
    // Relaxed: a hint (the sweep skips empty shards); the chunk itself is taken by take_reserve()'s acquire
    // exchange.
    bool has_reserve() const noexcept { return reserve_.load(std::memory_order_relaxed) != nullptr; }

    // Starts an operation: reads seq once (see the file comment), then whether any snapshot is alive. With
    // none alive, nothing needs preserving and labels may stay as they are: a label older than the change
    // only makes a later snapshot (marker >= op_seq) treat the chain as unchanged since before its instant,
    // which it is; and a snapshot that becomes live later and then meets a newer change preserves the state
    // it needs then (lo = the stale label: no snapshot between the two was alive to need anything older).
    // Both are stored only when they change: with no snapshot taken they stay the same from write to
    // write, and a store of the same value would still take the line from a core that wrote the shard
    // before (concurrent_map's shard layout).
    void begin_op() noexcept {
        const std::uint64_t seq = reg_->seq();
        const bool quiet = reg_->live() == 0;
        if (op_seq_ != seq) op_seq_ = seq;
        if (quiet_ != quiet) quiet_ = quiet;
    }
    std::uint64_t op_seq() const noexcept { return op_seq_; }
    // begin_op for one operation over several shards (concurrent_map's batch hook): every shard gets the same
    // (seq, quiet), read once (seq first, as begin_op) while all their locks are held, so a snapshot holds
    // all of the operation or none of it.
    void begin_op_at(std::uint64_t seq, bool quiet) noexcept {
        if (op_seq_ != seq) op_seq_ = seq;
        if (quiet_ != quiet) quiet_ = quiet;
    }

    // ---- the table's hooks ----------------------------------------------------------------------
    // Exception safety: every hook that may allocate or copy (preserve, prepare_structure_change,
    // before_counter_change) does so before it changes anything, and the table calls it before it changes
    // the chain or structure it announces; the hooks the table calls from noexcept paths
    // (before_structure_change, retire_block) only use room that prepare_structure_change reserved.
    template <class BucketRef>
    void before_chain_write(const BucketRef& head) {
        if (!quiet_) [[unlikely]]  // no snapshot alive: do not even touch the tag (see begin_op)
            preserve(head);
    }
    template <class BucketRef>
    void before_physical_write(const BucketRef& head) {
        if (!quiet_) [[unlikely]]
            preserve(head);
    }
    template <class BucketRef>
    void chain_initialized(const BucketRef& head) noexcept {
        head.body->extra = chain_tag{op_seq_, nullptr};
    }
    // Called before a growth or rehash allocates: room for this change's record, the record of the growth's
    // end and the array it retires, whether or not a snapshot is alive now (one may be by the end).
    template <class Table>
    void prepare_structure_change(const Table&) {
        reserve_room(struct_hist_, 2);
        reserve_room(retired_, 1);
    }
    template <class Table>
    void before_structure_change(const Table& t) noexcept {
        if (quiet_) return;
        if (struct_label_ < op_seq_ && needed_noexcept(struct_label_)) {
            struct_hist_.push_back({struct_label_, op_seq_, describe(t)});  // room: prepare_structure_change
            max_hi_ = op_seq_;
            add(items_, 1);
        }
        struct_label_ = op_seq_;
    }
    // Arrays that a preserved structure still names are kept until the sweep frees them. An array that no
    // snapshot can reach any more is freed now, and so are the chain versions stored in it (no snapshot
    // can reach those either: it would have to go through a structure naming the array).
    template <class Block>
    bool retire_block(Block* block, std::size_t lines) noexcept {
        if (lines == 0) return false;
        for (const auto& s : struct_hist_) {
            if (!s.dead && (static_cast<const void*>(s.value.cur.ctrl) == static_cast<const void*>(block) ||
                            static_cast<const void*>(s.value.old.ctrl) == static_cast<const void*>(block))) {
                retired_.push_back({static_cast<void*>(block), lines});  // room: prepare_structure_change
                add(items_, 1);
                return true;
            }
        }
        drop_tags_in({static_cast<void*>(block), lines});
        return false;
    }

    // Called by the map before a logical write changes the shard's counters; `now()` reads them, and is
    // called only if they must be preserved (with no snapshot alive, a write reads nothing more).
    template <class CountersNow>
    void before_counter_change(CountersNow&& now) {
        if (quiet_) return;
        if (counters_label_ < op_seq_ && reg_->needed(counters_label_, op_seq_)) {
            counter_hist_.push_back({counters_label_, op_seq_, now()});  // may throw: nothing changed yet
            max_hi_ = op_seq_;
            add(items_, 1);
        }
        counters_label_ = op_seq_;
    }

    // ---- what a snapshot with marker m reads (under the shard's lock) ---------------------------
    template <class Table>
    structure<ArrayRef> structure_at(const Table& t, std::uint64_t m) const {
        if (struct_label_ <= m) return describe(t);
        for (const auto& s : struct_hist_)
            if (!s.dead && s.lo <= m && m < s.hi) return s.value;
        fatal("iterlock: a snapshot's structure was not preserved (internal error)");
    }
    shard_counters counters_at(const shard_counters& now, std::uint64_t m) const {
        if (counters_label_ <= m) return now;
        for (const auto& c : counter_hist_)
            if (!c.dead && c.lo <= m && m < c.hi) return c.value;
        fatal("iterlock: a snapshot's counters were not preserved (internal error)");
    }
    // The preserved version of the chain at head for marker m, or nullptr if the live chain is the one.
    template <class BucketRef>
    version* chain_at(const BucketRef& head, std::uint64_t m) const noexcept {
        const chain_tag& tag = head.body->extra;
        if (tag.label <= m) return nullptr;
        for (version* v = versions_of(tag); v != nullptr; v = v->next)
            if (v->lo <= m && m < v->hi) return v;
        fatal("iterlock: a snapshot's chain was not preserved (internal error)");
    }

    // chain_at for a reader that holds no lock, only an epoch section (concurrent_map's optimistic walk):
    // each field is read once with a relaxed atomic load, and only versions reachable from the tag are read.
    // Sets `out` as chain_at would return it; returns false if what it read is no consistent state (a chain
    // changed after the snapshot with no version for it): the caller's validation fails then anyway.
    template <class BucketRef>
    bool chain_at_racy(const BucketRef& head, std::uint64_t m, const version*& out) const noexcept {
        const chain_tag& tag = head.body->extra;
        out = nullptr;
        if (racy_load_u64(&tag.label) <= m) return true;
        // Relaxed: racy reads as with racy_read.hpp's loads; a stale value makes this return false or is
        // caught by the caller's validation.
        if (__atomic_load_n(&tag.gen, __ATOMIC_RELAXED) != __atomic_load_n(&gen_, __ATOMIC_RELAXED))
            return false;
        const version* v = static_cast<const version*>(racy_load_ptr(&tag.versions));
        for (unsigned hops = 0; v != nullptr && hops < max_racy_versions; ++hops) {
            fence(std::memory_order_acquire);  // pairs with preserve's release fence
            if (racy_load_u64(&v->lo) <= m && m < racy_load_u64(&v->hi)) {
                out = v;
                return true;
            }
            v = racy_load_ptr(&v->next);
        }
        return false;
    }

    // ---- reclamation ----------------------------------------------------------------------------
    // Relaxed: items_ changes under the shard's lock, which clear()/reserve() hold; the sweep only uses it to
    // skip a shard with nothing to free.
    bool has_items() const noexcept { return items_.load(std::memory_order_relaxed) != 0; }
    // Versions dropped under the lock while optimistic readers may exist (drop_tags_in), waiting for them.
    bool reclaim_due() const noexcept { return !limbo_.empty(); }
    void reclaim_deferred(std::uint64_t oldest_reader) noexcept {
        limbo_.reclaim(oldest_reader, [this](version* v) {
            uncount(v);
            free_version(v);
        });
    }
    // The copies' bytes and the reserve's: all the memory this shard holds for snapshots.
    std::size_t preserved_bytes() const noexcept {
        // Relaxed: statistics (a gauge), read without ordering.
        return bytes_.load(std::memory_order_relaxed) + reserve_bytes_.load(std::memory_order_relaxed);
    }

    // Where a sweep of this shard stands between two steps.
    struct sweep_cursor {
        int phase = 0;
        std::size_t pos = 0;
    };
    // One step of the sweep for `r` (see sweep_range): takes out what r frees, examining at most `budget`
    // chain versions, and returns whether the sweep of this shard is complete. Chain versions go to this
    // shard's garbage list (free them with free_garbage() after releasing the lock, once no optimistic
    // reader can still reach them); the rest is freed here. Cost: the items with hi in (r.m, r.above] — the
    // ones made between the ended snapshot and the next live one — plus, when no snapshot is alive, O(1).
    // Requires: the shard's lock, and no other sweep of this shard between the steps (the map serialises
    // its sweeps); the caller may release the lock between steps (writers wait for one step at most).
    template <class Table>
    bool sweep_step(const sweep_range& ended, Table& t, sweep_cursor& c, std::size_t budget) noexcept {
        // With no snapshot alive, everything made before the registry was read goes, whichever release
        // would have freed it.
        const sweep_range r = ended.none_live ? sweep_range{0, 0, ended.seq, true, ended.seq} : ended;
        if (c.phase == 0) {
            if (r.none_live && max_hi_ <= r.seq) {
                // Nothing alive can need any version: O(1) (see the file comment), but for a short list,
                // which is copied out so that the writers keep filling the room they have touched (a fresh
                // list's pages may be fresh too; they would fault on the writer). A long one is handed over.
                const std::size_t live_versions = all_.size() - all_dead_;
                take_all();
                sub(items_, live_versions);  // the versions leave the counts now; free_garbage() only frees
                sub(bytes_, all_bytes_);
                all_bytes_ = 0;
                drop_current_chunk();  // its versions are all garbage now: it goes with the last of them
                drop_reserve();
                ++gen_;
                c.phase = 2;
            } else {
                c.pos = first_after(all_, r.m);
                c.phase = 1;
            }
        }
        if (c.phase == 1) {
            for (; c.pos < all_.size() && all_[c.pos].hi <= r.above; ++c.pos) {
                if (budget-- == 0) return false;
                ++examined_;
                auto& e = all_[c.pos];
                if (e.dead || !r.frees(e.lo, e.hi)) continue;
                version* v = e.value;
                unlink(v);
                v->dead = true;
                e.dead = true;
                ++all_dead_;
                all_bytes_ -= uncount(v);
                to_garbage(v);
            }
            c.phase = 2;
        }
        // Preserved structures and counters (one per snapshot interval that changed them: short).
        const std::size_t structs_freed = sweep_log(struct_hist_, struct_dead_, r);
        sub(items_, structs_freed + sweep_log(counter_hist_, counter_dead_, r));
        if (structs_freed != 0 || (r.none_live && !retired_.empty())) free_unnamed_retired(t);
        compact(all_, all_dead_);
        if (all_.empty()) drop_current_chunk();  // nothing left in it that a snapshot needs
        return true;
    }
    // Destroys the versions the sweeps took out. No lock needed: nothing can reach them any more (the
    // caller waited for optimistic readers). Requires: the map's sweep serialisation (see sweep_step).
    void free_garbage() noexcept {
        for (auto& e : garbage_)
            if (!e.dead) free_version(e.value);
        garbage_.clear();
    }
    bool has_garbage() const noexcept { return !garbage_.empty(); }
    // Chain versions the sweeps of this shard have examined, ever (tests: a release's cost).
    std::size_t examined_by_sweeps() const noexcept { return examined_; }
    // Frees everything (map destruction; or when no snapshot can ever read it again).
    template <class Table>
    void release_all(Table& t) noexcept {
        sweep_cursor c;
        while (!sweep_step(sweep_range::everything(), t, c, ~std::size_t{0})) {
        }
        free_garbage();
    }

  private:
    // An item valid for markers lo <= M < hi; `dead` once a sweep took it out (the logs are compacted
    // when half dead, so that positions stay put between the steps of one sweep).
    template <class T>
    struct dated {
        std::uint64_t lo;
        std::uint64_t hi;
        T value;
        bool dead = false;
    };
    struct retired_block {
        void* block;
        std::size_t lines;
    };
    using version_log = std::vector<dated<version*>>;

    template <class Table>
    static structure<ArrayRef> describe(const Table& t) noexcept {
        return {t.current_array(), t.old_array(), t.bucket_shift(), t.same_size_grow()};
    }
    template <class Vec>
    static void reserve_room(Vec& v, std::size_t more) {
        if (v.capacity() - v.size() < more) v.reserve(v.size() * 2 + more + 8);
    }
    // registry::needed from a noexcept hook: if the exact check cannot take the registry's mutex, the item
    // is kept (a conservative answer: the final sweep frees it).
    bool needed_noexcept(std::uint64_t lo) const noexcept {
        try {
            return reg_->needed(lo, op_seq_);
        } catch (...) {
            return true;
        }
    }

    // Logs are in order of hi (labels are op_seq values, and a shard's op_seq never decreases).
    template <class Log>
    static std::size_t first_after(const Log& log, std::uint64_t m) noexcept {
        return static_cast<std::size_t>(
            std::partition_point(log.begin(), log.end(), [m](const auto& e) { return e.hi <= m; }) -
            log.begin());
    }
    template <class Log>
    static std::size_t sweep_log(Log& log, std::size_t& dead, const sweep_range& r) noexcept {
        std::size_t n = 0;
        for (std::size_t i = first_after(log, r.m); i < log.size() && log[i].hi <= r.above; ++i) {
            if (!log[i].dead && r.frees(log[i].lo, log[i].hi)) {
                log[i].dead = true;
                ++n;
            }
        }
        dead += n;
        compact(log, dead);
        return n;
    }
    template <class Log>
    static void compact(Log& log, std::size_t& dead) noexcept {
        if (dead == log.size()) {
            log.clear();
            dead = 0;
        } else if (dead * 2 > log.size()) {
            std::erase_if(log, [](const auto& e) { return e.dead; });
            dead = 0;
        }
    }
    // Frees the retired arrays that no preserved structure names any more.
    template <class Table>
    void free_unnamed_retired(Table& t) noexcept {
        for (std::size_t i = 0; i < retired_.size();) {
            const void* block = retired_[i].block;
            const bool named = std::any_of(struct_hist_.begin(), struct_hist_.end(), [&](const auto& s) {
                return !s.dead && (static_cast<const void*>(s.value.cur.ctrl) == block ||
                                   static_cast<const void*>(s.value.old.ctrl) == block);
            });
            if (named) {
                ++i;
                continue;
            }
            drop_tags_in(retired_[i]);
            t.free_retired_block(retired_[i].block, retired_[i].lines);
            retired_[i] = retired_.back();
            retired_.pop_back();
            sub(items_, 1);
        }
    }
    // Takes v out of its tag's list. Every version in all_ belongs to the current generation, so the list
    // that holds it is the tag's.
    void unlink(version* v) noexcept {
        void** link = &v->tag->versions;
        while (*link != v) link = reinterpret_cast<void**>(&static_cast<version*>(*link)->next);
        *link = v->next;
    }
    // Hands a version taken out under the lock to the garbage list; without room for it, waits for the
    // optimistic readers and frees it at once (epoch E2: readers never wait for a lock).
    void to_garbage(version* v) noexcept {
        try {
            garbage_.push_back({v->lo, v->hi, v});
        } catch (...) {
            if (limbo_.enabled()) limbo_.wait_for_readers();
            free_version(v);
        }
    }

    template <class BucketRef>
    ITERLOCK_DETAIL_NOINLINE void preserve(const BucketRef& head) {
        chain_tag& tag = head.body->extra;
        if (tag.label >= op_seq_) return;  // already changed since the last snapshot (the steady state)
        if (reg_->needed(tag.label, op_seq_)) {
            // Everything that can throw comes first, while nothing has changed: the room in all_, the
            // memory (carve), the copies. Then the commit, which cannot throw.
            reserve_room(all_, 1);
            version* const older = versions_of(tag);
            std::size_t n = 0;
            for (BucketRef b = head; b; b = b.next()) n += slot_count(match_full(b.top));
            const std::size_t bytes = version::bytes_for(n);
            version_chunk* chunk = nullptr;
            void* raw = carve(bytes, chunk);
            version* v = ::new (raw) version{older, tag.label, op_seq_, 0, false, chunk, &tag};
            try {
                for (BucketRef b = head; b; b = b.next()) {
                    for (slot_mask msk = match_full(b.top); msk != 0; msk &= msk - 1) {
                        ::new (static_cast<void*>(v->entries() + v->count))
                            Slot(*b.slot(static_cast<unsigned>(std::countr_zero(msk))));
                        ++v->count;
                    }
                }
            } catch (...) {
                v->next = nullptr;
                free_version(v);
                throw;
            }
            all_.push_back({v->lo, v->hi, v});  // room reserved above: cannot throw
            fence(std::memory_order_release);   // a racy reader of tag.versions sees *v
            tag.versions = v;
            tag.gen = gen_;
            max_hi_ = op_seq_;
            add(bytes_, bytes);
            add(items_, 1);
            all_bytes_ += bytes;
            // With a budget set (S7), the writer checks the map's total (O(shards)) once its lock is
            // released, each time this shard copied another check step's worth since its last check.
            if (const std::size_t step = reg_->check_step(); step != 0) [[unlikely]] {
                copied_since_check_ += bytes;
                if (copied_since_check_ >= step) {
                    copied_since_check_ = 0;
                    budget_check_ = true;
                }
            }
        }
        tag.label = op_seq_;
    }
    // ---- version memory -------------------------------------------------------------------------
    // Versions are carved from per-shard chunks of chunk_units: a writer's copy costs a pointer bump instead
    // of a malloc, and a sweep returns whole chunks to the allocator (one free per chunk, not per version,
    // so the thread that ends a snapshot does not contend with the writers' own allocations). A chunk is
    // freed by whoever drops its last reference: its versions' frees (any thread: atomic count) and, while
    // it is the chunk being carved, the shard itself (under the lock). A version larger than an eighth of a
    // chunk gets a chunk of its own. With no snapshot left (the O(1) sweep) the shard lets go of its
    // current chunk too, so all of this memory returns when the last snapshot ends (S5).
    static constexpr std::size_t chunk_units = (std::size_t{16} << 10) / sizeof(unit);
    static constexpr std::size_t chunk_head_units = (sizeof(version_chunk) + sizeof(unit) - 1) / sizeof(unit);

    void* carve(std::size_t bytes, version_chunk*& owner) {
        const std::size_t need = units_for(bytes);
        if (need > chunk_units / 8) {
            unit* raw = std::allocator_traits<unit_alloc>::allocate(*alloc_, chunk_head_units + need);
            owner = ::new (static_cast<void*>(raw)) version_chunk{{1}, chunk_head_units + need};
            return raw + chunk_head_units;
        }
        if (cur_chunk_ == nullptr || used_ + need > cur_units_) {
            version_chunk* next = take_reserve();
            if (next == nullptr) {
                unit* raw =
                    std::allocator_traits<unit_alloc>::allocate(*alloc_, chunk_units);  // may throw: first
                next = ::new (static_cast<void*>(raw)) version_chunk{{0}, chunk_units};
            }
            drop_current_chunk();
            // The chunk starts with a reference for every version it could hold plus the shard's own, so
            // carving needs no atomic operation; drop_current_chunk() returns the ones not used.
            // Relaxed: the chunk is this writer's alone (fresh, or taken by take_reserve()'s acquire
            // exchange); other threads reach it only through versions published later with release.
            next->refs.store(1 + next->units, std::memory_order_relaxed);
            cur_chunk_ = next;
            cur_units_ = next->units;
            used_ = chunk_head_units;
            carved_ = 0;
            reg_->note_chunk_started();
        }
        ++carved_;
        add(carved_units_, need);
        owner = cur_chunk_;
        void* p = reinterpret_cast<unit*>(cur_chunk_) + used_;
        used_ += need;
        // The next copies land right after this one: start owning those lines now (versions fill chunks
        // in order, and a fresh chunk's lines are usually cold).
        if (used_ + 8 < cur_units_) {
            __builtin_prefetch(reinterpret_cast<unit*>(cur_chunk_) + used_ + 4, 1);
            __builtin_prefetch(reinterpret_cast<unit*>(cur_chunk_) + used_ + 8, 1);
        }
        return p;
    }

  public:
    // Whether this shard's copies since its last check reached the registry's check step (only with a
    // budget set; see preserve). Requires: the shard's lock. One load of a field on the line every write
    // reads, and a predictable branch.
    bool take_budget_check() noexcept {
        if (!budget_check_) [[likely]]
            return false;
        budget_check_ = false;
        return true;
    }

  private:
    // Reserves: at least a page, at most two chunks' worth.
    static constexpr std::size_t page_bytes = 4096;  // the smallest page of the systems we build for
    static constexpr std::size_t page_units = page_bytes / sizeof(unit);
    static constexpr std::size_t max_reserve_units = 2 * chunk_units;
    static_assert(page_units > chunk_head_units + chunk_units / 8, "a reserve holds any small version");

    // The reserve, now the caller's (nullptr if there is none).
    version_chunk* take_reserve() noexcept {
        // Relaxed: a cheap check; only the exchange below takes the chunk.
        if (reserve_.load(std::memory_order_relaxed) == nullptr) return nullptr;
        version_chunk* c = reserve_.exchange(nullptr, std::memory_order_acquire);  // pairs with provision()
        // Relaxed: a statistic; provision()'s add is ordered before it by reserve_'s release CAS and this
        // acquire.
        if (c != nullptr) reserve_bytes_.fetch_sub(c->units * sizeof(unit), std::memory_order_relaxed);
        return c;
    }
    void free_chunk(version_chunk* c) noexcept {
        const std::size_t units = c->units;
        c->~version_chunk();
        std::allocator_traits<unit_alloc>::deallocate(*alloc_, reinterpret_cast<unit*>(c), units);
    }
    void unref(version_chunk* c, std::size_t n) noexcept {
        // Acq_rel: release so this holder's last use of its versions happens before the free; acquire so the
        // thread that drops the last reference sees every other holder's uses before it frees the chunk.
        if (c->refs.fetch_sub(n, std::memory_order_acq_rel) == n) free_chunk(c);
    }
    void drop_current_chunk() noexcept {
        if (cur_chunk_ != nullptr) {
            version_chunk* c = std::exchange(cur_chunk_, nullptr);
            unref(c, 1 + c->units - carved_);
        }
    }
    // Moves every version of all_ into the garbage list.
    void take_all() noexcept {
        if (garbage_.empty() && all_.size() > max_copied_out) {
            garbage_.swap(all_);
            // Keep the room: the next snapshot's writers will preserve about as many chains again, and
            // regrowing the list from empty would copy it over and over under the lock (write tails).
            try {
                all_.reserve(garbage_.size());
            } catch (...) {  // preserve() reserves again before it needs the room
            }
        } else {
            try {
                garbage_.insert(garbage_.end(), all_.begin(), all_.end());
            } catch (...) {  // no room to hand them over: wait for the readers and free them here
                if (limbo_.enabled()) limbo_.wait_for_readers();
                for (auto& e : all_)
                    if (!e.dead) free_version(e.value);
            }
            all_.clear();
        }
        all_dead_ = 0;
    }
    static constexpr std::size_t max_copied_out = 1024;  // 24 KiB under the lock

    // Takes a version out of items_ and bytes_; returns its bytes. Requires: the shard's lock.
    std::size_t uncount(const version* v) noexcept {
        const std::size_t b = version::bytes_for(v->count);
        sub(items_, 1);
        sub(bytes_, b);
        return b;
    }
    // Destroys and frees a version. The counters are the caller's (they change under the lock only).
    void free_version(version* v) noexcept {
        for (std::uint32_t i = 0; i < v->count; ++i) std::destroy_at(v->entries() + i);
        version_chunk* const chunk = v->chunk;
        v->~version();
        unref(chunk, 1);
    }

    // Frees the versions of tags that live inside a block about to be freed. Marks them dead in all_
    // without compacting it (a sweep between two steps keeps its position).
    void drop_tags_in(const retired_block& r) noexcept {
        const auto* lo = static_cast<const unsigned char*>(r.block);
        const auto* hi = lo + r.lines * 64;
        const std::uint64_t stamp = limbo_.enabled() ? limbo_.stamp() : 0;
        for (auto& e : all_) {
            if (e.dead) continue;
            const auto* p = reinterpret_cast<const unsigned char*>(e.value->tag);
            if (p < lo || p >= hi) continue;
            version* v = e.value;
            v->tag->versions = nullptr;
            v->dead = true;
            e.dead = true;
            ++all_dead_;
            all_bytes_ -= version::bytes_for(v->count);
            limbo_.retire(v, stamp, [this](version* dropped) {  // kept: counted until reclaimed
                uncount(dropped);
                free_version(dropped);
            });
        }
        if (all_dead_ == all_.size()) drop_current_chunk();
    }
    void free_all_versions() noexcept {
        limbo_.free_all([this](version* v) { free_version(v); });
        for (auto& e : all_)
            if (!e.dead) free_version(e.value);
        all_.clear();
        all_dead_ = 0;
        free_garbage();
        drop_current_chunk();
        drop_reserve();
        ++gen_;
    }

    version* versions_of(const chain_tag& tag) const noexcept {
        return tag.gen == gen_ ? static_cast<version*>(tag.versions) : nullptr;
    }

    static constexpr unsigned max_racy_versions = 1u << 16;
    // What every write reads (begin_op, the quiet_ tests, reclaim_due), on one cache line: each line a
    // write touches is one more miss when another core wrote the shard last.
    alignas(64) snapshot_registry* reg_ = nullptr;
    std::uint64_t op_seq_ = 0;
    bool quiet_ = true;                   // no snapshot was alive when the operation began
    bool budget_check_ = false;           // see take_budget_check()
    std::size_t copied_since_check_ = 0;  // bytes preserved since the last budget check (S7)
    retire_list<version*> limbo_;         // dropped versions that optimistic readers may still reach
    version_chunk* cur_chunk_ = nullptr;  // the chunk preserve() carves from
    std::size_t cur_units_ = 0;           // cur_chunk_'s size (its header is a line the copies do not touch)
    std::size_t used_ = 0;                // units of cur_chunk_ in use
    std::size_t carved_ = 0;              // versions carved from cur_chunk_
    std::atomic<version_chunk*> reserve_{nullptr};  // provided by a snapshot's creator
    std::atomic<std::size_t> carved_units_{0};      // units carved from chunks, ever (single writer)
    std::atomic<std::size_t> provisioned_at_{0};    // carved_units_ when a creator last looked
    std::atomic<std::size_t> reserve_bytes_{0};     // the bytes of reserve_
    std::size_t all_bytes_ = 0;                     // bytes of the live versions in all_
    std::optional<unit_alloc>
        alloc_;  // set by bind(); optional because an allocator need not be default-constructible
    std::uint64_t struct_label_ = 0;
    std::uint64_t counters_label_ = 0;
    version_log all_;           // every version of this shard, in order of hi (dead: taken out)
    std::size_t all_dead_ = 0;  // dead entries in all_
    version_log garbage_;       // versions a sweep took out, to be freed by it after the lock
    std::size_t examined_ = 0;  // see examined_by_sweeps()
    std::uint32_t gen_ = 1;     // tags of another generation have no versions (gen 0: never had any)
    std::uint64_t max_hi_ = 0;  // the largest hi of anything preserved so far
    std::vector<dated<structure<ArrayRef>>> struct_hist_;  // in order of hi
    std::size_t struct_dead_ = 0;
    std::vector<dated<shard_counters>> counter_hist_;  // in order of hi
    std::size_t counter_dead_ = 0;
    std::vector<retired_block> retired_;
    // Read from any thread (has_items, preserved_bytes); written only under the shard's lock, so a writer
    // updates them with a load and a store (a locked add here cost more than the chain copy itself).
    std::atomic<std::size_t> items_{0};  // versions + preserved structures/counters + retired blocks
    std::atomic<std::size_t> bytes_{0};  // bytes held by chain versions (in all_ or waiting in limbo_)
    static void add(std::atomic<std::size_t>& c, std::size_t d) noexcept { add_exclusive(c, d); }
    static void sub(std::atomic<std::size_t>& c, std::size_t d) noexcept { add_exclusive(c, 0 - d); }
};

}  // namespace iterlock::detail
