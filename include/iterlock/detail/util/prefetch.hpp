// iterlock/detail/util/prefetch.hpp: prefetch with intent to write.
//
// Owns: iterlock::detail::prefetch_for_write(), iterlock::detail::prefetch_for_write_path,
//       ITERLOCK_DETAIL_ASAN, ITERLOCK_DETAIL_PREFETCHW_AT_RUN_TIME (x86 only: has_prefetchw from CPUID).
// Invariants: a prefetch never faults and never changes what a program computes (any address, freed
//       blocks included); the CPUID choice is made once, at start-up.
//
// A write that prefetches the lines it will change before it takes its lock (concurrent_map) wants them
// in its cache exclusively: a line another core also holds (the finds there read it) must otherwise be
// taken from that core when the write stores to it, and the lock's release, a locked instruction, waits
// for that. x86's PREFETCHW asks for ownership; the compiler emits it for __builtin_prefetch(p, 1) only
// when the target is known to have it (-mprfchw, -march=broadwell and later), so on a baseline x86-64
// build it is chosen here at run time from CPUID (leaf 0x80000001, ECX bit 8), read once at start-up.
// On aarch64 it is PRFM PSTL1KEEP (prefetch for store into L1, which asks for the line in a unique state),
// what every ARMv8 core has and GCC and clang emit for __builtin_prefetch(p, 1, 3); no run-time choice.
// Elsewhere, and under AddressSanitizer (which must not see a prefetch of a freed block as an access),
// it is __builtin_prefetch(p, 1). Never faults, never changes what a program computes.
// prefetch_for_write_path names the path compiled in (tests print it; DESIGN.md, "Which path runs where").
#pragma once

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace iterlock::detail {

#if defined(__SANITIZE_ADDRESS__)
#define ITERLOCK_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ITERLOCK_DETAIL_ASAN 1
#endif
#endif
#ifndef ITERLOCK_DETAIL_ASAN
#define ITERLOCK_DETAIL_ASAN 0
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__PRFCHW__) && !ITERLOCK_DETAIL_ASAN
#define ITERLOCK_DETAIL_PREFETCHW_AT_RUN_TIME 1
inline bool cpu_has_prefetchw() noexcept {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(0x80000001u, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 8)) != 0;
}
// Dynamically initialised before main; a use during another translation unit's static initialisation
// may still read false (zero-initialised), which only means an ordinary prefetch.
inline const bool has_prefetchw = cpu_has_prefetchw();
#else
#define ITERLOCK_DETAIL_PREFETCHW_AT_RUN_TIME 0
#endif

#if ITERLOCK_DETAIL_PREFETCHW_AT_RUN_TIME
inline constexpr const char* prefetch_for_write_path = "x86 prefetchw if cpuid says so, else prefetcht0";
#elif defined(__aarch64__)
inline constexpr const char* prefetch_for_write_path = "aarch64 prfm pstl1keep";
#else
inline constexpr const char* prefetch_for_write_path = "__builtin_prefetch(p, 1)";
#endif

inline void prefetch_for_write(const void* p) noexcept {
#if ITERLOCK_DETAIL_PREFETCHW_AT_RUN_TIME
    if (has_prefetchw) {
        asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
        return;
    }
#endif
    // aarch64: PRFM PSTL1KEEP (locality 3 is L1, "keep"); x86 with -mprfchw: PREFETCHW.
    __builtin_prefetch(p, 1, 3);
}

}  // namespace iterlock::detail
