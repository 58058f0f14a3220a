// bucket: Go's bmap — 8 slots, their tophash bytes and the overflow link, in one block.
//
// Layout (K, V = uint64_t: 144 bytes, 16-byte header then 8 slots):
//
//   +----------------+-----------+-------+----------------------------------------------+
//   | tophash[8]     | overflow* | extra | slot[0] .. slot[7]  (std::pair<const K, V>)  |
//   +----------------+-----------+-------+----------------------------------------------+
//
// The header shares the first cache line with the first slots, so a miss (which reads tophash only) costs
// one line, a hit usually the same line. Unlike Go, keys and values are interleaved as std::pair so that
// iteration can hand out `std::pair<const K, V>&` (what C++ range-for code expects); Go's separate key and
// value arrays only save padding for mixed-size pairs.
//
// Invariants (kept by table.hpp):
//   - slot i holds a constructed object iff is_full(tophash[i]);
//   - every slot after an empty_rest (in this bucket and down the overflow chain) is empty_rest;
//   - `extra` is per-chain bookkeeping for layers above the map (concurrent_map's snapshot label); the
//     single-owner map instantiates it as an empty type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include "iterlock/detail/tophash.hpp"

namespace iterlock::detail {

struct no_chain_extra {};

template <class Slot, class Extra = no_chain_extra>
struct bucket {
    std::uint8_t tophash[bucket_cnt];
    bucket* overflow;
    [[no_unique_address]] Extra extra;
    alignas(Slot) unsigned char storage[bucket_cnt * sizeof(Slot)];

    Slot* slot(unsigned i) noexcept { return std::launder(reinterpret_cast<Slot*>(storage) + i); }
    const Slot* slot(unsigned i) const noexcept {
        return std::launder(reinterpret_cast<const Slot*>(storage) + i);
    }

    // Header of a bucket that has never held anything. (Storage stays uninitialised.)
    void reset_header() noexcept {
        std::memset(tophash, empty_rest, sizeof(tophash));
        overflow = nullptr;
        extra = Extra{};
    }
};

// Moves a std::pair<const K, V> out of a slot that is about to be destroyed. The key is const only to the
// user; the table owns the storage, and the source is destroyed right after, so casting away const to move
// it is how node-less hash tables (abseil, Boost.Unordered) relocate keys too.
template <class K, class V>
std::pair<K&&, V&&> relocate_from(std::pair<const K, V>& p) noexcept {
    return {std::move(const_cast<K&>(p.first)), std::move(p.second)};
}

}  // namespace iterlock::detail
