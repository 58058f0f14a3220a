// Helpers shared by the channel suites: waiting for a condition without clocks, a start latch, and a
// scale factor that keeps the stress loops short under sanitizers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "iterlock/chan.hpp"
#include "iterlock/detail/chan_test_access.hpp"

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

// Watchdog for a statement that used to hang (inside a death test's child, say): once `seconds` pass it
// prints `what` and ends the process with status 3, so the test fails with a message instead of hanging.
inline void start_watchdog(int seconds, const char* what) {
    std::thread([seconds, what] {
        std::this_thread::sleep_for(std::chrono::seconds(seconds));
        std::fprintf(stderr, "watchdog: %s\n", what);
        std::fflush(stderr);
        std::_Exit(3);
    }).detach();
}

template <class T>
void wait_receivers(const iterlock::chan<T>& ch, std::size_t n) {
    wait_until([&] { return access::waiting_receivers(ch) >= n; });
}
template <class T>
void wait_senders(const iterlock::chan<T>& ch, std::size_t n) {
    wait_until([&] { return access::waiting_senders(ch) >= n; });
}

}  // namespace chan_test
