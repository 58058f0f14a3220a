// tests/concurrent/concurrent_test_util.hpp: what the concurrent_map suites share — the two map flavours
// under test, sanitizer-aware loop counts, a watchdog that turns a hang into a failure, bounded polling, a
// counting allocator, and a probe that observes "a writer is queued" through the public API only.
//
// Invariants: no helper measures or asserts on elapsed time. Bounds (watchdog, polling) exist only to turn a
// hang into a failing test; a passing run never reaches them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/priority.hpp"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define ITERLOCK_CTEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define ITERLOCK_CTEST_SANITIZED 1
#endif
#endif
#ifndef ITERLOCK_CTEST_SANITIZED
#define ITERLOCK_CTEST_SANITIZED 0
#endif

namespace iterlock::ctest {

template <class K, class V, class Hash = iterlock::hash<K>, class Eq = std::equal_to<K>,
          class Alloc = std::allocator<std::pair<const K, V>>>
using snap_map = iterlock::concurrent_map<K, V, Hash, Eq, Alloc, iterlock::snapshot_iteration>;
template <class K, class V, class Hash = iterlock::hash<K>, class Eq = std::equal_to<K>,
          class Alloc = std::allocator<std::pair<const K, V>>>
using locked_map = iterlock::locked_concurrent_map<K, V, Hash, Eq, Alloc>;

// Extra multiplier for every loop count, from the environment (ITERLOCK_CTEST_SCALE=4 runs four times
// longer).
inline double env_scale() {
    static const double s = [] {
        const char* e = std::getenv("ITERLOCK_CTEST_SCALE");
        const double v = e != nullptr ? std::atof(e) : 1.0;
        return v > 0 ? v : 1.0;
    }();
    return s;
}

// A loop count: `release` in optimized unsanitized builds, `sanitized` under TSan/ASan; times env_scale().
inline long scaled(long release, long sanitized) {
    const long base = ITERLOCK_CTEST_SANITIZED ? sanitized : release;
    const long n = static_cast<long>(static_cast<double>(base) * env_scale());
    return n > 0 ? n : 1;
}

// Polls `pred` (yielding in between) until it holds or `bound` passes. Returns whether it held.
template <class Pred>
bool eventually(Pred&& pred, std::chrono::seconds bound = std::chrono::seconds(60)) {
    const auto give_up = std::chrono::steady_clock::now() + bound;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > give_up) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
}

// Aborts the process, naming the running test, if the test is still running after `bound`: a thread that is
// never woken would otherwise hang ctest until its global timeout.
class watchdog {
  public:
    explicit watchdog(std::chrono::seconds bound) : thread_([this, bound] { watch(bound); }) {}
    ~watchdog() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            done_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    watchdog(const watchdog&) = delete;
    watchdog& operator=(const watchdog&) = delete;

  private:
    void watch(std::chrono::seconds bound) {
        std::unique_lock<std::mutex> lk(mu_);
        if (cv_.wait_for(lk, bound, [this] { return done_; })) return;
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        std::fprintf(stderr, "watchdog: %s.%s still running after %lld s (a thread waits forever?)\n",
                     info != nullptr ? info->test_suite_name() : "?", info != nullptr ? info->name() : "?",
                     static_cast<long long>(bound.count()));
        std::fflush(stderr);
        std::abort();
    }

    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;  // last: starts once the members it uses exist
};

// Fixture of the threaded suites: every test runs under a watchdog.
class watched : public ::testing::Test {
  private:
    watchdog dog_{std::chrono::seconds(240)};
};

// ---- counting allocator
// ---------------------------------------------------------------------------------------

// Totals shared by every copy and rebinding of one counting_allocator.
struct alloc_counter {
    std::atomic<long long> bytes{0};
    std::atomic<long long> blocks{0};
};

// Where default-constructed counting allocators count. concurrent_map's snapshot store default-constructs its
// allocator before binding the map's (detail/concurrent/snapshot_store.hpp), so the allocator needs a default
// constructor; the suites check that nothing is ever counted here.
inline alloc_counter& unbound_counter() {
    static alloc_counter c;
    return c;
}

// A stateful allocator that counts live bytes and blocks in an alloc_counter (thread-safe).
template <class T>
struct counting_allocator {
    using value_type = T;
    alloc_counter* c;

    counting_allocator() noexcept : c(&unbound_counter()) {}
    explicit counting_allocator(alloc_counter* counter) noexcept : c(counter) {}
    template <class U>
    counting_allocator(const counting_allocator<U>& o) noexcept : c(o.c) {}

    T* allocate(std::size_t n) {
        T* p = std::allocator<T>().allocate(n);
        c->bytes.fetch_add(static_cast<long long>(n * sizeof(T)), std::memory_order_relaxed);
        c->blocks.fetch_add(1, std::memory_order_relaxed);
        return p;
    }
    void deallocate(T* p, std::size_t n) noexcept {
        c->bytes.fetch_sub(static_cast<long long>(n * sizeof(T)), std::memory_order_relaxed);
        c->blocks.fetch_sub(1, std::memory_order_relaxed);
        std::allocator<T>().deallocate(p, n);
    }
    template <class U>
    friend bool operator==(const counting_allocator& a, const counting_allocator<U>& b) noexcept {
        return a.c == b.c;
    }
};

// ---- observing queued writers
// -----------------------------------------------------------------------------------

// Waits until a new iteration guard of `m` (priority `p`) can no longer get in: with a guard already held by
// another thread and nobody writing, a new guard is granted at once (L2), so a timed-out attempt proves that
// a writer (of a class that outranks `p`) is queued (L3/L4). Returns false if that never happens.
template <class Map>
bool wait_until_writer_queued(Map& m, iterlock::priority p = iterlock::priority::best_effort) {
    iterlock::priority_scope scope(p);
    return eventually([&] { return !m.try_lock_for_iteration(std::chrono::milliseconds(2)); });
}

// The value every writer of the ordered-insert tests stores for key k (so a walk can check it).
constexpr long value_of(long k) {
    return k * 7 + 3;
}

}  // namespace iterlock::ctest
