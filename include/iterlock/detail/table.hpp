// table: the single-threaded core of Go's map (runtime/map.go's hmap), shared by iterlock::map and by each
// shard of iterlock::concurrent_map. It owns the bucket arrays, lookup, assignment, deletion, incremental
// growth and the iteration algorithm. It knows nothing of threads: callers serialise access (map.hpp adds
// Go's misuse detection, concurrent_map.hpp adds locks and snapshots).
//
// How it works (Go's terms in parentheses)
// ----------------------------------------
// The table is an array of 2^B buckets (B). A key's 64-bit hash picks its bucket with the low B bits and
// its tophash byte with the top 8 bits (see tophash.hpp). A bucket holds 8 slots; when all 8 are full, an
// overflow bucket is chained behind it.
//
// Growth. When an insert would push the average load past 6.5 entries per bucket (loadFactorNum/Den =
// 13/2), or when overflow buckets pile up (as many as 2^min(B,15): the table is full of holes left by
// deletes), `hash_grow` allocates a new array — twice as large, or the same size for the second case
// (sameSizeGrow) — and keeps the old one as `oldbuckets_`. Nothing moves yet. Afterwards every write
// first calls `grow_work`, which evacuates (evacuate) the old bucket the write is about to touch and one
// more in order (nevacuate), so a growth costs each write O(1) bucket moves and no single insert pays for
// a rehash. Evacuation splits old bucket j into new buckets j (evacuated_x) and j + 2^oldB (evacuated_y)
// by hash bit oldB, and leaves evacuation marks in the old tophash bytes, so lookups know to look in the
// new array. When the last old bucket is done, the old array is freed.
//
// Iteration (hiter / mapiternext). An iteration fixes the array and B current at its start, picks a
// random start bucket and slot offset, and walks every bucket once. If the table was growing when the
// iteration started, a bucket whose old bucket is not evacuated yet is read from the old bucket instead,
// keeping only the keys that hash to the bucket being visited. See map.hpp for the numbered rules.
//
// The one departure from Go: evacuation pauses while an iterator is live
// ---------------------------------------------------------------------
// Go's evacuation copies entries and leaves the old copies readable for iterators (its GC keeps old
// arrays alive). C++ moves entries (a key may be move-only, and copies cost), so an old slot is gone once
// evacuated. Instead, while any iterator of this table is live (`live_iterators() > 0`), writes do not
// evacuate: an insert or erase for a key whose old bucket is not yet evacuated goes to that old bucket,
// and `hash_grow` only allocates. Entries therefore never move under a live iterator; when the last
// iterator ends, the next writes resume evacuation. The cost: an iteration that inserts a lot lengthens
// overflow chains until it ends. An iterator object that is kept alive indefinitely pauses growth
// indefinitely (correct, slower); map.hpp documents this.
//
// Invariants (check_invariants() verifies each one)
//   T1 count_ equals the number of full slots reachable from the live buckets.
//   T2 every full slot's tophash equals tophash_of(hash(key)), and its key belongs to the bucket holding it
//      (hash & mask of that array).
//   T3 in a chain, every slot after an empty_rest slot is empty_rest.
//   T4 while growing: old buckets below nevacuate_ are evacuated; an evacuated old bucket has only
//      evacuation marks; the new buckets of an unevacuated old bucket are uninitialised (never read).
//   T5 no key appears twice.
//   T6 noverflow_ equals the number of overflow buckets hanging off the current array (not old buckets).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "iterlock/detail/bucket.hpp"
#include "iterlock/detail/tophash.hpp"
#include "iterlock/hash.hpp"
#include "iterlock/misuse.hpp"

namespace iterlock::detail {

inline constexpr unsigned load_factor_num = 13;  // Go's loadFactorNum: 6.5 = 13 / 2 entries per bucket
inline constexpr unsigned load_factor_den = 2;

// Go's overLoadFactor: whether `count` entries in 2^B buckets exceed the load factor.
inline constexpr bool over_load_factor(std::size_t count, unsigned B) noexcept {
    return count > bucket_cnt && count > load_factor_num * ((std::size_t{1} << B) / load_factor_den);
}
// Go's tooManyOverflowBuckets: as many overflow buckets as (capped) regular ones.
inline constexpr bool too_many_overflow_buckets(std::size_t noverflow, unsigned B) noexcept {
    return noverflow >= (std::size_t{1} << std::min(B, 15u));
}
// Smallest B whose array holds `hint` entries without growing (Go's makemap).
inline constexpr unsigned bucket_shift_for(std::size_t hint) noexcept {
    unsigned B = 0;
    while (over_load_factor(hint, B)) ++B;
    return B;
}

// A layer above the map may watch chain writes (concurrent_map's snapshots preserve a chain before its
// first change). The default watcher does nothing and costs nothing.
struct no_chain_watch {
    template <class Bucket>
    void before_chain_write(Bucket*) noexcept {}
    template <class Bucket>
    bool retire_array(Bucket*, std::size_t) noexcept {
        return false;  // false: the table frees the array itself
    }
};

// Live-iterator bookkeeping, packed in one word so registration is a single CAS:
//
//   63                                  20 19                  0
//   +--------------------------------------+---------------------+
//   | owner thread tag (all ones: several) |  live iterator count |
//   +--------------------------------------+---------------------+
inline constexpr std::uint64_t iter_count_bits = 20;
inline constexpr std::uint64_t iter_count_mask = (std::uint64_t{1} << iter_count_bits) - 1;
inline constexpr std::uint64_t iter_owner_shared = ~std::uint64_t{0} >> iter_count_bits;

template <class K, class V, class Hash, class KeyEqual, class Allocator, class ChainExtra = no_chain_extra,
          class ChainWatch = no_chain_watch>
class table {
public:
    using key_type = K;
    using mapped_type = V;
    using slot_type = std::pair<const K, V>;
    using bucket_type = bucket<slot_type, ChainExtra>;
    using size_type = std::size_t;
    using allocator_type = Allocator;

    static_assert(std::is_nothrow_move_constructible_v<K> && std::is_nothrow_move_constructible_v<V>,
                  "iterlock maps move entries during incremental growth: K and V must be nothrow move "
                  "constructible");
    static_assert(alignof(slot_type) <= alignof(std::max_align_t),
                  "over-aligned entries are not supported");

    static constexpr std::size_t no_check = ~std::size_t{0};

    // Go's hiter: the state of one iteration.
    struct iter_state {
        bucket_type* it_buckets = nullptr;  // the array current when the iteration started
        bucket_type* b = nullptr;           // bucket being walked (a chain member), nullptr between buckets
        std::size_t start_bucket = 0;
        std::size_t bucket = 0;  // next bucket index (in it_B space) to visit
        std::size_t check_bucket = no_check;
        std::uint64_t clear_epoch = 0;
        slot_mask pending = 0;  // full slots of b not produced yet, rotated by offset
        std::uint8_t it_B = 0;
        std::uint8_t offset = 0;
        bool wrapped = false;
    };

    explicit table(std::uint64_t seed, const Hash& h = Hash(), const KeyEqual& eq = KeyEqual(),
                   const Allocator& a = Allocator())
        : hash0_(seed), hash_(h), eq_(eq), alloc_(a) {}

    table(const table&) = delete;
    table& operator=(const table&) = delete;

    ~table() { destroy_all(); }

    // ---- observers -------------------------------------------------------------------------------------
    size_type size() const noexcept { return count_; }
    std::uint64_t hash_seed() const noexcept { return hash0_; }
    unsigned bucket_shift() const noexcept { return B_; }
    bool growing() const noexcept { return oldbuckets_ != nullptr; }
    bool same_size_grow() const noexcept { return same_size_grow_; }
    std::size_t overflow_buckets() const noexcept { return noverflow_; }
    std::size_t evacuated_buckets() const noexcept { return nevacuate_; }
    std::uint64_t generation() const noexcept { return generation_; }
    std::uint64_t clear_epoch() const noexcept { return clear_epoch_; }
    const Hash& hash_function() const noexcept { return hash_; }
    const KeyEqual& key_eq() const noexcept { return eq_; }
    Allocator get_allocator() const { return Allocator(alloc_); }
    ChainWatch& chain_watch() noexcept { return watch_; }

    // Bytes held by bucket arrays and overflow buckets (for metrics).
    std::size_t allocated_bytes() const noexcept { return allocated_buckets_ * sizeof(bucket_type); }

    template <class K2>
    std::uint64_t hash_of(const K2& k) const noexcept(noexcept(std::declval<const Hash&>()(k))) {
        return seeded_mix(static_cast<std::uint64_t>(hash_(k)), hash0_);
    }

    // ---- lookup (Go's mapaccess) ---------------------------------------------------------------------------
    struct found_position {
        slot_type* slot;    // nullptr: not found
        std::uint8_t* top;  // the slot's tophash byte
    };
    template <class K2>
    found_position find_position(const K2& key, std::uint64_t h) const {
        if (count_ == 0) return {nullptr, nullptr};
        bucket_type* b = read_bucket_for(h);
        const std::uint8_t top = tophash_of(h);
        do {
            for (slot_mask m = match_byte(b->tophash, top); m != 0; m &= m - 1) {
                const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                slot_type* s = b->slot(i);
                if (eq_(key, s->first)) return {s, &b->tophash[i]};
            }
            if (has_empty_rest(b->tophash)) return {nullptr, nullptr};
            b = b->overflow;
        } while (b != nullptr);
        return {nullptr, nullptr};
    }
    template <class K2>
    slot_type* find_slot(const K2& key, std::uint64_t h) const {
        return find_position(key, h).slot;
    }

    // Where a key lives, or where it would be inserted. `slot` is the existing entry (found) or the free
    // slot reserved for it; `top` points at that slot's tophash byte. Nothing is modified by a reservation
    // except structure (growth steps, an empty overflow bucket): a caller that fails to construct the new
    // entry leaves the map's contents unchanged.
    struct write_position {
        slot_type* slot;
        std::uint8_t* top;
        bucket_type* chain;  // head of the chain holding the slot
        bool found;
    };

    // Go's mapassign, up to the point of storing the key. Call commit_insert() after constructing the entry
    // in a not-found slot.
    template <class K2>
    write_position prepare_write(const K2& key, std::uint64_t h) {
        if (buckets_ == nullptr) allocate_initial(0);
        for (;;) {
            const std::size_t bucket_index = h & bucket_mask(B_);
            if (growing() && !evacuation_paused()) grow_work(bucket_index);
            bucket_type* const head = write_bucket_for(h);
            bucket_type* b = head;
            const std::uint8_t top = tophash_of(h);
            std::uint8_t* insert_top = nullptr;
            slot_type* insert_slot = nullptr;
            bucket_type* last = b;
            for (; b != nullptr; b = b->overflow) {
                last = b;
                for (slot_mask m = match_byte(b->tophash, top); m != 0; m &= m - 1) {
                    const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                    if (eq_(key, b->slot(i)->first)) return {b->slot(i), &b->tophash[i], head, true};
                }
                if (insert_top == nullptr) {
                    if (const slot_mask e = match_empty(b->tophash); e != 0) {
                        const unsigned i = static_cast<unsigned>(std::countr_zero(e));
                        insert_top = &b->tophash[i];
                        insert_slot = b->slot(i);
                    }
                }
                if (has_empty_rest(b->tophash)) break;
            }
            // Not found. Start growing if the insert would overload the table, then retry (Go: goto again).
            if (!growing() && (over_load_factor(count_ + 1, B_) || too_many_overflow_buckets(noverflow_, B_))) {
                hash_grow();
                continue;
            }
            if (insert_top == nullptr) {
                watch_.before_chain_write(head);
                bucket_type* ovf = new_overflow(last, head);
                insert_top = &ovf->tophash[0];
                insert_slot = ovf->slot(0);
            }
            return {insert_slot, insert_top, head, false};
        }
    }

    // Must be called before the caller modifies the entry at `pos` (assigning a found entry, constructing a
    // new one): lets a layer above preserve the chain first.
    void will_write(const write_position& pos) noexcept(noexcept(std::declval<ChainWatch&>().before_chain_write(pos.chain))) {
        watch_.before_chain_write(pos.chain);
    }

    // Marks the reserved slot of a not-found write_position as full (after the caller constructed it).
    void commit_insert(const write_position& pos, std::uint64_t h) noexcept {
        *pos.top = tophash_of(h);
        ++count_;
    }

    // Go's mapdelete. Returns whether the key was present.
    template <class K2>
    bool erase_key(const K2& key, std::uint64_t h) {
        if (count_ == 0) return false;
        const std::size_t bucket_index = h & bucket_mask(B_);
        if (growing() && !evacuation_paused()) grow_work(bucket_index);
        bucket_type* const head = write_bucket_for(h);
        const std::uint8_t top = tophash_of(h);
        for (bucket_type* b = head; b != nullptr; b = b->overflow) {
            for (slot_mask m = match_byte(b->tophash, top); m != 0; m &= m - 1) {
                const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                if (eq_(key, b->slot(i)->first)) {
                    watch_.before_chain_write(head);
                    erase_at(head, b, i);
                    return true;
                }
            }
            if (has_empty_rest(b->tophash)) return false;
        }
        return false;
    }

    // Removes every entry for which pred(slot&) is true, visiting each entry once. O(buckets + entries).
    template <class Pred>
    size_type erase_if(Pred& pred) {
        if (count_ == 0) return 0;
        // Finish a pending growth first (when allowed) so every entry sits in the current array.
        if (!evacuation_paused()) finish_growth();
        size_type erased = 0;
        auto sweep = [&](bucket_type* head) {
            bool watched = false;
            for (bucket_type* b = head; b != nullptr; b = b->overflow) {
                for (slot_mask m = match_full(b->tophash); m != 0; m &= m - 1) {
                    const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                    if (pred(*b->slot(i))) {
                        if (!watched) watch_.before_chain_write(head), watched = true;
                        erase_at(head, b, i);
                        ++erased;
                    }
                }
            }
        };
        if (growing()) {
            for (std::size_t j = 0; j < old_bucket_count(); ++j) {
                if (!is_evacuated(oldbuckets_ + j)) sweep(oldbuckets_ + j);
            }
        }
        for (std::size_t j = 0, n = bucket_count(); j < n && count_ > 0; ++j) {
            if (new_bucket_live(j)) sweep(buckets_ + j);
        }
        return erased;
    }

    // Go 1.21's clear(m): destroys every entry, keeps the current array's size, ends live iterations.
    void clear() noexcept {
        ++clear_epoch_;
        ++generation_;
        if (buckets_ == nullptr) return;
        destroy_entries();
        for (std::size_t j = 0, n = bucket_count(); j < n; ++j) buckets_[j].reset_header();
        hash0_ = seeded_mix(hash0_, clear_epoch_);  // Go picks a new hash0 on clear
    }

    // Go's make(map, hint) applied to an existing map: makes room for `n` entries without further growth.
    // O(size) when it must rehash; a hint only (no effect) while an iterator is live.
    void reserve(size_type n) {
        const unsigned want = bucket_shift_for(n);
        if (buckets_ == nullptr) {
            allocate_initial(want);
            return;
        }
        if (evacuation_paused()) return;
        finish_growth();
        if (want <= B_) return;
        rehash_into(want);
    }

    // ---- iteration (Go's mapiterinit / mapiternext) ------------------------------------------------------
    void iter_init(iter_state& it, std::uint64_t random) const noexcept {
        it = iter_state{};
        it.clear_epoch = clear_epoch_;
        if (count_ == 0 || buckets_ == nullptr) {
            it.wrapped = true;  // nothing to visit
            return;
        }
        it.it_buckets = buckets_;
        it.it_B = static_cast<std::uint8_t>(B_);
        it.start_bucket = static_cast<std::size_t>(random) & bucket_mask(B_);
        it.bucket = it.start_bucket;
        it.offset = static_cast<std::uint8_t>((random >> 56) & (bucket_cnt - 1));
    }

    // The next entry of the iteration, or nullptr when it is over (also after a clear()).
    slot_type* iter_next(iter_state& it) const {
        if (it.clear_epoch != clear_epoch_) return nullptr;
        for (;;) {
            if (it.b == nullptr) {
                if (it.it_buckets == nullptr || (it.bucket == it.start_bucket && it.wrapped)) return nullptr;
                if (growing() && it.it_B == B_) {
                    // Started during a growth that is not done: an old bucket that is not evacuated holds
                    // the entries of this bucket (and, unless same-size, of its sibling).
                    bucket_type* ob = oldbuckets_ + (it.bucket & old_bucket_mask());
                    if (!is_evacuated(ob)) {
                        it.b = ob;
                        it.check_bucket = it.bucket;
                    } else {
                        it.b = it.it_buckets + it.bucket;
                        it.check_bucket = no_check;
                    }
                } else {
                    it.b = it.it_buckets + it.bucket;
                    it.check_bucket = no_check;
                }
                if (++it.bucket == (std::size_t{1} << it.it_B)) {
                    it.bucket = 0;
                    it.wrapped = true;
                }
                it.pending = rotate_mask(match_full(it.b->tophash), it.offset);
            }
            while (it.pending != 0) {
                const unsigned k = static_cast<unsigned>(std::countr_zero(it.pending));
                it.pending &= it.pending - 1;
                const unsigned i = (k + it.offset) & (bucket_cnt - 1);
                if (!is_full(it.b->tophash[i])) continue;  // erased since we entered the bucket (rule I1)
                slot_type* s = it.b->slot(i);
                if (it.check_bucket != no_check && !same_size_grow_ &&
                    (hash_of(s->first) & bucket_mask(it.it_B)) != it.check_bucket) {
                    continue;  // belongs to the sibling bucket
                }
                return s;
            }
            it.b = it.b->overflow;
            if (it.b != nullptr) it.pending = rotate_mask(match_full(it.b->tophash), it.offset);
        }
    }

    // Visits every entry once, in bucket order (no randomisation): for copies, ==, erase_if of the map.
    template <class F>
    void for_each_slot(F&& f) const {
        auto walk = [&](bucket_type* head) {
            for (bucket_type* b = head; b != nullptr; b = b->overflow) {
                for (slot_mask m = match_full(b->tophash); m != 0; m &= m - 1) {
                    f(*b->slot(static_cast<unsigned>(std::countr_zero(m))));
                }
            }
        };
        if (buckets_ == nullptr) return;
        if (growing()) {
            for (std::size_t j = 0; j < old_bucket_count(); ++j) {
                if (!is_evacuated(oldbuckets_ + j)) walk(oldbuckets_ + j);
            }
        }
        for (std::size_t j = 0, n = bucket_count(); j < n; ++j) {
            if (new_bucket_live(j)) walk(buckets_ + j);
        }
    }

    // ---- live iterators ------------------------------------------------------------------------------------
    std::uint64_t iterator_word() const noexcept { return iter_word_.load(std::memory_order_relaxed); }
    std::size_t live_iterators() const noexcept {
        return static_cast<std::size_t>(iter_word_.load(std::memory_order_relaxed) & iter_count_mask);
    }
    bool evacuation_paused() const noexcept { return live_iterators() != 0; }

    // Registers a live iterator created by the thread `tag`.
    void register_iterator(std::uint64_t tag) const noexcept {
        std::uint64_t w = iter_word_.load(std::memory_order_relaxed);
        for (;;) {
            const std::uint64_t n = w & iter_count_mask;
            const std::uint64_t owner = w >> iter_count_bits;
            const std::uint64_t new_owner = (n == 0 || owner == tag) ? tag : iter_owner_shared;
            if (n + 1 > iter_count_mask) fatal("iterlock: too many live iterators of one map (2^20)");
            const std::uint64_t nw = (new_owner << iter_count_bits) | (n + 1);
            if (iter_word_.compare_exchange_weak(w, nw, std::memory_order_acq_rel, std::memory_order_relaxed))
                return;
        }
    }
    void unregister_iterator() const noexcept {
        std::uint64_t w = iter_word_.load(std::memory_order_relaxed);
        for (;;) {
            const std::uint64_t n = (w & iter_count_mask) - 1;
            const std::uint64_t nw = n == 0 ? 0 : ((w & ~iter_count_mask) | n);
            if (iter_word_.compare_exchange_weak(w, nw, std::memory_order_acq_rel, std::memory_order_relaxed))
                return;
        }
    }

    // ---- whole-table operations ----------------------------------------------------------------------------
    // Takes other's contents; other becomes empty (with a fresh array on its next insert).
    void steal(table& other) noexcept {
        destroy_all();
        buckets_ = std::exchange(other.buckets_, nullptr);
        oldbuckets_ = std::exchange(other.oldbuckets_, nullptr);
        count_ = std::exchange(other.count_, 0);
        nevacuate_ = std::exchange(other.nevacuate_, 0);
        noverflow_ = std::exchange(other.noverflow_, 0);
        allocated_buckets_ = std::exchange(other.allocated_buckets_, 0);
        B_ = std::exchange(other.B_, 0);
        same_size_grow_ = std::exchange(other.same_size_grow_, false);
        hash0_ = other.hash0_;
        ++other.generation_;
        ++other.clear_epoch_;
        ++generation_;
        ++clear_epoch_;
    }

    void swap_contents(table& other) noexcept {
        using std::swap;
        swap(buckets_, other.buckets_);
        swap(oldbuckets_, other.oldbuckets_);
        swap(count_, other.count_);
        swap(nevacuate_, other.nevacuate_);
        swap(noverflow_, other.noverflow_);
        swap(allocated_buckets_, other.allocated_buckets_);
        swap(B_, other.B_);
        swap(same_size_grow_, other.same_size_grow_);
        swap(hash0_, other.hash0_);
        swap(hash_, other.hash_);
        swap(eq_, other.eq_);
        if constexpr (std::allocator_traits<bucket_alloc>::propagate_on_container_swap::value) {
            swap(alloc_, other.alloc_);
        }
        ++generation_, ++other.generation_;
        ++clear_epoch_, ++other.clear_epoch_;
    }

    // Inserts an entry known to be absent (copies, rehash): no lookup, no growth check beyond load.
    template <class... Args>
    slot_type* insert_unique(std::uint64_t h, Args&&... args) {
        write_position pos = prepare_unique(h);
        ::new (static_cast<void*>(pos.slot)) slot_type(std::forward<Args>(args)...);
        commit_insert(pos, h);
        return pos.slot;
    }

    // Verifies T1-T6; throws std::logic_error naming the first violation. O(size + buckets).
    void check_invariants() const {
        auto fail = [](const std::string& what) { throw std::logic_error("iterlock::map invariant: " + what); };
        if (buckets_ == nullptr) {
            if (count_ != 0) fail("T1 entries counted but no bucket array");
            return;
        }
        std::size_t full = 0;
        std::size_t overflow = 0;
        std::vector<const K*> keys;
        auto check_chain = [&](const bucket_type* head, std::size_t index, std::size_t mask, bool old_array) {
            bool rest = false;
            for (const bucket_type* b = head; b != nullptr; b = b->overflow) {
                if (b != head && !old_array) ++overflow;
                for (unsigned i = 0; i < bucket_cnt; ++i) {
                    const std::uint8_t t = b->tophash[i];
                    if (rest && t != empty_rest) fail("T3 slot after empty_rest is not empty_rest");
                    if (t == empty_rest) rest = true;
                    if (is_evacuated_mark(t)) fail("T4 evacuation mark in a live bucket");
                    if (!is_full(t)) continue;
                    ++full;
                    const std::uint64_t h = hash_of(b->slot(i)->first);
                    if (tophash_of(h) != t) fail("T2 tophash does not match the key's hash");
                    if ((h & mask) != index) fail("T2 key stored in the wrong bucket");
                    keys.push_back(&b->slot(i)->first);
                }
            }
        };
        if (growing()) {
            const std::size_t om = old_bucket_mask();
            for (std::size_t j = 0; j < old_bucket_count(); ++j) {
                const bucket_type* ob = oldbuckets_ + j;
                if (is_evacuated(ob)) {
                    for (const bucket_type* b = ob; b != nullptr; b = b->overflow)
                        for (unsigned i = 0; i < bucket_cnt; ++i)
                            if (!is_evacuated_mark(b->tophash[i])) fail("T4 evacuated bucket holds a live slot");
                } else {
                    if (j < nevacuate_) fail("T4 old bucket below nevacuate is not evacuated");
                    check_chain(ob, j, om, true);
                }
            }
        }
        const std::size_t m = bucket_mask(B_);
        for (std::size_t j = 0; j < bucket_count(); ++j) {
            if (new_bucket_live(j)) check_chain(buckets_ + j, j, m, false);
        }
        if (full != count_) {
            fail("T1 count " + std::to_string(count_) + " but " + std::to_string(full) + " full slots");
        }
        if (overflow != noverflow_) fail("T6 overflow bucket count is off");
        for (const K* k : keys) {
            if (find_slot(*k, hash_of(*k)) == nullptr || &find_slot(*k, hash_of(*k))->first != k)
                fail("T5 a key is unreachable or duplicated");
        }
    }

private:
    using bucket_alloc = typename std::allocator_traits<Allocator>::template rebind_alloc<bucket_type>;
    using bucket_traits = std::allocator_traits<bucket_alloc>;

    static constexpr std::size_t bucket_mask(unsigned B) noexcept { return (std::size_t{1} << B) - 1; }
    std::size_t bucket_count() const noexcept { return std::size_t{1} << B_; }
    std::size_t old_bucket_count() const noexcept {
        return same_size_grow_ ? bucket_count() : bucket_count() >> 1;
    }
    std::size_t old_bucket_mask() const noexcept { return old_bucket_count() - 1; }
    static bool is_evacuated(const bucket_type* b) noexcept { return is_evacuated_mark(b->tophash[0]); }

    // Whether new-array bucket j has been initialised (its old bucket was evacuated, or no growth).
    bool new_bucket_live(std::size_t j) const noexcept {
        return !growing() || is_evacuated(oldbuckets_ + (j & old_bucket_mask()));
    }

    // The bucket a lookup for hash h reads: the old one while it is not evacuated.
    bucket_type* read_bucket_for(std::uint64_t h) const noexcept {
        if (growing()) {
            bucket_type* ob = oldbuckets_ + (h & old_bucket_mask());
            if (!is_evacuated(ob)) return ob;
        }
        return buckets_ + (h & bucket_mask(B_));
    }
    // Same for a write: after grow_work the old bucket is evacuated, unless evacuation is paused.
    bucket_type* write_bucket_for(std::uint64_t h) noexcept { return read_bucket_for(h); }

    bucket_type* allocate_array(std::size_t n) {
        bucket_type* a = bucket_traits::allocate(alloc_, n);
        allocated_buckets_ += n;
        return a;
    }
    void deallocate_array(bucket_type* a, std::size_t n) noexcept {
        allocated_buckets_ -= n;
        if (!watch_.retire_array(a, n)) bucket_traits::deallocate(alloc_, a, n);
    }

    void allocate_initial(unsigned B) {
        bucket_type* a = allocate_array(std::size_t{1} << B);
        for (std::size_t j = 0, n = std::size_t{1} << B; j < n; ++j) a[j].reset_header();
        buckets_ = a;
        B_ = B;
        noverflow_ = 0;
        nevacuate_ = 0;
        same_size_grow_ = false;
    }

    // Go's newoverflow: chains an empty overflow bucket behind `last` (a member of the chain at `head`).
    bucket_type* new_overflow(bucket_type* last, bucket_type* head) {
        bucket_type* ovf = allocate_array(1);
        ovf->reset_header();
        last->overflow = ovf;
        if (!growing() || !in_old_array(head)) ++noverflow_;
        return ovf;
    }
    bool in_old_array(const bucket_type* b) const noexcept {
        return oldbuckets_ != nullptr && b >= oldbuckets_ && b < oldbuckets_ + old_bucket_count();
    }

    // Empties slot i of bucket b (in the chain at head) and maintains empty_rest (Go's mapdelete tail).
    void erase_at(bucket_type* head, bucket_type* b, unsigned i) noexcept {
        std::destroy_at(b->slot(i));
        b->tophash[i] = empty_one;
        --count_;
        // If the chain now ends in a run of empty_one slots, turn them into empty_rest.
        if (i == bucket_cnt - 1) {
            if (b->overflow != nullptr && b->overflow->tophash[0] != empty_rest) return;
        } else if (b->tophash[i + 1] != empty_rest) {
            return;
        }
        for (;;) {
            b->tophash[i] = empty_rest;
            if (i == 0) {
                if (b == head) break;
                bucket_type* c = b;
                for (b = head; b->overflow != c; b = b->overflow) {
                }
                i = bucket_cnt - 1;
            } else {
                --i;
            }
            if (b->tophash[i] != empty_one) break;
        }
        if (count_ == 0 && !evacuation_paused()) hash0_ = seeded_mix(hash0_, ++reseeds_);
    }

    // Go's hashGrow: allocate the next array; evacuation happens later, a little on each write.
    void hash_grow() {
        unsigned bigger = 1;
        if (!over_load_factor(count_ + 1, B_)) {
            bigger = 0;  // too many overflow buckets: same-size growth compacts them
        }
        bucket_type* newb = allocate_array(std::size_t{1} << (B_ + bigger));
        // New buckets are initialised when their old bucket is evacuated (new_bucket_live), so allocating
        // the array touches none of its memory: the growth step itself is O(1).
        oldbuckets_ = buckets_;
        buckets_ = newb;
        B_ += bigger;
        same_size_grow_ = bigger == 0;
        nevacuate_ = 0;
        noverflow_ = 0;
    }

    // Go's growWork: evacuate the old bucket a write is about to use, and one more to make progress.
    void grow_work(std::size_t bucket_index) {
        evacuate(bucket_index & old_bucket_mask());
        if (growing()) evacuate(nevacuate_);
    }

    void finish_growth() {
        while (growing()) evacuate(nevacuate_);
    }

    // Go's evacuate: moves the entries of old bucket `oldbucket` to the new array. Strong guarantee: a
    // throwing hash or a failed allocation leaves the table as it was (all of that happens before the
    // first entry moves; moving itself cannot throw).
    void evacuate(std::size_t oldbucket) {
        bucket_type* const oldhead = oldbuckets_ + oldbucket;
        const std::size_t newbit = old_bucket_count();
        if (!is_evacuated(oldhead)) {
            // Pass 1: decide x (same index) or y (index + newbit) for every entry, and count each side.
            std::size_t chain_len = 0;
            for (bucket_type* b = oldhead; b != nullptr; b = b->overflow) ++chain_len;
            std::uint8_t y_small[16] = {};
            std::vector<std::uint8_t> y_large;
            std::uint8_t* y_masks = y_small;  // one byte per chain bucket: bit i = slot i goes to y
            if (chain_len > 16) {
                y_large.assign(chain_len, 0);
                y_masks = y_large.data();
            }
            std::size_t counts[2] = {0, 0};
            std::size_t n = 0;
            for (bucket_type* b = oldhead; b != nullptr; b = b->overflow, ++n) {
                for (slot_mask m = match_full(b->tophash); m != 0; m &= m - 1) {
                    const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                    const bool use_y = !same_size_grow_ && (hash_of(b->slot(i)->first) & newbit) != 0;
                    if (use_y) y_masks[n] |= static_cast<std::uint8_t>(1u << i);
                    ++counts[use_y];
                }
            }
            // Pass 2: build the destination chains; these are the only allocations.
            bucket_type* const heads[2] = {buckets_ + oldbucket,
                                           same_size_grow_ ? nullptr : buckets_ + oldbucket + newbit};
            watch_.before_chain_write(oldhead);
            watch_.before_chain_write(heads[0]);
            if (heads[1] != nullptr) watch_.before_chain_write(heads[1]);
            prepare_chain(heads[0], counts[0]);
            if (heads[1] != nullptr) {
                try {
                    prepare_chain(heads[1], counts[1]);
                } catch (...) {
                    free_overflow_chain(heads[0]);
                    throw;
                }
            }
            // Pass 3: move. Nothing below throws.
            struct dest {
                bucket_type* b;
                unsigned i;
            };
            dest xy[2] = {{heads[0], 0}, {heads[1], 0}};
            n = 0;
            for (bucket_type* b = oldhead; b != nullptr; ++n) {
                for (unsigned i = 0; i < bucket_cnt; ++i) {
                    const std::uint8_t top = b->tophash[i];
                    if (!is_full(top)) {
                        b->tophash[i] = evacuated_empty;
                        continue;
                    }
                    const unsigned use_y = (y_masks[n] >> i) & 1u;
                    b->tophash[i] = static_cast<std::uint8_t>(evacuated_x + use_y);
                    dest& d = xy[use_y];
                    if (d.i == bucket_cnt) {
                        d.b = d.b->overflow;
                        d.i = 0;
                    }
                    d.b->tophash[d.i] = top;
                    slot_type* src = b->slot(i);
                    ::new (static_cast<void*>(d.b->slot(d.i))) slot_type(relocate_from(*src));
                    std::destroy_at(src);
                    ++d.i;
                }
                bucket_type* next = b->overflow;
                if (b != oldhead) deallocate_array(b, 1);  // old overflow buckets are done with
                b = next;
            }
            oldhead->overflow = nullptr;
            ++generation_;
        }
        if (oldbucket == nevacuate_) advance_evacuation_mark(newbit);
    }

    // Initialises a fresh chain at `head` with room for `entries` (overflow buckets linked behind it).
    void prepare_chain(bucket_type* head, std::size_t entries) {
        head->reset_header();
        bucket_type* last = head;
        try {
            for (std::size_t room = bucket_cnt; room < entries; room += bucket_cnt) {
                bucket_type* ovf = allocate_array(1);
                ovf->reset_header();
                last->overflow = ovf;
                last = ovf;
                ++noverflow_;
            }
        } catch (...) {
            free_overflow_chain(head);
            throw;
        }
    }
    // Frees the (empty) overflow buckets behind head.
    void free_overflow_chain(bucket_type* head) noexcept {
        for (bucket_type* b = head->overflow; b != nullptr;) {
            bucket_type* next = b->overflow;
            deallocate_array(b, 1);
            --noverflow_;
            b = next;
        }
        head->overflow = nullptr;
    }

    // Go's advanceEvacuationMark: moves nevacuate_ past evacuated buckets; frees the old array at the end.
    void advance_evacuation_mark(std::size_t newbit) noexcept {
        ++nevacuate_;
        const std::size_t stop = std::min(nevacuate_ + 1024, newbit);
        while (nevacuate_ != stop && is_evacuated(oldbuckets_ + nevacuate_)) ++nevacuate_;
        if (nevacuate_ == newbit) {
            deallocate_array(oldbuckets_, newbit);
            oldbuckets_ = nullptr;
            same_size_grow_ = false;
            nevacuate_ = 0;
        }
    }

    // Reservation for an entry known to be absent.
    write_position prepare_unique(std::uint64_t h) {
        if (buckets_ == nullptr) allocate_initial(0);
        if (!growing() && over_load_factor(count_ + 1, B_) && !evacuation_paused()) {
            finish_growth();
            rehash_into(B_ + 1);
        }
        bucket_type* const head = write_bucket_for(h);
        bucket_type* last = head;
        for (bucket_type* b = head; b != nullptr; b = b->overflow) {
            last = b;
            if (const slot_mask e = match_empty(b->tophash); e != 0) {
                const unsigned i = static_cast<unsigned>(std::countr_zero(e));
                watch_.before_chain_write(head);
                return {b->slot(i), &b->tophash[i], head, false};
            }
        }
        watch_.before_chain_write(head);
        bucket_type* ovf = new_overflow(last, head);
        return {ovf->slot(0), &ovf->tophash[0], head, false};
    }

    // Moves every entry into a fresh array of 2^B buckets (reserve, copies). Requires: not growing.
    void rehash_into(unsigned B) {
        const std::size_t oldn = bucket_count();
        // Hash everything first: a throwing hash must leave the table as it was.
        std::vector<std::uint64_t> hashes;
        if constexpr (!noexcept(std::declval<const Hash&>()(std::declval<const K&>()))) {
            hashes.reserve(count_);
            for_each_slot([&](slot_type& s) { hashes.push_back(hash_of(s.first)); });
        }
        bucket_type* old = buckets_;
        const unsigned oldB = B_;
        const std::size_t moved = count_;
        allocate_initial(B);  // sets buckets_, B_, noverflow_
        count_ = 0;
        move_all_into_current(old, oldn, hashes);
        (void)oldB;
        (void)moved;
        deallocate_array(old, oldn);
        ++generation_;
    }

    // The moving half of rehash_into. An allocation failure here cannot be undone: terminate (noexcept).
    void move_all_into_current(bucket_type* old, std::size_t oldn, const std::vector<std::uint64_t>& hashes) noexcept {
        std::size_t n = 0;
        for (std::size_t j = 0; j < oldn; ++j) {
            for (bucket_type* b = old + j; b != nullptr;) {
                for (slot_mask m = match_full(b->tophash); m != 0; m &= m - 1) {
                    slot_type* src = b->slot(static_cast<unsigned>(std::countr_zero(m)));
                    std::uint64_t h;
                    if constexpr (noexcept(std::declval<const Hash&>()(std::declval<const K&>()))) {
                        h = hash_of(src->first);
                    } else {
                        h = hashes[n];
                    }
                    ++n;
                    insert_unique(h, relocate_from(*src));
                    std::destroy_at(src);
                }
                bucket_type* next = b->overflow;
                if (b != old + j) deallocate_array(b, 1);
                b = next;
            }
        }
    }

    // Destroys every entry, frees overflow buckets and the old array; the current array stays allocated
    // (its headers are stale: callers reset or free it).
    void destroy_entries() noexcept {
        auto destroy_chain = [&](bucket_type* head) {
            for (bucket_type* b = head; b != nullptr;) {
                for (slot_mask m = match_full(b->tophash); m != 0; m &= m - 1) {
                    std::destroy_at(b->slot(static_cast<unsigned>(std::countr_zero(m))));
                }
                bucket_type* next = b->overflow;
                if (b != head) deallocate_array(b, 1);
                b = next;
            }
        };
        if (growing()) {
            for (std::size_t j = 0; j < old_bucket_count(); ++j) {
                if (!is_evacuated(oldbuckets_ + j)) destroy_chain(oldbuckets_ + j);
            }
        }
        for (std::size_t j = 0, n = bucket_count(); j < n; ++j) {
            if (new_bucket_live(j)) destroy_chain(buckets_ + j);
        }
        if (growing()) deallocate_array(oldbuckets_, old_bucket_count());
        oldbuckets_ = nullptr;
        count_ = 0;
        nevacuate_ = 0;
        noverflow_ = 0;
        same_size_grow_ = false;
    }

    // Destroys every entry and frees every bucket.
    void destroy_all() noexcept {
        if (buckets_ == nullptr) return;
        destroy_entries();
        deallocate_array(buckets_, bucket_count());
        buckets_ = nullptr;
        B_ = 0;
    }

    // hmap's fields (Go's names: buckets, oldbuckets, count, nevacuate, noverflow, B, hash0).
    bucket_type* buckets_ = nullptr;     // 2^B_ buckets; nullptr until the first insert or reserve
    bucket_type* oldbuckets_ = nullptr;  // the previous array while growing, else nullptr
    std::size_t count_ = 0;              // live entries (Go's count)
    std::size_t nevacuate_ = 0;          // old buckets below this are evacuated
    std::size_t noverflow_ = 0;          // overflow buckets on the current array
    std::size_t allocated_buckets_ = 0;  // buckets allocated, arrays and overflow (for metrics)
    std::uint64_t hash0_;                // per-map hash seed
    std::uint64_t generation_ = 0;       // bumped whenever entries move (checked builds compare it)
    std::uint64_t clear_epoch_ = 0;      // bumped by clear and moves: live iterations end
    std::uint64_t reseeds_ = 0;
    unsigned B_ = 0;                     // log2 of the bucket count
    bool same_size_grow_ = false;        // the current growth keeps B (Go's sameSizeGrow flag)
    mutable std::atomic<std::uint64_t> iter_word_{0};  // live iterators (see iter_count_bits)
    [[no_unique_address]] Hash hash_;
    [[no_unique_address]] KeyEqual eq_;
    [[no_unique_address]] bucket_alloc alloc_;
    [[no_unique_address]] ChainWatch watch_;
};

}  // namespace iterlock::detail
