// iterlock/detail/map/table.hpp: the single-threaded core of Go's map (runtime/map.go's hmap), shared by
// iterlock::map and by each shard of iterlock::concurrent_map.
//
// Owns: iterlock::detail::table, iterlock::detail::no_chain_watch, the growth thresholds (load_factor_num,
//       load_factor_den, max_bucket_shift, max_entries, over_load_factor(), too_many_overflow_buckets(),
//       bucket_shift_for()) and array_clock.
// Invariants: T1-T7 at the end of this comment (check_invariants(), detail/map/table_debug.hpp, verifies
//       each); the caller serialises every call, except find_racy(), which a lock-free reader may run
//       beside the writer under the conditions stated at its declaration.
//
// It owns the bucket arrays, lookup, assignment, deletion, incremental growth and the iteration algorithm.
// It takes no lock and starts no thread: callers serialise every call (map.hpp adds Go's misuse
// detection, the concurrent tier adds locks and snapshots). What it keeps for readers beside its one
// writer is confined to the published view (find_racy), the iterator registry, the retire list and a few
// counters read with relaxed loads.
//
// How it works (Go's terms in parentheses)
// ----------------------------------------
// The table is an array of 2^B buckets (B). A key's 64-bit hash picks its bucket with the low B bits and
// its tophash byte with the top 8 bits (see tophash.hpp). A bucket holds 8 slots; when all 8 are full, an
// overflow bucket is chained behind it. The tophash bytes of the main buckets live in a separate control
// array (bucket.hpp says why); a `bucket_ref` names one member of a chain.
//
// Growth. When an insert would push the average load past 6.5 entries per bucket (loadFactorNum/Den =
// 13/2), or when overflow buckets pile up (as many as 2^min(B,15): the table is full of holes left by
// deletes), `hash_grow` allocates a new array — twice as large, or the same size for the second case
// (sameSizeGrow) — and keeps the old one as `old_`. Nothing moves yet, and the new array's memory is not
// even touched: a new bucket is initialised when its old bucket is evacuated. Afterwards every write first
// calls `grow_work`, which evacuates (evacuate) the next evacuations_per_write old buckets in order
// (nevacuate), so a growth costs each write O(1) bucket moves and no single insert pays for a rehash.
// Evacuation splits old bucket j into new buckets j (evacuated_x) and j + 2^oldB (evacuated_y) by hash bit
// oldB, and leaves evacuation marks in the old tophash bytes, so lookups know to look in the new array. When
// the last old bucket is done, the old array is freed.
//
// Iteration (hiter / mapiternext). An iteration fixes the array and B current at its start, picks a
// random start bucket and slot offset, and walks every bucket once. If the table was growing when the
// iteration started, a bucket whose old bucket is not evacuated yet is read from the old bucket instead,
// keeping only the keys that hash to the bucket being visited. See map.hpp for the numbered rules.
//
// Growth under live iterators (Go keeps old copies readable; iterlock follows marks)
// -----------------------------------------------------------------------------------
// Go's evacuation copies entries and leaves the old copies readable for iterators (its GC keeps old
// arrays alive), and an iterator looks a moved key up in the new array. C++ moves entries (a key may be
// move-only, and copies cost), so an old slot has no key left once evacuated. Growth still goes on while
// iterators are live; an iterator finds a moved entry from the slot's evacuation mark (which side, x or y)
// and its rank among the chain's slots with that mark: evacuation fills each side's fresh chain in chain
// order, and positions never shift afterwards (erase leaves holes; only evacuation moves, leaving a mark).
// See forward() and iter_next(). For this, while an iterator is registered (`iterators_live()`):
//   - evacuation leaves the old chain's overflow members linked (kept_links_) and a growth's retired array
//     is kept (retained_); each array's trailer names the array it was evacuated into. The first write
//     with no iterator live frees them (release_retained);
//   - a write evacuates after its own change, not before (its arguments may refer into the table), and
//     an insert whose step moved the new entry reports where it went (commit_insert);
//   - reserve() does nothing and the seed is not renewed when the map empties (iterations filter by hash).
// docs/DESIGN.md ("Growth under live iterators") argues the rules I1-I7 of map.hpp from this.
//
// Invariants (check_invariants() verifies each one)
//   T1 count_ equals the number of full slots reachable from the live buckets.
//   T2 every full slot's tophash equals tophash_of(hash(key)), and its key belongs to the bucket holding it
//      (hash & mask of that array); mask_ is 2^B_ - 1, the current array's mask.
//   T3 in a chain, every slot after an empty_rest slot is empty_rest.
//   T4 while growing: old buckets below nevacuate_ are evacuated; an evacuated old bucket has only
//      evacuation marks, in every member of its chain, and no overflow members unless they are kept for
//      iterators (kept_links_); the new buckets of an unevacuated old bucket are uninitialised (never read).
//   T5 no key appears twice.
//   T6 noverflow_ equals the number of overflow buckets hanging off the current array (not old buckets).
//   T7 while growing, the old array's trailer names the current array; whatever is kept for iterators
//      (retained_, kept_links_) is flagged for release (retained_due_).
//   T8 no full slot is emptied or moved, and no growth starts, without a change of vacates_ (iter_next's
//      gate relies on it; not checkable after the fact: the iteration tests catch a missing bump).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "iterlock/detail/map/bucket.hpp"
#include "iterlock/detail/map/iterator_registry.hpp"
#include "iterlock/detail/map/published_view.hpp"
#include "iterlock/detail/map/tophash.hpp"
#include "iterlock/detail/reclaim/retire_list.hpp"
#include "iterlock/detail/util/exclusive_add.hpp"
#include "iterlock/detail/util/fence.hpp"
#include "iterlock/detail/util/inline.hpp"
#include "iterlock/detail/util/prefetch.hpp"
#include "iterlock/detail/util/racy_read.hpp"
#include "iterlock/hash.hpp"
#include "iterlock/misuse.hpp"

namespace iterlock::detail {

inline constexpr unsigned load_factor_num = 13;  // Go's loadFactorNum: 6.5 = 13 / 2 entries per bucket
inline constexpr unsigned load_factor_den = 2;
// Old buckets a write evacuates while a growth is in progress (Go: 2). Eight end a growth four times sooner:
// fewer writes take the growing path, and the sweep runs in longer streams (inserts while filling 0 -> 1M
// 4-6% faster than with 2; docs/BENCHMARKS.md, "Evacuations per write"); a write's worst case stays eight
// bucket moves, far from a rehash.
inline constexpr unsigned evacuations_per_write = 8;

// The largest array: 2^31 buckets (the array views pack B into 5 bits, detail/map/published_view.hpp).
inline constexpr unsigned max_bucket_shift = 31;
static_assert(max_bucket_shift <= published_view<int, no_chain_extra>::max_shift,
              "B must fit a view's 5 bits");
static_assert(max_bucket_shift <= 32, "table::mask_ holds 2^B - 1 in 32 bits");
// The most entries a table holds: a full load factor on the largest array, 13 * 2^30 (about 1.4e10).
// reserve() refuses more, and so does an insert (std::length_error); map::max_size() reports it.
inline constexpr std::size_t max_entries =
    load_factor_num * ((std::size_t{1} << max_bucket_shift) / load_factor_den);

// Go's overLoadFactor: whether `count` entries in 2^B buckets exceed the load factor. Requires:
// B <= max_bucket_shift + 1 (every caller's B is an array's, or one more).
inline constexpr bool over_load_factor(std::size_t count, unsigned B) noexcept {
    return count > bucket_cnt && count > load_factor_num * ((std::size_t{1} << B) / load_factor_den);
}
[[noreturn, gnu::cold, gnu::noinline]] inline void throw_too_many_entries() {
    throw std::length_error(
        "iterlock: more entries than a map can hold (max_size(), 13 * 2^30: a full load factor on 2^31 "
        "buckets)");
}
// Go's tooManyOverflowBuckets: about as many overflow buckets as regular ones. Go keeps a 16-bit count
// that, for B > 15, only advances with probability 2^(15-B), and compares it with 2^min(B, 15): in effect
// "noverflow >= 2^B". iterlock counts exactly, so it compares with 2^B directly. (Comparing an exact count
// with the capped 2^15 would start a same-size growth every few thousand inserts once B > 15.)
inline constexpr bool too_many_overflow_buckets(std::size_t noverflow, unsigned B) noexcept {
    return noverflow >= (std::size_t{1} << B);
}
// Smallest B whose array holds `hint` entries without growing (Go's makemap). Throws std::length_error for
// a hint above max_entries (no array holds it), before looping: the loop then ends by B = max_bucket_shift.
inline constexpr unsigned bucket_shift_for(std::size_t hint) {
    if (hint > max_entries) throw_too_many_entries();
    unsigned B = 0;
    while (over_load_factor(hint, B)) ++B;
    return B;
}

// A process-wide clock that stamps bucket arrays when they become current (see table::iter_init).
inline std::atomic<std::uint64_t> array_clock{0};

// A layer above the map may watch chain writes (concurrent_map's snapshots preserve a chain before its
// first change) and take over freeing retired arrays. The default watcher does nothing and costs nothing.
//   before_chain_write(head)     a logical write (insert, assign, erase) is about to change the chain;
//   before_physical_write(head)  evacuation is about to empty the (old) chain;
//   chain_initialized(head)      evacuation just initialised a fresh chain of the new array;
//   prepare_structure_change()   a growth or rehash is about to allocate (may throw: nothing changed yet);
//   before_structure_change()    the arrays, B or the growth state are about to change (noexcept);
//   retire_block(block, lines)   an array is being freed (lines > 0) or an overflow bucket (lines == 0).
struct no_chain_watch {
    template <class BucketRef>
    void before_chain_write(const BucketRef&) noexcept {}
    template <class BucketRef>
    void before_physical_write(const BucketRef&) noexcept {}
    template <class BucketRef>
    void chain_initialized(const BucketRef&) noexcept {}
    template <class Table>
    void prepare_structure_change(const Table&) noexcept {}
    template <class Table>
    void before_structure_change(const Table&) noexcept {}
    // Returns true if the watcher took ownership of the block (it frees it later with the table's allocator).
    template <class Block>
    bool retire_block(Block*, std::size_t) noexcept {
        return false;
    }
};

template <class K, class V, class Hash, class KeyEqual, class Allocator, class ChainExtra = no_chain_extra,
          class ChainWatch = no_chain_watch>
class table {
  public:
    using key_type = K;
    using mapped_type = V;
    using slot_type = std::pair<const K, V>;
    using bucket = bucket_ref<slot_type, ChainExtra>;
    using body_type = bucket_body<slot_type, ChainExtra>;
    using overflow_type = overflow_bucket<slot_type, ChainExtra>;
    using size_type = std::size_t;
    using allocator_type = Allocator;

    static_assert(std::is_nothrow_move_constructible_v<K> && std::is_nothrow_move_constructible_v<V>,
                  "iterlock maps move entries during incremental growth: K and V must be nothrow move "
                  "constructible");
    static_assert(alignof(body_type) <= alignof(cache_line), "over-aligned entries are not supported");

    static constexpr std::size_t no_check = ~std::size_t{0};
    static constexpr std::uint64_t no_gate = ~std::uint64_t{0};  // vacates_ never reaches it

    using array_ref = bucket_array<slot_type, ChainExtra>;

    // Go's hiter: the state of one iteration.
    struct iter_state {
        array_ref it_buckets;  // the array current when the iteration started
        bucket b;              // chain member being walked; null between buckets
        std::size_t start_bucket = 0;
        std::size_t bucket_index = 0;  // next bucket index (in it_B space) to visit
        std::size_t check_bucket = no_check;
        std::uint64_t resets = 0;
        // The table's vacates_ when iter_next's fast path was last allowed, or no_gate: while the two are
        // equal, every slot in pending is still full, and b is a member of the current array walked with
        // no sibling filter (see iter_next).
        std::uint64_t gate = no_gate;
        slot_mask pending = 0;  // slots of b not visited yet (full or moved when b was entered), order_from
        std::uint8_t it_B = 0;
        std::uint8_t offset = 0;
        bool wrapped = false;
        bool chain_old = false;        // b's chain is in the array before it_buckets (see iter_next)
        bool started = false;          // iter_init ran on this state before (see iter_init)
        std::uint64_t walk_start = 0;  // array_clock when the walk began
    };

    explicit table(std::uint64_t seed, const Hash& h = Hash(), const KeyEqual& eq = KeyEqual(),
                   const Allocator& a = Allocator())
        : hash0_(seed), hash_(h), eq_(eq), line_alloc_(a), ovf_alloc_(a) {}

    table(const table&) = delete;
    table& operator=(const table&) = delete;

    ~table() {
        release_retained();
        destroy_all();
        reclaim_deferred(~std::uint64_t{0});  // no reader can outlive the table
    }

    // ---- observers ------------------------------------------------------------------------------
    size_type size() const noexcept { return count_; }
    std::uint64_t hash_seed() const noexcept { return hash0_; }
    unsigned bucket_shift() const noexcept { return B_; }
    bool growing() const noexcept { return static_cast<bool>(old_); }
    bool same_size_grow() const noexcept { return same_size_grow_; }
    std::size_t overflow_buckets() const noexcept { return noverflow_; }
    std::size_t evacuation_mark() const noexcept { return nevacuate_; }
    // hash_grow calls and old buckets evacuated so far; any thread may read them without the lock
    // (concurrent_map::metrics()).
    // Relaxed (both): statistics, written by the lock holder and read without ordering.
    std::uint64_t growths() const noexcept { return growths_.load(std::memory_order_relaxed); }
    std::uint64_t evacuated_buckets() const noexcept { return evacuated_.load(std::memory_order_relaxed); }
    std::uint64_t moves() const noexcept { return moves_; }
    std::uint64_t resets() const noexcept { return resets_; }
    const Hash& hash_function() const noexcept { return hash_; }
    const KeyEqual& key_eq() const noexcept { return eq_; }
    Allocator get_allocator() const { return Allocator(line_alloc_); }
    ChainWatch& chain_watch() noexcept { return watch_; }
    const ChainWatch& chain_watch() const noexcept { return watch_; }
    array_ref current_array() const noexcept { return cur_; }
    array_ref old_array() const noexcept { return old_; }

    // The most members (bucket plus overflow buckets) of any live chain: what a lookup may have to walk.
    // O(buckets): for tests.
    std::size_t longest_chain() const noexcept {
        std::size_t longest = 0;
        for_each_chain([&](bucket head) {
            std::size_t n = 0;
            for (bucket b = head; b; b = b.next()) ++n;
            longest = std::max(longest, n);
        });
        return longest;
    }
    // Arrays and chain heads kept for live iterators (see "Growth under live iterators"): for tests.
    std::size_t retained_arrays() const noexcept { return retained_.size(); }

    // Bytes held by bucket arrays and overflow buckets (for metrics).
    std::size_t allocated_bytes() const noexcept { return allocated_bytes_; }

    template <class K2>
    std::uint64_t hash_of(const K2& k) const noexcept(noexcept(std::declval<const Hash&>()(k))) {
        return seeded_mix(static_cast<std::uint64_t>(hash_(k)), hash0_);
    }

    // Go re-seeds hash0 when a map empties or is cleared. A layer whose readers rely on a stable hash0
    // (concurrent_map's snapshots) turns that off.
    void set_reseed(bool on) noexcept { reseed_ = on; }

    // ---- lookup (Go's mapaccess) ----------------------------------------------------------------
    struct found_position {
        slot_type* slot;    // nullptr: not found
        std::uint8_t* top;  // the slot's tophash byte
    };
    template <class K2>
    found_position find_position(const K2& key, std::uint64_t h) const {
        if (count_ == 0) return {nullptr, nullptr};
        bucket b = read_bucket_for(h);
        prefetch_slots(b);
        const std::uint8_t top = tophash_of(h);
        do {
            for (slot_mask m = match_byte(b.top, top); m != 0; m &= m - 1) {
                const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                slot_type* s = b.slot(i);
                if (eq_(key, s->first)) return {s, b.top + i};
            }
            if (has_empty_rest(b.top)) return {nullptr, nullptr};
            b = b.next();
        } while (b);
        return {nullptr, nullptr};
    }
    template <class K2>
    slot_type* find_slot(const K2& key, std::uint64_t h) const {
        return find_position(key, h).slot;
    }

    // Where a key lives, or where it would be inserted. `slot` is the existing entry (found) or the free
    // slot reserved for it; `top` points at that slot's tophash byte. A reservation modifies nothing but
    // structure (growth steps, an empty overflow bucket): a caller that fails to construct the new entry
    // leaves the map's contents unchanged.
    struct write_position {
        slot_type* slot;
        std::uint8_t* top;
        bucket chain;  // head of the chain holding the slot
        bool found;
    };

    // Go's mapassign, up to the point of storing the key. Call will_write() before changing the entry, and
    // commit_insert() after constructing an entry in a not-found slot.
    //
    // The common case is answered inline: no growth in progress, nothing kept for iterators, and the key's
    // chain is one member with an empty_rest slot (so the key is absent or in it) and room under the load
    // factor. Anything else (and every growth decision) takes prepare_write_slow, which gives the same answer
    // for the common case too.
    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE write_position prepare_write(const K2& key, std::uint64_t h) {
        if (cur_ && !growing() && !retained_due_) [[likely]] {
            const bucket head = cur_.at(h & mask_);
            prefetch_slots(head);
            const std::uint8_t top = tophash_of(h);
            for (slot_mask m = match_byte(head.top, top); m != 0; m &= m - 1) {
                const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                if (eq_(key, head.slot(i)->first)) return {head.slot(i), head.top + i, head, true};
            }
            const slot_mask rest = match_byte(head.top, empty_rest);
            if (rest != 0 && !over_load_factor(count_ + 1, B_) && !too_many_overflow_buckets(noverflow_, B_))
                [[likely]] {
                // The first empty slot: an empty_one before the first empty_rest, or that empty_rest.
                const unsigned i = static_cast<unsigned>(std::countr_zero(match_empty(head.top)));
                return {head.slot(i), head.top + i, head, false};
            }
        }
        return prepare_write_slow(key, h);
    }

    template <class K2>
    [[gnu::noinline]] write_position prepare_write_slow(const K2& key, std::uint64_t h) {
        if (!cur_) allocate_initial(0);
        release_retained_if_idle();
        for (;;) {
            // Go's growWork. With an iterator live, it runs after the write instead (commit_insert).
            if (growing() && !iterators_live()) grow_work();
            const bucket head = read_bucket_for(h);
            prefetch_slots(head);
            const std::uint8_t top = tophash_of(h);
            std::uint8_t* insert_top = nullptr;
            slot_type* insert_slot = nullptr;
            bucket last = head;
            for (bucket b = head; b; b = b.next()) {
                last = b;
                for (slot_mask m = match_byte(b.top, top); m != 0; m &= m - 1) {
                    const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                    if (eq_(key, b.slot(i)->first)) return {b.slot(i), b.top + i, head, true};
                }
                if (insert_top == nullptr) {
                    if (const slot_mask e = match_empty(b.top); e != 0) {
                        const unsigned i = static_cast<unsigned>(std::countr_zero(e));
                        insert_top = b.top + i;
                        insert_slot = b.slot(i);
                    }
                }
                if (has_empty_rest(b.top)) break;
            }
            // Not found. Start growing if the insert would overload the table, then retry (Go: goto again).
            if (count_ >= max_entries) [[unlikely]]
                throw_too_many_entries();
            if (!growing() &&
                (over_load_factor(count_ + 1, B_) || too_many_overflow_buckets(noverflow_, B_))) {
                hash_grow();
                continue;
            }
            if (insert_top == nullptr) {
                watch_.before_chain_write(head);
                const bucket ovf = new_overflow(last, head);
                insert_top = ovf.top;
                insert_slot = ovf.slot(0);
            }
            return {insert_slot, insert_top, head, false};
        }
    }

    // Must be called before the caller changes the entry at `pos` (assigning a found entry, constructing a
    // new one): lets a layer above preserve the chain first. May throw (a preserving copy), leaving the
    // table's contents as they were.
    void will_write(const write_position& pos) noexcept(noexcept(watch_.before_chain_write(pos.chain))) {
        watch_.before_chain_write(pos.chain);
    }

    // Marks the reserved slot of a not-found write_position as full (after the caller constructed it).
    // Returns where the new entry is: pos's slot, unless the write's deferred growth step moved it (an
    // iterator is live and the entry's old bucket was evacuated; see "Growth under live iterators").
    found_position commit_insert(const write_position& pos, std::uint64_t h) noexcept {
        *pos.top = tophash_of(h);
        ++count_;
        if (growing() && iterators_live()) [[unlikely]]
            return grow_work_after_insert(pos);
        return {pos.slot, pos.top};
    }

    // The write protocol, once for every caller: will_write, construct the entry in the reserved slot of a
    // not-found `pos`, commit. Returns where the entry is (commit_insert). If will_write or the constructor
    // throws, the slot stays empty and the table's contents are as they were.
    template <class... Args>
    ITERLOCK_DETAIL_ALWAYS_INLINE found_position emplace_at(const write_position& pos, std::uint64_t h,
                                                            Args&&... args) {
        will_write(pos);
        ::new (static_cast<void*>(pos.slot)) slot_type(std::forward<Args>(args)...);
        return commit_insert(pos, h);
    }
    // Assigns the value of a found `pos` (will_write first). If either throws, what the assignment
    // guarantees is what the entry keeps (V's own exception guarantee).
    template <class M>
    ITERLOCK_DETAIL_ALWAYS_INLINE void assign_at(const write_position& pos, M&& v) {
        will_write(pos);
        pos.slot->second = std::forward<M>(v);
    }

    // Go's mapdelete. Returns whether the key was present.
    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE bool erase_key(const K2& key, std::uint64_t h) {
        if (count_ == 0) return false;
        // Common case inline: no growth step to take, nothing kept for iterators to release.
        if (!growing() && !retained_due_) [[likely]]
            return erase_found(key, h);
        return erase_key_slow(key, h);
    }
    template <class K2>
    [[gnu::noinline]] bool erase_key_slow(const K2& key, std::uint64_t h) {
        release_retained_if_idle();
        if (growing()) {
            if (iterators_live()) [[unlikely]] {
                // `key` may be an entry's key (m.erase(it->first)): evacuate after the erase.
                const bool erased = erase_found(key, h);
                if (growing()) grow_work_noexcept();
                return erased;
            }
            grow_work();
        }
        return erase_found(key, h);
    }

    // erase_key's lookup and erase, without growth steps.
    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE bool erase_found(const K2& key, std::uint64_t h) {
        const bucket head = read_bucket_for(h);
        prefetch_slots(head);
        const std::uint8_t top = tophash_of(h);
        for (bucket b = head; b; b = b.next()) {
            for (slot_mask m = match_byte(b.top, top); m != 0; m &= m - 1) {
                const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                if (eq_(key, b.slot(i)->first)) {
                    watch_.before_chain_write(head);
                    erase_at(head, b, i);
                    return true;
                }
            }
            if (has_empty_rest(b.top)) return false;
        }
        return false;
    }

    // Removes every entry for which pred(slot&) is true, visiting each entry once. O(buckets + entries).
    template <class Pred>
    size_type erase_if(Pred& pred) {
        if (count_ == 0) return 0;
        size_type erased = 0;
        for_each_chain([&](bucket head) {
            bool watched = false;
            for (bucket b = head; b; b = b.next()) {
                for (slot_mask m = match_full(b.top); m != 0; m &= m - 1) {
                    const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                    if (pred(*b.slot(i))) {
                        if (!watched) {
                            watch_.before_chain_write(head);
                            watched = true;
                        }
                        erase_at(head, b, i);
                        ++erased;
                    }
                }
            }
        });
        return erased;
    }

    // Go 1.21's clear(m): destroys every entry, keeps the current array's size, ends live iterations.
    void clear() noexcept {
        ++resets_;
        ++vacates_;
        ++moves_;
        release_retained();  // every iteration has ended (I5): nothing walks what was kept
        if (!cur_) return;
        destroy_entries();
        reset_array(cur_, B_);
        if (reseed_) hash0_ = seeded_mix(hash0_, resets_);  // Go picks a new hash0 on clear
    }

    // Go's make(map, hint) applied to an existing map: makes room for `n` entries without further growth.
    // O(size) when it must rehash; a hint only (no effect) while an iterator is live. Throws
    // std::length_error for n > max_entries (also while an iterator is live), leaving the table as it was.
    void reserve(size_type n) {
        const unsigned want = bucket_shift_for(n);
        if (!cur_) {
            allocate_initial(want);
            return;
        }
        if (iterators_live()) return;
        finish_growth();
        if (want <= B_) return;
        rehash_into(want);
    }

    // ---- iteration (Go's mapiterinit / mapiternext) ---------------------------------------------
    //
    // A state that already walked a table (concurrent_map's guard walks its shards one after another with
    // one state) starts on the array that was current when its walk began, not the current one: a walk
    // that inserts as it goes must not start each later shard on an array its own inserts grew (rule I7).
    // Arrays are stamped from a process-wide clock when they become current (array_trailer::since); the
    // arrays a walk may start on are kept for it, because its guard is registered as an iterator from
    // before the walk begins.
    void iter_init(iter_state& it, std::uint64_t random) const noexcept {
        const bool continuing = it.started;
        // Relaxed: this table's arrays are stamped under the shard's lock, which this walk holds, so
        // coherence already puts their ticks before this load.
        const std::uint64_t since = continuing ? it.walk_start : array_clock.load(std::memory_order_relaxed);
        it = iter_state{};
        it.started = true;
        it.walk_start = since;
        it.resets = resets_;
        array_ref a = cur_;
        unsigned B = B_;
        if (continuing) {
            while (a && trailer(a, B).since > since) {
                const array_trailer& tr = trailer(a, B);
                a = tr.prev;
                B = tr.prev_B;
            }
        }
        if (count_ == 0 || !a) {
            it.wrapped = true;  // nothing to visit
            return;
        }
        it.it_buckets = a;
        it.it_B = static_cast<std::uint8_t>(B);
        it.start_bucket = static_cast<std::size_t>(random) & bucket_mask(B);
        it.bucket_index = it.start_bucket;
        it.offset = static_cast<std::uint8_t>((random >> 56) & (bucket_cnt - 1));
    }

    // The next entry of the iteration, or nullptr when it is over (also after a clear()).
    //
    // The walk visits the chains of the array it started on, it_buckets, bucket by bucket (Go walks
    // it.buckets the same way). If the iteration started during a growth, a bucket whose old bucket was not
    // evacuated yet is read from the old bucket instead, keeping only the keys that hash to the bucket
    // being visited (check_bucket, Go's checkBucket). A slot that growth evacuated after the walk entered
    // its chain, or an evacuated chain of an array that has grown since, carries its evacuation mark: the
    // entry is followed to where it moved (forward(); Go looks the key up instead) and produced from
    // there if still present. Entries inserted into a newer array are never reached (rule I7).
    //
    // The common steps are inline, behind one test: the state's gate equals vacates_, which every change
    // that can empty or move a full slot bumps (erase, the start of a growth, each evacuation, clear, moves
    // and swaps). The slow path opens the gate when it leaves the walk in a member of the current array
    // with no sibling filter, after dropping the pending slots that are no longer full. While the gate stays
    // open, each pending slot is still full (only those changes empty one; inserts fill only empty slots)
    // and holds no evacuation mark (only old arrays carry them). So a step takes the next pending slot
    // without reading its control byte, and when the member is done, its chain ends there and the table is
    // not growing, enters the next bucket right here (iter_next_walk's steps for a table that is not growing:
    // no old bucket to read, no sibling filter). Everything else (the end of the walk, overflow members,
    // growth, a closed gate) is iter_next_slow, which picks up from the same state.
    ITERLOCK_DETAIL_ALWAYS_INLINE slot_type* iter_next(iter_state& it) const {
        if (it.gate == vacates_) [[likely]] {
            if (it.pending != 0) [[likely]]
                return take_pending(it);
            if (can_enter_next(it)) {
                enter_next(it);
                if (it.pending != 0) [[likely]]
                    return take_pending(it);
            }
        }
        return iter_next_slow(it);
    }
    [[gnu::noinline]] slot_type* iter_next_slow(iter_state& it) const {
        if (it.gate == vacates_) {
            // The member is done (pending is empty); while its chain ends there, enter the next bucket.
            while (can_enter_next(it)) {
                enter_next(it);
                if (it.pending != 0) return take_pending(it);
            }
        }
        slot_type* s = iter_next_walk(it);
        // Open the gate (see iter_next) where its conditions hold.
        if (s != nullptr && it.check_bucket == no_check && !it.chain_old && it.it_buckets.ctrl == cur_.ctrl) {
            it.pending &= order_from(match_full(it.b.top), it.offset);
            it.gate = vacates_;
        } else {
            it.gate = no_gate;
        }
        return s;
    }
    // iter_next's steps with the gate open: the next pending slot; whether the member's chain ends there and
    // the walk goes on; entering the next bucket.
    ITERLOCK_DETAIL_ALWAYS_INLINE static slot_type* take_pending(iter_state& it) noexcept {
        const unsigned k = static_cast<unsigned>(std::countr_zero(it.pending));
        it.pending &= it.pending - 1;
        slot_type* s = it.b.slot(k & (bucket_cnt - 1));
        if (s == nullptr) __builtin_unreachable();  // lets the caller's end test fold away
        return s;
    }
    ITERLOCK_DETAIL_ALWAYS_INLINE bool can_enter_next(const iter_state& it) const noexcept {
        return !growing() && has_empty_rest(it.b.top) && !(it.bucket_index == it.start_bucket && it.wrapped);
    }
    ITERLOCK_DETAIL_ALWAYS_INLINE static void enter_next(iter_state& it) noexcept {
        it.b = it.it_buckets.at(it.bucket_index);
        pass_bucket(it);
        it.pending = order_from(match_full(it.b.top), it.offset);
    }
    // Moves the walk's bucket index past the bucket just entered, wrapping at the end of its array.
    ITERLOCK_DETAIL_ALWAYS_INLINE static void pass_bucket(iter_state& it) noexcept {
        if (++it.bucket_index == (std::size_t{1} << it.it_B)) {
            it.bucket_index = 0;
            it.wrapped = true;
        }
    }
    slot_type* iter_next_walk(iter_state& it) const {
        if (it.resets != resets_) return nullptr;
        for (;;) {
            if (!it.b) {
                if (!it.it_buckets || (it.bucket_index == it.start_bucket && it.wrapped)) return nullptr;
                it.check_bucket = no_check;
                it.chain_old = false;
                it.b = it.it_buckets.at(it.bucket_index);
                if (growing() && it.it_buckets.ctrl == cur_.ctrl) {
                    // Started during a growth that is not done: an old bucket that is not evacuated holds
                    // the entries of this bucket (and, unless same-size, of its sibling).
                    const std::size_t ob = it.bucket_index & old_bucket_mask();
                    if (!is_evacuated(old_.top(ob))) {
                        it.b = old_.at(ob);
                        it.chain_old = true;
                        if (!same_size_grow_) it.check_bucket = it.bucket_index;
                    }
                }
                pass_bucket(it);
                it.pending = order_from(visitable(it.b.top), it.offset);
            }
            while (it.pending != 0) {
                const unsigned k = static_cast<unsigned>(std::countr_zero(it.pending));
                it.pending &= it.pending - 1;
                const unsigned i = k & (bucket_cnt - 1);
                const std::uint8_t t = it.b.top[i];
                if (is_full(t)) {
                    slot_type* s = it.b.slot(i);
                    if (it.check_bucket != no_check &&
                        (hash_of(s->first) & bucket_mask(it.it_B)) != it.check_bucket) {
                        continue;  // belongs to the sibling bucket
                    }
                    return s;
                }
                if (t == evacuated_x || t == evacuated_y) {
                    if (slot_type* s = follow(it, i, t)) return s;
                }
                // otherwise erased since we entered the member (rule I1)
            }
            it.b = has_empty_rest(it.b.top) ? bucket{} : it.b.next();
            if (it.b) it.pending = order_from(visitable(it.b.top), it.offset);
        }
    }

    // The slots of a member that an iteration entering it must visit: the full ones, and in an evacuated
    // member (evacuation marks every slot of a chain at once) the moved ones.
    ITERLOCK_DETAIL_ALWAYS_INLINE static slot_mask visitable(const std::uint8_t* top) noexcept {
        if (!is_evacuated_mark(top[0])) [[likely]]
            return match_full(top);
        return match_moved(top);
    }
    [[gnu::cold, gnu::noinline]] static slot_mask match_moved(const std::uint8_t* top) noexcept {
        return match_byte(top, evacuated_x) | match_byte(top, evacuated_y);
    }
    // Slot i of the member it.b, marked t (evacuated_x or evacuated_y): the entry it held, where it is now,
    // or nullptr if it was erased since it moved, or (check_bucket) it belongs to the sibling bucket.
    [[gnu::cold, gnu::noinline]] slot_type* follow(const iter_state& it, unsigned i,
                                                   std::uint8_t t) const noexcept {
        // The chain being walked: bucket `visited` of it_buckets, or (chain_old) its old bucket in the array
        // that it_buckets replaced, which the trailer's back link names even after that growth ended.
        array_ref a = it.it_buckets;
        unsigned B = it.it_B;
        std::size_t c = (it.bucket_index - 1) & bucket_mask(it.it_B);  // iter_next advanced past it
        if (it.chain_old) {
            const array_trailer& back = trailer(a, B);
            a = back.prev;
            B = back.prev_B;
            c &= bucket_mask(B);
        }
        const unsigned side = t - evacuated_x;
        if (it.check_bucket != no_check && c + (std::size_t{side} << B) != it.check_bucket) {
            return nullptr;  // went to the sibling bucket
        }
        std::size_t before = 0;
        for (bucket m = a.at(c); !(m == it.b); m = m.next()) {
            before += static_cast<std::size_t>(std::popcount(match_byte(m.top, t)));
        }
        const std::size_t rank =
            before + static_cast<std::size_t>(std::popcount(match_byte(it.b.top, t) & ((1u << i) - 1)));
        return forward(a, B, c, side, rank).slot;
    }

    // Calls f(head) for every live chain: unevacuated old buckets, then initialised new buckets.
    template <class F>
    void for_each_chain(F&& f) const {
        if (!cur_) return;
        if (growing()) {
            for (std::size_t j = 0, n = old_bucket_count(); j < n; ++j) {
                if (!is_evacuated(old_.top(j))) f(old_.at(j));
            }
        }
        for (std::size_t j = 0, n = bucket_count(); j < n; ++j) {
            if (new_bucket_live(j)) f(cur_.at(j));
        }
    }

    // Visits every entry once, in bucket order (no randomisation): for copies, ==, moves.
    template <class F>
    void for_each_slot(F&& f) const {
        for_each_chain([&](bucket head) {
            for (bucket b = head; b; b = b.next()) {
                for (slot_mask m = match_full(b.top); m != 0; m &= m - 1) {
                    f(*b.slot(static_cast<unsigned>(std::countr_zero(m))));
                }
            }
        });
    }

    // ---- live iterators -------------------------------------------------------------------------
    // Relaxed: a count and an owner tag, no data hangs off it. Writers read it under the shard's lock, which
    // orders it against an iterator's registration (made before its walk takes that lock); map's misuse check
    // is best effort.
    std::uint64_t iterator_word() const noexcept { return iters_.word(); }
    std::size_t live_iterators() const noexcept { return iters_.count(); }
    // Whether an iterator is registered. Writes then evacuate after their own change instead of before
    // (their arguments may be references into the table), and growth keeps what an iteration may still
    // walk; reserve() does nothing and the seed is not renewed (an iteration filters by hash).
    bool iterators_live() const noexcept { return live_iterators() != 0; }

    // Registers a live iterator created by the thread `tag` (and unregisters it, with the same tag); see
    // iterator_registry. Callable by any thread that may read the table.
    void register_iterator(std::uint64_t tag) const noexcept { iters_.add(tag); }
    void unregister_iterator(std::uint64_t tag) const noexcept { iters_.remove(tag); }

    // ---- whole-table operations -----------------------------------------------------------------
    // Takes other's contents; other becomes empty (with a fresh array on its next insert).
    void steal(table& other) noexcept {
        release_retained();
        other.release_retained();
        destroy_all();
        cur_ = std::exchange(other.cur_, array_ref{});
        old_ = std::exchange(other.old_, array_ref{});
        count_ = std::exchange(other.count_, 0);
        nevacuate_ = std::exchange(other.nevacuate_, 0);
        noverflow_ = std::exchange(other.noverflow_, 0);
        allocated_bytes_ = std::exchange(other.allocated_bytes_, 0);
        B_ = std::exchange(other.B_, 0);
        mask_ = std::exchange(other.mask_, 0);
        same_size_grow_ = std::exchange(other.same_size_grow_, false);
        hash0_ = other.hash0_;
        publish_view();
        other.publish_view();
        ++other.moves_;
        ++other.resets_;
        ++other.vacates_;
        ++moves_;
        ++resets_;
        ++vacates_;
    }

    void swap_contents(table& other) noexcept {
        using std::swap;
        release_retained();  // both tables' iterations end (clear_epoch below)
        other.release_retained();
        swap(cur_, other.cur_);
        swap(old_, other.old_);
        swap(count_, other.count_);
        swap(nevacuate_, other.nevacuate_);
        swap(noverflow_, other.noverflow_);
        swap(allocated_bytes_, other.allocated_bytes_);
        swap(B_, other.B_);
        swap(mask_, other.mask_);
        swap(same_size_grow_, other.same_size_grow_);
        swap(hash0_, other.hash0_);
        swap(hash_, other.hash_);
        swap(eq_, other.eq_);
        if constexpr (std::allocator_traits<line_alloc>::propagate_on_container_swap::value) {
            swap(line_alloc_, other.line_alloc_);
            swap(ovf_alloc_, other.ovf_alloc_);
        }
        publish_view();
        other.publish_view();
        ++moves_, ++other.moves_;
        ++resets_, ++other.resets_;
        ++vacates_, ++other.vacates_;
    }

    // Inserts an entry known to be absent (copies, rehash): no lookup.
    template <class... Args>
    slot_type* insert_unique(std::uint64_t h, Args&&... args) {
        const write_position pos = prepare_unique(h);
        ::new (static_cast<void*>(pos.slot)) slot_type(std::forward<Args>(args)...);
        commit_insert(pos, h);
        return pos.slot;
    }

    // Verifies T1-T7; throws std::logic_error naming the first violation. O(size + buckets). Defined in
    // detail/map/table_debug.hpp (kept apart, as Go keeps table_debug.go), which map.hpp includes.
    void check_invariants() const;

    // Frees a block previously handed to ChainWatch::retire_block (with this table's allocator).
    void free_retired_block(void* block, std::size_t lines) noexcept { release_block(block, lines); }

    // ---- optimistic lookup (concurrent_map's sequence-lock finds) -------------------------------
    // With deferred frees on, a block that the table unlinks (an array that growth retired, an overflow
    // bucket that evacuation or clear emptied) is kept until no epoch section that began before the unlink
    // is still open (detail/reclaim/epoch.hpp), so find_racy() never reads freed memory. The map's owner
    // calls reclaim_deferred() now and then (under its lock, like every other call that changes the table).
    void enable_deferred_frees(epoch_domain* d) noexcept { limbo_.enable(d); }
    // Frees the deferred blocks that no reader can reach any more: those retired before the oldest open
    // epoch section began (epoch_domain::oldest_reader(); the maximum value frees all).
    void reclaim_deferred(std::uint64_t oldest_reader) noexcept {
        limbo_.reclaim(oldest_reader, [this](const unlinked_block& b) {
            if (b.lines != 0) --limbo_arrays_;
            deallocate_block(b.block, b.lines);
        });
        update_reclaim_due();
    }
    // Whether reclaim_deferred() is worth its scan of the readers: a retired array is waiting, or many
    // overflow buckets.
    bool reclaim_due() const noexcept { return reclaim_due_; }

    // Go's mapaccess for a reader that holds no lock, only an epoch section: every load is a relaxed atomic
    // load (detail/util/racy_read.hpp) and only blocks named by the published array views or reached through
    // them are read, so concurrent writers can make the answer wrong but never make the read unsafe.
    // Returns the slot whose key matched (nullptr: none); the caller copies what it needs with racy_copy
    // before its section ends and keeps the answer only if its sequence validation succeeds. `torn` is set
    // when the walk met something no consistent table has (a chain longer than any real one); the caller
    // then falls back to its lock. Requires: K and V trivially copyable, deferred frees on, hash0 stable
    // (set_reseed(false)).
    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE const slot_type* find_racy(const K2& key, std::uint64_t h,
                                                             bool& torn) const noexcept {
        static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>);
        // One load when not growing (published_view's invariants say why this is safe).
        bucket b = view_.chain_for(h);
        prefetch_slots(b);
        const std::uint8_t top = tophash_of(h);
        for (unsigned hops = 0; hops < max_racy_hops; ++hops) {
            std::uint8_t group[bucket_cnt];
            b.load_top_racy(group);
            for (slot_mask m = match_byte(group, top); m != 0; m &= m - 1) {
                const slot_type* s = b.slot(static_cast<unsigned>(std::countr_zero(m)));
                if (eq_(key, racy_copy<K>(&s->first))) return s;
            }
            if (has_empty_rest(group)) return nullptr;
            b = b.next_racy();
            if (!b) return nullptr;
        }
        torn = true;
        return nullptr;
    }

    // Starts fetching the lines a write of hash h will touch — the header, and the control group and body
    // of h's bucket in the published current array — so that a caller can issue it before it takes its
    // lock: the misses then overlap the lock's own (the acquire is a locked instruction, which later loads
    // wait for; earlier prefetches they do not). A racy hint: the view may be replaced meanwhile, and a
    // prefetch of a block freed since is harmless (prefetches never fault).
    // With `chain_extra`, the body's tail too: the chain's extra, which a layer above reads on every write
    // at times (concurrent_map's snapshot tag, while a snapshot lives), shares a line with slot 7 only for
    // a body that starts in the second half of a line (a 160-byte body: every other bucket); otherwise that
    // line is one the write does not need.
    void prefetch_for_write(std::uint64_t h, bool chain_extra) const noexcept {
        detail::prefetch_for_write(&cur_);
        const bucket b = view_.hint_for(h);
        detail::prefetch_for_write(b.top);
        detail::prefetch_for_write(b.slot(0));
        detail::prefetch_for_write(b.slot(bucket_cnt / 2));
        detail::prefetch_for_write(b.slot(bucket_cnt - 1));
        if (chain_extra) detail::prefetch_for_write(&b.body->extra);
    }

  private:
    using line_alloc = typename std::allocator_traits<Allocator>::template rebind_alloc<cache_line>;

    static constexpr unsigned max_racy_hops = 1u << 16;

    // Starts fetching the cache line of a bucket's slot 1 while the caller matches its control group, so a
    // hit's slot miss overlaps the control byte's instead of following it (Boost's flat maps prefetch their
    // element group the same way). One line, not the body's two or three: slots fill from 0, so at the load
    // factors a table runs at (3.25-6.5 of 8) that line holds most entries, and a miss, which reads no
    // slot, fetches one wasted line instead of three (docs/BENCHMARKS.md, "Issue 14, fourth session").
    static void prefetch_slots(const bucket& b) noexcept { __builtin_prefetch(b.slot(1)); }
    // Publishes cur_/old_ for the readers without a lock (find_racy, prefetch_for_write).
    void publish_view() noexcept { view_.publish(cur_, B_, old_, same_size_grow_ ? B_ : B_ - 1); }
    using ovf_alloc = typename std::allocator_traits<Allocator>::template rebind_alloc<overflow_type>;

    static constexpr std::size_t bucket_mask(unsigned B) noexcept { return (std::size_t{1} << B) - 1; }
    std::size_t bucket_count() const noexcept { return std::size_t{1} << B_; }
    std::size_t old_bucket_count() const noexcept {
        return same_size_grow_ ? bucket_count() : bucket_count() >> 1;
    }
    std::size_t old_bucket_mask() const noexcept { return old_bucket_count() - 1; }
    static bool is_evacuated(const std::uint8_t* top) noexcept { return is_evacuated_mark(top[0]); }

    // Whether new-array bucket j has been initialised (its old bucket was evacuated, or no growth).
    bool new_bucket_live(std::size_t j) const noexcept {
        return !growing() || is_evacuated(old_.top(j & old_bucket_mask()));
    }

    // The chain that holds (or would hold) hash h: the old bucket's while it is not evacuated.
    bucket read_bucket_for(std::uint64_t h) const noexcept {
        if (growing()) [[unlikely]] {
            const std::size_t ob = h & old_bucket_mask();
            if (!is_evacuated(old_.top(ob))) return old_.at(ob);
        }
        return cur_.at(h & mask_);
    }

    // ---- memory ---------------------------------------------------------------------------------
    // Control lines, body lines, and one line for the array's trailer.
    static constexpr std::size_t array_lines(std::size_t n) noexcept {
        return ctrl_lines(n) + (n * sizeof(body_type) + sizeof(cache_line) - 1) / sizeof(cache_line) + 1;
    }
    // The last line of an array's block: where growth evacuated it to (see "Growth under live iterators").
    struct array_trailer {
        array_ref next;          // the array its buckets were evacuated into; null until it grows
        bool same_size = false;  // that growth kept B
        unsigned prev_B = 0;
        array_ref prev;           // the array it replaced by growth (null for a first array or a rehash)
        std::uint64_t since = 0;  // array_clock when it became current
    };
    static_assert(sizeof(array_trailer) <= sizeof(cache_line));
    static array_trailer& trailer(array_ref a, unsigned B) noexcept {
        return *std::launder(reinterpret_cast<array_trailer*>(reinterpret_cast<cache_line*>(a.ctrl) +
                                                              array_lines(std::size_t{1} << B) - 1));
    }
    array_ref allocate_array(unsigned B) {
        if (B > max_bucket_shift) throw_too_many_entries();
        const std::size_t n = std::size_t{1} << B;
        cache_line* block = std::allocator_traits<line_alloc>::allocate(line_alloc_, array_lines(n));
        allocated_bytes_ += array_lines(n) * sizeof(cache_line);
        array_ref a;
        a.ctrl = reinterpret_cast<std::uint8_t*>(block);
        a.bodies = reinterpret_cast<body_type*>(block + ctrl_lines(n));
        array_trailer* tr = ::new (static_cast<void*>(block + array_lines(n) - 1)) array_trailer{};
        // Relaxed: the RMW makes ticks unique and increasing; walks compare only this table's arrays, which
        // the shard's lock orders.
        tr->since = array_clock.fetch_add(1, std::memory_order_relaxed) + 1;
        return a;
    }
    // Frees an array that growth retired, or keeps it (with its marks) while an iterator may walk it.
    // Requires: retained_ has room (hash_grow reserves it).
    void retire_array(array_ref a, unsigned B) noexcept {
        if (iterators_live()) {
            retained_.push_back({a, B});  // capacity reserved: cannot throw
            retained_due_ = true;
            return;
        }
        release_retained();  // kept heads may lie in `a`: clear their links before `a` goes
        free_array(a, B);
    }
    void free_array(array_ref a, unsigned B) noexcept {
        const std::size_t lines = array_lines(std::size_t{1} << B);
        allocated_bytes_ -= lines * sizeof(cache_line);
        cache_line* block = reinterpret_cast<cache_line*>(a.ctrl);
        if (!watch_.retire_block(block, lines)) release_block(block, lines);
    }
    // Frees what growth kept for iterators: the overflow members of evacuated chains (their heads' links
    // are cleared), then the retired arrays. Requires: no iterator will walk them again (none is live, or
    // clear/move ended every iteration). Out of line: its one call inside evacuate (the end of a growth)
    // would otherwise be inlined there and cost evacuate's chain loop registers.
    [[gnu::noinline]] void release_retained() noexcept {
        for (body_type* head : kept_links_) {
            for (overflow_type* o = head->overflow; o != nullptr;) {
                overflow_type* next = o->body.overflow;
                free_overflow(o);
                o = next;
            }
            head->overflow = nullptr;
        }
        kept_links_.clear();
        for (const retained_array& r : retained_) free_array(r.a, r.B);
        retained_.clear();
        retained_due_ = false;
    }
    // At the start of a write: frees what was kept for iterations that have all ended.
    void release_retained_if_idle() noexcept {
        if (retained_due_ && !iterators_live()) [[unlikely]]
            release_retained();
    }
    // Frees a block now, or (deferred frees on) once no optimistic reader can be reading it.
    void release_block(void* block, std::size_t lines) noexcept {
        if (limbo_.retire({block, lines},
                          [this](const unlinked_block& b) { deallocate_block(b.block, b.lines); })) {
            if (lines != 0) ++limbo_arrays_;
            update_reclaim_due();
        }
    }
    void deallocate_block(void* block, std::size_t lines) noexcept {
        if (lines == 0) {
            std::allocator_traits<ovf_alloc>::deallocate(ovf_alloc_, static_cast<overflow_type*>(block), 1);
        } else {
            std::allocator_traits<line_alloc>::deallocate(line_alloc_, static_cast<cache_line*>(block),
                                                          lines);
        }
    }
    // Initialises every bucket header of an array (new arrays and clear; growth initialises lazily).
    static void reset_array(array_ref a, unsigned B) noexcept {
        const std::size_t n = std::size_t{1} << B;
        std::memset(a.ctrl, empty_rest, n * bucket_cnt);
        for (std::size_t j = 0; j < n; ++j) {
            a.bodies[j].overflow = nullptr;
            a.bodies[j].extra = {};
        }
    }
    void allocate_initial(unsigned B) {
        watch_.prepare_structure_change(*this);
        const array_ref a = allocate_array(B);
        reset_array(a, B);
        watch_.before_structure_change(*this);
        cur_ = a;
        B_ = B;
        mask_ = static_cast<std::uint32_t>(bucket_mask(B));
        noverflow_ = 0;
        nevacuate_ = 0;
        same_size_grow_ = false;
        publish_view();
    }

    bucket allocate_overflow() {
        overflow_type* o = std::allocator_traits<ovf_alloc>::allocate(ovf_alloc_, 1);
        allocated_bytes_ += sizeof(overflow_type);
        const bucket b{o->tophash, &o->body, o};
        b.reset();
        return b;
    }
    void free_overflow(overflow_type* o) noexcept {
        allocated_bytes_ -= sizeof(overflow_type);
        if (!watch_.retire_block(o, 0)) release_block(o, 0);
    }

    // Go's newoverflow: chains an empty overflow bucket behind `last` (a member of the chain at `head`).
    bucket new_overflow(bucket last, bucket head) {
        const bucket ovf = allocate_overflow();
        // A racy reader that follows the link sees reset() (bucket_ref::next_racy).
        fence(std::memory_order_release);
        last.body->overflow = ovf.ovf;
        if (!in_old_array(head)) ++noverflow_;
        return ovf;
    }
    bool in_old_array(const bucket& b) const noexcept {
        return growing() && b.top >= old_.ctrl && b.top < old_.ctrl + old_bucket_count() * bucket_cnt;
    }

    // Empties slot i of member b (in the chain at head) and maintains empty_rest (Go's mapdelete tail).
    void erase_at(bucket head, bucket b, unsigned i) noexcept {
        std::destroy_at(b.slot(i));
        b.top[i] = empty_one;
        --count_;
        ++vacates_;
        // If the chain now ends in a run of empty_one slots, turn them into empty_rest.
        if (i == bucket_cnt - 1) {
            const bucket n = b.next();
            if (n && n.top[0] != empty_rest) return;
        } else if (b.top[i + 1] != empty_rest) {
            return;
        }
        for (;;) {
            b.top[i] = empty_rest;
            if (i == 0) {
                if (b == head) break;
                bucket prev = head;
                while (!(prev.next() == b)) prev = prev.next();
                b = prev;
                i = bucket_cnt - 1;
            } else {
                --i;
            }
            if (b.top[i] != empty_one) break;
        }
        if (count_ == 0 && reseed_ && !iterators_live()) hash0_ = seeded_mix(hash0_, ++reseeds_);
    }

    // ---- growth ---------------------------------------------------------------------------------
    // Go's hashGrow: allocate the next array; evacuation happens later, a little on each write.
    void hash_grow() {
        const unsigned bigger = over_load_factor(count_ + 1, B_) ? 1 : 0;  // 0: too many overflow buckets
        watch_.prepare_structure_change(*this);  // may throw, like the allocation: nothing changed yet
        // New buckets are initialised when their old bucket is evacuated (new_bucket_live), so allocating
        // the array touches none of its memory: the growth step itself is O(1).
        retained_.reserve(retained_.size() + 1);  // room for retire_array(old), should an iterator be live
        const array_ref newb = allocate_array(B_ + bigger);
        watch_.before_structure_change(*this);
        trailer(cur_, B_).next = newb;
        trailer(cur_, B_).same_size = bigger == 0;
        trailer(newb, B_ + bigger).prev = cur_;
        trailer(newb, B_ + bigger).prev_B = B_;
        old_ = cur_;
        cur_ = newb;
        B_ += bigger;
        mask_ = static_cast<std::uint32_t>(bucket_mask(B_));
        ++vacates_;
        add_exclusive(growths_, 1);
        same_size_grow_ = bigger == 0;
        nevacuate_ = 0;
        noverflow_ = 0;
        publish_view();
    }

    // Go's growWork: Go evacuates the bucket the write is about to use plus the next one in order;
    // iterlock evacuates the next evacuations_per_write in order (nevacuate), because writes can target an
    // unevacuated old bucket anyway (read_bucket_for) and a sequential sweep reads the old array and fills
    // the new one as streams the prefetcher follows, instead of random cache misses on every write. Growth
    // ends within 2^oldB / evacuations_per_write writes.
    void grow_work() {
        evacuate(nevacuate_);
        for (unsigned i = 1; i < evacuations_per_write && growing(); ++i) evacuate(nevacuate_);
    }

    void finish_growth() {
        while (growing()) evacuate(nevacuate_);
    }

    // grow_work for a write that already changed the table (an iterator is live): a failed step (an
    // allocation, a throwing hash) is left for a later write; evacuate's strong guarantee keeps the table
    // as it was.
    void grow_work_noexcept() noexcept {
        try {
            grow_work();
        } catch (...) {
        }
    }

    // commit_insert's deferred growth step. If it evacuated the new entry's old bucket, the entry moved:
    // follow it (evacuation keeps each side's order, see forward()). Out of line and `pos` by value: a
    // reference would make every insert loop keep its write_position in memory, and merge its inline
    // and prepare_write_slow answers into one path that tests `found` again (docs/BENCHMARKS.md, issue 15
    // item 3).
    [[gnu::noinline]] found_position grow_work_after_insert(write_position pos) noexcept {
        grow_work_noexcept();
        if (!is_evacuated_mark(*pos.chain.top)) return {pos.slot, pos.top};
        // The chain was in the array that the growth step evacuated: old_, or (that growth is done) the
        // array it just retired.
        const array_ref from = growing() ? old_ : retained_.back().a;
        const unsigned fromB = growing() ? (same_size_grow_ ? B_ : B_ - 1) : retained_.back().B;
        const std::size_t c = static_cast<std::size_t>(pos.chain.top - from.ctrl) / bucket_cnt;
        // pos.chain is an old head, now evacuated: find pos's member and follow its mark.
        std::size_t before = 0;
        bucket b = pos.chain;
        while (!(pos.top >= b.top && pos.top < b.top + bucket_cnt)) {
            before += static_cast<std::size_t>(std::popcount(match_byte(b.top, *pos.top)));
            b = b.next();
        }
        const unsigned i = static_cast<unsigned>(pos.top - b.top);
        const std::size_t rank =
            before + static_cast<std::size_t>(std::popcount(match_byte(b.top, *pos.top) & ((1u << i) - 1)));
        return forward(from, fromB, c, *pos.top - evacuated_x, rank);
    }

    // Where an entry that evacuation moved is now. It sat on side `side` (0: x, 1: y) of chain `c` of
    // array `a` (2^B buckets), and was the rank-th entry of that chain going to that side. Evacuation fills
    // each side's fresh chain in chain order, so it went to position `rank` of the destination chain; and
    // if that chain was evacuated since, its mark there says where it went next. Positions never shift:
    // erases leave holes, inserts fill holes or append. Returns {nullptr, nullptr} if the position is empty
    // now (the entry was erased); a full position may hold an entry inserted into the hole since.
    found_position forward(array_ref a, unsigned B, std::size_t c, unsigned side,
                           std::size_t rank) const noexcept {
        for (;;) {
            const array_trailer& tr = trailer(a, B);
            const array_ref to = tr.next;
            const unsigned toB = tr.same_size ? B : B + 1;
            const std::size_t tc = tr.same_size ? c : c + (std::size_t{side} << B);
            const bucket head = to.at(tc);
            bucket b = head;
            for (std::size_t n = rank / bucket_cnt; n != 0; --n) b = b.next();
            const unsigned i = static_cast<unsigned>(rank % bucket_cnt);
            const std::uint8_t t = b.top[i];
            if (is_full(t)) return {b.slot(i), b.top + i};
            if (t != evacuated_x && t != evacuated_y) return {nullptr, nullptr};
            std::size_t before = 0;
            for (bucket m = head; !(m == b); m = m.next()) {
                before += static_cast<std::size_t>(std::popcount(match_byte(m.top, t)));
            }
            rank = before + static_cast<std::size_t>(std::popcount(match_byte(b.top, t) & ((1u << i) - 1)));
            a = to;
            B = toB;
            c = tc;
            side = t - evacuated_x;
        }
    }

    // Go's evacuate: moves the entries of old bucket `oldbucket` to the new array. Strong guarantee: a
    // throwing hash or a failed allocation leaves the table as it was (all of that happens before the first
    // entry moves; moving itself cannot throw).
    void evacuate(std::size_t oldbucket) {
        ++vacates_;
        const bucket oldhead = old_.at(oldbucket);
        const std::size_t newbit = old_bucket_count();
        if (is_evacuated(oldhead.top)) {
            // done before (a write evacuated it out of order): nothing moves
        } else if (oldhead.body->overflow == nullptr) [[likely]] {
            evacuate_single(oldhead, oldbucket, newbit);
        } else {
            // Pass 1: decide x (same index) or y (index + newbit) for every entry, and count each side.
            std::size_t chain_len = 0;
            for (bucket b = oldhead; b; b = b.next()) ++chain_len;
            std::uint8_t y_small[16] = {};
            std::vector<std::uint8_t> y_large;
            std::uint8_t* y_masks = y_small;  // one byte per chain member: bit i = slot i goes to y
            if (chain_len > 16) {
                y_large.assign(chain_len, 0);
                y_masks = y_large.data();
            }
            std::size_t counts[2] = {0, 0};
            std::size_t n = 0;
            for (bucket b = oldhead; b; b = b.next(), ++n) {
                for (slot_mask m = match_full(b.top); m != 0; m &= m - 1) {
                    const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                    const bool use_y = !same_size_grow_ && (hash_of(b.slot(i)->first) & newbit) != 0;
                    if (use_y) y_masks[n] |= static_cast<std::uint8_t>(1u << i);
                    ++counts[use_y];
                }
            }
            // A layer above may copy the old chain first (it may throw: nothing has changed yet).
            watch_.before_physical_write(oldhead);
            // Pass 2: build the destination chains; these are the only allocations. With an iterator live
            // the old chain's overflow members stay linked (and their marks readable) until it ends.
            const bool keep = iterators_live() && oldhead.body->overflow != nullptr;
            if (keep) kept_links_.reserve(kept_links_.size() + 1);
            const bucket heads[2] = {cur_.at(oldbucket),
                                     same_size_grow_ ? bucket{} : cur_.at(oldbucket + newbit)};
            prepare_chain(heads[0], counts[0]);
            if (heads[1]) {
                try {
                    prepare_chain(heads[1], counts[1]);
                } catch (...) {
                    free_overflow_chain(heads[0]);
                    throw;
                }
            }
            // Pass 3: move. Nothing below throws.
            // A racy reader that sees an evacuation mark also sees the destination chains initialised.
            fence(std::memory_order_release);
            evac_dest xy[2] = {{heads[0], 0}, {heads[1], 0}};
            n = 0;
            for (bucket b = oldhead; b; ++n) {
                evacuate_member(b, y_masks[n], xy);
                const bucket next = b.next();
                if (b.ovf != nullptr && !keep) free_overflow(b.ovf);  // old overflow buckets are done with
                b = next;
            }
            if (keep) {
                kept_links_.push_back(oldhead.body);  // capacity reserved above: cannot throw
                retained_due_ = true;
            } else {
                oldhead.body->overflow = nullptr;
            }
            ++moves_;
            add_exclusive(evacuated_, 1);
        }
        if (oldbucket == nevacuate_) advance_evacuation_mark(newbit);
    }

    // Where evacuation puts the next entry of one side: member b of the fresh chain, slot i.
    struct evac_dest {
        bucket b;
        unsigned i;
    };
    // Evacuation's move step for one member b of an old chain: moves the full slots in slot order to the next
    // free position of their side (bit i of ymask: y), advancing to the next member of that side's chain
    // (prepare_chain sized it), then marks every slot of b (evacuated_x or _y for a moved entry,
    // evacuated_empty otherwise) with one 8-byte store. Slot order within chain order is what forward()
    // relies on. Nothing here throws.
    void evacuate_member(bucket b, slot_mask ymask, evac_dest (&xy)[2]) noexcept {
        std::uint8_t marks[bucket_cnt];
        std::memset(marks, evacuated_empty, bucket_cnt);
        for (slot_mask m = match_full(b.top); m != 0; m &= m - 1) {
            const unsigned i = static_cast<unsigned>(std::countr_zero(m));
            const unsigned use_y = (ymask >> i) & 1u;
            marks[i] = static_cast<std::uint8_t>(evacuated_x + use_y);
            evac_dest& d = xy[use_y];
            if (d.i == bucket_cnt) {
                d.b = d.b.next();
                d.i = 0;
            }
            move_slot(b, i, d.b, d.i);
            ++d.i;
        }
        std::memcpy(b.top, marks, bucket_cnt);
    }

    // evacuate() for the common chain of one member (no overflow bucket): at most 8 entries, so each side
    // fits its fresh head and nothing is allocated. The same result as the general case (decide every side
    // first; each side's entries in slot order; the marks in one store), with no per-chain bookkeeping and
    // each side moved by its own loop (move_side). Strong guarantee as evacuate(): only the hash and the
    // watcher may throw, before anything changed.
    void evacuate_single(bucket oldhead, std::size_t oldbucket, std::size_t newbit) {
        const slot_mask full = match_full(oldhead.top);
        slot_mask ymask = 0;
        if (!same_size_grow_) {
            for (slot_mask m = full; m != 0; m &= m - 1) {
                const unsigned i = static_cast<unsigned>(std::countr_zero(m));
                if ((hash_of(oldhead.slot(i)->first) & newbit) != 0) ymask |= slot_mask{1} << i;
            }
        }
        watch_.before_physical_write(oldhead);
        const bucket heads[2] = {cur_.at(oldbucket),
                                 same_size_grow_ ? bucket{} : cur_.at(oldbucket + newbit)};
        prepare_chain(heads[0], 0);  // at most 8 entries a side: no overflow bucket, nothing allocated
        if (heads[1]) prepare_chain(heads[1], 0);
        // A racy reader that sees an evacuation mark also sees the destination chains initialised.
        fence(std::memory_order_release);
        // evacuate_member's moves and marks, one side at a time: each side fits its fresh head.
        std::uint8_t marks[bucket_cnt];
        std::memset(marks, evacuated_empty, bucket_cnt);
        move_side(oldhead, full & ~ymask, heads[0], evacuated_x, marks);
        move_side(oldhead, full & ymask, heads[1], evacuated_y, marks);
        std::memcpy(oldhead.top, marks, bucket_cnt);
        ++moves_;
        add_exclusive(evacuated_, 1);
    }
    // Moves the slots of `from` named by `m`, in slot order, to slots 0, 1, ... of the fresh member `to`
    // (which has room for them), and records `mark` for each in `marks`. Nothing here throws.
    static void move_side(bucket from, slot_mask m, bucket to, std::uint8_t mark,
                          std::uint8_t (&marks)[bucket_cnt]) noexcept {
        for (unsigned j = 0; m != 0; m &= m - 1, ++j) {
            const unsigned i = static_cast<unsigned>(std::countr_zero(m));
            marks[i] = mark;
            move_slot(from, i, to, j);
        }
    }
    // Evacuation's move of one entry: slot i of `from` (tophash byte and object) to the empty slot j of `to`;
    // the source object is destroyed, its tophash byte left for the caller's marks. Nothing here throws.
    static void move_slot(bucket from, unsigned i, bucket to, unsigned j) noexcept {
        to.top[j] = from.top[i];
        slot_type* src = from.slot(i);
        ::new (static_cast<void*>(to.slot(j))) slot_type(relocate_from(*src));
        std::destroy_at(src);
    }

    // Initialises a fresh chain at `head` with room for `entries` (overflow buckets linked behind it).
    void prepare_chain(bucket head, std::size_t entries) {
        head.reset();
        watch_.chain_initialized(head);
        bucket last = head;
        try {
            for (std::size_t room = bucket_cnt; room < entries; room += bucket_cnt) {
                last = new_overflow(last, head);
            }
        } catch (...) {
            free_overflow_chain(head);
            throw;
        }
    }
    // Frees the (empty) overflow buckets behind head.
    void free_overflow_chain(bucket head) noexcept {
        for (bucket b = head.next(); b;) {
            const bucket next = b.next();
            free_overflow(b.ovf);
            --noverflow_;
            b = next;
        }
        head.body->overflow = nullptr;
    }

    // Go's advanceEvacuationMark: moves nevacuate_ past evacuated buckets; frees the old array at the end.
    void advance_evacuation_mark(std::size_t newbit) noexcept {
        ++nevacuate_;
        const std::size_t stop = std::min(nevacuate_ + 1024, newbit);
        while (nevacuate_ != stop && is_evacuated(old_.top(nevacuate_))) ++nevacuate_;
        if (nevacuate_ == newbit) {
            watch_.before_structure_change(*this);
            retire_array(old_, same_size_grow_ ? B_ : B_ - 1);
            old_ = array_ref{};
            same_size_grow_ = false;
            nevacuate_ = 0;
            publish_view();
        }
    }

    // Reservation for an entry known to be absent (copies and rehash: no growth is in progress).
    write_position prepare_unique(std::uint64_t h) {
        if (!cur_) allocate_initial(0);
        if (!growing() && over_load_factor(count_ + 1, B_) && !iterators_live()) rehash_into(B_ + 1);
        const bucket head = read_bucket_for(h);
        bucket last = head;
        for (bucket b = head; b; b = b.next()) {
            last = b;
            if (const slot_mask e = match_empty(b.top); e != 0) {
                const unsigned i = static_cast<unsigned>(std::countr_zero(e));
                watch_.before_chain_write(head);
                return {b.slot(i), b.top + i, head, false};
            }
        }
        watch_.before_chain_write(head);
        const bucket ovf = new_overflow(last, head);
        return {ovf.slot(0), ovf.top, head, false};
    }

    // Moves every entry into a fresh array of 2^B buckets (reserve, copies). Requires: not growing.
    void rehash_into(unsigned B) {
        // Hash everything first: a throwing hash must leave the table as it was.
        std::vector<std::uint64_t> hashes;
        if constexpr (!noexcept(std::declval<const Hash&>()(std::declval<const K&>()))) {
            hashes.reserve(count_);
            for_each_slot([&](slot_type& s) { hashes.push_back(hash_of(s.first)); });
        }
        const array_ref old = cur_;
        const unsigned oldB = B_;
        watch_.prepare_structure_change(*this);
        watch_.before_structure_change(*this);
        allocate_initial(B);  // sets cur_, B_, noverflow_; throws before anything changed
        count_ = 0;
        move_all_into_current(old, oldB, hashes);
        free_array(old, oldB);
        ++moves_;
        ++vacates_;
    }

    // The moving half of rehash_into. An allocation failure here cannot be undone: terminate (noexcept).
    void move_all_into_current(array_ref old, unsigned oldB,
                               const std::vector<std::uint64_t>& hashes) noexcept {
        std::size_t n = 0;
        for (std::size_t j = 0, nb = std::size_t{1} << oldB; j < nb; ++j) {
            for (bucket b = old.at(j); b;) {
                for (slot_mask m = match_full(b.top); m != 0; m &= m - 1) {
                    slot_type* src = b.slot(static_cast<unsigned>(std::countr_zero(m)));
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
                const bucket next = b.next();
                if (b.ovf != nullptr) free_overflow(b.ovf);
                b = next;
            }
        }
    }

    // Destroys every entry, frees overflow buckets and the old array; the current array stays allocated
    // (its headers are stale: callers reset or free it).
    void destroy_entries() noexcept {
        for_each_chain([&](bucket head) {
            for (bucket b = head; b;) {
                for (slot_mask m = match_full(b.top); m != 0; m &= m - 1) {
                    std::destroy_at(b.slot(static_cast<unsigned>(std::countr_zero(m))));
                }
                const bucket next = b.next();
                if (b.ovf != nullptr) free_overflow(b.ovf);
                b = next;
            }
        });
        release_retained();
        if (growing()) free_array(old_, same_size_grow_ ? B_ : B_ - 1);
        old_ = array_ref{};
        count_ = 0;
        nevacuate_ = 0;
        noverflow_ = 0;
        same_size_grow_ = false;
        publish_view();
    }

    // Destroys every entry and frees every bucket.
    void destroy_all() noexcept {
        if (!cur_) return;
        destroy_entries();
        free_array(cur_, B_);
        cur_ = array_ref{};
        B_ = 0;
        mask_ = 0;
        publish_view();
    }

    // hmap's fields (Go's names: buckets, oldbuckets, count, nevacuate, noverflow, B, hash0). The first
    // line holds what every write reads or changes (64 bytes), so that a write touches one line of the
    // header: when writers on two cores take turns at a table, each line is a transfer between them.
    alignas(64) array_ref cur_;        // 2^B_ buckets (Go's buckets); null until the first insert or reserve
    array_ref old_;                    // the previous array while growing (Go's oldbuckets), else null
    std::size_t count_ = 0;            // live entries (Go's count)
    std::size_t noverflow_ = 0;        // overflow buckets on the current array
    std::size_t nevacuate_ = 0;        // old buckets below this are evacuated
    std::uint32_t mask_ = 0;           // 2^B_ - 1: a lookup's bucket is hash & mask_ (no shift per lookup)
    std::uint8_t B_ = 0;               // log2 of the bucket count
    bool same_size_grow_ = false;      // the current growth keeps B (Go's sameSizeGrow flag)
    bool reclaim_due_ = false;         // reclaim_due(), kept up to date where limbo_ changes
    bool retained_due_ = false;        // retained_ or kept_links_ hold something (release_retained)
    bool reseed_ = true;               // re-seed hash0 on clear and when the map empties (Go does)
    std::size_t allocated_bytes_ = 0;  // bytes of arrays and overflow buckets (for metrics)
    std::uint64_t hash0_;              // per-map hash seed
    std::uint64_t moves_ = 0;          // bumped whenever entries move (checked builds compare it)
    std::uint64_t resets_ = 0;         // bumped by clear and moves: live iterations end
    std::uint64_t vacates_ = 0;        // bumped by what can empty or move a full slot (iter_next's gate)
    std::uint64_t reseeds_ = 0;
    // Written by the single writer (relaxed load + store), read by any thread.
    std::atomic<std::uint64_t> growths_{0};
    std::atomic<std::uint64_t> evacuated_{0};
    mutable iterator_registry iters_;  // live iterators, by thread
    [[no_unique_address]] Hash hash_;
    [[no_unique_address]] KeyEqual eq_;
    [[no_unique_address]] line_alloc line_alloc_;
    [[no_unique_address]] ovf_alloc ovf_alloc_;
    [[no_unique_address]] ChainWatch watch_;
    // For find_racy (see publish_view) and deferred frees (enable_deferred_frees).
    published_view<slot_type, ChainExtra> view_;
    struct unlinked_block {
        void* block;
        std::size_t lines;  // 0: an overflow bucket
    };
    retire_list<unlinked_block> limbo_;  // what optimistic readers may still reach (enable_deferred_frees)
    std::size_t limbo_arrays_ = 0;
    // Kept for live iterators (see "Growth under live iterators"): arrays that growth retired, and the old
    // chain heads whose overflow members evacuation left linked.
    struct retained_array {
        array_ref a;
        unsigned B;
    };
    std::vector<retained_array> retained_;
    std::vector<body_type*> kept_links_;
    void update_reclaim_due() noexcept { reclaim_due_ = limbo_arrays_ != 0 || limbo_.size() >= 64; }
};

}  // namespace iterlock::detail
