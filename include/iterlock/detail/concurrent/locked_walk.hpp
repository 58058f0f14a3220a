// iterlock/detail/concurrent/locked_walk.hpp: what concurrent_map::lock_for_iteration() returns — every
// shard's lock held for iteration (all or none), and a walk of the live shards in Go's randomized order.
//
// Owns: iterlock::detail::locked_walk (concurrent_map::iteration_guard) and its forward iterator.
// Invariants: a guard that owns the lock holds one iteration hold on every shard of its table and one entry
//       in its thread's iteration_holds registry (iteration_lock.hpp), or, nested (L7), only a depth count
//       there; it releases them on the thread that took them (G2), unregistering from the tables where its
//       holder wrote (L6, sharded_table's write_lock registers it).
// Rules L1-L7 and G1-G4 are concurrent_map.hpp's.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>

#include "iterlock/detail/concurrent/sharded_table.hpp"
#include "iterlock/detail/util/inline.hpp"
#include "iterlock/detail/util/random.hpp"
#include "iterlock/iteration_lock.hpp"

namespace iterlock::detail {

template <class Table>
class locked_walk {
    using size_type = std::size_t;
    using slot_type = typename Table::slot_type;
    using shard = typename Table::shard;
    using table_type = typename Table::table_type;
    static constexpr bool metrics_on = Table::metrics_on;

  public:
    locked_walk(locked_walk&&) = delete;
    locked_walk& operator=(locked_walk&&) = delete;
    locked_walk(const locked_walk&) = delete;
    locked_walk& operator=(const locked_walk&) = delete;
    ~locked_walk() { release(); }

    bool owns_lock() const noexcept { return m_ != nullptr; }
    explicit operator bool() const noexcept { return owns_lock(); }
    // Entries while the guard lives (an estimate is not needed: writers are excluded). lock_error if
    // the guard owns nothing (G3).
    size_type size() const {
        require_lock();
        return m_->size();
    }

    // Walks every shard (in order from a random one), each shard in Go's randomized order. The entries
    // may be modified through the iterator; the holding thread may also insert and erase (L6).
    class iterator {
      public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = typename Table::value_type;
        using difference_type = std::ptrdiff_t;
        using pointer = value_type*;
        using reference = value_type&;

        iterator() = default;
        reference operator*() const noexcept { return *cur_; }
        pointer operator->() const noexcept { return cur_; }
        ITERLOCK_DETAIL_ALWAYS_INLINE iterator& operator++() {
            step();
            return *this;
        }
        iterator operator++(int) {
            iterator c = *this;
            step();
            return c;
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.cur_ == b.cur_; }

      private:
        friend class locked_walk;
        explicit iterator(Table* m) : m_(m) {
            const std::size_t n = m_->shards_.size();
            start_ = static_cast<std::size_t>(thread_random()) & (n - 1);
            open(start_);
            step();
        }
        void open(std::size_t i) {
            shard_ = i;
            t_ = &m_->shards_[i].t;  // shards never move (sharded_table::shards_)
            t_->iter_init(st_, thread_random());
        }
        // One entry of the current shard: the table's inline fast path, as map's iterator steps, through
        // the cached table pointer. The end of a shard is the rare case (next_shard).
        ITERLOCK_DETAIL_ALWAYS_INLINE void step() {
            cur_ = t_->iter_next(st_);
            if (cur_ == nullptr) [[unlikely]]
                next_shard();
        }
        // The current shard is done: the first entry of the next shard that has one, or the end (cur_ ==
        // nullptr) once every shard was visited.
        ITERLOCK_DETAIL_NOINLINE void next_shard() {
            const std::size_t n = m_->shards_.size();
            while (++visited_ < n) {
                open((shard_ + 1) & (n - 1));
                cur_ = t_->iter_next(st_);
                if (cur_ != nullptr) return;
            }
            visited_ = n;
        }
        Table* m_ = nullptr;
        const table_type* t_ = nullptr;  // shard shard_'s table
        typename table_type::iter_state st_{};
        slot_type* cur_ = nullptr;
        std::size_t start_ = 0;
        std::size_t shard_ = 0;
        std::size_t visited_ = 0;
    };
    // lock_error if the guard owns nothing (G3).
    iterator begin() const {
        require_lock();
        return iterator(m_);
    }
    iterator end() const noexcept { return iterator(); }

  private:
    void require_lock() const {
        if (m_ == nullptr)
            throw lock_error(
                "iterlock: using an iteration guard that does not own the lock (try_lock_for_iteration "
                "timed out: test the guard before walking it)");
    }

    friend Table;
    using deadline_t = std::optional<std::chrono::steady_clock::time_point>;

    locked_walk(Table* m, deadline_t deadline) : owner_(thread_tag()) {
        m->count_event(&map_event_metrics::iterations_started);
        try {
            m->entry_check();
        } catch (const lock_error&) {
            m->count_event(&map_event_metrics::iterations_error);
            throw;
        }
        iteration_holds& tls = this_thread_iteration_holds();
        if (int* d = tls.depth_for(m); d != nullptr && *d > 0) {  // L7: nested, share the locks
            ++*d;
            m_ = m;
            nested_ = true;
            // Guards end in scope order, so the outermost records the hold; a nested one that outlives it
            // (heap-allocated) records its own.
            if constexpr (metrics_on) held_since_ = std::chrono::steady_clock::now();
            return;
        }
        iteration_holds::held* slot = nullptr;
        try {
            slot = &tls.add(m);
        } catch (const lock_error&) {
            m->count_event(&map_event_metrics::iterations_error);
            throw;
        }
        const priority p = current_priority();
        wait_histogram* wait = nullptr;
        if constexpr (metrics_on) wait = &m->events_.iterator_wait[priority_index(p)];
        if (!acquire_iterations(  // L5: all shards or none
                m->shards_.size(), [m](std::size_t i) -> shard_lock& { return m->shards_[i].lock; }, deadline,
                p, wait)) {
            tls.remove(*slot);
            m->count_event(&map_event_metrics::iterations_timeout);
            return;
        }
        // Tables register this guard when its holder first writes to them (L6), not here.
        m_ = m;
        if constexpr (metrics_on) held_since_ = std::chrono::steady_clock::now();
    }

    void release() noexcept {
        if (m_ == nullptr) return;
        if (owner_ != thread_tag()) {  // G2
            fatal(
                "iterlock: an iteration guard was released by another thread than the one that took it; "
                "guards are not movable and must end on their own thread");
        }
        iteration_holds& tls = this_thread_iteration_holds();
        iteration_holds::held* h = tls.find(m_);
        m_->count_event(&map_event_metrics::iterations_success);
        if (--h->depth == 0) {
            tls.remove(*h);
            if constexpr (metrics_on)
                m_->events_.iteration_hold[priority_index(current_priority())].record_shared(
                    std::chrono::steady_clock::now() - held_since_);
            for (shard& s : m_->shards_) {
                // Relaxed: see shard::iteration_writer (only this thread stores its own tag there).
                if (s.iteration_writer.load(std::memory_order_relaxed) == owner_) [[unlikely]] {
                    s.t.unregister_iterator(owner_);
                    s.iteration_writer.store(0, std::memory_order_relaxed);
                }
                s.lock.unlock_iteration();
            }
        }
        m_ = nullptr;
    }

    Table* m_ = nullptr;
    std::uint64_t owner_ = 0;
    bool nested_ = false;
    std::chrono::steady_clock::time_point held_since_{};  // the outermost guard's start (metrics only)
};

}  // namespace iterlock::detail
