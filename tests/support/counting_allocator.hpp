// tests/support/counting_allocator.hpp: a stateful allocator that counts the live bytes and blocks of the
// containers that use it, for the suites that check memory returns (S5) and that allocators propagate.
//
// Owns: iterlock::test::alloc_counter, counting_allocator.
// Invariant: an alloc_counter's bytes and blocks are the sums over every block handed out through it (by any
// copy or rebinding of the allocator) and not yet returned; updates are atomic, so threads may share one.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>

namespace iterlock::test {

// Totals shared by every copy and rebinding of one counting_allocator.
struct alloc_counter {
    std::atomic<long long> bytes{0};
    std::atomic<long long> blocks{0};
};

// Where default-constructed counting allocators count. concurrent_map's snapshot store default-constructs its
// allocator before binding the map's (detail/concurrent/snapshot_store.hpp), so the allocator needs a default
// constructor; the suites check that nothing is ever counted here.
inline alloc_counter& unbound_counter() {
    static alloc_counter c;
    return c;
}

// A stateful allocator that counts live bytes and blocks in an alloc_counter (thread-safe).
template <class T>
struct counting_allocator {
    using value_type = T;
    alloc_counter* c;

    counting_allocator() noexcept : c(&unbound_counter()) {}
    explicit counting_allocator(alloc_counter* counter) noexcept : c(counter) {}
    template <class U>
    counting_allocator(const counting_allocator<U>& o) noexcept : c(o.c) {}

    T* allocate(std::size_t n) {
        T* p = std::allocator<T>().allocate(n);
        c->bytes.fetch_add(static_cast<long long>(n * sizeof(T)), std::memory_order_relaxed);
        c->blocks.fetch_add(1, std::memory_order_relaxed);
        return p;
    }
    void deallocate(T* p, std::size_t n) noexcept {
        c->bytes.fetch_sub(static_cast<long long>(n * sizeof(T)), std::memory_order_relaxed);
        c->blocks.fetch_sub(1, std::memory_order_relaxed);
        std::allocator<T>().deallocate(p, n);
    }
    template <class U>
    friend bool operator==(const counting_allocator& a, const counting_allocator<U>& b) noexcept {
        return a.c == b.c;
    }
};

}  // namespace iterlock::test
