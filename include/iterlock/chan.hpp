// iterlock/chan.hpp: Go's channels for C++ threads: the public channel handle, its result types and its
// contract (C1-C9).
//
// Owns: iterlock::chan<T>, iterlock::chan_closed, iterlock::chan_status, iterlock::recv_result<T>,
//       iterlock::detail::chan_access. `iterlock::select` lives in <iterlock/select.hpp>, which this header
//       includes (at its end).
// Invariants: rules C1-C9 below; a chan<T> is a handle with shared ownership of one channel, which lives
//       until its last handle goes; the default-constructed handle is the nil channel.
//
// A chan<T> is a copyable handle with shared ownership of one channel, like a Go channel value: copies
// refer to the same channel, the channel lives until the last handle goes. A default-constructed handle is
// the nil channel: select never chooses a case on it (Go's idiom for switching a case off); any direct
// operation on it throws std::logic_error (where Go would block forever or panic).
//
// Contract. Numbered so tests and docs/CHANNELS.md can refer to them.
//  C1  Unbuffered (capacity 0): a send completes only when a receiver takes the value, and a receive only
//      when a sender hands one over (rendezvous). try_send/try_recv succeed only against a waiting partner.
//  C2  Buffered (capacity N > 0): a send completes once its value is in the buffer; it blocks while the
//      buffer holds N values. A receive blocks while it is empty.
//  C3  FIFO: values leave a channel in the order their sends completed; in particular the values of one
//      sending thread are received in the order it sent them, by whichever receivers take them.
//  C4  Exactly once: every value whose send returned normally (or whose try/timed send returned true) is
//      received exactly once or still sits in the buffer; no other value is ever received. A send that
//      fails (closed, full, timeout) leaves its argument with the value it had. (A sender parked on an
//      unbuffered channel may have its value moved into the channel while it waits; a failure moves it
//      back, by move assignment.)
//  C5  close(): afterwards every send (blocked or new) throws chan_closed; receives drain the values still
//      buffered, then report "closed" (recv() returns std::nullopt) forever. Closing twice throws
//      chan_closed. Every blocked sender and receiver is woken.
//  C6  Blocking: a blocked thread spins for at most a few microseconds (bounded backoff ending in a few
//      yields) and then sleeps on a futex; it is woken by the operation that completes or unblocks it.
//      A buffered channel made with chan_wait::stream also polls, once a microsecond, for as long as the
//      channel's recent waits lasted (twice the latest, at most 50 us) before it sleeps: a steady stream
//      is then received without a sleep and a wake per value, at the price of the CPU it polls with.
//  C7  Timeouts (send_for/recv_for/..._until): the operation either completes (C4 applies) or reports a
//      timeout with no effect on the channel; never both.
//  C8  Progress: operations on a buffered channel are lock-free while they neither block nor wake anybody
//      (one CAS on the ring plus a load); a per-channel lock is taken only to park or wake, or for any
//      operation on an unbuffered channel. Waiting for the other side of a slot that is being written or
//      read (a move construction in progress) uses the bounded backoff, then yields.
//  C9  Lifetime: a thread uses a channel through a handle that lives for the whole call (its own copy,
//      normally). Destroying the last handle while a thread is blocked on the channel (in send, recv, a timed
//      operation, the range-for or select, reached through a reference or pointer to that handle) is a fatal
//      error: the destructor aborts with "fatal error: iterlock::chan: the last handle to a channel was
//      destroyed while a thread is blocked on it ...". (Go cannot express this: its collector keeps a
//      channel alive while a goroutine waits on it. Here the blocked thread could never be woken, and
//      would touch freed memory if it were; docs/CHANNELS.md says why it is not woken with an error.) A
//      call that has not parked yet when its handle dies is a use after free, as for any object.
//
// Requires of T: a complete object type, nothrow move constructible and nothrow destructible (values move
// under channel locks). Copies are made before any channel state changes, so a throwing copy constructor
// leaves the channel untouched.
//
// Complexity: every operation is O(1) apart from waiting; close() is O(number of blocked threads); the
// destructor of the last handle is O(values still buffered) plus one lock acquisition (the C9 check). A
// buffered channel allocates its N slots once; a capacity above max_capacity() throws std::length_error.
//
// FAQ
//  - Why a handle and not a sender/receiver split? Go code, select over mixed directions and the change
//    feeds planned for the map all pass one channel value around; close() ownership stays a convention, as
//    in Go.
//  - Why does send on a closed channel throw? Go panics: it is a bug in close ownership, not a condition
//    to handle. try_send throws too (Go's `select { case c <- v: default: }` panics as well).
//  - Can T be move-only? Yes (std::unique_ptr<U> is fine); use send(std::move(v)).
#pragma once

#include <chrono>
#include <cstddef>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "iterlock/detail/chan/park.hpp"
#include "iterlock/detail/chan/state.hpp"

namespace iterlock {

// Thrown by a send on a closed channel and by closing a closed channel (Go: panic).
class chan_closed : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

// Outcome of a non-blocking or timed operation.
enum class chan_status : unsigned char {
    ok,           // the value moved
    closed,       // receive only: the channel is closed and drained
    would_block,  // try_*: nothing to receive / no room (or no partner on an unbuffered channel)
    timeout,      // *_for / *_until: the deadline passed first
};

// Result of try_recv / recv_for / recv_until: a status, and the value when the status is ok.
template <class T>
class recv_result {
  public:
    recv_result(chan_status s) noexcept : status_(s) {}
    recv_result(std::optional<T>&& v) noexcept : value_(std::move(v)), status_(chan_status::ok) {}

    chan_status status() const noexcept { return status_; }
    bool has_value() const noexcept { return value_.has_value(); }
    explicit operator bool() const noexcept { return has_value(); }
    bool closed() const noexcept { return status_ == chan_status::closed; }
    bool timed_out() const noexcept { return status_ == chan_status::timeout; }

    T& operator*() & noexcept { return *value_; }
    T&& operator*() && noexcept { return std::move(*value_); }
    T* operator->() noexcept { return &*value_; }
    // Throws std::bad_optional_access unless has_value().
    T& value() & { return value_.value(); }
    T&& value() && { return std::move(value_.value()); }
    std::optional<T>& as_optional() & noexcept { return value_; }

  private:
    std::optional<T> value_;
    chan_status status_;
};

namespace detail {
struct chan_access;
}

// How a blocked operation on a buffered channel waits (rule C6).
enum class chan_wait : unsigned char {
    sleep,   // a short bounded spin, then a futex sleep (the default; the least CPU while idle)
    stream,  // also polls while the channel's recent waits were short (at most 50 us): for a consumer of a
             // steady stream, such as a versioned_map feed, whose latency matters more than one core's time
};

template <class T>
class chan {
    static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T> && !std::is_array_v<T>,
                  "iterlock::chan<T>: T must be a non-const, non-array object type");
    static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                  "iterlock::chan<T>: T must be nothrow move constructible and nothrow destructible");

  public:
    using value_type = T;
    using clock = std::chrono::steady_clock;

    // The nil channel (see the header comment).
    chan() noexcept = default;
    // A channel with room for `capacity` values; 0 makes it unbuffered. Throws std::length_error, naming
    // both numbers, if capacity > max_capacity() (e.g. chan<int>(1 << 60), or a negative int converted to
    // size_t), and std::bad_alloc if the buffer cannot be allocated.
    // `wait` picks how a blocked operation on a buffered channel waits (C6; ignored when unbuffered).
    explicit chan(std::size_t capacity, chan_wait wait = chan_wait::sleep)
        : state_(std::make_shared<detail::chan_state<T>>(capacity, wait == chan_wait::stream)) {}

    // The largest capacity a chan<T> accepts: as many slots (a T and an 8-byte stamp each) as fit in
    // PTRDIFF_MAX bytes. Like vector::max_size(), a bound of the representation, not a promise of memory.
    static constexpr std::size_t max_capacity() noexcept { return detail::chan_ring<T>::max_capacity(); }

    // --- sending. All throw chan_closed if the channel is closed (C5). ---

    // Blocks until the value is in the buffer or taken by a receiver.
    void send(const T& v) const {
        T copy(v);
        send(std::move(copy));
    }
    void send(T&& v) const {
        if (state().send(v, false, {}) != detail::op_status::ok) throw_send_closed();
    }
    // Never blocks (beyond C8's in-flight wait). true: sent. false: no room / no receiver; `v` untouched.
    bool try_send(const T& v) const {
        if constexpr (std::is_nothrow_copy_constructible_v<T>) {
            if (state().buffered()) {  // copied straight into the buffer
                detail::wake_list wakes;
                return sent(state().try_send_copy(v, false, wakes));
            }
        }
        T copy(v);
        return try_send(std::move(copy));
    }
    bool try_send(T&& v) const {
        detail::wake_list wakes;
        return sent(state().try_send(v, false, wakes));
    }
    // Blocks until sent (true) or until the timeout passes (false; `v` untouched).
    template <class Rep, class Period>
    bool send_for(T&& v, std::chrono::duration<Rep, Period> timeout) const {
        return send_until(std::move(v), deadline_after(timeout));
    }
    template <class Rep, class Period>
    bool send_for(const T& v, std::chrono::duration<Rep, Period> timeout) const {
        T copy(v);
        return send_until(std::move(copy), deadline_after(timeout));
    }
    template <class Clock, class Duration>
    bool send_until(T&& v, std::chrono::time_point<Clock, Duration> deadline) const {
        return sent(state().send(v, true, to_steady(deadline)));
    }
    template <class Clock, class Duration>
    bool send_until(const T& v, std::chrono::time_point<Clock, Duration> deadline) const {
        T copy(v);
        return send_until(std::move(copy), deadline);
    }

    // --- receiving ---

    // Blocks until a value arrives (returned) or the channel is closed and drained (std::nullopt).
    std::optional<T> recv() const {
        raw_slot slot;
        if (state().recv(slot.ptr(), false, {}) != detail::op_status::ok) return std::nullopt;
        return slot.take();
    }
    // Never blocks (beyond C8's in-flight wait): ok with a value, closed, or would_block.
    recv_result<T> try_recv() const {
        raw_slot slot;
        detail::wake_list wakes;
        return finish(state().try_recv(slot.ptr(), false, wakes), slot, chan_status::would_block);
    }
    // Blocks until a value arrives (ok), the channel is closed and drained (closed), or timeout.
    template <class Rep, class Period>
    recv_result<T> recv_for(std::chrono::duration<Rep, Period> timeout) const {
        return recv_until(deadline_after(timeout));
    }
    template <class Clock, class Duration>
    recv_result<T> recv_until(std::chrono::time_point<Clock, Duration> deadline) const {
        raw_slot slot;
        return finish(state().recv(slot.ptr(), true, to_steady(deadline)), slot, chan_status::timeout);
    }

    // --- closing and observing ---

    // Closes the channel (C5). Throws chan_closed if it is already closed.
    void close() const {
        if (!state().close()) {
            throw chan_closed(
                "iterlock::chan: close of a closed channel (close() must be called once, by the one owner "
                "that knows no more sends will happen)");
        }
    }
    // Values buffered now (0 for an unbuffered channel); a snapshot, stale as soon as it returns.
    std::size_t size() const { return state().size(); }
    std::size_t capacity() const { return state().capacity(); }

    // false for the nil channel.
    explicit operator bool() const noexcept { return state_ != nullptr; }
    // Handles are equal when they refer to the same channel (Go's channel comparison).
    friend bool operator==(const chan& a, const chan& b) noexcept { return a.state_ == b.state_; }

    // --- range-style consumption: for (auto& v : ch) receives until closed and drained ---

    class iterator {
      public:
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        using iterator_concept = std::input_iterator_tag;

        iterator() = default;
        T& operator*() const noexcept { return *cur_; }
        T* operator->() const noexcept { return &*cur_; }
        iterator& operator++() {
            cur_ = ch_->recv();
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return !it.cur_; }

      private:
        friend class chan;
        explicit iterator(const chan* ch) : ch_(ch) { ++*this; }
        const chan* ch_ = nullptr;
        mutable std::optional<T> cur_;
    };
    // Blocks for the first value. The handle must outlive the loop.
    iterator begin() const { return iterator(this); }
    std::default_sentinel_t end() const noexcept { return {}; }

  private:
    friend struct detail::chan_access;

    // Uninitialised storage a receive constructs into.
    struct raw_slot {
        alignas(T) unsigned char bytes[sizeof(T)];
        void* ptr() noexcept { return bytes; }
        std::optional<T> take() noexcept {
            T* v = std::launder(reinterpret_cast<T*>(bytes));
            std::optional<T> out(std::move(*v));
            v->~T();
            return out;
        }
    };

    static recv_result<T> finish(detail::op_status st, raw_slot& slot, chan_status blocked) noexcept {
        switch (st) {
            case detail::op_status::ok:
                return recv_result<T>(slot.take());
            case detail::op_status::closed:
                return recv_result<T>(chan_status::closed);
            default:
                return recv_result<T>(blocked);
        }
    }

    detail::chan_state<T>& state() const {
        if (!state_) {
            throw std::logic_error(
                "iterlock::chan: operation on a nil channel (default-constructed handle); construct it with "
                "a capacity, e.g. iterlock::chan<T>(0)");
        }
        return *state_;
    }

    [[noreturn]] static void throw_send_closed() {
        throw chan_closed(
            "iterlock::chan: send on a closed channel (whoever closes a channel must be sure no more sends "
            "follow; Go panics here)");
    }
    // A non-blocking or timed send's outcome: true if sent, false if it would block or timed out; a closed
    // channel throws chan_closed (C5).
    static bool sent(detail::op_status st) {
        if (st == detail::op_status::closed) throw_send_closed();
        return st == detail::op_status::ok;
    }

    template <class Rep, class Period>
    static clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
        auto const now = clock::now();
        if (d <= std::chrono::duration<Rep, Period>::zero()) return now;
        // Saturate instead of overflowing for "effectively forever" timeouts.
        if (std::chrono::duration_cast<std::chrono::duration<double>>(d).count() >
            std::chrono::duration_cast<std::chrono::duration<double>>(clock::time_point::max() - now)
                    .count() /
                2)
            return clock::time_point::max();
        return now + std::chrono::ceil<clock::duration>(d);
    }
    template <class Clock, class Duration>
    static clock::time_point to_steady(std::chrono::time_point<Clock, Duration> t) {
        if constexpr (std::is_same_v<Clock, clock>) {
            return std::chrono::time_point_cast<clock::duration>(t);
        } else {
            return deadline_after(t - Clock::now());
        }
    }

    std::shared_ptr<detail::chan_state<T>> state_;
};

namespace detail {
// The one door from select and the test-access header into a handle's state.
struct chan_access {
    template <class T>
    static chan_state<T>* state(const chan<T>& ch) noexcept {
        return ch.state_.get();
    }
};
}  // namespace detail

}  // namespace iterlock

#include "iterlock/select.hpp"
