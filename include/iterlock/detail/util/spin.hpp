// iterlock/detail/util/spin.hpp: one pause of a spin-wait loop, for every spinning waiter in iterlock (the
// shard lock's bounded spin before it queues, the channels' backoff before they park).
//
// Owns: iterlock::detail::spin_pause().
// Invariants: never blocks, never changes what a program computes; tells the core (and its hyperthread
//       sibling) that this thread is waiting: PAUSE on x86 (its length varies by model), YIELD on aarch64,
//       nothing elsewhere.
#pragma once

namespace iterlock::detail {

inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

}  // namespace iterlock::detail
