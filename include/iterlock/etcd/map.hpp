// iterlock::etcd::map<K, V, Codec> — a map shared by many processes through etcd, read from a local mirror.
//
// Every entry lives in etcd under `prefix + Codec::encode(key)`. The map keeps a local mirror (an
// iterlock::concurrent_map of key -> {value, mod_revision}) fed by list-then-watch
// (detail/mirror_core.hpp): it lists the prefix at one revision R, then watches from R + 1. Reads are
// local; writes are etcd transactions.
//
// What each call guarantees
// -------------------------
//   M1  Revision label: the mirror holds exactly the prefix's content at etcd revision applied_revision()
//       (cluster-wide: every key of the prefix as of that revision, no hole, no duplicate, no value that
//       was not committed). applied_revision() only grows, also across watch reconnects and endpoint
//       failovers (the watch resumes at applied_revision() + 1).
//   M2  Staleness: the mirror trails etcd by the watch delivery time (about one round trip on a healthy
//       cluster; longer while the watch reconnects). mirror_lag_revisions() says by how much it trailed
//       the newest revision the watch has reported. find(k) is local and may be stale by that much;
//       find(k, linearizable) reads etcd (a quorum read, one round trip).
//   M3  Writes (insert_or_assign, erase, compare_and_set) return once etcd committed them, with the
//       revision they committed at. Read-your-writes is explicit: after wait_applied(rev) returns true the
//       mirror reflects the write (and everything before it). With map_options::wait_for_mirror set, each
//       write that changed a key waits for that itself before returning. A write that changed nothing (an
//       erase of a missing key, a failed compare_and_set) returns etcd's current revision, which the mirror
//       reaches only with the prefix's next event: do not wait_applied() on it (etcd 3.4's on-demand
//       progress responses can run ahead of an unsynced watch, so the map does not use them; docs/ETCD.md).
//   M4  compare_and_set(k, mod_rev, v) writes only if k's mod_revision in etcd is mod_rev (0: k must not
//       exist). It is one Txn: no other write of k can come between the comparison and the write.
//   M5  snapshot() is a snapshot of the mirror (iterlock::concurrent_map, rules S1-S6) labelled with the
//       etcd revision it equals (M1). It is local: it pins nothing in etcd and lives as long as it likes.
//   M6  snapshot_at(R) reads the prefix from etcd at revision R (paged, every page at R). It does not pin R:
//       if R was compacted it throws error(compacted); if it is newer than etcd's, error(future_revision).
//   M7  Compaction past the watch's resume point (after a long disconnection) makes the mirror re-list at
//       the latest revision; metrics().compaction_resyncs counts it. M1 holds across it: the mirror jumps
//       from one exact revision to a later exact one.
//   M8  Size: a key or value whose request would exceed client_options::max_request_bytes is rejected
//       with error(too_large) before anything is sent (no partial write).
//   M9  Faults: writes follow client.hpp C3 (error(may_have_applied) when the answer was lost); the mirror
//       never throws from its thread: it reconnects with backoff (metrics().watch_restarts).
//   M10 Iteration policy (fourth template argument): snapshot_iteration (the default; M5) or
//       locked_iteration, the iteration lock across processes (iteration_lock.hpp, D-L1..D-L7): every write
//       becomes a gated Txn, lock_for_iteration() returns a guard, for_each(guard, f) walks the prefix at
//       the guard's fence revision. Every process writing the prefix must use the same policy.
//   M11 watch(from_revision) returns the in-process feed type (iterlock::feed<K, V>, feed.hpp), fed by the
//       mirror's own etcd watch: every change of the prefix after from_revision arrives once, in etcd
//       revision order (so in order per key), as applied to the mirror; change::revision is the etcd
//       revision (the key's mod_revision; an erase's own revision), more_in_batch counts the events of the
//       same etcd transaction that follow. The map keeps the last map_options::feed_history events: a
//       from_revision older than that history (or from before a re-list, M7) ends the feed at once with
//       feed_end::compacted, as does a re-list after etcd compaction for the feeds alive then (their
//       events are lost). A from_revision ahead of the mirror starts after it. The mirror never waits for
//       a feed: delivery is a try_send under the mirror's apply lock, and a full channel ends the feed
//       with feed_end::lagging (versioned_map V3); a change that cannot be copied (allocation) ends the
//       feeds with feed_end::failed. The map must outlive its feeds (abort otherwise).
// Construction lists the prefix and starts the watch thread (throws what the list throws). Destruction
// stops the watch; the client must outlive the map. Any number of threads may call any member at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/etcd/client.hpp"
#include "iterlock/etcd/codec.hpp"
#include "iterlock/etcd/detail/mirror_core.hpp"
#include "iterlock/etcd/error.hpp"
#include "iterlock/etcd/iteration_lock.hpp"
#include "iterlock/feed.hpp"
#include "iterlock/map.hpp"

namespace iterlock::etcd {
namespace detail {
struct mirror_test_access;
}

// A value with the etcd revision that last modified it (the compare_and_set token).
template <class V>
struct versioned {
    V value{};
    std::int64_t mod_revision = 0;
};

struct linearizable_t {
    explicit linearizable_t() = default;
};
inline constexpr linearizable_t linearizable{};

struct map_options {
    bool wait_for_mirror = false;                  // M3
    std::chrono::milliseconds wait_timeout{5000};  // for wait_for_mirror
    std::int64_t list_page_size = 0;               // 0: unpaged lists (fastest on etcd 3.4)
    std::size_t feed_history = 1024;               // M11: recent events kept for watch(from_revision)
};

struct map_etcd_metrics {
    client_metrics client;
    std::uint64_t relists = 0, compaction_resyncs = 0, watch_restarts = 0, events_applied = 0;
    std::uint64_t decode_errors = 0, duplicate_events = 0;
    std::int64_t applied_revision = 0, mirror_lag_revisions = 0;
    // Seconds since the mirror is known to trail etcd (a watch response it has not caught up with, or a
    // watch being reconnected); 0 while it is current as far as the watch has told.
    double mirror_lag_seconds = 0;
};

template <class K, class V, class Codec = default_codec, class Iteration = snapshot_iteration>
class map : private detail::mirror_sink, private iterlock::detail::feed_source<iterlock::change<K, V>> {
  public:
    using mirror_type = iterlock::concurrent_map<K, versioned<V>>;
    using change_type = iterlock::change<K, V>;
    using feed_type = iterlock::feed<K, V>;
    static constexpr std::size_t default_feed_capacity = 4096;

    // A mirror snapshot and the etcd revision it equals (M5).
    struct snapshot_type {
        typename mirror_type::snapshot_view view;
        std::int64_t revision;
    };
    // The prefix read from etcd at one past revision (M6).
    struct past_snapshot {
        std::vector<std::pair<K, versioned<V>>> entries;
        std::int64_t revision = 0;
    };
    struct cas_result {
        bool succeeded = false;
        std::int64_t revision = 0;  // the write's revision on success, etcd's current one otherwise
    };

    map(client& c, std::string prefix, map_options o = {})
        : map(c, std::move(prefix), o, lock_options{}, 0) {}
    // M10: the locked policy's lock options (its prefix defaults to "iterlock-lock:" + prefix).
    map(client& c, std::string prefix, map_options o, lock_options lo) requires(Iteration::locked)
        : map(c, std::move(prefix), o, std::move(lo), 0) {}
    ~map() override {
        core_.stop();
        if (feeds_alive_.load(std::memory_order_acquire) != 0)
            iterlock::detail::fatal(
                "iterlock::etcd::map destroyed while a feed is alive; end every feed before its map");
    }
    map(const map&) = delete;
    map& operator=(const map&) = delete;

    const std::string& prefix() const noexcept { return prefix_; }
    std::string etcd_key(const K& k) const { return prefix_ + Codec::encode(k); }

    // Local reads (M2).
    std::optional<V> find(const K& k) const {
        std::optional<V> out;
        mirror_.cvisit(k, [&](const K&, const versioned<V>& v) { out = v.value; });
        return out;
    }
    std::optional<versioned<V>> find_versioned(const K& k) const {
        std::optional<versioned<V>> out;
        mirror_.cvisit(k, [&](const K&, const versioned<V>& v) { out = v; });
        return out;
    }
    std::size_t size() const noexcept { return mirror_.size(); }
    // A read from etcd (linearizable, M2).
    std::optional<versioned<V>> find(const K& k, linearizable_t) const {
        auto kv = client_.get(etcd_key(k));
        if (!kv) return std::nullopt;
        versioned<V> out;
        if (!Codec::decode(kv->value, out.value))
            throw error(errc::decode, "etcd::map: the value of " + kv->key + " does not decode");
        out.mod_revision = kv->mod_revision;
        return out;
    }

    // Writes (M3, M8, M9).
    std::int64_t insert_or_assign(const K& k, const V& v) {
        if constexpr (Iteration::locked)
            return after_write(lock().write({}, {txn_op::put(etcd_key(k), Codec::encode(v))}).revision);
        else
            return after_write(client_.put(etcd_key(k), Codec::encode(v)));
    }
    // Returns {whether k existed, revision}.
    std::pair<bool, std::int64_t> erase(const K& k) {
        if constexpr (Iteration::locked) {
            auto w = lock().write({}, {txn_op::erase(etcd_key(k))});
            if (w.txn.deleted.empty() || w.txn.deleted[0] == 0) return {false, w.revision};
            return {true, after_write(w.revision)};
        }
        auto r = client_.erase(etcd_key(k));
        if (r.deleted == 0) return {false, r.revision};
        return {true, after_write(r.revision)};
    }
    // M4.
    cas_result compare_and_set(const K& k, std::int64_t mod_revision, const V& v) {
        const std::string key = etcd_key(k);
        if constexpr (Iteration::locked) {
            const compare same{key, compare::target::mod_revision, compare::op::equal, mod_revision};
            auto w = lock().write({same}, {txn_op::put(key, Codec::encode(v))});
            if (w.succeeded) after_write(w.revision);
            return {w.succeeded, w.revision};
        }
        auto r =
            client_.txn({compare{key, compare::target::mod_revision, compare::op::equal, mod_revision, {}}},
                        {txn_op::put(key, Codec::encode(v))});
        if (r.succeeded) after_write(r.revision);
        return {r.succeeded, r.revision};
    }

    // M3: true once the mirror has applied `revision`; false if `timeout` passed first.
    bool wait_applied(std::int64_t revision,
                      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
        return const_cast<detail::mirror_core&>(core_).wait_applied(
            revision, std::chrono::steady_clock::now() + timeout);
    }
    std::int64_t applied_revision() const noexcept { return core_.applied(); }

    // M5.
    snapshot_type snapshot() const {
        std::lock_guard<std::mutex> g(apply_mu_);
        return snapshot_type{mirror_.snapshot(), label_};
    }
    // M6.
    past_snapshot snapshot_at(std::int64_t revision) const {
        auto [kvs, rev] =
            detail::list_at(client_, prefix_, prefix_end(prefix_), revision, opts_.list_page_size);
        past_snapshot out;
        out.revision = rev;
        out.entries.reserve(kvs.size());
        for (auto& kv : kvs) {
            std::pair<K, versioned<V>> e;
            if (!decode_kv(kv, e.first, e.second)) continue;
            out.entries.push_back(std::move(e));
        }
        return out;
    }

    // M11: the changes after from_revision, then every later one, on a channel of `capacity` events.
    // O(feed_history) under the mirror's apply lock (the replay); sends nothing to etcd. Throws
    // std::invalid_argument for capacity 0.
    feed_type watch(std::int64_t from_revision, std::size_t capacity = default_feed_capacity) {
        if (capacity == 0)
            throw std::invalid_argument("iterlock::etcd::map::watch: a feed needs a capacity >= 1");
        auto w = std::make_shared<watcher>(capacity);
        feeds_alive_.fetch_add(1, std::memory_order_relaxed);
        feed_type f = iterlock::detail::feed_factory::make<K, V>(this, w);  // unregisters if a step throws
        std::lock_guard<std::mutex> g(apply_mu_);
        if (from_revision < hist_from_) {
            w->end(feed_end::compacted);
            return f;
        }
        watchers_.reserve(watchers_.size() + 1);
        for (const change_type& c : hist_)
            if (static_cast<std::int64_t>(c.revision) > from_revision && !w->deliver(c)) return f;  // lagging
        watchers_.push_back({w, std::max(from_revision, label_)});
        return f;
    }

    map_etcd_metrics metrics() const {
        map_etcd_metrics m;
        m.client = client_.metrics();
        const auto& c = core_.counters();
        m.relists = c.relists.load();
        m.compaction_resyncs = c.compaction_resyncs.load();
        m.watch_restarts = c.watch_restarts.load();
        m.events_applied = c.events.load();
        m.decode_errors = decode_errors_.load();
        m.duplicate_events = duplicate_events_.load();
        m.applied_revision = core_.applied();
        m.mirror_lag_revisions = std::max<std::int64_t>(0, c.latest_seen.load() - m.applied_revision);
        if (const std::int64_t since = c.behind_since_ns.load(); since != 0)
            m.mirror_lag_seconds =
                static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count() -
                                    since) /
                1e9;
        return m;
    }
    const mirror_type& mirror() const noexcept { return mirror_; }

    // M10, locked_iteration only (iteration_lock.hpp). A guard with the caller's current_priority().
    iteration_guard lock_for_iteration() requires(Iteration::locked) { return lock().lock_for_iteration(); }
    iteration_guard try_lock_for_iteration(std::chrono::milliseconds timeout) requires(Iteration::locked) {
        return lock().try_lock_for_iteration(timeout);
    }
    // Walks the prefix as etcd held it at g's fence (the live data, less g's own writes), calling
    // f(key, versioned value). One Range (paged by list_page_size) plus g.check() before it and every 256
    // entries: a guard whose lease expired stops the walk with error(lease_expired) (D-L6). f may write
    // through this map on the guard's thread (D-L7: fenced writes).
    template <class F>
    void for_each(const iteration_guard& g, F&& f) const requires(Iteration::locked) {
        g.check();
        auto [kvs, rev] =
            detail::list_at(client_, prefix_, prefix_end(prefix_), g.revision(), opts_.list_page_size);
        std::size_t n = 0;
        for (auto& kv : kvs) {
            if (++n % 256 == 0) g.check();
            std::pair<K, versioned<V>> e;
            if (!decode_kv(kv, e.first, e.second)) continue;
            f(static_cast<const K&>(e.first), static_cast<const versioned<V>&>(e.second));
        }
        g.check();
    }
    iteration_lock& lock() const requires(Iteration::locked) { return *lock_; }

  private:
    friend struct detail::mirror_test_access;
    map(client& c, std::string prefix, map_options o, lock_options lo, int)
        : client_(c),
          prefix_(std::move(prefix)),
          opts_(o),
          core_(c, prefix_, *this, detail::mirror_config{o.list_page_size, std::chrono::milliseconds(500)}) {
        core_.start();
        if constexpr (Iteration::locked) {
            if (lo.prefix.empty()) lo.prefix = "iterlock-lock:" + prefix_;
            lock_ = std::make_unique<iteration_lock>(c, std::move(lo));
        }
    }
    std::int64_t after_write(std::int64_t revision) {
        if (opts_.wait_for_mirror && !wait_applied(revision, opts_.wait_timeout))
            throw error(errc::deadline, "etcd::map: the write committed at revision " +
                                            std::to_string(revision) +
                                            " but the mirror did not apply it in time");
        return revision;
    }

    bool decode_kv(const key_value& kv, K& k, versioned<V>& v) const {
        if (kv.key.size() < prefix_.size() ||
            !Codec::decode(std::string_view(kv.key).substr(prefix_.size()), k) ||
            !Codec::decode(kv.value, v.value)) {
            decode_errors_.fetch_add(1);
            return false;
        }
        v.mod_revision = kv.mod_revision;
        return true;
    }

    // mirror_sink: called by the watch thread only (detail/mirror_core.hpp, rule 2).
    void replace_all(std::vector<key_value>&& kvs, std::int64_t revision) override {
        std::vector<std::pair<K, versioned<V>>> decoded;
        decoded.reserve(kvs.size());
        iterlock::map<K, bool> keep;
        for (auto& kv : kvs) {
            std::pair<K, versioned<V>> e;
            if (!decode_kv(kv, e.first, e.second)) continue;
            keep.insert_or_assign(e.first, true);
            decoded.push_back(std::move(e));
        }
        std::lock_guard<std::mutex> g(apply_mu_);
        mirror_.erase_if([&](const K& k, const versioned<V>&) { return !keep.contains(k); });
        for (auto& [k, v] : decoded) mirror_.insert_or_assign(k, v);
        label_ = revision;
        // M11: the events between the old label and this list are not known; feeds alive cannot go on.
        hist_.clear();
        hist_from_ = revision;
        for (auto& p : watchers_) p.first->end(feed_end::compacted);
        watchers_.clear();
    }
    void apply(std::vector<event>& events, std::int64_t revision) override {
        std::lock_guard<std::mutex> g(apply_mu_);
        const bool publish = opts_.feed_history != 0 || !watchers_.empty();
        bool lost = false;  // a change could not be made (allocation): the feeds cannot be complete
        const auto record = [&](change_kind what, K&& k, std::optional<V>&& v, std::int64_t rev) noexcept {
            if (!publish || lost) return;
            try {
                changes_.push_back(
                    change_type{what, std::move(k), std::move(v), static_cast<std::uint64_t>(rev)});
            } catch (...) {
                lost = true;
            }
        };
        changes_.clear();
        for (auto& e : events) {
            if (e.kv.mod_revision <= label_) {  // never expected (rule 2); counted so tests can prove it
                duplicate_events_.fetch_add(1);
                continue;
            }
            K k;
            versioned<V> v;
            if (e.what == event::kind::erase) {
                if (e.kv.key.size() >= prefix_.size() &&
                    Codec::decode(std::string_view(e.kv.key).substr(prefix_.size()), k)) {
                    mirror_.erase(k);
                    record(change_kind::erase, std::move(k), std::nullopt, e.kv.mod_revision);
                } else {
                    decode_errors_.fetch_add(1);
                }
                continue;
            }
            if (decode_kv(e.kv, k, v)) {
                mirror_.insert_or_assign(k, v);
                record(change_kind::put, std::move(k), std::move(v.value), e.kv.mod_revision);
            }
        }
        label_ = revision;
        if (publish) publish_changes(lost);
    }
    // M11: numbers each transaction's events (more_in_batch), hands them to the feeds without waiting and
    // keeps them in the history. What cannot be copied (allocation) ends the feeds (failed) or empties the
    // history (a later start before this point ends compacted); the mirror goes on. Requires: apply_mu_.
    void publish_changes(bool lost) noexcept {
        if (lost) {
            for (auto& p : watchers_) p.first->end(feed_end::failed);
            watchers_.clear();
            hist_.clear();
            hist_from_ = label_;
            return;
        }
        std::uint32_t more = 0;
        for (std::size_t i = changes_.size(); i-- > 0;) {
            const bool same = i + 1 < changes_.size() && changes_[i + 1].revision == changes_[i].revision;
            more = same ? more + 1 : 0;
            changes_[i].more_in_batch = more;
        }
        bool drop = false;
        for (const change_type& c : changes_)
            for (auto& [w, floor] : watchers_)
                if (static_cast<std::int64_t>(c.revision) > floor) drop |= !w->deliver(c);
        if (drop) std::erase_if(watchers_, [](const auto& p) { return p.first->ended.load(); });
        try {
            if (opts_.feed_history != 0) hist_.insert(hist_.end(), changes_.begin(), changes_.end());
        } catch (...) {
            hist_.clear();
        }
        if (opts_.feed_history == 0 || hist_.empty()) hist_from_ = label_;
        while (hist_.size() > opts_.feed_history) {  // drop whole revisions: the history starts between two
            const std::uint64_t r = hist_.front().revision;
            while (!hist_.empty() && hist_.front().revision == r) hist_.pop_front();
            hist_from_ = static_cast<std::int64_t>(r);
        }
    }
    void unregister(iterlock::detail::watcher_state<change_type>* w) noexcept override {
        {
            std::lock_guard<std::mutex> g(apply_mu_);
            std::erase_if(watchers_, [w](const auto& p) { return p.first.get() == w; });
        }
        feeds_alive_.fetch_sub(1, std::memory_order_release);
    }
    void progressed(std::int64_t revision) override {
        std::lock_guard<std::mutex> g(apply_mu_);
        if (revision > label_) label_ = revision;
        if (opts_.feed_history == 0) hist_from_ = label_;
    }

    client& client_;
    std::string prefix_;
    map_options opts_;
    mirror_type mirror_;
    mutable std::mutex apply_mu_;  // one applied batch at a time vs. snapshot(): the label is exact (M1)
    std::int64_t label_ = 0;       // guarded by apply_mu_
    mutable std::atomic<std::uint64_t> decode_errors_{0}, duplicate_events_{0};
    // M11, all guarded by apply_mu_: the history holds every change in (hist_from_, label_], oldest first;
    // each feed gets the changes above its floor (the revision it was started after).
    using watcher = iterlock::detail::watcher_state<change_type>;
    std::deque<change_type> hist_;
    std::int64_t hist_from_ = 0;
    std::vector<std::pair<std::shared_ptr<watcher>, std::int64_t>> watchers_;
    std::vector<change_type> changes_;  // apply()'s scratch
    std::atomic<std::size_t> feeds_alive_{0};
    std::unique_ptr<iteration_lock> lock_;  // locked_iteration only (M10)
    detail::mirror_core core_;              // last: its thread stops before the mirror goes
};

}  // namespace iterlock::etcd
