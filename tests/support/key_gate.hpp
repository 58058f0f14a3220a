// tests/support/key_gate.hpp: parks a thread inside KeyEqual, so that another thread can run while the
// first is in the middle of a map operation (the misuse and fault tests of concurrent access).
//
// Owns: iterlock::test::gate, gate_equal.
// Invariant: at most one thread parks per arm(); every later comparison passes straight through.
#pragma once

#include <atomic>
#include <latch>

namespace iterlock::test {

// A test arms the gate; the next KeyEqual call (from any thread) counts down `entered` and blocks until the
// test counts down `release`. Every later call passes straight through, so only one thread ever parks.
struct gate {
    std::latch entered{1};
    std::latch release{1};
    static inline std::atomic<gate*> armed{nullptr};

    void arm() noexcept { armed.store(this, std::memory_order_release); }
    static void pass() {
        if (gate* g = armed.exchange(nullptr, std::memory_order_acq_rel)) {
            g->entered.count_down();
            g->release.wait();
        }
    }
};

struct gate_equal {
    bool operator()(int a, int b) const {
        gate::pass();
        return a == b;
    }
};

}  // namespace iterlock::test
