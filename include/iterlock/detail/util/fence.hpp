// iterlock/detail/util/fence.hpp: the memory fences of iterlock's racy (sequence-lock and epoch) paths, quiet
// under GCC's ThreadSanitizer.
//
// Owns: iterlock::detail::fence().
// Invariants: fence(order) is std::atomic_thread_fence(order) in every build (Relacy's fence under
//       ITERLOCK_RELACY); only GCC's -Wtsan warning for this one fence is silenced, never the fence itself.
//
// GCC (12 and later) warns at every std::atomic_thread_fence it instruments with -fsanitize=thread
// (-Wtsan: "atomic_thread_fence is not supported"), once per inlined copy, so a user's TSan build printed
// dozens of warnings per translation unit. The fences still run; ThreadSanitizer just does not model them.
// iterlock's fences only order the racy readers of the optimistic paths (detail/util/racy_read.hpp), and
// those paths are compiled out under ThreadSanitizer (ITERLOCK_DETAIL_TSAN), so nothing that TSan checks
// depends on them: fence() keeps the fence and silences the warning for it alone (a fence in the user's own
// code still warns).
#pragma once

#include <atomic>

#include "iterlock/detail/util/atomic_traits.hpp"

namespace iterlock::detail {

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif
// std::atomic_thread_fence(order). Never blocks, never throws.
// In the memory-model checks (ITERLOCK_RELACY) it is Relacy's fence (detail/util/atomic_traits.hpp).
inline void fence(std::memory_order order) noexcept {
#if ITERLOCK_DETAIL_RELACY
    atomic_fence(order);
#else
    std::atomic_thread_fence(order);
#endif
}
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif

}  // namespace iterlock::detail
