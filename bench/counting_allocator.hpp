// counting_allocator: a std-compatible allocator that counts the bytes its containers hold, for the
// memory workload (W6).
//
// Invariants: `allocation_stats::live` is the sum of the sizes of all blocks handed out and not yet
// returned, over every counting_allocator<T> of every T (one global tally, so a container's rebound
// allocators for nodes, buckets and control bytes all count); `peak` is the largest `live` since the
// last reset_peak(). The counters are relaxed atomics: exact when one thread allocates at a time.
// All instances compare equal (the allocator is stateless; memory comes from ::operator new).
#pragma once

#include <atomic>
#include <cstddef>
#include <new>
#include <type_traits>

namespace iterlock::bench {

struct allocation_stats {
    static inline std::atomic<std::size_t> live{0};
    static inline std::atomic<std::size_t> peak{0};

    // Starts a new peak window at the current live count. Not safe against concurrent allocation.
    static void reset_peak() noexcept {
        peak.store(live.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }

    static void on_allocate(std::size_t bytes) noexcept {
        const std::size_t now = live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
        std::size_t seen = peak.load(std::memory_order_relaxed);
        while (now > seen && !peak.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
        }
    }
    static void on_deallocate(std::size_t bytes) noexcept {
        live.fetch_sub(bytes, std::memory_order_relaxed);
    }
};

template <class T>
class counting_allocator {
  public:
    using value_type = T;
    using propagate_on_container_move_assignment = std::true_type;
    using is_always_equal = std::true_type;

    counting_allocator() noexcept = default;
    template <class U>
    counting_allocator(const counting_allocator<U>&) noexcept {}

    // Allocates n objects' worth of storage, suitably aligned for T; throws std::bad_alloc on failure.
    T* allocate(std::size_t n) {
        const std::size_t bytes = n * sizeof(T);
        void* p = alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__
                      ? ::operator new (bytes, std::align_val_t{alignof(T)})
                      : ::operator new(bytes);
        allocation_stats::on_allocate(bytes);
        return static_cast<T*>(p);
    }

    // Returns storage from allocate(n); never throws.
    void deallocate(T* p, std::size_t n) noexcept {
        allocation_stats::on_deallocate(n * sizeof(T));
        if constexpr (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
            ::operator delete (p, std::align_val_t{alignof(T)});
        } else {
            ::operator delete(p);
        }
    }

    template <class U>
    friend bool operator==(const counting_allocator&, const counting_allocator<U>&) noexcept {
        return true;
    }
};

}  // namespace iterlock::bench
