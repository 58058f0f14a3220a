// iterlock/detail/util/random.hpp: the randomness of iterlock's maps and channels — fresh hash seeds and a
// cheap per-thread generator for walk starts and select's poll order.
//
// Owns: iterlock::detail::random_seed(), iterlock::detail::thread_random().
// Invariants: random_seed() returns a different value on every call in a process (a random base, a shared
//       counter, the clock); thread_random() touches no shared memory after a thread's first call
//       (splitmix64 over a thread-local state seeded once from random_seed()). Neither is cryptographic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>

#include "iterlock/hash.hpp"

namespace iterlock::detail {

// A fresh random hash seed: a process-wide random base, a counter, the clock.
inline std::uint64_t random_seed() noexcept {
    static const std::uint64_t base = [] {
        std::uint64_t v = 0;
        try {
            std::random_device rd;
            v = (std::uint64_t{rd()} << 32) ^ rd();
        } catch (...) {
        }
        return v ^ static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }();
    static std::atomic<std::uint64_t> counter{0};
    // Relaxed: only needs a distinct value per call; nothing is published with it.
    return seeded_mix(base, counter.fetch_add(1, std::memory_order_relaxed) * mix_k1);
}

// The next value of this thread's splitmix64 generator.
inline std::uint64_t thread_random() noexcept {
    thread_local std::uint64_t state = random_seed();
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace iterlock::detail
