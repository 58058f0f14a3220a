// tests/support/watchdog.hpp: turns a hang into a failure. A watchdog aborts the process, naming the running
// test, if it still lives after its bound; the `watched` fixture puts every test of a suite under one.
//
// Owns: iterlock::test::watchdog, iterlock::test::watched.
// Invariant: a passing run never reaches a bound; the bounds are generous and never assert on speed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

namespace iterlock::test {

// Aborts the process if it is still alive after `bound`, printing the running test's name and `what` (when
// given). Its destructor calls it off. Works in a death test's child too (the child then fails to match).
class watchdog {
  public:
    explicit watchdog(std::chrono::seconds bound, const char* what = nullptr)
        : thread_([this, bound, what] { watch(bound, what); }) {}
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
    void watch(std::chrono::seconds bound, const char* what) {
        std::unique_lock<std::mutex> lk(mu_);
        if (cv_.wait_for(lk, bound, [this] { return done_; })) return;
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        std::fprintf(stderr, "watchdog: %s.%s still running after %lld s (a thread waits forever?)%s%s\n",
                     info != nullptr ? info->test_suite_name() : "?", info != nullptr ? info->name() : "?",
                     static_cast<long long>(bound.count()), what != nullptr ? ": " : "",
                     what != nullptr ? what : "");
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

}  // namespace iterlock::test
