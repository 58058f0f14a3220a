// The untyped part of a channel (Go: hchan minus the buffer): its lock, closed flag, wait queues and waiter
// counts, and the type-erased entry points that select drives. chan_state<T> (chan_state.hpp) adds the
// element type, the ring buffer and the blocking operations.
//
// Two kinds of channel share this core:
//  - unbuffered (capacity 0): Go's model exactly. Every operation runs under `lock_`; a sender that finds a
//    waiting receiver moves its value straight into the receiver's storage (and vice versa), then wakes it.
//    Waiters in `recvq_`/`sendq_` carry `elem` pointers and are *completed* by their counterpart.
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
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "iterlock/detail/chan_park.hpp"
#include "iterlock/detail/chan_ring.hpp"
#include "iterlock/detail/chan_waitq.hpp"

namespace iterlock::detail {

class chan_core {
  public:
    explicit chan_core(std::size_t capacity) noexcept : cap_(capacity) {}
    chan_core(const chan_core&) = delete;
    chan_core& operator=(const chan_core&) = delete;
    virtual ~chan_core() = default;

    std::size_t capacity() const noexcept { return cap_; }
    bool buffered() const noexcept { return cap_ != 0; }
    bool closed_hint() const noexcept { return closed_.load(std::memory_order_acquire); }

    // Type-erased non-blocking attempts (select's poll). `src` points to a T that is moved from on ok;
    // `dst` to raw storage where a T is constructed on ok. With `locked` the caller holds `lock_` (and
    // possibly other channels' locks); waiters claimed on the way are appended to `wakes`.
    virtual op_status try_send_erased(void* src, bool locked, wake_list& wakes) noexcept = 0;
    virtual op_status try_recv_erased(void* dst, bool locked, wake_list& wakes) noexcept = 0;

    void lock() noexcept { lock_.lock(); }
    void unlock() noexcept { lock_.unlock(); }

    // Requires: lock_ held. Buffered kind: counts a waiter that is about to re-check and maybe link.
    void unprotected_announce(bool send) noexcept {
        if (buffered()) count_of(send).fetch_add(1, std::memory_order_seq_cst);
    }
    // Requires: lock_ held. Undoes an announcement that was not followed by linking.
    void unprotected_retract(bool send) noexcept {
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

    // Linked waiters (receivers / senders); exact under the lock, a hint otherwise.
    std::uint32_t waiting(bool send) const noexcept { return (send ? sendq_ : recvq_).size_hint(); }

  protected:
    // Buffered kind: after a successful ring operation, wakes one waiter on the other side if any announced.
    // `other_send` names that side. Takes `lock_` unless `locked`.
    void notify_one(bool other_send, bool locked, wake_list& wakes) noexcept {
        std::atomic<std::uint32_t>& count = count_of(other_send);
        if (count.load(std::memory_order_seq_cst) == 0) return;
        if (!locked) lock_.lock();
        std::size_t dropped = 0;
        chan_waiter* w = queue_of(other_send).unprotected_dequeue_claim(dropped);
        std::size_t const removed = dropped + (w ? 1 : 0);
        if (removed) count.fetch_sub(static_cast<std::uint32_t>(removed), std::memory_order_release);
        if (w) wakes.push(w);
        if (!locked) lock_.unlock();
    }

    // Requires: lock_ held and closed_ just set. Claims every waiter (transferred = false) into `wakes`.
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
                count_of(send).fetch_sub(static_cast<std::uint32_t>(removed), std::memory_order_release);
        }
    }

    // Debug: queue links and counts. Requires: lock_ held and no announcement in progress.
    bool unprotected_check() const noexcept {
        std::size_t const nr = recvq_.unprotected_check();
        std::size_t const ns = sendq_.unprotected_check();
        if (nr == SIZE_MAX || ns == SIZE_MAX) return false;
        if (closed_.load(std::memory_order_relaxed) && (nr != 0 || ns != 0)) return false;
        if (buffered()) {
            return recv_waiters_.load(std::memory_order_relaxed) == nr &&
                   send_waiters_.load(std::memory_order_relaxed) == ns;
        }
        return recv_waiters_.load(std::memory_order_relaxed) == 0 &&
               send_waiters_.load(std::memory_order_relaxed) == 0;
    }

    chan_waitq& queue_of(bool send) noexcept { return send ? sendq_ : recvq_; }
    std::atomic<std::uint32_t>& count_of(bool send) noexcept { return send ? send_waiters_ : recv_waiters_; }

    // Layout: the first line (with the vtable pointer) holds everything an operation touches under the lock,
    // so handing a value over on an unbuffered channel moves one line of channel state between threads.
    chan_lock lock_;
    std::atomic<bool> closed_{false};  // written under lock_, read anywhere
    chan_waitq recvq_;                 // blocked receivers (Go: recvq)
    chan_waitq sendq_;                 // blocked senders (Go: sendq)
    // Buffered kind only; each count on its own line, read by every ring operation and written only by
    // threads that park. cap_ is read-only and rides along.
    alignas(64) std::atomic<std::uint32_t> recv_waiters_{0};
    std::size_t const cap_;
    alignas(64) std::atomic<std::uint32_t> send_waiters_{0};
};

}  // namespace iterlock::detail
