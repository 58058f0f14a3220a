// The shared state behind a chan<T> handle: chan_core plus the element type, the ring (buffered kind) and
// the blocking send/receive/close algorithms (Go: chansend, chanrecv, closechan).
//
// Blocking, buffered kind: try the ring; on full/empty back off (a few spin rounds, a few yields) and try
// again; then lock, announce, try once more, link a waiter and park. A notified waiter retries from the top.
// Blocking, unbuffered kind: lock; complete a waiting counterpart if there is one, else link a waiter that
// carries the value (or the storage for it) and park until a counterpart completes it or close() fails it.
// Timeouts: a parked waiter that reaches its deadline abandons its parker (CAS); if a claimer won that race
// it waits for the claimer's signal and takes the outcome, so a value is never both moved and reported as a
// timeout.
//
// Requires of T: nothrow move construction and destruction. Values are moved while channel locks are held,
// so a throwing move could not be undone.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>

#include "iterlock/detail/chan_core.hpp"
#include "iterlock/detail/chan_park.hpp"
#include "iterlock/detail/chan_ring.hpp"
#include "iterlock/detail/chan_waitq.hpp"

namespace iterlock::detail {

// What a blocked plain operation keeps on its stack, packed on one or two cache lines: the parker, the
// waiter and, for a receive of a small T, the buffer the completing sender constructs the value in. The
// thread that completes the operation then touches one line of the blocked thread's stack, and the blocked
// thread reads back one line.
template <class T>
struct alignas(64) wait_frame {
    static constexpr bool inline_value = sizeof(T) <= 64;
    chan_parker parker;
    chan_waiter waiter;
    alignas(T) unsigned char value[inline_value ? sizeof(T) : 1];
};

template <class T>
class chan_state final : public chan_core {
    static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                  "iterlock::chan<T> requires T to be nothrow move constructible and nothrow destructible");

  public:
    explicit chan_state(std::size_t capacity) : chan_core(capacity), ring_(capacity) {}

    op_status try_send_erased(void* src, bool locked, wake_list& wakes) noexcept override {
        return try_send(*static_cast<T*>(src), locked, wakes);
    }
    op_status try_recv_erased(void* dst, bool locked, wake_list& wakes) noexcept override {
        return try_recv(dst, locked, wakes);
    }

    // Non-blocking send: ok (src moved from), closed (src untouched), would_block (src untouched).
    op_status try_send(T& src, bool locked, wake_list& wakes) noexcept {
        if (!buffered()) return rendezvous_try_send(src, locked, wakes);
        op_status const st = ring_.try_push(src);
        if (st == op_status::ok) notify_one(/*other_send=*/false, locked, wakes);
        return st;
    }

    // Non-blocking receive into raw storage `dst`: ok (a T constructed there), closed, would_block.
    op_status try_recv(void* dst, bool locked, wake_list& wakes) noexcept {
        if (!buffered()) return rendezvous_try_recv(dst, locked, wakes);
        op_status const st = ring_.try_pop(dst);
        if (st == op_status::ok) notify_one(/*other_send=*/true, locked, wakes);
        return st;
    }

    // Blocking send. ok: sent (src moved from); closed: channel closed before a receiver took it;
    // would_block: `timed` and the deadline passed. src is untouched unless ok.
    op_status send(T& src, bool timed, chan_clock::time_point deadline) noexcept {
        if (!buffered()) return rendezvous_block(/*send=*/true, &src, timed, deadline);
        return ring_block(/*send=*/true, &src, timed, deadline);
    }

    // Blocking receive into raw storage `dst`. ok / closed (closed and drained) / would_block (deadline).
    op_status recv(void* dst, bool timed, chan_clock::time_point deadline) noexcept {
        if (!buffered()) return rendezvous_block(/*send=*/false, dst, timed, deadline);
        return ring_block(/*send=*/false, dst, timed, deadline);
    }

    // Closes the channel and wakes every blocked sender (which then fail) and receiver (which then drain
    // or see closed). Returns false if it was already closed.
    bool close() noexcept {
        wake_list wakes;
        lock_.lock();
        if (closed_.load(std::memory_order_relaxed)) {
            lock_.unlock();
            return false;
        }
        closed_.store(true, std::memory_order_release);
        if (buffered()) ring_.mark_closed();
        unprotected_release_all(wakes);
        lock_.unlock();
        wakes.signal_all();
        return true;
    }

    std::size_t size() const noexcept { return buffered() ? ring_.size() : 0; }

    // Debug: every invariant stated in chan_core.hpp and chan_ring.hpp. Requires: no operation in flight.
    bool check_invariants() noexcept {
        lock_.lock();
        bool ok = unprotected_check();
        if (buffered()) {
            ok = ok && ring_.check();
        }
        lock_.unlock();
        return ok;
    }

  private:
    // Requires: lock_ held unless !locked (then it is taken here). Go: chansend's recvq path.
    op_status rendezvous_try_send(T& src, bool locked, wake_list& wakes) noexcept {
        if (!locked) {
            // Fast fail without the lock, as Go's chansend: read the queue before the closed flag; closed
            // is monotonic, so "no receiver and not closed" held at the instant of the first load.
            if (recvq_.size_hint() == 0 && !closed_.load(std::memory_order_acquire))
                return op_status::would_block;
            lock_.lock();
        }
        op_status st = op_status::would_block;
        if (closed_.load(std::memory_order_relaxed)) {
            st = op_status::closed;
        } else {
            std::size_t dropped = 0;
            if (chan_waiter* r = recvq_.unprotected_dequeue_claim(dropped)) {
                ::new (r->elem) T(std::move(src));
                r->transferred = true;
                wakes.push(r);
                st = op_status::ok;
            }
        }
        if (!locked) lock_.unlock();
        return st;
    }

    // Requires: lock_ held unless !locked. Go: chanrecv's sendq path.
    op_status rendezvous_try_recv(void* dst, bool locked, wake_list& wakes) noexcept {
        if (!locked) {
            if (sendq_.size_hint() == 0 && !closed_.load(std::memory_order_acquire))
                return op_status::would_block;
            lock_.lock();
        }
        op_status st = op_status::would_block;
        std::size_t dropped = 0;
        if (chan_waiter* s = sendq_.unprotected_dequeue_claim(dropped)) {
            ::new (dst) T(std::move(*static_cast<T*>(s->elem)));
            s->transferred = true;
            wakes.push(s);
            st = op_status::ok;
        } else if (closed_.load(std::memory_order_relaxed)) {
            st = op_status::closed;
        }
        if (!locked) lock_.unlock();
        return st;
    }

    op_status rendezvous_block(bool send, void* elem, bool timed, chan_clock::time_point deadline) noexcept {
        wake_list wakes;
        lock_.lock();
        op_status st = send ? rendezvous_try_send(*static_cast<T*>(elem), true, wakes)
                            : rendezvous_try_recv(elem, true, wakes);
        if (st != op_status::would_block || (timed && chan_clock::now() >= deadline)) {
            lock_.unlock();
            wakes.signal_all();
            return st;
        }
        wait_frame<T> f;
        chan_parker& parker = f.parker;
        chan_waiter& w = f.waiter;
        bool const via_frame = wait_frame<T>::inline_value && !send;
        w.parker = &parker;
        w.elem = via_frame ? static_cast<void*>(f.value) : elem;
        queue_of(send).unprotected_push_back(&w);
        lock_.unlock();
        if (!parker.wait(timed, deadline)) {
            if (parker.try_abandon()) {
                lock_.lock();
                if (w.linked) queue_of(send).unprotected_remove(&w);
                lock_.unlock();
                return op_status::would_block;
            }
            parker.wait(false, {});  // claimed meanwhile: the claimer is about to signal
        }
        if (!w.transferred) return op_status::closed;
        if (via_frame) {
            T* v = std::launder(reinterpret_cast<T*>(f.value));
            ::new (elem) T(std::move(*v));
            v->~T();
        }
        return op_status::ok;
    }

    op_status ring_block(bool send, void* elem, bool timed, chan_clock::time_point deadline) noexcept {
        auto attempt = [&](bool locked, wake_list& wakes) {
            return send ? try_send(*static_cast<T*>(elem), locked, wakes) : try_recv(elem, locked, wakes);
        };
        backoff b;
        for (;;) {
            {
                wake_list wakes;
                op_status const st = attempt(false, wakes);
                if (st != op_status::would_block) return st;
            }
            if (timed && chan_clock::now() >= deadline) return op_status::would_block;
            if (!b.done()) {
                b.snooze();
                continue;
            }
            wait_frame<T> f;
            chan_parker& parker = f.parker;
            chan_waiter& w = f.waiter;
            w.parker = &parker;
            wake_list wakes;
            lock_.lock();
            unprotected_announce(send);
            op_status const st = attempt(true, wakes);
            if (st != op_status::would_block) {
                unprotected_retract(send);
                lock_.unlock();
                wakes.signal_all();
                return st;
            }
            unprotected_link(&w, send);
            lock_.unlock();
            if (!parker.wait(timed, deadline)) {
                if (parker.try_abandon()) {
                    lock_.lock();
                    unprotected_unlink(&w, send);
                    lock_.unlock();
                    return op_status::would_block;
                }
                parker.wait(false, {});
            }
            // Notified (the ring changed or the channel closed): the claimer unlinked us; retry at once.
        }
    }

    chan_ring<T> ring_;
};

}  // namespace iterlock::detail
