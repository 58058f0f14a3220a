// bench/callgrind/keys.hpp: the key stream of the fixed-count callgrind drivers in this folder.
//
// Owns: u64, mix() (a 64-bit finaliser: distinct inputs give distinct, well-spread keys).
// Invariants: deterministic, so every run of a driver executes the same operations on the same keys.
#pragma once

#include <cstdint>

using u64 = std::uint64_t;

inline u64 mix(u64 x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}
