// iterlock/detail/map/published_view.hpp: where a table's bucket arrays are, published for readers that
// hold no lock (concurrent_map's optimistic finds and the write path's prefetch).
//
// Owns: iterlock::detail::published_view<Slot, Extra>, the view encoding, the shared empty array.
// Invariants: the current view always names an array (an empty table's is the shared empty one, whose
//       control group is all empty_rest, so a lookup ends at its first group); the old view names the array
//       being evacuated, or is 0. A reader loads the current view first (acquire) and the old one only if
//       the current view's old bit says it exists: publish() stores old first, then current (release), so a
//       reader that sees an array as current also sees the old array stored with it and never reads a new
//       bucket that evacuation has not initialised. Only the table's single writer publishes.
//
// A view is an array's control pointer (64-byte aligned) with its B in the low bits, so a racy reader gets
// a pointer and the size that goes with it in one load. Bits 0-4: B; bit 5, in the current view only: an
// old array is published (growing).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "iterlock/detail/map/bucket.hpp"

namespace iterlock::detail {

template <class Slot, class Extra>
class published_view {
    using array_ref = bucket_array<Slot, Extra>;
    using bucket = bucket_ref<Slot, Extra>;
    using body_type = bucket_body<Slot, Extra>;

  public:
    static constexpr unsigned max_shift = 31;  // B must fit the view's 5 bits

    // Publishes the current array (2^B buckets; null: empty) and the old one (2^old_B buckets; null: not
    // growing). Requires: the table's writer.
    void publish(array_ref cur, unsigned B, array_ref old, unsigned old_B) noexcept {
        const std::uintptr_t ov = old ? encode(old, old_B) : 0;
        // Relaxed: published by the release store of cur_ below, which readers load first, with acquire.
        old_.store(ov, std::memory_order_relaxed);
        const std::uintptr_t cv = cur ? encode(cur, B) : empty_view();
        // Release: pairs with chain_for()'s acquire load of cur_.
        cur_.store(cv | (ov != 0 ? old_bit : 0), std::memory_order_release);
    }

    // The chain that holds (or would hold) hash h, for a reader without the lock: the old array's bucket
    // while it is not evacuated, else the current array's. Only blocks named by the views are read.
    bucket chain_for(std::uint64_t h) const noexcept {
        const std::uintptr_t cv = cur_.load(std::memory_order_acquire);
        bucket b = bucket_of(cv, h);
        if ((cv & old_bit) != 0) [[unlikely]] {
            // Acquire: the value itself is published by cur_'s release/acquire above (old_ is stored
            // relaxed just before it); this keeps the evacuation-mark reads after it.
            const std::uintptr_t ov = old_.load(std::memory_order_acquire);
            if (ov != 0) {
                const bucket ob = bucket_of(ov, h);
                if (!ob.evacuated_racy()) b = ob;
            }
        }
        return b;
    }
    // The current array's bucket of hash h, as a hint (relaxed: it may be replaced meanwhile; only for
    // prefetching, which never faults).
    bucket hint_for(std::uint64_t h) const noexcept {
        return bucket_of(cur_.load(std::memory_order_relaxed), h);
    }

  private:
    static constexpr std::uintptr_t b_mask = 31;
    static constexpr std::uintptr_t old_bit = 32;
    static constexpr std::uintptr_t addr_mask = ~std::uintptr_t{63};
    static std::uintptr_t encode(array_ref a, unsigned B) noexcept {
        return reinterpret_cast<std::uintptr_t>(a.ctrl) | B;
    }
    static array_ref decode(std::uintptr_t v) noexcept {
        array_ref a;
        a.ctrl = reinterpret_cast<std::uint8_t*>(v & addr_mask);
        a.bodies = reinterpret_cast<body_type*>(reinterpret_cast<cache_line*>(a.ctrl) +
                                                ctrl_lines(std::size_t{1} << (v & b_mask)));
        return a;
    }
    static bucket bucket_of(std::uintptr_t v, std::uint64_t h) noexcept {
        return decode(v).at(h & ((std::size_t{1} << (v & b_mask)) - 1));
    }
    // The array an empty table publishes: one bucket whose control group is all empty_rest (0), so a racy
    // lookup ends at its first group, and a body that is only ever prefetched.
    struct alignas(cache_line) empty_array_block {
        cache_line ctrl;
        body_type body;
    };
    static constexpr empty_array_block empty_array_{};
    static std::uintptr_t empty_view() noexcept {
        return reinterpret_cast<std::uintptr_t>(&empty_array_.ctrl);
    }

    std::atomic<std::uintptr_t> cur_{empty_view()};
    std::atomic<std::uintptr_t> old_{0};
};

}  // namespace iterlock::detail
