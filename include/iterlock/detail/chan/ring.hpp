// iterlock/detail/chan/ring.hpp: the buffer of a buffered channel, a bounded lock-free MPMC ring (Vyukov's
// sequenced slots; the lap and close-mark encoding follows the array flavour of Rust's crossbeam-channel).
//
// Owns: iterlock::detail::chan_ring<T>, iterlock::detail::op_status.
// Invariants: each slot's stamp is p, p + 1 or p + one_lap_ for the position p it serves next (free, full,
//       taken; listed below); tail_'s close mark is set once and never cleared; head_/tail_ change only by
//       CAS. It knows nothing of waiting: chan_state calls it and parks threads around it.
//
// Positions. `head_` and `tail_` are position words `lap | index`, with `index` in [0, cap) in the bits below
// `mark_bit_` and the lap count above it (`one_lap_ = 2 * mark_bit_`); going past index cap - 1 moves to
// index 0 of the next lap. `tail_` also carries the close mark:
//
//     tail_:  [ lap ......... | M | index ]      M = mark_bit_: set once by close(), never cleared
//     head_:  [ lap ......... | 0 | index ]
//
// Each slot has a stamp. Invariants (per slot at index i, for the position p = lap | i it serves next):
//   stamp == p            the slot is free for the sender that reserves position p
//   stamp == p + 1        the slot holds the value sent at position p, for the receiver that reserves p
//   stamp == p + one_lap_ after that receiver took the value: free for position p + one_lap_
// A sender reserves p by a CAS of tail_ from p (unmarked) to next(p), then writes and publishes the stamp;
// a receiver reserves p by a CAS of head_, moves the value out and publishes the next lap's stamp. Between
// the CAS and the stamp store a slot is "in flight"; the other side waits for it with a bounded backoff
// that ends in yields (the in-flight window is a move construction, never a wait).
//
// Memory order: the head_/tail_ CASes are sequentially consistent, and so are the loads of the opposite
// index that decide "full"/"empty". chan_state pairs them with its waiter counts (Dekker style): a thread
// that announces itself as a waiter and then finds the ring empty is guaranteed to be seen by the next
// sender's check of the count. Stamps are release/acquire (they hand over the value).
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "iterlock/detail/chan/park.hpp"

namespace iterlock::detail {

enum class op_status : unsigned char {
    ok,           // the value moved
    closed,       // send: the channel is closed; receive: closed and drained
    would_block,  // full / empty / no counterpart (or, from a blocking call, the deadline passed)
};

template <class T>
class chan_ring {
  public:
    // The largest capacity: the slot array must fit in PTRDIFF_MAX bytes, as any C++ array. (The position
    // encoding would allow up to 2^62 - 1; a slot is at least 16 bytes, so this bound is the tighter one.)
    static constexpr std::size_t max_capacity() noexcept { return PTRDIFF_MAX / sizeof(slot); }

    // A capacity of 0 builds an unused ring. Throws std::length_error if cap > max_capacity() (checked before
    // anything is computed from it), std::bad_alloc if the slots cannot be allocated.
    explicit chan_ring(std::size_t cap)
        : cap_(checked_capacity(cap)),
          mark_bit_(std::bit_ceil(cap + 1)),
          one_lap_(mark_bit_ << 1),
          slots_(new slot[cap]) {
        static_assert(max_capacity() < (std::size_t{1} << 62), "the lap bits above the mark bit must fit");
        // Relaxed: no other thread can see the ring yet; whatever hands the channel to them publishes these
        // stores.
        for (std::size_t i = 0; i < cap; ++i) slots_[i].stamp.store(i, std::memory_order_relaxed);
    }
    chan_ring(const chan_ring&) = delete;
    chan_ring& operator=(const chan_ring&) = delete;

    // Destroys the values still buffered. Requires: no concurrent access.
    ~chan_ring() {
        // Relaxed (here and below): no concurrent access, so whatever ended the other threads' use ordered
        // their stores.
        std::size_t pos = head_.load(std::memory_order_relaxed);
        std::size_t const end = tail_.load(std::memory_order_relaxed) & ~mark_bit_;
        while (pos != end) {
            slot& s = slots_[pos & (mark_bit_ - 1)];
            if (s.stamp.load(std::memory_order_relaxed) == pos + 1) s.value()->~T();
            pos = next(pos);
        }
    }

    std::size_t capacity() const noexcept { return cap_; }

    // Moves `src` into the ring. ok: moved; closed: the mark is set (src untouched); would_block: full.
    // Lock-free except that it waits (bounded backoff, then yields) for a receiver in flight on the slot.
    op_status try_push(T& src) noexcept {
        return push_with([&](void* at) noexcept { ::new (at) T(std::move(src)); });
    }
    // The same with a copy of `src` made in the slot (no temporary). Only for a T whose copy cannot throw:
    // a reserved slot must be filled.
    op_status try_push_copy(const T& src) noexcept requires std::is_nothrow_copy_constructible_v<T> {
        return push_with([&](void* at) noexcept { ::new (at) T(src); });
    }

  private:
    // The push protocol; `construct(storage)` builds the value in the reserved slot and must not throw.
    template <class Construct>
    op_status push_with(Construct&& construct) noexcept {
        backoff b;
        // Relaxed: only a first guess; the CAS below checks it, and the stamp's acquire load orders the slot.
        std::size_t tail = tail_.load(std::memory_order_relaxed);
        for (;;) {
            if (tail & mark_bit_) return op_status::closed;
            slot& s = slots_[tail & (mark_bit_ - 1)];
            // Acquire: pairs with try_pop's release store of the next lap's stamp, so the previous value's
            // move-out and destruction happen before this sender constructs into the slot.
            std::size_t const stamp = s.stamp.load(std::memory_order_acquire);
            if (stamp == tail) {
                if (tail_.compare_exchange_weak(
                        tail, next(tail), std::memory_order_seq_cst,
                        std::memory_order_relaxed)) {  // failure: `tail` is only a new guess
                    construct(static_cast<void*>(s.storage));
                    // Release: pairs with try_pop's acquire load of the stamp; publishes the value
                    // constructed just above.
                    s.stamp.store(tail + 1, std::memory_order_release);
                    return op_status::ok;
                }
                continue;  // `tail` was reloaded by the failed CAS
            }
            if (stamp + one_lap_ == tail + 1) {
                // The slot still holds the previous lap's value: full, unless a receiver has reserved it.
                std::size_t const head = head_.load(std::memory_order_seq_cst);
                if (head + one_lap_ == tail) return op_status::would_block;
            }
            // A receiver is in flight on this slot, or another sender moved tail_ on.
            b.snooze();
            // Relaxed: a new guess, checked as at the top of the loop.
            tail = tail_.load(std::memory_order_relaxed);
        }
    }

  public:
    // Moves the oldest value into raw storage `dst`. ok: constructed there; closed: marked and drained;
    // would_block: empty. Waits (bounded backoff, then yields) for a sender in flight on the head slot, so
    // an "empty" answer never skips a value whose send was reserved earlier.
    op_status try_pop(void* dst) noexcept {
        backoff b;
        // Relaxed: only a first guess; the CAS below checks it, and the stamp's acquire load orders the slot.
        std::size_t head = head_.load(std::memory_order_relaxed);
        for (;;) {
            slot& s = slots_[head & (mark_bit_ - 1)];
            // Acquire: pairs with try_push's release store of `tail + 1`, so the sent value is visible before
            // it is moved out.
            std::size_t const stamp = s.stamp.load(std::memory_order_acquire);
            if (stamp == head + 1) {
                if (head_.compare_exchange_weak(
                        head, next(head), std::memory_order_seq_cst,
                        std::memory_order_relaxed)) {  // failure: `head` is only a new guess
                    T* v = s.value();
                    ::new (dst) T(std::move(*v));
                    v->~T();
                    // Release: pairs with try_push's acquire load of the stamp; the move-out and destruction
                    // above happen before the next lap's sender reuses the storage.
                    s.stamp.store(head + one_lap_, std::memory_order_release);
                    return op_status::ok;
                }
                continue;
            }
            if (stamp == head) {
                std::size_t const tail = tail_.load(std::memory_order_seq_cst);
                if ((tail & ~mark_bit_) == head) {
                    return (tail & mark_bit_) ? op_status::closed : op_status::would_block;
                }
            }
            // A sender is in flight on this slot, or another receiver moved head_ on.
            b.snooze();
            // Relaxed: a new guess, checked as at the top of the loop.
            head = head_.load(std::memory_order_relaxed);
        }
    }

    // Sets the close mark; later pushes fail, pops drain and then report closed. Idempotent.
    void mark_closed() noexcept { tail_.fetch_or(mark_bit_, std::memory_order_seq_cst); }

    // Values buffered (reserved sends included), consistent at one instant between its loads.
    std::size_t size() const noexcept {
        for (;;) {
            std::size_t tail = tail_.load(std::memory_order_seq_cst);
            std::size_t const head = head_.load(std::memory_order_seq_cst);
            if (tail_.load(std::memory_order_seq_cst) != tail) continue;
            tail &= ~mark_bit_;
            std::size_t const hix = head & (mark_bit_ - 1);
            std::size_t const tix = tail & (mark_bit_ - 1);
            if (hix < tix) return tix - hix;
            if (hix > tix) return cap_ - hix + tix;
            return tail == head ? 0 : cap_;
        }
    }

    // Debug check of the stamp invariants. Requires: quiescent (no operation in flight).
    bool check() const noexcept {
        // Relaxed (here and below): requires quiescence, so no operation's stores are still unordered with
        // this thread.
        std::size_t const head = head_.load(std::memory_order_relaxed);
        std::size_t const tail = tail_.load(std::memory_order_relaxed) & ~mark_bit_;
        if ((head & mark_bit_) || (head & (mark_bit_ - 1)) >= cap_ || (tail & (mark_bit_ - 1)) >= cap_)
            return false;
        std::size_t n = 0;
        for (std::size_t pos = head; pos != tail; pos = next(pos)) {
            if (++n > cap_) return false;
            if (slots_[pos & (mark_bit_ - 1)].stamp.load(std::memory_order_relaxed) != pos + 1) return false;
        }
        // Every slot outside [head, tail) is free for the position it serves next.
        for (std::size_t k = 0, pos = tail; k < cap_ - n; ++k, pos = next(pos)) {
            if (slots_[pos & (mark_bit_ - 1)].stamp.load(std::memory_order_relaxed) != pos) return false;
        }
        return n == size();
    }

  private:
    static std::size_t checked_capacity(std::size_t cap) {
        if (cap > max_capacity()) {
            throw std::length_error("iterlock::chan: capacity " + std::to_string(cap) +
                                    " exceeds chan<T>::max_capacity() = " + std::to_string(max_capacity()) +
                                    " for this element type");
        }
        return cap;
    }

    struct slot {
        atomic<std::size_t> stamp{0};
        alignas(T) unsigned char storage[sizeof(T)];
        T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
    };

    std::size_t next(std::size_t pos) const noexcept {
        return (pos & (mark_bit_ - 1)) + 1 < cap_ ? pos + 1 : (pos & ~(one_lap_ - 1)) + one_lap_;
    }

    std::size_t const cap_;
    std::size_t const mark_bit_;
    std::size_t const one_lap_;
    std::unique_ptr<slot[]> slots_;
    alignas(64) atomic<std::size_t> head_{0};
    alignas(64) atomic<std::size_t> tail_{0};
    char pad_[64 - sizeof(std::atomic<std::size_t>)] = {};
};

}  // namespace iterlock::detail
