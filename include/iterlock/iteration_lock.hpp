// iterlock/iteration_lock.hpp: the iteration lock as a component of its own (the seed's MapIteratorLock).
//
// Owns: iterlock::iteration_lock (and its RAII guard), iterlock::detail::iteration_holds (what the calling
// thread holds, shared with concurrent_map), iterlock::detail::acquire_iterations (all-or-nothing
// acquisition of several iteration holds, shared with concurrent_map).
// Invariants: one implementation of the lock. The word, the queue and rules R1-R9 live in
// detail/lock/shard_lock.hpp; an iteration_lock is one detail::shard_lock plus the guard rules below, and
// every concurrent_map shard is the same detail::shard_lock driven by the same helpers (docs/DESIGN.md, "One
// iteration lock, two users").
//
// What it is. A reader/writer lock with a third role, the iteration: a long walk of the data it protects
// that excludes writers but not readers nor other walks. Protect any structure with it:
//
//     iterlock::iteration_lock lock;  std::unordered_map<int, int> data;
//     { std::shared_lock r(lock); use(data.find(1)); }          // a reader (R1): never waits for walks
//     { std::unique_lock w(lock); data[1] = 2; }                // a writer (R2-R5): waits for walks
//     { auto g = lock.lock_for_iteration(); for (auto& kv : data) use(kv); }   // a walk (L1-L7)
//
// It meets the standard's SharedMutex requirements (lock, try_lock, unlock, and the _shared forms), so
// std::unique_lock and std::shared_lock work. iterlock::guarded<Map> (guarded.hpp) packages it with a map.
//
// Rules. R1-R9 (detail/lock/shard_lock.hpp) say who waits for whom; the guard rules are concurrent_map's
// L1-L7, here for one lock:
//   L1  While a guard lives, no other thread holds the lock as a writer.
//   L2  Any number of guards may live at once (on any threads); readers never wait for them (R1).
//   L3  Writer preference: a waiting writer blocks new guards (R3); a guard already held keeps holding.
//   L4  Priorities: a guard or a writer waiting with priority::realtime (priority_scope) goes before
//       best_effort ones (R4). A guard waits with the priority current when it was asked for.
//   L5  try_lock_for_iteration(timeout) returns a guard that tests false, leaving no trace (R6), if the lock
//       could not be had in time.
//   L6  The thread that holds the only live guard may write: lock() on that thread upgrades its iteration
//       (R7) and unlock() turns it back. If another guard is live, lock() throws iterlock::lock_error
//       instead of deadlocking, and changes nothing.
//   L7  Nested guards on one thread share the first one's hold (no self-deadlock behind a waiting writer).
//   A guard is neither copyable nor movable and must end on the thread that took it (releasing it on
//   another thread aborts with a message). One thread may hold guards of at most 8 distinct locks and maps
//   at once (lock_error beyond). The lock must outlive its guards (destroying it under one aborts in
//   checked and debug builds).
//
// Guarantees per call. lock_shared/unlock_shared: one atomic RMW uncontended, never throw. lock(): one load
// and one CAS uncontended (plus one thread-local load to see whether this thread walks); blocks per R2-R5;
// throws lock_error only in the L6 case. unlock(): one RMW; never throws. lock_for_iteration(): one load and
// one CAS uncontended; blocks per R3-R5; throws lock_error only beyond 8 distinct holds. Releasing a guard:
// one RMW, never throws. metrics(): relaxed loads, takes no lock, never blocks; allocates (histograms).
//
// Metrics (metrics.hpp; export with iterlock/prometheus.hpp like a map, policy "locked"):
//   iterations started / success / timeout / error   iterlock_locked_iterations_total{state}
//   waits for the lock, by role and priority          iterlock_lock_wait_seconds{role,priority}
//   how long each guard held, by priority            iterlock_iteration_hold_seconds{priority}
//   refused upgrades (L6)                             iterlock_misuse_detected_total
// The lock records writer waits on its own cache line (as a concurrent_map shard does) and the rest, which
// are per guard, in relaxed counters.
//
// FAQ
//   Why not std::shared_mutex? It has two roles: a walk under a shared lock lets a stream of walks starve
//   writers (glibc prefers readers), and a walk under the exclusive lock stops every reader. The iteration
//   role excludes only writers, queues behind waiting writers, and lets its only holder write.
//   Is it recursive? Guards nest on one thread (L7); the writer and reader roles do not.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "iterlock/detail/lock/shard_lock.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/metrics.hpp"
#include "iterlock/misuse.hpp"
#include "iterlock/priority.hpp"

namespace iterlock {

namespace detail {

// The iteration holds of the calling thread: which locks (an iteration_lock, or a whole concurrent_map) it
// holds guards of, how deeply nested (L7), and whether the hold is upgraded for a write (L6). Small and
// scanned linearly; `live` lets the common "holds nothing" case cost one load.
struct iteration_holds {
    struct held {
        const void* owner = nullptr;  // the lock or map held; nullptr: a free slot
        int depth = 0;                // nested guards sharing this hold (L7)
        bool upgraded = false;        // iteration_lock only: lock() upgraded this hold (L6)
    };
    static constexpr int capacity = 8;
    held slots[capacity] = {};
    int live = 0;

    held* find(const void* owner) noexcept {
        if (live == 0) return nullptr;
        for (held& h : slots)
            if (h.owner == owner) return &h;
        return nullptr;
    }
    // The nesting depth of `owner`'s hold, or nullptr if this thread holds none.
    int* depth_for(const void* owner) noexcept {
        held* h = find(owner);
        return h != nullptr ? &h->depth : nullptr;
    }
    // A new hold at depth 1. Throws lock_error when every slot is taken (changes nothing then).
    held& add(const void* owner) {
        for (held& h : slots)
            if (h.owner == nullptr) {
                h = {owner, 1, false};
                ++live;
                return h;
            }
        throw lock_error("iterlock: one thread may hold iteration guards of at most 8 locks or maps at once");
    }
    void remove(held& h) noexcept {
        h = {};
        --live;
    }
};

inline iteration_holds& this_thread_iteration_holds() noexcept {
    thread_local iteration_holds h;
    return h;
}

using iteration_deadline = std::optional<std::chrono::steady_clock::time_point>;

// Takes an iteration hold on lock_at(0), ..., lock_at(n - 1) in that order with priority `p`, waiting
// without limit or until `deadline`. All or nothing: on a timeout it releases what it took (R6 for each)
// and returns false. Records the wait in `wait` (when non-null) on success. Never throws.
template <class LockAt>
bool acquire_iterations(std::size_t n, LockAt&& lock_at, const iteration_deadline& deadline, priority p,
                        wait_histogram* wait) noexcept {
    const auto t0 =
        wait != nullptr ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    std::size_t got = 0;
    for (; got < n; ++got) {
        shard_lock& l = lock_at(got);
        if (deadline) {
            if (!l.try_lock_iteration_until(*deadline, p)) break;
        } else {
            l.lock_iteration(p);
        }
    }
    if (got != n) {
        while (got > 0) lock_at(--got).unlock_iteration();
        return false;
    }
    if (wait != nullptr) wait->record_shared(std::chrono::steady_clock::now() - t0);
    return true;
}

// Fills the iteration fields of `out` from per-lock (or per-map) event counters.
inline void add_events_to(const map_event_metrics& e, map_metrics& out) {
    // Relaxed (all): statistics, read without ordering.
    out.iterations_started = e.iterations_started.load(std::memory_order_relaxed);
    out.iterations_success = e.iterations_success.load(std::memory_order_relaxed);
    out.iterations_timeout = e.iterations_timeout.load(std::memory_order_relaxed);
    out.iterations_error = e.iterations_error.load(std::memory_order_relaxed);
    out.misuse_detected = e.misuse_detected.load(std::memory_order_relaxed);
    for (int p = 0; p < 2; ++p)
        e.iterator_wait[p].add_to(out.lock_wait[static_cast<int>(lock_role::iterator)][p]);
}

inline int priority_index(priority p) noexcept {
    return p == priority::realtime ? 1 : 0;
}

}  // namespace detail

// The iteration lock (R1-R9, L1-L7 above). Neither copyable nor movable.
class iteration_lock {
  public:
    class guard;

    iteration_lock() = default;
    iteration_lock(const iteration_lock&) = delete;
    iteration_lock& operator=(const iteration_lock&) = delete;

    // ---- writer (SharedMutex: lock / try_lock / unlock) ----

    // Exclusive hold with the caller's current_priority(); blocks per R2-R5. On the thread that holds a
    // guard of this lock: upgrades it (L6, R7), waiting only for readers inside; throws lock_error, changing
    // nothing, if another guard is live or the hold is already upgraded.
    void lock() {
        if (detail::iteration_holds::held* h = held_here()) [[unlikely]] {
            upgrade(*h);
            return;
        }
        if (lock_.try_lock()) [[likely]] {
            record_uncontended_write();
            return;
        }
        std::chrono::nanoseconds waited{0};
        lock_.lock(&waited);
        record_write_wait(waited);
    }
    // Exclusive hold if nobody holds or queues; never blocks. On a thread holding a guard: upgrades when
    // that is the only guard (then true), else false. Never throws.
    bool try_lock() noexcept {
        if (detail::iteration_holds::held* h = held_here()) [[unlikely]] {
            try {
                upgrade(*h);
                return true;
            } catch (const lock_error&) {
                return false;
            }
        }
        if (!lock_.try_lock()) return false;
        record_uncontended_write();
        return true;
    }
    // Releases lock() (or turns an upgraded guard back into a plain one). Never throws.
    void unlock() noexcept {
        if (detail::iteration_holds::held* h = held_here()) [[unlikely]] {
            if (h->upgraded) {
                h->upgraded = false;
                lock_.downgrade_write_to_iteration();
                return;
            }
        }
        lock_.unlock();
    }

    // ---- reader (SharedMutex: lock_shared / try_lock_shared / unlock_shared) ----

    // Blocks only while a writer (or an upgraded guard) holds (R1). Never throws. A guard holder may read
    // (readers and iterations are compatible) but must not read while its own guard is upgraded.
    void lock_shared() noexcept { lock_.lock_shared(); }
    bool try_lock_shared() noexcept { return lock_.try_lock_shared(); }
    void unlock_shared() noexcept { lock_.unlock_shared(); }

    // ---- iteration ----

    // A guard holding the lock for iteration (L1-L7), with the caller's current_priority().
    guard lock_for_iteration();
    // L5: a guard that tests false (owning nothing, leaving no trace) if the lock could not be had within
    // `timeout`.
    template <class Rep, class Period>
    guard try_lock_for_iteration(std::chrono::duration<Rep, Period> timeout);

    // Whether the calling thread holds a guard of this lock. One thread-local load when it holds none.
    bool held_for_iteration() const noexcept { return held_here() != nullptr; }

    // ---- observation ----

    // Counters and histograms (see "Metrics" above). Never blocks; throws only std::bad_alloc.
    map_metrics metrics() const {
        map_metrics out;
        out.policy = "locked";
        for (int p = 0; p < 2; ++p)
            writer_wait_[p].add_to(out.lock_wait[static_cast<int>(lock_role::writer)][p],
                                   // Relaxed: a statistic.
                                   zero_waits(p).load(std::memory_order_relaxed));
        detail::add_events_to(events_, out);
        for (int p = 0; p < 2; ++p) hold_[p].add_to(out.iteration_hold[p]);
        for (auto& role : out.lock_wait)
            for (auto& h : role)
                if (h.upper_bounds.empty()) detail::wait_histogram().add_to(h);
        return out;
    }
    // Holders and waiters now (tests, debugging). Takes the internal mutex briefly.
    detail::shard_lock_state state() const noexcept { return lock_.state(); }

  private:
    friend class guard;

    detail::iteration_holds::held* held_here() const noexcept {
        return detail::this_thread_iteration_holds().find(this);
    }
    void upgrade(detail::iteration_holds::held& h) {
        if (h.upgraded)
            throw lock_error(
                "iterlock: iteration_lock::lock() on a thread whose guard is already upgraded (lock() is not "
                "recursive; unlock() first)");
        std::chrono::nanoseconds waited{0};
        try {
            lock_.upgrade_iteration_to_write(&waited);  // lock_error if another guard is live (L6)
        } catch (const lock_error&) {
            count(&detail::map_event_metrics::misuse_detected);
            throw;
        }
        h.upgraded = true;
        record_write_wait(waited);
    }
    std::atomic<std::uint64_t>& zero_waits(int p) const noexcept { return lock_.owner_words[p]; }
    void record_uncontended_write() noexcept {
        detail::add_exclusive(zero_waits(detail::priority_index(current_priority())), 1);
    }
    void record_write_wait(std::chrono::nanoseconds waited) noexcept {
        writer_wait_[detail::priority_index(current_priority())].record_exclusive(waited);
    }
    void count(std::atomic<std::uint64_t> detail::map_event_metrics::*c) noexcept {
        // Relaxed: a statistic.
        (events_.*c).fetch_add(1, std::memory_order_relaxed);
    }

    mutable detail::shard_lock lock_;        // the one implementation (R1-R9)
    detail::wait_histogram writer_wait_[2];  // updated by writers under the lock
    detail::map_event_metrics events_;       // guards (any number at once)
    detail::wait_histogram hold_[2];         // guard hold times, by priority
};

// RAII holder of an iteration (L1-L7). Construct one directly or take it from lock_for_iteration() /
// try_lock_for_iteration(). Neither copyable nor movable; ends on the thread that took it.
class iteration_lock::guard {
  public:
    // Waits without limit (R3-R5). Throws lock_error only when this thread already holds guards of 8 other
    // locks or maps.
    explicit guard(iteration_lock& l) : guard(l, std::nullopt) {}
    // Waits until `timeout` has passed; then owns nothing and tests false (L5).
    template <class Rep, class Period>
    guard(iteration_lock& l, std::chrono::duration<Rep, Period> timeout)
        : guard(l, detail::iteration_deadline(std::chrono::steady_clock::now() + timeout)) {}

    ~guard() { release(); }
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;
    guard(guard&&) = delete;
    guard& operator=(guard&&) = delete;

    bool owns_lock() const noexcept { return l_ != nullptr; }
    explicit operator bool() const noexcept { return owns_lock(); }
    iteration_lock* lock() const noexcept { return l_; }

  private:
    friend class iteration_lock;
    guard(iteration_lock& l, const detail::iteration_deadline& deadline) : owner_(detail::thread_tag()) {
        l.count(&detail::map_event_metrics::iterations_started);
        detail::iteration_holds& tls = detail::this_thread_iteration_holds();
        if (int* d = tls.depth_for(&l)) {  // L7: share the hold
            ++*d;
            l_ = &l;
            return;
        }
        detail::iteration_holds::held* slot;
        try {
            slot = &tls.add(&l);
        } catch (const lock_error&) {
            l.count(&detail::map_event_metrics::iterations_error);
            throw;
        }
        p_ = current_priority();
        if (!detail::acquire_iterations(
                1, [&](std::size_t) -> detail::shard_lock& { return l.lock_; }, deadline, p_,
                &l.events_.iterator_wait[detail::priority_index(p_)])) {
            tls.remove(*slot);
            l.count(&detail::map_event_metrics::iterations_timeout);
            return;
        }
        since_ = std::chrono::steady_clock::now();
        l_ = &l;
    }

    void release() noexcept {
        if (l_ == nullptr) return;
        if (owner_ != detail::thread_tag())
            detail::fatal(
                "iterlock: an iteration_lock guard was released by another thread than the one that took it; "
                "guards are not movable and must end on their own thread");
        detail::iteration_holds& tls = detail::this_thread_iteration_holds();
        detail::iteration_holds::held* h = tls.find(l_);
        l_->count(&detail::map_event_metrics::iterations_success);
        if (--h->depth == 0) {
            if (h->upgraded)
                detail::fatal("iterlock: iteration_lock guard ended while upgraded (unlock() first)");
            tls.remove(*h);
            l_->hold_[detail::priority_index(p_)].record_shared(std::chrono::steady_clock::now() - since_);
            l_->lock_.unlock_iteration();
        }
        l_ = nullptr;
    }

    iteration_lock* l_ = nullptr;
    std::uint64_t owner_;
    priority p_ = priority::best_effort;
    std::chrono::steady_clock::time_point since_{};
};

inline iteration_lock::guard iteration_lock::lock_for_iteration() {
    return guard(*this, detail::iteration_deadline{});
}

template <class Rep, class Period>
iteration_lock::guard iteration_lock::try_lock_for_iteration(std::chrono::duration<Rep, Period> timeout) {
    return guard(*this, timeout);
}

}  // namespace iterlock
