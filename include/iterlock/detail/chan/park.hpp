// iterlock/detail/chan/park.hpp: blocking primitives for iterlock's channels: a futex word, a bounded
// backoff, the channel lock, and the parker (Go's `g` plus its `selectDone` word) through which exactly one
// channel completes a blocked operation.
//
// Owns: iterlock::detail::futex_wait(), futex_wake(), backoff, chan_lock, lock_all(), unlock_all(),
//       chan_parker, chan_spin_budget, chan_probe, chan_probes, chan_clock, chan_now_ns(),
//       chan_random_below(); ITERLOCK_CHAN_SPIN_POLLS, ITERLOCK_CHAN_YIELD_POLLS,
//       ITERLOCK_CHAN_ADAPTIVE_SPIN_NS, ITERLOCK_CHAN_PROBES.
// Invariants: nothing spins without bound; a parker is claimed at most once per round and its claimer always
//       signals it, and its owner never leaves before that signal (the list below says why this is safe).
//
// Invariants kept here:
//  - Nothing spins without bound: `backoff` spins a few rounds, then yields, then reports `done()`; every
//    caller then sleeps on a futex word (or, off Linux, on `std::atomic::wait`).
//  - A parker is claimed at most once per round (a CAS on `sel_`), and the claimer always signals it
//    afterwards; the parked thread never leaves or reuses its parker before that signal arrives. So the only
//    access a claimer can make after the owner has moved on is a FUTEX_WAKE on the old address, which is
//    harmless (the owner's futex loops tolerate spurious wake-ups).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

#include "iterlock/detail/util/atomic_traits.hpp"
#include "iterlock/detail/util/random.hpp"
#include "iterlock/detail/util/spin.hpp"

// Tuning of a parked operation's wait before it sleeps on its futex: pause-polls, then yields. Override
// with -D for experiments; docs/CHANNELS.md has the measurements that chose the defaults.
#ifndef ITERLOCK_CHAN_SPIN_POLLS
#define ITERLOCK_CHAN_SPIN_POLLS 128
#endif
#ifndef ITERLOCK_CHAN_YIELD_POLLS
#define ITERLOCK_CHAN_YIELD_POLLS 4
#endif
// The longest a blocked operation on a stream-mode buffered channel (chan_wait::stream) keeps polling before
// it parks, when the channel's recent waits say that its counterpart answers within that time
// (chan_spin_budget, rule C6). 0 turns the adaptive phase off. The model checks (ITERLOCK_DETAIL_RELACY)
// run without it: it reads the clock.
#ifndef ITERLOCK_CHAN_ADAPTIVE_SPIN_NS
#if ITERLOCK_DETAIL_RELACY
#define ITERLOCK_CHAN_ADAPTIVE_SPIN_NS 0
#else
#define ITERLOCK_CHAN_ADAPTIVE_SPIN_NS 50000
#endif
#endif
// The adaptive phase's poll interval (the clock is read in between, which touches no shared line).
#ifndef ITERLOCK_CHAN_ADAPTIVE_POLL_NS
#define ITERLOCK_CHAN_ADAPTIVE_POLL_NS 1000
#endif

// Test probes: event counters that the channel tests read through detail/chan/test_access.hpp, to assert
// that a race was actually reached or that a path took no lock. Compiled in only when ITERLOCK_CHAN_PROBES
// is 1 (the channel test executables set it for every translation unit); otherwise a probe is an empty
// member and `hit()` compiles to nothing. All translation units of one program must agree on the macro.
#ifndef ITERLOCK_CHAN_PROBES
#define ITERLOCK_CHAN_PROBES 0
#endif

namespace iterlock::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "futex words must be plain 32-bit atomics");

using chan_clock = std::chrono::steady_clock;

// The steady clock in nanoseconds (vDSO, no system call on Linux).
inline std::int64_t chan_now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(chan_clock::now().time_since_epoch()).count();
}

// Sleeps while `*word == expected`, at most until `deadline` when `timed`. May return spuriously.
inline void futex_wait(atomic<std::uint32_t>* word, std::uint32_t expected, bool timed,
                       chan_clock::time_point deadline) noexcept {
#if ITERLOCK_DETAIL_RELACY
    (void)timed;
    (void)deadline;
    futex_model_wait(word, expected);  // a model check: see detail/util/atomic_traits.hpp
#elif defined(__linux__)
    timespec ts{};
    timespec* tsp = nullptr;
    if (timed) {
        auto left = deadline - chan_clock::now();
        if (left <= chan_clock::duration::zero()) return;
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
        ts.tv_sec = static_cast<time_t>(ns / 1000000000);
        ts.tv_nsec = static_cast<long>(ns % 1000000000);
        tsp = &ts;
    }
    // FUTEX_WAIT's relative timeout runs on CLOCK_MONOTONIC, the clock behind steady_clock.
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, tsp, nullptr,
              0);
#else
    if (!timed) {
        // Acquire: the caller re-reads the word with its own acquire load anyway; this one pairs with the
        // store before futex_wake's notify.
        word->wait(expected, std::memory_order_acquire);
    } else if (chan_clock::now() < deadline) {
        // No timed atomic wait in C++20: poll at a coarse grain (portable fallback only).
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
#endif
}

inline void futex_wake(atomic<std::uint32_t>* word, int count) noexcept {
#if ITERLOCK_DETAIL_RELACY
    (void)word;
    (void)count;
    futex_model_wake();
#elif defined(__linux__)
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr,
              0);
#else
    if (count == 1) {
        word->notify_one();
    } else {
        word->notify_all();
    }
#endif
}

// One event counter (relaxed; a probe orders nothing). See ITERLOCK_CHAN_PROBES: without probes it is an
// empty class whose count() is always 0.
#if ITERLOCK_CHAN_PROBES
class chan_probe {
  public:
    // Relaxed: a probe counts events and orders nothing (tests read it after joining).
    void hit() noexcept { n_.fetch_add(1, std::memory_order_relaxed); }
    // Relaxed: as hit().
    std::uint64_t count() const noexcept { return n_.load(std::memory_order_relaxed); }

  private:
    std::atomic<std::uint64_t> n_{0};
};
#else
class chan_probe {
  public:
    void hit() noexcept {}
    std::uint64_t count() const noexcept { return 0; }
};
#endif

// Process-wide probes of rare events (their paths are cold; per-channel probes live with their channel).
struct chan_probes {
    // A parked operation reached its deadline, but its abandon CAS lost to a channel that had just claimed
    // it (the claim/abandon race of chan_parker): it must take the claimer's outcome, not report a timeout.
    static inline chan_probe abandon_lost;
    // The same race in the hand-over slot: at its deadline the slot party found itself completed already.
    static inline chan_probe slot_deadline_lost;
    // Test knob, read only with probes: while set, a claimer yields the processor once between its claim
    // and its signal, so that a parked operation's deadline passes inside that window more often (the
    // claim/abandon race above).
    static inline std::atomic<bool> widen_claim_window{false};
};

// Exponential backoff for waits that are expected to be short: `spin()` only pauses; `snooze()` pauses
// for the first rounds and then yields the processor. `done()` says the caller should block instead.
// The spin limit covers a ping-pong round trip (docs/CHANNELS.md).
class backoff {
  public:
    static constexpr unsigned spin_limit = 6;
    static constexpr unsigned yield_limit = 10;

    void spin() noexcept {
        unsigned const rounds = 1u << (step_ < spin_limit ? step_ : spin_limit);
        for (unsigned i = 0; i < rounds; ++i) spin_pause();
        if (step_ <= spin_limit) ++step_;
    }
    void snooze() noexcept {
        if (step_ <= spin_limit) {
            for (unsigned i = 0; i < (1u << step_); ++i) spin_pause();
        } else {
            thread_yield();
        }
        if (step_ <= yield_limit) ++step_;
    }
    bool done() const noexcept { return step_ > yield_limit; }
    // Whether the pause rounds are over (the next snooze() yields).
    bool spun() const noexcept { return step_ > spin_limit; }
    void reset() noexcept { step_ = 0; }

  private:
    unsigned step_ = 0;
};

// The per-channel lock (Go: hchan.lock). A three-state futex mutex that spins briefly before sleeping,
// because channel critical sections are tens of nanoseconds and a sleep costs microseconds.
//
//   word_:  0 = free | 1 = held, nobody asleep | 2 = held, sleepers may exist
class chan_lock {
  public:
    void lock() noexcept {
        acquisitions_.hit();
        std::uint32_t expected = 0;
        // Acquire: pairs with unlock()'s release exchange (the previous holder's critical section). Relaxed
        // on failure (the slow path re-reads).
        if (word_.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed))
            return;
        lock_slow();
    }
    bool try_lock() noexcept {
        std::uint32_t expected = 0;
        bool const won =
            // As lock(): acquire pairs with unlock()'s release; relaxed on failure.
            word_.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed);
        if (won) acquisitions_.hit();
        return won;
    }
    void unlock() noexcept {
        // Release: pairs with the acquire CAS or exchange of the next lock(). Returns 2 iff a sleeper may
        // exist: lock_slow() stores 2 with an RMW before sleeping, so this RMW either sees 2 and wakes, or
        // precedes it and that exchange sees 0 and takes the lock (no lost wake-up; checked by
        // memory_model.C4_ChannelDeliversEachValueExactlyOnce).
        if (word_.exchange(0, std::memory_order_release) == 2) futex_wake(&word_, 1);
    }
    // Probe: acquisitions so far (rule C8 is tested with it); always 0 without probes.
    std::uint64_t acquisitions() const noexcept { return acquisitions_.count(); }

  private:
    void lock_slow() noexcept {
        backoff b;
        while (!b.done()) {
            // Relaxed: a probe; the CAS below carries the acquire.
            std::uint32_t seen = word_.load(std::memory_order_relaxed);
            if (seen == 0 &&
                // Acquire: pairs with unlock()'s release. Relaxed on failure.
                word_.compare_exchange_weak(seen, 1, std::memory_order_acquire, std::memory_order_relaxed))
                return;
            if (seen == 2) break;  // others already sleep: queue up behind them
            b.snooze();
        }
        // Acquire: when it returns 0 it takes the lock; pairs with unlock()'s release exchange.
        while (word_.exchange(2, std::memory_order_acquire) != 0) futex_wait(&word_, 2, false, {});
    }

    atomic<std::uint32_t> word_{0};
    [[no_unique_address]] chan_probe acquisitions_;  // lock() calls and successful try_lock() calls
};
static_assert(ITERLOCK_CHAN_PROBES || ITERLOCK_DETAIL_RELACY || sizeof(chan_lock) == sizeof(std::uint32_t),
              "without probes the channel lock is one 32-bit word (chan_core's first line counts on it)");

// Locks an ordered array of distinct channel locks (select's lock-all in address order, as Go's sellock).
template <class Lockable>
inline void lock_all(Lockable* const* locks, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) locks[i]->lock();
}
template <class Lockable>
inline void unlock_all(Lockable* const* locks, std::size_t n) noexcept {
    for (std::size_t i = n; i-- > 0;) locks[i]->unlock();
}

// One blocked operation's wake-up state: Go's `g` (what gets parked and readied) plus `g.selectDone`
// (which of the operation's cases won).
//
//   sel_:  0 = unclaimed | k + 1 = claimed by case k | UINT32_MAX = abandoned by its owner (timeout)
//   wake_: 0 = not signalled, owner awake | 1 = owner asleep on the futex | 2 = signalled
//
// Protocol: a channel that wants to complete or notify a waiter first wins `try_claim` (under that channel's
// lock), does its work, and then calls `signal()`. The owner waits for `signal()` (`wait`), or gives up at
// its deadline by winning `try_abandon`; if that CAS loses, a claimer is mid-way and the owner waits for
// its signal without a deadline.
class chan_parker {
  public:
    static constexpr std::uint32_t unclaimed = 0;
    static constexpr std::uint32_t abandoned = UINT32_MAX;

    bool try_claim(std::uint32_t case_index) noexcept {
        std::uint32_t expected = unclaimed;
        // acq_rel: the RMW's place in sel_'s modification order picks one winner per round among claimers and
        // the owner's try_abandon(); the release half pairs with claimed_case()'s acquire load, the acquire
        // half (and acquire on failure) with an earlier winner's release, so a loser sees who won.
        return sel_.compare_exchange_strong(expected, case_index + 1, std::memory_order_acq_rel,
                                            std::memory_order_acquire);
    }
    bool try_abandon() noexcept {
        std::uint32_t expected = unclaimed;
        // acq_rel: as try_claim(); a lost abandon must then wait for the winner's signal() (acquire on
        // wake_).
        bool const won = sel_.compare_exchange_strong(expected, abandoned, std::memory_order_acq_rel,
                                                      std::memory_order_acquire);
        if (!won) chan_probes::abandon_lost.hit();
        return won;
    }
    // Requires: the parker was claimed and signalled. Returns the winning case.
    // Acquire: pairs with try_claim()'s release (the owner also synchronised with signal() before reading
    // it).
    std::uint32_t claimed_case() const noexcept { return sel_.load(std::memory_order_acquire) - 1; }

    // Publishes everything the claimer wrote before it and wakes the owner.
    void signal() noexcept {
        // Relaxed: a test knob, read without ordering.
        if (ITERLOCK_CHAN_PROBES && chan_probes::widen_claim_window.load(std::memory_order_relaxed))
            thread_yield();
        // Release: publishes the claimer's work (the value moved into the owner's frame, w.transferred) to
        // the owner's acquire loads of wake_ in wait(); planted as relaxed,
        // memory_model.C4_ChannelDeliversEachValueExactlyOnce reports a data race on the value. Returns 1 iff
        // the owner set 1 (its CAS in wait()) before this RMW, so the owner sleeps only if it is then woken.
        // Only a stream-mode wait uses the time (~34 ns to read here), so only its parker asks for it.
        if (ITERLOCK_CHAN_ADAPTIVE_SPIN_NS != 0 && wants_time_)
            signalled_ns_ = chan_now_ns();  // published by the exchange
        if (wake_.exchange(2, std::memory_order_release) == 1) futex_wake(&wake_, 1);
    }
    // When signal() was called (steady clock, ns; 0 unless asked for with want_signal_time() and the
    // adaptive phase is compiled in). Requires: signalled.
    std::int64_t signalled_ns() const noexcept { return signalled_ns_; }
    // Asks signal() to record its time. Requires: before the parker is published to a claimer (linked under
    // the channel's lock, which orders this store before the claimer's read).
    void want_signal_time() noexcept { wants_time_ = true; }

    // Waits for `signal()`: spins briefly, yields, then sleeps. Returns false if `deadline` passed first
    // (only when `timed`). Never returns false once signalled.
    bool wait(bool timed, chan_clock::time_point deadline) noexcept {
        // Poll at a fixed, fine grain first: a partner that answers within a few microseconds (a ping-pong
        // round trip) is seen within one pause of its signal. (A per-thread adaptive budget, as glibc's
        // adaptive mutexes use, was tried and dropped: docs/CHANNELS.md.)
        for (int i = 0; i < ITERLOCK_CHAN_SPIN_POLLS; ++i) {
            // Acquire: pairs with signal()'s release exchange.
            if (wake_.load(std::memory_order_acquire) == 2) return true;
            spin_pause();
        }
        for (int i = 0; i < ITERLOCK_CHAN_YIELD_POLLS; ++i) {
            // Acquire: as above.
            if (wake_.load(std::memory_order_acquire) == 2) return true;
            thread_yield();
        }
        // Acquire: as above.
        std::uint32_t seen = wake_.load(std::memory_order_acquire);
        while (seen != 2) {
            if (seen == 0) {
                // Acquire (both ways): a failure reads signal()'s 2, which must publish the claimer's work as
                // the loads above do.
                if (!wake_.compare_exchange_weak(seen, 1, std::memory_order_acquire,
                                                 std::memory_order_acquire))
                    continue;
            }
            if (timed && chan_clock::now() >= deadline) return false;
            futex_wait(&wake_, 1, timed, deadline);
            // Acquire: pairs with signal()'s release exchange.
            seen = wake_.load(std::memory_order_acquire);
        }
        return true;
    }

    // Whether the owner has finished polling and sleeps (or is about to sleep) on the futex. Tests only
    // (rule C6), under the lock of a channel where the parker's waiter is linked.
    // Relaxed: a test probe under the channel lock; orders nothing.
    bool asleep() const noexcept { return wake_.load(std::memory_order_relaxed) == 1; }

    // Re-arms for another round. Requires: no channel holds a waiter pointing at this parker.
    void reset() noexcept {
        // Relaxed (both): the owner re-arms while no channel holds a waiter for it; the next publication of
        // the waiter happens under a channel lock, whose release orders these stores before any claimer's
        // CAS.
        sel_.store(unclaimed, std::memory_order_relaxed);
        wake_.store(0, std::memory_order_relaxed);
    }

  private:
    atomic<std::uint32_t> sel_{unclaimed};
    atomic<std::uint32_t> wake_{0};
    std::int64_t signalled_ns_ = 0;  // written by the claimer before its release in signal()
    bool wants_time_ = false;        // set by the owner before the parker is published
};

// How long a blocked operation on a stream-mode buffered channel polls before it parks (rule C6), one per
// channel and direction. A parked thread costs its waker a system call and itself a scheduler wake-up, which
// on a VM can take milliseconds; a stream of values a few microseconds apart (a feed, a pipeline stage)
// should be received by polling. The budget follows the delay that blocked operations of this direction saw
// from first finding the ring empty (full) to the value (space) arriving: twice the latest delay when it is
// within max_ns, decaying by a quarter per wait, and halved by each wait longer than max_ns. So a channel
// whose counterpart answers within max_ns is polled through, and one whose values are rare parks after the
// fixed backoff alone. A hint: relaxed, and any value read is a valid budget.
class chan_spin_budget {
  public:
    static constexpr std::int64_t max_ns = ITERLOCK_CHAN_ADAPTIVE_SPIN_NS;
    static constexpr std::int64_t poll_gap_ns = ITERLOCK_CHAN_ADAPTIVE_POLL_NS;

    // Relaxed: a hint that orders nothing.
    std::int64_t get() const noexcept { return ns_.load(std::memory_order_relaxed); }
    // A blocked operation completed `delay_ns` after it first found the channel empty (full).
    void observe(std::int64_t delay_ns) noexcept {
        if constexpr (max_ns == 0) return;
        // Relaxed: as get(); concurrent observers may overwrite each other, which only drops one sample.
        std::uint32_t const old = ns_.load(std::memory_order_relaxed);
        std::uint32_t next = old / 2;
        if (delay_ns >= 0 && delay_ns <= max_ns) {
            next = std::max(static_cast<std::uint32_t>(std::min<std::int64_t>(2 * delay_ns, max_ns)),
                            old - old / 4);
        }
        if (next != old) ns_.store(next, std::memory_order_relaxed);
    }

  private:
    static_assert(max_ns >= 0 && max_ns <= INT32_MAX, "the budget is kept in 32 bits");
    atomic<std::uint32_t> ns_{0};
};

// Uniform value in [0, n) without division bias worth caring about for n <= 2^32.
inline std::uint32_t chan_random_below(std::uint32_t n) noexcept {
    return static_cast<std::uint32_t>(((thread_random() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
}

}  // namespace iterlock::detail
