// iterlock/detail/util/inline.hpp: inlining attributes for hot and cold paths.
//
// Owns: ITERLOCK_DETAIL_ALWAYS_INLINE, ITERLOCK_DETAIL_NOINLINE.
// Invariants: both change only where code is inlined, never what it computes; outside GCC and Clang they
//       are plain `inline` and nothing.
//
// ITERLOCK_DETAIL_ALWAYS_INLINE marks fast paths that must become part of the caller's loop (a find over a
// large map waits for cache misses; the fewer instructions each call adds, the more calls a core keeps in
// flight at once). ITERLOCK_DETAIL_NOINLINE marks the rare paths that would otherwise bloat them.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define ITERLOCK_DETAIL_NOINLINE __attribute__((noinline))
#define ITERLOCK_DETAIL_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ITERLOCK_DETAIL_NOINLINE
#define ITERLOCK_DETAIL_ALWAYS_INLINE inline
#endif
