// The concurrent peers of iterlock::concurrent_map, each behind one small adapter (`concurrent_peer`),
// so the concurrent workloads (W2, W4, W5i, W5d) are written once.
//
// Every adapter maps uint64 -> uint64 and provides:
//   find(k) -> std::optional<uint64_t>   safe concurrently with every other call
//   insert_or_assign(k, v)                 safe concurrently with every other call
//   erase(k) -> bool                       safe concurrently with every other call
//   for_each_consistent(f)                 one iteration pass, f(key, value) per entry, in the peer's
//                                          own iteration mode (the one a user would pick for a
//                                          consistent walk); what it may see is `guarantee`
//   name, guarantee                        static strings for the tables
//   iteration_safe                         false when a pass concurrent with writers is undefined
//                                          behaviour; the workloads then refuse to run it
// Invariant: an adapter adds only the locking its container needs to meet the first three rules; it
// never adds a lock that changes what an iteration pass may see beyond what `guarantee` says.
// The three operations are ITERLOCK_BENCH_FORWARD (always inlined into the workload's loop), for every
// peer alike: an adapter is a harness seam, and whether the compiler happened to inline it (it did for
// small bodies and not for large ones) must not be part of what is measured.
// The iterlock adapters compile only when <iterlock/concurrent_map.hpp> exists (and
// ITERLOCK_BENCH_SKIP_CONCURRENT_MAP is not defined: a way to measure the peers while that header is
// being edited).
#pragma once

#include <absl/container/flat_hash_map.h>
#include <absl/synchronization/mutex.h>
#include <oneapi/tbb/concurrent_hash_map.h>
#include <oneapi/tbb/concurrent_unordered_map.h>

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <concepts>
#include <cstdint>
#include <libcuckoo/cuckoohash_map.hh>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string_view>
#include <thread>
#include <unordered_map>

#if __has_include(<iterlock/guarded.hpp>)
#include <iterlock/guarded.hpp>
#define ITERLOCK_BENCH_HAVE_GUARDED 1
#else
#define ITERLOCK_BENCH_HAVE_GUARDED 0
#endif

#if __has_include(<iterlock/concurrent_map.hpp>) && !defined(ITERLOCK_BENCH_SKIP_CONCURRENT_MAP)
#include <iterlock/concurrent_map.hpp>
#include <iterlock/versioned_map.hpp>
#define ITERLOCK_BENCH_HAVE_CONCURRENT_MAP 1
#else
#define ITERLOCK_BENCH_HAVE_CONCURRENT_MAP 0
#endif

#define ITERLOCK_BENCH_FORWARD [[gnu::always_inline]] inline

namespace iterlock::bench {

// An iteration visitor for the concept check below.
struct visit_nothing {
    void operator()(std::uint64_t, std::uint64_t) const noexcept {}
};

template <class P>
concept concurrent_peer = std::default_initializable<P> &&
    requires(P& p, std::uint64_t k, std::uint64_t v, visit_nothing f) {
    { P::name } -> std::convertible_to<std::string_view>;
    { P::guarantee } -> std::convertible_to<std::string_view>;
    { P::iteration_safe } -> std::convertible_to<bool>;
    { p.find(k) } -> std::same_as<std::optional<std::uint64_t>>;
    p.insert_or_assign(k, v);
    { p.erase(k) } -> std::convertible_to<bool>;
    p.for_each_consistent(f);
};

// ----- one map behind one reader/writer lock ------------------------------------------------------

// Map behind a std::shared_mutex: finds and passes take it shared, writes exclusive. A pass holds the
// shared lock throughout, so it is consistent and every writer waits for it (glibc's rwlock prefers
// readers: back-to-back passes can starve the writer).
template <class Map>
class shared_mutex_peer {
  public:
    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const {
        std::shared_lock lock(mu_);
        auto it = map_.find(k);
        if (it == map_.end()) return std::nullopt;
        return it->second;
    }
    ITERLOCK_BENCH_FORWARD void insert_or_assign(std::uint64_t k, std::uint64_t v) {
        std::unique_lock lock(mu_);
        map_.insert_or_assign(k, v);
    }
    ITERLOCK_BENCH_FORWARD bool erase(std::uint64_t k) {
        std::unique_lock lock(mu_);
        return map_.erase(k) != 0;
    }
    template <class F>
    void for_each_consistent(F&& f) const {
        std::shared_lock lock(mu_);
        for (const auto& kv : map_) f(kv.first, kv.second);
    }
    static constexpr bool iteration_safe = true;
    static constexpr std::string_view guarantee = "consistent; blocks writers for the whole pass";

  private:
    mutable std::shared_mutex mu_;
    Map map_;
};

struct std_shared_mutex_peer : shared_mutex_peer<std::unordered_map<std::uint64_t, std::uint64_t>> {
    static constexpr std::string_view name = "std_shared_mutex";
};

struct boost_shared_mutex_peer : shared_mutex_peer<boost::unordered_flat_map<std::uint64_t, std::uint64_t>> {
    static constexpr std::string_view name = "boost_shared_mutex";
};

// absl::flat_hash_map behind an absl::Mutex: reader lock for finds and passes, writer lock for writes.
class absl_mutex_peer {
  public:
    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const {
        absl::ReaderMutexLock lock(&mu_);
        auto it = map_.find(k);
        if (it == map_.end()) return std::nullopt;
        return it->second;
    }
    ITERLOCK_BENCH_FORWARD void insert_or_assign(std::uint64_t k, std::uint64_t v) {
        absl::MutexLock lock(&mu_);
        map_.insert_or_assign(k, v);
    }
    ITERLOCK_BENCH_FORWARD bool erase(std::uint64_t k) {
        absl::MutexLock lock(&mu_);
        return map_.erase(k) != 0;
    }
    template <class F>
    void for_each_consistent(F&& f) const {
        absl::ReaderMutexLock lock(&mu_);
        for (const auto& kv : map_) f(kv.first, kv.second);
    }
    static constexpr std::string_view name = "absl_mutex";
    static constexpr bool iteration_safe = true;
    static constexpr std::string_view guarantee = "consistent; blocks writers for the whole pass";

  private:
    mutable absl::Mutex mu_;
    absl::flat_hash_map<std::uint64_t, std::uint64_t> map_;
};

// ----- concurrent containers ----------------------------------------------------------------------

// tbb::concurrent_hash_map: element accessors make find/insert/erase safe together, but TBB documents
// traversal as unsafe while other threads insert or erase. A pass is offered for quiescent use only.
class tbb_hash_map_peer {
  public:
    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const {
        map_type::const_accessor a;
        if (!map_.find(a, k)) return std::nullopt;
        return a->second;
    }
    ITERLOCK_BENCH_FORWARD void insert_or_assign(std::uint64_t k, std::uint64_t v) {
        map_type::accessor a;  // write-locks the element until it goes out of scope
        map_.insert(a, k);
        a->second = v;
    }
    ITERLOCK_BENCH_FORWARD bool erase(std::uint64_t k) { return map_.erase(k); }
    // Requires: no concurrent insert or erase.
    template <class F>
    void for_each_consistent(F&& f) const {
        for (const auto& kv : map_) f(kv.first, kv.second);
    }
    static constexpr std::string_view name = "tbb_concurrent_hash_map";
    static constexpr bool iteration_safe = false;
    static constexpr std::string_view guarantee =
        "unsafe: traversal during insert/erase is undefined (W4, W5 not run)";

  private:
    using map_type = tbb::concurrent_hash_map<std::uint64_t, std::uint64_t>;
    map_type map_;
};

// tbb::concurrent_unordered_map: insert, find and traversal are safe together, erase is not
// (unsafe_erase). So finds, inserts and passes share a std::shared_mutex and erases take it
// exclusively. Values are atomics so that an assignment racing a find is not a data race. A pass sees
// every entry present throughout it and some of those inserted during it: not a snapshot.
class tbb_unordered_map_peer {
  public:
    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const {
        std::shared_lock lock(erase_mu_);
        auto it = map_.find(k);
        if (it == map_.end()) return std::nullopt;
        return it->second.load(std::memory_order_relaxed);
    }
    ITERLOCK_BENCH_FORWARD void insert_or_assign(std::uint64_t k, std::uint64_t v) {
        std::shared_lock lock(erase_mu_);
        auto [it, inserted] = map_.emplace(k, v);
        if (!inserted) it->second.store(v, std::memory_order_relaxed);
    }
    ITERLOCK_BENCH_FORWARD bool erase(std::uint64_t k) {
        std::unique_lock lock(erase_mu_);
        return map_.unsafe_erase(k) != 0;
    }
    template <class F>
    void for_each_consistent(F&& f) const {
        std::shared_lock lock(erase_mu_);
        for (const auto& kv : map_) f(kv.first, kv.second.load(std::memory_order_relaxed));
    }
    static constexpr std::string_view name = "tbb_concurrent_unordered_map";
    static constexpr bool iteration_safe = true;
    static constexpr std::string_view guarantee =
        "not a snapshot: sees some concurrent inserts; erases wait (unsafe_erase behind a shared_mutex)";

  private:
    mutable std::shared_mutex erase_mu_;
    tbb::concurrent_unordered_map<std::uint64_t, std::atomic<std::uint64_t>> map_;
};

// libcuckoo: fine-grained bucket locks for single-key calls; lock_table() takes every bucket lock, so
// a pass is consistent and blocks all writers until it ends.
class libcuckoo_peer {
  public:
    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const {
        std::uint64_t v;
        if (!map_.find(k, v)) return std::nullopt;
        return v;
    }
    ITERLOCK_BENCH_FORWARD void insert_or_assign(std::uint64_t k, std::uint64_t v) {
        map_.insert_or_assign(k, v);
    }
    ITERLOCK_BENCH_FORWARD bool erase(std::uint64_t k) { return map_.erase(k); }
    template <class F>
    void for_each_consistent(F&& f) {
        auto table = map_.lock_table();
        for (const auto& kv : table) f(kv.first, kv.second);
    }
    static constexpr std::string_view name = "libcuckoo";
    static constexpr bool iteration_safe = true;
    static constexpr std::string_view guarantee =
        "consistent; lock_table() blocks writers for the whole pass";

  private:
    libcuckoo::cuckoohash_map<std::uint64_t, std::uint64_t> map_;
};

// ----- the hand-written floor -----------------------------------------------------------------------

// A test-and-test-and-set spinlock: spins on a plain load, with `pause`, and yields after a while so a
// preempted holder on an oversubscribed machine gets the core back.
class ttas_spinlock {
  public:
    void lock() noexcept {
        for (;;) {
            if (!locked_.exchange(true, std::memory_order_acquire)) return;
            for (int spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
                if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
                    __builtin_ia32_pause();
#endif
                } else {
                    std::this_thread::yield();
                }
            }
        }
    }
    void unlock() noexcept {
        locked_.store(false, std::memory_order_release);
    }

  private:
    std::atomic<bool> locked_{false};
};

// What a user would write by hand in an afternoon: 256 cache-line-aligned shards, each a
// boost::unordered_flat_map behind a TTAS spinlock; a pass walks the shards one by one, each under its
// own lock. Writers to other shards proceed meanwhile, so a pass is not a snapshot.
class sharded_spinlock_peer {
  public:
    static constexpr std::size_t shard_count = 256;

    sharded_spinlock_peer() : shards_(std::make_unique<shard[]>(shard_count)) {}

    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const {
        shard& s = shard_of(k);
        std::lock_guard lock(s.lock);
        auto it = s.map.find(k);
        if (it == s.map.end()) return std::nullopt;
        return it->second;
    }
    ITERLOCK_BENCH_FORWARD void insert_or_assign(std::uint64_t k, std::uint64_t v) {
        shard& s = shard_of(k);
        std::lock_guard lock(s.lock);
        s.map.insert_or_assign(k, v);
    }
    ITERLOCK_BENCH_FORWARD bool erase(std::uint64_t k) {
        shard& s = shard_of(k);
        std::lock_guard lock(s.lock);
        return s.map.erase(k) != 0;
    }
    template <class F>
    void for_each_consistent(F&& f) const {
        for (std::size_t i = 0; i < shard_count; ++i) {
            shard& s = shards_[i];
            std::lock_guard lock(s.lock);
            for (const auto& kv : s.map) f(kv.first, kv.second);
        }
    }
    static constexpr std::string_view name = "sharded_spinlock";
    static constexpr bool iteration_safe = true;
    static constexpr std::string_view guarantee = "not a snapshot: shard by shard, each shard's writers wait";

  private:
    struct alignas(64) shard {
        ttas_spinlock lock;
        boost::unordered_flat_map<std::uint64_t, std::uint64_t> map;
    };
    // Fibonacci hashing on the top 8 bits; the shard's own map hashes the key again for its slot.
    shard& shard_of(std::uint64_t k) const noexcept { return shards_[(k * 0x9e3779b97f4a7c15ULL) >> 56]; }

    std::unique_ptr<shard[]> shards_;
};

// ----- iterlock ---------------------------------------------------------------------------------------

// The writes every iterlock adapter forwards unchanged (the containers are safe to call concurrently on
// their own); the adapter adds find (its container's lookup) and its own iteration pass over map_.
template <class Map>
class iterlock_forwarding_peer {
  public:
    iterlock_forwarding_peer() = default;
    template <class... Args>
    explicit iterlock_forwarding_peer(Args... args) : map_(args...) {}

    ITERLOCK_BENCH_FORWARD void insert_or_assign(std::uint64_t k, std::uint64_t v) {
        map_.insert_or_assign(k, v);
    }
    ITERLOCK_BENCH_FORWARD bool erase(std::uint64_t k) { return map_.erase(k) != 0; }

  protected:
    Map map_;
};

#if ITERLOCK_BENCH_HAVE_CONCURRENT_MAP
// iterlock::concurrent_map with its default (snapshot) iteration: a pass walks a snapshot. The template
// parameter switches the map's metrics on (the default) or off, to measure what they cost.
template <bool Metrics>
using iterlock_snapshot_map_t =
    iterlock::concurrent_map<std::uint64_t, std::uint64_t, iterlock::hash<std::uint64_t>,
                             std::equal_to<std::uint64_t>,
                             std::allocator<std::pair<const std::uint64_t, std::uint64_t>>,
                             iterlock::map_options<iterlock::iteration_policy::snapshot, Metrics>>;

template <bool Metrics>
class iterlock_snapshot_peer_t : public iterlock_forwarding_peer<iterlock_snapshot_map_t<Metrics>> {
  public:
    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const {
        return this->map_.find(k);
    }
    template <class F>
    void for_each_consistent(F&& f) {
        auto snap = this->map_.snapshot();
        for (const auto& [k, v] : snap) f(k, v);
    }
    static constexpr std::string_view name = Metrics ? "iterlock_snapshot" : "iterlock_snapshot_nometrics";
    static constexpr bool iteration_safe = true;
    static constexpr std::string_view guarantee = Metrics
                                                      ? "snapshot: one instant, writers never wait (S1-S3)"
                                                      : "as iterlock_snapshot, metrics compiled out";
};
using iterlock_snapshot_peer = iterlock_snapshot_peer_t<true>;
using iterlock_snapshot_nometrics_peer = iterlock_snapshot_peer_t<false>;

// iterlock::versioned_map (issue 16): the snapshot map with a revision per entry; History events kept per
// shard for watches from an earlier snapshot (0: versions only, no event is made without a watcher).
template <std::size_t History>
class iterlock_versioned_peer_t
    : public iterlock_forwarding_peer<iterlock::versioned_map<std::uint64_t, std::uint64_t>> {
  public:
    iterlock_versioned_peer_t()
        : iterlock_forwarding_peer<iterlock::versioned_map<std::uint64_t, std::uint64_t>>(0, History) {}
    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const {
        return this->map_.find(k);
    }
    template <class F>
    void for_each_consistent(F&& f) {
        auto snap = this->map_.snapshot();
        for (const auto& [k, vv] : snap) f(k, vv.value);
    }
    static constexpr std::string_view name =
        History == 0 ? "iterlock_versioned" : "iterlock_versioned_history";
    static constexpr bool iteration_safe = true;
    static constexpr std::string_view guarantee =
        History == 0 ? "snapshot (S1-S3) with per-key revisions (V1)"
                     : "as iterlock_versioned, 256 events of history per shard (V2)";
};
using iterlock_versioned_peer = iterlock_versioned_peer_t<0>;
using iterlock_versioned_history_peer = iterlock_versioned_peer_t<256>;

// iterlock::concurrent_map with locked iteration: a pass runs under the iteration lock.
class iterlock_locked_peer
    : public iterlock_forwarding_peer<iterlock::locked_concurrent_map<std::uint64_t, std::uint64_t>> {
  public:
    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const { return map_.find(k); }
    template <class F>
    void for_each_consistent(F&& f) {
        auto guard = map_.lock_for_iteration();
        for (auto& [k, v] : guard) f(k, v);
    }
    static constexpr std::string_view name = "iterlock_locked";
    static constexpr bool iteration_safe = true;
    static constexpr std::string_view guarantee =
        "consistent: writers wait for the guard; waiting writers block new guards (L1, L3)";
};
#endif

#if ITERLOCK_BENCH_HAVE_GUARDED
// iterlock::guarded<boost::unordered_flat_map>: the same map as boost_shared_mutex behind the iteration lock
// (finds shared, writes exclusive, a pass under a guard; issue 15).
class guarded_boost_flat_peer
    : public iterlock_forwarding_peer<
          iterlock::guarded<boost::unordered_flat_map<std::uint64_t, std::uint64_t>, false>> {
  public:
    ITERLOCK_BENCH_FORWARD std::optional<std::uint64_t> find(std::uint64_t k) const { return map_.get(k); }
    template <class F>
    void for_each_consistent(F&& f) {
        auto guard = map_.lock_for_iteration();
        for (const auto& [k, v] : guard) f(k, v);
    }
    static constexpr std::string_view name = "guarded_boost_flat";
    static constexpr bool iteration_safe = true;
    static constexpr std::string_view guarantee =
        "consistent: writers wait for the guard; waiting writers block new guards; finds never wait for it";
};
#endif

// The peers in display order; the iterlock ones are listed even when absent (they run as "pending").
template <class... Peers>
struct peer_list {};

using available_peers = peer_list<
#if ITERLOCK_BENCH_HAVE_CONCURRENT_MAP
    iterlock_snapshot_peer, iterlock_locked_peer, iterlock_snapshot_nometrics_peer, iterlock_versioned_peer,
    iterlock_versioned_history_peer,
#endif
#if ITERLOCK_BENCH_HAVE_GUARDED
    guarded_boost_flat_peer,
#endif
    std_shared_mutex_peer, absl_mutex_peer, boost_shared_mutex_peer, tbb_hash_map_peer,
    tbb_unordered_map_peer, libcuckoo_peer, sharded_spinlock_peer>;

inline constexpr std::string_view iterlock_peer_names[] = {
    "iterlock_snapshot", "iterlock_locked", "iterlock_snapshot_nometrics", "iterlock_versioned",
    "iterlock_versioned_history"};

}  // namespace iterlock::bench
