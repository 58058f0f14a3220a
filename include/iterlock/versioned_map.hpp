// iterlock/versioned_map.hpp: iterlock::versioned_map, a concurrent_map whose entries carry revisions, with
// conditional writes and change feeds (list-then-watch with no gap) in one process.
//
// Owns: iterlock::versioned_map, iterlock::versioned, iterlock::conditional_result.
// Invariants: rules V1-V5 below; every write is numbered and handed to the watchers inside its own
//       critical section (under the shard locks it holds), so feeds and snapshots agree.
//
// It is a concurrent_map<K, versioned<V>> (snapshot iteration: S1-S6 hold as stated in concurrent_map.hpp)
// that numbers every write inside the write's critical section and hands it to the watchers there. Only
// the writes below exist (no visit/update/erase_if: a callback could change a value without a number).
// Every write publishes under the shard locks it holds, so feeds and snapshots agree on what happened.
//
// Revisions
// ---------
// Each shard counts its successful writes (concurrent_map S6). A write that makes its shard's count n gets
// the revision n * shard_count() + shard index: unique in the map, computed from a counter the shard's
// lock holder owns anyway, so no write touches a map-wide counter (a map-wide atomic would be one line
// that every writer core takes in turn). Revisions of keys in different shards say nothing about which
// write came first; a key's revisions do.
//
//   V1  A key's revision grows with every write of it (put or erase), so the sequence write A, write B,
//       write A again leaves a revision different from the first A's, and a compare_and_set holding the
//       first A's revision fails (the A-B-A problem). 0 means "absent"; a present key's revision is never 0.
//       find_versioned, a snapshot's find_versioned and a snapshot walk (versioned<V>::revision) show it.
//   V2  A feed started from a snapshot (watch(s)) or from a cursor delivers every write that took effect
//       after it exactly once, and none before it: "snapshot + feed replayed" equals the map at any later
//       quiet instant. Writes to one key arrive in the order they took effect (they share a shard and its
//       lock); writes to keys of different shards may arrive in any order.
//   V3  Writers never wait for a watcher. With feed_delivery::push (the default) an event is handed over
//       with a non-blocking try_send under the shard's lock, and a watcher whose channel is full is cut
//       off. With feed_delivery::pull the writer only keeps the event in the shard's history and the
//       feed's receivers copy it out themselves; a watcher is cut off when a write overwrites an event it
//       has not taken. A cut-off watcher's channel closes after the events already in it, and reason()
//       says feed_end::lagging. It recovers from its cursor (if the history still holds the writes since)
//       or by listing again. Memory is bounded: per watcher its channel's capacity, per shard its history
//       (history_per_shard events).
//   V4  A conditional write (compare_and_set, erase_if_unchanged, try_emplace) decides and writes under
//       the key's shard lock: it is one linearizable write, and its result gives the key's revision at
//       that point (the new one if it wrote).
//   V5  A batch (write_batch over a declared set of keys, and clear()) is one write: every snapshot holds
//       all of it or none of it, a find after it returns sees all of it, and each watcher receives its
//       events in order, numbered by more_in_batch. Its shards are locked in one global order (ascending
//       shard index), so overlapping batches never deadlock. A key outside the declared set throws
//       std::logic_error; a callback that throws writes nothing.
//
// Costs: a write pays what a concurrent_map write pays, plus 8 bytes per entry, plus, while history is kept
// or a watcher exists, one copy of the key and value into the shard's history and, per watcher of the
// shard, one try_send (push) or one test of whether its receiver sleeps (pull) (docs/DESIGN.md, "Versions
// and change feeds", has the measurements). watch() costs
// O(shards) shard locks plus the replay; destroying a feed O(shards) shard locks.
// Exception safety: a write that throws (hash, equality, allocation, copies) changes nothing and publishes
// nothing. Making an event never fails a write: a copy that throws empties the shard's history and ends
// its watchers with feed_end::failed.
// The map must outlive its snapshots and feeds (destroying it with either alive aborts with a message).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/detail/concurrent/feed.hpp"
#include "iterlock/detail/concurrent/write_site.hpp"
#include "iterlock/feed.hpp"

namespace iterlock {

// A value with the revision of the write that stored it (V1).
template <class V>
struct versioned {
    V value;
    std::uint64_t revision;
    friend bool operator==(const versioned&, const versioned&) = default;
};

// What a conditional write did: whether it wrote (or its condition held), and the key's revision after
// the call (0: absent).
struct conditional_result {
    bool succeeded;
    std::uint64_t revision;
    explicit operator bool() const noexcept { return succeeded; }
};

template <class K, class V, class Hash = hash<K>, class KeyEqual = std::equal_to<K>,
          class Allocator = std::allocator<std::pair<const K, versioned<V>>>>
class versioned_map final : private detail::feed_source<change<K, V>> {
    using inner_type = concurrent_map<K, versioned<V>, Hash, KeyEqual, Allocator, snapshot_iteration>;
    using change_type = change<K, V>;
    using site = detail::write_site<versioned<V>>;
    using decision = detail::site_decision<versioned<V>>;

  public:
    using key_type = K;
    using mapped_type = V;
    using size_type = std::size_t;
    using feed_type = feed<K, V>;
    static constexpr std::size_t default_history_per_shard = 256;
    static constexpr std::size_t default_feed_capacity = 4096;
    class snapshot_view;

    // `shards` as for concurrent_map (0: the default count). `history_per_shard`: how many recent events
    // each shard keeps for watches that start from an earlier snapshot or cursor (0: none; then a watch
    // succeeds only from the present).
    explicit versioned_map(std::size_t shards = 0, std::size_t history_per_shard = default_history_per_shard)
        : inner_(shards),
          shift_(static_cast<unsigned>(std::countr_zero(inner_.shard_count()))),
          feeds_(std::make_unique<shard_feed[]>(inner_.shard_count())),
          marks_(inner_.shard_count()) {
        for (std::size_t i = 0; i < inner_.shard_count(); ++i)
            feeds_[i].set_history(history_per_shard, i, marks_[i]);
    }
    versioned_map(const versioned_map&) = delete;
    versioned_map& operator=(const versioned_map&) = delete;
    ~versioned_map() {
        if (feeds_alive_.load(std::memory_order_acquire) != 0)
            detail::fatal(
                "iterlock: versioned_map destroyed while a feed is alive; end every feed before its map");
    }

    // ---- lookup (as concurrent_map::find: a linearizable copy, never waits for iterations) -------------
    ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> find(const K& k) const {
        auto r = inner_.find(k);
        if (!r) return std::nullopt;
        return std::move(r->value);
    }
    // The value with its revision (V1), or nullopt.
    ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<versioned<V>> find_versioned(const K& k) const {
        return inner_.find(k);
    }
    bool contains(const K& k) const { return inner_.contains(k); }

    // ---- writes (each one write: S1-S6, V1-V4) ---------------------------------------------------------
    // Stores v under k. Returns the new revision.
    template <class M>
    std::uint64_t insert_or_assign(const K& k, M&& v) {
        std::uint64_t rev = 0;
        write_at(k, [&](const site& st) {
            rev = next_revision(st);
            return decision{detail::site_action::put, versioned<V>{V(std::forward<M>(v)), rev}};
        });
        return rev;
    }
    // Inserts if absent. succeeded: inserted; revision: the key's revision after the call.
    template <class M>
    conditional_result try_emplace(const K& k, M&& v) {
        conditional_result out{false, 0};
        write_at(k, [&](const site& st) {
            if (st.current != nullptr) {
                out = {false, st.current->revision};
                return decision{};
            }
            out = {true, next_revision(st)};
            return decision{detail::site_action::put, versioned<V>{V(std::forward<M>(v)), out.revision}};
        });
        return out;
    }
    // Stores v only if k's revision is `expected` (0: only if k is absent). V4.
    template <class M>
    conditional_result compare_and_set(const K& k, std::uint64_t expected, M&& v) {
        conditional_result out{false, 0};
        write_at(k, [&](const site& st) {
            const std::uint64_t cur = st.current != nullptr ? st.current->revision : 0;
            if (cur != expected) {
                out = {false, cur};
                return decision{};
            }
            out = {true, next_revision(st)};
            return decision{detail::site_action::put, versioned<V>{V(std::forward<M>(v)), out.revision}};
        });
        return out;
    }
    // Erases k only if its revision is `expected`. With expected 0 it succeeds, writing nothing, if k is
    // absent. On success the revision is 0 (absent). V4.
    conditional_result erase_if_unchanged(const K& k, std::uint64_t expected) {
        conditional_result out{false, 0};
        write_at(k, [&](const site& st) {
            const std::uint64_t cur = st.current != nullptr ? st.current->revision : 0;
            out = {cur == expected, cur == expected ? 0 : cur};
            return decision{
                cur == expected && cur != 0 ? detail::site_action::erase : detail::site_action::none,
                std::nullopt};
        });
        return out;
    }
    // Removes k. Returns the number of entries removed (0 or 1).
    size_type erase(const K& k) {
        return write_at(k,
                        [](const site& st) {
                            return decision{st.current != nullptr ? detail::site_action::erase
                                                                  : detail::site_action::none,
                                            std::nullopt};
                        }) == detail::site_action::erase
                   ? 1
                   : 0;
    }

    // ---- atomic multi-key writes (V5) -------------------------------------------------------------------
    // What a write_batch callback reads and writes through. Writes are recorded and applied after the
    // callback returns; reads see the map as the batch found it (find also sees the batch's own writes).
    class batch_writer {
      public:
        // The value, with the batch's own writes applied.
        std::optional<V> find(const K& k) const {
            check(k);
            for (auto it = ops_.rbegin(); it != ops_.rend(); ++it)
                if (eq_(it->first, k)) return it->second;
            return found(k);
        }
        // The value and revision as the batch found them (before its own writes).
        std::optional<versioned<V>> find_versioned(const K& k) const {
            check(k);
            const versioned<V>* v = site_.find(k);
            if (v == nullptr) return std::nullopt;
            return *v;
        }
        template <class M>
        void put(const K& k, M&& v) {
            check(k);
            ops_.emplace_back(k, std::optional<V>(std::forward<M>(v)));
        }
        void erase(const K& k) {
            check(k);
            ops_.emplace_back(k, std::nullopt);
        }

      private:
        friend class versioned_map;
        batch_writer(typename inner_type::batch_site& site, const std::vector<K>& keys)
            : site_(site), keys_(keys) {}
        std::optional<V> found(const K& k) const {
            const versioned<V>* v = site_.find(k);
            if (v == nullptr) return std::nullopt;
            return v->value;
        }
        void check(const K& k) const {
            for (const K& d : keys_)
                if (eq_(d, k)) return;
            throw std::logic_error(
                "iterlock::versioned_map::write_batch: a key outside the batch's declared set");
        }
        typename inner_type::batch_site& site_;
        const std::vector<K>& keys_;
        std::vector<std::pair<K, std::optional<V>>> ops_;
        [[no_unique_address]] KeyEqual eq_{};
    };

    // Runs f(batch_writer&) with the shards of `keys` locked (in the one global order: overlapping batches
    // never deadlock), then applies what f wrote as one write: a snapshot holds all of it or none of it;
    // finds after it see all of it; watchers receive its events in order, marked with more_in_batch (V5).
    // If f throws, nothing is written. f may read and write only keys of `keys` (else std::logic_error,
    // nothing written) and must not use the map (lock_error). Returns the number of writes applied (an
    // erase of an absent key is none). Blocking: writers of those shards wait for f and the writes.
    // Complexity: O(shards of the keys) lock acquisitions, O(keys) per read or write in f (the declared
    // set is searched linearly: meant for small sets). Exception safety: a failure while applying
    // (allocation) leaves the writes before it applied (basic guarantee), each published.
    template <class F>
    std::size_t write_batch(std::vector<K> keys, F&& f) {
        std::vector<std::size_t> ids;
        ids.reserve(keys.size());
        for (const K& k : keys) ids.push_back(inner_.detail_shard_index(k));
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        std::size_t applied = 0;
        inner_.detail_write_batch(ids, [&](typename inner_type::batch_site& site) {
            batch_writer b(site, keys);
            f(b);
            // Which recorded writes change something (an erase of an absent key does not): their count
            // numbers the events' more_in_batch.
            std::vector<bool> effective(b.ops_.size());
            std::size_t total = 0;
            for (std::size_t j = 0; j < b.ops_.size(); ++j) {
                bool present = b.ops_[j].second.has_value();
                if (!present) {
                    present = b.found(b.ops_[j].first).has_value();
                    for (std::size_t i = 0; i < j; ++i)
                        if (b.eq_(b.ops_[i].first, b.ops_[j].first)) present = b.ops_[i].second.has_value();
                }
                effective[j] = present;
                total += present ? 1 : 0;
            }
            std::uint64_t pred = 0;  // the revision of the batch's previous event (pull feeds keep the order)
            for (std::size_t j = 0; j < b.ops_.size(); ++j) {
                if (!effective[j]) continue;
                const K& k = b.ops_[j].first;
                const std::size_t i = inner_.detail_shard_index(k);
                const std::uint64_t n = site.revision(i) + 1;
                const auto more = static_cast<std::uint32_t>(total - ++applied);
                if (b.ops_[j].second.has_value()) {
                    site.put(k, versioned<V>{std::move(*b.ops_[j].second), revision_of(n, i)},
                             [&](const versioned<V>& stored) noexcept {
                                 publish(
                                     i, n,
                                     [&] {
                                         return change_type{change_kind::put, k, stored.value,
                                                            stored.revision, more};
                                     },
                                     pred);
                             });
                } else {
                    site.erase(k, [&]() noexcept {
                        publish(
                            i, n,
                            [&] {
                                return change_type{change_kind::erase, k, std::nullopt, revision_of(n, i),
                                                   more};
                            },
                            pred);
                    });
                }
                pred = revision_of(n, i);
            }
        });
        return applied;
    }

    // Removes every entry as one write (V5): a snapshot holds the map before it or the empty map, never a
    // part; watchers receive one erase per entry, as one batch. Locks every shard (in order) for O(size).
    void clear() {
        std::vector<std::size_t> ids(shard_count());
        for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i;
        inner_.detail_write_batch(ids, [&](typename inner_type::batch_site& site) {
            std::size_t left = inner_.size();
            std::uint64_t pred = 0;  // as in write_batch
            for (std::size_t i = 0; i < ids.size(); ++i) {
                std::uint64_t n = site.revision(i);
                site.clear_shard(i, [&](const K& k) {
                    ++n;
                    const auto more = static_cast<std::uint32_t>(--left);
                    publish(
                        i, n,
                        [&] {
                            return change_type{change_kind::erase, k, std::nullopt, revision_of(n, i), more};
                        },
                        pred);
                    pred = revision_of(n, i);
                });
            }
        });
    }

    // ---- observers -------------------------------------------------------------------------------------
    size_type size() const noexcept { return inner_.size(); }
    bool empty() const noexcept { return inner_.empty(); }
    // Successful writes so far (concurrent_map S6): the sum of the shards' counts, not a revision.
    std::uint64_t write_count() const noexcept { return inner_.revision(); }
    std::size_t shard_count() const noexcept { return inner_.shard_count(); }
    std::size_t preserved_bytes() const noexcept { return inner_.preserved_bytes(); }
    std::size_t snapshots_alive() const noexcept { return inner_.snapshots_alive(); }
    // The snapshot memory budget (concurrent_map S7; 0: none): past it the oldest snapshot expires and its
    // next read throws iterlock::snapshot_expired. Feeds are not snapshots: a budget never ends a feed.
    void set_snapshot_budget(std::size_t bytes) noexcept { inner_.set_snapshot_budget(bytes); }
    std::size_t snapshot_budget() const noexcept { return inner_.snapshot_budget(); }
    std::size_t feeds_alive() const noexcept { return feeds_alive_.load(std::memory_order_relaxed); }
    map_metrics metrics() const { return inner_.metrics(); }

    // ---- snapshots and feeds -----------------------------------------------------------------------------
    // The map at one instant (concurrent_map S1-S6), with revisions.
    snapshot_view snapshot() const { return snapshot_view(this, inner_.snapshot()); }

    // A feed of every write after the cursor (V2, V3), on a channel of `capacity` events (>= 1). If the
    // shards' histories no longer hold every write since the cursor, the feed is returned already ended
    // with feed_end::compacted. `delivery`: see feed_delivery (feed.hpp); pull needs a trivially copyable
    // change<K, V> and a history. Throws std::invalid_argument for a cursor of another shard count or ahead
    // of the map (another map's), a capacity of 0, or a pull the map cannot serve; std::bad_alloc.
    // O(shards) shard locks (each held for its replay; a pull feed replays nothing there).
    feed_type watch(const watch_cursor& from, std::size_t capacity = default_feed_capacity,
                    feed_delivery delivery = feed_delivery::push) {
        if (from.shard_count() != shard_count())
            throw std::invalid_argument(
                "iterlock::versioned_map::watch: the cursor belongs to a map with "
                "another shard count");
        auto w = make_watcher(capacity, delivery);
        feeds_alive_.fetch_add(1, std::memory_order_relaxed);
        feed_type f(this, w);  // from here on its destructor unregisters, also if a later step throws
        for (std::size_t i = 0; i < shard_count(); ++i) {
            inner_.detail_with_shard(i, [&](std::uint64_t now) {
                if (w->ended.load(std::memory_order_relaxed)) return;
                const std::uint64_t seen = from.seen(i);
                if (seen > now)
                    throw std::invalid_argument(
                        "iterlock::versioned_map::watch: the cursor is ahead of the map "
                        "(a cursor of another map)");
                if (!feeds_[i].start(w, seen, now)) w->end(feed_end::compacted);
            });
        }
        return f;
    }
    // A feed of every write after the snapshot's instant: listing the snapshot and then replaying the feed
    // gives the map as it is at any later quiet instant (V2).
    feed_type watch(const snapshot_view& from, std::size_t capacity = default_feed_capacity,
                    feed_delivery delivery = feed_delivery::push) {
        return watch(from.cursor(), capacity, delivery);
    }
    // A feed from now on.
    feed_type watch(std::size_t capacity = default_feed_capacity,
                    feed_delivery delivery = feed_delivery::push) {
        return snapshot_and_watch(capacity, delivery).feed;
    }

    struct listing;
    // List-then-watch that needs no history: a snapshot and a feed of every write after it (V2), taken
    // together while every shard's writer lock is held for a moment (writers wait for that O(shards)
    // hold, never for the walk or the watcher). Use it where a watch(snapshot) could be compacted: a
    // small history, or writers that can outrun it between the snapshot and the watch.
    listing snapshot_and_watch(std::size_t capacity = default_feed_capacity,
                               feed_delivery delivery = feed_delivery::push) {
        auto w = make_watcher(capacity, delivery);
        feeds_alive_.fetch_add(1, std::memory_order_relaxed);
        feed_type f(this, w);
        auto view = inner_.detail_snapshot_all_locked([&](std::size_t i, std::uint64_t now) {
            if (!feeds_[i].start(w, now, now)) w->end(feed_end::compacted);  // never: nothing to replay
        });
        return listing{snapshot_view(this, std::move(view)), std::move(f)};
    }

    // ==== snapshot_view: what snapshot() returns. Movable (it may be sent over a chan to another thread);
    // the map must outlive it.
    class snapshot_view {
        using inner_view = typename inner_type::snapshot_view;

      public:
        using iterator = typename inner_view::iterator;  // yields std::pair<const K, versioned<V>>
        size_type size() const { return view_.size(); }
        bool empty() const { return view_.empty(); }
        // Whether the map's snapshot budget expired it (concurrent_map S7): its reads throw snapshot_expired.
        bool expired() const noexcept { return view_.expired(); }
        // The number of writes it reflects (concurrent_map S6).
        std::uint64_t write_count() const { return view_.revision(); }
        std::optional<V> find(const K& k) const {
            auto r = view_.find(k);
            if (!r) return std::nullopt;
            return std::move(r->value);
        }
        // The value and its revision at the snapshot's instant (V1).
        std::optional<versioned<V>> find_versioned(const K& k) const { return view_.find(k); }
        bool contains(const K& k) const { return view_.contains(k); }
        iterator begin() const { return view_.begin(); }
        iterator end() const noexcept { return view_.end(); }
        // Where a feed starts so that it holds exactly the writes this snapshot does not (V2). O(shards)
        // shared shard locks.
        watch_cursor cursor() const {
            std::vector<std::uint64_t> seen(m_->shard_count());
            for (std::size_t i = 0; i < seen.size(); ++i) seen[i] = view_.detail_shard_revision(i);
            return watch_cursor(std::move(seen));
        }

      private:
        friend class versioned_map;
        snapshot_view(const versioned_map* m, inner_view v) noexcept : m_(m), view_(std::move(v)) {}
        const versioned_map* m_;
        inner_view view_;
    };

    // What snapshot_and_watch returns: walk `snapshot`, then receive from `feed`.
    struct listing {
        snapshot_view snapshot;
        feed_type feed;
    };

  private:
    using watcher = detail::watcher_state<change_type>;
    using shard_feed = detail::shard_feed<change_type>;

    std::uint64_t revision_of(std::uint64_t shard_writes, std::size_t shard) const noexcept {
        return (shard_writes << shift_) | shard;
    }
    std::uint64_t next_revision(const site& st) const noexcept {
        return revision_of(st.revision + 1, st.shard);
    }

    // One write through the map's hook; the commit numbers it and publishes it (V2) under the shard lock.
    template <class Decide>
    detail::site_action write_at(const K& k, Decide&& decide) {
        return inner_.detail_write_at(
            k, decide,
            [&](const site& st, detail::site_action a, const versioned<V>* stored) noexcept {
                const std::uint64_t n = st.revision + 1;
                if (a == detail::site_action::put) {
                    publish(st.shard, n, [&] {
                        return change_type{change_kind::put, k, stored->value, stored->revision};
                    });
                } else {
                    publish(st.shard, n, [&] {
                        return change_type{change_kind::erase, k, std::nullopt, revision_of(n, st.shard)};
                    });
                }
            },
            [&](std::size_t i) noexcept { feeds_[i].prepare(); });
    }
    // Publishes the event make() builds as shard i's write number n (only if anyone needs it); `pred` is
    // the revision of the batch event before it (0: none). Requires: shard i's writer lock.
    template <class Make>
    void publish(std::size_t i, std::uint64_t n, Make&& make, std::uint64_t pred = 0) noexcept {
        shard_feed& f = feeds_[i];
        if (!f.wants_events()) [[likely]] {
            f.skip_to(n);
            return;
        }
        try {
            f.publish(n, make(), pred);
        } catch (...) {
            f.fail(n);
        }
    }

    // A new watcher with a channel of `capacity` events, pulling from the shards' histories if asked.
    std::shared_ptr<watcher> make_watcher(std::size_t capacity, feed_delivery delivery) {
        if (capacity == 0)
            throw std::invalid_argument(
                "iterlock::versioned_map::watch: a feed needs a capacity of at least 1");
        auto w = std::make_shared<watcher>(capacity);
        if (delivery == feed_delivery::pull) {
            if constexpr (detail::pull_capable<change_type>) {
                if (feeds_[0].history() == 0)
                    throw std::invalid_argument(
                        "iterlock::versioned_map::watch: feed_delivery::pull needs a history "
                        "(history_per_shard > 0)");
                w->make_pull(feeds_.get(), marks_, shard_count(), shift_);
            } else {
                throw std::invalid_argument(
                    "iterlock::versioned_map::watch: feed_delivery::pull needs a trivially copyable "
                    "change<K, V>");
            }
        }
        return w;
    }

    void unregister(watcher* w) noexcept override {
        for (std::size_t i = 0; i < shard_count(); ++i)
            inner_.detail_with_shard(i, [&](std::uint64_t) { feeds_[i].remove(w); });
        w->detach();  // its channel may outlive the map: its receivers stop reading the shards
        feeds_alive_.fetch_sub(1, std::memory_order_release);
    }

    inner_type inner_;
    unsigned shift_;
    std::unique_ptr<shard_feed[]> feeds_;  // feeds_[i] belongs to shard i (under its lock)
    detail::feed_marks marks_;             // the shards' publication marks (pull feeds)
    std::atomic<std::size_t> feeds_alive_{0};
};

}  // namespace iterlock
