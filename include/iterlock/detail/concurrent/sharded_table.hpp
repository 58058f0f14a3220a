// iterlock/detail/concurrent/sharded_table.hpp: the concurrent tier of concurrent_map — shards, each a
// single-threaded Go table (detail/map/table.hpp) behind its own lock (detail/lock/shard_lock.hpp), and
// the protocols that make them one thread-safe map.
//
// Owns: iterlock::sharded_table (the shard array, the write lock and its upgrade for a guard
//       holder, the four find paths: optimistic inline, optimistic retry, shared lock, visit; the counters
//       a snapshot reads; reclamation of what optimistic readers may still reach; the snapshot sweep),
//       iterlock::default_shard_count.
// Invariants: every write holds its shard's writer lock (or the upgraded iteration lock of the only guard
//       holder, L6) from before the table changes until its counters are published (after_write); a
//       shard's revision and count change only under that lock; a thread inside a callback of this map
//       never waits for one of its shard locks (entry_check), and never runs a sweep (sweep_must_wait).
// The public contract (rules S1-S6, L1-L7, guarantees per call) is concurrent_map.hpp's; this file is the
// mechanism behind it. The walks live beside it: detail/concurrent/snapshot_walk.hpp (snapshot_view) and
// detail/concurrent/locked_walk.hpp (iteration_guard).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <type_traits>
#include <utility>

#include "iterlock/detail/concurrent/snapshot_store.hpp"
#include "iterlock/detail/concurrent/thread_state.hpp"
#include "iterlock/detail/concurrent/write_site.hpp"
#include "iterlock/detail/lock/shard_lock.hpp"
#include "iterlock/detail/map/table.hpp"
#include "iterlock/detail/util/erase_pred.hpp"
#include "iterlock/detail/util/inplace_array.hpp"
#include "iterlock/detail/util/lifetime.hpp"
#include "iterlock/detail/util/random.hpp"
#include "iterlock/detail/util/transparent.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/hash.hpp"
#include "iterlock/iteration_lock.hpp"
#include "iterlock/metrics.hpp"
#include "iterlock/priority.hpp"

namespace iterlock::detail {

struct concurrent_map_test_access;

template <class Table>
class snapshot_walk;
template <class Table>
class locked_walk;

// Default shard count: a power of two, 32 per hardware thread, between 16 and 1024. A writer holding a
// shard sends that shard's finds to their slow path (they wait for it) and queues other writers, so
// fewer collisions pay (docs/BENCHMARKS.md, fourth session, has the A/B runs that chose 32). A shard
// costs 1.5 KiB plus its table.
inline std::size_t default_shard_count() noexcept {
    const std::size_t hw = std::max(1u, std::thread::hardware_concurrency());
    return std::clamp<std::size_t>(std::bit_ceil(hw * 32), 16, 1024);
}

template <class K, class V, class Hash, class KeyEqual, class Allocator, bool Snapshots, bool Metrics>
class sharded_table {
  protected:
    static constexpr bool snapshots = Snapshots;
    static constexpr bool metrics_on = Metrics;
    using shard_stats = std::conditional_t<metrics_on, shard_metrics, no_metrics>;
    using map_stats = std::conditional_t<metrics_on, map_event_metrics, no_metrics>;
    using slot_type = std::pair<const K, V>;
    using extra_type = std::conditional_t<snapshots, chain_tag, no_chain_extra>;
    using array_ref_probe = bucket_array<slot_type, extra_type>;
    using watch_type =
        std::conditional_t<snapshots, shard_versions<slot_type, array_ref_probe, Allocator>, no_chain_watch>;
    using table_type = table<K, V, Hash, KeyEqual, Allocator, extra_type, watch_type>;
    using bucket = typename table_type::bucket;
    static_assert(std::is_same_v<typename table_type::array_ref, array_ref_probe>);
    static constexpr int optimistic_attempts = 4;
    static_assert(!snapshots || (std::is_copy_constructible_v<K> && std::is_copy_constructible_v<V>),
                  "snapshot iteration copies entries: K and V must be copy constructible "
                  "(or choose iterlock::locked_iteration)");

    // Every write changes two lines of its shard: the lock word's, which also holds the shard's revision,
    // entry count and uncontended-write counts (shard_lock::owner_words), and the table's header. When
    // two cores write the same shard in turn, each line changed is a transfer between them, so the
    // counters ride on the line the lock takes anyway, and the chain watch stores only on change.
    struct alignas(64) shard {
        shard_lock lock;
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
    static_assert(shard_lock::owner_word_count >= 4);

  public:
    // Whether finds and snapshot walks read without storing to shared memory (sequence-lock reads; see
    // concurrent_map.hpp, "Optimistic reads", and find_impl): only where a torn copy is harmless bytes —
    // trivially copyable K and V compared by std::equal_to — and not under ThreadSanitizer, which cannot
    // model a sequence lock's racy reads (detail/util/racy_read.hpp).
    static constexpr bool optimistic_reads =
        !ITERLOCK_DETAIL_TSAN && std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V> &&
        (std::is_same_v<KeyEqual, std::equal_to<K>> || std::is_same_v<KeyEqual, std::equal_to<>>);
    static constexpr bool transparent = transparent_v<Hash, KeyEqual>;
    using key_type = K;
    using mapped_type = V;
    using value_type = std::pair<const K, V>;
    using size_type = std::size_t;
    using hasher = Hash;
    using key_equal = KeyEqual;
    using allocator_type = Allocator;

  protected:
    // `shards`: rounded up to a power of two, at most max_shards; 0 picks default_shard_count(). Every
    // table hashes with `seed` and never re-seeds.
    sharded_table(std::size_t shards, std::uint64_t seed, const Hash& h, const KeyEqual& eq,
                  const Allocator& a)
        : shards_(shard_count_for(shards), seed, h, eq, a),
          shard_shift_(shard_shift_for(shards_.size())),
          seed_(seed),
          hash_(h),
          eq_(eq) {
        prepare_process_fences();  // the one-time fence decision here, not in a find or write
        for (shard& sh : shards_) {
            // One hash serves the shard choice and the shard's table (key_hash), so no table may re-seed:
            // Go picks a new hash0 when a map is cleared or empties; a concurrent_map keeps its seed.
            sh.t.set_reseed(false);
            if constexpr (optimistic_reads) {
                sh.t.enable_deferred_frees(&epoch_domain::global());
                if constexpr (snapshots) sh.t.chain_watch().enable_deferred_frees(&epoch_domain::global());
            }
            if constexpr (snapshots) {
                sh.t.chain_watch().bind(&registry_, a);
            }
        }
    }
    sharded_table(const sharded_table&) = delete;
    sharded_table& operator=(const sharded_table&) = delete;
    // Requires: no guard, call or callback of this map is still running (checked: aborts with a message
    // naming what is still alive). Observers holding lifetime_token() stop reading first.
    ~sharded_table() {
        lifetime_.end();
        abort_if_in_use();
        if constexpr (snapshots) {
            if (registry_.live() != 0) fatal("iterlock: concurrent_map destroyed while a snapshot is alive");
            for (shard& s : shards_) s.t.chain_watch().release_all(s.t);
        }
    }

    // ---- lookup ---------------------------------------------------------------------------------
    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> find(const K2& k) const {
        return find_impl(k);
    }
    template <class K2>
    bool contains(const K2& k) const {
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
        const std::shared_lock<shard_lock> held(s.lock);
        visit_scope vs(this);
        const slot_type* e = s.t.find_slot(k, h);
        if (e == nullptr) return false;
        f(e->first, static_cast<const V&>(e->second));
        return true;
    }

    // ---- modifiers ------------------------------------------------------------------------------
    // Each returns true if it inserted a new entry.
    bool insert(const value_type& v) { return try_emplace(v.first, v.second); }
    bool insert(value_type&& v) { return try_emplace(v.first, std::move(v.second)); }

    template <class KArg, class... Args>
    bool try_emplace(KArg&& k, Args&&... args) {
        return write(k, [&](table_type& t, const typename table_type::write_position& pos, std::uint64_t h) {
            if (pos.found) return write_result::unchanged;
            t.emplace_at(pos, h, std::piecewise_construct, std::forward_as_tuple(std::forward<KArg>(k)),
                         std::forward_as_tuple(std::forward<Args>(args)...));
            return write_result::inserted;
        });
    }

    template <class KArg, class M>
    bool insert_or_assign(KArg&& k, M&& v) {
        return write(k, [&](table_type& t, const typename table_type::write_position& pos, std::uint64_t h) {
            if (pos.found) {
                t.assign_at(pos, std::forward<M>(v));
                return write_result::assigned;
            }
            t.emplace_at(pos, h, std::forward<KArg>(k), std::forward<M>(v));
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
            slot_test<K, V, Pred> test{pred};
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
        if (per > max_entries) throw_too_many_entries();
        for (shard& s : shards_) {
            write_lock wl(*this, s);
            if constexpr (snapshots) {
                if (registry_.live() != 0 || s.t.chain_watch().has_items()) continue;
            }
            s.t.reserve(per);
        }
    }

    // ---- observers ------------------------------------------------------------------------------
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
    // The snapshot memory budget (S7): 0 for none (the default).
    std::size_t snapshot_budget() const noexcept {
        const std::size_t b = registry_.budget();
        return b == snapshot_registry::unbounded ? 0 : b;
    }
    // Sets it (0: none). Takes effect at the next check (S7); lowering it below what is preserved now
    // expires snapshots then, not here. Any thread, any time; O(1). Each shard checks the total after
    // copying budget / (2 * shards) bytes, so the copies pass the budget by at most half of it.
    void set_snapshot_budget(std::size_t bytes) noexcept {
        registry_.set_budget(bytes == 0 ? snapshot_registry::unbounded : bytes, bytes / (2 * shards_.size()));
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
            add_events_to(events_, out);
            for (int p = 0; p < 2; ++p) events_.iteration_hold[p].add_to(out.iteration_hold[p]);
            // Relaxed: a statistic.
            out.snapshots_expired = events_.snapshots_expired.load(std::memory_order_relaxed);
        }
        // Empty histograms still carry their bounds, so exporters always print every series.
        for (auto& role : out.lock_wait)
            for (auto& h : role)
                if (h.upper_bounds.empty()) wait_histogram().add_to(h);
        out.entries = size();
        out.revision = revision();
        out.snapshots_active = snapshots_alive();
        out.snapshot_preserved_bytes = preserved_bytes();
        out.snapshot_budget_bytes = snapshot_budget();
        return out;
    }

    // For observers that may outlive the map (iterlock/prometheus.hpp's exposure): a token through which
    // they read the map only while it exists; the destructor waits for a read in progress, and no read
    // starts after it (detail/util/lifetime.hpp, LT1). The first call allocates it; no other call touches it.
    std::shared_ptr<lifetime> lifetime_token() const { return lifetime_.watch(); }

    // ---- iteration: the walks (snapshot_walk.hpp, locked_walk.hpp) ------------------------------
    snapshot_walk<sharded_table> snapshot() const requires snapshots {
        return snapshot_walk<sharded_table>(this, acquire_snapshot());
    }
    locked_walk<sharded_table> lock_for_iteration() requires(!snapshots) {
        return locked_walk<sharded_table>(this, std::nullopt);
    }
    template <class Rep, class Period>
    locked_walk<sharded_table> try_lock_for_iteration(std::chrono::duration<Rep, Period> timeout) requires(
        !snapshots) {
        return locked_walk<sharded_table>(this, std::chrono::steady_clock::now() + timeout);
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
    // before_lock(shard index) (noexcept) runs before the lock is taken, for the layer's own prefetches.
    struct no_before_lock {
        void operator()(std::size_t) const noexcept {}
    };
    template <class K2, class Decide, class Commit, class BeforeLock = no_before_lock>
    site_action detail_write_at(const K2& k, Decide&& decide, Commit&& commit,
                                BeforeLock&& before_lock = BeforeLock{}) {
        const std::uint64_t h = key_hash(k);
        shard& s = shard_for_write(h);
        const std::size_t index = static_cast<std::size_t>(&s - &shards_[0]);
        before_lock(index);
        write_lock wl(*this, s);
        const slot_type* cur = s.t.find_slot(k, h);
        // Relaxed: under the shard's lock, whose holder is the only writer.
        const write_site<V> site{index, s.revision().load(std::memory_order_relaxed),
                                 cur != nullptr ? &cur->second : nullptr};
        site_decision<V> d = decide(site);
        if (d.action == site_action::put) {
            const V& stored = put_locked(s, k, h, std::move(*d.value));
            commit(site, d.action, &stored);
        } else if (d.action == site_action::erase && cur != nullptr) {
            erase_locked(s, k, h);
            commit(site, d.action, static_cast<const V*>(nullptr));
        } else {
            d.action = site_action::none;
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
        friend class sharded_table;
        batch_site(sharded_table& m, const std::vector<std::size_t>& held) : m_(m), held_(held) {}
        shard& held(std::uint64_t h) const {
            shard& s = m_.shard_for(h);
            if (!m_.shard_held(static_cast<std::size_t>(&s - &m_.shards_[0]), held_)) throw_not_held();
            return s;
        }
        [[noreturn]] static void throw_not_held() {
            throw std::logic_error("iterlock: a batch wrote a key outside the set it declared");
        }
        sharded_table& m_;
        const std::vector<std::size_t>& held_;
    };
    template <class F>
    void detail_write_batch(const std::vector<std::size_t>& ids, F&& f) requires snapshots {
        entry_check();
        const callback_exit exit{*this};
        struct locks {
            sharded_table& m;
            std::size_t n = 0;
            const std::vector<std::size_t>& ids;
            ~locks() {
                bool budget_check = false;
                while (n > 0) {
                    shard& s = m.shards_[ids[--n]];
                    if constexpr (optimistic_reads) reclaim(s);
                    budget_check = s.t.chain_watch().take_budget_check() || budget_check;
                    s.lock.unlock();
                }
                if (budget_check) [[unlikely]]
                    m.enforce_budget();  // S7, with every lock of the batch released
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
    snapshot_walk<sharded_table> detail_snapshot_all_locked(F&& f) requires snapshots {
        entry_check();
        drain_deferred();
        if (registry_.chunks_started_since_last_look())
            for (shard& s : shards_) s.t.chain_watch().provision();
        std::optional<snapshot_walk<sharded_table>> view;
        {
            struct locks {
                sharded_table& m;
                std::size_t n = 0;
                ~locks() {
                    while (n > 0) m.shards_[--n].lock.unlock();
                }
            } held{*this};
            for (shard& s : shards_) {
                if (!s.lock.try_lock()) s.lock.lock();
                ++held.n;
            }
            view.emplace(snapshot_walk<sharded_table>(this, registry_.acquire()));
            for (std::size_t i = 0; i < shards_.size(); ++i)
                // Relaxed: under shard i's lock.
                f(i, shards_[i].revision().load(std::memory_order_relaxed));
        }  // the locks go before the view could be released (a release sweeps under shard locks)
        count_event(&map_event_metrics::iterations_started);
        return std::move(*view);
    }

  protected:
    // The hooks' two writes. Requires: s's writer lock (and, for erase_locked, k present). Each is one
    // write as insert_or_assign/erase make it (S1-S6); put_locked returns the stored value.
    template <class K2>
    const V& put_locked(shard& s, const K2& k, std::uint64_t h, V&& v) {
        const auto pos = s.t.prepare_write(k, h);
        before_counter_change(s);
        V* stored = &pos.slot->second;
        if (pos.found) {
            s.t.assign_at(pos, std::move(v));
        } else {
            stored = &s.t.emplace_at(pos, h, k, std::move(v)).slot->second;
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

  protected:
    enum class write_result { unchanged, inserted, assigned };

    // A key's hash, as every shard's table computes it (hash0 = the map's seed; tables never re-seed). Its
    // bits are split three ways: the low B select the table's bucket, the top 8 are the tophash byte, and
    // the shard is chosen by the log2(shards) bits just below those (shard_for).
    template <class K2>
    std::uint64_t key_hash(const K2& k) const {
        return seeded_mix(static_cast<std::uint64_t>(hash_(k)), seed_);
    }
    shard& shard_for(std::uint64_t h) const noexcept {
        return shards_[static_cast<std::size_t>(h >> shard_shift_) & (shards_.size() - 1)];
    }
    // Shards: a power of two, at most max_shards (so a table's bucket bits, under 2^40 buckets, never reach
    // the shard bits).
    static constexpr std::size_t max_shards = std::size_t{1} << 16;
    static std::size_t shard_count_for(std::size_t requested) noexcept {
        return std::bit_ceil(
            std::clamp<std::size_t>(requested == 0 ? default_shard_count() : requested, 1, max_shards));
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
    bool visiting_this() const noexcept { return this_thread_maps().in_visit_of(this); }
    struct visit_scope {
        explicit visit_scope(const void* m) noexcept : frame{m, this_thread_maps().visiting} {
            this_thread_maps().visiting = &frame;
        }
        ~visit_scope() { this_thread_maps().visiting = frame.outer; }
        visit_scope(const visit_scope&) = delete;
        visit_scope& operator=(const visit_scope&) = delete;
        thread_map_state::visit_frame frame;
    };
    // Declared before the lock of a call that runs user code: at the call's end, after the lock is released,
    // sweeps a snapshot that ended inside the callback (release_snapshot).
    struct callback_exit {
        const sharded_table& m;
        ~callback_exit() {
            if constexpr (snapshots) m.after_callback();
        }
    };
    // Whether this thread may hold one of this map's shard locks, or runs its sweep: then a sweep must not
    // start here (it would wait for a lock this thread holds).
    bool sweep_must_wait() const noexcept {
        const thread_map_state& tls = this_thread_maps();
        return tls.sweeping == this || tls.in_visit_of(this);
    }

    // The exclusive access a write needs: the shard's writer lock, or, for the thread that holds the only
    // locked-iteration guard of this map, an upgrade of its iteration lock (L6).
    struct write_lock {
        write_lock(sharded_table& m, shard& s) : m_(m), s_(s) {
            m.entry_check();
            std::chrono::nanoseconds waited{0};
            std::chrono::nanoseconds* wp = metrics_on ? &waited : nullptr;
            if constexpr (!snapshots) {
                if (const int* d = this_thread_maps().depth_for(&m); d != nullptr && *d > 0) {
                    try {
                        s_.lock.upgrade_iteration_to_write(wp);  // lock_error if another iteration is live
                    } catch (const lock_error&) {
                        m.count_misuse();
                        throw;
                    }
                    upgraded_ = true;
                    record(waited);
                    // Relaxed: see shard::iteration_writer; this thread holds the shard exclusively.
                    if (const std::uint64_t me = thread_tag();
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
                add_exclusive(s_.zero_waits(current_priority() == priority::realtime ? 1 : 0), 1);
            }
        }
        ~write_lock() {
            if constexpr (optimistic_reads) reclaim(s_);
            bool budget_check = false;
            if constexpr (snapshots) budget_check = s_.t.chain_watch().take_budget_check();
            if (!snapshots && upgraded_) {  // only locked iteration upgrades (L6)
                s_.lock.downgrade_write_to_iteration();
            } else {
                s_.lock.unlock();
            }
            if (budget_check) [[unlikely]]
                m_.enforce_budget();  // S7: after the write took effect and its lock is released
        }
        write_lock(const write_lock&) = delete;
        write_lock& operator=(const write_lock&) = delete;
        sharded_table& m_;
        shard& s_;
        bool upgraded_ = false;
    };

    void before_counter_change(shard& s) {
        if constexpr (snapshots) {
            s.t.chain_watch().before_counter_change([&s] {
                // Relaxed: under the shard's lock, whose holder is the only writer.
                return shard_counters{s.t.size(), s.revision().load(std::memory_order_relaxed)};
            });
        }
    }
    // Publishes a write's effect on the shard's counters (writes: the shard's lock is held).
    static void after_write(shard& s, std::uint64_t writes) noexcept {
        if (writes != 0) add_exclusive(s.revision(), writes);
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
            // (detail/reclaim/epoch.hpp); the validation keeps the answer only if no writer came in between.
            // This is the fast path, one attempt, inline: over a large map every find waits for a cache
            // miss, and how many finds a core keeps in flight at once depends on how few instructions
            // each one takes (docs/BENCHMARKS.md, fourth session, has the figures).
            // Everything rare is out of line in find_slow: the thread's first find (it claims an epoch
            // record), a writer holding the shard, a failed validation, a call from a visit callback.
            epoch_domain::record* rec = epoch_domain::fast_record();
            std::uint64_t token;
            if (rec != nullptr && s.lock.try_read_begin(token) && !visiting_this()) [[likely]] {
                epoch_domain::enter_fast(*rec);
                bool torn = false;
                const slot_type* hit = s.t.find_racy(k, h, torn);
                // The value as bytes (no V is made before the validation; GCC keeps these in registers
                // where an std::optional went through the stack).
                std::array<unsigned char, sizeof(V)> value{};
                if (hit != nullptr) value = racy_bytes(&hit->second);
                epoch_domain::leave(*rec);
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
        epoch_domain::record& rec = epoch_domain::global().mine();
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
                                                                   const shard& s, epoch_domain::record& rec,
                                                                   bool& torn) const {
        const epoch_domain::section in_section(epoch_domain::global(), rec);
        const slot_type* hit = s.t.find_racy(k, h, torn);
        if (hit == nullptr) return std::nullopt;
        return racy_copy<V>(&hit->second);
    }
    // The find under the shard's lock (shared). Out of line: for optimistic maps it is the rare fallback,
    // and keeping it out of find_impl keeps that small enough to inline into callers.
    template <class K2>
    ITERLOCK_DETAIL_NOINLINE std::optional<V> find_locked(const K2& k, std::uint64_t h, shard& s) const {
        const std::shared_lock<shard_lock> held(s.lock);
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
            const shard_lock_state st = s.lock.state();
            if (st.iterations != 0)
                fatal(
                    "iterlock: concurrent_map destroyed while an iteration guard (lock_for_iteration / "
                    "try_lock_for_iteration) is alive; end every guard before its map");
            if (st.write_held || st.readers != 0)
                fatal(
                    "iterlock: concurrent_map destroyed while a call on it is still running (inside a "
                    "visit/cvisit/update/erase_if callback, or on another thread); a map must outlive every "
                    "call on it");
            if (st.total_waiting() != 0)
                fatal(
                    "iterlock: concurrent_map destroyed while another thread waits for one of its locks; "
                    "a map must outlive every call on it");
        }
    }

    void count_misuse() const noexcept { count_event(&map_event_metrics::misuse_detected); }
    void count_event([[maybe_unused]] std::atomic<std::uint64_t> map_event_metrics::*which) const noexcept {
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
        const std::uint64_t oldest = epoch_domain::global().oldest_reader();
        s.t.reclaim_deferred(oldest);
        if constexpr (snapshots) s.t.chain_watch().reclaim_deferred(oldest);
    }

    // An optimistic walk of another snapshot may still be reading what a sweep unlinked: waits for the
    // epoch sections open now to end (they never wait themselves: epoch E2).
    static void wait_for_open_sections() noexcept {
        epoch_domain& d = epoch_domain::global();
        d.wait_until_safe(d.retire_stamp());
    }

    // Starts a snapshot (S1, S3): registers it and returns its marker. O(1), or O(shards) reserves after
    // writers copied chains since the previous snapshot. lock_error inside a callback of this map.
    std::uint64_t acquire_snapshot() const requires snapshots {
        count_event(&map_event_metrics::iterations_started);
        try {
            entry_check();
        } catch (const lock_error&) {
            count_event(&map_event_metrics::iterations_error);
            throw;
        }
        drain_deferred();  // a snapshot that ended inside a callback whose sweep has not run yet
        // Reserves for the writers' copies (detail/concurrent/snapshot_store.hpp), before registering: the
        // sweep that ends the last snapshot frees them.
        if (registry_.chunks_started_since_last_look())
            for (shard& s : shards_) s.t.chain_watch().provision();
        try {
            return registry_.acquire();
        } catch (...) {  // no snapshot of ours will free them (a live one's writers just lose theirs)
            for (shard& s : shards_) s.t.chain_watch().drop_reserve();
            throw;
        }
    }

    // Ends a snapshot (S5). The sweep runs here unless this thread may hold one of the map's shard locks
    // (it runs inside a callback of this map, or inside this map's sweep); then it is deferred to the end of
    // that callback (after_callback), or to the next snapshot() or release.
    // A snapshot that the budget expired (S7) was released then: its release finds nothing to do.
    // `taken`: when the snapshot was taken (the hold histogram; read only with metrics on).
    void release_snapshot(std::uint64_t marker,
                          [[maybe_unused]] std::chrono::steady_clock::time_point taken) const noexcept {
        count_event(&map_event_metrics::iterations_success);
        if constexpr (metrics_on)
            events_.iteration_hold[priority_index(current_priority())].record_shared(
                std::chrono::steady_clock::now() - taken);
        sweep_range r;
        if (!registry_.release(marker, r)) return;
        if (sweep_must_wait()) {
            registry_.defer(marker);
            return;
        }
        {
            std::lock_guard<std::mutex> g(sweep_mu_);
            sweep(r);
            drain_deferred_locked();
            if (registry_.take_budget_pending()) expire_over_budget_locked();
        }
        if (registry_.budget_pending()) [[unlikely]]
            enforce_budget();
    }

    // ---- the snapshot memory budget (S7) --------------------------------------------------------
    // Brings preserved_bytes() back under the budget by expiring the oldest live snapshots, one at a time,
    // each as an early release (snapshot_registry::expire_oldest) followed by its sweep. Called by a writer
    // whose shard copied a check step's worth (snapshot_store.hpp, preserve), after its lock is released.
    // Never waits for a snapshot or a sweep: if another thread sweeps (the sweep mutex is taken) or this
    // thread may hold a shard lock (sweep_must_wait), the check is left pending for the next holder of the
    // sweep mutex.
    void enforce_budget() const noexcept {
        if constexpr (snapshots) enforce_budget_now();
    }
    void enforce_budget_now() const noexcept requires snapshots {
        for (;;) {
            if (sweep_must_wait()) {
                registry_.note_budget_pending();
                return;
            }
            {
                std::unique_lock<std::mutex> g(sweep_mu_, std::try_to_lock);
                if (!g.owns_lock()) {
                    registry_.note_budget_pending();
                    return;
                }
                registry_.take_budget_pending();
                drain_deferred_locked();
                expire_over_budget_locked();
            }
            // A check noted while this thread held the mutex: its noter gave up on the mutex; run it here.
            if (!registry_.budget_pending()) return;
        }
    }
    // Requires: sweep_mu_.
    void expire_over_budget_locked() const noexcept requires snapshots {
        sweep_range r;
        while (preserved_bytes() > registry_.budget() && registry_.expire_oldest(r)) {
            count_event(&map_event_metrics::snapshots_expired);
            sweep(r);
        }
    }
    // Runs the sweeps that releases deferred, if this thread may (see release_snapshot).
    void drain_deferred() const noexcept {
        if (!registry_.has_deferred() || sweep_must_wait()) return;
        std::lock_guard<std::mutex> g(sweep_mu_);
        drain_deferred_locked();
        if (registry_.take_budget_pending()) expire_over_budget_locked();
    }
    void drain_deferred_locked() const noexcept {
        sweep_range r;
        while (registry_.take_deferred(r)) sweep(r);
    }
    // After a call that ran user code under a shard lock: a snapshot ended in there is swept now.
    void after_callback() const noexcept {
        if (registry_.has_deferred()) [[unlikely]]
            drain_deferred();
        if (registry_.budget_pending()) [[unlikely]]
            enforce_budget();
    }

    // Frees what the ended snapshot (r) alone needed, shard by shard, a bounded step at a time under each
    // shard's lock (writers wait for one step at most); the versions are destroyed after the optimistic
    // readers that might still read them are done. Requires: sweep_mu_.
    void sweep(const sweep_range& r) const noexcept {
        struct sweeping_scope {
            const void* saved = this_thread_maps().sweeping;
            explicit sweeping_scope(const void* m) noexcept { this_thread_maps().sweeping = m; }
            ~sweeping_scope() { this_thread_maps().sweeping = saved; }
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

    inplace_array<shard> shards_;  // contiguous: shard_for is an address computation
    unsigned shard_shift_;
    std::uint64_t seed_;  // every table's hash0
    [[no_unique_address]] Hash hash_;
    [[no_unique_address]] KeyEqual eq_;
    mutable snapshot_registry registry_;
    mutable std::mutex sweep_mu_;  // serialises the sweeps of this map's snapshots (writers never take it)
    [[no_unique_address]] mutable map_stats events_;
    lifetime_anchor lifetime_;  // observers' view of the map's existence (lifetime_token())

    friend struct concurrent_map_test_access;
    friend class snapshot_walk<sharded_table>;
    friend class locked_walk<sharded_table>;
};

}  // namespace iterlock::detail
