// iterlock/detail/map/bucket.hpp: Go's bmap — 8 slots, their tophash bytes and the overflow link — split in
// two for the cache.
//
// Owns: iterlock::detail::bucket_body, overflow_bucket, bucket_ref, bucket_array, no_chain_extra, cache_line,
//       ctrl_lines(), relocate_from().
// Invariants: the three listed at the end of this comment (kept by table.hpp): a slot holds an object iff
//       its tophash is full; nothing full follows an empty_rest in a chain; `extra` belongs to the layer
//       above.
//
// Go stores a bucket's 8 tophash bytes at the head of the bucket. iterlock keeps the tophash bytes of the
// 2^B main buckets in one dense control array instead (8 bytes per bucket: 2 MiB at a million entries),
// and the slots in a parallel array of bucket bodies:
//
//   control array:  | top[0..7] of bucket 0 | top[0..7] of bucket 1 | ...        (8 bytes each)
//   body array:     | slot[0] .. slot[7] | overflow* | extra | ...                (one body per bucket)
//   overflow bucket (allocated on demand, chained from a body): | top[0..7] | body |
//
// A miss or a growth-state check reads only the control array, which stays in cache where Go's inline
// tophash costs a cache miss per probe; a hit reads the control byte and then one slot. Slots are
// std::pair<const K, V>, so iteration can hand out `std::pair<const K, V>&` (what C++ code expects); Go
// keeps separate key and value arrays only to save padding.
//
// Invariants (kept by table.hpp):
//   - slot i of a member holds a constructed object iff is_full(top[i]);
//   - every slot after an empty_rest (in this member and down the overflow chain) is empty_rest, so a
//     member with an empty_rest slot ends the chain for lookups (its overflow link need not be read);
//   - `extra` is per-chain bookkeeping for layers above the map (concurrent_map's snapshot label); the
//     single-owner map instantiates it as an empty type.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include "iterlock/detail/map/tophash.hpp"
#include "iterlock/detail/util/fence.hpp"
#include "iterlock/detail/util/racy_read.hpp"

namespace iterlock::detail {

struct no_chain_extra {};

template <class Slot, class Extra>
struct overflow_bucket;

// The slots come first and the overflow link and the extra after them: slot i is at the body's address
// plus i * sizeof(Slot), one add less per lookup, and the slots a bucket fills first (0-3 at the load
// factors a table runs at) share no line with the header (docs/BENCHMARKS.md, "A lookup's instructions").
template <class Slot, class Extra>
struct bucket_body {
    alignas(Slot) unsigned char storage[bucket_cnt * sizeof(Slot)];
    overflow_bucket<Slot, Extra>* overflow;
    [[no_unique_address]] Extra extra;

    Slot* slot(unsigned i) noexcept { return std::launder(reinterpret_cast<Slot*>(storage) + i); }
};

template <class Slot, class Extra>
struct overflow_bucket {
    std::uint8_t tophash[bucket_cnt];
    bucket_body<Slot, Extra> body;
};

// One member of a bucket chain: its tophash bytes and its body (and, for overflow members, the block
// that holds both). A null ref (top == nullptr) is the end of a chain.
template <class Slot, class Extra>
struct bucket_ref {
    using body_type = bucket_body<Slot, Extra>;
    using overflow_type = overflow_bucket<Slot, Extra>;

    std::uint8_t* top = nullptr;
    body_type* body = nullptr;
    overflow_type* ovf = nullptr;  // nullptr for a main bucket

    explicit operator bool() const noexcept { return top != nullptr; }
    Slot* slot(unsigned i) const noexcept { return body->slot(i); }
    bucket_ref next() const noexcept {
        overflow_type* o = body->overflow;
        return o != nullptr ? bucket_ref{o->tophash, &o->body, o} : bucket_ref{};
    }

    // The same steps for a reader that holds no lock (sequence-lock readers; detail/util/racy_read.hpp): each
    // value is read once with a relaxed atomic load, and the acquire fences pair with the writer's release
    // fences (table::new_overflow before linking a member, table::evacuate before marking old buckets), so
    // what the reader goes on to read was initialised.
    // This member's 8 tophash bytes, copied into `group`.
    void load_top_racy(std::uint8_t (&group)[bucket_cnt]) const noexcept {
        const std::uint64_t w = racy_load_u64(top);
        std::memcpy(group, &w, bucket_cnt);
    }
    // next(), reading the overflow link once.
    bucket_ref next_racy() const noexcept {
        overflow_type* o = racy_load_ptr(&body->overflow);
        if (o == nullptr) return bucket_ref{};
        // Pairs with new_overflow()'s release fence (table.hpp): the linked bucket's reset() is visible.
        fence(std::memory_order_acquire);
        return bucket_ref{o->tophash, &o->body, o};
    }
    // Whether this (old) bucket carries an evacuation mark.
    bool evacuated_racy() const noexcept {
        const auto first = static_cast<std::uint8_t>(racy_load_u64(top));
        // Pairs with the release fence before evacuation moves entries (table.hpp): the destination chains
        // are seen initialised.
        fence(std::memory_order_acquire);
        return is_evacuated_mark(first);
    }
    // Header of a member that has never held anything (storage stays uninitialised).
    void reset() const noexcept {
        std::memset(top, empty_rest, bucket_cnt);
        body->overflow = nullptr;
        body->extra = {};
    }
    friend bool operator==(const bucket_ref& a, const bucket_ref& b) noexcept { return a.top == b.top; }
};

// The unit bucket arrays are allocated in: control bytes first, then the bodies, each cache-line aligned.
struct alignas(64) cache_line {
    unsigned char bytes[64];
};

// Cache lines of the control groups of n buckets (an array starts with them; its bodies follow).
inline constexpr std::size_t ctrl_lines(std::size_t n) noexcept {
    return (n * bucket_cnt + sizeof(cache_line) - 1) / sizeof(cache_line);
}

// A bucket array: 2^B control groups and 2^B bodies in one block (table.hpp allocates it).
template <class Slot, class Extra>
struct bucket_array {
    std::uint8_t* ctrl = nullptr;
    bucket_body<Slot, Extra>* bodies = nullptr;
    explicit operator bool() const noexcept { return ctrl != nullptr; }
    bucket_ref<Slot, Extra> at(std::size_t j) const noexcept {
        return {ctrl + j * bucket_cnt, bodies + j, nullptr};
    }
    std::uint8_t* top(std::size_t j) const noexcept { return ctrl + j * bucket_cnt; }
};

// Moves a std::pair<const K, V> out of a slot that is about to be destroyed. The key is const only to the
// user; the table owns the storage, and the source is destroyed right after, so casting away const to move
// it is how node-less hash tables (abseil, Boost.Unordered) relocate keys too.
template <class K, class V>
std::pair<K&&, V&&> relocate_from(std::pair<const K, V>& p) noexcept {
    return {std::move(const_cast<K&>(p.first)), std::move(p.second)};
}

}  // namespace iterlock::detail
