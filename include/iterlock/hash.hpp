// iterlock/hash.hpp: the default hash of iterlock's maps, and the seeded mixer every map applies on top.
//
// Owns: iterlock::hash<T>, iterlock::string_hash, iterlock::detail::seeded_mix(), hash_bytes(), fold_mul(),
//       load64(), load32(), mix_k1, mix_k2.
// Invariants: every hash is a pure function of the key (the per-map seed enters only in seeded_mix);
//       hash<T> is the identity for integers, enums and pointers and std::hash<T> otherwise; the string
//       hashes agree on std::string, std::string_view and const char* with the same characters.
//
// A Go map hashes with a per-map random seed (`hash0`) so that iteration order and collision patterns differ
// from map to map. iterlock splits that in two:
//   1. `iterlock::hash<T>` (or any user hash) turns a key into 64 bits. For integers, enums and pointers it
//      is the identity: cheap, and the next step does the mixing.
//   2. `detail::seeded_mix(h, hash0)` folds the 128-bit product of (h ^ hash0 ^ k1) and k2, so every input
//      bit reaches both the low bits (bucket index) and the top byte (tophash). One multiply per lookup.
// Strings are hashed by `detail::hash_bytes`, a multiply-fold over 16-byte blocks (the same folded
// multiply as above, in the family of wyhash/rapidhash: fast on short keys, and every byte of the input
// affects every output bit after the final fold).
//
// Heterogeneous lookup: `hash<std::string>` is transparent (it hashes std::string_view and const char*
// the same way), so a map with `std::equal_to<>` can be probed without building a std::string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>

namespace iterlock {
namespace detail {

// Folded 64x64->128 multiply: the high and low halves xor-ed together.
inline constexpr std::uint64_t fold_mul(std::uint64_t a, std::uint64_t b) noexcept {
    const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
    return static_cast<std::uint64_t>(p) ^ static_cast<std::uint64_t>(p >> 64);
}

inline constexpr std::uint64_t mix_k1 = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio
inline constexpr std::uint64_t mix_k2 = 0xD6E8FEB86659FD93ull;  // odd, high bit density

// The per-map mixer: every bit of h and seed reaches the low bits and the top byte.
inline constexpr std::uint64_t seeded_mix(std::uint64_t h, std::uint64_t seed) noexcept {
    return fold_mul(h ^ seed ^ mix_k1, mix_k2);
}

inline std::uint64_t load64(const unsigned char* p) noexcept {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}
inline std::uint64_t load32(const unsigned char* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// Hash of a byte string: 16-byte blocks folded into a running state, the tail read with (possibly
// overlapping) 8- or 4-byte loads, and the length mixed in last.
inline std::uint64_t hash_bytes(const void* data, std::size_t n) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t state = 0x243F6A8885A308D3ull ^ n;  // pi's first digits, as a nothing-up-my-sleeve start
    std::uint64_t a = 0, b = 0;
    if (n > 16) {
        while (n > 16) {
            state = fold_mul(load64(p) ^ mix_k1, load64(p + 8) ^ state);
            p += 16;
            n -= 16;
        }
        a = load64(p + n - 16);
        b = load64(p + n - 8);
    } else if (n >= 8) {
        a = load64(p);
        b = load64(p + n - 8);
    } else if (n >= 4) {
        a = load32(p);
        b = load32(p + n - 4);
    } else if (n > 0) {
        a = (std::uint64_t{p[0]} << 16) | (std::uint64_t{p[n >> 1]} << 8) | p[n - 1];
    }
    return fold_mul(a ^ mix_k2 ^ n, b ^ state);
}

}  // namespace detail

// The default hash. Primary template: std::hash.
template <class T, class = void>
struct hash {
    std::uint64_t operator()(const T& v) const noexcept(noexcept(std::hash<T>{}(v))) {
        return static_cast<std::uint64_t>(std::hash<T>{}(v));
    }
};

// Integers, enums, pointers: identity; the map's seeded mix does the work.
template <class T>
struct hash<T, std::enable_if_t<std::is_integral_v<T> || std::is_enum_v<T> || std::is_pointer_v<T>>> {
    std::uint64_t operator()(T v) const noexcept {
        if constexpr (std::is_pointer_v<T>) {
            return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(v));
        } else if constexpr (std::is_enum_v<T>) {
            return static_cast<std::uint64_t>(static_cast<std::underlying_type_t<T>>(v));
        } else {
            return static_cast<std::uint64_t>(v);
        }
    }
};

// Strings: transparent over std::string, std::string_view and const char*.
struct string_hash {
    using is_transparent = void;
    std::uint64_t operator()(std::string_view s) const noexcept {
        return detail::hash_bytes(s.data(), s.size());
    }
    std::uint64_t operator()(const std::string& s) const noexcept {
        return detail::hash_bytes(s.data(), s.size());
    }
    std::uint64_t operator()(const char* s) const noexcept { return (*this)(std::string_view(s)); }
};
template <>
struct hash<std::string> : string_hash {};
template <>
struct hash<std::string_view> : string_hash {};

}  // namespace iterlock
