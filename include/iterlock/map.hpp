// iterlock/map.hpp: Go's runtime map (hmap) for C++, single owner, with Go's misuse detection.
//
// Owns: iterlock::map<K, V, Hash, KeyEqual, Allocator, Policy> (its iterators and entry_ptr),
//       iterlock::seed, iterlock::detect_misuse, iterlock::no_misuse_detection, ITERLOCK_CHECKED.
// Invariants: rules I1-I7 below for writes during the map's own iteration; the core's T1-T7
//       (detail/map/table.hpp) hold between calls; with detect_misuse, a misuse it detects is reported
//       before the map is modified.
//
// The structure is Go's: 2^B buckets of 8 slots with a tophash byte each, overflow chains, load factor 6.5,
// incremental growth (each write evacuates at most eight old buckets; Go: two), a per-map hash seed and a
// randomized iteration start. detail/map/table.hpp owns the structure and explains it; this header adds the
// public API, the iterators, and the detection of concurrent misuse.
//
// Writes during the map's own iteration (Go spec, "For statements with range clause")
// ------------------------------------------------------------------------------------
// The thread that iterates may insert, assign and erase while it iterates. For an iteration `it` of map m:
//   I1  An entry erased before the iteration reaches it is not produced.
//   I2  An entry inserted during the iteration may or may not be produced.
//   I3  No entry is produced twice, also when the table grows during the iteration.
//   I4  Every entry present for the whole iteration (neither erased nor inserted during it) is produced
//       exactly once. Assigning to an entry's value keeps it present.
//   I5  clear() during the iteration ends it cleanly: the next increment makes the iterator equal end().
//   I6  The start of each iteration (bucket and slot offset) is randomized, as in Go. A map built with a
//       fixed `iterlock::seed` repeats the same sequence of orders for the same sequence of operations.
//   I7  An iteration ends, and writes during it cost what they cost without it (O(1) amortized). It
//       walks the chains of the bucket array current when it started (and of the old array, if a growth
//       was in progress), following the entries that growth moves on; entries that land in a newer array
//       are never produced, as in Go. So an iteration of a map with 2^B buckets and M buckets plus overflow
//       buckets at its start produces at most 8 * (M + 2 * 2^B) entries, however much the loop inserts.
//       For a map of n > 8 entries grown by inserts alone, M <= 3 * 2^B and 2^B < n / 3.25, so at most
//       40 * 2^B < 12.4 * n (docs/DESIGN.md gives the argument and the figures for Go's loop).
// Growth keeps evacuating while iterators are alive (detail/map/table.hpp, "Growth under live iterators");
// what an iteration may still walk (the retired arrays, old overflow buckets) is kept until the last iterator
// of the map is gone, and freed by the next write. A write made while an iterator is alive may move entries:
// a reference from `*it` or an entry_ptr is not valid after it (copy what you need first); the iterator
// itself stays valid. Arguments that refer into the map (m.erase(it->first), insert_or_assign(k, it->second))
// are safe: such a write moves entries only after it is done with them.
//
// Misuse detection (Policy = detect_misuse, the default; no_misuse_detection compiles it out)
// -------------------------------------------------------------------------------------------
// A map is not thread-safe: any number of threads may read it at once, a write must be alone. Like Go, the
// map notices a write overlapping other use and stops with Go's message:
//   "concurrent map writes"                  two writes overlap (best effort, as Go);
//   "concurrent map read and map write"      a read starts while a write is in progress (best effort);
//   "concurrent map iteration and map write" a write while an iterator created by *another* thread is alive,
//                                            caught every time (Go only catches it if the iterator happens to
//                                            step during the write); also an iterator stepping during a
//                                            write.
// An iterator counts as alive from begin() until it reaches end() or is destroyed, stepping or not: a map
// shared under a mutex must not let an iterator (e.g. a std::find_if result) outlive the critical section
// that created it, or the next write by another thread, mutex held, is "concurrent map iteration and map
// write". Copy out what is needed before unlocking (docs/GUIDE.md, section 5).
// The default action prints "fatal error: <message> (iterlock::map<K, V> "name")" and aborts (the name is
// set_name()'s, if any; misuse.hpp, "Messages"); set_misuse_action(throw_exception) throws
// iterlock::concurrent_misuse, whose what() is Go's words alone, before the map is modified. Moving,
// assigning or swapping a map while one of its iterators is alive always aborts: "map moved while an
// iteration is live" (moved from, or move-constructed from), "map assigned while an iteration is live"
// (the target of a copy, move or initializer-list assignment), "map swapped while an iteration is live".
// Detection costs two loads and two stores of the map's flag byte and a load of its iterator word per
// write, and one load and branch per read
// (detail/util/racy_read.hpp, racy_flag_load; docs/BENCHMARKS.md, iterlock vs iterlock_nodetect).
//
// Entry pointers and the checked build
// ------------------------------------
// find(), insert() and friends return an `entry_ptr`, not a raw pointer: growth moves entries (like a
// vector's push_back), so a pointer kept across writes may dangle. entry_ptr is invalidated by any write
// that grows or evacuates, by clear(), by erasing its entry, and by moving or swapping the map. In a checked
// build (ITERLOCK_CHECKED=1; the debug and asan presets), using an invalidated entry_ptr, or dereferencing an
// iterator after clear(), aborts with "iterlock: entry used after the map moved or erased it". (A raw
// reference taken from one, or from operator[], is not checked.) Iterators stay valid while entries are
// inserted and erased around them (rules I1-I4).
//
// How iterlock::map differs from std::unordered_map
// -------------------------------------------------
//   - find() returns entry_ptr (compare with nullptr / test as bool), not an iterator; get() returns a copy.
//   - Iteration order is randomized per iteration; iterators are forward iterators, invalidated only by
//     clear(), move and swap (then: checked builds abort, others end the walk).
//   - Writes during iteration follow Go (I1-I4, I7) instead of invalidating iterators.
//   - Entries move on growth: K and V must be nothrow move constructible (static_assert).
//   - No buckets API, no local iterators, no node handles; reserve() is Go's size hint.
//
// Complexity: find/insert/erase O(1) expected, worst single insert O(1) bucket moves (plus the allocation
// of the next array, which touches none of its memory), also while iterators are alive. Iteration
// O(buckets + entries); an entry that growth moved after the iteration started costs a walk of its old
// chain and new chain per growth since. Exception safety:
// if Hash, KeyEqual, the allocator or a K/V constructor throws during a write, the map is unchanged.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

#include "iterlock/detail/map/table.hpp"
#include "iterlock/detail/map/table_debug.hpp"
#include "iterlock/detail/util/erase_pred.hpp"
#include "iterlock/detail/util/random.hpp"
#include "iterlock/detail/util/transparent.hpp"
#include "iterlock/hash.hpp"
#include "iterlock/misuse.hpp"

#ifndef ITERLOCK_CHECKED
#define ITERLOCK_CHECKED 0
#endif

namespace iterlock {

// A fixed hash seed (Go's hash0) for reproducible layouts and iteration orders in tests.
struct seed {
    std::uint64_t value;
};

// Misuse-detection policies.
struct detect_misuse {
    static constexpr bool enabled = true;
};
struct no_misuse_detection {
    static constexpr bool enabled = false;
};

namespace detail {
struct map_test_access;
}  // namespace detail

template <class K, class V, class Hash = hash<K>, class KeyEqual = std::equal_to<K>,
          class Allocator = std::allocator<std::pair<const K, V>>, class Policy = detect_misuse>
class map {
    using table_type = detail::table<K, V, Hash, KeyEqual, Allocator>;
    using slot_type = typename table_type::slot_type;
    static constexpr bool detect = Policy::enabled;
    static constexpr bool transparent = detail::transparent_v<Hash, KeyEqual>;
    // A key argument of another type that a transparent map can hash, compare, and build a K from.
    template <class K2>
    static constexpr bool heterogeneous_key =
        transparent && !std::is_same_v<std::remove_cvref_t<K2>, K> && std::is_constructible_v<K, K2&&>;

  public:
    using key_type = K;
    using mapped_type = V;
    using value_type = std::pair<const K, V>;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using hasher = Hash;
    using key_equal = KeyEqual;
    using allocator_type = Allocator;
    using reference = value_type&;
    using const_reference = const value_type&;

    // ---- entry pointers -------------------------------------------------------------------------
    template <bool Const>
    class basic_entry_ptr {
      public:
        using element_type = std::conditional_t<Const, const value_type, value_type>;
        basic_entry_ptr() noexcept = default;
        basic_entry_ptr(std::nullptr_t) noexcept {}
        template <bool C2, class = std::enable_if_t<Const && !C2>>
        basic_entry_ptr(const basic_entry_ptr<C2>& o) noexcept : s_(o.s_) {
#if ITERLOCK_CHECKED
            t_ = o.t_, moves_ = o.moves_, top_ = o.top_;
#endif
        }
        explicit operator bool() const noexcept {
            return s_ != nullptr;
        }
        element_type& operator*() const noexcept {
            check();
            return *s_;
        }
        element_type* operator->() const noexcept {
            check();
            return s_;
        }
        // The entry's address without the checked-build validation (for identity comparisons).
        element_type* get_unchecked() const noexcept {
            return s_;
        }
        friend bool operator==(const basic_entry_ptr& a, const basic_entry_ptr& b) noexcept {
            return a.s_ == b.s_;
        }
        friend bool operator==(const basic_entry_ptr& a, std::nullptr_t) noexcept {
            return a.s_ == nullptr;
        }

      private:
        friend class map;
        template <bool>
        friend class basic_entry_ptr;
        basic_entry_ptr(slot_type* s, [[maybe_unused]] const table_type* t,
                        [[maybe_unused]] const std::uint8_t* top) noexcept
            : s_(s) {
#if ITERLOCK_CHECKED
            t_ = t, top_ = top, moves_ = t->moves();
#endif
        }
        void check() const noexcept {
#if ITERLOCK_CHECKED
            if (s_ != nullptr && (t_->moves() != moves_ || !detail::is_full(*top_))) {
                detail::fatal(messages::entry_used_after_move);
            }
#endif
        }
        slot_type* s_ = nullptr;
#if ITERLOCK_CHECKED
        const table_type* t_ = nullptr;
        std::uint64_t moves_ = 0;
        const std::uint8_t* top_ = nullptr;
#endif
    };
    using entry_ptr = basic_entry_ptr<false>;
    using const_entry_ptr = basic_entry_ptr<true>;

    // ---- iterators ------------------------------------------------------------------------------
    // A live iterator (not end, not exhausted) registers with its map: that keeps what its walk needs and
    // lets a write from another thread be caught. Copying registers again; reaching the end unregisters.
    template <bool Const>
    class basic_iterator {
        using map_ptr = std::conditional_t<Const, const map*, map*>;

      public:
        using iterator_category = std::forward_iterator_tag;
        using iterator_concept = std::forward_iterator_tag;
        using value_type = map::value_type;
        using difference_type = std::ptrdiff_t;
        using pointer = std::conditional_t<Const, const value_type*, value_type*>;
        using reference = std::conditional_t<Const, const value_type&, value_type&>;

        basic_iterator() noexcept = default;
        basic_iterator(const basic_iterator& o) noexcept : m_(o.m_), st_(o.st_), cur_(o.cur_) {
            if (m_ != nullptr) m_->t_.register_iterator(tag_ = detail::thread_tag());
        }
        basic_iterator(basic_iterator&& o) noexcept
            : m_(std::exchange(o.m_, nullptr)),
              st_(o.st_),
              cur_(std::exchange(o.cur_, nullptr)),
              tag_(o.tag_) {}
        template <bool C2, class = std::enable_if_t<Const && !C2>>
        basic_iterator(const basic_iterator<C2>& o) noexcept : m_(o.m_), st_(o.st_), cur_(o.cur_) {
            if (m_ != nullptr) m_->t_.register_iterator(tag_ = detail::thread_tag());
        }
        basic_iterator& operator=(basic_iterator o) noexcept {
            swap(o);
            return *this;
        }
        ~basic_iterator() { release(); }

        reference operator*() const noexcept {
            check();
            return *cur_;
        }
        pointer operator->() const noexcept {
            check();
            return cur_;
        }
        ITERLOCK_DETAIL_ALWAYS_INLINE basic_iterator& operator++() {
            advance();
            return *this;
        }
        basic_iterator operator++(int) {
            basic_iterator copy(*this);
            advance();
            return copy;
        }
        friend bool operator==(const basic_iterator& a, const basic_iterator& b) noexcept {
            return a.cur_ == b.cur_;
        }
        void swap(basic_iterator& o) noexcept {
            std::swap(m_, o.m_);
            std::swap(st_, o.st_);
            std::swap(cur_, o.cur_);
            std::swap(tag_, o.tag_);
        }

      private:
        friend class map;
        template <bool>
        friend class basic_iterator;

        explicit basic_iterator(map_ptr m) : m_(m) {
            m_->check_read();
            m_->t_.register_iterator(tag_ = detail::thread_tag());
            const std::uint64_t r =
                // Relaxed: only varies where walks start; nothing is published with it.
                detail::seeded_mix(m_->t_.hash_seed(), m_->iter_seq_.fetch_add(1, std::memory_order_relaxed));
            m_->t_.iter_init(st_, r);
            step();
        }
        ITERLOCK_DETAIL_ALWAYS_INLINE void advance() {
            if (m_ == nullptr) return;
            if constexpr (detect) {
                if (m_->writing()) [[unlikely]]
                    m_->report(messages::iteration_during_write);
            }
            step();
        }
        ITERLOCK_DETAIL_ALWAYS_INLINE void step() {
            cur_ = m_->t_.iter_next(st_);
            if (cur_ == nullptr) release();
        }
        void release() noexcept {
            if (m_ != nullptr) {
                m_->t_.unregister_iterator(tag_);
                m_ = nullptr;
            }
        }
        void check() const noexcept {
#if ITERLOCK_CHECKED
            if (m_ != nullptr && st_.resets != m_->t_.resets()) {
                detail::fatal(messages::entry_used_after_move);
            }
#endif
        }

        map_ptr m_ = nullptr;  // nullptr: end, or exhausted
        typename table_type::iter_state st_{};
        slot_type* cur_ = nullptr;
        std::uint64_t tag_ = 0;  // the thread that registered this iterator
    };
    using iterator = basic_iterator<false>;
    using const_iterator = basic_iterator<true>;

    // ---- construction ---------------------------------------------------------------------------
    // A size hint is reserve()'s: a hint above max_size() throws std::length_error.
    map() : map(size_type{0}) {}
    explicit map(seed s) : map(size_type{0}, s) {}
    explicit map(size_type size_hint, const Hash& h = Hash(), const KeyEqual& eq = KeyEqual(),
                 const Allocator& a = Allocator())
        : t_(detail::random_seed(), h, eq, a) {
        if (size_hint > 0) t_.reserve(size_hint);
    }
    map(size_type size_hint, seed s, const Hash& h = Hash(), const KeyEqual& eq = KeyEqual(),
        const Allocator& a = Allocator())
        : t_(s.value, h, eq, a) {
        if (size_hint > 0) t_.reserve(size_hint);
    }
    explicit map(const Allocator& a) : map(size_type{0}, Hash(), KeyEqual(), a) {}
    map(std::initializer_list<value_type> init, size_type size_hint = 0, const Hash& h = Hash(),
        const KeyEqual& eq = KeyEqual(), const Allocator& a = Allocator())
        : map(std::max(size_hint, init.size()), h, eq, a) {
        insert(init);
    }
    template <class InputIt>
    map(InputIt first, InputIt last) : map() {
        insert(first, last);
    }

    map(const map& o)
        : t_(o.t_.hash_seed(), o.t_.hash_function(), o.t_.key_eq(),
             std::allocator_traits<Allocator>::select_on_container_copy_construction(o.t_.get_allocator())),
          name_(o.name_) {
        o.check_read();
        t_.reserve(o.size());
        o.t_.for_each_slot([&](const slot_type& s) { t_.insert_unique(t_.hash_of(s.first), s); });
    }
    map(map&& o) noexcept
        : t_(o.t_.hash_seed(), o.t_.hash_function(), o.t_.key_eq(), o.t_.get_allocator()), name_(o.name_) {
        o.check_not_iterating(messages::moved_while_iterating);
        t_.steal(o.t_);
    }
    // Assignments replace the contents and keep this map's name. Assigning to a map while one of its own
    // iterators is alive aborts ("map assigned while an iteration is live"); the source may be iterated.
    map& operator=(const map& o) {
        if (this != &o) {
            check_not_iterating(messages::assigned_while_iterating);
            map copy(o);
            t_.swap_contents(copy.t_);
        }
        return *this;
    }
    map& operator=(std::initializer_list<value_type> init) {
        check_not_iterating(messages::assigned_while_iterating);
        map copy(init, 0, t_.hash_function(), t_.key_eq(), t_.get_allocator());
        t_.swap_contents(copy.t_);
        return *this;
    }
    map& operator=(map&& o) noexcept(std::allocator_traits<Allocator>::is_always_equal::value) {
        if (this == &o) return *this;
        check_not_iterating(messages::assigned_while_iterating);
        o.check_not_iterating(messages::moved_while_iterating);
        if constexpr (std::allocator_traits<Allocator>::is_always_equal::value ||
                      std::allocator_traits<Allocator>::propagate_on_container_move_assignment::value) {
            t_.steal(o.t_);
        } else if (t_.get_allocator() == o.t_.get_allocator()) {
            t_.steal(o.t_);
        } else {
            clear();
            reserve(o.size());
            o.t_.for_each_slot(
                [&](slot_type& s) { t_.insert_unique(t_.hash_of(s.first), detail::relocate_from(s)); });
            o.clear();
        }
        return *this;
    }
    ~map() = default;

    // Swaps the contents (names stay). Aborts if either map has a live iterator.
    void swap(map& o) noexcept {
        check_not_iterating(messages::swapped_while_iterating);
        o.check_not_iterating(messages::swapped_while_iterating);
        t_.swap_contents(o.t_);
    }
    friend void swap(map& a, map& b) noexcept {
        a.swap(b);
    }

    // ---- capacity -------------------------------------------------------------------------------
    size_type size() const noexcept {
        return t_.size();
    }
    bool empty() const noexcept {
        return t_.size() == 0;
    }
    // The most entries the map can hold: 13 * 2^30 (about 1.4e10), a full load factor of 6.5 on the largest
    // array (2^31 buckets). reserve(n) and the size-hint constructors accept every n <= max_size() (memory
    // permitting: std::bad_alloc otherwise) and throw std::length_error above it; an insert of a new key
    // into a map of max_size() entries throws std::length_error. Either way the map is unchanged.
    size_type max_size() const noexcept {
        return std::min<size_type>(detail::max_entries,
                                   std::numeric_limits<difference_type>::max() / sizeof(value_type));
    }

    // ---- lookup (reads: any number of threads at once, none writing) ----------------------------
    ITERLOCK_DETAIL_ALWAYS_INLINE entry_ptr find(const K& k) {
        return find_impl(k);
    }
    const_entry_ptr find(const K& k) const {
        return const_cast<map*>(this)->find_impl(k);
    }
    template <class K2>
    requires transparent entry_ptr find(const K2& k) {
        return find_impl(k);
    }
    template <class K2>
    requires transparent const_entry_ptr find(const K2& k)
    const {
        return const_cast<map*>(this)->find_impl(k);
    }

    // Go's `v, ok := m[k]`: a copy of the value, or nullopt.
    ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> get(const K& k) const {
        return get_impl(k);
    }
    template <class K2>
    requires transparent std::optional<V> get(const K2& k)
    const {
        return get_impl(k);
    }

    bool contains(const K& k) const {
        return static_cast<bool>(find(k));
    }
    template <class K2>
    requires transparent bool contains(const K2& k) const {
        return static_cast<bool>(find(k));
    }
    size_type count(const K& k) const {
        return contains(k) ? 1 : 0;
    }
    template <class K2>
    requires transparent size_type count(const K2& k)
    const {
        return contains(k) ? 1 : 0;
    }

    // Throws std::out_of_range if absent. The reference is unchecked (see "Entry pointers").
    V& at(const K& k) {
        entry_ptr p = find(k);
        if (!p) throw std::out_of_range("iterlock::map::at: key not found");
        return p->second;
    }
    const V& at(const K& k) const {
        const_entry_ptr p = find(k);
        if (!p) throw std::out_of_range("iterlock::map::at: key not found");
        return p->second;
    }

    // ---- modifiers (writes: one thread, nothing else using the map) -----------------------------
    ITERLOCK_DETAIL_ALWAYS_INLINE std::pair<entry_ptr, bool> insert(const value_type& v) {
        return emplace_value(v.first, v);
    }
    ITERLOCK_DETAIL_ALWAYS_INLINE std::pair<entry_ptr, bool> insert(value_type&& v) {
        return emplace_value(v.first, std::move(v));
    }
    template <class P>
    requires std::is_constructible_v<value_type, P&&> std::pair<entry_ptr, bool> insert(P&& p) {
        return emplace(std::forward<P>(p));
    }
    template <class InputIt>
    void insert(InputIt first, InputIt last) {
        for (; first != last; ++first) insert(*first);
    }
    void insert(std::initializer_list<value_type> init) {
        insert(init.begin(), init.end());
    }

    template <class... Args>
    std::pair<entry_ptr, bool> emplace(Args&&... args) {
        value_type v(std::forward<Args>(args)...);
        return emplace_value(v.first, std::move(v));
    }

    template <class... Args>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::pair<entry_ptr, bool> try_emplace(const K& k, Args&&... args) {
        return try_emplace_impl(k, std::forward<Args>(args)...);
    }
    template <class... Args>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::pair<entry_ptr, bool> try_emplace(K&& k, Args&&... args) {
        return try_emplace_impl(std::move(k), std::forward<Args>(args)...);
    }

    template <class M>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::pair<entry_ptr, bool> insert_or_assign(const K& k, M&& v) {
        return insert_or_assign_impl(k, std::forward<M>(v));
    }
    template <class M>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::pair<entry_ptr, bool> insert_or_assign(K&& k, M&& v) {
        return insert_or_assign_impl(std::move(k), std::forward<M>(v));
    }

    // Heterogeneous writes (transparent Hash and KeyEqual): the key is built from `k` only if it is absent,
    // e.g. m.try_emplace(std::string_view("id"), v) on a std::string-keyed map.
    template <class K2, class... Args>
    requires heterogeneous_key<K2> std::pair<entry_ptr, bool> try_emplace(K2&& k, Args&&... args) {
        return try_emplace_impl(std::forward<K2>(k), std::forward<Args>(args)...);
    }
    template <class K2, class M>
    requires heterogeneous_key<K2> std::pair<entry_ptr, bool> insert_or_assign(K2&& k, M&& v) {
        return insert_or_assign_impl(std::forward<K2>(k), std::forward<M>(v));
    }

    // Go's m[k]: the value, default-constructed if absent. The reference is unchecked.
    V& operator[](const K& k) {
        return try_emplace(k).first.get_unchecked()->second;
    }
    V& operator[](K&& k) {
        return try_emplace(std::move(k)).first.get_unchecked()->second;
    }
    template <class K2>
    requires heterogeneous_key<K2> V& operator[](K2&& k) {
        return try_emplace(std::forward<K2>(k)).first.get_unchecked()->second;
    }

    // Go's delete(m, k). Returns the number of entries removed (0 or 1).
    ITERLOCK_DETAIL_ALWAYS_INLINE size_type erase(const K& k) {
        return erase_impl(k);
    }
    template <class K2>
    requires transparent size_type erase(const K2& k) {
        return erase_impl(k);
    }

    // Erases every entry for which pred(key, value) (or pred(entry)) is true. pred must not use the map
    // (doing so is reported as concurrent misuse). O(buckets + entries).
    template <class Pred>
    size_type erase_if(Pred pred) {
        write_scope ws(*this);
        detail::slot_test<K, V, Pred> test{pred};
        return t_.erase_if(test);
    }

    // Go 1.21's clear(m). Ends live iterations cleanly (rule I5). Keeps the bucket array.
    void clear() noexcept(!detect) {
        write_scope ws(*this);
        t_.clear();
    }

    // Go's size hint: room for n entries without further growth. O(size) if it rehashes (it also finishes a
    // growth in progress); no effect while an iterator is alive. Throws std::length_error if n > max_size()
    // (e.g. size_t(-1), or a negative int converted), also while an iterator is alive; the map is then
    // unchanged and usable.
    void reserve(size_type n) {
        write_scope ws(*this);
        t_.reserve(n);
    }

    // ---- iteration ------------------------------------------------------------------------------
    iterator begin() {
        return iterator(this);
    }
    iterator end() noexcept {
        return iterator();
    }
    const_iterator begin() const {
        return const_iterator(this);
    }
    const_iterator end() const noexcept {
        return const_iterator();
    }
    const_iterator cbegin() const {
        return const_iterator(this);
    }
    const_iterator cend() const noexcept {
        return const_iterator();
    }

    // ---- observers ------------------------------------------------------------------------------
    // An optional name for misuse reports: "fatal error: concurrent map writes (iterlock::map<int, int>
    // \"sessions\")". The string is not copied: it must outlive the map (a string literal, typically);
    // nullptr removes the name. A copy-constructed or move-constructed map takes its source's name;
    // assignment and swap keep each map's own. A plain member: set it before other threads use the map.
    void set_name(const char* name) noexcept {
        name_ = name;
    }
    const char* name() const noexcept {
        return name_;
    }

    std::uint64_t hash_seed() const noexcept {
        return t_.hash_seed();
    }
    hasher hash_function() const {
        return t_.hash_function();
    }
    key_equal key_eq() const {
        return t_.key_eq();
    }
    allocator_type get_allocator() const {
        return t_.get_allocator();
    }

    // Verifies the table's invariants (detail/map/table.hpp, T1-T7); throws std::logic_error on the first
    // violation. O(size + buckets): for tests.
    void check_invariants() const {
        check_read();
        t_.check_invariants();
    }

    friend bool operator==(const map& a, const map& b) {
        if (a.size() != b.size()) return false;
        bool equal = true;
        a.t_.for_each_slot([&](const slot_type& s) {
            if (!equal) return;
            const slot_type* o = b.t_.find_slot(s.first, b.t_.hash_of(s.first));
            equal = o != nullptr && o->second == s.second;
        });
        return equal;
    }

  private:
    friend struct detail::map_test_access;

    static constexpr std::uint8_t hash_writing = 1;  // Go's hashWriting flag

    // Go's hashWriting protocol: set for the duration of a write, checked by reads, writes and iterators.
    struct write_scope {
        explicit write_scope(map& m) : m_(m) { m_.begin_write(); }
        ~write_scope() { m_.end_write(); }
        write_scope(const write_scope&) = delete;
        write_scope& operator=(const write_scope&) = delete;
        map& m_;
    };

    bool writing() const noexcept {
        // A best-effort misuse flag (Go's hashWriting): a correct program never races on it, and no data
        // hangs off it. Read once per call, without being a compiler barrier (racy_flag_load).
        return (detail::racy_flag_load(&flags_) & hash_writing) != 0;
    }

    void check_read() const {
        if constexpr (detect) {
            if (writing()) [[unlikely]]
                report(messages::read_during_write);
        }
    }
    void begin_write() {
        if constexpr (detect) {
            if (writing()) [[unlikely]]
                report(messages::concurrent_writes);
            const std::uint64_t w = t_.iterator_word();
            if ((w & detail::iter_count_mask) != 0) [[unlikely]] {
                if ((w >> detail::iter_count_bits) != detail::thread_tag()) {
                    report(messages::iteration_during_write);
                }
            }
            detail::racy_flag_store(&flags_, hash_writing);
        }
    }
    void end_write() noexcept {
        if constexpr (detect) {
            if (!writing()) [[unlikely]]
                fatal(messages::concurrent_writes);
            detail::racy_flag_store(&flags_, 0);
        }
    }
    // Aborts with `message` if an iterator of this map is alive (moves, assignments and swaps replace the
    // arrays an iteration walks).
    void check_not_iterating(const char* message) const noexcept {
        if (t_.live_iterators() != 0) [[unlikely]]
            fatal(message);
    }

    // Misuse reports name this map (misuse.hpp, "Messages"). The cold reporters take the map's name, not
    // the map: a call that receives a pointer to the map, even one that never returns, keeps GCC from
    // hoisting the map's fields out of a caller's loop of finds (docs/DESIGN.md section 1, hashWriting).
    static detail::misuse_origin origin(const char* name) noexcept {
        return {"iterlock::map", detail::type_name<K>(), detail::type_name<V>(), name};
    }
    [[noreturn]] ITERLOCK_DETAIL_ALWAYS_INLINE void report(const char* message) const {
        report_named(message, name_);
    }
    [[noreturn]] ITERLOCK_DETAIL_ALWAYS_INLINE void fatal(const char* message) const noexcept {
        fatal_named(message, name_);
    }
    [[noreturn, gnu::cold, gnu::noinline]] static void report_named(const char* message, const char* name) {
        const detail::misuse_origin o = origin(name);
        detail::report_misuse(message, &o);
    }
    [[noreturn, gnu::cold, gnu::noinline]] static void fatal_named(const char* message,
                                                                   const char* name) noexcept {
        const detail::misuse_origin o = origin(name);
        detail::fatal(message, &o);
    }

    entry_ptr make_ptr(slot_type* s, const std::uint8_t* top) const noexcept {
        return entry_ptr(s, &t_, top);
    }

    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE entry_ptr find_impl(const K2& k) {
        check_read();
        const auto pos = t_.find_position(k, t_.hash_of(k));
        return make_ptr(pos.slot, pos.top);
    }
    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::optional<V> get_impl(const K2& k) const {
        check_read();
        const slot_type* s = t_.find_slot(k, t_.hash_of(k));
        if (s == nullptr) return std::nullopt;
        return s->second;
    }

    template <class KArg, class... Args>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::pair<entry_ptr, bool> try_emplace_impl(KArg&& k, Args&&... args) {
        const std::uint64_t h = t_.hash_of(k);
        write_scope ws(*this);
        const auto pos = t_.prepare_write(k, h);
        if (pos.found) return {make_ptr(pos.slot, pos.top), false};
        const auto at =
            t_.emplace_at(pos, h, std::piecewise_construct, std::forward_as_tuple(std::forward<KArg>(k)),
                          std::forward_as_tuple(std::forward<Args>(args)...));
        return {make_ptr(at.slot, at.top), true};
    }

    template <class KArg, class M>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::pair<entry_ptr, bool> insert_or_assign_impl(KArg&& k, M&& v) {
        const std::uint64_t h = t_.hash_of(k);
        write_scope ws(*this);
        const auto pos = t_.prepare_write(k, h);
        if (pos.found) {
            t_.assign_at(pos, std::forward<M>(v));
            return {make_ptr(pos.slot, pos.top), false};
        }
        const auto at = t_.emplace_at(pos, h, std::forward<KArg>(k), std::forward<M>(v));
        return {make_ptr(at.slot, at.top), true};
    }

    template <class VArg>
    ITERLOCK_DETAIL_ALWAYS_INLINE std::pair<entry_ptr, bool> emplace_value(const K& key, VArg&& v) {
        const std::uint64_t h = t_.hash_of(key);
        write_scope ws(*this);
        const auto pos = t_.prepare_write(key, h);
        if (pos.found) return {make_ptr(pos.slot, pos.top), false};
        const auto at = t_.emplace_at(pos, h, std::forward<VArg>(v));
        return {make_ptr(at.slot, at.top), true};
    }

    template <class K2>
    ITERLOCK_DETAIL_ALWAYS_INLINE size_type erase_impl(const K2& k) {
        if (t_.size() == 0) {
            check_read();
            return 0;
        }
        const std::uint64_t h = t_.hash_of(k);
        write_scope ws(*this);
        return t_.erase_key(k, h) ? 1 : 0;
    }

    table_type t_;
    const char* name_ = nullptr;  // set_name(); not part of the contents (assignment and swap keep it)
    std::uint8_t flags_ = 0;      // hash_writing; read and written with racy_flag_load/racy_flag_store
    mutable std::atomic<std::uint64_t> iter_seq_{0};  // feeds each iteration's random start
};

// std::erase_if's counterpart.
template <class K, class V, class H, class E, class A, class P, class Pred>
std::size_t erase_if(map<K, V, H, E, A, P>& m, Pred pred) {
    return m.erase_if(std::move(pred));
}

}  // namespace iterlock
