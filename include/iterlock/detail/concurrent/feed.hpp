// detail/concurrent/feed.hpp: the mechanism behind versioned_map's change feeds (rules V2, V3).
//
// Owns: watcher_state (one feed: its channel, its end flag and reason, and for a pull feed its per-shard
// cursors), feed_puller (the pull feed's channel source), shard_feed (one shard's recent history and the
// watchers registered on it), feed_marks (the shards' publication marks that pull watchers poll).
// Invariants:
//  - A shard_feed is written only under its shard's writer lock (concurrent_map::detail_write_at and
//    detail_with_shard), so the history, the watcher list and the shard's revision change together:
//    the event numbered n is appended by the write that made the shard's revision n. Pull feeds read its
//    history without the lock (below).
//  - The history holds the events numbered (newest_ - held_, newest_], at most cap_ of them, in a ring
//    indexed by number % cap_. What it cannot keep (a copy that throws) empties it: a later replay from
//    before that point reports "not held" (compacted), never a gap.
//  - A watcher is registered on a shard only after everything that shard wrote since the watcher's start
//    was replayed into its channel (push) or its cursor for the shard set to its start (pull), all under
//    the shard's lock: each event reaches it once.
//  - Writers never wait for a watcher. Push delivery is a non-blocking try_send; a full channel ends the
//    watcher (reason lagging). Pull delivery costs the writer no copy: the watcher's receivers copy events
//    out of the shard histories themselves (feed_puller, a chan_source), and the writer only wakes a
//    receiver that parked, and ends the watcher (lagging) when it overwrites an event the watcher has not
//    taken yet. An ended watcher is skipped and dropped from the list.
//
// Pull delivery, in detail (only for an event type that is trivially copyable, so that a torn copy is
// bytes, never a broken object):
//  - A history slot is a sequence lock: its number is 0 while the writer fills it, then the event's
//    number (release). While a pull watcher is registered on the shard, the writer then stores the
//    number's low 32 bits into the shard's mark (release). A puller reads the mark (acquire): while it
//    differs from its cursor's low bits, the slot after the cursor is published. It copies the slot with
//    relaxed loads (racy_copy) and keeps the copy only if the number read before and after is the one it
//    wants; any other number means a newer event took the slot: the watcher lost an event and ends with
//    feed_end::lagging. (32 bits cannot wrap unseen: a watcher 2^32 events behind was ended long before
//    by the writer's lag check, since a history holds fewer.)
//  - Why marks: a puller that finds its channel empty polls every shard. Had it read a word on each shard's
//    own line, the writer's next store there would wait for that line to come back from the puller's core,
//    nearly once per write at a high write rate (the store drains before the next write's lock). The marks
//    pack 16 shards to a line, so one poll costs the writers at most shards/16 such transfers, and only
//    while a pull watcher exists; the writer also asks for its mark's line before it locks the shard
//    (shard_feed::prepare). The history's bookkeeping that the writer changes on every write (held_,
//    newest_) sits on a line of its own, away from what pullers read (ring_, cap_).
//  - Per shard, a pull watcher's cursor (seen_) is the number of the last event it moved into its
//    channel. Pulls of one watcher run one at a time (feed_puller's busy_ flag); a receiver that finds a
//    pull in progress leaves `again_` set, and the puller runs once more before it lets go, so a request
//    is never dropped.
//  - Batches (V5): each batch event but the first carries its predecessor's revision (pred); a puller takes
//    a shard's next event only once the predecessor was taken (or lies before the watcher's start), so
//    each watcher receives a batch's events in the batch's order. The batch's writer published them in that
//    order, so the oldest unread event of all shards is always takeable: no shard waits forever.
//  - No lost wake-up: a writer stores the mark, then runs the light fence and reads whether a receiver
//    announced itself on the watcher's channel (chan_state::wake_receiver); a receiver announces itself,
//    then, in its last check before parking (refill with `locked`), runs the heavy fence before it reads
//    the marks (epoch_domain's pair, E4 of detail/reclaim/epoch.hpp: a compiler barrier for the writer and a
//    membarrier for the rare parker, or two seq_cst fences). Either the check sees the event or the writer
//    sees the receiver.
//  - Lifetime: the channel (and its puller) may outlive the watcher and the map through a copy of the
//    channel handle. The feed's unregistration detaches the puller (under busy_) before the map can go, and
//    a detached puller touches nothing.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "iterlock/chan.hpp"
#include "iterlock/detail/chan/source.hpp"
#include "iterlock/detail/reclaim/epoch.hpp"
#include "iterlock/detail/util/atomic_traits.hpp"
#include "iterlock/detail/util/fence.hpp"
#include "iterlock/detail/util/inline.hpp"
#include "iterlock/detail/util/line_array.hpp"
#include "iterlock/detail/util/prefetch.hpp"
#include "iterlock/detail/util/racy_read.hpp"
#include "iterlock/feed.hpp"

namespace iterlock::detail {

// Whether feeds of this event type can be pulled (feed_delivery::pull): a slot is copied while it may be
// overwritten, so only trivially copyable events.
template <class Change>
inline constexpr bool pull_capable = std::is_trivially_copyable_v<Change>;

// An event as a history slot holds it for pull feeds: the event and its batch predecessor's revision.
template <class Change>
struct held_event {
    Change c;
    std::uint64_t pred;  // the revision of the batch event before this one; 0: none
};

template <class Change>
class shard_feed;
template <class Change>
class feed_puller;

// The shards' publication marks (file comment), 16 to a cache line. Built before the map is shared.
using feed_marks = line_array<atomic<std::uint32_t>>;

template <class Change>
struct watcher_state {
    explicit watcher_state(std::size_t capacity) : ch(capacity, chan_wait::stream) {}
    watcher_state(const watcher_state&) = delete;
    watcher_state& operator=(const watcher_state&) = delete;
    ~watcher_state() { detach(); }

    chan<Change> ch;
    atomic<bool> ended{false};
    // std::atomic even in the memory-model checks (Relacy cannot print an enum); `ended` orders the end.
    std::atomic<feed_end> reason{feed_end::none};

    // Ends the feed once: the reason is stored before the channel closes, so a receiver that saw the
    // close reads it (release here, acquire in feed::reason()).
    void end(feed_end r) noexcept {
        if (!claim_end(r)) return;
        try {
            ch.close();
        } catch (...) {  // closed already by someone else: nothing left to do
        }
    }
    // Delivers a copy of c without waiting (push). Returns false (and ends the watcher) if it could not.
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

    // ---- pull delivery --------------------------------------------------------------------------------
    bool pulls() const noexcept { return puller_ != nullptr; }
    // Makes this a pull watcher of the shards feeds[0, shards), whose marks are `marks`. Requires:
    // pull_capable<Change>, before the watcher is registered anywhere. Throws std::bad_alloc.
    void make_pull(shard_feed<Change>* feeds, const feed_marks& marks, std::size_t shards,
                   unsigned shift) requires pull_capable<Change> {
        seen_ = line_array<atomic<std::uint64_t>>(shards);
        feeds_ = feeds;
        marks_ = &marks;
        shards_ = shards;
        shift_ = shift;
        auto p = std::make_unique<feed_puller<Change>>(this);
        puller_ = p.get();
        state_ = chan_access::state(ch);
        state_->attach_source(std::move(p));
    }
    // Requires: the shard's lock, before registration there. The watcher has seen shard s up to `number`.
    void set_seen(std::size_t s, std::uint64_t number) noexcept {
        seen_[s].store(number, std::memory_order_relaxed);  // published by the feed's hand-over
    }
    // The writer's side of pull delivery, after it published shard s's event `number` into a history of
    // `cap` events and ran the light fence: wakes a receiver that parked (one load when none did), and
    // once every lag_check_every events of the shard ends the watcher if that write overwrote an event it
    // had not taken (a puller finds such an event gone anyway; the check only ends a watcher that stopped
    // reading). Returns false if the watcher is ended.
    static constexpr std::uint64_t lag_check_every = 64;
    ITERLOCK_DETAIL_ALWAYS_INLINE bool after_publish(std::size_t s, std::uint64_t number,
                                                     std::size_t cap) noexcept {
        if (state_->receiver_announced()) [[unlikely]]
            state_->wake_receiver();
        if (number % lag_check_every != 0) [[likely]]
            return true;
        return check_lag(s, number, cap);
    }
    // Events published and not yet moved into the channel, summed over the shards at slightly different
    // instants. Requires: the map is alive.
    std::size_t unpulled() const noexcept;
    // Stops the puller from touching the shards (the map may go after this). Idempotent; waits for a pull
    // in progress.
    void detach() noexcept;

  private:
    friend class feed_puller<Change>;
    ITERLOCK_DETAIL_NOINLINE bool check_lag(std::size_t s, std::uint64_t number, std::size_t cap) noexcept {
        if (ended.load(std::memory_order_acquire)) return false;
        // Relaxed: a puller's progress; reading it late only ends the feed for an event it took meanwhile.
        if (number > cap && seen_[s].load(std::memory_order_relaxed) < number - cap) {
            end(feed_end::lagging);
            return false;
        }
        return true;
    }
    bool claim_end(feed_end r) noexcept {
        bool expected = false;
        if (!ended.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) return false;
        reason.store(r, std::memory_order_release);
        return true;
    }
    // Moves what the shards hold after seen_ into the channel, until nothing is left or the channel is
    // full. Requires: the puller's busy_ flag, the map alive (not detached).
    void pull(chan_state<Change>& ch_state, bool locked, wake_list& wakes) noexcept;
    bool taken(std::uint64_t revision) const noexcept {
        const std::size_t s = static_cast<std::size_t>(revision & (shards_ - 1));
        return seen_[s].load(std::memory_order_relaxed) >= (revision >> shift_);
    }

    feed_puller<Change>* puller_ = nullptr;  // owned by ch's state; null for a push watcher
    chan_state<Change>* state_ = nullptr;    // ch's state (pull watchers)
    shard_feed<Change>* feeds_ = nullptr;
    const feed_marks* marks_ = nullptr;
    std::size_t shards_ = 0;
    unsigned shift_ = 0;
    // Per shard: written by pulls on every event, read by writers now and then; on lines of their own (a
    // heap neighbour that writers read on every write, such as a shard's watcher list, would move with them).
    line_array<atomic<std::uint64_t>> seen_;
};

// A pull watcher's channel source: runs the watcher's pulls one at a time for the channel's receivers. On
// lines of its own: its flags change at every refill, and a heap neighbour (a shard's watcher list, which
// writers read) would move with them.
template <class Change>
class alignas(64) feed_puller final : public chan_source<Change> {
  public:
    explicit feed_puller(watcher_state<Change>* w) noexcept : w_(w) {}

    void refill(chan_state<Change>& ch, bool locked, wake_list& wakes) noexcept override {
        // The last check before parking: order it after every publication that may have missed this
        // receiver's announcement (the heavy side of the pair; see the file comment).
        if (locked) process_heavy_fence();
        again_.store(true, std::memory_order_seq_cst);
        // seq_cst (again_ and busy_): a receiver stores again_ then tests busy_, the puller clears busy_
        // then tests again_; one of them sees the other's store, so a request is never dropped.
        while (again_.load(std::memory_order_seq_cst)) {
            if (busy_.exchange(true, std::memory_order_seq_cst)) return;  // the holder will run again
            // acq_rel: reads the latest request (synchronizing with the receiver that made it, so this
            // pull comes after that receiver's fence).
            again_.exchange(false, std::memory_order_acq_rel);
            if (w_ != nullptr) w_->pull(ch, locked, wakes);
            busy_.store(false, std::memory_order_seq_cst);
        }
    }
    void detach() noexcept {
        // Acquire/release: a pull in progress finishes before w_ goes; a later refill sees null.
        while (busy_.exchange(true, std::memory_order_acquire)) thread_yield();
        w_ = nullptr;
        busy_.store(false, std::memory_order_release);
    }

  private:
    watcher_state<Change>* w_;  // null once detached; read and written only with busy_ held
    atomic<bool> busy_{false};
    atomic<bool> again_{false};
};

template <class Change>
class alignas(64) shard_feed {
  public:
    using watcher_ptr = std::shared_ptr<watcher_state<Change>>;

    // Requires: the shard's lock, and no event numbered yet (called before the map is shared). `mark`: this
    // shard's entry of the map's feed_marks.
    void set_history(std::size_t cap, std::size_t index, atomic<std::uint32_t>& mark) {
        ring_ = cap == 0 ? nullptr : std::make_unique<slot[]>(cap);
        cap_ = cap;
        half_ = (cap + 1) / 2;
        mask_ = std::has_single_bit(cap) ? cap - 1 : 0;
        index_ = index;
        mark_ = &mark;
    }
    std::size_t history() const noexcept { return cap_; }

    // Records the event that made the shard's revision `number`, and hands it to the watchers. `pred`: the
    // revision of the batch event before it (0: none). noexcept: what fails is the feed's problem (history
    // emptied, watcher ended), never the writer's. Requires: the shard's writer lock; number == the previous
    // number + 1.
    void publish(std::uint64_t number, const Change& c, std::uint64_t pred = 0) noexcept {
        if (cap_ != 0) {
            slot& e = ring_[place(number)];
            if constexpr (pull_capable<Change>) {
                // The slot's sequence lock (file comment): closed, filled with relaxed stores, reopened.
                e.number.store(0, std::memory_order_relaxed);
                fence(std::memory_order_release);
                racy_store(e.body(), held_event<Change>{c, pred});
                e.number.store(number, std::memory_order_release);
                // Ask for the line of the shard's next event now, so that a history larger than the cache
                // does not make every write wait for a line from memory.
                prefetch_for_write(&ring_[place(number + 1)]);
                held_ = std::min<std::uint64_t>(held_ + 1, cap_);
            } else {
                try {
                    e.reset();
                    e.emplace(c);
                    held_ = std::min<std::uint64_t>(held_ + 1, cap_);
                } catch (...) {
                    held_ = 0;
                }
            }
        }
        // Relaxed: pullers read the mark, not this (only unpulled() does, as a count).
        newest_.store(number, std::memory_order_relaxed);
        if (watchers_.empty()) [[likely]]
            return;
        bool drop = false;
        const std::size_t pullers = pullers_.load(std::memory_order_relaxed);  // under the lock
        if (pullers != watchers_.size()) {
            for (const watcher_ptr& w : watchers_)
                if (!w->pulls()) drop |= !w->deliver(c);
        }
        if (pullers != 0) {
            set_mark(number);
            process_light_fence();  // before reading whether a receiver parked
            for (const watcher_ptr& w : watchers_)
                if (w->pulls()) drop |= !w->after_publish(index_, number, cap_);
        }
        if (drop) drop_ended();
    }
    // Called before the writer locks the shard: while pull watchers poll the marks, the line of this
    // shard's mark is likely in a puller's cache; asking for it now overlaps its transfer with the lock
    // and the table's work instead of making the next lock wait for the store (file comment, "Why marks").
    // Reads pullers_ without the lock (relaxed): a hint.
    ITERLOCK_DETAIL_ALWAYS_INLINE void prepare() const noexcept {
        if (pullers_.load(std::memory_order_relaxed) != 0) [[unlikely]]
            prefetch_for_write(mark_);
    }
    // Whether an event must be made at all: with no history kept and no watcher, a write only counts.
    bool wants_events() const noexcept { return cap_ != 0 || !watchers_.empty(); }
    // The event numbered `number` could not be made (its copy threw): the history restarts after it and
    // every watcher of the shard ends (failed), since none can be complete any more.
    void fail(std::uint64_t number) noexcept {
        held_ = 0;
        newest_.store(number, std::memory_order_relaxed);
        for (const watcher_ptr& w : watchers_) w->end(feed_end::failed);
        watchers_.clear();
        pullers_.store(0, std::memory_order_relaxed);
    }
    // Records that the shard's revision is `number` without an event (a write that the feed does not see).
    void skip_to(std::uint64_t number) noexcept {
        // Relaxed: newest_ is written only under the shard's lock, which this thread holds.
        if (number != newest_.load(std::memory_order_relaxed)) held_ = 0;
        newest_.store(number, std::memory_order_relaxed);
        if (pullers_.load(std::memory_order_relaxed) != 0) set_mark(number);  // they find the gap (lagging)
    }

    // Starts watcher w at `from` (it has seen this shard's events up to and including `from`): replays the
    // held events (from, now] into its channel (push) or sets its cursor there (pull), and registers it.
    // Returns false, registering nothing, if the history no longer holds all of them (w must end as
    // compacted). Throws std::bad_alloc from the registration only (then w is not registered). Requires:
    // the shard's writer lock; now == the shard's revision.
    bool start(const watcher_ptr& w, std::uint64_t from, std::uint64_t now) {
        // Relaxed: under the shard's lock (newest_'s only writer).
        if (now != newest_.load(std::memory_order_relaxed)) skip_to(now);  // writes through other paths
        const std::uint64_t missing = now - from;
        if (missing > held_) return false;
        watchers_.reserve(watchers_.size() + 1);
        if (w->pulls()) {
            w->set_seen(index_, from);
            set_mark(now);  // not kept up while no puller was registered
        } else {
            for (std::uint64_t n = from + 1; n <= now; ++n)
                if (!w->deliver(event_at(n))) break;  // ended (lagging): registering it is harmless
        }
        watchers_.push_back(w);
        if (w->pulls())
            pullers_.store(pullers_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return true;
    }
    // Requires: the shard's writer lock.
    void remove(const watcher_state<Change>* w) noexcept {
        std::erase_if(watchers_, [w](const watcher_ptr& p) { return p.get() == w; });
        count_pullers();
    }
    std::size_t watcher_count() const noexcept { return watchers_.size(); }

    // ---- for pullers (no lock) ------------------------------------------------------------------------
    // The number of the newest event published (a count for unpulled(); pulls read the marks).
    std::uint64_t newest() const noexcept { return newest_.load(std::memory_order_relaxed); }
    // A copy of event `number` (at most newest()), or nullopt if a newer event took its slot.
    std::optional<held_event<Change>> read(std::uint64_t number) const noexcept requires
        pull_capable<Change> {
        const slot& e = ring_[place(number)];
        // Acquire: pairs with publish()'s release store of the number (the body is filled).
        if (e.number.load(std::memory_order_acquire) != number) return std::nullopt;
        const held_event<Change> b = racy_copy(e.body());
        fence(std::memory_order_acquire);  // the copy's loads before the re-check
        // Relaxed: ordered by the fence above (the sequence lock's re-check).
        if (e.number.load(std::memory_order_relaxed) != number) return std::nullopt;
        return b;
    }

  private:
    void drop_ended() noexcept {
        std::erase_if(watchers_, [](const watcher_ptr& w) { return w->ended.load(); });
        count_pullers();
    }
    void count_pullers() noexcept {
        pullers_.store(
            static_cast<std::size_t>(std::count_if(watchers_.begin(), watchers_.end(),
                                                   [](const watcher_ptr& w) { return w->pulls(); })),
            std::memory_order_relaxed);
    }
    // Release: a puller that reads the mark sees the slots up to `number` filled.
    void set_mark(std::uint64_t number) noexcept {
        mark_->store(static_cast<std::uint32_t>(number), std::memory_order_release);
    }

    // A history slot of a pull-capable event: a sequence lock around its bytes (file comment), written
    // and read only with relaxed atomic accesses (racy_store, racy_copy).
    struct alignas(64) seq_slot {
        atomic<std::uint64_t> number{0};  // 0: empty or being filled
        alignas(held_event<Change>) unsigned char bytes[sizeof(held_event<Change>)];
        held_event<Change>* body() noexcept { return reinterpret_cast<held_event<Change>*>(bytes); }
        const held_event<Change>* body() const noexcept {
            return reinterpret_cast<const held_event<Change>*>(bytes);
        }
    };
    // Other events: an optional event, read only under the shard's lock.
    using slot = std::conditional_t<pull_capable<Change>, seq_slot, std::optional<Change>>;

    // The ring index of event `number`. Consecutive events lie two slots (two cache lines) apart: the first
    // half of the numbers fills the even slots, the second half the odd ones. A puller's read of an event
    // also brings the line beside it (processors fetch lines in aligned pairs), and with consecutive slots
    // that was the line of the shard's next event, which the writer had just asked for: its next store
    // there then waited for the line to come back. A power-of-two history takes a mask, not a division.
    std::size_t place(std::uint64_t number) const noexcept {
        const std::size_t at =
            mask_ != 0 ? static_cast<std::size_t>(number & mask_) : static_cast<std::size_t>(number % cap_);
        return at < half_ ? 2 * at : 2 * (at - half_) + 1;
    }
    // Requires: the shard's lock and n held.
    decltype(auto) event_at(std::uint64_t n) const noexcept {
        if constexpr (pull_capable<Change>)
            return racy_copy(ring_[place(n)].body()).c;  // a copy: the bytes hold no object
        else
            return static_cast<const Change&>(*ring_[place(n)]);
    }

    // Set before the map is shared, then read-only (pullers read ring_ and cap_).
    std::unique_ptr<slot[]> ring_;
    std::size_t cap_ = 0;
    std::size_t half_ = 0;                   // (cap_ + 1) / 2: place()
    std::size_t mask_ = 0;                   // cap_ - 1 for a power of two, else 0: place()
    std::size_t index_ = 0;                  // this shard's index in the map
    atomic<std::uint32_t>* mark_ = nullptr;  // this shard's publication mark (feed_marks)
    // Written by the shard's writers, on a line of its own (file comment, "Why marks").
    alignas(64) std::uint64_t held_ = 0;  // events held, the newest `held_` numbers up to newest_
    atomic<std::uint64_t> newest_{0};     // the shard's revision as of the last event recorded
    std::vector<watcher_ptr> watchers_;
    // How many of watchers_ pull. Written under the lock; read without it by prepare() (a hint).
    atomic<std::size_t> pullers_{0};
};

template <class Change>
void watcher_state<Change>::pull(chan_state<Change>& ch_state, bool locked, wake_list& wakes) noexcept {
    if constexpr (pull_capable<Change>) {
        if (ended.load(std::memory_order_acquire)) return;
        auto stop = [&](feed_end r) {
            if (claim_end(r)) ch_state.source_close(locked, wakes);
        };
        for (bool progress = true; progress;) {
            progress = false;
            for (std::size_t s = 0; s < shards_; ++s) {
                const shard_feed<Change>& f = feeds_[s];
                // Relaxed: seen_[s] is written only by pulls, which run one at a time (busy_).
                std::uint64_t seen = seen_[s].load(std::memory_order_relaxed);
                // Acquire: pairs with set_mark's release (the slots up to the mark are filled).
                const std::uint32_t mark = (*marks_)[s].load(std::memory_order_acquire);
                while (static_cast<std::uint32_t>(seen) != mark) {
                    const std::optional<held_event<Change>> e = f.read(seen + 1);
                    if (!e) return stop(feed_end::lagging);
                    if (e->pred != 0 && !taken(e->pred)) break;  // its batch predecessor first (V5)
                    const op_status st = ch_state.try_send_copy(e->c, locked, wakes);
                    // Full (the receivers take more first) or closed (the feed ended): stop here.
                    if (st != op_status::ok) return;
                    // Relaxed: read by writers for the lagging test only (after_publish).
                    seen_[s].store(++seen, std::memory_order_relaxed);
                    progress = true;
                }
            }
        }
    } else {
        (void)ch_state;
        (void)locked;
        (void)wakes;
    }
}

template <class Change>
std::size_t watcher_state<Change>::unpulled() const noexcept {
    std::size_t n = 0;
    if (puller_ == nullptr || ended.load(std::memory_order_acquire)) return 0;
    for (std::size_t s = 0; s < shards_; ++s) {
        const std::uint64_t newest = feeds_[s].newest();
        const std::uint64_t seen = seen_[s].load(std::memory_order_relaxed);
        if (newest > seen) n += static_cast<std::size_t>(newest - seen);
    }
    return n;
}

template <class Change>
void watcher_state<Change>::detach() noexcept {
    if (puller_ != nullptr) puller_->detach();
}

}  // namespace iterlock::detail
