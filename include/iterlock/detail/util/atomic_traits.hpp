// iterlock/detail/util/atomic_traits.hpp: the one place that names the atomics, fences, mutex and condition
// variable of iterlock's ordering protocols, so that a model checker can run the same header code.
//
// Owns: iterlock::detail::atomic<T>, iterlock::detail::atomic_fence(), iterlock::detail::sync_mutex,
//       iterlock::detail::sync_condvar, iterlock::detail::thread_yield(), ITERLOCK_DETAIL_RELACY; under
//       Relacy, the futex model (futex_model, futex_model_wait, futex_model_wake).
// Invariants: without ITERLOCK_RELACY every name is an alias of (or a direct call to) its std counterpart
//       and adds no code; with it, every adapter keeps std::atomic's interface, so the checked code is the
//       production code.
//
// Production builds get std::atomic, std::atomic_thread_fence, std::mutex and std::condition_variable: the
// aliases below add no code. The memory-model checks (tests/memory_model/, issue 19) define ITERLOCK_RELACY;
// then the same names are thin adapters over Relacy's rl::atomic, rl::atomic_thread_fence, rl::mutex and
// rl::condition_variable, which explore every execution the C++ memory model allows (relaxed and
// acquire/release included) instead of the one x86 happens to run. Only the headers whose protocols are
// checked use these names (shard_lock.hpp, epoch.hpp, snapshot_store.hpp's registry, and the channel's
// chan_core, chan_park, chan_ring, chan_waitq and chan_state); everything else keeps std::atomic.
//
// The adapters keep std::atomic's interface (std::memory_order arguments, compare_exchange with one or two
// orders, fetch_* returning the old value) so the checked code is the production code, token for token.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#if defined(ITERLOCK_RELACY)
#define ITERLOCK_DETAIL_RELACY 1
// Relacy's parts, without <relacy/relacy.hpp> itself: that header ends by #defining memory_order_acquire
// and its siblings (to "mo_acquire, $"), new, delete, malloc and free, which would rewrite the very
// std::memory_order arguments and allocations of the code under check. Their order is Relacy's own.
// clang-format off
#include <relacy/base.hpp>
#include <relacy/context.hpp>
#include <relacy/context_base_impl.hpp>
#include <relacy/backoff.hpp>
#include <relacy/atomic_fence.hpp>
#include <relacy/atomic.hpp>
#include <relacy/var.hpp>
#include <relacy/test_suite.hpp>
#include <relacy/stdlib/mutex.hpp>
#include <relacy/stdlib/condition_variable.hpp>
#include <relacy/stdlib/semaphore.hpp>
#include <relacy/stdlib/event.hpp>
// clang-format on
#else
#define ITERLOCK_DETAIL_RELACY 0
#endif

namespace iterlock::detail {

#if !ITERLOCK_DETAIL_RELACY

template <class T>
using atomic = std::atomic<T>;
using sync_mutex = std::mutex;
using sync_condvar = std::condition_variable;

inline void atomic_fence(std::memory_order order) noexcept {
    std::atomic_thread_fence(order);
}
// Gives the processor away in a polling loop (channels).
inline void thread_yield() noexcept {
    std::this_thread::yield();
}

#else  // Relacy: the model checker's atomics behind std::atomic's interface.

inline rl::memory_order to_rl(std::memory_order order) noexcept {
    switch (order) {
        case std::memory_order_relaxed:
            return rl::mo_relaxed;
        case std::memory_order_consume:
            return rl::mo_consume;
        case std::memory_order_acquire:
            return rl::mo_acquire;
        case std::memory_order_release:
            return rl::mo_release;
        case std::memory_order_acq_rel:
            return rl::mo_acq_rel;
        case std::memory_order_seq_cst:
            break;
    }
    return rl::mo_seq_cst;
}

// The call site Relacy prints in its execution history is this adapter's; the history's values and orders
// still say which operation of the protocol ran.
template <class T>
class atomic {
  public:
    atomic() noexcept : a_(T{}) {}  // value-initialised, as std::atomic is since C++20
    atomic(T v) noexcept : a_(v) {}
    atomic(const atomic&) = delete;
    atomic& operator=(const atomic&) = delete;

    T load(std::memory_order o = std::memory_order_seq_cst) const noexcept { return a_.load(to_rl(o), $); }
    void store(T v, std::memory_order o = std::memory_order_seq_cst) noexcept { a_.store(v, to_rl(o), $); }
    T exchange(T v, std::memory_order o = std::memory_order_seq_cst) noexcept {
        return a_.exchange(v, to_rl(o), $);
    }
    bool compare_exchange_weak(T& expected, T desired, std::memory_order success,
                               std::memory_order failure) noexcept {
        return a_.compare_exchange_weak(expected, desired, to_rl(success), $, to_rl(failure), $);
    }
    bool compare_exchange_strong(T& expected, T desired, std::memory_order success,
                                 std::memory_order failure) noexcept {
        return a_.compare_exchange_strong(expected, desired, to_rl(success), $, to_rl(failure), $);
    }
    bool compare_exchange_weak(T& expected, T desired,
                               std::memory_order o = std::memory_order_seq_cst) noexcept {
        return compare_exchange_weak(expected, desired, o, failure_order(o));
    }
    bool compare_exchange_strong(T& expected, T desired,
                                 std::memory_order o = std::memory_order_seq_cst) noexcept {
        return compare_exchange_strong(expected, desired, o, failure_order(o));
    }
    template <class U>
    T fetch_add(U v, std::memory_order o = std::memory_order_seq_cst) noexcept {
        return a_.fetch_add(v, to_rl(o), $);
    }
    template <class U>
    T fetch_sub(U v, std::memory_order o = std::memory_order_seq_cst) noexcept {
        return a_.fetch_sub(v, to_rl(o), $);
    }
    T fetch_and(T v, std::memory_order o = std::memory_order_seq_cst) noexcept {
        return a_.fetch_and(v, to_rl(o), $);
    }
    T fetch_or(T v, std::memory_order o = std::memory_order_seq_cst) noexcept {
        return a_.fetch_or(v, to_rl(o), $);
    }

  private:
    // std::atomic's rule for the one-order compare_exchange: release -> relaxed, acq_rel -> acquire.
    static std::memory_order failure_order(std::memory_order o) noexcept {
        if (o == std::memory_order_release) return std::memory_order_relaxed;
        if (o == std::memory_order_acq_rel) return std::memory_order_acquire;
        return o;
    }

    mutable rl::atomic<T> a_;
};

inline void atomic_fence(std::memory_order order) noexcept {
    rl::atomic_thread_fence(to_rl(order), $);
}
// Relacy runs an execution's threads as fibers of one OS thread and switches them at every modelled
// operation; an OS yield would only hand the processor to other processes.
inline void thread_yield() noexcept {}

// std::mutex's interface over rl::mutex (std::lock_guard and std::unique_lock work with it).
class sync_mutex {
  public:
    void lock() { m_.lock($); }
    bool try_lock() { return m_.try_lock($); }
    void unlock() { m_.unlock($); }
    rl::mutex& model() noexcept { return m_; }

  private:
    rl::mutex m_;
};

// std::condition_variable's untimed interface over rl::condition_variable (waits on a
// std::unique_lock<sync_mutex>). Relacy reports a waiter that nobody wakes as a deadlock.
class sync_condvar {
  public:
    void notify_one() noexcept { cv_.notify_one($); }
    void notify_all() noexcept { cv_.notify_all($); }
    void wait(std::unique_lock<sync_mutex>& lk) { cv_.wait(lk.mutex()->model(), $); }
    // Timed waits exist so the timed paths compile; Relacy models the deadline as "may expire at any wake".
    template <class TimePoint>
    std::cv_status wait_until(std::unique_lock<sync_mutex>& lk, const TimePoint& deadline) {
        return cv_.wait_for(lk.mutex()->model(), deadline, $) ? std::cv_status::no_timeout
                                                              : std::cv_status::timeout;
    }

  private:
    rl::condition_variable cv_;
};

// The futex model (detail/chan/park.hpp's futex_wait/futex_wake in the Relacy build). A real FUTEX_WAIT
// compares the word and goes to sleep atomically with respect to FUTEX_WAKE on the same word (the kernel
// does both under its hash-bucket lock); a wait may also return spuriously. Modelled with one Relacy mutex
// and condition variable per execution (tests/support/memory_model_check.hpp's futex_scope): futex_model_wait
// compares and sleeps under the mutex, futex_model_wake notifies every sleeper under it. Waking all is
// allowed (every futex caller re-checks its word in a loop), and a sleeper that nobody wakes is reported by
// Relacy as a deadlock: a lost wake-up. The mutex adds a happens-before edge from waker to woken that the
// protocols must not rely on; both of them recheck the word with their own acquire loads, as on Linux.
struct futex_model {
    rl::mutex mu;
    rl::condition_variable cv;
};
inline futex_model*& current_futex_model() noexcept {
    static futex_model* m = nullptr;  // Relacy runs every thread of an execution on one OS thread
    return m;
}
inline void futex_model_wait(const atomic<std::uint32_t>* word, std::uint32_t expected) {
    futex_model& f = *current_futex_model();
    f.mu.lock($);
    if (word->load(std::memory_order_relaxed) == expected) f.cv.wait(f.mu, $);
    f.mu.unlock($);
}
inline void futex_model_wake() {
    futex_model& f = *current_futex_model();
    f.mu.lock($);
    f.cv.notify_all($);
    f.mu.unlock($);
}

#endif

}  // namespace iterlock::detail
