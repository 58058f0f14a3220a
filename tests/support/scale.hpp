// tests/support/scale.hpp: loop counts for the threaded and randomized suites, shorter under the sanitizers
// and longer on request.
//
// Owns: ITERLOCK_TEST_TSAN (1 under ThreadSanitizer), ITERLOCK_TEST_SANITIZED (1 under TSan or ASan), and
// iterlock::test::scaled().
// Invariant: a count never drops below 1, so no loop silently runs zero times.
#pragma once

#include <cstdlib>

#if defined(__SANITIZE_THREAD__)
#define ITERLOCK_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ITERLOCK_TEST_TSAN 1
#endif
#endif
#ifndef ITERLOCK_TEST_TSAN
#define ITERLOCK_TEST_TSAN 0
#endif

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define ITERLOCK_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define ITERLOCK_TEST_SANITIZED 1
#endif
#endif
#ifndef ITERLOCK_TEST_SANITIZED
#define ITERLOCK_TEST_SANITIZED 0
#endif

namespace iterlock::test {

// Extra multiplier for every loop count, from the environment (ITERLOCK_CTEST_SCALE=4 runs four times
// longer).
inline double env_scale() {
    static const double s = [] {
        const char* e = std::getenv("ITERLOCK_CTEST_SCALE");
        const double v = e != nullptr ? std::atof(e) : 1.0;
        return v > 0 ? v : 1.0;
    }();
    return s;
}

// A loop count: `release` in unsanitized builds, `sanitized` under TSan/ASan; times env_scale(), at least 1.
inline long scaled(long release, long sanitized) {
    const long base = ITERLOCK_TEST_SANITIZED ? sanitized : release;
    const long n = static_cast<long>(static_cast<double>(base) * env_scale());
    return n > 0 ? n : 1;
}

}  // namespace iterlock::test
