// iterlock/detail/map/table_debug.hpp: the core's invariant check, kept apart from the table's code as Go
// keeps its debug checks apart (table_debug.go).
//
// Owns: the definition of iterlock::detail::table::check_invariants() (rules T1-T7, stated in table.hpp).
// Invariants: reads only; O(size + buckets); throws std::logic_error naming the first violation found.
// Used by map::check_invariants() (a debug call for tests) and nothing on a hot path.
#pragma once

#include <stdexcept>
#include <string>

#include "iterlock/detail/map/table.hpp"

namespace iterlock::detail {

template <class K, class V, class Hash, class KeyEqual, class Allocator, class ChainExtra, class ChainWatch>
void table<K, V, Hash, KeyEqual, Allocator, ChainExtra, ChainWatch>::check_invariants() const {
    auto fail = [](const std::string& what) { throw std::logic_error("iterlock::map invariant: " + what); };
    if (!cur_) {
        if (count_ != 0) fail("T1 entries counted but no bucket array");
        return;
    }
    if (mask_ != bucket_mask(B_)) fail("T2 mask_ is not 2^B - 1");
    std::size_t full = 0;
    std::size_t overflow = 0;
    std::vector<const K*> keys;
    auto check_chain = [&](bucket head, std::size_t index, std::size_t mask, bool old_array) {
        bool rest = false;
        for (bucket b = head; b; b = b.next()) {
            if (b.ovf != nullptr && !old_array) ++overflow;
            for (unsigned i = 0; i < bucket_cnt; ++i) {
                const std::uint8_t t = b.top[i];
                if (rest && t != empty_rest) fail("T3 slot after empty_rest is not empty_rest");
                if (t == empty_rest) rest = true;
                if (is_evacuated_mark(t)) fail("T4 evacuation mark in a live bucket");
                if (!is_full(t)) continue;
                ++full;
                const std::uint64_t h = hash_of(b.slot(i)->first);
                if (tophash_of(h) != t) fail("T2 tophash does not match the key's hash");
                if ((h & mask) != index) fail("T2 key stored in the wrong bucket");
                keys.push_back(&b.slot(i)->first);
            }
        }
    };
    if (growing()) {
        for (std::size_t j = 0; j < old_bucket_count(); ++j) {
            if (is_evacuated(old_.top(j))) {
                const bucket h = old_.at(j);
                if (h.body->overflow != nullptr &&
                    std::find(kept_links_.begin(), kept_links_.end(), h.body) == kept_links_.end()) {
                    fail("T4 evacuated bucket kept its overflow, not for an iterator");
                }
                for (bucket b = h; b; b = b.next()) {
                    for (unsigned i = 0; i < bucket_cnt; ++i)
                        if (!is_evacuated_mark(b.top[i])) fail("T4 evacuated bucket holds a live slot");
                }
            } else {
                if (j < nevacuate_) fail("T4 old bucket below nevacuate is not evacuated");
                check_chain(old_.at(j), j, old_bucket_mask(), true);
            }
        }
    }
    for (std::size_t j = 0; j < bucket_count(); ++j) {
        if (new_bucket_live(j)) check_chain(cur_.at(j), j, bucket_mask(B_), false);
    }
    if (full != count_) {
        fail("T1 count " + std::to_string(count_) + " but " + std::to_string(full) + " full slots");
    }
    if (overflow != noverflow_) fail("T6 overflow bucket count is off");
    if (growing() && trailer(old_, same_size_grow_ ? B_ : B_ - 1).next.ctrl != cur_.ctrl) {
        fail("T7 the old array's trailer does not name the current array");
    }
    if ((!retained_.empty() || !kept_links_.empty()) && !retained_due_) fail("T7 kept blocks not due");
    for (const K* k : keys) {
        if (find_slot(*k, hash_of(*k)) == nullptr || &find_slot(*k, hash_of(*k))->first != k)
            fail("T5 a key is unreachable or duplicated");
    }
}

}  // namespace iterlock::detail
