// iterlock/feed.hpp: change feeds of an iterlock::versioned_map — the events, the cursor a feed resumes
// from, the reason a feed ends, and the feed handle itself.
//
// Owns: iterlock::change, iterlock::change_kind, iterlock::watch_cursor, iterlock::feed_end,
//       iterlock::feed.
// Invariants: a feed's channel carries every write after its start once, in order per key (V2 of
//       versioned_map.hpp, which states the map's rules V1-V5); a feed ends only by closing its channel,
//       and reason() then says why.
//
// A feed is what `m.watch(from)` returns: a channel (iterlock::chan<change<K, V>>, so it composes with
// iterlock::select) on which every write after `from` arrives once, in order per key. The feed ends by
// closing its channel; reason() then says why (feed_end). Destroying the feed unregisters it (O(shards)
// shard locks, each held for a moment). The channel is made with chan_wait::stream (chan.hpp, C6): a
// receiver blocked on it polls while events come microseconds apart, instead of sleeping for each.
//
//   auto s = m.snapshot();                       // list ...
//   for (const auto& [k, vv] : s) index.put(k, vv.value);
//   auto f = m.watch(s);                         // ... then watch, with no gap and no repeat (V2)
//   iterlock::watch_cursor at = s.cursor();
//   for (const auto& c : f.events()) {           // ends when the feed ends
//       at.advance(c);
//       if (c.kind == iterlock::change_kind::put) index.put(c.key, *c.value); else index.erase(c.key);
//   }
//   if (f.reason() == iterlock::feed_end::lagging) { /* watch again from `at`, or list again */ }
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "iterlock/chan.hpp"

namespace iterlock {

enum class change_kind : unsigned char { put, erase };

// One write, as a feed delivers it. `revision` is the key's revision after the write (versioned_map V1; for
// an erase, the revision of the erase itself: the key's revision is 0 afterwards).
template <class K, class V>
struct change {
    change_kind kind;
    K key;
    std::optional<V> value;  // the value written (put); nullopt for an erase
    std::uint64_t revision;
    // Events of the same batch (versioned_map::write_batch, clear) that follow this one: they reach every
    // watcher in order, after this one (events of other shards' writers may come in between). 0 for a
    // single write and for a batch's last event.
    std::uint32_t more_in_batch = 0;
};

// Why a feed ended (its channel is closed; the events sent before the end are still received first).
enum class feed_end : unsigned char {
    none,       // not ended
    lagging,    // the watcher fell too far behind the writers (V3, by its feed_delivery's bound); watch again
                // from a cursor or list again
    compacted,  // the start point is older than what the map's history still holds; list again
    failed,     // an event could not be copied (allocation failure); list again
    cancelled,  // the feed was destroyed, or its channel closed by a reader (the next write ends it)
};

// How a feed's events reach its channel (versioned_map::watch).
enum class feed_delivery : unsigned char {
    // Each writer copies the event into every watcher's channel (a try_send per watcher per write). The
    // bound of V3 is the channel: a watcher is cut off (lagging) when a write finds its channel full.
    push,
    // The writer only keeps the event in its shard's history; the feed's receivers copy events out of the
    // histories themselves, in batches, when their channel runs empty (the writer pays no copy, and wakes
    // a receiver only if one sleeps). The bound of V3 is the channel plus the history: a watcher is cut off
    // (lagging) when a write overwrites, in its shard's history, an event the watcher has not taken yet.
    // Needs a trivially copyable change<K, V> (keys and values such as integers or fixed-size structs) and
    // a history (history_per_shard > 0).
    pull,
};

inline const char* to_string(feed_end r) noexcept {
    switch (r) {
        case feed_end::none:
            return "none";
        case feed_end::lagging:
            return "lagging: the watcher fell too far behind the writers";
        case feed_end::compacted:
            return "compacted: the start point is older than the map's history";
        case feed_end::failed:
            return "failed: an event could not be copied";
        case feed_end::cancelled:
            return "cancelled: the feed was destroyed";
    }
    return "unknown";
}

// A position in a map's history: for each shard, the number of its writes already seen. A snapshot hands
// one out (versioned_map::snapshot_view::cursor(): what the snapshot holds), and advance() moves it past each
// event received, so a feed that ended (lagging) can be resumed from where its reader stopped.
class watch_cursor {
  public:
    watch_cursor() = default;
    explicit watch_cursor(std::vector<std::uint64_t> per_shard)
        : seen_(std::move(per_shard)), shift_(shift_for(seen_.size())) {}
    // Moves past the event with this revision (events of one shard arrive in order).
    template <class K, class V>
    void advance(const change<K, V>& c) noexcept {
        advance(c.revision);
    }
    void advance(std::uint64_t revision) noexcept {
        if (seen_.empty()) return;
        const std::size_t shard = static_cast<std::size_t>(revision & (seen_.size() - 1));
        seen_[shard] = std::max(seen_[shard], revision >> shift_);
    }
    std::size_t shard_count() const noexcept { return seen_.size(); }
    std::uint64_t seen(std::size_t shard) const { return seen_.at(shard); }

  private:
    static unsigned shift_for(std::size_t n) noexcept {
        unsigned s = 0;
        while ((std::size_t{1} << s) < n) ++s;
        return s;
    }
    std::vector<std::uint64_t> seen_;
    unsigned shift_ = 0;
};

namespace detail {
template <class Change>
struct watcher_state;
// What a feed calls back into when it is destroyed (the map that registered it).
template <class Change>
struct feed_source {
    virtual void unregister(watcher_state<Change>* w) noexcept = 0;

  protected:
    ~feed_source() = default;
};
// Makes feeds for sources other than versioned_map (etcd::map's watch, iterlock/etcd/map.hpp).
struct feed_factory;
}  // namespace detail

// The handle of one watch. Movable, not copyable; the map must outlive it (checked by the map's destructor).
template <class K, class V>
class feed {
  public:
    using change_type = change<K, V>;
    feed() = default;
    feed(feed&& o) noexcept : src_(std::exchange(o.src_, nullptr)), w_(std::move(o.w_)) {}
    feed& operator=(feed&& o) noexcept {
        if (this != &o) {
            reset();
            src_ = std::exchange(o.src_, nullptr);
            w_ = std::move(o.w_);
        }
        return *this;
    }
    feed(const feed&) = delete;
    feed& operator=(const feed&) = delete;
    ~feed() { reset(); }

    // The events. Receive with recv(), a range-for, or iterlock::select(on_recv(f.events(), ...)).
    chan<change_type> events() const { return channel(); }
    // Why the feed ended (feed_end::none while it runs). Read it after the channel reported closed.
    feed_end reason() const noexcept;
    bool ended() const noexcept { return reason() != feed_end::none; }
    // Events delivered and not yet received (a pull feed also counts the events its shards hold for it).
    std::size_t backlog() const;
    explicit operator bool() const noexcept { return w_ != nullptr; }

  private:
    template <class, class, class, class, class>
    friend class versioned_map;
    friend struct detail::feed_factory;
    feed(detail::feed_source<change_type>* src,
         std::shared_ptr<detail::watcher_state<change_type>> w) noexcept
        : src_(src), w_(std::move(w)) {}
    const chan<change_type>& channel() const;
    void reset() noexcept;

    detail::feed_source<change_type>* src_ = nullptr;
    std::shared_ptr<detail::watcher_state<change_type>> w_;
};

}  // namespace iterlock

#include "iterlock/detail/concurrent/feed.hpp"

namespace iterlock {
namespace detail {
struct feed_factory {
    template <class K, class V>
    static feed<K, V> make(feed_source<change<K, V>>* src, std::shared_ptr<watcher_state<change<K, V>>> w) {
        return feed<K, V>(src, std::move(w));
    }
};
}  // namespace detail
template <class K, class V>
feed_end feed<K, V>::reason() const noexcept {
    return w_ == nullptr ? feed_end::none : w_->reason.load(std::memory_order_acquire);
}
template <class K, class V>
const chan<typename feed<K, V>::change_type>& feed<K, V>::channel() const {
    if (w_ == nullptr) throw std::logic_error("iterlock::feed: use of an empty (moved-from) feed");
    return w_->ch;
}
template <class K, class V>
std::size_t feed<K, V>::backlog() const {
    return channel().size() + w_->unpulled();
}
template <class K, class V>
void feed<K, V>::reset() noexcept {
    if (w_ == nullptr) return;
    w_->end(feed_end::cancelled);
    if (src_ != nullptr) src_->unregister(w_.get());
    src_ = nullptr;
    w_.reset();
}
}  // namespace iterlock
