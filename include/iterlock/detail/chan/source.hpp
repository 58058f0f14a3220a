// iterlock/detail/chan/source.hpp: a producer that a buffered channel's own receivers run (a "pull"
// source), for producers that must not pay a send per value.
//
// Owns: iterlock::detail::chan_source<T>.
// Invariants: refill() is called only by a receiver of the channel that found its ring empty, never
//       blocks, and moves values in only through chan_state<T>::try_send_copy (so every ring invariant of
//       chan/ring.hpp and the waiter counts of chan/core.hpp hold as for any sender).
//
// A channel with a source still works as any buffered channel (send, close, select); a receive that finds
// the ring empty first lets the source move what is ready into the ring, then retries. A producer that
// feeds a source (versioned_map's pull feeds, detail/concurrent/feed.hpp) wakes a parked receiver with
// chan_state<T>::wake_receiver() instead of sending. No lost wake-up: a receiver announces itself before
// its last check (chan/core.hpp) and calls refill() with `locked` there; the source then orders that check
// after the producer's publication (its own fence protocol), so either the check sees the value or the
// producer sees the announced receiver and wakes it.
#pragma once

#include "iterlock/detail/chan/waitq.hpp"

namespace iterlock::detail {

template <class T>
class chan_state;

template <class T>
class chan_source {
  public:
    chan_source() = default;
    chan_source(const chan_source&) = delete;
    chan_source& operator=(const chan_source&) = delete;
    virtual ~chan_source() = default;
    // Moves what is ready into `ch`'s ring (chan_state::try_send_copy) and may end the channel
    // (chan_state::source_close). `locked`: the caller holds ch's lock (and maybe other channels' locks:
    // a select's slow pass); it is then the receiver's last check before it parks. Waiters claimed on the
    // way go to `wakes`. Never blocks on another thread for long (no lock but the source's own try-lock and
    // the channel's lock when not `locked`).
    virtual void refill(chan_state<T>& ch, bool locked, wake_list& wakes) noexcept = 0;
};

}  // namespace iterlock::detail
