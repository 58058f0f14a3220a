// Helpers shared by the channel suites: waiting for a condition without clocks, a start latch, and a
// scale factor that keeps the stress loops short under sanitizers.
#pragma once

#include <cstddef>
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

template <class T>
void wait_receivers(const iterlock::chan<T>& ch, std::size_t n) {
    wait_until([&] { return access::waiting_receivers(ch) >= n; });
}
template <class T>
void wait_senders(const iterlock::chan<T>& ch, std::size_t n) {
    wait_until([&] { return access::waiting_senders(ch) >= n; });
}

}  // namespace chan_test
