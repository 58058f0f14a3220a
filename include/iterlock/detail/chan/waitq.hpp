// iterlock/detail/chan/waitq.hpp: wait queues of iterlock's channels: `chan_waiter` (Go's sudog) and the
// intrusive FIFO that holds them (Go's waitq), plus `wake_list`, the chain of claimed waiters a caller
// signals after dropping its locks.
//
// Owns: iterlock::detail::chan_waiter, iterlock::detail::chan_waitq, iterlock::detail::wake_list.
// Invariants: a waiter is linked in at most one queue, `linked` says so, and both change only under that
//       channel's lock; a claimed waiter is signalled after every lock is released (the list below).
//
// Invariants:
//  - A waiter lives in its owner's stack frame and is linked in at most one queue; `linked` is true exactly
//    while it is, and both are only read or written under the lock of the channel that owns the queue.
//  - Whoever unlinks a waiter from the front (`dequeue_claim`) tries to claim its parker; a waiter whose
//    parker is already claimed elsewhere (a select that another case won, or one that timed out) is dropped
//    from the queue unclaimed, as Go's dequeue skips such sudogs.
//  - A claimed waiter is appended to a `wake_list` and signalled after every lock is released; its fields
//    stay valid until that signal, because its owner never leaves before being signalled.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "iterlock/detail/chan/park.hpp"
#include "iterlock/detail/util/pinned.hpp"

namespace iterlock::detail {

struct chan_waiter {
    chan_waiter* prev = nullptr;
    chan_waiter* next = nullptr;
    chan_waiter* wake_next = nullptr;  // chain in a wake_list once claimed
    chan_parker* parker = nullptr;
    // Unbuffered channels only (Go: sudog.elem): a sender's source object, moved from by the receiver that
    // completes it; or a receiver's raw storage, into which the completing sender constructs the value.
    void* elem = nullptr;
    std::uint32_t case_index = 0;  // which select case this waiter stands for (0 for plain operations)
    bool linked = false;
    // Unbuffered channels only: set by the completer: true = the value moved, false = the channel closed.
    bool transferred = false;
};

// Claimed waiters to signal once all locks are released, in claim order.
class wake_list : pinned {
  public:
    ~wake_list() { signal_all(); }

    void push(chan_waiter* w) noexcept {
        w->wake_next = nullptr;
        if (tail_) {
            tail_->wake_next = w;
        } else {
            head_ = w;
        }
        tail_ = w;
    }
    // Signals every waiter in the list. Requires: no channel lock held by the caller (not for safety,
    // but so that a woken thread does not immediately block on it).
    void signal_all() noexcept {
        chan_waiter* w = head_;
        head_ = tail_ = nullptr;
        while (w) {
            chan_waiter* next = w->wake_next;  // read before the signal: `w` may be gone right after it
            w->parker->signal();
            w = next;
        }
    }

  private:
    chan_waiter* head_ = nullptr;
    chan_waiter* tail_ = nullptr;
};

// Intrusive FIFO of waiters (16 bytes, so that a channel's lock-path state fits one cache line). Every
// member requires the owning channel's lock, except `empty_hint()`.
class chan_waitq {
  public:
    void unprotected_push_back(chan_waiter* w) noexcept {
        w->prev = tail_;
        w->next = nullptr;
        w->linked = true;
        if (tail_) {
            tail_->next = w;
        } else {
            // Release: pairs with empty_hint()'s acquire load in the lock-free fast-fail checks (readers
            // under the lock are ordered by it).
            head_.store(w, std::memory_order_release);
        }
        tail_ = w;
    }

    void unprotected_remove(chan_waiter* w) noexcept {
        if (w->prev) {
            w->prev->next = w->next;
        } else {
            // Release: as in unprotected_push_back().
            head_.store(w->next, std::memory_order_release);
        }
        if (w->next) {
            w->next->prev = w->prev;
        } else {
            tail_ = w->prev;
        }
        w->prev = w->next = nullptr;
        w->linked = false;
    }

    // Unlinks waiters from the front until one's parker is claimed for its case; returns it (nullptr if the
    // queue ran empty). `dropped` counts the waiters unlinked without a claim.
    chan_waiter* unprotected_dequeue_claim(std::size_t& dropped) noexcept {
        // Relaxed: under the owning channel's lock, the only writer of head_.
        while (chan_waiter* w = head_.load(std::memory_order_relaxed)) {
            unprotected_remove(w);
            if (w->parker->try_claim(w->case_index)) return w;
            ++dropped;
        }
        return nullptr;
    }

    // Relaxed: under the owning channel's lock, the only writer of head_ (callers hold it).
    bool unprotected_empty() const noexcept { return head_.load(std::memory_order_relaxed) == nullptr; }

    // Tests: how many linked waiters' owners sleep on their futex (rule C6).
    std::size_t unprotected_count_asleep() const noexcept {
        std::size_t n = 0;
        // Relaxed: under the owning channel's lock, the only writer of head_.
        for (chan_waiter const* w = head_.load(std::memory_order_relaxed); w; w = w->next) {
            if (w->parker->asleep()) ++n;
        }
        return n;
    }

    // Whether the queue looks empty; exact under the lock, a hint without it (Go reads waitq.first racily
    // the same way for its lock-free "would block" checks).
    // Acquire: pairs with the release stores of head_ above; a hint only, never dereferenced.
    bool empty_hint() const noexcept { return head_.load(std::memory_order_acquire) == nullptr; }

    // Debug and tests: checks the links; returns the length, or SIZE_MAX if the links are broken.
    std::size_t unprotected_check() const noexcept {
        std::size_t n = 0;
        chan_waiter const* prev = nullptr;
        // Relaxed: under the owning channel's lock, the only writer of head_.
        for (chan_waiter const* w = head_.load(std::memory_order_relaxed); w; prev = w, w = w->next) {
            if (w->prev != prev || !w->linked) return SIZE_MAX;
            ++n;
        }
        return prev == tail_ ? n : SIZE_MAX;
    }

  private:
    atomic<chan_waiter*> head_{nullptr};
    chan_waiter* tail_ = nullptr;
};

}  // namespace iterlock::detail
