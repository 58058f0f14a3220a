// tests/support/counting_new.hpp: the global allocation functions that counting_new.cpp replaces in the test
// executables that link it: each counts the calling thread's allocations, and can make the n-th of them
// throw std::bad_alloc (allocation failure injection). Not under ThreadSanitizer: its runtime defines every
// form of operator new and delete in one object that clashes with a replacement, so there `enabled` is
// false and nothing is counted or injected (tests that need it skip).
#pragma once

#include <cstdint>

#if defined(__SANITIZE_THREAD__)
#define ITERLOCK_TEST_COUNTING_NEW 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ITERLOCK_TEST_COUNTING_NEW 0
#endif
#endif
#ifndef ITERLOCK_TEST_COUNTING_NEW
#define ITERLOCK_TEST_COUNTING_NEW 1
#endif

namespace iterlock::test::counting_new {

inline constexpr bool enabled = ITERLOCK_TEST_COUNTING_NEW != 0;

// This thread's allocations so far (every form of operator new).
std::uint64_t allocations() noexcept;
// Arms this thread's failure countdown: the n-th allocation from now throws std::bad_alloc (n >= 1); 0
// disarms. The nothrow forms return nullptr instead.
void fail_at(long n) noexcept;

}  // namespace iterlock::test::counting_new
