// iterlock/detail/chan/core.hpp: the untyped part of a channel (Go: hchan minus the buffer): its lock,
// closed flag, wait queues, waiter counts and hand-over slot, and the type-erased entry points select drives.
//
// Owns: iterlock::detail::chan_core, iterlock::detail::chan_ops.
// Invariants: closed_ only goes false -> true, under lock_, and from then on both queues are empty; in the
//       buffered kind each waiter count equals the waiters linked plus those announced and re-checking the
//       ring; the hand-over slot moves only along the transitions diagrammed below (all stated below).
//
// chan_state<T> (chan/state.hpp) adds the element type, the ring buffer and the blocking operations.
//
// Two kinds of channel share this core:
//  - unbuffered (capacity 0): Go's model. Every operation runs under `lock_`; a sender that finds a
//    waiting receiver moves its value straight into the receiver's storage (and vice versa), then wakes it.
//    Waiters in `recvq_`/`sendq_` carry `elem` pointers and are *completed* by their counterpart.
//    One addition (not in Go): the *hand-over slot*, room for one parked plain operation and its value (T
//    of at most 16 bytes) inside the channel's first cache line, next to the lock. A receiver parks there
//    when the slot is free and recvq_ is empty; a sender parks there, its value moved into the slot, when
//    the slot is free and sendq_ is empty. The parked thread polls `slot_state_`; its partner completes it
//    by writing next to the lock it already holds. A hand-over then moves one cache line each way instead
//    of three (the channel's, the waiter's and back), which halves a ping-pong round trip between cores.
//  - buffered (capacity > 0): values go through the lock-free chan_ring; `lock_` only guards the queues.
//    Waiters are *notified* (claimed and woken) when the ring changes and retry themselves. The counts
//    `recv_waiters_`/`send_waiters_` are read after every successful ring operation so that nobody takes
//    the lock while nobody waits.
//
// Invariants (buffered kind), all counts changed under `lock_`:
//   recv_waiters_ == (waiters linked in recvq_) + (receivers that announced and are re-checking the ring)
//   send_waiters_ == the same for sendq_
// A waiter announces (increments) before its final check of the ring and under `lock_`, and whoever unlinks
// it decrements. With the ring's seq_cst index CAS/loads this makes lost wake-ups impossible: either the
// waiter's check sees the new value/space, or the operation that made it sees the count and wakes a waiter.
//
// Invariant (both kinds): `closed_` only goes false -> true, under `lock_`; once it is true both queues are
// empty and stay empty (close() wakes everybody and no operation links a waiter on a closed channel).
//
// Hand-over slot (unbuffered kind), `slot_state_`:
//   0 free
//   1 / 2   receiver parked, polling / asleep on the futex     -> 3 value in slot_value_ | 4 closed
//   5 / 6   sender parked with its value in slot_value_,
//           polling / asleep on the futex                      -> 7 value taken | 8 closed (value still
//           there)
// Under `lock_`: a party takes the free slot only while its own queue is empty (so it is older than every
// queued party of its side, and partners serve the slot first: FIFO holds); the partner or close() moves
// a parked state to its outcome (exchange; FUTEX_WAKE if the old state was "asleep"); a party whose deadline
// passes takes its value back and frees the slot. Without the lock: the parked party moves polling ->
// asleep (CAS), and outcome -> 0 once it has taken the outcome.

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "iterlock/detail/chan/park.hpp"
#include "iterlock/detail/chan/ring.hpp"
#include "iterlock/detail/chan/waitq.hpp"
#include "iterlock/detail/util/atomic_traits.hpp"
#include "iterlock/detail/util/inline.hpp"
#include "iterlock/misuse.hpp"

namespace iterlock::detail {

class chan_core;

// The element-typed operations select needs, one table per element type (instead of virtual functions:
// no vtable pointer in the channel's first cache line). `src` points to a T moved from on ok; `dst` to raw
// storage where a T is constructed on ok. With `locked` the caller holds the channel's lock (and possibly
// other channels' locks); waiters claimed on the way are appended to `wakes`.
struct chan_ops {
    op_status (*try_send)(chan_core* ch, void* src, bool locked, wake_list& wakes) noexcept;
    op_status (*try_recv)(chan_core* ch, void* dst, bool locked, wake_list& wakes) noexcept;
};

class chan_core {
  public:
    chan_core(const chan_core&) = delete;
    chan_core& operator=(const chan_core&) = delete;

    std::size_t capacity() const noexcept { return cap_; }
    bool buffered() const noexcept { return cap_ != 0; }

    op_status try_send_erased(void* src, bool locked, wake_list& wakes) noexcept {
        return ops_->try_send(this, src, locked, wakes);
    }
    op_status try_recv_erased(void* dst, bool locked, wake_list& wakes) noexcept {
        return ops_->try_recv(this, dst, locked, wakes);
    }

    void lock() noexcept { lock_.lock(); }
    void unlock() noexcept { lock_.unlock(); }

    // Requires: lock_ held. Buffered kind: counts a waiter that is about to re-check and maybe link.
    void unprotected_announce(bool send) noexcept {
        if (buffered()) count_of(send).fetch_add(1, std::memory_order_seq_cst);
    }
    // Requires: lock_ held. Undoes an announcement that was not followed by linking.
    void unprotected_retract(bool send) noexcept {
        // Release: pairs with notify_one()'s load of the count. A decrement only drops a waiter that leaves
        // or was claimed, so a thread that sees it and skips the lock misses no waiter; every count change is
        // made under lock_.
        if (buffered()) count_of(send).fetch_sub(1, std::memory_order_release);
    }
    // Requires: lock_ held; for the buffered kind the waiter was announced.
    void unprotected_link(chan_waiter* w, bool send) noexcept { queue_of(send).unprotected_push_back(w); }
    // Requires: lock_ held. Removes `w` if still linked (and drops its announcement).
    void unprotected_unlink(chan_waiter* w, bool send) noexcept {
        if (!w->linked) return;
        queue_of(send).unprotected_remove(w);
        unprotected_retract(send);
    }

    // Parked receivers (`send` false) or senders, the hand-over slot included. Takes the lock (tests only).
    std::size_t waiting(bool send) noexcept {
        lock_.lock();
        std::size_t n = queue_of(send).unprotected_check();
        if (slot_waiting(slot_state_.load(std::memory_order_relaxed), send))
            ++n;  // relaxed: under lock_; tests
        lock_.unlock();
        return n;
    }
    // Of those, the ones that stopped polling and sleep on their futex (rule C6). Takes the lock; tests only.
    std::size_t asleep(bool send) noexcept {
        lock_.lock();
        std::size_t n = queue_of(send).unprotected_count_asleep();
        if (slot_state_.load(std::memory_order_relaxed) == slot_sleeping(send))
            ++n;  // relaxed: under lock_; tests
        lock_.unlock();
        return n;
    }
    // Probe (tests only; 0 without ITERLOCK_CHAN_PROBES).
    std::uint64_t lock_acquisitions() const noexcept { return lock_.acquisitions(); }

  protected:
    // The hand-over slot's states (slot_state_'s values).
    enum : std::uint32_t {
        slot_free,
        slot_recv_polling,
        slot_recv_sleeping,
        slot_recv_value,
        slot_recv_closed,
        slot_send_polling,
        slot_send_sleeping,
        slot_send_taken,
        slot_send_closed,
    };
    static constexpr std::size_t slot_bytes = 16;
    static constexpr std::uint32_t slot_polling(bool send) noexcept {
        return send ? slot_send_polling : slot_recv_polling;
    }
    static constexpr std::uint32_t slot_sleeping(bool send) noexcept {
        return send ? slot_send_sleeping : slot_recv_sleeping;
    }
    // Whether `s` is a parked sender (`send`) or receiver.
    static bool slot_waiting(std::uint32_t s, bool send) noexcept {
        return s == slot_polling(send) || s == slot_sleeping(send);
    }
    static bool slot_parked(std::uint32_t s) noexcept {
        return slot_waiting(s, false) || slot_waiting(s, true);
    }

    chan_core(std::size_t capacity, const chan_ops* ops) noexcept : cap_(capacity), ops_(ops) {}
    ~chan_core() = default;

    // Rule C9, called first by the destructor of the shared state (the last handle is gone). A thread still
    // linked in a queue (a blocked send, recv or select) or inside the hand-over slot could never be woken,
    // and would touch freed memory if it were: abort and say what the program did.
    void fail_if_blocked_at_destruction() noexcept {
        lock_.lock();
        // Relaxed (slot_state_): under lock_; the last handle is gone (its release ordered every finished
        // party's last store), so any value but slot_free means a thread is still inside.
        bool const blocked = !recvq_.unprotected_empty() || !sendq_.unprotected_empty() ||
                             slot_state_.load(std::memory_order_relaxed) != slot_free;
        lock_.unlock();
        if (blocked) {
            fatal(
                "iterlock::chan: the last handle to a channel was destroyed while a thread is blocked on it "
                "(in send, recv or select); that thread could never be woken. Keep a chan handle alive in "
                "every thread that uses the channel (capture the chan by value, not by reference)");
        }
    }

    // Buffered kind: after a successful ring operation, wakes one waiter on the other side if any announced.
    // `other_send` names that side. Takes `lock_` unless `locked`.
    void notify_one(bool other_send, bool locked, wake_list& wakes) noexcept {
        if (count_of(other_send).load(std::memory_order_seq_cst) == 0) return;
        notify_one_slow(other_send, locked, wakes);
    }
    // notify_one() once a waiter has announced itself: out of line, so that every send and receive inlines
    // only the count's test.
    ITERLOCK_DETAIL_NOINLINE void notify_one_slow(bool other_send, bool locked, wake_list& wakes) noexcept {
        atomic<std::uint32_t>& count = count_of(other_send);
        if (!locked) lock_.lock();
        std::size_t dropped = 0;
        chan_waiter* w = queue_of(other_send).unprotected_dequeue_claim(dropped);
        std::size_t const removed = dropped + (w ? 1 : 0);
        // Release: as in unprotected_retract() (pairs with notify_one()'s lock-free load of the count).
        if (removed) count.fetch_sub(static_cast<std::uint32_t>(removed), std::memory_order_release);
        if (w) wakes.push(w);
        if (!locked) lock_.unlock();
    }

    // Requires: lock_ held and closed_ just set. Claims every waiter (transferred = false) into `wakes` and
    // completes the hand-over slot's party with "closed".
    void unprotected_release_all(wake_list& wakes) noexcept {
        for (bool send : {false, true}) {
            std::size_t removed = 0;
            for (;;) {
                std::size_t dropped = 0;
                chan_waiter* w = queue_of(send).unprotected_dequeue_claim(dropped);
                removed += dropped;
                if (!w) break;
                ++removed;
                w->transferred = false;
                wakes.push(w);
            }
            if (buffered() && removed)
                // Release: as in notify_one().
                count_of(send).fetch_sub(static_cast<std::uint32_t>(removed), std::memory_order_release);
        }
        // Relaxed: under lock_. Without it a party only goes polling -> sleeping (same side) or outcome ->
        // free, so whether one is parked, and on which side, is exact.
        std::uint32_t const s = slot_state_.load(std::memory_order_relaxed);
        if (slot_parked(s))
            unprotected_complete_slot(slot_waiting(s, true) ? slot_send_closed : slot_recv_closed);
    }

    // Requires: lock_ held and a party parked in the slot. Publishes `outcome` and wakes it.
    void unprotected_complete_slot(std::uint32_t outcome) noexcept {
        // Release: pairs with slot_wait()'s acquire loads and CAS of slot_state_; publishes the value moved
        // into or out of slot_value_. (An RMW: it sees the party's latest polling/sleeping state.)
        std::uint32_t const old = slot_state_.exchange(outcome, std::memory_order_release);
        if (old == slot_recv_sleeping || old == slot_send_sleeping) futex_wake(&slot_state_, 1);
    }

    // Debug: queue links, counts and the hand-over slot. Requires: lock_ held and no announcement in
    // progress.
    bool unprotected_check() const noexcept {
        std::size_t const nr = recvq_.unprotected_check();
        std::size_t const ns = sendq_.unprotected_check();
        if (nr == SIZE_MAX || ns == SIZE_MAX) return false;
        // Relaxed (here and below): a debug check under lock_, under which all of these change (except
        // slot_state_'s polling -> sleeping, which stays parked).
        bool const parked = slot_parked(slot_state_.load(std::memory_order_relaxed));
        if (closed_.load(std::memory_order_relaxed) && (nr != 0 || ns != 0 || parked)) return false;
        if (buffered()) {
            return !parked && recv_waiters_.load(std::memory_order_relaxed) == nr &&
                   send_waiters_.load(std::memory_order_relaxed) == ns;
        }
        return recv_waiters_.load(std::memory_order_relaxed) == 0 &&
               send_waiters_.load(std::memory_order_relaxed) == 0;
    }

    chan_waitq& queue_of(bool send) noexcept { return send ? sendq_ : recvq_; }
    const chan_waitq& queue_of(bool send) const noexcept { return send ? sendq_ : recvq_; }
    atomic<std::uint32_t>& count_of(bool send) noexcept { return send ? send_waiters_ : recv_waiters_; }

    // Layout. Line 0 holds everything an unbuffered operation touches under the lock, hand-over slot included
    // (4 + 1 + 3 + 16 + 16 + 4 + 4 + 16 = 64 bytes).
    alignas(64) chan_lock lock_;
    atomic<bool> closed_{false};  // written under lock_, read anywhere
    chan_waitq recvq_;            // blocked receivers (Go: recvq)
    chan_waitq sendq_;            // blocked senders (Go: sendq)
    atomic<std::uint32_t> slot_state_{slot_free};
    std::uint32_t unused_ = 0;
    alignas(16) unsigned char slot_value_[slot_bytes];
    // Buffered kind only; each count on its own line, read by every ring operation and written only by
    // threads that park. cap_ and ops_ are read-only and ride along.
    alignas(64) atomic<std::uint32_t> recv_waiters_{0};
    std::size_t const cap_;
    const chan_ops* const ops_;
    alignas(64) atomic<std::uint32_t> send_waiters_{0};
};

}  // namespace iterlock::detail
