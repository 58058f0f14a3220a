// tests/support/polling.hpp: waiting for a condition that another thread makes true, without clocks in
// the assertion.
//
// Owns: iterlock::test::eventually (bounded) and iterlock::test::wait_until (unbounded, for code that runs
// under a watchdog).
// Invariant: a bound only turns a hang into a failure; a passing run never reaches it.
#pragma once

#include <chrono>
#include <thread>

namespace iterlock::test {

// Polls `pred` (sleeping 100 us in between) until it holds or `bound` passes. Returns whether it held.
template <class Pred>
bool eventually(Pred&& pred, std::chrono::seconds bound = std::chrono::seconds(60)) {
    const auto give_up = std::chrono::steady_clock::now() + bound;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > give_up) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
}

// Yields until `pred()` holds, however long that takes: for waits inside a test that a watchdog guards
// (e.g. until threads are parked).
template <class Pred>
void wait_until(Pred&& pred) {
    while (!pred()) std::this_thread::yield();
}

}  // namespace iterlock::test
