// iterlock/guarded.hpp: the iteration lock around a map a codebase already has (std::unordered_map,
// absl::flat_hash_map, boost::unordered_flat_map, any map with the standard interface).
//
// Owns: iterlock::guarded<Map, Checked>, iterlock::guarded_traits<Map>.
// Invariants: every access to the wrapped map holds the guarded's iteration_lock in the role the access
// needs (reads shared, writes exclusive, walks as an iteration); a write by the walking thread either keeps
// its walk's iterators valid by the wrapped map's own rules or is refused before anything changes.
//
// The seed retrofits Go's maps with go:linkname; C++ has types. Changing the type of a member from
// `std::unordered_map<K, V>` to `iterlock::guarded<std::unordered_map<K, V>>` makes every access go through
// the lock (docs/GUIDE.md, "Migrating an existing map"):
//
//     iterlock::guarded<absl::flat_hash_map<std::string, feature>> features;
//     features.insert_or_assign(id, f);                        // exclusive
//     if (auto f = features.get(id)) use(*f);                  // shared, returns a copy
//     { auto g = features.lock_for_iteration();                // writers wait; readers and walks do not
//       for (auto it = g.begin(); it != g.end();)
//           it = expired(it->second) ? g.erase(it) : std::next(it); }
//
// Rules (prefix GD; R1-R9 and L1-L7 are the lock's, iteration_lock.hpp):
//   GD1 Reads (size, empty, contains, count, get, visit, read) hold the lock shared: they run beside each
//       other and beside walks and wait only while a writer holds (R1). Cost: the wrapped map's, plus one
//       atomic RMW to lock and one to unlock. They throw only what the map, the key's hash and equality, or
//       the callback throw (get copies the value).
//   GD2 Writes (insert, try_emplace, emplace, insert_or_assign, erase, update, erase_if, clear, reserve,
//       write) hold it exclusively: they wait for readers, writers and walks (R2-R5), and a waiting writer
//       blocks new walks (L3). Exception safety is the wrapped map's; the lock is released on every exit.
//   GD3 lock_for_iteration() returns a guard that walks the live map (no copy). While it lives no other
//       thread writes (L1), any number of guards may live (L2), priorities order the waiters (L4). Taking
//       one: one load and one CAS uncontended. The walk: the wrapped map's iteration, plus one store per
//       step (the guard's cursor, GD4).
//   GD4 The walking thread may write during its walk (through this guarded's write calls, or guard.erase)
//       when its guard is the only live one (L6; otherwise lock_error, nothing changed). Such a write follows
//       the wrapped map's iterator-invalidation rules; one that the wrapped map says may invalidate the walk
//       is refused with iterlock::invalidation_error before anything changes:
//         - inserting a new key, unless guarded_traits<Map>::insert_keeps_iterators(map) says no rehash can
//           happen (std::unordered_map: size() + 1 <= max_load_factor() * bucket_count(); any other map:
//           never, since open-addressing maps may rehash or move entries on any insert);
//         - erase(k) of the entry a walk of this thread stands on (erase it with guard.erase(it) instead);
//         - erase_if whose predicate matches such an entry; clear() of a non-empty map; reserve(n) that may
//           rehash (guarded_traits<Map>::reserve_keeps_iterators); write(f) (its effect cannot be checked).
//       Assigning existing keys, update(), and erasing entries the walk does not stand on are allowed; what
//       the walk then sees is the wrapped map's business (an entry erased ahead is not visited; one
//       inserted may be visited or not). Values changed through the guard's iterator are writes too: do
//       that only as the only walker (or use update(), which checks L6).
//   GD5 try_lock_for_iteration(timeout) returns a guard that tests false and owns nothing if the lock could
//       not be had in time (L5); begin(), find() and size() on it throw lock_error.
//   GD6 A guard is neither copyable nor movable and ends on the thread that took it (abort otherwise).
//       Nested guards of one guarded on one thread share the first one's hold (L7). The guarded must
//       outlive its guards.
//   GD7 Unguarded iteration (begin()/end() on the guarded itself, as the code being migrated does) is the
//       wrapped map's own iteration without a lock: correct only while no other thread writes. Checked mode
//       (the Checked argument, by default ITERLOCK_GUARDED_CHECKED, which is on in ITERLOCK_CHECKED builds)
//       detects iteration without a guard: each such iterator remembers the guarded's write count when it
//       was made, and a dereference or increment after a write reports Go's "concurrent map iteration and
//       map write" (misuse.hpp: print and abort, or throw iterlock::concurrent_misuse). Deterministic for a
//       write that completes between two steps (on any thread, this one included); best effort, as in Go,
//       for one that overlaps a step. Iterators made by a thread that holds a guard are not checked.
//       Unchecked mode: plain iterators of the wrapped map, no cost.
//   GD8 metrics(): the lock's (iteration_lock::metrics(), exportable with iterlock/prometheus.hpp) plus the
//       number of entries, read under the lock shared.
//   GD9 Calling a guarded from inside one of its own callbacks (visit, read, update, erase_if's predicate,
//       write), directly or through another guarded of the same type whose callback is running, throws
//       iterlock::lock_error: it would wait for the lock the callback's caller holds. Cost on every call:
//       one thread-local load and a test for null.
//
// FAQ
//   Why copies from get() and not iterators or references? Either would outlive the read lock.
//   Why not expose find()? Same reason; use get(), contains(), visit(k, f), or a guard's find(k).
//   My map is not listed: specialize guarded_traits<YourMap> to allow more writes during walks.
//   What deadlocks undetected? Holding m.lock() yourself (std::unique_lock / std::shared_lock on it) and then
//   calling m; a callback that calls another guarded type or lock whose holder waits for this one. Keep
//   callbacks short and free of other locks.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>

#include "iterlock/detail/util/exclusive_add.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/iteration_lock.hpp"
#include "iterlock/metrics.hpp"
#include "iterlock/misuse.hpp"

#ifndef ITERLOCK_GUARDED_CHECKED
#if defined(ITERLOCK_CHECKED)
#define ITERLOCK_GUARDED_CHECKED 1
#else
#define ITERLOCK_GUARDED_CHECKED 0
#endif
#endif

namespace iterlock {

// Which writes keep a map's iterators valid (GD4). The default is right for open-addressing maps (absl,
// Boost, ankerl): an insert of a new key may rehash or move entries; an erase moves nothing.
template <class Map>
struct guarded_traits {
    // Whether inserting one new key into `m` keeps every iterator of `m` valid.
    static bool insert_keeps_iterators(const Map&) noexcept { return false; }
    // Whether m.reserve(n) keeps every iterator of `m` valid.
    static bool reserve_keeps_iterators(const Map& m, std::size_t n) noexcept { return n <= m.size(); }
};

// std::unordered_map ([unord.req]): an insert rehashes only when size() + 1 exceeds max_load_factor() *
// bucket_count(), and only a rehash invalidates iterators.
template <class K, class V, class H, class E, class A>
struct guarded_traits<std::unordered_map<K, V, H, E, A>> {
    using map = std::unordered_map<K, V, H, E, A>;
    static bool insert_keeps_iterators(const map& m) noexcept { return fits(m, m.size() + 1); }
    static bool reserve_keeps_iterators(const map& m, std::size_t n) noexcept { return fits(m, n); }

  private:
    static bool fits(const map& m, std::size_t n) noexcept {
        return static_cast<double>(n) <=
               static_cast<double>(m.max_load_factor()) * static_cast<double>(m.bucket_count());
    }
};

template <class Map, bool Checked = ITERLOCK_GUARDED_CHECKED>
class guarded {
    using traits = guarded_traits<Map>;

  public:
    using map_type = Map;
    using key_type = typename Map::key_type;
    using mapped_type = typename Map::mapped_type;
    using value_type = typename Map::value_type;
    using size_type = typename Map::size_type;
    static constexpr bool checked = Checked;

    class iteration_guard;

    guarded() = default;
    explicit guarded(Map m) : map_(std::move(m)) {}
    guarded(const guarded&) = delete;
    guarded& operator=(const guarded&) = delete;

    // ---- reads (GD1) ----
    size_type size() const {
        read_section r(*this);
        return map_.size();
    }
    bool empty() const {
        read_section r(*this);
        return map_.empty();
    }
    bool contains(const key_type& k) const {
        read_section r(*this);
        return map_.find(k) != map_.end();
    }
    size_type count(const key_type& k) const {
        read_section r(*this);
        return map_.count(k);
    }
    // A copy of k's value, or nullopt.
    std::optional<mapped_type> get(const key_type& k) const {
        read_section r(*this);
        const auto it = map_.find(k);
        if (it == map_.end()) return std::nullopt;
        return it->second;
    }
    // f(const value_type&) under the shared lock if k is present; returns whether it was. A call on
    // this guarded from f throws lock_error (GD9).
    template <class F>
    bool visit(const key_type& k, F&& f) const {
        read_section r(*this);
        const auto it = map_.find(k);
        if (it == map_.end()) return false;
        callback_scope cs(this);
        std::forward<F>(f)(*it);
        return true;
    }
    // f(const Map&) under the shared lock; returns what f returns. f must not keep iterators or references;
    // a call on this guarded from f throws lock_error (GD9).
    template <class F>
    decltype(auto) read(F&& f) const {
        read_section r(*this);
        callback_scope cs(this);
        return std::forward<F>(f)(std::as_const(map_));
    }

    // ---- writes (GD2; during the caller's own walk, GD4) ----
    bool insert(const value_type& v) { return try_emplace(v.first, v.second); }
    bool insert(value_type&& v) { return try_emplace(v.first, std::move(v.second)); }
    template <class... Args>
    bool emplace(Args&&... args) {
        value_type v(std::forward<Args>(args)...);
        return try_emplace(v.first, std::move(v.second));
    }
    template <class... Args>
    bool try_emplace(const key_type& k, Args&&... args) {
        write_section w(*this);
        if (w.walking) check_insert(k);
        return map_.try_emplace(k, std::forward<Args>(args)...).second;
    }
    // Returns true if k was inserted, false if assigned.
    template <class M>
    bool insert_or_assign(const key_type& k, M&& v) {
        write_section w(*this);
        if (w.walking) check_insert(k);
        return map_.insert_or_assign(k, std::forward<M>(v)).second;
    }
    size_type erase(const key_type& k) {
        write_section w(*this);
        if (w.walking) {
            const auto it = map_.find(k);
            if (it == map_.end()) return 0;
            if (walk_stands_on(&*it))
                throw invalidation_error(
                    "iterlock::guarded: erase(key) of the entry this thread's walk stands on would "
                    "invalidate "
                    "the walk's iterator; erase it with guard.erase(it), which returns the next position");
        }
        return map_.erase(k);
    }
    // f(mapped_type&) under the exclusive lock if k is present; returns whether it was. A call on this
    // guarded from f throws lock_error (GD9).
    template <class F>
    bool update(const key_type& k, F&& f) {
        write_section w(*this);
        const auto it = map_.find(k);
        if (it == map_.end()) return false;
        callback_scope cs(this);
        std::forward<F>(f)(it->second);
        return true;
    }
    // Erases every entry for which pred(const value_type&) is true; returns how many. O(buckets + size).
    // A call on this guarded from pred throws lock_error (GD9).
    template <class Pred>
    size_type erase_if(Pred pred) {
        write_section w(*this);
        callback_scope cs(this);
        if (w.walking)
            for_each_cursor([&](const value_type* at) {
                if (pred(*at))
                    throw invalidation_error(
                        "iterlock::guarded: erase_if would erase the entry this thread's walk stands on and "
                        "invalidate the walk's iterator; erase it with guard.erase(it)");
            });
        size_type n = 0;
        for (auto it = map_.begin(); it != map_.end();) {
            if (pred(std::as_const(*it))) {
                it = erase_at(it);
                ++n;
            } else {
                ++it;
            }
        }
        return n;
    }
    void clear() {
        write_section w(*this);
        if (w.walking && !map_.empty())
            throw invalidation_error(
                "iterlock::guarded: clear() during this thread's own walk would invalidate the walk; clear "
                "after the guard ends");
        map_.clear();
    }
    void reserve(size_type n) {
        write_section w(*this);
        if (w.walking && !traits::reserve_keeps_iterators(map_, n))
            throw invalidation_error(
                "iterlock::guarded: reserve() during this thread's own walk may rehash and invalidate the "
                "walk; reserve before taking the guard");
        map_.reserve(n);
    }
    // f(Map&) under the exclusive lock; returns what f returns. Refused during the caller's own walk (its
    // effect on the walk cannot be checked). f must not keep iterators or references.
    template <class F>
    decltype(auto) write(F&& f) {
        write_section w(*this);
        if (w.walking)
            throw invalidation_error(
                "iterlock::guarded: write(f) during this thread's own walk cannot be checked against the "
                "walk's iterators; use insert_or_assign/erase/update, or write after the guard ends");
        callback_scope cs(this);
        return std::forward<F>(f)(map_);
    }

    // ---- walks (GD3, GD5, GD6) ----
    iteration_guard lock_for_iteration() {
        entry_check();
        return iteration_guard(*this);
    }
    template <class Rep, class Period>
    iteration_guard try_lock_for_iteration(std::chrono::duration<Rep, Period> timeout) {
        entry_check();
        return iteration_guard(*this, timeout);
    }

    // ---- unguarded iteration (GD7) ----
    template <class It>
    class unguarded_iterator;
    auto begin() { return make_unguarded(map_.begin()); }
    auto end() { return make_unguarded(map_.end()); }
    auto begin() const { return make_unguarded(map_.begin()); }
    auto end() const { return make_unguarded(map_.end()); }

    // ---- the lock and its metrics (GD8) ----
    iteration_lock& lock() const noexcept { return lock_; }
    map_metrics metrics() const {
        map_metrics out = lock_.metrics();
        out.entries = size();
        return out;
    }

  private:
    // GD9: the callbacks running on this thread, innermost first (for every guarded of this type).
    struct callback_frame {
        const guarded* m;
        const callback_frame* outer;
    };
    static inline thread_local const callback_frame* callbacks_ = nullptr;
    struct callback_scope {
        explicit callback_scope(const guarded* m) noexcept : frame{m, callbacks_} { callbacks_ = &frame; }
        ~callback_scope() { callbacks_ = frame.outer; }
        callback_scope(const callback_scope&) = delete;
        callback_scope& operator=(const callback_scope&) = delete;
        callback_frame frame;
    };
    void entry_check() const {
        if (callbacks_ == nullptr) [[likely]]
            return;
        for (const callback_frame* f = callbacks_; f != nullptr; f = f->outer)
            if (f->m == this)
                throw lock_error(
                    "iterlock::guarded: called from inside a visit/read/update/erase_if/write callback of "
                    "the "
                    "same guarded (directly or through another guarded's callback); that would wait for the "
                    "lock the callback's caller holds");
    }
    // The shared hold of one read.
    struct read_section {
        explicit read_section(const guarded& g) : g_(g) {
            g_.entry_check();
            g_.lock_.lock_shared();
        }
        ~read_section() { g_.lock_.unlock_shared(); }
        read_section(const read_section&) = delete;
        read_section& operator=(const read_section&) = delete;
        const guarded& g_;
    };
    // The exclusive hold of one write; `walking`: the caller holds a guard of this guarded (its hold was
    // upgraded, L6), so GD4's checks apply.
    struct write_section {
        explicit write_section(guarded& g) : g_(g) {
            g_.entry_check();
            g_.lock_.lock();  // lock_error if the caller walks beside another guard (L6)
            walking = g_.lock_.held_for_iteration();
            if constexpr (Checked) detail::add_exclusive(g_.writes_, 1);
        }
        ~write_section() { g_.lock_.unlock(); }
        write_section(const write_section&) = delete;
        write_section& operator=(const write_section&) = delete;
        guarded& g_;
        bool walking = false;
    };

    void check_insert(const key_type& k) const {
        if (map_.find(k) != map_.end() || traits::insert_keeps_iterators(map_)) return;
        throw invalidation_error(
            "iterlock::guarded: inserting a new key during this thread's own walk may rehash the map and "
            "invalidate the walk (the wrapped map's iterator rules, GD4); collect the keys and insert after "
            "the guard ends, or reserve() before the walk (std::unordered_map)");
    }

    // Erases *it; returns the position after it (the maps' erase(iterator) return types differ: absl's is
    // void). Erasing moves no other entry in any supported map, so `next` stays valid.
    template <class It>
    It erase_at(It it) {
        It next = std::next(it);
        map_.erase(it);
        return next;
    }

    template <class F>
    void for_each_cursor(F&& f) const {
        for (const iteration_guard* g = iteration_guard::walks_; g != nullptr; g = g->outer_)
            if (g->m_ == this && g->cursor_ != nullptr) f(g->cursor_);
    }
    bool walk_stands_on(const value_type* p) const {
        bool on = false;
        for_each_cursor([&](const value_type* at) { on = on || at == p; });
        return on;
    }

    template <class It>
    auto make_unguarded(It it) const {
        if constexpr (Checked) {
            // Relaxed: a misuse check; the iterator compares this count with later ones (GD7).
            return unguarded_iterator<It>(it, this, writes_.load(std::memory_order_relaxed),
                                          !lock_.held_for_iteration());
        } else {
            return it;
        }
    }

    Map map_;
    mutable iteration_lock lock_;
    // Checked mode: writes so far (GD7). Written under the exclusive lock.
    [[no_unique_address]] std::conditional_t<Checked, std::atomic<std::uint64_t>, std::monostate> writes_{};
};

// Checked mode's iterator for unguarded walks (GD7): the wrapped map's iterator plus the write count it
// was made at.
template <class Map, bool Checked>
template <class It>
class guarded<Map, Checked>::unguarded_iterator {
  public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = typename std::iterator_traits<It>::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = typename std::iterator_traits<It>::pointer;
    using reference = typename std::iterator_traits<It>::reference;

    unguarded_iterator() = default;
    reference operator*() const {
        verify();
        return *it_;
    }
    pointer operator->() const {
        verify();
        return &*it_;
    }
    unguarded_iterator& operator++() {
        verify();
        ++it_;
        return *this;
    }
    unguarded_iterator operator++(int) {
        unguarded_iterator c = *this;
        ++*this;
        return c;
    }
    friend bool operator==(const unguarded_iterator& a, const unguarded_iterator& b) {
        return a.it_ == b.it_;
    }

  private:
    friend class guarded;
    unguarded_iterator(It it, const guarded* m, std::uint64_t at, bool check)
        : it_(it), m_(m), at_(at), check_(check) {}
    void verify() const {
        // Relaxed: a misuse check (GD7), best effort against a write in flight.
        if (check_ && m_->writes_.load(std::memory_order_relaxed) != at_) [[unlikely]] {
            static constexpr detail::misuse_origin origin{"iterlock::guarded", detail::type_name<key_type>(),
                                                          detail::type_name<mapped_type>(), nullptr};
            detail::report_misuse(messages::iteration_during_write, &origin);
        }
    }
    It it_{};
    const guarded* m_ = nullptr;
    std::uint64_t at_ = 0;
    bool check_ = false;
};

// What lock_for_iteration() returns (GD3-GD6).
template <class Map, bool Checked>
class guarded<Map, Checked>::iteration_guard {
  public:
    iteration_guard(const iteration_guard&) = delete;
    iteration_guard& operator=(const iteration_guard&) = delete;
    iteration_guard(iteration_guard&&) = delete;
    iteration_guard& operator=(iteration_guard&&) = delete;
    ~iteration_guard() {
        if (!held_.owns_lock()) return;
        iteration_guard** link = &walks_;
        while (*link != nullptr && *link != this) link = &(*link)->outer_;
        if (*link == nullptr)
            detail::fatal(
                "iterlock: a guarded<Map> iteration guard was released by another thread than the one that "
                "took it; guards are not movable and must end on their own thread");
        *link = outer_;
    }

    bool owns_lock() const noexcept { return held_.owns_lock(); }
    explicit operator bool() const noexcept { return owns_lock(); }

    // The walk's iterator: the wrapped map's, noting where the walk stands (GD4).
    class iterator {
      public:
        using base_iterator = typename Map::iterator;
        using iterator_category = std::forward_iterator_tag;
        using value_type = typename Map::value_type;
        using difference_type = std::ptrdiff_t;
        using pointer = typename std::iterator_traits<base_iterator>::pointer;
        using reference = typename std::iterator_traits<base_iterator>::reference;

        iterator() = default;
        reference operator*() const { return *it_; }
        pointer operator->() const { return &*it_; }
        iterator& operator++() {
            ++it_;
            g_->stand_on(it_);
            return *this;
        }
        iterator operator++(int) {
            iterator c = *this;
            ++*this;
            return c;
        }
        friend bool operator==(const iterator& a, const iterator& b) { return a.it_ == b.it_; }
        base_iterator base() const { return it_; }

      private:
        friend class iteration_guard;
        iterator(base_iterator it, iteration_guard* g) : it_(it), g_(g) {
            if (g_ != nullptr) g_->stand_on(it_);
        }
        base_iterator it_{};
        iteration_guard* g_ = nullptr;
    };

    // lock_error if the guard owns nothing (GD5).
    iterator begin() {
        require_lock();
        return iterator(m_->map_.begin(), this);
    }
    iterator end() noexcept { return iterator(m_->map_.end(), nullptr); }
    iterator find(const key_type& k) {
        require_lock();
        return iterator(m_->map_.find(k), this);
    }
    size_type size() const {
        require_lock();
        return m_->map_.size();
    }
    // Erases the entry at `it` (a write: L6, GD4 allow it for the only walker) and returns the next
    // position. lock_error, nothing changed, if another guard is live.
    iterator erase(iterator it) {
        require_lock();
        typename guarded::write_section w(*m_);
        return iterator(m_->erase_at(it.it_), this);
    }

  private:
    friend class guarded;

    explicit iteration_guard(guarded& m) : m_(&m), held_(m.lock_) { link(); }
    template <class Rep, class Period>
    iteration_guard(guarded& m, std::chrono::duration<Rep, Period> timeout)
        : m_(&m), held_(m.lock_, timeout) {
        link();
    }
    void link() noexcept {
        if (!held_.owns_lock()) return;
        outer_ = walks_;
        walks_ = this;
    }
    void require_lock() const {
        if (!held_.owns_lock())
            throw lock_error(
                "iterlock: using a guarded<Map> iteration guard that does not own the lock "
                "(try_lock_for_iteration timed out: test the guard before walking it)");
    }
    void stand_on(const typename Map::iterator& it) noexcept {
        cursor_ = it == m_->map_.end() ? nullptr : &*it;
    }

    guarded* m_;
    iteration_lock::guard held_;
    const value_type* cursor_ = nullptr;  // the entry the walk stands on (GD4)
    iteration_guard* outer_ = nullptr;    // the next guard of this thread, any guarded of this type
    // This thread's live guards of guarded<Map, Checked>s, innermost first.
    static inline thread_local iteration_guard* walks_ = nullptr;
};

}  // namespace iterlock
