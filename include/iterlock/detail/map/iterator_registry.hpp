// iterlock/detail/map/iterator_registry.hpp: which threads have live iterators on one table, in one word
// that writers read with a single load.
//
// Owns: iterlock::detail::iterator_registry, the word's layout (iter_count_bits, iter_count_mask,
//       iter_owner_shared).
// Invariants: the word's count is the number of registered iterators; its owner field is the tag of the
//       only thread that has them, or all ones when several threads do (or more than `slots` threads ever
//       overflowed the per-thread counts: cautious, never wrong the other way); 0 means none. The per-thread
//       counts sit behind a tiny spinlock (registration is per loop, not per step) and the word is
//       recomputed from them under it. Any thread may register and read; what a writer concludes from the
//       word is ordered by the lock its table's owner uses (a shard lock, or map's misuse check, which is
//       best effort).
//
//   63                                  20 19                  0
//   +--------------------------------------+---------------------+
//   | owner thread tag (all ones: several) |  live iterator count |
//   +--------------------------------------+---------------------+
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "iterlock/misuse.hpp"

namespace iterlock::detail {

inline constexpr std::uint64_t iter_count_bits = 20;
inline constexpr std::uint64_t iter_count_mask = (std::uint64_t{1} << iter_count_bits) - 1;
inline constexpr std::uint64_t iter_owner_shared = ~std::uint64_t{0} >> iter_count_bits;

class iterator_registry {
  public:
    // Relaxed: a count and an owner tag, no data hangs off it (see the invariants above).
    std::uint64_t word() const noexcept { return word_.load(std::memory_order_relaxed); }
    std::size_t count() const noexcept { return static_cast<std::size_t>(word() & iter_count_mask); }

    // Registers one live iterator of thread `tag`; remove(tag) unregisters one. Aborts with a message past
    // 2^20 live iterators.
    void add(std::uint64_t tag) noexcept {
        lock();
        std::size_t i = 0;
        while (i < slots && threads_[i].tag != tag) ++i;
        if (i == slots) {
            i = 0;
            while (i < slots && threads_[i].count != 0) ++i;
        }
        if (i == slots) {
            ++overflow_;
        } else {
            threads_[i].tag = tag;
            ++threads_[i].count;
        }
        publish();
        unlock();
    }
    void remove(std::uint64_t tag) noexcept {
        lock();
        std::size_t i = 0;
        while (i < slots && !(threads_[i].tag == tag && threads_[i].count != 0)) ++i;
        if (i == slots) {
            --overflow_;
        } else {
            --threads_[i].count;
        }
        publish();
        unlock();
    }

  private:
    void lock() noexcept {
        // Acquire: pairs with unlock()'s release store (a spinlock over threads_).
        while (busy_.exchange(true, std::memory_order_acquire)) {
            // Relaxed: only waits; the exchange above re-checks with acquire.
            while (busy_.load(std::memory_order_relaxed)) {
            }
        }
    }
    // Release: pairs with lock()'s acquire exchange.
    void unlock() noexcept { busy_.store(false, std::memory_order_release); }
    // Recomputes the word from the per-thread counts. Requires: the spinlock.
    void publish() noexcept {
        std::uint64_t total = overflow_;
        std::uint64_t owner = 0;
        std::size_t nthreads = overflow_ != 0 ? 2 : 0;
        for (const per_thread& t : threads_) {
            if (t.count == 0) continue;
            total += t.count;
            owner = t.tag;
            ++nthreads;
        }
        if (total > iter_count_mask) fatal("iterlock: too many live iterators of one map (2^20)");
        const std::uint64_t o = nthreads > 1 ? iter_owner_shared : owner;
        // Release: no acquire load pairs with it (word() is relaxed); the owner's lock orders registration
        // against writers.
        word_.store(total == 0 ? 0 : ((o << iter_count_bits) | total), std::memory_order_release);
    }

    struct per_thread {
        std::uint64_t tag = 0;
        std::uint64_t count = 0;
    };
    static constexpr std::size_t slots = 4;
    std::atomic<std::uint64_t> word_{0};
    std::atomic<bool> busy_{false};
    per_thread threads_[slots] = {};
    std::uint64_t overflow_ = 0;  // iterators of threads beyond the slots
};

}  // namespace iterlock::detail
