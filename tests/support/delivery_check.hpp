// tests/support/delivery_check.hpp: checking rule C4 (exactly once) value by value. Each value names its
// producer and sequence number, so a failure names the first value lost, duplicated or invented.
//
// Owns: iterlock::test::encode, each_received_once, concat.
// Invariant: no check is a sum or a count, where a lost value and a duplicated one could cancel out.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <vector>

namespace iterlock::test {

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

}  // namespace iterlock::test
