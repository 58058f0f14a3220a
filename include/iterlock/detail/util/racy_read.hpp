// iterlock/detail/util/racy_read.hpp: loads of memory that a writer may be changing at the same time, for
// sequence-lock readers.
//
// Owns: iterlock::detail::racy_flag_load(), racy_flag_store(), racy_load_u64(), racy_load_ptr(),
//       racy_copy_to(), racy_bytes(), racy_copy(), racy_store(), ITERLOCK_DETAIL_TSAN.
// Invariants: every byte is read exactly once, by a relaxed atomic load (whole words when T is 8-aligned;
//       the misuse flag's racy_flag_load: a volatile load, atomic under TSan); the result is a copy that a
//       caller uses only after its validation, never a reference into the shared memory;
//       ITERLOCK_DETAIL_TSAN is 1 exactly under ThreadSanitizer.
//
// A sequence-lock reader copies data that a writer may be overwriting and keeps the copy only if the
// lock's sequence did not move (shard_lock R9). Plain loads would let the compiler re-read a value it
// already checked (a pointer tested for null, then loaded again) or tear it; these loads are relaxed atomic
// loads (GCC/Clang __atomic builtins), each read exactly once. The writer's side stays plain stores under
// the lock: in the C++ model that is still a race (what P1478's byte-wise atomic memcpy would make
// well-defined), so ThreadSanitizer builds do not use the optimistic paths at all (ITERLOCK_DETAIL_TSAN).
//
// Requirements on callers: T is trivially copyable (a torn copy is bytes, never a broken object), and the
// memory stays allocated while it is read (detail/reclaim/epoch.hpp).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__SANITIZE_THREAD__)
#define ITERLOCK_DETAIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ITERLOCK_DETAIL_TSAN 1
#endif
#endif
#ifndef ITERLOCK_DETAIL_TSAN
#define ITERLOCK_DETAIL_TSAN 0
#endif

namespace iterlock::detail {

// A best-effort flag (map.hpp's hashWriting) that a correct program never writes while another thread
// reads it, and that publishes nothing. Outside ThreadSanitizer builds it is a volatile access: read once
// where the code reads it, like a relaxed load, but unlike GCC's __atomic builtins not a barrier for the
// optimiser, so a caller's loop of finds keeps the map's fields in registers (with the atomic load, GCC
// reloaded them after every flag check and spilled the hash's product to the stack). Under TSan it is a
// relaxed atomic access, so a detected misuse is not also reported as a data race.
inline std::uint8_t racy_flag_load(const std::uint8_t* p) noexcept {
#if ITERLOCK_DETAIL_TSAN
    return __atomic_load_n(p, __ATOMIC_RELAXED);
#else
    return *static_cast<const volatile std::uint8_t*>(p);
#endif
}
inline void racy_flag_store(std::uint8_t* p, std::uint8_t v) noexcept {
#if ITERLOCK_DETAIL_TSAN
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
#else
    *static_cast<volatile std::uint8_t*>(p) = v;
#endif
}

inline std::uint64_t racy_load_u64(const void* p) noexcept {
    return __atomic_load_n(static_cast<const std::uint64_t*>(p), __ATOMIC_RELAXED);
}

template <class T>
T* racy_load_ptr(T* const* p) noexcept {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

// *src read with relaxed loads (8-byte words where size and alignment allow, bytes otherwise) straight into
// the raw storage at `dst`, each word stored as it is loaded. T: trivially copy-constructible and trivially
// destructible, an implicit-lifetime type (such as a map's pair<const K, V> of trivially copyable K and V),
// which the memcpy storing the words creates. A copy into a final destination goes through no temporary:
// a temporary's 8-byte stores, reloaded as wider vector loads to construct the destination, stall store
// forwarding (the snapshot walk spent a quarter of its time there).
template <class T>
void racy_copy_to(void* dst, const T* src) noexcept {
    static_assert(std::is_trivially_copy_constructible_v<T> && std::is_trivially_destructible_v<T>);
    auto* out = static_cast<unsigned char*>(dst);
    const auto* in = reinterpret_cast<const unsigned char*>(src);
    if constexpr (sizeof(T) % 8 == 0 && alignof(T) >= 8) {
        for (std::size_t i = 0; i < sizeof(T); i += 8) {
            const std::uint64_t w = racy_load_u64(in + i);
            std::memcpy(out + i, &w, 8);
        }
    } else {
        for (std::size_t i = 0; i < sizeof(T); ++i) {
            const unsigned char b = __atomic_load_n(in + i, __ATOMIC_RELAXED);
            std::memcpy(out + i, &b, 1);
        }
    }
}
// The bytes of *p read with relaxed loads: 8-byte words where size and alignment allow, bytes otherwise.
template <class T>
std::array<unsigned char, sizeof(T)> racy_bytes(const T* p) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    std::array<unsigned char, sizeof(T)> bytes;
    racy_copy_to(bytes.data(), p);
    return bytes;
}
// A copy of *p made of relaxed loads (racy_bytes, as a T).
template <class T>
T racy_copy(const T* p) noexcept {
    return std::bit_cast<T>(racy_bytes(p));
}

// The writer's side for memory that racy_copy() readers read while it is written (a sequence lock whose
// data are written outside any lock the readers take): *dst = v made of relaxed stores, 8-byte words where
// size and alignment allow, bytes otherwise, so that the race is between atomic accesses.
template <class T>
void racy_store(T* dst, const T& v) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto bytes = std::bit_cast<std::array<unsigned char, sizeof(T)>>(v);
    auto* out = reinterpret_cast<unsigned char*>(dst);
    if constexpr (sizeof(T) % 8 == 0 && alignof(T) >= 8) {
        for (std::size_t i = 0; i < sizeof(T); i += 8) {
            std::uint64_t w;
            std::memcpy(&w, bytes.data() + i, 8);
            __atomic_store_n(reinterpret_cast<std::uint64_t*>(out + i), w, __ATOMIC_RELAXED);
        }
    } else {
        for (std::size_t i = 0; i < sizeof(T); ++i) __atomic_store_n(out + i, bytes[i], __ATOMIC_RELAXED);
    }
}

}  // namespace iterlock::detail
