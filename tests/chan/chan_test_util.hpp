// Helpers shared by the channel suites: waiting for a condition without clocks, a start latch, and a
// scale factor that keeps the stress loops short under sanitizers.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <thread>
#include <vector>

#include "iterlock/chan.hpp"
#include "iterlock/detail/chan/test_access.hpp"

// 1 under ThreadSanitizer, whose runtime owns the global operator new (it cannot be replaced there).
#if defined(__SANITIZE_THREAD__)
#define CHAN_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHAN_TEST_TSAN 1
#endif
#endif
#ifndef CHAN_TEST_TSAN
#define CHAN_TEST_TSAN 0
#endif

static_assert(ITERLOCK_CHAN_PROBES,
              "the channel tests assert on probes: build them with ITERLOCK_CHAN_PROBES=1");

namespace chan_test {

using access = iterlock::detail::chan_test_access;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr std::size_t scale = 8;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
inline constexpr std::size_t scale = 8;
#else
inline constexpr std::size_t scale = 1;
#endif
#else
inline constexpr std::size_t scale = 1;
#endif

// Iteration count `n` for release builds, divided under sanitizers.
inline std::size_t iters(std::size_t n) {
    return n / scale > 0 ? n / scale : 1;
}

// A value that names its producer (high half) and its sequence number (low half).
inline std::uint64_t encode(std::uint32_t producer, std::uint32_t seq) {
    return (static_cast<std::uint64_t>(producer) << 32) | seq;
}

// Rule C4 checked value by value: `received` (concatenated in any order) must be exactly `sent`, each value
// once. Sums or counts would let a lost value and a duplicated one cancel out; this names the first of
// either.
inline ::testing::AssertionResult each_received_once(std::vector<std::uint64_t> sent,
                                                     std::vector<std::uint64_t> received) {
    std::sort(sent.begin(), sent.end());
    std::sort(received.begin(), received.end());
    auto const dup = std::adjacent_find(received.begin(), received.end());
    if (dup != received.end()) {
        return ::testing::AssertionFailure() << "value " << (*dup >> 32) << ":" << (*dup & 0xffffffffu)
                                             << " (producer:sequence) was received twice";
    }
    std::vector<std::uint64_t> lost;
    std::set_difference(sent.begin(), sent.end(), received.begin(), received.end(), std::back_inserter(lost));
    std::vector<std::uint64_t> extra;
    std::set_difference(received.begin(), received.end(), sent.begin(), sent.end(),
                        std::back_inserter(extra));
    if (!lost.empty()) {
        return ::testing::AssertionFailure() << lost.size() << " value(s) sent but never received, the first "
                                             << (lost[0] >> 32) << ":" << (lost[0] & 0xffffffffu);
    }
    if (!extra.empty()) {
        return ::testing::AssertionFailure()
               << extra.size() << " value(s) received whose send failed, the first " << (extra[0] >> 32)
               << ":" << (extra[0] & 0xffffffffu);
    }
    return ::testing::AssertionSuccess() << sent.size() << " values, each received once";
}

template <class V>
std::vector<std::uint64_t> concat(const std::vector<std::vector<V>>& parts) {
    std::vector<std::uint64_t> all;
    for (auto const& p : parts) all.insert(all.end(), p.begin(), p.end());
    return all;
}

// Yields until `pred()` holds. Used to wait until threads are parked; never a wall-clock bound.
template <class Pred>
void wait_until(Pred pred) {
    while (!pred()) std::this_thread::yield();
}

// Yields until `pred()` holds or `deadline` passes; returns whether it held. The deadline is a watchdog for a
// condition that must come true (generous: it only decides how long a broken build takes to fail), never a
// bound on speed.
template <class Pred>
bool wait_until_for(Pred pred, std::chrono::seconds deadline = std::chrono::seconds(20)) {
    auto const end = std::chrono::steady_clock::now() + deadline;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::yield();
    }
    return true;
}

// Watchdog for a test (or a death test's statement) that must fail rather than hang: if it is still alive
// after `limit`, it prints `what` and ends the process with status 3. Its destructor calls it off.
class watchdog {
  public:
    watchdog(std::chrono::seconds limit, const char* what)
        : thread_([this, limit, what] {
              std::unique_lock<std::mutex> lk(m_);
              if (!cv_.wait_for(lk, limit, [this] { return done_; })) {
                  std::fprintf(stderr, "watchdog: %s\n", what);
                  std::fflush(stderr);
                  std::_Exit(3);
              }
          }) {}
    watchdog(const watchdog&) = delete;
    watchdog& operator=(const watchdog&) = delete;
    ~watchdog() {
        {
            std::lock_guard<std::mutex> lk(m_);
            done_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }

  private:
    std::mutex m_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;  // last: starts once the members it uses exist
};

template <class T>
void wait_receivers(const iterlock::chan<T>& ch, std::size_t n) {
    wait_until([&] { return access::waiting_receivers(ch) >= n; });
}
template <class T>
void wait_senders(const iterlock::chan<T>& ch, std::size_t n) {
    wait_until([&] { return access::waiting_senders(ch) >= n; });
}

}  // namespace chan_test
