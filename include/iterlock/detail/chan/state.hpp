// iterlock/detail/chan/state.hpp: the shared state behind a chan<T> handle: chan_core plus the element
// type, the ring (buffered kind) and the blocking send/receive/close algorithms (Go: chansend, chanrecv,
// closechan).
//
// Owns: iterlock::detail::chan_state<T>, iterlock::detail::wait_frame<T>.
// Invariants: a value is never both moved and reported as a timeout; T's move construction and destruction
//       are nothrow (static_assert), since values move while channel locks are held.
//
// Blocking, buffered kind: try the ring; on full/empty back off (a few spin rounds, a few yields) and try
// again; then lock, announce, try once more, link a waiter and park. A notified waiter retries from the top.
// Blocking, unbuffered kind: lock; complete a waiting counterpart if there is one (the hand-over slot's
// first, then the queue's), else park: in the hand-over slot if it is free and this side's queue is empty
// (a sender moves its value into the slot), otherwise by linking a waiter that carries the value (or the
// storage for it); a counterpart completes it, or close() fails it.
// Timeouts: a parked waiter that reaches its deadline abandons its parker (CAS); if a claimer won that race
// it waits for the claimer's signal and takes the outcome, so a value is never both moved and reported as a
// timeout. In the hand-over slot the same decision is made under the channel's lock.
//
// Requires of T: nothrow move construction and destruction. Values are moved while channel locks are held,
// so a throwing move could not be undone.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <thread>
#include <type_traits>

#include "iterlock/detail/chan/core.hpp"
#include "iterlock/detail/chan/park.hpp"
#include "iterlock/detail/chan/ring.hpp"
#include "iterlock/detail/chan/source.hpp"
#include "iterlock/detail/chan/waitq.hpp"

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

    // Whether an unbuffered channel of T can use the hand-over slot (chan/core.hpp): a receiver if T fits;
    // a sender if T also has a nothrow move assignment (to give the value back on close or timeout).
    static constexpr bool slot_fits = sizeof(T) <= slot_bytes && alignof(T) <= 16;
    static constexpr bool slot_fits_sender = slot_fits && std::is_nothrow_move_assignable_v<T>;

  public:
    // Throws std::length_error if capacity > chan_ring<T>::max_capacity(), std::bad_alloc.
    chan_state(std::size_t capacity, bool stream)
        : chan_core(capacity, &ops), stream_(stream), ring_(capacity) {}
    // Aborts if a thread is still blocked on the channel (rule C9); then destroys the buffered values.
    ~chan_state() { fail_if_blocked_at_destruction(); }

    // Non-blocking send: ok (src moved from), closed (src untouched), would_block (src untouched).
    op_status try_send(T& src, bool locked, wake_list& wakes) noexcept {
        if (!buffered()) return rendezvous_try_send(src, locked, wakes);
        op_status const st = ring_.try_push(src);
        if (st == op_status::ok) notify_one(/*other_send=*/false, locked, wakes);
        return st;
    }

    // Non-blocking send of a copy made in the buffer (no temporary): ok, would_block (full) or closed; wakes
    // a waiting receiver as a send does. Buffered kind only, and only for a T whose copy cannot throw
    // (chan::try_send(const T&) falls back to copying first). `locked`: the caller holds lock_ (a pull
    // source refilling in a receiver's last check, chan/source.hpp).
    op_status try_send_copy(const T& src, bool locked,
                            wake_list& wakes) noexcept requires std::is_nothrow_copy_constructible_v<T> {
        op_status const st = ring_.try_push_copy(src);
        if (st == op_status::ok) notify_one(/*other_send=*/false, locked, wakes);
        return st;
    }

    // Non-blocking receive into raw storage `dst`: ok (a T constructed there), closed, would_block. With a
    // source (chan/source.hpp), an empty ring is refilled from it first.
    op_status try_recv(void* dst, bool locked, wake_list& wakes) noexcept {
        if (!buffered()) return rendezvous_try_recv(dst, locked, wakes);
        op_status st = ring_.try_pop(dst);
        if (st == op_status::would_block && source_ != nullptr) [[unlikely]] {
            source_->refill(*this, locked, wakes);
            st = ring_.try_pop(dst);
        }
        if (st == op_status::ok) notify_one(/*other_send=*/true, locked, wakes);
        return st;
    }

    // ---- a pull source (chan/source.hpp) -----------------------------------------------------------------
    // Installs the source. Requires: buffered, T nothrow copy constructible, and no other thread uses the
    // channel yet.
    void attach_source(std::unique_ptr<chan_source<T>> s) noexcept { source_ = std::move(s); }
    // A source ends the channel (as close(); `locked` as in chan_source::refill). False if it was closed.
    bool source_close(bool locked, wake_list& wakes) noexcept {
        if (!locked) return close();
        return unprotected_close(wakes);
    }
    // A producer of a source tells a parked receiver that something is ready: wakes one if any announced
    // itself (one load of the count otherwise). The caller orders its publication before this load (see
    // chan/source.hpp). Takes the channel's lock only when a receiver waits.
    ITERLOCK_DETAIL_NOINLINE void wake_receiver() noexcept {
        wake_list wakes;
        notify_one(/*other_send=*/false, /*locked=*/false, wakes);
        wakes.signal_all();
    }
    // Whether a receiver announced itself (wake_receiver's test, for a caller that inlines it).
    bool receiver_announced() const noexcept {
        // seq_cst: as notify_one()'s load (the caller's fence orders its publication before it).
        return recv_waiters_.load(std::memory_order_seq_cst) != 0;
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
        bool const closed_now = unprotected_close(wakes);
        lock_.unlock();
        wakes.signal_all();
        return closed_now;
    }

    std::size_t size() const noexcept { return buffered() ? ring_.size() : 0; }

    // Debug: every invariant stated in chan/core.hpp and chan/ring.hpp. Requires: no operation in flight.
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
    // The fast fail of a rendezvous try without the lock, as Go's chansend and chanrecv: false (would
    // block) if no partner waits, in the slot or in the partners' queue, and the channel is open; else takes
    // lock_ and returns true. The partners are read before the closed flag; closed is monotonic, so "no
    // partner and not closed" held at one instant. The slot is read before the queue: a party takes the slot
    // only while the queue is empty, so "no partner in the slot, then queue empty" proves an instant with
    // no partner parked. Acquire (slot_state_ and closed_): pair with the release stores that change them
    // (unprotected_complete_slot's exchange, slot_wait's final store, close()); a fast fail only needs one
    // instant with no partner and the channel open, which the load order gives.
    bool lock_unless_no_partner(bool send) noexcept {
        if (!slot_waiting(slot_state_.load(std::memory_order_acquire), !send) &&
            queue_of(!send).empty_hint() && !closed_.load(std::memory_order_acquire))
            return false;
        lock_.lock();
        return true;
    }

    // close() with lock_ held: the waiters to wake go to `wakes`. False if it was closed already.
    bool unprotected_close(wake_list& wakes) noexcept {
        // Relaxed: closed_ is written only under lock_, which this thread holds.
        if (closed_.load(std::memory_order_relaxed)) return false;
        // Release: pairs with the lock-free acquire loads of closed_ in the fast-fail paths
        // (rendezvous_try_send/recv), so a thread that sees closed also sees what the closer did before.
        closed_.store(true, std::memory_order_release);
        if (buffered()) ring_.mark_closed();
        unprotected_release_all(wakes);
        return true;
    }

    // Requires: lock_ held unless !locked (then it is taken here). Go: chansend's recvq path.
    op_status rendezvous_try_send(T& src, bool locked, wake_list& wakes) noexcept {
        if (!locked && !lock_unless_no_partner(true)) return op_status::would_block;
        op_status st = op_status::would_block;
        // Relaxed: under lock_ (closed_ is written under it).
        if (closed_.load(std::memory_order_relaxed)) {
            st = op_status::closed;
        } else if (unprotected_serve_slot(src)) {
            st = op_status::ok;
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
        if (!locked && !lock_unless_no_partner(false)) return op_status::would_block;
        op_status st = op_status::would_block;
        std::size_t dropped = 0;
        if (unprotected_take_from_slot(dst)) {
            st = op_status::ok;
        } else if (chan_waiter* s = sendq_.unprotected_dequeue_claim(dropped)) {
            ::new (dst) T(std::move(*static_cast<T*>(s->elem)));
            s->transferred = true;
            wakes.push(s);
            st = op_status::ok;
        } else if (closed_.load(std::memory_order_relaxed)) {  // relaxed: under lock_
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
        // "Free" is read with acquire: the previous party released the slot (and finished with its value)
        // without the lock.
        if constexpr (slot_fits) {
            // Acquire: pairs with slot_wait()'s final release store of slot_free (the previous party finished
            // with the slot without the lock).
            if (!send && slot_state_.load(std::memory_order_acquire) == slot_free &&
                recvq_.unprotected_empty()) {
                // Relaxed: under lock_; a counterpart reads the slot state under lock_ (whose release/acquire
                // orders it).
                slot_state_.store(slot_recv_polling, std::memory_order_relaxed);
                lock_.unlock();
                return slot_wait(false, elem, timed, deadline);
            }
        }
        if constexpr (slot_fits_sender) {
            // Acquire: as above (pairs with slot_wait()'s release of the slot).
            if (send && slot_state_.load(std::memory_order_acquire) == slot_free &&
                sendq_.unprotected_empty()) {
                ::new (static_cast<void*>(slot_value_)) T(std::move(*static_cast<T*>(elem)));
                // Relaxed: under lock_; the value moved in just above is published to the receiver by lock_'s
                // release/acquire.
                slot_state_.store(slot_send_polling, std::memory_order_relaxed);
                lock_.unlock();
                return slot_wait(true, elem, timed, deadline);
            }
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

    T* slot_object() noexcept { return std::launder(reinterpret_cast<T*>(slot_value_)); }

    // Requires: lock_ held, channel open. Completes the receiver parked in the hand-over slot, if any; it
    // came before every queued receiver.
    bool unprotected_serve_slot(T& src) noexcept {
        if constexpr (slot_fits) {
            // Relaxed: under lock_, which orders the parking party's stores to the slot.
            if (slot_waiting(slot_state_.load(std::memory_order_relaxed), false)) {
                ::new (static_cast<void*>(slot_value_)) T(std::move(src));
                unprotected_complete_slot(slot_recv_value);
                return true;
            }
        }
        return false;
    }

    // Requires: lock_ held. Takes the value of the sender parked in the hand-over slot, if any; it came
    // before every queued sender.
    bool unprotected_take_from_slot(void* dst) noexcept {
        if constexpr (slot_fits_sender) {
            // Relaxed: under lock_ (the parked sender moved its value in under it).
            if (slot_waiting(slot_state_.load(std::memory_order_relaxed), true)) {
                T* v = slot_object();
                ::new (dst) T(std::move(*v));
                v->~T();
                unprotected_complete_slot(slot_send_taken);
                return true;
            }
        }
        return false;
    }

    // A plain operation parked in the hand-over slot (a receiver, or a sender whose value was moved into
    // the slot from *elem): polls slot_state_ (the channel's first line), yields, then sleeps on it as a
    // futex. Same budgets as chan_parker::wait. On timeout it frees the slot under the lock (a sender
    // takes its value back into *elem first).
    op_status slot_wait(bool send, void* elem, bool timed, chan_clock::time_point deadline) noexcept {
        std::uint32_t const polling = slot_polling(send);
        // Acquire (the polls, the CAS and the reloads below): pair with unprotected_complete_slot()'s release
        // exchange, which publishes the counterpart's value (planted as relaxed there,
        // memory_model.C4_ChannelDeliversEachValueExactlyOnce reports a data race).
        std::uint32_t s = slot_state_.load(std::memory_order_acquire);
        for (int i = 0; i < ITERLOCK_CHAN_SPIN_POLLS && slot_waiting(s, send); ++i) {
            spin_pause();
            s = slot_state_.load(std::memory_order_acquire);
        }
        for (int i = 0; i < ITERLOCK_CHAN_YIELD_POLLS && slot_waiting(s, send); ++i) {
            thread_yield();
            s = slot_state_.load(std::memory_order_acquire);
        }
        while (slot_waiting(s, send)) {
            if (s == polling &&
                !slot_state_.compare_exchange_weak(s, slot_sleeping(send), std::memory_order_acquire,
                                                   std::memory_order_acquire))
                continue;  // `s` reloaded: completed meanwhile, or a spurious CAS failure
            if (timed && chan_clock::now() >= deadline) {
                lock_.lock();
                s = slot_state_.load(std::memory_order_acquire);
                if (slot_waiting(s, send)) {
                    if (send) give_back(elem);
                    // Relaxed: under lock_, which the next party takes before reading the slot as free.
                    slot_state_.store(slot_free, std::memory_order_relaxed);
                    lock_.unlock();
                    return op_status::would_block;
                }
                lock_.unlock();
                chan_probes::slot_deadline_lost.hit();
                break;  // completed just before the deadline: take the outcome
            }
            futex_wait(&slot_state_, slot_sleeping(send), timed, deadline);
            s = slot_state_.load(std::memory_order_acquire);
        }
        op_status st = op_status::ok;
        if (s == slot_recv_value) {
            T* v = slot_object();
            ::new (elem) T(std::move(*v));
            v->~T();
        } else if (s == slot_send_closed) {
            give_back(elem);
            st = op_status::closed;
        } else if (s == slot_recv_closed) {
            st = op_status::closed;
        }
        // Release: pairs with the acquire load of slot_free in rendezvous_block(): this party's last use of
        // the slot's value happens before the next party moves a value in. (The memory-model check cannot see
        // this one: the slot's bytes are plain memory to Relacy.)
        slot_state_.store(slot_free, std::memory_order_release);  // hands the slot to the next party
        return st;
    }

    // A parked sender's value goes back from the slot into the caller's object.
    void give_back(void* elem) noexcept {
        if constexpr (slot_fits_sender) {
            T* v = slot_object();
            *static_cast<T*>(elem) = std::move(*v);
            v->~T();
        }
    }

    static op_status ops_try_send(chan_core* ch, void* src, bool locked, wake_list& wakes) noexcept {
        return static_cast<chan_state*>(ch)->try_send(*static_cast<T*>(src), locked, wakes);
    }
    static op_status ops_try_recv(chan_core* ch, void* dst, bool locked, wake_list& wakes) noexcept {
        return static_cast<chan_state*>(ch)->try_recv(dst, locked, wakes);
    }
    static constexpr chan_ops ops{&ops_try_send, &ops_try_recv};

    op_status ring_block(bool send, void* elem, bool timed, chan_clock::time_point deadline) noexcept {
        auto attempt = [&](bool locked, wake_list& wakes) {
            return send ? try_send(*static_cast<T*>(elem), locked, wakes) : try_recv(elem, locked, wakes);
        };
        bool const adaptive = chan_spin_budget::max_ns != 0 && stream_;
        chan_spin_budget& budget = send ? send_spin_ : recv_spin_;
        std::int64_t blocked_at = 0;  // when an attempt first found the ring full (empty); 0: not yet
        std::int64_t arrived_at = 0;  // when the last notification was signalled; 0: none
        // A completed operation tells the budget how long its counterpart took (rule C6).
        auto finish = [&](op_status st) {
            if (adaptive && st == op_status::ok && blocked_at != 0)
                budget.observe((arrived_at != 0 ? arrived_at : chan_now_ns()) - blocked_at);
            return st;
        };
        backoff b;
        for (;;) {
            {
                wake_list wakes;
                op_status const st = attempt(false, wakes);
                if (st != op_status::would_block) return finish(st);
            }
            if (timed && chan_clock::now() >= deadline) return op_status::would_block;
            if (adaptive && blocked_at == 0) blocked_at = chan_now_ns();
            if (!b.spun()) {
                b.snooze();
                continue;
            }
            // The adaptive phase: poll while the channel's recent waits say the counterpart answers soon, one
            // poll per chan_spin_budget::poll_gap_ns, so that the line the counterpart writes next is not
            // pulled away from it at every pause (a stream then arrives in batches).
            if (adaptive && arrived_at == 0) {
                std::int64_t t = chan_now_ns();
                if (t - blocked_at < budget.get()) {
                    for (std::int64_t const until = t + chan_spin_budget::poll_gap_ns; t < until;
                         t = chan_now_ns())
                        spin_pause();
                    continue;
                }
            }
            if (!b.done()) {
                b.snooze();
                continue;
            }
            wait_frame<T> f;
            chan_parker& parker = f.parker;
            chan_waiter& w = f.waiter;
            w.parker = &parker;
            if (adaptive) parker.want_signal_time();
            wake_list wakes;
            lock_.lock();
            unprotected_announce(send);
            op_status const st = attempt(true, wakes);
            if (st != op_status::would_block) {
                unprotected_retract(send);
                lock_.unlock();
                wakes.signal_all();
                return finish(st);
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
            if (adaptive) arrived_at = parker.signalled_ns();
            // Notified (the ring changed or the channel closed): the claimer unlinked us; retry at once.
        }
    }

    bool const stream_;  // chan_wait::stream: blocked operations poll within the budgets below (C6)
    // Buffered kind in stream mode: how long a blocked receiver (sender) polls before it parks; each on
    // its own line, written only by operations that had to wait.
    alignas(64) chan_spin_budget recv_spin_;
    alignas(64) chan_spin_budget send_spin_;
    chan_ring<T> ring_;
    std::unique_ptr<chan_source<T>> source_;  // set before the channel is shared; read-only after
};

}  // namespace iterlock::detail
