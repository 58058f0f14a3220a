// tests/support/counting_new.cpp: the replaced global allocation functions (see counting_new.hpp).
#include "counting_new.hpp"

#include <cstddef>
#include <cstdlib>
#include <new>

namespace {
thread_local std::uint64_t t_allocations = 0;
thread_local long t_fail_countdown = 0;

[[maybe_unused]] void* counted_alloc(std::size_t n, std::size_t align) {
    ++t_allocations;
    if (t_fail_countdown > 0 && --t_fail_countdown == 0) throw std::bad_alloc();
    if (n == 0) n = 1;
    void* p = align <= alignof(std::max_align_t) ? std::malloc(n)
                                                 : std::aligned_alloc(align, (n + align - 1) / align * align);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}
template <class... Args>
void* nothrow_alloc(Args... args) noexcept {
    try {
        return counted_alloc(args...);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}
}  // namespace

namespace iterlock::test::counting_new {
std::uint64_t allocations() noexcept {
    return t_allocations;
}
void fail_at(long n) noexcept {
    t_fail_countdown = n;
}
}  // namespace iterlock::test::counting_new

#if ITERLOCK_TEST_COUNTING_NEW
void* operator new(std::size_t n) {
    return counted_alloc(n, 0);
}
void* operator new[](std::size_t n) {
    return counted_alloc(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a) {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    return nothrow_alloc(n, std::size_t{0});
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return nothrow_alloc(n, std::size_t{0});
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return nothrow_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return nothrow_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
#endif
