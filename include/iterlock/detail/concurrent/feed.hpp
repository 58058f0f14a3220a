// detail/concurrent/feed.hpp: the mechanism behind versioned_map's change feeds (rules V2, V3).
//
// Owns: watcher_state (one feed's channel, its end flag and reason) and shard_feed (one shard's recent
// history and the watchers registered on it).
// Invariants:
//  - A shard_feed is read and written only under its shard's writer lock (concurrent_map::detail_write_at
//    and detail_with_shard), so the history, the watcher list and the shard's revision change together:
//    the event numbered n is appended by the write that made the shard's revision n.
//  - The history holds the events numbered (newest_ - held_, newest_], at most cap_ of them, in a ring
//    indexed by number % cap_. What it cannot keep (a copy that throws) empties it: a later replay from
//    before that point reports "not held" (compacted), never a gap.
//  - A watcher is registered on a shard only after everything that shard wrote since the watcher's start
//    was replayed into its channel, all under the shard's lock: each event reaches it once.
//  - Writers never wait for a watcher: delivery is a non-blocking try_send; a full channel ends the
//    watcher (reason lagging) instead, and an ended watcher is skipped and dropped from the list.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "iterlock/chan.hpp"
#include "iterlock/feed.hpp"

namespace iterlock::detail {

template <class Change>
struct watcher_state {
    explicit watcher_state(std::size_t capacity) : ch(capacity, chan_wait::stream) {}
    chan<Change> ch;
    std::atomic<bool> ended{false};
    std::atomic<feed_end> reason{feed_end::none};

    // Ends the feed once: the reason is stored before the channel closes, so a receiver that saw the
    // close reads it (release here, acquire in feed::reason()).
    void end(feed_end r) noexcept {
        bool expected = false;
        if (!ended.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) return;
        reason.store(r, std::memory_order_release);
        try {
            ch.close();
        } catch (...) {  // closed already by someone else: nothing left to do
        }
    }
    // Delivers a copy of c without waiting. Returns false (and ends the watcher) if it could not.
    bool deliver(const Change& c) noexcept {
        if (ended.load(std::memory_order_acquire)) return false;
        try {
            if (ch.try_send(c)) return true;
            end(feed_end::lagging);
        } catch (const chan_closed&) {  // ended by another shard's writer meanwhile, or closed by its reader
            end(feed_end::cancelled);
        } catch (...) {  // the copy failed (allocation): the feed can no longer be complete
            end(feed_end::failed);
        }
        return false;
    }
};

template <class Change>
class alignas(64) shard_feed {
  public:
    using watcher_ptr = std::shared_ptr<watcher_state<Change>>;

    // Requires: the shard's lock, and no event numbered yet (called before the map is shared).
    void set_history(std::size_t cap) {
        ring_ = cap == 0 ? nullptr : std::make_unique<std::optional<Change>[]>(cap);
        cap_ = cap;
    }

    // Records the event that made the shard's revision `number`, and hands it to the watchers. noexcept:
    // what fails is the feed's problem (history emptied, watcher ended), never the writer's. Requires: the
    // shard's writer lock; number == the previous number + 1.
    void publish(std::uint64_t number, const Change& c) noexcept {
        if (cap_ != 0) {
            std::optional<Change>& slot = ring_[number % cap_];
            try {
                slot.reset();
                slot.emplace(c);
                held_ = std::min<std::uint64_t>(held_ + 1, cap_);
            } catch (...) {
                held_ = 0;
            }
        }
        newest_ = number;
        if (watchers_.empty()) [[likely]]
            return;
        bool drop = false;
        for (const watcher_ptr& w : watchers_) drop |= !w->deliver(c);
        if (drop) std::erase_if(watchers_, [](const watcher_ptr& w) { return w->ended.load(); });
    }
    // Whether an event must be made at all: with no history kept and no watcher, a write only counts.
    bool wants_events() const noexcept { return cap_ != 0 || !watchers_.empty(); }
    // The event numbered `number` could not be made (its copy threw): the history restarts after it and
    // every watcher of the shard ends (failed), since none can be complete any more.
    void fail(std::uint64_t number) noexcept {
        held_ = 0;
        newest_ = number;
        for (const watcher_ptr& w : watchers_) w->end(feed_end::failed);
        watchers_.clear();
    }
    // Records that the shard's revision is `number` without an event (a write that the feed does not see).
    void skip_to(std::uint64_t number) noexcept {
        if (number != newest_) held_ = 0;
        newest_ = number;
    }

    // Starts watcher w at `from` (it has seen this shard's events up to and including `from`): replays the
    // held events (from, now] into its channel and registers it. Returns false, registering nothing, if
    // the history no longer holds all of them (w must end as compacted). Throws std::bad_alloc from the
    // registration only (then w is not registered). Requires: the shard's writer lock; now == the
    // shard's revision.
    bool start(const watcher_ptr& w, std::uint64_t from, std::uint64_t now) {
        if (now != newest_) skip_to(now);  // writes through other paths (none today) broke the history
        const std::uint64_t missing = now - from;
        if (missing > held_) return false;
        watchers_.reserve(watchers_.size() + 1);
        for (std::uint64_t n = from + 1; n <= now; ++n)
            if (!w->deliver(*ring_[n % cap_])) break;  // ended (lagging): registering it is harmless
        watchers_.push_back(w);
        return true;
    }
    // Requires: the shard's writer lock.
    void remove(const watcher_state<Change>* w) noexcept {
        std::erase_if(watchers_, [w](const watcher_ptr& p) { return p.get() == w; });
    }
    std::size_t watcher_count() const noexcept { return watchers_.size(); }

  private:
    std::unique_ptr<std::optional<Change>[]> ring_;
    std::size_t cap_ = 0;
    std::uint64_t held_ = 0;    // events held, the newest `held_` numbers up to newest_
    std::uint64_t newest_ = 0;  // the shard's revision as of the last event recorded
    std::vector<watcher_ptr> watchers_;
};

}  // namespace iterlock::detail
