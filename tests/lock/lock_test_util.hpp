// tests/lock/lock_test_util.hpp: helpers shared by the shard_lock suites (bounded polling, an ordering log,
// sanitizer-aware iteration counts).
//
// Invariant: no helper measures or asserts on elapsed time. Bounds only turn a hang into a failure.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/detail/lock/shard_lock.hpp"

#if defined(__SANITIZE_THREAD__)
#define ITERLOCK_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ITERLOCK_TEST_TSAN 1
#endif
#endif
#ifndef ITERLOCK_TEST_TSAN
#define ITERLOCK_TEST_TSAN 0
#endif

namespace iterlock::test {

// Scales a loop count down under ThreadSanitizer (several times slower) so the suites stay short.
constexpr int scaled(int n) {
    return ITERLOCK_TEST_TSAN ? (n / 2 > 0 ? n / 2 : 1) : n;
}

// Polls `pred` until it holds or `bound` has passed, yielding between polls. Returns whether it held.
template <class Pred>
bool eventually(Pred pred, std::chrono::seconds bound = std::chrono::seconds(60)) {
    const auto give_up = std::chrono::steady_clock::now() + bound;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > give_up) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
}

// Turns a hang (a lost wake-up leaves a thread blocked in join()) into a failure: if the owning test is still
// running after `bound`, prints its name and aborts. Never fires in a passing run.
class watchdog {
  public:
    explicit watchdog(std::chrono::seconds bound = std::chrono::seconds(120))
        : thread_([this, bound] {
              std::unique_lock<std::mutex> lk(mu_);
              if (!cv_.wait_for(lk, bound, [this] { return done_; })) {
                  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
                  std::fprintf(stderr,
                               "watchdog: %s.%s still running after %llds: a waiter was never woken\n",
                               info != nullptr ? info->test_suite_name() : "?",
                               info != nullptr ? info->name() : "?", static_cast<long long>(bound.count()));
                  std::fflush(stderr);
                  std::abort();
              }
          }) {}
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
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;  // last: starts after the members it uses
};

// Base fixture of the threaded suites: each test runs under a watchdog.
class watched_test : public ::testing::Test {
  private:
    watchdog watchdog_;
};

// An append-only record of who entered a critical section, in order.
class order_log {
  public:
    void add(std::string who) {
        std::lock_guard<std::mutex> lk(mu_);
        entries_.push_back(std::move(who));
    }
    std::vector<std::string> entries() const {
        std::lock_guard<std::mutex> lk(mu_);
        return entries_;
    }

  private:
    mutable std::mutex mu_;
    std::vector<std::string> entries_;
};

// Waiter counts of `l`, summed by role.
inline unsigned waiting_writers(const detail::shard_lock& l, priority p) {
    return l.state().waiting_writers[static_cast<int>(p)];
}
inline unsigned waiting_iterations(const detail::shard_lock& l, priority p) {
    return l.state().waiting_iterations[static_cast<int>(p)];
}

}  // namespace iterlock::test
